"""GPU strategies (`scale.strategy`, training/pretrain/strategies.py), checked on CPU.

What runs here (no GPU on this machine):
- the config rule: deepspeed_* refused without scale.use_gpu, one line naming the key;
- the DeepSpeed config builder (a pure dict);
- FSDP2 for real: 2 processes on gloo, resumed from a plain single-process checkpoint,
  give the same losses, weights and optimizer state as one process over the same global
  batch (fp32), and train and sample in bf16 mixed precision;
- DeepSpeed ZeRO-2 and ZeRO-3 the same way, on DeepSpeed's CPU accelerator (marked
  slow: DeepSpeed compiles a CPU communication op on first use). The config refuses
  DeepSpeed on CPU; these tests call the strategy directly.

What cannot run here, for lack of a GPU, and is not exercised: NCCL, CUDA devices and
Ray's GPU placement, DeepSpeed's fp16 loss scaling and its CUDA kernels, fused AdamW
on GPU, FSDP2's bf16 all-gathers over NCCL, and any timing or memory figure.
"""

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.serve_http import free_port
from training.config import PretrainConfig, load_config
from training.errors import UserError
from training.pretrain import loop

NANO = Path(__file__).resolve().parents[2] / "configs/pretrain/nano.yaml"

WORLD, ACCUM, BATCH = 2, 2, 2
MODEL = {"vocab_size": 64, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0}


def make_cfg(strategy: str = "ddp", precision: str = "fp32", **scale) -> PretrainConfig:
    return PretrainConfig.model_validate({
        "model": MODEL,
        "train": {"batch_size": BATCH, "grad_accum": ACCUM, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1,
                  "max_steps": 4, "grad_clip": 0.5, "precision": precision},
        "scale": {"num_workers": WORLD, "strategy": strategy, **scale},
    })


