"""The model an SFT run trains: all of its weights, or LoRA adapters beside frozen ones.

LoRA (Hu et al., 2021) leaves each targeted weight W (out x in) frozen and learns an update
of rank r beside it, as two small matrices:

    y = W x + (alpha / r) * B (A x)        A: r x in (random),  B: out x r (zeros)

* r sets how much the update can express and what it costs: r * (in + out) parameters per
  layer instead of in * out. A rank above min(in, out) adds parameters and nothing else, so
  it is refused (`lora_config`).
* alpha / r scales the update, so that changing r does not change the effective learning
  rate much: the common recipe keeps alpha = 2r and tunes r alone.
* B starts at zero, so at step 0 the model is exactly the base model: training starts from
  what the base knows, not from noise (tests/unit/test_adapters.py checks it).
* DoRA (`use_dora`) also learns the length of each weight column, apart from its direction.

QLoRA (Dettmers et al., 2023) is LoRA on a base stored in 4 bits (NF4, bitsandbytes): the
frozen weights take a quarter of bf16's memory; the adapters and their gradients stay in
16/32 bits and every matmul dequantizes W on the fly. The 4-bit base is rounded, though, so
the adapter is *merged into the 16/32-bit base* it was made from, not into the 4-bit one:
merging into NF4 would round W + BA back onto the 4-bit grid and lose most of the small
update (peft #2321). The merged model then differs from what trained by the base's rounding
(a few % of each weight), which the adapter mostly learns to be robust to.

GPT-2 keeps OpenAI's `Conv1D` layers (weights stored in x out). peft adapts them with
`fan_in_fan_out=True`; transformers 5 quantizes them too (into `Linear4bit`, transposed),
so QLoRA on GPT-2 does quantize its attention and MLP weights, and `merge` sets
`fan_in_fan_out` again for the 32-bit base the adapter goes into.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from training.atomic import atomic_dir
from training.errors import UserError

METHODS = ("full", "lora", "qlora")
# What a Hub name looks like ("gpt2", "HuggingFaceTB/SmolLM2-135M"); any other missing spec is a path.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def resolve_model(spec: str, ws, field: str = "base.model") -> str:
    """Where to load `spec` from: a workspace model id, a local folder, or a Hub name.

    Raises:
        UserError: "<field>: ..." for a path (or workspace model) with no model in it.
    """
    in_ws = ws.model(spec) if spec and "/" not in spec and spec not in (".", "..") else None
    for folder, what in ((in_ws, f"workspace model {spec!r}"), (Path(spec).expanduser(), str(spec))):
        if folder is not None and folder.is_dir():
            if not (folder / "config.json").is_file():
                raise UserError(f"{field}: no model at {what} ({folder} has no config.json)")
            return str(folder.resolve())
    if Path(spec).expanduser().exists() or not _HUB_NAME.fullmatch(spec):
        raise UserError(f"{field}: no model at {spec} (a model is a folder with a config.json)")
    return spec  # a Hub name: from_pretrained downloads it (online) or says why not


def base_config(spec: str, ws):
    """(where to load `base.model` from, its transformers config): the model checked before any
    training or measuring starts.

    Raises:
        UserError: no model there, or a Hub name that cannot be loaded (offline, misspelt).
    """
    from transformers import AutoConfig

    path = resolve_model(spec, ws)
    try:
        return path, AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"base.model: cannot load {spec!r}: {str(e).splitlines()[0]}") from e


def check_qlora(device: str | None = None) -> None:
    """Refuse method=qlora, in one line, where bitsandbytes cannot run a 4-bit layer."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        import bitsandbytes as bnb
    except Exception as e:  # any import failure (missing, wrong CUDA build) means no QLoRA
        raise UserError(f"method=qlora needs bitsandbytes, which cannot be imported here "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); use method=lora") from e
    try:
        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4").to(device)
        with torch.no_grad():
            layer(torch.randn(2, 64, device=device))
        if layer.weight.dtype != torch.uint8:
            raise RuntimeError("the weight was not quantized")
    except Exception as e:  # bitsandbytes fails in backend-specific ways; each means no QLoRA
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"method=qlora: bitsandbytes {bnb.__version__} cannot run a 4-bit matmul on {device} "
                        f"here ({why}); use method=lora") from e


