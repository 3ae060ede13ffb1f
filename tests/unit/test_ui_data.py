"""The Data page (Streamlit AppTest) against the real data routes, and its pure helpers.

Not the stub: services/data_api.py's router with `harden`, on a workspace this test fills
with two snapshots in the pipeline's formats (tests/unit/datafix.py), served by uvicorn.
Running the pipeline from the page needs a Ray job and is covered by the integration tests;
here the run form is only driven up to a request the API refuses.
"""

import pytest
from datafix import MARKUP, write_fixture_snapshot
from fastapi import FastAPI
from ui_stub import start_stub

from services.data_api import router as data_router
from services.llm import harden
from services.tokenizer_api import router as tokenizer_router
from tests.ui_checks import open_page
from training.workspace import Workspace
from ui.format import (
    bin_labels,
    histogram_rows,
    parse_sources,
    short_number,
    stage_rows,
    top_reasons,
)

A, B = "web-1a2b3c4d", "web-5e6f7a8b"


def _serve(ws: Workspace):
    app = FastAPI()
    app.include_router(data_router, prefix="/api")
    app.include_router(tokenizer_router, prefix="/api")  # POST /api/uploads, for the run form
    harden(app, set(), None)
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return start_stub(app)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    write_fixture_snapshot(ws, A)
    write_fixture_snapshot(ws, B, parent=A, created_at="2026-11-22T09:00:00+00:00", near_dup=9,
                           config={"near_dedup": {"threshold": 0.7}})
    s = _serve(ws)
    yield s
    s.stop()


def _open(url: str, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_URL", url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    at = open_page("pages/5_Data.py")
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def page(server, monkeypatch):
    at = _open(server.url, monkeypatch)
    assert not at.error, [e.value for e in at.error]
    return at


def _table(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_overview_and_removed_by_stage(page):
    assert page.selectbox(key="data_snapshot").value == B  # newest first
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Documents kept"] == "86" and metrics["Input documents"] == "120"
    assert metrics["Tokens"] == "n/a"
    splits = _table(page, "split")
    assert dict(zip(splits["split"], splits["docs"])) == {"train": 77, "val": 5, "test": 4}
    stages = _table(page, "% removed")
    assert list(stages["stage"]) == ["read", "normalize", "language", "quality", "pii", "exact_dedup", "near_dedup"]
    row = stages.set_index("stage").loc["language"]
    assert (row["in"], row["out"], row["removed"]) == (117, 110, 7) and row["top reasons"] == "lang:de 5, lang:unknown 2"
    assert row["% removed"] == pytest.approx(100 * 7 / 117, abs=0.01)
    assert set(_table(page, "replaced")["kind"]) == {"email", "phone", "ip", "credit_card", "ssn"}
    assert len(page.get("vega_lite_chart")) >= 4  # removed per stage, 2 histograms, languages

    page.selectbox(key="data_snapshot").set_value(A).run()
    assert not page.exception and {m.label: m.value for m in page.metric}["Documents kept"] == "90"


def test_duplicates_and_texts_are_shown_as_text(page):
    labels = [e.label for e in page.expander]
    assert "exact duplicates · 3 documents · kept doc 17" in labels
    assert "near duplicates · 2 documents · kept doc 40" in labels
    assert MARKUP in [c.value for c in page.code]  # verbatim, in a code block
    assert not any("<script>" in m.value for m in page.markdown)  # never rendered as Markdown/HTML


def test_samples_filtered_to_removed(page):
    page.radio(key="data_s_status").set_value("removed").run()
    shown = _table(page, "doc_id")
    assert len(shown) > 5 and set(shown["status"]) == {"removed"} and shown["reason"].notna().all()
    page.selectbox(key="data_s_stage").set_value("language").run()
    assert page.selectbox(key="data_s_reason").options == ["(any)", "lang:de", "lang:unknown"]
    page.selectbox(key="data_s_reason").set_value("lang:de").run()
    shown = _table(page, "doc_id")
    assert set(shown["reason"]) == {"lang:de"} and set(shown["stage"]) == {"language"} and len(shown) == 3
    assert any("removed by language because lang:de" in c.value for c in page.code)
    assert not page.error


def test_diff_with_the_parent(page):
    assert page.selectbox(key="data_diff_other").value == A  # the parent by default
    config = _table(page, "key").set_index("key")
    assert list(config.loc["stages.near_dedup.threshold"]) == ["0.8", "0.7"]
    counts = _table(page, "change").set_index("stage")
    assert counts.loc["near_dedup", "change"] == -4 and counts.loc["quality", "change"] == 0
    outputs = _table(page, "same").set_index("file")
    assert not outputs.loc["train.jsonl", "same"] and outputs.loc["train.jsonl", f"docs {A}"] == 81


def test_run_form_shows_the_api_error(page):
    page.text_area(key="data_run_sources").set_value("synthetic\n/no/such/corpus.jsonl").run()
    page.button(key="data_run_go").click().run()
    assert not page.exception
    errors = [e.value for e in page.error]
    assert len(errors) == 1 and "config.sources[1]" in errors[0] and "Traceback" not in errors[0]


def test_empty_workspace(tmp_path, monkeypatch):
    s = _serve(Workspace(tmp_path))
    try:
        at = _open(s.url, monkeypatch)
        assert not at.error
        assert "playground data run --config configs/data/starter.yaml" in at.info[0].value
        assert at.button(key="data_run_go") and not at.metric
    finally:
        s.stop()


# ---------------------------------------------------------------------------- helpers


def test_format_helpers():
    assert bin_labels([1, 10, 100, 1000, 10_000.0, 1.5e6]) == ["1–10", "10–100", "100–1k", "1k–10k", "10k–1.5M"]
    assert [short_number(x) for x in (0, 3.16, 999, 1500, 2_000_000, None)] == ["0", "3.16", "999", "1.5k", "2M", "?"]
    rows = histogram_rows({"edges": [1, 10, 100], "kept": [3, 4], "removed": [1, 0]})
    assert rows == [{"bin": "1–10", "order": 0, "status": "kept", "documents": 3},
                    {"bin": "10–100", "order": 1, "status": "kept", "documents": 4},
                    {"bin": "1–10", "order": 0, "status": "removed", "documents": 1},
                    {"bin": "10–100", "order": 1, "status": "removed", "documents": 0}]
    assert top_reasons({"a": 1, "b": 5, "c": 3, "d": 3}) == "b 5, c 3, d 3 (+1 more)" and top_reasons({}) == ""
    (row,) = stage_rows([{"stage": "quality", "in": 110, "out": 100, "removed": 10, "reasons": {"min_words": 6}}])
    assert row["% removed"] == 9.09 and row["top reasons"] == "min_words 6"
    assert stage_rows([{"stage": "x", "in": 0, "out": 0, "removed": 0}])[0]["% removed"] == 0.0
    assert parse_sources(" synthetic \n\n# a comment\nupload:abc\n") == ["synthetic", "upload:abc"]
