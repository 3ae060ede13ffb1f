"""Versioned snapshots of post-training data: what instruction examples (sft_data.py) and
preference pairs (preferences.py) share.

Both keep their rows the way pretraining keeps text: the trainer never reads a user's file
or a Hugging Face dataset directly. `prepare` turns a config's sources into a folder in
workspace/datasets, written once (atomically) and never changed afterwards,

    workspace/datasets/<id>/
      manifest.json   the kind, the fingerprint, the config fields that shape the content,
                      each input (source, sha256, rows), counts per split, each output file
                      (sha256, rows), the creation time and the code version
      <split>.jsonl   one row per line; empty splits have no file

The id is `<name>-<8 hex>` of a fingerprint of everything that changes the content (the
sources, the sizes, the seed, val_fraction, the system message, each local file's sha256
and the kind's VERSION): the same inputs give the same id, and preparing again is a no-op.
A Hub dataset is fingerprinted by its name only (a local folder by its files' sha256).

Sources, combined in order: the kind's generated set (its `generated` name, all splits), a
local .jsonl file, `hf:NAME[:CONFIG][@SPLIT]` and `snapshot:ID` (an earlier snapshot of the
same kind, as it is). A file or dataset has no held-out splits, so its rows go to train or
val by a salted hash of the row's content: the same row always lands in the same split, and
changing `seed` reshuffles them.

What differs between the kinds (names, messages, how rows are made, parsed and stored) is a
`Kind`; the functions here take one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from training.atomic import atomic_dir
from training.data import corpus
from training.data.snapshot import _code_version, read_json, sha256_file
from training.data.sources import hf_rows, parse_hf  # the project's one reader of Hugging Face datasets
from training.errors import UserError
from training.workspace import Workspace

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The config fields that shape a snapshot's content (SFTDataConfig and PreferenceDataConfig both have them).
CONFIG_KEYS = {"sources", "n_train", "n_val", "n_test", "seed", "val_fraction", "system"}


@dataclass(frozen=True)
class Kind:
    """One kind of snapshot: its names, its messages, and how its rows are made, read and stored."""

    kind: str  # the manifest's "kind"
    splits: tuple[str, ...]  # every split it may have, in file order
    version: int  # part of every fingerprint
    generated: str  # the source that means "the generated set" ("instructions", "preferences")
    noun: str  # in errors: "'x' is not <noun>"
    made_by: str  # in errors: "use a snapshot that <made_by> made"
    overwrite_noun: str  # in errors: "it exists and is not <overwrite_noun>"
    accepted: str  # the sources it takes, for "unknown source"
    rows_noun: str  # "examples", "pairs"
    salt: str  # salts the train/val hash of a file's rows
    fallback_name: str  # the id's name when a source gives none
    generate: Callable[[Any], dict[str, list[dict]]]  # cfg -> split -> rows
    read_file: Callable[[Path], list[dict]]  # a local .jsonl file -> rows (UserError naming file:line)
    parse_row: Callable[[object, str, Any], tuple[dict, Any]]  # (row, where, state) -> (row, state)
    store: Callable[[dict, str | None], dict]  # (row, cfg.system) -> the stored row


# ----------------------------------------------------------------------------- reading a snapshot


def folder(ws: Workspace, snapshot_id: object, field: str = "data.snapshot") -> Path:
    """The folder of a snapshot id (UserError naming `field` for what is not an id)."""
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise UserError(f"{field}: not a snapshot id: {snapshot_id!r}")
    return ws.dataset(snapshot_id)


def manifest(kind: Kind, ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict:
    """The manifest of a snapshot of `kind`; UserError naming `field` when there is none, or it
    is another kind."""
    m = read_json(folder(ws, snapshot_id, field) / "manifest.json")
    if m is None:
        raise UserError(f"{field}: no snapshot {snapshot_id!r} in {ws.datasets} (see `playground data list`)")
    if m.get("kind") != kind.kind:
        raise UserError(f"{field}: {snapshot_id!r} is not {kind.noun} (kind {m.get('kind')!r}); use a "
                        f"snapshot that {kind.made_by} made")
    return m


def load(kind: Kind, ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict[str, list[dict]]:
    """The rows of a snapshot of `kind`: split -> rows, for the splits it has."""
    m = manifest(kind, ws, snapshot_id, field)
    path = ws.dataset(snapshot_id)
    out = {}
    for split in kind.splits:
        if f"{split}.jsonl" in m["outputs"]:
            with open(path / f"{split}.jsonl", encoding="utf-8") as f:
                out[split] = [json.loads(line) for line in f if line.strip()]
    return out


# ----------------------------------------------------------------------------- making one


def split_by_hash(rows: list[dict], salt: str, seed: int, val_fraction: float) -> dict[str, list[dict]]:
    """train/val by a salted hash of each row's content (deterministic, about `val_fraction` in val)."""
    out: dict[str, list[dict]] = {"train": [], "val": []}
    for row in rows:
        h = hashlib.sha256(f"{salt}:{seed}:{json.dumps(row, sort_keys=True)}".encode()).digest()
        out["val" if int.from_bytes(h[:8], "big") / 2**64 < val_fraction else "train"].append(row)
    return out


