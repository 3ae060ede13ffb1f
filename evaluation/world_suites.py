"""Evaluation suites made from the starter corpus's made-up world, for lm-evaluation-harness.

A model pretrained only on training/data/corpus.py has never seen MMLU-style questions, so MMLU
tells us nothing about it (it sits at chance). These suites ask what that corpus *taught*, in
the corpus's own sentences, so a small base model can score above chance and we can watch it
learn, then watch fine-tuning keep or wear away what it learned:

- `world_facts`: "The capital of Varnia is" -> Tolbek. / Mirrow. / Brask. / Linden.
- `world_arithmetic`: "Q: What is 7 plus 5? A:" -> 12. / 13. / 35. / 11.
- `world_stories`: a corpus story, then "Question: Who helped Mia find the kite?\\nAnswer:" -> Ben / ...
- `world_instructions`: the held-out SFT questions (training/posttrain/instructions.py), answered
  in free text through the chat template: what a fine-tuned model is judged by.

The three multiple-choice suites are scored the way lm-eval scores every multiple-choice task:
the model does not write anything; lm-eval asks for log P(choice | prompt) of each choice and the
model is right when the true one is the most likely (`acc`), or the most likely per character
(`acc_norm`, which stops short answers winning just for being short). Everything is generated
from fixed seeds, so the items are the same on every machine and in every run.

Each builder returns the rows of a JSONL file; each row has an `id`, the fields lm-eval reads
(`prompt`, `choices`, `answer`) and the metadata a per-category breakdown needs (`relation`,
`operation`, `question`, `task`...), which lm-eval keeps in its logged samples.
"""

from __future__ import annotations

import random
from pathlib import Path

from training.data import corpus
from training.posttrain import instructions


class Function(str):
    """A dotted function name that the YAML writer (suites.py) emits as lm-eval's `!function` tag."""


# ---------------------------------------------------------------- world_facts
# relation -> (the corpus sentence up to the answer, the column of the world table that ends it).
# The sentences are `corpus._facts`'s, word for word; the first four are forgetting.RELATIONS.
FACT_RELATIONS: dict[str, tuple[str, str]] = {
    "capital": ("The capital of {country} is", "capital"),
    "language": ("People in {country} speak", "language"),
    "animal": ("The national animal of {country} is the", "animal"),
    "famous": ("{country} is famous for its", "famous"),
    "river": ("The river {river} flows through", "country"),
    "city": ("{capital} is a city in", "country"),
}
_COLUMNS = ("country", "capital", "language", "animal", "famous", "river")


def _choices(rng: random.Random, answer: str, pool: list[str], n: int = 4) -> tuple[list[str], int]:
    """The answer plus n-1 distinct distractors from `pool`, shuffled; returns (choices, index of the answer)."""
    others = sorted({x for x in pool if x != answer})
    options = [answer, *rng.sample(others, n - 1)]
    rng.shuffle(options)
    return options, options.index(answer)


def facts_items(seed: int = 0) -> list[dict]:
    """One item per country and relation: the true value and three from other countries' column.

    Choices end with the sentence's period, as the corpus writes them ("Tolbek."), so a model
    cannot prefer a choice that merely starts like a longer word.
    """
    rng = random.Random(f"world_facts/{seed}")
    rows = [dict(zip(_COLUMNS, row, strict=True)) for row in corpus._WORLD]
    items = []
    for relation, (prompt, column) in FACT_RELATIONS.items():
        for row in rows:
            choices, answer = _choices(rng, row[column], [r[column] for r in rows])
            items.append({"id": f"facts/{relation}/{row['country']}", "relation": relation,
                          "country": row["country"], "prompt": prompt.format(**row),
                          "choices": [c + "." for c in choices], "answer": answer})
    return items


# ---------------------------------------------------------------- world_arithmetic
_OPS = {"plus": lambda x, y: x + y, "minus": lambda x, y: x - y, "times": lambda x, y: x * y}


