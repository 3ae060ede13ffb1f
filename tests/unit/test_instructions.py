"""Instruction data from the starter world: right answers, held-out splits, both file shapes, one-line errors."""

import json
import random
import re

import pytest

from training.data import corpus
from training.errors import UserError
from training.posttrain import instructions as ins

ROWS = {r[0]: r for r in corpus._WORLD}
COLUMN = {"capital": 1, "language": 2, "animal": 3, "famous": 4, "river": 5}
OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}


@pytest.fixture(scope="module")
def splits():
    return ins.build(seed=0, n_train=3000, n_val=400, n_test=800)


def everything(splits):
    return [ex for exs in splits.values() for ex in exs]


def of(examples, task, group_prefix=""):
    return [e for e in examples if e["task"] == task and e["template"].split(".")[1].startswith(group_prefix)]


def question(ex):
    return ex["instruction"] + " " + ex["input"]


# ---------------------------------------------------------------- generation


def test_same_seed_same_examples_other_seed_differs():
    assert ins.build(7, 300, 50, 80) == ins.build(7, 300, 50, 80)
    assert ins.generate(200, seed=1) != ins.generate(200, seed=2)
    assert ins.generate(200, seed=1, split="val") != ins.generate(200, seed=1, split="train")


def test_does_not_touch_global_random_state():
    random.seed(123)
    state = random.getstate()
    ins.build(3, 200, 20, 40)
    assert random.getstate() == state


def test_every_kind_in_every_split_with_all_fields(splits):
    for name, exs in splits.items():
        assert {e["task"] for e in exs} == set(ins.TASK_KINDS), name
        for e in exs:
            assert set(e) == {"instruction", "input", "output", "task", "template", "entity", "answer"}
            assert all(isinstance(v, str) for v in e.values())
            assert e["instruction"] and e["output"] and e["answer"] and e["entity"]
            assert "{" not in question(e) + e["output"], e  # every placeholder was filled
    # Kinds take turns: each gets its share even in a small set.
    assert {e["task"] for e in ins.generate(8, seed=0)} == set(ins.TASK_KINDS)


def test_unknown_split_or_kind_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        ins.generate(3, 0, split="test")
    with pytest.raises(ValueError, match="unknown task kinds"):
        ins.generate(3, 0, kinds=("world", "poetry"))
    assert {e["task"] for e in ins.generate(20, 0, kinds=("world",))} == {"world"}


# ---------------------------------------------------------------- answers agree with the world


def test_world_answers_are_the_world_table(splits):
    exs = of(everything(splits), "world")
    assert {e["template"].split(".")[1] for e in exs} >= {"capital", "capital_rev", "river", "famous_rev"}
    for e in exs:
        group = e["template"].split(".")[1]
        row = ROWS[e["entity"]]
        value = row[COLUMN[group.removesuffix("_rev")]]
        if group.endswith("_rev"):  # "Which country has Tolbek as its capital?"
            assert e["answer"] == row[0] and value in question(e), e
        else:
            assert e["answer"] == value and row[0] in question(e), e
        assert row[0] in e["output"] and value in e["output"] and e["output"].endswith(".")
    capital = next(e for e in exs if e["template"].startswith("world.capital.") and e["entity"] == "Varnia")
    assert (capital["answer"], capital["output"]) == ("Tolbek", "The capital of Varnia is Tolbek.")


def test_animal_answers_are_the_animal_facts(splits):
    for e in of(everything(splits), "animals"):
        group = e["template"].split(".")[1]
        sound, legs, home, food = corpus._ANIMAL_FACTS[e["entity"]]
        want = {"sound": sound, "legs": str(legs), "home": home, "food": food, "sound_rev": e["entity"]}[group]
        assert e["answer"] == want, e
        assert e["entity"] in (question(e) if group != "sound_rev" else e["output"])
    duck = ins.generate(400, 0, kinds=("animals",))
    assert any(e["output"] == "A duck says quack." for e in duck)


