"""Memory: measure what training keeps, find the micro-batch that fits, explain running out.

Training memory has a fixed part and a part that grows with the batch:

* fixed: the weights, their gradients, AdamW's two moment buffers (exp_avg and
  exp_avg_sq, each the size of the weights) and, under DDP, gradient buckets (one more
  copy of the gradients). For fp32 weights that is 16 bytes per parameter, 20 with DDP.
* activations: every tensor autograd keeps from the forward pass for the backward pass
  (inputs of matmuls, softmax outputs, norm statistics, ...). It grows linearly with
  the number of sequences in a micro-batch, and it is usually what fills a GPU.

`find_micro_batch` tries micro-batch sizes on the real model (a forward and backward
at the full context length) and returns the largest that fits a per-worker budget,
with the gradient accumulation that keeps the global batch: micro x accum x workers =
global. `oom_as_user_error` turns an out-of-memory crash into one line naming the
settings that help. Pure PyTorch; the Ray recipe (`training/pretrain/pretrain.py`) calls these.

MB and GB here are MiB and GiB (2**20 and 2**30 bytes), as nvidia-smi and torch report.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.errors import UserError

MiB, GiB = 2**20, 2**30
MAX_MICRO_BATCH = 1024  # no finder search goes above this many sequences per micro-batch
# Share of the memory the finder plans for. A GPU keeps 10% for fragmentation, NCCL
# buffers and evaluation; a CPU worker shares RAM with Python, the data, Ray and the
# other processes on the machine, and the count below ignores short-lived buffers.
GPU_FRACTION, CPU_FRACTION = 0.9, 0.5
# A size whose linear estimate is this far over budget is not run at all: on CPU a probe
# that large could take the machine's memory for real (the kernel's OOM killer cannot
# be caught the way CUDA's out-of-memory error can).
SKIP_OVER = 1.2
CPU_OOM_TEXT = "DefaultCPUAllocator: can't allocate memory"


# --------------------------------------------------------------------------- measuring


class _SavedBytes:
    """A saved_tensors_hooks pack hook that adds up what autograd keeps for backward.

    Every tensor an operation saves for its backward passes through `pack`. Several
    saved tensors can be views of one buffer, so storages are counted once each, and
    parameters are left out: they exist anyway and are counted with the fixed part.
    """

    def __init__(self, model: nn.Module):
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: set[int] = set()
        self.total = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.skip and ptr not in self.seen:
            self.seen.add(ptr)
            self.total += storage.nbytes()
        return t  # keep the tensor itself: we only count, autograd works as usual


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       autocast: Callable = contextlib.nullcontext) -> tuple[int, torch.Tensor]:
    """Run model(x, y) and return (bytes autograd saved for backward, the loss).

    This counts what autograd can see. Under gradient checkpointing that is only the
    part outside the checkpointed blocks: `torch.utils.checkpoint` installs its own
    saved-tensor hooks, and only the innermost pair of hooks ever runs.
    """
    counter = _SavedBytes(model)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t), autocast():
        _, loss = model(x, y)
    return counter.total, loss


def activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     autocast: Callable = contextlib.nullcontext) -> tuple[int, torch.Tensor]:
    """Activation memory one training forward keeps, with or without checkpointing.

    The forward runs without checkpointing while hooks on each block note how many
    saved bytes the block added and how large its input is. With checkpointing on,
    training keeps instead: everything outside the blocks, each block's input (held by
    the checkpoint to re-run the block) and, during backward, one block's activations
    at a time (the block being recomputed). Returns (bytes, loss); backward on the loss
    works as in training.
    """
    checkpointing = bool(getattr(model, "grad_checkpointing", False))
    blocks = list(getattr(model, "blocks", []))
    counter = _SavedBytes(model)
    starts: list[int] = []
    per_block: list[int] = []
    inputs: dict[int, int] = {}

    def before(_module, args):
        storage = args[0].untyped_storage()
        inputs[storage.data_ptr()] = storage.nbytes()
        starts.append(counter.total)

    def after(_module, _args, _out):
        per_block.append(counter.total - starts.pop())

    handles = [h for b in blocks for h in (b.register_forward_pre_hook(before), b.register_forward_hook(after))]
    if checkpointing:
        model.grad_checkpointing = False
    try:
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t), autocast():
            _, loss = model(x, y)
    finally:
        for h in handles:
            h.remove()
        if checkpointing:
            model.grad_checkpointing = True
    if not checkpointing or not per_block:
        return counter.total, loss
    return counter.total - sum(per_block) + sum(inputs.values()) + max(per_block), loss


def training_state_bytes(model: nn.Module, world_size: int = 1) -> int:
    """The fixed part: weights + gradients + AdamW state (+ DDP's gradient buckets)."""
    params = [p for p in model.parameters()]  # tied weights appear once
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    adam = 2 * grads  # exp_avg and exp_avg_sq, each shaped and typed like the weight
    ddp = grads if world_size > 1 else 0
    return weights + grads + adam + ddp


def available_ram_bytes() -> int:
    """RAM a new allocation can get: the OS's "available" figure (psutil when installed,
    else /proc/meminfo), lowered to a container's cgroup limit when there is one."""
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:
        available = _meminfo("MemAvailable")
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def total_ram_bytes() -> int:
    try:
        import psutil

        return psutil.virtual_memory().total
    except ImportError:
        return _meminfo("MemTotal")


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024  # reported in kB
    raise RuntimeError(f"no {key} in /proc/meminfo")


def _cgroup_room() -> int | None:
    """limit - usage of this process's memory cgroup (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # v1 writes a huge number for "no limit"
            return max(0, int(limit) - usage)
    return None


# --------------------------------------------------------------------------- the finder


@dataclass(frozen=True)
class Measurement:
    """What one probe measured: the peak and the part of it that does not grow with the batch."""

    peak_mb: float
    fixed_mb: float


@dataclass(frozen=True)
class Probe:
    """One micro-batch size the finder considered."""

    micro_batch: int
    peak_mb: float | None  # None: ran out of memory
    fits: bool
    note: str = ""  # "out of memory", or "estimated, not run"


@dataclass(frozen=True)
class BatchPlan:
    """The finder's answer: micro_batch x grad_accum x world_size = global_batch."""

    micro_batch: int
    grad_accum: int
    world_size: int
    measured_mb: float  # peak of the chosen micro-batch
    budget_mb: float  # per worker
    tried: tuple[Probe, ...] = ()

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def __str__(self) -> str:
        workers = f" x {self.world_size} workers" if self.world_size > 1 else ""
        return (f"micro-batch finder: micro_batch {self.micro_batch} x grad_accum {self.grad_accum}{workers} "
                f"= global {self.global_batch} (peak {_mb(self.measured_mb)} MB of {_mb(self.budget_mb)} MB budget)")


def _mb(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def divisors(n: int, cap: int = MAX_MICRO_BATCH) -> list[int]:
    """The divisors of n up to cap, ascending: the micro-batches that split n exactly."""
    return [d for d in range(1, min(n, cap) + 1) if n % d == 0]


def search(candidates: list[int], probe: Callable[[int], Measurement | None],
           budget_mb: float) -> list[Probe]:
    """Grow through `candidates` (ascending) until one does not fit; returns what was tried.

    Growing rather than starting from the largest keeps every probe close to the
    budget: a CPU probe far over it could exhaust the machine's RAM before anything
    could catch it. `probe(n)` runs micro-batch n and returns its Measurement, or None
    (or raises torch.OutOfMemoryError) when it ran out of memory. Activation memory is
    linear in the batch, so the last fitting measurement predicts the next size; one
    predicted more than SKIP_OVER x the budget is recorded as "estimated, not run".
    """
    tried: list[Probe] = []
    last: tuple[int, Measurement] | None = None
    for n in candidates:
        if last is not None:
            n0, m0 = last
            estimate = m0.fixed_mb + (m0.peak_mb - m0.fixed_mb) * n / n0
            if estimate > SKIP_OVER * budget_mb:
                tried.append(Probe(n, estimate, False, "estimated, not run"))
                break
        try:
            m = probe(n)
        except torch.OutOfMemoryError:
            m = None
        if m is None:
            tried.append(Probe(n, None, False, "out of memory"))
            break
        fits = m.peak_mb <= budget_mb
        tried.append(Probe(n, m.peak_mb, fits))
        if not fits:
            break
        last = (n, m)
    return tried


def find_micro_batch(
    model: nn.Module,
    *,
    block_size: int,
    global_batch: int,
    world_size: int = 1,
    workers_per_node: int = 1,
    device: torch.device | str = "cpu",
    autocast: Callable = contextlib.nullcontext,
    budget_mb: float | None = None,
    max_micro_batch: int = MAX_MICRO_BATCH,
    probe: Callable[[int], Measurement | None] | None = None,
) -> BatchPlan:
    """The largest micro-batch that fits, and the grad_accum that keeps `global_batch`.

    Every worker takes global_batch / world_size sequences per optimizer step, in
    grad_accum micro-batches of equal size, so the micro-batch must divide that share;
    the candidates are its divisors up to `max_micro_batch`.

    The budget (per worker, in MB) is `budget_mb` when given, else on a GPU 90% of what
    this process can still get (free + its own cached blocks), else half the available
    RAM split between the `workers_per_node` workers sharing this machine.

    `probe` measures one micro-batch size (see `search`). The default one runs a real
    forward and backward of `model` on random tokens at `block_size`: on CUDA the
    peak is torch.cuda.max_memory_allocated, with AdamW's state allocated beforehand
    (a probe that raises torch.OutOfMemoryError does not fit); on CPU, where no
    allocator keeps a peak, it is the fixed part plus the activations counted with
    saved-tensor hooks. The model's weights, RNG streams and gradients are left as
    they were.
    """
    device = torch.device(device)
    if global_batch % world_size:
        raise UserError(f"train.global_batch ({global_batch}) must be divisible by the "
                        f"{world_size} workers")
    share = global_batch // world_size
    if budget_mb is None:
        budget_mb = default_budget_mb(device, workers_per_node)
    if probe is None:
        probe = _cuda_probe if device.type == "cuda" else _cpu_probe
        probe = _bind(probe, model, block_size, device, autocast, world_size)
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            tried = search(divisors(share, max_micro_batch), probe, budget_mb)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    fitting = [p for p in tried if p.fits]
    if not fitting:
        first = tried[0]
        need = ("runs out of memory" if first.peak_mb is None
                else f"needs {_mb(first.peak_mb)} MB, over the {_mb(budget_mb)} MB budget per worker")
        fixes = "" if getattr(model, "grad_checkpointing", False) else "set train.grad_checkpointing=true, "
        raise UserError(f"micro-batch finder: even micro-batch 1 x {block_size} tokens {need}: {fixes}use a "
                        f"smaller model or model.block_size, or raise train.memory_budget_mb")
    best = fitting[-1]
    return BatchPlan(micro_batch=best.micro_batch, grad_accum=share // best.micro_batch, world_size=world_size,
                     measured_mb=best.peak_mb, budget_mb=budget_mb, tried=tuple(tried))


def default_budget_mb(device: torch.device, workers_per_node: int = 1) -> float:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(device)
        return GPU_FRACTION * (free + torch.cuda.memory_reserved(device)) / MiB
    return CPU_FRACTION * available_ram_bytes() / max(1, workers_per_node) / MiB


def _bind(probe, model, block_size, device, autocast, world_size) -> Callable[[int], Measurement | None]:
    def run(n: int) -> Measurement | None:
        return probe(model, n, block_size, device, autocast, world_size)

    return run


def _random_batch(model: nn.Module, n: int, block_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = model.config.vocab_size
    x = torch.randint(0, vocab, (n, block_size), device=device)
    return x, torch.randint(0, vocab, (n, block_size), device=device)


def _cpu_probe(model, n, block_size, device, autocast, world_size) -> Measurement:
    fixed = training_state_bytes(model, world_size)
    x, y = _random_batch(model, n, block_size, device)
    try:
        acts, loss = activation_bytes(model, x, y, autocast)
        loss.backward()  # a real backward (and recomputation, when checkpointing) at this size
    finally:
        model.zero_grad(set_to_none=True)
    return Measurement(peak_mb=(fixed + acts) / MiB, fixed_mb=fixed / MiB)


def _cuda_probe(model, n, block_size, device, autocast, world_size) -> Measurement | None:
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    optimizer_state = training_state_bytes(model, world_size) - grads * 2  # all but weights and grads
    x = y = loss = reserve = None
    out_of_memory = False
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        # Stand-in for AdamW's state (and DDP buckets): allocated before the forward,
        # as it will be from the first optimizer step on.
        reserve = torch.empty(optimizer_state, dtype=torch.uint8, device=device)
        fixed = torch.cuda.memory_allocated(device) + grads
        x, y = _random_batch(model, n, block_size, device)
        with autocast():
            _, loss = model(x, y)
        loss.backward()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    except torch.OutOfMemoryError:
        out_of_memory = True
    finally:
        x = y = loss = reserve = None  # noqa: F841  (free before emptying the cache)
        model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()  # outside the except block, once the error's frames are gone
    if out_of_memory:
        return None
    return Measurement(peak_mb=peak / MiB, fixed_mb=fixed / MiB)


# --------------------------------------------------------------------------- out of memory


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or a failed CPU allocation (torch's or Python's)."""
    return (isinstance(e, (torch.OutOfMemoryError, MemoryError))
            or (isinstance(e, RuntimeError) and CPU_OOM_TEXT in str(e)))


def oom_message(*, device_type: str, micro_batch: int, block_size: int, peak_bytes: float | None = None,
                total_bytes: float | None = None, auto: bool = False, grad_checkpointing: bool = False) -> str:
    """One line saying where memory ran out and which settings to change, e.g.

        out of GPU memory at micro-batch 16 x 1024 tokens (peak 75.2 GB of 79.6 GB): lower
        train.batch_size (train.grad_accum keeps the global batch), or set train.batch_size=auto
        with train.global_batch, or set train.grad_checkpointing=true

    Only settings that are not in use yet are suggested.
    """
    where = "out of GPU memory" if device_type == "cuda" else "out of memory on CPU"
    usage = ""
    if peak_bytes is not None and total_bytes is not None:
        usage = f" (peak {peak_bytes / GiB:.1f} GB of {total_bytes / GiB:.1f} GB)"
    if auto:
        fixes = ["set a lower train.memory_budget_mb (the micro-batch finder planned for more than there was)"]
    elif micro_batch > 1:
        fixes = ["lower train.batch_size (train.grad_accum keeps the global batch)",
                 "set train.batch_size=auto with train.global_batch"]
    else:
        fixes = ["use a smaller model or model.block_size"]
    if not grad_checkpointing:
        fixes.append("set train.grad_checkpointing=true")
    return f"{where} at micro-batch {micro_batch} x {block_size} tokens{usage}: " + ", or ".join(fixes)


def memory_usage(device: torch.device) -> tuple[float | None, float | None]:
    """(peak bytes, total bytes): torch's peak on the GPU and the GPU's size, or this
    process's peak RSS and the machine's RAM. (None, None) where they cannot be read."""
    try:
        if device.type == "cuda":
            return float(torch.cuda.max_memory_allocated(device)), float(torch.cuda.mem_get_info(device)[1])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        return float(peak), float(total_ram_bytes())
    except (AssertionError, RuntimeError, OSError):  # e.g. a CPU build asked about CUDA: no figures
        return None, None


@contextlib.contextmanager
def oom_as_user_error(device: torch.device | str, *, micro_batch: int, block_size: int, auto: bool = False,
                      grad_checkpointing: bool = False) -> Iterator[None]:
    """Run the body; an out-of-memory error becomes a UserError with `oom_message`.

    A UserError reaches the user as one line (exit code 2) instead of a page of
    allocator traceback, and it names what to change. The original error stays
    chained (`__cause__`) for the worker's log.
    """
    device = torch.device(device)
    try:
        yield
    except BaseException as e:
        if not is_out_of_memory(e):
            raise
        on_gpu = isinstance(e, torch.OutOfMemoryError) and device.type == "cuda"
        kind = "cuda" if on_gpu else "cpu"
        peak, total = memory_usage(device if on_gpu else torch.device("cpu"))
        raise UserError(oom_message(device_type=kind, micro_batch=micro_batch, block_size=block_size,
                                    peak_bytes=peak, total_bytes=total, auto=auto,
                                    grad_checkpointing=grad_checkpointing)) from e
