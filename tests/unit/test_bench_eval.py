"""`playground bench eval`'s own arithmetic (the measured run needs vLLM and Serve: `make bench`-style, by
hand, figures in docs/figures.md); its bad input."""

from __future__ import annotations

import pytest

from benchmarks.eval import agreement, print_table
from cluster.cli import main


def test_agreement_counts_items_by_doc_id():
    served = [{"doc_id": 0, "pred": 1}, {"doc_id": 1, "pred": 2}, {"doc_id": 2, "pred": 0}]
    local = [{"doc_id": 2, "pred": 0}, {"doc_id": 0, "pred": 1}, {"doc_id": 1, "pred": 3}]
    assert agreement(served, local) == (pytest.approx(2 / 3), 3)
    assert agreement(served, []) == (None, 0)


@pytest.mark.parametrize("argv,message", [
    (["bench", "eval", "--mmlu-limit", "0"], "error: --mmlu-limit must be >= 1"),
    (["bench", "eval", "--agreement-limit", "-1"], "error: --agreement-limit must be >= 1"),
])
def test_bad_limits_are_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == message


def test_the_table_prints_every_figure(capsys):
    print_table({"model": "m", "mmlu_questions": 14042, "mmlu_seconds": 600.0, "mmlu_questions_per_s": 23.4,
                 "mmlu_accuracy": 0.25, "agreement_task": "world_facts", "served_vs_inprocess_agreement": 1.0,
                 "agreement_items": 60, "served_seconds": 3.0, "inprocess_seconds": 4.0, "rerun_identical": True,
                 "perplexity_served": 1.6, "perplexity_inprocess": 1.6, "perplexity_served_vs_inprocess": 1e-6})
    out = capsys.readouterr().out
    assert "14,042 questions in 600 s" in out and "agree on 1.0 of 60 items" in out


def test_bench_leaderboard_measures_the_real_routes_and_the_page(tmp_path, monkeypatch):
    """A small board (3 models, one timed run each): every figure there, and the saved JSON is the printed line."""
    import json

    from benchmarks import report
    from benchmarks.leaderboard import bench_leaderboard

    monkeypatch.setattr(report, "REPORT_DIR", tmp_path)
    figures = bench_leaderboard(models=3, repeats=1)
    assert figures["leaderboard_models"] == 3 and figures["rows_per_model"] == 66
    assert all(figures[k] > 0 for k in ("api_ms", "api_ms_1_model", "breakdown_ms", "history_ms", "page_ms"))
    assert figures["goal_met"] == (max(figures["api_ms"], figures["page_ms"]) < 2000)
    assert json.loads((tmp_path / "leaderboard.json").read_text()) == figures
    assert main(["bench", "leaderboard", "--models", "0"]) == 2
