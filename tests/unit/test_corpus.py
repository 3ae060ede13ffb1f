"""The offline starter corpus: deterministic, varied, grammatical enough to learn."""

import random
import re
import time

from training.data.corpus import KINDS, generate_documents


def test_same_seed_same_output_and_different_seed_differs():
    a = list(generate_documents(20_000, seed=1))
    b = list(generate_documents(20_000, seed=1))
    c = list(generate_documents(20_000, seed=2))
    assert a == b
    assert a != c


def test_size_is_about_num_chars():
    docs = list(generate_documents(50_000, seed=0))
    total = sum(map(len, docs))
    assert 50_000 <= total < 50_000 + max(map(len, docs)) + 1
    assert list(generate_documents(0)) == []
    # "a few hundred chars" per document on average
    assert 100 < total / len(docs) < 1000


def test_does_not_touch_global_random_state():
    random.seed(123)
    state = random.getstate()
    list(generate_documents(10_000, seed=5))
    assert random.getstate() == state


def test_all_kinds_appear_and_no_blank_lines():
    docs = list(generate_documents(200_000, seed=0))
    assert set(KINDS) == {"story", "dialogue", "facts", "arithmetic", "list"}
    text = "\n".join(docs)
    assert "Once upon a time" in text or "There once was" in text  # stories
    assert re.search(r"^\w+: (Hello|Hi|Good morning), \w+!", text, re.MULTILINE)  # dialogues
    assert "The capital of " in text  # facts
    assert "Q: What is " in text  # arithmetic
    assert "How to make " in text or " packs:" in text  # lists / recipes
    # Blank lines would split a document when written to a .txt file.
    assert not any("\n\n" in d or d != d.strip() for d in docs)


def test_arithmetic_answers_are_correct():
    text = "\n".join(generate_documents(200_000, seed=3))
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
    found = re.findall(r"Q: What is (\d+) (plus|minus|times) (\d+)\? A: (\d+)\.", text)
    assert len(found) > 100
    for a, op, b, ans in found:
        assert ops[op](int(a), int(b)) == int(ans)


def test_world_facts_are_consistent_across_seeds():
    capitals: dict[str, set[str]] = {}
    for seed in range(3):
        for country, capital in re.findall(r"The capital of (\w+) is ([\w ]+?)\.", "\n".join(
                generate_documents(100_000, seed=seed))):
            capitals.setdefault(country, set()).add(capital)
    assert len(capitals) >= 5
    assert all(len(v) == 1 for v in capitals.values()), capitals


def test_story_hero_keeps_name_and_pronoun():
    checked = 0
    for doc in generate_documents(200_000, seed=4):
        m = re.search(r"(girl|boy) (?:named|called) (\w+)\.", doc)
        if not m:
            continue
        kid, name = m.groups()
        # The friend's pronoun is never used, so only the hero's pronouns appear.
        wrong = r"\b(he|him|his)\b" if kid == "girl" else r"\b(she|her)\b"
        assert not re.search(wrong, doc, re.IGNORECASE), doc
        assert doc.count(name) >= 3, doc
        checked += 1
    assert checked > 50


def test_fast_enough():
    t = time.perf_counter()
    total = sum(map(len, generate_documents(1_000_000, seed=0)))
    assert total >= 1_000_000
    assert time.perf_counter() - t < 3.0
