"""`playground`: one command line for every stage.

    playground data prepare   --config configs/pretrain/micro.yaml
    playground data run       --config configs/data/starter.yaml [--workers N] [key=value ...]
    playground data list | show ID | diff A B
    playground tokenizer train --config configs/pretrain/micro.yaml [--trainer hf|scratch]
    playground tokenizer lab-train --upload ID | --dataset ID [--model unigram] [--vocab-size 1024]
    playground pretrain       --config configs/pretrain/micro.yaml [--dry-run] [--resume RUN] [key=value ...]
    playground pretrain       --from-run RUN [key=value ...]     # the same config again, as a new run
    playground sft            --config configs/sft/demo.yaml [--resume RUN] [key=value ...]
    playground mlflow         [--port 5000]                      # the MLflow UI on the workspace's runs
    playground export RUN     [--out DIR]
    playground sample RUN     --prompt "Once upon a time"
    playground runs
    playground models list | show ID | lineage ID | card ID | checkpoints RUN | export RUN STEP | diff A B
    playground models quantize ID --method int8|int4 | import PATH|OWNER/NAME | publish ID REPO | delete ID
    playground up [--model ID] | down | status
    playground bench train | sft | serve | tokenizer | inspect | data

User mistakes print one line on stderr and exit with code 2. Heavy imports (torch,
ray) happen inside the subcommands so `playground --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cluster.cli_bench import add_bench_parsers
from cluster.cli_benchmark import add_benchmark_parsers
from cluster.cli_eval import add_eval_parsers
from cluster.cli_models import add_models_parsers
from cluster.cli_posttrain import add_posttrain_parsers
from training.errors import UserError

EXIT_USER_ERROR = 2


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="a run YAML in configs/ (default: code defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="playground", description="LLM Playground: build, train and serve LLMs on Ray.")
    parser.add_argument("--workspace", "-w", help="workspace folder (default: $PLAYGROUND_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = data.add_parser("prepare", help="read and split the run's data.sources into a snapshot, in-process "
                                        "(no cleaning, no Ray), and tokenize it if the tokenizer exists")
    _add_config_args(p)
    p.set_defaults(func=cmd_data_prepare)
    p = data.add_parser("run", help="clean, dedup and split sources on Ray Data into a versioned snapshot")
    p.add_argument("--workers", type=int, help="read/clean tasks at once (default: one per CPU)")
    _add_config_args(p)
    p.set_defaults(func=cmd_data_run)
    p = data.add_parser("list", help="the snapshots in the workspace, newest first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_data_list)
    p = data.add_parser("show", help="a snapshot's manifest and what each stage removed")
    p.add_argument("snapshot")
    p.add_argument("--json", action="store_true", help="print the manifest and stats as JSON")
    p.set_defaults(func=cmd_data_show)
    p = data.add_parser("diff", help="what changed between two snapshots (config, inputs, counts, outputs)")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=cmd_data_diff)

    tok = sub.add_parser("tokenizer", help="tokenizers").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tok.add_parser("train", help="train the run's tokenizer (byte-level BPE unless tokenizer.model says otherwise)")
    p.add_argument("--force", action="store_true", help="retrain even if it exists")
    p.add_argument("--trainer", choices=["hf", "scratch"],
                   help="hf: Hugging Face tokenizers; scratch: our own BPE (training/tokenizers/bpe); "
                        "same as the override tokenizer.trainer=...")
    _add_config_args(p)
    p.set_defaults(func=cmd_tokenizer_train)
    p = tok.add_parser("lab-train", help="train a tokenizer-lab tokenizer on an upload or a dataset "
                                         "(what POST /api/tokenizers/train runs as a Ray job)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--upload", help="an upload id (POST /api/uploads)")
    src.add_argument("--dataset", help="a workspace dataset id (its train split)")
    p.add_argument("--name", help="the tokenizer's folder name (default: lab-<model><vocab>[s]-<text hash>)")
    p.add_argument("--model", choices=["bpe", "wordpiece", "unigram"], default="bpe")
    p.add_argument("--trainer", choices=["hf", "scratch"], default="hf")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="replace a tokenizer of the same name")
    p.set_defaults(func=cmd_tokenizer_lab_train)

    p = sub.add_parser("pretrain", help="pretrain a transformer from scratch on Ray Train")
    p.add_argument("--dry-run", action="store_true", help="print the model's parameter counts and exit")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    p.add_argument("--from-run", metavar="RUN", help="train again with RUN's recorded config (run.json) as a new "
                                                     "run; overrides still apply")
    _add_config_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("tune", help="sweep pretraining or fine-tuning hyperparameters with Ray Tune (ASHA), e.g. "
                                    "--config configs/tune/lr.yaml")
    p.add_argument("--config", "-c", required=True, help="a sweep YAML in configs/tune/")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of the sweep file, e.g. num_samples=8 fixed.train.max_steps=100")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("export", help="export a checkpoint to Hugging Face format (transformers, vLLM)")
    p.add_argument("run", help="run id, run folder or checkpoint folder")
    p.add_argument("--out", help="output folder (default: workspace/models/<run id>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("run", help="run id, run folder or checkpoint folder")
    p.add_argument("--prompt", "-p", action="append", help="prompt (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=50, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("mlflow", help="the MLflow UI on this workspace's runs and trials (127.0.0.1:5000)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_mlflow)

    p = sub.add_parser("runs", help="list runs and their last metrics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("up", help="start Ray, the Serve applications and the UI (their HTTP on 127.0.0.1)")
    p.add_argument("--model", "-m", action="append", default=[], help="exported model id to serve (repeatable)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop the UI, Serve and Ray")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="the cluster, each deployment and the models")
    p.set_defaults(func=cmd_status)

    add_posttrain_parsers(sub, _add_config_args)
    add_eval_parsers(sub, _add_config_args)
    add_models_parsers(sub)
    add_benchmark_parsers(sub)
    add_bench_parsers(sub, _add_config_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValueError as e:
        # `ray.init` in a terminal joins a cluster that `ray start` (or `playground up`) left on
        # this machine, and then refuses the CPU count the recipes ask for a local one.
        if "connecting to an existing cluster" not in str(e):
            raise
        print(f"error: a Ray cluster is already running on this machine (playground up or ray start): run "
              f"`{args.command}` on it as a job (the UI's Jobs page, or `ray job submit --address "
              f"http://127.0.0.1:8265 -- playground {args.command} ...` with RAY_AUTH_MODE=token), or stop it "
              f"first with `playground down`", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands


def _workspace(args):
    from training.workspace import Workspace

    return Workspace.resolve(args.workspace)


def _config(args):
    from training.config import load_config

    return load_config(args.config, args.overrides)


def cmd_data_prepare(args) -> None:
    from training.pretrain import inputs as prepare

    cfg, ws = _config(args), _workspace(args)
    manifest = prepare.prepare_text(cfg, ws, progress=True)
    dataset_dir = ws.dataset(cfg.data.dataset_id())
    state = "reused" if manifest.get("reused") else "wrote"
    docs = {s: manifest["outputs"][f"{s}.jsonl"]["docs"] for s in ("train", "val", "test")}
    print(f"{state} dataset {cfg.data.dataset_id()} at {dataset_dir} "
          f"({', '.join(f'{s} {n:,}' for s, n in docs.items() if n)} documents)")
    for s in manifest.get("skipped_inputs", []):
        print(f"  skipped {s['path']}: {s['reason']}")
    tok_dir = prepare.tokenizer_dir(cfg, ws)
    if (tok_dir / "tokenizer.json").is_file():
        inputs = prepare.ensure_inputs(cfg, ws, progress=True)
        print(f"tokens at {inputs.tokens_dir}")
    else:
        print(f"no tokenizer yet: run `playground tokenizer train --config {args.config or '...'}` next")


def cmd_tokenizer_train(args) -> None:
    from training.pretrain import inputs as prepare

    if args.trainer:
        args.overrides = [*args.overrides, f"tokenizer.trainer={args.trainer}"]
    cfg, ws = _config(args), _workspace(args)
    out = prepare.train_tokenizer(cfg, ws, progress=True, force=args.force)
    print(f"tokenizer {out.name} at {out}")


def cmd_tokenizer_lab_train(args) -> None:
    from training.data import uploads
    from training.tokenizers import tokenlab

    ws = _workspace(args)
    texts = [uploads.read_upload(ws, args.upload)] if args.upload else uploads.read_dataset(ws, args.dataset)

    def progress(done: int, total: int) -> None:
        print(f"progress {done}/{total}", flush=True)  # the API reads these lines from the job's logs

    entry = tokenlab.train(ws, texts, model=args.model, trainer=args.trainer, vocab_size=args.vocab_size,
                           min_frequency=args.min_frequency, name=args.name, overwrite=args.overwrite,
                           progress=progress)
    print(f"tokenizer {entry['name']} at {entry['path']} ({entry['trainer']} {entry['model']}, "
          f"{entry['vocab_size']} tokens)")


def _config_from_run(args, ws):
    """The config recorded in a run's run.json (else its config.yaml), a new run name, plus overrides."""
    from training.config import (
        PretrainConfig,
        deep_merge,
        parse_overrides,
        read_yaml,
        validate,
    )

    if args.config or args.resume:
        raise UserError("--from-run takes the whole config from the run: leave out --config and --resume")
    run_dir = ws.run(args.from_run)
    record = run_dir / "run.json"
    if record.is_file():
        base = json.loads(record.read_text())["config"]
    elif (run_dir / "config.yaml").is_file():
        base = read_yaml(run_dir / "config.yaml")
    else:
        raise UserError(f"--from-run: no run {args.from_run!r} in {ws.runs} (see `playground runs`)")
    base["run_name"] = None  # a new run beside the old one
    return validate(PretrainConfig, deep_merge(base, parse_overrides(list(args.overrides))), source=str(record))


