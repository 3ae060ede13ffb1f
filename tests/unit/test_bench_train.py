"""The measuring parts of `playground bench train` that need no Ray.

`step_mfu` is what the bench runs for gpt2-small when a GPU is present; no GPU was lent
here, so it is exercised on CPU with a tiny model (same code path, minus CUDA syncs).
"""

import pytest
import torch

from benchmarks.train import device_peak_flops, step_mfu
from training.model.flops import mfu
from training.model.transformer import ModelConfig


def test_step_mfu_on_cpu_with_a_tiny_model():
    cfg = ModelConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=64)
    out = step_mfu(cfg, "cpu", batch_size=4, steps=3, warmup=1, precision="fp32")
    assert out["batch"] == [4, 32] and out["tokens_per_s"] > 0 and out["device"] == "cpu"
    assert 0 < out["mfu"] < 1 and out["peak_tflops"] is not None
    # Both figures are rounded (ms to 0.01, tokens/s to 0.1); on a ~5 ms step that alone
    # moves their product by about 0.1%, so the tolerance is the rounding's.
    slack = 0.005 / out["ms_per_step"] + 0.05 / out["tokens_per_s"]
    assert out["ms_per_step"] * out["tokens_per_s"] / 1000 == pytest.approx(4 * 32, rel=slack + 1e-9)


def test_cpu_peak_is_a_measured_matmul():
    assert device_peak_flops(torch.device("cpu"), "fp32", cpu_n=256, cpu_iters=2) > 1e8


def test_mfu_measures_the_peak_again_when_training_beats_it():
    calls = []

    def measure(value):
        return lambda: calls.append(value) or value

    # A peak at or above what training reached is kept: no second measure.
    assert mfu(50.0, 100.0, measure(300.0)) == (0.5, 100.0) and calls == []
    # One below it was measured while the cores were busy: measure again, keep the better.
    assert mfu(150.0, 100.0, measure(200.0)) == (0.75, 200.0) and calls == [200.0]
    # A second measure that is no better (or none at all) leaves the first: MFU shows above 1.
    assert mfu(150.0, 100.0, measure(80.0)) == (1.5, 100.0)
    assert mfu(150.0, 100.0, measure(None)) == (1.5, 100.0)
