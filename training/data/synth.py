"""A seeded synthetic corpus with planted problems and a ground truth, for benchmarking cleaning.

`write_bench_corpus(out_dir, target_bytes=200_000_000, seed=0, shards=8)` writes
`part-00000.jsonl` ... (`{"id": "d0000001", "text": ...}` per line) and `truth.json`, which
says what a perfect pipeline should find. Everything comes from inline word lists and a
small sentence grammar, so it works offline and the same seed gives the same bytes.

What is planted (shares of all documents), and why:

* Unique English documents (~84%): 80-1000 words (mean ~350), sentences ending in . ? !,
  paragraphs split by blank lines, plenty of stop words: they pass Gopher/C4 rules. Words
  are drawn Zipf-ishly from ~1900 content words, so two documents share almost no 5-word
  shingles and a MinHash near-dedup must keep every one of them.
* `exact_dup_of` (~3%): copies of earlier unique documents; some verbatim, some with extra
  spaces/tabs/blank lines or NFD accents, so they match only after NFC + whitespace
  normalisation (tests the normaliser and the exact-dedup stage).
* `near_dup_of` (~3%): copies with a word changed/inserted/deleted per ~150 words, or a
  header/footer line; lowercased 5-word-shingle Jaccard >= 0.85 is checked here (MinHash
  at 0.8 should catch them; exact dedup must not).
* `lang` (~8% non-English: de fr es it pt nl): word salad from each language's common and
  accented words, which lingua identifies reliably.
* `low_quality` (~2%): hashtag spam, bullet lists, repeated lines, ellipsis lines, too few
  words, lorem ipsum: each fails a Gopher or C4 rule.
* `pii` (in ~10% of the unique, good, English documents): 2-5 emails, phones, IPv4s,
  Luhn-valid card numbers and valid-looking SSNs each, with the exact value planted.

Categories are independent: originals of duplicates are good English documents without
PII, and PII, low-quality and non-English documents are never duplicated.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from training.atomic import atomic_dir
from training.data.synth_words import (
    ADJECTIVES,
    ADVERBS,
    FIRST,
    FOOTERS,
    FOREIGN,
    FUNC,
    HEADERS,
    LAST,
    LOANWORDS,
    LOREM,
    MONTHS,
    NOUNS,
    PLACES,
    TEMPLATES,
    VERBS,
)

VERSION = 1
SHARES = {"exact": 0.03, "near": 0.03, "foreign": 0.08, "low": 0.02}  # the rest: unique English
PII_SHARE = 0.10  # of the unique, good, English documents
LANGS = ("de", "fr", "es", "it", "pt", "nl")
LOW_KINDS = ("hashtags", "bullets", "repeated_lines", "ellipsis", "too_short", "lorem")
NEAR_MIN_JACCARD = 0.85
_EST_LINE_BYTES = 2220  # mean JSONL bytes per document, to size the first batch
_POOL_MIN_BYTES = 20_000_000  # smaller corpora are generated in-process

# ------------------------------------------------------------------ inflection, weights
def _plural(w: str) -> str:
    if w.endswith(("s", "sh", "ch", "x", "z")) or w in ("potato", "tomato", "hero"):
        return w + "es"
    return w[:-1] + "ies" if w.endswith("y") and w[-2] not in "aeiou" else w + "s"


def _past(w: str) -> str:
    if w.endswith("e"):
        return w + "d"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ied"
    return w + (w[-1] if w in ("admit", "prefer", "grab", "stop", "permit", "regret") else "") + "ed"


def _zipf(n: int, s: float = 1.0) -> list[float]:
    """Cumulative Zipf-ish weights 1/(rank+k)^s with a flattened head (k = n/40)."""
    k, acc, out = max(2.0, n / 40), 0.0, []
    for r in range(n):
        acc += 1.0 / (r + 1 + k) ** s
        out.append(acc)
    return out


def _ranked(words: list[str], salt: int) -> list[str]:
    """A fixed shuffle, so frequency rank is not alphabetical."""
    words = list(dict.fromkeys(words))
    random.Random(salt).shuffle(words)
    return words


_N = _ranked(NOUNS, 1)
_V = _ranked(VERBS, 2)
_POOLS: dict[str, tuple[list[str], list[float] | None]] = {
    "N": (_N, _zipf(len(_N))), "P": ([_plural(w) for w in _N], _zipf(len(_N))),
    "V": (_V, _zipf(len(_V))), "S": ([_plural(w) for w in _V], _zipf(len(_V))),
    "E": ([_past(w) for w in _V], _zipf(len(_V))),
    "A": (_ranked(ADJECTIVES, 3), _zipf(len(set(ADJECTIVES)))),
    "R": (_ranked(ADVERBS, 4), _zipf(len(set(ADVERBS)))),
    "H": (FIRST, None), "T": (PLACES, None), "L": (LOANWORDS, None),
    "Y": ([str(y) for y in range(1820, 2025)], None), "Z": ([str(z) for z in range(2, 99)], None),
    **{k: (v, None) for k, v in FUNC.items()},
}
_SLOT = re.compile(r"\{(\w)\}")
_TPL = [(_SLOT.sub("{}", t), "".join(_SLOT.findall(t)), len(t.split())) for t in TEMPLATES]
_TPL_WORDS = sum(t[2] for t in _TPL) / len(_TPL)
_FOREIGN_POOLS = {}
for _lang, (_f, _c) in FOREIGN.items():
    _fw, _cw = list(dict.fromkeys(_f.split())), _ranked(_c.split(), 5)
    _zf, _zc = _zipf(len(_fw)), _zipf(len(_cw))  # function words carry ~45% of the mass
    _FOREIGN_POOLS[_lang] = (_fw + _cw, [0.45 * x / _zf[-1] for x in _zf] + [0.45 + 0.55 * x / _zc[-1] for x in _zc])


# ------------------------------------------------------------------------ generators
def _draw(rng: random.Random, slot: str, k: int) -> list[str]:
    words, cum = _POOLS[slot]
    return rng.choices(words, cum_weights=cum, k=k)


def english_sentences(rng: random.Random, n_words: int) -> list[str]:
    """Sentences from the grammar until they hold about `n_words` words."""
    tpls = rng.choices(_TPL, k=int(n_words / _TPL_WORDS) + 1)
    slots = "".join(t[1] for t in tpls)
    its = {c: iter(_draw(rng, c, slots.count(c))).__next__ for c in sorted(set(slots))}
    out = []
    for fmt, sl, _ in tpls:
        s = fmt.format(*[its[c]() for c in sl])
        out.append(s[0].upper() + s[1:])
    return out


def _paragraphs(rng: random.Random, sentences: list[str], lo: int = 3, hi: int = 7) -> list[str]:
    paras, i = [], 0
    while i < len(sentences):
        n = rng.randint(lo, hi)
        paras.append(" ".join(sentences[i:i + n]))
        i += n
    return paras


def english_words(rng: random.Random) -> int:
    """Document length in words: log-normal, mean ~350, clipped to 80..1000."""
    return min(1000, max(80, int(rng.lognormvariate(5.72, 0.55))))


def english_text(rng: random.Random, n_words: int | None = None) -> str:
    """Paragraphs of 3-7 sentences; 80-1000 words."""
    sents = english_sentences(rng, n_words or english_words(rng))
    count = sum(s.count(" ") + 1 for s in sents)
    while count > 1000:
        count -= sents.pop().count(" ") + 1
    while count < 80:
        more = english_sentences(rng, 20)
        sents += more
        count += sum(s.count(" ") + 1 for s in more)
    return "\n\n".join(_paragraphs(rng, sents))


def foreign_text(rng: random.Random, lang: str, n_words: int | None = None) -> str:
    words, cum = _FOREIGN_POOLS[lang]
    drawn = rng.choices(words, cum_weights=cum, k=n_words or rng.randint(100, 300))
    sents, i = [], 0
    while i < len(drawn):
        n = rng.randint(6, 14)
        if len(drawn) - i - n < 4:  # no stub sentence at the end
            n = len(drawn) - i
        s = " ".join(drawn[i:i + n])
        sents.append(s[0].upper() + s[1:] + rng.choice(".....?!"))
        i += n
    return "\n\n".join(_paragraphs(rng, sents, 2, 5))


def low_quality_text(rng: random.Random, kind: str) -> str:
    """A document built to fail one Gopher/C4 rule (see LOW_KINDS)."""
    if kind == "hashtags":  # '#' per word far above 0.1
        words = " ".join(english_sentences(rng, rng.randint(80, 200))).split()
        return " ".join("#" + w.strip(".,;?!").lower() if i % 2 else w for i, w in enumerate(words))
    if kind == "bullets":  # every line a bullet
        mark = rng.choice("•-*")
        return "\n".join(f"{mark} {s.rstrip('.?!')}" for s in english_sentences(rng, rng.randint(120, 300)))
    if kind == "repeated_lines":  # a few lines over and over
        lines = english_sentences(rng, rng.randint(25, 50))
        return "\n".join(rng.choice(lines) for _ in range(rng.randint(25, 45)))
    if kind == "ellipsis":  # most lines trail off
        return "\n".join(" ".join(s.split()[:rng.randint(4, 8)]) + "..."
                         for s in english_sentences(rng, rng.randint(150, 300)))
    if kind == "too_short":  # under 50 words, under 3 sentences
        return " ".join(english_sentences(rng, rng.randint(8, 30))[:2])
    if kind == "lorem":  # placeholder text after real-looking English
        return english_text(rng, rng.randint(150, 400)) + "\n\n" + LOREM
    raise ValueError(f"unknown low-quality kind {kind!r}")


# ---------------------------------------------------------------------------- PII
def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):  # the check digit will sit right of body
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _pii(rng: random.Random, kind: str) -> str:
    r = rng.randint
    if kind == "credit_card":
        prefix, length = rng.choice([("4", 16), ("4", 16), ("4", 13), (str(r(51, 55)), 16), (str(r(2221, 2720)), 16),
                                     (rng.choice(["34", "37"]), 15), ("6011", 16), ("65", 16), ("35", 16)])
        num = _luhn_complete(prefix + "".join(str(r(0, 9)) for _ in range(length - len(prefix) - 1)))
        sep = rng.choice([" ", "-", ""])
        if length == 16:
            return sep.join(num[i:i + 4] for i in range(0, 16, 4))
        return sep.join((num[:4], num[4:10], num[10:])) if length == 15 else num
    if kind == "ssn":
        area = r(1, 898)
        area += area >= 666  # 001-899 without 666
        return f"{area:03d}-{r(1, 99):02d}-{r(1, 9999):04d}"
    if kind == "ip":
        first = rng.choice([10, 192, 172, r(1, 223)])
        second = {10: r(0, 255), 192: 168, 172: r(16, 31)}.get(first, r(0, 255))
        return f"{first}.{second}.{r(0, 255)}.{r(1, 254)}"
    if kind == "phone":
        a, e, s = rng.choice([555, r(201, 989)]), r(200, 999), r(0, 9999)
        return rng.choice([f"({a}) {e}-{s:04d}", f"{a}-{e}-{s:04d}", f"+1 {a} {e} {s:04d}",
                           f"+44 20 {r(7000, 8999)} {s:04d}"])
    if kind == "email":
        f, la = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
        dom = rng.choice(["acme", "globex", "initech", "hooli", "vandelay", "umbrella", "wayne", "stark", "northwind", "contoso"])
        tld = rng.choice(["com", "org", "net", "io", "co.uk", "de"])
        return rng.choice([f"{f}.{la}@{dom}.{tld}", f"{f}{r(1, 99)}@mail.{dom}.{tld}",
                           f"{f[0]}{la}+{rng.choice(['news', 'work', 'spam', 'shop'])}@{dom}.{tld}",
                           f"{f}_{la}@corp.{dom}.{tld}", f"{f}.{la}@eu.mail.{dom}.{tld}"])
    raise ValueError(kind)


_PII_SENTENCES = {
    "email": ["For questions, write to {v} and someone will reply.", "You can contact {H} at {v} about the report."],
    "phone": ["You can call {v} during office hours.", "Her number is {v} according to the file."],
    "ip": ["The server at {v} stopped responding last night.", "Requests came from the address {v} again."],
    "credit_card": ["The card number {v} was used for the payment.", "Please charge my card {v} for the order."],
    "ssn": ["His social security number is {v} on the form.", "The applicant listed SSN {v} on the application."],
}


def plant_pii(rng: random.Random, text: str) -> tuple[str, list[tuple[str, str]]]:
    """Insert 2-5 sentences with PII into random paragraphs; returns the text and (kind, value)s."""
    paras = text.split("\n\n")
    found = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(list(_PII_SENTENCES))
        value = _pii(rng, kind)
        s = rng.choice(_PII_SENTENCES[kind]).replace("{H}", rng.choice(FIRST)).replace("{v}", value)
        j = rng.randrange(len(paras))
        paras[j] = paras[j] + " " + s
        found.append((kind, value))
    return "\n\n".join(paras), found


# ------------------------------------------------------------------------- duplicates
def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lowercased word n-grams (words split on whitespace)."""
    w = text.lower().split()
    return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def exact_variant(rng: random.Random, text: str) -> str:
    """The same text after NFC + whitespace normalisation: verbatim, spacing, or NFD accents."""
    how = rng.choice(["verbatim", "spaces", "nfd"])
    if how == "nfd" and not text.isascii():
        return unicodedata.normalize("NFD", text)
    if how == "verbatim":
        return text
    paras = text.split("\n\n")
    for j in rng.sample(range(len(paras)), min(len(paras), 3)):
        words = paras[j].split(" ")
        if len(words) > 1:  # extra spaces/tabs between two words
            words[rng.randrange(len(words) - 1)] += rng.choice([" ", "\t", " \t", "  "])
        paras[j] = " ".join(words)
        if j < len(paras) - 1:
            paras[j] += rng.choice(["  ", " \t", "\n", "\n\n"])  # trailing blanks / extra blank lines
    out = "\n\n".join(paras)
    return out if out != text else text.replace(" ", "  ", 1)


