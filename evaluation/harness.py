"""One model on one suite with lm-evaluation-harness: served through our endpoint, or in-process.

lm-eval (EleutherAI's lm-evaluation-harness) is the engine the field's leaderboards run on: it turns a
task (a dataset and a prompt template) into requests, asks a model for log-likelihoods or
generations, and scores them. It does not care where the model runs. Two backends here:

- `served`: lm-eval's `local-completions` against our OpenAI-compatible `/v1/completions` (vLLM on
  Ray Serve). A multiple-choice question becomes one request per choice with `echo=true` and
  `logprobs`: vLLM returns the log-probability of every prompt token, and lm-eval sums those of the
  choice's tokens. Our endpoint has no `/tokenize`, so lm-eval counts tokens with the model's own
  tokenizer folder (`tokenizer=`), and must cut long prompts to the model's context itself
  (`max_length=`): otherwise vLLM refuses them. The in-process backend is told a length that makes
  it cut a long prompt at the same token, so both score the same window.
- `served-chat`: lm-eval's `local-chat-completions` against `/v1/chat/completions`, for generation
  tasks asked as a conversation: the server renders the messages with the model's own chat template.
  It generates only: a chat endpoint gives no log-likelihoods, so multiple choice is refused.
- `hf`: lm-eval's `hf` backend, loading the same folder with transformers in this process.

The same task through both should pick the same answer on (nearly) every item: `playground bench
eval` measures how often (`served_vs_inprocess_agreement`).

`run_suite` returns plain data: the metrics of each task (with their standard errors), of each group
(MMLU's subjects roll up into categories and the whole), and one record per item.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from evaluation.config import EvalConfig
from evaluation.online_tasks import hub_errors
from training.errors import UserError

MIN_REPLY_TOKENS = 64  # the smallest `max_gen_toks` of our generation suites (world_instructions, custom ones)
# The metric a task is ranked by, in this order of preference.
PRIMARY = ("acc", "exact_match", "pass@1", "f1", "bleu", "word_perplexity")


@dataclass(frozen=True)
class ModelSource:
    """Where a model is and what lm-eval needs to know about it."""

    name: str                     # the id the endpoint serves it under, or the record's name for it
    path: str                     # a local folder, or a Hub name
    context: int | None           # the model's context length, in tokens
    chat_template: bool           # whether its tokenizer can render chats
    lineage: dict = field(default_factory=dict)


def model_source(ws, spec: str) -> ModelSource:
    """A workspace model id (or a local folder, or a Hub name) resolved, with its lineage.

    Raises:
        UserError: "models: ..." naming the model when there is nothing to load there.
    """
    from training.posttrain.adapters import resolve_model

    path = resolve_model(spec, ws, field="models")
    if not Path(path).is_dir():  # a Hub name: lm-eval loads it (online) or says why not
        return ModelSource(spec, path, None, True, {"hub": spec})
    return folder_source(spec, Path(path))


def folder_source(name: str, folder: Path) -> ModelSource:
    """The Hugging Face model in `folder`, known as `name`: its context, whether it has a chat
    template, and its lineage (from the playground.json an export or a fine-tuning run writes)."""
    cfg = json.loads((folder / "config.json").read_text())
    context = cfg.get("n_positions") or cfg.get("max_position_embeddings")
    tok_cfg = folder / "tokenizer_config.json"
    chat = (folder / "chat_template.jinja").is_file() or (
        tok_cfg.is_file() and bool(json.loads(tok_cfg.read_text()).get("chat_template")))
    info = json.loads((folder / "playground.json").read_text()) if (folder / "playground.json").is_file() else {}
    lineage = {"model": name, "path": str(folder), "run_id": info.get("run_id"), "step": info.get("step"),
               "val_loss": info.get("val_loss"), "parent": info.get("lineage")}
    return ModelSource(name, str(folder), context, chat, lineage)


def served_models(endpoint: str, timeout: float = 10.0) -> list[str]:
    """The model ids `endpoint` serves (GET /v1/models).

    Raises:
        UserError: the endpoint does not answer (nothing served: start it with `playground up`).
    """
    try:
        r = httpx.get(endpoint.rstrip("/") + "/models", timeout=timeout, headers=auth_header())
        r.raise_for_status()
    except httpx.HTTPError as e:
        raise UserError(f"endpoint: no OpenAI-compatible server answers at {endpoint} ({type(e).__name__}); "
                        "start one with `playground up --model ID`") from None
    return [m["id"] for m in r.json().get("data", [])]


def check_served(endpoint: str, models: list[str]) -> None:
    """Raises UserError naming the first of `models` that `endpoint` does not serve."""
    served = served_models(endpoint)
    for m in models:
        if m not in served:
            raise UserError(f"models: {m!r} is not served at {endpoint} (served: {', '.join(served) or 'none'}); "
                            f"deploy it with `playground up --model {m}` or POST /api/deployments")


def auth_header() -> dict:
    """The bearer token of a playground API started with PLAYGROUND_API_KEY (else none)."""
    return {"Authorization": f"Bearer {key}"} if (key := os.environ.get("PLAYGROUND_API_KEY")) else {}


def lm_eval_model(cfg: EvalConfig, src: ModelSource) -> tuple[str, dict]:
    """lm-eval's model name and arguments for `src` on `cfg.backend`."""
    if cfg.backend in ("served", "served-chat"):
        args = {"model": src.name, "num_concurrent": cfg.num_concurrent, "max_retries": 3, "timeout": 600,
                "seed": cfg.seed}
        if header := auth_header():  # lm-eval would send "Bearer $OPENAI_API_KEY", empty here
            args["header"] = header
        if cfg.backend == "served-chat":
            # Messages go as they are; the server renders them with the model's chat template, so no tokenizer.
            return "local-chat-completions", args | {"base_url": cfg.endpoint.rstrip("/") + "/chat/completions"}
        args |= {"base_url": cfg.endpoint.rstrip("/") + "/completions", "tokenizer": src.path,
                 "tokenizer_backend": "huggingface"}
        if src.context:
            args["max_length"] = src.context
        return "local-completions", args
    args = {"pretrained": src.path, "dtype": "float32", "device": "cpu", "trust_remote_code": False}
    if src.context:
        # The same window as served: local-completions sends the last `max_length - 1` tokens of a long
        # prompt (= context - 1), and hf scores the last `max_length + 1`; so hf gets context - 2, and a
        # prompt longer than the model's context is cut at the same token on both sides.
        args["max_length"] = src.context - 2
    return "hf", args