def cmd_pretrain(args) -> None:
    ws = _workspace(args)
    cfg = _config_from_run(args, ws) if args.from_run else _config(args)
    if args.dry_run:
        _print_param_table(cfg)
        return
    from training.pretrain import pretrain

    run_id = args.resume or cfg.run_name or pretrain.new_run_id(
        f"{args.from_run}-again" if args.from_run else args.config)
    result = pretrain.run(cfg, ws, run_id=run_id, resume=bool(args.resume), progress=True)
    if result.error:
        user_error = pretrain.user_error_from(result.error)
        if user_error is not None:  # e.g. out of memory, naming what to change: one line, exit code 2
            raise user_error
        raise SystemExit(f"training failed: {result.error}")
    m = result.metrics or {}
    print(f"run {run_id}: step {m.get('step')}  loss {m.get('loss', float('nan')):.4f}  "
          f"val_loss {m.get('val_loss', float('nan')):.4f}  checkpoint {result.checkpoint.path if result.checkpoint else None}")


def cmd_tune(args) -> None:
    from training.pretrain import sweep, sweep_record

    ws = _workspace(args)
    cfg, base, name = sweep.load_sweep(args.config, args.overrides)
    record = sweep.run(cfg, base, ws, name=name, progress=True)
    for t in sorted(record["trials"].values(), key=lambda t: t["trial"]):
        params = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        best = f"{t['best_metric']:.4f}" if t["best_metric"] is not None else "-"
        print(f"{t['trial']}  {t['status']:<13} step {t['step']}  best {record['metric']} {best}  {params}")
    reg = record.get("registered") or {}
    if reg.get("model"):
        print(f"best checkpoint exported to {reg['path']}"
              + (f" and registered as MLflow model {reg['mlflow_model']} v{reg['mlflow_version']}"
                 if reg.get("mlflow_version") else ""))
    print(json.dumps(sweep_record.summary_line(record)))


