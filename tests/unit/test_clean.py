"""Cleaning stages without Ray: normalisation, exact keys, language ID, near-dedup.
(Quality rules: test_quality.py; PII: test_pii.py.)"""

import random

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from training.data import dedup
from training.data.config import (
    ExactDedupStage,
    LanguageStage,
    NearDedupStage,
    NormalizeStage,
)
from training.data.langid import LanguageDetector, language_reason
from training.data.normalize import exact_key, normalize
from training.errors import UserError

# ---------------------------------------------------------------- normalize

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # ZWJ sequence
HEART = "\u2764\ufe0f"  # with a variation selector
ENGLAND = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"  # tag sequence


def test_normalize_nfc_controls_and_emoji():
    cfg = NormalizeStage()
    assert normalize("cafe\u0301", cfg) == "caf\u00e9"
    assert normalize("\ufeffa\x00b\x07c\u200bd\u00ade\u202ef\x9f", cfg) == "abcdef"
    assert normalize("a\tb\nc", NormalizeStage(whitespace=False)) == "a\tb\nc"  # tab and newline survive
    emoji = f"Family {FAMILY}, love {HEART}, flag {ENGLAND}; \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert normalize(emoji, cfg) == emoji  # ZWJ, VS16, tags and ZWNJ (Persian) are kept
    assert normalize("e\u200b\u0301", cfg) == "\u00e9"  # the control step runs before NFC


def test_normalize_whitespace_and_line_endings():
    cfg = NormalizeStage()
    text = "  Hello \t  world\u00a0\u00a0again  \r\nline two\u3000end \rthree\n\n\n\n\nfour\u2028five  \n  "
    assert normalize(text, cfg) == "Hello world again\nline two end\nthree\n\nfour\nfive"
    assert normalize(" a\n \n \n \nb ", cfg) == "a\n\nb"  # space-only lines are blank lines
    assert normalize("x\n\n y", cfg) == "x\n\n y"  # leading indentation: one space stays


def test_normalize_switches_leave_their_aspect_alone():
    messy = "cafe\u0301  \t x\x00\u200b\n\n\n\ny  "
    assert normalize(messy, NormalizeStage(nfc=False, control=False, whitespace=False)) == messy
    assert normalize(messy, NormalizeStage(nfc=False)) == "cafe\u0301 x\n\ny"
    assert normalize(messy, NormalizeStage(control=False)) == "caf\u00e9 x\x00\u200b\n\ny"
    assert normalize(messy, NormalizeStage(whitespace=False)) == "caf\u00e9  \t x\n\n\n\ny  "


def test_exact_key():
    cfg = ExactDedupStage()
    assert exact_key("Hello", cfg) == exact_key("Hello", cfg) != exact_key("hello", cfg)
    assert len(exact_key("Hello", cfg)) == 32 and int(exact_key("Hello", cfg), 16) >= 0
    lower = ExactDedupStage(lowercase=True)
    assert exact_key("Hello", lower) == exact_key("hELLO", lower)
    assert exact_key("bad \ud800 surrogate", cfg)  # no UnicodeEncodeError


# ---------------------------------------------------------------- language ID

PARAGRAPHS = {
    "en": "The small bakery at the end of our street opens every morning at six. People queue outside "
          "for fresh bread and warm rolls, and the owner knows most of them by name. On Sundays she also "
          "bakes apple cakes that sell out before noon.",
    "de": "Die kleine Bäckerei am Ende unserer Straße öffnet jeden Morgen um sechs Uhr. Die Leute stehen "
          "draußen Schlange für frisches Brot und warme Brötchen, und die Besitzerin kennt die meisten beim "
          "Namen. Sonntags backt sie außerdem Apfelkuchen, die vor Mittag ausverkauft sind.",
    "fr": "La petite boulangerie au bout de notre rue ouvre tous les matins à six heures. Les gens font la "
          "queue dehors pour du pain frais et des petits pains chauds, et la propriétaire connaît la plupart "
          "d'entre eux par leur nom. Le dimanche, elle prépare aussi des gâteaux aux pommes.",
    "es": "La pequeña panadería al final de nuestra calle abre todas las mañanas a las seis. La gente hace "
          "cola afuera para comprar pan fresco y bollos calientes, y la dueña conoce a casi todos por su "
          "nombre. Los domingos también hornea pasteles de manzana que se agotan antes del mediodía.",
    "it": "La piccola panetteria in fondo alla nostra strada apre ogni mattina alle sei. La gente fa la fila "
          "fuori per il pane fresco e i panini caldi, e la proprietaria conosce quasi tutti per nome. La "
          "domenica prepara anche torte di mele che finiscono prima di mezzogiorno.",
    "pt": "A pequena padaria no fim da nossa rua abre todas as manhãs às seis horas. As pessoas fazem fila "
          "do lado de fora para comprar pão fresco e pãezinhos quentes, e a dona conhece quase todos pelo "
          "nome. Aos domingos ela também faz bolos de maçã que acabam antes do meio-dia.",
    "nl": "De kleine bakkerij aan het einde van onze straat gaat elke ochtend om zes uur open. Mensen staan "
          "buiten in de rij voor vers brood en warme broodjes, en de eigenares kent de meesten bij naam. Op "
          "zondag bakt ze ook appeltaarten die voor de middag uitverkocht zijn.",
}


