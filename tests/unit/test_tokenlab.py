"""The tokenizer lab (training/tokenizers/tokenlab.py) on real tokenizers, trained here on a small corpus.

Every figure is checked against an independent calculation: token counts against
`transformers` loading the same folder, offsets by slicing the text, merges against
tokenizer.json's merge list, fertility and rates by counting by hand.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from transformers import AutoTokenizer

from training.data import uploads
from training.data.corpus import generate_documents
from training.errors import UserError
from training.tokenizers import tokenlab
from training.workspace import Workspace

VOCAB = 400
# Accented words often enough to be learned; the test texts add unseen characters.
UNICODE_DOCS = ["Le café crème et la crêpe brûlée, déjà vu à Noël. " * 8] * 5
TEXT = "Anna has 7 bananas.  The café  crème!\nQ: What is 3 plus 4? A: 7. 日本 🎉 <|im_start|>user"
KINDS = {  # registry name -> (model, trainer)
    "hf-bpe": ("bpe", "hf"),
    "scratch-bpe": ("bpe", "scratch"),
    "hf-wordpiece": ("wordpiece", "hf"),
    "hf-unigram": ("unigram", "hf"),
}


def corpus() -> list[str]:
    return list(generate_documents(40_000, seed=0)) + UNICODE_DOCS


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("lab") / "ws")
    for name, (model, trainer) in KINDS.items():
        tokenlab.train(ws, corpus(), model=model, trainer=trainer, vocab_size=VOCAB, name=name)
    (ws.tokenizers / "not-a-tokenizer").mkdir()  # ignored by the registry
    (ws.tokenizers / ".half-written.tmp-1234").mkdir()
    return ws


@pytest.fixture(scope="module")
def toks(ws) -> dict[str, tokenlab.LabTokenizer]:
    return {name: tokenlab.open_tokenizer(ws, name) for name in KINDS}


def hf_ids(ws: Workspace, name: str, text: str) -> list[int]:
    """The ids `transformers` gives for the same folder: the independent reference."""
    return AutoTokenizer.from_pretrained(str(ws.tokenizer(name))).encode(text, add_special_tokens=False)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- registry


def test_list_tokenizers(ws):
    entries = {e["name"]: e for e in tokenlab.list_tokenizers(ws)}
    assert set(entries) == set(KINDS)
    for name, (model, trainer) in KINDS.items():
        e = entries[name]
        assert (e["model"], e["trainer"]) == (model, trainer)
        assert e["vocab_size"] == VOCAB == len(AutoTokenizer.from_pretrained(e["path"]))
        assert e["meta"]["text_sha256"] and e["meta"]["num_docs"] == len(corpus())
    assert entries["scratch-bpe"]["files"] == ["bpe.json", "tokenizer.json"]
    assert entries["hf-bpe"]["files"] == ["tokenizer.json"]
    assert tokenlab.list_tokenizers(Workspace(ws.root / "nothing-here")) == []


def test_open_unknown_tokenizer(ws):
    for bad in ("nope", "../ws", "", "a/b"):
        with pytest.raises(UserError, match="unknown tokenizer"):
            tokenlab.open_tokenizer(ws, bad)
    with pytest.raises(UserError, match="available: hf-bpe"):
        tokenlab.open_tokenizer(ws, "not-a-tokenizer")


def test_open_is_cached_until_the_folder_changes(tmp_path):
    ws = Workspace(tmp_path)
    tokenlab.train(ws, ["aaa bbb aaa"] * 20, vocab_size=270, name="t")
    first = tokenlab.open_tokenizer(ws, "t")
    assert tokenlab.open_tokenizer(ws, "t") is first
    with pytest.raises(UserError, match="already exists"):
        tokenlab.train(ws, ["ccc ddd"] * 20, vocab_size=270, name="t")
    tokenlab.train(ws, ["ccc ddd ccc"] * 20, vocab_size=270, name="t", overwrite=True)
    again = tokenlab.open_tokenizer(ws, "t")
    assert again is not first and again.encode("ccc").ids != first.encode("ccc").ids


# --------------------------------------------------------------------------- inspect


@pytest.mark.parametrize("name", KINDS)
def test_inspect_counts_offsets_and_bytes(ws, toks, name):
    out = tokenlab.inspect(toks[name], TEXT)
    tokens = out["tokens"]
    assert out["n_tokens"] == len(tokens) == len(hf_ids(ws, name, TEXT))
    assert [t["id"] for t in tokens] == hf_ids(ws, name, TEXT)
    assert (out["n_chars"], out["n_bytes"]) == (len(TEXT), len(TEXT.encode()))
    for t in tokens:
        covered = TEXT[t["start"]:t["end"]]
        data = bytes.fromhex(t["bytes"])
        if t["id"] == 4 and name == "hf-wordpiece":  # [UNK] stands for the text it covers
            assert t["piece"] == "[UNK]" and t["is_fallback"] and data == covered.encode()
        elif _is_utf8(data):
            assert data.decode() == covered, t
        else:  # a token that ends or starts inside a character covers the whole character
            assert data in covered.encode() and len(covered.encode()) > len(data), t
    special = next(t for t in tokens if t["piece"] == "<|im_start|>")
    assert special["is_special"] and special["id"] == 2 and special["merge"] is None
    if name != "hf-wordpiece":
        # Byte-level BPE and Unigram with byte fallback are lossless: the bytes add up to the text.
        assert b"".join(bytes.fromhex(t["bytes"]) for t in tokens) == TEXT.encode()
        starts = [t["start"] for t in tokens]
        assert starts == sorted(starts) and tokens[-1]["end"] == len(TEXT)


@pytest.mark.parametrize("name", ["hf-bpe", "scratch-bpe"])
def test_inspect_merges_match_tokenizer_json(ws, toks, name):
    merges = json.loads((ws.tokenizer(name) / "tokenizer.json").read_text())["model"]["merges"]
    tokens = tokenlab.inspect(toks[name], TEXT)["tokens"]
    merged = [t for t in tokens if t["merge"]]
    assert len(merged) > 10
    by_id = {t["id"]: t for t in tokens}
    for t in merged:
        m = t["merge"]
        assert merges[m["rank"]] == [m["left_piece"], m["right_piece"]]
        assert m["left_piece"] + m["right_piece"] == t["piece"]
        left, right = (toks[name].token_bytes(i) for i in (m["left"], m["right"]))
        assert left + right == bytes.fromhex(t["bytes"])
        assert (m["count"] is None) == (name == "hf-bpe")  # only bpe.json keeps the counts
    assert all(by_id[i]["merge"] is None for i in by_id if 4 <= i < 260)  # raw bytes: no merge


def test_inspect_without_merges_and_truncation(toks):
    for name in ("hf-wordpiece", "hf-unigram"):
        assert all(t["merge"] is None for t in tokenlab.inspect(toks[name], TEXT)["tokens"])
    out = tokenlab.inspect(toks["hf-bpe"], TEXT, max_tokens=5)
    assert out["truncated"] and len(out["tokens"]) == 5 and out["n_tokens"] > 5


# --------------------------------------------------------------------------- replay


@pytest.mark.parametrize("name", ["hf-bpe", "scratch-bpe"])
@pytest.mark.parametrize("word", [" bananas", " café", "Anna", " 🎉"])
def test_replay_ends_at_the_encoding(ws, toks, name, word):
    out = tokenlab.replay(toks[name], word)
    steps = out["steps"]
    assert steps[0]["merge"] is None and len(steps[0]["ids"]) == len(word.encode())
    assert out["ids"] == steps[-1]["ids"] == hf_ids(ws, name, word)
    assert out["n_merges"] == len(steps) - 1
    for prev, step in itertools.pairwise(steps):
        m, i = step["merge"], step["position"]
        assert len(step["ids"]) == len(prev["ids"]) - 1
        assert (prev["ids"][i], prev["ids"][i + 1]) == (m["left"], m["right"]) and step["ids"][i] == m["new_id"]
        assert m["left_piece"] + m["right_piece"] == m["piece"]
        assert "".join(step["pieces"]) == "".join(prev["pieces"])
    ranks = [s["merge"]["rank"] for s in steps[1:]]
    assert ranks == sorted(ranks)  # lowest rank first (no reused ids in this vocabulary)


def test_replay_errors(toks):
    with pytest.raises(UserError, match="word: .*2 pieces"):
        tokenlab.replay(toks["hf-bpe"], "two words")
    with pytest.raises(UserError, match="word: the text is empty"):
        tokenlab.replay(toks["hf-bpe"], "")
    with pytest.raises(UserError, match="word: 300 characters"):
        tokenlab.replay(toks["hf-bpe"], "a" * 300)
    for name in ("hf-wordpiece", "hf-unigram"):
        with pytest.raises(UserError, match="replay needs a byte-level BPE"):
            tokenlab.replay(toks[name], "hello")


# --------------------------------------------------------------------------- stats


def test_stats_by_hand(ws, toks):
    text = "the cat sat on the mat, the end"
    ids = hf_ids(ws, "hf-bpe", text)
    out = tokenlab.stats(toks["hf-bpe"], text, top_k=3)
    assert out["n_words"] == 8 and out["n_tokens"] == len(ids)
    assert out["fertility"] == pytest.approx(len(ids) / 8)
    assert out["chars_per_token"] == pytest.approx(len(text) / len(ids))
    assert out["bytes_per_token"] == pytest.approx(len(text.encode()) / len(ids))
    assert out["vocab_used"] == len(set(ids))
    assert out["vocab_coverage"] == pytest.approx(len(set(ids)) / VOCAB)
    assert [(t["id"], t["count"]) for t in out["top_tokens"]] == Counter(ids).most_common(3)
    assert out["top_tokens"][0]["share"] == pytest.approx(Counter(ids).most_common(1)[0][1] / len(ids))


def test_stats_over_several_texts(ws, toks):
    texts = ["Anna has 7 bananas.", "", "Q: What is 3 plus 4?"]
    out = tokenlab.stats(toks["hf-unigram"], texts)
    assert out["n_texts"] == 3 and out["n_tokens"] == sum(len(hf_ids(ws, "hf-unigram", t)) for t in texts)
    assert out["n_words"] == 4 + 6


@pytest.mark.parametrize("name", KINDS)
def test_byte_fallback_rate_by_hand(ws, toks, name):
    text = "日本語のテキスト 🎉🎉 naïve Ωmega"  # characters the corpus never had
    ids = hf_ids(ws, name, text)
    pieces = AutoTokenizer.from_pretrained(str(ws.tokenizer(name))).convert_ids_to_tokens(ids)
    if name.endswith("bpe"):  # lone bytes 0x80-0xFF: byte-level characters of those bytes
        from training.tokenizers.bpe import from_byte_level

        fallback = [p for p in pieces if len(from_byte_level(p)) == 1 and from_byte_level(p)[0] >= 0x80]
    elif name == "hf-unigram":
        fallback = [p for p in pieces if p.startswith("<0x") and len(p) == 6]
    else:
        fallback = [p for p in pieces if p == "[UNK]"]
    out = tokenlab.stats(toks[name], text)
    assert len(fallback) > 0
    assert out["byte_fallback_tokens"] == len(fallback)
    assert out["byte_fallback_rate"] == pytest.approx(len(fallback) / len(ids))
    assert out["byte_fallback_definition"] == tokenlab.BYTE_FALLBACK_DEFINITIONS[toks[name].model]
    assert tokenlab.stats(toks[name], "Anna has 7 bananas.")["byte_fallback_rate"] == 0


# --------------------------------------------------------------------------- compare and cost


def test_compare_counts_equal_encode(ws, toks):
    names = ["hf-bpe", "hf-wordpiece", "hf-unigram"]
    out = tokenlab.compare([toks[n] for n in names], TEXT)
    assert [r["name"] for r in out["tokenizers"]] == names
    counts = [len(hf_ids(ws, n, TEXT)) for n in names]
    for row, n_tokens in zip(out["tokenizers"], counts):
        assert row["n_tokens"] == n_tokens == len(row["pieces"]) == len(row["ids"]) == len(row["texts"])
        assert row["chars_per_token"] == pytest.approx(len(TEXT) / n_tokens)
        assert row["vs_fewest"] == pytest.approx(n_tokens / min(counts))
    bpe = out["tokenizers"][0]
    assert "".join(bpe["texts"]).count("\ufffd") > 0  # the emoji is split into bytes
    assert bpe["pieces"] == AutoTokenizer.from_pretrained(str(ws.tokenizer("hf-bpe"))).convert_ids_to_tokens(bpe["ids"])


def test_compare_takes_two_to_four(toks):
    all4 = list(toks.values())
    for bad in (all4[:1], [], all4 + all4[:1]):
        with pytest.raises(UserError, match="tokenizers: compare takes 2 to 4 tokenizers"):
            tokenlab.compare(bad, "hello")
    assert len(tokenlab.compare(all4, "hello")["tokenizers"]) == 4
    short = tokenlab.compare(all4[:2], TEXT, max_tokens=3)["tokenizers"][0]
    assert short["truncated"] and len(short["ids"]) == len(short["pieces"]) == 3 < short["n_tokens"]


def test_cost(ws, toks):
    n = len(hf_ids(ws, "hf-bpe", TEXT))
    out = tokenlab.cost(toks["hf-bpe"], TEXT)
    assert out["n_tokens"] == n and "not quotes" in out["note"]
    assert len(out["presets"]) == len(tokenlab.DEFAULT_PRICE_PRESETS)
    for row, preset in zip(out["presets"], tokenlab.DEFAULT_PRICE_PRESETS):
        assert row["input_cost"] == pytest.approx(n / 1000 * preset["input_per_1k"])
        assert row["output_cost"] == pytest.approx(n / 1000 * preset["output_per_1k"])
    mine = tokenlab.cost(toks["hf-bpe"], TEXT, [{"name": "mine", "input_per_1k": 2, "output_per_1k": 0}])
    assert mine["presets"] == [{"name": "mine", "input_per_1k": 2.0, "output_per_1k": 0.0,
                                "input_cost": pytest.approx(n * 0.002), "output_cost": 0.0}]


@pytest.mark.parametrize("presets, field", [
    ([], "presets"),
    ({"name": "x"}, "presets"),
    ([{"input_per_1k": 1, "output_per_1k": 1}], r"presets\[0\]\.name"),
    ([{"name": "a", "input_per_1k": 1, "output_per_1k": 1}, {"name": "b", "input_per_1k": -1, "output_per_1k": 1}],
     r"presets\[1\]\.input_per_1k"),
    ([{"name": "a", "input_per_1k": 1, "output_per_1k": True}], r"presets\[0\]\.output_per_1k"),
    ([{"name": "a", "input_per_1k": "1", "output_per_1k": 1}], r"presets\[0\]\.input_per_1k"),
])
def test_cost_bad_presets(toks, presets, field):
    with pytest.raises(UserError, match=f"^{field}"):
        tokenlab.cost(toks["hf-bpe"], "hello", presets)


# --------------------------------------------------------------------------- validation


def test_text_validation(toks, monkeypatch):
    tok = toks["hf-bpe"]
    for fn in (tokenlab.inspect, tokenlab.stats, tokenlab.cost):
        with pytest.raises(UserError, match="^texts?: "):
            fn(tok, "")
    with pytest.raises(UserError, match="^texts: no text"):
        tokenlab.stats(tok, ["", ""])
    with pytest.raises(UserError, match="^texts\\[1\\]: expected text"):
        tokenlab.stats(tok, ["a", 3])
    with pytest.raises(UserError, match="^text: not valid Unicode"):
        tokenlab.inspect(tok, "bad \ud800 surrogate")
    monkeypatch.setattr(uploads, "MAX_TEXT_BYTES", 10)
    with pytest.raises(UserError, match="^text: .*the limit is"):
        tokenlab.inspect(tok, "x" * 11)
    with pytest.raises(UserError, match="^text: .*the limit is"):
        tokenlab.inspect(tok, "é" * 6)  # 6 characters, 12 bytes
    with pytest.raises(UserError, match="^texts: .*the limit is"):
        tokenlab.stats(tok, ["x" * 6, "y" * 6])


def test_decode_upload(monkeypatch):
    assert uploads.decode_upload("héllo".encode()) == "héllo"
    assert uploads.decode_upload(b"\xef\xbb\xbfwith bom", "corpus") == "with bom"
    with pytest.raises(UserError, match=r"^corpus: not UTF-8 text \(byte 0xe9 at offset 2\)"):
        uploads.decode_upload(b"hi\xe9 there", "corpus")  # Latin-1, not UTF-8
    with pytest.raises(UserError, match="^file: the text is empty"):
        uploads.decode_upload(b"")
    monkeypatch.setattr(uploads, "MAX_TEXT_BYTES", 4)
    with pytest.raises(UserError, match="^upload: the file is .*the limit is"):
        uploads.decode_upload(b"12345", "upload")


def test_train_validation(tmp_path):
    ws = Workspace(tmp_path)
    docs = ["some text to learn from"] * 10
    with pytest.raises(UserError, match=r"vocab_size must be between 260 \(256 bytes \+ 4 special tokens\)"):
        tokenlab.train(ws, docs, vocab_size=259)
    with pytest.raises(UserError, match=r"vocab_size must be between 261 \(256 bytes \+ 5 special tokens\)"):
        tokenlab.train(ws, docs, model="wordpiece", vocab_size=260)
    with pytest.raises(UserError, match="^model: expected one of bpe, wordpiece, unigram"):
        tokenlab.train(ws, docs, model="sentencepiece")
    with pytest.raises(UserError, match="^trainer: "):
        tokenlab.train(ws, docs, trainer="fast")
    with pytest.raises(UserError, match="^model: the scratch trainer only trains bpe"):
        tokenlab.train(ws, docs, model="unigram", trainer="scratch")
    with pytest.raises(UserError, match="^name: "):
        tokenlab.train(ws, docs, vocab_size=270, name="../escape")
    with pytest.raises(UserError, match="^texts: no text"):
        tokenlab.train(ws, [""], vocab_size=270)
    with pytest.raises(UserError, match="too small for a unigram model of this text"):
        tokenlab.train(ws, docs, model="unigram", vocab_size=300)
    assert tokenlab.list_tokenizers(ws) == []  # nothing half-written
    entry = tokenlab.train(ws, docs, vocab_size=270, trainer="scratch")
    assert entry["name"].startswith("lab-bpe270s-") and entry["trainer"] == "scratch"


# --------------------------------------------------------------------------- other folders


def test_bpe_json_only_folder(tmp_path):
    """A folder saved with training.tokenizers.bpe's own format (no tokenizer.json) works too."""
    from training.tokenizers.bpe import RegexBPE

    ws = Workspace(tmp_path)
    ours = RegexBPE().train(corpus(), 300)
    ours.save(ws.tokenizer("mine"))
    [entry] = tokenlab.list_tokenizers(ws)
    assert (entry["name"], entry["trainer"], entry["model"], entry["vocab_size"]) == ("mine", "scratch", "bpe", 300)
    tok = tokenlab.open_tokenizer(ws, "mine")
    out = tokenlab.inspect(tok, TEXT)
    assert [t["id"] for t in out["tokens"]] == ours.encode(TEXT)
    assert any(t["merge"] and t["merge"]["count"] for t in out["tokens"])
    assert tokenlab.replay(tok, " bananas")["ids"] == ours.encode(" bananas")


def test_foreign_bpe_layout_has_no_merges(tmp_path):
    """A byte-level BPE whose ids follow another layout (no special tokens first): tokens, but no merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder = tmp_path / "tokenizers" / "foreign"
    folder.mkdir(parents=True)
    hf.save(str(folder / "tokenizer.json"))
    ws = Workspace(tmp_path)
    [entry] = tokenlab.list_tokenizers(ws)
    assert (entry["model"], entry["trainer"], entry["vocab_size"]) == ("bpe", "hf", 300)
    tok = tokenlab.open_tokenizer(ws, "foreign")
    assert tok.bpe is None
    out = tokenlab.inspect(tok, "Anna has bananas")
    assert out["n_tokens"] == len(hf.encode("Anna has bananas").ids)
    assert all(t["merge"] is None for t in out["tokens"])
    with pytest.raises(UserError, match="do not follow the playground's byte-level BPE layout"):
        tokenlab.replay(tok, "bananas")
