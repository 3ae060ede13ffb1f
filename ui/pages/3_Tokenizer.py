"""The tokenizer lab: see how text becomes tokens, why, and what it costs.

Inspect (coloured tokens, ids, bytes, the merge behind each BPE token, a word's merges
replayed), compare 2-4 tokenizers, corpus statistics, a cost estimate, and training a
new tokenizer as a Ray job. All through /api/tokenizers (see services/tokenizer_api.py).
"""


import pandas as pd
import streamlit as st

from ui.client import ApiError, PlaygroundClient
from ui.format import token_html, visible
from ui.widgets import call, follow_job

st.set_page_config(page_title="Tokenizer · LLM Playground", page_icon="🔤", layout="wide")
client = PlaygroundClient()
st.title("🔤 Tokenizer lab")

SAMPLE = "Tokenizers split text into pieces: \"unbelievable\" -> un-believ-able? Prices: $4.99, 2026-11-21. 東京 🙂"

try:
    tokenizers = client.tokenizers()
except ApiError as e:
    st.error(str(e))
    st.stop()

names = [t["name"] for t in tokenizers]
described = {t["name"]: f"{t['name']}  ({t['model']}, {t['trainer']}, {t['vocab_size']:,} tokens)" for t in tokenizers}


def pick(label: str, key: str) -> str | None:
    return st.selectbox(label, names, key=key, format_func=lambda n: described.get(n, n))


tab_inspect, tab_compare, tab_stats, tab_cost, tab_train = st.tabs(
    ["Inspect", "Compare", "Statistics", "Cost", "Train"])

# ---- inspect ---------------------------------------------------------------------------
with tab_inspect:
    if not names:
        st.info("No tokenizer yet: train one in the **Train** tab (or run `make demo`).")
    else:
        name = pick("Tokenizer", "tok_inspect_name")
        text = st.text_area("Text", SAMPLE, key="tok_inspect_text", height=100)
        if st.button("Tokenize", key="tok_inspect_go", type="primary") or st.session_state.get("tok_inspected"):
            st.session_state["tok_inspected"] = True
            out = call(client.encode, name, text)
            if out:
                a, b, c = st.columns(3)
                a.metric("Tokens", f"{out['n_tokens']:,}")
                b.metric("Characters", f"{out['n_chars']:,}")
                c.metric("Characters per token", f"{out['n_chars'] / max(out['n_tokens'], 1):.2f}")
                st.markdown(token_html(out["tokens"]), unsafe_allow_html=True)
                st.caption("Hover a token for its id and bytes. · is a space, ↵ a newline.")
                rows = [{"#": t["index"], "id": t["id"], "token": t["piece"], "text": visible(t["text"]),
                         "bytes": t["bytes"], "special": t["is_special"], "fallback": t["is_fallback"],
                         "made by merge": (f"{t['merge']['left_piece']} + {t['merge']['right_piece']} "
                                           f"(rank {t['merge']['rank']})") if t.get("merge") else ""}
                        for t in out["tokens"]]
                st.dataframe(pd.DataFrame(rows), hide_index=True, key="tok_inspect_table")
                if out.get("truncated"):
                    st.caption(f"Showing the first {len(rows):,} tokens.")

        st.subheader("Replay the merges on a word")
        word = st.text_input("Word (one pre-tokenized piece, e.g. ' believable')", " unbelievable",
                             key="tok_replay_word")
        if st.button("Replay", key="tok_replay_go"):
            out = call(client.replay, name, word)
            if out:
                st.dataframe(pd.DataFrame([
                    {"step": i, "merge": (f"{s['merge']['left_piece']} + {s['merge']['right_piece']} "
                                          f"(rank {s['merge']['rank']})") if s.get("merge") else "bytes",
                     "tokens": " | ".join(s["pieces"])} for i, s in enumerate(out["steps"])]), hide_index=True)

# ---- compare ---------------------------------------------------------------------------
with tab_compare:
    chosen = st.multiselect("Tokenizers (2 to 4)", names, default=names[:2], max_selections=4,
                            key="tok_compare_names", format_func=lambda n: described.get(n, n))
    text = st.text_area("Text", SAMPLE, key="tok_compare_text", height=100)
    if st.button("Compare", key="tok_compare_go", type="primary"):
        out = call(client.compare, chosen, text)
        if out:
            st.dataframe(pd.DataFrame([{"tokenizer": r["name"], "model": r["model"], "vocab": r["vocab_size"],
                                        "tokens": r["n_tokens"], "chars/token": r["chars_per_token"],
                                        "× fewest": r["vs_fewest"]} for r in out["tokenizers"]]), hide_index=True)
            for r in out["tokenizers"]:
                st.markdown(f"**{r['name']}**: {r['n_tokens']:,} tokens")
                st.markdown(token_html([{"id": i, "text": t, "bytes": ""} for i, t in zip(r["ids"], r["texts"])]),
                            unsafe_allow_html=True)


