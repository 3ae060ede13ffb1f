"""Memory features: gradient checkpointing, the micro-batch finder, out-of-memory messages.

There is no GPU on the machine these tests run on. The CUDA paths are tested with
stand-ins (a probe that raises torch.OutOfMemoryError, a model whose forward raises
it); everything measured for real here is measured on CPU.
"""

import types

import pytest
import torch
from ray.exceptions import RayTaskError
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

from cluster.cli import main
from training.config import PretrainConfig, TrainConfig, load_config
from training.errors import UserError
from training.model.transformer import ModelConfig, Transformer
from training.pretrain import loop, memory, pretrain

CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 100000000000000 bytes. Error code 12 (Cannot allocate memory)")


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = {"vocab_size": 64, "block_size": 32, "n_layer": 4, "n_head": 2, "n_embd": 64}
    return Transformer(ModelConfig(**{**cfg, **kw}))


def batch(n=4, t=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (n, t), generator=g), torch.randint(0, 64, (n, t), generator=g)


# --------------------------------------------------------------------------- gradient checkpointing


@pytest.mark.parametrize("variant", [{"arch": "gpt2"}, {"arch": "llama"}, {"arch": "gpt2", "pos_embedding": "alibi"}],
                         ids=["gpt2", "llama", "alibi"])
def test_grad_checkpointing_gives_the_same_loss_and_gradients(variant):
    # dropout > 0: the recomputation must replay the same dropout masks.
    x, y = batch()
    grads, losses = [], []
    for enabled in (False, True):
        model = tiny_model(**variant, dropout=0.1)
        model.set_grad_checkpointing(enabled)
        torch.manual_seed(7)
        _, loss = model(x, y)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_grad_checkpointing_lowers_activation_memory():
    x, y = batch(n=8)
    model = tiny_model()
    plain, _ = memory.saved_tensor_bytes(model, x, y)
    model.set_grad_checkpointing(True)
    # What autograd itself keeps (sum of the saved tensors' bytes): only the tensors
    # outside the checkpointed blocks.
    visible, _ = memory.saved_tensor_bytes(model, x, y)
    assert visible < plain / 3
    # The full account adds the block inputs the checkpoints hold and one block being
    # recomputed; still far below keeping every block's activations.
    accounted, _ = memory.activation_bytes(model, x, y)
    assert visible < accounted < plain / 2
    assert model.grad_checkpointing  # restored after the measurement
    model.set_grad_checkpointing(False)
    assert memory.activation_bytes(model, x, y)[0] == plain


def test_grad_checkpointing_leaves_eval_and_generation_alone():
    model = tiny_model()
    model.set_grad_checkpointing(True)
    x, y = batch(n=2)
    assert loop.evaluate(model, [(x, y)])["val_loss"] > 0
    out = model.generate(x[:, :4], 5, temperature=0)
    assert out.shape == (2, 9)


def test_train_config_has_grad_checkpointing_and_model_config_does_not():
    # A training-only switch: resuming or exporting compares the model section only.
    cfg = load_config(None, ["train.grad_checkpointing=true"])
    assert cfg.train.grad_checkpointing
    assert "grad_checkpointing" not in cfg.model_dump()["model"]


# --------------------------------------------------------------------------- the finder


def test_finder_on_cpu_follows_the_budget():
    model = tiny_model()
    big = memory.find_micro_batch(model, block_size=32, global_batch=64, budget_mb=1000)
    # Fixed part: ~3.1 MB of weights + grads + AdamW state; each sequence adds ~0.5 MB.
    small = memory.find_micro_batch(model, block_size=32, global_batch=64, budget_mb=5)
    assert big.micro_batch == 64 and big.grad_accum == 1
    assert small.micro_batch < big.micro_batch
    assert small.measured_mb <= 5 < small.tried[-1].peak_mb  # the next size was over budget
    for plan in (big, small):
        assert 64 % plan.micro_batch == 0
        assert plan.micro_batch * plan.grad_accum * plan.world_size == 64 == plan.global_batch
    peaks = [p.peak_mb for p in big.tried]
    assert peaks == sorted(peaks)  # measured memory grows with the micro-batch


def test_finder_shares_the_global_batch_between_workers():
    model = tiny_model()
    plan = memory.find_micro_batch(model, block_size=32, global_batch=48, world_size=2, budget_mb=5)
    assert 24 % plan.micro_batch == 0
    assert plan.micro_batch * plan.grad_accum * 2 == 48
    assert " x 2 workers = global 48 " in str(plan)


