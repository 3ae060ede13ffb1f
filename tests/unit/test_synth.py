"""The synthetic benchmark corpus: deterministic, sized, and its truth.json is right."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import types
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from training.data import synth
from training.data.synth import jaccard, shingles, write_bench_corpus

TARGET = 2_500_000
SHARDS = 3
STOP = {"the", "be", "to", "of", "and", "that", "have", "with"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "corpus"
    truth = write_bench_corpus(out, target_bytes=TARGET, seed=0, shards=SHARDS)
    docs = {}
    for f in sorted(out.glob("part-*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            docs[d["id"]] = d["text"]
    return out, truth, docs


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _normalize(text: str) -> str:
    """What the pipeline's normaliser does: NFC, space/tab runs -> one, no trailing blanks, <= 1 blank line."""
    text = re.sub(r"[ \t]+", " ", unicodedata.normalize("NFC", text))
    text = re.sub(r" +\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _gopher_problems(text: str) -> list[str]:
    """A compact version of the Gopher/C4 rules in QualityStage (defaults)."""
    words = text.split()
    lines = [ln for ln in text.split("\n") if ln.strip()]
    bad = []
    if not 50 <= len(words) <= 100_000:
        bad.append("words")
    if not 3 <= sum(map(len, words)) / max(1, len(words)) <= 10:
        bad.append("mean_word_length")
    if (text.count("#") + text.count("...")) / max(1, len(words)) > 0.1:
        bad.append("symbols")
    if sum(ln.lstrip().startswith(("•", "-", "*")) for ln in lines) / len(lines) > 0.9:
        bad.append("bullets")
    if sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines) > 0.3:
        bad.append("ellipsis")
    if len(STOP & {w.lower().strip(".,;?!") for w in words}) < 2:
        bad.append("stop_words")
    if len(lines) - len(set(lines)) > 0.3 * len(lines):
        bad.append("dup_lines")
    if "lorem ipsum" in text.lower() or "{" in text or len(re.findall(r"[.?!](\s|$)", text)) < 3:
        bad.append("c4")
    lw = [w.lower() for w in words]
    for n, limit in {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}.items():
        seen, covered, i = set(), 0, 0
        while i <= len(lw) - n:
            g = " ".join(lw[i:i + n])
            if g in seen:
                covered += len(g.replace(" ", ""))
                i += n
            else:
                seen.add(g)
                i += 1
        if covered / max(1, sum(map(len, lw))) > limit:
            bad.append(f"dup_{n}gram")
    for n, limit in {2: 0.20, 3: 0.18, 4: 0.16}.items():
        grams = Counter(tuple(lw[i:i + n]) for i in range(len(lw) - n + 1))
        if grams:
            g, c = grams.most_common(1)[0]
            if c > 1 and c * sum(map(len, g)) / max(1, sum(map(len, lw))) > limit:
                bad.append(f"top_{n}gram")
    return bad


def _unique_english(truth: dict) -> list[str]:
    special = set(truth["exact_dup_of"]) | set(truth["near_dup_of"]) | set(truth["low_quality"])
    return [i for i, lang in truth["lang"].items() if lang == "en" and i not in special]


def test_deterministic(tmp_path, corpus):
    out, truth, _ = corpus
    again = write_bench_corpus(tmp_path / "a", target_bytes=TARGET, seed=0, shards=SHARDS)
    assert again == truth and _digest(tmp_path / "a") == _digest(out)
    write_bench_corpus(tmp_path / "b", target_bytes=TARGET, seed=1, shards=SHARDS)
    assert _digest(tmp_path / "b") != _digest(out)


