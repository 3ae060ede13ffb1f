"""The Streamlit pages, run headlessly with AppTest against the stub server."""

import socket

from ui_stub import FAIL_BEFORE, FAIL_DURING, KEY, MLFLOW_STORE, MODEL, stub, stub_env  # noqa: F401

from tests.ui_checks import assistant_texts, check_chat_page, open_page, shown


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _last_chat(server):
    """The body of the last chat request (the page also stores each turn under /api/conversations)."""
    return next(b for _, p, _, b in reversed(server.app.state.requests) if p == "/v1/chat/completions")


def test_home_shows_health_deployments_and_models(stub_env):  # noqa: F811
    at = open_page(None)
    _clean(at)
    assert "Cluster status: **ok**" in at.success[0].value
    deployments = at.dataframe[0].value
    assert list(deployments["deployment"]) == ["llm/LLMServer", "api/PlaygroundAPI"]
    assert "UPDATING" in deployments["status"][1]
    markdown = " ".join(m.value for m in at.markdown)
    assert MODEL in markdown and "tiny-shakespeare/step-100" in markdown
    assert [b.label for b in at.button if b.key] == ["Undeploy", "Deploy", "Deploy"]
    # a fine-tuned model says what it came from (GET /api/models' lineage)
    assert any(c.value.endswith(f"fine-tuned (lora) from `{MODEL}`") for c in at.caption)
    # MLflow: the store every run logged to, a link to its UI, and how to start that UI
    mlflow = next(c.value for c in at.caption if c.value.startswith("MLflow"))
    assert MLFLOW_STORE in mlflow and "http://127.0.0.1:5000" in mlflow and "`playground mlflow`" in mlflow
    assert [b.proto.url for b in at.get("link_button")] == ["http://127.0.0.1:8265", "http://127.0.0.1:5000"]

    at.button(key="deploy:tiny-shakespeare/step-100").click().run()
    _clean(at)
    assert "Deploying `tiny-shakespeare/step-100`" in at.success[0].value
    assert stub_env.app.state.requests[-3][3] == {"model": "tiny-shakespeare/step-100"}