def _questions(op: str) -> list[tuple[int, int]]:
    """Every (x, y) the corpus can ask for `op` (`corpus._arith_line`'s ranges)."""
    if op == "plus":
        return [(x, y) for x in range(21) for y in range(21)]
    if op == "minus":  # the corpus keeps results non-negative
        return [(x, y) for x in range(21) for y in range(x + 1)]
    return [(x, y) for x in range(11) for y in range(11)]


def _near_misses(rng: random.Random, op: str, x: int, y: int) -> list[int]:
    """Three wrong answers a model that half-knows arithmetic would give.

    One off by one, one from the wrong operation on the same numbers (35 for 7 plus 5, as in 7
    times 5), one more of either kind or off by two or ten; all non-negative, as every answer
    in the corpus is.
    """
    right = _OPS[op](x, y)
    off_by_one = [v for v in (right - 1, right + 1) if v >= 0]
    picks = [rng.choice(off_by_one)]
    # Not the answer, nor the off-by-one already picked (2 times 3 is one more than 2 plus 3).
    wrong_op = sorted({f(x, y) for o, f in _OPS.items() if o != op} - {right, picks[0]})
    wrong_op = [v for v in wrong_op if v >= 0]
    picks += [rng.choice(wrong_op)] if wrong_op else []
    rest = {*off_by_one, *wrong_op, right + 2, right - 2, right + 10, right - 10} - {*picks, right}
    return picks + rng.sample(sorted(v for v in rest if v >= 0), 3 - len(picks))


def arithmetic_items(seed: int = 0, per_op: int = 100) -> list[dict]:
    """`per_op` distinct questions per operation (300 by default), in the corpus's "Q: ... A: n." lines."""
    rng = random.Random(f"world_arithmetic/{seed}")
    items = []
    for op, fn in _OPS.items():
        for x, y in sorted(rng.sample(_questions(op), per_op)):
            right = fn(x, y)
            options = [right, *_near_misses(rng, op, x, y)]
            rng.shuffle(options)
            items.append({"id": f"arithmetic/{x}-{op}-{y}", "operation": op, "x": x, "y": y,
                          "prompt": f"Q: What is {x} {op} {y}? A:", "choices": [f"{v}." for v in options],
                          "answer": options.index(right)})
    return items


# ---------------------------------------------------------------- world_stories
_FEARS = ["the dark", "the big dog", "the loud storm", "the deep water", "the tall hill"]
_NAMES = [p[0] for p in corpus._PEOPLE]
_ANIMAL_FOODS = sorted({v[3] for v in corpus._ANIMAL_FACTS.values()})
_ANIMAL_HOMES = sorted({v[2] for v in corpus._ANIMAL_FACTS.values()})


