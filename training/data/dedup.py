"""Near-duplicate detection: MinHash signatures, banded LSH keys, and clustering.

The pipeline runs it in three steps that each scale out:
1. `signatures` per batch (embarrassingly parallel): a MinHash over each document's
   word n-gram shingles, using datasketch.
2. `band_hashes` per batch: the signature cut into `bands` bands of `rows` values,
   each band hashed to one uint64. Two documents whose signatures agree on a whole
   band share the key (band, hash): a candidate pair. With Jaccard similarity s that
   happens with probability 1 - (1 - s^rows)^bands, an S-curve around the threshold.
3. Group the keys (a shuffle by band), then `clusters_from_buckets` joins documents
   that share any bucket, transitively, and keeps the smallest id of each cluster.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Hashable, Iterable

import numpy as np

from training.data.config import NearDedupStage


def shingles(text: str, ngram: int) -> list[bytes]:
    """The lowercased word n-grams of a text, UTF-8 encoded (the MinHash's set elements).

    Args:
        text: the document.
        ngram: words per shingle.

    Returns:
        One shingle per start position (repeats kept: MinHash ignores them); a text
        shorter than `ngram` words gives one shingle of all its words, an empty one [].
    """
    words = text.lower().split()
    if not words:
        return []
    data = " ".join(words).encode("utf-8", "surrogatepass")
    if len(words) <= ngram:
        return [data]
    # Encode once and slice bytes: 3x faster than joining and encoding every n-gram.
    sizes = map(len, words) if data.isascii() else (len(w.encode("utf-8", "surrogatepass")) for w in words)
    starts = list(itertools.accumulate((size + 1 for size in sizes), initial=0))  # + 1: the space
    return [data[a:b - 1] for a, b in zip(starts, starts[ngram:])]


def signatures(texts: list[str], cfg: NearDedupStage) -> np.ndarray:
    """MinHash signatures of a batch of documents.

    Args:
        texts: the documents.
        cfg: `num_perm` (signature length), `seed` (the permutations: every worker must
            use the same) and `ngram` (words per shingle).

    Returns:
        uint64 array of shape (len(texts), num_perm). An empty text gets the all-maximum
        signature, so empty texts group together (they are exact duplicates anyway).
    """
    from datasketch import MinHash  # here: it imports scipy (0.7 s), and `data prepare` never dedups

    out = np.empty((len(texts), cfg.num_perm), np.uint64)
    # bulk() builds the permutations once and copies them per document. CRC32 instead
    # of datasketch's default SHA-1 (2.5x faster overall): the hash only has to tell
    # shingles apart, since datasketch mixes each value (murmur3 finaliser) before
    # applying the random permutations.
    for i, mh in enumerate(MinHash.bulk((shingles(t, cfg.ngram) for t in texts),
                                        num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=zlib.crc32)):
        out[i] = mh.hashvalues
    return out


def _nodes(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights for [lo, hi]: 64 panels of 16 points."""
    x, w = np.polynomial.legendre.leggauss(16)
    edges = np.linspace(lo, hi, 65)
    half = (edges[1:] - edges[:-1])[:, None] / 2
    return ((edges[1:] + edges[:-1])[:, None] / 2 + half * x).ravel(), (half * w).ravel()


def _optimal_param_fallback(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positive + false negative area, as datasketch does."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], float)
    (s0, w0), (s1, w1) = _nodes(0.0, threshold), _nodes(threshold, 1.0)
    errors = []
    for chunk in np.array_split(pairs, max(1, len(pairs) // 512)):  # bounded memory at num_perm=1024
        b, r = chunk[:, 0:1], chunk[:, 1:2]
        fp = (1 - (1 - s0 ** r) ** b) @ w0  # P(candidate) integrated below the threshold
        fn = ((1 - s1 ** r) ** b) @ w1  # P(missed) integrated above it
        errors.append(0.5 * fp + 0.5 * fn)
    best = int(np.argmin(np.concatenate(errors)))  # the first minimum, like datasketch's strict <
    return int(pairs[best, 0]), int(pairs[best, 1])


@functools.lru_cache(maxsize=64)
def _optimal_param(threshold: float, num_perm: int) -> tuple[int, int]:
    try:  # private in datasketch, so guarded: the fallback computes the same thing
        from datasketch.lsh import _optimal_param as datasketch_optimum

        b, r = datasketch_optimum(threshold, num_perm, 0.5, 0.5)
    except (ImportError, TypeError):  # gone, or its signature changed
        return _optimal_param_fallback(threshold, num_perm)
    return int(b), int(r)


def lsh_params(cfg: NearDedupStage) -> tuple[int, int]:
    """(bands, rows) for LSH: cfg's when set, else the optimum for cfg.threshold and num_perm.

    The optimum minimises the equally weighted areas of false positives (below the
    threshold) and false negatives (above it) under the S-curve, as datasketch's
    MinHashLSH does. Computed once per (threshold, num_perm) per process.
    """
    if cfg.bands is not None and cfg.rows is not None:
        return cfg.bands, cfg.rows
    return _optimal_param(float(cfg.threshold), int(cfg.num_perm))


_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * _M1
    h = h ^ (h >> np.uint64(33))
    h = h * _M2
    return h ^ (h >> np.uint64(33))


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Hash each LSH band of each signature to one uint64.

    Args:
        sigs: (n, num_perm) signatures from `signatures`.
        bands, rows: from `lsh_params`; the first bands * rows values are used.

    Returns:
        uint64 array (n, bands); equal bands give equal hashes in every process (no
        Python hash randomisation), different ones collide with probability ~2^-64.
    """
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"bands * rows ({bands * rows}) exceeds the signature length ({sigs.shape[1]})")
    cut = np.ascontiguousarray(sigs[:, :bands * rows], dtype=np.uint64).reshape(len(sigs), bands, rows)
    # Chain the rows through the mixer (vectorised over documents and bands): each
    # step is a bijection of the previous state for a fixed row value and vice versa.
    h = np.full((len(sigs), bands), _GOLDEN, np.uint64)
    for j in range(rows):
        h = _fmix64((h * _GOLDEN) ^ cut[:, :, j])
    return h


class UnionFind:
    """Disjoint sets over hashable ids, with path compression and union by size."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}
        self.size: dict[Hashable, int] = {}

    def find(self, a: Hashable) -> Hashable:
        """The root of a's set (a new id starts a set of its own)."""
        parent = self.parent
        if a not in parent:
            parent[a], self.size[a] = a, 1
            return a
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # compress: point the whole path at the root
            parent[a], a = root, parent[a]
        return root

    def union(self, a: Hashable, b: Hashable) -> Hashable:
        """Merge the sets of a and b; returns the new root (the larger set's root)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size.pop(rb)
        return ra

    def groups(self) -> dict[Hashable, list]:
        """Root -> members (in first-seen order) for every set, singletons included."""
        out: dict[Hashable, list] = {}
        for a in list(self.parent):
            out.setdefault(self.find(a), []).append(a)
        return out


def clusters_from_buckets(buckets: Iterable[list[int]]) -> dict[int, int]:
    """Join documents that share an LSH bucket into clusters of near duplicates.

    Args:
        buckets: lists of document ids that share one (band, hash) key.

    Returns:
        doc_id -> the cluster's representative (its smallest id, which maps to itself)
        for every document in a cluster of two or more; other documents are absent.
    """
    uf = UnionFind()
    for bucket in buckets:
        it = iter(bucket)
        first = next(it, None)
        for other in it:
            uf.union(first, other)
    out: dict[int, int] = {}
    for members in uf.groups().values():
        if len(members) >= 2:
            rep = min(members)
            out.update(dict.fromkeys(members, rep))
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The Jaccard similarity two MinHash signatures estimate: the share of equal values."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures of different lengths: {sig_a.shape} vs {sig_b.shape}")
    return float(np.count_nonzero(sig_a == sig_b)) / max(1, sig_a.size)
