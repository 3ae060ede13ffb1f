"""Preference pairs for alignment, made offline and read through versioned snapshots
(training/posttrain/preferences.py, training/posttrain/snapshots.py)."""

import json
import re
from collections import Counter

import pytest

from training.data import corpus, snapshot
from training.errors import UserError
from training.posttrain import instructions, preferences, sft_data
from training.posttrain.align_config import PreferenceDataConfig
from training.posttrain.config import SFTDataConfig
from training.workspace import Workspace

SMALL = dict(n_train=120, n_val=10, n_test=15, seed=3)


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def many():
    """Several hundred pairs of every split, from two seeds."""
    return [p for seed in (0, 7) for split in preferences.SPLITS for p in preferences.generate(300, seed, split)]


def _cfg(sources, **kw):
    return PreferenceDataConfig(sources=[str(s) for s in sources], **{**SMALL, **kw})


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _simple(n):
    return [{"prompt": f"What is {i} plus 1?", "chosen": f"{i + 1}.", "rejected": f"{i + 2}."} for i in range(n)]


def _leftovers(ws):
    return sorted(p.name for p in ws.datasets.iterdir()) if ws.datasets.exists() else []


def _has(text, word):
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


# ---------------------------------------------------------------------------- generated pairs


def test_generate_is_deterministic_and_chosen_is_the_instruction_output():
    pairs = preferences.generate(200, 5, "val")
    assert pairs == preferences.generate(200, 5, "val")
    assert pairs != preferences.generate(200, 6, "val")
    examples = instructions.generate(200, 5, "val")
    assert [p["chosen"] for p in pairs] == [e["output"] for e in examples]
    for p, e in zip(pairs, examples):
        assert set(p) == {"instruction", "input", "chosen", "rejected", "task", "template", "entity", "answer",
                          "flaw"}
        assert {k: p[k] for k in ("instruction", "input", "task", "template", "entity", "answer")} == \
            {k: e[k] for k in ("instruction", "input", "task", "template", "entity", "answer")}
    built = preferences.build(5, 20, 10, 7)
    assert {s: len(v) for s, v in built.items()} == {"train": 20, "val": 10, "heldout_template": 7,
                                                     "heldout_entity": 7}
    assert built["val"] == preferences.generate(10, 5, "val")


def test_rejected_is_never_chosen_and_each_task_gets_its_targeted_flaw(many):
    assert len(many) == 2400
    assert all(p["rejected"].strip() != p["chosen"].strip() and p["rejected"].strip() for p in many)
    flaws = Counter(p["flaw"] for p in many)
    assert set(flaws) == set(preferences.FLAWS)
    assert 0.14 < flaws["rambling"] / len(many) < 0.26
    targeted = {"world": {"wrong_fact"}, "animals": {"wrong_fact"}, "arithmetic": {"off_by_one"},
                "story_qa": {"wrong_entity", "wrong_pronoun"}, "summary": {"wrong_entity", "wrong_pronoun"},
                "rewrite": {"wrong_form"}, "classify": {"wrong_label"}, "decline": {"made_up"}}
    for task, kinds in targeted.items():
        got = Counter(p["flaw"] for p in many if p["task"] == task)
        assert set(got) <= kinds | {"rambling"}, task
        assert sum(got[k] for k in kinds) / sum(got.values()) > 0.7, (task, got)


def test_off_by_one_and_wrong_label(many):
    arith = [p for p in many if p["flaw"] == "off_by_one"]
    assert len(arith) > 50
    for p in arith:
        head_c, num_c = p["chosen"].rstrip(".").rsplit(" ", 1)
        head_r, num_r = p["rejected"].rstrip(".").rsplit(" ", 1)
        assert head_c == head_r and abs(int(num_c) - int(num_r)) == 1 and int(num_r) >= 0, p
    labels = [p for p in many if p["flaw"] == "wrong_label"]
    assert len(labels) > 50
    pairs = {frozenset(x) for x in (("two-legged", "four-legged"), ("happy", "sad"), ("true", "false"))}
    for p in labels:
        assert frozenset((p["chosen"].lower().rstrip("."), p["rejected"].lower().rstrip("."))) in pairs, p


