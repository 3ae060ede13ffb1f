"""The model registry on the live stack: tiny-b quantized to int8 by a Ray job started over HTTP, the
Models page in headless Chromium (the lineage graph, the card, a diff of two checkpoints of the
session's LoRA run, then Deploy on the int8 variant), the variant answering through vLLM, MLflow's
`deployed` alias following it, and at the end both extra models undeployed with only the LLM app
reconfigured. Runs after test_serve_lab.py (file order), on the session's stack."""

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import free_port, served, wait_for

pytestmark = pytest.mark.integration


def _job(base: str, job_id: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return job
        time.sleep(2)
    raise TimeoutError(f"job {job_id} did not end in {timeout:.0f} s")


def test_quantize_browse_deploy_and_undeploy(stack, oai, tiny_b_served, sft_run, tmp_path):
    from models_browser import check_models_page

    base, ws = stack["base"], stack["workspace"]
    api_replica = httpx.get(f"{base}/api/health").json()
    job = httpx.post(f"{base}/api/models/tiny-b/quantize", json={"method": "int8"}, timeout=30)
    assert job.status_code == 202, job.text
    assert _job(base, job.json()["job_id"])["status"] == "SUCCEEDED"
    variant = httpx.get(f"{base}/api/models/tiny-b-int8", timeout=30).json()
    assert variant["kind"] == "quantized" and variant["parent"] == "tiny-b" and variant["serving"]["servable"]
    # about half: in a model this small the embeddings (kept in fp32) and the tokenizer files weigh a lot
    assert variant["size_bytes"] < 0.6 * httpx.get(f"{base}/api/models/tiny-b", timeout=30).json()["size_bytes"]
    assert (ws.model("tiny-b-int8") / "README.md").read_text().startswith("---")  # its model card
    again = httpx.post(f"{base}/api/models/tiny-b/quantize", json={"method": "int8"}, timeout=30)
    assert again.status_code == 409 and again.json()["error"]["param"] == "id"

    # two of the LoRA run's checkpoints (test_posttrain.py resumes that run, so which ones varies)
    steps = [c["name"] for c in httpx.get(f"{base}/api/runs/{sft_run}/checkpoints", timeout=30).json()]
    assert len(steps) >= 2, steps
    pair = (steps[0], steps[-1])
    out = check_models_page(base, free_port(), sft_run, pair, "tiny-b-int8", tmp_path)
    assert not out["errors"], out["errors"]
    assert "sft-base" in out["lineage_svg"] and "instructions-" in out["lineage_svg"]  # parent model and data
    assert "Traceback" not in out["card_text"] + out["diff_text"] + out["deploy_text"]
    assert f"Export {pair[0]} as a model" in out["checkpoints_text"]  # the browser's export button
    assert "Relative change, all weights" in out["diff_text"] and pair[1] in out["diff_text"]
    assert all(s.stat().st_size > 10_000 for s in out["screenshots"])
    if keep := os.environ.get("PLAYGROUND_SCREENSHOTS"):
        for s in out["screenshots"]:
            shutil.copy(s, Path(keep) / s.name)

    # The click deployed the int8 variant beside tiny-a and tiny-b; vLLM runs its int8 kernels.
    wait_for(lambda: set(served(base)) == {"tiny-a", "tiny-b", "tiny-b-int8"}, 400, "tiny-b-int8")
    reply = oai.completions.create(model="tiny-b-int8", prompt="the", max_tokens=4, temperature=0)
    assert reply.choices[0].text is not None and reply.usage.completion_tokens >= 1
    wait_for(lambda: (httpx.get(f"{base}/api/models/tiny-b-int8", timeout=30).json()["mlflow"] or {})
             .get("aliases", {}).get("deployed") == "1", 60, "MLflow's deployed alias")
    deleted = httpx.delete(f"{base}/api/models/tiny-b-int8", timeout=30)
    assert deleted.status_code == 409 and "undeploy it first" in deleted.json()["error"]["message"]

    for model in ("tiny-b-int8", "tiny-b"):
        assert httpx.delete(f"{base}/api/deployments/{model}", timeout=60).status_code == 200
    wait_for(lambda: served(base) == ["tiny-a"], 300, "removal of tiny-b and tiny-b-int8")
    assert httpx.delete(f"{base}/api/deployments/tiny-b", timeout=60).status_code == 404
    # The API application kept running throughout (only the LLM app was redeployed).
    assert httpx.get(f"{base}/api/health").json()["workspace"] == api_replica["workspace"]
    assert httpx.delete(f"{base}/api/models/tiny-b-int8", timeout=30).json()["deleted"] == "tiny-b-int8"
