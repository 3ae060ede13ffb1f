"""The data pipeline: what each cleaning stage removed and why, in numbers and in documents.

A snapshot's overview (documents, characters, words, tokens, splits), the removed-by-stage
table, length histograms, languages, duplicate clusters, a sample browser, the diff with
another snapshot, and running the pipeline as a Ray job. All through /api/data (see
services/data_api.py). Texts from the data are shown as text, never as Markdown or HTML.
"""


import altair as alt
import pandas as pd
import streamlit as st

from ui.client import ApiError, PlaygroundClient
from ui.format import histogram_rows, parse_sources, show_value, stage_rows
from ui.widgets import call, follow_job

st.set_page_config(page_title="Data · LLM Playground", page_icon="📚", layout="wide")
client = PlaygroundClient()
st.title("📚 Data")

STAGES = ("normalize", "language", "quality", "pii", "exact_dedup", "near_dedup")


UNITS = {"chars": "characters", "words": "words"}


def bars(rows: list[dict], x: str, y: str, color: str | None = None, sort: list | str = "x",
         dodge: bool = False) -> alt.Chart:
    """A bar chart of `y` per `x` (side by side per `color` when `dodge`)."""
    enc = {"x": alt.X(f"{x}:N", sort=sort, title=x), "y": alt.Y(f"{y}:Q", title=y),
           "tooltip": [alt.Tooltip(field=c) for c in (x, y, color) if c]}
    if color:
        enc["color"] = alt.Color(f"{color}:N")
    if dodge:
        enc["xOffset"] = alt.XOffset(f"{color}:N")
    return alt.Chart(pd.DataFrame(rows)).mark_bar().encode(**enc)


def run_form() -> None:
    """Sources, stage switches and knobs -> POST /api/data/jobs, then follow the job to its snapshot."""
    st.write("Runs `playground data run` as a Ray job (see it in the Ray dashboard); the new snapshot "
             "appears in the picker above when done.")
    files = st.file_uploader("Upload text files (each becomes an `upload:ID` source)", accept_multiple_files=True,
                             type=["txt", "md", "jsonl", "csv"], key="data_run_files")
    sources = st.text_area("Sources, one per line: `synthetic`, `upload:ID`, `snapshot:ID` or a path on the server",
                           "synthetic", key="data_run_sources", height=90)
    name = st.text_input("Name (the snapshot id's prefix)", "data", key="data_run_name")
    cols = st.columns(len(STAGES))
    enabled = {s: cols[i].toggle(s, True, key=f"data_run_{s}") for i, s in enumerate(STAGES)}
    c1, c2 = st.columns(2)
    threshold = c1.slider("Near-dedup Jaccard threshold", 0.5, 0.99, 0.8, 0.01, key="data_run_threshold")
    keep = c2.text_input("Languages to keep (ISO 639-1, comma-separated)", "en", key="data_run_keep")
    s1, s2, s3 = st.columns(3)
    split = {"train": s1.number_input("train", 0.01, 1.0, 0.9, 0.01, key="data_run_train"),
             "val": s2.number_input("val", 0.0, 0.99, 0.05, 0.01, key="data_run_val"),
             "test": s3.number_input("test", 0.0, 0.99, 0.05, 0.01, key="data_run_test")}
    if st.button("Run pipeline", key="data_run_go", type="primary"):
        uploads = [call(client.upload, f.name, f.getvalue()) for f in files or []]
        if all(uploads):
            stages = {s: {"enabled": on} for s, on in enabled.items()}
            stages["near_dedup"]["threshold"] = threshold
            stages["language"]["keep"] = [c.strip() for c in keep.split(",") if c.strip()]
            config = {"name": name, "sources": parse_sources(sources) + [f"upload:{u['upload']}" for u in uploads],
                      "stages": stages, "split": split}
            job = call(client.run_data_pipeline, config)
            if job:
                st.session_state["data_job"] = job["job_id"]
    follow_job("data_job", client.data_job,
               lambda s: f"{s['progress']['stage'] or 'starting'} {s['progress']['done']}/{s['progress']['total']}",
               lambda s: f"Made snapshot {s['snapshot']}. Pick it above (rerun the page to list it).",
               "The pipeline failed")