def near_variant(rng: random.Random, text: str) -> str:
    """Edit ~1 word per 150 (replace/insert/delete) and maybe add a header/footer; Jaccard >= 0.85."""
    base = shingles(text)
    n_edits = max(1, round(len(text.split()) / 150 * rng.uniform(0.5, 1.5)))
    frame = rng.random() < 0.4
    while True:
        tokens = text.split(" ")
        for _ in range(n_edits):
            i = rng.randrange(len(tokens))
            if "\n" in tokens[i]:
                continue
            op = rng.choice("rid")
            tail = tokens[i][len(tokens[i].rstrip(".,;?!")):]
            if op == "r":
                tokens[i] = _draw(rng, rng.choice("NAR"), 1)[0] + tail
            elif op == "i":
                tokens.insert(i, _draw(rng, rng.choice("AR"), 1)[0])
            elif len(tokens) > 10 and not tail:
                del tokens[i]
        out = " ".join(tokens)
        if frame:
            f = {"f": rng.choice(FIRST), "l": rng.choice(LAST), "m": rng.choice(MONTHS),
                 "d": rng.randint(1, 28), "y": rng.randint(1995, 2024), "t": rng.choice(PLACES)}
            if rng.random() < 0.5:
                out = rng.choice(HEADERS).format(**f) + "\n\n" + out
            else:
                out = out + "\n\n" + rng.choice(FOOTERS).format(**f)
        if out.lower() != text.lower() and jaccard(base, shingles(out)) >= NEAR_MIN_JACCARD:
            return out
        n_edits, frame = max(1, n_edits - 1), frame and n_edits > 1


