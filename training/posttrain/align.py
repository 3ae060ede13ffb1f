"""Alignment recipe: a reward model, DPO or GRPO with TRL, run by Ray Train's TorchTrainer.

    playground reward --config configs/align/reward.yaml base.model=<SFT model id>
    playground dpo    --config configs/align/dpo.yaml    base.model=<SFT model id>
    playground grpo   --config configs/align/grpo.yaml   base.model=<SFT model id> reward_model=<reward run>
    ray job submit --working-dir . -- playground dpo --config configs/align/dpo.yaml

Every Ray call is marked with a numbered banner `# [n] Ray: ...`; the trainers, the live
record and the measurements are TRL, transformers and PyTorch (align_setup.py, align_eval.py,
kl.py). The Ray scaffolding (the TorchTrainer, its storage, the report of every log) is SFT's
(training/posttrain/sft.py): only the loop each worker runs differs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import PrinterCallback

from training.errors import UserError
from training.posttrain import adapters, align_eval, align_setup, answers, kl, preferences, sft, sft_setup
from training.posttrain.align_config import AlignConfig
from training.pretrain.tracking import Tracker
from training.workspace import Workspace


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker runs. `config` = {"cfg": AlignConfig dict, "paths": {...}}."""
    cfg = AlignConfig.model_validate(config["cfg"])
    paths = config["paths"]
    rank, device = sft.start_worker(cfg)  # [1] [2] Ray: this worker's rank and device (sft.py)
    tracker = Tracker(cfg, paths) if rank == 0 else None
    trainer, tokenizer = align_setup.build_trainer(cfg, paths, device, rank=rank, tracker=tracker)
    # [3] Ray: every log reported to Ray Train too (sft.RayReport holds the ray.train.report call).
    trainer.add_callback(sft.RayReport(align_setup.metric_row))
    trainer.remove_callback(PrinterCallback)  # AlignMetrics prints one line per log
    if rank == 0:
        trainable, total = adapters.trainable_params(trainer.model)
        print(f"{cfg.method} ({cfg.adapter}): {trainable:,} of {total:,} parameters train", flush=True)
        before = measure(cfg, paths, None, tokenizer) if cfg.method != "reward" else {}
    trainer.train(resume_from_checkpoint=sft.latest_checkpoint(Path(paths["run_dir"])))
    if rank != 0:
        return
    ws = Workspace(Path(paths["ws_root"]))
    out = save(trainer, cfg, paths, tokenizer, ws)
    results = {"model": out.name, "method": cfg.method, "adapter": cfg.adapter, "trainable_params": trainable,
               "total_params": total, **finish(cfg, paths, out, before)}
    tmp = Path(paths["run_dir"]) / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, Path(paths["run_dir"]) / "results.json")
    final = {"step": trainer.state.global_step,
             **{k: v for k, v in results.items() if isinstance(v, float) and k != "total_params"}}
    tracker.log(final)
    tracker.close()
    print(f"model: {out}\n" + "  ".join(f"{k} {v:.3f}" for k, v in final.items() if k != "step"), flush=True)


def save(trainer, cfg: AlignConfig, paths: dict, tokenizer, ws: Workspace) -> Path:
    """The reward model as it trained, or the policy merged (SFT's save_model), with its lineage."""
    if cfg.method != "reward":
        return sft_setup.save_model(trainer, cfg.adapter, paths, tokenizer, ws, align_setup.lineage(cfg, paths))
    from training.atomic import atomic_dir

    out = ws.model(paths["run_id"])
    info = {"run_id": paths["run_id"], "step": trainer.state.global_step, "kind": "reward_model",
            "lineage": align_setup.lineage(cfg, paths)}
    with atomic_dir(out) as tmp:
        sft_setup.unwrap(trainer.model).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "playground.json").write_text(json.dumps(info, indent=2))
    from training.registry.card import try_write_card

    try_write_card(ws, out)  # README.md: the model card
    return out


