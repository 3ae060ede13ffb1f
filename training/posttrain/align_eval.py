"""Did alignment work? The figures a learner judges a reward model and a tuned policy by.

* A reward model is right on a pair when it scores the chosen reply above the rejected one:
  its **accuracy** on held-out pairs, and the mean **margin** r(chosen) - r(rejected).
* A policy prefers chosen over rejected when its log-likelihood *ratio* against the reference
  (the SFT model it started from) is larger for chosen:

      [log pi(chosen) - log ref(chosen)] - [log pi(rejected) - log ref(rejected)] > 0

  This is DPO's implicit reward margin divided by beta: measuring it needs no reward model.
  Its share over held-out pairs is the **pair accuracy**. A policy equal to its reference has
  margin 0 on every pair: what it learned is the distance from there.

Pure PyTorch and transformers; the replies are scored through the chat template, as trained.
"""

from __future__ import annotations

import torch

from training.posttrain import kl


def _pairs(tokenizer, rows: list[dict]) -> tuple[list, list, list[int]]:
    """(prompt+chosen, prompt+rejected) token sequences of the rows whose both replies tokenise
    cleanly after the prompt (kl.sequences), and the indices of those rows."""
    chosen, rejected, kept = [], [], []
    for i, row in enumerate(rows):
        c = kl.sequences(tokenizer, [row])
        r = kl.sequences(tokenizer, [{"prompt": row["prompt"], "chosen": row["rejected"]}])
        if c and r:
            chosen += c
            rejected += r
            kept.append(i)
    return chosen, rejected, kept


def _summary(margin: torch.Tensor, kept: list[int], groups: list[str] | None) -> dict:
    """Accuracy (share of positive margins), mean margin, count, and the accuracy by group (a
    pair's flaw, say) when `groups` (one per row) is given."""
    out = {"accuracy": float((margin > 0).float().mean()), "margin": float(margin.mean()), "n": len(kept)}
    if groups is not None:
        by: dict[str, list[bool]] = {}
        for i, m in zip(kept, margin.tolist()):
            by.setdefault(groups[i], []).append(m > 0)
        out["by_group"] = {g: sum(v) / len(v) for g, v in sorted(by.items())}
    return out


@torch.no_grad()
def reply_logps(model, seqs: list[tuple[list[int], int]], *, pad_id: int, batch_size: int = 16) -> torch.Tensor:
    """Sum of log p(reply token | everything before it) over each sequence's reply: one value per sequence."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(seqs), batch_size):
        ids, attn, reply = kl._batch(seqs[start:start + batch_size], pad_id, device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), dim=-1)
        token = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        out.append((token * reply).sum(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def pair_preference(policy, reference, tokenizer, rows: list[dict], groups: list[str] | None = None) -> dict:
    """How often, and by how much, `policy` prefers chosen over rejected relative to `reference`.

    Returns:
        {"accuracy": share of pairs with a positive log-ratio margin, "margin": its mean (nats),
         "n": pairs scored, and with `groups` (one label per row) "by_group": accuracy per label}.
    """
    chosen, rejected, kept = _pairs(tokenizer, rows)
    if not chosen:
        return {"accuracy": None, "margin": None, "n": 0}
    pad = tokenizer.pad_token_id or 0
    margin = (reply_logps(policy, chosen, pad_id=pad) - reply_logps(reference, chosen, pad_id=pad)) \
        - (reply_logps(policy, rejected, pad_id=pad) - reply_logps(reference, rejected, pad_id=pad))
    return _summary(margin, kept, groups)


@torch.no_grad()
def rewards(reward_model, tokenizer, seqs: list[tuple[list[int], int]], *, batch_size: int = 16) -> torch.Tensor:
    """The reward model's score of each whole sequence (prompt + reply): one value per sequence."""
    reward_model.eval()
    device = next(reward_model.parameters()).device
    pad = tokenizer.pad_token_id or 0
    out = []
    for start in range(0, len(seqs), batch_size):
        ids, attn, _ = kl._batch(seqs[start:start + batch_size], pad, device)
        # Right padding: sequence-classification heads read the last non-pad token (config.pad_token_id).
        out.append(reward_model(input_ids=ids, attention_mask=attn).logits[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def reward_accuracy(reward_model, tokenizer, rows: list[dict], groups: list[str] | None = None) -> dict:
    """{"accuracy", "margin", "n"} (and "by_group", as pair_preference): the reward model on
    pairs (chosen scored above rejected)."""
    chosen, rejected, kept = _pairs(tokenizer, rows)
    if not chosen:
        return {"accuracy": None, "margin": None, "n": 0}
    margin = rewards(reward_model, tokenizer, chosen) - rewards(reward_model, tokenizer, rejected)
    return _summary(margin, kept, groups)


def reply_rewards(reward_model, tokenizer, prompts: list[list[dict]], replies: list[str]) -> list[float]:
    """The reward model's score of each reply to its prompt (messages), e.g. a policy's own replies."""
    rows = [{"prompt": p, "chosen": [{"role": "assistant", "content": r}]} for p, r in zip(prompts, replies)]
    seqs = [s for row in rows for s in (kl.sequences(tokenizer, [row]) or
                                        [(_prompt_only(tokenizer, row["prompt"]), 0)])]
    return rewards(reward_model, tokenizer, seqs).tolist()


def _prompt_only(tokenizer, prompt: list[dict]) -> list[int]:
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]
