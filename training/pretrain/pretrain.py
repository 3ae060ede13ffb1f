"""Pretraining recipe: the loop of `training/pretrain/loop.py` run by Ray Train's TorchTrainer.

    playground pretrain --config configs/pretrain/micro.yaml [key=value ...]
    ray job submit --working-dir . -- playground pretrain --config configs/pretrain/micro.yaml

Every Ray call is marked with a numbered banner `# [n] Ray: ...`; everything else
is plain PyTorch. Each of N workers holds a full copy of the model (DDP: gloo on CPU,
nccl on GPU), reads its own shard of the token stream, and averages gradients with
the others once per optimizer step. `scale.strategy` fsdp or deepspeed_zero2/3 shard
the model and optimizer across the workers instead (training/pretrain/strategies.py).
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

from training.config import PretrainConfig, dump_config
from training.data.shards import TokenData
from training.errors import UserError
from training.model import checkpoint as ckpt_lib
from training.model.flops import device_peak_flops, mfu
from training.model.transformer import Transformer, flops_per_token
from training.pretrain import loop, memory, strategies
from training.pretrain.inputs import ensure_inputs
from training.pretrain.tracking import Tracker
from training.tokenizers.tokenizer import load_tokenizer
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
    model.set_grad_checkpointing(tc.grad_checkpointing)
    # Sequences per micro-batch and micro-batches per step: the config's, or measured (batch_size=auto).
    micro_bs, grad_accum = _micro_batch(cfg, model, device, autocast, rank, world, ctx.get_local_world_size())
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

    # [3] Ray: wrap the model in DistributedDataParallel (a no-op wrap for 1 worker), or,
    # with scale.strategy fsdp / deepspeed_zero2/3, shard it (training/pretrain/strategies.py).
    strategy = strategies.wrap(model, optimizer, cfg, device, prepare_ddp=ray.train.torch.prepare_model,
                               batch_size=micro_bs, grad_accum=grad_accum)
    del optimizer  # from here on strategy.optimizer (fsdp/deepspeed build theirs over the shards)

    data = TokenData(paths["tokens_dir"])
    eval_batches = [(x.to(device), y.to(device)) for x, y in
                    data.eval_batches(micro_bs, cfg.model.block_size, tc.eval_iters, seed=tc.seed)]
    # Sharded weights make every forward a collective: then every rank samples, rank 0 records.
    sampling = rank == 0 or strategy.gathers_params
    tokenizer = load_tokenizer(paths["tokenizer_dir"]) if sampling and tc.sample_tokens else None
    tracker = Tracker(cfg, paths) if rank == 0 else None
    tokens_per_step = micro_bs * cfg.model.block_size * grad_accum * world
    peak = _peak_flops(device, precision) if rank == 0 else None  # for MFU, per worker
    fpt = flops_per_token(cfg.model)
    last = min(tc.max_steps, tc.stop_at or tc.max_steps)
    window_time, window_steps = 0.0, 0

    while step < last:
        t0 = time.perf_counter()
        micro = [data.batch("train", micro_bs, cfg.model.block_size, seed=tc.seed, step=step,
                            micro_step=m, rank=rank, world_size=world) for m in range(grad_accum)]
        micro = [(x.to(device), y.to(device)) for x, y in micro]
        # Running out of memory becomes one line naming the settings to change.
        with memory.oom_as_user_error(device, micro_batch=micro_bs, block_size=cfg.model.block_size,
                                      auto=tc.batch_size == "auto", grad_checkpointing=tc.grad_checkpointing):
            stats = strategy.train_step(micro, lr=loop.get_lr(step, tc), grad_clip=tc.grad_clip,
                                        autocast=autocast, scaler=scaler)
        step += 1
        window_time += time.perf_counter() - t0
        window_steps += 1

        do_ckpt = step % tc.checkpoint_interval == 0 or step == last
        # Every checkpoint gets a val_loss: Ray keeps the N best checkpoints by it.
        do_eval = step % tc.eval_interval == 0 or do_ckpt
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
            metrics["mfu"], peak = mfu(fpt * metrics["tokens_per_s"] / world, peak,
                                       lambda: _peak_flops(device, precision))
        window_time, window_steps = 0.0, 0
        if do_eval:
            metrics.update(loop.evaluate(model, eval_batches, autocast))
            if tokenizer is not None:
                with strategy.generation():
                    metrics["samples"] = loop.generate_samples(model, tokenizer, tc.sample_prompts,
                                                               tc.sample_tokens, seed=tc.seed, device=device)
        rng_states = _gather_rng_states(world)
        # Full (unsharded) state dicts; a sharded model is gathered, so every rank calls this.
        model_state, optim_state = strategy.state_dicts() if do_ckpt else (None, None)
        if tracker:
            tracker.log(metrics)
            print(_progress_line(metrics, last), flush=True)

        if do_ckpt and rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                ckpt_lib.save(tmp, model=model_state, optimizer=optim_state, scaler=scaler, step=step,
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
    final = strategy.full_model()  # sharded: every rank joins the gather, rank 0 gets a plain copy
    if tracker:
        tracker.close(final)


def _micro_batch(cfg: PretrainConfig, model, device, autocast, rank: int, world: int,
                 local_world: int) -> tuple[int, int]:
    """(micro-batch, grad_accum): the config's, or with train.batch_size=auto the finder's.

    Every worker must use the same micro-batch (DDP averages equal shares), so rank 0
    measures and sends its answer, or its UserError, to the others.
    """
    tc = cfg.train
    if tc.batch_size != "auto":
        return tc.batch_size, tc.grad_accum
    answer: memory.BatchPlan | UserError | None = None
    if rank == 0:
        try:
            answer = memory.find_micro_batch(
                model, block_size=cfg.model.block_size, global_batch=tc.global_batch, world_size=world,
                workers_per_node=local_world, device=device, autocast=autocast, budget_mb=tc.memory_budget_mb)
        except UserError as e:
            answer = e
    if world > 1:
        box = [answer]
        dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
        answer = box[0]
    if isinstance(answer, UserError):
        raise answer
    if rank == 0:
        print(answer, flush=True)
    return answer.micro_batch, answer.grad_accum


def _peak_flops(device, precision: str) -> float | None:
    """One device's peak FLOP/s for MFU (training/model/flops.py: datasheet bf16 on a known GPU,
    a measured matmul on CPU)."""
    return device_peak_flops(device, precision, cpu_n=1024, cpu_iters=5)


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
            raise UserError(f"cannot resume: {ckpt_lib.no_checkpoint_reason(run_dir)}")
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
        "mlflow_artifacts": None if cfg.tracking.tracking_uri else str(ws.mlflow_artifacts()),
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


def prepare_run(cfg: PretrainConfig, ws: Workspace, *, run_id: str, resume: bool = False, progress: bool = False,
                tags: dict[str, str] | None = None) -> dict:
    """Check and prepare everything (`plan`), then write the run folder's config.yaml and run.json."""
    paths = plan(cfg, ws, run_id=run_id, resume=resume, progress=progress)
    paths["tags"] = dict(tags or {})  # extra MLflow tags, e.g. the sweep and trial of a Tune trial
    run_dir = Path(paths["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, run_dir / "config.yaml")
    if not resume:
        _write_run_record(run_dir, cfg, paths)
    return paths


def make_trainer(cfg: PretrainConfig, ws: Workspace, paths: dict, callbacks: list = ()):
    """The Ray Train TorchTrainer for a prepared run (`prepare_run`); `.fit()` trains it."""
    sc = cfg.scale
    # [5] Ray: N workers, each with `threads_per_worker` CPUs (and a GPU if asked).
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "paths": paths},
        scaling_config=ray.train.ScalingConfig(
            num_workers=sc.num_workers, use_gpu=sc.use_gpu,
            resources_per_worker={"CPU": sc.threads_per_worker, **({"GPU": 1} if sc.use_gpu else {})},
        ),
        # [6] Ray: the run's storage is the workspace run folder (a shared or cloud path on a cluster).
        run_config=ray.train.RunConfig(
            name=paths["run_id"], storage_path=str(ws.runs), callbacks=list(callbacks),
            # Keep the N checkpoints with the lowest val_loss; Ray always keeps the latest too.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints,
                                                         checkpoint_score_attribute="val_loss",
                                                         checkpoint_score_order="min"),
            # [7] Ray: a dead worker (OOM kill, lost node) restarts the group from the latest checkpoint.
            failure_config=ray.train.FailureConfig(max_failures=sc.max_failures),
        ),
    )


