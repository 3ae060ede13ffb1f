"""`playground bench ...`: the benchmark commands (each measures against a baseline taken
in the same run and writes its figures to reports/bench/). The heavy modules load only
when their command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from training.errors import UserError


def add_bench_parsers(sub, add_config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="name", required=True, metavar="NAME")
    p = bench.add_parser("train", help="plain PyTorch loop vs Ray Train (1x2 and 2x1), tokens/s and MFU")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per setup")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    add_config_args(p)
    p.set_defaults(func=cmd_bench_train)
    p = bench.add_parser("serve", help="TTFT and output tokens/s: transformers vs the vLLM engine vs Ray Serve HTTP")
    p.add_argument("--model", "-m", help="exported model id (default: a random-init micro model, made once as "
                                         "bench-micro)")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request (ignore_eos)")
    p.add_argument("--levels", default="1,4,16", help="comma-separated concurrency levels")
    p.add_argument("--requests-per-level", type=int,
                   help="requests at each level (default: max(32, 4 x level); transformers: 8)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every way this many times, one after the other; figures are the medians")
    p.set_defaults(func=cmd_bench_serve)
    p = bench.add_parser("tokenizer", help="our BPE trainer vs Hugging Face tokenizers (time, parity), "
                                           "encode speed of ours, tokenizers and tiktoken")
    p.add_argument("--text", help="text file (default: tinyshakespeare.txt in ../shared/data)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best counts")
    p.set_defaults(func=cmd_bench_tokenizer)
    p = bench.add_parser("inspect", help="time a full model inspection (attention, logit lens) for 64 and "
                                         "256 tokens on the micro and gpt2-small shapes")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure; the best counts")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench_inspect)
    p = bench.add_parser("data", help="the full data pipeline on a generated corpus with planted duplicates, "
                                      "PII and languages: MB/s, 1 vs 2 workers, dup rate left, PII recall")
    p.add_argument("--mb", type=int, default=200, help="corpus size in MB (at least 200 for the recorded figures)")
    p.add_argument("--scaling-mb", type=int, default=50, help="MB used for the 1-vs-2-worker comparison")
    p.set_defaults(func=cmd_bench_data)
    p = bench.add_parser("sft", help="SFT of the demo model: held-out accuracy before and after, Ray Train vs plain "
                                     "TRL tokens/s, memory of full, LoRA and QLoRA")
    p.add_argument("--model", "-m", help="base model id in the workspace (default: the newest `make demo` export)")
    p.add_argument("--steps", type=int, default=960, help="fine-tuning steps for the accuracy figure")
    p.add_argument("--timing-steps", type=int, default=90, help="timed steps per setup for tokens/s (after one log "
                                                                "interval of warmup)")
    p.add_argument("--skip-accuracy", action="store_true", help="leave out the fine-tuning run (accuracy figures)")
    p.add_argument("--pretrain-steps", type=int, help="first pretrain the demo-size model this many steps (make demo: "
                                                       "600) and fine-tune that (model bench-base-N, reused once made; the tuned model is "
                                                       "bench-sft-N)")
    p.set_defaults(func=cmd_bench_sft)
    p = bench.add_parser("align", help="a reward model, DPO and GRPO on the demo's SFT model: reward model accuracy, "
                                       "DPO pair accuracy, margin and KL, GRPO reward gain, the alignment tax")
    p.add_argument("--model", "-m", help="SFT model id in the workspace (default: the newest SFT model of ours)")
    p.set_defaults(func=cmd_bench_align)
    p = bench.add_parser("eval", help="full MMLU against the served model (seconds, questions/s), served vs "
                                      "in-process lm-eval agreement, rerun identity, served vs in-process perplexity")
    p.add_argument("--model", "-m", help="workspace model id (default: the newest `make demo` export, else a "
                                         "random-init micro model)")
    p.add_argument("--agreement-task", default="world_facts,world_arithmetic,world_stories",
                   help="comma-separated tasks run served and in-process")
    p.add_argument("--agreement-limit", type=int, help="items of it (default: all)")
    p.add_argument("--mmlu-limit", type=int, help="questions per MMLU subject (default: all 14,042)")
    p.set_defaults(func=cmd_bench_eval)
    p = bench.add_parser("decoding", help="the decoding lab: greedy and beam search against transformers, the beam-4 "
                                          "tree of 32 tokens and four strategies side by side through the API (ms)")
    p.add_argument("--model", "-m", help="workspace model id (default: the newest `make demo` export)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each (the median is reported)")
    p.set_defaults(func=cmd_bench_decoding)
    p = bench.add_parser("leaderboard", help="the leaderboard with many models: GET /api/leaderboard and the Evaluate "
                                             "page in ms (goal < 2000), against one model")
    p.add_argument("--models", type=int, default=60, help="models on the board (each with 66 scores)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each (the median is reported)")
    p.set_defaults(func=cmd_bench_leaderboard)
    p = bench.add_parser("quantize", help="int8 (W8A8) and int4 (W4A16) variants of a model: size, world-facts accuracy "
                                          "and perplexity against fp32, whether and how fast vLLM serves them")
    p.add_argument("--model", "-m", help="workspace model id (default: demo-align)")
    p.add_argument("--prefix", default="", help="put before the variants' ids: <prefix><model>-int8 and -int4")
    p.set_defaults(func=cmd_bench_quantize)


def _workspace(args):
    from training.workspace import Workspace

    return Workspace.resolve(args.workspace)


def cmd_bench_data(args) -> None:
    from benchmarks.data import bench_data

    if args.mb < 1 or args.scaling_mb < 1:
        raise UserError("--mb and --scaling-mb must be >= 1")
    bench_data(mb=args.mb, scaling_mb=args.scaling_mb, workspace=_workspace(args))


def cmd_bench_sft(args) -> None:
    from benchmarks.sft import bench_sft

    bench_sft(model=args.model, steps=args.steps, timing_steps=args.timing_steps, skip_accuracy=args.skip_accuracy,
              pretrain_steps=args.pretrain_steps, workspace=_workspace(args))


def cmd_bench_align(args) -> None:
    from benchmarks.align import bench_align

    bench_align(model=args.model, workspace=_workspace(args))


def cmd_bench_eval(args) -> None:
    from benchmarks.eval import bench_eval

    for name in ("agreement_limit", "mmlu_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    bench_eval(model=args.model, agreement_task=args.agreement_task, agreement_limit=args.agreement_limit,
               mmlu_limit=args.mmlu_limit, workspace=_workspace(args))


def cmd_bench_decoding(args) -> None:
    from benchmarks.decoding import bench_decoding

    if args.repeats < 1:
        raise UserError("--repeats must be >= 1")
    bench_decoding(model=args.model, repeats=args.repeats, workspace=_workspace(args))


def cmd_bench_leaderboard(args) -> None:
    from benchmarks.leaderboard import bench_leaderboard

    if args.models < 1 or args.repeats < 1:
        raise UserError("--models and --repeats must be >= 1")
    bench_leaderboard(models=args.models, repeats=args.repeats)


def cmd_bench_quantize(args) -> None:
    from benchmarks.quantize import bench_quantize

    bench_quantize(model=args.model, prefix=args.prefix, workspace=_workspace(args))


def cmd_bench_train(args) -> None:
    from benchmarks.train import bench_train

    bench_train(config_path=args.config or "configs/pretrain/micro.yaml", overrides=args.overrides,
                steps=args.steps, warmup=args.warmup, workspace=_workspace(args))


def cmd_bench_serve(args) -> None:
    from benchmarks.serve import bench_serve

    bench_serve(model=args.model, max_tokens=args.max_tokens, levels=args.levels,
                requests_per_level=args.requests_per_level, rounds=args.rounds, workspace=_workspace(args))


def cmd_bench_tokenizer(args) -> None:
    from benchmarks.tokenizer import bench_tokenizer

    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    bench_tokenizer(args.text, repeats=args.repeats)


def cmd_bench_inspect(args) -> None:
    from benchmarks.inspection import bench_inspect

    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    bench_inspect(repeats=args.repeats, threads=args.threads)
