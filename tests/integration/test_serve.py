"""The real serving stack: Ray Serve + vLLM (CPU) + the playground API, called over HTTP
with the official `openai` client. The models are tiny exports the fixture makes itself
(random weights: these tests check the plumbing, not the prose).

The stack (`stack`, `oai`) is conftest.py's, one per session: this module and test_serve_eval.py
share it. They run after the training tests (file order); test_tune.py shuts Serve down first, so
its replicas never hold CPUs that Ray Tune's trials wait for.
"""

import json
import os
from pathlib import Path

import httpx
import pytest
from serve_helpers import free_port, listeners, wait_for

from ui.client import PlaygroundClient

pytestmark = pytest.mark.integration
CONFIG = "configs/serve/local.yaml"
SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"


def test_chat_plain_and_streaming(oai):
    params = dict(model="tiny-a", messages=[{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hello"}],
                  max_tokens=8, temperature=0.7, top_p=0.9, seed=3, presence_penalty=0.1, frequency_penalty=0.1,
                  extra_body={"top_k": 20, "repetition_penalty": 1.1})
    plain = oai.chat.completions.create(**params)
    assert plain.choices[0].message.role == "assistant" and plain.usage.completion_tokens > 0
    again = oai.chat.completions.create(**params)
    assert again.choices[0].message.content == plain.choices[0].message.content  # seeded
    pieces = [c.choices[0].delta.content for c in oai.chat.completions.create(**params, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == plain.choices[0].message.content


def test_completions_with_logprobs_and_stop(oai):
    r = oai.completions.create(model="tiny-a", prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) > 0 and all(x <= 0 for x in lp.token_logprobs)
    assert all(len(alts) >= 1 for alts in lp.top_logprobs)
    first = lp.tokens[0]
    stopped = oai.completions.create(model="tiny-a", prompt="Once upon a time", max_tokens=6, temperature=0, stop=[first])
    assert stopped.choices[0].text == "" and stopped.choices[0].finish_reason == "stop"


def test_models_list(stack, oai):
    assert [m.id for m in oai.models.list().data] == ["tiny-a"]
    # vLLM's card says the context length; the Chat page bounds max_tokens with it.
    with PlaygroundClient(stack["base"]) as ui_client:
        assert ui_client.served_models() == {"tiny-a": 64}


def test_what_we_configure_listens_on_loopback_only(stack, ray_cluster):
    """The security default, checked on the live sockets. Ours listen on 127.0.0.1: the
    Serve HTTP port (HAProxy), each ingress replica's own HTTP port, the dashboard, vLLM's
    processes. Ray's own core ports do not follow the config (Ray 2.60 turns a loopback
    node IP into the machine's IP): GCS, raylet, every worker's gRPC port, the agents, the
    client server, HAProxy's stats and metrics pages. Those may listen wider, and only
    those; Ray's token auth (RAY_AUTH_MODE=token) guards them. docs/concepts/serving.md ("Ports and security") lists them."""
    from ray.serve._private import constants as serve_constants

    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    http_port = int(stack["base"].rsplit(":", 1)[1])
    dashboard_port = int(ray_cluster["dashboard"].rsplit(":", 1)[1])
    replica_ports = range(serve_constants.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT,
                          serve_constants.RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT + 1)
    haproxy_pages = {serve_constants.RAY_SERVE_HAPROXY_STATS_PORT, serve_constants.RAY_SERVE_HAPROXY_METRICS_PORT}
    sockets = listeners()

    ours = [(ip, port, name) for ip, port, name in sockets
            if port in (http_port, dashboard_port) or name.startswith("VLLM::")
            or (name.startswith("ray::ServeRepli") and port in replica_ports)]
    # Not vacuous: HAProxy on the HTTP port, an ingress replica's port, the engine's sockets.
    assert {http_port, dashboard_port} <= {port for _, port, _ in ours}, sockets
    assert any(port in replica_ports for _, port, _ in ours), sockets
    assert any(name.startswith("VLLM::") for _, _, name in ours), sockets
    assert [entry for entry in ours if entry[0] not in loopback] == []

    ray_internal = ("gcs_server", "raylet", "ray::", "ray-dashboard-", "ray driver")
    ray_python = ("/ray/dashboard/", "/ray/autoscaler/", "ray.util.client.server")
    unexpected = [(ip, port, name) for ip, port, name in sockets if ip not in loopback
                  and not (name.startswith(ray_internal) or any(s in name for s in ray_python)
                           or (name == "haproxy" and port in haproxy_pages))]
    assert unexpected == [], unexpected


@pytest.mark.parametrize("body, status, param, code", [
    (b"{oops", 400, "body", 400),
    (json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "model",
     "model_not_found"),
    (json.dumps({"model": "tiny-a", "messages": []}).encode(), 400, "messages", 400),
    (json.dumps({"model": "tiny-a", "messages": [{"role": "user", "content": "x"},
                                                 {"role": "wizard", "content": "y"}]}).encode(),
     400, "messages[1].role", "invalid_value"),
    (json.dumps({"model": "tiny-a", "messages": [{"role": "user", "content": "x"}], "temperature": 5}).encode(),
     400, "temperature", 400),
    (json.dumps({"model": "tiny-a", "messages": [{"role": "user", "content": "word " * 400}]}).encode(),
     400, "messages", "context_length_exceeded"),
])
def test_bad_input_is_4xx_naming_the_field_and_server_keeps_serving(stack, oai, body, status, param, code):
    resp = httpx.post(f"{stack['base']}/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"}, timeout=60)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert (err["param"] == param or param in err["message"]) and err["code"] == code, err
    assert oai.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=2).choices


def test_playground_api(stack):
    base = stack["base"]
    health = httpx.get(f"{base}/api/health").json()
    assert health["status"] == "ok" and health["models_deployed"] == ["tiny-a"]
    assert any(k.startswith("llm/") for k in health["deployments"])
    # MLflow: the workspace's store, and where `playground mlflow` serves its UI (the Home page links to it)
    assert health["links"]["mlflow_store"] == f"sqlite:///{health['workspace']}/runs/mlflow.db"
    assert health["links"]["mlflow"] == "http://127.0.0.1:5000"
    models = {m["id"]: m for m in httpx.get(f"{base}/api/models").json()}
    assert models["tiny-a"]["deployed"] and not models["tiny-b"]["deployed"]
    assert models["tiny-a"]["size_bytes"] > 0 and models["tiny-a"]["run_id"] == "fake-run"
    # (on a slow 2-core machine the first run list took longer than httpx's default 5 s)
    runs = {r["run"]: r for r in httpx.get(f"{base}/api/runs", timeout=60).json()}
    assert runs["fake-run"]["step"] == 3
    detail = httpx.get(f"{base}/api/runs/fake-run", timeout=60).json()
    assert [m["step"] for m in detail["metrics"]] == [1, 2, 3] and detail["config"]["model"]["n_layer"] == 2
    missing = httpx.get(f"{base}/api/runs/nope")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "run"
    gone = httpx.get(f"{base}/api/data/diff", params={"a": "nope-00000000", "b": "nope-11111111"})
    # errors name the id, never the server's workspace path (services/api.py: harden's redact)
    assert gone.status_code == 404 and "'nope-00000000'" in gone.text and health["workspace"] not in gone.text
    bad = httpx.post(f"{base}/api/deployments", json={"modle": "x"})
    assert bad.status_code == 400 and "model" in json.dumps(bad.json())
    assert httpx.get(f"{base}/api/docs").status_code == 200
    assert "/deployments" in json.dumps(httpx.get(f"{base}/api/openapi.json").json()["paths"])


def test_tokenizer_lab_api_and_a_training_job(stack):
    """The lab's routes inside Serve, and POST /api/tokenizers/train running a real Ray job
    (`playground tokenizer lab-train`) whose progress the API reports."""
    from training.tokenizers.tokenizer import train_tokenizer

    base, ws = stack["base"], stack["workspace"]
    names = [t["name"] for t in httpx.get(f"{base}/api/tokenizers").json()]
    assert names, "the tiny run's tokenizer should be listed"
    enc = httpx.post(f"{base}/api/tokenizers/encode", json={"tokenizer": names[0], "text": "Hello world"}).json()
    assert "".join(t["text"] for t in enc["tokens"]) == "Hello world"

    corpus = SHAKESPEARE.read_text(encoding="utf-8")[:100_000]
    up = httpx.post(f"{base}/api/uploads", params={"name": "shakespeare.txt"}, content=corpus.encode()).json()
    resp = httpx.post(f"{base}/api/tokenizers/train", timeout=60, json={
        "source": {"upload": up["upload"]}, "trainer": "scratch", "vocab_size": 400, "name": "lab-test"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    status = {}

    def finished() -> bool:
        status.update(httpx.get(f"{base}/api/tokenizers/jobs/{job_id}", timeout=30).json())
        return status["status"] in ("SUCCEEDED", "FAILED", "STOPPED")

    wait_for(finished, 180, "the tokenizer training job")
    assert status["status"] == "SUCCEEDED", status
    assert status["progress"]["done"] == status["progress"]["total"] > 0
    assert "lab-test" in [t["name"] for t in httpx.get(f"{base}/api/tokenizers").json()]
    # What the job trained equals Hugging Face's trainer on the same text (the parity promise).
    reference = train_tokenizer([corpus], 400, ws.root / "reference-hf")
    from transformers import AutoTokenizer

    text = corpus[:2000]
    ours = httpx.post(f"{base}/api/tokenizers/encode", json={"tokenizer": "lab-test", "text": text}).json()
    assert [t["id"] for t in ours["tokens"]] == AutoTokenizer.from_pretrained(str(reference))(text)["input_ids"]

    bad = httpx.post(f"{base}/api/uploads", content=b"\xff\xfe not text")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "file"
    unknown = httpx.post(f"{base}/api/tokenizers/encode", json={"tokenizer": "nope", "text": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "tokenizer"
    missing = httpx.get(f"{base}/api/tokenizers/jobs/raysubmit_nope")
    assert missing.status_code == 404


@pytest.fixture(scope="module")
def data_job(stack) -> dict:
    """A data pipeline job submitted through POST /api/data/jobs, waited for; its last status."""
    base = stack["base"]
    resp = httpx.post(f"{base}/api/data/jobs", timeout=60, json={"config": {
        "name": "apijob", "sources": ["planted:1"], "stages": {"quality": {"min_words": 30}}}})
    assert resp.status_code == 202, resp.text
    job_id, status = resp.json()["job_id"], {}

    def finished() -> bool:
        status.update(httpx.get(f"{base}/api/data/jobs/{job_id}", timeout=30).json())
        return status["status"] in ("SUCCEEDED", "FAILED", "STOPPED")

    wait_for(finished, 300, "the data pipeline job")
    return status


def test_data_pipeline_job_through_the_api(stack, data_job):
    """POST /api/data/jobs runs `playground data run` as a real Ray job (Ray Data inside the
    session's cluster); the API reports its progress and the snapshot it wrote, whose
    statistics and samples it then serves. (The browser test shows this snapshot.)"""
    base, status = stack["base"], data_job
    bad = httpx.post(f"{base}/api/data/jobs", json={"config": {"sources": ["planted:1"],
                                                                 "stages": {"near_dedup": {"threshold": 2}}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "config.stages.near_dedup.threshold"
    assert status["status"] == "SUCCEEDED", status
    assert status["progress"]["done"] == status["progress"]["total"] == 4 and status["snapshot"].startswith("apijob-")
    detail = httpx.get(f"{base}/api/data/snapshots/{status['snapshot']}").json()
    stages = {row["stage"]: row for row in detail["stats"]["stages"]}
    assert stages["exact_dedup"]["removed"] > 0 and stages["near_dedup"]["removed"] > 0
    assert sum(stages["pii"]["replaced"].values()) > 0 and detail["manifest"]["counts"]["split"]["out"] > 100
    removed = httpx.get(f"{base}/api/data/snapshots/{status['snapshot']}/samples",
                        params={"status": "removed", "stage": "language"}).json()
    assert removed["total"] > 0 and all(s["reason"].startswith("lang:") for s in removed["items"])


def test_jobs_api_submits_tails_and_stops_a_training_run(stack, tiny_config):
    """POST /api/jobs starts `playground pretrain` as a real Ray job with the posted config;
    its log lines come back through /logs while it trains, and /stop ends it."""
    base = stack["base"]
    config = tiny_config("train.max_steps=100000", "train.eval_interval=1000", "train.log_interval=1",
                         "tracking.mlflow=false", "run_name=api-job").model_dump(mode="json")
    resp = httpx.post(f"{base}/api/jobs", json={"kind": "pretrain", "config": config}, timeout=60)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    logs = {}

    def training() -> bool:
        logs.update(httpx.get(f"{base}/api/jobs/{job_id}/logs", params={"tail": 50}, timeout=30).json())
        assert logs["status"] in ("PENDING", "RUNNING"), logs
        return any("loss" in line and "step" in line for line in logs["lines"])

    wait_for(training, 240, "the training job's first steps")
    assert job_id in [j["job_id"] for j in httpx.get(f"{base}/api/jobs", timeout=30).json()]

    # Restart the API deployment (kill its replica; Serve starts a new one): the job goes on,
    # and the new replica finds it, because the jobs live in Ray's job table, not in the API.
    import ray
    from ray.util.state import list_actors

    [replica] = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                 if a.class_name.startswith("ServeReplica:playground:PlaygroundAPI")]
    ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)

    def restarted() -> bool:
        alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                 if a.class_name.startswith("ServeReplica:playground:PlaygroundAPI")]
        return bool(alive) and alive[0].actor_id != replica.actor_id and httpx.get(
            f"{base}/api/jobs/{job_id}", timeout=10).status_code == 200

    wait_for(restarted, 120, "a new API replica")
    lines_before = logs["total_lines"]
    wait_for(lambda: training() and logs["total_lines"] > lines_before, 120, "more log lines after the restart")
    assert httpx.post(f"{base}/api/jobs/{job_id}/stop", timeout=30).json()["stopped"] is True
    wait_for(lambda: httpx.get(f"{base}/api/jobs/{job_id}", timeout=30).json()["status"] == "STOPPED", 120,
             "the job to stop")
    bad = httpx.post(f"{base}/api/jobs", json={"kind": "pretrain", "config": {"train": {"lr": "fast"}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "config.train.lr"


def test_streamlit_tokenizer_page_trains_on_a_dataset(stack, monkeypatch):
    """The Tokenizer page's Train tab against the live API: a registered dataset, a Ray job,
    the progress bar, and the new tokenizer in the lists."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ui_checks import open_page

    monkeypatch.setenv("PLAYGROUND_URL", stack["base"])
    at = open_page("pages/3_Tokenizer.py", timeout=240)
    at.radio(key="tok_train_kind").set_value("Dataset").run()
    at.number_input(key="tok_train_vocab").set_value(300).run()
    at.text_input(key="tok_train_name").set_value("ui-trained").run()
    at.button(key="tok_train_go").click().run()  # the page polls the job until it ends
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Trained ui-trained" in " ".join(s.value for s in at.success)
    assert "ui-trained" in [t["name"] for t in httpx.get(f"{stack['base']}/api/tokenizers").json()]


def test_inspector_deployment_through_the_api(stack):
    """POST /api/inspect runs our PyTorch model in the Inspector deployment."""
    base = stack["base"]
    r = httpx.post(f"{base}/api/inspect", json={"model": "tiny-a", "prompt": "Once upon a time", "top_k": 3},
                   timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    n_tokens = len(out["ids"])
    assert len(out["attention"]) == out["n_layer"] == 2 and len(out["attention"][0]) == out["n_head"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in out["attention"][1][0])
    assert len(out["logit_lens"]) == out["n_layer"] + 1 and len(out["next_token"]) == n_tokens
    assert len(out["head_patterns"]) == out["n_layer"] * out["n_head"] and out["timings_ms"]["api"] > 0
    one = httpx.post(f"{base}/api/inspect", json={"model": "tiny-a", "prompt": "Once upon", "layer": 1, "head": 0})
    assert one.json()["attention"]["layer"] == 1
    for body, status, param in [
        ({"model": "nope", "prompt": "x"}, 404, "model"),
        ({"model": "tiny-a", "prompt": "word " * 200}, 400, "prompt"),  # tiny context is 64 tokens
        ({"model": "tiny-a", "prompt": "hi", "layer": 5, "head": 0}, 400, "layer"),
        ({"model": "tiny-a", "prompt": "hi", "layer": 0, "head": 9}, 400, "head"),
    ]:
        bad = httpx.post(f"{base}/api/inspect", json=body, timeout=60)
        assert bad.status_code == status and bad.json()["error"]["param"] == param, (body, bad.text)


def test_streamlit_chat_page_against_the_live_endpoint(stack, oai):
    """The real Chat page (Streamlit AppTest) talking to the real Serve HTTP endpoint."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ui_checks import check_chat_page

    # Seeded sampling: a random-weight model's greedy answer is often only newlines, which
    # Markdown renders as nothing; sampled tokens are visible words.
    answer = check_chat_page(stack["base"], timeout=120, message="Hello", temperature=1.0, seed=7, max_tokens=8)
    expected = oai.chat.completions.create(
        model="tiny-a", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=1.0, seed=7,
        top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, extra_body={"top_k": -1, "repetition_penalty": 1.0},
    ).choices[0].message.content
    assert expected.split(), "the reference answer is blank; pick another seed"
    assert answer.split() == expected.split()  # the page renders Markdown: compare the words


def test_streamlit_chat_goes_on_past_the_models_context(stack):
    """tiny-a's context is 64 tokens, and the page's max new tokens defaults to all of it:
    the first answer fills the context, so the second turn fits only without the first
    exchange. vLLM's real 400 must reach the page as a context overflow."""
    from tests.ui_checks import assistant_texts, open_page, playground_env

    with playground_env(stack["base"]):
        at = open_page("pages/1_Chat.py", timeout=120)
        assert at.slider(key="sampling_max_tokens").value == 64
        at.number_input(key="sampling_seed").set_value(7)
        for message in ("Hello", "Hello again"):
            at.chat_input[0].set_value(message).run(timeout=120)
            assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
        assert len(assistant_texts(at)) == 2 and len(at.session_state["chat_messages"]) == 4
        assert "the oldest exchange was left out" in at.caption[-1].value


@pytest.fixture(scope="module")
def demo_model(stack) -> str:
    """The demo model: `make demo`'s config (configs/pretrain/demo.yaml: GPT-2 layout, 4 layers x
    256, context 128) through the same CLI stages, trained 30 steps on the session's small
    dataset instead of 600 on 8 MB, exported as `demo`."""
    from cluster.cli import main

    ws = stack["workspace"]
    quick = ["data.synthetic_chars=150000", "tokenizer.vocab_size=512", "train.max_steps=30",
             "train.eval_interval=30", "train.checkpoint_interval=30", "train.sample_tokens=0",
             "tracking.mlflow=false", "run_name=demo-brief"]
    assert main(["--workspace", str(ws.root), "pretrain", "--config", "configs/pretrain/demo.yaml", *quick]) == 0
    assert main(["--workspace", str(ws.root), "export", "demo-brief", "--out", str(ws.model("demo"))]) == 0
    return "demo"


def test_browser_chat_streams_an_answer(stack, data_job, sweep_result, demo_model, tmp_path):
    """Headless Chromium (Debian's package, installed by `make install`) opens the real UI,
    sends a chat message, sees the streamed answer, then tokenizes text on the Tokenizer
    page and sees coloured tokens, then inspects a prompt on the Architecture page and
    sees the attention heatmap, then sees a snapshot's statistics on the Data page, a
    trained run's curves on the Runs page and the session's real Tune sweep on the Sweeps
    page (pages_browser.py); it saves a screenshot of each."""
    import shutil

    from pages_browser import walk_main_pages

    out = walk_main_pages(stack["base"], free_port(), demo_model, tmp_path)
    text, shots = out["text"], out["shots"]
    # An answer, not an error shown in its place (once, a 400 for max_tokens was).
    assert text.strip() and out["errors"] == 0 and "HTTP 4" not in text and "Traceback" not in text
    assert len(out["lengths"]) >= 3 and out["lengths"][-1] == len(text.strip()), out["lengths"]  # streamed in pieces
    assert out["n_tokens"] > 5 and "Tokenizers" in out["tok_text"].replace("·", " ")
    arch_text, data_text = out["arch_text"], out["data_text"]
    assert "Head patterns" in arch_text and "Traceback" not in arch_text
    assert "4 layers × 4 heads" in arch_text  # the demo model's shape (the test models have 2 x 2)
    assert "sources: planted:1" in data_text and "Traceback" not in data_text  # (tables draw on a canvas)
    assert "Documents kept" in data_text and "Removed by stage" in data_text and "Personal data" in data_text
    assert "Loss vs step" in out["runs_text"] and "Traceback" not in out["runs_text"]
    best, sweeps_text = sweep_result["line"], out["sweeps_text"]
    assert "Best val_loss" in sweeps_text and f"{best['best_metric']:.4f}" in sweeps_text
    assert "4 of 4 trials finished" in sweeps_text and "Traceback" not in sweeps_text
    assert all(s.stat().st_size > 10_000 for s in shots.values()), {k: s.stat().st_size for k, s in shots.items()}
    print(f"answer: {text!r}; screenshots: {' '.join(map(str, shots.values()))}")
    keep = os.environ.get("PLAYGROUND_SCREENSHOTS")  # a folder to keep them in, e.g. docs/img for the tutorial
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots.values():
            shutil.copy(s, Path(keep) / s.name)


def test_browser_finetune_page_compares_base_and_tuned(stack, sft_run, tmp_path):
    """The Fine-tune page in headless Chromium, on the session's real SFT run (conftest.py
    `sft_run`: LoRA through Ray Train): base and tuned accuracy, the replies side by side, and
    the Watch view's curves."""
    from finetune_browser import check_finetune_page

    out = check_finetune_page(stack["base"], free_port(), sft_run, tmp_path)
    assert not out["errors"], out["errors"]
    assert "Traceback" not in out["compare_text"] + out["watch_text"]
    assert any("tuned reply" in t and "base reply" in t for t in out["tables"]), out["tables"]
    assert "heldout_template" in out["compare_text"].replace(" ", "_") or "template" in out["compare_text"]
    assert out["compare_screenshot"].stat().st_size > 10_000 and out["watch_screenshot"].stat().st_size > 10_000
    keep = os.environ.get("PLAYGROUND_SCREENSHOTS")
    if keep:
        import shutil

        for s in (out["compare_screenshot"], out["watch_screenshot"]):
            shutil.copy(s, Path(keep) / s.name)


def test_deploy_reconfigures_only_the_llm_app(stack, oai, tiny_b_served):
    """tiny-b deployed beside tiny-a (the `tiny_b_served` fixture: POST /api/deployments); undeploying is
    test_serve_models.py's, at the end, since the blind vote and the side-by-side chat need both. Last in
    this file: with two models Serve routes through an ingress, and the browser chat test above checks
    streaming through the single-model layout."""
    base = stack["base"]
    # Two models: Ray's multi-model ingress answers /v1/models, and its cards still say the
    # context (from the engine arguments) for the Chat page.
    with PlaygroundClient(base) as ui_client:
        assert ui_client.served_models() == {"tiny-a": 64, "tiny-b": 64}
    assert oai.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=3).choices[0].message.content is not None
    assert httpx.post(f"{base}/api/deployments", json={"model": "no-such"}).status_code == 404
    assert httpx.delete(f"{base}/api/deployments/no-such", timeout=60).status_code == 404
    models = {m["id"]: m for m in httpx.get(f"{base}/api/models").json()}
    assert models["tiny-b"]["deployed"] and models["tiny-b"]["kind"] == "pretrained"
