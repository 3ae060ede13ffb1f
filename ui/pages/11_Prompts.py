"""Prompts: a library of templates to fill, version and compare.

- Library: curated templates by category (classification, summarization, question answering,
  extraction, rewriting, chain of thought, dialogue) and your own; fill the variables from a form,
  see the prompt and its length in tokens; edit and save a new version, see what changed between
  two versions, revert to an old one.
- Few-shot: a prompt with k solved examples from a dataset or pasted rows, picked at random or by
  similarity to the input, with its token count.
- A/B test: two templates (or two versions) on a labelled set, answered by a served model; the
  accuracy of each with its 95% interval and a paired test's verdict.

Like every page it only talks HTTP through `ui.client` (/api/prompts/..., /api/models).
"""

import json

import pandas as pd
import streamlit as st
import yaml

from ui.client import PlaygroundClient
from ui.format import readable
from ui.widgets import call

st.set_page_config(page_title="Prompts · LLM Playground", page_icon="📝", layout="wide")
client = PlaygroundClient()
st.title("📝 Prompts")
st.caption("A prompt template is a prompt with holes: {{variables}} you fill for each input. Every save is a "
           "new version, kept in the workspace; the curated templates are version 1 of their names.")

VIEWS = {"Library": "fill, edit, version", "Few-shot": "examples before the input",
         "A/B test": "which template is better?"}
view = st.radio("View", list(VIEWS), horizontal=True, key="pr_view", bind="query-params",
                captions=list(VIEWS.values()), label_visibility="collapsed")
WORDS = "(words, no tokenizer)"
SAMPLE_ROWS = "\n".join(json.dumps(r) for r in [
    {"review": "Great screen, and the battery lasts for days.", "answer": "positive"},
    {"review": "It broke after a week and support never replied.", "answer": "negative"},
    {"review": "It does what it says. Nothing more.", "answer": "neutral"}])


def _label(category: str) -> str:
    return category.replace("_", " ")


def _models(served_only: bool) -> list[str] | None:
    models = call(client.models)
    return None if models is None else [m["id"] for m in models if m.get("deployed") or not served_only]


def _flash() -> None:
    if msg := st.session_state.pop("pr_flash", None):
        st.success(msg)


def _pick_version(name: str, history: list[dict], key: str, label: str = "Version") -> int:
    """A version of `name`, newest first; a save or revert just made moves it to the new one."""
    versions = [h["version"] for h in history][::-1]
    pending = st.session_state.pop("pr_pending", None)
    if pending and pending[0] == name:
        st.session_state[key] = pending[1]
    notes = {h["version"]: h.get("note") or h["source"] for h in history}
    return st.selectbox(label, versions, key=key, format_func=lambda v: f"v{v} · {notes[v]}")


def _pick_template(templates: list[dict], key: str, label: str = "Template") -> str:
    titles = {t["name"]: t["title"] or t["name"] for t in templates}
    return st.selectbox(label, list(titles), key=key, format_func=lambda n: f"{titles[n]} ({n})")


def render_form(detail: dict) -> None:
    name, version = detail["name"], detail["version"]
    example = detail.get("example") or {}
    with st.form(f"pr_fill_{name}_{version}"):
        values = {var: st.text_area(var, example.get(var) or spec.get("default") or "", key=f"pr_var_{name}_{var}",
                                    help=spec.get("description") or None, height=80)
                  for var, spec in detail["variables"].items()}
        models = _models(served_only=False) or []
        model = st.selectbox("Count tokens with", [WORDS, *models], key="pr_tok_model")
        if st.form_submit_button("Render", type="primary"):
            out = call(client.prompt_render, name, values, version, None if model == WORDS else model)
            st.session_state["pr_rendered"] = out
    out = st.session_state.get("pr_rendered")
    if out and (out["name"], out["version"]) == (name, version):
        if out["system"]:
            st.markdown("**System prompt**")
            st.code(out["system"], language=None, wrap_lines=True)
        st.markdown("**Message**")
        st.code(out["text"], language=None, wrap_lines=True)
        st.caption(f"{out['tokens']} tokens · counted as {out['tokenizer']}")


