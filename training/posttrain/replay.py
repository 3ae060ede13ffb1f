"""Replay: pieces of the base model's own pretraining text mixed into the fine-tuning batches.

Fine-tuning on instructions alone wears away what pretraining taught (catastrophic forgetting:
training/posttrain/forgetting.py measures it). The oldest remedy is rehearsal, or replay: keep
training on a little of the old data, so every step pulls the weights back towards the old task
while it pushes them towards the new one (Robins 1995; Ouyang et al. 2022 mix pretraining
gradients into their RLHF updates, "PPO-ptx", for the same reason).

    data.replay: 0.25          one piece of pretraining text per four instruction rows
    data.replay_tokens: 32     each piece: the start of a training document, every token trained

Instruction rows train on the reply only and pretraining text on every token, so the two cannot
share TRL's own row processing: both are tokenized here (`tokenized`), each with the mask of
the tokens its loss falls on, and TRL builds the labels from that mask. The replayed documents
come from the snapshot the base model was pretrained on, found through its lineage: replay
needs a base pretrained in this workspace.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from training.data.snapshot import iter_split
from training.errors import UserError
from training.posttrain.forgetting import pretrain_snapshot


def tokenized(rows: list[dict], tokenizer) -> list[dict]:
    """Chat rows as TRL would tokenize them, with the mask of the tokens trained on:
    {"input_ids", "assistant_masks"}. "messages" rows: the assistant turns (the template's
    generation markers); prompt/completion rows: everything after the prompt."""
    out = []
    for r in rows:
        if "messages" in r:
            enc = tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
            ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        else:
            prompt = tokenizer.apply_chat_template(r["prompt"], tokenize=True, return_dict=True,
                                                   add_generation_prompt=True)["input_ids"]
            ids = list(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True,
                                                     return_dict=True)["input_ids"])
            mask = [0] * len(prompt) + [1] * (len(ids) - len(prompt))
        out.append({"input_ids": ids, "assistant_masks": mask})
    return out


def corpus(ws, base_path) -> Path:
    """The snapshot folder the base model was pretrained on (its train split is replayed).

    Raises:
        UserError: naming data.replay, when the base model was not pretrained in this workspace.
    """
    snapshot = pretrain_snapshot(ws, Path(base_path))
    if snapshot is None or not (snapshot / "train.jsonl").is_file():
        raise UserError(f"data.replay: the base model {Path(base_path).name!r} was not pretrained in this workspace "
                        "(its lineage names no corpus snapshot here); use data.replay=0")
    return snapshot


def pieces(ws, base_path, tokenizer, n: int, length: int, seed: int) -> list[dict]:
    """`n` pieces of the base model's pretraining text: each the separator token that precedes
    a document in pretraining and the document's first tokens, `length` in all, every one
    trained on. The documents are drawn at random (by `seed`) from the first 20 x n of the
    snapshot's train split."""
    snapshot = corpus(ws, base_path)
    docs = list(itertools.islice(iter_split(snapshot, "train"), 20 * n))
    random.Random(seed).shuffle(docs)
    # The token between documents in pretraining: BOS where the tokenizer has one (a tuned model's
    # tokenizer keeps <|endoftext|> there and calls <|im_end|> its EOS), else EOS; as evaluation/perplexity.py.
    sep = next(([t] for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None), [])
    out = []
    for text in docs:
        ids = (sep + tokenizer(text, add_special_tokens=False)["input_ids"])[:length]
        if len(ids) >= 8:
            out.append({"input_ids": ids, "assistant_masks": [1] * len(ids)})
            if len(out) == n:
                break
    return out


def mix(train: list[dict], val: list[dict], cfg, ws, base_path, tokenizer) -> tuple[list[dict], list[dict], int]:
    """Train and val rows, tokenized, with round(replay x len(train)) pieces shuffled into train.
    Val stays instructions only, so the eval loss is comparable with and without replay."""
    extra = pieces(ws, base_path, tokenizer, round(cfg.data.replay * len(train)), cfg.data.replay_tokens,
                   cfg.train.seed)
    rows = tokenized(train, tokenizer) + extra
    random.Random(cfg.train.seed).shuffle(rows)
    return rows, tokenized(val, tokenizer), len(extra)
