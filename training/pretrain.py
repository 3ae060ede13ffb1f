"""Pretraining recipe: the loop of `training/loop.py` run by Ray Train's TorchTrainer.

    playground pretrain --config configs/pretrain/micro.yaml [key=value ...]
    ray job submit --working-dir . -- playground pretrain --config configs/pretrain/micro.yaml

Every Ray call is marked with a numbered banner `# [n] Ray: ...`; everything else
is plain PyTorch. Each of N workers holds a full copy of the model (DDP: gloo on CPU,
nccl on GPU), reads its own shard of the token stream, and averages gradients with
the others once per optimizer step.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from training import checkpoint as ckpt_lib
from training import loop
from training.config import PretrainConfig, dump_config
from training.data import TokenData
from training.errors import UserError
from training.model import Transformer, flops_per_token
from training.prepare import ensure_inputs
from training.tokenizer import load_tokenizer
from training.workspace import Workspace


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker runs. `config` = {"cfg": PretrainConfig dict, "paths": {...}}."""
    cfg = PretrainConfig.model_validate(config["cfg"])
    paths = config["paths"]
    tc = cfg.train
    torch.set_num_threads(cfg.scale.threads_per_worker)  # decide threads on purpose (Ray sets OMP to 1 otherwise)
    # Ray Train logs every report at INFO; one compact progress line from rank 0 reads better.
    logging.getLogger().setLevel(logging.WARNING)

    # [1] Ray: who am I, and on which device?
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    # Same seed on every rank, so every replica starts from identical weights.
    torch.manual_seed(tc.seed)
    model = Transformer(cfg.model).to(device)
    optimizer = loop.build_optimizer(model, tc, device.type)
    precision = loop.resolve_precision(tc.precision, device.type)
    autocast = loop.autocast_factory(precision, device.type)
    scaler = loop.make_scaler(precision, device.type)
    torch.manual_seed(tc.seed + rank)  # ...but different dropout masks per rank
    step = 0

    # [2] Ray: resume. Ray hands back the run's latest checkpoint when the same run
    # (name + storage path) starts again; `resume_from` covers a checkpoint given by path.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            step = _restore(ckpt_dir, model, optimizer, scaler, rank)
    elif paths.get("resume_from"):
        step = _restore(paths["resume_from"], model, optimizer, scaler, rank)

    # [3] Ray: wrap the model in DistributedDataParallel (a no-op wrap for 1 worker).
    ddp_model = ray.train.torch.prepare_model(model)

    data = TokenData(paths["tokens_dir"])
    eval_batches = [(x.to(device), y.to(device)) for x, y in
                    data.eval_batches(tc.batch_size, cfg.model.block_size, tc.eval_iters, seed=tc.seed)]
    tokenizer = load_tokenizer(paths["tokenizer_dir"]) if rank == 0 and tc.sample_tokens else None
    tracker = _Tracker(cfg, paths) if rank == 0 else None
    tokens_per_step = tc.batch_size * cfg.model.block_size * tc.grad_accum * world
    peak = _peak_flops(device, precision) if rank == 0 else None  # for MFU, per worker
    fpt = flops_per_token(cfg.model)
    last = min(tc.max_steps, tc.stop_at or tc.max_steps)
    window_time, window_steps = 0.0, 0

    while step < last:
        t0 = time.perf_counter()
        micro = [data.batch("train", tc.batch_size, cfg.model.block_size, seed=tc.seed, step=step,
                            micro_step=m, rank=rank, world_size=world) for m in range(tc.grad_accum)]
        micro = [(x.to(device), y.to(device)) for x, y in micro]
        stats = loop.train_step(ddp_model, optimizer, micro, lr=loop.get_lr(step, tc),
                                grad_clip=tc.grad_clip, autocast=autocast, scaler=scaler)
        step += 1
        window_time += time.perf_counter() - t0
        window_steps += 1

        do_eval = step % tc.eval_interval == 0 or step == last
        do_ckpt = step % tc.checkpoint_interval == 0 or step == last
        if not (do_eval or do_ckpt or step % tc.log_interval == 0):
            continue
        metrics = {
            "step": step,
            "loss": _mean_across_workers(stats["loss"], world, device),
            "lr": loop.get_lr(step - 1, tc),
            "grad_norm": stats["grad_norm"],
            "tokens_per_s": tokens_per_step * window_steps / max(window_time, 1e-9),
            "tokens_seen": tokens_per_step * step,
            "precision": precision,
            "memory_mb": _memory_mb(device),
        }
        if peak:
            metrics["mfu"] = fpt * metrics["tokens_per_s"] / (peak * world)
        window_time, window_steps = 0.0, 0
        if do_eval:
            metrics.update(loop.evaluate(model, eval_batches, autocast))
            if tokenizer is not None:
                metrics["samples"] = loop.generate_samples(model, tokenizer, tc.sample_prompts, tc.sample_tokens,
                                                           seed=tc.seed, device=device)
        rng_states = _gather_rng_states(world)
        if tracker:
            tracker.log(metrics)
            print(_progress_line(metrics, last), flush=True)

        if do_ckpt and rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                ckpt_lib.save(tmp, model=model, optimizer=optimizer, scaler=scaler, step=step,
                              config=cfg.model_dump(mode="json"), rng_states=rng_states,
                              meta={"run_id": paths["run_id"], "tokenizer_dir": paths["tokenizer_dir"],
                                    "tokens_dir": paths["tokens_dir"], "dataset_id": paths.get("dataset_id"),
                                    "val_loss": metrics.get("val_loss")})
                # [4] Ray: report metrics and persist the checkpoint into the run's storage.
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"checkpoint_{step:06d}")
        else:
            # [4] Ray: report() is a barrier, so every worker calls it at the same steps.
            ray.train.report(metrics)
    if tracker:
        tracker.close()