# ------------------------------------------------------------------------ the corpus
def _plan(rng: random.Random, start: int, n: int, plain: list[int]) -> list[tuple]:
    """Roles for documents start..start+n-1 (1-based ids); `plain` collects dup-able originals."""
    p_exact, p_near, p_foreign, p_low = SHARES.values()
    roles = []
    for i in range(start, start + n):
        u = rng.random()
        if u < p_exact and plain:
            role = ("exact", rng.choice(plain))
        elif p_exact <= u < p_exact + p_near and plain:
            role = ("near", rng.choice(plain))
        elif u < p_exact + p_near + p_foreign:
            role = ("foreign", rng.choice(LANGS))
        elif u < p_exact + p_near + p_foreign + p_low:
            role = ("low", rng.choice(LOW_KINDS))
        elif rng.random() < PII_SHARE:
            role = ("pii",)
        else:
            role = ("plain",)
            plain.append(i)
        roles.append((i, role))
    return roles


def _doc_rng(seed: int, i: int) -> random.Random:
    return random.Random(f"synth/{seed}/{i}")


def _make_doc(seed: int, i: int, role: tuple) -> tuple[str, list]:
    rng = _doc_rng(seed, i)
    kind = role[0]
    if kind in ("plain", "pii"):
        text = english_text(rng)
        return plant_pii(rng, text) if kind == "pii" else (text, [])
    if kind == "foreign":
        return foreign_text(rng, role[1]), []
    if kind == "low":
        return low_quality_text(rng, role[1]), []
    original, _ = _make_doc(seed, role[1], ("plain",))
    return (exact_variant if kind == "exact" else near_variant)(rng, original), []