def test_arithmetic_answers_compute(splits):
    exs = of(everything(splits), "arithmetic")
    assert len(exs) > 100
    for e in exs:
        x, op, y = re.search(r"(\d+) (plus|minus|times) (\d+)", question(e)).groups()
        assert int(e["answer"]) == OPS[op](int(x), int(y)) >= 0, e
        assert e["entity"] == f"{x} {op} {y}" and e["output"] == f"{x} {op} {y} is {e['answer']}."


def test_story_answers_are_in_the_story(splits):
    exs = of(everything(splits), "story_qa") + of(everything(splits), "summary")
    for e in exs:
        story = e["input"]
        hero, thing = e["entity"].split("+")
        assert hero in story and thing in story, e
        if e["task"] == "story_qa":
            assert e["answer"] in story and e["answer"] in e["output"], e
        else:
            assert e["answer"] == e["output"] and e["output"].startswith(hero)
    helped = [e for e in exs if e["template"].startswith("story_qa.lost_helper.")]
    assert helped and all(f"Then {e['answer']} came by and helped" in e["input"] for e in helped)
    lost = [e for e in exs if e["task"] == "summary" and " lost " in e["output"]]
    for e in lost:  # "Mia lost her kite in the park and Tom helped her find it."
        hero, _, his, thing, _, _, place, _, helper = e["output"].split()[:9]
        assert f"{hero} lost {his} " in e["input"] and f"the {place}" in e["input"] and f"Then {helper} came" in e["input"]


def test_rewrites_are_right(splits):
    exs = of(everything(splits), "rewrite")
    plurals = {e["entity"]: e["answer"] for e in exs if e["template"].startswith("rewrite.plural.")}
    expected = {"cat": "cats", "box": "boxes", "fox": "foxes", "tomato": "tomatoes", "potato": "potatoes",
                "mouse": "mice", "beach": "beaches", "kite": "kites", "blanket": "blankets"}
    assert {w: plurals[w] for w in expected if w in plurals} == {w: p for w, p in expected.items() if w in plurals}
    assert len(set(expected) & set(plurals)) >= 6
    past = {"go": "went", "eat": "ate", "see": "saw", "give": "gave", "hug": "hugged", "walk": "walked",
            "find": "found", "draw": "drew", "build": "built", "swim": "swam"}
    for e in exs:
        if e["template"].startswith("rewrite.past."):
            before, after = e["input"].split(), e["output"].split()
            assert before[0] == after[0] and before[2:] == after[2:], e  # only the verb changes
            if e["entity"] in past:
                assert after[1] == past[e["entity"]], e


def test_classifications_are_right(splits):
    true_facts = {s for c, cap, lang, animal, famous, river in corpus._WORLD for s in (
        f"The capital of {c} is {cap}.", f"People in {c} speak {lang}.", f"The national animal of {c} is the {animal}.",
        f"{c} is famous for its {famous}.", f"The river {river} flows through {c}.")}
    labels = {"legs": set(), "feeling": set(), "fact": set()}
    for e in of(everything(splits), "classify"):
        group = e["template"].split(".")[1]
        if group == "legs":
            want = "two-legged" if corpus._ANIMAL_FACTS[e["entity"]][1] == 2 else "four-legged"
        elif group == "feeling":
            want = "happy" if e["entity"] in corpus._GOOD else "sad"
            assert e["entity"] in e["input"].split(" ")[-1] or f" {e['entity']} " in e["input"]
        else:
            want = "true" if e["input"] in true_facts else "false"
            assert e["entity"] in e["input"]
        assert e["answer"] == want and e["output"] == want.capitalize() + ".", e
        labels[group].add(want)
    assert labels == {"legs": {"two-legged", "four-legged"}, "feeling": {"happy", "sad"}, "fact": {"true", "false"}}


def test_declines_are_about_things_outside_the_world(splits):
    known = {w for r in corpus._WORLD for w in r} | set(corpus._ANIMALS)
    exs = of(everything(splits), "decline")
    assert {"France", "zebra"} <= {e["entity"] for e in exs}
    for e in exs:
        assert e["output"] == e["answer"] == ins.REFUSAL
        assert e["entity"] not in known and e["entity"] in question(e)


# ---------------------------------------------------------------- held-out splits