def _peak_flops(device, precision: str) -> float | None:
    """One device's peak FLOP/s: a known GPU's bf16 datasheet figure (what MFU is quoted
    against, as in nanoGPT and llm.c), or on CPU a matmul measured in the run's precision
    on this worker's threads (about half a second, once)."""
    from training.bench import matmul_peak
    from training.configurator import GPUS

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, gpu in GPUS.items():
            if key != "this-cpu" and key.split("-")[0] in name and ("pcie" in name) == ("pcie" in key):
                return gpu["bf16_tflops"] * 1e12
        return None  # an unknown GPU: no MFU rather than a wrong one
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return matmul_peak(dtype, torch.get_num_threads(), n=1024, iters=5)


def _memory_mb(device) -> float:
    """Peak memory: GPU memory allocated by torch, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e6
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # Linux reports KiB


def _progress_line(m: dict, last: int) -> str:
    line = (f"step {m['step']:>6}/{last}  loss {m['loss']:.4f}  lr {m['lr']:.2e}  "
            f"grad_norm {m['grad_norm']:.2f}  {m['tokens_per_s']:,.0f} tok/s")
    if "mfu" in m:
        line += f"  mfu {100 * m['mfu']:.1f}%"
    if "val_loss" in m:
        line += f"  val_loss {m['val_loss']:.4f}  ppl {m['perplexity']:.2f}"
    for s in m.get("samples", []):
        line += f"\n    {s['prompt']!r} -> {s['text'][:120]!r}"
    return line


def _restore(ckpt_dir, model, optimizer, scaler, rank: int) -> int:
    """Load a checkpoint's state in place; returns the step to continue from."""
    state = ckpt_lib.load(ckpt_dir)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = state["rng_states"]
    torch.set_rng_state(rng[rank % len(rng)])
    return state["step"]


def _mean_across_workers(value: float, world: int, device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world


def _gather_rng_states(world: int) -> list:
    state = torch.get_rng_state()
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


class _Tracker:
    """Rank 0's record of the run: metrics.jsonl and samples.jsonl in the run folder, plus MLflow."""

    def __init__(self, cfg: PretrainConfig, paths: dict):
        self.run_dir = Path(paths["run_dir"])
        self.mlflow = None
        if cfg.tracking.mlflow:
            import mlflow

            mlflow.set_tracking_uri(paths["mlflow_uri"])
            mlflow.set_experiment(cfg.tracking.experiment)
            id_file = self.run_dir / "mlflow_run_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            run = mlflow.start_run(run_id=run_id, run_name=paths["run_id"])
            if run_id is None:
                id_file.write_text(run.info.run_id)
                mlflow.log_params(_flatten(cfg.model_dump(mode="json")))
                mlflow.set_tags({"dataset": paths.get("dataset_id"), "snapshot": paths.get("snapshot") or "-"})
            self.mlflow = mlflow

    def log(self, metrics: dict) -> None:
        row = {k: v for k, v in metrics.items() if k != "samples"}
        row["time"] = time.time()
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if "samples" in metrics:
            with open(self.run_dir / "samples.jsonl", "a") as f:
                f.write(json.dumps({"step": metrics["step"], "samples": metrics["samples"]}) + "\n")
        if self.mlflow:
            numeric = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k not in ("step", "time")}
            self.mlflow.log_metrics(numeric, step=metrics["step"])
            if "samples" in metrics:
                text = "\n\n".join(f"{s['prompt']}{s['text']}" for s in metrics["samples"])
                self.mlflow.log_text(text, f"samples/step_{metrics['step']:06d}.txt")

    def close(self) -> None:
        if self.mlflow:
            self.mlflow.end_run()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: str(v)[:500]})
    return out


