"""The UI's HTTP client against the stub server, plus its pure helpers (export, config diff,
sampling parameters, figures, the MLflow line)."""

import json
import socket

import pytest
from ui_stub import CONFIG_A, CONFIG_B, FAIL_BEFORE, FAIL_DURING, KEY, MODEL, stub  # noqa: F401

from ui.client import ApiError, PlaygroundClient, _error_from_body, _sse_text
from ui.format import (
    MISSING,
    SAMPLING,
    config_diff,
    conversation_to_json,
    conversation_to_markdown,
    figure,
    mlflow_line,
    readable,
    request_params,
    show_value,
    without_oldest_exchange,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(stub):  # noqa: F811
    with PlaygroundClient(stub.url, KEY, timeout=10) as c:
        yield c


def test_management_routes(client):
    assert client.health()["deployments"]["llm/LLMServer"] == "HEALTHY"
    assert client.models()[0]["id"] == MODEL
    assert [r["run"] for r in client.runs()] == ["run-a", "run-b", "sft-demo", "sft-live"]
    assert [r["run"] for r in client.sft_runs()] == ["sft-demo", "sft-live"]  # kind sft only
    assert client.run("sft-demo")["results"]["model"] == "sft-demo" and client.run("run-a")["results"] is None
    assert client.run("run-a")["config"] == CONFIG_A
    assert client.deploy("m1") == {"model": "m1", "status": "deploying"}
    # ids may contain "/": it is escaped so the id stays one path segment on the wire.
    assert client.undeploy(MODEL) == {"model": MODEL, "status": "removed"}


def test_served_models_and_chat(client, stub):  # noqa: F811
    assert client.served_models() == {MODEL: 2048}
    stub.app.state.served = {MODEL: None, "other": 64}
    try:
        assert client.served_models() == {MODEL: None, "other": 64}
    finally:
        stub.app.state.served = {MODEL: 2048}
    assert client.chat(MODEL, HI, temperature=0.0) == "Hello! You said: hi"


def test_served_models_reads_rays_multi_model_cards(client, monkeypatch):
    # The card Ray's OpenAiIngress lists (ray.llm's `to_model_metadata`), which has no
    # `max_model_len`; the HTTP round trip is the stub's in the test above.
    card = {"id": "a", "object": "model", "owned_by": "organization-owner", "permission": [],
            "metadata": {"model_id": "a", "input_modality": "text", "max_request_context_length": 256}}
    unsaid = card | {"id": "b", "metadata": {"max_request_context_length": None}}
    monkeypatch.setattr(client, "_request", lambda method, path, **kw: {"data": [card, unsaid]})
    assert client.served_models() == {"a": 256, "b": None}


def test_stream_yields_pieces_in_order(client, stub):  # noqa: F811
    pieces = list(client.chat_stream(MODEL, HI, **request_params({"top_k": 0, "seed": 7})))
    assert pieces == ["Hello", "! You", " said: ", "hi"]
    body = stub.app.state.requests[-1][3]
    assert body["stream"] is True and body["top_k"] == -1 and body["seed"] == 7 and "stop" not in body


def test_api_key_is_sent_on_every_request(client, stub):  # noqa: F811
    client.health()
    list(client.chat_stream(MODEL, HI))
    assert {auth for *_, auth, _ in stub.app.state.requests[-2:]} == {f"Bearer {KEY}"}
    with PlaygroundClient(stub.url, api_key="wrong") as bad, pytest.raises(ApiError) as err:
        bad.health()
    assert err.value.status == 401 and "API key" in err.value.message


def test_openai_error_body(client):
    for call in (lambda: client.chat(MODEL, [{"role": "user", "content": FAIL_BEFORE}]),
                 lambda: list(client.chat_stream(MODEL, [{"role": "user", "content": FAIL_BEFORE}]))):
        with pytest.raises(ApiError) as err:
            call()
        e = err.value
        assert (e.status, e.param) == (400, "max_tokens") and "too large" in e.message
        assert str(e) == "HTTP 400: max_tokens is too large for this model (parameter `max_tokens`)"


def test_error_event_inside_stream(client):
    stream = client.chat_stream(MODEL, [{"role": "user", "content": FAIL_DURING}])
    assert next(stream) == "Hello"
    with pytest.raises(ApiError) as err:
        next(stream)
    assert (err.value.status, err.value.message) == (500, "engine died")


def test_fastapi_detail_bodies(client):
    with pytest.raises(ApiError) as err:
        client.run("nope")
    assert (err.value.status, err.value.message, err.value.param) == (404, "run 'nope' not found", None)
    with pytest.raises(ApiError) as err:  # a validation error names the offending field
        client._request("POST", "/api/deployments", json={})
    assert (err.value.status, err.value.message, err.value.param) == (422, "Field required", "model")


def test_unreachable_server_is_a_friendly_error():
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with PlaygroundClient(url, timeout=2) as c:
            for call in (c.health, lambda: list(c.chat_stream(MODEL, HI))):
                with pytest.raises(ApiError) as err:
                    call()
                assert err.value.status == 0
                assert str(err.value).startswith(f"cannot reach the playground at {url}: ")


def test_env_defaults(monkeypatch):
    monkeypatch.delenv("PLAYGROUND_URL", raising=False)
    assert PlaygroundClient().base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("PLAYGROUND_URL", "http://cluster:9000/")
    monkeypatch.setenv("PLAYGROUND_API_KEY", "k")
    c = PlaygroundClient()
    assert c.base_url == "http://cluster:9000" and c._http.headers["authorization"] == "Bearer k"


def test_sse_parser_edge_cases():
    lines = ["", ": ping", 'data: {"choices": [{"delta": {"role": "assistant"}}]}',
             'data:{"choices": [{"delta": {"content": "a"}}]}', "data: [DONE]",
             'data: {"choices": [{"delta": {"content": "after done"}}]}']
    assert list(_sse_text(iter(lines))) == ["a"]
    with pytest.raises(ApiError) as err:  # older vLLM's flat error event
        list(_sse_text(iter(['data: {"object": "error", "message": "boom", "code": 400}'])))
    assert (err.value.status, err.value.message) == (400, "boom")


def test_request_params_defaults_and_translation():
    defaults = request_params({})
    assert defaults == {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "max_tokens": 128, "presence_penalty": 0.0,
                        "frequency_penalty": 0.0, "repetition_penalty": 1.0}
    p = request_params({"top_k": 40, "seed": 3, "stop": "\\n\\n, User:,"})
    assert p["top_k"] == 40 and p["seed"] == 3 and p["stop"] == ["\n\n", " User:"]
    assert {x.name for x in SAMPLING} == set(defaults) | {"seed", "stop"}
    for x in SAMPLING:
        assert x.help and (x.kind in ("seed", "stop") or x.min <= x.default <= x.max)


def test_config_diff_nested():
    rows = config_diff(CONFIG_A, CONFIG_B)
    assert rows == [("model.n_layer", 2, 4), ("seed", 0, MISSING), ("train.steps", 200, 400)]
    assert config_diff(CONFIG_A, CONFIG_A) == []
    assert config_diff({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == [("a.b", [1, 2], [1, 3])]
    assert [show_value(v) for v in ("x", 1.5, None, [1], MISSING)] == ["x", "1.5", "null", "[1]", "(not set)"]


def test_conversation_exports():
    messages = [*HI, {"role": "assistant", "content": "Hello!"}]
    meta = {"model": MODEL, "system_prompt": "be brief", "sampling": {"temperature": 0.5}}
    data = json.loads(conversation_to_json(messages, meta))
    assert data == {"meta": meta, "messages": messages}
    md = conversation_to_markdown(messages, meta)
    assert md.startswith("# Chat transcript")
    assert f"- **model**: {MODEL}" in md and "- **sampling**: temperature=0.5" in md
    assert md.index("## User\n\nhi") < md.index("## Assistant\n\nHello!")


def test_without_oldest_exchange():
    sys_, u1, a1, u2, a2, u3 = ({"role": r, "content": c} for r, c in [
        ("system", "s"), ("user", "1"), ("assistant", "a1"), ("user", "2"), ("assistant", "a2"), ("user", "3")])
    assert without_oldest_exchange([sys_, u1, a1, u2, a2, u3]) == [sys_, u2, a2, u3]
    assert without_oldest_exchange([sys_, u2, a2, u3]) == [sys_, u3]
    assert without_oldest_exchange([u1, a1, u3]) == [u3]  # no system prompt
    assert without_oldest_exchange([sys_, u3]) is None and without_oldest_exchange([u3]) is None


def test_context_overflow_is_the_prompt_too_long_400():
    # Our server: OpenAI's code, read from the error body.
    body = {"error": {"message": "too long", "param": "messages", "code": "context_length_exceeded"}}
    assert _error_from_body(400, body, "fallback").context_overflow
    assert not _error_from_body(400, {"error": {"message": "too long", "code": 400}}, "fallback").context_overflow
    # A bare vLLM server: its words.
    vllm = "Input length (300) exceeds model's maximum context length (128)."
    assert ApiError(400, vllm, "messages").context_overflow
    assert not ApiError(400, "max_tokens=128 cannot be greater than max_model_len=64.", "max_tokens").context_overflow
    assert not ApiError(500, vllm).context_overflow


@pytest.mark.parametrize("name, value, text", [
    ("tokens_per_s", 10709.1052, "10,709"),  # throughput: an integer with thousands separators
    ("output_tokens_per_s", 64.4, "64"),
    ("tokens_seen", 1_572_864, "1,572,864"),
    ("memory_mb", 912.75, "913"),
    ("step", 200.0, "200"),  # a step column with a gap is float: still a step
    ("loss", 3.0123456, "3.0123"),  # losses: 4 decimals
    ("val_loss", 3.2, "3.2000"),
    ("best val_loss", 4.9, "4.9000"),  # a sweep's trial table
    ("best_metric", 4.91234, "4.9123"),  # a sweep's summary
    ("perplexity", 24.5321, "24.53"),
    ("grad_norm", 1.23456, "1.235"),
    ("lr", 0.000299999, "3.00e-04"),  # learning rates: scientific, 3 significant digits
    ("train.lr", 0.0123456, "1.23e-02"),  # a searched key of a sweep
    ("mfu", 0.41234, "41.2%"),  # a fraction of the peak: a percent with one decimal
    ("seconds", 12.345, "12.3 s"),  # durations: seconds with one decimal
    ("elapsed_s", 0.04, "0.0 s"),
    ("model.n_layer", 4, "4"),  # any other number: as it is, or 4 significant digits
    ("dropout", 0.123456, "0.1235"),
    ("loss", None, ""), ("loss", float("nan"), ""), ("checkpoint", "ckpt_2", "ckpt_2"), ("best", True, "True"),
])
def test_figures_read_as_people_read_them(name, value, text):
    assert figure(name, value) == text


def test_readable_rounds_what_is_shown_and_keeps_the_numbers():
    import pandas as pd

    df = pd.DataFrame([{"run": "a", "tokens_per_s": 10709.1052, "lr": 3e-4, "mfu": 0.1, "best": True},
                       {"run": "b", "tokens_per_s": None, "lr": 1e-3, "mfu": None, "best": False}])
    cells = readable(df).to_html()
    assert all(t in cells for t in ("10,709", "3.00e-04", "1.00e-03", "10.0%"))
    assert "10709.1" not in cells and df.loc[0, "tokens_per_s"] == 10709.1052  # the frame is unchanged


STORE = "sqlite:////w/runs/mlflow.db"
LOGGED = f"MLflow: runs are logged to `{STORE}`"


@pytest.mark.parametrize("url, hint", [
    ("http://127.0.0.1:5000", " (start it with `playground mlflow`)"),
    ("http://localhost:5001", " (start it with `playground mlflow --port 5001`)"),
    ("https://mlflow.example.org", ""),  # not ours to start
])
def test_mlflow_line(url, hint):
    assert mlflow_line({"mlflow": url, "mlflow_store": STORE}) == f"{LOGGED} — open [{url}]({url}){hint}"
    assert mlflow_line({"mlflow": None, "mlflow_store": STORE}) == LOGGED
    assert mlflow_line({"mlflow": None}) == "MLflow: not configured"  # an older API: no store named
