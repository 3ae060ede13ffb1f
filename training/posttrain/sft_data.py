"""Instruction data for SFT, always read through a versioned snapshot in workspace/datasets.

Pretraining text goes through one data path (training/data/) and its snapshots, so every
run records exactly which documents it saw. Instruction data follows the same rule: the
trainer never reads a user's file or a Hugging Face dataset directly; `prepare` turns the
config's sources into a snapshot folder, written once and never changed afterwards,

    workspace/datasets/<id>/
      manifest.json   kind "instructions", the fingerprint, the config fields that shape the
                      content, each input (source, sha256, rows), counts per split, each
                      output file (sha256, rows), the creation time and the code version
      train.jsonl, val.jsonl, heldout_template.jsonl, heldout_entity.jsonl
                      one example per line ({"instruction", "input", "output"}, optionally
                      "system" and the metadata task/template/entity/answer); empty splits
                      have no file

and the run records the id. The id is `<name>-<8 hex>` of a fingerprint of everything that
changes the content (the sources, the sizes, the seed, val_fraction, the system message,
each local file's sha256 and `VERSION`): the same inputs give the same id, and preparing
again is a no-op. A Hub dataset is fingerprinted by its name only: if it changes upstream,
the old snapshot is still reused (delete it to read the new rows).

Sources, combined in order:

    instructions            the generated set (instructions.py), all four splits
    data.jsonl              a local file in the Alpaca, messages or ShareGPT shape
    hf:NAME[:CONFIG][@SPLIT] a Hugging Face dataset in one of those shapes (NAME may be a
                            local folder of .jsonl/.parquet files: that works offline)
    snapshot:ID             an earlier instructions snapshot, as it is

A file or dataset has no held-out splits, so its rows go to train or val by a salted hash
of the row's content: the same row always lands in the same split (a duplicate cannot sit
in both train and val), and changing `seed` reshuffles them.

`to_rows` then turns examples into what TRL's SFTTrainer takes (see there). The snapshot
machinery itself is shared with preference pairs and lives in snapshots.py.
"""

from __future__ import annotations

from training.errors import UserError
from training.posttrain import formats, instructions, snapshots
from training.posttrain.config import SFTDataConfig
from training.workspace import Workspace

KIND = "instructions"
SPLITS: tuple[str, ...] = ("train", "val", "heldout_template", "heldout_entity")
VERSION = 3  # part of every fingerprint: bump it when the same config starts giving other rows
_KEYS = ("instruction", "input", "output", "system", *formats.META_KEYS)


def _example(ex: dict, system: str | None) -> dict:
    """The stored form of an example: the known keys only, `system` from the config when set."""
    row = {k: ex[k] for k in _KEYS if isinstance(ex.get(k), str) and (ex[k] or k == "input")}
    row.setdefault("input", "")
    if system:
        row["system"] = system
    return row


# The machinery is snapshots.py's (shared with preferences.py); this says what is particular to SFT.
_KIND = snapshots.Kind(
    kind=KIND, splits=SPLITS, version=VERSION, generated="instructions", noun="instruction data",
    made_by="SFT's data.sources", overwrite_noun="an instructions snapshot",
    accepted="'instructions', a local .jsonl file (Alpaca, messages or ShareGPT shape), "
             "'hf:NAME[:CONFIG][@SPLIT]' or 'snapshot:ID'",
    rows_noun="examples", salt="sft-split", fallback_name="sft",
    generate=lambda cfg: instructions.build(cfg.seed, cfg.n_train, cfg.n_val, cfg.n_test),
    read_file=formats.read_jsonl, parse_row=formats.parse_row, store=_example)


def manifest(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict:
    """The manifest of an instructions snapshot.

    Raises:
        UserError: naming `field`, when there is no such snapshot or it is not instruction data
            (a text snapshot made by `playground data`, say).
    """
    return snapshots.manifest(_KIND, ws, snapshot_id, field)


def load(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict[str, list[dict]]:
    """The examples of an instructions snapshot: split -> examples, for the splits it has."""
    return snapshots.load(_KIND, ws, snapshot_id, field)


def prepare(cfg: SFTDataConfig, ws: Workspace) -> str:
    """Make (or find) the snapshot of the config's sources; return its id.

    A single `snapshot:ID` source with no `system` is already a snapshot: its id comes back
    as it is. Otherwise the id is `<name>-<8 hex of the fingerprint>`; when that folder
    already holds this fingerprint with intact files, nothing is read or written.

    Raises:
        UserError: one line naming the source (`data.sources[i]: ...`) or the file, line and
            field of a bad row (`data.jsonl:7: missing field 'output'`). Nothing is written then.
    """
    return snapshots.prepare(_KIND, cfg, ws)


# ----------------------------------------------------------------------------- for the trainer


def to_rows(examples: list[dict], shape: str, system: str | None = None) -> list[dict]:
    """The examples as rows for TRL's SFTTrainer, which applies the model's chat template.

    Args:
        examples: examples as `load` returns them.
        shape: "messages": {"messages": [system?, user, assistant]}, and the trainer computes
            the loss on the assistant turn only. "alpaca": conversational prompt/completion,
            {"prompt": [system?, user], "completion": [assistant]}, loss on the completion only.
            The user turn is the instruction, then a blank line and the input if there is one.
        system: a system message for every row; None keeps each example's own, if any.

    Returns:
        One row per example.
    """
    if shape not in formats.SHAPES:
        raise UserError(f"data.shape: use one of {', '.join(formats.SHAPES)}, got {shape!r}")
    rows = [formats.to_messages(ex, system) for ex in examples]
    if shape == "messages":
        return rows
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
