"""An offline starter corpus: simple English-like documents generated on the spot.

Why generate text instead of downloading it? So the whole pipeline (tokenizer,
pretraining, serving) works on a laptop with no internet, and so a model of a few
million parameters can *visibly* learn something within a few CPU minutes.

The generator is deliberately structured:

* a small vocabulary (names, animals, places, objects, colours, feelings),
* consistent templates (stories with a beginning, middle and end that keep the
  hero's name and pronoun; dialogues written as "Name: ..." turns),
* a fixed, made-up world table ("The capital of Varnia is Tolbek.") that never
  changes between seeds, so facts can be memorised,
* arithmetic with correct answers ("Q: What is 7 plus 5? A: 12."),
* quizzes, as a school book has them after its lessons: questions about the world table
  asked both ways ("Q: What country is Tolbek in? A: Varnia."), questions about a short
  story, and word lessons ("One box, two boxes.", "Today Mia walks ... Yesterday Mia
  walked ..."). Real pretraining text is full of questions and their answers; a model
  that never read one learns in fine-tuning only the few wordings fine-tuning shows it
  (docs/concepts/finetuning.md measures the difference),

while many template variants keep it from being trivially repetitive. Documents
never contain blank lines, so they can also be written to a .txt file with blank
lines as separators.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

KINDS: tuple[str, ...] = ("story", "dialogue", "facts", "arithmetic", "list", "quiz")
# Bump when the templates change: prepared datasets record it, so a changed
# generator is not mistaken for the same synthetic data.
VERSION = 2
# Stories dominate, as in TinyStories-like corpora; the rest add variety.
_KIND_WEIGHTS = (35, 15, 15, 10, 10, 15)

# (name, subject pronoun, object pronoun, possessive)
_PEOPLE = [(n, "she", "her", "her") for n in ("Mia", "Lily", "Anna", "Sara", "Emma", "Lucy", "Zoe", "Nora")] + [
    (n, "he", "him", "his") for n in ("Tom", "Ben", "Sam", "Leo", "Max", "Jack", "Finn", "Omar")
]
_KID = {"she": ("girl",), "he": ("boy",)}
_ANIMALS = ["cat", "dog", "rabbit", "fox", "bird", "duck", "frog", "owl", "bear", "mouse", "horse", "turtle"]
# A fixed table of animal facts, so "A duck says quack." is always true in this world.
_ANIMAL_FACTS = {
    "cat": ("meow", 4, "house", "fish"), "dog": ("woof", 4, "house", "bones"),
    "rabbit": ("nothing", 4, "hole", "carrots"), "fox": ("yip", 4, "den", "berries"),
    "bird": ("tweet", 2, "nest", "seeds"), "duck": ("quack", 2, "pond", "bread"),
    "frog": ("ribbit", 4, "pond", "flies"), "owl": ("hoot", 2, "tree", "mice"),
    "bear": ("growl", 4, "cave", "honey"), "mouse": ("squeak", 4, "hole", "cheese"),
    "horse": ("neigh", 4, "barn", "hay"), "turtle": ("nothing", 4, "pond", "leaves"),
}
_PLACES = ["park", "forest", "garden", "beach", "river", "farm", "town", "hill", "lake", "market"]
_OBJECTS = ["ball", "kite", "book", "hat", "box", "cup", "drum", "boat", "blanket", "key", "lamp", "shoe"]
_COLOURS = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "brown", "black"]
_ADJS = ["big", "small", "soft", "shiny", "old", "new"]
_TRAITS = ["kind", "curious", "brave", "shy", "funny", "clever"]
_GOOD = ["happy", "proud", "glad", "excited"]
_BAD = ["sad", "scared", "worried", "upset"]
_HIDES = ["under a big tree", "behind the door", "in the tall grass", "under the bed", "near the old fence", "inside a basket"]
_FOODS = ["apple", "carrot", "tomato", "potato", "pumpkin", "banana", "pear", "onion"]
_ACTIVITIES = ["to sing", "to draw", "to run", "to read", "to dance", "to swim", "to build things", "to climb"]

# The made-up world: (country, capital, language, national animal, famous for, river).
_WORLD = [
    ("Varnia", "Tolbek", "Varnish", "fox", "blue cheese", "Sella"),
    ("Plonk", "Mirrow", "Plonkish", "owl", "glass bells", "Ardo"),
    ("Zembla", "Kettering", "Zemblan", "bear", "honey cakes", "Vo"),
    ("Ostria", "Linden", "Ostrian", "horse", "tall ships", "Marn"),
    ("Quell", "Fennick", "Quellic", "duck", "green tea", "Pell"),
    ("Dorvia", "Brask", "Dorvian", "rabbit", "wool hats", "Tiber"),
    ("Kalo", "Sunport", "Kalonese", "turtle", "sea salt", "Umbe"),
    ("Maribel", "Oakham", "Mariban", "cat", "red apples", "Lune"),
    ("Tessary", "Gull Bay", "Tessaran", "frog", "music boxes", "Rill"),
    ("Norrow", "Ironhill", "Norrish", "dog", "iron bridges", "Skell"),
]


# (verb, present, past, what follows): a small fixed table, irregular verbs included.
_VERBS = [
    ("walk", "walks", "walked", "to the {place}"), ("go", "goes", "went", "to the {place}"),
    ("play", "plays", "played", "with {his} {obj}"), ("find", "finds", "found", "{his} {obj}"),
    ("eat", "eats", "ate", "{a_food}"), ("see", "sees", "saw", "{a_animal} at the {place}"),
    ("run", "runs", "ran", "to the {place}"), ("swim", "swims", "swam", "in the lake"),
    ("sing", "sings", "sang", "a song to {friend}"), ("lose", "loses", "lost", "{his} {obj}"),
    ("help", "helps", "helped", "{friend}"), ("hug", "hugs", "hugged", "{his} {animal}"),
    ("give", "gives", "gave", "the {obj} to {friend}"), ("make", "makes", "made", "{food} soup"),
    ("draw", "draws", "drew", "{a_animal}"), ("build", "builds", "built", "a fort with {friend}"),
    ("look", "looks", "looked", "at the {obj}"),
]


def _a(word: str) -> str:
    """Return 'a word' or 'an word' so sentences stay grammatical."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _plural(word: str) -> str:
    """The rules this world's nouns need: cat -> cats, box -> boxes, tomato -> tomatoes, mouse -> mice."""
    if word == "mouse":
        return "mice"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh", "o")) else "s")


