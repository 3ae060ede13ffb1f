"""evaluation/text_metrics.py pinned to the libraries that define each metric (sacrebleu, rouge-score,
nltk) and, for SQuAD's exact match and token F1, to cases worked out by hand."""

import doctest

import pytest
import sacrebleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

from evaluation import text_metrics as tm

PREDICTIONS = ["the cat is on the mat", "there is a cat on the mat", "a dog barked loudly at night"]
REFERENCES = ["the cat sat on the mat", "a cat is on the mat", "the dog barked all night long"]
# nltk's own METEOR example (its docstring's 0.6944 was computed with Princeton's WordNet 3.0).
NLTK_HYPOTHESIS = "It is a guide to action which ensures that the military always obeys the commands of the party"
NLTK_REFERENCE = "It is a guide to action that ensures that the military will forever heed Party commands"


def test_docstring_examples_hold():
    result = doctest.testmod(tm)
    assert result.failed == 0 and result.attempted >= 12


# --------------------------------------------------------------------------- sacrebleu


def test_bleu_chrf_ter_are_sacrebleus_corpus_scores():
    refs = [REFERENCES]  # sacrebleu: one list per reference set
    assert tm.bleu(PREDICTIONS, REFERENCES) == sacrebleu.corpus_bleu(PREDICTIONS, refs).score
    assert tm.chrf(PREDICTIONS, REFERENCES) == sacrebleu.corpus_chrf(PREDICTIONS, refs).score
    assert tm.ter(PREDICTIONS, REFERENCES) == sacrebleu.corpus_ter(PREDICTIONS, refs).score
    assert tm.bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert tm.chrf(REFERENCES, REFERENCES) == pytest.approx(100.0) and tm.ter(REFERENCES, REFERENCES) == 0.0
    # Corpus-level: counts are pooled before the mean, which is not the mean of sentence BLEUs.
    sentence_mean = sum(sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(PREDICTIONS, REFERENCES)) / 3
    assert abs(tm.bleu(PREDICTIONS, REFERENCES) - sentence_mean) > 1


def test_ter_counts_word_edits_per_reference_word():
    # One substitution (sat -> is) in a 6-word reference; dropping two words of it is 2 edits.
    assert tm.ter(["the cat is on the mat"], ["the cat sat on the mat"]) == pytest.approx(100 / 6)
    assert tm.ter(["the cat on mat"], ["the cat sat on the mat"]) == pytest.approx(200 / 6)


# --------------------------------------------------------------------------- rouge-score


def test_rouge_is_the_mean_of_rouge_scores_f_measures():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    pairs = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES)]
    got = tm.rouge(PREDICTIONS, REFERENCES)
    assert set(got) == {"rouge1", "rouge2", "rougeL"}
    for key, value in got.items():
        assert value == pytest.approx(sum(s[key].fmeasure for s in pairs) / 3, abs=1e-12)
    # By hand: 5 of 6 words shared, 3 of 5 bigrams ("the cat", "on the", "the mat").
    one = tm.rouge(["the cat is on the mat"], ["the cat sat on the mat"])
    assert one == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    assert tm.rouge(["the cats sat"], ["the cat sat"])["rouge1"] == 1.0  # the stemmer is on


# --------------------------------------------------------------------------- nltk METEOR


def test_meteor_is_nltks_meteor_score():
    wordnet = tm._wordnet()
    expected = sum(meteor_score([r.split()], p.split(), wordnet=wordnet) for p, r in zip(PREDICTIONS, REFERENCES))
    assert tm.meteor(PREDICTIONS, REFERENCES) == pytest.approx(expected / 3, abs=1e-12)
    assert tm.meteor([NLTK_HYPOTHESIS], [NLTK_REFERENCE]) == pytest.approx(0.6944, abs=1e-4)
    assert tm.meteor([NLTK_HYPOTHESIS], [NLTK_HYPOTHESIS]) == pytest.approx(0.99991, abs=1e-5)  # 18 words, 1 chunk


def test_meteor_matches_wordnet_synonyms():
    same = tm.meteor(["the cat sat on the carpet"], ["the cat sat on the carpet"])
    assert tm.meteor(["the cat sat on the rug"], ["the cat sat on the carpet"]) == same  # rug ~ carpet
    assert tm.meteor(["the cat sat on the sofa"], ["the cat sat on the carpet"]) == pytest.approx(0.83)


def test_wordnet_is_built_from_a_dict_folder(tmp_path):
    root = tm.prepare_wordnet(tm.WORDNET_HOME, tmp_path / "nltk_data")
    folder = root / "corpora" / "wordnet"
    assert {"data.noun", "index.verb", "adj.exc", "lexnames", "index.sense"} <= {f.name for f in folder.iterdir()}
    lines = (folder / "lexnames").read_text().splitlines()
    assert len(lines) == 45 and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
    before = (folder / "data.noun").stat().st_ino
    assert tm.prepare_wordnet(tm.WORDNET_HOME, tmp_path / "nltk_data") == root  # up to date: left alone
    assert (folder / "data.noun").stat().st_ino == before
    with pytest.raises(RuntimeError, match=r"METEOR needs WordNet 3.0: `apt-get install wordnet-base`"):
        tm.prepare_wordnet(tmp_path / "nowhere", tmp_path / "other")


# --------------------------------------------------------------------------- SQuAD


def test_normalisation_is_squads():
    assert tm.normalize_answer("  The Eiffel-Tower, in  an  instant!") == "eiffeltower in instant"
    assert tm.normalize_answer("Theatre a la carte") == "theatre la carte"  # whole words only


def test_exact_match_after_normalisation():
    assert tm.exact_match(["The Cat!", "a dog", "Paris"], ["cat", "the dogs", "paris, france"]) == pytest.approx(1 / 3)


def test_token_f1_by_hand():
    assert tm.token_f1(["the cat sat"], ["a cat sat down"]) == pytest.approx(0.8)  # P 2/2, R 2/3
    assert tm.token_f1(["cat cat dog"], ["cat dog dog"]) == pytest.approx(2 / 3)  # bags: 1 cat, 1 dog shared
    assert tm.token_f1(["red"], ["blue"]) == 0.0
    assert tm.token_f1(["", "The"], ["", "cat"]) == 0.5  # empty matches only empty: (1 + 0) / 2


# --------------------------------------------------------------------------- the dispatcher and checks


def test_score_dispatches_by_name():
    assert tm.score("chrf", PREDICTIONS, REFERENCES) == tm.chrf(PREDICTIONS, REFERENCES)
    assert tm.score("rouge", PREDICTIONS, REFERENCES) == tm.rouge(PREDICTIONS, REFERENCES)
    with pytest.raises(ValueError, match="unknown metric 'bleurt'; known: bleu, chrf, ter, rouge, meteor"):
        tm.score("bleurt", PREDICTIONS, REFERENCES)


@pytest.mark.parametrize("name", list(tm.METRICS))
def test_lists_must_pair_up(name):
    with pytest.raises(ValueError, match="got 2 predictions and 1 references"):
        tm.score(name, ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        tm.score(name, [], [])
    with pytest.raises(TypeError, match="lists of strings"):
        tm.score(name, "a cat", "a cat")
