"""SFT without Ray: the chat template's loss mask, TRL's labels, and the checks `sft.plan`
makes before any worker starts (each a one-line UserError, with nothing written)."""

from __future__ import annotations

import json

import pytest
import torch

from training.config import load_config
from training.errors import UserError
from training.model.export import export_hf
from training.model.transformer import ModelConfig, Transformer
from training.posttrain import chat, instructions, sft_data, sft_setup
from training.posttrain.config import SFTConfig
from training.tokenizers.tokenizer import CHAT_TEMPLATE, IM_END, train_tokenizer
from training.workspace import Workspace


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from training.data.corpus import generate_documents

    return train_tokenizer(generate_documents(200_000, seed=0), 600, tmp_path_factory.mktemp("tok") / "bpe")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tok_dir):
    """A workspace holding one tiny exported GPT-2 ("tiny") of ours, with our tokenizer."""
    ws = Workspace.resolve(tmp_path_factory.mktemp("ws"))
    torch.manual_seed(0)
    cfg = ModelConfig(arch="gpt2", vocab_size=600, block_size=128, n_layer=2, n_head=2, n_embd=32)
    export_hf(Transformer(cfg), ws.model("tiny"), tokenizer_dir=tok_dir)
    return ws


def config(*overrides: str) -> SFTConfig:
    return load_config(None, ["base.model=tiny", "data.n_train=40", "data.n_val=8", "data.n_test=8",
                              "tracking.mlflow=false", *overrides], schema=SFTConfig)


def _tok(ws):
    from transformers import AutoTokenizer

    return chat.prepare_tokenizer(AutoTokenizer.from_pretrained(ws.model("tiny")), need_markers=True)


def test_assistant_mask_is_the_reply_and_its_end_token_only(ws):
    tok = _tok(ws)
    assert tok.chat_template == CHAT_TEMPLATE and chat.stop_token(tok) == IM_END
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
                {"role": "assistant", "content": "2 plus 3 is 5."}]
    out = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "2 plus 3 is 5." + IM_END
    assert masked[-1] == tok.convert_tokens_to_ids(IM_END)  # every reply ends with the token generation stops at


def test_the_reply_after_the_prompt_is_what_the_assistant_wrote(ws):
    """Preference training (TRL's DPO, our pair scores and KL) takes the reply as prompt + reply
    minus the prompt: exactly the tokens SFT trained on, no newline after <|im_end|>, which the
    SFT model never learned (about -14 nats) and generation never writes."""
    tok = _tok(ws)
    messages = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "5."}]
    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, return_dict=True)["input_ids"]
    out = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    assert out["input_ids"][:len(prompt)] == prompt
    assert out["input_ids"][len(prompt):] == [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]


def test_our_previous_template_is_upgraded_and_a_users_own_is_kept(ws):
    """Models exported before carry our template with a newline after the last reply too."""
    from tinytok import byte_bpe

    for tok in (_tok(ws), byte_bpe(["a few words of text"])):  # ChatML tokens; EOS only (chatml_for's variant)
        want = chat.chatml_for(tok)
        tok.chat_template = want.replace(chat._LAST_NEWLINE, "{{- '\\n' }}")
        assert tok.chat_template != want
        assert chat.prepare_tokenizer(tok, need_markers=True).chat_template == want
        custom = want.replace("assistant\\n", "assistant:\\n")  # a user's own template: kept
        tok.chat_template = custom
        assert chat.prepare_tokenizer(tok, need_markers=True).chat_template == custom


