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
    assert set(KINDS) == {"story", "dialogue", "facts", "arithmetic", "list", "quiz"}
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


def _quizzes(seed: int = 6) -> list[str]:
    return [d for d in generate_documents(400_000, seed=seed)
            if d.startswith(("A quiz about", "Read the story.", "One and many.", "Today and yesterday."))]


def test_quiz_answers_are_true():
    """Every answer of a quiz agrees with the world table, the story it follows or the word rules."""
    from training.data.corpus import _VERBS, _WORLD, _plural

    world = {row[0]: {v.lower() for v in row} for row in _WORLD}
    pasts = {present: past for _, present, past, _ in _VERBS}
    docs = _quizzes()
    assert {d.split()[0] for d in docs} == {"A", "Read", "One", "Today"}  # all four shapes appear
    checked = 0
    for doc in docs:
        if doc.startswith("A quiz about"):
            country = re.match(r"A quiz about ([\w ]+)\.", doc).group(1)
            for q, a in re.findall(r"Q: (.+?) A: (.+?)\.$", doc, re.MULTILINE):
                assert a.lower() in world[country], (q, a, doc)
                checked += 1
        elif doc.startswith("Read the story."):
            story, qa = doc.split("\nAnswer the questions.\n")
            for q, a in re.findall(r"Q: (.+?) A: (.+?)\.$", qa, re.MULTILINE):
                assert re.search(rf"\b{re.escape(a)}\b", story, re.IGNORECASE), (q, a, doc)
                checked += 1
        elif doc.startswith("One and many."):
            for one, many in re.findall(r"One (\w+), two (\w+)\.", doc):
                assert many == _plural(one)
                checked += 1
        else:
            for today, yesterday in re.findall(r"Today (.+?)\. Yesterday (.+?)\.", doc):
                name, present, rest = today.split(" ", 2)
                assert yesterday == f"{name} {pasts[present]} {rest}"
                checked += 1
    assert checked > 300


def test_quiz_wordings_are_not_the_instruction_data_wordings():
    """The held-out wordings of the fine-tuning data must stay unseen in pretraining: no quiz
    question is any wording of instruction_templates.py, training or held-out."""
    from training.data.corpus import _QUIZ_STORY, _QUIZ_WORLD
    from training.posttrain.instruction_templates import TEMPLATES

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^\w{} ]", " ", text.lower()).split())

    sft = {norm(p.split("|")[-1]) for groups in TEMPLATES.values() for ps in groups.values() for p in ps}
    sft |= {norm(p.split("|")[0]) for groups in TEMPLATES.values() for ps in groups.values() for p in ps}
    quiz = [q for qs, _ in _QUIZ_WORLD.values() for q in qs]
    quiz += [q for facts in _QUIZ_STORY.values() for qs in facts.values() for q in qs]
    assert len(quiz) > 40
    assert not {norm(q) for q in quiz} & sft
