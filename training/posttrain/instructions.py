"""Instruction data made offline from the starter corpus's world, with held-out splits.

Why SFT data looks like this: pretraining taught the model to *continue* text; it read
"The capital of Varnia is Tolbek." many times in training/data/corpus.py's documents.
Supervised fine-tuning (SFT) teaches it to *answer*. Each example is an instruction, an
optional input (a story to read, a sentence to rewrite) and the one reply we want; the
trainer computes the loss only on the reply, so the model learns "question in, short answer
out" on top of facts it already knows. So every example comes from the corpus's own made-up
world (`_WORLD`, `_ANIMAL_FACTS`, people, stories, arithmetic), in eight task kinds, each
with several phrasings. `decline` asks about things outside that world (France, a zebra)
and always gets the same `REFUSAL`: the model should say it does not know, not invent.
Each example also carries `task`, `template` (an id), `entity` (what the answer depends on)
and `answer` (a short canonical answer for exact-match scoring, see `score`).

What the held-out splits prove: a small model scores well on examples like its training
ones just by memorising them. `build` adds two test sets memorisation cannot pass:

* `heldout_template`: phrasings never used in training (the last phrasing of every template
  group), about training entities: passing shows the model understood the question, not
  one wording of it.
* `heldout_entity`: entities never asked about in training for that kind (two countries,
  two animals, some number pairs, story heroes and things, nouns, verbs, ...), in training
  phrasings. Their facts *are* in the pretraining corpus: passing shows that the answer
  format learned in SFT transfers to knowledge from pretraining.

`val` has train's distribution; the gap between val and the held-out sets is memorisation.
The two file shapes, Alpaca ({"instruction", "input", "output"}) and chat ({"messages":
[user, assistant]}), are in formats.py, whose functions are re-exported here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from training.data import corpus
from training.posttrain.formats import SHAPES, read_jsonl, to_alpaca, to_messages, write_jsonl
from training.posttrain.instruction_templates import _ANIMAL_Q, _OPS, _STORY_Q, _WORLD_Q, TEMPLATES  # noqa: F401

__all__ = ["REFUSAL", "SHAPES", "SPLITS", "TASK_KINDS", "TEMPLATES", "build", "generate", "is_heldout_entity",
           "is_heldout_template", "read_jsonl", "score", "to_alpaca", "to_messages", "write_jsonl",
           "write_story"]

TASK_KINDS: tuple[str, ...] = ("world", "animals", "arithmetic", "story_qa", "rewrite", "classify", "summary",
                               "decline")
SPLITS: tuple[str, ...] = ("train", "val", "heldout_template", "heldout_entity")
REFUSAL = "I don't know. That is not in what I learned."  # one wording for every refusal, so it scores exactly


# ---------------------------------------------------------------- held-out entities
# Never asked about in training for that task kind (their facts are still in the corpus).
_COUNTRIES_OUT, _ANIMALS_OUT = {"Kalo", "Norrow"}, {"owl", "mouse"}
_HELDOUT = {
    "world": _COUNTRIES_OUT, "animals": _ANIMALS_OUT, "decline": {"Japan", "Morrant", "camel", "whale"},
    "classify": _COUNTRIES_OUT | _ANIMALS_OUT | {"glad", "upset"},
    # Nouns whose plural rule training teaches with others (fox, tomato), and two verbs whose
    # past tense only the corpus's stories show ("hugged", "gave").
    "rewrite": {"box", "potato", "lamp", "hill", "hug", "give"},
}
_HELDOUT_HEROES = ("Zoe", "Omar")
_HELDOUT_THINGS = ("drum", "key", "pear", "onion")  # two objects (lost plot), two foods (share plot)

# Outside the world: real countries, made-up ones that are not in _WORLD, animals it lacks.
_UNKNOWN_COUNTRIES = ["France", "Japan", "Brazil", "Egypt", "Canada", "Peru", "Skarn", "Bellomy", "Tarvia", "Ubrek",
                      "Morrant", "Quistal"]
_UNKNOWN_ANIMALS = ["zebra", "penguin", "camel", "whale", "lion", "goat", "shark", "snake"]
_NOUNS = corpus._ANIMALS + corpus._OBJECTS + corpus._FOODS + corpus._PLACES
_NAMES = [p[0] for p in corpus._PEOPLE]
_VERBS = corpus._VERBS  # (verb, present, past, what follows)
_FEELING_SENTENCES = ["{name} felt {word} at the {place}.", "After the game, {name} was {word}.",
                      "{name} looked at the {obj} and felt {word}.", "{name} was very {word} today."]
# The corpus's own fact sentences (its `_facts`), so answers read the way pretraining wrote them.
_WORLD_SENTENCES = {"capital": "The capital of {country} is {capital}.",
                    "language": "People in {country} speak {language}.",
                    "animal": "The national animal of {country} is the {animal}.",
                    "famous": "{country} is famous for its {famous}.",
                    "river": "The river {river} flows through {country}."}


def _heldout_pair(x: int, y: int) -> bool:
    # About one pair in eight, by a fixed rule: symmetric (7 plus 5 goes with 5 plus 7) and
    # scattered, so every number still appears in training with other partners.
    return (x + 1) * (y + 1) % 7 == 4


def is_heldout_entity(task: str, entity: str) -> bool:
    """Whether an entity is reserved for the heldout_entity split of its task kind.

    Args:
        task: the task kind.
        entity: an example's `entity` ("Varnia", "duck", "7 plus 5", "Mia+kite", ...).

    Returns:
        True when training never asks about it for this kind.
    """
    if task == "arithmetic":
        x, _, y = entity.split()
        return _heldout_pair(int(x), int(y))
    if task in ("story_qa", "summary"):
        hero, thing = entity.split("+")
        return hero in _HELDOUT_HEROES or thing in _HELDOUT_THINGS
    return entity in _HELDOUT[task]


def is_heldout_template(task: str, template: str) -> bool:
    """Whether a template id is reserved for the heldout_template split.

    Args:
        task: the task kind.
        template: a template id "kind.group.index".

    Returns:
        True for the last phrasing of its group.
    """
    kind, group, index = template.split(".")
    return kind == task and int(index) == len(TEMPLATES[kind][group]) - 1


def _pool(task: str, items: list[str], held: bool) -> list[str]:
    """Only the reserved items for heldout_entity; none of them for the other splits."""
    return [x for x in items if is_heldout_entity(task, x) == held]


# ---------------------------------------------------------------- stories
# The corpus's "lost and found" and "sharing" plots, shortened to fit a 128-token context
# and written so that their facts (hero, helper, thing, place, ...) are known.


def _story_facts(rng: random.Random, plot: str, held: bool) -> dict[str, str]:
    things = corpus._OBJECTS if plot == "lost" else corpus._FOODS
    hero = rng.choice([n for n in _NAMES if n not in _HELDOUT_HEROES])
    thing = rng.choice([t for t in things if t not in _HELDOUT_THINGS])
    if held:  # a reserved hero, a reserved thing, or both
        which = rng.randrange(3)
        if which != 1:
            hero = rng.choice(_HELDOUT_HEROES)
        if which != 0:
            thing = rng.choice([t for t in things if t in _HELDOUT_THINGS])
    _, he, him, his = next(p for p in corpus._PEOPLE if p[0] == hero)
    helper = rng.choice([n for n in _NAMES if n != hero and n not in _HELDOUT_HEROES])
    words = dict(place=corpus._PLACES, colour=corpus._COLOURS, hide=corpus._HIDES, bad=corpus._BAD, good=corpus._GOOD,
                 trait=corpus._TRAITS, activity=corpus._ACTIVITIES)
    return {k: rng.choice(v) for k, v in words.items()} | dict(
        plot=plot, hero=hero, helper=helper, thing=thing, a_thing=corpus._a(thing), he=he, him=him, his=his,
        He=he.capitalize(), kid=corpus._KID[he][0])


def write_story(rng: random.Random, plot: str, held: bool = False) -> tuple[str, dict[str, str]]:
    """A short story in the corpus's style, with the facts it states.

    Args:
        rng: the random source.
        plot: "lost" (the hero loses a thing, the helper helps find it) or "share" (the hero
            shares a food with a friend, the helper).
        held: use a reserved hero or thing (for heldout_entity) instead of training ones.

    Returns:
        (story, facts): 45-70 words, and a dict with plot, hero, helper, thing, place, colour,
        hide, bad, good and the hero's pronouns.
    """
    f = _story_facts(rng, plot, held)
    begin = rng.choice(["Once upon a time, there was a {trait} {kid} named {hero}.",
                        "{hero} was a {trait} {kid} who loved {activity}.",
                        "There once was a little {kid} called {hero}. {He} was very {trait}."])
    if plot == "lost":
        middle = ("One day, {hero} lost {his} {colour} {thing} at the {place}. {He} felt {bad}. {He} looked "
                  "everywhere, but the {thing} was not there. Then {helper} came by and helped {him} look. "
                  "At last, they found the {thing} {hide}.")
        end = rng.choice(["{hero} was {good} again. {He} said thank you to {helper}.",
                          "{hero} hugged {his} {thing}. From that day on, {hero} and {helper} were best friends."])
    else:
        middle = ("One morning, {hero} took {a_thing} to the {place}. There {he} saw {helper}, who had no food. "
                  "{helper} looked {bad}. {hero} thought for a moment. Then {he} cut the {thing} in two and "
                  "gave half to {helper}.")
        end = rng.choice(["{helper} smiled. Sharing made {hero} feel {good}.",
                          "They ate together under the sun. {hero} learned that sharing is fun."])
    return f"{begin} {middle} {end}".format(**f), f


_plural = corpus._plural


# ---------------------------------------------------------------- makers
# One per task kind: (rng, group, held) -> (fields for the phrasing, output, answer, entity).
_Made = tuple[dict, str, str, str]


def _row(country: str) -> dict[str, str]:
    row = next(r for r in corpus._WORLD if r[0] == country)
    return dict(zip(("country", *_WORLD_SENTENCES), row, strict=True))


def _world(rng: random.Random, group: str, held: bool) -> _Made:
    row = _row(rng.choice(_pool("world", [r[0] for r in corpus._WORLD], held)))
    column = group.removesuffix("_rev")
    answer = row["country"] if group.endswith("_rev") else row[column]
    return row, _WORLD_SENTENCES[column].format(**row), answer, row["country"]


def _animals(rng: random.Random, group: str, held: bool) -> _Made:
    names = [a for a in corpus._ANIMALS if group != "sound_rev" or corpus._ANIMAL_FACTS[a][0] != "nothing"]
    animal = rng.choice(_pool("animals", names, held))
    sound, legs, home, food = corpus._ANIMAL_FACTS[animal]
    a = corpus._cap(corpus._a(animal))
    out, answer = {
        "sound": (f"{a} says {sound}." if sound != "nothing" else f"{a} does not say anything.", sound),
        "legs": (f"{a} has {legs} legs.", str(legs)),
        "home": (f"{a} lives in {corpus._a(home)}.", home),
        "food": (f"{a} likes to eat {food}.", food),
        "sound_rev": (f"{a} says {sound}.", animal),
    }[group]
    return dict(animal=animal, a_animal=corpus._a(animal), sound=sound), out, answer, animal


def _arithmetic(rng: random.Random, group: str, held: bool) -> _Made:
    while True:  # the corpus's ranges; minus keeps results non-negative
        if group == "times":
            x, y = rng.randint(0, 10), rng.randint(0, 10)
        else:
            x = rng.randint(0, 20)
            y = rng.randint(0, x) if group == "minus" else rng.randint(0, 20)
        if _heldout_pair(x, y) == held:
            break
    r = _OPS[group](x, y)
    return dict(x=x, y=y), f"{x} {group} {y} is {r}.", str(r), f"{x} {group} {y}"


def _story_qa(rng: random.Random, group: str, held: bool) -> _Made:
    story, f = write_story(rng, plot=group.split("_")[0], held=held)
    _, output, key = _STORY_Q[group]
    return f | {"story": story}, output.format(**f), f[key], f"{f['hero']}+{f['thing']}"


def _summary(rng: random.Random, group: str, held: bool) -> _Made:
    story, f = write_story(rng, plot=rng.choice(("lost", "share")), held=held)
    out = ("{hero} lost {his} {thing} at the {place} and {helper} helped {him} find it." if f["plot"] == "lost"
           else "{hero} shared {his} {thing} with {helper} at the {place}.").format(**f)
    return {"story": story}, out, out, f"{f['hero']}+{f['thing']}"


def _rewrite(rng: random.Random, group: str, held: bool) -> _Made:
    if group == "plural":
        word = rng.choice(_pool("rewrite", _NOUNS, held))
        return dict(word=word), _plural(word), _plural(word), word
    verb, present, past, rest = rng.choice([v for v in _VERBS if is_heldout_entity("rewrite", v[0]) == held])
    name, _, _, his = rng.choice(corpus._PEOPLE)
    food, animal = rng.choice(corpus._FOODS), rng.choice(corpus._ANIMALS)
    tail = rest.format(place=rng.choice(corpus._PLACES), his=his, obj=rng.choice(corpus._OBJECTS), food=food,
                       a_food=corpus._a(food), animal=animal, a_animal=corpus._a(animal),
                       friend=rng.choice([n for n in _NAMES if n != name]))
    out = f"{name} {past} {tail}."
    return dict(sentence=f"{name} {present} {tail}."), out, out, verb


def _classify(rng: random.Random, group: str, held: bool) -> _Made:
    if group == "legs":
        entity = rng.choice(_pool("classify", corpus._ANIMALS, held))
        label = "two-legged" if corpus._ANIMAL_FACTS[entity][1] == 2 else "four-legged"
        fields = dict(animal=entity, a_animal=corpus._a(entity))
    elif group == "feeling":
        entity = rng.choice(_pool("classify", corpus._GOOD + corpus._BAD, held))
        label = "happy" if entity in corpus._GOOD else "sad"
        fields = dict(sentence=rng.choice(_FEELING_SENTENCES).format(
            name=rng.choice(_NAMES), word=entity, place=rng.choice(corpus._PLACES), obj=rng.choice(corpus._OBJECTS)))
    else:  # a world statement, true half the time; a false one borrows another training country's fact
        row = _row(rng.choice(_pool("classify", [r[0] for r in corpus._WORLD], held)))
        entity, column, truth = row["country"], rng.choice(list(_WORLD_SENTENCES)), rng.random() < 0.5
        if not truth:
            others = [r[0] for r in corpus._WORLD if r[0] != entity and not is_heldout_entity("classify", r[0])]
            row = row | {column: _row(rng.choice(others))[column]}
        label = "true" if truth else "false"
        fields = dict(statement=_WORLD_SENTENCES[column].format(**row))
    return fields, label.capitalize() + ".", label, entity


def _decline(rng: random.Random, group: str, held: bool) -> _Made:
    thing = rng.choice(_pool("decline", _UNKNOWN_COUNTRIES if group in _WORLD_Q else _UNKNOWN_ANIMALS, held))
    return dict(country=thing, a_animal=corpus._a(thing)), REFUSAL, REFUSAL, thing


_MAKERS: dict[str, Callable[[random.Random, str, bool], _Made]] = {
    "world": _world, "animals": _animals, "arithmetic": _arithmetic, "story_qa": _story_qa,
    "rewrite": _rewrite, "classify": _classify, "summary": _summary, "decline": _decline,
}


# ---------------------------------------------------------------- generation and splits


def _example(rng: random.Random, kind: str, split: str) -> dict[str, str]:
    group = rng.choice(list(TEMPLATES[kind]))
    fields, output, answer, entity = _MAKERS[kind](rng, group, split == "heldout_entity")
    last = len(TEMPLATES[kind][group]) - 1
    index = last if split == "heldout_template" else rng.randrange(last)
    instruction, _, input_ = TEMPLATES[kind][group][index].format(**fields).partition("|")
    return {"instruction": instruction, "input": input_, "output": output, "task": kind,
            "template": f"{kind}.{group}.{index}", "entity": entity, "answer": answer}


def generate(n: int, seed: int, split: str = "train", kinds: tuple[str, ...] = TASK_KINDS) -> list[dict[str, str]]:
    """Generate instruction examples from the corpus's world.

    Args:
        n: how many examples.
        seed: seeds a private `random.Random`, together with the split's name (so val differs
            from train); the same arguments always give the same examples.
        split: the pools to draw from: "train" and "val" use training phrasings and entities,
            "heldout_template" only reserved phrasings (with training entities),
            "heldout_entity" only reserved entities (with training phrasings).
        kinds: the task kinds to use; they take turns, so each gets n / len(kinds) examples
            (give or take one).

    Returns:
        A list of dicts: instruction, input, output, task, template, entity, answer.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if set(kinds) - set(TASK_KINDS):
        raise ValueError(f"unknown task kinds {sorted(set(kinds) - set(TASK_KINDS))}: expected {', '.join(TASK_KINDS)}")
    rng = random.Random(f"instructions/{split}/{seed}")
    order = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(order)
    return [_example(rng, kind, split) for kind in order]


