"""The GPT-2 byte <-> unicode table: how "byte-level" tokens are written as text.

A byte-level BPE works on raw UTF-8 bytes, but vocabulary files (tokenizer.json,
merges.txt) are text, and many bytes are unprintable (0x00-0x20, 0x7F-0xA0) or
are not valid text at all on their own (0x80-0xFF are only *parts* of UTF-8
characters). GPT-2 therefore maps every byte to one printable unicode character:

* the 188 bytes that already are printable Latin-1 characters ("!".."~",
  "¡".."¬", "®".."ÿ") map to themselves;
* the other 68 bytes map, in byte order, to the characters U+0100, U+0101, ...

So the space byte 0x20 becomes "Ġ" (U+0120), the newline 0x0A becomes "Ċ"
(U+010A), and " the" is written "Ġthe". The mapping is a bijection, so nothing is
lost; it is purely a way of *writing* bytes. Hugging Face `tokenizers` uses the
same table (`pre_tokenizers.ByteLevel.alphabet()` is its 256 characters).

This table also decides the *ids* of the 256 byte tokens in a Hugging Face
trained vocabulary: the trainer sorts its alphabet by the code point of these
characters, not by byte value (see `ALPHABET`).
"""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """Build the GPT-2 table: byte value (0..255) -> one printable character.

    Returns:
        A dict with 256 entries whose values are 256 distinct characters.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            # Unprintable byte: park it on the next free character after U+00FF.
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_UNICODE: dict[int, str] = bytes_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_UNICODE.items()}

# The 256 byte-level characters in the order Hugging Face assigns them ids: sorted
# by code point. "!" (byte 0x21) comes first, the space "Ġ" (U+0120) late, and the
# NUL byte "Ā" (U+0100) after every printable Latin-1 byte.
ALPHABET: list[str] = sorted(BYTE_TO_UNICODE.values())


def to_byte_level(data: bytes) -> str:
    """Write raw bytes as a byte-level string, e.g. b" hi" -> "Ġhi"."""
    return "".join(BYTE_TO_UNICODE[b] for b in data)


def from_byte_level(text: str) -> bytes:
    """Inverse of `to_byte_level`, e.g. "Ġhi" -> b" hi".

    Raises:
        KeyError: if `text` contains a character outside the 256-character table.
    """
    return bytes(UNICODE_TO_BYTE[c] for c in text)
