"""Importing and publishing models (training/registry/hub.py), offline.

The Hugging Face Hub cannot be reached from the test machines, so every test that gets past the
offline checks mocks it: `snapshot_download` copies a folder the test made, and `HfApi`'s methods
record their arguments or fail the way the Hub would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from training.errors import UserError
from training.registry import hub, registry
from training.workspace import Workspace

TOKEN = "hf_SeCrEtTokenValue1234567890abcdef"


def save_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"])}
    vocab.update({f"w{i}": i + 4 for i in range(40)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)


def save_model(path: Path, arch: str = "llama", tokenizer: bool = True) -> Path:
    """A tiny causal LM folder, as a Hub download looks: config, weights, tokenizer, README."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(0)
    cfg = (LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
           if arch == "llama" else GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    if tokenizer:
        save_tokenizer(path)
    (path / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# upstream card\n")
    return path


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("src") / "tiny-llama")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def leftovers(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.models.iterdir()) if ws.models.is_dir() else []


@pytest.fixture
def online(monkeypatch):
    """Not offline as far as hub.py can tell (tests/conftest.py sets HF_HUB_OFFLINE=1 for the session)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the Hub fails the test."""
    def boom(*a, **k):
        raise AssertionError("the network was used")
    monkeypatch.setattr(hub, "check_online", boom)
    monkeypatch.setattr("huggingface_hub.snapshot_download", boom)


# --------------------------------------------------------------------------- import_folder


def test_an_imported_folder_loads_from_the_workspace_and_records_where_it_came_from(ws, src):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = hub.import_folder(ws, src, "tiny")
    assert out == ws.model("tiny") and leftovers(ws) == ["tiny"]
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "llama" and tok.eos_token == "</s>"
    info = json.loads((out / "playground.json").read_text())
    assert info["kind"] == "imported" and info["source"] == str(src.resolve())
    assert info["lineage"]["imported_from"] == str(src.resolve()) and info["imported_at"]
    assert registry.kind_of(info) == "imported" and registry.parent_of(info) is None
    assert not (out / "README.md").exists() and (out / hub.UPSTREAM_README).is_file()  # its card, kept aside
    assert hub.import_folder(ws, src).name == "tiny-llama"  # the id defaults to the folder's name


def _remove(*names):
    def edit(path: Path) -> None:
        for name in names:
            for p in path.glob(name):
                p.unlink()
    return edit


def _config(**changes):
    def edit(path: Path) -> None:
        cfg = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps(cfg | changes))
    return edit


def _sharded(path: Path) -> None:
    (path / "model.safetensors").rename(path / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors",
                                            "model.norm.weight": "model-00001-of-00002.safetensors"}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("edit,message", [
    (_remove("config.json"), r"has no config\.json$"),
    (_remove("*.safetensors"), r"has no weights \(\*\.safetensors or pytorch_model\.bin\)$"),
    (_config(model_type="not-a-real-arch"), r"has model_type 'not-a-real-arch', which transformers does not know"),
    (_config(model_type="vit", architectures=["ViTModel"]), r"holds a 'vit' model, which is not a causal"),
    (_remove("tokenizer*"), r"has no tokenizer that loads with AutoTokenizer"),
    (_sharded, r"lacks model-00002-of-00002\.safetensors, a weight shard"),
], ids=["no-config", "no-weights", "unknown-model-type", "not-causal", "no-tokenizer", "missing-shard"])
def test_a_folder_that_is_not_a_causal_lm_is_refused_in_one_line_and_nothing_is_written(ws, tmp_path, edit, message):
    bad = save_model(tmp_path / "bad")
    edit(bad)
    with pytest.raises(UserError, match=r"^not a model folder: .*" + message) as e:
        hub.import_folder(ws, bad, "bad")
    assert "\n" not in str(e.value)
    assert leftovers(ws) == []  # no target folder, no temp sibling


