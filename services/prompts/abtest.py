"""A/B test of two prompt templates (or two versions of one) on a small labelled set.

Each row of the set holds the variables both templates need and the expected `answer`. Every row
is rendered with template A and with template B, and each prompt is sent to the same served model
(its OpenAI-compatible /v1/chat/completions, temperature 0 so the answer depends on the prompt
alone). An answer is right when it matches the expected one:

- `exact_match`: equal after SQuAD's normalisation (case, punctuation, articles; evaluation/text_metrics.py);
- `contains`: the normalised expected answer appears, as whole words, in the normalised reply
  (for models that answer in a sentence: "The sentiment is positive.").

Each template's accuracy comes with a 95% Wilson interval (sound on small sets, where the normal
approximation can leave [0, 1]). Both templates answered the same rows, so the fair test is
paired (evaluation/leaderboard.py `compare`): the paired bootstrap of the difference and McNemar's
exact test, which looks only at the rows where the two disagree.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import httpx

from evaluation.leaderboard import compare
from evaluation.text_metrics import normalize_answer
from services.llm import upstream_message
from services.prompts import store
from services.prompts.templates import render_template
from training.errors import UserError
from training.workspace import Workspace

METRICS = ("exact_match", "contains")
MAX_ITEMS = 500
Z95 = 1.959964


class EndpointError(Exception):
    """The model's endpoint said no (or nothing): an HTTP status, the field to blame, a code."""

    def __init__(self, status: int, message: str, param: str | None, code: str):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def correct(prediction: str, answer: str, metric: str = "exact_match") -> bool:
    """Whether `prediction` gets `answer` right under `metric`.

    >>> correct("Positive.", "positive"), correct("The sentiment is positive.", "positive", "contains")
    (True, True)
    >>> correct("non-positive", "positive", "contains")  # whole words only
    False
    """
    p, a = normalize_answer(prediction), normalize_answer(answer)
    if metric == "exact_match":
        return p == a
    return bool(a) and f" {a} " in f" {p} "


def wilson(k: int, n: int) -> list[float] | None:
    """The 95% Wilson score interval of a proportion k/n (None for n = 0).

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.49, 0.943]
    """
    if n == 0:
        return None
    p, z2 = k / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def check_rows(rows, field: str = "items") -> list[dict]:
    """The labelled rows, each a mapping with a non-empty `answer` (UserError naming `items[i]`)."""
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{field}: at least one labelled row is needed")
    if len(rows) > MAX_ITEMS:
        raise UserError(f"{field}: at most {MAX_ITEMS} rows, got {len(rows)}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{field}[{i}]: a JSON object of variables and `answer`, got {type(row).__name__}")
        if row.get("answer") in (None, "") or not str(row["answer"]).strip():
            raise UserError(f"{field}[{i}].answer: the expected answer is needed")
    return rows


def _messages(prompt: dict) -> list[dict]:
    return ([{"role": "system", "content": prompt["system"]}] if prompt["system"] else []) + \
        [{"role": "user", "content": prompt["text"]}]