def doc_id(i: int) -> str:
    return f"d{i:07d}"


def _make_lines(args: tuple[int, list[tuple]]) -> list[tuple[bytes, list]]:
    seed, roles = args
    out = []
    for i, role in roles:
        text, pii = _make_doc(seed, i, role)
        line = json.dumps({"id": doc_id(i), "text": text}, ensure_ascii=False) + "\n"
        out.append((line.encode("utf-8"), pii))
    return out


def _reusable(out_dir: Path, target_bytes: int, seed: int, shards: int) -> dict | None:
    try:
        truth = json.loads((out_dir / "truth.json").read_text())
    except (OSError, ValueError):
        return None
    same = (truth.get("version"), truth.get("target_bytes"), truth.get("seed"), truth.get("shards")) == (
        VERSION, target_bytes, seed, shards)
    files = all((out_dir / f"part-{k:05d}.jsonl").is_file() for k in range(shards))
    return truth if same and files else None


def _generate(seed: int, target_bytes: int, pool) -> Iterator[tuple[int, tuple, bytes, list]]:
    """(id, role, JSONL line, PII) in id order, planned in batches sized to reach target_bytes."""
    plan_rng, plain, next_id, made = random.Random(f"plan/{seed}"), [], 1, 0
    while True:
        avg = made / (next_id - 1) if made else _EST_LINE_BYTES
        n = max(1, math.ceil((target_bytes - made) / avg * (0.98 if made == 0 else 1.02)))
        roles = _plan(plan_rng, next_id, n, plain)
        next_id += n
        chunks = [(seed, roles[j:j + 200]) for j in range(0, n, 200)]
        results = pool.imap(_make_lines, chunks) if pool and n > 200 else map(_make_lines, chunks)
        for (_, chunk), lines in zip(chunks, results):
            for (i, role), (line, pii) in zip(chunk, lines):
                made += len(line)
                yield i, role, line, pii