def edit_form(detail: dict) -> None:
    name, version = detail["name"], detail["version"]
    k = f"{name}_{version}"
    st.caption("Saving never overwrites: it adds a version. Save under another name to start a new template.")
    c1, c2, c3 = st.columns(3)
    new_name = c1.text_input("Name", name, key=f"pr_edit_name_{k}")
    title = c2.text_input("Title", detail["title"], key=f"pr_edit_title_{k}")
    categories = ["classification", "summarization", "question_answering", "extraction", "rewriting",
                  "chain_of_thought", "dialogue", "other"]
    category = c3.selectbox("Category", categories, index=categories.index(detail["category"]),
                            key=f"pr_edit_category_{k}", format_func=_label)
    system = st.text_area("System prompt (optional)", detail.get("system") or "", key=f"pr_edit_system_{k}")
    template = st.text_area("Template", detail["template"], key=f"pr_edit_template_{k}", height=200)
    variables = st.text_area("Variables (YAML: name: {description, default})",
                             yaml.safe_dump(detail["variables"], sort_keys=False), key=f"pr_edit_vars_{k}")
    when = st.text_area("When it helps", detail.get("when_it_helps") or "", key=f"pr_edit_when_{k}")
    note = st.text_input("What changed (note)", key=f"pr_edit_note_{k}")
    if not st.button("Save as a new version", key="pr_save"):
        return
    try:
        parsed = yaml.safe_load(variables) or {}
    except yaml.YAMLError as e:
        st.error(f"variables: not valid YAML ({str(e).splitlines()[0]})")
        return
    body = {"name": new_name.strip(), "title": title, "category": category, "template": template,
            "system": system or None, "variables": parsed, "when_it_helps": when,
            "example": {v: x for v, x in (detail.get("example") or {}).items() if v in (parsed or {})} or None}
    saved = call(client.prompt_save, body, note)
    if saved is not None:
        st.session_state["pr_flash"] = f"Saved {saved['name']} version {saved['version']}."
        st.session_state["pr_pending"] = (saved["name"], saved["version"])
        st.rerun()


def versions_panel(detail: dict) -> None:
    name, history = detail["name"], detail["history"]
    st.dataframe(readable(pd.DataFrame(history)), hide_index=True)
    if len(history) < 2:
        st.caption("Only one version so far: save an edit to compare two.")
        return
    numbers = [h["version"] for h in history]
    c1, c2 = st.columns(2)
    a = c1.selectbox("From version", numbers, index=len(numbers) - 2, key=f"pr_diff_a_{name}_{len(numbers)}")
    b = c2.selectbox("To version", numbers, index=len(numbers) - 1, key=f"pr_diff_b_{name}_{len(numbers)}")
    d = call(client.prompt_diff, name, a, b)
    if d is not None:
        if d["changed"]:
            st.caption(f"Changed: {', '.join(d['fields'])}")
            st.code(d["diff"], language="diff")
        else:
            st.caption(f"v{a} and v{b} have the same content.")
    c1, c2 = st.columns([1, 2])
    old = c1.selectbox("Revert to", numbers[:-1][::-1], key=f"pr_revert_v_{name}_{len(numbers)}")
    c2.caption("Reverting saves that version's content as a new version; nothing is deleted.")
    if c2.button(f"Revert to v{old}", key="pr_revert"):
        out = call(client.prompt_revert, name, old)
        if out is not None:
            st.session_state["pr_flash"] = f"Reverted {name} to v{old}: saved as version {out['version']}."
            st.session_state["pr_pending"] = (name, out["version"])
            st.rerun()


def library_view() -> None:
    _flash()
    templates = call(client.prompt_templates)
    if not templates:
        return
    categories = ["all", *sorted({t["category"] for t in templates})]
    if pending := st.session_state.get("pr_pending"):  # show what was just saved (its version: _pick_version)
        st.session_state["pr_category"], st.session_state["pr_name"] = "all", pending[0]
    category = st.selectbox("Category", categories, key="pr_category", format_func=_label)
    shown = [t for t in templates if category == "all" or t["category"] == category]
    name = _pick_template(shown, "pr_name")
    latest = call(client.prompt_template, name)
    if latest is None:
        return
    version = _pick_version(name, latest["history"], f"pr_version_{name}")
    detail = latest if version == latest["version"] else call(client.prompt_template, name, version)
    if detail is None:
        return
    detail["history"] = latest["history"]
    origin = "curated" if detail["source"] == "curated" else f"saved {detail.get('created_at') or ''}"
    st.caption(f"{_label(detail['category'])} · version {version} of {latest['version']} · {origin}")
    if detail.get("when_it_helps"):
        st.info(f"**When it helps.** {detail['when_it_helps']}")
    fill, edit, versions = st.tabs(["Fill", "Edit and save", "Versions"])
    with fill:
        render_form(detail)
    with edit:
        edit_form(detail)
    with versions:
        versions_panel(detail)


def _rows(text: str, field: str) -> list[dict] | None:
    rows = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                st.error(f"{field}: line {i + 1} is not a JSON object")
                return None
    return rows