def story(rng: random.Random) -> tuple[str, dict[str, str]]:
    """`corpus._story`, line for line, but also returning the facts the text states.

    It draws the same random numbers in the same order, so for the same `rng` state it writes
    the same story as the corpus does (a test checks this on many seeds): the stories asked
    about are exactly the kind the model read in pretraining.

    Returns:
        (story, facts): facts has hero, helper, place, pet, trait, obj, colour, good, bad,
        opening (0-3: which first sentence), plot (0-4) and the plot's own words (fear, food,
        animal, animal_food, animal_home, hide).
    """
    p = corpus._person(rng)
    f = corpus._person(rng, avoid=p["name"])
    n, he, him, his, He, His = p["name"], p["he"], p["him"], p["his"], p["He"], p["His"]
    place, pet, trait = rng.choice(corpus._PLACES), rng.choice(corpus._ANIMALS), rng.choice(corpus._TRAITS)
    obj, colour = rng.choice(corpus._OBJECTS), rng.choice(corpus._COLOURS)
    good, bad = rng.choice(corpus._GOOD), rng.choice(corpus._BAD)
    facts = dict(hero=n, helper=f["name"], place=place, pet=pet, trait=trait, obj=obj, colour=colour, good=good,
                 bad=bad, kid=p["kid"], his=his)
    openings = [
        f"Once upon a time, there was a {trait} {p['kid']} named {n}. {He} lived near the {place} with {his} {pet}.",
        f"{n} was a {trait} {p['kid']} who loved {rng.choice(corpus._ACTIVITIES)}. Every day, {he} went to the {place}.",
        f"There once was a little {p['kid']} called {n}. {He} had {corpus._a(colour)} {obj} and {corpus._a(pet)}.",
        f"In a small house near the {place}, there lived a {p['kid']} named {n}. {He} was very {trait}.",
    ]
    begin = rng.choice(openings)
    plot = rng.randrange(5)
    facts |= dict(opening=openings.index(begin), plot=plot)
    if plot == 0:  # lost and found
        hide = rng.choice(corpus._HIDES)
        middle = (f"One day, {n} lost {his} {colour} {obj}. {He} felt {bad}. {He} looked everywhere, "
                  f"but the {obj} was not there. Then {f['name']} came by. \"Why are you {bad}, {n}?\" asked "
                  f"{f['name']}. \"I lost my {obj},\" said {n}. {f['name']} helped {him} look. At last, they "
                  f"found the {obj} {hide}.")
        end = rng.choice([f"{n} was {good} again. {He} said thank you to {f['name']}.",
                          f"{n} hugged {his} {obj}. From that day on, {n} and {f['name']} were best friends."])
        facts["hide"] = hide
    elif plot == 1:  # a fear overcome
        thing = rng.choice(_FEARS)
        middle = (f"But {n} was scared of {thing}. One night, {he} could not sleep. {His} mom said, "
                  f"\"Being brave does not mean you are not scared, {n}.\" The next day, {n} tried again. "
                  f"{He} took a deep breath and went on.")
        end = rng.choice([f"{n} was not scared of {thing} anymore. {He} felt {good}.",
                          f"In the end, {n} smiled. {He} knew {he} could be brave."])
        facts["fear"] = thing
    elif plot == 2:  # sharing
        food = rng.choice(corpus._FOODS)
        middle = (f"One morning, {n} had {corpus._a(food)} for lunch. At the {place}, {he} saw {f['name']}, who had "
                  f"no food. {f['name']} looked {bad}. {n} thought for a moment. Then {he} cut the {food} "
                  f"in two and gave half to {f['name']}.")
        end = rng.choice([f"{f['name']} smiled. Sharing made {n} feel {good}.",
                          f"They ate together under the sun. {n} learned that sharing is fun."])
        facts["food"] = food
    elif plot == 3:  # a rainy day
        middle = (f"One {rng.choice(['Monday', 'Saturday', 'Sunday', 'morning'])}, it rained all day, and {n} could not "
                  f"go to the {place}. {He} felt {bad}. Then {he} had an idea. {He} called {f['name']}, and "
                  f"together they built {corpus._a(rng.choice(corpus._ADJS))} fort out of "
                  f"{rng.choice(['pillows', 'boxes', 'blankets'])}.")
        end = rng.choice([f"When the rain stopped, {n} did not even notice. {He} was having too much fun.",
                          f"{n} said, \"Rainy days can be fun too!\" {f['name']} agreed."])
    else:  # meeting an animal
        animal = rng.choice(corpus._ANIMALS)
        sound, _, home, food = corpus._ANIMAL_FACTS[animal]
        said = f"The {animal} did not say anything." if sound == "nothing" else f"\"{corpus._cap(sound)}!\" said the {animal}."
        middle = (f"One day, {n} went to the {place} and met a {colour} {animal}. {said} The {animal} was "
                  f"hungry, so {n} gave it some {food}. The {animal} took {n} to its {home}.")
        end = rng.choice([f"{n} waved goodbye to the {animal}. {He} could not wait to tell {f['name']}.",
                          f"After that, {n} visited the {animal} every week. {He} was very {good}."])
        facts |= dict(animal=animal, animal_food=food, animal_home=home)
    tail = rng.choice(["", " The end.", f" {n} never forgot that day."])
    return f"{begin} {middle} {end}{tail}", facts


