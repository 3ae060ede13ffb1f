"""Unit tests for training/registry/quantize.py: compressed-tensors int8 (W8A8) and int4 (W4A16) variants of
tiny GPT-2 and Llama exports. No vLLM here (tests/integration/test_quantize_serve.py serves one)."""

import json

import pytest
import torch

pytest.importorskip("compressed_tensors")
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from training.errors import UserError
from training.model.export import export_hf
from training.model.transformer import ModelConfig, Transformer
from training.registry import quantize as q
from training.registry.quant_report import size_report

VOCAB = 128
SHAPES = {"gpt2": {"arch": "gpt2"}, "llama": {"arch": "llama", "n_kv_head": 2, "intermediate_size": 128}}


@pytest.fixture(autouse=True)
def _no_vllm(monkeypatch):
    # servable() imports vLLM (seconds); here a CPU build with every kernel stands in for it.
    monkeypatch.setattr(q, "_vllm_ops", lambda: (None, frozenset({"create_onednn_mm_handler", "cpu_gemm_wna16"})))


def export(path, tokenizer_dir, arch="gpt2", **kw):
    cfg = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=4, n_embd=64, **SHAPES[arch])
    cfg.update(kw)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**cfg))
    with torch.no_grad():  # bigger than the 0.02 init, so the logits have margins to lose
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    info = {"run_id": "tiny", "step": 3, "lineage": {"kind": "sft", "base_model": "base"}}
    return export_hf(model.eval(), path, tokenizer_dir=tokenizer_dir, extra_files={"playground.json": json.dumps(info)})


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("exports")
    return {arch: export(root / arch, tokenizer_dir, arch) for arch in SHAPES}