def _print_param_table(cfg) -> None:
    from training.model.transformer import Transformer, flops_per_token, param_breakdown

    counts = param_breakdown(Transformer(cfg.model))
    mc = cfg.model
    print(f"{mc.arch} model: {mc.n_layer} layers, {mc.n_head} heads ({mc.kv_heads} kv), width {mc.n_embd}, "
          f"context {mc.block_size}, vocab {mc.vocab_size}, {'tied' if mc.tie_embeddings else 'untied'} embeddings")
    lay = mc.layout
    print(f"  components: {lay.pos_embedding} positions, {lay.norm_position}-{lay.norm}, {lay.mlp} MLP "
          f"(width {mc.mlp_hidden}), {'with' if lay.bias else 'no'} biases")
    for name, n in counts.items():
        share = 100.0 * n / counts["total"]
        print(f"  {name:<20}{n:>14,}  {share:5.1f}%")
    tc, sc = cfg.train, cfg.scale
    if tc.batch_size == "auto":  # the micro-batch is measured when training starts
        batch, sequences = f"batch auto (global {tc.global_batch}); ", tc.global_batch
    else:
        batch, sequences = "", tc.batch_size * tc.grad_accum * sc.num_workers
    tokens = sequences * mc.block_size
    print(f"training FLOPs/token {flops_per_token(mc):,.0f}; {batch}tokens/step {tokens:,}; "
          f"total tokens {tokens * tc.max_steps:,}")


