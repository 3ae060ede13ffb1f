"""Convert our `Transformer` to a Hugging Face checkpoint folder, and back.

The folder (config.json, model.safetensors, generation_config.json and the tokenizer
files) loads with `AutoModelForCausalLM.from_pretrained(path)` and serves with vLLM.

The conversion is a renaming of tensors, because `training/model/transformer.py` was written to
match the HF layouts:

* gpt2  -> `GPT2LMHeadModel`. Two quirks: HF GPT-2 keeps OpenAI's `Conv1D` layers,
  whose weights are stored transposed relative to `nn.Linear` ((in, out) instead of
  (out, in)), and it fuses the q, k, v projections into one `c_attn` matrix.
* llama -> `LlamaForCausalLM`. Same names up to a prefix, no transposes. Our RoPE uses
  the HF "rotate_half" convention, so q/k weights need no permutation.

Which of the two a model becomes depends on its *components* (`ModelConfig.layout`),
not on the `arch` name: architecture-lab variants that match neither class (sinusoidal
positions, post-norm, a GELU MLP with RoPE, ...) have no HF equivalent and are refused.

`load_export` is the inverse: an export folder (ours, or any local GPT-2 / Llama
checkpoint) back into our `Transformer`, e.g. for `training.model.inspection`.
"""

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from training.atomic import atomic_dir
from training.errors import UserError
from training.model.transformer import ModelConfig, Transformer

# The component choices each HF class implements. A model exports to the class whose
# requirements it meets; `hf_architecture` explains the mismatch otherwise.
_GPT2_NEEDS = {"pos_embedding": ("learned",), "norm": ("layernorm",), "norm_position": ("pre",),
               "mlp": ("gelu", "relu"), "bias": (True,)}
_LLAMA_NEEDS = {"pos_embedding": ("rope",), "norm": ("rmsnorm",), "norm_position": ("pre",),
                "mlp": ("swiglu",)}


def hf_architecture(cfg: ModelConfig) -> str:
    """Which Hugging Face class ("gpt2" or "llama") computes exactly what `cfg` does.

    GPT2LMHeadModel: learned positions, LayerNorm with bias, pre-norm, a GELU or ReLU MLP,
    biases everywhere and plain multi-head attention. LlamaForCausalLM: RoPE, RMSNorm,
    pre-norm, SwiGLU, any number of key/value heads, biases on or off.

    Raises:
        UserError: naming the fields that keep `cfg` from either class.
    """
    layout = cfg.layout

    def mismatches(needs: dict) -> list[str]:
        return [f"{name}={str(getattr(layout, name)).lower()} (needs "
                f"{' or '.join(str(v).lower() for v in allowed)})"
                for name, allowed in needs.items() if getattr(layout, name) not in allowed]

    gpt2 = mismatches(_GPT2_NEEDS)
    if cfg.kv_heads != cfg.n_head:
        gpt2.append(f"n_kv_head={cfg.kv_heads} (needs n_head={cfg.n_head}: GPT-2 has no "
                    f"grouped-query attention)")
    llama = mismatches(_LLAMA_NEEDS)
    if not gpt2:
        return "gpt2"
    if not llama:
        return "llama"
    # Report against the class the model is closest to (its own arch on a tie).
    closest, problems = (("GPT2LMHeadModel", gpt2) if (len(gpt2), cfg.arch != "gpt2") <=
                         (len(llama), cfg.arch != "llama") else ("LlamaForCausalLM", llama))
    raise UserError(f"this model has no Hugging Face equivalent, so it cannot be exported: "
                    f"the nearest, {closest}, differs in model.{'; model.'.join(problems)}")


