"""`playground bench tokenizer` (benchmarks/tokenizer.py) on a small text: it runs and reports every figure."""

import json

import pytest

from benchmarks import report as bench
from benchmarks.tokenizer import _chunks, bench_tokenizer, best_of, read_text
from training.data.corpus import generate_documents
from training.errors import UserError


def test_bench_runs_on_a_small_text(tmp_path, monkeypatch, capsys):
    text = "\n".join(generate_documents(30_000, seed=1)) + "\nCafé crème, naïve façade. 🎉\n" * 20
    path = tmp_path / "small.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(bench, "REPORT_DIR", tmp_path / "reports")  # not the project's reports/

    figures = bench_tokenizer(path, repeats=1)

    for key in ("train_seconds_vocab1024", "train_seconds_vocab4096", "train_seconds_hf_vocab4096",
                "train_ratio_ours_vs_hf_vocab1024", "train_ratio_ours_vs_hf_vocab4096", "parity",
                "encode_tokens_per_s_ours", "encode_tokens_per_s_hf", "encode_tokens_per_s_tiktoken",
                "encode_mb_per_s_ours", "encode_mb_per_s_hf", "encode_mb_per_s_tiktoken",
                "encode_ratio_hf_vs_ours", "encode_ratio_tiktoken_vs_ours", "goal_train_met", "goal_hf_encode_met"):
        assert key in figures, key
    assert figures["parity"] is True  # both trainers agree, at both sizes
    assert set(figures["parity_by_vocab"]) == {"1024", "4096"}
    assert figures["encode_method_hf"] in figures["encode_hf_by_method_tokens_per_s"]
    assert figures["train_ratio_ours_vs_hf_vocab4096"] == pytest.approx(
        figures["train_seconds_vocab4096"] / figures["train_seconds_hf_vocab4096"], rel=0.01)
    saved = json.loads((tmp_path / "reports" / "tokenizer.json").read_text())
    assert saved == figures
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == figures  # the last stdout line, as `emit` promises
    assert "goal: our trainer reaches vocab 4096 in < 15 s" in out and "goal: hf encodes >= 1,000,000" in out


def test_read_text_errors(tmp_path):
    with pytest.raises(UserError, match="--text: .* not found"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("façade".encode("latin-1"))
    with pytest.raises(UserError, match="--text: .* is not UTF-8"):
        read_text(tmp_path / "latin1.txt")


def test_helpers():
    assert _chunks(["ab\n", "cd\n", "e\n"], 5) == ["ab\ncd\n", "e\n"]
    calls = []
    seconds, result = best_of(3, lambda x: calls.append(x) or x * 2, setup=lambda: 21)
    assert result == 42 and calls == [21, 21, 21] and seconds >= 0