def hf_examples(kind: Kind, spec: str, field: str) -> list[dict]:
    """The rows of a Hugging Face dataset, each parsed by the kind (errors name `<spec> row n`)."""
    state, rows = None, []
    for n, row in enumerate(hf_rows(spec, field), 1):
        parsed, state = kind.parse_row(row, f"{spec} row {n}", state)
        rows.append(parsed)
    if not rows:
        raise UserError(f"{field}: {spec}: no {kind.rows_noun} (the dataset is empty)")
    return rows


def plan(kind: Kind, sources: list[str], ws: Workspace) -> list[dict]:
    """One input per source with what fingerprints it; UserError for a source that is not there."""
    inputs = []
    for i, spec in enumerate(sources):
        field = f"data.sources[{i}]"
        if spec == kind.generated:
            inputs.append({"source": spec, "kind": "generated", "sha256": f"corpus-v{corpus.VERSION}"})
        elif spec.startswith("snapshot:"):
            sid = spec.split(":", 1)[1]
            inputs.append({"source": spec, "kind": "snapshot", "id": sid,
                           "sha256": manifest(kind, ws, sid, field)["fingerprint"]})
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
            raise UserError(f"{field}: unknown source {spec!r}; use {kind.accepted}")
    return inputs


def read(kind: Kind, inp: dict, i: int, cfg: Any, ws: Workspace) -> dict[str, list[dict]]:
    """The rows of one planned input, by split."""
    if inp["kind"] == "generated":
        return kind.generate(cfg)
    if inp["kind"] == "snapshot":
        return load(kind, ws, inp["id"], f"data.sources[{i}]")
    rows = (hf_examples(kind, inp["source"], f"data.sources[{i}]") if inp["kind"] == "hf"
            else kind.read_file(Path(inp["source"]).expanduser()))
    return split_by_hash(rows, kind.salt, cfg.seed, cfg.val_fraction)


def name(kind: Kind, spec: str) -> str:
    """The readable part of a snapshot id, from its first source."""
    if spec == kind.generated:
        return kind.generated
    if spec.startswith("hf:"):
        out = spec[3:].split("@")[0]
        out = Path(out).name if Path(out).exists() else out.replace("/", "-")
    elif spec.startswith("snapshot:"):
        out = spec.split(":", 1)[1]
    else:
        out = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", out).strip("-._")[:48] or kind.fallback_name


def fingerprint(kind: Kind, config: dict, inputs: list[dict]) -> str:
    """The sha256 of everything that shapes a snapshot's content."""
    return hashlib.sha256(json.dumps(
        {"config": config, "inputs": [{"source": x["source"], "sha256": x["sha256"]} for x in inputs],
         "version": kind.version}, sort_keys=True).encode()).hexdigest()


def _intact(kind: Kind, path: Path, fp: str) -> bool:
    old = read_json(path / "manifest.json")
    return bool(old) and old.get("kind") == kind.kind and old.get("fingerprint") == fp and all(
        (path / f).is_file() and sha256_file(path / f) == o["sha256"] for f, o in old["outputs"].items())


def prepare(kind: Kind, cfg: Any, ws: Workspace) -> str:
    """Make (or find) the snapshot of `cfg`'s sources; return its id.

    A single `snapshot:ID` source with no `system` is already a snapshot: its id comes back
    as it is. Otherwise the id is `<name>-<8 hex of the fingerprint>`; when that folder
    already holds this fingerprint with intact files, nothing is read or written.

    Raises:
        UserError: one line naming the source (`data.sources[i]: ...`) or the file, line and
            field of a bad row. Nothing is written then.
    """
    inputs = plan(kind, cfg.sources, ws)
    if len(inputs) == 1 and inputs[0]["kind"] == "snapshot" and not cfg.system:
        return inputs[0]["id"]
    config = cfg.model_dump(mode="json", include=CONFIG_KEYS)
    fp = fingerprint(kind, config, inputs)
    snapshot_id = f"{name(kind, cfg.sources[0])}-{fp[:8]}"
    path = ws.dataset(snapshot_id)
    if _intact(kind, path, fp):
        return snapshot_id
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and \
            (read_json(path / "manifest.json") or {}).get("kind") != kind.kind:
        raise UserError(f"data.sources: refusing to overwrite {path}: it exists and is not {kind.overwrite_noun}")

    with atomic_dir(path) as tmp:  # an error while reading or writing leaves no folder behind
        splits: dict[str, list[dict]] = {s: [] for s in kind.splits}
        for i, inp in enumerate(inputs):
            got = read(kind, inp, i, cfg, ws)
            inp["rows"] = sum(len(v) for v in got.values())
            for split, rows in got.items():
                splits[split] += [kind.store(row, cfg.system) for row in rows]
        if not splits["train"]:
            raise UserError(f"data.sources: no training {kind.rows_noun} (every row went to val; add rows)")
        outputs = {}
        for split, rows in splits.items():
            if rows:
                out = tmp / f"{split}.jsonl"
                out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
                outputs[out.name] = {"sha256": sha256_file(out), "rows": len(rows)}
        m = {"kind": kind.kind, "id": snapshot_id, "fingerprint": fp, "config": config,
             "inputs": [{k: v for k, v in x.items() if k != "kind"} for x in inputs],
             "counts": {s: len(v) for s, v in splits.items()}, "outputs": outputs,
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": _code_version()}
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return snapshot_id
