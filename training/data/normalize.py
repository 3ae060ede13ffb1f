"""Text normalisation (the first cleaning stage) and the key for exact deduplication.

Every later stage sees normalised text, so two documents that differ only in
invisible ways (a BOM, Windows line endings, NFD accents, a run of spaces) get the
same exact-dedup key, the same shingles and the same quality scores. The stage never
removes a document itself; the pipeline drops one that comes out empty.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata

from training.data.config import ExactDedupStage, NormalizeStage

# Line breaks besides "\n" and "\r": vertical tab, form feed (ASCII), NEL and the
# Unicode line/paragraph separators; str.splitlines() treats all of them as breaks.
_LINE_BREAKS = ("\x0b", "\x0c", "\x85", "\u2028", "\u2029")
# Runs that need rewriting to one plain space: two or more of any non-newline
# whitespace, or a single tab/NBSP/other space separator (the lookbehind: the one
# character matched is not " "). A lone " " is left alone, so ordinary text needs no
# copy. Written to begin with a character class, which `re` scans for at C speed.
_SPACES = re.compile(r"[^\S\n](?:[^\S\n]+|(?<! ))")
_BLANK_LINES = re.compile(r"\n{3,}")
# What the whitespace step rewrites, as substrings: runs, tabs, spaces before a line
# break, and whitespace other than " ", "\t" and line breaks (all below U+3001).
_ASCII_SPACE_WORK = ("  ", "\t", " \n", "\x1c", "\x1d", "\x1e", "\x1f")
_OTHER_SPACES = tuple(c for c in map(chr, range(0x80, 0x3001)) if c.isspace() and c not in _LINE_BREAKS)

# Format characters (Cf) that carry meaning and are kept: zero-width joiner (emoji
# sequences such as families), zero-width non-joiner (Persian, Urdu and Indic
# spelling) and the tag characters of subdivision flags (England, Scotland, Wales).
# Variation selectors (U+FE0E/FE0F) are category Mn, not Cf, so they are never touched.
_KEEP_FORMAT = {0x200C, 0x200D, *range(0xE0020, 0xE0080)}


@functools.cache
def _control_re() -> re.Pattern:
    """Characters the `control` option deletes, as one character class.

    C0/C1 controls except newline and tab, format characters except `_KEEP_FORMAT`
    (BOM, zero-width space, soft hyphen, bidi overrides, ...) and lone surrogates
    (left by broken decoders; they cannot be written as UTF-8 later). Built on first
    use from the running Python's Unicode tables (about 60 ms, once per process).
    """
    drop = [c for c in range(sys.maxunicode + 1)
            if unicodedata.category(chr(c)) in ("Cc", "Cf") and c not in _KEEP_FORMAT and c not in (9, 10)]
    ranges, start = [], None
    for i, c in enumerate(drop):  # merge consecutive code points into ranges: a short class
        if start is None:
            start = c
        if i + 1 == len(drop) or drop[i + 1] != c + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(c)) if c != start else ""))
            start = None
    return re.compile("[" + "".join(ranges) + "\ud800-\udfff]+")


def normalize(text: str, cfg: NormalizeStage) -> str:
    """Normalise one document: control characters, Unicode NFC, whitespace.

    Args:
        text: the raw document.
        cfg: which steps run. `control` drops control and invisible format characters
            (keeping newline, tab, ZWJ/ZWNJ and emoji tags); `nfc` composes characters
            (e + U+0301 -> é); `whitespace` turns runs of spaces, tabs and other space
            separators into one space, drops spaces at line ends, caps blank lines at
            one (3+ newlines -> 2) and strips the document. With `control` or
            `whitespace` on, every line break ("\\r\\n", "\\r", U+2028, ...) becomes "\\n".

    Returns:
        The normalised text (possibly empty).
    """
    # Each step first asks cheap questions (`in` and is*() run at C speed), because a
    # regex scan costs ~15 ns per character even when it finds nothing.
    ascii_only = text.isascii()
    if cfg.control or cfg.whitespace:
        # Before dropping controls: "\r" is one, and deleting it would glue lines together.
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        for c in _LINE_BREAKS if not ascii_only else _LINE_BREAKS[:2]:
            if c in text:
                text = text.replace(c, "\n")
    # str.isprintable() is False for every control and format character (and for
    # space separators other than " ", which only cost a needless scan).
    if cfg.control and not text.replace("\n", " ").replace("\t", " ").isprintable():
        text = _control_re().sub("", text)
        ascii_only = text.isascii()
    # After the control step, so a format character between a letter and its accent
    # no longer blocks the composition. ASCII is always NFC.
    if cfg.nfc and not ascii_only:
        text = unicodedata.normalize("NFC", text)
    if cfg.whitespace:
        if (any(c in text for c in _ASCII_SPACE_WORK)
                or (not ascii_only and any(c in text for c in _OTHER_SPACES))):
            # After the collapse, whitespace before a line break is exactly one " ".
            text = _SPACES.sub(" ", text).replace(" \n", "\n")
        if "\n\n\n" in text:
            text = _BLANK_LINES.sub("\n\n", text)
        text = text.strip()
    return text


def exact_key(text: str, cfg: ExactDedupStage) -> str:
    """The exact-dedup key of a (normalised) document: 16-byte blake2b, as hex.

    Args:
        text: the document, normally already through `normalize`.
        cfg: `lowercase` hashes the lowercased text, so case-only variants collide.

    Returns:
        32 hex characters; equal texts give equal keys in every process.
    """
    if cfg.lowercase:
        text = text.lower()
    # surrogatepass: a lone surrogate (control step off) must not crash the stage.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
