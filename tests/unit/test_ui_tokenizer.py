"""The Tokenizer page (Streamlit AppTest) against the real tokenizer-lab routes.

Not the stub: services/tokenizer_api.py's router with `harden`, on a workspace this test
fills with two tokenizers, served by uvicorn. Training from the page needs a Ray job and
is covered by the integration tests.
"""

import pytest
from fastapi import FastAPI
from ui_stub import start_stub

from services.llm import harden
from services.tokenizer_api import router
from tests.ui_checks import open_page
from training.tokenizers import tokenlab
from training.workspace import Workspace

TEXT = "The quick brown fox jumps over the lazy dog. Naïve café 🙂 and 12345 numbers.\n" * 30


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    tokenlab.train(ws, TEXT, trainer="scratch", vocab_size=300, name="ours")
    tokenlab.train(ws, TEXT, trainer="hf", vocab_size=300, name="theirs")
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    server = start_stub(app)
    yield server
    server.stop()


@pytest.fixture
def page(lab, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_URL", lab.url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    at = open_page("pages/3_Tokenizer.py")
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table(at, column: str):
    """The last table on the page that has `column` (tabs render one after another)."""
    return [d.value for d in at.dataframe if column in d.value.columns][-1]


def _html(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_inspect_colours_tokens_and_lists_merges(page):
    page.text_area(key="tok_inspect_text").set_value("the quick fox").run()
    page.button(key="tok_inspect_go").click().run()
    assert not page.exception and not page.error
    table = page.dataframe[0].value  # the Inspect tab comes first
    spans = _html(page).count('class="tok"')
    assert spans == int(page.metric[0].value) == len(table) > 1
    assert "".join(table["text"]).replace("·", " ") == "the quick fox"
    assert table["made by merge"].str.contains("rank").any()


def test_replay_compare_and_cost(page):
    page.text_input(key="tok_replay_word").set_value(" quick").run()
    page.button(key="tok_replay_go").click().run()
    steps = _table(page, "merge")
    assert steps["tokens"].iloc[-1].replace(" | ", "") == "Ġquick" and steps["merge"].iloc[0] == "bytes"
    assert len(steps) > 1 and "rank" in steps["merge"].iloc[1]
    page.button(key="tok_compare_go").click().run()
    assert not page.error
    assert set(_table(page, "chars/token")["tokenizer"]) == {"ours", "theirs"}
    page.button(key="tok_cost_go").click().run()
    costs = _table(page, "input_cost")
    assert not page.error and len(costs) == 3 and (costs["input_cost"] > 0).all()


def test_errors_show_as_text(page):
    page.text_area(key="tok_inspect_text").set_value("").run()
    page.button(key="tok_inspect_go").click().run()
    assert page.error and "text" in page.error[0].value and "Traceback" not in page.error[0].value
