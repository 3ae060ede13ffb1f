"""The phrasings of the instruction tasks (instructions.py makes the examples from them).

kind -> group -> phrasings. A group is one question, its phrasings say it differently;
"instruction|input" puts the part after "|" in the example's input. The LAST phrasing of
every group is reserved for the heldout_template split and never used in training, so the
training phrasings come first: more of them teach a small model the question rather than
one wording of it (docs/concepts/finetuning.md measures the difference).
"""

from __future__ import annotations

_WORLD_Q = {
    "capital": ["What is the capital of {country}?", "Answer the question.|What is the capital of {country}?",
                "Which city is the capital of {country}?", "Tell me the capital of {country}.",
                "Name the capital city of {country}."],
    "language": ["What language do people speak in {country}?", "Which language is spoken in {country}?",
                 "What do people in {country} speak?", "Answer the question.|Which language do people use in {country}?",
                 "Tell me the language of {country}."],
    "animal": ["What is the national animal of {country}?", "Which animal is the national animal of {country}?",
               "What animal is the symbol of {country}?", "Tell me the national animal of {country}.",
               "Name the national animal of {country}."],
    "famous": ["What is {country} famous for?", "What is {country} known for?",
               "Why is {country} famous?", "Answer the question.|What is special about {country}?",
               "Tell me what {country} is famous for."],
    "river": ["Which river flows through {country}?", "Answer the question.|What river flows through {country}?",
              "Which river runs through {country}?", "What is the name of the river in {country}?",
              "Name the river of {country}."],
}
_ANIMAL_Q = {
    "sound": ["What does {a_animal} say?", "What sound does {a_animal} make?", "What noise does {a_animal} make?",
              "Tell me what {a_animal} says.", "Which sound does {a_animal} make?"],
    "legs": ["How many legs does {a_animal} have?", "Answer the question.|How many legs does {a_animal} have?",
             "Tell me how many legs {a_animal} has.", "What is the number of legs of {a_animal}?",
             "Count the legs of {a_animal}."],
    "home": ["Where does {a_animal} live?", "What is the home of {a_animal}?", "Where is the home of {a_animal}?",
             "Answer the question.|Where can you find {a_animal}?", "Tell me where {a_animal} lives."],
    "food": ["What does {a_animal} eat?", "What does {a_animal} like to eat?", "What food does {a_animal} eat?",
             "Tell me what {a_animal} eats.", "Name the food that {a_animal} likes."],
}
# Questions about a story: group -> (phrasings, output, the fact that is the answer); a
# group's first word is the story's plot.
_STORY_Q: dict[str, tuple[list[str], str, str]] = {
    "lost_helper": (["Who helped {hero} find the {thing}?", "Who helped {hero} look for the {thing}?", "Who came to help {hero}?", "Who found the {thing} with {hero}?",
                     "Which friend helped {hero}?"], "{helper} helped {hero} find the {thing}.", "helper"),
    "lost_thing": (["What did {hero} lose?", "What was lost in the story?", "What did {hero} look for?", "Which thing did {hero} lose?", "What did {hero} lose at the {place}?"],
                   "{hero} lost {his} {colour} {thing}.", "thing"),
    "lost_place": (["Where did {hero} lose the {thing}?", "Where was {hero} when the {thing} got lost?", "Where did the {thing} get lost?", "At which place was the {thing} lost?",
                    "In which place did {hero} lose the {thing}?"], "{hero} lost the {thing} at the {place}.", "place"),
    "lost_found": (["Where did they find the {thing}?", "Where was the {thing} at last?", "Where did the {thing} turn up?", "Where was the lost {thing} found?",
                    "Where did {hero} and {helper} find the {thing}?"], "They found the {thing} {hide}.", "hide"),
    "lost_colour": (["What colour was the {thing}?", "What colour was {hero}'s {thing}?", "Which colour did the {thing} have?", "What was the colour of the {thing}?",
                     "Tell me the colour of the lost {thing}."], "The {thing} was {colour}.", "colour"),
    "lost_feeling": (["How did {hero} feel after losing the {thing}?", "How did {hero} feel when the {thing} was lost?", "How did {hero} feel?", "What did {hero} feel when the {thing} was gone?",
                      "What feeling did {hero} have when the {thing} was lost?"], "{hero} felt {bad}.", "bad"),
    "share_thing": (["What did {hero} share?", "What food did {hero} cut in two?", "What did {hero} take to the {place}?", "Which food did {hero} give half of?",
                     "Which food did {hero} share with {helper}?"], "{hero} shared {his} {thing}.", "thing"),
    "share_friend": (["Who did {hero} share the {thing} with?", "Who got half of the {thing}?", "Who did {hero} give half to?", "Which friend got some of the {thing}?",
                      "To whom did {hero} give half of the {thing}?"], "{hero} shared the {thing} with {helper}.",
                     "helper"),
    "share_place": (["Where did {hero} take the {thing}?", "Where did {hero} meet {helper}?", "Where was {hero} with the {thing}?", "Where did the story happen?",
                     "In which place did {hero} share the {thing}?"], "{hero} was at the {place}.", "place"),
    "share_feeling": (["How did {helper} look before {hero} shared?", "How did {helper} feel at first?", "How did {helper} look at first?", "What feeling did {helper} have with no food?",
                       "What feeling did {helper} show before getting the {thing}?"], "{helper} looked {bad}.", "bad"),
}
_OPS = {"plus": lambda x, y: x + y, "minus": lambda x, y: x - y, "times": lambda x, y: x * y}
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "world": _WORLD_Q | {
        "capital_rev": ["Which country has {capital} as its capital?", "{capital} is the capital of which country?",
                        "Whose capital is {capital}?", "Tell me the country whose capital is {capital}.",
                        "In which country is the city of {capital}?"],
        "language_rev": ["In which country do people speak {language}?", "Where do people speak {language}?",
                         "Which country speaks {language}?", "Where is {language} spoken?",
                         "{language} is spoken in which country?"],
        "animal_rev": ["Which country has the {animal} as its national animal?",
                       "The {animal} is the national animal of which country?",
                       "In which country is the {animal} the national animal?",
                       "Which country has the {animal} as its symbol?",
                       "Name the country whose national animal is the {animal}."],
        "famous_rev": ["Which country is famous for its {famous}?",
                       "Answer the question.|Which country is known for its {famous}?",
                       "What country is famous for its {famous}?", "Where is the country known for its {famous}?",
                       "Name the country that is famous for its {famous}."],
        "river_rev": ["Which country does the river {river} flow through?",
                      "The river {river} flows through which country?",
                      "Through which country does the river {river} flow?", "Which country is the river {river} in?",
                      "Where does the river {river} flow?"],
    },
    "animals": _ANIMAL_Q | {"sound_rev": ["Which animal says {sound}?", "What animal says {sound}?",
                                          "Which animal makes the sound {sound}?", "Who says {sound}?",
                                          "Name the animal that says {sound}."]},
    "arithmetic": {op: [f"What is {{x}} {op} {{y}}?", f"Answer with the number.|What is {{x}} {op} {{y}}?",
                        f"Work out {{x}} {op} {{y}}.", f"Calculate {{x}} {op} {{y}}.",
                        f"What does {{x}} {op} {{y}} make?", f"How much is {{x}} {op} {{y}}?"] for op in _OPS},
    "story_qa": {group: [q + "|{story}" for q in qs] for group, (qs, *_) in _STORY_Q.items()},
    "rewrite": {"plural": ["What is the plural of {word}?", "Write the plural form of this word.|{word}",
                           "What do you call more than one {word}?", "Make this word plural.|{word}",
                           "Give the plural of the word {word}."],
                "past": ["Rewrite this sentence in the past tense.|{sentence}",
                         "Change the sentence to the past tense.|{sentence}",
                         "Say this in the past tense.|{sentence}",
                         "Write this sentence as if it happened yesterday.|{sentence}",
                         "Put this sentence in the past tense.|{sentence}"]},
    "classify": {"legs": ["Is {a_animal} two-legged or four-legged?",
                          "Classify this animal as two-legged or four-legged.|{animal}",
                          "Two-legged or four-legged?|{animal}",
                          "Answer two-legged or four-legged.|How many legs does {a_animal} walk on?",
                          "Does {a_animal} walk on two legs or four? Answer two-legged or four-legged."],
                 "feeling": ["Is this sentence happy or sad?|{sentence}",
                             "Classify the feeling in this sentence as happy or sad.|{sentence}",
                             "Happy or sad?|{sentence}", "Is the feeling here happy or sad?|{sentence}",
                             "Does this sentence sound happy or sad?|{sentence}"],
                 "fact": ["Is this statement true or false?|{statement}", "True or false?|{statement}",
                          "Answer true or false.|{statement}", "Is this true?|{statement}",
                          "Tell me if this is true or false.|{statement}"]},
    "summary": {"story": ["Summarize the story in one sentence.|{story}",
                          "Write a one-sentence summary of this story.|{story}",
                          "What happens in this story? Answer in one sentence.|{story}",
                          "Tell me in one sentence what this story is about.|{story}"]},
    # The same wordings as the real questions: the model must decide from the entity, not the phrasing.
    "decline": {g: _WORLD_Q[g] for g in ("capital", "language", "famous")}
    | {g: _ANIMAL_Q[g] for g in ("sound", "legs", "food")},
}
