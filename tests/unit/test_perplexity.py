"""evaluation/perplexity.py against transformers' own loss, a reference loop over windows, and, for
`served_perplexity`, a real HTTP server whose /v1/completions scores prompts with the same tiny model.

The server is a stub that stands in for vLLM, which the integration tests serve (tests/integration/
test_serve.py); a stub only because a unit test cannot start vLLM. It answers in vLLM's shape: the
prompt tokenized with the tokenizer's special tokens (none for ours), echoed with one log-probability
per token, null for the first.
"""

import copy
import math

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tinytok import byte_bpe, tiny_model
from ui_stub import start_stub

from benchmarks.serve_http import free_port
from evaluation.perplexity import perplexity, served_perplexity

SENTENCES = ["The capital of Varnia is Tolbek.", "People in Plonk speak Plonkish.", "The capital of Kalo is Sunport.",
             "The national animal of Ostria is the heron."]
TEXT = "The capital of Varnia is Tolbek. People in Plonk speak Plonkish."
ACCENTED = "Ostria's café serves crème brûlée."  # 38 bytes of UTF-8 in 34 characters
KEY = "stub-key"


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE like the project's, learned from a few sentences."""
    return byte_bpe(SENTENCES)


# --------------------------------------------------------------------------- in-process


def test_perplexity_of_one_window_is_transformers_loss(tokenizer):
    model = tiny_model(tokenizer)
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        ref = model(ids, labels=ids).loss.item()
    got = perplexity(model, tokenizer, [TEXT])
    assert got["tokens"] == ids.shape[1] - 1
    assert got["loss"] == pytest.approx(ref, abs=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(ref), rel=1e-6)
    assert got["bytes"] == len(TEXT) == 64
    assert got["bits_per_byte"] == pytest.approx(ref * (ids.shape[1] - 1) / (math.log(2) * 64), abs=1e-6)


def test_perplexity_weights_windows_by_tokens_and_separates_documents(tokenizer):
    model = tiny_model(tokenizer)
    texts = SENTENCES[:3]
    docs = [tokenizer(t)["input_ids"] for t in texts]
    stream = docs[0] + [tokenizer.eos_token_id] + docs[1] + [tokenizer.eos_token_id] + docs[2]
    assert len(docs[0]) + 1 < 25 < len(docs[0]) + 1 + len(docs[1])  # the cut falls inside the second document
    stream = stream[:25]  # max_tokens: 3 windows of 8 and one of 1 (nothing to predict)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(stream), 8):
            w = torch.tensor([stream[i:i + 8]])
            if w.shape[1] > 1:
                total += model(w, labels=w).loss.item() * (w.shape[1] - 1)
                count += w.shape[1] - 1
    got = perplexity(model, tokenizer, texts, block_size=8, max_tokens=25, batch_size=2)
    assert got["tokens"] == count == 21
    assert got["loss"] == pytest.approx(total / count, abs=1e-5)
    # Bytes: the whole first document, and what is kept of the second, decoded; none for the separator.
    kept = tokenizer.decode(docs[1][:25 - len(docs[0]) - 1])
    assert texts[1].startswith(kept) and 0 < len(kept) < len(texts[1])
    assert got["bytes"] == len(texts[0]) + len(kept)
    assert got["bits_per_byte"] == pytest.approx(total / (math.log(2) * got["bytes"]), abs=1e-6)
    # A fine-tuned copy's tokenizer names <|im_end|> as EOS; documents stay separated by BOS
    # (<|endoftext|>), so base and tuned models are scored on the same stream.
    tuned = copy.deepcopy(tokenizer)
    tuned.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tuned.eos_token = "<|im_end|>"
    model.resize_token_embeddings(len(tuned))
    assert tuned.eos_token_id != tuned.bos_token_id
    base = perplexity(model, tokenizer, texts, block_size=8, max_tokens=25, batch_size=2)
    again = perplexity(model, tuned, texts, block_size=8, max_tokens=25, batch_size=2)
    assert again["loss"] == pytest.approx(base["loss"], abs=1e-6) and again["tokens"] == 21


