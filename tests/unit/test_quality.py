"""The Gopher/C4 quality rules: a clean document passes, each rule has a document that
breaks it, and the fast n-gram path agrees with a plain datatrove-style reference."""

import random
from collections import Counter

import pytest

from training.data.config import QualityStage
from training.data.quality import QUALITY_RULES, quality_reason

CLEAN = (
    "The old library on the corner of Main Street reopened last week after a long renovation. "
    "Volunteers spent most of the winter repairing the wooden shelves, replacing broken windows "
    "and sorting thousands of donated books. The reading room now has brighter lamps, new chairs "
    "and a small corner for children, who can listen to stories every Saturday morning. Local "
    "schools have already booked visits for the spring, and the librarian hopes that more families "
    "will discover the building again. Entry remains free, although visitors are welcome to leave "
    "a donation that helps to pay for heating and new books."
)
GERMAN = (
    "Die alte Bibliothek an der Ecke der Hauptstraße wurde letzte Woche nach einer langen Renovierung "
    "wieder eröffnet. Freiwillige haben den größten Teil des Winters damit verbracht, die hölzernen "
    "Regale zu reparieren, kaputte Fenster zu ersetzen und tausende gespendete Bücher zu sortieren. "
    "Der Lesesaal hat jetzt hellere Lampen, neue Stühle und eine kleine Ecke für Kinder, die jeden "
    "Samstagmorgen Geschichten hören können."
)


def _words(rng: random.Random, n: int) -> list[str]:
    """n distinct made-up words of 5-8 letters (filler that repeats nothing)."""
    syllables = ["ba", "ko", "ri", "mel", "tan", "su", "vo", "lin", "dra", "pe", "qua", "zo", "fen", "gu"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syllables) for _ in range(3))[:8])
    return sorted(out, key=lambda _: rng.random())


def _sentences(words: list[str], per: int = 8) -> str:
    """Join words into sentences of `per` words, with two stop words each."""
    chunks = [words[i:i + per] for i in range(0, len(words), per)]
    return " ".join(f"The {' '.join(c)} of it." for c in chunks)


def _doc_top(n: int) -> str:
    """A document whose most frequent n-gram covers ~25% of it, all shorter ones less."""
    rng = random.Random(n)
    # Short-long-short words: the n-gram is much longer than any of its (n-1)-grams.
    gram = " ".join(["abcdefgh", "c" * 12, "de", "f" * 12][:n - 1] + ["gh"])
    filler = _words(rng, 400)
    parts, i = [], 0
    for _ in range(30):
        parts.append(f"{gram} {' '.join(filler[i:i + 4])}.")
        i += 4
    return "The story of the town. " + " ".join(parts)


def _doc_dup(n: int) -> str:
    """A document where a block of n made-up words appears four times, apart."""
    rng = random.Random(100 + n)
    words = _words(rng, 100)
    block = " ".join(words[:n]) + "."
    fill = [_sentences(words[n + 10 * i:n + 10 * i + 10], per=10) for i in range(4)]
    return " ".join(f"{block} {f}" for f in fill)


BROKEN = {
    "curly_bracket": CLEAN + ' The catalogue export looked like {"books": 4000}.',
    "lorem_ipsum": CLEAN + " Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "min_words": "The library reopened. It has new lamps. Children love it.",
    "mean_word_length": "It is so. We go on to it. " * 8,
    "symbol_word_ratio": CLEAN + " #books" * 13,
    "bullet_lines": "\n".join(f"- item {w} of the list for the library." for w in "abcdefghij"),
    "ellipsis_lines": "\n".join(f"Line {w} of the long story about the library" + ("..." if i % 2 else ".")
                                for i, w in enumerate("abcdefghij")),
    "alpha_words": CLEAN + " 12 345 6789" * 10,
    "stop_words": GERMAN,
    "min_sentences": CLEAN.replace(".", ","),
    "dup_lines": "\n".join([f"Sentence {w} is about the reading room of the library." for w in "abcdefghij"]
                           + ["The library is open again."] * 6),
    "dup_line_chars": "\n".join([f"Short line {w} of the text." for w in "abcdefgh"] + [CLEAN] * 2),
    **{f"top_{n}gram": _doc_top(n) for n in (2, 3, 4)},
    **{f"dup_{n}gram": _doc_dup(n) for n in range(5, 11)},
}


def test_clean_documents_pass():
    cfg = QualityStage()
    assert quality_reason(CLEAN, cfg) is None
    assert quality_reason(CLEAN, cfg, lang="en") is None
    assert quality_reason(GERMAN, cfg, lang="de") is None  # the stop-word rule is English-only


def test_every_rule_is_described_and_tested():
    assert set(BROKEN) | {"max_words"} == set(QUALITY_RULES)
    assert all(isinstance(v, str) and v for v in QUALITY_RULES.values())


