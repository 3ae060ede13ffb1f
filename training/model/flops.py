"""What a device can do: the GPU datasheet table and the peak FLOP/s that MFU divides by.

MFU (model FLOPs utilisation) = the model's FLOP/s / the device's peak FLOP/s. The model's
side is `transformer.flops_per_token`; this module is the device's side, shared by the
configurator (what would training cost on an H100?), the pretraining recipe (the MFU it
logs) and `playground bench train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s.
GPUS: dict[str, dict[str, Any]] = {
    "a100-40gb": {"name": "NVIDIA A100 40GB", "bf16_tflops": 312.0, "memory_gib": 40},
    "a100-80gb": {"name": "NVIDIA A100 80GB", "bf16_tflops": 312.0, "memory_gib": 80},
    "h100-sxm": {"name": "NVIDIA H100 SXM", "bf16_tflops": 989.0, "memory_gib": 80},
    "h100-pcie": {"name": "NVIDIA H100 PCIe", "bf16_tflops": 756.0, "memory_gib": 80},
    "h200": {"name": "NVIDIA H200 (H100 compute, more memory)", "bf16_tflops": 989.0, "memory_gib": 141},
    "l4": {"name": "NVIDIA L4", "bf16_tflops": 121.0, "memory_gib": 24},
    # AWS publishes no datasheet for its A10 variant; 70 is the usually quoted figure
    # (the A10 itself: 125).
    "a10g": {"name": "NVIDIA A10G (AWS)", "bf16_tflops": 70.0, "memory_gib": 24},
    "this-cpu": {"name": "this CPU (measured fp32 matmul peak, all torch threads)",
                 "bf16_tflops": None, "memory_gib": None},
}


def matmul_peak(dtype: torch.dtype, threads: int, n: int = 2048, iters: int = 10) -> float:
    """Best FLOP/s of an n x n matmul: the ceiling MFU is measured against."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)  # its own: a training run's RNG stream stays untouched (bit-exact resume)
    a, b = torch.randn(n, n, dtype=dtype, generator=g), torch.randn(n, n, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(iters):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def device_peak_flops(device, precision: str, cpu_n: int = 2048, cpu_iters: int = 10) -> float | None:
    """One device's peak FLOP/s: a known GPU's bf16 datasheet figure (what MFU is quoted
    against, as in nanoGPT and llm.c), or on CPU a matmul measured in `precision` on this
    process's threads. None for a GPU not in `GPUS`: no MFU rather than a wrong one."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, gpu in GPUS.items():
            if key != "this-cpu" and key.split("-")[0] in name and ("pcie" in name) == ("pcie" in key):
                return gpu["bf16_tflops"] * 1e12
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return matmul_peak(dtype, torch.get_num_threads(), n=cpu_n, iters=cpu_iters)


def mfu(achieved: float, peak: float, measure: Callable[[], float | None]) -> tuple[float, float]:
    """Model FLOPs utilisation, and the peak to divide by from now on.

    A measured peak is a best-of: a CPU worker measures it as it starts, often while Ray's
    other processes still hold the cores (68 GFLOP/s measured that way against 156-178 alone, so
    pretraining printed an MFU of 168%). When training itself beats the peak, the peak was
    measured low: measure again and keep the better of the two.

    Args:
        achieved: the FLOP/s training reached on this device.
        peak: the peak FLOP/s measured so far.
        measure: measures the peak again (`device_peak_flops` with its arguments).

    Returns:
        (achieved / peak, peak), with the peak re-measured if it was below `achieved`.
    """
    if achieved > peak:
        peak = max(peak, measure() or 0.0)
    return achieved / peak, peak