def test_trl_labels_cover_the_answer_tokens_only(ws):
    """What SFTTrainer actually trains on: labels are -100 everywhere but the reply (+ <|im_end|>)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    tok = _tok(ws)
    cfg = config()
    ex = {"instruction": "What is the capital of Varnia?", "input": "", "output": "The capital of Varnia is Tolbek."}
    for shape in ("messages", "alpaca"):
        cfg = config(f"data.shape={shape}")
        paths = {"run_dir": str(ws.root / "runs" / "x"), "stop_token": IM_END}
        args = sft_setup.trl_args(cfg, paths, "cpu", max_len=128, has_eval=False)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(ws.model("tiny")), args=args,
                             train_dataset=Dataset.from_list(sft_data.to_rows([ex], shape)), processing_class=tok)
        batch = trainer.data_collator([trainer.train_dataset[0]])
        labels = batch["labels"][0]
        answer = [int(i) for i in labels if i != -100]
        assert tok.decode(answer).strip() == "The capital of Varnia is Tolbek." + IM_END, shape
        assert (labels != -100).sum() < len(labels) / 2  # the prompt is most of the row and is not trained on


def test_neftune_noises_the_input_embeddings_while_training_only(ws):
    """train.neftune_noise_alpha reaches the Trainer: what the first block reads differs from the
    embeddings (token + position) during a training step, and equals them again afterwards."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    ex = {"instruction": "What is the capital of Varnia?", "input": "", "output": "The capital of Varnia is Tolbek."}
    gaps = {}
    for alpha in (None, 5.0):
        noise = [f"train.neftune_noise_alpha={alpha}"] if alpha else []
        cfg = config("train.max_steps=1", "train.batch_size=2", "train.lr=1e-9", "train.warmup_steps=0", *noise)
        paths = {"run_dir": str(ws.root / "runs" / "neft"), "stop_token": IM_END}
        args = sft_setup.trl_args(cfg, paths, "cpu", max_len=128, has_eval=False)
        model = AutoModelForCausalLM.from_pretrained(ws.model("tiny"))
        rows = Dataset.from_list(sft_data.to_rows([ex] * 2, "messages"))
        trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=_tok(ws))
        ids, gap = [], []

        def remember_ids(module, args, kwargs, ids=ids):
            ids.append(kwargs.get("input_ids", args[0] if args else None))

        def first_block(module, args, kwargs, ids=ids, gap=gap, model=model):
            clean = model.transformer.wte(ids[-1]) + model.transformer.wpe(torch.arange(ids[-1].shape[1]))
            gap.append(((args[0] if args else kwargs["hidden_states"]) - clean).abs().max().item())

        model.transformer.register_forward_pre_hook(remember_ids, with_kwargs=True)
        model.transformer.h[0].register_forward_pre_hook(first_block, with_kwargs=True)
        trainer.train()
        with torch.no_grad():
            model.eval()(torch.tensor([[5, 6, 7]]))
        gaps[alpha] = gap
    assert args.neftune_noise_alpha == 5.0
    assert max(gaps[None]) < 1e-6, gaps                   # off: the block reads the embeddings
    assert gaps[5.0][0] > 1e-3 and gaps[5.0][-1] < 1e-6, gaps  # on: noise while training, none after


def test_zero_init_lora_leaves_logits_unchanged_at_step_0(ws):
    from transformers import AutoModelForCausalLM

    from training.posttrain import adapters

    base = AutoModelForCausalLM.from_pretrained(ws.model("tiny")).eval()
    x = torch.randint(0, 600, (2, 16))
    want = base(x).logits
    lora = adapters.apply(AutoModelForCausalLM.from_pretrained(ws.model("tiny")), "lora", config().lora).eval()
    assert torch.allclose(lora(x).logits, want, atol=1e-6)


def test_plan_refuses_bad_input_with_one_line_and_writes_nothing(ws, tmp_path):
    from training.posttrain import sft

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Hi", "input": "", "output": "Hello"}) + "\n"
                   + json.dumps({"instruction": "Hi again", "input": ""}) + "\n")
    cases = [
        (["lora.target_modules=[q_proj]"], "c_attn"),                  # names the layers it has
        (["lora.r=512"], "at most 32"),                               # rank larger than the layer
        ([f"data.sources=[{bad}]"], f"{bad}:2"),                      # file:line ... field
        (["base.model=./no/such/model"], "base.model"),
        ([f"base.tokenizer={ws.root / 'big-tok'}"], "embedding has 600 rows"),
        (["train.max_length=4096"], "context (128)"),
    ]
    from training.data.corpus import generate_documents
    from training.tokenizers.tokenizer import train_tokenizer as train

    train(generate_documents(100_000, seed=1), 900, ws.root / "big-tok")
    for overrides, needle in cases:
        before = sorted(p.name for p in ws.datasets.iterdir()) if ws.datasets.is_dir() else []
        with pytest.raises(UserError) as e:
            sft.plan(config(*overrides), ws, run_id="never", resume=False)
        msg = str(e.value)
        assert needle in msg and "\n" not in msg, (overrides, msg)
        assert not ws.run("never").exists()
        if "data.sources" in overrides[0]:
            assert (sorted(p.name for p in ws.datasets.iterdir()) if ws.datasets.is_dir() else []) == before
        if "target_modules" in overrides[0]:
            assert "output" not in msg and "field" not in msg


def test_plan_refuses_a_template_without_generation_markers(ws, tmp_path):
    import shutil

    from training.posttrain import sft

    own = tmp_path / "tok"
    shutil.copytree(ws.model("tiny"), own)
    conf = json.loads((own / "tokenizer_config.json").read_text())
    conf["chat_template"] = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    (own / "tokenizer_config.json").write_text(json.dumps(conf))
    with pytest.raises(UserError, match="generation"):
        sft.plan(config(f"base.tokenizer={own}"), ws, run_id="never", resume=False)
    # prompt/completion rows need no markers: the same tokenizer is accepted for them
    paths = sft.plan(config(f"base.tokenizer={own}", "data.shape=alpaca"), ws, run_id="never", resume=False)
    assert paths["train_rows"] > 0