def hf_config(cfg: ModelConfig, *, bos_token_id: int | None = None,
              eos_token_id: int | None = None, pad_token_id: int | None = None):
    """The `transformers` config equivalent to `cfg` (dropout off: this is for inference)."""
    from transformers import GPT2Config, LlamaConfig

    target = hf_architecture(cfg)

    common = dict(vocab_size=cfg.vocab_size, initializer_range=cfg.init_std,
                  tie_word_embeddings=cfg.tie_embeddings, use_cache=True,
                  bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                  pad_token_id=pad_token_id, dtype=torch.float32)
    if target == "gpt2":
        # HF's "gelu_new" is the tanh approximation our MLP uses.
        activation = "relu" if cfg.layout.mlp == "relu" else "gelu_new"
        return GPT2Config(
            n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
            n_head=cfg.n_head, n_inner=cfg.mlp_hidden, activation_function=activation,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            layer_norm_epsilon=cfg.norm_eps, scale_attn_weights=True,
            architectures=["GPT2LMHeadModel"], **common)
    return LlamaConfig(
        hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=cfg.layout.bias, attention_dropout=0.0, mlp_bias=cfg.layout.bias,
        architectures=["LlamaForCausalLM"], **common)


def _unwrap(model: nn.Module) -> Transformer:
    """Reach our Transformer through torch.compile (`_orig_mod`) / DDP (`module`) wrappers."""
    while not isinstance(model, Transformer):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"expected a training.model.transformer.Transformer, got {type(model).__name__}")
        model = inner
    return model


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under HF names (contiguous CPU clones; lm_head included even if tied,
    exactly like HF's own `state_dict()`)."""
    model = _unwrap(model)
    cfg = model.config
    ours = {name: t.detach() for name, t in model.state_dict().items()}
    ours["lm_head.weight"] = model.lm_head.weight.detach()  # present even when tied
    out: dict[str, torch.Tensor] = {}

    if hf_architecture(cfg) == "gpt2":
        out["transformer.wte.weight"] = ours["tok_emb.weight"]
        out["transformer.wpe.weight"] = ours["pos_emb.weight"]
        for i in range(cfg.n_layer):
            o, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours_norm, hf_norm in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[h + f"{hf_norm}.weight"] = ours[o + f"{ours_norm}.weight"]
                out[h + f"{hf_norm}.bias"] = ours[o + f"{ours_norm}.bias"]
            # Fused qkv: rows of the three nn.Linear weights stacked, then transposed for Conv1D.
            qkv = [o + f"attn.{p}_proj" for p in "qkv"]
            out[h + "attn.c_attn.weight"] = torch.cat([ours[n + ".weight"] for n in qkv], 0).t()
            out[h + "attn.c_attn.bias"] = torch.cat([ours[n + ".bias"] for n in qkv], 0)
            for ours_lin, hf_lin in (("attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                                     ("mlp.down_proj", "mlp.c_proj")):
                out[h + f"{hf_lin}.weight"] = ours[o + f"{ours_lin}.weight"].t()
                out[h + f"{hf_lin}.bias"] = ours[o + f"{ours_lin}.bias"]
        out["transformer.ln_f.weight"] = ours["norm_f.weight"]
        out["transformer.ln_f.bias"] = ours["norm_f.bias"]
    else:
        out["model.embed_tokens.weight"] = ours["tok_emb.weight"]
        for i in range(cfg.n_layer):
            o, h = f"blocks.{i}.", f"model.layers.{i}."
            # Biases only exist (on both sides) when cfg.layout.bias is true.
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                for kind in ("weight", "bias"):
                    if o + f"attn.{p}.{kind}" in ours:
                        out[h + f"self_attn.{p}.{kind}"] = ours[o + f"attn.{p}.{kind}"]
            for p in ("gate_proj", "up_proj", "down_proj"):
                for kind in ("weight", "bias"):
                    if o + f"mlp.{p}.{kind}" in ours:
                        out[h + f"mlp.{p}.{kind}"] = ours[o + f"mlp.{p}.{kind}"]
            out[h + "input_layernorm.weight"] = ours[o + "norm1.weight"]
            out[h + "post_attention_layernorm.weight"] = ours[o + "norm2.weight"]
        out["model.norm.weight"] = ours["norm_f.weight"]
    out["lm_head.weight"] = ours["lm_head.weight"]
    return {k: v.to("cpu").clone(memory_format=torch.contiguous_format) for k, v in out.items()}


def _tokenizer_special_ids(tokenizer_dir: Path, vocab_size: int) -> dict[str, int | None]:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as e:
        raise UserError(f"cannot load the tokenizer in {tokenizer_dir}: {e}") from e
    if len(tok) > vocab_size:
        raise UserError(f"tokenizer in {tokenizer_dir} has {len(tok)} tokens but the model's "
                        f"vocab_size is {vocab_size}")
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id}


def _write_checkpoint(model: Transformer, dest: Path, tokenizer_dir: Path | None,
                      dtype: torch.dtype, extra_files: dict) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig

    cfg = model.config
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer_dir is not None:
        ids = _tokenizer_special_ids(tokenizer_dir, cfg.vocab_size)
    config = hf_config(cfg, **ids)
    hf_model = AutoModelForCausalLM.from_config(config)
    # strict=True: every HF tensor must be provided and no name of ours may be left over.
    hf_model.load_state_dict(hf_state_dict(model), strict=True)
    hf_model.to(dtype).eval()
    hf_model.config.dtype = dtype
    hf_model.generation_config = GenerationConfig(**ids)

    hf_model.save_pretrained(dest)
    hf_model.generation_config.save_pretrained(dest)
    if tokenizer_dir is not None:
        for src in sorted(tokenizer_dir.iterdir()):
            target = dest / src.name
            if target.exists():  # never let a stray file clobber the model's own files
                continue
            if src.is_dir():
                shutil.copytree(src, target)
            else:
                shutil.copy2(src, target)
    for name, content in extra_files.items():
        if Path(name).name != name or name in ("", ".", "..") or (dest / name).exists():
            raise ValueError(f"extra_files: {name!r} must be a new plain file name")
        if isinstance(content, bytes):
            (dest / name).write_bytes(content)
        else:
            (dest / name).write_text(content)
    # Some writers create files owner-only (0600); a served checkpoint should be readable
    # by the serving process even when it runs as another user.
    for path in dest.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def export_hf(model: Transformer, out_dir, *, tokenizer_dir=None,
              dtype: torch.dtype = torch.float32,
              extra_files: dict[str, "str | bytes"] | None = None) -> Path:
    """Write a Hugging Face checkpoint of `model` to out_dir and return its path.

    Atomic: everything is written to a hidden sibling directory first and renamed into
    place at the end, so out_dir is either the old export or the complete new one. An
    existing out_dir is replaced. bos/eos/pad token ids come from the tokenizer folder
    when one is given (all of its files are copied along). extra_files maps file names
    to text/bytes written next to the model (e.g. provenance notes).
    """
    model = _unwrap(model)
    hf_architecture(model.config)  # refuse lab variants before touching the disk
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"export destination {out_dir} exists and is not a directory")
    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        if not tokenizer_dir.is_dir():
            raise UserError(f"tokenizer directory {tokenizer_dir} does not exist")
    with atomic_dir(out_dir) as tmp:
        _write_checkpoint(model, tmp, tokenizer_dir, dtype, dict(extra_files or {}))
    return out_dir


# --------------------------------------------------------------------------- loading back

# Buffers that older GPT-2 checkpoints (e.g. OpenAI's original upload) saved next to the
# weights: the causal mask and its fill value. Ours is built on the fly.
_IGNORED_HF_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def config_from_hf(hf: dict) -> ModelConfig:
    """Our ModelConfig from a Hugging Face config.json (GPT-2 or Llama), for exports
    without a playground.json. Raises UserError for anything else."""
    arch = (hf.get("architectures") or [None])[0]
    tie = bool(hf.get("tie_word_embeddings", arch == "GPT2LMHeadModel"))
    common = {"vocab_size": hf["vocab_size"], "tie_embeddings": tie,
              "init_std": hf.get("initializer_range", 0.02)}
    try:
        if hf.get("model_type") == "gpt2":
            act = hf.get("activation_function", "gelu_new")
            if act not in ("gelu_new", "gelu_pytorch_tanh", "relu"):
                raise UserError(f"GPT-2 activation {act!r} is not one of ours (gelu_new, relu)")
            if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
                raise UserError("GPT-2 checkpoints with non-standard attention scaling are not supported")
            return ModelConfig(arch="gpt2", block_size=hf["n_positions"], n_layer=hf["n_layer"],
                               n_head=hf["n_head"], n_embd=hf["n_embd"],
                               intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"],
                               mlp="relu" if act == "relu" else None,
                               norm_eps=hf.get("layer_norm_epsilon", 1e-5), **common)
        if hf.get("model_type") == "llama":
            if hf.get("hidden_act", "silu") != "silu":
                raise UserError(f"Llama activation {hf['hidden_act']!r} is not SwiGLU's silu")
            if bool(hf.get("attention_bias")) != bool(hf.get("mlp_bias")):
                raise UserError("Llama checkpoints with attention_bias != mlp_bias are not supported")
            head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
            if head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
                raise UserError(f"Llama head_dim {head_dim} x {hf['num_attention_heads']} heads "
                                f"!= hidden_size {hf['hidden_size']}; our model needs them equal")
            rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
            if rope.get("rope_type", "default") != "default":
                raise UserError(f"RoPE scaling {rope.get('rope_type')!r} is not supported")
            theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
            return ModelConfig(arch="llama", block_size=hf["max_position_embeddings"],
                               n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                               n_kv_head=hf.get("num_key_value_heads"), n_embd=hf["hidden_size"],
                               intermediate_size=hf["intermediate_size"], rope_theta=theta,
                               norm_eps=hf.get("rms_norm_eps", 1e-6),
                               bias=bool(hf.get("attention_bias")) or None, **common)
    except (KeyError, ValueError) as e:
        raise UserError(f"config.json does not describe a model we can build: {e}") from None
    raise UserError(f"unsupported model type {hf.get('model_type')!r} ({arch}); "
                    f"load_export reads GPT-2 and Llama checkpoints")


def state_dict_from_hf(hf_sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The inverse of `hf_state_dict`: HF tensor names -> ours (un-fuse, un-transpose).

    Raises:
        UserError: if a tensor is missing or one is left over (a different model).
    """
    hf_sd = {k: v for k, v in hf_sd.items() if not k.endswith(_IGNORED_HF_SUFFIXES)}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in hf_sd:
            raise UserError(f"the checkpoint has no tensor {name!r}: it is not the model "
                            f"its config.json describes")
        used.add(name)
        return hf_sd[name]

    if hf_architecture(cfg) == "gpt2":
        # A bare GPT2Model (OpenAI's upload) names its tensors without "transformer.".
        if "transformer.wte.weight" not in hf_sd and "wte.weight" in hf_sd:
            hf_sd = {(k if k.startswith("lm_head.") else "transformer." + k): v
                     for k, v in hf_sd.items()}
        out["tok_emb.weight"] = take("transformer.wte.weight")
        out["pos_emb.weight"] = take("transformer.wpe.weight")
        q_rows = cfg.n_head * cfg.head_dim
        for i in range(cfg.n_layer):
            o, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours_norm, hf_norm in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[o + f"{ours_norm}.weight"] = take(h + f"{hf_norm}.weight")
                out[o + f"{ours_norm}.bias"] = take(h + f"{hf_norm}.bias")
            # Conv1D (in, 3C) -> transpose -> split the rows back into q, k and v.
            qkv_w = take(h + "attn.c_attn.weight").t()
            qkv_b = take(h + "attn.c_attn.bias")
            for j, p in enumerate("qkv"):
                rows = slice(j * q_rows, (j + 1) * q_rows)
                out[o + f"attn.{p}_proj.weight"] = qkv_w[rows]
                out[o + f"attn.{p}_proj.bias"] = qkv_b[rows]
            for ours_lin, hf_lin in (("attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                                     ("mlp.down_proj", "mlp.c_proj")):
                out[o + f"{ours_lin}.weight"] = take(h + f"{hf_lin}.weight").t()
                out[o + f"{ours_lin}.bias"] = take(h + f"{hf_lin}.bias")
        out["norm_f.weight"] = take("transformer.ln_f.weight")
        out["norm_f.bias"] = take("transformer.ln_f.bias")
    else:
        out["tok_emb.weight"] = take("model.embed_tokens.weight")
        kinds = ("weight", "bias") if cfg.layout.bias else ("weight",)
        for i in range(cfg.n_layer):
            o, h = f"blocks.{i}.", f"model.layers.{i}."
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                for kind in kinds:
                    out[o + f"attn.{p}.{kind}"] = take(h + f"self_attn.{p}.{kind}")
            for p in ("gate_proj", "up_proj", "down_proj"):
                for kind in kinds:
                    out[o + f"mlp.{p}.{kind}"] = take(h + f"mlp.{p}.{kind}")
            out[o + "norm1.weight"] = take(h + "input_layernorm.weight")
            out[o + "norm2.weight"] = take(h + "post_attention_layernorm.weight")
        out["norm_f.weight"] = take("model.norm.weight")
    if cfg.tie_embeddings:
        # save_pretrained drops a tied lm_head; if it is there it must be the same matrix.
        out["lm_head.weight"] = out["tok_emb.weight"]
        used.add("lm_head.weight")
    else:
        out["lm_head.weight"] = take("lm_head.weight")
    extra = sorted(set(hf_sd) - used)
    if extra:
        raise UserError(f"the checkpoint has tensors the model does not use: "
                        f"{', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    return out


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():  # a sharded checkpoint: the index maps tensor names to files
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(path / shard).items()}
    raise UserError(f"no model.safetensors in {path}")


def load_export(path, *, dtype: torch.dtype = torch.float32) -> Transformer:
    """Rebuild our `Transformer` from an export folder: the inverse of `export_hf`.

    The ModelConfig comes from playground.json's `config.model` (written by
    `playground export` and `playground bench serve`), which keeps the lab fields;
    without it, from the HF config.json. Either way it must agree with config.json's
    architecture. Weights are renamed back with `state_dict_from_hf`.

    Args:
        path: the export folder (config.json + model.safetensors).
        dtype: parameter dtype of the returned model (bf16 exports are upcast).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        UserError: missing folder or files, or a checkpoint that is not GPT-2 / Llama.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"no exported model in {path} (missing config.json)")
    hf = json.loads(config_file.read_text())
    cfg = None
    info_file = path / "playground.json"
    if info_file.is_file():
        model_section = (json.loads(info_file.read_text()).get("config") or {}).get("model")
        if model_section:
            try:
                cfg = ModelConfig(**model_section)
            except (TypeError, ValueError) as e:
                raise UserError(f"{info_file}: config.model is not a valid model config: {e}") from None
    if cfg is None:
        cfg = config_from_hf(hf)
    expected = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[hf_architecture(cfg)]
    if expected not in (hf.get("architectures") or [expected]):
        raise UserError(f"{path}: playground.json describes a {expected} but config.json says "
                        f"{hf.get('architectures')}")
    state = state_dict_from_hf(_read_safetensors(path), cfg)
    with torch.device("meta"):  # no point initialising weights that are overwritten next
        model = Transformer(cfg)
    # assign=True adopts the loaded tensors instead of copying into the meta ones.
    try:
        model.load_state_dict({k: v.to(dtype).contiguous() for k, v in state.items()}, strict=True,
                              assign=True)
    except RuntimeError as e:  # shapes that disagree with the config
        first = str(e).strip().splitlines()[-1].strip()
        raise UserError(f"{path}: the weights do not fit the model config ({first})") from None
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight  # assign=True replaced the shared Parameter
    return model.eval()
