"""Human evaluation: the SQLite store, the blind left/right mapping, the statistics (pinned to
independent references: Wikipedia's Fleiss' kappa example, Scott's pi, scipy's and scikit-learn's
maximum likelihood), and the HTTP routes against a stub OpenAI server."""

from __future__ import annotations

import csv
import doctest
import io
import math
import sqlite3

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from benchmarks.serve_http import free_port
from evaluation import human, human_stats
from evaluation.human_stats import bootstrap_ratings, bradley_terry, fleiss_kappa, ranks
from services.human_api import router
from services.llm import harden
from tests.unit.apihelp import assert_error
from tests.unit.ui_stub import start_stub
from training.errors import UserError
from training.workspace import Workspace


@pytest.mark.parametrize("module", [human, human_stats])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------------------- the store


def _seeds() -> dict[str, int]:
    """A seed that shows model a on the left, and one that shows b."""
    import random

    out = {}
    for s in range(100):
        out.setdefault("a" if random.Random(s).random() < 0.5 else "b", s)
    return out


def test_store_round_trip(tmp_path):
    ws = Workspace(tmp_path)
    c = human.new_comparison(ws, prompt="Capital of France?", model_a="x", model_b="y", answer_a="Paris",
                             answer_b="Lyon", set_name="geo", seed=1)
    assert set(c) == {"comparison_id", "set", "prompt", "left", "right"}
    assert {c["left"], c["right"]} == {"Paris", "Lyon"} and c["set"] == "geo"
    human.vote(ws, c["comparison_id"], "ann", "tie")
    item = human.add_answer(ws, prompt="Capital of France?", model="x", answer="Paris", set_name="geo")
    assert "model" not in item
    r = human.rate(ws, item["item_id"], " bob ", 5)
    assert r == {"item_id": item["item_id"], "rater": "bob", "score": 5, "replaced": False, "model": "x"}

    path = tmp_path / "evals" / "human.db"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == human.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    out = human.export(ws)
    assert [s["name"] for s in out["sets"]] == ["geo"]
    assert len(out["prompts"]) == 1  # the same prompt in one set is stored once
    (comp,) = out["comparisons"]
    assert (comp["model_a"], comp["answer_a"], comp["model_b"], comp["answer_b"]) == ("x", "Paris", "y", "Lyon")
    assert comp["shown_left"] in ("a", "b")
    assert [(v["rater"], v["choice"]) for v in out["votes"]] == [("ann", "tie")]
    assert [(a["model"], a["answer"]) for a in out["answers"]] == [("x", "Paris")]
    assert [(r["rater"], r["score"]) for r in out["ratings"]] == [("bob", 5)]


@pytest.mark.parametrize("shown", ["a", "b"])
def test_left_and_right_map_to_the_stored_models(tmp_path, shown):
    ws = Workspace(tmp_path)
    c = human.new_comparison(ws, prompt="p", model_a="x", model_b="y", answer_a="ax", answer_b="ay",
                             seed=_seeds()[shown])
    left_model, right_model = ("x", "y") if shown == "a" else ("y", "x")
    assert c["left"] == f"a{left_model}" and c["right"] == f"a{right_model}"
    r = human.reveal(ws, c["comparison_id"])
    assert (r["shown_left"], r["left_model"], r["right_model"]) == (shown, left_model, right_model)
    v = human.vote(ws, c["comparison_id"], "ann", "left")
    assert v["winner"] == left_model and v["choice"] == ("a" if left_model == "x" else "b")
    v = human.vote(ws, c["comparison_id"], "bob", "right")
    assert v["winner"] == right_model and v["choice"] == ("a" if right_model == "x" else "b")
    for choice in ("tie", "both_bad"):
        v = human.vote(ws, c["comparison_id"], "cy", choice)
        assert v["choice"] == choice and v["winner"] is None


def test_a_second_vote_or_rating_by_the_same_rater_replaces_the_first(tmp_path):
    ws = Workspace(tmp_path)
    c = human.new_comparison(ws, prompt="p", model_a="x", model_b="y", answer_a="1", answer_b="2", seed=0)
    assert human.vote(ws, c["comparison_id"], "ann", "left")["replaced"] is False
    assert human.vote(ws, c["comparison_id"], "ann", "right")["replaced"] is True
    human.vote(ws, c["comparison_id"], "bob", "left")
    votes = human.export(ws)["votes"]
    assert [(v["rater"], v["choice"]) for v in votes] == [("ann", human.stored_choice("right", "b")),
                                                           ("bob", human.stored_choice("left", "b"))]
    item = human.add_answer(ws, prompt="p", model="x", answer="1")
    human.rate(ws, item["item_id"], "ann", 2)
    assert human.rate(ws, item["item_id"], "ann", 4)["replaced"] is True
    assert [r["score"] for r in human.export(ws)["ratings"]] == [4]