def _check_served(client: httpx.Client, endpoint: str, model: str) -> None:
    try:
        r = client.get(f"{endpoint}/models")
        r.raise_for_status()
        served = [m["id"] for m in r.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise EndpointError(503, f"endpoint: no OpenAI-compatible server answers at {endpoint} "
                                 f"({type(e).__name__}); start one with `playground up --model ID`",
                            "endpoint", "llm_unavailable") from None
    if model not in served:
        raise EndpointError(409, f"model: {model!r} is not served (served: {', '.join(served) or 'none'}); "
                                 "deploy it with POST /api/deployments", "model", "model_not_served")


def _ask(client: httpx.Client, endpoint: str, model: str, messages: list[dict], max_tokens: int, where: str) -> str:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
    try:
        resp = client.post(f"{endpoint}/chat/completions", json=body)
    except httpx.HTTPError as e:
        raise EndpointError(503, f"model: {model!r} did not answer {where} ({type(e).__name__})", "model",
                            "llm_unavailable") from None
    if resp.status_code >= 400:  # e.g. a prompt longer than the model's context: the user's to fix
        msg = upstream_message(resp)
        status, param = (400, "items") if resp.status_code < 500 else (502, "model")
        raise EndpointError(status, f"{param}: {model!r} refused {where}: {msg}", param, "llm_error")
    return resp.json()["choices"][0]["message"]["content"] or ""


def ab_test(ws: Workspace, a: dict, b: dict, rows: list[dict], *, model: str, endpoint: str,
            metric: str = "exact_match", max_tokens: int = 64, api_key: str | None = None,
            iters: int = 10_000, concurrency: int = 8) -> dict:
    """Template A against template B on `rows`, answered by the served `model`.

    Args:
        a, b: `{"name", "version"?}` (no version: the latest); they must differ.
        rows: labelled rows: the variables of both templates (each takes the ones it has) and `answer`.
        model: a model served at `endpoint` (a base URL ending in /v1).
        metric: "exact_match" or "contains".
        api_key: sent as `Authorization: Bearer ...` when given.

    Returns:
        `{"metric", "model", "n", "a": {name, version, correct, accuracy, ci95}, "b": {...},
        "comparison": leaderboard.compare(...), "verdict", "items": [{index, answer, a: {prediction,
        correct}, b: {...}}]}`.

    Raises:
        UserError: a bad row or template (`items[3].review: not filled ...`, `a.name: no template ...`).
        EndpointError: the endpoint is down (503), the model is not served (409) or refuses a prompt.
    """
    if metric not in METRICS:
        raise UserError(f"metric: one of {', '.join(METRICS)}, got {metric!r}")
    arms = {}
    for side, ref in (("a", a), ("b", b)):
        if not isinstance(ref, dict) or not ref.get("name"):
            raise UserError(f"{side}.name: the template to test is needed")
        arms[side] = store.get(ws, ref["name"], ref.get("version"), field=f"{side}.")
    if (arms["a"]["name"], arms["a"]["version"]) == (arms["b"]["name"], arms["b"]["version"]):
        raise UserError(f"b: the same template and version as a ({arms['a']['name']} v{arms['a']['version']}); "
                        "pick another template or version")
    rows = check_rows(rows)
    prompts = {side: [render_template(store.template_of(rec), row, field=f"items[{i}]", extra="ignore")
                      for i, row in enumerate(rows)] for side, rec in arms.items()}
    endpoint = endpoint.rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(headers=headers, timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        _check_served(client, endpoint, model)
        # The same prompt is asked once: at temperature 0 its answer would be the same.
        unique = {}
        for side in ("a", "b"):
            for i, p in enumerate(prompts[side]):
                unique.setdefault((p["system"], p["text"]), f"for items[{i}] (template {side})")
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {key: pool.submit(_ask, client, endpoint, model, _messages({"system": key[0], "text": key[1]}),
                                        max_tokens, where) for key, where in unique.items()}
            answers = {key: f.result() for key, f in futures.items()}
    items, scores = [], {"a": [], "b": []}
    for i, row in enumerate(rows):
        item = {"index": i, "answer": str(row["answer"])}
        for side in ("a", "b"):
            pred = answers[(prompts[side][i]["system"], prompts[side][i]["text"])]
            ok = correct(pred, str(row["answer"]), metric)
            item[side] = {"prediction": pred, "correct": ok}
            scores[side].append({"doc_id": i, "correct": float(ok)})
        items.append(item)
    n = len(rows)
    summary = {}
    for side, rec in arms.items():
        k = sum(int(s["correct"]) for s in scores[side])
        summary[side] = {"name": rec["name"], "version": rec["version"], "correct": k, "accuracy": k / n,
                         "ci95": wilson(k, n)}
    comparison = compare(scores["a"], scores["b"], "correct", iters=iters)
    return {"metric": metric, "model": model, "n": n, **summary, "comparison": comparison,
            "verdict": verdict(summary["a"], summary["b"], comparison), "items": items}


def verdict(a: dict, b: dict, comparison: dict, alpha: float = 0.05) -> str:
    """The paired test's result in one sentence (McNemar's p-value)."""
    name = {s: f"{r['name']} v{r['version']}" for s, r in (("A", a), ("B", b))}
    mc = comparison.get("mcnemar") or {"only_a": 0, "only_b": 0, "p_value": 1.0}
    counts = f"A alone right on {mc['only_a']} rows, B alone on {mc['only_b']}"
    if mc["p_value"] < alpha:
        better, worse = ("A", "B") if a["accuracy"] > b["accuracy"] else ("B", "A")
        return (f"{better} ({name[better]}) is better than {worse} ({name[worse]}): {counts}; McNemar p = "
                f"{mc['p_value']:.3g} < {alpha}, unlikely to be chance.")
    return (f"No significant difference between A ({name['A']}) and B ({name['B']}): {counts}; McNemar p = "
            f"{mc['p_value']:.3g} >= {alpha}. More rows, or a larger gap, would be needed to tell them apart.")
