"""The base model `playground bench sft` fine-tunes: the newest `make demo` export, or a
demo-size model it pretrains itself for longer (`--pretrain-steps`).

Why longer: SFT teaches the answer format; the answers themselves (a story's hero, the plural
of a word it never saw in SFT) are copied or recalled by what pretraining built. `make demo`
pretrains 600 steps to fit its 15 minutes; the same model pretrained 2,400 steps copies a
story's people and things at their second mention 0.90 of the time against 0.31, and its
held-out SFT accuracy rises with it (docs/concepts/finetuning.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

DEMO_PRETRAIN = PROJECT_ROOT / "configs/pretrain/demo.yaml"
BASE_PREFIX = "bench-base-"  # + steps: the run and the model `--pretrain-steps N` makes


def _info(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "playground.json").read_text())
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _demo_model():
    from training.config import load_config

    return load_config(DEMO_PRETRAIN).model


def _is_demo_shape(info: dict | None) -> bool:
    demo = _demo_model()
    try:
        return type(demo)(**info["config"]["model"]) == demo  # a dataclass: an unknown key is a TypeError
    except (KeyError, TypeError):
        return False


def pick_model(ws: Workspace, model_id: str | None = None) -> str:
    """The base model: `model_id`, or the newest `make demo` export in the workspace.

    A demo export is a workspace model whose playground.json has the model section of
    configs/pretrain/demo.yaml and no "lineage" (fine-tuned models have one). The bases that
    `--pretrain-steps` makes (`bench-base-N`) have that shape too but are not `make demo`'s:
    they are left out, so that other benches keep measuring the demo's own model.

    Raises:
        UserError: `model_id` is not a workspace model, or there is no demo export.
    """
    if model_id:
        if not (ws.model(model_id) / "config.json").is_file():
            raise UserError(f"--model: no model {model_id!r} in {ws.models} (see workspace/models)")
        return model_id
    found = []
    for folder in sorted(ws.models.iterdir()) if ws.models.is_dir() else []:
        info = _info(folder)
        if info is None or "lineage" in info or not (folder / "config.json").is_file() or not _is_demo_shape(info) \
                or folder.name.startswith(BASE_PREFIX):
            continue  # not our export, a fine-tuned model, another shape of model, or a bench's base
        found.append(((folder / "playground.json").stat().st_mtime, folder.name))
    if not found:
        raise UserError(f"no demo model in {ws.models}: run `make demo` first (or pass --model ID)")
    return max(found)[1]


def base_steps(ws: Workspace, model_id: str) -> int | None:
    """The pretraining steps of a workspace model (its playground.json), None if not ours."""
    return (_info(ws.model(model_id)) or {}).get("step")


def ready_base(ws: Workspace, steps: int) -> str | None:
    """The id of a finished `--pretrain-steps steps` export in `ws`, if there is one."""
    model_id = f"{BASE_PREFIX}{steps}"
    info = _info(ws.model(model_id))
    if info and info.get("step") == steps and (ws.model(model_id) / "config.json").is_file() and _is_demo_shape(info):
        return model_id
    return None


def pretrain_commands(ws: Workspace, steps: int) -> list[list[str]]:
    """The `playground` commands that make model `bench-base-STEPS`: the demo's data, tokenizer
    and pretraining (Ray Train) with train.max_steps=STEPS, then the Hugging Face export. A run
    left unfinished by an earlier bench resumes from its last checkpoint."""
    run_id = f"{BASE_PREFIX}{steps}"
    config, where = str(DEMO_PRETRAIN.relative_to(PROJECT_ROOT)), ["--workspace", str(ws.root)]
    if (ws.run(run_id) / "config.yaml").is_file():
        train = ["pretrain", "--resume", run_id, "--config", config, f"train.max_steps={steps}"]
    else:
        train = ["pretrain", "--config", config, f"train.max_steps={steps}", f"run_name={run_id}"]
    return [[*where, "data", "prepare", "--config", config], [*where, "tokenizer", "train", "--config", config],
            [*where, *train], [*where, "export", run_id]]


def pretrained_base(ws: Workspace, steps: int) -> str:
    """Model `bench-base-STEPS`: reused when the workspace has it, else pretrained and exported
    now (about 6 minutes per 1,000 steps on 2 cores). Each step is its own `playground` process,
    as in `make demo`, so each one's Ray cluster is gone before the bench starts its own."""
    model_id = ready_base(ws, steps)
    if model_id:
        print(f"base model: {model_id} (pretrained {steps} steps by an earlier bench; delete "
              f"{ws.model(model_id)} to pretrain it again)", flush=True)
        return model_id
    print(f"pretraining the demo-size model {steps} steps for the base (run {BASE_PREFIX}{steps}) ...", flush=True)
    for args in pretrain_commands(ws, steps):
        print(f"$ playground {' '.join(args[2:])}", flush=True)
        rc = subprocess.call([sys.executable, "-m", "cluster.cli", *args], cwd=PROJECT_ROOT)
        if rc:
            raise SystemExit(f"bench sft: `playground {' '.join(args[2:])}` failed (exit code {rc})")
    model_id = ready_base(ws, steps)
    if model_id is None:
        raise SystemExit(f"bench sft: the export of {BASE_PREFIX}{steps} did not reach step {steps}")
    return model_id