def test_worker_processes_give_the_same_bytes(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(synth, "_POOL_MIN_BYTES", 0)  # the spawn pool, as for large corpora
    # Spawned workers re-run the parent's __main__ file; after Streamlit's AppTest ran in
    # this process that is a UI page, so give them a plain module (the CLI's is guarded).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    write_bench_corpus(tmp_path / "p", target_bytes=TARGET, seed=0, shards=SHARDS)
    assert _digest(tmp_path / "p") == _digest(corpus[0])


def test_sizes_and_format(corpus):
    out, truth, docs = corpus
    parts = sorted(out.glob("part-*.jsonl"))
    assert [p.name for p in parts] == [f"part-{k:05d}.jsonl" for k in range(SHARDS)]
    sizes = [p.stat().st_size for p in parts]
    assert sum(sizes) == truth["bytes"] >= TARGET
    assert all(0.8 * TARGET / SHARDS <= s <= 1.2 * TARGET / SHARDS for s in sizes), sizes
    lines = [json.loads(ln) for p in parts for ln in p.read_text(encoding="utf-8").splitlines()]
    assert all(set(d) == {"id", "text"} and re.fullmatch(r"d\d{7}", d["id"]) and d["text"] for d in lines)
    assert len(lines) == len(docs) == truth["docs"] == len(truth["lang"])
    assert [d["id"] for d in lines] == sorted(truth["lang"])
    assert truth["version"] == synth.VERSION and (truth["target_bytes"], truth["seed"]) == (TARGET, 0)


def test_exact_and_near_duplicates(corpus):
    _, truth, docs = corpus
    n = truth["docs"]
    exact, near = truth["exact_dup_of"], truth["near_dup_of"]
    assert 0.015 * n < len(exact) < 0.05 * n and 0.015 * n < len(near) < 0.05 * n
    for dup, orig in exact.items():
        assert _normalize(docs[dup]) == _normalize(docs[orig]) and dup > orig
    assert sum(docs[d] != docs[o] for d, o in exact.items()) >= 3  # some only match after normalising
    assert any(unicodedata.normalize("NFC", docs[d]) != docs[d] for d in exact)  # NFD copies
    for dup, orig in near.items():
        assert _normalize(docs[dup]).lower() != _normalize(docs[orig]).lower() and dup > orig
        assert jaccard(shingles(docs[dup]), shingles(docs[orig])) >= 0.85
    # originals are plain English: no PII, not low quality, not duplicates themselves
    originals = set(exact.values()) | set(near.values())
    tainted = {p["id"] for p in truth["pii"]} | set(truth["low_quality"]) | set(exact) | set(near)
    assert not originals & tainted
    assert all(truth["lang"][o] == "en" for o in originals)


def test_pii_values(corpus):
    _, truth, docs = corpus
    pii = truth["pii"]
    assert {p["kind"] for p in pii} == {"email", "phone", "ip", "credit_card", "ssn"}
    ids = {p["id"] for p in pii}
    plain = _unique_english(truth)
    assert 0.06 < len(ids) / len(plain) < 0.15
    assert len(pii) >= 2 * len(ids)
    assert not ids & (set(truth["exact_dup_of"]) | set(truth["near_dup_of"]) | set(truth["low_quality"]))
    assert not ids & (set(truth["exact_dup_of"].values()) | set(truth["near_dup_of"].values()))
    for p in pii:
        v = p["value"]
        assert v in docs[p["id"]] and truth["lang"][p["id"]] == "en"
        if p["kind"] == "credit_card":
            assert synth.luhn_ok(v) and re.fullmatch(r"\d{13,16}|[\d -]{16,19}", v)
        elif p["kind"] == "ssn":
            a, g, s = v.split("-")
            assert len(a) == 3 and a not in ("000", "666") and a[0] != "9" and g != "00" and s != "0000"
        elif p["kind"] == "ip":
            assert all(0 <= int(o) <= 255 for o in v.split(".")) and v.count(".") == 3
        elif p["kind"] == "email":
            assert re.fullmatch(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", v)
        else:
            assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}|\d{3}-\d{3}-\d{4}|\+1 \d{3} \d{3} \d{4}|\+44 20 \d{4} \d{4}", v)


def test_quality_and_languages(corpus):
    _, truth, docs = corpus
    n = truth["docs"]
    low = truth["low_quality"]
    assert 0.01 * n < len(low) < 0.04 * n and len(set(truth["low_quality_kind"].values())) >= 4
    for i in low:
        assert _gopher_problems(docs[i]), (truth["low_quality_kind"][i], docs[i][:300])
    plain = _unique_english(truth)
    for i in plain[:300]:
        assert _gopher_problems(docs[i]) == [], (i, _gopher_problems(docs[i]))
    words = [len(docs[i].split()) for i in plain if i not in {p["id"] for p in truth["pii"]}]
    assert 80 <= min(words) and max(words) <= 1000 and 280 < sum(words) / len(words) < 420
    langs = Counter(truth["lang"].values())
    assert set(langs) == {"en", *synth.LANGS}
    assert 0.05 < 1 - langs["en"] / n < 0.11
    foreign = {i for i, lang in truth["lang"].items() if lang != "en"}
    assert not foreign & (set(truth["exact_dup_of"]) | set(truth["near_dup_of"]) | set(low))


def test_unique_documents_are_diverse(corpus):
    _, truth, docs = corpus
    sample = [shingles(docs[i]) for i in _unique_english(truth)[:300]]
    worst = max(jaccard(a, b) for k, a in enumerate(sample) for b in sample[k + 1:])
    assert worst < 0.2


def test_lingua_identifies_the_languages():
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().build()
    accuracy = {}
    for lang in (*synth.LANGS, "en"):
        rng = random.Random(f"lingua/{lang}")
        texts = [(synth.english_text(rng) if lang == "en" else synth.foreign_text(rng, lang))[:1000]
                 for _ in range(200)]
        found = detector.detect_languages_in_parallel_of(texts)
        accuracy[lang] = sum(f is not None and f.iso_code_639_1.name.lower() == lang for f in found) / 200
    print("lingua accuracy:", accuracy)
    assert min(accuracy.values()) >= 0.97, accuracy


def test_reuse_and_atomic_write(tmp_path, monkeypatch):
    out = tmp_path / "c"
    truth = write_bench_corpus(out, target_bytes=200_000, seed=3, shards=2)
    mtimes = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert write_bench_corpus(out, target_bytes=200_000, seed=3, shards=2) == truth
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == mtimes
    # other arguments rebuild; a failure half-way leaves the old corpus as it was
    calls = []

    def boom(*args):
        calls.append(1)
        if len(calls) > 20:
            raise RuntimeError("interrupted")

    monkeypatch.setattr(synth, "_record", boom)
    with pytest.raises(RuntimeError):
        write_bench_corpus(out, target_bytes=300_000, seed=3, shards=2)
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == mtimes
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    with pytest.raises(RuntimeError):
        write_bench_corpus(tmp_path / "new", target_bytes=300_000, seed=3, shards=2)
    assert not (tmp_path / "new").exists()
