"""`playground bench eval`: evaluation speed and agreement, served (vLLM on Ray Serve) vs in-process.

Figures (one JSON line at the end, saved to reports/bench/eval.json):

- `mmlu_questions`, `mmlu_seconds`, `mmlu_questions_per_s`: all of MMLU (14,042 questions, zero-shot)
  through lm-eval's `local-completions` against the served model. Goal: under 1800 s on a 2-core
  machine (the product requirements: the full suite in under 30 minutes).
- `served_vs_inprocess_agreement`: on the same tasks (`--agreement-task`, default the three multiple-choice
  world suites, 560 items), the share of items on which
  lm-eval through Serve and lm-eval in-process (`hf` backend, same weights, float32) pick the same
  answer; goal >= 0.99. `served_seconds`, `inprocess_seconds` and `served_vs_inprocess_time_ratio` say
  what the HTTP path costs (or saves) on that task, measured in the same run.
- `rerun_identical`: the served evaluation of that task, run twice, gives identical metrics.
- `perplexity_served_vs_inprocess`: relative difference of the perplexity of the same text, from
  vLLM's prompt logprobs and from the model in-process (evaluation/perplexity.py).

The model is `--model` (a workspace model id), else the newest `make demo` export, else a random-init
micro model (`bench-micro`, as `playground bench serve` makes): MMLU at chance, but the same work.
"""

from __future__ import annotations

import json
import time

from benchmarks.report import emit
from benchmarks.serve import BENCH_MODEL_ID, ensure_bench_model, serve_engine_args
from benchmarks.serve_http import env, free_port
from benchmarks.sft import machine
from evaluation import records, suites
from evaluation.config import EvalConfig
from evaluation.harness import model_source, run_suite
from evaluation.mmlu import PREFIX
from training.errors import UserError
from training.workspace import Workspace

PPL_TEXT_DOCS = 40


def pick_model(ws: Workspace, model: str | None) -> str:
    if model:
        if not (ws.model(model) / "config.json").is_file():
            raise UserError(f"--model: no model {model!r} in {ws.models}")
        return model
    from benchmarks.sft_base import pick_model as newest_demo

    try:
        return newest_demo(ws)
    except UserError:
        ensure_bench_model(ws)
        return BENCH_MODEL_ID


def agreement(served: list[dict], inprocess: list[dict]) -> tuple[float | None, int]:
    """Share of items (by doc_id) where both runs predicted the same answer, and how many items."""
    other = {r["doc_id"]: r.get("pred") for r in inprocess}
    both = [(r.get("pred"), other[r["doc_id"]]) for r in served if r["doc_id"] in other]
    return (sum(a == b for a, b in both) / len(both) if both else None), len(both)


def _scores(out: dict) -> dict:
    return {t: {k: v for k, v in m.items() if not k.endswith("_stderr")} for t, m in out["tasks"].items()}


def ppl_texts(tokenizer, context: int, n: int = PPL_TEXT_DOCS) -> list[str]:
    """`n` starter-corpus documents, each cut to what fits the model's context (the server refuses
    longer prompts; in-process they would be split into windows, a different score)."""
    from training.data.corpus import generate_documents

    out = []
    for doc in generate_documents(200_000, seed=123):
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"][:context - 1]
        text = tokenizer.decode(ids)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= context - 1:
            out.append(text)
        if len(out) == n:
            break
    return out


def _mean_loss(scores: list[dict]) -> float:
    return sum(s["loss"] * s["tokens"] for s in scores) / sum(s["tokens"] for s in scores)