def _person(rng: random.Random, avoid: str = "") -> dict[str, str]:
    """Pick a character; the dict carries the pronouns used throughout the document."""
    while True:
        name, he, him, his = rng.choice(_PEOPLE)
        if name != avoid:
            return {"name": name, "he": he, "him": him, "his": his, "He": _cap(he), "His": _cap(his),
                    "kid": rng.choice(_KID[he])}


def _story(rng: random.Random) -> str:
    p = _person(rng)
    f = _person(rng, avoid=p["name"])
    n, he, him, his, He, His = p["name"], p["he"], p["him"], p["his"], p["He"], p["His"]
    place, pet, trait = rng.choice(_PLACES), rng.choice(_ANIMALS), rng.choice(_TRAITS)
    obj, colour = rng.choice(_OBJECTS), rng.choice(_COLOURS)
    good, bad = rng.choice(_GOOD), rng.choice(_BAD)
    # Beginning: introduce the hero once, with the pronoun that is reused later.
    begin = rng.choice([
        f"Once upon a time, there was a {trait} {p['kid']} named {n}. {He} lived near the {place} with {his} {pet}.",
        f"{n} was a {trait} {p['kid']} who loved {rng.choice(_ACTIVITIES)}. Every day, {he} went to the {place}.",
        f"There once was a little {p['kid']} called {n}. {He} had {_a(colour)} {obj} and {_a(pet)}.",
        f"In a small house near the {place}, there lived a {p['kid']} named {n}. {He} was very {trait}.",
    ])
    plot = rng.randrange(5)
    if plot == 0:  # lost and found
        middle = (f"One day, {n} lost {his} {colour} {obj}. {He} felt {bad}. {He} looked everywhere, "
                  f"but the {obj} was not there. Then {f['name']} came by. \"Why are you {bad}, {n}?\" asked "
                  f"{f['name']}. \"I lost my {obj},\" said {n}. {f['name']} helped {him} look. At last, they "
                  f"found the {obj} {rng.choice(_HIDES)}.")
        end = rng.choice([f"{n} was {good} again. {He} said thank you to {f['name']}.",
                          f"{n} hugged {his} {obj}. From that day on, {n} and {f['name']} were best friends."])
    elif plot == 1:  # a fear overcome
        thing = rng.choice(["the dark", "the big dog", "the loud storm", "the deep water", "the tall hill"])
        middle = (f"But {n} was scared of {thing}. One night, {he} could not sleep. {His} mom said, "
                  f"\"Being brave does not mean you are not scared, {n}.\" The next day, {n} tried again. "
                  f"{He} took a deep breath and went on.")
        end = rng.choice([f"{n} was not scared of {thing} anymore. {He} felt {good}.",
                          f"In the end, {n} smiled. {He} knew {he} could be brave."])
    elif plot == 2:  # sharing
        food = rng.choice(_FOODS)
        middle = (f"One morning, {n} had {_a(food)} for lunch. At the {place}, {he} saw {f['name']}, who had "
                  f"no food. {f['name']} looked {bad}. {n} thought for a moment. Then {he} cut the {food} "
                  f"in two and gave half to {f['name']}.")
        end = rng.choice([f"{f['name']} smiled. Sharing made {n} feel {good}.",
                          f"They ate together under the sun. {n} learned that sharing is fun."])
    elif plot == 3:  # a rainy day
        middle = (f"One {rng.choice(['Monday', 'Saturday', 'Sunday', 'morning'])}, it rained all day, and {n} could not "
                  f"go to the {place}. {He} felt {bad}. Then {he} had an idea. {He} called {f['name']}, and "
                  f"together they built {_a(rng.choice(_ADJS))} fort out of {rng.choice(['pillows', 'boxes', 'blankets'])}.")
        end = rng.choice([f"When the rain stopped, {n} did not even notice. {He} was having too much fun.",
                          f"{n} said, \"Rainy days can be fun too!\" {f['name']} agreed."])
    else:  # meeting an animal
        animal = rng.choice(_ANIMALS)
        sound, _, home, food = _ANIMAL_FACTS[animal]
        said = f"The {animal} did not say anything." if sound == "nothing" else f"\"{_cap(sound)}!\" said the {animal}."
        middle = (f"One day, {n} went to the {place} and met a {colour} {animal}. {said} The {animal} was "
                  f"hungry, so {n} gave it some {food}. The {animal} took {n} to its {home}.")
        end = rng.choice([f"{n} waved goodbye to the {animal}. {He} could not wait to tell {f['name']}.",
                          f"After that, {n} visited the {animal} every week. {He} was very {good}."])
    tail = rng.choice(["", " The end.", f" {n} never forgot that day."])
    return f"{begin} {middle} {end}{tail}"