# question kind -> (the question, the fact that answers it, the pool its distractors come from);
# which kinds a story can be asked depends on what its opening and plot state (`_askable`).
_STORY_QUESTIONS: dict[str, tuple[str, str, list[str]]] = {
    "pet": ("What animal did {hero} have?", "pet", corpus._ANIMALS),
    "trait": ("What kind of {kid} was {hero}?", "trait", corpus._TRAITS),
    "home": ("Where did {hero} live?", "place", corpus._PLACES),
    "lost_helper": ("Who helped {hero} find the {obj}?", "helper", _NAMES),
    "lost_thing": ("What did {hero} lose?", "obj", corpus._OBJECTS),
    "lost_colour": ("What colour was the {obj}?", "colour", corpus._COLOURS),
    "lost_found": ("Where did they find the {obj}?", "hide", corpus._HIDES),
    "lost_feeling": ("How did {hero} feel when the {obj} was lost?", "bad", corpus._BAD),
    "fear": ("What was {hero} scared of?", "fear", _FEARS),
    "share_food": ("What did {hero} have for lunch?", "food", corpus._FOODS),
    "share_friend": ("Who did {hero} share the {food} with?", "helper", _NAMES),
    "rain_friend": ("Who did {hero} call on the rainy day?", "helper", _NAMES),
    "animal": ("What animal did {hero} meet at the {place}?", "animal", corpus._ANIMALS),
    "animal_food": ("What did {hero} give the {animal}?", "animal_food", _ANIMAL_FOODS),
    "animal_home": ("Where did the {animal} take {hero}?", "animal_home", _ANIMAL_HOMES),
}
_PLOT_QUESTIONS = {0: ["lost_helper", "lost_thing", "lost_colour", "lost_found", "lost_feeling"], 1: ["fear"],
                   2: ["share_food", "share_friend"], 3: ["rain_friend"], 4: ["animal", "animal_food", "animal_home"]}


def _askable(facts: dict) -> tuple[list[str], list[str]]:
    """The question kinds whose answer this story's text states: (about the plot, about the opening)."""
    opening = []
    if facts["opening"] in (0, 2) and facts["plot"] != 4:  # no "What animal did Mia have?" when she meets one
        opening.append("pet")
    if facts["opening"] != 2:
        opening.append("trait")  # "a kind girl named Mia", "Mia was a kind girl", "She was very kind"
    if facts["opening"] in (0, 3):
        opening.append("home")  # "lived near the park", "In a small house near the park"
    return _PLOT_QUESTIONS[facts["plot"]], opening


def story_items(seed: int = 0, n: int = 200) -> list[dict]:
    """`n` corpus stories, one question each, four choices drawn from the answer's own kind of word.

    Seven questions in ten are about the plot (who helped, what was lost, what was shared...),
    the rest about the opening (the hero's pet, trait or home), so the few openings do not
    dominate. The home question's choices read "near the park", as the story says it.
    """
    rng = random.Random(f"world_stories/{seed}")
    items = []
    while len(items) < n:
        text, facts = story(rng)
        plot_kinds, opening_kinds = _askable(facts)
        kind = rng.choice(opening_kinds if opening_kinds and rng.random() < 0.3 else plot_kinds)
        question, key, pool = _STORY_QUESTIONS[kind]
        avoid = {facts["hero"]} if pool is _NAMES else set()  # "Who helped Mia?" never offers Mia
        choices, answer = _choices(rng, facts[key], [x for x in pool if x not in avoid])
        if kind == "home":
            choices = [f"near the {c}" for c in choices]
        items.append({"id": f"stories/{len(items):03d}", "question": kind, "plot": facts["plot"],
                      "prompt": f"{text}\nQuestion: {question.format(**facts)}\nAnswer:",
                      "choices": choices, "answer": answer})
    return items


