"""training/decoding/: every processor, greedy, sampling and beam search pinned to `transformers`.

A tiny model of ours is exported with export_hf and loaded back with AutoModelForCausalLM;
our decoding must pick the same tokens as its `generate`, and beam search must report the
same `sequences_scores`. Each processor must give the same processed logits as its HF
counterpart (presence/frequency penalties: vLLM's) on random logits, to 1e-5.
"""

import doctest
import math
from collections import Counter

import pytest
import torch
from variants import randint, variant_model

from training.decoding import processors
from training.decoding.beam import beam_search
from training.decoding.strategies import Settings, compare, decode
from training.errors import UserError
from training.model.generation import KVCache

transformers = pytest.importorskip("transformers")

PROMPT_LEN, NEW = 4, 12  # variants' block_size is 24: room for both


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request, tmp_path_factory):
    """(our model, the same weights as a transformers model)."""
    from training.model.export import export_hf

    model = variant_model(arch=request.param)
    out = export_hf(model, tmp_path_factory.mktemp(request.param) / "m")
    return model, transformers.AutoModelForCausalLM.from_pretrained(out).eval()


def prompt_ids(seed: int = 1) -> torch.Tensor:
    return randint((1, PROMPT_LEN), seed=seed)


def hf_generate(hf, prompt: torch.Tensor, **kw):
    return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW, **kw)


# ----------------------------------------------------------------------------- processors


def random_logits(seed: int, rows: int = 4, vocab: int = 100, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed))


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # -inf (a removed token) must match exactly; everything else to 1e-5.
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_processors_equal_transformers(seed):
    from transformers import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    ids = torch.randint(0, 100, (4, 30), generator=torch.Generator().manual_seed(seed))  # repeats included
    for scale in (0.5, 3.0, 12.0):  # flat to very peaked
        logits = random_logits(seed, scale=scale)
        for t in (0.3, 1.0, 2.5):
            assert_same(processors.temperature(logits, t), TemperatureLogitsWarper(t)(ids, logits.clone()))
        for k in (1, 5, 50, 200):
            for keep in (1, 3):
                assert_same(processors.top_k(logits, k, keep), TopKLogitsWarper(k, min_tokens_to_keep=keep)(ids, logits))
        for p in (0.05, 0.5, 0.9, 1.0):
            for keep in (1, 3):
                assert_same(processors.top_p(logits, p, keep), TopPLogitsWarper(p, min_tokens_to_keep=keep)(ids, logits))
        for p in (0.0, 0.05, 0.3, 1.0):
            for keep in (1, 3):
                assert_same(processors.min_p(logits, p, keep), MinPLogitsWarper(p, min_tokens_to_keep=keep)(ids, logits))
        for penalty in (0.7, 1.0, 1.3, 2.0):
            assert_same(processors.repetition_penalty(logits, ids, penalty),
                        RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone()))


def test_filters_remove_with_minus_infinity_and_keep_the_best():
    logits = random_logits(5, scale=12.0)
    best = logits.argmax(-1, keepdim=True)
    for out in (processors.top_k(logits, 1), processors.top_p(logits, 0.01), processors.min_p(logits, 1.0)):
        assert torch.isneginf(out).any()
        assert torch.equal(out.gather(-1, best), logits.gather(-1, best))
        assert torch.equal(out.argmax(-1, keepdim=True), best)


PENALTY_PAIRS = ((0.5, 0.0), (0.0, 0.7), (1.5, -0.4), (-2.0, 2.0))  # (presence, frequency)


def test_presence_and_frequency_penalties_follow_the_openai_definition():
    """mu[j] - c[j] * frequency - (c[j] > 0) * presence, c[j] = times j was generated so far."""
    logits = random_logits(7)
    output = torch.randint(0, 20, (4, 15), generator=torch.Generator().manual_seed(2))  # many repeats
    for presence, frequency in PENALTY_PAIRS:
        expected = logits.clone()
        for row, tokens in enumerate(output.tolist()):
            for token, c in Counter(tokens).items():
                expected[row, token] -= c * frequency + presence
        assert_same(processors.presence_frequency_penalty(logits, output, presence, frequency), expected)


