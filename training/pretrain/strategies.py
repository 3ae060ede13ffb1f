"""GPU strategies: how N workers share one model, its gradients and its optimizer (`scale.strategy`).

Memory per worker for a model of P parameters trained with AdamW in mixed precision is
roughly 16 P bytes before activations: fp32 weights (4), gradients (4), and Adam's two
moments (8). The strategies differ in which of those each worker keeps whole:

| strategy          | each worker keeps                     | communication per step            |
| ----------------- | ------------------------------------- | --------------------------------- |
| `ddp`             | everything (16 P)                     | all-reduce the gradients          |
| `deepspeed_zero2` | weights; 1/N of gradients and moments | reduce-scatter grads, gather weights |
| `fsdp`, `deepspeed_zero3` | 1/N of everything (16 P / N)  | + all-gather each block's weights in forward and backward |

DDP is the fastest while the model fits; ZeRO-2 buys room for the optimizer at little
cost; FSDP (PyTorch's own, FSDP2 `fully_shard`) and ZeRO-3 also shard the weights, for
models that do not fit one GPU's memory at all (here the model is still built whole on
each worker before sharding, so it must fit once).

Every strategy gives the loop the same few things (`Strategy`): a `train_step` with the
semantics of `loop.train_step` (gradient accumulation, clipping, the learning rate set
per step), the `model` to evaluate and sample with, and `state_dicts()`: the full model
state dict (names as in `Transformer.state_dict()`) and the optimizer's in torch's own
layout (parameters numbered in `loop.build_optimizer`'s order). So checkpoints look the
same whatever the strategy: export, sampling and serving read any run, and a run can
resume under another strategy.

Ray is not imported here: the recipe (`training/pretrain/pretrain.py`) passes Ray's DDP wrapper in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from training.config import PretrainConfig
from training.errors import UserError
from training.pretrain import loop


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter in the optimizer's order: what a torch optimizer state
    dict's parameter numbers mean. (A tied weight counts once, under its first name.)"""
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _numbered(state: dict, names: list[str]) -> dict:
    """An optimizer state dict keyed by parameter names -> torch's layout (numbers)."""
    index = {name: i for i, name in enumerate(names)}
    return {"state": {index[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def _named(state: dict, names: list[str]) -> dict:
    """torch's layout (numbers) -> keyed by parameter names, as torch.distributed.checkpoint wants."""
    return {"state": {names[i]: v for i, v in state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}


# --------------------------------------------------------------------------- ddp


class Strategy:
    """DDP, and the interface every strategy offers the loop.

    `module` is what training runs forward on (the DDP wrapper); `model` has the plain
    parameter names and serves evaluation and sampling.
    """

    name = "ddp"
    # True when every forward is a collective (the weights are sharded): evaluation and
    # sampling must then run on every rank, not on rank 0 alone.
    gathers_params = False

    def __init__(self, module: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.module, self.model, self.optimizer = module, model, optimizer

    def train_step(self, micro_batches, *, lr: float, grad_clip: float, autocast=contextlib.nullcontext,
                   scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
        """One optimizer step over the micro-batches: {"loss", "grad_norm"} (see `loop.train_step`)."""
        return loop.train_step(self.module, self.optimizer, micro_batches, lr=lr, grad_clip=grad_clip,
                               autocast=autocast, scaler=scaler)

    def state_dicts(self) -> tuple[dict, dict]:
        """(model, optimizer) full state dicts for a checkpoint. Every rank must call it
        (sharded strategies gather); only rank 0's are complete, the others may be empty."""
        return self.model.state_dict(), self.optimizer.state_dict()

    def full_model(self) -> nn.Module | None:
        """An unsharded model with the trained weights (e.g. for an export) on rank 0.
        Every rank must call it; other ranks may get None."""
        return self.model

    def generation(self) -> contextlib.AbstractContextManager:
        """The context to sample in (see FSDP)."""
        return contextlib.nullcontext()


# --------------------------------------------------------------------------- fsdp


class FSDP(Strategy):
    """PyTorch FSDP2: `fully_shard` on each transformer block, then on the root.

    Each block's weights are all-gathered just before its forward (and again before its
    backward) and freed after, so only one block is whole at a time; gradients are
    reduce-scattered so each rank keeps the 1/N slice its optimizer updates. The
    parameters become DTensors; the optimizer is built on those (sharded) parameters.

    Gradient accumulation reduce-scatters after every micro-batch (FSDP2 modules have no
    `no_sync`): keeping gradients sharded is the point of FSDP, and the sum is the same.
    """

    name = "fsdp"
    gathers_params = True

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: PretrainConfig,
                 device: torch.device, precision: str):
        if precision == "fp16":
            raise UserError("scale.strategy=fsdp runs in bf16 or fp32 and this GPU has no bf16: "
                            "set train.precision=fp32, or use ddp or deepspeed_zero2/3")
        names = _param_names(model, optimizer)
        restored = optimizer.state_dict() if optimizer.state else None  # a resumed run's moments
        # bf16: weights are all-gathered and used in bf16 (half the traffic), gradients
        # reduced in fp32; the sharded master weights and the optimizer stay fp32.
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if precision == "bf16" else MixedPrecisionPolicy())
        # One shard per worker, on this worker's device type (explicit: a CPU run on a GPU box stays on CPU).
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)  # the rest: embeddings, final norm, lm_head
        sharded_optimizer = loop.build_optimizer(model, cfg.train, device.type)
        super().__init__(model, model, sharded_optimizer)
        self._names = names
        self._autocast = loop.autocast_factory(precision, device.type)
        if restored:
            set_optimizer_state_dict(model, sharded_optimizer, _named(restored, names),
                                     options=StateDictOptions(full_state_dict=True))

    def state_dicts(self) -> tuple[dict, dict]:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on rank 0's CPU
        model_state = get_model_state_dict(self.model, options=options)
        if not self.optimizer.state:  # before the first step: get_optimizer_state_dict would take a
            return model_state, self.optimizer.state_dict()  # zero-lr step to create state (Adam's count +1)
        optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        return model_state, (_numbered(optim_state, self._names) if optim_state else {})

    def full_model(self) -> nn.Module | None:
        state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return _plain_copy(self.model, state) if _rank() == 0 else None

    def generation(self) -> contextlib.AbstractContextManager:
        # With bf16 the gathered weights are bf16 but generate() sizes its KV cache from
        # the (fp32) sharded parameters; autocast makes attention take both.
        return self._autocast()


def _plain_copy(model: nn.Module, state: dict) -> nn.Module:
    """A plain CPU Transformer of the same shape holding `state`."""
    from training.model.transformer import Transformer

    plain = Transformer(model.config)
    plain.load_state_dict(state)
    return plain


# --------------------------------------------------------------------------- deepspeed


def deepspeed_config(cfg: PretrainConfig, precision: str, *, batch_size: int, grad_accum: int) -> dict:
    """The DeepSpeed config dict for this run (https://www.deepspeed.ai/docs/config-json/).

    The optimizer is ours (`loop.build_optimizer`, passed to DeepSpeed as a client
    optimizer) and so is the learning-rate schedule (set every step), so neither appears.
    """
    stage = 3 if cfg.scale.strategy == "deepspeed_zero3" else 2
    zero: dict = {
        "stage": stage,
        "overlap_comm": True,  # reduce gradients while backward still computes earlier layers
        "contiguous_gradients": True,  # copy gradients into one buffer as they arrive: no fragmentation
        "reduce_bucket_size": 5e8,
    }
    if stage == 2:
        zero["allgather_bucket_size"] = 5e8
    else:
        # Prefetch the next blocks' weights; keep small weights (norms, biases) gathered.
        zero.update({"stage3_prefetch_bucket_size": 5e8, "stage3_param_persistence_threshold": 1e5})
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": cfg.train.grad_clip,  # 0 disables it, as in train.grad_clip
        "bf16": {"enabled": precision == "bf16"},
        # loss_scale 0: dynamic loss scaling (DeepSpeed's own GradScaler).
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "steps_per_print": 10**9,  # our loop prints progress
        "wall_clock_breakdown": False,
    }


class DeepSpeed(Strategy):
    """DeepSpeed ZeRO stage 2 or 3, with our AdamW as a client optimizer.

    The engine owns the step: `engine.backward` divides the loss by grad_accum and
    reduces gradients, `engine.step()` steps only at the accumulation boundary, after
    clipping to `gradient_clipping`. With bf16/fp16 the module itself is cast to 16 bits
    and the optimizer keeps fp32 master weights (sharded), so torch autocast is not used.
    """

    gathers_params = False  # ZeRO-2 keeps whole 16-bit weights on every rank; ZeRO-3 sets True

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: PretrainConfig,
                 device: torch.device, precision: str, *, batch_size: int, grad_accum: int):
        import deepspeed

        self.name = cfg.scale.strategy
        self.stage = 3 if self.name == "deepspeed_zero3" else 2
        self.gathers_params = self.stage == 3
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        self._state_keys = list(model.state_dict(keep_vars=True))  # a checkpoint's keys, tied ones included
        restored = optimizer.state_dict() if optimizer.state else None
        # DeepSpeed casts the module to 16 bits before it copies the fp32 master weights,
        # which would round them; keep the fp32 values to put back (a CPU copy, briefly).
        fp32 = [p.detach().to("cpu", torch.float32, copy=True) for p in self._params]
        fresh = loop.build_optimizer(model, cfg.train, device.type)  # bare: DeepSpeed rebuilds its state
        self._group_options = [{k: v for k, v in g.items() if k != "params"} for g in fresh.param_groups]
        self._group_sizes = [len(g["params"]) for g in fresh.param_groups]
        # device_rank: the GPU Ray assigned this worker (DeepSpeed would otherwise pick LOCAL_RANK).
        args = _Args(device_rank=device.index) if device.type == "cuda" else None
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=fresh, args=args,
            config=deepspeed_config(cfg, precision, batch_size=batch_size, grad_accum=grad_accum))
        super().__init__(engine, engine.module, ds_optimizer)
        self.engine = engine
        self._device = device
        for p, value in zip(self._params, fp32):
            _ds_utils().safe_set_full_fp32_param(p, value.to(device))
        if restored:
            self._load_optimizer_state(restored)

    def train_step(self, micro_batches, *, lr: float, grad_clip: float, autocast=contextlib.nullcontext,
                   scaler=None) -> dict[str, float]:
        """As `loop.train_step`. `grad_clip` and the loss scaling are in the engine's config,
        and the precision is the engine's, so `autocast` and `scaler` are not used."""
        micro_batches = list(micro_batches)
        n = len(micro_batches)
        if n != self.engine.gradient_accumulation_steps():
            raise ValueError(f"{n} micro-batches, but DeepSpeed was set up for "
                             f"{self.engine.gradient_accumulation_steps()}")
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for x, y in micro_batches:
            _, loss = self.engine(x, y)
            self.engine.backward(loss)  # scales by 1/grad_accum itself
            self.engine.step()  # a no-op until the last micro-batch: the accumulation boundary
            total += loss.item() / n
        norm = self.engine.get_global_grad_norm()  # before clipping, like clip_grad_norm_'s
        return {"loss": total, "grad_norm": float(norm) if norm is not None else float("nan")}

    def state_dicts(self) -> tuple[dict, dict]:
        return self._full_model_state(), self._full_optimizer_state()

    def full_model(self) -> nn.Module | None:
        state = self._full_model_state()
        return _plain_copy(self.model, state) if _rank() == 0 else None

    # Each `safe_get_full_*` is a collective (an all-reduce of the shards), so every rank
    # walks the parameters in the same order; rank 0 keeps the results on its CPU.

    def _full_model_state(self) -> dict:
        ds, rank0 = _ds_utils(), _rank() == 0
        live = self.model.state_dict(keep_vars=True)
        out, seen = {}, {}
        for key in self._state_keys:
            value = live[key]
            if isinstance(value, nn.Parameter):
                if id(value) not in seen:  # a tied weight is gathered once
                    seen[id(value)] = ds.safe_get_full_fp32_param(value).detach().cpu()
                full = seen[id(value)]
            else:  # a buffer (the module's own copy: DeepSpeed cast float ones to 16 bits)
                full = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype)
            if rank0:
                out[key] = full
        return out

    def _full_optimizer_state(self) -> dict:
        ds, rank0 = _ds_utils(), _rank() == 0
        inner = self.engine.optimizer.optimizer  # our AdamW, now stepping DeepSpeed's flat fp32 shards
        step = next((s["step"] for s in inner.state.values() if "step" in s), None)
        state = {}
        if step is not None:
            self._link_optimizer_state()
            for i, p in enumerate(self._params):
                moments = {k: ds.safe_get_full_optimizer_state(p, k).detach().cpu() for k in ("exp_avg", "exp_avg_sq")}
                if rank0:
                    state[i] = {"step": step.detach().float().cpu().clone(), **moments}
        groups, start = [], 0
        for options, size in zip(self._group_options, self._group_sizes):
            groups.append({**options, "lr": inner.param_groups[0]["lr"], "params": list(range(start, start + size))})
            start += size
        return {"state": state, "param_groups": groups} if rank0 else {}

    def _load_optimizer_state(self, restored: dict) -> None:
        """Put a torch-layout AdamW state into DeepSpeed's sharded one.

        DeepSpeed creates Adam's moments lazily at its first step, so they are created
        here (zeros), linked to each parameter's slice, then overwritten slice by slice.
        This uses two DeepSpeed internals (the flat fp32 shard lists), checked on CPU
        by tests/unit/test_strategies.py.
        """
        ds, zero = _ds_utils(), self.engine.optimizer
        inner = zero.optimizer
        step = next(iter(restored["state"].values()))["step"]
        flats = zero.fp32_partitioned_groups_flat if self.stage == 3 else zero.single_partition_of_fp32_groups
        options = inner.param_groups[0]
        on_device = options.get("fused") or options.get("capturable")  # where torch's AdamW keeps `step`
        for flat in flats:
            inner.state[flat] = {"step": step.detach().float().to(flat.device if on_device else "cpu").clone(),
                                 "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
        self._link_optimizer_state()
        for i, p in enumerate(self._params):
            for key in ("exp_avg", "exp_avg_sq"):
                ds.safe_set_full_optimizer_state(p, restored["state"][i][key].to(self._device), key)

    def _link_optimizer_state(self) -> None:
        """ZeRO-1/2 point each parameter at its slice of Adam's moments lazily, after the
        first step; with bf16, DeepSpeed 0.19 links only the group it stepped first (the
        others stay unreadable). Linking again once every group has state fixes that.
        ZeRO-3 looks the slices up on every call and needs nothing."""
        if self.stage < 3:
            zero = self.engine.optimizer
            zero._hp_optimizer_states_linked = False
            zero._lazy_init_hp_params_optimizer_state()


class _Args:
    """The bit of DeepSpeed's argparse namespace it reads: which device this rank uses."""

    def __init__(self, device_rank: int):
        self.device_rank = device_rank


def _ds_utils():
    import deepspeed.utils

    return deepspeed.utils


# --------------------------------------------------------------------------- choosing


def wrap(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: PretrainConfig, device: torch.device, *,
         prepare_ddp: Callable[[nn.Module], nn.Module], batch_size: int | None = None,
         grad_accum: int | None = None) -> Strategy:
    """Set up `cfg.scale.strategy` for a model and optimizer built (and maybe restored
    from a checkpoint) as for one worker; call it on every rank, after the process group
    exists. Returns the Strategy; use its `optimizer` from then on (FSDP and DeepSpeed
    build their own over the sharded parameters, carrying any restored state over).

    prepare_ddp: the DDP wrapper (the recipe passes Ray's `prepare_model`).
    batch_size, grad_accum: the micro-batch and accumulation the loop will use
    (default: cfg.train's); DeepSpeed's engine needs them up front.
    """
    strategy = cfg.scale.strategy
    if strategy == "ddp":
        return Strategy(prepare_ddp(model), model, optimizer)
    precision = loop.resolve_precision(cfg.train.precision, device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # Ray sets it too; collectives and sharding use the current device
    if strategy == "fsdp":
        return FSDP(model, optimizer, cfg, device, precision)
    return DeepSpeed(model, optimizer, cfg, device, precision,
                     batch_size=batch_size or cfg.train.batch_size, grad_accum=grad_accum or cfg.train.grad_accum)