def load_model(path: str, method: str, *, dtype: torch.dtype = torch.float32, device_map=None,
               grad_checkpointing: bool = False):
    """The base model, ready for `apply`: as stored (full, lora) or in 4-bit NF4 (qlora).

    For qlora, `dtype` is the compute dtype of the 4-bit matmuls, and peft's
    `prepare_model_for_kbit_training` freezes the base, upcasts the unquantized weights
    (norms, embeddings) to fp32 and turns gradient checkpointing on when asked. For full and
    lora, `grad_checkpointing` is left to the Trainer (`args.gradient_checkpointing`).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    kwargs = {"dtype": dtype, "device_map": device_map}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise UserError(f"base.model: cannot load {path!r}: {str(e).splitlines()[0]}") from e
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=grad_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
        _keep_reference_4bit_kernel(model)
    return model


def _keep_reference_4bit_kernel(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight the first time it runs in
    eval mode without gradients (an evaluation, a sample) for a faster kernel, and the repacking
    fails on double-quantized layers whose absmax does not fill whole blocks ("shape '[64, 1]' is
    invalid for input of size 96"). Training never takes that path; we keep evaluation on the same,
    reference kernel, which every CPU has."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def meta_model(model_config):
    """The model `model_config` describes, on the meta device: shapes and names, no memory.
    Enough for `lora_config` to check targets and rank before any worker loads weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config)


def linear_layers(model) -> dict[str, tuple[int, int, bool]]:
    """Every layer LoRA can adapt, but the output head: name -> (in, out, is_conv1d).
    nn.Linear includes bitsandbytes' Linear4bit; Conv1D is GPT-2's transposed linear."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layers = {}
    for name, m in model.named_modules():
        if m is head:
            continue
        if isinstance(m, Conv1D):
            layers[name] = (m.weight.shape[0], m.nf, True)
        elif isinstance(m, nn.Linear) and "lora_" not in name:
            layers[name] = (m.in_features, m.out_features, False)
    return layers


def _targeted(layers: dict, targets) -> dict:
    """The layers peft will adapt: all of them, or those named (a name or a dotted suffix)."""
    if targets == "all-linear":
        return layers
    if isinstance(targets, str):  # a regex, as peft reads a string (only from a saved adapter_config)
        return {n: v for n, v in layers.items() if re.fullmatch(targets, n)}
    return {n: v for n, v in layers.items() if any(n == t or n.endswith("." + t) for t in targets)}


def token_ids(tokenizer, tokens: list[str]) -> list[int] | None:
    """The ids of `lora.trainable_tokens` in `tokenizer` (None for none).

    Raises:
        UserError: a token the tokenizer does not have as one token.
    """
    if not tokens:
        return None
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise UserError(f"lora.trainable_tokens: the tokenizer has no token {missing[0]!r} (give tokens as the "
                        f"tokenizer spells them, e.g. <|im_end|>)")
    return [vocab[t] for t in tokens]


def lora_config(model, cfg_lora, token_ids: list[int] | None = None):
    """peft's LoraConfig for `cfg_lora` (training/posttrain/config.py) on `model`, checked;
    `token_ids` (from `token_ids()`) are embedding rows that train too.

    Raises:
        UserError: target_modules the model lacks (naming the ones it has), or an r larger
            than the smallest targeted layer allows.
    """
    from peft import LoraConfig, TaskType

    layers = linear_layers(model)
    targets = cfg_lora.target_modules
    if targets != "all-linear":
        missing = [t for t in targets if not _targeted(layers, [t])]
        if missing:
            have = sorted({n.rsplit(".", 1)[-1] for n in layers})
            raise UserError(f"lora.target_modules: the model has no {', '.join(missing)}; "
                            f"its linear layers are: {', '.join(have)}")
    chosen = _targeted(layers, targets)
    if not chosen:
        raise UserError("lora.target_modules: the model has no linear layers to adapt")
    name, (fan_in, fan_out, _) = min(chosen.items(), key=lambda kv: min(kv[1][:2]))
    if cfg_lora.r > min(fan_in, fan_out):
        raise UserError(f"lora.r={cfg_lora.r} is larger than layer {name} ({fan_in} x {fan_out}): "
                        f"at most {min(fan_in, fan_out)}")
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=cfg_lora.r, lora_alpha=cfg_lora.alpha, lora_dropout=cfg_lora.dropout,
        target_modules=targets if targets == "all-linear" else list(targets), use_dora=cfg_lora.use_dora,
        fan_in_fan_out=any(conv for _, _, conv in chosen.values()), trainable_token_indices=token_ids)


def apply(model, method: str, cfg_lora, token_ids: list[int] | None = None):
    """The model to train: `model` itself (full), or a peft model with adapters (lora, qlora),
    and with `token_ids`' embedding rows trainable."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "full":
        return model
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(model, cfg_lora, token_ids))
    head = peft_model.get_output_embeddings()
    if token_ids and type(head).__name__ == "TrainableTokensWrapper" and "bias" not in vars(head):
        # A tied output layer wrapped for the trainable tokens: TRL's SFTTrainer computes the loss from the
        # head's `weight` and `bias` directly (its fused LM head). peft's wrapper serves `weight` (the base
        # rows with the trained ones in place) but not `bias`: give it the wrapped layer's own.
        object.__setattr__(head, "bias", head.original_module.bias)
    return peft_model