def write_bench_corpus(out_dir: Path, *, target_bytes: int = 200_000_000, seed: int = 0, shards: int = 8) -> dict:
    """Write the corpus (`shards` JSONL files, >= target_bytes in all) and truth.json; return the truth.

    Reuses an existing corpus made with the same arguments and VERSION. Written into a temp
    folder that replaces `out_dir` only when complete. Corpora from 20 MB are generated by
    a spawn pool on all cores (so call it under `if __name__ == "__main__":` in a script);
    each document depends only on (seed, its id), so the bytes do not depend on the pool.
    """
    out_dir = Path(out_dir)
    if target_bytes <= 0 or shards <= 0:
        raise ValueError("target_bytes and shards must be positive")
    truth = _reusable(out_dir, target_bytes, seed, shards)
    if truth is not None:
        return truth
    truth = {"version": VERSION, "target_bytes": target_bytes, "seed": seed, "shards": shards, "docs": 0,
             "bytes": 0, "exact_dup_of": {}, "near_dup_of": {}, "lang": {}, "low_quality": [],
             "low_quality_kind": {}, "pii": []}
    procs = min(os.cpu_count() or 1, 8) if target_bytes >= _POOL_MIN_BYTES else 1
    pool = multiprocessing.get_context("spawn").Pool(procs) if procs > 1 else None
    quota, sizes, k, total = target_bytes / shards, [0] * shards, 0, 0
    with pool or contextlib.nullcontext(), atomic_dir(out_dir) as tmp:
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(tmp / f"part-{j:05d}.jsonl", "wb")) for j in range(shards)]
            for i, role, line, pii in _generate(seed, target_bytes, pool):
                if sizes[k] >= quota and k < shards - 1:
                    k += 1
                files[k].write(line)
                sizes[k] += len(line)
                total += len(line)
                _record(truth, doc_id(i), role, pii)
                if total >= target_bytes:
                    break
        truth["docs"], truth["bytes"] = len(truth["lang"]), total
        (tmp / "truth.json").write_text(json.dumps(truth))
    return truth


def _record(truth: dict, did: str, role: tuple, pii: list) -> None:
    kind = role[0]
    truth["lang"][did] = role[1] if kind == "foreign" else "en"
    if kind in ("exact", "near"):
        truth[f"{kind}_dup_of"][did] = doc_id(role[1])
    elif kind == "low":
        truth["low_quality"].append(did)
        truth["low_quality_kind"][did] = role[1]
    for pk, value in pii:
        truth["pii"].append({"id": did, "kind": pk, "value": value})
