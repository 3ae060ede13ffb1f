"""The leaderboard's statistics (pinned to scipy) and its table, built from records written here."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import stats

from evaluation import leaderboard, records
from evaluation.harness import metrics_of, primary_metric, sample_record
from training.workspace import Workspace


@pytest.mark.parametrize("a,b", [
    ([1, 1, 1, 0, 0, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0, 1, 0, 0, 1]),
    ([1] * 30 + [0] * 5, [1] * 20 + [0] * 15),
    ([0, 1, 0, 1], [1, 0, 1, 0]),
])
def test_mcnemar_is_the_exact_binomial_test_of_scipy(a, b):
    a, b = np.array(a), np.array(b)
    r = leaderboard.mcnemar(a, b)
    n = r["only_a"] + r["only_b"]
    assert r["p_value"] == pytest.approx(stats.binomtest(r["only_a"], n, 0.5).pvalue, abs=1e-12)


def test_paired_bootstrap_finds_a_paired_difference_that_unpaired_intervals_hide():
    rng = np.random.default_rng(1)
    difficulty = rng.random(400)
    # B is A plus a small, consistent edge on the same questions: the per-model intervals overlap,
    # but the paired difference is clearly above zero.
    a = (difficulty > 0.50).astype(float)
    b = (difficulty > 0.45).astype(float)
    se = lambda x: x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
    assert abs(a.mean() - b.mean()) < 1.96 * (se(a) + se(b))  # the unpaired intervals overlap
    r = leaderboard.paired_bootstrap(b, a, iters=5000)
    assert r["diff"] == pytest.approx(b.mean() - a.mean())
    assert r["ci95"][0] > 0 and r["p_value"] < 0.001
    same = leaderboard.paired_bootstrap(a, a.copy(), iters=1000)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_paired_scores_align_by_doc_id():
    a = [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": 0.0}, {"doc_id": 2, "acc": 1.0}]
    b = [{"doc_id": 2, "acc": 0.0}, {"doc_id": 0, "acc": 1.0}]
    x, y = leaderboard.paired_scores(a, b, "acc")
    assert list(x) == [1.0, 1.0] and list(y) == [1.0, 0.0]


def test_lm_eval_entries_become_metrics_and_rows():
    entry = {"alias": "world_facts", "acc,none": 0.75, "acc_stderr,none": 0.05, "acc_norm,none": 0.7,
             "acc_norm_stderr,none": 0.05, "exact_match,strip": 0.5, "exact_match_stderr,strip": "N/A"}
    m = metrics_of(entry)
    assert m == {"acc": 0.75, "acc_stderr": 0.05, "acc_norm": 0.7, "acc_norm_stderr": 0.05,
                 "exact_match[strip]": 0.5}
    assert primary_metric(m) == "acc"
    assert primary_metric({"exact_match[strip]": 0.5}) == "exact_match[strip]"
    row = records.score_row("m", "world_facts", "world_facts", m, 100, 0.25)
    assert row["ci95"] == pytest.approx([0.75 - 1.959964 * 0.05, 0.75 + 1.959964 * 0.05])
    assert row["normalized"] == pytest.approx(2 / 3)
    gen = records.score_row("m", "s", "s", {"exact_match[strip]": 0.5}, 10, 0.0)
    assert gen["stderr"] is None and gen["ci95"] is None and gen["normalized"] == 0.5


def test_sample_record_of_a_multiple_choice_item_keeps_the_chosen_answer():
    s = {"doc_id": 3, "target": 2, "arguments": [["Q?", " a"], ["Q?", " b"], ["Q?", " c"]],
         "resps": [[(-3.0, False)], [(-1.0, True)], [(-2.0, False)]],
         "filtered_resps": [(-3.0, False), (-1.0, True), (-2.0, False)], "metrics": ["acc"], "acc": 0.0}
    r = sample_record(s)
    assert r == {"doc_id": 3, "prompt": "Q?", "target": 2, "loglikelihoods": [-3.0, -1.0, -2.0], "pred": 1,
                 "acc": 0.0}
    g = sample_record({"doc_id": 0, "target": "Tolbek", "arguments": [["What is ...", {"until": ["\n"]}]],
                       "filtered_resps": ["Tolbek"], "metrics": ["exact_match"], "exact_match": 1.0})
    assert g["pred"] == "Tolbek" and g["exact_match"] == 1.0


def _record(ws, eval_id, finished, rows):
    records.write_record(ws, {"eval_id": eval_id, "name": eval_id, "status": "SUCCEEDED", "created_at": finished,
                              "finished_at": finished, "progress": {"done": 1, "total": 1},
                              "config": {"models": [], "tasks": [], "backend": "hf"}, "rows": rows,
                              "groups": []})


def test_board_takes_each_models_latest_score_and_ranks_by_normalised_average(tmp_path):
    ws = Workspace(tmp_path)
    row = lambda m, t, acc, chance: records.score_row(m, t, t, {"acc": acc, "acc_stderr": 0.01}, 50, chance)  # noqa: E731
    _record(ws, "e1", "2026-12-01T00:00:00", [row("a", "facts", 0.40, 0.25), row("b", "facts", 0.90, 0.25)])
    _record(ws, "e2", "2026-12-02T00:00:00", [row("a", "facts", 0.70, 0.25), row("a", "yesno", 0.75, 0.5)])
    b = leaderboard.board(ws)
    assert b["tasks"] == ["facts", "yesno"]
    first, second = b["models"]
    assert first["model"] == "b" and first["average"] == pytest.approx((0.9 - 0.25) / 0.75)
    assert second["cells"]["facts"]["score"] == 0.70 and second["cells"]["facts"]["eval_id"] == "e2"
    assert second["average"] == pytest.approx(((0.7 - 0.25) / 0.75 + 0.5) / 2)


@pytest.mark.parametrize("module", [leaderboard, records])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