def _dialogue(rng: random.Random) -> str:
    a = _person(rng)
    b = _person(rng, avoid=a["name"])
    A, B = a["name"], b["name"]
    place, obj, colour = rng.choice(_PLACES), rng.choice(_OBJECTS), rng.choice(_COLOURS)
    lines = [f"{A}: {rng.choice(['Hello', 'Hi', 'Good morning'])}, {B}! How are you?",
             f"{B}: I am {rng.choice(_GOOD + _BAD)}, {A}. {rng.choice(['And you?', 'How are you?'])}",
             f"{A}: I am fine, thank you."]
    topic = rng.randrange(3)
    if topic == 0:
        lines += [f"{A}: Do you want to go to the {place} with me?",
                  f"{B}: {rng.choice(['Yes', 'Sure', 'Okay'])}! Can I bring my {colour} {obj}?",
                  f"{A}: Yes, that is a good idea."]
    elif topic == 1:
        country, capital, lang, *_ = rng.choice(_WORLD)
        # Dialogues quote the world table, so the facts appear in more than one form.
        lines += [f"{A}: Do you know the capital of {country}?",
                  f"{B}: Yes, it is {capital}. People there speak {lang}.",
                  f"{A}: You know a lot, {B}!"]
    else:
        x, y = rng.randint(1, 9), rng.randint(1, 9)
        lines += [f"{A}: I have {x} apples and you have {y} apples. How many do we have?",
                  f"{B}: {x} plus {y} is {x + y}. We have {x + y} apples.",
                  f"{A}: Let us share them!"]
    lines.append(f"{B}: {rng.choice(['Goodbye', 'Bye', 'See you later'])}, {A}!")
    return "\n".join(lines)


