"""The Prompts page (Streamlit AppTest) against the real /api/prompts routes on a workspace, served by
the UI stub, whose /v1/chat/completions is replaced here by one whose answers are known (it stands in
for vLLM on Serve)."""

from __future__ import annotations

import json

import pytest
from fastapi import Request
from ui_stub import KEY, MODEL, make_app, start_stub

from services.prompts import store
from tests.ui_checks import open_page
from training.workspace import Workspace

PAGE = "pages/11_Prompts.py"
A_RIGHT, B_RIGHT = {0, 1, 2, 3}, {0}  # of rows 0..4: A alone right on 3, B alone on none


@pytest.fixture
def server(tmp_path, monkeypatch):
    from services.prompts_api import router

    app = make_app()
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/v1/chat/completions"]

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        side, item = (await request.json())["messages"][-1]["content"].split(": ")
        i = int(item.removeprefix("item"))
        right = i in (A_RIGHT if side == "A" else B_RIGHT)
        return {"choices": [{"message": {"role": "assistant", "content": f"ans{i}" if right else "?"}}]}

    app.include_router(router, prefix="/api")
    ws = Workspace(tmp_path / "ws")
    for side in "ab":
        store.save(ws, {"name": f"tpl-{side}", "template": f"{side.upper()}: {{{{x}}}}", "variables": {"x": {}}})
    app.state.workspace = ws
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)  # the stub checks it, on /api and on /v1 (the A/B's calls)
    yield server
    server.stop()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_fill_save_diff_and_revert_a_template(server):
    at = open_page(PAGE)
    _clean(at)
    assert at.selectbox(key="pr_name").value == "answer-then-check"  # by category (chain_of_thought first), name
    at.selectbox(key="pr_name").set_value("sentiment").run()
    at.text_area(key="pr_var_sentiment_review").set_value("Lovely little phone.")
    _button(at, "Render").click().run()
    _clean(at)
    codes = [c.value for c in at.code]
    assert any(c.endswith("Review: Lovely little phone.\nSentiment:") for c in codes)
    assert any("tokens · counted as words" in c.value for c in at.caption)

    at.text_area(key="pr_var_sentiment_review").set_value("  ")
    _button(at, "Render").click().run()
    assert at.error and at.error[0].value.startswith("HTTP 400: variables.review: not filled")

    template = at.text_area(key="pr_edit_template_sentiment_1")
    template.set_value(template.value.replace("exactly one word", "one word"))
    at.text_input(key="pr_edit_note_sentiment_1").set_value("shorter")
    at.button(key="pr_save").click().run()
    _clean(at)
    assert at.success[0].value == "Saved sentiment version 2."
    assert at.selectbox(key="pr_version_sentiment").value == 2
    diff = next(c.value for c in at.code if c.language == "diff")
    assert "-  Answer with exactly one word" in diff and "+  Answer with one word" in diff

    at.button(key="pr_revert").click().run()
    _clean(at)
    assert at.success[0].value == "Reverted sentiment to v1: saved as version 3."
    assert at.selectbox(key="pr_version_sentiment").value == 3
    assert "exactly one word" in at.text_area(key="pr_edit_template_sentiment_3").value


def test_fewshot_builder_shows_the_prompt_and_its_tokens(server):
    at = open_page(PAGE)
    at.radio(key="pr_view").set_value("Few-shot").run()
    at.radio(key="fs_source").set_value("Pasted rows").run()
    rows = [{"instruction": "What is 2 + 2?", "output": "4"}, {"instruction": "Name a red fruit.", "output": "Apple"}]
    at.text_area(key="fs_rows").set_value("\n".join(json.dumps(r) for r in rows))
    at.number_input(key="fs_k").set_value(1)
    at.radio(key="fs_method").set_value("similar")
    at.text_area(key="fs_query").set_value("What is 3 + 4?")
    at.button(key="fs_build").click().run()
    _clean(at)
    assert at.code[0].value == "Answer the question.\n\nInput: What is 2 + 2?\nOutput: 4\n\nInput: What is 3 + 4?\nOutput:"
    assert at.caption[-1].value.startswith("18 tokens · counted as words")


def test_ab_test_shows_accuracies_and_the_verdict(server):
    at = open_page(PAGE)
    at.radio(key="pr_view").set_value("A/B test").run()
    _clean(at)
    at.selectbox(key="ab_a_name").set_value("tpl-a").run()
    at.selectbox(key="ab_b_name").set_value("tpl-b").run()
    assert at.selectbox(key="ab_model").value == MODEL
    at.text_area(key="ab_rows").set_value("\n".join(json.dumps({"x": f"item{i}", "answer": f"ans{i}"})
                                                    for i in range(5)))
    at.button(key="ab_run").click().run()
    _clean(at)
    assert [m.value for m in at.metric] == ["80%", "20%"]
    assert "4 of 5 right · 95% interval" in " ".join(c.value for c in at.caption)
    assert at.info[-1].value.startswith("No significant difference between A (tpl-a v1) and B (tpl-b v1): "
                                        "A alone right on 3 rows, B alone on 0; McNemar p = 0.25")
    assert list(at.dataframe[0].value["A right"]) == [True, True, True, True, False]