def measure(ws: Workspace, model: str, endpoint: str, *, agreement_task: str, agreement_limit: int | None,
            mmlu_limit: int | None, say=print) -> dict:
    """Everything but the Serve bring-up: the evaluations against `endpoint` and in-process."""
    from evaluation.perplexity import perplexity, served_perplexity

    src = model_source(ws, model)
    root = records.tasks_dir(ws)
    figures: dict = {}

    names = agreement_task.split(",")
    tasks = suites.expand(names)
    tm = suites.task_manager(root, names)
    served_cfg = EvalConfig(models=[model], tasks=names, backend="served", endpoint=endpoint,
                            limit=agreement_limit)
    hf_cfg = served_cfg.model_copy(update={"backend": "hf"})
    say(f"{agreement_task}: served, twice, then in-process ...")
    first = run_suite(served_cfg, src, tasks, tm)
    second = run_suite(served_cfg, src, tasks, tm)
    local = run_suite(hf_cfg, src, tasks, tm)
    shares = [agreement(first["samples"][t], local["samples"].get(t, [])) for t in first["samples"]]
    n = sum(k for _, k in shares)
    figures |= {
        "agreement_task": agreement_task, "agreement_items": n,
        "served_vs_inprocess_agreement": round(sum(a * k for a, k in shares if a is not None) / n, 4) if n else None,
        "served_seconds": round(first["seconds"], 2), "inprocess_seconds": round(local["seconds"], 2),
        "served_vs_inprocess_time_ratio": round(first["seconds"] / local["seconds"], 3),
        "rerun_identical": _scores(first) == _scores(second) and all(
            [r.get("pred") for r in first["samples"][t]] == [r.get("pred") for r in second["samples"][t]]
            for t in first["samples"]),
        "served_scores": _scores(first), "inprocess_scores": _scores(local),
    }

    say("perplexity of the same text, served and in-process ...")
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.path)
    hf = AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32)
    context = src.context or 1024
    texts = ppl_texts(tok, context)
    local = _mean_loss([perplexity(hf, tok, [t], block_size=context) for t in texts])
    served = _mean_loss([served_perplexity(endpoint.removesuffix("/v1"), model, t) for t in texts])
    figures |= {"perplexity_inprocess": round(math.exp(local), 6), "perplexity_served": round(math.exp(served), 6),
                "perplexity_served_vs_inprocess": abs(math.exp(served - local) - 1), "perplexity_texts": len(texts)}

    mmlu = suites.expand(["mmlu"])
    tm = suites.task_manager(root, ["mmlu"])
    mmlu_cfg = served_cfg.model_copy(update={"tasks": ["mmlu"], "limit": mmlu_limit, "num_fewshot": 0})
    say(f"MMLU ({'all' if mmlu_limit is None else f'{mmlu_limit} per subject'}), zero-shot, served ...")
    out = run_suite(mmlu_cfg, src, mmlu, tm)
    questions = sum(v or 0 for t, v in out["n"].items() if t not in out["groups"])
    overall = next((m for g, m in out["groups"].items() if g == PREFIX), {})
    figures |= {"mmlu_questions": questions, "mmlu_seconds": round(out["seconds"], 1),
                "mmlu_questions_per_s": round(questions / out["seconds"], 2),
                "mmlu_accuracy": overall.get("acc"), "mmlu_accuracy_stderr": overall.get("acc_stderr"),
                "mmlu_goal_seconds": 1800, "mmlu_goal_met": out["seconds"] < 1800 and mmlu_limit is None}
    return figures


AGREEMENT_TASKS = "world_facts,world_arithmetic,world_stories"


def bench_eval(*, model: str | None = None, agreement_task: str = AGREEMENT_TASKS, agreement_limit: int | None = None,
               mmlu_limit: int | None = None, workspace: Workspace | None = None) -> dict:
    from services.serve_env import serve_env

    ws = workspace or Workspace.resolve()
    model = pick_model(ws, model)
    suites.expand(agreement_task.split(","))  # an unknown task fails now, before Serve starts
    t0 = time.perf_counter()
    with env(**serve_env()):
        import ray
        from ray import serve

        from services.app import build_llm_app

        port = free_port()
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            engine = serve_engine_args()
            serve.run(build_llm_app({"models": [model], "workspace": str(ws.root), "engine": engine}),
                      name="llm", route_prefix="/")
            figures = measure(ws, model, f"http://127.0.0.1:{port}/v1", agreement_task=agreement_task,
                              agreement_limit=agreement_limit, mmlu_limit=mmlu_limit)
        finally:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
    import lm_eval

    figures = {"model": model, **figures, "wall_seconds": round(time.perf_counter() - t0, 1),
               "engine": engine, "machine": machine(), "lm_eval": getattr(lm_eval, "__version__", None)}
    print_table(figures)
    emit("eval", figures)
    return figures


def print_table(f: dict) -> None:
    print(f"\nmodel {f['model']}")
    print(f"  MMLU: {f['mmlu_questions']:,} questions in {f['mmlu_seconds']:,.0f} s "
          f"({f['mmlu_questions_per_s']:.1f}/s; goal < 1800 s), accuracy {f['mmlu_accuracy']}")
    print(f"  {f['agreement_task']}: served vs in-process agree on {f['served_vs_inprocess_agreement']} of "
          f"{f['agreement_items']} items (goal >= 0.99); {f['served_seconds']} s vs {f['inprocess_seconds']} s")
    print(f"  rerun identical: {f['rerun_identical']}; perplexity served {f['perplexity_served']} vs in-process "
          f"{f['perplexity_inprocess']} (relative difference {f['perplexity_served_vs_inprocess']:.2e})")
    print(json.dumps({k: f[k] for k in ("mmlu_seconds", "served_vs_inprocess_agreement", "rerun_identical",
                                        "perplexity_served_vs_inprocess")}))