try:
    snaps = client.snapshots()
except ApiError as e:
    st.error(str(e))
    st.stop()

if not snaps:
    st.info("No snapshot yet. Make one with `playground data run --config configs/data/starter.yaml`, "
            "or run the pipeline here.")
    run_form()
    st.stop()

by_id = {s["id"]: s for s in snaps}
sid = st.selectbox("Snapshot (newest first)", list(by_id), key="data_snapshot",
                   format_func=lambda i: f"{i}  ({by_id[i]['created_at'][:16]}, {by_id[i]['docs_out']:,} documents)")
st.text(f"Parent: {by_id[sid]['parent'] or 'none'} · sources: {', '.join(by_id[sid]['sources'])}")
detail = call(client.snapshot, sid)
if detail is None:
    st.stop()
manifest, stats = detail["manifest"], detail["stats"]
stages = stats.get("stages", [])

tabs = st.tabs(["Overview", "Lengths & languages", "Duplicates", "Samples", "Diff", "Run pipeline"])

# ---- overview: totals, splits, removed by stage, PII -------------------------------------
with tabs[0]:
    totals = stats["totals"]
    cols = st.columns(5)
    for col, (label, value) in zip(cols, [("Documents kept", totals["docs"]), ("Characters", totals["chars"]),
                                          ("Words", totals["words"]), ("Tokens", totals.get("tokens")),
                                          ("Input documents", stats["input"]["docs"])]):
        col.metric(label, "n/a" if value is None else f"{value:,}")
    if totals.get("tokens") is None:
        st.caption("Tokens: set `stats.tokenizer` in the pipeline config to count them.")
    st.dataframe(pd.DataFrame([{"split": k, **v} for k, v in stats["splits"].items()]), hide_index=True,
                 key="data_splits")
    st.subheader("Removed by stage")
    rows = stage_rows(stages)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="data_stages")
    if rows:
        st.altair_chart(bars(rows, "stage", "removed", sort=[r["stage"] for r in rows]), width="stretch")
    pii = next((s for s in stages if s["stage"] == "pii"), None)
    if pii and pii.get("replaced"):
        st.subheader("Personal data replaced")
        st.dataframe(pd.DataFrame([{"kind": k, "replaced": n} for k, n in pii["replaced"].items()]),
                     hide_index=True, key="data_pii")
        st.caption(f"{pii.get('changed', 0):,} documents changed; the documents are kept, the values become "
                   "placeholders like <EMAIL>.")
    if stats.get("skipped_inputs"):
        st.caption("Skipped inputs:")
        st.dataframe(pd.DataFrame(stats["skipped_inputs"]), hide_index=True, key="data_skipped")

# ---- lengths and languages ---------------------------------------------------------------
with tabs[1]:
    for unit, hist in stats.get("histograms", {}).items():
        rows = histogram_rows(hist)
        if rows:
            st.markdown(f"**Length in {UNITS.get(unit, 'units')}**, kept vs removed (log-spaced bins: "
                        "each is wider than the one before)")
            st.altair_chart(bars(rows, "bin", "documents", color="status", dodge=True,
                                 sort=list(dict.fromkeys(r["bin"] for r in rows))), width="stretch")
    langs = stats.get("languages") or {}
    if langs:
        keep = set(manifest["config"]["stages"]["language"]["keep"])
        st.markdown("**Languages detected**")
        st.altair_chart(bars([{"language": k, "documents": n, "kept": k in keep} for k, n in langs.items()],
                             "language", "documents", color="kept", sort="-y"), width="stretch")