def test_heldout_template_phrasings_never_appear_in_training(splits):
    seen = {(e["task"], e["template"]) for e in splits["train"] + splits["val"]}
    held = {(e["task"], e["template"]) for e in splits["heldout_template"]}
    assert held and not held & seen
    assert {t for t, _ in held} == set(ins.TASK_KINDS)  # at least one reserved phrasing per kind
    # ...and not one wording under another id: the phrasings' texts are unseen too.
    seen_text = {(e["task"], e["instruction"], e["input"]) for e in splits["train"]}
    assert not [e for e in splits["heldout_template"] if (e["task"], e["instruction"], e["input"]) in seen_text]
    # It changes the phrasing only: its entities are training ones.
    assert not any(ins.is_heldout_entity(e["task"], e["entity"]) for e in splits["heldout_template"])
    assert all(ins.is_heldout_template(t, tpl) for t, tpl in held)
    assert not any(ins.is_heldout_template(t, tpl) for t, tpl in seen)


def test_heldout_entities_are_never_asked_about_in_training(splits):
    seen = {(e["task"], e["entity"]) for e in splits["train"] + splits["val"]}
    held = {(e["task"], e["entity"]) for e in splits["heldout_entity"]}
    assert held and not held & seen
    assert {t for t, _ in held} == set(ins.TASK_KINDS)
    assert {ent for t, ent in held if t == "world"} == {"Kalo", "Norrow"}  # two countries of ten
    assert all(ins.is_heldout_entity(t, ent) for t, ent in held)
    assert not any(ins.is_heldout_entity(t, ent) for t, ent in seen)
    # It changes the entity only: its phrasings are training ones.
    assert not any(ins.is_heldout_template(e["task"], e["template"]) for e in splits["heldout_entity"])
    # Stories: the reserved heroes and things never appear in a training story, in any role.
    stories = [ent.split("+") for t, ent in held if t in ("story_qa", "summary")]
    heroes = {h for h, _ in stories if ins.is_heldout_entity("story_qa", f"{h}+nothing")}
    things = {t for _, t in stories if ins.is_heldout_entity("story_qa", f"nobody+{t}")}
    assert len(heroes) >= 2 and len(things) >= 2
    held_story = heroes | things
    for e in splits["train"]:
        if e["task"] in ("story_qa", "summary"):
            assert not held_story & set(re.findall(r"\w+", e["input"])), e
    # Arithmetic: a held-out pair is held out in both orders, and its numbers still appear in training.
    pairs = {tuple(int(v) for v in ent.split()[::2]) for t, ent in held if t == "arithmetic"}
    assert all(ins.is_heldout_entity("arithmetic", f"{y} plus {x}") for x, y in pairs)
    train_numbers = {int(v) for t, ent in seen if t == "arithmetic" for v in ent.split()[::2]}
    assert {v for p in pairs for v in p} <= train_numbers


def test_heldout_country_facts_are_in_the_pretraining_corpus():
    text = "\n".join(corpus.generate_documents(300_000, seed=0))
    for country in ("Kalo", "Norrow"):
        assert f"The capital of {country} is {ROWS[country][1]}." in text


# ---------------------------------------------------------------- sizes


def test_examples_fit_a_tiny_context(splits):
    for e in everything(splits):
        assert len((question(e) + " " + e["output"]).split()) <= 100, e
        if e["task"] in ("story_qa", "summary"):
            assert 40 <= len(e["input"].split()) <= 70, e
            assert "\n\n" not in e["input"]
        if e["template"].startswith("rewrite.plural."):
            assert re.fullmatch(r"[a-z]+", e["output"])  # a word, not a sentence
        else:
            assert e["output"].endswith("."), e
        assert len(e["output"].split()) <= 16


# ---------------------------------------------------------------- file shapes