def _kind_values(p):
    """The values of the same kind as the pair's answer, from the world table."""
    group = p["template"].split(".")[1]
    if p["task"] == "world":
        col = ("country",) + tuple(instructions._WORLD_SENTENCES)
        return [r[col.index("country" if group.endswith("_rev") else group)] for r in corpus._WORLD]
    facts = corpus._ANIMAL_FACTS
    return {"sound": [f[0] for f in facts.values()], "legs": ["2", "4"], "home": [f[2] for f in facts.values()],
            "food": [f[3] for f in facts.values()], "sound_rev": list(facts)}[group]


def test_wrong_fact_names_another_value_of_the_same_kind(many):
    facts = [p for p in many if p["flaw"] == "wrong_fact"]
    assert {p["task"] for p in facts} == {"world", "animals"} and len(facts) > 100
    for p in facts:
        values = _kind_values(p)
        named = [v for v in values if _has(p["rejected"], v)]
        assert named and p["answer"] not in named and not _has(p["rejected"], p["answer"]), p
        if p["task"] == "world":  # the same sentence, one value swapped
            assert _has(p["chosen"], p["answer"])
            assert re.sub(rf"\b{re.escape(named[0])}\b", p["answer"], p["rejected"]) == p["chosen"], p


_PRONOUNS = {"he": "m", "him": "m", "his": "m", "she": "f", "her": "f"}


def test_wrong_pronoun_swaps_pronouns_only(many):
    swapped = [p for p in many if p["flaw"] == "wrong_pronoun"]
    assert {p["task"] for p in swapped} == {"story_qa", "summary"} and len(swapped) > 50
    for p in swapped:
        c, r = p["chosen"].lower().split(), p["rejected"].lower().split()
        diff = [(a.strip("."), b.strip("."), after) for a, b, after in zip(c, r, c[1:] + [""]) if a != b]
        assert len(c) == len(r) and diff, p
        assert all(a in _PRONOUNS and b in _PRONOUNS and _PRONOUNS[a] != _PRONOUNS[b] for a, b, _ in diff), p
        # and in the same role: "helped her find it" -> "helped him find it", "her kite" -> "his kite"
        assert all(b == {"he": "she", "him": "her", "his": "her", "she": "he"}.get(a) or
                   (a == "her" and b == ("him" if after == "find" else "his")) for a, b, after in diff), p


def test_wrong_entity_swaps_one_story_fact_for_another_of_its_kind(many):
    pools = [instructions._NAMES, corpus._OBJECTS, corpus._FOODS, corpus._PLACES, corpus._HIDES, corpus._COLOURS,
             corpus._BAD]
    swapped = [p for p in many if p["flaw"] == "wrong_entity"]
    assert {p["task"] for p in swapped} == {"story_qa", "summary"} and len(swapped) > 100
    for p in swapped:
        value = p["entity"].split("+")[1] if p["task"] == "summary" else p["answer"]
        pattern = re.escape(p["chosen"]).replace(re.escape(value), "(.+?)")
        m = re.fullmatch(pattern, p["rejected"])
        assert m and len(set(m.groups())) == 1, p
        pool = next(x for x in pools if value in x)
        assert m.group(1) in pool and m.group(1) != value, p


def test_wrong_form_and_made_up(many):
    forms = [p for p in many if p["flaw"] == "wrong_form"]
    assert len(forms) > 50
    for p in forms:
        if p["template"].startswith("rewrite.plural"):
            word = p["entity"]
            assert p["rejected"] in {word, word + "s", "mouses"} and p["rejected"] != p["chosen"], p
        else:
            verb, present, past, _ = next(v for v in instructions._VERBS if v[0] == p["entity"])
            wrong = {present, verb + "ed", verb + "d"} - {past}
            assert any(p["rejected"] == p["chosen"].replace(f" {past} ", f" {w} ", 1) for w in wrong), p
    made = [p for p in many if p["flaw"] == "made_up"]
    assert {p["task"] for p in made} == {"decline"} and len(made) > 50
    for p in made:
        assert p["chosen"] == instructions.REFUSAL and _has(p["rejected"], p["entity"]), p
        assert "know" not in p["rejected"] and not instructions.score(p["rejected"], p | {"output": p["chosen"]})


