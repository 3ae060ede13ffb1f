"""DPO on a single pair raises that pair's margin: TRL's DPOTrainer on a tiny random model, the
pair preference measured by our own align_eval against the frozen starting model. No Ray here
(tests/integration/test_align.py runs the methods through Ray Train)."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from training.posttrain import align_eval
from training.tokenizers.tokenizer import CHAT_TEMPLATE

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "what", "is", "two", "plus", "four", "five", "three", "the", "answer"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words; the chat tokens are added tokens
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_dpo_on_one_pair_raises_its_margin(tokenizer, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                        pad_token_id=tokenizer.pad_token_id))
    reference = copy.deepcopy(policy).eval()
    pair = {"prompt": [{"role": "user", "content": "what is two plus two"}],
            "chosen": [{"role": "assistant", "content": "four"}],
            "rejected": [{"role": "assistant", "content": "five"}]}
    before = align_eval.pair_preference(policy, reference, tokenizer, [pair])
    assert before["margin"] == pytest.approx(0.0, abs=1e-6)  # the policy is its reference

    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, max_steps=8, learning_rate=1e-2,
                     beta=0.1, loss_type=["sigmoid"], use_cpu=True, bf16=False, report_to="none",
                     disable_tqdm=True, save_strategy="no", logging_steps=1)
    trainer = DPOTrainer(model=policy, ref_model=copy.deepcopy(reference), args=args,
                         train_dataset=Dataset.from_list([pair] * 8), processing_class=tokenizer)
    trainer.train()
    after = align_eval.pair_preference(trainer.model, reference, tokenizer, [pair])
    assert after["margin"] > 0.5 and after["accuracy"] == 1.0
    logged = [h for h in trainer.state.log_history if "rewards/margins" in h]
    assert logged and logged[-1]["rewards/margins"] > logged[0]["rewards/margins"]  # TRL's view agrees
