"""`playground bench decoding`: the decoding lab against transformers, and how long its answers take.

Figures (one JSON line at the end, saved to reports/bench/decoding.json), on the newest `make demo`
export (else `--model`, else the random-init micro model of `playground bench serve`):

- `greedy_matches_hf`, `beam_matches_hf`: our greedy decoding and our beam search of width 4
  (training/decoding/) give the same 32 tokens as transformers' `generate` on the exported model,
  and, for beam search, the same `sequences_scores` (within 1e-4);
- `ms_beam4_32_tokens`: POST /api/decoding (the real route, the `Inspector` class in-process in place
  of its Serve handle) building the whole beam-4 tree of 32 new tokens with every expanded node's
  distribution; goal under 100 ms (the product requirements' "visualization renders < 100 ms");
- `ms_sampling_compare`: the same route with four strategies side by side (greedy, top-k, top-p,
  min-p sampling), 32 tokens each, every processor's distribution at every step traced;
- the baseline, measured in the same run: `ms_plain_generate_4x32`, the model's own
  `Transformer.generate` on 4 rows for 32 tokens (no traces, no tree, no HTTP): what the forward
  passes alone cost, so `beam_vs_plain_ratio` is the lab's own overhead;
- `templates`: how many curated prompt templates ship in configs/prompts (goal >= 20).

Medians of `--repeats` runs after a warm-up; EOS is ignored so every run makes all 32 tokens.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.report import emit
from benchmarks.sft import machine
from training.workspace import Workspace

PROMPT = "Once upon a time"
NEW = 32
COMPARED = [{"name": "greedy", "strategy": "greedy"},
            {"name": "top_k", "strategy": "sample", "temperature": 0.8, "top_k": 50, "seed": 1},
            {"name": "top_p", "strategy": "sample", "top_p": 0.9, "seed": 2},
            {"name": "min_p", "strategy": "sample", "temperature": 1.5, "min_p": 0.1, "seed": 3}]


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 1)


def parity(model, folder, ids: list[int]) -> dict:
    """Ours against transformers' generate on the same export: greedy tokens, beam-4 tokens and scores."""
    from transformers import AutoModelForCausalLM

    from training.decoding.beam import beam_search
    from training.decoding.strategies import Settings, decode

    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    hf.generation_config.eos_token_id = None  # as ours without eos: all 32 tokens
    prompt = torch.tensor([ids])
    kw = {"attention_mask": torch.ones_like(prompt), "max_new_tokens": NEW, "pad_token_id": 0}
    with torch.no_grad():
        greedy = hf.generate(prompt, do_sample=False, **kw)[0, len(ids):].tolist()
        beams = hf.generate(prompt, do_sample=False, num_beams=4, output_scores=True, return_dict_in_generate=True,
                            **kw)
    ours_greedy = decode(model, ids, Settings("greedy"), NEW).tokens
    ours_beam = beam_search(model, ids, num_beams=4, max_new_tokens=NEW).beams[0]
    beam_diff = abs(ours_beam.score - beams.sequences_scores[0].item())
    return {"greedy_matches_hf": ours_greedy == greedy,
            "beam_matches_hf": ours_beam.tokens == beams.sequences[0, len(ids):].tolist() and beam_diff < 1e-4,
            "beam_score_abs_diff": beam_diff}


class InProcessHandle:
    """The Serve handle's `.method.remote(...)`, calling the Inspector in this process."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        method = getattr(self._obj, name)

        class _Remote:
            @staticmethod
            async def remote(*args):
                return method(*args)
        return _Remote


def bench_decoding(*, model: str | None = None, repeats: int = 5, workspace: Workspace | None = None) -> dict:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from benchmarks.eval import pick_model
    from services.decoding_api import router
    from services.inspector import Inspector
    from services.prompts.templates import count_curated

    ws = workspace or Workspace.resolve()
    model_id = pick_model(ws, model)
    inspector = Inspector.func_or_class(str(ws.root))
    ours, tokenizer = inspector._load(model_id)
    ids = tokenizer.encode(PROMPT)
    figures = {"model": model_id, "prompt_tokens": len(ids), "new_tokens": NEW,
               **parity(ours, ws.model(model_id), ids)}
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.state.inspector = InProcessHandle(inspector)
    client = TestClient(app)

    def post(strategies):
        r = client.post("/api/decoding", json={"model": model_id, "prompt": PROMPT, "max_new_tokens": NEW,
                                               "strategies": strategies, "ignore_eos": True})
        r.raise_for_status()
        return r.json()

    beam = [{"name": "beam4", "strategy": "beam", "num_beams": 4}]
    tree = post(beam)["strategies"][0]["tree"]
    rows = torch.tensor([ids] * 4)
    figures |= {
        "ms_beam4_32_tokens": _median_ms(lambda: post(beam), repeats),
        "beam4_tree_nodes": len(tree), "beam4_tree_steps": max(n["step"] for n in tree),
        "ms_sampling_compare": _median_ms(lambda: post(COMPARED), repeats),
        "ms_plain_generate_4x32": _median_ms(lambda: ours.generate(rows, NEW, temperature=0), repeats),
    }
    figures |= {"beam_vs_plain_ratio": round(figures["ms_beam4_32_tokens"] / figures["ms_plain_generate_4x32"], 2),
                "goal_ms": 100, "goal_met": figures["ms_beam4_32_tokens"] < 100,
                "templates": count_curated(), "templates_goal_met": count_curated() >= 20,
                "torch_threads": torch.get_num_threads(), "repeats": repeats, "machine": machine()}
    print(f"\n{model_id}: greedy matches transformers {figures['greedy_matches_hf']}, beam-4 matches "
          f"{figures['beam_matches_hf']} (score difference {figures['beam_score_abs_diff']:.1e})")
    print(f"  beam-4 tree of {NEW} tokens ({len(tree)} nodes) through the API: {figures['ms_beam4_32_tokens']} ms "
          f"(goal < 100 ms: {'met' if figures['goal_met'] else 'missed'}); the model's own generate on 4 rows: "
          f"{figures['ms_plain_generate_4x32']} ms; four strategies side by side: {figures['ms_sampling_compare']} ms")
    print(f"  {figures['templates']} curated prompt templates (goal >= 20)")
    emit("decoding", figures)
    return figures
