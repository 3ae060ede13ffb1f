"""How much a quantized variant saves on disk, read from the safetensors headers only (nothing loaded).

    size_report(ws.model("demo-align"), ws.model("demo-align-int4"))
    -> {"bytes": 4258136, "fp32_bytes": 14871536, "fp32_ratio": 0.286, "bf16_bytes": 7436..., "bf16_ratio": 0.573,
        "linear_share": 0.85, ...}

The bf16 baseline is computed, not written: the fp32 export's file size less 2 bytes for every
floating-point value in it, i.e. the same file with every float tensor stored in bfloat16 (what
`playground export --dtype bf16` would write, up to the header). It is the fair baseline for int4,
which vLLM serves in bfloat16.
"""

from __future__ import annotations

from pathlib import Path

from training.errors import UserError

_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def _header(folder: Path) -> dict[str, tuple[str, int]]:
    """{tensor name: (safetensors dtype, number of values)} over the folder's safetensors files."""
    import json
    import struct

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"no safetensors weights in {folder}")
    out = {}
    for path in files:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                numel = 1
                for d in meta["shape"]:
                    numel *= d
                out[name] = (meta["dtype"], numel)
    return out


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def size_report(fp32_dir: Path, variant_dir: Path) -> dict:
    """Bytes on disk of `variant_dir` against the fp32 export it came from and a computed bf16 baseline.

    Returns:
        bytes, fp32_bytes, fp32_ratio (variant / fp32), bf16_bytes (computed, see the module docstring),
        bf16_ratio, parameters (of the fp32 export, a tied lm_head once), linear_parameters (the weights
        of the layers the variant quantized: those with a `weight_scale`), linear_share (their share of
        all parameters: the most any weight quantization can shrink), quantized_layers.
    """
    fp32_dir, variant_dir = Path(fp32_dir), Path(variant_dir)
    src, var = _header(fp32_dir), _header(variant_dir)
    fp32_bytes, var_bytes = _bytes(fp32_dir), _bytes(variant_dir)
    float_values = sum(n for dtype, n in src.values() if dtype == "F32")
    bf16_bytes = fp32_bytes - 2 * float_values
    layers = sorted(k[: -len(".weight_scale")] for k in var if k.endswith(".weight_scale"))
    params = sum(n for _, n in src.values())
    linear = sum(src[f"{layer}.weight"][1] for layer in layers if f"{layer}.weight" in src)
    return {"bytes": var_bytes, "fp32_bytes": fp32_bytes, "fp32_ratio": round(var_bytes / fp32_bytes, 4),
            "bf16_bytes": bf16_bytes, "bf16_ratio": round(var_bytes / bf16_bytes, 4),
            "bf16_baseline": "computed: the fp32 export with every float32 tensor at 2 bytes",
            "parameters": params, "linear_parameters": linear,
            "linear_share": round(linear / params, 4) if params else None, "quantized_layers": len(layers)}