def test_finder_leaves_weights_rng_and_grads_as_they_were():
    model = tiny_model(dropout=0.1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    memory.find_micro_batch(model, block_size=32, global_batch=8, budget_mb=1000)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_finder_counts_checkpointing_savings():
    model = tiny_model()
    without = memory.find_micro_batch(model, block_size=32, global_batch=64, budget_mb=6)
    model.set_grad_checkpointing(True)
    with_ckpt = memory.find_micro_batch(model, block_size=32, global_batch=64, budget_mb=6)
    assert with_ckpt.micro_batch > without.micro_batch


def fake_gpu(capacity_mb, fixed_mb=100.0, per_sequence_mb=10.0, calls=None):
    """A stand-in for the CUDA probe (no GPU here): a micro-batch over `capacity_mb`
    raises torch.OutOfMemoryError, the way a real forward/backward does on a GPU."""
    def probe(n):
        if calls is not None:
            calls.append(n)
        peak = fixed_mb + per_sequence_mb * n
        if peak > capacity_mb:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return memory.Measurement(peak_mb=peak, fixed_mb=fixed_mb)
    return probe


def test_finder_search_backs_off_after_out_of_memory():
    calls = []
    plan = memory.find_micro_batch(tiny_model(), block_size=32, global_batch=256, budget_mb=10_000,
                                   probe=fake_gpu(capacity_mb=500, calls=calls))
    assert plan.micro_batch == 32 and plan.grad_accum == 8  # 100 + 10 x 32 fits 500; 64 does not
    assert calls == [1, 2, 4, 8, 16, 32, 64]
    assert plan.tried[-1] == memory.Probe(64, None, False, "out of memory")
    assert plan.measured_mb == 420


def test_finder_search_respects_the_budget_and_divisors():
    # Budget below the device's capacity: 100 + 10 x 12 = 220 fits 250, 24 would not.
    plan = memory.find_micro_batch(tiny_model(), block_size=32, global_batch=48, budget_mb=250,
                                   probe=fake_gpu(capacity_mb=10_000))
    assert plan.micro_batch == 12 and plan.grad_accum == 4
    # A probe returning None is also "out of memory".
    tried = memory.search([1, 2, 4], lambda n: None if n > 1 else memory.Measurement(1.0, 0.5), 100)
    assert [p.fits for p in tried] == [True, False]


def test_finder_skips_sizes_far_over_budget():
    # 49 is prime: after 7 the next divisor is 49, whose linear estimate (100 + 490) is far
    # over the 300 MB budget, so it is not run at all.
    calls = []
    plan = memory.find_micro_batch(tiny_model(), block_size=32, global_batch=49, budget_mb=300,
                                   probe=fake_gpu(capacity_mb=10_000, calls=calls))
    assert plan.micro_batch == 7 and plan.grad_accum == 7
    assert calls == [1, 7]
    assert plan.tried[-1].note == "estimated, not run" and plan.tried[-1].peak_mb == pytest.approx(590)


def test_finder_errors_clearly():
    model = tiny_model()
    with pytest.raises(UserError, match="even micro-batch 1 x 32 tokens runs out of memory.*memory_budget_mb"):
        memory.find_micro_batch(model, block_size=32, global_batch=8, budget_mb=1000, probe=fake_gpu(50))
    with pytest.raises(UserError, match=r"needs [\d.]+ MB, over the 1.0 MB budget per worker: set train.grad_check"):
        memory.find_micro_batch(model, block_size=32, global_batch=8, budget_mb=1)
    with pytest.raises(UserError, match="divisible"):
        memory.find_micro_batch(model, block_size=32, global_batch=9, world_size=2, budget_mb=1000)


def test_batch_plan_prints_one_line():
    plan = memory.BatchPlan(micro_batch=8, grad_accum=4, world_size=1, measured_mb=812.3, budget_mb=4096)
    assert str(plan) == ("micro-batch finder: micro_batch 8 x grad_accum 4 = global 32 "
                         "(peak 812 MB of 4096 MB budget)")


def test_default_cpu_budget_is_a_share_of_available_ram():
    avail = memory.available_ram_bytes()
    assert 0 < avail <= memory.total_ram_bytes()
    one = memory.default_budget_mb(torch.device("cpu"), 1)
    four = memory.default_budget_mb(torch.device("cpu"), 4)
    assert one == pytest.approx(4 * four, rel=0.1)  # RAM moves a little between the two reads
    assert one <= memory.CPU_FRACTION * memory.total_ram_bytes() / memory.MiB


def test_recipe_uses_the_finder_only_for_auto(capsys):
    model = tiny_model()
    cfg = PretrainConfig.model_validate({"model": model.config.__dict__, "train": {"batch_size": 4, "grad_accum": 2}})
    ac = loop.autocast_factory("fp32", "cpu")
    assert pretrain._micro_batch(cfg, model, torch.device("cpu"), ac, 0, 1, 1) == (4, 2)
    cfg = PretrainConfig.model_validate({"model": model.config.__dict__,
                                         "train": {"batch_size": "auto", "global_batch": 32, "memory_budget_mb": 5}})
    micro, accum = pretrain._micro_batch(cfg, model, torch.device("cpu"), ac, 0, 1, 1)
    assert micro * accum == 32 and micro < 32
    assert capsys.readouterr().out.startswith(f"micro-batch finder: micro_batch {micro} x grad_accum {accum} = ")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, fragment", [
    (["train.batch_size=auto"], "train: train.batch_size=auto needs train.global_batch"),
    (["train.batch_size=auto", "train.global_batch=30", "scale.num_workers=4"],
     "train.global_batch (30) must be divisible by scale.num_workers (4)"),
    (["train.batch_size=auto", "train.global_batch=32", "train.grad_accum=4"], "chooses train.grad_accum"),
    (["train.global_batch=32"], "train.global_batch is only used with train.batch_size=auto"),
    (["train.batch_size=0"], "train.batch_size: must be a positive integer or 'auto', got 0"),
    (["train.batch_size=big"], "train.batch_size: must be a positive integer or 'auto'"),
    (["train.batch_size=auto", "train.global_batch=32", "train.memory_budget_mb=0"], "train.memory_budget_mb"),
])
def test_auto_batch_config_errors(overrides, fragment):
    with pytest.raises(UserError) as e:
        load_config(None, overrides)
    assert fragment in str(e.value)


