"""The from-scratch BPE (training/tokenizers/bpe) against the real Hugging Face `tokenizers` library.

Every parity test trains *both* tokenizers on the same text and compares merges,
vocabulary ids and encodings, so a bug in our trainer cannot hide behind expected
values that were produced by the trainer itself.
"""

from __future__ import annotations

import itertools
import json
import random
import unicodedata
from pathlib import Path

import pytest

from training.errors import UserError
from training.tokenizers import bpe
from training.tokenizers.bpe import (
    ALPHABET,
    BasicBPE,
    RegexBPE,
    Tokenizer,
    best_pair,
    from_byte_level,
    merge_pair,
    merge_word,
    to_byte_level,
    train_bpe_folder,
)
from training.tokenizers.tokenizer import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    load_tokenizer,
    train_tokenizer,
)

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared/data/tinyshakespeare.txt"


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def hf_train(texts, vocab_size, min_frequency=2, use_regex=True):
    """Train with `tokenizers` configured exactly as training/tokenizers/tokenizer.py does."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def hf_model(hf_tok) -> tuple[list[list[str]], dict[str, int]]:
    """(merges, vocab) as serialized in tokenizer.json."""
    model = json.loads(hf_tok.to_str())["model"]
    return model["merges"], model["vocab"]


def our_merges(tok: Tokenizer) -> list[list[str]]:
    return [[tok.token_str(m.left), tok.token_str(m.right)] for m in tok.encoding_merges()]


def assert_same_model(ours: Tokenizer, hf_tok) -> None:
    merges, vocab = hf_model(hf_tok)
    assert len(ours.encoding_merges()) == len(merges)
    for i, (a, b) in enumerate(zip(our_merges(ours), merges)):
        assert a == b, f"merge #{i} differs: ours {a}, Hugging Face {b}"
    assert ours.get_vocab() == vocab


# Building blocks for a corpus that stresses pre-tokenization and byte handling.
_PIECES = [
    "café", "naïve", "Ångström", "über", "façade", "Œuvre", "ñandú",
    "日本語", "中文字符", "東京", "한국어", "ひらがな", "カタカナ",
    "مرحبا", "بالعالم", "שלום", "Привет", "мир", "Ελληνικά", "हिन्दी",
    "👩‍👩‍👧", "👨‍💻", "👍🏽", "👋🏿", "🏳️‍🌈", "🇫🇷", "❤️", "🎉", "😀😀😀",
    "   ", "\t\t", "\t", "\n\n\n", "\n", " \n ", "\r\n", "  \t \n",
    "12345", "3.14159", "1,000,000", "٣٤٥", "²", "Ⅻ", "007",
    "don't", "we'll", "it's", "I'M", "you're", "they've", "he'd", "'s", "''",
    "!!!", "?!", "...", "---", "((x))", "#$%", "«»", "—", "\"quoted\"", "a+b=c", "<|endoftext|>",
    "the", " the", "The", "a", "x", "hello", "world",
]
_SEPARATORS = ["", " ", " ", "  ", "\n", "\t", "   "]


def unicode_corpus(n_docs: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        parts = []
        for _ in range(rng.randint(5, 40)):
            parts.append(rng.choice(_PIECES))
            parts.append(rng.choice(_SEPARATORS))
        docs.append("".join(parts))
    return docs


def _any_char(rng: random.Random, assigned_long_ago: bool) -> str:
    while True:
        ch = chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
        # Characters added in recent Unicode versions can be classified differently
        # (letter or not) by Python's `regex` and by the older Unicode tables in the
        # Rust engine of `tokenizers` (see RegexBPE's docstring). Characters that
        # were already assigned in Unicode 3.2 are classified alike everywhere.
        if not assigned_long_ago or unicodedata.ucd_3_2_0.category(ch) != "Cn":
            return ch


def random_unicode(rng: random.Random, n: int, assigned_long_ago: bool = False) -> str:
    """Random text mixing ASCII, whitespace, accents, scripts, emoji and any other code point."""
    pools = [
        lambda: chr(rng.randint(0x20, 0x7E)),
        lambda: rng.choice(" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000"),
        lambda: chr(rng.randint(0xA0, 0x24F)),
        lambda: chr(rng.randint(0x4E00, 0x4FFF)),
        lambda: chr(rng.randint(0x600, 0x6FF)),
        lambda: chr(rng.randint(0x1F300, 0x1F6FF)),
        lambda: "\u200d",
        lambda: _any_char(rng, assigned_long_ago),
    ]
    return "".join(rng.choice(pools)() for _ in range(n))


# --------------------------------------------------------------------------- #
# Parity with Hugging Face on tinyshakespeare
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def shakespeare() -> str:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} not found (the shared tinyshakespeare.txt data file is not on this machine)")
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def shakespeare_pair(shakespeare):
    """vocab_size -> (ours, Hugging Face), trained once per module."""
    cache = {}

    def get(vocab_size):
        if vocab_size not in cache:
            cache[vocab_size] = (RegexBPE().train(shakespeare, vocab_size), hf_train([shakespeare], vocab_size))
        return cache[vocab_size]

    return get


@pytest.mark.parametrize("vocab_size", [1024, 4096])
def test_shakespeare_merges_and_vocab_match_hf(shakespeare_pair, vocab_size):
    ours, hf = shakespeare_pair(vocab_size)
    assert ours.vocab_size == vocab_size
    assert_same_model(ours, hf)


@pytest.mark.parametrize("vocab_size", [1024, 4096])
def test_shakespeare_encoding_matches_hf(shakespeare, shakespeare_pair, vocab_size):
    ours, hf = shakespeare_pair(vocab_size)
    ids = ours.encode(shakespeare)
    assert ids == hf.encode(shakespeare).ids
    assert ours.decode(ids) == shakespeare


def test_shakespeare_documents_match_train_tokenizer(tmp_path, shakespeare):
    """Several documents, through the real `train_tokenizer`: the saved files are identical."""
    docs = shakespeare[:300_000].split("\n\n")
    theirs = train_tokenizer(docs, 800, tmp_path / "hf")
    ours = train_bpe_folder(iter(docs), 800, tmp_path / "ours")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    meta, their_meta = (json.loads((d / "training_meta.json").read_text()) for d in (ours, theirs))
    assert (meta.pop("trainer"), their_meta.pop("trainer")) == ("scratch", "hf")
    meta.pop("tokenizer_class")
    assert meta == their_meta  # same model, counts, hash, sizes and special token ids
    assert meta["model"] == "bpe"
    # Our folder also keeps our own format (bpe.json), with the merge counts.
    loaded = Tokenizer.load(ours)
    assert loaded.vocab_size == 800 and all(m.count >= 2 for m in loaded.merges)
    assert loaded.encode(docs[1]) == load_tokenizer(theirs).encode(docs[1], add_special_tokens=False)


# --------------------------------------------------------------------------- #
# Parity on a hand-built unicode corpus
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("min_frequency", [1, 2])
@pytest.mark.parametrize("vocab_size", [500, 2000])
def test_unicode_corpus_matches_hf(min_frequency, vocab_size):
    docs = unicode_corpus()
    ours = RegexBPE().train(docs, vocab_size, min_frequency=min_frequency)
    hf = hf_train(docs, vocab_size, min_frequency)
    assert_same_model(ours, hf)
    if min_frequency == 1 and vocab_size == 2000:
        assert ours.vocab_size < vocab_size  # ran out of pairs: the stopping rule is exercised too

    rng = random.Random(vocab_size + min_frequency)
    unseen = unicode_corpus(30, seed=99) + ["".join(rng.choice(_PIECES) for _ in range(20)) for _ in range(30)]
    for text in docs[:50] + unseen:
        assert ours.encode(text) == hf.encode(text).ids, repr(text)


def test_random_unicode_matches_hf_and_round_trips():
    docs = unicode_corpus(200, seed=1)
    ours = RegexBPE().train(docs, 1000, min_frequency=1)
    hf = hf_train(docs, 1000, 1)
    rng = random.Random(0)
    for _ in range(300):
        text = random_unicode(rng, rng.randint(0, 60))
        ids = ours.encode(text)
        assert ours.decode(ids) == text
        assert ours.decode_bytes(ids) == text.encode("utf-8")
        text = random_unicode(rng, rng.randint(0, 60), assigned_long_ago=True)
        assert ours.encode(text) == hf.encode(text).ids, repr(text)


# --------------------------------------------------------------------------- #
# The rules learners get wrong
# --------------------------------------------------------------------------- #


def test_tie_break_smallest_id_pair_like_hf():
    # Every pair occurs once: a four-way tie. Hugging Face picks the smallest
    # (left id, right id). Byte ids follow the code point of the byte-level
    # character, so the space ("Ġ", U+0120) comes *after* the letters; sorting the
    # raw bytes (" " < "a") or taking the first pair seen ("zy") would both differ.
    docs = ["zy", " x", "ac", "ab"]
    hf = hf_train(docs, 264, min_frequency=1)
    hf_merges, _ = hf_model(hf)
    assert hf_merges == [["a", "b"], ["a", "c"], ["z", "y"], ["Ġ", "x"]]  # documents HF's rule
    ours = RegexBPE().train(docs, 264, min_frequency=1)
    assert our_merges(ours) == hf_merges
    counts = {(ours.token_id("z"), ours.token_id("y")): 1, (ours.token_id("a"), ours.token_id("b")): 1}
    assert best_pair(counts) == (ours.token_id("a"), ours.token_id("b"))


def test_ids_layout_like_hf():
    ours = RegexBPE()
    assert [ours.token_str(i) for i in range(4)] == SPECIAL_TOKENS
    assert [ours.token_str(i) for i in range(4, 260)] == ALPHABET == sorted(ALPHABET)
    _, vocab = hf_model(hf_train(["ab"], 260))
    assert ours.get_vocab() == vocab


def test_merging_is_left_to_right_non_overlapping():
    assert merge_pair([7, 7, 7], (7, 7), 9) == [9, 7]
    assert merge_pair([7, 7, 7, 7], (7, 7), 9) == [9, 9]
    word = [1, 7, 7, 7, 2]
    changes = merge_word(word, 7, 7, 9)
    assert word == [1, 9, 7, 2]
    net = {}
    for pair, change in changes:
        net[pair] = net.get(pair, 0) + change
    # (1,7) -> (1,9); the middle (7,7) is consumed; (7,2) stays.
    assert {p: c for p, c in net.items() if c} == {(1, 7): -1, (1, 9): 1, (7, 7): -1, (9, 7): 1}
    # Runs of one character through both trainers.
    docs = ["aaaaaaa", "aaa", "aaaaa", "  ", "     ", "!!!!!!!"] * 3
    assert_same_model(RegexBPE().train(docs, 300, 1), hf_train(docs, 300, 1))


def test_special_token_text_while_training_and_reused_ids():
    """HF treats special token strings as plain text when training; without
    pre-tokenization the bytes of "<|pad|>" even merge *into the special token's id*."""
    text = "<|pad|>x<|pad|>y<|pad|>z<|pad|>" * 5 + "hello <|endoftext|> world <|endoftext|>" * 3
    ours = BasicBPE().train(text, 300)
    hf = hf_train([text], 300, use_regex=False)
    assert_same_model(ours, hf)
    assert any(m.new_id == 1 for m in ours.merges)  # the reused-id case is really exercised
    for t in (text, "a<|pad|>b", "<|pad", "<|pad|"):
        assert ours.encode(t) == hf.encode(t).ids


