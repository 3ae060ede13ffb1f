"""How far has the policy moved from where it started? KL(policy || reference), measured.

DPO and GRPO both train a policy while holding it near a frozen reference (the SFT model):
DPO through beta in its loss, GRPO through an explicit penalty. Neither trainer reports the
distance itself in a form that means the same across methods: DPO's rewards are log-ratios
of whole replies, GRPO's `kl` is an estimate on its own samples. So we measure it directly,
the same way for both, on a fixed set of held-out sequences (prompt + chosen reply):

    KL_t = sum over the whole vocabulary v of  p(v | x, y<t) * (log p(v | x, y<t) - log q(v | x, y<t))

where p is the policy and q the reference, at every reply position t, then averaged over the
reply tokens. Full vocabulary, not a sampled estimate: exact, and 0 when the two models are
the same. Units: nats per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequences(tokenizer, rows: list[dict]) -> list[tuple[list[int], int]]:
    """Token ids of prompt + reply for each row ({"prompt": [messages], "chosen": [messages]}),
    through the chat template, and where the reply starts."""
    out = []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=True,
                                             return_dict=True)["input_ids"]
        if list(full[:len(prompt)]) != list(prompt) or len(full) <= len(prompt):
            continue  # a template that rewrites the prompt when a reply follows: no clean reply span
        out.append((list(full), len(prompt)))
    return out


def _batch(seqs: list[tuple[list[int], int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and a mask of the positions whose *next* token is a reply token."""
    longest = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    reply = torch.zeros((len(seqs), longest - 1), dtype=torch.bool)
    for i, (s, start) in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
        reply[i, start - 1:len(s) - 1] = True  # logits at position t predict token t+1
    return ids.to(device), attn.to(device), reply.to(device)


def token_kl(policy_logits: torch.Tensor, reference_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked positions of KL(p || q) over the full vocabulary (last dim), in nats."""
    logp = F.log_softmax(policy_logits.float(), dim=-1)
    logq = F.log_softmax(reference_logits.float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def measure(policy, reference, seqs: list[tuple[list[int], int]], *, pad_id: int, batch_size: int = 16) -> float:
    """KL(policy || reference) per reply token, averaged over all reply tokens of `seqs`."""
    if not seqs:
        return float("nan")
    was_training = policy.training
    policy.eval()
    reference.eval()
    device = next(policy.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        ids, attn, reply = _batch(seqs[start:start + batch_size], pad_id, device)
        p = policy(input_ids=ids, attention_mask=attn).logits[:, :-1]
        q = reference(input_ids=ids.to(next(reference.parameters()).device),
                      attention_mask=attn.to(next(reference.parameters()).device)).logits[:, :-1].to(device)
        n = int(reply.sum())
        total += float(token_kl(p, q, reply)) * n
        tokens += n
    if was_training:
        policy.train()
    return total / max(tokens, 1)
