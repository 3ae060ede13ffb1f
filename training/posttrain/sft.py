"""Supervised fine-tuning recipe: TRL's SFTTrainer run by Ray Train's TorchTrainer.

    playground sft --config configs/sft/demo.yaml [key=value ...]
    ray job submit --working-dir . -- playground sft --config configs/sft/demo.yaml

Every Ray call is marked with a numbered banner `# [n] Ray: ...`; the rest is TRL, peft
and transformers (training/posttrain/sft_setup.py). Each of N workers holds the model (a
full copy, DDP: gloo on CPU, nccl on GPU); the Trainer's sampler gives each worker its own
share of the rows, and gradients are averaged once per optimizer step. With method lora or
qlora only the adapters train, so DDP averages only their gradients.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from transformers import PrinterCallback, TrainerCallback

from training.errors import UserError
from training.posttrain import adapters, replay, sft_data, sft_setup
from training.posttrain.config import SFTConfig
from training.pretrain.tracking import Tracker
from training.workspace import Workspace


def build_trainer(cfg: SFTConfig, paths: dict, device, *, rank: int, tracker=None):
    """Model, tokenizer, rows and TRL's SFTTrainer: the same on every worker (and in a plain run)."""
    import datasets
    from datasets import Dataset
    from trl import SFTTrainer

    datasets.disable_progress_bars()  # one progress line per log from LiveMetrics instead

    tokenizer = sft_setup.load_tokenizer(paths, cfg)
    dtype = torch.bfloat16 if sft_setup.precision(cfg, device.type) == "bf16" and cfg.method == "qlora" \
        else torch.float32
    model = adapters.load_model(paths["base_path"], cfg.method, dtype=dtype,
                                grad_checkpointing=cfg.train.grad_checkpointing)
    model = adapters.apply(model, cfg.method, cfg.lora, adapters.token_ids(tokenizer, cfg.lora.trainable_tokens))
    rows = sft_data.load(Workspace(Path(paths["ws_root"])), paths["snapshot"])
    to_rows = lambda split: sft_data.to_rows(rows.get(split, []), cfg.data.shape, cfg.data.system)  # noqa: E731
    train, _ = sft_setup.fit_rows(to_rows("train"), tokenizer, paths["max_length"])
    val, _ = sft_setup.fit_rows(to_rows("val")[:200], tokenizer, paths["max_length"])
    if cfg.data.replay:  # pretraining text beside the instructions: both tokenized here, with their loss masks
        train, val, n = replay.mix(train, val, cfg, Workspace(Path(paths["ws_root"])), paths["base_path"], tokenizer)
        if rank == 0:
            print(f"data.replay: {n:,} pieces of pretraining text ({cfg.data.replay_tokens} tokens each at most) "
                  f"among {len(train) - n:,} instructions", flush=True)
    prompts = paths["eval_prompts"] if rank == 0 else []
    callbacks = [sft_setup.LiveMetrics(tracker, tokenizer, prompts, system=cfg.data.system,
                                       max_steps=cfg.train.max_steps)]
    args = sft_setup.trl_args(cfg, paths, device.type, max_len=paths["max_length"], has_eval=bool(val))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                         eval_dataset=Dataset.from_list(val) if val else None, processing_class=tokenizer,
                         callbacks=callbacks)
    return trainer, tokenizer


class RayReport(TrainerCallback):
    """Send every log to Ray Train too (the Ray dashboard's view of the run, and Tune's when the
    run is a sweep trial), under the names the Runs page uses (`rename`: eval_loss is val_loss).

    `ray.train.report` is a barrier in Train V2: every worker must call it equally often.
    The Trainer calls `on_log` on every rank with the same reduced numbers, so it is.
    """

    def __init__(self, rename=None):
        self.rename = rename or (lambda logs: {sft_setup.METRIC_NAMES.get(k, k): v for k, v in logs.items()
                                               if isinstance(v, (int, float))})

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "train_runtime" not in logs:
            row = self.rename(logs)
            if "val_loss" in row:
                row["perplexity"] = math.exp(min(row["val_loss"], 50.0))
            # [3] Ray: report this step's metrics to Ray Train.
            ray.train.report(row | {"step": state.global_step})


