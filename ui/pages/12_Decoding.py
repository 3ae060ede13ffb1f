"""The decoding lab: the same prompt through several decoding strategies, side by side, and why each
chose what it chose.

- Up to four columns, each greedy, sampling (temperature, top-k, top-p, min-p, penalties, a seed) or
  beam search (width, length penalty, early stopping). Seeds make a difference come from the strategy.
- For every step of a sampling column: the next-token distribution raw and after each processor in
  turn, the chosen token in red, and the entropy of each stage.
- For beam search: the whole tree, pruned branches included, with cumulative log-probabilities; the
  returned path in red; the final beams and their scores.
- "Served": the same prompt through vLLM (its top logprobs and its own beam search), to check that
  the engine decodes the way the lesson says.

Only HTTP, through `ui.client` (GET /api/models, POST /api/decoding). The lecture: docs/concepts/decoding.md.
"""

import streamlit as st

from ui.client import PlaygroundClient
from ui.format import readable
from ui.format_decoding import (
    agreement_text,
    beam_tree_figure,
    beams_frame,
    served_frame,
    stages_figure,
    stages_frame,
    tokens_markdown,
)
from ui.widgets import call

st.set_page_config(page_title="Decoding · LLM Playground", page_icon="🎲", layout="wide")
client = PlaygroundClient()
st.title("🎲 Decoding lab")
st.caption("A model gives a distribution over the next token; a decoding strategy turns it into text. Same "
           "model, same prompt: only the strategy differs. The lecture: docs/concepts/decoding.md.")

models = call(client.models)
if models is None:
    st.stop()
if not models:
    st.info("No exported models yet: `make demo` makes one.")
    st.stop()

KINDS = ["greedy", "sample", "beam"]
DEFAULTS = ["greedy", "sample", "beam", "sample"]


def strategy_form(i: int, col) -> dict:
    kind = col.selectbox("Strategy", KINDS, index=KINDS.index(DEFAULTS[i]), key=f"dec_kind_{i}")
    s = {"name": col.text_input("Label", f"{kind}-{i + 1}", key=f"dec_name_{i}"), "strategy": kind}
    if kind == "sample":
        s["temperature"] = col.slider("Temperature", 0.0, 2.0, 1.0, 0.05, key=f"dec_temp_{i}")
        k = col.number_input("Top-k (0 = off)", 0, 1000, 0, key=f"dec_topk_{i}")
        s["top_k"] = int(k) or None
        p = col.slider("Top-p (1 = off)", 0.05, 1.0, 1.0, 0.05, key=f"dec_topp_{i}")
        s["top_p"] = p if p < 1 else None
        m = col.slider("Min-p (0 = off)", 0.0, 0.5, 0.0, 0.01, key=f"dec_minp_{i}")
        s["min_p"] = m or None
        s["seed"] = int(col.number_input("Seed", 0, 2**31 - 1, i, key=f"dec_seed_{i}"))
    if kind in ("greedy", "sample"):
        s["repetition_penalty"] = col.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05, key=f"dec_rep_{i}")
    if kind == "beam":
        s["num_beams"] = int(col.number_input("Width", 1, 8, 4, key=f"dec_beams_{i}"))
        s["length_penalty"] = col.slider("Length penalty", -2.0, 3.0, 1.0, 0.1, key=f"dec_lp_{i}")
        s["early_stopping"] = col.selectbox("Early stopping", [False, True, "never"], key=f"dec_es_{i}")
    return s


with st.form("dec_form"):
    c1, c2 = st.columns([3, 1])
    ids = [m["id"] for m in sorted(models, key=lambda m: not m.get("deployed"))]  # served first: the served column
    model = c1.selectbox("Model", ids, key="dec_model",
                         format_func=lambda i: i + ("  (served)" if any(m["id"] == i and m.get("deployed")
                                                                        for m in models) else ""))
    new = c2.number_input("New tokens", 1, 128, 24, key="dec_new")
    prompt = st.text_area("Prompt", "Once upon a time", key="dec_prompt", height=80)
    n = st.radio("Strategies side by side", [1, 2, 3, 4], index=2, horizontal=True, key="dec_n")
    cols = st.columns(int(n))
    strategies = [strategy_form(i, col) for i, col in enumerate(cols)]
    served = st.checkbox("Also through the served model (vLLM: its top logprobs and its own beam search)",
                         key="dec_served")
    go = st.form_submit_button("Decode", type="primary")

if go:
    out = call(client.decoding, {"model": model, "prompt": prompt, "max_new_tokens": int(new),
                                 "strategies": strategies, "served": served})
    if out is not None:
        st.session_state["dec_out"] = out

out = st.session_state.get("dec_out")
if out:
    st.caption(f"{len(out['prompt_tokens'])} prompt tokens; decoded in {out['ms']:.0f} ms by the Inspector "
               f"({out.get('api_ms', out['ms']):.0f} ms through the API).")
    columns = st.columns(len(out["strategies"]))
    for i, (col, c) in enumerate(zip(columns, out["strategies"], strict=True)):
        col.subheader(c["name"])
        col.markdown(f"**{c['text'] or '(nothing)'}**")
        if c["strategy"] != "beam":
            col.markdown(tokens_markdown(c))
            if c["steps"]:
                k = col.slider("Step", 1, len(c["steps"]), 1, key=f"dec_step_{i}")
                step = c["steps"][k - 1]
                col.plotly_chart(stages_figure(step), key=f"dec_fig_{i}")
                with col.expander("The numbers"):
                    st.dataframe(readable(stages_frame(step)), hide_index=True)
        else:
            col.dataframe(readable(beams_frame(c)), hide_index=True)
    for c in out["strategies"]:
        if c["strategy"] == "beam":
            st.subheader(f"Beam search tree: {c['name']}")
            st.caption(f"{len(c['tree']) - 1} tokens considered; kept (green) continue as beams, pruned (grey) were "
                       "outranked, finished (blue) ended; the returned text in red.")
            st.plotly_chart(beam_tree_figure(c), key=f"dec_tree_{c['name']}")
    if "served" in out:
        st.subheader("Served (vLLM)")
        if "error" in out["served"]:
            st.warning(out["served"]["error"])
        else:
            verdict = agreement_text(out)
            if verdict:
                st.info(verdict)
            st.markdown(f"vLLM greedy: **{out['served']['greedy']['text']}**")
            st.dataframe(readable(served_frame(out["served"])), hide_index=True)
            for name, b in (out["served"].get("beams") or {}).items():
                st.markdown(f"vLLM beam search ({name}): " + (b.get("error") or " | ".join(b["texts"])))
