"""Perplexity and bits per byte: how well a language model predicts text, in-process or served.

Both come from the mean next-token loss (cross-entropy, in nats). Perplexity is exp(loss): a loss of
0.69 is a perplexity of 2, the model as unsure, on average, as a coin flip between two tokens. But a
token is whatever the tokenizer made it, so perplexities of models with different tokenizers do not
compare: one that cuts text into more, smaller tokens has an easier job per token. Bits per byte
divides the summed loss by the text's length in UTF-8 bytes (and by ln 2, for bits), a unit no
tokenizer changes; nanochat reports it for this reason. A model that spreads its bets evenly over 256
byte values would score 8; well-trained models of English score about 1 or less.

- `perplexity`: in-process, on a Hugging Face model and tokenizer (a checkpoint folder, loaded).
- `served_perplexity`: against a served model (vLLM's OpenAI-compatible `/v1/completions`), from the
  log-probabilities it reports for the prompt's own tokens.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import httpx


@contextmanager
def eval_mode(model):
    """Evaluation mode and no gradients inside the block; the model's own mode restored after."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _context_length(config) -> int:
    ctx = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return min(ctx or 1024, 1024)


def _summary(nats: float, tokens: int, nbytes: int) -> dict:
    loss = nats / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "bytes": nbytes,
            "bits_per_byte": nats / (math.log(2) * nbytes)}


def _stream(tokenizer, texts: list[str], max_tokens: int) -> tuple[list[int], int]:
    """The documents' ids joined by a separator and cut to `max_tokens`, and the UTF-8 bytes of the text
    kept: each whole document's own bytes; of a document that the cut splits, the bytes of its kept
    tokens decoded (a multi-byte character cut in two decodes as U+FFFD, 3 bytes). Separators are text
    of no document: scored (predicting where a document ends is part of the loss), but 0 bytes."""
    sep = next(([t] for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None), [])
    texts, stream, nbytes = list(texts), [], 0
    for i, (text, ids) in enumerate(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])):
        stream += (sep if i else []) + ids
        if len(stream) > max_tokens:
            kept = ids[:max(0, len(ids) - (len(stream) - max_tokens))]
            nbytes += len(tokenizer.decode(kept, clean_up_tokenization_spaces=False).encode("utf-8"))
            break
        nbytes += len(text.encode("utf-8"))
        if len(stream) == max_tokens:
            break
    return stream[:max_tokens], nbytes


def perplexity(model, tokenizer, texts: list[str], *, block_size: int | None = None,
               max_tokens: int = 20000, batch_size: int = 8) -> dict:
    """Mean next-token cross-entropy of `model` on `texts`, its exponential, and bits per byte.

    The texts are joined into one stream (a separator token between documents, as in the
    pretraining shards: BOS where the tokenizer has one, else EOS; fine-tuning renames our
    tokenizer's EOS to <|im_end|> but keeps <|endoftext|> as BOS, so base and tuned model read the
    same stream), cut to `max_tokens` and split into non-overlapping windows of
    `block_size` tokens; the first token of each window has no context and is not scored. Nothing
    is put before the first document: one text that fits one window is scored from its second
    token on, exactly what `served_perplexity` scores.

    Returns:
        `loss` (nats per predicted token), `perplexity`, `tokens` (how many were predicted),
        `bytes` (UTF-8 bytes of the text kept; see `_stream`: every byte, including those of the
        first token of each window, which is only context, so 1 token in `block_size`) and
        `bits_per_byte` = loss * tokens / (ln 2 * bytes).

    E.g. a model that gives each of 100 predicted tokens of a 400-byte text probability 1/2 has
    loss 0.693, perplexity 2 and 100 bits over 400 bytes: 0.25 bits per byte.
    """
    import torch
    import torch.nn.functional as F

    block = block_size or _context_length(model.config)
    stream, nbytes = _stream(tokenizer, texts, max_tokens)
    if len(stream) < 2 or block < 2:
        raise ValueError(f"perplexity needs 2 tokens of text and windows of 2: got {len(stream)} and {block}")
    full = len(stream) // block * block
    windows = torch.tensor(stream[:full], dtype=torch.long).view(-1, block)  # (W, block)
    batches = list(windows.split(batch_size)) if full else []
    if len(stream) - full > 1:
        batches.append(torch.tensor([stream[full:]]))  # the short last window
    total, count = 0.0, 0
    with eval_mode(model):
        for ids in batches:
            ids = ids.to(next(model.parameters()).device)
            logits = model(input_ids=ids).logits.float()  # (B, T, V)
            total += F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum").item()
            count += ids[:, 1:].numel()
    return _summary(total, count, nbytes)


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, vLLM's older {"message"}, FastAPI's
    {"detail"}, else the start of the body; on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        said = error.get("message") if isinstance(error, dict) else error
        said = said or body.get("message") or body.get("detail")
    else:
        said = None
    return " ".join(str(said or response.text[:300] or response.reason_phrase).split())


def served_perplexity(base_url: str, model_name: str, text: str, *, api_key: str | None = None,
                      timeout: float = 60) -> dict:
    """`perplexity` of one text against a served model, from the log-probabilities it gives its prompt.

    POSTs the text as the prompt of a legacy completion that generates nothing (`max_tokens` 0) and
    echoes the prompt with each token's log-probability (`echo`, `logprobs`), as vLLM serves them.
    The first token has no context, so no log-probability (null), and is not scored; the others are.
    That is what `perplexity(model, tokenizer, [text], block_size=n)` scores with n at least the
    text's token count, when the server tokenizes the prompt as our tokenizers do: vLLM adds the
    tokenizer's special tokens, none for byte-level BPEs like ours and GPT-2's; a tokenizer that
    prepends BOS (Llama's) makes the first text token a scored one here, one token more than there.

    Args:
        base_url: the server's root, e.g. http://127.0.0.1:8000 (without /v1).
        model_name: the served model's name, as `GET /v1/models` lists it.
        text: the text to score.
        api_key: sent as a bearer token when given.
        timeout: seconds to wait for the reply.

    Returns:
        The same keys as `perplexity`: `loss`, `perplexity`, `tokens`, `bytes` (of `text`, UTF-8),
        `bits_per_byte`.
    """
    body = {"model": model_name, "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/") + "/v1/completions"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise RuntimeError(f"cannot reach {url}: {e}") from None
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {_error_message(response)}")
    try:
        reply = response.json()
        logprobs = (reply["choices"][0].get("logprobs") or {}).get("token_logprobs")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise RuntimeError(f"{url} answered 200 with no completion choices: {response.text[:200]!r}") from None
    if not logprobs:
        raise RuntimeError(f"{url} returned no prompt logprobs for {model_name!r}; the server must support "
                           "`echo` with `logprobs` on /v1/completions, as vLLM does")
    # Only the prompt's tokens: a server that generated anyway lists its new tokens after them.
    prompt_tokens = (reply.get("usage") or {}).get("prompt_tokens") or len(logprobs)
    scored = logprobs[1:prompt_tokens]
    if not scored:
        raise ValueError(f"perplexity needs 2 tokens of text: the server made {prompt_tokens} of {text!r}")
    if any(lp is None for lp in scored):
        raise RuntimeError(f"{url} returned a null logprob for a prompt token after the first")
    return _summary(-sum(scored), len(scored), len(text.encode("utf-8")))