# --------------------------------------------------------------------------- #
# Special tokens, encode/decode API
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def small():
    docs = unicode_corpus(150, seed=3)
    return RegexBPE().train(docs, 600), hf_train(docs, 600), docs


def test_special_tokens(small):
    ours, hf, _ = small
    chat = "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    ids = ours.encode(chat)
    assert ids == hf.encode(chat).ids
    assert ids[0] == 2 and ids.count(3) == 1 and ids.count(2) == 2
    assert ours.decode(ids) == chat

    plain = ours.encode(chat, allowed_special="none")
    assert plain == ours.encode_ordinary(chat) and not set(plain) & {0, 1, 2, 3}
    assert ours.decode(plain) == chat

    only_start = ours.encode(chat, allowed_special={"<|im_start|>"})
    assert only_start.count(2) == 2 and 3 not in only_start and ours.decode(only_start) == chat
    assert ours.encode("a<|endoftext|><|endoftext|>b")[1:3] == [0, 0]
    with pytest.raises(ValueError, match="not special"):
        ours.encode("x", allowed_special={"<|nope|>"})


def test_decode_partial_utf8_replaces(small):
    ours, _, _ = small
    ids = ours.encode("日")
    raw = b"".join(ours.token_bytes(i) for i in ids)
    assert ours.decode_bytes(ids) == "日".encode() == raw
    first_byte = ours.byte_ids[raw[0]]
    assert ours.decode([first_byte]) == "\ufffd"
    assert from_byte_level(to_byte_level(bytes(range(256)))) == bytes(range(256))


