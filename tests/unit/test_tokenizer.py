"""Byte-level BPE training, saving and loading (all offline, tiny vocabularies)."""

import json

import pytest
from transformers import AutoTokenizer

from training.data.corpus import generate_documents
from training.errors import UserError
from training.tokenizers.hf_tokenizers import UNK_TOKEN, train_hf_tokenizer
from training.tokenizers.tokenizer import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    load_tokenizer,
    train_tokenizer,
)

VOCAB = 400


def _corpus():
    return generate_documents(150_000, seed=0)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_tokenizer(_corpus(), VOCAB, tmp_path_factory.mktemp("tok") / "bpe")


def test_files_and_meta(tok_dir):
    assert {p.name for p in tok_dir.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "training_meta.json"}
    meta = json.loads((tok_dir / "training_meta.json").read_text())
    assert meta["vocab_size"] == VOCAB and meta["min_frequency"] == 2
    assert meta["num_chars"] == sum(map(len, _corpus()))
    assert len(meta["text_sha256"]) == 64
    # vLLM needs the chat template in tokenizer_config.json.
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    # no half-written temp folders next to the output
    assert [p.name for p in tok_dir.parent.iterdir()] == ["bpe"]


def test_special_token_ids_via_autotokenizer(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2, 3]
    assert tok.bos_token_id == 0 and tok.eos_token_id == 0 and tok.pad_token_id == 1
    assert len(tok) <= VOCAB
    # special tokens are single tokens, not split into bytes
    assert tok.encode("<|im_start|>user", add_special_tokens=False)[0] == 2


@pytest.mark.parametrize("text", [
    "Hello world!", "  leading spaces and trailing  ", "héllo wörld — ça va? ñ", "emoji 🎉👩‍👩‍👧 done",
    "line one\nline two\n\n\ttabbed\r\n", "中文 日本語 한국어", "a . , ! ? (x) [y] {z}", "",
])
def test_round_trip_is_lossless(tok_dir, text):
    tok = load_tokenizer(tok_dir)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_chat_template_renders_chatml(tok_dir):
    tok = load_tokenizer(tok_dir)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]
    out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert out == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                   "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                   "<|im_start|>assistant\n")
    no_prompt = tok.apply_chat_template(msgs[:2], add_generation_prompt=False, tokenize=False)
    assert no_prompt.endswith("<|im_end|>\n")
    # A conversation that ends with a reply ends at its <|im_end|>, where generation stops.
    assert tok.apply_chat_template(msgs[:3], tokenize=False).endswith("<|im_start|>assistant\nHello.<|im_end|>")


