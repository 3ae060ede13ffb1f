"""Model cards: a README.md that says what a model is, how it was made, how well it does, and what
it must not be used for, in the format the Hugging Face Hub shows on every model page.

A card has two parts. A YAML header the Hub reads as data (`huggingface_hub.ModelCardData`:
license, language, library, tags, the base model, the datasets, and `model-index`, the evaluation
results as numbers), then free Markdown for people. Mitchell et al., "Model Cards for Model
Reporting" (2019), is where the idea comes from: the limitations section matters as much as the
scores.

Nothing in a card is typed by hand. Every fact comes from files the playground already wrote:

    models/<id>/config.json, *.safetensors   architecture, parameter count, size, dtype
    models/<id>/playground.json              run, step, lineage (parent, method, beta...), quantization
    runs/<run>/run.json, config.yaml         the data snapshot, the tokenizer, the hyperparameters
    datasets/<snapshot>/manifest.json        documents read and kept by each cleaning stage
    evals/<eval_id>/eval.json                scores with 95% intervals (the leaderboard's cells)

`card_facts` gathers them into a dict (the UI shows that); `build_card` renders the card; a model
with no playground.json (an imported one) still gets a valid card with whatever is known.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from training.registry.registry import count_parameters, kind_of, parent_of, read_info
from training.workspace import Workspace

UPSTREAM_README = "README.upstream.md"  # an imported model's own card, kept by hub.import_folder
_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"
_CONFIG_KEYS = {"layers": ("num_hidden_layers", "n_layer", "num_layers"),
                "heads": ("num_attention_heads", "n_head"), "kv_heads": ("num_key_value_heads",),
                "width": ("hidden_size", "n_embd", "d_model"), "vocab": ("vocab_size",),
                "context": ("max_position_embeddings", "n_positions", "n_ctx")}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _lineage(info: dict) -> dict:
    return info["lineage"] if isinstance(info.get("lineage"), dict) else {}


# --------------------------------------------------------------------------- facts


def _architecture(model_dir: Path) -> dict:
    config = _json(model_dir / "config.json")
    out = {"class": (config.get("architectures") or [None])[0], "model_type": config.get("model_type")}
    for name, keys in _CONFIG_KEYS.items():
        out[name] = next((config[k] for k in keys if config.get(k) is not None), None)
    out["kv_heads"] = out["kv_heads"] or out["heads"]
    out["dtype"] = config.get("dtype") or config.get("torch_dtype")
    out["tied_embeddings"] = config.get("tie_word_embeddings")
    return out


def _tokenizer(model_dir: Path) -> dict | None:
    """What the tokenizer files say, read as JSON (no tokenizer is loaded)."""
    cfg, tok = _json(model_dir / "tokenizer_config.json"), _json(model_dir / "tokenizer.json")
    if not cfg and not tok:
        return None
    vocab = (tok.get("model") or {}).get("vocab")
    size = len(vocab) if isinstance(vocab, (dict, list)) else None
    if size is not None:
        size += len({t["id"] for t in tok.get("added_tokens") or [] if t.get("id") not in range(size)})

    def token(name):
        value = cfg.get(name)
        return value.get("content") if isinstance(value, dict) else value

    return {"class": cfg.get("tokenizer_class"), "algorithm": (tok.get("model") or {}).get("type"),
            "vocab_size": size, "bos": token("bos_token"), "eos": token("eos_token"), "pad": token("pad_token"),
            "chat_template": (model_dir / "chat_template.jinja").is_file() or bool(cfg.get("chat_template"))}


def _parents(ws: Workspace, info: dict) -> list[str]:
    """The parent chain, nearest first (it stops at a model that is not in the workspace, or a loop)."""
    chain, parent = [], parent_of(info)
    while parent and parent not in chain:
        chain.append(parent)
        parent = parent_of(read_info(ws.model(parent))) if "/" not in parent else None
    return chain


def _dataset(ws: Workspace, snapshot: str | None, role: str) -> dict | None:
    """A data snapshot and what its manifest says: the stages' in/out counts, the splits' sizes."""
    if not snapshot:
        return None
    manifest = _json(ws.dataset(snapshot) / "manifest.json") if "/" not in snapshot else {}
    counts = manifest.get("counts") or {}
    stages = [{"stage": name, "in": c["in"], "out": c["out"], "removed": c["in"] - c["out"]}
              for name, c in counts.items() if isinstance(c, dict) and {"in", "out"} <= set(c)]
    splits = {name: c for name, c in counts.items() if isinstance(c, int)}
    for name, out in (manifest.get("outputs") or {}).items():
        if name.endswith(".jsonl") and isinstance(out, dict) and out.get("docs") is not None:
            splits[name.removesuffix(".jsonl")] = out["docs"]
    return {"role": role, "snapshot": snapshot, "kind": manifest.get("kind"), "sources": manifest.get("sources")
            or (manifest.get("config") or {}).get("sources"), "stages": stages, "splits": splits,
            "known": bool(manifest)}


_PRETRAIN_KEYS = ("max_steps", "batch_size", "grad_accum", "lr", "min_lr", "schedule", "warmup_steps",
                  "weight_decay", "beta1", "beta2", "grad_clip", "precision", "seed")
_TUNE_KEYS = ("max_steps", "batch_size", "grad_accum", "lr", "schedule", "warmup_steps", "weight_decay",
              "max_length", "seed")


def _stage(ws: Workspace, model_id: str, info: dict) -> dict:
    """How one model of the chain was made: its run, method, data and hyperparameters."""
    kind, lineage = kind_of(info), _lineage(info)
    run_id = lineage.get("run_id") or info.get("run_id")
    run = _json(ws.run(run_id) / "run.json") if run_id else {}
    config = _yaml(ws.run(run_id) / "config.yaml") if run_id else {}
    stage = {"model": model_id, "kind": kind, "run_id": run_id, "step": info.get("step"),
             "val_loss": info.get("val_loss"), "method": lineage.get("method"), "hyperparameters": {}}
    hp = stage["hyperparameters"]
    if kind in ("pretrained", "sweep"):
        cfg = info.get("config") or run.get("config") or config
        hp.update({k: (cfg.get("train") or {}).get(k) for k in _PRETRAIN_KEYS if k in (cfg.get("train") or {})})
        hp["workers"] = (cfg.get("scale") or {}).get("num_workers")
        stage["data"] = _dataset(ws, run.get("snapshot") or run.get("dataset"), "pretraining")
        stage["tokenizer"] = run.get("tokenizer")
    elif kind in ("sft", "reward", "dpo", "grpo"):
        train = config.get("train") or {}
        hp.update({k: train[k] for k in _TUNE_KEYS if k in train})
        hp["adapter"] = config.get("adapter") or (lineage.get("method") if kind == "sft" else lineage.get("adapter"))
        if hp["adapter"] in ("lora", "qlora"):
            lora = config.get("lora") or {}
            hp.update({f"lora_{k}": lora[k] for k in ("r", "alpha", "dropout", "target_modules", "use_dora")
                       if k in lora})
        section = config.get(kind) if kind in ("dpo", "grpo") else None
        hp.update(section or {k: lineage[k] for k in ("beta", "loss_type", "sft_weight", "num_generations")
                              if k in lineage})
        if lineage.get("reward_model"):
            hp["reward_model"] = lineage["reward_model"]
        role = "instructions" if kind == "sft" else "preferences"
        stage["data"] = _dataset(ws, lineage.get("data_snapshot") or lineage.get("preference_snapshot"), role)
        results = _json(ws.run(run_id) / "results.json") if run_id else {}
        stage["results"] = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                            and k not in ("trainable_params", "total_params")}
    return {k: v for k, v in stage.items() if v not in (None, {}, [])} | {"kind": kind, "model": model_id}


def _evaluations(ws: Workspace, model_id: str) -> list[dict]:
    """The model's latest score on each task, with its interval (the leaderboard's cells)."""
    from evaluation import leaderboard, records

    try:
        cells = leaderboard.latest_rows(records.read_all(ws))
    except (OSError, ValueError, KeyError):  # an unreadable record: a card without scores, not no card
        return []
    keys = ("task", "suite", "metric", "score", "stderr", "ci95", "n", "chance", "normalized", "eval_id",
            "evaluated_at", "backend")
    return sorted(({k: row.get(k) for k in keys} for (model, _), row in cells.items() if model == model_id),
                  key=lambda r: r["task"])


def _upstream(model_dir: Path):
    """The metadata of an imported model's own card (its license and language), if it has one."""
    try:
        return ModelCard.load(model_dir / UPSTREAM_README).data if (model_dir / UPSTREAM_README).is_file() else None
    except Exception:  # noqa: BLE001 - a malformed upstream card: ours says "other"
        return None