def measure(cfg: AlignConfig, paths: dict, model_dir: Path | None, tokenizer) -> dict:
    """A policy on the held-out set: its SFT questions answered (exact match), and, for GRPO, the
    reward model's mean score of its greedy replies. `model_dir` None: the starting (SFT) model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir or paths["base_path"]).eval()
    ws = Workspace(Path(paths["ws_root"]))
    pairs = align_setup.heldout_pairs(preferences.load(ws, paths["snapshot"]), cfg.train.eval_examples, tokenizer,
                                      paths["max_length"], cfg.data.system)
    scored = answers.accuracy(model, tokenizer, [p | {"output": p["chosen"]} for p in pairs], system=cfg.data.system)
    out = {"sft_accuracy": scored["accuracy"], "replies": scored["replies"][:20]}
    if cfg.method == "grpo":
        rm_tok = align_setup.load_tokenizer(paths["reward_path"], "reward_model")
        scorer = align_setup.reward_model(paths["reward_path"], rm_tok)
        rows = preferences.to_rows(pairs, cfg.data.system)
        rewards = align_eval.reply_rewards(scorer, rm_tok, [r["prompt"] for r in rows],
                                           [x["reply"] for x in scored["replies"]])
        out["mean_reward"] = sum(rewards) / len(rewards) if rewards else None
    return out


def finish(cfg: AlignConfig, paths: dict, out: Path, before: dict) -> dict:
    """The figures that say whether it worked (results.json)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    ws = Workspace(Path(paths["ws_root"]))
    tokenizer = align_setup.load_tokenizer(str(out), "model")
    held = align_setup.heldout_pairs(preferences.load(ws, paths["snapshot"]), cfg.train.eval_pairs, tokenizer,
                                     paths["max_length"], cfg.data.system)
    pairs, flaws = preferences.to_rows(held, cfg.data.system), [p.get("flaw", "-") for p in held]
    if cfg.method == "reward":
        scores = align_eval.reward_accuracy(AutoModelForSequenceClassification.from_pretrained(out), tokenizer, pairs,
                                            flaws)
        return {"heldout_pair_accuracy": scores["accuracy"], "heldout_margin": scores["margin"],
                "heldout_pairs": scores["n"], "by_flaw": scores.get("by_group")}
    policy = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = AutoModelForCausalLM.from_pretrained(paths["base_path"]).eval()
    pref = align_eval.pair_preference(policy, reference, tokenizer, pairs, flaws)
    seqs = kl.sequences(tokenizer, preferences.to_rows(paths["kl_pairs"], cfg.data.system))
    after = measure(cfg, paths, out, tokenizer)
    result = {"heldout_pair_accuracy": pref["accuracy"], "heldout_margin": pref["margin"], "heldout_pairs": pref["n"],
              "by_flaw": pref.get("by_group"),
              "kl": kl.measure(policy, reference, seqs, pad_id=tokenizer.pad_token_id or 0),
              "sft_accuracy_before": before["sft_accuracy"], "sft_accuracy_after": after["sft_accuracy"],
              "alignment_tax": after["sft_accuracy"] - before["sft_accuracy"],
              "replies": {"before": before["replies"], "after": after["replies"]}}
    if cfg.method == "grpo":
        result |= {"mean_reward_before": before["mean_reward"], "mean_reward_after": after["mean_reward"],
                   "reward_gain": after["mean_reward"] - before["mean_reward"]}
    return result


# --------------------------------------------------------------------------- driver