@pytest.mark.slow  # importing vLLM takes seconds
def test_presence_and_frequency_penalties_equal_vllm():
    vllm_utils = pytest.importorskip("vllm.model_executor.layers.utils")
    logits = random_logits(7)
    prompt = torch.randint(0, 100, (4, 6), generator=torch.Generator().manual_seed(1))
    output = torch.randint(0, 20, (4, 15), generator=torch.Generator().manual_seed(2))  # many repeats
    for presence, frequency in PENALTY_PAIRS:
        theirs = vllm_utils.apply_penalties(logits.clone(), prompt, output, torch.full((4,), presence),
                                            torch.full((4,), frequency), torch.ones(4))
        assert_same(processors.presence_frequency_penalty(logits, output, presence, frequency), theirs)


def test_processor_examples_hold():
    """The worked examples in the docstrings are doctests."""
    result = doctest.testmod(processors, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


# ----------------------------------------------------------------------------- greedy and sampling


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_equals_transformers(pair, penalty):
    model, hf = pair
    for seed in (1, 2, 3):
        prompt = prompt_ids(seed)
        theirs = hf_generate(hf, prompt, do_sample=False, repetition_penalty=penalty)
        ours = decode(model, prompt[0], Settings("greedy", repetition_penalty=penalty), max_new_tokens=NEW)
        assert ours.tokens == theirs[0, PROMPT_LEN:].tolist()
        if penalty == 1.0:  # the plain greedy loop of Transformer.generate agrees too
            assert ours.tokens == model.generate(prompt, NEW, temperature=0)[0, PROMPT_LEN:].tolist()


SAMPLERS = [
    Settings("sample", seed=3),
    Settings("sample", temperature=0.7, top_k=10, seed=4),
    Settings("sample", temperature=1.7, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.3, seed=5),
    Settings("sample", temperature=2.5, min_p=0.02, seed=7),
    Settings("sample", temperature=3.0, top_p=0.95, seed=11),
]


@pytest.mark.parametrize("settings", SAMPLERS, ids=lambda s: f"seed{s.seed}")
def test_sampling_draws_what_transformers_draws_with_the_same_seed(pair, settings):
    """Same processed distribution and the same multinomial draw from the same seed."""
    model, hf = pair
    prompt = prompt_ids()
    torch.manual_seed(settings.seed)  # HF samples from the global generator
    theirs = hf_generate(hf, prompt, do_sample=True, temperature=settings.temperature,
                         top_k=settings.top_k or 0, top_p=settings.top_p or 1.0, min_p=settings.min_p,
                         repetition_penalty=settings.repetition_penalty)
    assert decode(model, prompt[0], settings, max_new_tokens=NEW).tokens == theirs[0, PROMPT_LEN:].tolist()


def test_sampling_is_repeatable_and_the_seed_matters():
    model = variant_model(arch="llama")
    hot = Settings("sample", temperature=2.0, seed=0)
    first = decode(model, [1, 2, 3], hot, max_new_tokens=NEW).tokens
    assert decode(model, [1, 2, 3], hot, max_new_tokens=NEW).tokens == first
    others = {tuple(decode(model, [1, 2, 3], Settings("sample", temperature=2.0, seed=s), max_new_tokens=NEW).tokens)
              for s in (1, 2, 3)}
    assert others != {tuple(first)}


def test_compare_runs_each_strategy_as_alone():
    """Batched side by side (rows leaving at EOS) = each strategy decoded on its own."""
    model = variant_model(arch="gpt2")
    strategies = {"greedy": Settings("greedy"), "hot": Settings("sample", temperature=1.5, seed=2),
                  "top_k": Settings("sample", top_k=3, seed=9), "penalised": Settings("greedy", frequency_penalty=1.0)}
    alone = {name: decode(model, [5, 6, 7], s, max_new_tokens=NEW).tokens for name, s in strategies.items()}
    eos = alone["hot"][3]  # ends "hot" early (at the latest at its 4th token), the others maybe not
    together = compare(model, [5, 6, 7], strategies, max_new_tokens=NEW, eos_token_id=eos)
    for name, s in strategies.items():
        single = decode(model, [5, 6, 7], s, max_new_tokens=NEW, eos_token_id=eos)
        assert together[name].tokens == single.tokens
        assert together[name].stopped_at_eos == (eos in single.tokens)
    assert together["hot"].stopped_at_eos and len(together["hot"].tokens) <= 4


def test_trace_records_every_processor_and_the_chosen_token():
    model = variant_model(arch="llama")
    settings = Settings("sample", temperature=1.3, top_k=12, top_p=0.8, min_p=0.1, repetition_penalty=1.2,
                        presence_penalty=0.5, frequency_penalty=0.3, seed=1)
    out = decode(model, [3, 1, 4], settings, max_new_tokens=NEW)
    assert len(out.steps) == len(out.tokens) == NEW
    for step, token in zip(out.steps, out.tokens, strict=True):
        assert step.token == token
        assert [s.name for s in step.stages] == ["raw", "repetition_penalty", "presence_frequency_penalty",
                                                 "temperature", "top_k", "top_p", "min_p"]
        for stage in step.stages:
            probs = [p for _, p in stage.distribution.top]
            assert 0 < len(probs) <= 20 and sum(probs) <= 1 + 1e-6
            assert probs == sorted(probs, reverse=True)
            assert 0 <= stage.distribution.entropy_bits <= math.log2(model.config.vocab_size) + 1e-6
        final = step.stages[-1]
        assert token in [t for t, _ in final.distribution.top]  # only survivors can be drawn
        assert final.chosen_prob == pytest.approx(dict(final.distribution.top)[token])
        assert len(step.stages[4].distribution.top) <= 12  # top_k removed the rest
        # Filters never make the distribution more uncertain than top-k left it.
        assert step.stages[-1].distribution.entropy_bits <= step.stages[4].distribution.entropy_bits + 1e-6


def test_greedy_trace_picks_the_top_token():
    out = decode(variant_model(arch="gpt2"), [9, 8], Settings("greedy", temperature=5.0), max_new_tokens=6)
    for step in out.steps:
        assert [s.name for s in step.stages] == ["raw"]  # warpers cannot move the argmax: skipped
        assert step.stages[0].distribution.top[0][0] == step.token


# ----------------------------------------------------------------------------- beam search

PROMPT_SEEDS = (1, 3)
LENGTH_PENALTIES = (1.0, 0.0, 2.0, -1.0)
EARLY_STOPPING = (False, True, "never")


def crafted_eos(model, prompt: torch.Tensor, k: int) -> int:
    """An EOS token the search is sure to hit: the commonest token among the beams it keeps at
    steps 2-5 without EOS (one it does not keep at step 1, so the first step is unchanged).
    With it as EOS, a top-k extension ends early: hypotheses of different lengths compete."""
    nodes = beam_search(model, prompt, num_beams=k, max_new_tokens=NEW).nodes
    first = {n.token for n in nodes if n.step == 1 and n.status == "kept"}
    kept = Counter(n.token for n in nodes if 2 <= n.step <= 5 and n.status == "kept" and n.token not in first)
    return kept.most_common(1)[0][0]


def hf_beams(hf, prompt, k, lp, es, eos, n_return):
    out = hf_generate(hf, prompt, do_sample=False, num_beams=k, num_return_sequences=n_return, length_penalty=lp,
                      early_stopping=es, eos_token_id=eos, pad_token_id=0 if eos is None else eos,
                      output_scores=True, return_dict_in_generate=True)
    lengths = (out.beam_indices != -1).sum(-1).tolist()  # generated tokens of each hypothesis
    return [(out.sequences[i, PROMPT_LEN:PROMPT_LEN + n].tolist(), out.sequences_scores[i].item())
            for i, n in enumerate(lengths)]


def assert_beams_equal(ours, theirs):
    assert [b.tokens for b in ours.beams] == [t for t, _ in theirs]
    # 1e-5, or float32 rounding of large scores (length_penalty < 0 multiplies by the length).
    torch.testing.assert_close(torch.tensor([b.score for b in ours.beams]), torch.tensor([s for _, s in theirs]),
                               atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
@pytest.mark.parametrize("seed, with_eos", [(1, True), (3, True), (1, False)], ids=["eos-a", "eos-b", "no-eos"])
def test_beam_search_equals_transformers(pair, k, seed, with_eos):
    model, hf = pair
    prompt = prompt_ids(seed)
    eos = crafted_eos(model, prompt[0], k) if with_eos else None
    outcomes, ended_early = set(), False
    for lp in LENGTH_PENALTIES:
        for es in EARLY_STOPPING:
            ours = beam_search(model, prompt[0], num_beams=k, max_new_tokens=NEW, length_penalty=lp,
                               early_stopping=es, eos_token_id=eos, num_return_sequences=k)
            assert_beams_equal(ours, hf_beams(hf, prompt, k, lp, es, eos, k))
            outcomes.add(tuple((tuple(b.tokens), round(b.score, 5)) for b in ours.beams))
            # EOS was hit: a hypothesis ended before max_new_tokens (returned or outscored later).
            ended_early |= any(n.token == eos and n.status == "finished" for n in ours.nodes)
    assert len(outcomes) >= 3  # the settings made a difference: the comparison had teeth
    assert ended_early == (eos is not None)


def test_beam_search_distinguishes_early_stopping_modes(pair):
    """At least one crafted case where True, False and "never" do not all agree."""
    model, _ = pair
    differs = False
    for seed in PROMPT_SEEDS:
        eos = crafted_eos(model, prompt_ids(seed)[0], 4)
        for lp in LENGTH_PENALTIES:
            results = {tuple(tuple(b.tokens) for b in beam_search(model, prompt_ids(seed)[0], num_beams=4,
                                                                  max_new_tokens=NEW, length_penalty=lp,
                                                                  early_stopping=es, eos_token_id=eos,
                                                                  num_return_sequences=4).beams)
                       for es in EARLY_STOPPING}
            differs |= len(results) > 1
    assert differs


def test_beam_search_returns_the_best_few(pair):
    model, hf = pair
    eos = crafted_eos(model, prompt_ids()[0], 5)
    ours = beam_search(model, prompt_ids()[0], num_beams=5, max_new_tokens=NEW, eos_token_id=eos,
                       num_return_sequences=2)
    assert len(ours.beams) == 2
    assert_beams_equal(ours, hf_beams(hf, prompt_ids(), 5, 1.0, False, eos, 2))


def test_width_one_is_greedy_with_a_score(pair):
    """HF runs num_beams=1 as greedy (no sequences_scores): check against greedy's log-probs."""
    model, hf = pair
    prompt = prompt_ids()
    out = hf_generate(hf, prompt, do_sample=False, output_scores=True, return_dict_in_generate=True)
    tokens = out.sequences[0, PROMPT_LEN:]
    logprobs = torch.stack([s[0].log_softmax(-1)[t] for s, t in zip(out.scores, tokens, strict=True)])
    for lp in (1.0, 0.5):
        ours = beam_search(model, prompt[0], num_beams=1, max_new_tokens=NEW, length_penalty=lp)
        assert ours.beams[0].tokens == tokens.tolist()
        assert ours.beams[0].score == pytest.approx(logprobs.sum().item() / NEW ** lp, abs=1e-5)


def test_beam_tree_is_consistent():
    model, k = variant_model(arch="gpt2"), 4
    eos = crafted_eos(model, prompt_ids(3)[0], k)
    search = beam_search(model, prompt_ids(3)[0], num_beams=k, max_new_tokens=NEW, eos_token_id=eos,
                         num_return_sequences=k)
    nodes = search.nodes
    assert nodes[0].status == "root" and nodes[0].next is not None
    assert {n.status for n in nodes[1:]} == {"kept", "pruned", "finished"}
    for n in nodes[1:]:
        parent = nodes[n.parent]
        assert parent.status in ("root", "kept") and n.step == parent.step + 1
        assert n.cumulative == pytest.approx(parent.cumulative + n.logprob, abs=1e-5)
        ended = n.token == eos or n.step == NEW
        assert (n.score is not None) == ended and (n.status != "kept" or not ended)
    for parent in {n.parent for n in nodes[1:]}:  # every expanded node carries its distribution
        probs = [p for _, p in nodes[parent].next.top]
        assert len(probs) == 20 and sum(probs) <= 1 + 1e-6
    steps = max(n.step for n in nodes)
    for step in range(1, steps + 1):
        ranked = [n for n in nodes if n.step == step]
        assert len(ranked) == 2 * k  # every extension the search ranked, pruned ones included
        assert sum(n.status == "kept" for n in ranked) in (0, k)
    for beam in search.beams:
        path = search.path(beam.node)
        assert path[0] == 0 and [nodes[i].token for i in path[1:]] == beam.tokens
        assert nodes[beam.node].status == "finished" and nodes[beam.node].score == beam.score
        assert beam.logprob == pytest.approx(sum(nodes[i].logprob for i in path), abs=1e-5)
    assert search.chosen == search.path(search.beams[0].node)
    assert [b.score for b in search.beams] == sorted((b.score for b in search.beams), reverse=True)


def test_kv_cache_reorder_copies_rows():
    model = variant_model(arch="llama")
    cache = KVCache(model.config, 1)
    idx = randint((1, 6))
    with torch.no_grad():
        model(idx, kv_cache=cache)
        cache.reorder(torch.tensor([0, 0, 0]))  # one row grows to three
        grown = model(randint((3, 1), seed=4), kv_cache=cache, start_pos=6)[0]
        alone = [model(torch.cat([idx, randint((3, 1), seed=4)[i:i + 1]], 1))[0][:, -1:] for i in range(3)]
    torch.testing.assert_close(grown, torch.cat(alone), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize("kwargs, field", [
    ({"strategy": "nucleus"}, "strategy"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"min_p": 2.0}, "min_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"presence_penalty": 3.0}, "presence_penalty"),
    ({"frequency_penalty": -2.5}, "frequency_penalty"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(UserError, match=field):
        Settings(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"num_beams": 0}, "num_beams"),
    ({"num_beams": 9}, "num_beams"),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"num_return_sequences": 5}, "num_return_sequences"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"eos_token_id": 64}, "eos_token_id"),
])
def test_bad_beam_settings_name_the_field(kwargs, field):
    with pytest.raises(UserError, match=field):
        beam_search(variant_model(arch="gpt2"), [1, 2], **kwargs)


def test_prompt_must_fit_the_context():
    model = variant_model(arch="gpt2")  # block_size 24
    for run in (lambda p: decode(model, p), lambda p: beam_search(model, p)):
        with pytest.raises(UserError, match="block_size"):
            run(list(range(24)))
        with pytest.raises(UserError, match="prompt"):
            run([])
        with pytest.raises(UserError, match="vocab_size"):
            run([64])
    assert len(decode(model, list(range(20)), max_new_tokens=32).tokens) == 4  # stops when the context is full
    assert len(beam_search(model, list(range(20)), max_new_tokens=32).beams[0].tokens) == 4
