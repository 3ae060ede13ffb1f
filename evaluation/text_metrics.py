"""Text-overlap metrics: how close generated text is to a reference, word by word or character by character.

Each metric is computed by the library that defines it (sacrebleu, rouge-score, nltk) and pinned to it in
tests/unit/test_metrics.py; only exact match and token F1, which SQuAD defines in a few lines of its
evaluation script, are written out here. Every function takes two equally long lists of strings, the
i-th prediction scored against the i-th reference, and returns one number (`rouge`: a dict of three).

Scales differ, as they do in papers: BLEU, chrF and TER are on sacrebleu's 0-100 scale, the rest 0-1.
Higher is better for all but TER, an edit rate (edits per reference word, x100; it can pass 100).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import string
import tempfile
from collections import Counter
from pathlib import Path


def _check(predictions: list[str], references: list[str]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references are lists of strings, one per example, not strings")
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references, at least one: got {len(predictions)} "
                         f"predictions and {len(references)} references")


# --------------------------------------------------------------------------- sacrebleu: BLEU, chrF, TER


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU, 0-100: the geometric mean of 1- to 4-gram precisions, times a brevity penalty.

    sacrebleu's defaults (13a tokenisation, exponential smoothing). Corpus-level: n-gram counts are
    summed over all pairs before the mean is taken, which is not the mean of sentence scores.

    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 1)
    100.0
    >>> round(bleu(["the cat is on the mat"], ["the cat sat on the mat"]), 1)
    38.0
    """
    from sacrebleu.metrics import BLEU

    _check(predictions, references)
    return float(BLEU().corpus_score(list(predictions), [list(references)]).score)


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF, 0-100: F-score (recall weighted twice) of character 1- to 6-grams (sacrebleu's CHRF).

    Kinder than BLEU to a word with the wrong ending, since most of its characters still match.

    >>> round(chrf(["the cat is on the mat"], ["the cat sat on the mat"]), 1)
    61.9
    """
    from sacrebleu.metrics import CHRF

    _check(predictions, references)
    return float(CHRF().corpus_score(list(predictions), [list(references)]).score)


def ter(predictions: list[str], references: list[str]) -> float:
    """Corpus TER, 0-100 and lower is better: word edits (insert, delete, substitute, shift a block)
    per reference word (sacrebleu's TER).

    >>> round(ter(["the cat is on the mat"], ["the cat sat on the mat"]), 1)  # 1 edit / 6 words
    16.7
    """
    from sacrebleu.metrics import TER

    _check(predictions, references)
    return float(TER().corpus_score(list(predictions), [list(references)]).score)


# --------------------------------------------------------------------------- rouge-score: ROUGE-1/2/L


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures, 0-1, each the mean over pairs (rouge-score, with its
    Porter stemmer on, so "sat" and "sitting" stay different but "cats" and "cat" match).

    ROUGE-n counts shared n-grams; ROUGE-L the longest common subsequence of words.

    >>> {k: round(v, 2) for k, v in rouge(["the cat is on the mat"], ["the cat sat on the mat"]).items()}
    {'rouge1': 0.83, 'rouge2': 0.6, 'rougeL': 0.83}
    """
    from rouge_score import rouge_scorer

    _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]  # (target, prediction)
    return {k: sum(s[k].fmeasure for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")}


# --------------------------------------------------------------------------- nltk: METEOR, with WordNet

WORDNET_HOME = Path("/usr/share/wordnet")  # Debian's `wordnet-base`: the WordNet 3.0 database files
NLTK_DATA = Path.home() / ".cache" / "llm-playground" / "nltk_data"
NO_WORDNET = ("METEOR needs WordNet 3.0: `apt-get install wordnet-base` (`make wordnet` does it; `make test` "
              "runs it) or set WORDNET_DIR to a WordNet 3.0 dict folder")
# nltk's reader also opens two files Debian does not ship: `lexnames`, the 45 lexicographer files of
# WordNet 3.0 in this order (man 5 lexnames), which we write; and `index.sense` (sense key -> synset, for
# `lemma_from_key` and for mapping the multilingual Open WordNet), which we write empty: those two then find
# nothing, while the synsets, lemmas and morphology METEOR looks up all come from the other files.
LEXNAMES = ["adj.all", "adj.pert", "adv.all", *(f"noun.{n}" for n in (
    "Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event", "feeling",
    "food", "group", "location", "motive", "object", "person", "phenomenon", "plant", "possession", "process",
    "quantity", "relation", "shape", "state", "substance", "time")), *(f"verb.{n}" for n in (
    "body", "change", "cognition", "communication", "competition", "consumption", "contact", "creation",
    "emotion", "motion", "perception", "possession", "social", "stative", "weather")), "adj.ppl"]
# The database files nltk's reader reads (and cntlist.rev, for Lemma.count, where there is one).
WORDNET_FILES = [f for pos in ("noun", "verb", "adj", "adv") for f in (f"data.{pos}", f"index.{pos}", f"{pos}.exc")]


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None


def prepare_wordnet(source: Path, nltk_data: Path = NLTK_DATA) -> Path:
    """Make `nltk_data/corpora/wordnet/` from a WordNet 3.0 dict folder: copies of its files (nltk refuses
    symlinks that leave its root), plus `lexnames` and `index.sense` where it has none (see above).
    Returns `nltk_data`, for `nltk.data.path`; a second call finds the copies up to date and does nothing."""
    if not all((source / f).is_file() for f in WORDNET_FILES):
        raise RuntimeError(f"{NO_WORDNET} ({source} has no WordNet 3.0 database)")
    target = nltk_data / "corpora" / "wordnet"
    names = WORDNET_FILES + [f for f in ("cntlist.rev", "lexnames", "index.sense") if (source / f).is_file()]
    if all((target / f).is_file() for f in ("lexnames", "index.sense")) and \
            all(_stamp(target / f) == _stamp(source / f) for f in names):
        return nltk_data
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))  # build aside, then swap in
    tmp.chmod(0o755)
    for f in names:
        shutil.copy2(source / f, tmp / f)  # keeps the mtime, which the check above compares
    if not (tmp / "lexnames").exists():
        category = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
        (tmp / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{category[name.split('.')[0]]}\n"
                                              for i, name in enumerate(LEXNAMES)))
    (tmp / "index.sense").touch()  # no-op when copied
    shutil.rmtree(target, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:  # another process swapped its own copy in first: the same files
        shutil.rmtree(tmp, ignore_errors=True)
    return nltk_data


@functools.cache
def _wordnet():
    """nltk's WordNet: its own data when it has some (`nltk.download`), else $WORDNET_DIR or Debian's."""
    import nltk
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
    except LookupError:
        root = str(prepare_wordnet(Path(os.environ.get("WORDNET_DIR") or WORDNET_HOME)))
        if root not in nltk.data.path:
            nltk.data.path.append(root)
        wordnet.ensure_loaded()
    return wordnet


def meteor(predictions: list[str], references: list[str]) -> float:
    """METEOR, 0-1, the mean over pairs of nltk's `meteor_score`: a recall-weighted F-score of words
    aligned exactly, by Porter stem or as WordNet synonyms, less a penalty for a jumbled word order.

    Words are split on whitespace and lowercased, as nltk expects. Needs WordNet 3.0 (see NO_WORDNET);
    without it this raises rather than quietly skipping the synonym stage.

    >>> round(meteor(["the cat sat on the mat"], ["the cat sat on the mat"]), 4)  # short: never quite 1
    0.9977
    >>> round(meteor(["the cat sat on the rug"], ["the cat sat on the carpet"]), 4)  # WordNet: rug ~ carpet
    0.9977
    >>> round(meteor(["the cat sat on the sofa"], ["the cat sat on the carpet"]), 4)  # 5 of 6 words
    0.83
    """
    from nltk.translate.meteor_score import meteor_score

    _check(predictions, references)
    wn = _wordnet()
    return sum(meteor_score([ref.split()], pred.split(), wordnet=wn)
               for pred, ref in zip(predictions, references)) / len(predictions)


# --------------------------------------------------------------------------- SQuAD: exact match, token F1

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse spaces.

    >>> normalize_answer("The  Cat, sat!")
    'cat sat'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    """The share of predictions equal to their reference after `normalize_answer`, 0-1.

    >>> exact_match(["The cat.", "a dog"], ["cat", "dogs"])
    0.5
    """
    _check(predictions, references)
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(predictions)


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)  # SQuAD 2.0: "no answer" scores 1 only against "no answer"
    same = sum((Counter(pred) & Counter(ref)).values())  # shared tokens, each counted as often as in both
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: list[str], references: list[str]) -> float:
    """SQuAD's token F1, 0-1, the mean over pairs: the harmonic mean of precision and recall of the
    normalised words, counted as bags (order ignored).

    >>> token_f1(["the cat sat"], ["a cat sat down"])  # precision 2/2, recall 2/3
    0.8
    """
    _check(predictions, references)
    return sum(_f1(p, r) for p, r in zip(predictions, references)) / len(predictions)


METRICS = {"bleu": bleu, "chrf": chrf, "ter": ter, "rouge": rouge, "meteor": meteor,
           "exact_match": exact_match, "token_f1": token_f1}


def score(name: str, predictions: list[str], references: list[str]) -> float | dict[str, float]:
    """The metric called `name` (a key of METRICS).

    >>> score("exact_match", ["Paris"], ["paris."])
    1.0
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name](predictions, references)