@pytest.mark.parametrize("call,field", [
    (lambda ws, c: human.vote(ws, 999, "ann", "left"), "comparison_id: no comparison"),
    (lambda ws, c: human.vote(ws, "abc", "ann", "left"), "comparison_id: no comparison"),
    (lambda ws, c: human.vote(ws, c, "ann", "a"), "choice:"),
    (lambda ws, c: human.vote(ws, c, "  ", "left"), "rater:"),
    (lambda ws, c: human.new_comparison(ws, prompt="p", model_a="x", model_b="x", answer_a="", answer_b=""),
     "models:"),
    (lambda ws, c: human.new_comparison(ws, prompt=" ", model_a="x", model_b="y", answer_a="", answer_b=""),
     "prompt:"),
    (lambda ws, c: human.add_answer(ws, prompt="p", model="x", answer="1", set_name=""), "set:"),
    (lambda ws, c: human.rate(ws, 999, "ann", 3), "item_id: no answer"),
    (lambda ws, c: human.rate(ws, 1, "ann", 6), "score:"),
    (lambda ws, c: human.rate(ws, 1, "ann", 3.5), "score:"),
    (lambda ws, c: human.rate(ws, 1, "ann", True), "score:"),
    (lambda ws, c: human.leaderboard(ws, "nope"), "set: no item set"),
])
def test_bad_input_is_a_user_error_naming_the_field(tmp_path, call, field):
    ws = Workspace(tmp_path)
    c = human.new_comparison(ws, prompt="p", model_a="x", model_b="y", answer_a="1", answer_b="2")
    human.add_answer(ws, prompt="p", model="x", answer="1")
    with pytest.raises(UserError) as e:
        call(ws, c["comparison_id"])
    assert str(e.value).startswith(field) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------- Fleiss' kappa


WIKIPEDIA = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_is_wikipedias_worked_example():
    # statsmodels is not installed here; Wikipedia's table gives P = 0.378, Pe = 0.213, kappa = 0.210.
    assert fleiss_kappa(WIKIPEDIA) == pytest.approx(0.20993, abs=1e-5)
    # Items rated by fewer raters are dropped, not counted as they are.
    assert fleiss_kappa(WIKIPEDIA + [[1, 0, 0, 0, 2]]) == fleiss_kappa(WIKIPEDIA)
    assert fleiss_kappa([[3, 0], [3, 0]]) != fleiss_kappa([[3, 0], [3, 0]])  # NaN: one category, nothing to say
    assert math.isnan(fleiss_kappa([])) and math.isnan(fleiss_kappa([[1, 0]]))


def test_fleiss_kappa_of_two_raters_is_scotts_pi():
    rng = np.random.default_rng(0)
    r1 = rng.integers(0, 3, 40)
    r2 = np.where(rng.random(40) < 0.6, r1, rng.integers(0, 3, 40))
    observed = (r1 == r2).mean()
    pooled = np.bincount(np.concatenate([r1, r2]), minlength=3) / 80
    scotts_pi = (observed - (pooled ** 2).sum()) / (1 - (pooled ** 2).sum())
    table = [[int(a == c) + int(b == c) for c in range(3)] for a, b in zip(r1, r2)]
    assert fleiss_kappa(table) == pytest.approx(scotts_pi, abs=1e-12)


# ---------------------------------------------------------------------------- Bradley-Terry


def _simulate(elo: dict[str, float], n: int, seed: int, tie_rate: float = 0.1) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    names = list(elo)
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)  # another model, uniformly
    p_a = 1 / (1 + 10 ** ((np.array([elo[names[j]] for j in b]) - np.array([elo[names[i]] for i in a])) / 400))
    s = np.where(rng.random(n) < tie_rate, 0.5, (rng.random(n) < p_a).astype(float))
    return [(names[i], names[j], float(x)) for i, j, x in zip(a, b, s)]


def _centered(r: dict[str, float]) -> np.ndarray:
    x = np.array([r[m] for m in sorted(r)])
    return x - x.mean()


