"""The Human evaluation page (Streamlit AppTest) against the real /api/human routes on a workspace, their
answers coming from the UI stub's /v1/chat/completions, which stands in for vLLM on Serve (the
integration tests ask real vLLM)."""

from __future__ import annotations

import pytest
from ui_stub import KEY, MODEL, make_app, start_stub

from tests.ui_checks import open_page
from training.workspace import Workspace

PAGE = "pages/10_Human_eval.py"
OTHER = "tiny-shakespeare/step-100"


@pytest.fixture
def server(tmp_path, monkeypatch):
    from services.human_api import router

    app = make_app()
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/api/models"]
    app.state.served = {MODEL: 2048, OTHER: 2048}

    @app.get("/api/models")
    def models():
        return [{"id": m, "deployed": True, "lineage": None} for m in (MODEL, OTHER)]

    app.include_router(router, prefix="/api")
    app.state.workspace = Workspace(tmp_path / "ws")
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    yield server
    server.stop()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_blind_vote_reveals_the_models_and_the_leaderboard_counts_it(server):
    at = open_page(PAGE)
    _clean(at)
    at.text_input(key="he_rater").set_value("ada").run()
    at.button(key="he_ask").click().run()
    _clean(at)
    answers = [box.value for box in at.info]
    assert len(answers) == 2 and all(answers)
    assert MODEL not in " ".join(m.value for m in at.markdown)  # blind: no names before the vote
    at.button(key="he_vote_left").click().run()
    _clean(at)
    revealed = at.success[0].value
    assert f"**{MODEL}**" in revealed and f"**{OTHER}**" in revealed and "Your vote: left." in revealed

    at.radio(key="he_view").set_value("Leaderboard").run()
    _clean(at)
    board = at.dataframe[0].value
    assert set(board["model"]) == {MODEL, OTHER}
    assert sorted(board["wins"]) == [0, 1] and set(board["battles"]) == {1}
    assert [b.proto.label for b in at.get("download_button")] == ["Download every vote and rating (JSON)"]


def test_rating_an_answer_and_a_vote_without_a_rater_is_refused(server):
    at = open_page(PAGE)
    at.radio(key="he_view").set_value("Rate").run()
    _clean(at)
    at.button(key="he_get").click().run()
    at.slider(key="he_score").set_value(4)
    at.button(key="he_rate").click().run()
    assert not at.exception
    assert at.error and "rater" in at.error[0].value  # no name given yet
    at.text_input(key="he_rater").set_value("bo").run()
    at.button(key="he_rate").click().run()
    _clean(at)
    assert "Rated 4/5 (the model was" in at.success[0].value