def test_chat_streams_the_full_answer(stub_env):  # noqa: F811
    assert check_chat_page(stub_env.url, timeout=10, message="hi", api_key=KEY, top_k=5) == "Hello! You said: hi"
    body = next(b for m, p, _, b in reversed(stub_env.app.state.requests) if p == "/v1/chat/completions")
    assert body["top_k"] == 5 and body["stream"] is True and body["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_multi_turn_system_prompt_export_and_clear(stub_env):  # noqa: F811
    at = open_page("pages/1_Chat.py")
    _clean(at)
    assert at.selectbox(key="chat_model").options == [MODEL]
    assert len(at.slider) == 7 and at.slider(key="sampling_temperature").max == 2.0
    at.text_area(key="chat_system").set_value("Be brief.")
    at.chat_input[0].set_value("one").run()
    at.chat_input[0].set_value("two").run()
    _clean(at)
    assert assistant_texts(at) == ["Hello! You said: one", "Hello! You said: two"]
    sent = _last_chat(stub_env)["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    downloads = at.get("download_button")
    assert [d.label for d in downloads] == ["Download JSON", "Download Markdown"]
    assert not any(d.proto.disabled for d in downloads)
    at.button[-1].click().run()  # Clear
    assert at.session_state["chat_messages"] == [] and not at.chat_message


def test_chat_max_tokens_stops_at_the_models_context(stub_env):  # noqa: F811
    # vLLM answers 400 to max_tokens above max_model_len, so the slider must not offer it.
    at = open_page("pages/1_Chat.py")
    _clean(at)
    slider = at.slider(key="sampling_max_tokens")
    assert (slider.max, slider.value) == (1024, 128)  # a 2048-token model: the table's own range
    stub_env.app.state.served = {MODEL: 64, "unsaid": None}
    try:
        at.run()
        slider = at.slider(key="sampling_max_tokens")
        assert (slider.max, slider.value) == (64, 64) and "64 tokens" in slider.help
        at.chat_input[0].set_value("hi").run()
        _clean(at)
        assert assistant_texts(at) == ["Hello! You said: hi"]
        assert _last_chat(stub_env)["max_tokens"] == 64
        at.selectbox(key="chat_model").set_value("unsaid").run()  # context unknown: the full range
        _clean(at)
        assert at.slider(key="sampling_max_tokens").max == 1024
    finally:
        stub_env.app.state.served = {MODEL: 2048}


def test_chat_leaves_out_the_oldest_exchanges_that_no_longer_fit(stub_env):  # noqa: F811
    at = open_page("pages/1_Chat.py")
    at.text_area(key="chat_system").set_value("Be brief.")
    at.chat_input[0].set_value("one").run()
    at.chat_input[0].set_value("two").run()
    # In characters: system 9, each exchange 23, "three" 5. All of it is 60; without the
    # oldest exchange, 37.
    stub_env.app.state.context_chars = 40
    try:
        at.chat_input[0].set_value("three").run()
        _clean(at)
        assert assistant_texts(at) == ["Hello! You said: one", "Hello! You said: two", "Hello! You said: three"]
        sent = _last_chat(stub_env)["messages"]
        assert [m["content"] for m in sent] == ["Be brief.", "two", "Hello! You said: two", "three"]
        assert "the oldest exchange was left out" in at.caption[-1].value
        assert len(at.session_state["chat_messages"]) == 6  # the history (and its export) keeps it all

        at.chat_input[0].set_value("x" * 32).run()  # alone with the system prompt: 41 > 40
        assert not at.exception and "exceeds model's maximum context length (40)" in at.error[0].value
        assert len(at.session_state["chat_messages"]) == 6

        at.chat_input[0].set_value("four").run()  # 9 + 23 + 23 + 27 + 4 = 86; without two exchanges, 40
        _clean(at)
        assert [m["content"] for m in _last_chat(stub_env)["messages"]][1:] == [
            "three", "Hello! You said: three", "four"]
        assert "the oldest 2 exchanges were left out" in at.caption[-1].value
    finally:
        stub_env.app.state.context_chars = None


def test_chat_without_a_served_model_points_home(stub_env):  # noqa: F811
    stub_env.app.state.served = {}
    try:
        at = open_page("pages/1_Chat.py")
    finally:
        stub_env.app.state.served = {MODEL: 2048}
    _clean(at)
    assert "No model is being served" in at.info[0].value and not at.chat_input
    assert at.get("page_link")[0].value == "Go to Home"  # resolves: Home is the entry point


def test_chat_errors_are_text_not_tracebacks(stub_env):  # noqa: F811
    at = open_page("pages/1_Chat.py")
    at.chat_input[0].set_value(FAIL_BEFORE).run()
    assert not at.exception
    assert at.error[0].value == "HTTP 400: max_tokens is too large for this model (parameter `max_tokens`)"
    assert at.session_state["chat_messages"] == []  # the failed turn is dropped, so the next one works
    at.chat_input[0].set_value(FAIL_DURING).run()
    assert not at.exception and "engine died" in at.error[0].value


def test_pages_report_an_unreachable_cluster(stub_env, monkeypatch):  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PLAYGROUND_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
        for page in (None, "pages/1_Chat.py", "pages/2_Runs.py"):
            at = open_page(page)
            assert not at.exception
            assert at.error[0].value.startswith("cannot reach the playground at http://127.0.0.1:")


def test_runs_page_charts_samples_and_config_diff(stub_env):  # noqa: F811
    at = open_page("pages/2_Runs.py")
    _clean(at)
    runs = shown(at.dataframe[0])  # rounded as people read them; the cells keep their numbers
    assert runs.loc[0, ["tokens_per_s", "loss", "val_loss", "perplexity", "step"]].tolist() == [
        "10,709", "3.0123", "3.2000", "24.53", "200"]
    assert runs.loc[1, "tokens_per_s"] == "" and at.dataframe[0].value.loc[0, "tokens_per_s"] == 10709.1052
    assert at.selectbox(key="runs_selected").value == "run-a"
    # loss & val_loss, perplexity, lr, grad norm, tokens/s, MFU, memory
    assert len(at.get("vega_lite_chart")) == 7
    assert at.toggle(key="live_run-a").value is False  # its last metrics are old: no auto-refresh
    steps = [e.label for e in at.expander]
    assert steps == ["Step 200", "Step 100"]  # newest first
    assert [c.value for c in at.code] == ["newest words", "old words"]
    diff = at.dataframe[-1].value
    assert list(diff["key"]) == ["model.n_layer", "seed", "train.steps"]
    assert list(diff["run-b"]) == ["4", "(not set)", "400"]

    at.selectbox(key="runs_selected").set_value("run-b").run()
    _clean(at)
    assert not at.get("vega_lite_chart") and "no metrics" in at.info[0].value
