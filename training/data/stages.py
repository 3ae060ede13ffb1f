"""The per-document stages, fused into one function over a batch of documents.

    normalize -> language -> quality -> pii -> (exact key, MinHash bands for the dedup)

A document that fails a stage keeps its row, with `stage` and `reason` saying why, so
every removal is counted and can be shown; later stages skip it. `clean_batch` is plain
Python (no Ray): the pipeline runs it on Ray Data blocks, the tests call it directly.
"""

from __future__ import annotations

import re

import numpy as np

from training.data import dedup, langid, normalize, pii, quality
from training.data.config import PII_KINDS, PipelineConfig

PER_DOC_STAGES = ("read", "normalize", "language", "quality", "pii")
STAGES = (*PER_DOC_STAGES, "exact_dedup", "near_dedup")
_WORDS = re.compile(r"\S+")


def band_columns(cfg: PipelineConfig) -> list[str]:
    """The names of the MinHash band-hash columns (none when near-dedup is off)."""
    nd = cfg.stages.near_dedup
    return [f"band_{i}" for i in range(dedup.lsh_params(nd)[0])] if nd.enabled else []


def _key64(hex_digest: str) -> int:
    return int(hex_digest[:16], 16)


def clean_batch(batch: dict[str, list], cfg: PipelineConfig) -> dict[str, list | np.ndarray]:
    """Run the per-document stages on a batch.

    Args:
        batch: columns "doc_id", "source", "ext_id", "text", "stage", "reason" (as `sources.read_task` makes).
        cfg: the pipeline config.

    Returns:
        The same columns (text cleaned, stage/reason set for removed documents) plus
        "chars_in", "chars", "words", "lang", "lang_conf", "normalized" (text changed),
        "pii_<kind>" counts, "exact_key" (uint64; 0 for removed documents) and one
        "band_<i>" uint64 column per LSH band.
    """
    st = cfg.stages
    texts = [str(t) for t in batch["text"]]
    stage, reason = list(batch["stage"]), list(batch["reason"])
    n = len(texts)
    alive = [not s for s in stage]
    chars_in = [len(t) for t in texts]
    normalized = [False] * n

    if st.normalize.enabled:
        for i in range(n):
            if alive[i]:
                new = normalize.normalize(texts[i], st.normalize)
                normalized[i], texts[i] = new != texts[i], new
    for i in range(n):
        if alive[i] and not texts[i].strip():
            stage[i], reason[i], alive[i] = "normalize", "empty", False

    langs: list[str | None] = [None] * n
    confs = [0.0] * n
    if st.language.enabled:
        idx = [i for i in range(n) if alive[i]]
        if idx:
            found = langid.LanguageDetector(st.language).detect([texts[i] for i in idx])
            for i, (lang, conf) in zip(idx, found):
                langs[i], confs[i] = lang, conf
                why = langid.language_reason(lang, st.language)
                if why:
                    stage[i], reason[i], alive[i] = "language", why, False

    if st.quality.enabled:
        for i in range(n):
            if alive[i]:
                why = quality.quality_reason(texts[i], st.quality, langs[i] if st.language.enabled else None)
                if why:
                    stage[i], reason[i], alive[i] = "quality", why, False

    pii_counts = {k: np.zeros(n, dtype=np.int32) for k in PII_KINDS}
    if st.pii.enabled:
        for i in range(n):
            if alive[i]:
                texts[i], found = pii.redact_pii(texts[i], st.pii)
                for k, c in found.items():
                    pii_counts[k][i] = c

    exact = np.zeros(n, dtype=np.uint64)
    for i in range(n):
        if alive[i]:
            exact[i] = _key64(normalize.exact_key(texts[i], st.exact_dedup))

    out: dict[str, list | np.ndarray] = {
        "doc_id": np.asarray(batch["doc_id"], dtype=np.int64), "source": list(batch["source"]),
        "ext_id": list(batch["ext_id"]),
        "text": texts, "stage": stage, "reason": reason,
        "chars_in": np.asarray(chars_in, dtype=np.int64),
        "chars": np.asarray([len(t) for t in texts], dtype=np.int64),
        "words": np.asarray([len(_WORDS.findall(t)) for t in texts], dtype=np.int64),
        "lang": [lang or "" for lang in langs], "lang_conf": np.asarray(confs, dtype=np.float32),
        "normalized": np.asarray(normalized), "exact_key": exact,
        **{f"pii_{k}": v for k, v in pii_counts.items()},
    }
    cols = band_columns(cfg)
    if cols:
        bands_rows = dedup.lsh_params(st.near_dedup)
        hashes = np.zeros((n, len(cols)), dtype=np.uint64)
        idx = [i for i in range(n) if alive[i]]
        if idx:
            sigs = dedup.signatures([texts[i] for i in idx], st.near_dedup)
            hashes[idx] = dedup.band_hashes(sigs, *bands_rows)
        for b, name in enumerate(cols):
            out[name] = hashes[:, b].copy()
    return out
