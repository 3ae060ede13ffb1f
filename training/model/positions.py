"""Position information for attention, the lab's swappable choices beside learned embeddings:
sinusoidal vectors (Vaswani et al. 2017), rotary embeddings (RoPE, Su et al. 2021) and ALiBi's
linear distance penalties (Press et al. 2021). All are computed on the fly from the positions,
so none is stored in a checkpoint. Used by training/model/transformer.py.
"""

import math

import torch


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The fixed position vectors of the original Transformer (Vaswani et al. 2017).

        PE[pos, 2i] = sin(pos / 10000^(2i/dim)),   PE[pos, 2i+1] = cos(pos / 10000^(2i/dim))

    Each pair of dimensions is a clock ticking at its own speed, so every position gets a
    distinct pattern and nothing has to be learned. Returns (T, dim) in float32; computed
    on the fly (cheap) like the RoPE angles, so it is never stored in a checkpoint.
    """
    half = (dim + 1) // 2  # an odd dim gets one extra sin column, cut off below
    inv_freq = 1.0 / (10000.0 ** (torch.arange(half, device=positions.device,
                                               dtype=torch.float32) * 2 / dim))  # (half,)
    angles = torch.outer(positions.float(), inv_freq)  # (T, half)
    # Interleave sin and cos: column 2i is sin, column 2i+1 is cos of the same angle.
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, :dim]  # (T, dim)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float):
    """Rotation angles for RoPE at the given absolute positions.

    Dimension pair i of every head is rotated by the angle pos * theta^(-2i/head_dim):
    early pairs spin fast (fine position detail), late pairs slowly (long range). A dot
    product of two rotated vectors then depends only on their *relative* distance.
    Recomputed on the fly in float32 (cheap) so the table never loses precision when the
    model is cast to bf16 or built on the meta device.
    Returns cos, sin of shape (T, head_dim) using the HF "rotate_half" layout: the angle
    for pair i is stored at index i and again at i + head_dim/2.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device,
                                             dtype=torch.float32) / head_dim))  # (hd/2,)
    freqs = torch.outer(positions.float(), inv_freq)  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    # Pair element i with element i + hd/2 (not with its neighbour): (x1, x2) -> (-x2, x1).
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, hd); cos/sin: (T, hd). A 2-D rotation of each pair: x*cos + x_perp*sin.
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's slope for each head (Press et al. 2022, "Train Short, Test Long").

    A geometric sequence: with n heads (a power of two) the slopes are 2^(-8/n),
    2^(-16/n), ..., 2^(-8), so each head looks at its own distance scale, from nearly
    global (small slope) to the last few tokens (slope 1/2 for 8 heads). For other head
    counts the paper takes the slopes of the power of two below n, then every other
    slope of the power of two above it. Returns (n_head,) in float32.
    """

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    below = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(below) + geometric(2 * below)[0::2][: n_head - below]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_head: int, q_pos: torch.Tensor, k_len: int) -> torch.Tensor:
    """The additive attention bias of ALiBi, causal mask included.

    Query i (at absolute position q_pos[i]) scoring key j gets -slope * (q_pos[i] - j):
    no penalty for itself, a penalty growing linearly with how far back the key is, and
    -inf for keys in its future. Nothing is learned and no vector is added to the
    embeddings; because only distances appear, the bias also exists for lengths never
    seen in training (the paper's point; this model still stops at block_size).
    Returns (n_head, T, k_len) in float32, recomputed each forward (cheap) like the
    RoPE angles.
    """
    distance = q_pos[:, None] - torch.arange(k_len, device=q_pos.device)[None, :]  # (T, Tk)
    bias = -alibi_slopes(n_head).to(q_pos.device)[:, None, None] * distance  # (nh, T, Tk)
    return bias.masked_fill(distance < 0, float("-inf"))