def _scipy_mle(battles, models):
    """The Bradley-Terry log-likelihood maximised by scipy's BFGS, in Elo points (ties: half a win each)."""
    idx = {m: i for i, m in enumerate(models)}
    a = np.array([idx[x] for x, _, _ in battles])
    b = np.array([idx[y] for _, y, _ in battles])
    s = np.array([z for _, _, z in battles])

    def nll(theta):
        d = theta[a] - theta[b]
        loss = -(s * -np.logaddexp(0, -d) + (1 - s) * -np.logaddexp(0, d)).sum()
        g = s - 1 / (1 + np.exp(-d))  # d(log-lik)/d(d)
        grad = -(np.bincount(a, g, len(models)) - np.bincount(b, g, len(models)))
        return loss, grad

    res = minimize(nll, np.zeros(len(models)), jac=True, method="BFGS", options={"gtol": 1e-10})
    return {m: res.x[i] * 400 / math.log(10) for m, i in idx.items()}


def _sklearn_mle(battles, models):
    """Chatbot Arena's way: unregularised logistic regression on +1/-1 rows, a tie as half a row each way."""
    idx = {m: i for i, m in enumerate(models)}
    X, y, w = [], [], []
    for a, b, s in battles:
        row = np.zeros(len(models))
        row[idx[a]], row[idx[b]] = math.log(10), -math.log(10)
        for outcome, weight in ((1, s), (0, 1 - s)):
            if weight:
                X.append(row), y.append(outcome), w.append(weight)
    lr = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000)
    lr.fit(np.array(X), np.array(y), sample_weight=np.array(w))
    return {m: lr.coef_[0][i] * 400 for m, i in idx.items()}


def test_bradley_terry_is_the_maximum_likelihood_of_scipy_and_sklearn():
    battles = _simulate({"w": 1150, "x": 1050, "y": 1000, "z": 850}, 600, seed=3)
    models = sorted({"w", "x", "y", "z"})
    ours = _centered(bradley_terry(battles, prior=0))
    assert ours == pytest.approx(_centered(_scipy_mle(battles, models)), abs=1e-3)
    assert ours == pytest.approx(_centered(_sklearn_mle(battles, models)), abs=1e-2)
    assert np.mean(list(bradley_terry(battles).values())) == pytest.approx(1000)
    assert bradley_terry(battles) == bradley_terry(battles, prior=0)  # the MLE exists: nothing added


def test_bradley_terry_recovers_known_strengths():
    elo = {"m800": 800, "m900": 900, "m1000": 1000, "m1100": 1100, "m1200": 1200}
    r = bradley_terry(_simulate(elo, 5000, seed=0))
    assert sorted(r, key=r.get) == list(elo)
    assert _centered(r) == pytest.approx(_centered(elo), abs=40)


def test_an_unbeaten_model_gets_a_finite_rating_unless_the_pure_mle_is_asked_for():
    battles = [("A", "B", 1.0)] * 3 + [("B", "C", 1.0), ("C", "B", 0.5)]
    r = bradley_terry(battles)
    assert all(math.isfinite(v) for v in r.values()) and r["A"] > r["B"] > r["C"]
    with pytest.raises(ValueError, match="no finite maximum likelihood"):
        bradley_terry(battles, prior=0)


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_more_battles():
    elo = {"a": 1100, "b": 1000, "c": 900}
    widths = []
    for n in (150, 2400):
        r = bootstrap_ratings(_simulate(elo, n, seed=n), iters=300, seed=0)
        for m in r.values():
            assert m["ci95"][0] - 1e-6 <= m["rating"] <= m["ci95"][1] + 1e-6
        widths.append(np.mean([m["ci95"][1] - m["ci95"][0] for m in r.values()]))
    assert widths[1] < widths[0] / 2  # 16x the battles: about a quarter of the width
    assert bootstrap_ratings(_simulate(elo, 150, 1), iters=50, seed=4) == \
        bootstrap_ratings(_simulate(elo, 150, 1), iters=50, seed=4)  # seeded: reproducible


def test_ranks_follow_chatbot_arenas_rule():
    ci = {"A": {"ci95": [1180, 1250]}, "B": {"ci95": [1150, 1200]}, "C": {"ci95": [1100, 1160]},
          "D": {"ci95": [900, 1000]}, "E": {"ci95": [950, 1020]}}
    # C is below A only (A's low 1180 > C's high 1160; B's low 1150 is not); D and E are below A, B and C.
    assert ranks(ci) == {"A": 1, "B": 1, "C": 2, "D": 4, "E": 4}
    assert ranks({}) == {}


# ---------------------------------------------------------------------------- the leaderboard


