"""Supervised fine-tuning for real: TRL's SFTTrainer inside Ray Train's TorchTrainer, on tiny
models the session builds (ours in GPT-2 layout, a Hugging Face Llama), full, LoRA and QLoRA,
with 1 and 2 workers (gloo DDP), gradient checkpointing, resume, the merged model, and the
record a learner reads (metrics, held-out replies, results, lineage).

Runs before test_serve.py (file order), so no Serve replica holds CPUs the workers wait for.
"""

import json

import pytest
import torch
from conftest import SFT_QUICK

from cluster.cli import main

pytestmark = pytest.mark.integration


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_lora_run_records_learns_merges_and_resumes(workspace, sft_run, sft_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = workspace.run(sft_run)
    metrics = _rows(run / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) >= 3 and losses[-1] < losses[0]  # it learns (the answer tokens only: see unit tests)
    assert any("val_loss" in m for m in metrics) and all(m["tokens_per_s"] > 0 for m in metrics if "loss" in m)
    samples = _rows(run / "samples.jsonl")
    assert len(samples) == 2 and [s["prompt"] for s in samples[0]["samples"]] == \
        [s["prompt"] for s in samples[1]["samples"]]  # the same held-out questions at every evaluation
    results = json.loads((run / "results.json").read_text())
    assert set(results["sft"]) == {"heldout_template", "heldout_entity", "val"}
    assert 0 < results["trainable_params"] < results["total_params"] / 2
    record = json.loads((run / "run.json").read_text())
    assert record["lineage"]["method"] == "lora" and record["lineage"]["base_model"] == sft_base["gpt2"]
    assert record["snapshot"].startswith("instructions-")

    # The adapter, and the merged model: base + B·A folded in, loadable by transformers (and vLLM).
    assert (run / "adapter" / "adapter_config.json").is_file()
    out = workspace.model(sft_run)
    info = json.loads((out / "playground.json").read_text())
    assert info["lineage"]["data_snapshot"] == record["snapshot"] and info["config"]["model"]["arch"] == "gpt2"
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    eos = merged.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])  # tuned models stop
    assert tok.eos_token == "<|im_end|>"  # vLLM stops there too
    from peft import PeftModel

    x = torch.randint(0, len(tok), (2, 24))
    base = AutoModelForCausalLM.from_pretrained(workspace.model(sft_base["gpt2"])).eval()
    with torch.no_grad():
        base_logits = base(x).logits
        with_adapter = PeftModel.from_pretrained(base, run / "adapter").eval()  # wraps `base` in place
        assert torch.allclose(merged(x).logits, with_adapter(x).logits, atol=1e-5)
        assert not torch.allclose(merged(x).logits, base_logits, atol=1e-3)  # training moved it

    # --resume continues from the newest checkpoint (step 8), optimizer and schedule included.
    assert main(["--workspace", str(workspace.root), "sft", "--config", "configs/sft/demo.yaml", "--resume",
                 sft_run, f"base.model={sft_base['gpt2']}", "method=lora", "train.max_steps=10", *SFT_QUICK]) == 0
    steps = [m["step"] for m in _rows(run / "metrics.jsonl") if "loss" in m]
    assert steps[-1] == 10 and min(s for s in steps if s > 8) == 10  # nothing from step 1 again
    state = json.loads((run / "checkpoints" / "checkpoint-10" / "trainer_state.json").read_text())
    assert state["global_step"] == 10


