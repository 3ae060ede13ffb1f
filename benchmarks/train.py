"""`playground bench train`: what does Ray Train cost over a plain PyTorch loop?

Three setups train the same model on the same batches for the same number of steps:

1. a plain single-process loop with 2 torch threads (the baseline, measured before
   and after the Ray runs and averaged);
2. our Ray Train recipe with 1 worker x 2 threads;
3. our Ray Train recipe with 2 workers x 1 thread (DDP over gloo).

All three use `training.pretrain.loop.train_step`, so the difference is Ray's: worker
start-up is excluded (timing starts after `warmup` steps), per-step reporting and
the gradient all-reduce are included. MFU divides achieved model FLOP/s by a matmul
peak measured in this same run, on these same threads.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from benchmarks.report import emit
from training.config import PretrainConfig, load_config
from training.data.shards import TokenData
from training.model.flops import device_peak_flops, matmul_peak
from training.model.transformer import Transformer, flops_per_token
from training.pretrain import loop, memory
from training.workspace import PROJECT_ROOT, Workspace


def step_mfu(model_cfg, device, *, batch_size: int, steps: int = 20, warmup: int = 5, precision: str = "bf16",
             compile_model: bool = False) -> dict:
    """The pure-PyTorch training step (training/pretrain/loop.py) of `model_cfg` on random tokens:
    tokens/s and MFU on `device`. `playground bench train` runs it for gpt2-small when a GPU
    is present (bf16 autocast, fused AdamW, SDPA attention, optionally torch.compile)."""
    from training.config import TrainConfig

    device = torch.device(device)
    torch.manual_seed(0)
    model = Transformer(model_cfg).to(device)
    if compile_model:
        model = torch.compile(model)
    optimizer = loop.build_optimizer(model, TrainConfig(), device.type)
    autocast = loop.autocast_factory(precision, device.type)
    g = torch.Generator(device=device).manual_seed(0)
    shape = (batch_size, model_cfg.block_size)
    x = torch.randint(0, model_cfg.vocab_size, shape, device=device, generator=g)
    y = torch.randint(0, model_cfg.vocab_size, shape, device=device, generator=g)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        loop.train_step(model, optimizer, [(x, y)], lr=1e-4, grad_clip=1.0, autocast=autocast)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        loop.train_step(model, optimizer, [(x, y)], lr=1e-4, grad_clip=1.0, autocast=autocast)
    sync()
    seconds = time.perf_counter() - t
    tps = steps * batch_size * model_cfg.block_size / seconds
    peak = device_peak_flops(device, precision)
    fpt = flops_per_token(model_cfg)
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": precision, "compiled": compile_model, "batch": list(shape), "steps": steps,
            "ms_per_step": round(1000 * seconds / steps, 2), "tokens_per_s": round(tps, 1),
            "flops_per_token": fpt, "peak_tflops": round(peak / 1e12, 1) if peak else None,
            "mfu": round(fpt * tps / peak, 4) if peak else None}


def plain_loop(cfg: PretrainConfig, tokens_dir: Path, steps: int, warmup: int, threads: int,
               precision: str | None = None) -> float:
    """Tokens/s of the loop with no Ray at all (in `precision`, default the config's)."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    tc = cfg.train
    model = Transformer(cfg.model)
    model.set_grad_checkpointing(tc.grad_checkpointing)
    optimizer = loop.build_optimizer(model, tc)
    precision = precision or loop.resolve_precision(tc.precision, "cpu")
    autocast = loop.autocast_factory(precision, "cpu")
    micro_bs, grad_accum = tc.batch_size, tc.grad_accum
    if micro_bs == "auto":  # one process holds the whole global batch
        found = memory.find_micro_batch(model, block_size=cfg.model.block_size, global_batch=tc.global_batch,
                                        autocast=autocast, budget_mb=tc.memory_budget_mb)
        micro_bs, grad_accum = found.micro_batch, found.grad_accum
    data = TokenData(tokens_dir)
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        micro = [data.batch("train", micro_bs, cfg.model.block_size, seed=tc.seed, step=step, micro_step=m)
                 for m in range(grad_accum)]
        loop.train_step(model, optimizer, micro, lr=loop.get_lr(step, tc), grad_clip=tc.grad_clip, autocast=autocast)
    elapsed = time.perf_counter() - t0
    return steps * micro_bs * grad_accum * cfg.model.block_size / elapsed


def ray_recipe(cfg: PretrainConfig, ws: Workspace, workers: int, threads: int, steps: int, warmup: int) -> float:
    """Tokens/s of `training.pretrain.pretrain` for steps after the warmup, read from its own metrics."""
    from training.pretrain import pretrain

    run_id = f"bench-{workers}x{threads}-{os.getpid()}"
    cfg = cfg.model_copy(deep=True)
    cfg.scale.num_workers, cfg.scale.threads_per_worker = workers, threads
    # One report per `warmup` steps: the first window holds the warmup, later ones are timed.
    cfg.train = cfg.train.model_copy(update={
        "max_steps": warmup + steps, "log_interval": warmup, "eval_interval": 10**9,
        "checkpoint_interval": 10**9, "sample_tokens": 0, "eval_iters": 1,
    })
    cfg.tracking.mlflow = False
    shutil.rmtree(ws.run(run_id), ignore_errors=True)
    result = pretrain.run(cfg, ws, run_id=run_id)
    if result.error:
        raise RuntimeError(f"Ray Train run {run_id} failed: {result.error}")
    rows = [json.loads(line) for line in (ws.run(run_id) / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["step"] > warmup]
    # Equal-length windows: the mean of tokens/s equals total tokens / total time.
    return sum(r["tokens_per_s"] for r in timed) / len(timed)


def bench_train(config_path: str, overrides=(), steps: int = 30, warmup: int = 5, workspace: Workspace | None = None):
    import ray

    from training.pretrain.inputs import ensure_inputs

    ws = workspace or Workspace.resolve()
    cfg = load_config(config_path, list(overrides))
    if warmup < 1 or steps < warmup:
        from training.errors import UserError

        raise UserError("bench needs --warmup >= 1 and --steps >= --warmup")
    steps = (steps // warmup) * warmup  # whole reporting windows
    inputs = ensure_inputs(cfg, ws, progress=True)
    precision = loop.resolve_precision(cfg.train.precision, "cpu")

    print(f"measuring matmul peaks (2 threads) and {cfg.model.arch} "
          f"{sum(p.numel() for p in Transformer(cfg.model).parameters()) / 1e6:.1f}M, {precision}, "
          f"{steps} timed steps after {warmup} warmup ...", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32, 2), "bf16": matmul_peak(torch.bfloat16, 2)}
    # A shared 2-core VM drifts by several percent over minutes, so the baseline is
    # measured before and after the Ray runs and averaged: drift cancels out of the ratios.
    plain_before = plain_loop(cfg, inputs.tokens_dir, steps, warmup, threads=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_1x2 = ray_recipe(cfg, ws, 1, 2, steps, warmup)
        ray_2x1 = ray_recipe(cfg, ws, 2, 1, steps, warmup)
    finally:
        ray.shutdown()
    plain_after = plain_loop(cfg, inputs.tokens_dir, steps, warmup, threads=2)
    results = {"plain_1x2": (plain_before + plain_after) / 2, "ray_1x2": ray_1x2, "ray_2x1": ray_2x1}
    # The same loop in the other precision, so MFU is known for fp32 and bf16 alike.
    other = "fp32" if precision == "bf16" else "bf16"
    other_tps = plain_loop(cfg, inputs.tokens_dir, max(warmup, steps // 3), warmup, threads=2, precision=other)

    fpt = flops_per_token(cfg.model)
    peak = peaks["bf16" if precision == "bf16" else "fp32"]
    best_ray = max(results["ray_1x2"], results["ray_2x1"])
    figures = {
        "bench": "train",
        "model": f"{Path(config_path).stem} ({cfg.model.arch})",
        "precision": precision,
        "steps": steps,
        "tokens_per_step": (cfg.train.global_batch if cfg.train.batch_size == "auto"
                            else cfg.train.batch_size * cfg.train.grad_accum) * cfg.model.block_size,
        "tokens_per_s": {k: round(v, 1) for k, v in results.items()},
        "plain_before_after": [round(plain_before, 1), round(plain_after, 1)],
        "ray_vs_plain": round(best_ray / results["plain_1x2"], 3),
        "ray_1x2_vs_plain": round(results["ray_1x2"] / results["plain_1x2"], 3),
        "ray_2x1_vs_plain": round(results["ray_2x1"] / results["plain_1x2"], 3),
        "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        "flops_per_token": fpt,
        "mfu": round(fpt * results["plain_1x2"] / peak, 4),
        "mfu_by_setup": {k: round(fpt * v / peak, 4) for k, v in results.items()},
        f"plain_{other}_tokens_per_s": round(other_tps, 1),
        "mfu_fp32": round(fpt * (results["plain_1x2"] if precision == "fp32" else other_tps) / peaks["fp32"], 4),
        "mfu_bf16": round(fpt * (results["plain_1x2"] if precision == "bf16" else other_tps) / peaks["bf16"], 4),
        "host": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
    }
    if torch.cuda.is_available():  # the GPU figure: gpt2-small's training step in bf16, compiled
        gpt2 = load_config(PROJECT_ROOT / "configs/pretrain/gpt2-small.yaml").model
        print("measuring gpt2-small's training step on the GPU (bf16, torch.compile) ...", flush=True)
        figures["gpu_gpt2_small"] = step_mfu(gpt2, "cuda", batch_size=16, compile_model=True)
        print(f"gpt2-small on {figures['gpu_gpt2_small']['device']}: "
              f"{figures['gpu_gpt2_small']['tokens_per_s']:,.0f} tokens/s, MFU {figures['gpu_gpt2_small']['mfu']}")
    print_table(figures)
    emit("train", figures)
    return figures


def print_table(f: dict) -> None:
    print(f"\n{'setup':<28}{'tokens/s':>12}{'vs plain':>10}{'MFU':>8}")
    names = {"plain_1x2": "plain loop, 2 threads", "ray_1x2": "Ray Train 1 worker x 2", "ray_2x1": "Ray Train 2 workers x 1"}
    base = f["tokens_per_s"]["plain_1x2"]
    for key, tps in f["tokens_per_s"].items():
        print(f"{names[key]:<28}{tps:>12,.0f}{tps / base:>9.2f}x{100 * f['mfu_by_setup'][key]:>7.1f}%")
    p = f["matmul_peak_gflops"]
    before, after = f["plain_before_after"]
    print(f"plain loop measured before and after the Ray runs: {before:,.0f} and {after:,.0f} tokens/s (mean above)")
    print(f"matmul peak (2 threads): fp32 {p['fp32']:.0f} GFLOP/s, bf16 {p['bf16']:.0f} GFLOP/s; "
          f"MFU is against the {f['precision']} peak")
    print(f"plain loop MFU: fp32 {100 * f['mfu_fp32']:.1f}% of the fp32 peak, bf16 {100 * f['mfu_bf16']:.1f}% of the bf16 peak")
    print(f"ray_vs_plain = {f['ray_vs_plain']:.3f} (goal >= 0.9)\n")
