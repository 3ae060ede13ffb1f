"""The model registry: every model of the workspace, what kind it is, and where it came from.

A model is a Hugging Face folder in `workspace/models/<id>/` (what vLLM serves and transformers
loads). Its `playground.json` says what made it, and that is all the registry needs: nothing is
kept twice. From it each model gets a **kind** and a **parent**:

    kind        made by                                   parent (another model id)
    pretrained  `playground export RUN` (a checkpoint)    none: its run, tokenizer, data snapshot
    sweep       a sweep's best trial                      none: its trial's run
    sft         `playground sft`                          lineage.base_model
    reward/dpo/grpo  `playground reward|dpo|grpo`         lineage.base_model (the SFT model)
    quantized   `playground models quantize`              quantization.source
    imported    `playground models import`                none: where it came from

Following the parents gives the **lineage**, the whole life of a model as a graph:

    data snapshot -> tokenizer -> pretraining run -> model -> SFT run (+ its data) -> model
                  -> DPO run (+ preference snapshot) -> model -> int8 variant -> deployment
                                                                             -> evaluations

MLflow's model registry is kept in step (`mlflow_sync`): one registered model per workspace
model, a new version whenever its weights change, and the alias `deployed` on the version that
is being served. The workspace stays the source of truth, so a registry error never loses a model.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from training.errors import UserError
from training.workspace import Workspace

KINDS = ("pretrained", "sweep", "sft", "reward", "dpo", "grpo", "quantized", "imported")
_POSTTRAIN = ("sft", "reward", "dpo", "grpo")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WEIGHTS = ("*.safetensors", "*.bin")


def read_info(folder: Path) -> dict:
    """A model folder's playground.json ({} for a folder without one, e.g. an imported model)."""
    path = folder / "playground.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def kind_of(info: dict) -> str:
    """What made the model (one of KINDS), from its playground.json."""
    lineage = info.get("lineage") if isinstance(info.get("lineage"), dict) else {}
    if info.get("quantization"):
        return "quantized"
    if info.get("kind") == "imported" or lineage.get("imported_from"):
        return "imported"
    if lineage.get("kind") in _POSTTRAIN:
        return lineage["kind"]
    if info.get("sweep"):
        return "sweep"
    if info.get("run_id") or info.get("checkpoint"):
        return "pretrained"
    return "imported"  # a Hugging Face folder dropped into models/ by hand


def parent_of(info: dict) -> str | None:
    """The model this one was made from (a workspace model id or a Hub name), else None."""
    if info.get("quantization"):
        return (info["quantization"] or {}).get("source")
    lineage = info.get("lineage") if isinstance(info.get("lineage"), dict) else {}
    return lineage.get("base_model") if lineage.get("kind") in _POSTTRAIN else None


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for pattern in WEIGHTS for p in folder.glob(pattern))


