"""`playground sft`: fine-tune a model on instructions (training/posttrain/sft.py, on Ray Train);
`playground experiment`: variants of one fine-tuning config, side by side (posttrain/experiment.py).

    playground sft --config configs/sft/demo.yaml [key=value ...]
    playground sft --config configs/sft/demo.yaml --resume RUN
    playground experiment --config configs/experiments/lora-rank.yaml [key=value ...]
    playground reward | dpo | grpo --config configs/align/<method>.yaml [key=value ...]
        (training/posttrain/align.py: a reward model, DPO or GRPO from an SFT model, on Ray Train)
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

    for method, what in (("reward", "train a reward model on preference pairs (TRL RewardTrainer) on Ray Train"),
                         ("dpo", "direct preference optimisation of an SFT model (TRL DPOTrainer) on Ray Train"),
                         ("grpo", "GRPO: the policy samples, a reward model scores (TRL GRPOTrainer), on Ray Train")):
        p = sub.add_parser(method, help=what)
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
        add_config_args(p)
        p.set_defaults(func=cmd_align, method=method)

    p = sub.add_parser("experiment", help="fine-tuning variants side by side (LoRA rank, full vs LoRA, "
                                          "forgetting), e.g. --config configs/experiments/lora-rank.yaml")
    p.add_argument("--config", "-c", required=True, help="an experiment YAML in configs/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of the experiment file, e.g. fixed.train.max_steps=30")
    p.set_defaults(func=cmd_experiment)


def sft_config(args):
    from training.config import load_config
    from training.posttrain.config import SFTConfig

    return load_config(args.config, args.overrides, schema=SFTConfig)


def _train(recipe, cfg, ws, run_id: str, resume: bool, what: str) -> dict:
    """Run `recipe` (training/posttrain/sft.py or align.py) on Ray; its results.json."""
    from training.errors import UserError
    from training.pretrain.pretrain import user_error_from

    result = recipe.run(cfg, ws, run_id=run_id, resume=resume)
    if result.error:
        user_error = user_error_from(result.error)
        if user_error is not None:
            raise user_error
        raise SystemExit(f"{what} failed: {result.error}")
    results = ws.run(run_id) / "results.json"
    if not results.is_file():
        raise UserError(f"run {run_id} ended without results.json")
    return json.loads(results.read_text())


def cmd_sft(args) -> None:
    from training.posttrain import sft
    from training.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    cfg = sft_config(args)
    stem = Path(args.config).stem if args.config else "sft"
    run_id = args.resume or cfg.run_name or f"sft-{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    r = _train(sft, cfg, ws, run_id, bool(args.resume), "fine-tuning")
    print(f"run {run_id}: model {r['model']} ({r['method']}, {r['trainable_params']:,} trainable parameters)")
    for split, acc in r["sft"].items():
        base = r["base"].get(split)
        print(f"  {split:<17} accuracy {acc:.3f}" + (f"  (base model {base:.3f})" if base is not None else ""))
    print(f"  serve it: playground up --model {r['model']}")


def align_config(args):
    """The AlignConfig of `playground <method>`: the command names the method."""
    from training.config import load_config
    from training.errors import UserError
    from training.posttrain.align_config import AlignConfig

    cfg = load_config(args.config, [f"method={args.method}", *args.overrides], schema=AlignConfig)
    if cfg.method != args.method:
        raise UserError(f"method: this is `playground {args.method}`; method={cfg.method} belongs to "
                        f"`playground {cfg.method}`")
    return cfg


def cmd_align(args) -> None:
    from training.posttrain import align
    from training.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    cfg = align_config(args)
    stem = Path(args.config).stem if args.config else args.method
    run_id = args.resume or cfg.run_name or f"{args.method}-{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    r = _train(align, cfg, ws, run_id, bool(args.resume), args.method)
    print(f"run {run_id}: model {r['model']} ({r['method']}, {r['trainable_params']:,} trainable parameters)")
    what = "reward model" if r["method"] == "reward" else "policy prefers chosen"
    print(f"  held-out pairs: {what} {r['heldout_pair_accuracy']:.3f} of {r['heldout_pairs']}, "
          f"mean margin {r['heldout_margin']:+.3f}")
    if r["method"] != "reward":
        print(f"  KL(policy || SFT) {r['kl']:.4f} nats/token; held-out answers {r['sft_accuracy_before']:.3f} -> "
              f"{r['sft_accuracy_after']:.3f} (alignment tax {r['alignment_tax']:+.3f})")
        if "reward_gain" in r:
            print(f"  reward of its replies {r['mean_reward_before']:+.3f} -> {r['mean_reward_after']:+.3f}")
        print(f"  serve it: playground up --model {r['model']}")
    else:
        print(f"  use it: playground grpo --config configs/align/grpo.yaml reward_model={r['model']}")


def cmd_experiment(args) -> None:
    from training.posttrain import experiment
    from training.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    exp, configs, name = experiment.load_experiment(args.config, args.overrides)
    record = experiment.run(exp, configs, ws, name=name)
    rows = experiment.table(record)
    print(f"\nexperiment {record['experiment_id']} ({ws.root / 'experiments' / record['experiment_id']})")
    print(f"{'variant':<12}{'status':<10}{'held-out':>9}{'trainable':>12}{'peak MB':>9}{'tok/s':>8}{'s':>7}"
          f"{'ppl ratio':>10}{'facts +/-':>10}")
    for r in rows:
        print(f"{r['variant']:<12}{r['status']:<10}{_cell(r['heldout_accuracy'], '.3f'):>9}"
              f"{_cell(r['trainable_params'], ','):>12}{_cell(r['peak_memory_mb'], ',.0f'):>9}"
              f"{_cell(r['tokens_per_s'], ',.0f'):>8}{_cell(r['seconds'], '.0f'):>7}"
              f"{_cell(r['pretrain_perplexity_ratio'], '.3f'):>10}{_cell(r['world_facts_change'], '+.2f'):>10}")
    print(json.dumps({"experiment_id": record["experiment_id"], "status": record["status"],
                      "variants": {r["variant"]: {k: v for k, v in r.items() if k != "variant"} for r in rows}}))


def _cell(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "-"
