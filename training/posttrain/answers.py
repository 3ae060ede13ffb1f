"""Ask a model the held-out questions and score its replies: the figure SFT is judged by.

The replies are greedy (the most likely token each time), produced through the same chat
template the model is served with, and stop at the reply's end token (`chat.stop_token`).
Scoring is `instructions.score`: exact match after normalising case, spaces and trailing
punctuation. A base model that was only pretrained scores near zero here: it continues
the text instead of answering.
"""

from __future__ import annotations

import torch

from training.posttrain import instructions
from training.posttrain.chat import stop_token


def _prompt_ids(tokenizer, example: dict, system: str | None) -> list[int]:
    messages = instructions.to_messages(example, system=system)["messages"][:-1]  # drop the reply
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]


def _batches(prompts: list[list[int]], batch_size: int, max_new_tokens: int, limit: int | None) -> list[list[int]]:
    """Indices of `prompts` in batches of similar length, in which no prompt gets less room to
    reply than it would alone: a batch generates at most `limit` - its longest prompt tokens, so
    a prompt that leaves less than `max_new_tokens` shares its batch only with prompts of its own
    length. (One 120-token story in a batch would otherwise cut every reply in it to 8 tokens.)"""
    def room(i: int) -> int:
        return max_new_tokens if limit is None else min(max_new_tokens, limit - len(prompts[i]))

    batches: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: len(prompts[i])):
        if batches and len(batches[-1]) < batch_size and room(i) == room(batches[-1][0]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def answer(model, tokenizer, examples: list[dict], *, max_new_tokens: int = 32, batch_size: int = 16,
           system: str | None = None) -> list[str]:
    """Greedy replies of `model` to `examples` (their instruction and input), one string each.

    Prompts are left-padded into batches (`_batches`); generation stops at the reply's end token
    or after `max_new_tokens`, and never runs past the model's context length (a prompt that
    leaves no room gets the empty reply).
    """
    model.eval()
    device = next(model.parameters()).device
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    stop_ids = sorted({tokenizer.convert_tokens_to_ids(stop_token(tokenizer)), tokenizer.eos_token_id} - {None})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    prompts = [_prompt_ids(tokenizer, ex, system) for ex in examples]
    replies = [""] * len(prompts)
    for idx in _batches(prompts, batch_size, max_new_tokens, limit):
        longest = max(len(prompts[i]) for i in idx)
        room = max_new_tokens if limit is None else min(max_new_tokens, limit - longest)
        if room <= 0:
            continue
        ids = torch.full((len(idx), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, longest - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, longest - len(prompts[i]):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=room,
                             do_sample=False, eos_token_id=stop_ids, pad_token_id=pad)
        for row, i in enumerate(idx):
            replies[i] = tokenizer.decode(out[row, longest:], skip_special_tokens=True).strip()
    return replies


def accuracy(model, tokenizer, examples: list[dict], **kw) -> dict:
    """Exact-match accuracy on `examples`, overall and per task kind, plus a few replies to read."""
    replies = answer(model, tokenizer, examples, **kw)
    hits = [instructions.score(r, ex) for r, ex in zip(replies, examples)]
    by_task: dict[str, list[bool]] = {}
    for ex, ok in zip(examples, hits):
        by_task.setdefault(ex.get("task", "-"), []).append(ok)
    return {
        "accuracy": sum(hits) / len(hits) if hits else None,
        "n": len(hits),
        "by_task": {t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        "replies": [{"instruction": ex["instruction"], "input": ex.get("input", ""), "expected": ex["output"],
                     "reply": r, "correct": ok} for ex, r, ok in zip(examples, replies, hits)],
    }