def build(seed: int, n_train: int, n_val: int, n_test: int) -> dict[str, list[dict[str, str]]]:
    """The four splits: train, val (train's distribution) and the two held-out test sets.

    Args:
        seed: the seed for all four (each split draws from its own stream).
        n_train: examples in train.
        n_val: examples in val.
        n_test: examples in each of heldout_template and heldout_entity.

    Returns:
        {"train", "val", "heldout_template", "heldout_entity"} -> examples. No (task, template)
        of heldout_template and no (task, entity) of heldout_entity occurs in train or val.
    """
    sizes = {"train": n_train, "val": n_val, "heldout_template": n_test, "heldout_entity": n_test}
    return {split: generate(n, seed, split) for split, n in sizes.items()}


# ---------------------------------------------------------------- scoring


def _normalize(text: str) -> str:
    text = " ".join(text.lower().split()).rstrip(".!?,;: ")
    return re.sub(r"^(a|an|the) ", "", text)


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]


def score(prediction: str, example: dict) -> bool:
    """Exact-match scoring for held-out accuracy.

    Both sides are normalised: lower case, whitespace runs made one space, trailing
    punctuation (.!?,;:) and one leading article (a, an, the) dropped. Then the prediction
    is correct when

    1. it equals the full `output` ("The capital of Varnia is Tolbek."), or
    2. it equals the short `answer` ("Tolbek"; for "pond", "a pond" counts too), or
    3. its first sentence equals the output's first sentence: a small model that answers
       right and then keeps generating still counts, and for a refusal "I don't know." is
       enough. Anything else, a right answer in other words included, is wrong.

    Example:
        >>> ex = {"output": "The capital of Varnia is Tolbek.", "answer": "Tolbek"}
        >>> score(" tolbek", ex), score("The capital of Varnia is Tolbek. The end.", ex), score("Mirrow", ex)
        (True, True, False)

    Args:
        prediction: the model's reply.
        example: an example with `output` and, usually, `answer`.

    Returns:
        True when the prediction counts as correct.
    """
    pred = _normalize(prediction)
    if not pred:
        return False
    targets = {_normalize(example["output"]), _normalize(example.get("answer") or example["output"])}
    return pred in targets or _normalize(_first_sentence(prediction)) == _normalize(_first_sentence(example["output"]))