@pytest.mark.parametrize("method", ["qlora"])  # full fine-tuning on 2 workers: test_experiment_* below
def test_llama_two_workers_with_gradient_checkpointing(workspace, sft_base, tmp_path, method, ray_cluster):
    """2 Ray Train workers (gloo DDP), gradient checkpointing on: with LoRA this is the known trap
    ("Expected to mark a variable ready only once", trl #4782). Alpaca rows from a local file:
    loss on the completion only."""
    from transformers import AutoModelForCausalLM

    from training.posttrain import instructions

    data = tmp_path / "alpaca.jsonl"
    instructions.write_jsonl(instructions.generate(64, seed=3), data, "alpaca")
    run_id = f"sft-llama-{method}"
    assert main(["--workspace", str(workspace.root), "sft", "--config", "configs/sft/demo.yaml",
                 f"base.model={sft_base['llama']}", f"run_name={run_id}", f"method={method}",
                 f"data.sources=[{data}]", "data.shape=alpaca", "scale.num_workers=2", "scale.threads_per_worker=1",
                 "train.grad_checkpointing=true", "train.max_steps=6", "lora.target_modules=[q_proj,v_proj]",
                 *SFT_QUICK]) == 0
    run = workspace.run(run_id)
    losses = [m["loss"] for m in _rows(run / "metrics.jsonl") if "loss" in m]
    assert losses[-1] < losses[0]
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == method
    if method == "full":
        assert results["trainable_params"] == results["total_params"]
    else:  # q_proj + v_proj only, r=16: 2 layers x (16 x (64 + 64) + 16 x (64 + 32)); and the demo config's
        # two chat tokens' rows of the (untied) input embedding, 64 wide
        assert results["trainable_params"] == 2 * (16 * (64 + 64) + 16 * (64 + 32)) + 2 * 64
    merged = AutoModelForCausalLM.from_pretrained(workspace.model(run_id))
    assert all(p.dtype == torch.float32 for p in merged.parameters())  # merged into the 16/32-bit base, not 4-bit
    assert not (run / "adapter").exists() if method == "full" else (run / "adapter").is_dir()


def test_cli_bad_input_is_one_line_and_exit_code_2(workspace, sft_base, capsys):
    rc = main(["--workspace", str(workspace.root), "sft", "--config", "configs/sft/demo.yaml",
               f"base.model={sft_base['llama']}", "method=lora", "lora.target_modules=[c_attn]", "run_name=never"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: lora.target_modules") and "q_proj" in err and "\n" not in err
    assert not workspace.run("never").exists()


def test_experiment_full_on_two_workers_against_lora(workspace, sft_base, tmp_path, capsys, ray_cluster):
    """`playground experiment`: two variants run one after another through Ray Train (full
    fine-tuning on 2 DDP workers with gradient checkpointing; LoRA r=2 on one), each measured
    for what it learned, cost and forgot, in one record and one table."""
    import yaml

    from training.posttrain import experiment

    fixed = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in SFT_QUICK)}
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({
        "base": "configs/sft/demo.yaml",
        "fixed": {**fixed, "base.model": sft_base["gpt2"], "train.max_steps": 4, "train.eval_prompts": 0},
        "variants": {"full": {"method": "full", "scale.num_workers": 2, "scale.threads_per_worker": 1,
                              "train.grad_checkpointing": True},
                     "lora-r2": {"method": "lora", "lora.r": 2, "lora.target_modules": ["c_attn"],
                                 "lora.trainable_tokens": ["<|im_start|>", "<|im_end|>"]}}}))
    assert main(["--workspace", str(workspace.root), "experiment", "--config", str(config)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = experiment.read_record(workspace, line["experiment_id"])
    assert record["status"] == "FINISHED" and list(record["variants"]) == ["full", "lora-r2"]
    assert record["before"]["world_facts"]["n"] == 30 and record["before"]["pretrain_val"] is None  # no corpus
    full, lora = record["variants"]["full"], record["variants"]["lora-r2"]
    assert full["trainable_params"] == full["total_params"]
    # The tiny GPT-2: c_attn is (n_embd -> 3 n_embd), LoRA adds r x (in + out); and the two chat tokens'
    # embedding rows (tied to the output layer, through TRL's fused LM head: adapters.apply).
    n_layer, n_embd = 2, 64
    assert lora["trainable_params"] == n_layer * 2 * (n_embd + 3 * n_embd) + 2 * n_embd, lora
    for row in (full, lora):
        assert 0 <= row["heldout_accuracy"] <= 1 and row["peak_memory_mb"] > 0 and row["seconds"] > 0
        assert -1 <= row["forgetting"]["world_facts_change"] <= 1
        assert (workspace.model(row["model"]) / "config.json").is_file()
        assert json.loads((workspace.run(row["run_id"]) / "run.json").read_text())["kind"] == "sft"
    losses = [m["loss"] for m in _rows(workspace.run(full["run_id"]) / "metrics.jsonl") if "loss" in m]
    assert losses[-1] < losses[0]  # the two workers' averaged gradients trained it
    assert line["variants"]["lora-r2"]["trainable_params"] == lora["trainable_params"]