DETECTORS = pytest.mark.parametrize("detector", ["fasttext", "lingua"])


@DETECTORS
def test_detects_seven_languages(detector):
    found = LanguageDetector(LanguageStage(detector=detector)).detect(list(PARAGRAPHS.values()))
    assert [code for code, _ in found] == list(PARAGRAPHS)
    assert all(0.5 <= conf <= 1.0 for _, conf in found)


@DETECTORS
def test_no_letters_and_low_confidence_are_unknown(detector):
    det = LanguageDetector(LanguageStage(detector=detector))
    assert det.detect(["12345 678 90", "", "!!! ... ???", PARAGRAPHS["en"]])[:3] == [(None, 0.0)] * 3
    strict = LanguageDetector(LanguageStage(detector=detector, candidates=["en", "de"], min_confidence=1.0))
    code, conf = strict.detect(["Hallo and welcome"])[0]
    assert code is None and 0.0 < conf < 1.0  # the confidence is still reported
    assert LanguageDetector(LanguageStage(detector=detector, max_chars=5)).detect([PARAGRAPHS["de"]]) != \
        LanguageDetector(LanguageStage(detector=detector)).detect([PARAGRAPHS["de"]])  # only the head is read


@DETECTORS
def test_candidates_restrict_the_choice(detector):
    det = LanguageDetector(LanguageStage(detector=detector, keep=["en"], candidates=["EN", "de"]))
    found = det.detect([PARAGRAPHS["en"], PARAGRAPHS["de"], PARAGRAPHS["fr"], PARAGRAPHS["nl"]])
    assert [c for c, _ in found[:2]] == ["en", "de"]
    assert {c for c, _ in found[2:]} <= {"en", "de", None}
    # One process-wide model (per candidate set for lingua), whatever the order or case.
    assert det._detector is LanguageDetector(LanguageStage(detector=detector, candidates=["de", "en"]))._detector


@DETECTORS
@pytest.mark.parametrize("kwargs, field", [
    ({"candidates": ["en", "xx"]}, "stages.language.candidates: unknown language code 'xx'"),
    ({"keep": ["english"]}, "stages.language.keep: unknown language code 'english'"),
    ({"keep": ["fr"], "candidates": ["en", "de"]}, "stages.language.keep: 'fr' is not among"),
    ({"candidates": ["en"]}, "stages.language.candidates: list at least two"),
])
def test_bad_codes_are_user_errors(kwargs, field, detector):
    with pytest.raises(UserError, match=field):
        LanguageDetector(LanguageStage(detector=detector, **kwargs))


def test_fasttext_knows_176_languages_lingua_75():
    assert LanguageDetector(LanguageStage(keep=["ceb"])).cfg.keep == ["ceb"]  # Cebuano: fastText only
    with pytest.raises(UserError, match="unknown language code 'ceb'"):
        LanguageDetector(LanguageStage(detector="lingua", keep=["ceb"]))


def test_language_reason():
    cfg = LanguageStage(keep=["en", "de"])
    assert language_reason("en", cfg) is None and language_reason("de", cfg) is None
    assert language_reason("fr", cfg) == "lang:fr"
    assert language_reason(None, cfg) == "lang:unknown"
    assert language_reason(None, LanguageStage(keep_unknown=True)) is None


# ---------------------------------------------------------------- near-dedup