def test_shapes():
    ex = {"instruction": "Summarize the story.", "input": "Mia lost her kite.", "output": "Mia lost her kite.",
          "task": "summary"}
    assert ins.to_alpaca(ex) == {"instruction": "Summarize the story.", "input": "Mia lost her kite.",
                                 "output": "Mia lost her kite."}
    assert ins.to_messages(ex) == {"messages": [
        {"role": "user", "content": "Summarize the story.\n\nMia lost her kite."},
        {"role": "assistant", "content": "Mia lost her kite."}]}
    no_input = ins.to_messages({"instruction": "Hi?", "input": "", "output": "Hi."}, system="Be brief.")
    assert no_input["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                                    {"role": "assistant", "content": "Hi."}]


@pytest.mark.parametrize("shape", ["alpaca", "messages"])
def test_round_trip(tmp_path, splits, shape):
    exs = splits["train"][:200] + splits["heldout_entity"][:50]
    path = ins.write_jsonl(exs, tmp_path / "out" / "data.jsonl", shape=shape)
    first = json.loads(path.read_text().splitlines()[0])
    assert ("messages" in first) == (shape == "messages") and ("instruction" in first) == (shape == "alpaca")
    assert ins.read_jsonl(path) == exs
    plain = ins.write_jsonl(exs, tmp_path / "plain.jsonl", shape=shape, meta=False)
    assert ins.read_jsonl(plain) == [ins.to_alpaca(e) for e in exs]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_system_message_round_trips(tmp_path):
    exs = ins.generate(5, seed=0)
    path = ins.write_jsonl(exs, tmp_path / "d.jsonl", shape="messages", system="Answer briefly.")
    back = ins.read_jsonl(path)
    assert [b.pop("system") for b in back] == ["Answer briefly."] * 5 and back == exs
    again = ins.write_jsonl(ins.read_jsonl(path), tmp_path / "a.jsonl", shape="alpaca")
    assert ins.read_jsonl(again)[0]["system"] == "Answer briefly."


def test_reads_sharegpt(tmp_path):
    roles = {"system": "system", "user": "human", "assistant": "gpt"}
    exs = ins.generate(20, seed=4)
    rows = [{"conversations": [{"from": roles[m["role"]], "value": m["content"]}
                               for m in ins.to_messages(e, system="S")["messages"]]} for e in exs]
    path = tmp_path / "share.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    back = ins.read_jsonl(path)
    assert [{k: b[k] for k in ("instruction", "input", "output")} for b in back] == [ins.to_alpaca(e) for e in exs]
    assert {b["system"] for b in back} == {"S"}


def test_reads_plain_alpaca_with_optional_input(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('\ufeff{"instruction": "Say hi.", "output": "Hi."}\n\n  \n{"instruction": "Add.", "input": null, '
                    '"output": "2.", "extra": 1}\n')
    assert ins.read_jsonl(path) == [{"instruction": "Say hi.", "input": "", "output": "Hi."},
                                    {"instruction": "Add.", "input": "", "output": "2."}]


GOOD_ALPACA = '{"instruction": "Say hi.", "input": "", "output": "Hi."}'
GOOD_CHAT = '{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi."}]}'


def turns(*pairs, key="messages", role="role", content="content"):
    return json.dumps({key: [{role: r, content: c} for r, c in pairs]})


@pytest.mark.parametrize("lines, where, message", [
    ([GOOD_ALPACA, "", '{"instruction": "Say hi."}'], 3, "missing field 'output'"),
    ([GOOD_ALPACA, '{"instruction": "Say hi.", "output": 5}'], 2, "field 'output' must be a string, got int"),
    ([GOOD_ALPACA, '{"instruction": " ", "output": "x"}'], 2, "field 'instruction' is empty"),
    ([GOOD_ALPACA, '{"instruction": "Say hi.", "output": "Hi."'], 2, "not valid JSON"),
    (['["instruction", "output"]'], 1, "expected a JSON object, got list"),
    (['{"prompt": "a", "completion": "b"}'], 1, "cannot tell the shape"),
    ([GOOD_CHAT, turns(("user", "Hi?"), ("wizard", "Hi."))], 2,
     "messages[1].role must be one of system, user, assistant, got 'wizard'"),
    ([GOOD_CHAT, '{"messages": [{"role": "user"}]}'], 2, "missing field 'messages[0].content'"),
    ([GOOD_CHAT, '{"messages": [{"role": "user", "content": null}]}'], 2, "messages[0].content must be a string, got null"),
    ([GOOD_CHAT, '{"messages": []}'], 2, "field 'messages' must be a non-empty list"),
    ([GOOD_CHAT, '{"messages": ["hi"]}'], 2, "messages[0] must be an object, got string"),
    ([GOOD_CHAT, turns(("assistant", "Hi."), ("user", "Hi?"))], 2, "messages[0].role must be 'user' here, got 'assistant'"),
    ([GOOD_CHAT, turns(("user", "Hi?"))], 2, "messages must end with a reply from 'assistant'"),
    ([GOOD_CHAT, turns(("user", "Hi?"), ("assistant", "Hi."), ("user", "And?"))], 2,
     "messages has 3 turns; only one exchange is supported (user, assistant)"),
    ([GOOD_CHAT, GOOD_ALPACA], 2, "missing field 'messages'"),
    ([turns(("human", "Hi?"), ("bot", "Hi."), key="conversations", role="from", content="value")], 1,
     "conversations[1].from must be one of system, human, gpt, got 'bot'"),
    ([turns(("human", "Hi?"), ("gpt", ""), key="conversations", role="from", content="value")], 1,
     "conversations[1].value is empty"),
])
def test_bad_rows_are_one_line_errors_naming_file_line_and_field(tmp_path, lines, where, message):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        ins.read_jsonl(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{where}: {message}"), text
    assert "\n" not in text


def test_unreadable_or_empty_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        ins.read_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="no examples"):
        ins.read_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(GOOD_ALPACA.encode() + b"\n" + '{"instruction": "é"}'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.jsonl:2: not valid UTF-8"):
        ins.read_jsonl(tmp_path / "latin.jsonl")


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = ins.write_jsonl(ins.generate(10, 0), tmp_path / "data.jsonl")
    before = path.read_bytes()

    def rows():
        yield from ins.generate(5, 1)
        yield {"instruction": "x", "output": object()}  # cannot be written as JSON: fails half-way

    with pytest.raises(TypeError):
        ins.write_jsonl(rows(), path)
    with pytest.raises(KeyError):
        ins.write_jsonl([{"instruction": "no output"}], path, shape="messages")
    with pytest.raises(UserError, match="unknown shape 'sharegpt'"):
        ins.write_jsonl(ins.generate(2, 0), path, shape="sharegpt")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]


# ---------------------------------------------------------------- scoring

CAPITAL = {"output": "The capital of Varnia is Tolbek.", "answer": "Tolbek"}


@pytest.mark.parametrize("prediction, example, correct", [
    ("Tolbek", CAPITAL, True),
    ("  tolbek. ", CAPITAL, True),
    ("The capital of Varnia is Tolbek.", CAPITAL, True),
    ("the capital of  varnia is tolbek", CAPITAL, True),
    ("The capital of Varnia is Tolbek. The capital of Plonk is Mirrow.", CAPITAL, True),  # kept generating
    ("Mirrow", CAPITAL, False),
    ("The capital of Varnia is Mirrow.", CAPITAL, False),
    ("Tolbek is the capital of Varnia.", CAPITAL, False),  # right, but neither the answer nor the output
    ("It is Tolbek", CAPITAL, False),
    ("", CAPITAL, False),
    ("a pond", {"output": "A duck lives in a pond.", "answer": "pond"}, True),
    ("12", {"output": "7 plus 5 is 12.", "answer": "12"}, True),
    ("13", {"output": "7 plus 5 is 12.", "answer": "12"}, False),
    ("I don't know.", {"output": ins.REFUSAL, "answer": ins.REFUSAL}, True),
    ("Tolbek.", {"output": ins.REFUSAL, "answer": ins.REFUSAL}, False),
    ("False.", {"output": "True.", "answer": "true"}, False),
    ("true", {"output": "True.", "answer": "true"}, True),
])
def test_score(prediction, example, correct):
    assert ins.score(prediction, example) is correct


def test_outputs_score_as_correct_on_their_own_examples(splits):
    for e in everything(splits):
        assert ins.score(e["output"], e) and ins.score(e["answer"], e)
