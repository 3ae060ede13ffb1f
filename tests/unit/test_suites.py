"""The offline lm-eval suites: items pinned to the corpus and to lm-eval, files written once, a real lm-eval run."""

import random
import re
from collections import Counter

import pytest

from evaluation import mmlu, suites, world_suites
from training.data import corpus
from training.errors import UserError
from training.posttrain import instructions


@pytest.fixture(scope="module")
def mmlu_rows():
    from evaluation.benchdata import data_file

    try:
        path = data_file("mmlu", fetch=False)
    except UserError:
        pytest.skip("the MMLU file is not fetched: run `python -m evaluation.benchdata`")
    return mmlu.questions(path)


def test_story_is_the_corpus_story():
    for seed in range(300):
        ours, theirs = random.Random(seed), random.Random(seed)
        text, facts = world_suites.story(ours)
        assert text == corpus._story(theirs)
        assert ours.getstate() == theirs.getstate()  # the same draws, so the same stream afterwards
        assert facts["hero"] in text and facts["helper"] != facts["hero"]


def test_fact_prompts_are_corpus_sentences():
    rng = random.Random(0)
    sentences = {s.strip() for _ in range(3000) for s in re.findall(r"[^.]+\.", corpus._facts(rng))}
    for item in world_suites.facts_items():
        assert f"{item['prompt']} {item['choices'][item['answer']]}" in sentences
    from training.posttrain.forgetting import RELATIONS

    for relation, (column, prompt) in RELATIONS.items():  # the same cloze sentences as the forgetting check
        ours, key = world_suites.FACT_RELATIONS[relation]
        assert ours == prompt and world_suites._COLUMNS.index(key) == column


def test_world_facts_item_and_counts():
    items = world_suites.facts_items()
    assert len(items) == len(corpus._WORLD) * len(world_suites.FACT_RELATIONS) == 60
    item = next(i for i in items if i["id"] == "facts/capital/Varnia")
    assert item["prompt"] == "The capital of Varnia is" and item["relation"] == "capital"
    assert item["choices"][item["answer"]] == "Tolbek."
    assert len(set(item["choices"])) == 4 and set(item["choices"]) <= {f"{row[1]}." for row in corpus._WORLD}
    river = next(i for i in items if i["id"] == "facts/river/Plonk")
    assert river["prompt"] == "The river Ardo flows through" and river["choices"][river["answer"]] == "Plonk."


def test_world_arithmetic_items():
    items = world_suites.arithmetic_items()
    assert len(items) == len({i["id"] for i in items}) == 300
    assert Counter(i["operation"] for i in items) == {"plus": 100, "minus": 100, "times": 100}
    ops = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}
    for item in items:
        values = [int(c.rstrip(".")) for c in item["choices"]]
        right = ops[item["operation"]](item["x"], item["y"])
        assert item["prompt"] == f"Q: What is {item['x']} {item['operation']} {item['y']}? A:"
        assert values[item["answer"]] == right and values.count(right) == 1
        assert len(set(values)) == 4 and min(values) >= 0
    # every question is one the corpus asks, in its words: "Q: What is 7 plus 5? A: 12."
    rng = random.Random(0)
    lines = {corpus._arith_line(rng) for _ in range(20000)}
    assert all(f"{i['prompt']} {i['choices'][i['answer']]}" in lines for i in items)
    seven_plus_five = world_suites._near_misses(random.Random(1), "plus", 7, 5)
    assert len(set(seven_plus_five)) == 3 and 12 not in seven_plus_five
    assert {11, 13} & set(seven_plus_five) and {2, 35} & set(seven_plus_five)  # off by one; wrong operation


def test_world_stories_ask_what_the_story_states():
    items = world_suites.story_items()
    assert len(items) == 200 and len(Counter(i["question"] for i in items)) >= 12
    for item in items:
        story, question = item["prompt"].split("\nQuestion: ")
        assert question.endswith("?\nAnswer:") and len(set(item["choices"])) == 4
        assert item["choices"][item["answer"]] in story
    rng = random.Random("world_stories/0")
    assert items[0]["prompt"].startswith(world_suites.story(rng)[0])


def test_heldout_instructions_never_include_training_rows():
    from training.posttrain.config import SFTDataConfig

    defaults = SFTDataConfig()
    assert (world_suites.INSTRUCTIONS_SEED, world_suites.INSTRUCTIONS_PER_SPLIT) == (defaults.seed, defaults.n_test)
    items = world_suites.instruction_items()
    assert 300 < len(items) <= 400 and len({i["prompt"] for i in items}) == len(items)
    seen = [ex for split in ("train", "val") for ex in instructions.generate(3000, defaults.seed, split)]
    trained = {instructions.to_messages(ex)["messages"][0]["content"] for ex in seen}
    assert not trained & {i["prompt"] for i in items}
    for item in items:
        if item["split"] == "heldout_template":
            assert instructions.is_heldout_template(item["task"], item["template"])
        else:
            assert instructions.is_heldout_entity(item["task"], item["entity"])
    capital = {"output": "The capital of Varnia is Tolbek.", "answer": "Tolbek"}
    assert world_suites.instruction_results(capital, ["  The capital of Varnia is Tolbek.\n"]) == \
        {"exact_match": 1, "normalized_match": 1}
    assert world_suites.instruction_results(capital, ["tolbek"]) == {"exact_match": 0, "normalized_match": 1}


def test_items_are_deterministic():
    for build in world_suites.ITEMS.values():
        assert build() == build()