# --------------------------------------------------------------------------- driver


def new_run_id(config_path: str | None) -> str:
    stem = Path(config_path).stem if config_path else "run"
    return f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def plan(cfg: PretrainConfig, ws: Workspace, *, run_id: str, resume: bool, progress: bool = False) -> dict:
    """Check everything the workers will need, before any Ray worker starts.

    User mistakes (bad data, a vocabulary mismatch, a missing or corrupt checkpoint)
    surface here as one-line errors instead of as a worker traceback minutes later.
    """
    run_dir = ws.run(run_id)
    resume_from = None
    if resume:
        latest = ckpt_lib.latest(run_dir)
        if latest is None:
            raise UserError(f"cannot resume: no checkpoint in {run_dir}")
        state = ckpt_lib.load(latest)
        if state["config"]["model"] != cfg.model_dump(mode="json")["model"]:
            raise UserError(f"cannot resume {run_id}: model config differs from the checkpoint's")
        resume_from = str(latest)
    elif (run_dir / "config.yaml").exists():
        raise UserError(f"run {run_id!r} already exists: pass --resume {run_id} or choose another run_name")
    inputs = ensure_inputs(cfg, ws, progress=progress)
    data = TokenData(inputs.tokens_dir)
    for r in range(cfg.scale.num_workers):  # each worker's shard must fit one block
        data.batch("train", 1, cfg.model.block_size, seed=0, step=0, rank=r, world_size=cfg.scale.num_workers)
    data.batch("val", 1, cfg.model.block_size, seed=0, step=0)
    return {
        "run_id": run_id, "run_dir": str(run_dir), "tokens_dir": str(inputs.tokens_dir),
        "tokenizer_dir": str(inputs.tokenizer_dir), "resume_from": resume_from,
        # Lineage: which dataset (a pipeline snapshot, when data.snapshot is set) the run reads.
        "dataset_id": cfg.data.dataset_id(), "snapshot": cfg.data.snapshot,
        "mlflow_uri": cfg.tracking.tracking_uri or ws.mlflow_uri(),
    }


def _write_run_record(run_dir: Path, cfg: PretrainConfig, paths: dict) -> None:
    """run.json: what it takes to reproduce the run (`playground pretrain --from-run RUN`)."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             check=False, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    record = {
        "run_id": paths["run_id"], "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"), "seed": cfg.train.seed,
        "dataset": paths["dataset_id"], "snapshot": paths["snapshot"],
        "tokenizer": Path(paths["tokenizer_dir"]).name, "git_commit": git,
        "python": platform.python_version(),
        "packages": {n: pkg(n) for n in ("torch", "ray", "transformers", "tokenizers", "numpy", "llm-playground")},
    }
    tmp = run_dir / ".run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, run_dir / "run.json")


def run(cfg: PretrainConfig, ws: Workspace, *, run_id: str, resume: bool = False, progress: bool = False):
    """Prepare inputs, then train on Ray. Returns Ray Train's `Result`."""
    paths = plan(cfg, ws, run_id=run_id, resume=resume, progress=progress)
    run_dir = Path(paths["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, run_dir / "config.yaml")
    if not resume:
        _write_run_record(run_dir, cfg, paths)

    sc = cfg.scale
    if not ray.is_initialized():
        # Inside `ray job submit` (or with RAY_ADDRESS set) this joins that cluster;
        # otherwise it starts a local one with enough logical CPUs for the workers.
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1,
                                                                       sc.num_workers * sc.threads_per_worker),
                 log_to_driver=True)
    # [5] Ray: N workers, each with `threads_per_worker` CPUs (and a GPU if asked).
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "paths": paths},
        scaling_config=ray.train.ScalingConfig(
            num_workers=sc.num_workers, use_gpu=sc.use_gpu,
            resources_per_worker={"CPU": sc.threads_per_worker, **({"GPU": 1} if sc.use_gpu else {})},
        ),
        # [6] Ray: the run's storage is the workspace run folder (a shared or cloud path on a cluster).
        run_config=ray.train.RunConfig(
            name=run_id, storage_path=str(ws.runs),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            # [7] Ray: a dead worker (OOM kill, lost node) restarts the group from the latest checkpoint.
            failure_config=ray.train.FailureConfig(max_failures=sc.max_failures),
        ),
    )
    return trainer.fit()