def test_save_load_round_trip(tmp_path, small):
    ours, _, docs = small
    out = ours.save(tmp_path / "tok")
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # atomic: no temp folders left
    data = json.loads((out / "bpe.json").read_text(encoding="utf-8"))
    assert data["type"] == "RegexBPE" and data["merges"][0] == [*our_merges(ours)[0], ours.merges[0].count]
    back = Tokenizer.load(out)
    assert type(back) is RegexBPE
    assert back.get_vocab() == ours.get_vocab() and back.merges == ours.merges
    assert back.info == ours.info
    for text in docs[:20]:
        assert back.encode(text) == ours.encode(text)

    basic = BasicBPE().train("the cat sat on the mat, the cat sat", 280)
    again = Tokenizer.load(basic.save(tmp_path / "basic"))
    assert type(again) is BasicBPE and again.merges == basic.merges and again.pattern is None


def test_replay_ends_at_encode(small):
    ours, _, _ = small
    words = [p for doc in unicode_corpus(20, seed=5) for p in ours.pre_tokenize(doc)]
    assert len(words) > 100
    for word in words:
        steps = ours.replay(word)
        assert steps[0].merge is None and steps[0].tokens == [bytes([b]) for b in word.encode()]
        assert steps[-1].ids == ours.encode_ordinary(word)
        for prev, step in itertools.pairwise(steps):
            assert len(step.ids) == len(prev.ids) - 1
            assert b"".join(step.tokens) == word.encode()
            i, m = step.position, step.merge
            assert (prev.ids[i], prev.ids[i + 1]) == (m.left, m.right) and step.ids[i] == m.new_id
    with pytest.raises(ValueError, match="several pieces"):
        ours.replay("two words")