def test_paths_that_are_not_folders_are_refused(ws, tmp_path):
    with pytest.raises(UserError, match=r"^not a model folder: .*nowhere does not exist$"):
        hub.import_folder(ws, tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("hi")
    with pytest.raises(UserError, match=r"^not a model folder: .*file\.txt is not a folder$"):
        hub.import_folder(ws, tmp_path / "file.txt")
    assert leftovers(ws) == []


def test_an_existing_id_or_an_unsafe_one_is_refused(ws, src):
    hub.import_folder(ws, src, "taken")
    before = (ws.model("taken") / "playground.json").read_text()
    with pytest.raises(UserError, match=r"^id: 'taken' already exists"):
        hub.import_folder(ws, src, "taken")
    assert (ws.model("taken") / "playground.json").read_text() == before
    for bad in ("../escape", ".hidden", "a/b", "x" * 200):
        with pytest.raises(UserError, match=r"^id: .* is not a model id"):
            hub.import_folder(ws, src, bad)
    assert leftovers(ws) == ["taken"]


def test_a_failure_while_copying_leaves_nothing_behind(ws, src, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(hub.shutil, "copy2", broken)
    with pytest.raises(OSError, match="disk full"):
        hub.import_folder(ws, src, "half")
    assert leftovers(ws) == []


# --------------------------------------------------------------------------- import_hub


def test_import_hub_offline_is_one_line_at_once(ws, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^cannot reach the Hugging Face Hub \(offline\?\): HF_HUB_OFFLINE") as e:
        hub.import_hub(ws, "HuggingFaceTB/SmolLM2-135M")
    assert time.monotonic() - start < 5 and "\n" not in str(e.value)
    assert leftovers(ws) == []


def test_check_online_turns_a_connection_error_into_one_line(monkeypatch, online):
    import httpx

    def refuse(*a, **k):
        raise httpx.ConnectError("[Errno -2] Name or service not known")
    monkeypatch.setattr(httpx, "head", refuse)
    with pytest.raises(UserError, match=r"^cannot reach the Hugging Face Hub \(offline\?\): ConnectError: \[Errno"):
        hub.check_online(timeout=1)


@pytest.mark.parametrize("name", ["SmolLM2-135M", "a/b/c", "../etc", "owner/", "/abs/path", "own er/name"])
def test_import_hub_refuses_a_name_that_is_not_owner_slash_name_before_any_network_use(ws, name, no_network):
    with pytest.raises(UserError, match=r"^hub: .* is not a Hugging Face Hub name \(owner/name"):
        hub.import_hub(ws, name)


def test_import_hub_downloads_with_progress_and_imports(ws, src, monkeypatch):
    """The Hub is mocked (it cannot be reached here): snapshot_download copies `src` and reports bytes
    through the tqdm class it was given, as the real one does."""
    import shutil
    from types import SimpleNamespace

    from huggingface_hub.utils.tqdm import _create_progress_bar

    calls = []

    def fake_snapshot(repo_id, *, revision=None, local_dir=None, allow_patterns=None, dry_run=False,
                      tqdm_class=None, etag_timeout=None, **kw):
        calls.append({"repo_id": repo_id, "revision": revision, "dry_run": dry_run, "allow": allow_patterns})
        files = sorted(p for p in src.iterdir() if p.is_file())
        if dry_run:
            return [SimpleNamespace(filename=p.name, file_size=p.stat().st_size) for p in files]
        bar = _create_progress_bar(cls=tqdm_class, log_level=20, name="huggingface_hub.snapshot_download",
                                   desc="Reconstructing (incomplete total...)", total=0, unit="B")
        shutil.copytree(src, local_dir)
        for p in files:
            bar.update(p.stat().st_size)
        return str(local_dir)

    monkeypatch.setattr(hub, "check_online", lambda *a, **k: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    seen = []
    out = hub.import_hub(ws, "owner/Tiny-Llama", progress=lambda done, total: seen.append((done, total)),
                         revision="main")
    assert out == ws.model("Tiny-Llama") and leftovers(ws) == ["Tiny-Llama"]  # the staging folder is gone
    info = json.loads((out / "playground.json").read_text())
    assert info["source"] == "owner/Tiny-Llama" and info["lineage"]["revision"] == "main"
    from training.registry import card

    assert card.build_card(ws, out).data.base_model == "owner/Tiny-Llama"  # a Hub name is a real base_model
    assert [c["dry_run"] for c in calls] == [True, False]
    assert not any(p.startswith("pytorch_model") for p in calls[1]["allow"])  # safetensors: no .bin too
    total = sum(p.stat().st_size for p in src.iterdir() if p.is_file())
    assert seen and seen[-1] == (total, total) and all(t == total for _, t in seen)


def test_import_hub_turns_hub_errors_into_one_line_and_leaves_nothing(ws, monkeypatch):
    import httpx
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(*a, **k):
        response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))
        raise RepositoryNotFoundError("404 Client Error.\n\nRepository Not Found for url: ...", response=response)
    monkeypatch.setattr(hub, "check_online", lambda *a, **k: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", missing)
    with pytest.raises(UserError, match=r"^hub: owner/nothing: not found, private or gated on the Hub") as e:
        hub.import_hub(ws, "owner/nothing")
    assert "\n" not in str(e.value) and leftovers(ws) == []


# --------------------------------------------------------------------------- publish


@pytest.fixture
def ws_model(ws, src) -> Workspace:
    hub.import_folder(ws, src, "mine")
    return ws


def test_publish_offline_is_refused_at_once(ws_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^cannot reach the Hugging Face Hub \(offline\?\)"):
        hub.publish(ws_model, "mine", "me/mine", token=TOKEN)


def test_publish_refuses_a_bad_repo_id_or_a_missing_model(ws_model, no_network):
    with pytest.raises(UserError, match=r"^repo_id: 'mine' is not a Hugging Face Hub name"):
        hub.publish(ws_model, "mine", "mine", token=TOKEN)
    with pytest.raises(UserError, match=r"^model: no model 'ghost'"):
        hub.publish(ws_model, "ghost", "me/ghost", token=TOKEN)


def test_publish_without_a_token_says_how_to_get_one(ws_model, monkeypatch, online):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UserError, match=r"^publish needs a Hugging Face token"):
        hub.publish(ws_model, "mine", "me/mine")


@pytest.fixture
def mocked_hub(monkeypatch, online):
    """HfApi's network methods replaced (the Hub cannot be reached from here)."""
    from huggingface_hub import HfApi

    monkeypatch.setattr(hub, "check_online", lambda *a, **k: None)
    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["create_repo"] = {"repo_id": repo_id, "token": self.token, **kw}
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        calls["upload_folder"] = kw
        if calls.get("fail"):
            raise RuntimeError(f"401 Unauthorized: Invalid credentials in Authorization header "
                               f"'Bearer {self.token}' (token {self.token})")
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_publish_writes_the_card_then_uploads_the_folder_privately(ws_model, mocked_hub):
    from huggingface_hub import ModelCard

    url = hub.publish(ws_model, "mine", "me/mine", token=TOKEN)
    assert url == "https://huggingface.co/me/mine"
    assert mocked_hub["create_repo"]["private"] is True and mocked_hub["create_repo"]["exist_ok"] is True
    assert mocked_hub["create_repo"]["token"] == TOKEN  # the token reaches huggingface_hub, and only it
    assert mocked_hub["upload_folder"]["folder_path"] == str(ws_model.model("mine"))
    card = ModelCard.load(ws_model.model("mine") / "README.md")
    assert card.data.library_name == "transformers" and card.data.license == "mit"  # the upstream card's


def test_a_failed_upload_never_shows_the_token(ws_model, mocked_hub, monkeypatch):
    mocked_hub["fail"] = True
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # from the environment this time
    with pytest.raises(UserError) as e:
        hub.publish(ws_model, "mine", "me/mine")
    assert mocked_hub["create_repo"]["token"] == TOKEN
    text = f"{e.value} {e.value!r} {e.value.args}"
    assert TOKEN not in text and TOKEN[3:] not in text
    assert str(e.value).startswith("publish me/mine: the Hub refused: RuntimeError: 401 Unauthorized")
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback holding it