def _cfg_for(rule: str) -> QualityStage:
    """Default thresholds; for an n-gram rule only that n (a document repeating a long
    n-gram repeats its shorter pieces too, so another n could fire first)."""
    cfg = QualityStage()
    kind, _, n = rule.partition("_")
    if kind in ("top", "dup") and n.endswith("gram"):
        n = int(n[:-4])
        tops = {n: cfg.max_top_ngram_char_fraction[n]} if kind == "top" else {}
        dups = {n: cfg.max_dup_ngram_char_fraction[n]} if kind == "dup" else {}
        cfg = QualityStage(max_top_ngram_char_fraction=tops, max_dup_ngram_char_fraction=dups)
    return cfg


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_rule_rejects_its_document(rule):
    assert quality_reason(BROKEN[rule], _cfg_for(rule)) == rule
    if rule.startswith(("top_", "dup_")) and rule.endswith("gram"):
        # With every n on, some n-gram rule fires, and the document passes everything else.
        assert quality_reason(BROKEN[rule], QualityStage()).endswith("gram")
        off = QualityStage(max_top_ngram_char_fraction={}, max_dup_ngram_char_fraction={})
        assert quality_reason(BROKEN[rule], off) is None


def test_max_words_and_long_words():
    assert quality_reason(CLEAN, QualityStage(max_words=50)) == "max_words"
    long_words = " ".join(["internationalisation characteristically."] * 30)
    assert quality_reason(long_words, QualityStage()) == "mean_word_length"


def test_stop_words_depend_on_language():
    cfg = QualityStage()
    assert quality_reason(GERMAN, cfg, lang=None) == "stop_words"
    assert quality_reason(GERMAN, cfg, lang="en") == "stop_words"
    assert quality_reason(GERMAN, cfg, lang="de") is None
    assert quality_reason(GERMAN, QualityStage(min_stop_words=0)) is None


def test_switches():
    assert quality_reason(BROKEN["curly_bracket"], QualityStage(c4_rules=False)) is None
    assert quality_reason(BROKEN["min_sentences"], QualityStage(c4_rules=False)) is None
    # A maximum of 0 switches its rule off, as in datatrove; so does leaving out an n.
    assert quality_reason(BROKEN["bullet_lines"], QualityStage(max_bullet_lines=0)) != "bullet_lines"
    assert quality_reason(BROKEN["top_3gram"], _cfg_for("top_3gram")) == "top_3gram"
    no_ngrams = QualityStage(max_top_ngram_char_fraction={3: 0.0}, max_dup_ngram_char_fraction={})
    assert quality_reason(BROKEN["top_3gram"], no_ngrams) is None
    assert quality_reason("", QualityStage()) == "min_words"
    assert quality_reason("", QualityStage(min_words=0)) is None


# A plain reference: datatrove's GopherRepetitionFilter n-gram functions on str.split().
def _ref_top(words, n):
    grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def _ref_dup(words, n):
    seen, total, i = set(), 0, 0
    while i < len(words) - n + 1:
        gram = "".join(words[i:i + n])
        if gram in seen:
            total, i = total + len(gram), i + n
        else:
            seen.add(gram)
            i += 1
    return total


def _ref_reason(text, cfg):
    words = text.split()
    for n, f in cfg.max_top_ngram_char_fraction.items():
        if len(words) >= n and _ref_top(words, n) / len(text) > f:
            return f"top_{n}gram"
    for n, f in cfg.max_dup_ngram_char_fraction.items():
        if _ref_dup(words, n) / len(text) > f:
            return f"dup_{n}gram"
    return None


def test_ngram_rules_match_the_reference():
    # Only the n-gram rules on; documents from small vocabularies with planted repeats,
    # so every rule fires sometimes and passes sometimes.
    cfg = QualityStage(min_words=0, c4_rules=False, min_stop_words=0, min_alpha_words=0, min_mean_word_length=0,
                       max_mean_word_length=0, max_symbol_word_ratio=0, max_bullet_lines=0, max_ellipsis_lines=0,
                       max_dup_line_fraction=0, max_dup_line_char_fraction=0)
    rng = random.Random(7)
    seen = Counter()
    for i in range(400):
        vocab = _words(rng, rng.choice([8, 30, 200, 1000]))
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 300))]
        for _ in range(rng.randint(0, 3)):  # paste a copied span somewhere
            a = rng.randrange(len(words))
            span = words[a:a + rng.randint(1, 30)]
            b = rng.randrange(len(words) + 1)
            words[b:b] = span
        text = " ".join(words)
        expected = _ref_reason(text, cfg)
        assert quality_reason(text, cfg) == expected, text
        seen[expected] += 1
    assert seen[None] > 20 and sum(seen[f"dup_{n}gram"] for n in range(5, 11)) > 20
    assert sum(seen[f"top_{n}gram"] for n in (2, 3, 4)) > 20