def metrics_of(entry: dict) -> dict:
    """lm-eval's `{"acc,none": 0.5, "acc_stderr,none": 0.05, "alias": ...}` as `{"acc": 0.5,
    "acc_stderr": 0.05}` (a metric after a filter other than "none" keeps it: `exact_match[strip]`)."""
    out = {}
    for key, value in entry.items():
        if "," not in key or not isinstance(value, (int, float)):
            continue
        metric, filt = key.split(",", 1)
        out[metric if filt == "none" else f"{metric}[{filt}]"] = value
    return out


def primary_metric(metrics: dict) -> str | None:
    for name in PRIMARY:
        for key in metrics:
            if key == name or key.startswith(name + "["):
                return key
    return next((k for k in metrics if not k.endswith("_stderr") and "_stderr[" not in k), None)


def sample_record(s: dict) -> dict:
    """One item's record: its id, prompt, target, the model's answer and its score.

    For a multiple-choice item `pred` is the index of the choice with the highest log-likelihood
    (what `acc` checks) and `loglikelihoods` are the choices' scores; for a generation it is the
    generated text after the task's filters."""
    from lm_eval.utils import handle_non_serializable

    filtered = s.get("filtered_resps") or []
    scored = [r[0] if isinstance(r, (list, tuple)) else r for r in filtered]
    rec = {"doc_id": s.get("doc_id"), "prompt": (s.get("arguments") or [[None]])[0][0], "target": s.get("target")}
    if scored and all(isinstance(x, (int, float)) for x in scored):
        rec["loglikelihoods"] = [float(x) for x in scored]
        rec["pred"] = max(range(len(scored)), key=scored.__getitem__)
    else:
        rec["pred"] = scored[0] if len(scored) == 1 else scored
    for key in s.get("metrics") or []:
        if key in s:
            rec[key] = s[key]
    return json.loads(json.dumps(rec, default=handle_non_serializable))


def run_suite(cfg: EvalConfig, src: ModelSource, tasks: list[str], task_manager, *,
              apply_chat_template: bool = False) -> dict:
    """Evaluate `src` on lm-eval `tasks` (one suite). Returns `{"tasks": {task: metrics}, "groups":
    {group: metrics}, "samples": {task: [record]}, "n": {task: items}, "seconds": wall time}`."""
    import lm_eval

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    model, model_args = lm_eval_model(cfg, src)
    gen_kwargs = None
    if cfg.backend == "served-chat" and src.context and src.context // 2 < MIN_REPLY_TOKENS:
        # local-completions cuts a long prompt to leave room for the reply; a chat request cannot be cut,
        # and the server refuses prompt + max_tokens beyond the context. So on a model whose context is
        # under twice our tasks' reply budget, replies get half of it (lm-eval's override sets it for all).
        gen_kwargs = {"max_gen_toks": src.context // 2}
    t0 = time.perf_counter()
    with hub_errors(tasks):  # lm-eval's Hub tasks (hellaswag...) offline: one line, naming the local sample
        out = lm_eval.simple_evaluate(
            model=model, model_args=model_args, tasks=tasks, task_manager=task_manager,
            num_fewshot=cfg.num_fewshot, limit=cfg.limit, batch_size=cfg.batch_size, gen_kwargs=gen_kwargs,
            log_samples=True, apply_chat_template=apply_chat_template, bootstrap_iters=1000,
            random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed, verbosity="WARNING")
    seconds = time.perf_counter() - t0
    groups = set(out.get("groups") or {})
    return {
        "tasks": {t: metrics_of(m) for t, m in out["results"].items() if t not in groups},
        "groups": {g: metrics_of(m) for g, m in (out.get("groups") or {}).items()},
        "samples": {t: [sample_record(s) for s in rows] for t, rows in (out.get("samples") or {}).items()},
        "n": {t: v.get("effective", v.get("original")) for t, v in (out.get("n-samples") or {}).items()},
        "versions": {t: v for t, v in (out.get("versions") or {}).items()},
        "seconds": seconds,
    }