def test_leaderboard_counts_rates_and_measures_agreement(tmp_path):
    ws = Workspace(tmp_path)
    for i, choices in enumerate([("a", "a", "a"), ("a", "a", "b"), ("b", "tie", "both_bad"), ("a", "b", "a")]):
        human.new_comparison(ws, prompt=f"p{i}", model_a="x", model_b="y", answer_a="1", answer_b="2",
                             set_name="s1", seed=_seeds()["a"])  # x on the left: left = a
        for rater, choice in zip(("ann", "bob", "cy"), choices):
            shown = {"a": "left", "b": "right"}.get(choice, choice)
            human.vote(ws, i + 1, rater, shown)
    human.new_comparison(ws, prompt="q", model_a="y", model_b="z", answer_a="1", answer_b="2", set_name="s2")
    human.vote(ws, 5, "ann", "tie")  # one rater: no agreement to measure in s2
    for model, scores in (("x", [[5, 4], [4, 4]]), ("y", [[2, 1], [3]])):
        for i, item_scores in enumerate(scores):
            item = human.add_answer(ws, prompt=f"p{i}", model=model, answer="...", set_name="s1")
            for rater, s in zip(("ann", "bob"), item_scores):
                human.rate(ws, item["item_id"], rater, s)

    b = human.leaderboard(ws, iters=200)
    rows = {m["model"]: m for m in b["models"]}
    assert b["battles"] == 13 and b["models"][0]["model"] == "x"
    assert {k: rows["x"][k] for k in ("wins", "losses", "ties", "both_bad", "battles")} == \
        {"wins": 7, "losses": 3, "ties": 2, "both_bad": 1, "battles": 12}
    assert rows["z"]["ties"] == 1 and rows["x"]["rank"] == 1
    assert rows["x"]["mean_score"] == pytest.approx(4.25) and rows["x"]["n_items"] == 2
    assert rows["y"]["mean_score"] == pytest.approx(2.25)  # item means 1.5 and 3
    assert rows["y"]["score_se"] == pytest.approx(np.std([1.5, 3], ddof=1) / math.sqrt(2))
    s1, s2 = b["sets"]
    expected = fleiss_kappa([[3, 0, 0, 0], [2, 1, 0, 0], [0, 1, 1, 1], [2, 1, 0, 0]])
    assert s1["pairwise_agreement"] == {"kappa": round(expected, 4), "items": 4, "raters": 3}
    # The 1-5 scores: only the three items rated by 2 raters count.
    assert s1["rating_agreement"]["items"] == 3 and s1["rating_agreement"]["raters"] == 2
    assert s2["pairwise_agreement"] == {"kappa": None, "items": 0, "raters": None}
    only = human.leaderboard(ws, "s2", iters=50)
    assert only["battles"] == 1 and {m["model"] for m in only["models"]} == {"y", "z"}


# ---------------------------------------------------------------------------- the HTTP routes


ANSWERS = {"model-x": "Paris.", "model-y": "It is Paris, France."}


def _openai_stub() -> FastAPI:
    """Stands in for vLLM on Ray Serve: the two OpenAI routes the human-eval API calls."""
    stub = FastAPI()
    stub.state.requests = []

    @stub.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in ANSWERS]}

    @stub.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        stub.state.requests.append((request.headers.get("authorization"), body))
        if body["messages"][-1]["content"] == "too long":
            return JSONResponse({"error": {"message": "Input length exceeds the context", "type": "BadRequestError",
                                           "param": "messages", "code": 400}}, status_code=400)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWERS[body["model"]]}}]}

    return stub


@pytest.fixture(scope="module")
def llm():
    s = start_stub(_openai_stub())
    yield s
    s.stop()


@pytest.fixture
def api(tmp_path, llm, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_API_KEY", "k")
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)  # as services/api.py does: validation errors become 400s naming the field
    app.state.workspace = Workspace(tmp_path)
    app.state.llm_url = f"{llm.url}/v1"
    return TestClient(app)