def test_mmlu_questions(mmlu_rows):
    assert len(mmlu_rows) == 57 and sum(map(len, mmlu_rows.values())) == 14042
    assert len(mmlu_rows["college_mathematics"]) == 100 and len(mmlu_rows["elementary_mathematics"]) == 378
    by_category = Counter(category for category, _ in mmlu.subjects().values())
    assert set(by_category) == set(mmlu.categories()) == set(suites._CATEGORY_TITLES)
    assert by_category == {"stem": 19, "other": 13, "social_sciences": 12, "humanities": 13}  # lm-eval's split
    row = mmlu_rows["high_school_biology"][0]
    assert len(row["choices"]) == 4 and row["answer"] in range(4) and row["id"] == "mmlu/high_school_biology/0"


def test_mmlu_refuses_unknown_topics(tmp_path):
    path = tmp_path / "mmlu.jsonl"
    header = '{"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c", ' \
             '"answer_d": "answer_d", "correct_answer": "answer", "topic": "anatomy"}\n'
    path.write_text(header + header.replace('"question": "question"', '"question": "Q?"')
                    .replace('"answer"', '"B"').replace("anatomy", "alchemy"))
    with pytest.raises(UserError, match="'alchemy' is no lm-eval MMLU subject"):
        mmlu.questions(path)


def test_suites_and_expand():
    assert suites.SUITES["world_facts"].chance == 0.25 and suites.SUITES["world_instructions"].chance == 0
    assert suites.expand(["world"]) == list(suites.WORLD)
    assert suites.expand(["mmlu", "world_facts"]) == ["mmlu_offline", "world_facts"]
    assert suites.expand(["mmlu_offline_anatomy", "mmlu_offline_stem"]) == ["mmlu_offline_stem"]  # anatomy is STEM
    assert suites.expand(["mmlu_offline_anatomy", "mmlu_offline_humanities"]) == \
        ["mmlu_offline_anatomy", "mmlu_offline_humanities"]
    with pytest.raises(UserError, match=r"unknown eval suite 'winogrande' \(known: world, mmlu, world_facts"):
        suites.expand(["world", "winogrande"])
    with pytest.raises(UserError, match="unknown eval suite 'mmlu_offline_alchemy'"):
        suites.expand(["mmlu_offline_alchemy"])
    assert suites.expand(["mmlu_stem", "mmlu_anatomy"]) == ["mmlu_offline_stem"]  # lm-eval's names: our copies
    with pytest.raises(UserError, match="no eval suites"):
        suites.expand([])
    with pytest.raises(UserError, match="unknown eval suite 'anatomy'"):
        suites.expand(["anatomy"])


def test_members_chance_and_chat():
    assert len(suites.members("mmlu_offline")) == 57 and len(suites.members("mmlu_offline_stem")) == 19
    assert "mmlu_offline_anatomy" in suites.members("mmlu_offline_stem")
    assert suites.members("world_facts") == {"world_facts"}
    assert suites.chance("mmlu_offline_anatomy") == suites.chance("mmlu_offline") == 0.25
    assert suites.chance("world_instructions") == 0 and suites.chance("winogrande") is None
    assert suites.is_chat("world_instructions") and not suites.is_chat("world") and not suites.is_chat("mmlu")


def test_prepare_writes_once(tmp_path):
    root = suites.prepare(tmp_path / "tasks", ["world"])
    assert root == (tmp_path / "tasks").resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert [p.name for p in files] == sorted(f"{n}.{ext}" for n in suites.WORLD for ext in ("jsonl", "yaml"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    (root / "world_facts" / "world_facts.jsonl").write_text("stale\n")
    suites.prepare(root, ["world_facts", "world_stories"])
    assert (root / "world_facts" / "world_facts.jsonl").read_text().startswith('{"id": "facts/capital/Varnia"')
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.parent.name != "world_facts")
    assert not list(root.rglob(".*"))  # no temporary files left behind
    text = (root / "world_instructions" / "world_instructions.yaml").read_text()
    assert "process_results: !function 'evaluation.world_suites.instruction_results'" in text
    assert f"test: {root}/world_instructions/world_instructions.jsonl" in text


def test_lm_eval_runs_the_suites(tmp_path, monkeypatch, mmlu_rows):
    """One real lm-eval run (its `dummy` model answers at random) over a world suite and all of MMLU."""
    import datasets
    import lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # keep ~/.cache clean
    tm = suites.task_manager(tmp_path / "tasks")
    assert {"world_facts", "mmlu_offline", "mmlu_offline_stem", "mmlu_offline_anatomy"} <= set(tm.all_tasks)
    out = lm_eval.simple_evaluate(model="dummy", tasks=suites.expand(["world_facts", "world_instructions", "mmlu"]),
                                  limit=5, task_manager=tm)
    results = out["results"]
    assert 0 <= results["world_facts"]["acc,none"] <= 1 and "acc_norm,none" in results["world_facts"]
    assert results["world_instructions"]["normalized_match,none"] == 0  # the dummy always says "lol"
    assert results["mmlu_offline_anatomy"]["sample_len"] == 5
    assert results["mmlu_offline"]["sample_len"] == 57 * 5 and "mmlu_offline_humanities" in results
    prompt, continuation = out["samples"]["world_facts"][0]["arguments"][0]
    assert (prompt, continuation) == ("The capital of Varnia is", " " + world_suites.facts_items()[0]["choices"][0])
    first = mmlu_rows["anatomy"][0]
    letters = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", first["choices"], strict=True))
    expected = ("The following are multiple choice questions (with answers) about anatomy.\n\n"
                f"{first['question'].strip()}\n{letters}\nAnswer:")
    assert out["samples"]["mmlu_offline_anatomy"][0]["arguments"] == [(expected, f" {x}") for x in "ABCD"]
