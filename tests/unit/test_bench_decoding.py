"""`playground bench decoding` on a tiny exported model (the recorded figures are on the demo model, in
docs/figures.md): every figure there, parity with transformers true, and its bad input."""

from __future__ import annotations

import json

import torch

from cluster.cli import main
from training.model.export import export_hf
from training.model.transformer import ModelConfig, Transformer
from training.workspace import Workspace


def test_bench_decoding_reports_parity_and_times(tmp_path, monkeypatch):
    from benchmarks import report
    from benchmarks.decoding import bench_decoding
    from training.tokenizers import tokenlab

    ws = Workspace(tmp_path / "ws")
    tok = tokenlab.train(ws, "Once upon a time the quick brown fox jumps over the lazy dog. " * 40,
                         trainer="scratch", vocab_size=300, name="tok")
    torch.manual_seed(0)
    export_hf(Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=64)),
              ws.model("tiny"), tokenizer_dir=tok["path"])
    monkeypatch.setattr(report, "REPORT_DIR", tmp_path / "reports")
    figures = bench_decoding(model="tiny", repeats=1, workspace=ws)
    assert figures["greedy_matches_hf"] is True and figures["beam_matches_hf"] is True
    assert figures["beam4_tree_steps"] == 32 and figures["beam4_tree_nodes"] > 4 * 32
    assert all(figures[k] > 0 for k in ("ms_beam4_32_tokens", "ms_sampling_compare", "ms_plain_generate_4x32"))
    assert figures["templates"] >= 20
    assert json.loads((tmp_path / "reports" / "decoding.json").read_text()) == figures


def test_bad_arguments_are_one_line(capsys, tmp_path):
    assert main(["--workspace", str(tmp_path), "bench", "decoding", "--repeats", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --repeats must be >= 1"
    assert main(["--workspace", str(tmp_path), "bench", "decoding", "--model", "ghost"]) == 2
    assert "--model: no model 'ghost'" in capsys.readouterr().err