def micro(step: int, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rank `rank`'s micro-batches at `step` (the single-process run takes every rank's)."""
    out = []
    for m in range(ACCUM):
        g = torch.Generator().manual_seed(1000 * step + 10 * rank + m)
        x = torch.randint(0, MODEL["vocab_size"], (BATCH, MODEL["block_size"]), generator=g)
        out.append((x, torch.roll(x, -1, 1)))
    return out


def fresh(cfg: PretrainConfig):
    from training.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(cfg.model)
    return model, loop.build_optimizer(model, cfg.train, "cpu")


def single_process(cfg: PretrainConfig, steps: range, state: dict | None = None):
    """Plain training over the global batch (every rank's micro-batches); returns
    (losses, model, optimizer)."""
    model, opt = fresh(cfg)
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    losses = []
    for step in steps:
        batches = [b for r in range(WORLD) for b in micro(step, r)]
        stats = loop.train_step(model, opt, batches, lr=loop.get_lr(step, cfg.train), grad_clip=cfg.train.grad_clip)
        losses.append(stats["loss"])
    return losses, model, opt


# --------------------------------------------------------------------------- config


def test_ddp_is_the_default():
    assert PretrainConfig().scale.strategy == "ddp"


@pytest.mark.parametrize("strategy", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_on_cpu_is_refused_naming_the_key(strategy):
    with pytest.raises(UserError) as e:
        load_config(NANO, [f"scale.strategy={strategy}"])
    msg = str(e.value)
    assert "\n" not in msg
    assert f"scale.strategy={strategy} needs GPUs (scale.use_gpu=true); on CPU use ddp or fsdp" in msg


def test_gpu_strategies_validate_with_use_gpu():
    for strategy in ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        cfg = load_config(NANO, [f"scale.strategy={strategy}", "scale.use_gpu=true"])
        assert cfg.scale.strategy == strategy
    assert load_config(NANO, ["scale.strategy=fsdp"]).scale.strategy == "fsdp"  # CPU too


def test_unknown_strategy_and_fsdp_fp16_are_refused():
    with pytest.raises(UserError, match="scale.strategy: Input should be 'ddp'"):
        load_config(NANO, ["scale.strategy=zero2"])
    with pytest.raises(UserError, match="scale.strategy=fsdp runs in bf16 or fp32"):
        load_config(NANO, ["scale.strategy=fsdp", "scale.use_gpu=true",
                                                   "train.precision=fp16"])


# --------------------------------------------------------------------------- deepspeed config


def test_deepspeed_config_from_our_config():
    from training.pretrain.strategies import deepspeed_config

    cfg = make_cfg("deepspeed_zero2", use_gpu=True)
    ds = deepspeed_config(cfg, "bf16", batch_size=8, grad_accum=4)
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["gradient_accumulation_steps"] == 4
    assert "train_batch_size" not in ds  # DeepSpeed derives it: micro x accum x world
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"] == {"enabled": True} and ds["fp16"]["enabled"] is False
    zero = ds["zero_optimization"]
    assert zero["stage"] == 2 and zero["overlap_comm"] and zero["contiguous_gradients"]
    assert "optimizer" not in ds and "scheduler" not in ds  # ours: client optimizer, lr set per step

    ds3 = deepspeed_config(make_cfg("deepspeed_zero3", use_gpu=True), "fp16", batch_size=1, grad_accum=1)
    assert ds3["zero_optimization"]["stage"] == 3 and "stage3_prefetch_bucket_size" in ds3["zero_optimization"]
    assert ds3["fp16"]["enabled"] and ds3["fp16"]["loss_scale"] == 0 and not ds3["bf16"]["enabled"]
    fp32 = deepspeed_config(make_cfg("deepspeed_zero3", use_gpu=True), "fp32", batch_size=1, grad_accum=1)
    assert not fp32["bf16"]["enabled"] and not fp32["fp16"]["enabled"]


def test_ddp_strategy_is_loop_train_step():
    """The default path: Ray's DDP wrapper (here a stand-in) around the model, then
    exactly loop.train_step, and checkpoints of the plain model's and optimizer's own
    state dicts, as before strategies existed."""
    from training.pretrain.strategies import wrap

    cfg = make_cfg("ddp")
    model, opt = fresh(cfg)
    wrapped = []
    strategy = wrap(model, opt, cfg, torch.device("cpu"), prepare_ddp=lambda m: wrapped.append(m) or m)
    assert wrapped == [model] and strategy.optimizer is opt and strategy.model is model
    assert not strategy.gathers_params and strategy.full_model() is model
    ref_model, ref_opt = fresh(cfg)
    ours = strategy.train_step(micro(0, 0), lr=1e-2, grad_clip=0.5)
    assert ours == loop.train_step(ref_model, ref_opt, micro(0, 0), lr=1e-2, grad_clip=0.5)
    model_state, optim_state = strategy.state_dicts()
    assert all(torch.equal(model_state[k], v) for k, v in ref_model.state_dict().items())
    assert optim_state["param_groups"] == ref_opt.state_dict()["param_groups"]


# --------------------------------------------------------------------------- 2 processes


def _worker(rank: int, strategy: str, port: int, out_dir: str, resume_file: str) -> None:
    """One rank: resume from a plain checkpoint, train steps 2-3 under `strategy`, gather;
    then a fresh bf16 run. Results go to out_dir/rank<r>.pt."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120))
    torch.set_num_threads(1)
    from training.pretrain.strategies import wrap

    use_gpu = strategy.startswith("deepspeed")  # only to pass the config rule: the device is the CPU
    cfg = make_cfg(strategy, use_gpu=use_gpu)
    model, opt = fresh(cfg)
    state = torch.load(resume_file, weights_only=True)
    model.load_state_dict(state["model"])  # what the recipe's _restore does before wrapping
    opt.load_state_dict(state["optimizer"])
    s = wrap(model, opt, cfg, torch.device("cpu"), prepare_ddp=None)
    losses = []
    for step in (2, 3):
        stats = s.train_step(micro(step, rank), lr=loop.get_lr(step, cfg.train), grad_clip=cfg.train.grad_clip)
        t = torch.tensor([stats["loss"]], dtype=torch.float64)
        dist.all_reduce(t)
        losses.append(t.item() / WORLD)
    model_state, optim_state = s.state_dicts()
    full = s.full_model()
    val = loop.evaluate(s.model, micro(9, 0))
    with s.generation():
        tokens = s.model.generate(micro(9, 0)[0][0][:1, :4], 6, temperature=0.0)
    out = {"losses": losses, "model": model_state, "optimizer": optim_state, "val": val, "tokens": tokens,
           "full": full.state_dict() if full is not None else None, "grad_norm": stats["grad_norm"]}

    # bf16 from scratch: FSDP2's MixedPrecisionPolicy; DeepSpeed casts the module to bf16
    # and must keep fp32 master weights equal to the model's fp32 init.
    cfg16 = make_cfg(strategy, precision="bf16", use_gpu=use_gpu)
    model, opt = fresh(cfg16)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    s = wrap(model, opt, cfg16, torch.device("cpu"), prepare_ddp=None)
    masters = s.state_dicts()[0]
    out["bf16_masters_exact"] = all(torch.equal(masters[k], v) for k, v in init.items()) if rank == 0 else None
    autocast = loop.autocast_factory("bf16", "cpu")
    out["bf16_losses"] = [s.train_step(micro(step, rank), lr=loop.get_lr(step, cfg16.train),
                                       grad_clip=0.5, autocast=autocast)["loss"] for step in (0, 1)]
    out["bf16_optimizer"] = s.state_dicts()[1]
    with s.generation():
        out["bf16_tokens"] = s.model.generate(micro(9, 0)[0][0][:1, :4], 6, temperature=0.0)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _check_against_single_process(strategy: str, tmp_path):
    cfg = make_cfg("ddp")
    first, model, opt = single_process(cfg, range(2))
    resume_file = tmp_path / "resume.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, resume_file)
    ref_losses, ref_model, ref_opt = single_process(cfg, range(2, 4), torch.load(resume_file, weights_only=True))

    mp.spawn(_worker, args=(strategy, free_port(), str(tmp_path), str(resume_file)), nprocs=WORLD)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))

    assert r0["losses"] == pytest.approx(ref_losses, abs=1e-5)
    ref_state = ref_model.state_dict()
    assert r0["model"].keys() == ref_state.keys()  # tied lm_head.weight included, as in a plain checkpoint
    for key, value in ref_state.items():
        torch.testing.assert_close(r0["model"][key], value, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(r0["full"][key], value, atol=2e-5, rtol=1e-4)
    ref_optim = ref_opt.state_dict()
    assert r0["optimizer"]["state"].keys() == ref_optim["state"].keys()
    for i, st in ref_optim["state"].items():
        assert float(r0["optimizer"]["state"][i]["step"]) == float(st["step"]) == 4
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(r0["optimizer"]["state"][i][k], st[k], atol=1e-6, rtol=1e-4)
    for ours, ref in zip(r0["optimizer"]["param_groups"], ref_optim["param_groups"], strict=True):
        assert ours["params"] == ref["params"] and ours["weight_decay"] == ref["weight_decay"]
    # The gathered checkpoint loads into a plain model and optimizer, as a resume would.
    model, opt = fresh(cfg)
    model.load_state_dict(r0["model"])
    opt.load_state_dict(r0["optimizer"])
    assert r1["model"] == {} or r1["model"].keys() == ref_state.keys()
    assert r0["val"]["val_loss"] == pytest.approx(loop.evaluate(ref_model, micro(9, 0))["val_loss"], abs=1e-5)
    assert torch.equal(r0["tokens"], r1["tokens"])  # every rank sampled the same tokens (forward is collective)
    return r0, r1, first


def _check_bf16(r0, r1, fp32_first):
    """bf16 trains like fp32 (per-rank losses, so loosely), keeps fp32 masters, gathers a
    complete optimizer state, and every rank samples the same tokens."""
    assert r0["bf16_masters_exact"]
    assert sum(r0["bf16_losses"] + r1["bf16_losses"]) / (2 * WORLD) == pytest.approx(sum(fp32_first) / 2, abs=3e-2)
    assert len(r0["bf16_optimizer"]["state"]) == len(r0["optimizer"]["state"])
    assert all(float(st["step"]) == 2 for st in r0["bf16_optimizer"]["state"].values())
    assert torch.equal(r0["bf16_tokens"], r1["bf16_tokens"]) and r0["bf16_tokens"].shape == (1, 10)


@pytest.mark.timeout(180)
def test_fsdp_two_processes_match_one(tmp_path):
    """FSDP2 on gloo: losses, gathered weights and Adam moments match one process to fp32
    rounding after a resume from a plain checkpoint; bf16 mixed precision trains and samples."""
    _check_bf16(*_check_against_single_process("fsdp", tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_two_processes_match_one(strategy, tmp_path):
    """DeepSpeed ZeRO on its CPU accelerator (gloo): the engine's step, the lr set per step,
    clipping, the gathered fp32 weights and Adam moments, loading a plain checkpoint's
    optimizer state into ZeRO's shards (fp32), and the bf16 engine with fp32 masters.
    DeepSpeed's CUDA kernels and NCCL are not exercised."""
    pytest.importorskip("deepspeed")
    r0, r1, fp32_first = _check_against_single_process(strategy, tmp_path)
    assert r0["grad_norm"] > 0
    _check_bf16(r0, r1, fp32_first)