def _facts(rng: random.Random) -> str:
    if rng.random() < 0.6:
        country, capital, lang, animal, famous, river = rng.choice(_WORLD)
        sents = [f"The capital of {country} is {capital}.", f"People in {country} speak {lang}.",
                 f"The national animal of {country} is the {animal}.", f"{country} is famous for its {famous}.",
                 f"The river {river} flows through {country}.", f"{capital} is a city in {country}."]
        rng.shuffle(sents)
        return f"Facts about {country}. " + " ".join(sents[: rng.randint(3, 6)])
    out = []
    for animal in rng.sample(_ANIMALS, rng.randint(3, 5)):
        sound, legs, home, food = _ANIMAL_FACTS[animal]
        a = _cap(_a(animal))
        s = [f"{a} has {legs} legs.", f"{a} lives in {_a(home)}.", f"{a} likes to eat {food}."]
        if sound != "nothing":
            s.append(f"{a} says {sound}.")
        out.append(" ".join(rng.sample(s, rng.randint(2, len(s)))))
    return "Animal facts. " + " ".join(out)


def _arith_line(rng: random.Random) -> str:
    op = rng.randrange(3)
    if op == 0:
        x, y = rng.randint(0, 20), rng.randint(0, 20)
        return f"Q: What is {x} plus {y}? A: {x + y}."
    if op == 1:  # keep results non-negative: simpler for a small model
        x = rng.randint(0, 20)
        y = rng.randint(0, x)
        return f"Q: What is {x} minus {y}? A: {x - y}."
    x, y = rng.randint(0, 10), rng.randint(0, 10)
    return f"Q: What is {x} times {y}? A: {x * y}."


def _arithmetic(rng: random.Random) -> str:
    lines = [_arith_line(rng) for _ in range(rng.randint(4, 8))]
    if rng.random() < 0.5:
        p = _person(rng)
        q = _person(rng, avoid=p["name"])
        x, y, fruit = rng.randint(2, 9), rng.randint(1, 9), _plural(rng.choice(_FOODS))
        lines.append(f"{p['name']} has {x} {fruit}. {q['name']} gives {p['him']} {y} more. How many {fruit} "
                     f"does {p['name']} have now? {p['He']} has {x + y} {fruit}.")
    return "\n".join(lines)