def cmd_export(args) -> None:
    from training.model import checkpoint
    from training.model.export import export_hf

    ws = _workspace(args)
    model, config, meta, ckpt_dir, step = checkpoint.load_model(args.run, ws.runs)
    run_id = meta.get("run_id") or ckpt_dir.parent.name
    out = Path(args.out) if args.out else ws.model(run_id)
    tokenizer_dir = meta.get("tokenizer_dir")
    if not tokenizer_dir or not Path(tokenizer_dir).is_dir():
        raise UserError(f"the tokenizer of {run_id} is missing ({tokenizer_dir})")
    info = {"run_id": run_id, "checkpoint": str(ckpt_dir), "step": step, "val_loss": meta.get("val_loss"),
            "config": config}
    export_hf(model, out, tokenizer_dir=tokenizer_dir, extra_files={"playground.json": json.dumps(info, indent=2)})
    if out.parent == ws.models:
        from training.registry.card import try_write_card

        try_write_card(ws, out)  # README.md: the model card
    print(f"exported {run_id} (step {step}) to {out}")


def cmd_sample(args) -> None:
    import torch

    from training.model import checkpoint
    from training.tokenizers.tokenizer import load_tokenizer

    ws = _workspace(args)
    model, _, meta, ckpt_dir, step = checkpoint.load_model(args.run, ws.runs)
    tok = load_tokenizer(meta["tokenizer_dir"])
    gen = torch.Generator().manual_seed(args.seed)
    for prompt in args.prompt or ["Once upon a time"]:
        ids = tok.encode(prompt) or [tok.eos_token_id]
        if len(ids) >= model.config.block_size:
            raise UserError(f"--prompt is {len(ids)} tokens; the model's context (model.block_size) is "
                            f"{model.config.block_size}")
        out = model.generate(torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k or None, top_p=args.top_p if args.top_p < 1 else None,
                             eos_token_id=tok.eos_token_id, generator=gen)
        print(f"--- {ckpt_dir.parent.name} step {step}")
        print(prompt + tok.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))


def cmd_runs(args) -> None:
    from training.workspace import Workspace, run_summary

    ws: Workspace = _workspace(args)
    rows = [run_summary(r) for r in ws.list_runs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"no runs in {ws.runs}")
        return
    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    print(f"{'run':<36}{'step':>8}{'loss':>9}{'val_loss':>10}{'ppl':>9}{'tok/s':>10}  checkpoint")
    for r in rows:
        print(f"{r['run']:<36}{cell(r, 'step', 'd'):>8}{cell(r, 'loss', '.4f'):>9}{cell(r, 'val_loss', '.4f'):>10}"
              f"{cell(r, 'perplexity', '.2f'):>9}{cell(r, 'tokens_per_s', ',.0f'):>10}  {r['checkpoint'] or '-'}")


def cmd_up(args) -> None:
    from cluster import local

    local.up(_workspace(args), args.model)


def cmd_down(args) -> None:
    from cluster import local

    local.down(_workspace(args))


def cmd_status(args) -> int:
    from cluster import local

    return local.status(_workspace(args))


def cmd_mlflow(args) -> None:
    import os
    import shutil

    ws = _workspace(args)
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if exe is None:
        raise UserError("mlflow is not installed in this environment (make install installs it)")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1-65535, got {args.port}")
    ws.runs.mkdir(parents=True, exist_ok=True)
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {ws.mlflow_uri()} (Ctrl-C stops it)", flush=True)
    os.execv(exe, [exe, "ui", "--backend-store-uri", ws.mlflow_uri(), "--host", "127.0.0.1",
                   "--port", str(args.port)])


