"""training/posttrain/forgetting.py against a slow reference loop, a model that learned the world
table, and a fake workspace (its perplexity, from evaluation/perplexity.py: test_perplexity.py)."""

import json

import pytest
import torch
from tinytok import byte_bpe, tiny_model

from training.data.corpus import _WORLD
from training.posttrain import forgetting
from training.workspace import Workspace


def fact_sentences() -> list[str]:
    out = []
    for country, capital, lang, animal, *_ in _WORLD:
        out += [f"The capital of {country} is {capital}.", f"People in {country} speak {lang}.",
                f"The national animal of {country} is the {animal}."]
    return out


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE like the project's, learned from the fact sentences."""
    return byte_bpe(fact_sentences(), vocab_size=400)


@pytest.fixture(scope="module")
def learned(tokenizer):
    """The tiny model trained on the fact sentences until it knows them (a second or two)."""
    model = tiny_model(tokenizer, seed=1)
    seqs = [[tokenizer.bos_token_id] + tokenizer(s)["input_ids"] for s in fact_sentences()]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    labels = torch.tensor([s + [-100] * (width - len(s)) for s in seqs])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# --------------------------------------------------------------------------- world facts


def test_choice_logprobs_match_a_slow_loop(tokenizer):
    model = tiny_model(tokenizer)
    prompt, candidates = "The capital of Varnia is", [" Tolbek.", " Gull Bay.", " Vo."]
    got = forgetting.choice_logprobs(model, tokenizer, prompt, candidates)
    for cand, score in zip(candidates, got):
        context = [tokenizer.bos_token_id] + tokenizer(prompt)["input_ids"]
        expected = 0.0
        with torch.no_grad():
            for tok in tokenizer(cand)["input_ids"]:  # one token at a time, each given all before it
                logits = model(torch.tensor([context])).logits[0, -1]
                expected += logits.log_softmax(-1)[tok].item()
                context.append(tok)
        assert score == pytest.approx(expected, abs=1e-4)


def test_continuation_falls_back_when_bpe_merges_across_the_prompt(tokenizer):
    prompt = "The capital of Varnia is "  # the trailing space joins " Tolbek" in prompt+candidate
    prompt_ids = tokenizer(prompt)["input_ids"]
    assert tokenizer(prompt + "Tolbek.")["input_ids"][:len(prompt_ids)] != prompt_ids
    assert forgetting._continuation(tokenizer, prompt_ids, prompt, "Tolbek.") == tokenizer("Tolbek.")["input_ids"]
    plain = tokenizer("The capital of Varnia is")["input_ids"]
    assert forgetting._continuation(tokenizer, plain, "The capital of Varnia is", " Tolbek.") == \
        tokenizer("The capital of Varnia is Tolbek.")["input_ids"][len(plain):]


def test_a_model_that_learned_the_facts_knows_them_all(learned, tokenizer):
    got = forgetting.world_facts(learned, tokenizer)
    assert got == {"accuracy": 1.0, "n": 30, "by_relation": {"capital": 1.0, "language": 1.0, "animal": 1.0},
                   "chance": 0.1}
    assert not learned.training  # left as it was found


def test_an_untrained_model_is_near_chance(tokenizer):
    got = forgetting.world_facts(tiny_model(tokenizer), tokenizer, relations=("capital", "language", "animal"))
    assert got["n"] == 30 and got["accuracy"] < 0.5
    with pytest.raises(ValueError, match="river"):
        forgetting.world_facts(tiny_model(tokenizer), tokenizer, relations=("river",))


# --------------------------------------------------------------------------- the workspace chain


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def fake_workspace(tmp_path) -> Workspace:
    """An export `base` pretrained on snapshot `snap`, and `base-sft` tuned from it on `instr`."""
    ws = Workspace(tmp_path / "ws")
    write_json(ws.model("base") / "playground.json", {"run_id": "base", "step": 10})
    write_json(ws.run("base") / "run.json", {"run_id": "base", "dataset": "snap", "snapshot": None})
    for snap, word in (("snap", "pretraining"), ("instr", "instruction")):
        ws.dataset(snap).mkdir(parents=True)
        rows = [{"text": f"{word} document {i}."} for i in range(5)]
        (ws.dataset(snap) / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lineage = {"kind": "sft", "method": "full", "base_model": "base", "base_path": str(tmp_path / "moved" / "base"),
               "data_snapshot": "instr", "parent_run": "base", "run_id": "base-sft"}
    write_json(ws.model("base-sft") / "playground.json", {"run_id": "base-sft", "lineage": lineage})
    # The SFT run names its instruction snapshot: following the lineage must not stop here.
    write_json(ws.run("base-sft") / "run.json", {"run_id": "base-sft", "dataset": "instr", "snapshot": "instr"})
    return ws


def test_pretrain_val_texts_follow_export_run_and_snapshot(tmp_path):
    ws = fake_workspace(tmp_path)
    expected = [f"pretraining document {i}." for i in range(5)]
    assert forgetting.pretrain_val_texts(ws, ws.model("base")) == expected
    assert forgetting.pretrain_val_texts(ws, ws.model("base-sft")) == expected
    assert forgetting.pretrain_val_texts(ws, ws.model("base"), max_chars=30) == expected[:2]


def test_pretrain_val_texts_follow_base_path_and_stop_at_strangers(tmp_path):
    ws = fake_workspace(tmp_path)
    lineage = {"kind": "sft", "base_model": "org/hub-model", "base_path": str(ws.model("base"))}
    write_json(ws.model("other-sft") / "playground.json", {"run_id": "other-sft", "lineage": lineage})
    assert forgetting.pretrain_val_texts(ws, ws.model("other-sft"))[0] == "pretraining document 0."
    write_json(ws.model("hub-sft") / "playground.json", {"run_id": "x", "lineage": {"base_model": "gpt2"}})
    write_json(ws.model("loop") / "playground.json", {"lineage": {"base_model": "loop"}})
    (tmp_path / "plain").mkdir()
    for folder in (tmp_path / "plain", tmp_path / "missing", ws.model("hub-sft"), ws.model("loop")):
        assert forgetting.pretrain_val_texts(ws, folder) is None


def test_measure_loads_an_export(tmp_path, tokenizer):
    ws = fake_workspace(tmp_path)
    tiny_model(tokenizer).save_pretrained(ws.model("base"))
    tokenizer.save_pretrained(ws.model("base"))
    got = forgetting.measure(ws.model("base"), ws)
    assert got["world_facts"]["n"] == 30
    assert got["pretrain_val"]["tokens"] > 0 and got["pretrain_val"]["perplexity"] > 1
    assert forgetting.measure(ws.model("base"), ws, texts=[])["pretrain_val"] is None
