import itertools
import math

import pytest
import torch

from training.config import TrainConfig
from training.model.transformer import ModelConfig, Transformer
from training.pretrain import loop


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedule_shape(schedule):
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110, schedule=schedule)
    assert loop.get_lr(0, cfg) == pytest.approx(0.1)  # (0+1)/10 of the peak
    assert loop.get_lr(9, cfg) == pytest.approx(1.0)  # end of warmup
    assert loop.get_lr(10, cfg) == pytest.approx(1.0)  # decay starts at the peak
    assert loop.get_lr(110, cfg) == pytest.approx(0.1)  # ... and ends at min_lr
    mid = loop.get_lr(60, cfg)
    assert mid == pytest.approx(0.55)  # cosine and linear cross at the midpoint
    lrs = [loop.get_lr(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))  # monotone decay
    if schedule == "cosine":
        assert loop.get_lr(35, cfg) > 0.1 + 0.9 * (1 - 25 / 100)  # cosine stays high longer early on


def test_constant_schedule_and_no_warmup():
    cfg = TrainConfig(lr=0.5, warmup_steps=0, schedule="constant", max_steps=10)
    assert [loop.get_lr(s, cfg) for s in (0, 5, 10)] == [0.5, 0.5, 0.5]


def test_weight_decay_groups_skip_biases_and_norms():
    model = tiny_model()
    opt = loop.build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(1)
    x = torch.randint(0, 64, (8, 16))
    y = torch.randint(0, 64, (8, 16))
    a, b = tiny_model(), tiny_model()
    # SGD: the update is linear in the gradient, so equal gradients give equal weights
    # (Adam's g/sqrt(v) would amplify float noise on near-zero gradients).
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    sa = loop.train_step(a, oa, [(x, y)], lr=1e-2, grad_clip=0.0)
    sb = loop.train_step(b, ob, [(x[:4], y[:4]), (x[4:], y[4:])], lr=1e-2, grad_clip=0.0)
    assert sa["loss"] == pytest.approx(sb["loss"], abs=1e-6)
    assert sa["grad_norm"] == pytest.approx(sb["grad_norm"], rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)


def test_grad_clip_reports_norm_before_clipping():
    model = tiny_model()
    opt = loop.build_optimizer(model, TrainConfig())
    x = torch.randint(0, 64, (4, 16))
    stats = loop.train_step(model, opt, [(x, x)], lr=1e-3, grad_clip=1e-3)
    assert stats["grad_norm"] > 1e-3


def test_evaluate_reports_perplexity_and_restores_mode():
    model = tiny_model()
    model.train()
    batches = [(torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))) for _ in range(3)]
    out = loop.evaluate(model, batches)
    assert out["perplexity"] == pytest.approx(math.exp(out["val_loss"]))
    assert abs(out["val_loss"] - math.log(64)) < 0.5  # untrained: close to uniform
    assert model.training


def test_precision_resolution():
    assert loop.resolve_precision("fp32", "cpu") == "fp32"
    assert loop.resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="fp16"):
        loop.resolve_precision("fp16", "cpu")
    assert loop.make_scaler("bf16", "cpu") is None


def test_bf16_autocast_step_trains():
    model = tiny_model()
    opt = loop.build_optimizer(model, TrainConfig(weight_decay=0.0))
    x = torch.randint(0, 64, (4, 16))
    ac = loop.autocast_factory("bf16", "cpu")
    first = loop.train_step(model, opt, [(x, x)], lr=1e-2, grad_clip=1.0, autocast=ac)["loss"]
    for _ in range(30):
        last = loop.train_step(model, opt, [(x, x)], lr=1e-2, grad_clip=1.0, autocast=ac)["loss"]
    assert last < first * 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
