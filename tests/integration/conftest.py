"""One local Ray cluster for the whole integration session (real Ray Train, real gloo DDP).

Ray starts with 12 logical CPUs on this 2-core machine: logical CPUs are Ray's
bookkeeping, not cores. Each vLLM replica reserves 2 (its actor plus its engine's
placement-group bundle), the OpenAI ingress 1, and the Models test serves three models
(tiny-a, tiny-b and tiny-b's int8 variant) while a redeployed ingress starts beside the
old one (see ../shared/STACK.md).
"""

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from serve_helpers import export_tiny, free_port, served, wait_for

from services.serve_env import serve_env
from training.config import load_config
from training.pretrain.inputs import ensure_inputs
from training.workspace import Workspace

# Job drivers started by Ray inherit PATH: make `playground` and this venv's python findable.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Serve's HTTP path as `playground up` runs it (HAProxy in front; see services/serve_env.py).
os.environ.update(serve_env())
# With HAProxy, a stopped ingress replica stays up 30 s by default so HAProxy stops routing to it first;
# each redeploy of the LLM app and the final serve.shutdown() paid that wait. No request is in flight
# at those moments here: 2 s.
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")

TINY = [
    "data.synthetic_chars=150000", "tokenizer.vocab_size=512", "model.vocab_size=512", "model.block_size=64",
    "model.n_layer=2", "model.n_head=2", "model.n_embd=64", "train.batch_size=8", "train.precision=fp32",
    "train.warmup_steps=2", "train.eval_iters=2", "train.sample_tokens=16", "tracking.experiment=tests",
]


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    port = free_port()
    # A cluster of the tests' own, even where `playground up` or `make demo` left one running on this
    # machine (Ray would otherwise join it, and refuse num_cpus): address="local" always starts one.
    os.environ.pop("RAY_ADDRESS", None)
    ctx = ray.init(address="local", num_cpus=12, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                   log_to_driver=False)
    yield {"dashboard": f"http://127.0.0.1:{port}", "gcs": ctx.address_info["gcs_address"]}
    ray.shutdown()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A workspace whose tiny dataset and tokenizer are made once per session."""
    ws = Workspace.resolve(tmp_path_factory.mktemp("ws"))
    ensure_inputs(load_config(None, TINY), ws)
    return ws


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config("train.max_steps=4", ...) -> a validated PretrainConfig for the tiny model."""
    return lambda *overrides: load_config(None, [*TINY, *overrides])


@pytest.fixture(scope="session")
def sweep_result(ray_cluster, workspace, tmp_path_factory):
    """`playground tune` once per session: 4 trials of the nano model with ASHA (for the sweep
    test and the browser test of the Sweeps page). Returns its final JSON line."""
    import json

    import yaml

    from cluster.cli import main

    config = tmp_path_factory.mktemp("sweep") / "lr.yaml"
    config.write_text(yaml.safe_dump({
        "base": "configs/pretrain/nano.yaml",
        "fixed": {  # the session's tiny dataset and tokenizer (made once); nano's model shape
            "data.synthetic_chars": 150000, "tokenizer.vocab_size": 512, "model.vocab_size": 512,
            "train.max_steps": 20, "train.warmup_steps": 2, "train.eval_interval": 5, "train.eval_iters": 2,
            "train.checkpoint_interval": 10, "train.log_interval": 5, "train.sample_tokens": 0,
            "train.precision": "fp32", "scale.threads_per_worker": 1, "tracking.experiment": "tests"},
        # Two good rates first, two hopeless ones after: when the last two reach ASHA's first
        # rung (step 5), the first two are already recorded there, so they are stopped.
        "search": {"train.lr": {"grid": [3e-3, 1e-2, 1e-6, 1e-7]}},
        "max_concurrent_trials": 2,
        "scheduler": {"type": "asha", "grace_period": 5, "reduction_factor": 2},
    }))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--workspace", str(workspace.root), "tune", "--config", str(config)])
    assert code == 0, out.getvalue()[-2000:]
    return {"workspace": workspace, "line": json.loads(out.getvalue().strip().splitlines()[-1]),
            "stdout": out.getvalue()}


@pytest.fixture(scope="session")
def sft_base(workspace, tiny_config):
    """A tiny model of ours (GPT-2 layout, context 128) exported as `sft-base`, and a tiny Hugging
    Face Llama (`sft-llama`) with the session's tokenizer: the bases the SFT tests tune."""
    import json
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.model.export import export_hf
    from training.model.transformer import Transformer

    cfg = tiny_config("model.block_size=128")
    tokenizer_dir = workspace.tokenizer(cfg.tokenizer.tokenizer_id(cfg.data.dataset_id()))
    torch.manual_seed(0)
    info = {"run_id": "sft-base", "step": 0, "config": cfg.model_dump(mode="json")}  # as `playground export` writes
    export_hf(Transformer(cfg.model), workspace.model("sft-base"), tokenizer_dir=tokenizer_dir,
              extra_files={"playground.json": json.dumps(info)})
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=cfg.model.vocab_size, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=256, tie_word_embeddings=False))
    llama.save_pretrained(workspace.model("sft-llama"))
    for f in tokenizer_dir.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy(f, workspace.model("sft-llama") / f.name)
    return {"gpt2": "sft-base", "llama": "sft-llama"}


SFT_QUICK = ["data.n_train=96", "data.n_val=16", "data.n_test=16", "train.batch_size=8", "train.lr=3e-3",
             "train.warmup_steps=0", "train.log_interval=2", "train.eval_interval=4", "train.checkpoint_interval=4",
             "train.eval_prompts=2", "train.eval_examples=16", "tracking.experiment=tests"]


