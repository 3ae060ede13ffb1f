"""PII redaction: planted emails, phones, IPs, cards and SSNs are all replaced and
counted; ordinary numbers (years, prices, dates, versions, near misses) are untouched."""

import random

import pytest

from training.data.config import PII_KINDS, PIIStage
from training.data.pii import PII_PLACEHOLDERS, redact_pii

TEMPLATES = [
    "Please contact {} before Friday.",
    "The number {} was written on the form, next to the date.",
    "{} appeared at the start of the line",
    "Records show ({}) as the last entry.",
    "Send it to {}, or leave a message with the office.",
    "In 2021 the value {} was added to the list of 12 items.",
]


def _luhn_complete(rng, prefix, length):
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit at the right end
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return "".join(map(str, digits)) + str(-total % 10)


def _card(rng):
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("6011", 16),
                                 ("65", 16), ("34", 15), ("37", 15), ("35", 16), ("4", 13), ("4", 19)])
    number = _luhn_complete(rng, prefix, length)
    if length == 15 and rng.random() < 0.7:
        return f"{number[:4]} {number[4:10]} {number[10:]}"  # Amex style 4-6-5
    if length == 16:
        sep = rng.choice(["", " ", "-"])
        return sep.join(number[i:i + 4] for i in range(0, 16, 4))
    return number


def _phone(rng):
    def d(k):
        return "".join(str(rng.randrange(10)) for _ in range(k))

    area = str(rng.randrange(2, 10)) + d(2)
    return rng.choice([
        f"({area}) {d(3)}-{d(4)}", f"{area}-{d(3)}-{d(4)}", f"{area}.{d(3)}.{d(4)}", f"{area} {d(3)} {d(4)}",
        f"+1 {area} {d(3)} {d(4)}", f"+1-{area}-{d(3)}-{d(4)}", f"1-{area}-{d(3)}-{d(4)}",
        f"+1 ({area}) {d(3)}-{d(4)}", f"+44 20 {d(4)} {d(4)}", f"+33 {rng.randrange(1, 10)} {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+49 30 {d(8)}", f"+81 3-{d(4)}-{d(4)}", f"+61 2 {d(4)} {d(4)}", f"+91 {d(5)} {d(5)}", f"+4930{d(7)}",
    ])


def _ip(rng):
    if rng.random() < 0.2:
        groups = [f"{rng.randrange(1 << 16):x}" for _ in range(8)]
        return rng.choice([":".join(groups), f"{groups[0]}:{groups[1]}::{groups[2]}", f"fe80::{groups[3]}"])
    return ".".join(str(rng.randrange(256)) for _ in range(4))


def _ssn(rng):
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def _email(rng):
    name = rng.choice(["john", "mary.ann", "a.b.c", "first_last", "x9"]) + rng.choice(["", "+news", "+1", "2024"])
    host = rng.choice(["example.com", "mail.example.org", "uni.ac.uk", "sub.dept.company.io", "web.de"])
    return f"{name}@{host}"


MAKERS = {"credit_card": _card, "phone": _phone, "ip": _ip, "ssn": _ssn, "email": _email}


def _planted(kind, n=60, seed=0):
    rng = random.Random(f"{kind}-{seed}")
    items = [MAKERS[kind](rng) for _ in range(n)]
    text = " ".join(rng.choice(TEMPLATES).format(item) for item in items)
    return items, text


@pytest.mark.parametrize("kind", PII_KINDS)
def test_planted_items_are_all_replaced(kind):
    items, text = _planted(kind)
    out, counts = redact_pii(text, PIIStage())
    assert counts[kind] == len(items)
    assert sum(counts.values()) == len(items), counts  # nothing else fired
    assert out.count(PII_PLACEHOLDERS[kind]) == len(items)
    for item in items:
        assert item not in out
    assert "In 2021 the value" in out and "12 items" in out  # surrounding numbers stay


NEGATIVES = [
    "In 1999 and again in 2024 the town grew.", "It cost $1,234.56, or 1.234,56 EUR with tax.",
    "Prices: 9.99, 19.99 and 1,000,000.", "Dates: 2024-01-15, 15.01.2024, 01/15/2024 and 2023-12-31.",
    "Versions 1.2.3, v10.0.19045 and 3.11.7 are supported.", "Not an address: 999.1.1.1 or 256.10.10.10.",
    "Also not: 1.2.3.4.5 and 01.02.03.04.", "Bad SSNs: 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000.",
    "Time 12:30:45, ratio 3:2, C++ std::vector, ab::cd and dead:beef::cafe.", "Short numbers 555-1234 and 90210 and Room 101.",
    "ISBN 978-3-16-148410-0 and pages 100-120 and 1990-2000.", "Pi is 3.14159 and 12.5% of 40.7128, -74.0060.",
    "Years 2019 2020 2021 2022 in a row, and +5 points.", "Write to @handle.com or user@localhost.",
    "Order 1234567890 shipped; serial 12345678901 too.",
]


def test_ordinary_numbers_are_untouched():
    rng = random.Random(3)
    bad_cards = []
    for _ in range(60):  # valid-looking cards with a wrong check digit
        good = _luhn_complete(rng, rng.choice(["4", "51", "37", "6011"]) + "12", 16)
        bad = good[:-1] + str((int(good[-1]) + rng.randrange(1, 10)) % 10)
        bad_cards.append(rng.choice(["", " ", "-"]).join(bad[i:i + 4] for i in range(0, 16, 4)))
    for text in NEGATIVES + [f"Reference {c} was declined." for c in bad_cards]:
        out, counts = redact_pii(text, PIIStage())
        assert out == text and not any(counts.values()), (text, out)


def test_mixed_document_counts_and_kinds_filter():
    text = ("Mail jane.doe+x@mail.example.com or call (555) 123-4567. The server 10.0.0.1 logged card "
            "4111 1111 1111 1111 and SSN 123-45-6789 on 2024-01-15 for $1,234.56.")
    out, counts = redact_pii(text, PIIStage())
    assert counts == {"email": 1, "phone": 1, "ip": 1, "credit_card": 1, "ssn": 1}
    assert out == ("Mail <EMAIL> or call <PHONE>. The server <IP> logged card <CREDIT_CARD> and SSN <SSN> "
                   "on 2024-01-15 for $1,234.56.")
    out, counts = redact_pii(text, PIIStage(kinds=["ssn", "email"]))
    assert counts == {"ssn": 1, "email": 1}
    assert "<SSN>" in out and "<EMAIL>" in out and "(555) 123-4567" in out and "10.0.0.1" in out
    assert "4111 1111 1111 1111" in out
    out, counts = redact_pii(text, PIIStage(kinds=[]))
    assert out == text and counts == {}


def test_placeholders_and_plain_text():
    assert set(PII_PLACEHOLDERS) == set(PII_KINDS)
    text = "No personal data here, just words."
    assert redact_pii(text, PIIStage()) == (text, dict.fromkeys(PII_KINDS, 0))
    assert redact_pii("See...jane.roe@x.org.", PIIStage())[0] == "See...<EMAIL>."  # not the ellipsis
