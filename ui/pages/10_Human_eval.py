"""Human evaluation: blind side-by-side votes, 1-5 ratings, and the leaderboard people make.

- Compare: two served models answer the same prompt, shown as Left and Right in random order and
  without their names; the rater picks left, right, tie or both bad, then sees who was who.
- Rate: one model's answer, scored 1 (bad) to 5 (excellent); several raters can rate the same answer.
- Leaderboard: Bradley-Terry ratings with bootstrap 95% intervals and Chatbot Arena's ranks (models
  whose intervals overlap share a rank), the mean 1-5 score, and how far raters agree (Fleiss'
  kappa, per item set); every vote and rating as JSON.

Like every page it only talks HTTP through `ui.client` (/api/human/..., /api/models).
"""

import json

import pandas as pd
import streamlit as st

from ui.client import PlaygroundClient
from ui.format import readable
from ui.widgets import call

st.set_page_config(page_title="Human eval · LLM Playground", page_icon="🧑‍⚖️", layout="wide")
client = PlaygroundClient()
st.title("🧑‍⚖️ Human evaluation")
st.caption("Numbers from benchmarks miss what people notice. Here people judge answers blind, and their votes "
           "become ratings with intervals. Votes are stored in the workspace (SQLite), one per rater per item.")

VIEWS = {"Compare": "blind A/B vote", "Rate": "score one answer 1-5", "Leaderboard": "ratings and agreement"}
view = st.radio("View", list(VIEWS), horizontal=True, key="he_view", bind="query-params",
                captions=list(VIEWS.values()), label_visibility="collapsed")
c1, c2 = st.columns(2)
rater = c1.text_input("Your name (rater)", key="he_rater")
set_name = c2.text_input("Item set", "default", key="he_set")


def _served() -> list[str] | None:
    models = call(client.models)
    return None if models is None else [m["id"] for m in models if m.get("deployed")]


def compare_view() -> None:
    served = _served()
    if served is None:
        return
    if len(served) < 2:
        st.info("Serve two models to compare them (Home page: deploy), e.g. a base model and its fine-tuned copy.")
        return
    m1, m2 = st.columns(2)
    a = m1.selectbox("Model 1", served, key="he_a")
    b = m2.selectbox("Model 2", [m for m in served if m != a], key="he_b")
    prompt = st.text_area("Prompt", "What is the capital of Varnia?", key="he_prompt")
    if st.button("Ask both", type="primary", key="he_ask"):
        shown = call(client.human_compare, prompt, [a, b], set_name or "default", max_tokens=64)
        if shown is not None:
            st.session_state["he_shown"] = shown
            st.session_state.pop("he_voted", None)
    shown = st.session_state.get("he_shown")
    if not shown:
        return
    left, right = st.columns(2)
    left.markdown("**Left**")
    left.info(shown["left"] or "(empty answer)")
    right.markdown("**Right**")
    right.info(shown["right"] or "(empty answer)")
    voted = st.session_state.get("he_voted")
    if voted:
        st.success(f"Left was **{voted['left_model']}**, right was **{voted['right_model']}**. Your vote: "
                   f"{voted['choice_shown'].replace('_', ' ')}" + (" (it replaced your earlier one)." if voted["replaced"]
                                                                    else "."))
        return
    cols = st.columns(4)
    for col, (choice, label) in zip(cols, [("left", "Left is better"), ("right", "Right is better"),
                                          ("tie", "Tie"), ("both_bad", "Both bad")], strict=True):
        if col.button(label, key=f"he_vote_{choice}"):
            out = call(client.human_vote, shown["comparison_id"], rater, choice)
            if out is not None:
                st.session_state["he_voted"] = out
                st.rerun()


def rate_view() -> None:
    served = _served()
    if served is None:
        return
    if not served:
        st.info("Serve a model first (Home page: deploy).")
        return
    model = st.selectbox("Model", served, key="he_model")
    prompt = st.text_area("Prompt", "Who helped Mia find the kite?", key="he_rate_prompt")
    if st.button("Get an answer", key="he_get"):
        item = call(client.human_answer, prompt, model, set_name or "default", max_tokens=64)
        if item is not None:
            st.session_state["he_item"] = item
    item = st.session_state.get("he_item")
    if not item:
        return
    st.info(item["answer"] or "(empty answer)")
    score = st.slider("Score", 1, 5, 3, key="he_score", help="1 bad, 3 acceptable, 5 excellent")
    if st.button("Submit rating", key="he_rate"):
        out = call(client.human_rate, item["item_id"], rater, score)
        if out is not None:
            st.success(f"Rated {score}/5 (the model was {out.get('model', '?')}).")


def leaderboard_view() -> None:
    board = call(client.human_leaderboard, set_name or None)
    if board is None:
        return
    if not board["models"]:
        st.info("No votes or ratings yet.")
        return
    rows = [{"rank": m["rank"], "model": m["model"], "rating": m["rating"],
             "95% CI": f"{m['ci95'][0]:.0f}-{m['ci95'][1]:.0f}" if m.get("ci95") else "",
             "wins": m["wins"], "losses": m["losses"], "ties": m["ties"], "both bad": m["both_bad"],
             "battles": m["battles"], "mean score (1-5)": m["mean_score"], "rated answers": m["n_items"]}
            for m in board["models"]]
    st.caption("Ratings on the Elo-like scale of Chatbot Arena (mean 1000), from a Bradley-Terry fit of the votes; "
               "a tie counts half a win each way, as does 'both bad'. Models whose intervals overlap share a rank.")
    st.dataframe(readable(pd.DataFrame(rows)), hide_index=True)
    agreement = [{"set": s["set"], "pairwise kappa": (s.get("pairwise_agreement") or {}).get("kappa"),
                  "rating kappa": (s.get("rating_agreement") or {}).get("kappa")} for s in board.get("sets", [])]
    if agreement:
        st.subheader("Do raters agree?")
        st.caption("Fleiss' kappa: 1 is full agreement, 0 is what chance alone gives.")
        st.dataframe(readable(pd.DataFrame(agreement)), hide_index=True)
    export = call(client.human_export)
    if export is not None:
        st.download_button("Download every vote and rating (JSON)", json.dumps(export, indent=1),
                           "human-eval.json", "application/json", key="he_export")


{"Compare": compare_view, "Rate": rate_view, "Leaderboard": leaderboard_view}[view]()