@pytest.fixture(scope="session")
def sft_run(ray_cluster, workspace, sft_base):
    """`playground sft` once per session: LoRA on the tiny GPT-2 through Ray Train (8 steps).
    test_posttrain.py checks it; test_serve.py's browser test opens it on the Fine-tune page."""
    from cluster.cli import main

    run_id = "sft-lora-tiny"
    rc = main(["--workspace", str(workspace.root), "sft", "--config", "configs/sft/demo.yaml",
               f"base.model={sft_base['gpt2']}", f"run_name={run_id}", "method=lora", "train.max_steps=8", *SFT_QUICK])
    assert rc == 0
    return run_id


ALIGN_QUICK = ["data.n_train=64", "data.n_val=16", "data.n_test=16", "train.batch_size=8", "train.warmup_steps=0",
               "train.log_interval=2", "train.eval_interval=4", "train.checkpoint_interval=8",
               "train.eval_prompts=2", "train.kl_prompts=4", "train.eval_pairs=16", "train.eval_examples=8",
               "tracking.experiment=tests", "scale.threads_per_worker=1"]


@pytest.fixture(scope="session")
def separable_pairs(tmp_path_factory):
    """Pairs no reward model can get wrong once trained: the chosen reply is always the same short
    sentence, the rejected one always the same long babble."""
    path = tmp_path_factory.mktemp("pairs") / "separable.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about the {thing} number {i}.", "chosen": "It is fine.",
                                        "rejected": "no no no no no no no no"}) + "\n"
                            for i in range(100) for thing in ("pond", "kite")))
    return path


@pytest.fixture(scope="session")
def reward_run(ray_cluster, workspace, sft_run, separable_pairs):
    """`playground reward` once per session on the trivially separable pairs, from the SFT run's model
    (test_align.py checks it, and GRPO uses it as its reward)."""
    from cluster.cli import main

    run_id = "reward-tiny"
    assert main(["--workspace", str(workspace.root), "reward", "--config", "configs/align/reward.yaml",
                 f"base.model={sft_run}", f"run_name={run_id}", f"data.sources=[{separable_pairs}]",
                 "data.val_fraction=0.2", "train.max_steps=12", "train.lr=1e-3", *ALIGN_QUICK]) == 0
    return run_id


@pytest.fixture(scope="session")
def dpo_run(ray_cluster, workspace, sft_run):
    """`playground dpo` once per session: LoRA on 2 workers (gloo DDP), the IPO loss, 8 steps on the
    generated pairs. test_align.py checks it; test_serve_align.py's browser test opens it."""
    from cluster.cli import main

    run_id = "dpo-tiny"
    assert main(["--workspace", str(workspace.root), "dpo", "--config", "configs/align/dpo.yaml",
                 f"base.model={sft_run}", f"run_name={run_id}", "adapter=lora", "lora.r=4", "train.lr=5e-3",
                 "train.max_steps=8", "dpo.loss_type=ipo", "scale.num_workers=2", *ALIGN_QUICK]) == 0
    return run_id


SERVE_CONFIG = "configs/serve/local.yaml"


@pytest.fixture(scope="session")
def stack(ray_cluster, workspace, tiny_config):
    """Deploy configs/serve/local.yaml (loopback, a free port, the test workspace) with one model, tiny-a
    (tiny-b and tiny-c are exported beside it, not served; `tiny_b_served` serves tiny-b later).
    The models are random weights: the serving tests check the
    plumbing, not the prose."""
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    export_tiny(workspace, tiny_config, "tiny-a", seed=1)
    export_tiny(workspace, tiny_config, "tiny-b", seed=2)
    export_tiny(workspace, tiny_config, "tiny-c", seed=3)
    run_dir = workspace.run("fake-run")  # a finished run as the API sees it
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tiny_config().model_dump(mode="json")))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s, "lr": 1e-3}) + "\n"
                                                   for s in (1, 2, 3)))

    config = yaml.safe_load(Path(SERVE_CONFIG).read_text())
    port = free_port()
    config["http_options"]["port"] = port
    for app in config["applications"]:
        app["args"]["workspace"] = str(workspace.root)
        if app["name"] == "llm":
            app["args"]["models"] = ["tiny-a"]
        else:
            app["args"]["dashboard_url"] = ray_cluster["dashboard"]
    client = ServeSubmissionClient(ray_cluster["dashboard"])
    client.deploy_applications(config)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: served(base) == ["tiny-a"], 300, "the LLM app")
    wait_for(lambda: httpx.get(f"{base}/api/health", timeout=10).status_code == 200, 60, "the API")
    yield {"base": base, "workspace": workspace}
    serve.shutdown()


@pytest.fixture(scope="session")
def tiny_b_served(stack):
    """tiny-b served beside tiny-a, deployed once for the tests that need two models (the deploy test,
    the blind vote, the side-by-side chat); test_serve_models.py undeploys it at the end, and checks
    that only the LLM app was reconfigured."""
    base = stack["base"]
    if "tiny-b" not in served(base):
        resp = httpx.post(f"{base}/api/deployments", json={"model": "tiny-b"}, timeout=60)
        assert resp.status_code == 202, resp.text
    wait_for(lambda: {"tiny-a", "tiny-b"} <= set(served(base)), 300, "tiny-b")
    return stack


@pytest.fixture(scope="session")
def oai(stack):
    from openai import OpenAI

    return OpenAI(base_url=f"{stack['base']}/v1", api_key="unused")
