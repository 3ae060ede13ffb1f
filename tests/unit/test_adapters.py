"""LoRA, DoRA and QLoRA through peft (training/posttrain/adapters.py), on tiny GPT-2 and Llama models."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, LlamaConfig

from training.errors import UserError
from training.posttrain import adapters
from training.posttrain.config import LoraConfig
from training.workspace import Workspace

CONFIGS = {
    "gpt2": lambda: GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=128, n_positions=32,
                               bos_token_id=1, eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": lambda: LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=128, max_position_embeddings=32,
                                 bos_token_id=1, eos_token_id=2, tie_word_embeddings=False),
}
IDS = torch.tensor([[5, 17, 42, 9, 100, 3, 64, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory):
    """One saved tiny base per layout (random weights: std 0.02, like a fresh model)."""
    out = {}
    for name, make in CONFIGS.items():
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(name) / "base"
        AutoModelForCausalLM.from_config(make()).save_pretrained(path)
        out[name] = str(path)
    return out


def _lora(**kw):
    return LoraConfig(**{"r": 4, "alpha": 8, "dropout": 0.0, **kw})


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(IDS).logits.float()


def _one_step(model, lr=1e-2):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model(IDS, labels=IDS).loss.backward()
    opt.step()
    opt.zero_grad()


def _qlora_or_skip():
    try:
        adapters.check_qlora()
    except UserError as e:
        pytest.skip(str(e))


# ----------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize("layout", ["gpt2", "llama"])
def test_lora_starts_as_the_base_then_merges_to_the_same_logits(layout, base_dirs, tmp_path):
    torch.manual_seed(1)
    model = adapters.load_model(base_dirs[layout], "lora")
    base_logits = _logits(model)
    peft_model = adapters.apply(model, "lora", _lora())
    # B = 0 at init: the adapted model is exactly the base.
    assert torch.allclose(_logits(peft_model), base_logits, atol=1e-6)

    _one_step(peft_model)
    tuned = _logits(peft_model)
    assert (tuned - base_logits).abs().max() > 1e-3   # the step moved the model

    peft_model.save_pretrained(tmp_path / "adapter")
    out = adapters.merge(base_dirs[layout], tmp_path / "adapter", tmp_path / "merged",
                         extra_files={"playground.json": '{"run_id": "x"}'}, eos_token_ids=[2, 7])
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(_logits(merged), tuned, atol=1e-5)
    assert json.loads((out / "playground.json").read_text()) == {"run_id": "x"}
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 7]
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == [2, 7]
    assert not list(tmp_path.glob(".merged*"))   # atomic: no temp folder left behind


@pytest.mark.parametrize("layout", ["gpt2", "llama"])
def test_dora_config_and_forward(layout, base_dirs):
    model = adapters.load_model(base_dirs[layout], "lora")
    cfg = adapters.lora_config(model, _lora(use_dora=True))
    assert cfg.use_dora is True
    assert cfg.fan_in_fan_out is (layout == "gpt2")   # GPT-2's Conv1D stores weights in x out
    base_logits = _logits(model)
    peft_model = adapters.apply(model, "lora", _lora(use_dora=True))
    assert any("lora_magnitude_vector" in n for n, _ in peft_model.named_parameters())
    logits = _logits(peft_model)
    assert logits.shape == (2, 8, 128) and torch.isfinite(logits).all()
    assert torch.allclose(logits, base_logits, atol=1e-5)   # DoRA also starts at the base


def test_missing_target_modules_name_the_ones_the_model_has(base_dirs):
    gpt2 = AutoModelForCausalLM.from_pretrained(base_dirs["gpt2"])
    with pytest.raises(UserError) as e:
        adapters.lora_config(gpt2, _lora(target_modules=["q_proj", "c_attn", "v_proj"]))
    assert str(e.value) == ("lora.target_modules: the model has no q_proj, v_proj; "
                            "its linear layers are: c_attn, c_fc, c_proj")
    llama = adapters.meta_model(AutoConfig.from_pretrained(base_dirs["llama"]))   # no weights needed
    with pytest.raises(UserError, match=r"no c_attn; its linear layers are: down_proj, gate_proj, k_proj, "
                                        r"o_proj, q_proj, up_proj, v_proj$"):
        adapters.lora_config(llama, _lora(target_modules=["c_attn"]))
    # dotted suffixes select too, as in peft
    assert adapters.lora_config(gpt2, _lora(target_modules=["attn.c_proj"])).target_modules == {"attn.c_proj"}


def test_rank_larger_than_a_layer_is_refused(base_dirs):
    gpt2 = adapters.meta_model(AutoConfig.from_pretrained(base_dirs["gpt2"]))
    with pytest.raises(UserError) as e:
        adapters.lora_config(gpt2, _lora(r=256))
    assert str(e.value) == "lora.r=256 is larger than layer transformer.h.0.attn.c_attn (64 x 192): at most 64"
    assert adapters.lora_config(gpt2, _lora(r=64)).r == 64   # the boundary is allowed
    llama = adapters.meta_model(AutoConfig.from_pretrained(base_dirs["llama"]))
    # k/v project 64 -> 2 kv heads x 16 = 32
    with pytest.raises(UserError, match=r"lora.r=33 is larger than layer model.layers.0.self_attn.k_proj "
                                        r"\(64 x 32\): at most 32"):
        adapters.lora_config(llama, _lora(r=33, target_modules=["q_proj", "k_proj"]))


@pytest.mark.parametrize("layout", ["gpt2", "llama"])
def test_trainable_params_match_the_lora_formula(layout, base_dirs):
    model = adapters.load_model(base_dirs[layout], "full")
    total = sum(p.numel() for p in model.parameters())
    assert adapters.trainable_params(adapters.apply(model, "full", _lora())) == (total, total)
    # r * (in + out) per adapted layer; a Linear stores (out, in), a Conv1D (in, out): either way the sum.
    head = model.get_output_embeddings()
    expected = sum(4 * sum(m.weight.shape) for n, m in model.named_modules()
                   if type(m).__name__ in ("Linear", "Conv1D") and m is not head)
    assert expected > 0
    trainable, total_after = adapters.trainable_params(adapters.apply(model, "lora", _lora(r=4)))
    assert trainable == expected
    assert total_after == total + expected


# ----------------------------------------------------------------------------- QLoRA


def test_check_qlora_passes_here():
    adapters.check_qlora()   # bitsandbytes 0.50 runs NF4 on the CPU


def test_check_qlora_says_why_without_bitsandbytes(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)   # makes `import bitsandbytes` fail
    with pytest.raises(UserError, match=r"^method=qlora needs bitsandbytes, which cannot be imported here "
                                        r"\((ModuleNotFound|Import)Error: .*\); use method=lora$"):
        adapters.check_qlora()


@pytest.mark.parametrize("layout", ["llama", "gpt2"])
def test_qlora_trains_adapters_on_4bit_and_merges_into_the_32bit_base(layout, base_dirs, tmp_path):
    import bitsandbytes as bnb

    _qlora_or_skip()
    torch.manual_seed(2)
    model = adapters.load_model(base_dirs[layout], "qlora")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    # every attention/MLP weight, GPT-2's Conv1D included: 4 per layer for GPT-2, 7 for Llama
    assert len(quantized) == 2 * (4 if layout == "gpt2" else 7)
    assert all(m.weight.dtype == torch.uint8 for m in quantized)
    lora_cfg = _lora(r=4, alpha=8)
    assert adapters.lora_config(model, lora_cfg).fan_in_fan_out is False   # Linear4bit is (out, in) even for GPT-2
    peft_model = adapters.apply(model, "qlora", lora_cfg)

    peft_model.train()
    peft_model(IDS, labels=IDS).loss.backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert with_grad == trainable and with_grad and all(".lora_" in n for n in with_grad)
    assert any(peft_model.get_parameter(n).grad.abs().sum() > 0 for n in with_grad if "lora_B" in n)
    peft_model.zero_grad()
    _one_step(peft_model)
    four_bit_logits = _logits(peft_model)
    peft_model.save_pretrained(tmp_path / "adapter")

    out = adapters.merge(base_dirs[layout], tmp_path / "adapter", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())

    # The reference, by hand: the fp32 base weight plus (alpha / r) * B @ A (transposed for Conv1D).
    ref = AutoModelForCausalLM.from_pretrained(base_dirs[layout])
    scale = lora_cfg.alpha / lora_cfg.r
    n_deltas = 0
    for name, module in ref.named_modules():
        key = f"base_model.model.{name}.lora_%s.default.weight"
        try:
            a, b = peft_model.get_parameter(key % "A"), peft_model.get_parameter(key % "B")
        except AttributeError:
            continue
        delta = scale * (b @ a).detach()
        with torch.no_grad():
            module.weight += delta.t() if type(module).__name__ == "Conv1D" else delta
        n_deltas += 1
    assert n_deltas == len(quantized)
    ref_logits = _logits(ref)
    # merged and reference both compute W + s·BA in fp32, differing only in float rounding
    # (~1e-7 of logits of size ~1): 1e-5 is loose for that, yet a 4-bit base (NF4 moves these
    # weights by ~9%) or a missing / untransposed delta changes logits by >1e-2.
    assert torch.allclose(_logits(merged), ref_logits, atol=1e-5)
    assert (four_bit_logits - ref_logits).abs().max() > 1e-3   # the 4-bit model was not what got saved


# ----------------------------------------------------------------------------- resolve_model


def test_resolve_model(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    ws.model("tiny-sft").mkdir(parents=True)
    (ws.model("tiny-sft") / "config.json").write_text("{}")
    local = tmp_path / "local"
    local.mkdir()
    (local / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)

    assert adapters.resolve_model("tiny-sft", ws) == str(ws.model("tiny-sft").resolve())
    assert adapters.resolve_model(str(local), ws) == str(local.resolve())
    assert adapters.resolve_model("local", ws) == str(local.resolve())   # relative to the working folder
    for missing in (str(tmp_path / "nope"), "./nope", "~/no/such/model", "a/b/c"):
        with pytest.raises(UserError, match=r"^base\.model: no model at "):
            adapters.resolve_model(missing, ws)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        adapters.resolve_model("empty", ws)
    for hub in ("HuggingFaceTB/SmolLM2-135M", "gpt2"):
        assert adapters.resolve_model(hub, ws) == hub


@pytest.mark.parametrize("layout", ["gpt2", "llama"])
def test_trainable_tokens_train_their_embedding_rows_and_merge(layout, base_dirs, tmp_path):
    """lora.trainable_tokens: the rows of new tokens (our chat tokens) train beside the adapters;
    every other row stays the base's, and the merged model equals the trained one."""
    torch.manual_seed(1)
    model = adapters.load_model(base_dirs[layout], "lora")
    wte = model.get_input_embeddings().weight.detach().clone()
    peft_model = adapters.apply(model, "lora", _lora(), token_ids=[3, 7])
    plain = adapters.apply(adapters.load_model(base_dirs[layout], "lora"), "lora", _lora())
    assert adapters.trainable_params(peft_model)[0] == adapters.trainable_params(plain)[0] + 2 * 64  # 2 rows x n_embd
    _one_step(peft_model)
    tuned = _logits(peft_model)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(adapters.merge(base_dirs[layout], tmp_path / "adapter",
                                                                 tmp_path / "merged"))
    assert torch.allclose(_logits(merged), tuned, atol=1e-5)
    changed = (merged.get_input_embeddings().weight - wte).abs().amax(dim=1) > 0
    assert changed.nonzero().flatten().tolist() == [3, 7]  # those rows, and only those
    if layout == "gpt2":  # tied head: the same rows of the output layer moved with them
        assert merged.lm_head.weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()
        head = peft_model.get_output_embeddings()  # what TRL's fused LM head reads: weight (trained rows in) and bias
        assert head.bias is None and head.weight.grad_fn is not None


def test_trainable_tokens_are_named_tokens_of_the_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(
        {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "hi": 3}, unk_token="<unk>")), unk_token="<unk>")
    assert adapters.token_ids(tok, ["<|im_start|>", "<|im_end|>"]) == [1, 2]
    assert adapters.token_ids(tok, []) is None
    with pytest.raises(UserError, match=r"lora.trainable_tokens: the tokenizer has no token '<\|im_sep\|>'"):
        adapters.token_ids(tok, ["<|im_end|>", "<|im_sep|>"])