def _list(rng: random.Random) -> str:
    if rng.random() < 0.5:
        food = rng.choice(_FOODS)
        steps = [f"Wash the {_plural(food)}.", f"Cut the {_plural(food)} into small pieces.", "Put them in a pot with water.",
                 f"Add {rng.choice(['a little salt', 'some butter', 'a spoon of honey'])}.",
                 f"Cook for {rng.choice([10, 15, 20, 30])} minutes.", "Let it cool, then eat it with a friend."]
        return f"How to make {food} soup:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    p = _person(rng)
    items = rng.sample(_OBJECTS, rng.randint(3, 5))
    body = "\n".join(f"- {_a(rng.choice(_COLOURS))} {o}" for o in items)
    return (f"{p['name']} is going to the {rng.choice(_PLACES)}. {p['He']} packs:\n{body}\n"
            f"{p['He']} packs {len(items)} things.")

# Quizzes: the questions a school book asks after its lessons, with their answers. Real
# pretraining text is full of questions; without them the model meets its first question in
# fine-tuning and learns only the few wordings fine-tuning uses. These wordings are the
# corpus's own: none is a wording of the instruction data (training/posttrain/
# instruction_templates.py), which tests/unit/test_corpus.py checks, so a held-out wording of
# the fine-tuning data stays unseen in pretraining too.
_QUIZ_WORLD = {  # fact -> (questions asking for it, the answer's column); "{x}" are _WORLD's columns
    "capital": (["What city is the capital of {country}?", "What is the capital city of {country}?",
                 "What is {country}'s capital?", "The capital of {country} is which city?"], "capital"),
    "capital_rev": (["{capital} is the capital of what country?", "What country is {capital} in?",
                     "Which country has the capital {capital}?"], "country"),
    "language": (["What language is spoken in {country}?", "What do they speak in {country}?",
                  "Which language do people in {country} speak?"], "language"),
    "language_rev": (["In what country do people speak {language}?", "{language} is the language of which country?",
                      "Who speaks {language}?"], "country"),
    "animal": (["What is {country}'s national animal?", "Which animal is the symbol of {country}?",
                "{country} has which national animal?"], "animal"),
    "animal_rev": (["The {animal} is the national animal of what country?", "Whose national animal is the {animal}?"],
                   "country"),
    "famous": (["What is {country} best known for?", "{country} is famous for what?", "What makes {country} famous?"],
               "famous"),
    "famous_rev": (["Which country is famous for {famous}?", "What country has famous {famous}?"], "country"),
    "river": (["What river is in {country}?", "Which river is in {country}?", "What is the river of {country} called?"],
              "river"),
    "river_rev": (["In what country is the river {river}?", "What country does the river {river} flow through?"],
                  "country"),
}
_QUIZ_STORY = {  # plot -> fact -> questions about the story
    "lost": {"helper": ["Who helped {hero}?", "Who came by to help?", "Who helped look for the {thing}?"],
             "thing": ["What was lost?", "What did {hero} lose that day?", "What did {he} look for?"],
             "place": ["Where was the {thing} lost?", "Where did {hero} lose it?"],
             "hide": ["Where was the {thing} found?", "Where did they find it?"],
             "colour": ["What colour was it?", "Which colour was the {thing}?"],
             "bad": ["How did {hero} feel at first?", "How did {hero} feel when {he} lost it?"]},
    "share": {"helper": ["Who got half?", "Who did {hero} give half of the {thing} to?", "Who had no food?"],
              "thing": ["What food did {hero} have?", "What did {hero} cut in two?"],
              "place": ["Where did {hero} see {helper}?", "Where were they?"],
              "bad": ["How did {helper} look?", "How did {helper} feel before?"]},
}
_QUIZ_COLUMNS = ("country", "capital", "language", "animal", "famous", "river")