def card_facts(ws: Workspace, model_dir: Path) -> dict:
    """Everything a card says about the model in `model_dir`, as JSON-ready data.

    Returns `{"id", "path", "kind", "parent", "parents" (nearest first), "architecture": {"class",
    "model_type", "layers", "heads", "kv_heads", "width", "vocab", "context", "dtype",
    "tied_embeddings"}, "parameters", "bytes", "weights_bytes", "tokenizer": {...} | None, "stages":
    [{"model", "kind", "run_id", "step", "val_loss", "method", "hyperparameters", "data", ...}]
    (oldest first), "datasets": [snapshot ids], "evaluations": [{"task", "metric", "score", "ci95",
    ...}], "quantization": {...} | None, "source", "imported_at", "license", "language"}`; a fact that
    is not known is None (or empty)."""
    model_dir = Path(model_dir)
    info = read_info(model_dir)
    kind = kind_of(info)
    parents = _parents(ws, info)
    chain = [(model_dir.name, info)] + [(p, read_info(ws.model(p))) for p in parents
                                        if "/" not in p and ws.model(p).is_dir()]
    stages = [_stage(ws, m, i) for m, i in reversed(chain) if kind_of(i) not in ("quantized", "imported")
              or m == model_dir.name]
    files = [f for f in model_dir.rglob("*") if f.is_file() and f.name != "README.md"]
    upstream = _upstream(model_dir)
    lineage = _lineage(info)
    return {"id": model_dir.name, "path": str(model_dir), "kind": kind, "parent": parents[0] if parents else None,
            "parents": parents, "architecture": _architecture(model_dir),
            "parameters": count_parameters(model_dir), "bytes": sum(f.stat().st_size for f in files),
            "weights_bytes": sum(f.stat().st_size for f in files if f.suffix in (".safetensors", ".bin")),
            "tokenizer": _tokenizer(model_dir), "stages": stages,
            "datasets": list(dict.fromkeys(s["data"]["snapshot"] for s in stages if s.get("data"))),
            "evaluations": _evaluations(ws, model_dir.name), "quantization": info.get("quantization") or None,
            "source": info.get("source") or lineage.get("imported_from"), "imported_at": info.get("imported_at"),
            "license": (upstream.license if upstream else None) or ("apache-2.0" if kind != "imported" else "other"),
            "language": (upstream.language if upstream else None) or "en"}