# ---- duplicate clusters ------------------------------------------------------------------
with tabs[2]:
    clusters = stats.get("dup_clusters") or []
    if not clusters:
        st.info("No duplicate clusters in this snapshot.")
    for c in clusters:
        kind = "exact" if c.get("kind") == "exact" else "near"
        with st.expander(f"{kind} duplicates · {int(c['size'])} documents · kept doc {int(c['kept'])}"):
            for ex in c.get("examples", []):
                st.text(f"doc {ex['doc_id']}" + ("  (kept)" if ex["doc_id"] == c["kept"] else ""))
                st.code(ex["text"], language=None, wrap_lines=True)

# ---- sample browser ----------------------------------------------------------------------
with tabs[3]:
    c1, c2, c3, c4 = st.columns(4)
    status = c1.radio("Status", ["all", "kept", "removed"], horizontal=True, key="data_s_status")
    stage = c2.selectbox("Stage", ["(any)"] + [s["stage"] for s in stages if s["removed"]], key="data_s_stage")
    reasons = sorted({r for s in stages if stage in ("(any)", s["stage"]) for r in s.get("reasons", {})})
    reason = c3.selectbox("Reason", ["(any)"] + reasons, key="data_s_reason")
    limit = c4.number_input("Documents per page", 1, 500, 20, key="data_s_limit")
    offset = st.number_input("Skip the first", 0, None, 0, step=int(limit), key="data_s_offset")
    found = call(client.snapshot_samples, sid, status=None if status == "all" else status,
                 stage=None if stage == "(any)" else stage, reason=None if reason == "(any)" else reason,
                 limit=int(limit), offset=int(offset))
    if found:
        st.caption(f"{found['total']:,} matching documents (the pipeline keeps a sample of each reason).")
        items = found["items"]
        if items:
            st.dataframe(pd.DataFrame([{k: d.get(k) for k in ("doc_id", "status", "stage", "reason", "split",
                                                               "lang", "chars", "source")} for d in items]),
                         hide_index=True, key="data_samples")
        for d in items:
            where = f"removed by {d['stage']} ({d['reason']})" if d["status"] == "removed" else f"kept in {d['split']}"
            st.text(f"doc {d['doc_id']} · {where} · lang {d['lang'] or '?'} · {d['chars']:,} chars")
            st.code(d["text"], language=None, wrap_lines=True)

# ---- diff --------------------------------------------------------------------------------
with tabs[4]:
    others = [i for i in by_id if i != sid]
    if not others:
        st.info("Only one snapshot: make another (e.g. change a threshold) to compare.")
    else:
        parent = by_id[sid]["parent"]
        other = st.selectbox("Compare with", others, index=others.index(parent) if parent in others else 0,
                             key="data_diff_other")
        d = call(client.snapshot_diff, other, sid)
        if d:
            st.caption(f"From {other} to {sid}" + (" (parent and child)" if d["related"] else ""))
            st.markdown("**Config changes**")
            if d["config"]:
                st.dataframe(pd.DataFrame([{"key": k, other: show_value(a), sid: show_value(b)}
                                           for k, (a, b) in d["config"].items()]), hide_index=True, key="data_diff_config")
            else:
                st.caption("Same config.")
            changed = {k: v for k, v in d["inputs"].items() if v}
            if changed:
                st.dataframe(pd.DataFrame([{"inputs": k, "path": p} for k, ps in changed.items() for p in ps]),
                             hide_index=True, key="data_diff_inputs")
            st.markdown("**Documents out of each stage**")
            st.dataframe(pd.DataFrame([{"stage": k, other: c["a"], sid: c["b"],
                                        "change": (c["b"] - c["a"]) if None not in (c["a"], c["b"]) else None}
                                       for k, c in d["counts"].items()]), hide_index=True, key="data_diff_counts")
            st.markdown("**Outputs**")
            st.dataframe(pd.DataFrame([{"file": k, f"docs {other}": o["docs_a"], f"docs {sid}": o["docs_b"],
                                        "same": o["same"]} for k, o in d["outputs"].items()]),
                         hide_index=True, key="data_diff_outputs")

with tabs[5]:
    run_form()