def cmd_data_run(args) -> None:
    from training.config import load_config
    from training.data import pipeline
    from training.data.config import PipelineConfig

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    cfg = load_config(args.config, args.overrides, schema=PipelineConfig)

    def progress(step: int, steps: int, name: str) -> None:
        print(f"progress: {step - 1}/{steps} {name}", flush=True)  # the API's job view reads these lines

    m = pipeline.run(cfg, _workspace(args), workers=args.workers, progress=progress)
    print("progress: 4/4 done", flush=True)
    counts = m["counts"]
    for stage, c in counts.items():
        print(f"  {stage:<12} {c['in']:>10,} -> {c['out']:>10,}")
    print(f"{'reused' if m['reused'] else 'wrote'} snapshot {m['id']} at {_workspace(args).dataset(m['id'])}")
    print(json.dumps({"snapshot": m["id"], "reused": m["reused"], "docs_in": counts["read"]["in"],
                      "docs_out": counts["split"]["out"], "timings_s": m.get("timings")}))


def cmd_data_list(args) -> None:
    from training.data.snapshot import list_snapshots

    snaps = list_snapshots(_workspace(args))
    if args.json:
        print(json.dumps(snaps, indent=2))
        return
    if not snaps:
        print("no snapshots yet: playground data run --config configs/data/starter.yaml")
    for s in snaps:
        parent = f"  parent {s['parent']}" if s["parent"] else ""
        print(f"{s['id']:<28} {s['created_at']}  {s['docs_in']:>9,} -> {s['docs_out']:>9,} docs  "
              f"{', '.join(s['sources'])}{parent}")


def cmd_data_show(args) -> None:
    from training.data.snapshot import load_manifest, load_stats

    ws = _workspace(args)
    m, stats = load_manifest(ws, args.snapshot), load_stats(ws, args.snapshot)
    if args.json:
        print(json.dumps({"manifest": m, "stats": stats}, indent=2))
        return
    print(f"snapshot {m['id']}  created {m['created_at']}  parent {m['parent'] or '-'}  "
          f"code {(m['code_version'].get('git') or '?')[:10]}")
    for i in m["inputs"]:
        print(f"  input  {i['path']}  {(i['sha256'] or '-')[:16]}")
    for s in m.get("skipped_inputs", []):
        print(f"  skipped {s['path']}: {s['reason']}")
    print(f"  {'stage':<12} {'in':>10} {'out':>10}  removed because")
    for row in stats["stages"]:
        why = ", ".join(f"{r} {c:,}" for r, c in sorted(row["reasons"].items(), key=lambda x: -x[1])[:4])
        replaced = ", ".join(f"{k} {v:,}" for k, v in (row.get("replaced") or {}).items() if v)
        extra = f"  replaced: {replaced}" if replaced else ""
        print(f"  {row['stage']:<12} {row['in']:>10,} {row['out']:>10,}  {why}{extra}")
    for name, o in m["outputs"].items():
        docs = f"{o['docs']:>9,} docs" if "docs" in o else " " * 14
        print(f"  {name:<14} {docs}  {o['size']:>12,} bytes  sha256 {o['sha256'][:16]}")


def cmd_data_diff(args) -> None:
    from training.data.snapshot import diff

    d = diff(_workspace(args), args.a, args.b)
    print(f"{d['a']} -> {d['b']}{'  (parent -> child)' if d['related'] else ''}")
    for key, (a, b) in d["config"].items():
        print(f"  config {key}: {a!r} -> {b!r}")
    for kind, paths in d["inputs"].items():
        for p in paths:
            print(f"  input {kind}: {p}")
    for stage, c in d["counts"].items():
        if c["a"] != c["b"]:
            print(f"  {stage:<12} {c['a']} -> {c['b']} docs")
    for name, o in d["outputs"].items():
        print(f"  {name:<12} {'same' if o['same'] else 'changed'} ({o['docs_a']} -> {o['docs_b']} docs)")


if __name__ == "__main__":
    sys.exit(main())