def test_rambling_starts_right_and_goes_on(many):
    rambling = [p for p in many if p["flaw"] == "rambling"]
    assert {p["task"] for p in rambling} == set(instructions.TASK_KINDS)
    for p in rambling:
        assert p["rejected"].startswith(instructions._first_sentence(p["chosen"])), p
        assert len(p["rejected"]) >= 3 * len(p["chosen"]) and not p["rejected"].endswith("."), p


def test_a_flaw_that_gives_chosen_back_falls_back_to_rambling(monkeypatch):
    monkeypatch.setitem(preferences._FLAW_MAKERS, "off_by_one", lambda ex, rng: ex["output"] + " ")
    pairs = [p for p in preferences.generate(200, 2) if p["task"] == "arithmetic"]
    assert pairs and {p["flaw"] for p in pairs} == {"rambling"}
    assert all(p["rejected"].startswith(p["chosen"]) and len(p["rejected"]) > len(p["chosen"]) for p in pairs)


def test_heldout_splits_keep_their_guarantees():
    splits = preferences.build(11, 600, 50, 200)
    train = splits["train"] + splits["val"]
    assert not {(p["task"], p["template"]) for p in splits["heldout_template"]} & {
        (p["task"], p["template"]) for p in train}
    assert not {(p["task"], p["entity"]) for p in splits["heldout_entity"]} & {(p["task"], p["entity"]) for p in train}
    assert all(instructions.is_heldout_template(p["task"], p["template"]) for p in splits["heldout_template"])
    assert all(instructions.is_heldout_entity(p["task"], p["entity"]) for p in splits["heldout_entity"])


# ---------------------------------------------------------------------------- user rows


def test_file_shapes_are_normalised(tmp_path):
    def msg(role, content):
        return {"role": role, "content": content}

    rows = [
        {"prompt": "What is 2 plus 2?", "chosen": "4.", "rejected": "5.", "score": 3},
        {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "system": "Be kind."},
        {"prompt": [msg("system", "Be brief."), msg("user", "Name a colour.")],
         "chosen": [msg("assistant", "Red.")], "rejected": [msg("assistant", "Red, or blue, or...")]},
        {"chosen": [msg("user", "Say hi."), msg("assistant", "Hi.")],  # implicit prompt
         "rejected": [msg("user", "Say hi."), msg("assistant", "No.")]},
        {"prompt": "Say bye.", "prompt_id": "x1",  # ultrafeedback_binarized
         "chosen": [msg("user", "Say bye."), msg("assistant", "Bye.")],
         "rejected": [msg("user", "Say bye."), msg("assistant", "Hello.")], "score_chosen": 9.0},
        {"chosen": [msg("system", "S."), msg("user", "A?"), msg("assistant", "B."), msg("user", "And C?"),
                    msg("assistant", "D.")],
         "rejected": [msg("system", "S."), msg("user", "A?"), msg("assistant", "B."), msg("user", "And C?"),
                      msg("assistant", "E.")]},
        {"instruction": "Add.", "input": "2 and 3", "chosen": "5.", "rejected": "6.", "task": "arithmetic",
         "flaw": "off_by_one"},
    ]
    got = preferences.read_jsonl(_write(tmp_path / "pairs.jsonl", rows))
    assert got == [
        {"instruction": "What is 2 plus 2?", "input": "", "chosen": "4.", "rejected": "5."},
        {"instruction": "Hi?", "input": "", "chosen": "Hello.", "rejected": "Go away.", "system": "Be kind."},
        {"instruction": "Name a colour.", "input": "", "chosen": "Red.", "rejected": "Red, or blue, or...",
         "system": "Be brief."},
        {"instruction": "Say hi.", "input": "", "chosen": "Hi.", "rejected": "No."},
        {"instruction": "Say bye.", "input": "", "chosen": "Bye.", "rejected": "Hello."},
        {"instruction": "And C?", "input": "", "chosen": "D.", "rejected": "E.", "system": "S.",
         "prompt_messages": [msg("user", "A?"), msg("assistant", "B."), msg("user", "And C?")]},
        {"instruction": "Add.", "input": "2 and 3", "chosen": "5.", "rejected": "6.", "task": "arithmetic",
         "flaw": "off_by_one"},
    ]
    # The stored form reads back as it is (generated pairs, a multi-turn pair, a snapshot's rows).
    stored = [preferences._stored(p, None) for p in preferences.generate(40, 1)] + got[5:6]
    assert preferences.read_jsonl(_write(tmp_path / "stored.jsonl", stored)) == stored