def trainable_params(model) -> tuple[int, int]:
    """(parameters that train, all parameters). A 4-bit weight counts as the weights it packs
    (two per byte), so `total` is the model's real size, as peft counts it."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2 * getattr(getattr(p, "quant_storage", None), "itemsize", 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def merge(base_path: str, adapter_dir, out_dir, *, tokenizer=None, extra_files: dict[str, str] | None = None,
          eos_token_ids: list[int] | None = None, dtype="auto") -> Path:
    """Fold the adapter in `adapter_dir` into the base and write a plain HF model to `out_dir`.

    The base loads as stored (16 or 32 bits: `dtype="auto"`), never in 4 bits, even for a
    QLoRA adapter (module docstring). W + (alpha/r) B A is then an ordinary weight: the
    folder loads with `AutoModelForCausalLM` and serves with vLLM, no peft needed. Written
    atomically (training/atomic.py), with `tokenizer` and `extra_files` (name -> text) beside
    it; `eos_token_ids` (the reply-ending tokens the run trained with) go into config.json
    and generation_config.json, so generation stops where the tuned model learned to stop.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir).absolute()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"no LoRA adapter in {adapter_dir} (missing adapter_config.json)")
    for name in extra_files or {}:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"extra_files: {name!r} must be a plain file name")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    # A QLoRA adapter on GPT-2 was made on Linear4bit layers (fan_in_fan_out=False); the
    # 32-bit base has Conv1D ones, whose delta must be transposed (peft would flip it too, with a warning).
    config.fan_in_fan_out = any(conv for _, _, conv in _targeted(linear_layers(base), config.target_modules).values())
    model = PeftModel.from_pretrained(base, str(adapter_dir), config=config).merge_and_unload()
    model.eval()
    gen = model.generation_config
    if eos_token_ids:
        eos = eos_token_ids[0] if len(eos_token_ids) == 1 else list(eos_token_ids)
        model.config.eos_token_id = gen.eos_token_id = eos
    if tokenizer is not None and gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir
