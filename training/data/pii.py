"""Replace personal data by typed placeholders: emails, phone numbers, IPs, cards, SSNs.

Regexes find candidates; what a regex cannot express (Luhn checksum, card issuer
prefix, IPv4 octet range, digit count of an international number, IPv6 syntax) is
checked on each candidate. Emails go first, since they may hold digits. IPv4, card,
SSN and phone patterns then share one scan: at each start the kinds are tried in that
order, so a card claims its digits before a phone pattern could. Every pattern
refuses to start or end inside a longer run of digits, which keeps years, prices,
dates and version numbers intact.

Speed: a pattern that begins with a lookbehind makes `re` run the whole pattern at
every position (~40 us per 2 KB). So the shared scan begins with one character
class ([0-9+(]), which `re` skips to with a fast C loop, and each kind checks what
came before in a lookbehind placed after that first character. Cheap triggers skip
work: no "@" means no email search, no ASCII digit no scan at all.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from training.data.config import PII_KINDS, PIIStage

PII_PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP>",
    "credit_card": "<CREDIT_CARD>",
    "ssn": "<SSN>",
}

# Emails are found from their "@" (rare, so found fast) outwards: the domain by this
# pattern (dot-separated labels, an alphabetic TLD), the local part by walking left.
_EMAIL_DOMAIN = re.compile(r"@(?:[^\W_][\w-]*\.)+[^\W\d_]{2,}(?![\w-])")
_LOCAL_CHARS = frozenset(".%+-_")

# IPv6 candidates: hex digits and colons with a colon in the first 5 characters, maybe
# an IPv4 tail; the ipaddress module decides. Only run when the text has "::" or 7+ colons.
_IPV6 = re.compile(r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{1,38}"
                   r"(?:\.[0-9.]+)?(?![\w:])")

# The digit kinds, each written as what follows its first character (already consumed
# by the shared [0-9+(]); `(?<=...)` says which first character it needs.
_END = r"(?![0-9-]|[.,][0-9])"  # not followed by more digits ("1,234.56" stays whole)
_US_BODY = r"(?:\([2-9][0-9][0-9]\)\ ?|[2-9][0-9][0-9][ .-])[0-9]{3}[ .-][0-9]{4}"  # (555) 123-4567
_DIGIT_KINDS = {
    # Four dotted groups of 1-3 digits, not glued to more digits or dotted digits
    # ("999.1.1.1" and "1.2.3.4.5" stay); octets are checked afterwards.
    "ip": r"(?<=[0-9])(?<![0-9.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\.?[0-9])",
    # 13-19 digits: one run, or groups split by one consistent space or dash (4-4-4-4,
    # 4-6-5 Amex, 4-4-4-4-3); groups of 3+ digits, so lists of small numbers never match.
    "credit_card": r"(?<=[0-9])(?<![0-9.,-][0-9])(?:[0-9]{12,18}|[0-9]{3}(?P<sep>[ -])[0-9]{3,6}"
                   r"(?:(?P=sep)[0-9]{3,6}){1,3})" + _END,
    # ddd-dd-dddd without the never-issued area 000, 666 and 900-999, group 00, serial 0000.
    "ssn": r"(?<=[0-8])(?<![0-9-][0-8])[0-9]{2}(?<!000)(?<!666)-(?!00)[0-9]{2}-(?!0000)[0-9]{4}" + _END,
    "phone": rf"""(?<![\w+.-][+(0-9])   # not glued to a word or a number
        (?: (?<=\+) 1[ .-]? {_US_BODY}          # +1 555 123 4567: North America
          | (?<=\+) [1-9][0-9]{{0,2}} (?:[ .-]\(?[0-9]{{1,12}}\)?|\([0-9]{{1,5}}\)){{1,6}}  # +44 20 7946 0958
          | (?<=\+) [1-9][0-9]{{7,14}}          # +4930123456 (E.164 without separators)
          | (?<=1) [ .-] {_US_BODY}             # 1-800-555-0199
          | (?<=\() [2-9][0-9][0-9]\)\ ? [0-9]{{3}}[ .-][0-9]{{4}}   # (555) 123-4567
          | (?<=[2-9]) [0-9][0-9][ .-] [0-9]{{3}}[ .-][0-9]{{4}}     # 555-123-4567, 555.123.4567
        ){_END}""",
}
_DIGIT_ORDER = ("ip", "credit_card", "ssn", "phone")
_DIGITS = "0123456789"

# Issuer prefixes (IIN): Visa, Mastercard (51-55, 2221-2720), Amex, Diners, JCB,
# Discover, UnionPay. Cuts false positives on long order numbers and year lists.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9][0-9]|7[01][0-9]|720)|3[47]"
                          r"|3(?:0[0-5]|[689])|35|6(?:011|4[4-9]|5|2)")


@functools.cache
def _digit_pattern(kinds: tuple[str, ...]) -> re.Pattern:
    """One regex for the enabled digit kinds, each a named group, in `_DIGIT_ORDER`."""
    alternatives = "|".join(f"(?P<{k}>{_DIGIT_KINDS[k]})" for k in kinds)
    return re.compile(f"[0-9+(](?:{alternatives})", re.VERBOSE)


def _luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid(kind: str, text: str) -> bool:
    """The checks after the regex, per kind."""
    if kind == "ip":
        # 0-255 and no leading zeros ("01.02.03.04" is more likely a date or a code).
        return all(len(o) == 1 or (o[0] != "0" and int(o) <= 255) for o in text.split("."))
    if kind == "credit_card":
        digits = text.replace(" ", "").replace("-", "")
        return _CARD_PREFIX.match(digits) is not None and _luhn_ok(digits)
    if kind == "phone" and text[0] == "+":
        return 8 <= sum(c.isdigit() for c in text) <= 15  # E.164: at most 15 digits
    return True  # SSNs and North American numbers: the regex pins them down


def _redact_emails(text: str) -> tuple[str, int]:
    """Replace emails: find each "@" + domain, then extend left over the local part."""
    parts, last, count = [], 0, 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        while start > last and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS):
            if text[start - 1] == "." and start - 2 >= last and text[start - 2] == ".":
                break  # ".." never occurs in a local part: "see...john@x.org" starts at "john"
            start -= 1
        while start < match.start() and text[start] == ".":  # nor does a leading dot
            start += 1
        if start == match.start():
            continue  # "@handle.com" with no local part: not an email
        parts += (text[last:start], PII_PLACEHOLDERS["email"])
        last, count = match.end(), count + 1
    if not count:
        return text, 0
    parts.append(text[last:])
    return "".join(parts), count


def _redact_ipv6(text: str) -> tuple[str, int]:
    count = 0

    def repl(match: re.Match) -> str:
        nonlocal count
        # A digit is required: "ab::cd" (C++) parses, real addresses all but never lack one.
        try:
            ok = any(c.isdigit() for c in match.group()) and not ipaddress.IPv6Address(match.group()).is_unspecified
        except ValueError:
            ok = False
        count += ok
        return PII_PLACEHOLDERS["ip"] if ok else match.group()

    return _IPV6.sub(repl, text), count


def redact_pii(text: str, cfg: PIIStage) -> tuple[str, dict[str, int]]:
    """Replace the personal data kinds in `cfg.kinds` by their placeholders.

    Args:
        text: the document.
        cfg: `kinds` lists what to replace (see `PII_PLACEHOLDERS`).

    Returns:
        (the redacted text, {kind: replacements} for every kind in cfg.kinds, zeros
        included, so batches have the same columns).
    """
    counts = dict.fromkeys(cfg.kinds, 0)
    if "email" in counts and "@" in text:
        text, counts["email"] = _redact_emails(text)
    if "ip" in counts and ("::" in text or text.count(":") >= 7):  # the shortest IPv6 forms need one
        text, counts["ip"] = _redact_ipv6(text)
    kinds = tuple(k for k in _DIGIT_ORDER if k in counts)
    if not kinds or not any(d in text for d in _DIGITS):
        return text, counts

    def repl(match: re.Match) -> str:
        kind = match.lastgroup  # the kind's group: it closes after the nested "sep"
        if _valid(kind, match.group()):
            counts[kind] += 1
            return PII_PLACEHOLDERS[kind]
        return match.group()

    return _digit_pattern(kinds).sub(repl, text), counts


assert set(PII_PLACEHOLDERS) == set(PII_KINDS)