@pytest.mark.parametrize("row, message", [
    ({"prompt": "a", "rejected": "c"}, "missing field 'chosen'"),
    ({"prompt": "a", "chosen": "b"}, "missing field 'rejected'"),
    ({"chosen": "b", "rejected": "c"}, "missing field 'prompt'"),
    ({"prompt": "a", "chosen": " b", "rejected": "b "}, "'chosen' and 'rejected' are the same reply"),
    ({"prompt": 3, "chosen": "b", "rejected": "c"}, "field 'prompt' must be a string or a list of messages, got int"),
    ({"prompt": "a", "chosen": {"text": "b"}, "rejected": "c"},
     "field 'chosen' must be a string or a list of messages, got object"),
    ({"prompt": " ", "chosen": "b", "rejected": "c"}, "field 'prompt' is empty"),
    ({"prompt": "a", "chosen": "", "rejected": "c"}, "field 'chosen' is empty"),
    ({"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"},
     "'chosen' and 'rejected' must both be strings or both lists of messages"),
    ({"prompt": "a", "chosen": [], "rejected": []}, "field 'chosen' must be a non-empty list, got an empty list"),
    ({"prompt": "a", "chosen": ["b"], "rejected": ["c"]}, "chosen[0] must be an object, got string"),
    ({"prompt": "a", "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "c"}]},
     "missing field 'chosen[0].content'"),
    ({"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}],
      "rejected": [{"role": "bot", "content": "c"}]}, "rejected[0].role must be one of system, user, assistant, got 'bot'"),
    ({"prompt": "a", "chosen": [{"role": "assistant", "content": None}],
      "rejected": [{"role": "assistant", "content": "c"}]}, "chosen[0].content must be a string, got null"),
    ({"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "a"}]},
     "chosen[0].role must be 'assistant' (the reply), got 'user'"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
      "rejected": [{"role": "user", "content": "z"}, {"role": "assistant", "content": "c"}]},
     "'chosen' and 'rejected' must have the same turns before their replies"),
    ({"prompt": "other", "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
      "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]},
     "'prompt' does not match the turns before the reply in 'chosen'"),
    ({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
      "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "d"}]},
     "the prompt must end with a user turn, got 'assistant'"),
    ({"prompt": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}],
      "chosen": "b", "rejected": "c"}, "prompt[1]: a system message must come first"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, message):
    path = _write(tmp_path / "pairs.jsonl", [*_simple(2), row])
    with pytest.raises(UserError) as e:
        preferences.read_jsonl(path)
    assert str(e.value) == f"{path}:3: {message}"


def test_bad_json_and_empty_file(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [*_simple(2), '{"prompt": "a", "chosen":'])
    with pytest.raises(UserError) as e:
        preferences.read_jsonl(path)
    assert str(e.value) == f"{path}:3: not valid JSON (Expecting value at column 26)"
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(UserError) as e:
        preferences.read_jsonl(empty)
    assert str(e.value) == f"{empty}: no pairs (the file is empty)"


# ---------------------------------------------------------------------------- snapshots


def test_generated_snapshot_records_and_is_idempotent(ws):
    sid = preferences.prepare(_cfg(["preferences"]), ws)
    assert sid.startswith("preferences-") and len(sid) == len("preferences-") + 8
    splits = preferences.load(ws, sid)
    assert splits == {s: [preferences._stored(p, None) for p in v]
                      for s, v in preferences.build(3, 120, 10, 15).items()}
    m = preferences.manifest(ws, sid)
    assert m["kind"] == "preferences" == preferences.KIND and m["id"] == sid and sid.endswith(m["fingerprint"][:8])
    assert m["counts"] == {"train": 120, "val": 10, "heldout_template": 15, "heldout_entity": 15}
    assert m["config"] == {"sources": ["preferences"], "n_train": 120, "n_val": 10, "n_test": 15, "seed": 3,
                           "val_fraction": 0.05, "system": None}
    assert [(i["source"], i["rows"]) for i in m["inputs"]] == [("preferences", 160)]
    folder = ws.dataset(sid)
    assert sorted(m["outputs"]) == sorted(f"{s}.jsonl" for s in preferences.SPLITS)
    for name, out in m["outputs"].items():
        assert out["sha256"] == snapshot.sha256_file(folder / name)
        assert out["rows"] == len((folder / name).read_text().splitlines())

    before = {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]}
    assert preferences.prepare(_cfg(["preferences"]), ws) == sid
    assert {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]} == before
    assert _leftovers(ws) == [sid]
    other = preferences.prepare(_cfg(["preferences"], seed=4), ws)
    assert other != sid and other.startswith("preferences-")
    brief = preferences.prepare(_cfg(["preferences"], system="Be brief."), ws)
    assert brief not in (sid, other)
    assert {p["system"] for p in preferences.load(ws, brief)["train"]} == {"Be brief."}
    assert preferences.prepare(_cfg([f"snapshot:{sid}"]), ws) == sid


def test_local_file_splits_by_content_hash(ws, tmp_path):
    src = _write(tmp_path / "my pairs.jsonl", _simple(400))
    sid = preferences.prepare(_cfg([src], val_fraction=0.2), ws)
    assert sid.startswith("my-pairs-")
    splits = preferences.load(ws, sid)
    assert set(splits) == {"train", "val"} and 50 <= len(splits["val"]) <= 110
    rows = sorted(splits["train"] + splits["val"], key=lambda p: p["chosen"])
    want = [{"instruction": r["prompt"], "input": "", "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in _simple(400)]
    assert rows == sorted(want, key=lambda p: p["chosen"])
    m = preferences.manifest(ws, sid)
    assert m["counts"] == {"train": len(splits["train"]), "val": len(splits["val"]), "heldout_template": 0,
                           "heldout_entity": 0}
    assert m["inputs"][0]["rows"] == 400 and len(m["inputs"][0]["sha256"]) == 64
    reseeded = preferences.load(ws, preferences.prepare(_cfg([src], val_fraction=0.2, seed=4), ws))
    assert sorted(p["chosen"] for p in reseeded["val"]) != sorted(p["chosen"] for p in splits["val"])
    # Rows move with their content, not their position; a changed file is another snapshot.
    _write(src, list(reversed(_simple(400))))
    again = preferences.prepare(_cfg([src], val_fraction=0.2), ws)
    assert again != sid
    assert sorted(p["chosen"] for p in preferences.load(ws, again)["val"]) == \
        sorted(p["chosen"] for p in splits["val"])


def test_bad_file_writes_nothing_and_sources_are_checked(ws, tmp_path):
    rows = _simple(5)
    del rows[3]["chosen"]
    bad = _write(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(UserError, match=r"^\S*pairs\.jsonl:4: missing field 'chosen'$"):
        preferences.prepare(_cfg(["preferences", bad]), ws)
    assert _leftovers(ws) == []
    with pytest.raises(UserError, match=r"^data\.sources\[0\]: not found: .*nope\.jsonl$"):
        preferences.prepare(_cfg([tmp_path / "nope.jsonl"]), ws)
    with pytest.raises(UserError, match=r"^data\.sources\[1\]: unknown source 'instructions'; use 'preferences', "):
        preferences.prepare(_cfg(["preferences", "instructions"]), ws)
    assert _leftovers(ws) == []


def test_an_instructions_snapshot_is_refused_and_the_other_way_round(ws):
    sft = sft_data.prepare(SFTDataConfig(sources=["instructions"], **SMALL), ws)
    with pytest.raises(UserError, match=rf"^data\.sources\[0\]: '{sft}' is not preference data "
                                        r"\(kind 'instructions'\); use a snapshot that an alignment run"):
        preferences.prepare(_cfg([f"snapshot:{sft}"]), ws)
    with pytest.raises(UserError, match=rf"^data\.snapshot: '{sft}' is not preference data"):
        preferences.load(ws, sft)
    pref = preferences.prepare(_cfg(["preferences"]), ws)
    with pytest.raises(UserError, match=rf"^data\.sources\[0\]: '{pref}' is not instruction data "
                                        r"\(kind 'preferences'\)"):
        sft_data.prepare(SFTDataConfig(sources=[f"snapshot:{pref}"], **SMALL), ws)
    with pytest.raises(UserError, match=r"^data\.snapshot: no snapshot 'nope'"):
        preferences.load(ws, "nope")
    assert _leftovers(ws) == sorted([sft, pref])


def test_hf_local_folder_offline(ws, tmp_path, monkeypatch):
    """hf:NAME with NAME a local folder of .jsonl files (ultrafeedback_binarized's shape), no network."""
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read once, when `datasets` is imported

    def row(i):
        user = {"role": "user", "content": f"Question {i}?"}
        return {"prompt": f"Question {i}?", "prompt_id": str(i),
                "chosen": [user, {"role": "assistant", "content": f"Answer {i}."}],
                "rejected": [user, {"role": "assistant", "content": f"No idea {i}."}],
                "score_chosen": 8.0, "score_rejected": 2.0}

    folder = tmp_path / "ultra_ds"
    _write(folder / "train.jsonl", [row(i) for i in range(60)])
    sid = preferences.prepare(_cfg([f"hf:{folder}"], val_fraction=0.2), ws)
    assert sid.startswith("ultra_ds-")
    splits = preferences.load(ws, sid)
    got = sorted(splits["train"] + splits["val"], key=lambda p: int(p["chosen"].split()[1].rstrip(".")))
    assert got == [{"instruction": f"Question {i}?", "input": "", "chosen": f"Answer {i}.",
                    "rejected": f"No idea {i}."} for i in range(60)]
    inp = preferences.manifest(ws, sid)["inputs"][0]
    assert inp["rows"] == 60 and [f["path"] for f in inp["files"]] == [str(folder / "train.jsonl")]
    assert preferences.prepare(_cfg([f"hf:{folder}"], val_fraction=0.2), ws) == sid

    bad = tmp_path / "bad_ds"
    rows = [row(i) for i in range(3)]
    del rows[1]["rejected"]
    _write(bad / "train.jsonl", rows)
    with pytest.raises(UserError, match=rf"^hf:{bad} row 2: missing field 'rejected'$"):
        preferences.prepare(_cfg([f"hf:{bad}"]), ws)
    assert _leftovers(ws) == [sid]


# ---------------------------------------------------------------------------- for the trainers


def test_to_rows_and_prompts():
    from trl.data_utils import is_conversational

    pairs = [{"instruction": "Add.", "input": "2 and 3", "chosen": "5.", "rejected": "6.", "task": "arithmetic"},
             {"instruction": "Hi?", "input": "", "chosen": "Hello.", "rejected": "Bye.", "system": "Be kind."},
             {"instruction": "And C?", "input": "", "chosen": "D.", "rejected": "E.", "system": "S.",
              "prompt_messages": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "B."},
                                  {"role": "user", "content": "And C?"}]}]
    user = {"role": "user", "content": "Add.\n\n2 and 3"}
    rows = preferences.to_rows(pairs)
    assert rows == [
        {"prompt": [user], "chosen": [{"role": "assistant", "content": "5."}],
         "rejected": [{"role": "assistant", "content": "6."}]},
        {"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}],
         "chosen": [{"role": "assistant", "content": "Hello."}], "rejected": [{"role": "assistant", "content": "Bye."}]},
        {"prompt": [{"role": "system", "content": "S."}, *pairs[2]["prompt_messages"]],
         "chosen": [{"role": "assistant", "content": "D."}], "rejected": [{"role": "assistant", "content": "E."}]}]
    assert all(is_conversational(r) for r in rows)
    # The prompt is SFT's: the same user turn as formats.to_messages gives for the example.
    assert rows[0]["prompt"] == instructions.to_messages(pairs[0] | {"output": "5."})["messages"][:-1]
    short = {"role": "system", "content": "Short."}
    assert [r["prompt"][0] for r in preferences.to_rows(pairs, system="Short.")] == [short] * 3
    assert preferences.prompts(pairs, system="Short.") == [
        {"prompt": [short, user]}, {"prompt": [short, {"role": "user", "content": "Hi?"}]},
        {"prompt": [short, *pairs[2]["prompt_messages"]]}]
    assert preferences.prompts(pairs[:1]) == [{"prompt": [user]}]
