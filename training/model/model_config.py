"""The model's configuration: `ModelConfig` (size, layout and the architecture lab's choices)
and `Layout`, its resolved component choices. Plain data, no PyTorch: run configs
(training/config.py) and the configurator read it without importing torch;
training/model/transformer.py builds the model from it.
"""

from dataclasses import dataclass
from typing import Literal

# What each arch uses for the components the lab can swap. A ModelConfig field left at
# None takes its value from here, which is how every pre-lab config keeps its model.
ARCH_DEFAULTS: dict[str, dict] = {
    "gpt2": {"pos_embedding": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True},
    "llama": {"pos_embedding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False},
}
POS_EMBEDDINGS = ("learned", "sinusoidal", "rope", "alibi", "none")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
MLPS = ("gelu", "relu", "swiglu")


@dataclass(frozen=True)
class Layout:
    """The component choices of a model with every "the arch's usual" default resolved.

    Attributes:
        pos_embedding: "learned" (a trained vector per position, GPT-2), "sinusoidal"
            (fixed sin/cos waves, the original Transformer), "rope" (rotate q and k,
            Llama), "alibi" (no position vectors: each head's attention scores get a
            penalty growing linearly with distance, BLOOM and MPT) or "none" (no
            position signal; the causal mask alone reveals order).
        norm: "layernorm" (subtract the mean, divide by the std) or "rmsnorm" (only
            divide by the root mean square).
        norm_position: "pre" (normalise each sublayer's input, GPT-2 and later) or
            "post" (normalise the sum after each residual add, the original Transformer).
        mlp: "gelu" / "relu" (two matrices and a nonlinearity) or "swiglu" (gated, three).
        bias: whether the attention and MLP Linear layers and LayerNorm have an additive
            bias (the lm_head never has one).
    """

    pos_embedding: str
    norm: str
    norm_position: str
    mlp: str
    bias: bool


@dataclass
class ModelConfig:
    # pydantic validates this dataclass when it is embedded in run configs; unknown
    # keys are errors there. A plain class attribute: annotated, even as a ClassVar, it
    # would be listed in `__dataclass_fields__`.
    __pydantic_config__ = {"extra": "forbid"}  # noqa: RUF012

    arch: Literal["gpt2", "llama"] = "gpt2"
    vocab_size: int = 4096
    block_size: int = 256  # context length: the most tokens the model ever sees at once
    n_layer: int = 4
    n_head: int = 4
    # Key/value heads. None means n_head (multi-head attention); 1 is multi-query
    # attention; anything in between that divides n_head is grouped-query attention.
    n_kv_head: int | None = None
    n_embd: int = 128
    intermediate_size: int | None = None  # MLP hidden width; None -> mlp_ratio or the usual
    dropout: float = 0.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    attention: Literal["sdpa", "math"] = "sdpa"  # "math": explicit softmax(QK^T/sqrt(d))V
    init_std: float = 0.02
    # Architecture lab (see `Layout` for what each choice means). None: the arch's usual.
    pos_embedding: Literal["learned", "sinusoidal", "rope", "alibi", "none"] | None = None
    norm: Literal["layernorm", "rmsnorm"] | None = None
    norm_position: Literal["pre", "post"] = "pre"
    mlp: Literal["gelu", "relu", "swiglu"] | None = None
    mlp_ratio: float | None = None  # MLP width = round(mlp_ratio * n_embd); or intermediate_size
    bias: bool | None = None  # biases in attention, MLP and LayerNorm (never the lm_head)

    def __post_init__(self) -> None:
        if self.arch not in ("gpt2", "llama"):
            raise ValueError(f"arch must be 'gpt2' or 'llama', got {self.arch!r}")
        if self.attention not in ("sdpa", "math"):
            raise ValueError(f"attention must be 'sdpa' or 'math', got {self.attention!r}")
        for name, allowed in (("pos_embedding", POS_EMBEDDINGS), ("norm", NORMS), ("mlp", MLPS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)} (or null for the "
                                 f"arch's usual), got {value!r}")
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be 'pre' or 'post', got {self.norm_position!r}")
        if self.bias is not None and not isinstance(self.bias, bool):
            raise ValueError(f"bias must be true, false or null, got {self.bias!r}")
        if self.mlp_ratio is not None:
            if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) \
                    or not self.mlp_ratio > 0:
                raise ValueError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
            if self.intermediate_size is not None:
                raise ValueError("mlp_ratio and intermediate_size both set the MLP width; give one")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd",
                     "n_kv_head", "intermediate_size"):
            value = getattr(self, name)
            if value is None and name in ("n_kv_head", "intermediate_size"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is not None and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by "
                             f"n_kv_head ({self.n_kv_head})")
        if self.layout.pos_embedding == "rope" and self.head_dim % 2:
            raise ValueError(f"n_embd / n_head (head_dim {self.head_dim}) must be even for RoPE")
        if self.mlp_hidden < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio} x n_embd {self.n_embd} leaves no MLP width")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("norm_eps", "rope_theta", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def layout(self) -> Layout:
        """The component choices with None replaced by the arch's usual one."""
        usual = ARCH_DEFAULTS[self.arch]

        def pick(name: str):
            value = getattr(self, name)
            return usual[name] if value is None else value

        return Layout(pos_embedding=pick("pos_embedding"), norm=pick("norm"),
                      norm_position=self.norm_position, mlp=pick("mlp"), bias=pick("bias"))

    @property
    def mlp_hidden(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.mlp_ratio is not None:
            return round(self.mlp_ratio * self.n_embd)
        if self.layout.mlp != "swiglu":
            return 4 * self.n_embd
        # SwiGLU has three matrices instead of two; 2/3 of 4*C keeps the parameter count
        # equal to a 4*C GELU MLP. Rounded up to a multiple of 32 for friendly matmuls.
        hidden = int(2 * 4 * self.n_embd / 3)
        return 32 * ((hidden + 31) // 32)