IDS = torch.randint(4, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
# (mean |logit error| / logit std, share of positions whose argmax may change). Measured: int8 0.012, no
# flips; int4 0.12-0.15 and 15-23% flips (random weights have small margins). A layout bug gives ~1.
BOUNDS = {"int8": (0.03, 0.02), "int4": (0.3, 0.35)}


@pytest.mark.parametrize("method", ["int8", "int4"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_quantized_logits_stay_close_to_fp32(exports, tmp_path, arch, method):
    facts = q.quantize(exports[arch], tmp_path / "v", method)
    assert facts["layers"] == 2 * (4 if arch == "gpt2" else 7) and facts["servable"] is True
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(exports[arch]).eval()(IDS).logits
        got = q.load_quantized(tmp_path / "v")(IDS).logits
    err = (got - ref).abs().mean().item() / ref.std().item()
    flips = (got.argmax(-1) != ref.argmax(-1)).float().mean().item()
    assert 0 < err < BOUNDS[method][0] and flips <= BOUNDS[method][1], (err, flips)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_llama_loader_matches_transformers_own(exports, tmp_path, method):
    # transformers reads compressed-tensors for nn.Linear models: our loader must agree with it exactly.
    q.quantize(exports["llama"], tmp_path / "v", method)
    with torch.no_grad():
        ours = q.load_quantized(tmp_path / "v")(IDS).logits
        theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "v").eval()(IDS).logits
    torch.testing.assert_close(ours, theirs)


def test_gpt2_tensors_on_disk_in_the_layouts_vllm_loads(exports, tmp_path):
    q.quantize(exports["gpt2"], tmp_path / "i8", "int8")
    q.quantize(exports["gpt2"], tmp_path / "i4", "int4")
    with safe_open(str(tmp_path / "i8" / "model.safetensors"), "pt") as f:
        w = f.get_tensor("transformer.h.0.mlp.c_fc.weight")
        assert w.dtype == torch.int8 and tuple(w.shape) == (64, 256)  # Conv1D's (in, out): vLLM transposes it
        assert tuple(f.get_tensor("transformer.h.0.mlp.c_fc.weight_scale").shape) == (256, 1)
        assert "lm_head.weight" not in f.keys()  # noqa: SIM118 - tied: left out, as save_pretrained does
    with safe_open(str(tmp_path / "i4" / "model.safetensors"), "pt") as f:
        packed = f.get_tensor("transformer.h.0.mlp.c_fc.weight_packed")
        assert packed.dtype == torch.int32 and tuple(packed.shape) == (256, 64 // 8)  # (out, in / 8)
        assert tuple(f.get_tensor("transformer.h.0.mlp.c_fc.weight_scale").shape) == (256, 64 // 32)
    cfg = json.loads((tmp_path / "i4" / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized"
    assert cfg["config_groups"]["group_0"]["weights"]["group_size"] == 32 and cfg["ignore"] == ["lm_head"]


def test_sizes_shrink_and_report(exports, tmp_path):
    sizes = {}
    for method in ("int8", "int4"):
        facts = q.quantize(exports["gpt2"], tmp_path / method, method)
        sizes[method] = size_report(exports["gpt2"], tmp_path / method)
        assert sizes[method]["bytes"] == facts["bytes"] and sizes[method]["linear_share"] == facts["linear_share"]
    assert sizes["int4"]["bytes"] < sizes["int8"]["bytes"] < sizes["int8"]["bf16_bytes"] < sizes["int8"]["fp32_bytes"]
    # 2 layers x (64x192 + 64x64 + 2 x 64x256) linear weights, of all the parameters.
    assert sizes["int8"]["linear_parameters"] == 2 * (64 * 192 + 64 * 64 + 2 * 64 * 256)
    assert 0 < sizes["int8"]["linear_share"] < 1 and sizes["int8"]["quantized_layers"] == 8


def test_playground_json_lineage_and_files(exports, tmp_path, tokenizer_dir):
    out = tmp_path / "tiny-int8"
    q.quantize(exports["gpt2"], out, "int8")
    info = json.loads((out / "playground.json").read_text())
    assert info["run_id"] == "tiny" and info["step"] == 3  # the source's facts are kept
    quant = info["quantization"]
    assert {k: quant[k] for k in ("method", "format", "scheme", "group_size", "source")} == {
        "method": "int8", "format": "int-quantized", "scheme": "W8A8", "group_size": None, "source": "gpt2"}
    assert info["lineage"]["kind"] == "quantized" and info["lineage"]["base_model"] == "gpt2"
    assert info["lineage"]["parent_lineage"] == {"kind": "sft", "base_model": "base"}
    for f in tokenizer_dir.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()


def test_bad_shape_is_refused_naming_the_layer_and_leaves_nothing(tmp_path, tokenizer_dir):
    src = export(tmp_path / "odd", tokenizer_dir, "gpt2", intermediate_size=100)
    with pytest.raises(UserError, match=r"int4: layer transformer\.h\.0\.mlp\.c_proj has in_features 100, "
                                        r"not a multiple of the group size 32"):
        q.quantize(src, tmp_path / "odd-int4", "int4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd"]  # no variant, no temp sibling
    q.quantize(src, tmp_path / "odd-int8", "int8")  # per-channel int8 takes any shape


def test_failure_while_writing_leaves_no_variant(exports, tmp_path, monkeypatch):
    q.quantize(exports["gpt2"], tmp_path / "v", "int8")
    before = (tmp_path / "v" / "model.safetensors").read_bytes()

    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    for out in (tmp_path / "v", tmp_path / "new"):
        with pytest.raises(OSError, match="disk full"):
            q.quantize(exports["gpt2"], out, "int4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]
    assert (tmp_path / "v" / "model.safetensors").read_bytes() == before  # the old variant is intact


def test_user_errors(exports, tmp_path):
    with pytest.raises(UserError, match="unknown quantization method 'int3'"):
        q.quantize(exports["gpt2"], tmp_path / "v", "int3")
    with pytest.raises(UserError, match="no exported model"):
        q.quantize(tmp_path / "missing", tmp_path / "v", "int8")
    q.quantize(exports["gpt2"], tmp_path / "v", "int8")
    with pytest.raises(UserError, match="already quantized"):
        q.quantize(tmp_path / "v", tmp_path / "w", "int4")
    with pytest.raises(UserError, match="not quantized"):
        q.load_quantized(exports["gpt2"])
    with pytest.raises(UserError, match="int4 only"):
        q.quantize(exports["gpt2"], tmp_path / "w", "int8", group_size=64)


def test_servable_reports_why_not(monkeypatch, tmp_path, exports):
    assert q.servable("int8") == (True, "vLLM CPU int8 W8A8 kernels (oneDNN) are in this build")
    monkeypatch.setattr(q, "_vllm_ops", lambda: (None, frozenset({"create_onednn_mm_handler"})))
    ok, why = q.servable("int4")
    assert not ok and "cpu_gemm_wna16" in why
    monkeypatch.setattr(q, "_vllm_ops", lambda: (None, frozenset({"cpu_gemm_wna16"})))
    ok, why = q.servable("int4", layers={"h.0.mlp.c_proj": (48, 64)})
    assert not ok and "h.0.mlp.c_proj is 48x64" in why
    facts = q.quantize(exports["gpt2"], tmp_path / "v", "int4")
    assert facts["servable"] and q.servable("int4", tmp_path / "v")[0]
    assert not q.servable("int8")[0]  # no int8 kernel in this (fake) build
    monkeypatch.setattr(q, "_vllm_ops", lambda: ("vLLM cannot be imported here (ImportError: x)", frozenset()))
    assert q.servable("int8") == (False, "vLLM cannot be imported here (ImportError: x)")


def test_int8_serves_in_bfloat16_where_vllm_takes_its_amx_kernel(monkeypatch):
    # vLLM 0.32's AMX int8 kernel (x86 CPUs with AMX tiles, in % 32 == 0 and out % 16 == 0) refuses float32.
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert q.serve_dtype("int8", {"a": (64, 48), "b": (48, 64)}) == "bfloat16"
    assert q.serve_dtype("int8", {"a": (48, 40)}) == "float32"  # no layer the AMX kernel takes
    assert q.serve_dtype("int4", {"a": (64, 64)}) == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert q.serve_dtype("int8", {"a": (64, 48)}) == "float32"


def test_vllm_processes_ask_for_amx_through_our_plugin():
    from importlib.metadata import entry_points

    plugin = {e.name: e for e in entry_points(group="vllm.general_plugins")}["playground_amx"]
    assert plugin.value == "services.vllm_plugin:init_amx"
    plugin.load()()  # harmless without AMX; with it, torch.cpu._init_amx() asks the kernel for the tiles


def test_bnb_8bit_in_process(exports, tokenizer_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(exports["gpt2"]).eval()(IDS).logits
        got = q.load_bnb(exports["gpt2"], 8)(IDS).logits.float()
    assert (got - ref).abs().max().item() / ref.std().item() < 0.1
    odd = export(tmp_path / "odd", tokenizer_dir, "llama", intermediate_size=96)
    with pytest.raises(UserError, match=r"bnb 4-bit: layer model\.layers\.0\.mlp\.down_proj has in_features 96"):
        q.load_bnb(odd, 4)