def test_deterministic(tmp_path, tok_dir):
    again = train_tokenizer(_corpus(), VOCAB, tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("bad", [100, 259, 2_000_000, "4096", 3.5])
def test_bad_vocab_size(tmp_path, bad):
    with pytest.raises(UserError, match="vocab_size"):
        train_tokenizer(["some text"], bad, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_empty_text_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no text"):
        train_tokenizer([], 300, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_replaces_existing_tokenizer_but_not_other_folders(tmp_path):
    out = train_tokenizer(["alpha beta gamma"] * 20, 300, tmp_path / "t")
    first = (out / "tokenizer.json").read_bytes()
    train_tokenizer(["delta epsilon zeta eta"] * 20, 300, out)
    assert (out / "tokenizer.json").read_bytes() != first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="mine"):
        train_tokenizer(["x y"] * 10, 300, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_load_tokenizer_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(UserError, match="tokenizer not found"):
        load_tokenizer(str(tmp_path))  # exists, but no tokenizer.json

    # A Hub name goes to from_pretrained; its OSError (offline, unknown) becomes a UserError.
    seen = []

    def fake(name, *a, **k):
        seen.append(name)
        raise OSError("We couldn't connect to the Hub")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fake)
    with pytest.raises(UserError, match="tokenizer not found: some-org/some-tok"):
        load_tokenizer("some-org/some-tok")
    assert seen == ["some-org/some-tok"]


def test_failed_save_leaves_no_output(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    import training.atomic

    monkeypatch.setattr(training.atomic, "replace_dir", boom)
    with pytest.raises(RuntimeError):
        train_tokenizer(["a b c"] * 10, 300, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_old_folder_on_error(tmp_path):
    from training.atomic import atomic_dir

    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or old folders left


# --------------------------------------------------------------------------- WordPiece and Unigram


def test_meta_records_trainer_and_model(tok_dir):
    meta = json.loads((tok_dir / "training_meta.json").read_text())
    assert (meta["trainer"], meta["model"]) == ("hf", "bpe")


@pytest.fixture(scope="module")
def other_models(tmp_path_factory):
    """model -> (folder, progress calls), trained once per module."""
    out = {}
    for model in ("wordpiece", "unigram"):
        calls = []
        folder = train_hf_tokenizer(_corpus(), VOCAB, tmp_path_factory.mktemp(model) / model, model=model,
                                    progress=lambda done, total, calls=calls: calls.append((done, total)))
        out[model] = (folder, calls)
    return out


@pytest.mark.parametrize("model", ["wordpiece", "unigram"])
def test_other_models_are_transformers_folders(other_models, model):
    folder, calls = other_models[model]
    assert calls == [(0, 1), (1, 1)]  # tokenizers has no callback: start and end only
    meta = json.loads((folder / "training_meta.json").read_text())
    assert (meta["trainer"], meta["model"], meta["vocab_size"]) == ("hf", model, VOCAB)
    assert meta["special_tokens"] == {**{t: i for i, t in enumerate(SPECIAL_TOKENS)}, UNK_TOKEN: 4}
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(tok) == VOCAB
    assert tok.convert_tokens_to_ids([*SPECIAL_TOKENS, UNK_TOKEN]) == [0, 1, 2, 3, 4]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (0, 0, 1, 4)
    assert tok.encode("<|im_start|>user", add_special_tokens=False)[0] == 2
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE


@pytest.mark.parametrize("text", [
    "Hello world!", "  leading spaces and trailing  ", "héllo wörld — ça va? ñ", "emoji 🎉👩‍👩‍👧 done",
    "line one\nline two\n\n\ttabbed\r\n", "中文 日本語 한국어", "literal <0x41> stays", "",
])
def test_unigram_with_byte_fallback_is_lossless(other_models, text):
    tok = load_tokenizer(other_models["unigram"][0])
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids  # unseen characters become byte pieces, not [UNK]


def test_unigram_byte_pieces(other_models):
    from tokenizers import Tokenizer

    # all 256 byte pieces are in the vocabulary, after the learned pieces
    data = json.loads(Tokenizer.from_file(str(other_models["unigram"][0] / "tokenizer.json")).to_str())
    pieces = [p for p, _ in data["model"]["vocab"]]
    assert pieces[-256:] == [f"<0x{b:02X}>" for b in range(256)] and data["model"]["byte_fallback"]


def test_wordpiece_is_lossy_on_purpose(other_models):
    tok = load_tokenizer(other_models["wordpiece"][0])
    ids = tok.encode("Anna  has\n7 bananas, 🎉!", add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(ids)
    assert "[UNK]" in pieces and any(p.startswith("##") for p in pieces)
    assert tok.decode(ids) == "Anna has 7 bananas, [UNK]!"  # whitespace not kept; unknown characters lost


def test_other_models_errors(tmp_path):
    with pytest.raises(UserError, match="model must be one of bpe, wordpiece, unigram"):
        train_hf_tokenizer(["a b"], 300, tmp_path / "t", model="bytepiece")
    with pytest.raises(UserError, match=r"between 261 \(256 bytes \+ 5 special tokens\)"):
        train_hf_tokenizer(["a b"], 260, tmp_path / "t", model="unigram")
    with pytest.raises(UserError, match=r"too small for a unigram model of this text .*use vocab_size >= \d+"):
        train_hf_tokenizer(_corpus(), 300, tmp_path / "t", model="unigram")
    with pytest.raises(UserError, match="no text"):
        train_hf_tokenizer([], 300, tmp_path / "t", model="wordpiece")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the pipeline, either trainer


def test_pipeline_with_the_scratch_trainer(tmp_path):
    """tokenizer.trainer=scratch: its own folder (bpe300s-...), and the same token shards as hf."""
    from training.config import load_config
    from training.data.shards import TokenData
    from training.pretrain.inputs import ensure_inputs
    from training.workspace import Workspace

    ws = Workspace(tmp_path)
    base = ["data.synthetic_chars=40000", "tokenizer.vocab_size=300", "model.vocab_size=320"]
    scratch = ensure_inputs(load_config(None, [*base, "tokenizer.trainer=scratch"]), ws)
    hf = ensure_inputs(load_config(None, base), ws)
    assert scratch.tokenizer_dir.name.startswith("bpe300s-") and hf.tokenizer_dir.name.startswith("bpe300-")
    meta = json.loads((scratch.tokenizer_dir / "training_meta.json").read_text())
    assert (meta["trainer"], meta["model"]) == ("scratch", "bpe")
    assert (scratch.tokenizer_dir / "bpe.json").is_file()
    assert scratch.tokens_dir != hf.tokens_dir
    # Both trainers learn the same merges, so the shards are byte for byte the same.
    for split in ("train.bin", "val.bin"):
        assert (scratch.tokens_dir / split).read_bytes() == (hf.tokens_dir / split).read_bytes()
    data = TokenData(scratch.tokens_dir)
    assert data.manifest["vocab_size"] == 300 and data.manifest["tokenizer_id"] == scratch.tokenizer_dir.name


@pytest.mark.parametrize("model", ["wordpiece", "unigram"])
def test_pipeline_with_other_models(tmp_path, model):
    from training.config import load_config
    from training.data.shards import TokenData
    from training.pretrain.inputs import ensure_inputs
    from training.workspace import Workspace

    cfg = load_config(None, ["data.synthetic_chars=40000", "tokenizer.vocab_size=420", "model.vocab_size=420",
                             f"tokenizer.model={model}"])
    inputs = ensure_inputs(cfg, Workspace(tmp_path))
    assert inputs.tokenizer_dir.name.startswith(f"{model}420-")
    assert TokenData(inputs.tokens_dir).manifest["tokens"]["train"] > 1000
