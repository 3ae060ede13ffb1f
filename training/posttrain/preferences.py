"""Preference pairs (prompt, chosen, rejected) for alignment: a reward model, DPO, GRPO.

Why pairs: SFT showed the model one good reply per prompt. Alignment shows it two replies and
says which is better, so it learns what makes a reply *worse*: a reward model learns to score
the chosen one higher, DPO makes it likelier than the rejected one directly. The pairs made
here come from the starter world, offline: each is an instruction example of instructions.py
(same splits, so the held-out guarantees hold: no heldout_template phrasing and no
heldout_entity entity in train), its correct `output` as `chosen`, and as `rejected` a
*plausible wrong* reply, so that only knowing the answer tells them apart. The `flaw` says how
it is wrong:

    wrong_fact     world/animals: another value of the same kind from the world table
                   ("The capital of Varnia is Mirrow.", "A duck has 4 legs.")
    off_by_one     arithmetic: the result +-1, in the same sentence ("7 plus 5 is 13.")
    wrong_pronoun  story answers and summaries: he<->she, his<->her ("Mia lost his kite.")
    wrong_entity   story answers and summaries: another person, thing, place, colour, feeling
    wrong_form     rewrite: the wrong plural ("boxs", "mouses", "cat") or past tense ("goed",
                   or left in the present)
    wrong_label    classify: the other label ("Four-legged." for a duck, "True." for "False.")
    made_up        decline: an invented confident answer instead of the refusal
                   ("The capital of France is Tolbek.")
    rambling       any task: the correct first sentence, then corpus-like sentences that go on
                   (about 3x longer, ending mid-sentence): a model should stop when done

Each example's flaw comes from its own seeded RNG: about 20% rambling, otherwise its task's
targeted flaw; rejected never equals chosen (when a flaw cannot make a different reply,
rambling does). The same arguments always give the same pairs.

User pairs come from .jsonl files or Hugging Face datasets, one row per pair, in one of
these shapes (extra keys are ignored):

    {"prompt": "What is 2 plus 2?", "chosen": "4.", "rejected": "5."}          (optional "system")
    {"prompt": [messages], "chosen": [messages], "rejected": [messages]}         TRL, explicit prompt
    {"chosen": [user, ..., assistant], "rejected": [user, ..., assistant]}       TRL, implicit prompt
    {"prompt": "...", "chosen": [user, assistant], "rejected": [user, assistant]}  ultrafeedback_binarized
    {"instruction": ..., "input": ..., "chosen": "...", "rejected": "..."}        the stored form

Messages are {"role": system|user|assistant, "content": str}. A reply is one assistant
message, the last of `chosen`/`rejected`; what comes before it (the same in both, matching
`prompt` when given) is the prompt, which must end with a user turn. Every pair is stored as
{"instruction": the (last) user turn, "input": "", "chosen": text, "rejected": text}, plus
"system" when the prompt had a system message, plus "prompt_messages" (the whole
conversation before the reply, system message excluded) when the prompt has more than one
turn: `to_rows` then uses it; `instruction` alone would lose the earlier turns.

Pairs are always read through a versioned snapshot of kind "preferences" (snapshots.py;
sources 'preferences', a .jsonl file, 'hf:...' or 'snapshot:ID'); a file's rows go to train or
val by a salted hash of their content. `to_rows` and `prompts` make the rows TRL's trainers take.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from training.data import corpus
from training.errors import UserError
from training.posttrain import formats, instructions, snapshots
from training.posttrain.align_config import PreferenceDataConfig
from training.posttrain.formats import _kind, _RowError
from training.workspace import Workspace

KIND = "preferences"
SPLITS: tuple[str, ...] = instructions.SPLITS
VERSION = 2  # part of every fingerprint: bump it when the same config starts giving other pairs
FLAWS: tuple[str, ...] = ("wrong_fact", "off_by_one", "wrong_pronoun", "wrong_entity", "wrong_form", "wrong_label",
                          "made_up", "rambling")
RAMBLING_SHARE = 0.2
_TARGETED: dict[str, tuple[str, ...]] = {
    "world": ("wrong_fact",), "animals": ("wrong_fact",), "arithmetic": ("off_by_one",),
    "story_qa": ("wrong_entity", "wrong_pronoun"), "summary": ("wrong_entity", "wrong_pronoun"),
    "rewrite": ("wrong_form",), "classify": ("wrong_label",), "decline": ("made_up",),
}
_KEYS = ("instruction", "input", "chosen", "rejected", "system", *formats.META_KEYS, "flaw")

# ---------------------------------------------------------------- the flaws
# Each: (example, rng) -> a wrong reply, or None when it does not apply to this example.
_COUNTRIES = [r[0] for r in corpus._WORLD]
_SOUNDS = sorted({f[0] for f in corpus._ANIMAL_FACTS.values()} - {"nothing"})
_HOMES = sorted({f[2] for f in corpus._ANIMAL_FACTS.values()})
_FOODS_EATEN = sorted({f[3] for f in corpus._ANIMAL_FACTS.values()})
_LABELS = {"two-legged": "four-legged", "happy": "sad", "true": "false"}
_LABELS |= {v: k for k, v in _LABELS.items()}


def _group(ex: dict) -> str:
    return ex["template"].split(".")[1]


def _others(values: list[str], *not_these: str) -> list[str]:
    return [v for v in values if v not in not_these]


def _replace(text: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", lambda _: new, text)


def _wrong_fact(ex: dict, rng: random.Random) -> str | None:
    group = _group(ex)
    if ex["task"] == "world":
        column = group.removesuffix("_rev")
        row = instructions._row(ex["entity"])
        key = "country" if group.endswith("_rev") else column
        wrong = rng.choice(_others([instructions._row(c)[key] for c in _COUNTRIES], row[key]))
        return instructions._WORLD_SENTENCES[column].format(**(row | {key: wrong}))
    animal = ex["entity"]
    sound, legs, home, food = corpus._ANIMAL_FACTS[animal]
    a = corpus._cap(corpus._a(animal))
    if group == "sound":
        return f"{a} says {rng.choice(_others(_SOUNDS, sound))}."
    if group == "legs":
        return f"{a} has {6 - legs} legs."  # the world's animals have 2 or 4
    if group == "home":
        return f"{a} lives in {corpus._a(rng.choice(_others(_HOMES, home)))}."
    if group == "food":
        return f"{a} likes to eat {rng.choice(_others(_FOODS_EATEN, food))}."
    other = rng.choice([x for x in corpus._ANIMALS if corpus._ANIMAL_FACTS[x][0] not in ("nothing", sound)])
    return f"{corpus._cap(corpus._a(other))} says {sound}."  # sound_rev: another animal


def _off_by_one(ex: dict, rng: random.Random) -> str | None:
    x, op, y = ex["entity"].split()
    r = int(ex["answer"])
    return f"{x} {op} {y} is {r + (1 if r == 0 else rng.choice((-1, 1)))}."


def _swap_pronoun(m: re.Match) -> str:
    word = m.group(0)
    low = word.lower()
    if low == "her":  # object ("helped her find it") or possessive ("her kite")
        new = "him" if m.string[:m.start()].endswith("helped ") else "his"
    else:
        new = {"he": "she", "she": "he", "him": "her", "his": "her"}[low]
    return new.capitalize() if word[0].isupper() else new


def _wrong_pronoun(ex: dict, rng: random.Random) -> str | None:
    out = re.sub(r"\b(?:he|she|him|his|her)\b", _swap_pronoun, ex["output"], flags=re.IGNORECASE)
    return out if out != ex["output"] else None


def _wrong_entity(ex: dict, rng: random.Random) -> str | None:
    hero, thing = ex["entity"].split("+")
    things = corpus._OBJECTS if thing in corpus._OBJECTS else corpus._FOODS
    if ex["task"] == "summary":  # another thing of the same kind (an object lost, a food shared)
        return _replace(ex["output"], thing, rng.choice(_others(things, thing)))
    fact = instructions._STORY_Q[_group(ex)][2]
    pool = {"helper": _others(instructions._NAMES, hero), "thing": things, "place": corpus._PLACES,
            "hide": corpus._HIDES, "colour": corpus._COLOURS, "bad": corpus._BAD}[fact]
    return _replace(ex["output"], ex["answer"], rng.choice(_others(pool, ex["answer"])))


def _wrong_form(ex: dict, rng: random.Random) -> str | None:
    if _group(ex) == "plural":
        word, right = ex["entity"], ex["output"]
        return {"mice": "mouses", word + "es": word + "s"}.get(right, word)  # the singular: no plural at all
    verb, present, past, _ = next(v for v in instructions._VERBS if v[0] == ex["entity"])
    regular = verb + ("d" if verb.endswith("e") else "ed")
    wrong = present if past == regular else regular  # "walks" for walked, "goed" for went
    return ex["output"].replace(f" {past} ", f" {wrong} ", 1)


def _wrong_label(ex: dict, rng: random.Random) -> str | None:
    return _LABELS[ex["answer"]].capitalize() + "."


def _made_up(ex: dict, rng: random.Random) -> str | None:
    group, thing = _group(ex), ex["entity"]
    if group in instructions._WORLD_SENTENCES:  # a value from a real row, said of a country not in the world
        value = instructions._row(rng.choice(_COUNTRIES))[group]
        return instructions._WORLD_SENTENCES[group].format(country=thing, **{group: value})
    a = corpus._cap(corpus._a(thing))
    return {"sound": f"{a} says {rng.choice(_SOUNDS)}.", "legs": f"{a} has {rng.choice((2, 4))} legs.",
            "food": f"{a} likes to eat {rng.choice(_FOODS_EATEN)}."}[group]


# Corpus-like sentences a rambling reply goes on with: the world's facts, as pretraining wrote them.
_FILLER = [s.format(**instructions._row(c)) for c in _COUNTRIES for s in instructions._WORLD_SENTENCES.values()] + [
    s.format(a=corpus._cap(corpus._a(x)), sound=f[0], legs=f[1], home=corpus._a(f[2]), food=f[3])
    for x, f in corpus._ANIMAL_FACTS.items()
    for s in ("{a} has {legs} legs.", "{a} lives in {home}.", "{a} likes to eat {food}.")]


def _rambling(ex: dict, rng: random.Random) -> str:
    first = instructions._first_sentence(ex["output"])
    text = first if first[-1:] in ".!?" else first + "."
    while len(text) < 3 * len(ex["output"]):  # now and then the first sentence again, as small models do
        text += " " + (first if rng.random() < 0.25 else rng.choice(_FILLER))
    words = rng.choice(_FILLER).split()
    return text + " " + " ".join(words[:max(2, len(words) // 2)])  # and it never stops


_FLAW_MAKERS: dict[str, Callable[[dict, random.Random], str | None]] = {
    "wrong_fact": _wrong_fact, "off_by_one": _off_by_one, "wrong_pronoun": _wrong_pronoun,
    "wrong_entity": _wrong_entity, "wrong_form": _wrong_form, "wrong_label": _wrong_label, "made_up": _made_up,
}


def _pair(ex: dict, rng: random.Random) -> dict[str, str]:
    chosen, rejected, flaw = ex["output"], None, "rambling"
    if rng.random() >= RAMBLING_SHARE:
        for name in rng.sample(_TARGETED[ex["task"]], len(_TARGETED[ex["task"]])):
            rejected = _FLAW_MAKERS[name](ex, rng)
            if rejected is not None and rejected.strip() != chosen.strip():
                flaw = name
                break
    if flaw == "rambling":
        rejected = _rambling(ex, rng)
    return {"instruction": ex["instruction"], "input": ex["input"], "chosen": chosen, "rejected": rejected,
            "task": ex["task"], "template": ex["template"], "entity": ex["entity"], "answer": ex["answer"],
            "flaw": flaw}


def generate(n: int, seed: int, split: str = "train") -> list[dict[str, str]]:
    """Preference pairs made from the instruction examples `instructions.generate(n, seed, split)`.

    Args:
        n: how many pairs.
        seed: the seed of the examples and of each pair's flaw; the same arguments always give
            the same pairs.
        split: "train", "val", "heldout_template" or "heldout_entity" (as in instructions.py,
            with its held-out guarantees).

    Returns:
        Dicts with instruction, input, chosen (the example's output), rejected (a plausible
        wrong reply, never equal to chosen), task, template, entity, answer and flaw.
    """
    examples = instructions.generate(n, seed, split)
    return [_pair(ex, random.Random(f"preferences/{split}/{seed}/{i}")) for i, ex in enumerate(examples)]


def build(seed: int, n_train: int, n_val: int, n_test: int) -> dict[str, list[dict[str, str]]]:
    """The four splits, as instructions.build: train, val and the two held-out test sets."""
    sizes = {"train": n_train, "val": n_val, "heldout_template": n_test, "heldout_entity": n_test}
    return {split: generate(n, seed, split) for split, n in sizes.items()}


# ---------------------------------------------------------------- reading user pairs
_ROLES = ("system", "user", "assistant")


def _turns(value: list, key: str) -> list[tuple[str, str]]:
    if not value:
        raise _RowError(f"field {key!r} must be a non-empty list, got an empty list")
    out = []
    for i, turn in enumerate(value):
        at = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _RowError(f"{at} must be an object, got {_kind(turn)}")
        for field in ("role", "content"):
            if field not in turn:
                raise _RowError(f"missing field '{at}.{field}'")
        role, content = turn["role"], turn["content"]
        if role not in _ROLES:
            raise _RowError(f"{at}.role must be one of {', '.join(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise _RowError(f"{at}.content must be a string, got {_kind(content)}")
        if role != "system" and not content.strip():
            raise _RowError(f"{at}.content is empty")
        if role == "system" and i > 0:
            raise _RowError(f"{at}: a system message must come first")
        out.append((role, content))
    return out


def _text_or_turns(row: dict, key: str) -> str | list[tuple[str, str]]:
    value = row.get(key)
    if value is None:  # a Hugging Face dataset fills a column a row lacks with None
        raise _RowError(f"missing field {key!r}")
    if isinstance(value, list):
        return _turns(value, key)
    if not isinstance(value, str):
        raise _RowError(f"field {key!r} must be a string or a list of messages, got {_kind(value)}")
    if not value.strip():
        raise _RowError(f"field {key!r} is empty")
    return value


def _reply(turns: list[tuple[str, str]], key: str) -> tuple[list[tuple[str, str]], str]:
    if turns[-1][0] != "assistant":
        raise _RowError(f"{key}[{len(turns) - 1}].role must be 'assistant' (the reply), got {turns[-1][0]!r}")
    return turns[:-1], turns[-1][1]


def _same(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> bool:
    return [(r, c.strip()) for r, c in a] == [(r, c.strip()) for r, c in b]


def _parse(row: dict) -> dict:
    prompt = _text_or_turns(row, "prompt") if row.get("prompt") is not None else None
    chosen, rejected = _text_or_turns(row, "chosen"), _text_or_turns(row, "rejected")
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise _RowError("'chosen' and 'rejected' must both be strings or both lists of messages")
    turns = [("user", prompt)] if isinstance(prompt, str) else prompt
    if isinstance(chosen, list):
        (before, chosen), (before_r, rejected) = _reply(chosen, "chosen"), _reply(rejected, "rejected")
        if not _same(before, before_r):
            raise _RowError("'chosen' and 'rejected' must have the same turns before their replies")
        if before:  # an implicit prompt (or a prompt repeated in the conversation)
            if turns is not None and not _same(before[-len(turns):], turns):
                raise _RowError("'prompt' does not match the turns before the reply in 'chosen'")
            turns = before
    stored = turns is None and isinstance(chosen, str) and ("instruction" in row or "prompt_messages" in row)
    if stored:  # the stored form, as `load` gives it (a snapshot's rows written to a file, say)
        turns = (_turns(row["prompt_messages"], "prompt_messages") if isinstance(row.get("prompt_messages"), list)
                 else [("user", formats._text(row, "instruction"))])
    if turns is None:
        raise _RowError("missing field 'prompt'")
    if turns[-1][0] != "user":
        raise _RowError(f"the prompt must end with a user turn, got {turns[-1][0]!r}")
    if chosen.strip() == rejected.strip():
        raise _RowError("'chosen' and 'rejected' are the same reply")
    system = turns[0][1] if turns[0][0] == "system" else row.get("system")
    rest = turns[1:] if turns[0][0] == "system" else turns
    pair = {"instruction": rest[-1][1], "input": "", "chosen": chosen, "rejected": rejected}
    if stored and "prompt_messages" not in row:
        pair["input"] = formats._text(row, "input", required=False)
    if isinstance(system, str) and system:
        pair["system"] = system
    if len(rest) > 1:
        pair["prompt_messages"] = [{"role": r, "content": c} for r, c in rest]
    return pair | {k: row[k] for k in (*formats.META_KEYS, "flaw") if isinstance(row.get(k), str)}


def parse_row(row: object, where: str) -> dict:
    """One pair of a file or dataset, in any of the shapes above, in the stored form.

    Args:
        row: the decoded row (a dict, or anything else, which is an error).
        where: where the row is, for errors: "pairs.jsonl:7" or "hf:NAME row 7".

    Raises:
        UserError: one line, `<where>: <what is wrong>`, e.g. `pairs.jsonl:7: missing field 'chosen'`.
    """
    try:
        if not isinstance(row, dict):
            raise _RowError(f"expected a JSON object, got {_kind(row)}")
        return _parse(row)
    except _RowError as e:
        raise UserError(f"{where}: {e}") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """A user's file of pairs, one JSON object per line (empty lines skipped), in the stored form.

    Raises:
        UserError: one line naming the file, the line and the field, e.g.
            `pairs.jsonl:7: missing field 'chosen'`, `pairs.jsonl:3: not valid JSON (...)`.
    """
    pairs = [parse_row(row, where) for where, row in formats.json_lines(path)]
    if not pairs:
        raise UserError(f"{path}: no pairs (the file is empty)")
    return pairs


# ---------------------------------------------------------------- snapshots


def _stored(pair: dict, system: str | None) -> dict:
    """The stored form of a pair: the known keys only, `system` from the config when set."""
    row = {k: pair[k] for k in _KEYS if isinstance(pair.get(k), str) and (pair[k] or k == "input")}
    row.setdefault("input", "")
    if isinstance(pair.get("prompt_messages"), list):
        row["prompt_messages"] = pair["prompt_messages"]
    if system:
        row["system"] = system
    return row


_KIND = snapshots.Kind(
    kind=KIND, splits=SPLITS, version=VERSION, generated="preferences", noun="preference data",
    made_by="an alignment run's data.sources", overwrite_noun="a preferences snapshot",
    accepted="'preferences', a local .jsonl file of prompt/chosen/rejected rows, 'hf:NAME[:CONFIG][@SPLIT]' "
             "or 'snapshot:ID'",
    rows_noun="pairs", salt="preferences-split", fallback_name="preferences",
    generate=lambda cfg: build(cfg.seed, cfg.n_train, cfg.n_val, cfg.n_test),
    read_file=read_jsonl, parse_row=lambda row, where, state: (parse_row(row, where), state), store=_stored)


def prepare(cfg: PreferenceDataConfig, ws: Workspace) -> str:
    """Make (or find) the snapshot of the config's sources; return its id (see snapshots.prepare).

    Raises:
        UserError: one line naming the source (`data.sources[i]: ...`, an instructions snapshot
            included) or the file, line and field of a bad row. Nothing is written then.
    """
    return snapshots.prepare(_KIND, cfg, ws)


def manifest(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict:
    """The manifest of a preferences snapshot (UserError naming `field` when there is none)."""
    return snapshots.manifest(_KIND, ws, snapshot_id, field)


def load(ws: Workspace, snapshot_id: str, field: str = "data.snapshot") -> dict[str, list[dict]]:
    """The pairs of a preferences snapshot: split -> pairs, for the splits it has."""
    return snapshots.load(_KIND, ws, snapshot_id, field)


# ---------------------------------------------------------------- for the trainers


def _prompt(pair: dict, system: str | None) -> list[dict[str, str]]:
    if pair.get("prompt_messages"):
        system = pair.get("system") if system is None else system
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": m["role"], "content": m["content"]} for m in pair["prompt_messages"]]
    return formats.to_messages(pair | {"output": ""}, system)["messages"][:-1]  # as SFT: instruction + input


def to_rows(pairs: list[dict], system: str | None = None) -> list[dict]:
    """Rows for TRL's RewardTrainer and DPOTrainer (conversational, explicit prompt).

    Args:
        pairs: pairs as `load` returns them.
        system: a system message for every prompt; None keeps each pair's own, if any.

    Returns:
        {"prompt": [system?, user], "chosen": [assistant], "rejected": [assistant]} per pair; the
        user turn is the instruction, then a blank line and the input if there is one (as for
        SFT), or the whole stored conversation for a multi-turn prompt.
    """
    return [{"prompt": _prompt(p, system), "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def prompts(pairs: list[dict], system: str | None = None) -> list[dict]:
    """Rows for TRL's GRPOTrainer: {"prompt": [system?, user]} per pair (its replies are sampled)."""
    return [{"prompt": _prompt(p, system)} for p in pairs]
