"""The decoding lab, the prompt library and the chat against the live stack (conftest.py `stack`: vLLM on
Ray Serve and the playground API): /api/decoding through the Inspector deployment with vLLM's served
column, and the Decoding, Prompts and Chat pages in headless Chromium (tiny-b deployed beside tiny-a
for the side-by-side chat). The models are random weights: the tests check the plumbing."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_decoding_through_the_inspector_and_vllm(stack):
    base = stack["base"]
    r = httpx.post(f"{base}/api/decoding", timeout=120, json={
        "model": "tiny-a", "prompt": "Once upon a time", "max_new_tokens": 8, "served": True, "ignore_eos": True,
        "strategies": [{"name": "greedy", "strategy": "greedy"}, {"name": "beam", "strategy": "beam", "num_beams": 3}]})
    assert r.status_code == 200, r.text
    out = r.json()
    greedy, beam = out["strategies"]
    assert len(greedy["steps"]) == 8 and {n["status"] for n in beam["tree"]} >= {"kept", "pruned"}
    served = out["served"]
    assert "error" not in served, served
    # Same weights in float32 on both sides: vLLM's greedy text is the lesson's.
    assert served["greedy"]["text"] == greedy["text"]
    assert len(served["greedy"]["steps"]) == 8 and all(len(s["top"]) >= 1 for s in served["greedy"]["steps"])
    # vLLM's own beam search (use_beam_search, n = the width) finds the lesson's best beam.
    assert served["beams"]["beam"]["texts"][0] == beam["text"], (served["beams"], beam["text"])
    bad = httpx.post(f"{base}/api/decoding", timeout=30, json={"model": "tiny-a", "prompt": "x",
                                                               "strategies": [{"strategy": "beam", "num_beams": 9}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "strategies.0.num_beams"


def test_browser_decoding_prompts_and_chat(stack, tiny_b_served, tmp_path):
    from lab_browser import check_lab_pages
    from serve_helpers import free_port

    base = stack["base"]
    out = check_lab_pages(base, free_port(), tmp_path)
    assert not out["errors"], out["errors"]
    text = out["decoding_text"]
    assert "Beam search tree: beam-3" in text and "greedy-1" in text and out["decoding_charts"] >= 2
    assert "counted as" in out["prompts_text"]
    assert "tiny-a" in out["compare_text"] and "tiny-b" in out["compare_text"]  # both answered, side by side
    assert "branch 2 of 2" in out["branch_text"] and "Tell me about the hills" in out["branch_text"]
    assert "branch 1 of 2" in out["switched_text"] and "Tell me about the hills" not in out["switched_text"]
    assert all("Traceback" not in out[k] for k in ("decoding_text", "prompts_text", "compare_text", "branch_text"))
