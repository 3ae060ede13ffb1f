"""The architecture lab's configurator routes (services/inspector.py) on a test client, and
the Architecture page's configurator on AppTest against them. /api/inspect needs the
Inspector deployment: the integration tests call it inside Serve."""

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ui_stub import start_stub

from services.inspector import router
from services.llm import harden
from tests.ui_checks import open_page
from training.model.configurator import model_config
from training.model.transformer import Transformer


@pytest.fixture(scope="module")
def app():
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)
    return app


def test_presets_and_a_summary_that_counts_exactly(app):
    api = TestClient(app)
    presets = api.get("/api/architecture/presets").json()
    assert {"micro", "gpt2-small", "llama2-7b"} <= set(presets["presets"]) and "h100-sxm" in presets["gpus"]
    spec = {"arch": "llama", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_kv_head": 1, "vocab_size": 300,
            "block_size": 32, "tie_embeddings": False}
    out = api.post("/api/architecture", json={"model": spec, "batch_size": 2}).json()
    real = sum(p.numel() for p in Transformer(model_config(spec)).parameters())
    assert out["params"]["total"] == real
    assert out["params"]["total"] == sum(out["params"][k] for k in ("embeddings", "attention", "mlp", "norms", "head"))
    gpt2 = api.post("/api/architecture", json={"model": "gpt2-small"}).json()
    assert gpt2["params"]["total"] == 124_439_808


def test_bad_configs_are_400_naming_the_field(app):
    api = TestClient(app)
    for body, param in [({"model": {"n_layer": 0}}, "model.n_layer"), ({"model": "nope"}, "preset"),
                        ({"model": "micro", "batch_size": 0}, "batch_size"), ({"model": {"bogus": 1}}, "model.bogus")]:
        r = api.post("/api/architecture", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())


def test_architecture_page_configurator(app, monkeypatch):
    server = start_stub(app)
    try:
        monkeypatch.setenv("PLAYGROUND_URL", server.url)
        monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
        at = open_page("pages/4_Architecture.py", timeout=30)
        assert not at.exception, [e.value for e in at.exception]
        assert at.metric[0].value == f"{sum(p.numel() for p in Transformer(model_config('micro')).parameters()):,}"
        at.selectbox(key="arch_preset").set_value("gpt2-small").run()
        assert at.metric[0].value == "124,439,808"
        assert "lm_head" in at.code[0].value
        at.number_input(key="arch_n_head").set_value(7).run()  # 768 is not divisible by 7
        assert at.error and "n_head" in at.error[0].value and "Traceback" not in at.error[0].value
    finally:
        server.stop()


def test_inspector_reads_a_run_checkpoint_when_there_is_no_export(tmp_path):
    """A GPT-2 layout with RoPE has no Hugging Face export; its run checkpoint is inspected.
    (The Inspector class itself, without Serve; /api/inspect through Serve is in the
    integration tests.)"""
    from dataclasses import asdict

    from services.inspector import Inspector
    from training.model import checkpoint
    from training.tokenizers import tokenlab
    from training.workspace import Workspace

    ws = Workspace(tmp_path)
    tok = tokenlab.train(ws, "the quick brown fox jumps over the lazy dog. " * 40, trainer="scratch",
                         vocab_size=300, name="tok")
    cfg = model_config({"arch": "gpt2", "pos_embedding": "rope", "n_layer": 2, "n_head": 2, "n_embd": 32,
                        "vocab_size": 300, "block_size": 32})
    model = Transformer(cfg)
    checkpoint.save(ws.run("rope-run") / "checkpoint_000002", model=model,
                    optimizer=torch.optim.AdamW(model.parameters()), step=2, config={"model": asdict(cfg)},
                    rng_states=[], meta={"tokenizer_dir": tok["path"]})
    inspector = Inspector.func_or_class(str(ws.root))
    out = inspector.inspect("rope-run", "the quick fox", top_k=3)
    assert "error" not in out, out
    assert out["n_layer"] == 2 and len(out["attention"][0][0]) == len(out["ids"])
    assert "no exported model or run" in inspector.inspect("nope", "x")["error"]
    assert "layer" in inspector.inspect("rope-run", "the fox", layer=7, head=0)["error"]
