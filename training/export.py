"""Convert our `Transformer` to a Hugging Face checkpoint folder.

The folder (config.json, model.safetensors, generation_config.json and the tokenizer
files) loads with `AutoModelForCausalLM.from_pretrained(path)` and serves with vLLM.

The conversion is a renaming of tensors, because `training/model.py` was written to
match the HF layouts:

* gpt2  -> `GPT2LMHeadModel`. Two quirks: HF GPT-2 keeps OpenAI's `Conv1D` layers,
  whose weights are stored transposed relative to `nn.Linear` ((in, out) instead of
  (out, in)), and it fuses the q, k, v projections into one `c_attn` matrix.
* llama -> `LlamaForCausalLM`. Same names up to a prefix, no transposes. Our RoPE uses
  the HF "rotate_half" convention, so q/k weights need no permutation.
"""

import os
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from training.atomic import atomic_dir
from training.errors import UserError
from training.model import ModelConfig, Transformer


def hf_config(cfg: ModelConfig, *, bos_token_id: Optional[int] = None,
              eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None):
    """The `transformers` config equivalent to `cfg` (dropout off: this is for inference)."""
    from transformers import GPT2Config, LlamaConfig

    common = dict(vocab_size=cfg.vocab_size, initializer_range=cfg.init_std,
                  tie_word_embeddings=cfg.tie_embeddings, use_cache=True,
                  bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                  pad_token_id=pad_token_id, dtype=torch.float32)
    if cfg.arch == "gpt2":
        return GPT2Config(
            n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
            n_head=cfg.n_head, n_inner=cfg.mlp_hidden, activation_function="gelu_new",
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            layer_norm_epsilon=cfg.norm_eps, scale_attn_weights=True,
            architectures=["GPT2LMHeadModel"], **common)
    return LlamaConfig(
        hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=False, attention_dropout=0.0, mlp_bias=False,
        architectures=["LlamaForCausalLM"], **common)


def _unwrap(model: nn.Module) -> Transformer:
    """Reach our Transformer through torch.compile (`_orig_mod`) / DDP (`module`) wrappers."""
    while not isinstance(model, Transformer):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"expected a training.model.Transformer, got {type(model).__name__}")
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

    if cfg.arch == "gpt2":
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
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[h + f"self_attn.{p}.weight"] = ours[o + f"attn.{p}.weight"]
            for p in ("gate_proj", "up_proj", "down_proj"):
                out[h + f"mlp.{p}.weight"] = ours[o + f"mlp.{p}.weight"]
            out[h + "input_layernorm.weight"] = ours[o + "norm1.weight"]
            out[h + "post_attention_layernorm.weight"] = ours[o + "norm2.weight"]
        out["model.norm.weight"] = ours["norm_f.weight"]
    out["lm_head.weight"] = ours["lm_head.weight"]
    return {k: v.to("cpu").clone(memory_format=torch.contiguous_format) for k, v in out.items()}


def _tokenizer_special_ids(tokenizer_dir: Path, vocab_size: int) -> dict[str, Optional[int]]:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as e:  # noqa: BLE001 - any failure here means a bad tokenizer folder
        raise UserError(f"cannot load the tokenizer in {tokenizer_dir}: {e}") from e
    if len(tok) > vocab_size:
        raise UserError(f"tokenizer in {tokenizer_dir} has {len(tok)} tokens but the model's "
                        f"vocab_size is {vocab_size}")
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id}


def _write_checkpoint(model: Transformer, dest: Path, tokenizer_dir: Optional[Path],
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
              extra_files: Optional[dict[str, "str | bytes"]] = None) -> Path:
    """Write a Hugging Face checkpoint of `model` to out_dir and return its path.

    Atomic: everything is written to a hidden sibling directory first and renamed into
    place at the end, so out_dir is either the old export or the complete new one. An
    existing out_dir is replaced. bos/eos/pad token ids come from the tokenizer folder
    when one is given (all of its files are copied along). extra_files maps file names
    to text/bytes written next to the model (e.g. provenance notes).
    """
    model = _unwrap(model)
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