def test_plan_records_snapshot_rows_and_heldout_prompts(ws):
    from training.posttrain import sft

    paths = sft.plan(config("train.eval_prompts=3"), ws, run_id="fine", resume=False)
    manifest = sft_data.manifest(ws, paths["snapshot"])
    assert manifest["kind"] == "instructions" and manifest["counts"]["train"] == 40
    assert paths["train_rows"] + paths["dropped_rows"] == 40 and paths["max_length"] == 128
    assert len(paths["eval_prompts"]) == 3
    assert all(e["template"].split(".")[0] in instructions.TASK_KINDS for e in paths["eval_prompts"])


# --------------------------------------------------------------------------- replay (training/posttrain/replay.py)


def _trl_labels(ws, rows, *, pretokenized: bool, shape: str = "messages") -> list[list[int]]:
    """The labels TRL's collator gives each row, with TRL's own row processing or with ours."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    replay_on = ["data.replay=0.5"] if pretokenized else []
    cfg = config(f"data.shape={shape}", *replay_on)
    args = sft_setup.trl_args(cfg, {"run_dir": str(ws.root / "runs" / "x"), "stop_token": IM_END}, "cpu",
                              max_len=128, has_eval=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(ws.model("tiny")), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=_tok(ws))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    return [[int(t) for t in row if t != -100] for row in batch["labels"]]


def test_replay_tokenizes_instructions_as_trl_does_and_trains_every_token_of_pretraining_text(ws, tmp_path):
    import shutil

    from training.posttrain import replay

    tok = _tok(ws)
    examples = [ex for ex in instructions.build(0, 20, 2, 2)["train"]  # rows that fit the tiny model's context
                if sft_setup.token_count(tok, sft_data.to_rows([ex], "messages")[0]) <= 100][:4]
    for shape in ("messages", "alpaca"):  # our masks = TRL's: the reply (and its end token) only
        rows = sft_data.to_rows(examples, shape)
        assert _trl_labels(ws, replay.tokenized(rows, tok), pretokenized=True) == \
            _trl_labels(ws, rows, pretokenized=False, shape=shape), shape

    # A base pretrained "here": export -> run.json -> the corpus snapshot it names.
    own = Workspace(tmp_path / "ws")
    shutil.copytree(ws.model("tiny"), own.model("pre"))
    (own.model("pre") / "playground.json").write_text(json.dumps({"run_id": "pre"}))
    own.run("pre").mkdir(parents=True)
    (own.run("pre") / "run.json").write_text(json.dumps({"run_id": "pre", "dataset": "corpus"}))
    docs = [f"Once upon a time, {name} lost a kite in the park and looked for it all day." for name in
            ("Mia", "Tom", "Leo", "Sam", "Ivy", "Zoe")]
    own.dataset("corpus").mkdir(parents=True)
    for split in ("train", "val"):
        (own.dataset("corpus") / f"{split}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    got = replay.pieces(own, own.model("pre"), tok, n=4, length=10, seed=0)
    assert len(got) == 4
    for piece in got:
        ids = piece["input_ids"]
        assert tok.convert_ids_to_tokens(ids[0]) == "<|endoftext|>" and len(ids) == 10 and piece["assistant_masks"] == [1] * 10
        assert any(d.startswith(tok.decode(ids[1:])) for d in docs)
    assert _trl_labels(ws, got, pretokenized=True) == [p["input_ids"] for p in got]  # every token trains

    train, val, n = replay.mix(sft_data.to_rows(examples, "messages"), sft_data.to_rows(examples[:2], "messages"),
                               config("data.replay=0.5", "data.replay_tokens=10"), own, own.model("pre"), tok)
    assert n == 2 and len(train) == 6 and len(val) == 2
    assert sum(r["assistant_masks"] == [1] * len(r["input_ids"]) for r in train) == 2  # the pieces, shuffled in
    assert all(0 in r["assistant_masks"] for r in val)  # val: instructions only

    from training.posttrain import sft

    # The replayed corpus is part of the tuned model's lineage (run.json, playground.json), beside its instructions.
    paths = sft.plan(config("base.model=pre", "data.replay=0.25"), own, run_id="replayed", resume=False)
    assert paths["replay_snapshot"] == "corpus" and not own.run("replayed").exists()
    assert sft_setup.lineage(config(), paths)["replay_snapshot"] == "corpus"
    assert "replay_snapshot" not in sft_setup.lineage(config(), paths | {"replay_snapshot": None})

    with pytest.raises(UserError, match="data.replay") as e:  # a base from elsewhere has no corpus to replay
        sft.plan(config("data.replay=0.25"), ws, run_id="never", resume=False)
    assert "\n" not in str(e.value) and not ws.run("never").exists()