def test_bits_per_byte_counts_utf8_bytes_not_characters(tokenizer):
    model = tiny_model(tokenizer)
    ids = tokenizer(ACCENTED)["input_ids"]
    got = perplexity(model, tokenizer, [ACCENTED])
    assert (got["bytes"], len(ACCENTED)) == (38, 34)
    assert got["bits_per_byte"] == pytest.approx(got["loss"] * got["tokens"] / (math.log(2) * 38), rel=1e-12)
    # Cut after the first byte of the "é" of "café": the half character decodes as U+FFFD, 3 bytes.
    cut = next(n for n in range(1, len(ids)) if tokenizer.decode(ids[:n]).endswith("\ufffd"))
    part = perplexity(model, tokenizer, [ACCENTED], max_tokens=cut)
    assert part["bytes"] == len(tokenizer.decode(ids[:cut]).encode("utf-8")) == len("Ostria's caf") + 3


def test_perplexity_needs_two_tokens(tokenizer):
    with pytest.raises(ValueError, match="needs 2 tokens of text"):
        perplexity(tiny_model(tokenizer), tokenizer, ["T"])


# --------------------------------------------------------------------------- served


def completions_app(model, tokenizer, name: str = "tiny") -> FastAPI:
    """vLLM's /v1/completions, for echo with logprobs only; model "no-logprobs" answers without them."""
    app = FastAPI()
    app.state.bodies = []

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        app.state.bodies.append(body)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "missing or invalid API key", "type": "Unauthorized"}}, 401)
        if body["model"] not in (name, "no-logprobs"):
            return JSONResponse({"error": {"message": f"The model `{body['model']}` does not exist.",
                                           "type": "NotFoundError", "code": 404}}, 404)
        ids = tokenizer(body["prompt"])["input_ids"]  # vLLM adds the special tokens: none for this tokenizer
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()  # (T, V)
        logp = logits[:-1].log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
        tokens = [tokenizer.decode([i]) for i in ids]
        logprobs = {"tokens": tokens, "token_logprobs": [None, *logp],
                    "top_logprobs": [None, *({t: lp} for t, lp in zip(tokens[1:], logp))],
                    "text_offset": [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]}
        choice = {"index": 0, "text": body["prompt"], "finish_reason": "length",
                  "logprobs": logprobs if body["model"] == name else None}
        return {"id": "cmpl-0", "object": "text_completion", "model": body["model"], "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}}

    return app


@pytest.fixture(scope="module")
def served(tokenizer):
    model = tiny_model(tokenizer, seed=3)
    stub = start_stub(completions_app(model, tokenizer))
    yield model, stub
    stub.stop()


@pytest.mark.parametrize("text", [TEXT, ACCENTED])
def test_served_perplexity_agrees_with_in_process(served, tokenizer, text):
    model, stub = served
    got = served_perplexity(stub.url + "/", "tiny", text, api_key=KEY)
    local = perplexity(model, tokenizer, [text], block_size=64)
    assert stub.app.state.bodies[-1] == {"model": "tiny", "prompt": text, "max_tokens": 0, "echo": True,
                                         "logprobs": 1, "temperature": 0}
    assert got["tokens"] == local["tokens"] == len(tokenizer(text)["input_ids"]) - 1
    assert got["bytes"] == local["bytes"] == len(text.encode("utf-8"))
    assert got["loss"] == pytest.approx(local["loss"], abs=1e-3)
    assert got["perplexity"] == pytest.approx(math.exp(got["loss"]), rel=1e-12)
    assert got["bits_per_byte"] == pytest.approx(got["loss"] * got["tokens"] / (math.log(2) * got["bytes"]), rel=1e-12)
    assert got["bits_per_byte"] == pytest.approx(local["bits_per_byte"], abs=1e-3)


def test_served_perplexity_reports_the_servers_errors(served):
    _, stub = served
    with pytest.raises(RuntimeError, match=r"answered 404: The model `gpt-9` does not exist\.$"):
        served_perplexity(stub.url, "gpt-9", TEXT, api_key=KEY)
    with pytest.raises(RuntimeError, match="answered 401: missing or invalid API key"):
        served_perplexity(stub.url, "tiny", TEXT)
    with pytest.raises(RuntimeError, match="no prompt logprobs for 'no-logprobs'.*`echo` with `logprobs`"):
        served_perplexity(stub.url, "no-logprobs", TEXT, api_key=KEY)
    with pytest.raises(ValueError, match="needs 2 tokens of text: the server made 1"):
        served_perplexity(stub.url, "tiny", "T", api_key=KEY)


def test_served_perplexity_says_when_nothing_answers():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RuntimeError, match=f"cannot reach {url}/v1/completions"):
        served_perplexity(url, "tiny", TEXT, timeout=5)