# ---------------------------------------------------------------- world_instructions
# The held-out files of a default SFT run (SFTDataConfig's seed and n_test): the same questions
# `playground sft` reports its held-out accuracy on.
INSTRUCTIONS_SEED, INSTRUCTIONS_PER_SPLIT = 0, 200


def instruction_items(seed: int = INSTRUCTIONS_SEED, n: int = INSTRUCTIONS_PER_SPLIT) -> list[dict]:
    """The heldout_template and heldout_entity questions, each asked once.

    The prompt is the chat user turn exactly as SFT trains it (instruction, blank line, input).
    A repeated question (the generator draws with replacement, and the held-out pools are small)
    is kept once, so no item counts twice.
    """
    items, seen = [], set()
    for split in ("heldout_template", "heldout_entity"):
        for ex in instructions.generate(n, seed, split):
            prompt = instructions.to_messages(ex)["messages"][0]["content"]
            if prompt in seen:
                continue
            seen.add(prompt)
            items.append({"id": f"instructions/{split}/{len(items):03d}", "split": split, "task": ex["task"],
                          "template": ex["template"], "entity": ex["entity"], "prompt": prompt,
                          "output": ex["output"], "answer": ex["answer"]})
    return items


def instruction_results(doc: dict, results: list[str]) -> dict[str, int]:
    """lm-eval's `process_results` for world_instructions: two scores per reply.

    - `exact_match`: the reply, stripped of surrounding whitespace, is the training output
      word for word ("The capital of Varnia is Tolbek.").
    - `normalized_match`: `instructions.score`, the scorer SFT's held-out accuracy uses: case,
      spaces, trailing punctuation and a leading article do not matter, and the short answer
      ("Tolbek") or the right first sentence counts too.
    """
    reply = results[0].strip()
    return {"exact_match": int(reply == doc["output"]), "normalized_match": int(instructions.score(reply, doc))}


# ---------------------------------------------------------------- lm-eval task configs
ITEMS = {"world_facts": facts_items, "world_arithmetic": arithmetic_items, "world_stories": story_items,
         "world_instructions": instruction_items}
_MEAN = {"aggregation": "mean", "higher_is_better": True}


def task_config(name: str, data_file: Path) -> dict:
    """The lm-eval YAML (as a dict) of world suite `name`, reading its rows from `data_file`.

    `doc_to_text`, `doc_to_choice` and `doc_to_target` name columns of the rows rather than
    Jinja templates, so a prompt is used exactly as written (braces and all).
    """
    config = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
              "test_split": "test", "doc_to_text": "prompt"}
    if name == "world_instructions":
        # Run with --apply_chat_template: the prompt becomes the user turn of the model's chat
        # template. `until: []` lets lm-eval stop at the model's EOS (it always adds it), which a
        # tuned model's tokenizer sets to the reply's end token (<|im_end|>).
        return config | {
            "output_type": "generate_until", "doc_to_target": "output",
            "generation_kwargs": {"until": [], "max_gen_toks": 64, "do_sample": False, "temperature": 0.0},
            "process_results": Function("evaluation.world_suites.instruction_results"),
            "metric_list": [{"metric": "exact_match", **_MEAN}, {"metric": "normalized_match", **_MEAN}],
            "metadata": {"version": 1},
        }
    return config | {"output_type": "multiple_choice", "doc_to_choice": "choices", "doc_to_target": "answer",
                     "target_delimiter": " ",
                     "metric_list": [{"metric": "acc", **_MEAN}, {"metric": "acc_norm", **_MEAN}],
                     "metadata": {"version": 1}}

