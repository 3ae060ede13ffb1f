"""The measurements alignment is judged by, on tiny random models: KL(policy || reference) over
the full vocabulary, the log-ratio pair preference, and the reward model's pair accuracy."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from training.posttrain import align_eval, kl

VOCAB = 23


def _model(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                   tie_word_embeddings=False)).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(20.0)  # peaked next-token distributions, as a trained model's are, not near-uniform
    return m


# (token ids, where the reply starts): two sequences of different lengths, so padding is exercised.
SEQS = [([1, 5, 7, 2, 9, 11, 3], 4), ([4, 6, 2, 8, 10], 2)]


def test_kl_of_a_policy_against_itself_is_zero():
    m = _model(0)
    assert kl.measure(m, m, SEQS, pad_id=0) == pytest.approx(0.0, abs=1e-7)


def test_kl_matches_a_hand_computation_over_the_whole_vocabulary():
    p_model, q_model = _model(0), _model(1)
    expected, n = 0.0, 0
    with torch.no_grad():
        for ids, start in SEQS:
            x = torch.tensor([ids])
            p = torch.softmax(p_model(x).logits[0].double(), -1)
            q = torch.softmax(q_model(x).logits[0].double(), -1)
            for t in range(start - 1, len(ids) - 1):  # positions whose next token is a reply token
                expected += sum(float(p[t, v]) * math.log(float(p[t, v]) / float(q[t, v])) for v in range(VOCAB))
                n += 1
    got = kl.measure(p_model, q_model, SEQS, pad_id=0, batch_size=2)
    assert got > 0.0 and got == pytest.approx(expected / n, rel=1e-4)
    assert kl.measure(p_model, q_model, SEQS, pad_id=0, batch_size=1) == pytest.approx(got, rel=1e-5)  # no padding


def test_kl_is_not_symmetric():
    p, q = _model(0), _model(2)
    assert kl.measure(p, q, SEQS, pad_id=0) != pytest.approx(kl.measure(q, p, SEQS, pad_id=0), rel=1e-3)


def test_reply_logps_sum_the_reply_tokens_only():
    m = _model(3)
    ids, start = SEQS[0]
    with torch.no_grad():
        logp = torch.log_softmax(m(torch.tensor([ids])).logits[0], -1)
    expected = sum(float(logp[t, ids[t + 1]]) for t in range(start - 1, len(ids) - 1))
    got = align_eval.reply_logps(m, SEQS, pad_id=0)
    assert got.shape == (2,) and float(got[0]) == pytest.approx(expected, rel=1e-5)


class _Tok:
    """The bits of a tokenizer align_eval needs: a chat template of one token per word."""

    pad_token_id = 0

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, return_dict=True):
        ids = [1]
        for m in messages:
            ids += [2 if m["role"] == "user" else 3] + [4 + (hash(w) % 15) for w in m["content"].split()]
        if add_generation_prompt:
            ids += [3]
        return {"input_ids": ids}


def _rows():
    user = [{"role": "user", "content": "what is two plus two"}]
    return [{"prompt": user, "chosen": [{"role": "assistant", "content": "four"}],
             "rejected": [{"role": "assistant", "content": "five and more words"}]}]


def test_a_policy_equal_to_its_reference_has_margin_zero():
    m = _model(4)
    got = align_eval.pair_preference(m, m, _Tok(), _rows() * 3)
    assert got["n"] == 3 and got["margin"] == pytest.approx(0.0, abs=1e-6) and got["accuracy"] == 0.0


def test_reward_accuracy_reads_the_score_head():
    torch.manual_seed(5)
    rm = GPT2ForSequenceClassification(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                                  num_labels=1, pad_token_id=0)).eval()
    got = align_eval.reward_accuracy(rm, _Tok(), _rows())
    chosen, rejected, _ = align_eval._pairs(_Tok(), _rows())
    with torch.no_grad():
        rc = rm(torch.tensor([chosen[0][0]])).logits[0, 0]
        rr = rm(torch.tensor([rejected[0][0]])).logits[0, 0]
    assert got["n"] == 1 and got["margin"] == pytest.approx(float(rc - rr), rel=1e-4, abs=1e-6)
    assert got["accuracy"] == float(rc > rr)