def test_auto_batch_config_validates():
    cfg = load_config(None, ["train.batch_size=auto", "train.global_batch=64", "scale.num_workers=2",
                             "train.memory_budget_mb=2048"])
    assert (cfg.train.batch_size, cfg.train.global_batch, cfg.train.memory_budget_mb) == ("auto", 64, 2048)
    assert TrainConfig(batch_size="8").batch_size == 8  # a number given as text still works
    assert TrainConfig().batch_size == 16 and TrainConfig().global_batch is None


# --------------------------------------------------------------------------- out of memory


def test_oom_message_names_the_settings():
    msg = memory.oom_message(device_type="cuda", micro_batch=16, block_size=1024,
                             peak_bytes=75.2 * memory.GiB, total_bytes=79.6 * memory.GiB)
    assert msg == ("out of GPU memory at micro-batch 16 x 1024 tokens (peak 75.2 GB of 79.6 GB): lower "
                   "train.batch_size (train.grad_accum keeps the global batch), or set train.batch_size=auto "
                   "with train.global_batch, or set train.grad_checkpointing=true")
    cpu = memory.oom_message(device_type="cpu", micro_batch=4, block_size=256, auto=True, grad_checkpointing=True)
    assert cpu.startswith("out of memory on CPU at micro-batch 4 x 256 tokens: set a lower train.memory_budget_mb")
    assert "grad_checkpointing" not in cpu and "\n" not in cpu
    one = memory.oom_message(device_type="cuda", micro_batch=1, block_size=8192)
    assert "lower train.batch_size" not in one and "smaller model or model.block_size" in one


class RaisingModel(torch.nn.Module):
    """A stand-in for a model that does not fit (no GPU here): its forward raises."""

    def __init__(self, error):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.error = error

    def forward(self, x, y):
        raise self.error