def fewshot_view() -> None:
    st.caption("Solved examples before the input show the model the task and the format of the answer. "
               "'similar' picks the examples closest to the input (TF-IDF cosine), nearest last.")
    source = st.radio("Examples from", ["Dataset", "Pasted rows"], horizontal=True, key="fs_source")
    params: dict = {}
    if source == "Dataset":
        datasets = call(client.prompt_datasets)
        if not datasets:
            st.info("No dataset with JSONL splits in the workspace: paste rows instead.")
            return
        by_id = {d["id"]: d for d in datasets}
        c1, c2 = st.columns(2)
        ds = c1.selectbox("Dataset", list(by_id), key="fs_dataset")
        split = c2.selectbox("Split", by_id[ds]["splits"], key=f"fs_split_{ds}")
        st.caption(f"Fields: {', '.join(by_id[ds]['fields'])}")
        params |= {"dataset": ds, "split": split}
    else:
        rows = _rows(st.text_area("Example rows (JSONL)", '{"instruction": "2 + 2?", "output": "4"}\n'
                                  '{"instruction": "3 + 5?", "output": "8"}', key="fs_rows"), "examples")
        if rows is None:
            return
        params["examples"] = rows
    c1, c2, c3, c4 = st.columns(4)
    params["input_field"] = c1.text_input("Input field(s)", "instruction", key="fs_in")
    params["output_field"] = c2.text_input("Output field", "output", key="fs_out")
    params["k"] = int(c3.number_input("Examples (k)", 1, 64, 3, key="fs_k"))
    params["seed"] = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="fs_seed"))
    params["method"] = st.radio("Pick", ["random", "similar"], horizontal=True, key="fs_method")
    params["instruction"] = st.text_input("Instruction (before the examples)", "Answer the question.",
                                          key="fs_instruction")
    query = st.text_area("Input", "What is 6 + 7?", key="fs_query")
    model = st.selectbox("Count tokens with", [WORDS, *(_models(served_only=False) or [])], key="fs_model")
    if st.button("Build the prompt", type="primary", key="fs_build"):
        out = call(client.prompt_fewshot, query, **params, model=None if model == WORDS else model)
        if out is not None:
            st.code(out["prompt"], language=None, wrap_lines=True)
            st.caption(f"{out['tokens']} tokens · counted as {out['tokenizer']} · {out['k']} of {out['pool']} "
                       f"examples, {out['method']}")
            st.dataframe(pd.DataFrame(out["examples"]), hide_index=True)


def ab_view() -> None:
    st.caption("Both templates fill each labelled row (JSONL: the variables and `answer`); the served model answers "
               "each prompt at temperature 0. Both answer the same rows, so the test is paired (McNemar).")
    templates = call(client.prompt_templates)
    served = _models(served_only=True)
    if not templates or served is None:
        return
    if not served:
        st.info("Serve a model first (Home page: deploy).")
        return
    sides = {}
    for side, col in zip(("a", "b"), st.columns(2), strict=True):
        with col:
            name = _pick_template(templates, f"ab_{side}_name", f"Template {side.upper()}")
            detail = call(client.prompt_template, name)
            if detail is None:
                return
            version = _pick_version(name, detail["history"], f"ab_{side}_version_{name}")
            st.caption(f"variables: {', '.join(detail['variables']) or 'none'}")
            sides[side] = {"name": name, "version": version}
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", served, key="ab_model")
    metric = c2.radio("Right when the answer", ["exact_match", "contains"], horizontal=True, key="ab_metric",
                      format_func=lambda m: {"exact_match": "matches exactly", "contains": "contains it"}[m])
    rows = _rows(st.text_area("Labelled rows (JSONL)", SAMPLE_ROWS, key="ab_rows", height=150), "items")
    if rows is None or not st.button("Run the A/B test", type="primary", key="ab_run"):
        return
    out = call(client.prompt_ab_test, sides["a"], sides["b"], model, items=rows, metric=metric)
    if out is None:
        return
    cols = st.columns(2)
    for side, col in zip(("a", "b"), cols, strict=True):
        r, ci = out[side], out[side]["ci95"]
        col.metric(f"{side.upper()}: {r['name']} v{r['version']}", f"{100 * r['accuracy']:.0f}%",
                   help="accuracy on the rows")
        col.caption(f"{r['correct']} of {out['n']} right · 95% interval {100 * ci[0]:.0f}-{100 * ci[1]:.0f}%")
    significant = (out["comparison"].get("mcnemar") or {}).get("p_value", 1.0) < 0.05
    (st.success if significant else st.info)(out["verdict"])
    st.dataframe(pd.DataFrame([{"row": it["index"], "answer": it["answer"], "A": it["a"]["prediction"],
                                "A right": it["a"]["correct"], "B": it["b"]["prediction"],
                                "B right": it["b"]["correct"]} for it in out["items"]]), hide_index=True)


{"Library": library_view, "Few-shot": fewshot_view, "A/B test": ab_view}[view]()
