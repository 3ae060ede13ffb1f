"""`playground eval`: models on evaluation suites with lm-evaluation-harness (evaluation/recipe.py, on Ray).

    playground eval --model demo-20261203-101549 --tasks world,mmlu --limit 50
    playground eval --config configs/eval/world.yaml models=[demo-20261203-101549] backend=hf
    playground eval --checkpoints all --model demo-20261203-101549 --tasks world   # score vs training step
    playground eval --show eval-20261203-170102          # the table of a finished (or running) evaluation
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime


def add_eval_parsers(sub, add_config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("eval", help="evaluate models on suites (world, mmlu, ...) with lm-eval, served or "
                                    "in-process; results in workspace/evals/")
    p.add_argument("--model", "-m", action="append", dest="models", metavar="ID",
                   help="a model to evaluate (repeat for several); sets `models`")
    p.add_argument("--tasks", "-t", help="comma-separated suites, e.g. world,mmlu; sets `tasks`")
    p.add_argument("--backend", choices=("served", "served-chat", "hf"),
                   help="served (the endpoint's /completions), served-chat (its /chat/completions: generation tasks "
                        "only) or hf (in-process)")
    p.add_argument("--limit", type=int, help="at most this many items of each task")
    p.add_argument("--checkpoints", choices=("all",), help="all: --model names runs, and every checkpoint each kept "
                                                          "is evaluated (backend hf): a score against training step")
    p.add_argument("--show", metavar="EVAL_ID", help="print the table of an existing evaluation and stop")
    add_config_args(p)
    p.set_defaults(func=cmd_eval)


def eval_config(args):
    from evaluation.config import EvalConfig
    from training.config import deep_merge, parse_overrides, read_yaml, validate

    data = read_yaml(args.config) if args.config else {}
    flags = {"models": args.models, "tasks": args.tasks.split(",") if args.tasks else None,
             "backend": args.backend, "limit": args.limit, "checkpoints": args.checkpoints}
    data = deep_merge(data, {k: v for k, v in flags.items() if v is not None})
    data = deep_merge(data, parse_overrides(list(args.overrides)))
    if "models" not in data:
        from training.errors import UserError

        raise UserError("models: name at least one model (--model ID, or models=[ID] after --config)")
    return validate(EvalConfig, data, source=str(args.config) if args.config else "config")


def cmd_eval(args) -> None:
    from evaluation import recipe, records
    from training.errors import UserError
    from training.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    if args.show:
        record = records.read_record(ws, args.show)
        if record is None:
            raise UserError(f"--show: no evaluation {args.show!r} in {records.evals_dir(ws)}")
    else:
        cfg = eval_config(args)
        eval_id = cfg.name or f"eval-{datetime.now():%Y%m%d-%H%M%S}"
        if records.read_record(ws, eval_id) is not None:
            raise UserError(f"name: an evaluation {eval_id!r} exists already; choose another name")
        planned = recipe.plan(cfg, ws)  # every mistake named before anything starts
        from cluster.local import join_running_cluster

        join_running_cluster()  # `playground up`'s cluster, if one runs here; before ray is imported
        record = recipe.run(cfg, ws, eval_id=eval_id, planned=planned)
        from training.registry.card import try_write_card
        from training.registry.registry import is_model

        for model in record.get("models") or {}:  # the cards of workspace models gain these scores
            if "/" not in model and is_model(ws.model(model)):
                try_write_card(ws, ws.model(model))
    print_table(record)
    print(json.dumps({"eval_id": record["eval_id"], "status": record["status"], "seconds": record["seconds"],
                      "scores": {f"{r['model']}/{r['task']}": r["score"] for r in record["rows"] + record["groups"]
                                 if r["group"] or len(record["rows"]) <= 12}}))


def print_table(record: dict) -> None:
    """Models x tasks: score, 95% interval and the score normalised to chance (groups first)."""
    rows = [r for r in record["groups"]] + [r for r in record["rows"]
                                             if len(record["rows"]) <= 20 or r["suite"] == r["task"]]
    print(f"\nevaluation {record['eval_id']}: {record['status']} ({record['progress']['done']}/"
          f"{record['progress']['total']} done, backend {record['config']['backend']})")
    print(f"{'model':<28}{'task':<34}{'metric':<14}{'score':>7}{'95% CI':>16}{'vs chance':>10}{'n':>7}")
    for r in rows:
        if r["score"] is None:
            continue
        ci = f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if r["ci95"] else "-"
        norm = f"{r['normalized']:+.3f}" if r["normalized"] is not None else "-"
        print(f"{r['model'][:27]:<28}{r['task'][:33]:<34}{r['metric'][:13]:<14}{r['score']:>7.3f}{ci:>16}"
              f"{norm:>10}{r['n'] or '-':>7}")
    for e in record.get("errors", []):
        print(f"FAILED {e['model']} {e['suite']}: {e['error']}")