def count_parameters(folder: Path) -> int | None:
    """Parameters stored in the folder's safetensors files, from their headers only (no loading).
    Packed quantized tensors count as stored, so a 4-bit variant counts fewer than its source."""
    from safetensors import safe_open

    files = list(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not iterable
                n = 1
                for d in f.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def is_model(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def check_id(model_id: str, field: str = "model") -> str:
    """A model id that is a safe folder name (UserError naming `field` otherwise)."""
    if not isinstance(model_id, str) or not _ID.fullmatch(model_id) or model_id in (".", ".."):
        raise UserError(f"{field}: {model_id!r} is not a model id (letters, digits, '.', '_', '-'; "
                        "at most 128)")
    return model_id


def require(ws: Workspace, model_id: str, field: str = "model") -> Path:
    """The folder of workspace model `model_id`; UserError "model: no model ..." when there is none."""
    folder = ws.model(check_id(model_id, field))
    if not is_model(folder):
        raise UserError(f"{field}: no model {model_id!r} in the workspace (playground models list)")
    return folder


def _architecture(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return (config.get("architectures") or [config.get("model_type")])[0]


def model_row(ws: Workspace, folder: Path, deployed: set[str] | frozenset = frozenset()) -> dict:
    """One model as the list shows it (GET /api/models, `playground models list`)."""
    info = read_info(folder)
    lineage = info.get("lineage") if isinstance(info.get("lineage"), dict) else None
    weights = _weight_files(folder)
    created = max((p.stat().st_mtime for p in weights), default=folder.stat().st_mtime)
    quant = info.get("quantization") or None
    return {"id": folder.name, "path": str(folder), "kind": kind_of(info), "parent": parent_of(info),
            "architecture": _architecture(folder), "run_id": info.get("run_id"), "step": info.get("step"),
            "val_loss": info.get("val_loss"), "config": info.get("config"), "lineage": lineage,
            "method": (lineage or {}).get("method"),
            "quantization": quant, "size_bytes": folder_bytes(folder), "deployed": folder.name in deployed,
            "created_at": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")}


def list_models(ws: Workspace, deployed: set[str] | frozenset = frozenset(), *, kind: str | None = None) -> list[dict]:
    """Every model folder of the workspace, newest first (filtered to one kind when asked)."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if not ws.models.is_dir():
        return []
    rows = [model_row(ws, d, deployed) for d in ws.models.iterdir()
            if d.is_dir() and not d.name.startswith(".") and is_model(d)]
    rows = [r for r in rows if kind is None or r["kind"] == kind]
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def children(ws: Workspace, model_id: str) -> list[str]:
    """The workspace models made from `model_id` (fine-tuned, aligned or quantized from it)."""
    if not ws.models.is_dir():
        return []
    return sorted(d.name for d in ws.models.iterdir()
                  if is_model(d) and not d.name.startswith(".") and parent_of(read_info(d)) == model_id)


# --------------------------------------------------------------------------- lineage graph

def _run_record(ws: Workspace, run_id: str | None) -> dict:
    if not run_id:
        return {}
    path = ws.run(run_id) / "run.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


class _Graph:
    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self.edges: list[dict] = []

    def node(self, kind: str, name: str, label: str | None = None, **extra) -> str:
        node_id = f"{kind}:{name}"
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "name": name, "label": label or name, **extra})
        return node_id

    def edge(self, source: str, target: str, label: str = "") -> None:
        e = {"source": source, "target": target, "label": label}
        if e not in self.edges:
            self.edges.append(e)


def _add_model(ws: Workspace, g: _Graph, model_id: str) -> tuple[str, dict]:
    """The model's node and what made it: its run and that run's inputs. Returns (node, info)."""
    folder = ws.model(model_id)
    exists = is_model(folder)
    info = read_info(folder) if exists else {}
    kind = kind_of(info) if exists else "missing"
    node = g.node("model", model_id, f"{model_id}\n({kind})" if exists else f"{model_id}\n(not in workspace)",
                  model_kind=kind, exists=exists)
    lineage = info.get("lineage") if isinstance(info.get("lineage"), dict) else {}
    if kind == "quantized":
        q = info["quantization"]
        return node, info | {"_edge_label": q.get("method") or "quantized"}
    if kind in _POSTTRAIN:
        run = g.node("run", lineage.get("run_id") or info.get("run_id") or model_id,
                     f"{lineage.get('run_id') or info.get('run_id')}\n{kind} run", run_kind=kind)
        g.edge(run, node, "saved")
        snapshot = lineage.get("data_snapshot") or lineage.get("preference_snapshot")
        if snapshot:
            g.edge(g.node("dataset", snapshot), run, "data")
        if lineage.get("replay_snapshot"):  # SFT with data.replay: the base's pretraining corpus, replayed
            g.edge(g.node("dataset", lineage["replay_snapshot"]), run, "replay")
        if lineage.get("reward_model"):
            g.edge(g.node("model", lineage["reward_model"], f"{lineage['reward_model']}\n(reward)",
                          model_kind="reward", exists=is_model(ws.model(lineage["reward_model"]))), run, "reward")
        return node, info | {"_via": run}
    if kind in ("pretrained", "sweep"):
        run_id = info.get("run_id")
        if run_id:
            run = g.node("run", run_id, f"{run_id}\npretraining run", run_kind="pretrain")
            label = f"step {info['step']}" if info.get("step") is not None else "export"
            g.edge(run, node, label)
            record = _run_record(ws, run_id)
            dataset, tokenizer = record.get("snapshot") or record.get("dataset"), record.get("tokenizer")
            if tokenizer:
                tok = g.node("tokenizer", tokenizer)
                g.edge(tok, run, "tokenizer")
                if dataset:
                    g.edge(g.node("dataset", dataset), tok, "trained on")
            if dataset:
                g.edge(g.node("dataset", dataset), run, "data")
    if kind == "imported":
        source = info.get("source") or lineage.get("imported_from")
        if source:
            g.edge(g.node("source", str(source)), node, "imported")
    return node, info


def lineage_graph(ws: Workspace, model_id: str, *, deployed: set[str] | frozenset = frozenset(),
                  evaluations: list[dict] | None = None) -> dict:
    """The model's lineage: its ancestors back to the tokenizer and data, the models made from it,
    where it is deployed and the evaluations that scored it.

    Returns `{"model": id, "nodes": [{"id", "kind", "name", "label", ...}], "edges": [{"source",
    "target", "label"}], "ancestors": [ids, nearest first], "children": [ids]}`; node kinds are
    dataset, tokenizer, run, model, deployment, eval, source."""
    require(ws, model_id)
    g = _Graph()
    current, ancestors, seen = model_id, [], {model_id}
    node, info = _add_model(ws, g, current)
    g.nodes[node]["current"] = True
    while True:
        parent = parent_of(info)
        if not parent or parent in seen:
            break
        parent_node, parent_info = _add_model(ws, g, parent)
        g.edge(parent_node, info.get("_via", node), info.get("_edge_label", "base"))
        ancestors.append(parent)
        seen.add(parent)
        node, info = parent_node, parent_info
    kids = children(ws, model_id)
    for child in kids:
        child_node, child_info = _add_model(ws, g, child)
        g.edge(f"model:{model_id}", child_info.get("_via", child_node), child_info.get("_edge_label", "base"))
    if model_id in deployed:
        g.edge(f"model:{model_id}", g.node("deployment", model_id, "served (vLLM)"), "deployed")
    for ev in evaluations or []:
        label = f"{ev['task']}: {ev['score']:.3f}" if ev.get("score") is not None else ev["task"]
        g.edge(f"model:{model_id}", g.node("eval", f"{ev['eval_id']}/{ev['task']}", label), "evaluated")
    return {"model": model_id, "nodes": list(g.nodes.values()), "edges": g.edges, "ancestors": ancestors,
            "children": kids}


_DOT_STYLE = {"dataset": 'shape=cylinder, fillcolor="#e8f1fb"', "tokenizer": 'shape=box, fillcolor="#f3e8fb"',
              "run": 'shape=box, style="rounded,filled", fillcolor="#fff4de"', "model": 'shape=box, fillcolor="#e6f5e9"',
              "deployment": 'shape=oval, fillcolor="#dff3f7"', "eval": 'shape=note, fillcolor="#f5f5f5"',
              "source": 'shape=folder, fillcolor="#f5f5f5"'}


def to_dot(graph: dict) -> str:
    """The lineage graph in Graphviz DOT (Streamlit's graphviz_chart draws it; so does `dot -Tsvg`)."""
    def q(text: str) -> str:
        return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = ["digraph lineage {", "  rankdir=LR;", '  node [style=filled, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color="#666666"];']
    for n in graph["nodes"]:
        style = _DOT_STYLE.get(n["kind"], "")
        if n.get("current"):
            style += ', penwidth=2.5, color="#1b7f3b"'
        lines.append(f"  {q(n['id'])} [label={q(n['label'])}, {style}];")
    for e in graph["edges"]:
        lines.append(f"  {q(e['source'])} -> {q(e['target'])} [label={q(e['label'])}];")
    return "\n".join(lines + ["}"])


# --------------------------------------------------------------------------- delete

def delete_model(ws: Workspace, model_id: str, deployed: set[str] | frozenset = frozenset()) -> dict:
    """Remove a model folder. A deployed model is refused (undeploy it first). The folder is first
    renamed aside, so the model disappears at once and whole; then its files are deleted.

    Returns `{"deleted": id, "children": [...]}`: the models made from it keep their own files and
    their lineage, which then names a model that is gone."""
    folder = require(ws, model_id)
    if model_id in deployed:
        raise UserError(f"model: {model_id!r} is deployed; undeploy it first (DELETE /api/deployments/{model_id})")
    kids = children(ws, model_id)
    aside = folder.with_name(f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}")
    folder.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
    return {"deleted": model_id, "children": kids}