def start_worker(cfg) -> tuple[int, torch.device]:
    """A worker's threads, log level and seed (from an SFT or alignment config); its rank and device."""
    torch.set_num_threads(cfg.scale.threads_per_worker)
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # [1] Ray: who am I, and on which device?
    rank = ray.train.get_context().get_world_rank()
    # [2] Ray: the device Ray gave this worker (its GPU, or the CPU).
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.train.seed)
    return rank, device


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker runs. `config` = {"cfg": SFTConfig dict, "paths": {...}}."""
    cfg = SFTConfig.model_validate(config["cfg"])
    paths = config["paths"]
    rank, device = start_worker(cfg)
    tracker = Tracker(cfg, paths) if rank == 0 else None
    trainer, tokenizer = build_trainer(cfg, paths, device, rank=rank, tracker=tracker)
    trainer.add_callback(RayReport())

    trainer.remove_callback(PrinterCallback)  # LiveMetrics prints one line per log instead of a dict
    if rank == 0:
        trainable, total = adapters.trainable_params(trainer.model)
        print(f"{cfg.method}: {trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)",
              flush=True)
        base = sft_setup.heldout(Workspace(Path(paths["ws_root"])), paths, cfg, sft_setup.unwrap(trainer.model),
                                 tokenizer) if paths["score_base"] else {}
    trainer.train(resume_from_checkpoint=latest_checkpoint(Path(paths["run_dir"])))
    if rank != 0:
        return
    ws = Workspace(Path(paths["ws_root"]))
    out = sft_setup.save_model(trainer, cfg.method, paths, tokenizer, ws, sft_setup.lineage(cfg, paths))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = sft_setup.heldout(ws, paths, cfg, AutoModelForCausalLM.from_pretrained(out),
                              AutoTokenizer.from_pretrained(out))
    results = {"model": out.name, "method": cfg.method, "trainable_params": trainable, "total_params": total,
               "base": _summary(base), "sft": _summary(tuned),
               "by_task": {"base": {k: v["by_task"] for k, v in base.items()},
                           "sft": {k: v["by_task"] for k, v in tuned.items()}},
               "replies": {"base": _replies(base), "sft": _replies(tuned)}}
    tmp = Path(paths["run_dir"]) / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, Path(paths["run_dir"]) / "results.json")
    final = {"step": trainer.state.global_step}
    for who in ("base", "sft"):
        final.update({f"{who}_{k}_accuracy": v for k, v in results[who].items() if v is not None})
    tracker.log(final)
    tracker.close()
    print(f"model: {out}\n" + "  ".join(f"{k} {v:.3f}" for k, v in final.items() if k != "step"), flush=True)


def _summary(scores: dict) -> dict:
    return {split: s["accuracy"] for split, s in scores.items()}


def _replies(scores: dict, n: int = 20) -> dict:
    return {split: s["replies"][:n] for split, s in scores.items()}


def latest_checkpoint(run_dir: Path) -> str | None:
    """The newest Trainer checkpoint of the run (checkpoints/checkpoint-N), or None."""
    found = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) \
        if (run_dir / "checkpoints").is_dir() else []
    return str(found[-1]) if found else None


# --------------------------------------------------------------------------- driver


def plan(cfg: SFTConfig, ws: Workspace, *, run_id: str, resume: bool) -> dict:
    """Check everything the workers need before any starts: user mistakes surface here as one line."""
    run_dir = ws.run(run_id)
    if resume and latest_checkpoint(run_dir) is None:
        raise UserError(f"cannot resume {run_id}: it has no checkpoint in {run_dir / 'checkpoints'}")
    if not resume and (run_dir / "config.yaml").exists():
        raise UserError(f"run {run_id!r} already exists: pass --resume {run_id} or choose another run_name")
    if cfg.method == "qlora":
        adapters.check_qlora()
    base_path, model_config = adapters.base_config(cfg.base.model, ws)
    paths = {"run_id": run_id, "run_dir": str(run_dir), "ws_root": str(ws.root), "base_path": str(base_path),
             "tokenizer_path": str(cfg.base.tokenizer or base_path)}
    tokenizer = sft_setup.load_tokenizer(paths, cfg)
    sft_setup.check_tokenizer(tokenizer, model_config)
    if cfg.method != "full":
        adapters.lora_config(adapters.meta_model(model_config), cfg.lora,  # target modules, rank, tokens: checked
                             adapters.token_ids(tokenizer, cfg.lora.trainable_tokens))
    replayed = replay.corpus(ws, base_path) if cfg.data.replay else None
    snapshot = sft_data.prepare(cfg.data, ws)
    max_len = sft_setup.max_length(cfg, model_config)
    splits = sft_data.load(ws, snapshot)
    train, dropped = sft_setup.fit_rows(sft_data.to_rows(splits["train"], cfg.data.shape, cfg.data.system),
                                        tokenizer, max_len)
    if len(train) < cfg.scale.num_workers:
        raise UserError(f"data: no training rows fit train.max_length={max_len} tokens ({dropped} left out)")
    if dropped:
        print(f"data: {dropped} of {len(train) + dropped} training rows are longer than {max_len} tokens and are "
              f"left out", flush=True)
    heldout = [ex for ex in splits.get("heldout_template", []) + splits.get("heldout_entity", [])
               if sft_setup.token_count(tokenizer, sft_data.to_rows([ex], "messages")[0]) <= max_len]
    prompts = heldout[::max(1, len(heldout) // cfg.train.eval_prompts)][:cfg.train.eval_prompts] \
        if cfg.train.eval_prompts else []
    base_info = {}
    if (Path(base_path) / "playground.json").is_file():  # our own export: keep its lab config (Architecture page)
        base_info = {k: v for k, v in json.loads((Path(base_path) / "playground.json").read_text()).items()
                     if k == "config"}
    return {**paths, "snapshot": snapshot, "max_length": max_len, "train_rows": len(train), "dropped_rows": dropped,
            "stop_token": sft_setup.chat.stop_token(tokenizer), "eval_prompts": prompts, "base_info": base_info,
            "parent_run": (base_info and cfg.base.model) or None, "score_base": bool(heldout),
            "replay_snapshot": replayed.name if replayed else None,
            "dataset_id": snapshot, "mlflow_uri": cfg.tracking.tracking_uri or ws.mlflow_uri(),
            "mlflow_artifacts": None if cfg.tracking.tracking_uri else str(ws.mlflow_artifacts()),
            "manifests": [(str(ws.dataset(snapshot) / "manifest.json"), "data"),
                          *([(str(replayed / "manifest.json"), "data/replay")] if replayed else [])]}


def prepare_run(cfg: SFTConfig, ws: Workspace, *, run_id: str, resume: bool = False,
                tags: dict[str, str] | None = None) -> dict:
    """`plan`, then the run folder's config.yaml and run.json (config, data snapshot, lineage).
    `tags` are extra MLflow tags (a Tune trial's sweep and trial)."""
    paths = plan(cfg, ws, run_id=run_id, resume=resume) | {"tags": dict(tags or {})}
    write_run_files(cfg, paths, {"kind": "sft", "lineage": sft_setup.lineage(cfg, paths)}, resume=resume)
    return paths


def write_run_files(cfg, paths: dict, record: dict, *, resume: bool) -> None:
    """The run folder's config.yaml and, for a new run, run.json (`record` plus the run id, config,
    snapshot and row counts), each written to a temporary name and renamed."""
    from training.config import dump_config

    run_dir = Path(paths["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"run_id": paths["run_id"], "kind": record["kind"], "config": cfg.model_dump(mode="json"),
              "snapshot": paths["snapshot"], "lineage": record["lineage"], "train_rows": paths["train_rows"],
              "dropped_rows": paths["dropped_rows"]}
    files = [("config.yaml", dump_config(cfg))] + ([] if resume else [("run.json", json.dumps(record, indent=2) + "\n")])
    for name, text in files:
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, run_dir / name)


def make_trainer(cfg, ws: Workspace, paths: dict, callbacks: list = (), loop=None):
    """The Ray Train TorchTrainer for a prepared run (SFT's, or `loop`'s: alignment's); `.fit()` trains it."""
    sc = cfg.scale
    # [4] Ray: N workers, each with `threads_per_worker` CPUs (and a GPU if asked).
    return ray.train.torch.TorchTrainer(
        loop or train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "paths": paths},
        scaling_config=ray.train.ScalingConfig(
            num_workers=sc.num_workers, use_gpu=sc.use_gpu,
            resources_per_worker={"CPU": sc.threads_per_worker, **({"GPU": 1} if sc.use_gpu else {})}),
        # [5] Ray: the run's storage is the workspace run folder; a restarted worker group
        # resumes from the Trainer's newest checkpoint there.
        run_config=ray.train.RunConfig(name=paths["run_id"], storage_path=str(ws.runs), callbacks=list(callbacks),
                                       failure_config=ray.train.FailureConfig(max_failures=sc.max_failures)),
    )


def run(cfg: SFTConfig, ws: Workspace, *, run_id: str, resume: bool = False):
    """Prepare, then fine-tune on Ray. Returns Ray Train's `Result`."""
    paths = prepare_run(cfg, ws, run_id=run_id, resume=resume)
    start_ray(cfg.scale)
    return make_trainer(cfg, ws, paths).fit()


def start_ray(sc) -> None:
    """Join the cluster of `ray job submit`, or start a local one big enough for the workers."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # [6] Ray: join the cluster of `ray job submit` (RAY_ADDRESS), or start a local one.
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1,
                                                                       sc.num_workers * sc.threads_per_worker),
                 log_to_driver=True)
