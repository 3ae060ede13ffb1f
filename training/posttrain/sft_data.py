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

`to_rows` then turns examples into what TRL's SFTTrainer takes (see there).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from training.atomic import atomic_dir
from training.data import corpus
from training.data.snapshot import _code_version, read_json, sha256_file
from training.data.sources import hf_rows, parse_hf  # the project's one reader of Hugging Face datasets
from training.errors import UserError
from training.posttrain import formats, instructions
from training.posttrain.config import SFTDataConfig
from training.workspace import Workspace

KIND = "instructions"
SPLITS: tuple[str, ...] = ("train", "val", "heldout_template", "heldout_entity")
VERSION = 1  # part of every fingerprint: bump it when the same config starts giving other rows
_KEYS = ("instruction", "input", "output", "system", *formats.META_KEYS)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ACCEPTED = ("'instructions', a local .jsonl file (Alpaca, messages or ShareGPT shape), "
             "'hf:NAME[:CONFIG][@SPLIT]' or 'snapshot:ID'")


# ----------------------------------------------------------------------------- reading a snapshot


def _folder(ws: Workspace, snapshot_id: object, field: str = "data.snapshot") -> Path:
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise UserError(f"{field}: not a snapshot id: {snapshot_id!r}")
    return ws.dataset(snapshot_id)