# --------------------------------------------------------------------------- the card


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _hp(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _size(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _description(f: dict) -> str:
    a = f["architecture"]
    params = f"{f['parameters']:,}" if f["parameters"] else "unknown"
    rows = [("Class", a["class"]), ("Layers", a["layers"]), ("Attention heads (key/value)",
            f"{a['heads']} ({a['kv_heads']})" if a["heads"] else None), ("Width", a["width"]),
            ("Vocabulary", a["vocab"]), ("Context (tokens)", a["context"]), ("Parameters", params),
            ("Size on disk", _size(f["bytes"])), ("Weights dtype", a["dtype"])]
    made = {"pretrained": "pretrained from scratch", "sweep": "the best trial of a hyperparameter sweep",
            "sft": "fine-tuned on instructions (SFT)", "reward": "a reward model, trained on preference pairs",
            "dpo": "aligned with DPO", "grpo": "aligned with GRPO", "quantized": "a quantized variant",
            "imported": "imported from outside the playground"}[f["kind"]]
    head = f"`{f['id']}` is a causal language model of the LLM Playground: {made}"
    head += f", made from `{f['parent']}`." if f["parent"] else "."
    table = "\n".join(f"| {k} | {_num(v) if v is not None else 'unknown'} |" for k, v in rows)
    return f"## Model description\n\n{head}\n\n| | |\n|---|---|\n{table}"


def _tokenizer_section(f: dict) -> str:
    t = f["tokenizer"]
    if not t:
        return "## Tokenizer\n\nNo tokenizer files in this folder."
    names = [s.get("tokenizer") for s in f["stages"] if s.get("tokenizer")]
    lines = [f"- {k}: {_num(v)}" for k, v in (("trained as", names[0] if names else None), ("class", t["class"]),
             ("algorithm", t["algorithm"]), ("vocabulary", t["vocab_size"]), ("bos", t["bos"]),
             ("eos", t["eos"]), ("pad", t["pad"])) if v is not None]
    lines.append(f"- chat template: {'yes' if t['chat_template'] else 'no'}")
    return "## Tokenizer\n\n" + "\n".join(lines)


def _data_section(f: dict) -> str:
    parts = []
    for stage in f["stages"]:
        d = stage.get("data")
        if not d:
            continue
        text = f"- **{d['role']}**: snapshot `{d['snapshot']}`" + ("" if d["known"] else " (manifest not found)")
        if d.get("sources"):
            text += f", from {', '.join(map(str, d['sources']))}"
        if d["splits"]:
            text += "; " + ", ".join(f"{k} {_num(v)}" for k, v in d["splits"].items())
        parts.append(text)
        parts += [f"  - {s['stage']}: {s['in']:,} in, {s['out']:,} kept, {s['removed']:,} removed"
                  for s in d["stages"]]
    return "## Training data\n\n" + ("\n".join(parts) or "Not recorded (the model came from outside the workspace).")


def _recipe_section(f: dict) -> str:
    parts = []
    for s in f["stages"]:
        if s["kind"] in ("quantized", "imported"):
            continue
        what = f"{s['kind']}" + (f" ({s['method']})" if s.get("method") and s["method"] != s["kind"] else "")
        head = f"- **{s['model']}**: {what}, run `{s.get('run_id', '?')}`"
        head += f", step {s['step']}" if s.get("step") is not None else ""
        head += f", validation loss {s['val_loss']:.4f}" if isinstance(s.get("val_loss"), float) else ""
        parts.append(head)
        hp = s.get("hyperparameters") or {}
        if hp:
            parts.append("  - " + ", ".join(f"{k}={_hp(v)}" for k, v in hp.items() if v is not None))
        if s.get("results"):
            parts.append("  - results: " + ", ".join(f"{k} {_hp(v)}" for k, v in s["results"].items()))
    return "## Training recipe\n\n" + ("\n".join(parts) or "Not recorded.")


def _eval_section(f: dict) -> str:
    if not f["evaluations"]:
        return "## Evaluation\n\nNot evaluated yet (`playground eval --model " + f["id"] + "`)."
    rows = []
    for e in f["evaluations"]:
        ci = f"[{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]" if e.get("ci95") else "n/a"
        rows.append(f"| {e['task']} | {e['metric']} | {e['score']:.3f} | {ci} | {e.get('n') or ''} | {e['eval_id']} |")
    return ("## Evaluation\n\nEach score is the latest evaluation's, with its 95% confidence interval "
            "(score ± 1.96 standard errors over the items).\n\n| task | metric | score | 95% CI | n | evaluation |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))


def _quant_section(f: dict) -> str:
    q = f["quantization"]
    keys = ("method", "format", "scheme", "group_size", "bits", "source")
    lines = [f"- {k.replace('_', ' ')}: {_num(q[k])}" for k in keys if q.get(k) is not None]
    lines += [f"- {k.replace('_', ' ')}: {_num(v)}" for k, v in q.items() if k not in keys
              and isinstance(v, (str, int, float, bool))]
    return "## Quantization\n\n" + "\n".join(lines)


def _lineage_section(f: dict) -> str:
    chain = " <- ".join([f"`{f['id']}`"] + [f"`{p}`" for p in f["parents"]])
    if f["source"]:
        chain += f" <- imported from `{f['source']}`"
    note = "\n\n(each model was made from the one on its right)" if " <- " in chain else ""
    return "## Lineage\n\n" + chain + note


_IMPORTED_LIMITS = """## Intended use and limitations

This model was made outside the playground{source}: its training data, intended use and limitations
are its authors' to state (their card, when there was one, is kept as `README.upstream.md`). In the
playground it is here to be studied, fine-tuned, evaluated and compared; nothing here makes it fit
for production."""

_LIMITS = """## Intended use and limitations

This is a tiny model for learning how language models are built: trained on a small, made-up
world (synthetic stories, a table of invented countries, capitals and animals, simple
instructions). It knows nothing true about the real world: facts outside that world, and often
inside it, come out wrong, fluently. Its answers are not checked for safety, bias or accuracy.
Use it to study training, fine-tuning, alignment, quantization and serving; do not use it in
production or for any decision that matters."""


def _usage_section(f: dict) -> str:
    path = f"workspace/models/{f['id']}"
    return (f"## How to use\n\nWith transformers:\n\n```python\nfrom transformers import AutoModelForCausalLM, "
            f"AutoTokenizer\n\npath = \"{path}\"  # or the Hub repo id once published\n"
            "tok = AutoTokenizer.from_pretrained(path)\nmodel = AutoModelForCausalLM.from_pretrained(path)\n"
            "ids = tok(\"Once upon a time\", return_tensors=\"pt\")\n"
            "print(tok.decode(model.generate(**ids, max_new_tokens=40)[0]))\n```\n\n"
            f"With vLLM:\n\n```python\nfrom vllm import LLM, SamplingParams\n\nllm = LLM(model=\"{path}\")\n"
            "print(llm.generate([\"Once upon a time\"], SamplingParams(max_tokens=40))[0].outputs[0].text)\n```\n\n"
            "In the playground (the OpenAI-compatible server, the Chat page):\n\n```bash\nplayground up\n"
            f"curl -X POST http://127.0.0.1:8000/api/deployments -H 'Content-Type: application/json' "
            f"-d '{{\"model\": \"{f['id']}\"}}'\n```")


def build_card(ws: Workspace, model_dir: Path) -> ModelCard:
    """The model card of `model_dir` (read only: nothing is written)."""
    f = card_facts(ws, Path(model_dir))
    tags = ["llm-playground", f["kind"]] + [t for t in (f["architecture"]["model_type"],) if t]
    if f["quantization"] and f["quantization"].get("method"):
        tags.append(str(f["quantization"]["method"]))
    results = [EvalResult(task_type="text-generation", dataset_type=e["task"], dataset_name=e["task"],
                          metric_type=e["metric"] or "score", metric_value=e["score"],
                          metric_name=f"{e['metric']} (evaluation {e['eval_id']})")
               for e in f["evaluations"] if e.get("score") is not None]
    # base_model names a Hub repo or a workspace model, never a path on this machine.
    base = next((b for b in (f["parent"], f["source"]) if b and not str(b).startswith(("/", ".", "~"))
                 and str(b).count("/") <= 1), None)
    data = ModelCardData(license=f["license"], language=f["language"], library_name="transformers",
                         pipeline_tag="text-generation", tags=list(dict.fromkeys(tags)), base_model=base,
                         datasets=f["datasets"] or None, model_name=f["id"], eval_results=results or None)
    sections = [f"# {f['id']}", _description(f), _tokenizer_section(f), _data_section(f), _recipe_section(f),
                _eval_section(f)]
    if f["quantization"]:
        sections.append(_quant_section(f))
    limits = _IMPORTED_LIMITS.format(source=f" (`{f['source']}`)" if f["source"] else "") \
        if f["kind"] == "imported" else _LIMITS
    sections += [_lineage_section(f), limits, _usage_section(f)]
    return ModelCard.from_template(data, template_str=_TEMPLATE, body="\n\n".join(sections))


def write_card(ws: Workspace, model_dir: Path) -> Path:
    """Write the card to `model_dir/README.md` atomically (a temp file in the folder, then rename)."""
    model_dir = Path(model_dir)
    text = str(build_card(ws, model_dir))
    path = model_dir / "README.md"
    tmp = model_dir / f".README.md.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def try_write_card(ws: Workspace, folder: Path) -> Path | None:
    """`write_card` for a model folder that was just made (export, fine-tuning, alignment, a sweep's best,
    checkpoint export, quantization, import, or an evaluation of it). Best effort: a card that cannot be
    written is logged and the model stays (`playground models card ID --write` writes it again)."""
    import logging

    try:
        return write_card(ws, Path(folder))
    except Exception as e:  # noqa: BLE001 - the model is what matters; its card can be written later
        logging.getLogger(__name__).warning("no model card for %s: %s", Path(folder).name, e)
        return None