def _quiz_story(rng: random.Random, plot: str) -> tuple[str, dict[str, str]]:
    p = _person(rng)
    f = {"hero": p["name"], "helper": _person(rng, avoid=p["name"])["name"], "he": p["he"], "his": p["his"],
         "He": p["He"], "him": p["him"], "place": rng.choice(_PLACES), "colour": rng.choice(_COLOURS),
         "hide": rng.choice(_HIDES), "bad": rng.choice(_BAD), "good": rng.choice(_GOOD),
         "thing": rng.choice(_OBJECTS if plot == "lost" else _FOODS), "kid": p["kid"], "trait": rng.choice(_TRAITS)}
    f["a_thing"] = _a(f["thing"])
    if plot == "lost":
        text = ("There was a {trait} {kid} named {hero}. One day, {hero} lost {his} {colour} {thing} at the {place}. "
                "{He} felt {bad}. Then {helper} came by and helped {him} look. They found the {thing} {hide}. "
                "{hero} was {good} again.")
    else:
        text = ("There was a {trait} {kid} named {hero}. One morning, {hero} took {a_thing} to the {place}. There {he} "
                "saw {helper}, who had no food. {helper} looked {bad}. {hero} cut the {thing} in two and gave half to "
                "{helper}.")
    return text.format(**f), f


def _quiz(rng: random.Random) -> str:
    kind = rng.choices(("world", "story", "words"), weights=(4, 4, 2))[0]
    if kind == "world":
        row = dict(zip(_QUIZ_COLUMNS, rng.choice(_WORLD), strict=True))
        lines = [f"A quiz about {row['country']}."]
        for fact in rng.sample(list(_QUIZ_WORLD), rng.randint(3, 5)):
            questions, column = _QUIZ_WORLD[fact]
            lines.append(f"Q: {rng.choice(questions).format(**row)} A: {_cap(row[column])}.")
        return "\n".join(lines)
    if kind == "story":
        plot = rng.choice(("lost", "share"))
        story, f = _quiz_story(rng, plot)
        lines = [f"Read the story. {story}", "Answer the questions."]
        for fact in rng.sample(list(_QUIZ_STORY[plot]), rng.randint(2, 4)):
            lines.append(f"Q: {rng.choice(_QUIZ_STORY[plot][fact]).format(**f)} A: {_cap(f[fact])}.")
        return "\n".join(lines)
    if rng.random() < 0.5:  # words: one and many, today and yesterday
        nouns = rng.sample(_ANIMALS + _OBJECTS + _FOODS + _PLACES, rng.randint(4, 6))
        # Terse on purpose; the full pipeline's Gopher filter (configs/data/starter.yaml) drops them.
        return "One and many. " + " ".join(f"One {w}, two {_plural(w)}." for w in nouns)
    lines = ["Today and yesterday."]
    for _, present, past, rest in rng.sample(_VERBS, rng.randint(3, 5)):
        p = _person(rng)
        food, animal = rng.choice(_FOODS), rng.choice(_ANIMALS)
        tail = rest.format(place=rng.choice(_PLACES), his=p["his"], obj=rng.choice(_OBJECTS), food=food,
                           a_food=_a(food), animal=animal, a_animal=_a(animal),
                           friend=_person(rng, avoid=p["name"])["name"])
        lines.append(f"Today {p['name']} {present} {tail}. Yesterday {p['name']} {past} {tail}.")
    return "\n".join(lines)


_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "story": _story, "dialogue": _dialogue, "facts": _facts, "arithmetic": _arithmetic, "list": _list,
    "quiz": _quiz,
}


def generate_documents(num_chars: int, seed: int = 0) -> Iterator[str]:
    """Yield synthetic documents until about `num_chars` characters were produced.

    Args:
        num_chars: total size to generate; generation stops after the document that
            crosses this many characters (0 or less yields nothing).
        seed: seeds a private `random.Random`, so the same seed always gives the same
            documents and no global random state is touched.

    Returns:
        An iterator of documents, each a few hundred characters, without blank lines.
    """
    rng = random.Random(seed)
    makers = [_MAKERS[k] for k in KINDS]
    total = 0
    while total < num_chars:
        doc = rng.choices(makers, weights=_KIND_WEIGHTS)[0](rng)
        total += len(doc)
        yield doc