def plan(cfg: AlignConfig, ws: Workspace, *, run_id: str, resume: bool) -> dict:
    """Check everything the workers need before any starts: user mistakes surface here as one line."""
    run_dir = ws.run(run_id)
    if resume and sft.latest_checkpoint(run_dir) is None:
        raise UserError(f"cannot resume {run_id}: it has no checkpoint in {run_dir / 'checkpoints'}")
    if not resume and (run_dir / "config.yaml").exists():
        raise UserError(f"run {run_id!r} already exists: pass --resume {run_id} or choose another run_name")
    if cfg.method == "reward" and cfg.adapter != "full":
        raise UserError("adapter: a reward model trains in full here (its score head is new); use adapter=full")
    base_path, model_config = adapters.base_config(cfg.base.model, ws)
    tokenizer_path = str(cfg.base.tokenizer or base_path)
    tokenizer = align_setup.load_tokenizer(tokenizer_path)
    sft_setup.check_tokenizer(tokenizer, model_config)
    paths = {"run_id": run_id, "run_dir": str(run_dir), "ws_root": str(ws.root), "base_path": str(base_path),
             "tokenizer_path": tokenizer_path}
    if cfg.method == "grpo":
        paths["reward_path"] = check_reward_model(cfg.reward_model, ws, tokenizer)
    if cfg.adapter == "lora":
        adapters.lora_config(adapters.meta_model(model_config), cfg.lora,
                             adapters.token_ids(tokenizer, cfg.lora.trainable_tokens))
    snapshot = preferences.prepare(cfg.data, ws)
    ctx = getattr(model_config, "n_positions", None) or getattr(model_config, "max_position_embeddings", None)
    if cfg.train.max_length and ctx and cfg.train.max_length > ctx:
        raise UserError(f"train.max_length={cfg.train.max_length} is longer than the model's context ({ctx})")
    max_len = cfg.train.max_length or min(ctx or 1024, 1024)
    splits = preferences.load(ws, snapshot)
    train, dropped = align_setup.fit_pairs(preferences.to_rows(splits["train"], cfg.data.system), tokenizer, max_len)
    if len(train) < cfg.scale.num_workers:
        raise UserError(f"data: no preference pairs fit train.max_length={max_len} tokens ({dropped} left out)")
    if cfg.method == "grpo":
        room = max_len - cfg.grpo.max_completion_length
        if len(align_setup.grpo_prompts(splits["train"], tokenizer, room, cfg.data.system)) < cfg.scale.num_workers:
            raise UserError(f"grpo.max_completion_length={cfg.grpo.max_completion_length}: no prompt leaves that "
                            f"many tokens free in train.max_length={max_len}")
    if dropped:
        print(f"data: {dropped} of {len(train) + dropped} pairs are longer than {max_len} tokens and are left out",
              flush=True)
    fits = align_setup.heldout_pairs(splits, 10_000, tokenizer, max_len, cfg.data.system)
    every = lambda n: fits[::max(1, len(fits) // n)][:n] if n else []  # noqa: E731  (spread over both splits)
    base_info = json.loads((Path(base_path) / "playground.json").read_text()) \
        if (Path(base_path) / "playground.json").is_file() else {}
    return {**paths, "snapshot": snapshot, "max_length": max_len, "train_rows": len(train), "dropped_rows": dropped,
            "stop_token": sft_setup.chat.stop_token(tokenizer), "eval_pairs": every(cfg.train.eval_prompts),
            "kl_pairs": every(cfg.train.kl_prompts),
            "base_info": {k: v for k, v in base_info.items() if k == "config"},
            "parent_run": base_info.get("run_id") if base_info else None, "dataset_id": snapshot,
            "mlflow_uri": cfg.tracking.tracking_uri or ws.mlflow_uri(),
            "mlflow_artifacts": None if cfg.tracking.tracking_uri else str(ws.mlflow_artifacts()),
            "manifests": [(str(ws.dataset(snapshot) / "manifest.json"), "data")]}


def check_reward_model(spec: str, ws: Workspace, policy_tokenizer) -> str:
    """The reward model's folder, refused in one line when it is not a reward model or does not
    read the policy's tokens (its scores of the policy's replies would be of other text)."""
    from transformers import AutoConfig

    path = adapters.resolve_model(spec, ws, "reward_model")
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "num_labels", None) != 1 or not any(a.endswith("ForSequenceClassification")
                                                            for a in config.architectures or []):
        raise UserError(f"reward_model: {spec!r} is not a reward model (a sequence classifier with one output); "
                        "train one with `playground reward`")
    rm_tok = align_setup.load_tokenizer(path, "reward_model")
    if rm_tok.get_vocab() != policy_tokenizer.get_vocab():
        raise UserError(f"reward_model: {spec!r} has another tokenizer than the policy ({len(rm_tok):,} against "
                        f"{len(policy_tokenizer):,} tokens, or other ids): train the reward model from the same "
                        "SFT model")
    return path


def prepare_run(cfg: AlignConfig, ws: Workspace, *, run_id: str, resume: bool = False) -> dict:
    """`plan`, then the run folder's config.yaml and run.json (config, snapshot, lineage)."""
    paths = plan(cfg, ws, run_id=run_id, resume=resume) | {"tags": {"method": cfg.method}}
    sft.write_run_files(cfg, paths, {"kind": cfg.method, "lineage": align_setup.lineage(cfg, paths)}, resume=resume)
    return paths


def run(cfg: AlignConfig, ws: Workspace, *, run_id: str, resume: bool = False):
    """Prepare, then train on Ray (sft.start_ray and sft.make_trainer hold the Ray calls). Returns
    Ray Train's `Result`."""
    paths = prepare_run(cfg, ws, run_id=run_id, resume=resume)
    sft.start_ray(cfg.scale)
    return sft.make_trainer(cfg, ws, paths, loop=train_loop_per_worker).fit()
