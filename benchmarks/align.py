"""`playground bench align`: does alignment work on the demo's SFT model, and what does it cost?

All figures come from one run of the command, through the real recipe (`align.run`: Ray Train,
TRL) with configs/align/{reward,dpo,grpo}.yaml on the newest SFT model of the workspace (the
one `make demo` fine-tunes, GPT-2 layout, ~4M parameters), read from each run's results.json:

    reward_model_accuracy      the reward model on held-out pairs (chosen scored above rejected);
                               goal >= 0.70 (the product requirements' figure)
    dpo_heldout_pair_accuracy  how often the DPO policy gives chosen a larger log-likelihood ratio
                               against the SFT model than rejected, on held-out pairs; goal >= 0.90
    dpo_margin                 the mean of that log-ratio margin (nats)
    kl_after_dpo               KL(DPO policy || SFT model) per reply token, full vocabulary
    grpo_reward_gain           the reward model's mean score of the policy's greedy replies to
                               held-out prompts, after GRPO minus before
    alignment_tax              exact-match accuracy on the held-out questions after DPO minus
                               before (the SFT model is the baseline, measured in the same run);
                               goal >= -0.02

GRPO uses the reward model trained in the same run. Each run's seconds are reported too.
"""

from __future__ import annotations

import json
import shutil
import time

from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

CONFIGS = {m: PROJECT_ROOT / f"configs/align/{m}.yaml" for m in ("reward", "dpo", "grpo")}
GOALS = {"reward_model_accuracy": 0.70, "dpo_heldout_pair_accuracy": 0.90, "alignment_tax": -0.02}


def pick_sft_model(ws: Workspace, model_id: str | None = None) -> str:
    """`model_id`, or the newest workspace model whose lineage says SFT on one of our exports."""
    if model_id:
        if not (ws.model(model_id) / "config.json").is_file():
            raise UserError(f"--model: no model {model_id!r} in {ws.models}")
        return model_id
    found = []
    for folder in ws.models.iterdir() if ws.models.is_dir() else []:
        info_file = folder / "playground.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        if (info.get("lineage") or {}).get("kind") == "sft" and "config" in info:
            found.append((info_file.stat().st_mtime, folder.name))
    if not found:
        raise UserError(f"no SFT model of ours in {ws.models}: run `make demo` first (or pass --model ID)")
    return max(found)[1]


def _run(method: str, model: str, ws: Workspace, overrides: list[str]) -> tuple[dict, float]:
    from training.config import load_config
    from training.posttrain import align
    from training.posttrain.align_config import AlignConfig
    from training.pretrain.pretrain import user_error_from

    run_id = f"bench-{method}"
    for folder in (ws.run(run_id), ws.model(run_id)):
        shutil.rmtree(folder, ignore_errors=True)
    cfg = load_config(CONFIGS[method], [f"base.model={model}", f"run_name={run_id}", "tracking.mlflow=false",
                                        *overrides], schema=AlignConfig)
    start = time.perf_counter()
    result = align.run(cfg, ws, run_id=run_id)
    seconds = time.perf_counter() - start
    if result.error:
        raise user_error_from(result.error) or RuntimeError(f"{method} run failed: {result.error}")
    return json.loads((ws.run(run_id) / "results.json").read_text()), seconds


def bench_align(*, model: str | None = None, workspace: Workspace | None = None, steps: dict | None = None) -> dict:
    """Reward model, DPO and GRPO on the SFT model; the figures (also to reports/bench/align.json)."""
    from benchmarks.report import emit

    ws = workspace or Workspace.resolve()
    sft_model = pick_sft_model(ws, model)
    steps = steps or {}
    more = {m: [f"train.max_steps={steps[m]}"] if m in steps else [] for m in CONFIGS}
    rm, rm_s = _run("reward", sft_model, ws, more["reward"])
    dpo, dpo_s = _run("dpo", sft_model, ws, more["dpo"])
    grpo, grpo_s = _run("grpo", sft_model, ws, [f"reward_model={rm['model']}", *more["grpo"]])
    figures = {
        "model": sft_model,
        "reward_model_accuracy": rm["heldout_pair_accuracy"], "reward_model_margin": rm["heldout_margin"],
        "dpo_heldout_pair_accuracy": dpo["heldout_pair_accuracy"], "dpo_margin": dpo["heldout_margin"],
        "kl_after_dpo": dpo["kl"], "alignment_tax": dpo["alignment_tax"],
        "sft_accuracy_before": dpo["sft_accuracy_before"], "sft_accuracy_after_dpo": dpo["sft_accuracy_after"],
        "grpo_reward_gain": grpo["reward_gain"], "grpo_mean_reward_before": grpo["mean_reward_before"],
        "grpo_mean_reward_after": grpo["mean_reward_after"], "kl_after_grpo": grpo["kl"],
        "grpo_alignment_tax": grpo["alignment_tax"], "heldout_pairs": dpo["heldout_pairs"],
        "seconds": {"reward": round(rm_s, 1), "dpo": round(dpo_s, 1), "grpo": round(grpo_s, 1)},
    }
    figures["goals"] = {k: {"goal": f">= {g}", "met": figures[k] is not None and figures[k] >= g}
                        for k, g in GOALS.items()}
    emit("align", figures)
    return figures
