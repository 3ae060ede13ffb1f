"""training/posttrain/answers.py's batching: a reply's room never depends on the other prompts in
its batch. The model is a stub whose generate() writes "a" until max_new_tokens: what is under
test is how many tokens each prompt is given, not what a model says."""

import pytest
import torch
from tinytok import byte_bpe
from transformers import PretrainedConfig

from training.posttrain import answers, chat


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE with the SFT chat template."""
    fast = byte_bpe(["Mia lost her kite at the park and Tom helped her find it."] * 4)
    return chat.prepare_tokenizer(fast, need_markers=True)


class WritesA(torch.nn.Module):
    """generate() appends the token "a" max_new_tokens times: the reply's length is its room."""

    def __init__(self, tokenizer, n_positions: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = PretrainedConfig(n_positions=n_positions)
        self.a = tokenizer.convert_tokens_to_ids("a")

    def generate(self, *, input_ids, attention_mask, max_new_tokens, **kw):
        assert input_ids.shape[1] + max_new_tokens <= self.config.n_positions
        return torch.cat([input_ids, torch.full((input_ids.shape[0], max_new_tokens), self.a)], dim=1)


def ex(words: int) -> dict:
    return {"instruction": "Summarize.", "input": " ".join(["park"] * words), "output": "-", "task": "summary"}


def test_a_long_prompt_does_not_cut_the_replies_batched_with_it(tokenizer):
    model = WritesA(tokenizer, n_positions=128)
    short, long_ = ex(3), ex(60)  # about 60 and 115 tokens under the chat template
    alone = answers.answer(model, tokenizer, [short], max_new_tokens=16)[0]
    assert alone == "a" * 16
    long_room = 128 - len(answers._prompt_ids(tokenizer, long_, None))
    assert 0 < long_room < 16  # the long prompt leaves less than max_new_tokens
    replies = answers.answer(model, tokenizer, [short, long_, short], max_new_tokens=16)
    assert replies == [alone, "a" * long_room, alone]


def test_batches_group_by_room_and_keep_batch_size():
    prompts = [[0] * n for n in (10, 50, 20, 100, 120, 100, 30)]
    batches = answers._batches(prompts, batch_size=2, max_new_tokens=32, limit=128)
    assert sorted(i for b in batches for i in b) == list(range(len(prompts)))
    assert batches == [[0, 2], [6, 1], [3, 5], [4]]  # lengths 10,20 | 30,50 (room 32) | 100,100 | 120
    assert answers._batches(prompts, batch_size=16, max_new_tokens=32, limit=None) == [[0, 2, 6, 1, 3, 5, 4]]


def test_a_prompt_that_fills_the_context_gets_the_empty_reply(tokenizer):
    model = WritesA(tokenizer, n_positions=64)  # ex(1) is about 57 tokens, ex(40) 96
    assert answers.answer(model, tokenizer, [ex(40), ex(1)], max_new_tokens=4) == ["", "aaaa"]
