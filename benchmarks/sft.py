"""`playground bench sft`: what does fine-tuning the demo model buy, and what does Ray cost?

All figures come from one run of the command, on the demo-size model that `make demo`
exports (GPT-2 layout, ~4M parameters; or, with --pretrain-steps N, the same model pretrained
N steps by the bench itself: benchmarks/sft_base.py) and the demo's SFT config
(configs/sft/demo.yaml):

1. accuracy: exact match on the held-out instructions (heldout_template, heldout_entity)
   before and after full fine-tuning through the real recipe (`sft.run`: Ray Train, TRL),
   read from the run's results.json. Goal: the tuned model >= 0.80.
2. ray_vs_plain: the recipe's tokens/s through Ray Train (1 worker x 2 threads, and
   2 workers x 1 thread at the same global batch) against TRL's SFTTrainer in this very
   process with 2 torch threads (`sft.build_trainer`, the code each Ray worker runs). All
   three train the same steps; start-up is excluded: each figure is the tokens between
   the first and the last logged step over the time between them. The plain run is
   measured before and after the Ray runs and averaged, so a shared machine's drift
   cancels out. 90 steps by default (80 timed, about 90 s each): 20 timed steps read
   0.77 on a machine where 80 read 1.03 the same hour. Goal: >= 0.9.
3. memory: full, LoRA and QLoRA fine-tuning of the same model, each in its own process
   (so each peak is its own: peak RSS on CPU, peak allocated CUDA memory on a GPU), a few
   steps of plain TRL each: peak memory, trainable parameters, seconds per step.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sft_base import DEMO_PRETRAIN, base_steps, pick_model, pretrained_base  # noqa: F401 (re-exports)
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace, read_jsonl

DEMO_SFT = PROJECT_ROOT / "configs/sft/demo.yaml"
HELDOUT = ("heldout_template", "heldout_entity")
METHODS = ("full", "lora", "qlora")
GOAL_ACCURACY = 0.8
GOAL_RAY_VS_PLAIN = 0.9
THREADS = 2  # the 2-core machine the figures are for: plain gets 2 threads, Ray 1x2 or 2x1
ACCURACY_RUN = "bench-sft"  # the fine-tuning run (and model) the accuracy figure comes from

LEAN = ["train.eval_prompts=0", f"train.eval_interval={10**9}", "tracking.mlflow=false"]


# --------------------------------------------------------------------------- the model and config


def sft_config(model_id: str, overrides: list[str] = ()):
    """configs/sft/demo.yaml on `model_id`, lean (no MLflow, no evaluation while training)."""
    from training.config import load_config
    from training.posttrain.config import SFTConfig

    return load_config(DEMO_SFT, [f"base.model={model_id}", *LEAN, *overrides], schema=SFTConfig)


def timing_config(cfg, steps: int, workers: int = 1, threads: int = THREADS):
    """`cfg` for a timing run: one log interval of warmup, then `steps` timed steps (whole
    log intervals), no checkpoints or scoring; the global batch stays the config's."""
    window = min(cfg.train.log_interval, steps)
    steps = (steps // window) * window
    cfg = cfg.model_copy(deep=True)
    cfg.train = cfg.train.model_copy(update={
        "max_steps": window + steps, "log_interval": window, "checkpoint_interval": 10**9, "eval_examples": 0,
        "batch_size": max(1, cfg.train.batch_size // workers)})
    cfg.scale = cfg.scale.model_copy(update={"num_workers": workers, "threads_per_worker": threads})
    return cfg


def tokens_per_s(points: list[tuple[float, float]]) -> float:
    """(time, tokens seen) at each logged step -> tokens/s from the first to the last."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        raise RuntimeError(f"need two logged steps to time, got {len(points)}")
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def _clock():
    """A TrainerCallback that notes the time of every step end and every training log."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.steps: list[float] = []
            self.logs: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kw):
            self.steps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and "num_tokens" in logs:  # a training log (not eval, not the summary)
                self.logs.append((time.perf_counter(), float(logs["num_tokens"])))

    return Clock()


def _quiet(trainer):
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # disable_tqdm's print of every log dict
    return trainer


# --------------------------------------------------------------------------- the measurements


def plain_tokens_per_s(cfg, paths: dict, threads: int = THREADS) -> float:
    """TRL's SFTTrainer in this process, no Ray: tokens/s between the first and last log."""
    import torch

    from training.posttrain import sft

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    with tempfile.TemporaryDirectory(prefix="bench-sft-plain-") as tmp:
        trainer, _ = sft.build_trainer(cfg, {**paths, "run_dir": tmp}, torch.device("cpu"), rank=0, tracker=None)
        clock = _clock()
        _quiet(trainer).add_callback(clock)
        trainer.train()
    return tokens_per_s(clock.logs)


def _clear(ws: Workspace, run_id: str) -> None:
    shutil.rmtree(ws.run(run_id), ignore_errors=True)
    shutil.rmtree(ws.model(run_id), ignore_errors=True)


def _fit(cfg, ws: Workspace, run_id: str) -> None:
    from training.posttrain import sft
    from training.pretrain.pretrain import user_error_from

    _clear(ws, run_id)
    result = sft.run(cfg, ws, run_id=run_id)
    if result.error:
        raise user_error_from(result.error) or RuntimeError(f"Ray Train run {run_id} failed: {result.error}")


def ray_tokens_per_s(cfg, ws: Workspace, run_id: str) -> float:
    """The recipe through Ray Train: tokens/s between its first and last logged step (metrics.jsonl)."""
    try:
        _fit(cfg, ws, run_id)
        rows = [r for r in read_jsonl(ws.run(run_id) / "metrics.jsonl") if "loss" in r and "tokens_seen" in r]
        return tokens_per_s([(r["time"], r["tokens_seen"]) for r in rows])
    finally:
        _clear(ws, run_id)  # a timing run leaves nothing behind


def accuracy_run_id(pretrain_steps: int | None) -> str:
    """bench-sft, or bench-sft-N on the bench's own N-step base: a run of another base does not
    overwrite it, so `playground bench align --model bench-sft-2400` keeps naming one model."""
    return f"{ACCURACY_RUN}-{pretrain_steps}" if pretrain_steps else ACCURACY_RUN


def accuracy_run(cfg, ws: Workspace, run_id: str = ACCURACY_RUN) -> dict:
    """Fine-tune through the recipe as `run_id`; its results.json, plus per-task accuracies."""
    _fit(cfg, ws, run_id)
    results = json.loads((ws.run(run_id) / "results.json").read_text())
    if "by_task" not in results:  # the recipe keeps only overall accuracies: score again, same code
        results["by_task"] = _by_task(cfg, ws, results, run_id)
    return results


def _by_task(cfg, ws: Workspace, results: dict, run_id: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.posttrain import adapters, sft_setup

    run = json.loads((ws.run(run_id) / "run.json").read_text())
    base_path = adapters.resolve_model(cfg.base.model, ws)
    paths = {"snapshot": run["snapshot"], "tokenizer_path": str(cfg.base.tokenizer or base_path)}
    out = {}
    for who, model_path, tokenizer in (
            ("base", base_path, sft_setup.load_tokenizer(paths, cfg)),
            ("sft", ws.model(results["model"]), AutoTokenizer.from_pretrained(ws.model(results["model"])))):
        scores = sft_setup.heldout(ws, paths, cfg, AutoModelForCausalLM.from_pretrained(model_path), tokenizer)
        out[who] = {split: s["by_task"] for split, s in scores.items()}
    return out


def memory_child(method: str, cfg_json: dict, paths: dict, steps: int) -> dict:
    """In a fresh process: `steps` steps of plain TRL with `method`; peak memory, parameters, s/step."""
    import torch

    from training.posttrain import adapters, sft
    from training.posttrain.config import SFTConfig

    cuda = torch.cuda.is_available()
    torch.set_num_threads(THREADS)
    cfg = SFTConfig.model_validate(cfg_json)
    cfg.method = method
    cfg.scale.use_gpu = cuda
    cfg.train = cfg.train.model_copy(update={"max_steps": steps, "log_interval": 1, "checkpoint_interval": 10**9})
    if method == "qlora":
        adapters.check_qlora("cuda" if cuda else "cpu")
    rss_before = _rss_mb()
    torch.manual_seed(cfg.train.seed)
    with tempfile.TemporaryDirectory(prefix=f"bench-sft-{method}-") as tmp:
        trainer, _ = sft.build_trainer(cfg, {**paths, "run_dir": tmp}, torch.device("cuda" if cuda else "cpu"),
                                       rank=0, tracker=None)
        trainable, total = adapters.trainable_params(trainer.model)
        clock = _clock()
        _quiet(trainer).add_callback(clock)
        trainer.train()
    peak = (torch.cuda.max_memory_allocated() / 1e6 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)  # Linux: KiB
    s = clock.steps
    return {"peak_memory_mb": round(peak, 1), "memory_kind": "cuda max allocated" if cuda else "peak RSS",
            "rss_before_model_mb": round(rss_before, 1), "trainable_params": trainable, "total_params": total,
            "s_per_step": round((s[-1] - s[0]) / (len(s) - 1), 4) if len(s) > 1 else None, "steps": len(s)}


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e3
    except OSError:
        pass
    return float("nan")


def memory_by_method(cfg, paths: dict, steps: int) -> dict:
    """`memory_child` for each method, each in its own Python process."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-sft-mem-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"cfg": cfg.model_dump(mode="json"), "paths": paths, "steps": steps}))
        for method in METHODS:
            print(f"  {method}: {steps} steps in a fresh process ...", flush=True)
            proc = subprocess.run([sys.executable, "-m", "benchmarks.sft", method, str(spec)], check=False,
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            lines = proc.stdout.strip().splitlines()
            if proc.returncode == 0 and lines:
                out[method] = json.loads(lines[-1])
            else:
                err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
                out[method] = {"error": err[-1] if err else f"exit code {proc.returncode}"}
                print(f"  {method}: failed: {out[method]['error']}", flush=True)
    return out


# --------------------------------------------------------------------------- the figures


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _r(x, nd=3):
    return None if x is None else round(x, nd)


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "ray", "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def assemble(*, model: str, cfg, steps: int | None, accuracy: dict | None, timing: dict, memory: dict,
             host: dict, libs: dict, base_steps: int | None = None) -> dict:
    """The figures, from the measurements (pure: tests/unit/test_bench_sft.py feeds it fakes).

    accuracy: results.json of the fine-tuning run (None when skipped); timing: {"steps",
    "log_interval", "plain_before", "plain_after", "ray_1x2", "ray_2x1"} (tokens/s, a Ray
    figure may be None); memory: {method: memory_child's dict or {"error"}}.
    """
    base = sft = by_split = by_task = None
    if accuracy is not None:
        by_split = {who: {s: accuracy[who].get(s) for s in HELDOUT if s in accuracy[who]} for who in ("base", "sft")}
        by_task = {who: {s: t for s, t in accuracy.get("by_task", {}).get(who, {}).items() if s in HELDOUT}
                   for who in ("base", "sft")}
        base, sft = _mean(by_split["base"].values()), _mean(by_split["sft"].values())
    plain = (timing["plain_before"] + timing["plain_after"]) / 2
    ray = {k: timing.get(k) for k in ("ray_1x2", "ray_2x1") if timing.get(k) is not None}
    best = max(ray.values()) if ray else None
    ratio = best / plain if best is not None else None
    ok = {m: v for m, v in memory.items() if "error" not in v}
    return {
        "bench": "sft",
        "model": model,
        "base_pretrain_steps": base_steps,
        "config": str(DEMO_SFT.relative_to(PROJECT_ROOT)),
        "method": cfg.method,
        "steps": steps,
        "lr": cfg.train.lr,
        "batch_size": cfg.train.batch_size,
        "base_heldout_accuracy": _r(base),
        "sft_heldout_accuracy": _r(sft),
        "goal_sft_heldout_accuracy": GOAL_ACCURACY,
        "meets_goal": None if sft is None else sft >= GOAL_ACCURACY,
        "heldout_accuracy": by_split,
        "heldout_accuracy_by_task": by_task,
        "val_accuracy": None if accuracy is None else {w: accuracy[w].get("val") for w in ("base", "sft")},
        "sft_model": None if accuracy is None else accuracy.get("model"),
        "timing_steps": timing["steps"],
        "timing_log_interval": timing["log_interval"],
        "tokens_per_s": {"plain_1x2": round(plain, 1), **{k: round(v, 1) for k, v in ray.items()}},
        "plain_before_after": [round(timing["plain_before"], 1), round(timing["plain_after"], 1)],
        "ray_vs_plain": _r(ratio),
        **{f"{k}_vs_plain": round(v / plain, 3) for k, v in ray.items()},
        "goal_ray_vs_plain": GOAL_RAY_VS_PLAIN,
        "meets_ray_vs_plain_goal": None if ratio is None else ratio >= GOAL_RAY_VS_PLAIN,
        "peak_memory_mb": {m: v["peak_memory_mb"] for m, v in ok.items()},
        "trainable_params": {m: v["trainable_params"] for m, v in ok.items()},
        "methods": memory,
        "baseline": f"plain single-process TRL SFTTrainer (sft.build_trainer on the CPU, {THREADS} torch threads, no "
                    f"Ray), the same config and timed steps, measured before and after the Ray runs and averaged",
        "machine": host,
        "versions": libs,
    }


def bench_sft(*, model: str | None = None, steps: int = 960, timing_steps: int = 90, skip_accuracy: bool = False,
              pretrain_steps: int | None = None, workspace: Workspace | None = None) -> dict:
    if steps < 1 or timing_steps < 1 or (pretrain_steps is not None and pretrain_steps < 1):
        raise UserError("bench sft needs --steps, --timing-steps and --pretrain-steps >= 1")
    if model and pretrain_steps:
        raise UserError("bench sft: give --model or --pretrain-steps, not both")
    ws = workspace or Workspace.resolve()
    # before the heavy imports: a missing model is a quick one-line error
    model_id = pretrained_base(ws, pretrain_steps) if pretrain_steps else pick_model(ws, model)
    import ray

    from training.posttrain import sft

    cfg = sft_config(model_id)
    plain_cfg = timing_config(cfg, timing_steps)
    tc = plain_cfg.train
    timed = tc.max_steps - tc.log_interval
    print(f"bench sft on {model_id}: {cfg.method} fine-tuning, batch {cfg.train.batch_size}, lr {cfg.train.lr}; "
          f"timing {timed} steps after {tc.log_interval}", flush=True)
    paths = sft.plan(plain_cfg, ws, run_id="bench-sft-plain", resume=False)  # checks model and data; writes nothing

    memory_steps = min(10, max(3, timing_steps))
    print(f"memory of full, LoRA and QLoRA ({memory_steps} steps of plain TRL each) ...", flush=True)
    memory = memory_by_method(cfg, paths, memory_steps)

    print(f"plain TRL, {THREADS} threads ...", flush=True)
    plain_before = plain_tokens_per_s(plain_cfg, paths)
    ray.init(num_cpus=THREADS, include_dashboard=False, log_to_driver=False)
    try:
        print("Ray Train, 1 worker x 2 threads ...", flush=True)
        ray_1x2 = ray_tokens_per_s(plain_cfg, ws, f"bench-sft-1x2-{os.getpid()}")
        print("Ray Train, 2 workers x 1 thread ...", flush=True)
        ray_2x1 = ray_tokens_per_s(timing_config(cfg, timing_steps, workers=2, threads=1), ws,
                                   f"bench-sft-2x1-{os.getpid()}")
    finally:
        ray.shutdown()
    print(f"plain TRL, {THREADS} threads, again ...", flush=True)
    plain_after = plain_tokens_per_s(plain_cfg, paths)
    timing = {"steps": timed, "log_interval": tc.log_interval, "plain_before": plain_before,
              "plain_after": plain_after, "ray_1x2": ray_1x2, "ray_2x1": ray_2x1}

    accuracy = None
    if not skip_accuracy:
        acc_cfg = cfg.model_copy(deep=True)
        acc_cfg.train.max_steps = steps
        run_id = accuracy_run_id(pretrain_steps)
        print(f"fine-tuning {steps} steps through Ray Train (run {run_id}: its metrics.jsonl shows "
              f"progress) ...", flush=True)
        ray.init(num_cpus=THREADS, include_dashboard=False, log_to_driver=False)
        try:
            accuracy = accuracy_run(acc_cfg, ws, run_id)
        finally:
            ray.shutdown()

    figures = assemble(model=model_id, cfg=cfg, steps=None if skip_accuracy else steps, accuracy=accuracy,
                       timing=timing, memory=memory, host=machine(), libs=versions(), base_steps=base_steps(ws, model_id))
    print_table(figures)
    from benchmarks.report import emit

    emit("sft", figures)
    return figures


def print_table(f: dict) -> None:
    print(f"\n{'setup':<28}{'tokens/s':>12}{'vs plain':>10}")
    names = {"plain_1x2": "plain TRL, 2 threads", "ray_1x2": "Ray Train 1 worker x 2", "ray_2x1": "Ray Train 2 workers x 1"}
    base = f["tokens_per_s"]["plain_1x2"]
    for key, tps in f["tokens_per_s"].items():
        print(f"{names[key]:<28}{tps:>12,.0f}{tps / base:>9.2f}x")
    print(f"ray_vs_plain = {f['ray_vs_plain']} (goal >= {f['goal_ray_vs_plain']})")
    print(f"\n{'method':<8}{'peak MB':>10}{'trainable':>12}{'of total':>12}{'s/step':>9}")
    for m, v in f["methods"].items():
        if "error" in v:
            print(f"{m:<8}  failed: {v['error']}")
        else:
            print(f"{m:<8}{v['peak_memory_mb']:>10,.0f}{v['trainable_params']:>12,}{v['total_params']:>12,}"
                  f"{v['s_per_step'] or float('nan'):>9.3f}")
    if f["sft_heldout_accuracy"] is not None:
        print(f"\nheld-out exact match ({f['steps']} steps): base {f['base_heldout_accuracy']:.3f} -> "
              f"SFT {f['sft_heldout_accuracy']:.3f} (goal >= {f['goal_sft_heldout_accuracy']})")
        for split, acc in f["heldout_accuracy"]["sft"].items():
            print(f"  {split:<17} base {f['heldout_accuracy']['base'].get(split)}  SFT {acc}")
    print(flush=True)


if __name__ == "__main__":  # memory_by_method's child: python -m benchmarks.sft METHOD SPEC.json
    import logging

    logging.disable(logging.WARNING)
    _spec = json.loads(Path(sys.argv[2]).read_text())
    try:
        _out = memory_child(sys.argv[1], _spec["cfg"], _spec["paths"], _spec["steps"])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_out), flush=True)