def _text(seed, n=300):
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo") for b in ("ber", "dan", "fel",
             "gor", "han", "jil", "kem", "lur", "mop", "nix", "pal", "rud", "sek", "tam", "wib", "zor")]
    return " ".join(rng.choice(vocab) for _ in range(n))


def _edit(text, k, seed=0):
    words = text.split()
    for i in random.Random(seed).sample(range(len(words)), k):
        words[i] = f"changed{i}"
    return " ".join(words)


def test_shingles():
    assert dedup.shingles("The cat  sat on THE mat", 3) == [b"the cat sat", b"cat sat on", b"sat on the", b"on the mat"]
    assert dedup.shingles("Two words", 5) == [b"two words"]
    assert dedup.shingles(" \n ", 5) == []
    assert dedup.shingles("Grüße aus Köln", 2) == ["grüße aus".encode(), "aus köln".encode()]


def test_signatures_and_estimated_jaccard():
    cfg = NearDedupStage()
    base = _text(1)
    texts = [base, base, _edit(base, 30), _edit(base, 90), _text(2), ""]
    sigs = dedup.signatures(texts, cfg)
    assert sigs.shape == (6, cfg.num_perm) and sigs.dtype == np.uint64
    assert np.array_equal(sigs[0], sigs[1])
    assert np.array_equal(dedup.signatures([base], cfg)[0], sigs[0])  # batch-independent
    assert not np.array_equal(dedup.signatures([base], NearDedupStage(seed=2))[0], sigs[0])
    ref = set(dedup.shingles(base, cfg.ngram))
    for i in (2, 3, 4):
        other = set(dedup.shingles(texts[i], cfg.ngram))
        exact = len(ref & other) / len(ref | other)
        assert abs(dedup.estimated_jaccard(sigs[0], sigs[i]) - exact) < 0.1
    assert dedup.estimated_jaccard(sigs[0], sigs[0]) == 1.0


def test_near_duplicate_shares_a_bucket():
    cfg = NearDedupStage(threshold=0.8)
    bands, rows = dedup.lsh_params(cfg)
    base = _text(3)
    sigs = dedup.signatures([base, _edit(base, 2), _text(4)], cfg)
    keys = dedup.band_hashes(sigs, bands, rows)
    assert keys.shape == (3, bands) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).any()  # 2 of 300 words changed: a candidate pair
    assert not (keys[0] == keys[2]).any()  # unrelated text: no shared band


def test_band_hashes_equal_bands_equal_hashes():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(4, 128), dtype=np.uint64)
    sigs[1, :13] = sigs[0, :13]  # same first band
    sigs[3] = sigs[2]
    keys = dedup.band_hashes(sigs, 9, 13)
    assert keys[0, 0] == keys[1, 0] and (keys[0, 1:] != keys[1, 1:]).all()
    assert np.array_equal(keys[2], keys[3])
    assert len(np.unique(keys[[0, 2]])) == 18  # different bands, different hashes
    with pytest.raises(ValueError):
        dedup.band_hashes(sigs, 20, 13)


@pytest.mark.parametrize("threshold, num_perm", [(0.8, 128), (0.7, 128), (0.5, 64), (0.9, 256), (0.85, 100)])
def test_lsh_params_match_datasketch(threshold, num_perm):
    expected = _optimal_param(threshold, num_perm, 0.5, 0.5)
    assert dedup.lsh_params(NearDedupStage(threshold=threshold, num_perm=num_perm)) == expected
    assert dedup._optimal_param_fallback(threshold, num_perm) == expected
    assert dedup.lsh_params(NearDedupStage(bands=4, rows=8)) == (4, 8)


def test_union_find_and_clusters():
    uf = dedup.UnionFind()
    for a, b in [("a", "b"), ("c", "d"), ("b", "c"), ("x", "y")]:
        uf.union(a, b)
    assert uf.find("a") == uf.find("d") != uf.find("x")
    assert sorted(sorted(g) for g in uf.groups().values()) == [["a", "b", "c", "d"], ["x", "y"]]
    buckets = [[5, 3], [3, 9], [9, 12], [7], [20, 21, 22], [8, 8], [12, 40]]
    assert dedup.clusters_from_buckets(buckets) == {
        3: 3, 5: 3, 9: 3, 12: 3, 40: 3,  # a chain merges transitively; the smallest id represents it
        20: 20, 21: 20, 22: 20,
    }
    assert dedup.clusters_from_buckets([]) == {}