def test_each_token_remembers_its_merge(small):
    ours, _, _ = small
    for token_id in range(260, ours.vocab_size):
        m = ours.merge_of(token_id)
        assert m.new_id == token_id and ours.merges[m.rank] == m and m.count >= 2
        assert ours.token_bytes(m.left) + ours.token_bytes(m.right) == ours.token_bytes(token_id)
    assert ours.merge_of(4) is None and ours.merge_of(0) is None


def test_progress_callback():
    calls = []
    tok = RegexBPE().train(unicode_corpus(50), 500, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (len(tok.merges), len(tok.merges))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --------------------------------------------------------------------------- #
# Exports: Hugging Face folder, tiktoken
# --------------------------------------------------------------------------- #


def test_to_hf_loads_with_autotokenizer(tmp_path, small):
    from transformers import AutoTokenizer

    ours, _, docs = small
    out = bpe.save_hf_folder(ours, tmp_path / "hf")
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["trainer"] == "scratch" and meta["actual_vocab_size"] == ours.vocab_size
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3]
    assert tok.bos_token_id == 0 and tok.eos_token_id == 0 and tok.pad_token_id == 1
    for text in docs[:30] + ["<|im_start|>user\nhé 👋🏿<|im_end|>\n"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert ids == ours.encode(text)
        assert tok.decode(ids) == text

    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    rendered = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert rendered == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    chat = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    chat_ids = chat["input_ids"] if hasattr(chat, "keys") else chat  # a BatchEncoding in transformers 5
    assert list(chat_ids) == ours.encode(rendered)


@pytest.mark.parametrize("kind", ["basic", "digits", "letters-only"])
def test_to_hf_other_pre_tokenizers(tmp_path, kind):
    """No pre-tokenization, and custom patterns (one that leaves gaps between matches)."""
    from transformers import AutoTokenizer

    text = "low lower lowest 12345 newer newest 2024 wider widest! " * 20
    if kind == "basic":
        ours = BasicBPE().train(text, 300)
    else:
        pattern = r" ?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+" if kind == "digits" else r"\p{L}+"
        ours = RegexBPE(pattern).train(text, 300)
    tok = AutoTokenizer.from_pretrained(str(bpe.save_hf_folder(ours, tmp_path / kind)))
    for t in (text, "slowest widener 99999", "new\n low, 7"):
        ids = ours.encode(t)
        assert tok.encode(t, add_special_tokens=False) == ids
        assert ours.decode(ids) == t


def test_tiktoken_matches_ours(shakespeare, shakespeare_pair):
    ours, _ = shakespeare_pair(1024)
    enc = bpe.to_tiktoken(ours)
    sample = shakespeare[:300_000]
    # tiktoken joins any two neighbours whose bytes form a token, a merge list only
    # the learned pairs; on this text the two never disagree.
    assert enc.encode_ordinary(sample) == ours.encode_ordinary(sample)
    chat = "<|im_start|>user\nTo be<|im_end|>"
    assert enc.encode(chat, allowed_special="all") == ours.encode(chat)
    assert enc.decode(ours.encode(sample[:5000])) == sample[:5000]


def test_tiktoken_on_unicode_rate(small):
    ours, _, docs = small
    enc = bpe.to_tiktoken(ours)
    pieces = sorted({p for d in docs + unicode_corpus(100, seed=7) for p in ours.pre_tokenize(d)})
    differ = [p for p in pieces if enc.encode_ordinary(p) != ours.encode_ordinary(p)]
    assert len(differ) <= 0.01 * len(pieces), differ[:10]


# --------------------------------------------------------------------------- #
# BasicBPE and user errors
# --------------------------------------------------------------------------- #


def test_basic_bpe_learns_and_round_trips():
    text = "the cat sat on the mat. the cat ate the rat. " * 10 + "naïve café 日本 🎉"
    tok = BasicBPE().train(text, 300)
    assert 260 < tok.vocab_size <= 300
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) / 3  # it really compresses
    assert tok.decode(ids) == text
    rng = random.Random(1)
    for _ in range(50):
        s = random_unicode(rng, 30)
        assert tok.decode(tok.encode(s)) == s
    # A pre-tokenizer-free BPE merges across spaces; matches HF with use_regex=False.
    assert_same_model(tok, hf_train([text], 300, use_regex=False))
    assert any(b" " in tok.token_bytes(i)[1:-1] for i in range(260, tok.vocab_size))


@pytest.mark.parametrize("bad", [100, 259, 2_000_000, "4096", 3.5])
def test_bad_vocab_size(tmp_path, bad):
    with pytest.raises(UserError, match="vocab_size"):
        train_bpe_folder(["some text"], bad, tmp_path / "t")
    with pytest.raises(UserError, match="vocab_size"):
        RegexBPE().train("some text", bad)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("texts", [[], [""], iter(())])
def test_no_text_is_a_user_error(tmp_path, texts):
    with pytest.raises(UserError, match="no text"):
        train_bpe_folder(texts, 300, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_other_user_errors(tmp_path):
    with pytest.raises(UserError, match="min_frequency"):
        train_bpe_folder(["x"], 300, tmp_path / "t", min_frequency=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="mine"):
        train_bpe_folder(["x y"] * 10, 300, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