def run(cfg: PretrainConfig, ws: Workspace, *, run_id: str, resume: bool = False, progress: bool = False):
    """Prepare inputs, then train on Ray. Returns Ray Train's `Result`."""
    paths = prepare_run(cfg, ws, run_id=run_id, resume=resume, progress=progress)
    sc = cfg.scale
    if not ray.is_initialized():
        # Inside `ray job submit` (or with RAY_ADDRESS set) this joins that cluster;
        # otherwise it starts a local one with enough logical CPUs for the workers.
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1,
                                                                       sc.num_workers * sc.threads_per_worker),
                 log_to_driver=True)
    return make_trainer(cfg, ws, paths).fit()


# --------------------------------------------------------------------------- errors


def user_error_from(error: BaseException | None) -> UserError | None:
    """The UserError a worker raised, dug out of Ray's wrapping; None when there is none.

    A worker's exception reaches the driver inside Ray Train's TrainingFailedError. A
    WorkerGroupError maps each failed rank to its exception (`worker_failures`); that
    is the original exception, or a RayTaskError holding it as `.cause` (Ray may also
    build a RayTaskError that *subclasses* the original type, whose text is a whole
    traceback: skipped for its `.cause`). Other wrappers chain it as `__cause__`.
    Searching breadth-first, lowest rank first, the first plain UserError wins, so
    `playground pretrain` prints it as one line (exit code 2) instead of a traceback.
    """
    from ray.exceptions import RayError

    queue, seen = [error], set()
    while queue:
        e = queue.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError) and not isinstance(e, RayError):
            return e
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            queue.extend(failures[rank] for rank in sorted(failures))
        # RayTaskError.cause, Ray Train's UserExceptionWithTraceback._base_exc, ControllerError's, `raise ... from`
        queue.extend(getattr(e, name, None) for name in ("cause", "_base_exc", "controller_failure", "__cause__"))
    return None