def guarded_step(model, device, **kw):
    x, y = batch(n=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memory.oom_as_user_error(device, micro_batch=16, block_size=1024, **kw):
        loop.train_step(model, opt, [(x, y)], lr=0.1, grad_clip=1.0)


def test_cuda_out_of_memory_in_the_step_becomes_a_user_error(monkeypatch):
    monkeypatch.setattr(memory, "memory_usage", lambda device: (75.2 * memory.GiB, 79.6 * memory.GiB))
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(UserError) as e:
        guarded_step(RaisingModel(error), torch.device("cuda"))
    assert str(e.value).startswith("out of GPU memory at micro-batch 16 x 1024 tokens (peak 75.2 GB of 79.6 GB): "
                                   "lower train.batch_size")
    assert e.value.__cause__ is error  # the allocator's own message stays in the worker's log


def test_cpu_allocation_failure_in_the_step_becomes_a_user_error():
    with pytest.raises(UserError, match=r"^out of memory on CPU at micro-batch 16 x 1024 tokens \(peak .* GB of "):
        guarded_step(RaisingModel(RuntimeError(CPU_OOM)), torch.device("cpu"), grad_checkpointing=True)
    with pytest.raises(UserError, match="^out of memory on CPU"):
        guarded_step(RaisingModel(MemoryError()), torch.device("cuda"))
    # Anything else is a bug and keeps its traceback.
    with pytest.raises(RuntimeError, match="shape mismatch"):
        guarded_step(RaisingModel(RuntimeError("shape mismatch")), torch.device("cpu"))


def test_real_cpu_allocation_failure_is_recognised():
    with pytest.raises(UserError, match="out of memory on CPU"), \
            memory.oom_as_user_error("cpu", micro_batch=1, block_size=8):
        torch.empty(2**60, dtype=torch.uint8)


# --------------------------------------------------------------------------- reaching the user


def ray_task_error(cause):
    return RayTaskError("train_fn", "Traceback (most recent call last): ...", cause,
                        proctitle="ray::RayTrainWorker", pid=1, ip="127.0.0.1")


def test_user_error_from_digs_through_ray_wrappers():
    oom = UserError("out of GPU memory at micro-batch 16 x 1024 tokens: lower train.batch_size")
    bug = RuntimeError("boom")
    assert pretrain.user_error_from(WorkerGroupError("rank 1 failed", {1: oom})) is oom
    # Lowest rank first; a rank without a UserError is skipped.
    other = UserError("other")
    assert pretrain.user_error_from(WorkerGroupError("x", {2: other, 0: bug, 1: oom})) is oom
    # Inside a RayTaskError, as .cause, or its "dual" subclass of UserError (whose text is a traceback).
    assert pretrain.user_error_from(WorkerGroupError("x", {0: ray_task_error(oom)})) is oom
    dual = ray_task_error(oom).as_instanceof_cause()
    assert isinstance(dual, UserError)
    assert pretrain.user_error_from(WorkerGroupError("x", {0: dual})) is oom
    # Ray Train's traceback wrapper, a controller failure, and plain `raise ... from`.
    assert pretrain.user_error_from(UserExceptionWithTraceback(oom, "tb")) is oom
    assert pretrain.user_error_from(ControllerError(ray_task_error(oom))) is oom
    chained = RuntimeError("wrapped")
    chained.__cause__ = oom
    assert pretrain.user_error_from(chained) is oom
    assert pretrain.user_error_from(oom) is oom
    # No UserError anywhere: None, and the CLI keeps its "training failed" exit.
    assert pretrain.user_error_from(WorkerGroupError("x", {0: bug, 1: ray_task_error(bug)})) is None
    assert pretrain.user_error_from(None) is None


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ws"


def test_pretrain_prints_a_worker_user_error_as_one_line(ws, capsys, monkeypatch):
    oom = UserError("out of GPU memory at micro-batch 16 x 1024 tokens: lower train.batch_size")
    failed = types.SimpleNamespace(error=WorkerGroupError("Traceback ...\n...", {0: ray_task_error(oom)}))
    monkeypatch.setattr(pretrain, "run", lambda *a, **kw: failed)
    assert main(["pretrain", "train.max_steps=1"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {oom}\n"
    failed.error = WorkerGroupError("rank 0 failed", {0: RuntimeError("a bug")})
    with pytest.raises(SystemExit, match="training failed"):
        main(["pretrain", "train.max_steps=1"])


def test_dry_run_with_auto_batch(ws, capsys):
    assert main(["pretrain", "--dry-run", "train.batch_size=auto", "train.global_batch=32",
                 "model.block_size=64"]) == 0
    out = capsys.readouterr().out
    assert f"batch auto (global 32); tokens/step {32 * 64:,};" in out