def manifest(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict:
    """The manifest of an instructions snapshot.

    Raises:
        UserError: naming `field`, when there is no such snapshot or it is not instruction data
            (a text snapshot made by `playground data`, say).
    """
    folder = _folder(ws, snapshot_id, field)
    m = read_json(folder / "manifest.json")
    if m is None:
        raise UserError(f"{field}: no snapshot {snapshot_id!r} in {ws.datasets} (see `playground data list`)")
    if m.get("kind") != KIND:
        raise UserError(f"{field}: {snapshot_id!r} is not instruction data (kind {m.get('kind')!r}); use a "
                        "snapshot that SFT's data.sources made")
    return m


def load(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict[str, list[dict]]:
    """The examples of an instructions snapshot: split -> examples, for the splits it has."""
    m = manifest(ws, snapshot_id, field)
    folder = ws.dataset(snapshot_id)
    out = {}
    for split in SPLITS:
        if f"{split}.jsonl" in m["outputs"]:
            with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
                out[split] = [json.loads(line) for line in f if line.strip()]
    return out


# ----------------------------------------------------------------------------- making one


def _example(ex: dict, system: str | None) -> dict:
    """The stored form of an example: the known keys only, `system` from the config when set."""
    row = {k: ex[k] for k in _KEYS if isinstance(ex.get(k), str) and (ex[k] or k == "input")}
    row.setdefault("input", "")
    if system:
        row["system"] = system
    return row


def _split_rows(examples: list[dict], cfg: SFTDataConfig) -> dict[str, list[dict]]:
    """train/val by a salted hash of each row's content (deterministic, about `val_fraction` in val)."""
    out: dict[str, list[dict]] = {"train": [], "val": []}
    for ex in examples:
        h = hashlib.sha256(f"sft-split:{cfg.seed}:{json.dumps(ex, sort_keys=True)}".encode()).digest()
        out["val" if int.from_bytes(h[:8], "big") / 2**64 < cfg.val_fraction else "train"].append(ex)
    return out


def _hf_examples(spec: str, field: str) -> list[dict]:
    shape, examples = None, []
    for n, row in enumerate(hf_rows(spec, field), 1):
        ex, shape = formats.parse_row(row, f"{spec} row {n}", shape)
        examples.append(ex)
    if not examples:
        raise UserError(f"{field}: {spec}: no examples (the dataset is empty)")
    return examples


def _plan(cfg: SFTDataConfig, ws: Workspace) -> list[dict]:
    """One input per source with what fingerprints it; UserError for a source that is not there."""
    inputs = []
    for i, spec in enumerate(cfg.sources):
        field = f"data.sources[{i}]"
        if spec == "instructions":
            inputs.append({"source": spec, "kind": "instructions", "sha256": f"corpus-v{corpus.VERSION}"})
        elif spec.startswith("snapshot:"):
            sid = spec.split(":", 1)[1]
            inputs.append({"source": spec, "kind": "snapshot", "id": sid,
                           "sha256": manifest(ws, sid, field)["fingerprint"]})
        elif spec.startswith("hf:"):
            local = Path(parse_hf(spec, field)[0]).expanduser()
            files = ([local] if local.is_file() else sorted(
                f for f in local.rglob("*") if f.is_file() and ".cache" not in f.relative_to(local).parts)
            ) if local.exists() else []
            shas = [{"path": str(f), "sha256": sha256_file(f)} for f in files]
            sha = hashlib.sha256(json.dumps(shas).encode()).hexdigest() if shas else None  # a Hub name: none
            inputs.append({"source": spec, "kind": "hf", "sha256": sha, **({"files": shas} if shas else {})})
        elif spec.lower().endswith(".jsonl"):
            path = Path(spec).expanduser()
            if not path.is_file():
                raise UserError(f"{field}: not found: {spec}")
            inputs.append({"source": spec, "kind": "file", "path": str(path.resolve()), "sha256": sha256_file(path)})
        else:
            raise UserError(f"{field}: unknown source {spec!r}; use {_ACCEPTED}")
    return inputs


def _read(inp: dict, i: int, cfg: SFTDataConfig, ws: Workspace) -> dict[str, list[dict]]:
    """The examples of one input, by split."""
    if inp["kind"] == "instructions":
        return instructions.build(cfg.seed, cfg.n_train, cfg.n_val, cfg.n_test)
    if inp["kind"] == "snapshot":
        return load(ws, inp["id"], f"data.sources[{i}]")
    if inp["kind"] == "hf":
        return _split_rows(_hf_examples(inp["source"], f"data.sources[{i}]"), cfg)
    return _split_rows(formats.read_jsonl(Path(inp["source"]).expanduser()), cfg)


def _name(spec: str) -> str:
    if spec == "instructions":
        return "instructions"
    if spec.startswith("hf:"):
        name = spec[3:].split("@")[0]
        name = Path(name).name if Path(name).exists() else name.replace("/", "-")
    elif spec.startswith("snapshot:"):
        name = spec.split(":", 1)[1]
    else:
        name = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:48] or "sft"


def prepare(cfg: SFTDataConfig, ws: Workspace) -> str:
    """Make (or find) the snapshot of the config's sources; return its id.

    A single `snapshot:ID` source with no `system` is already a snapshot: its id comes back
    as it is. Otherwise the id is `<name>-<8 hex of the fingerprint>`; when that folder
    already holds this fingerprint with intact files, nothing is read or written.

    Raises:
        UserError: one line naming the source (`data.sources[i]: ...`) or the file, line and
            field of a bad row (`data.jsonl:7: missing field 'output'`). Nothing is written then.
    """
    inputs = _plan(cfg, ws)
    if len(inputs) == 1 and inputs[0]["kind"] == "snapshot" and not cfg.system:
        return inputs[0]["id"]
    config = cfg.model_dump(mode="json", include={"sources", "n_train", "n_val", "n_test", "seed",
                                                  "val_fraction", "system"})
    fingerprint = hashlib.sha256(json.dumps(
        {"config": config, "inputs": [{"source": x["source"], "sha256": x["sha256"]} for x in inputs],
         "version": VERSION}, sort_keys=True).encode()).hexdigest()
    snapshot_id = f"{_name(cfg.sources[0])}-{fingerprint[:8]}"
    folder = ws.dataset(snapshot_id)
    old = read_json(folder / "manifest.json")
    if old and old.get("kind") == KIND and old.get("fingerprint") == fingerprint and all(
            (folder / f).is_file() and sha256_file(folder / f) == o["sha256"] for f, o in old["outputs"].items()):
        return snapshot_id
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and (old or {}).get("kind") != KIND:
        raise UserError(f"data.sources: refusing to overwrite {folder}: it exists and is not an instructions snapshot")

    with atomic_dir(folder) as tmp:  # an error while reading or writing leaves no folder behind
        splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
        for i, inp in enumerate(inputs):
            got = _read(inp, i, cfg, ws)
            inp["rows"] = sum(len(v) for v in got.values())
            for split, examples in got.items():
                splits[split] += [_example(ex, cfg.system) for ex in examples]
        if not splits["train"]:
            raise UserError("data.sources: no training examples (every row went to val; add rows)")
        outputs = {}
        for split, examples in splits.items():
            if examples:
                path = tmp / f"{split}.jsonl"
                path.write_text("".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples),
                                encoding="utf-8")
                outputs[path.name] = {"sha256": sha256_file(path), "rows": len(examples)}
        m = {"kind": KIND, "id": snapshot_id, "fingerprint": fingerprint, "config": config,
             "inputs": [{k: v for k, v in x.items() if k != "kind"} for x in inputs],
             "counts": {s: len(v) for s, v in splits.items()}, "outputs": outputs,
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": _code_version()}
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return snapshot_id


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