def test_api_compares_blind_then_reveals_on_vote(api, llm):
    r = api.post("/api/human/comparisons", json={"prompt": "Capital of France?", "models": ["model-x", "model-y"],
                                                 "set": "geo", "max_tokens": 32})
    assert r.status_code == 200, r.text
    view = r.json()
    assert set(view) == {"comparison_id", "set", "prompt", "left", "right"} and "model-" not in r.text
    assert {view["left"], view["right"]} == set(ANSWERS.values())
    auth, body = llm.app.state.requests[-1]
    assert auth == "Bearer k" and body["max_tokens"] == 32 and body["messages"][-1]["content"] == "Capital of France?"

    r = api.post(f"/api/human/comparisons/{view['comparison_id']}/vote", json={"rater": "ann", "choice": "left"})
    assert r.status_code == 200, r.text
    v = r.json()
    assert ANSWERS[v["left_model"]] == view["left"] and v["winner"] == v["left_model"]
    board = api.get("/api/human/leaderboard", params={"set": "geo"}).json()
    assert {m["model"]: m["wins"] for m in board["models"]} == {v["left_model"]: 1, v["right_model"]: 0}


def test_api_rates_single_answers(api):
    r = api.post("/api/human/answers", json={"prompt": "Capital of France?", "model": "model-y"})
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["answer"] == ANSWERS["model-y"] and "model" not in item
    r = api.post(f"/api/human/answers/{item['item_id']}/rating", json={"rater": "bob", "score": 4})
    assert r.status_code == 200 and r.json()["model"] == "model-y"
    rows = api.get("/api/human/leaderboard").json()["models"]
    assert rows == [{"model": "model-y", "rating": None, "ci95": None, "rank": None, "wins": 0, "losses": 0,
                     "ties": 0, "both_bad": 0, "battles": 0, "mean_score": 4.0, "score_se": None, "n_items": 1}]


def test_api_errors_name_the_field(api):
    assert "not served" in assert_error(api.post("/api/human/comparisons", json={
        "prompt": "p", "models": ["model-x", "nope"]}), 409, "models")
    assert_error(api.post("/api/human/answers", json={"prompt": "p", "model": "nope"}), 409, "model")
    assert_error(api.post("/api/human/comparisons", json={"prompt": "p", "models": ["model-x", "model-x"]}),
                 400, "models")
    assert_error(api.post("/api/human/comparisons", json={"prompt": "p", "models": ["model-x"]}), 400, "models")
    assert_error(api.post("/api/human/comparisons", json={"prompt": " ", "models": ["model-x", "model-y"]}),
                 400, "prompt")
    assert_error(api.post("/api/human/answers", json={"prompt": "too long", "model": "model-x"}), 400, "prompt")
    for cid in ("999", "abc"):
        assert_error(api.post(f"/api/human/comparisons/{cid}/vote", json={"rater": "ann", "choice": "left"}),
                     404, "comparison_id")
    cid = api.post("/api/human/comparisons", json={"prompt": "p", "models": ["model-x", "model-y"]}).json()[
        "comparison_id"]
    assert "left, right, tie, both_bad" in assert_error(
        api.post(f"/api/human/comparisons/{cid}/vote", json={"rater": "ann", "choice": "A"}), 400, "choice")
    assert_error(api.post(f"/api/human/comparisons/{cid}/vote", json={"rater": "", "choice": "tie"}), 400, "rater")
    item = api.post("/api/human/answers", json={"prompt": "p", "model": "model-x"}).json()["item_id"]
    for score in (0, 6, "great"):
        assert_error(api.post(f"/api/human/answers/{item}/rating", json={"rater": "ann", "score": score}),
                     400, "score")
    assert_error(api.post("/api/human/answers/999/rating", json={"rater": "ann", "score": 3}), 404, "item_id")
    assert_error(api.get("/api/human/leaderboard", params={"set": "nope"}), 404, "set")
    assert_error(api.get("/api/human/export", params={"format": "xml"}), 400, "format")

    api.app.state.llm_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    r = api.post("/api/human/answers", json={"prompt": "p", "model": "model-x"})
    assert r.status_code == 503 and "playground up" in r.json()["error"]["message"]


def test_api_exports_json_and_votes_as_csv(api):
    for rater, choice in (("ann", "left"), ("bob", "tie")):
        cid = api.post("/api/human/comparisons", json={"prompt": "p", "models": ["model-x", "model-y"]}).json()[
            "comparison_id"]
        api.post(f"/api/human/comparisons/{cid}/vote", json={"rater": rater, "choice": choice})
    data = api.get("/api/human/export").json()
    assert set(data) == {"schema_version", *human.TABLES} and len(data["comparisons"]) == 2
    r = api.get("/api/human/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["rater"], row["set"], row["model_a"], row["model_b"]) for row in rows] == [
        ("ann", "default", "model-x", "model-y"), ("bob", "default", "model-x", "model-y")]
    assert rows[1]["choice"] == "tie" and rows[1]["winner"] == ""