def corpus_source(prefix: str, allow_dataset: bool) -> dict | None:
    """A text, an uploaded file, or (optionally) a registered dataset, as API source fields."""
    kinds = ["Text", "Upload a file"] + (["Dataset"] if allow_dataset else [])
    kind = st.radio("Corpus", kinds, horizontal=True, key=f"{prefix}_kind")
    if kind == "Text":
        return {"text": st.text_area("Text", SAMPLE, key=f"{prefix}_text", height=100)}
    if kind == "Upload a file":
        f = st.file_uploader("UTF-8 text file", type=["txt", "md", "jsonl", "csv", "py"], key=f"{prefix}_file")
        if f is None:
            return None
        up = call(client.upload, f.name, f.getvalue())
        return {"upload": up["upload"]} if up else None
    sets = call(client.datasets) or []
    if not sets:
        st.info("No registered dataset yet (`playground data prepare`).")
        return None
    return {"dataset": st.selectbox("Dataset", [d["id"] for d in sets], key=f"{prefix}_dataset")}


# ---- statistics ------------------------------------------------------------------------
with tab_stats:
    if names:
        name = pick("Tokenizer", "tok_stats_name")
        source = corpus_source("tok_stats", allow_dataset=True)
        if st.button("Compute statistics", key="tok_stats_go", type="primary") and source:
            out = call(client.token_stats, name, **source)
            if out:
                cols = st.columns(5)
                cols[0].metric("Tokens", f"{out['n_tokens']:,}")
                cols[1].metric("Fertility (tokens/word)", f"{out['fertility']:.2f}")
                cols[2].metric("Characters per token", f"{out['chars_per_token']:.2f}")
                cols[3].metric("Vocabulary used", f"{out['vocab_coverage']:.1%}")
                cols[4].metric("Byte fallback", f"{out['byte_fallback_rate']:.2%}")
                st.caption(f"Byte fallback here means: {out['byte_fallback_definition']}.")
                st.dataframe(pd.DataFrame([{"id": t["id"], "token": t["piece"], "text": visible(t["text"]),
                                            "count": t["count"], "share": t["share"]} for t in out["top_tokens"]]),
                             hide_index=True)

# ---- cost ------------------------------------------------------------------------------
with tab_cost:
    info = call(client.tokenizer_presets)
    if names and info:
        name = pick("Tokenizer", "tok_cost_name")
        source = corpus_source("tok_cost", allow_dataset=False)
        st.caption(f"Prices: {info['note']}. Edit the table, add or remove rows.")
        presets = st.data_editor(pd.DataFrame(info["presets"]), num_rows="dynamic", key="tok_cost_presets",
                                 hide_index=True)
        if st.button("Estimate cost", key="tok_cost_go", type="primary") and source:
            rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                    for r in presets.to_dict("records") if r.get("name")]
            out = call(client.cost, name, presets=rows, **source)
            if out:
                st.metric("Tokens", f"{out['n_tokens']:,}")
                st.dataframe(pd.DataFrame(out["presets"]), hide_index=True)

# ---- train -----------------------------------------------------------------------------
with tab_train:
    st.write("Train a tokenizer on an uploaded file or a registered dataset. It runs as a Ray job "
             "(see it in the Ray dashboard) and appears in the lists above when done.")
    source = corpus_source("tok_train", allow_dataset=True)
    c1, c2, c3, c4 = st.columns(4)
    trainer = c1.selectbox("Trainer", ["scratch", "hf"], key="tok_train_trainer",
                           help="scratch: our BPE (training/tokenizers/bpe), merge-for-merge equal to Hugging Face's; "
                                "hf: the `tokenizers` library")
    model = c2.selectbox("Model", ["bpe"] if trainer == "scratch" else ["bpe", "wordpiece", "unigram"],
                         key="tok_train_model")
    vocab_size = c3.number_input("Vocabulary size", 1, 1_000_000, 1024, key="tok_train_vocab")
    min_frequency = c4.number_input("Min pair frequency", 1, 1_000_000, 2, key="tok_train_minfreq")
    new_name = st.text_input("Name (optional)", key="tok_train_name")
    if st.button("Train", key="tok_train_go", type="primary"):
        if source is None or "text" in source:
            st.error("Choose a file to upload or a dataset to train on.")
        else:
            job = call(client.train_tokenizer, source, trainer=trainer, model=model, vocab_size=int(vocab_size),
                       min_frequency=int(min_frequency), name=new_name or None)
            if job:
                st.session_state["tok_train_job"] = job["job_id"]
    follow_job("tok_train_job", client.tokenizer_job,
               lambda s: f"merges {s['progress']['done']:,}/{s['progress']['total']:,}",
               lambda s: f"Trained {s['tokenizer']}. It is now in the lists above.", "Training failed")
