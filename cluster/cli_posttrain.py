"""`playground sft`: fine-tune a model on instructions (training/posttrain/sft.py, on Ray Train).

    playground sft --config configs/sft/demo.yaml [key=value ...]
    playground sft --config configs/sft/demo.yaml --resume RUN
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path


def add_posttrain_parsers(sub, add_config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning (full, LoRA or QLoRA with TRL) on Ray Train")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint (optimizer state too)")
    add_config_args(p)
    p.set_defaults(func=cmd_sft)


def sft_config(args):
    from training.config import load_config
    from training.posttrain.config import SFTConfig

    return load_config(args.config, args.overrides, schema=SFTConfig)


def cmd_sft(args) -> None:
    from training.errors import UserError
    from training.posttrain import sft
    from training.pretrain.pretrain import user_error_from
    from training.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    cfg = sft_config(args)
    stem = Path(args.config).stem if args.config else "sft"
    run_id = args.resume or cfg.run_name or f"sft-{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    result = sft.run(cfg, ws, run_id=run_id, resume=bool(args.resume))
    if result.error:
        user_error = user_error_from(result.error)
        if user_error is not None:
            raise user_error
        raise SystemExit(f"fine-tuning failed: {result.error}")
    results = ws.run(run_id) / "results.json"
    if not results.is_file():
        raise UserError(f"run {run_id} ended without results.json")
    r = json.loads(results.read_text())
    print(f"run {run_id}: model {r['model']} ({r['method']}, {r['trainable_params']:,} trainable parameters)")
    for split, acc in r["sft"].items():
        base = r["base"].get(split)
        print(f"  {split:<17} accuracy {acc:.3f}" + (f"  (base model {base:.3f})" if base is not None else ""))
    print(f"  serve it: playground up --model {r['model']}")
