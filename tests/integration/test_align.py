"""Alignment for real: TRL's RewardTrainer, DPOTrainer and GRPOTrainer inside Ray Train's
TorchTrainer, on the session's tiny SFT model (`sft_run`, LoRA-tuned GPT-2 layout): a reward
model on a trivially separable set and DPO with LoRA on 2 workers (gloo DDP), with the KL to the
reference measured at every evaluation (both session fixtures in conftest.py: `reward_run`,
`dpo_run`), GRPO with the trained reward model as its reward, and the one-line errors of bad input.

Runs before test_serve.py (file order), so no Serve replica holds CPUs the workers wait for.
"""

import json

import pytest
from conftest import ALIGN_QUICK

from cluster.cli import main

pytestmark = pytest.mark.integration

def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _cli(workspace, *args) -> int:
    return main(["--workspace", str(workspace.root), *args])


def test_reward_model_separates_a_trivially_separable_set(workspace, reward_run, sft_run):
    from transformers import AutoConfig

    run = workspace.run(reward_run)
    results = json.loads((run / "results.json").read_text())
    assert results["heldout_pairs"] == 16 and results["heldout_pair_accuracy"] == 1.0  # held-out (val) pairs
    assert results["heldout_margin"] > 0
    metrics = _rows(run / "metrics.jsonl")
    assert any("pair_accuracy" in m for m in metrics) and any("val_pair_accuracy" in m for m in metrics)
    assert _rows(run / "samples.jsonl")[-1]["samples"][0]["text"].startswith("r(chosen)")
    out = workspace.model(reward_run)
    config = AutoConfig.from_pretrained(out)
    assert config.num_labels == 1 and config.architectures[0].endswith("ForSequenceClassification")
    lineage = json.loads((out / "playground.json").read_text())["lineage"]
    assert lineage["kind"] == "reward" and lineage["parent_run"] == sft_run
    assert lineage["preference_snapshot"].startswith("separable-")


def test_dpo_with_lora_on_two_workers_watches_the_kl(workspace, sft_run, dpo_run):
    from transformers import AutoModelForCausalLM

    run_id = dpo_run
    run = workspace.run(run_id)
    metrics = _rows(run / "metrics.jsonl")
    for key in ("rewards_chosen", "rewards_rejected", "margin", "pair_accuracy"):
        assert any(key in m for m in metrics), key
    kls = [m["kl"] for m in metrics if "kl" in m and "val_loss" in m]
    assert len(kls) == 2 and kls[-1] > 0  # measured at both evaluations; training moved the policy
    samples = [m["samples"] for m in _rows(run / "samples.jsonl")]
    assert len(samples) == 2 and [s["prompt"] for s in samples[0]] == [s["prompt"] for s in samples[1]]
    results = json.loads((run / "results.json").read_text())
    assert results["kl"] > 0 and 0 <= results["heldout_pair_accuracy"] <= 1 and results["heldout_pairs"] >= 16
    assert isinstance(results["alignment_tax"], float) and len(results["replies"]["after"]) == 8
    lineage = json.loads((workspace.model(run_id) / "playground.json").read_text())["lineage"]
    assert lineage | {"beta": 0.1, "loss_type": "ipo", "method": "dpo", "parent_run": sft_run} == lineage
    assert lineage["preference_snapshot"].startswith("preferences-")
    AutoModelForCausalLM.from_pretrained(workspace.model(run_id))  # merged: loads without peft (and in vLLM)


def test_grpo_follows_the_trained_reward_model(workspace, sft_run, reward_run):
    run_id = "grpo-tiny"
    assert _cli(workspace, "grpo", "--config", "configs/align/grpo.yaml", f"base.model={sft_run}",
                f"reward_model={reward_run}", f"run_name={run_id}", "train.max_steps=4", "grpo.max_completion_length=8",
                "grpo.num_generations=4", *ALIGN_QUICK) == 0
    run = workspace.run(run_id)
    metrics = _rows(run / "metrics.jsonl")
    assert any("reward" in m and "reward_std" in m for m in metrics)
    assert any("kl" in m for m in metrics)
    results = json.loads((run / "results.json").read_text())
    assert isinstance(results["reward_gain"], float) and results["mean_reward_before"] is not None
    lineage = json.loads((run / "run.json").read_text())["lineage"]
    assert lineage["reward_model"] == reward_run and lineage["method"] == "grpo"


def test_bad_input_is_one_line_exit_2_and_writes_nothing(workspace, sft_run, sft_base, reward_run, tmp_path, capsys):
    import shutil

    from transformers import AutoTokenizer

    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                       + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "b"}) + "\n")
    other_tok = tmp_path / "other-rm"
    shutil.copytree(workspace.model(reward_run), other_tok)
    tok = AutoTokenizer.from_pretrained(other_tok)
    tok.add_tokens(["<|a-token-the-policy-lacks|>"])
    tok.save_pretrained(other_tok)
    before = sorted(p.name for p in workspace.runs.iterdir()), sorted(p.name for p in workspace.datasets.iterdir())
    cases = [
        (["dpo", f"data.sources=[{missing}]"], "missing.jsonl:2: missing field 'rejected'"),
        (["dpo", f"data.sources=[{same}]"], "same.jsonl:1:"),
        (["grpo", "reward_model=null"], "reward_model: grpo needs a reward model"),
        (["grpo", f"reward_model={sft_base['gpt2']}"], "reward_model: 'sft-base' is not a reward model"),
        (["grpo", f"reward_model={other_tok}"], "has another tokenizer than the policy"),
        (["reward", "adapter=lora"], "adapter: a reward model trains in full"),
    ]
    for (method, *overrides), message in cases:
        capsys.readouterr()
        code = _cli(workspace, method, "--config", f"configs/align/{method}.yaml", f"base.model={sft_run}", *overrides)
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, (method, overrides, err)
    assert (sorted(p.name for p in workspace.runs.iterdir()), sorted(p.name for p in workspace.datasets.iterdir())) \
        == before  # no run folder, no half-made snapshot
