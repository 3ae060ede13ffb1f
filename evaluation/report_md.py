"""A report card (evaluation/report.py) for people: report.md, and two cards side by side.

`render_markdown`: a title and the environment, a table of stages with their seconds, then one short
section per stage that ran, each a small table. Only what the report holds is rendered: a section
missing from the dict is missing from the page. Numbers are rounded for reading (report.json keeps
them whole).

`compare_reports`: the figures two runs are judged by (`key_figures`), a row each with the change,
for the UI's comparison table. Both are pure functions of report dicts: no file, no torch.
"""

from __future__ import annotations

TITLES = {"data": "Data", "tokenizer": "Tokenizer", "pretrain": "Pretraining", "sft": "Fine-tuning",
          "eval": "Evaluation", "samples": "Sample answers"}


def fmt(x, digits: int = 3) -> str:
    """A number as a person reads it: thousands separators, few decimals, "-" for a missing one.

    >>> fmt(4203776), fmt(21334.49), fmt(173.785), fmt(5.15782), fmt(0.0004), fmt(None)
    ('4,203,776', '21,334', '173.8', '5.158', '4.00e-04', '-')
    """
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if not isinstance(x, float):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if 0 < abs(x) < 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def size(n_bytes) -> str:
    """Bytes in the largest unit that keeps a number above 1.

    >>> size(512), size(2048), size(17_000_000)
    ('512 B', '2.0 KiB', '16.2 MiB')
    """
    if n_bytes is None:
        return "-"
    n = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def duration(seconds) -> str:
    """Seconds as hours, minutes and seconds.

    >>> duration(3725.4), duration(42)
    ('1 h 2 min 5 s', '42 s')
    """
    if seconds is None:
        return "-"
    s = round(seconds)
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return " ".join(p for p in (f"{h} h" if h else "", f"{m} min" if h or m else "", f"{s} s") if p)


def cell(text) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    s = "-" if text is None or text == "" else str(text)
    return " ".join(s.split()).replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def stage_table(report: dict) -> str:
    """The stages, their seconds and commands, and the total (what `make demo` prints at the end)."""
    rows = [[s.get("title") or s.get("name"), fmt(float(s["seconds"]), 1) if s.get("seconds") is not None else "-",
             ("FAILED " if s.get("rc") else "") + (f"`{s['command']}`" if s.get("command") else "")]
            for s in report.get("stages", [])]
    total = report.get("total_seconds")
    rows.append(["**total**", f"**{fmt(float(total), 1)}**" if total is not None else "-", duration(total)])
    return table(["stage", "seconds", "command"], rows)


def _environment(report: dict) -> str:
    env = report.get("environment") or {}
    v = env.get("versions") or {}
    commit = env.get("git_commit")
    git = "-" if not commit else commit[:12] + (" (uncommitted changes)" if env.get("git_dirty") else "")
    return table(["figure", "value"], [
        ["CPU", f"{env.get('cpu') or '-'} ({env.get('cores') or '?'} cores)"],
        ["memory", f"{fmt(env.get('memory_gib'), 1)} GiB"], ["GPU", ", ".join(env.get("gpus") or []) or "none"],
        ["system", env.get("os")], ["versions", " · ".join(f"{k} {v[k] or '-'}" for k in v)],
        ["git commit", git], ["seed", report.get("seed")], ["date", report.get("created_at")]])


def _data(d: dict) -> str:
    sources = ", ".join(d.get("sources") or [])
    out = [f"Snapshot `{d['id']}` ({d.get('driver') or '?'} driver; sources: {sources or '-'})\n"]
    seen, kept, removed = d.get("input") or {}, d["kept"], d.get("removed") or {}
    out.append(table(["", "documents", "characters"], [["read", fmt(seen.get("docs")), fmt(seen.get("chars"))],
                                                       ["kept", fmt(kept["docs"]), fmt(kept["chars"])],
                                                       ["removed", fmt(removed.get("docs")), fmt(removed.get("chars"))]]))
    if d.get("filters"):
        out.append("\n" + table(["filter", "documents removed", "characters removed", "reasons"],
                                [[f["stage"], fmt(f["removed"]), fmt(f.get("chars_removed")),
                                  ", ".join(f"{r} {n:,}" for r, n in (f.get("reasons") or {}).items())]
                                 for f in d["filters"]]))
    else:
        out.append("\nNo filter removed anything.")
    out.append("\n" + table(["split", "documents", "characters"],
                            [[s, fmt(v["docs"]), fmt(v["chars"])] for s, v in d["splits"].items()]))
    return "\n".join(out)


def _tokenizer(t: dict) -> str:
    trained = t.get("trained_on") or {}
    rows = [["tokenizer", f"`{t['id']}`"], ["model", f"{t.get('model')} ({t.get('trainer') or '?'} trainer)"],
            ["vocabulary", fmt(t.get("vocab_size"))],
            ["trained on", f"{fmt(trained.get('docs'))} documents, {fmt(trained.get('chars'))} characters"]]
    if m := t.get("measured"):
        rows += [["characters per token", (f"{fmt(t['chars_per_token'])} (on {m['docs']:,} val documents, "
                                          f"{m['chars']:,} characters)")],
                 ["bytes per token", fmt(t["bytes_per_token"])]]
    return table(["figure", "value"], rows)


def _pretrain(p: dict) -> str:
    m = p.get("model") or {}
    shape = f"{m.get('arch')}, {m.get('n_layer')} layers x {m.get('n_embd')} wide, {m.get('n_head')} heads, " \
            f"context {m.get('block_size')}, vocab {m.get('vocab_size')}" if m else "-"
    steps = fmt(p.get("steps")) + (f" of {fmt(p['max_steps'])}" if p.get("max_steps") else "")
    rows = [["run", f"`{p['run_id']}`"], ["model", shape], ["parameters", fmt(p.get("parameters"))], ["steps", steps]]
    if "first_loss" in p:
        rows.append(["train loss", f"{fmt(p['first_loss'])} (step {p.get('first_step')}) -> {fmt(p['last_loss'])}"])
    if "best_val_loss" in p:
        rows += [["val loss", (f"{fmt(p['first_val_loss'])} (step {p.get('first_val_step')}) -> "
                              f"{fmt(p['last_val_loss'])} (step {p.get('last_val_step')}); best "
                              f"{fmt(p['best_val_loss'])} (step {p.get('best_val_step')})")],
                 ["perplexity", fmt(p.get("perplexity"))]]
    if "bits_per_byte" in p:
        rows.append(["bits per byte", f"{fmt(p['bits_per_byte'])} (see the note)"])
    rows += [["tokens/s", f"{fmt(p.get('tokens_per_s'))} (median of the logged windows)"],
             ["tokens seen", fmt(p.get("tokens_seen"))], ["precision", p.get("precision")]]
    if p.get("mfu") is not None:
        rows.append(["MFU", pct(p["mfu"])])
    if e := p.get("export"):
        rows.append(["Hugging Face export", f"step {e.get('step')}, {size(e.get('bytes'))} of weights"])
    out = [table(["figure", "value"], rows)]
    if "bits_per_byte_note" in p:
        out.append(f"\nNote on bits per byte: {p['bits_per_byte_note']}.")
    if p.get("samples"):
        out.append("\nSamples at the last evaluation:\n")
        out += [f"- **{cell(s['prompt'])}**" + s["text"].replace("\n", " ") for s in p["samples"]]
    return "\n".join(out)


def _sft(s: dict) -> str:
    rows = [["run", f"`{s['run_id']}`"], ["method", s.get("method")], ["base model", s.get("base_model")],
            ["data", s.get("data")], ["training rows", fmt(s.get("train_rows"))], ["steps", fmt(s.get("steps"))],
            ["trainable parameters", (f"{fmt(s.get('trainable_params'))} of {fmt(s.get('total_params'))} "
                                     f"({pct(s.get('trainable_share'))})")],
            ["train loss", f"{fmt(s.get('first_loss'))} -> {fmt(s.get('last_loss'))}"],
            ["val loss", fmt(s.get("last_val_loss"))]]
    acc = table(["held-out split", "base", "tuned", "change"],
                [[a["split"], fmt(a["base"]), fmt(a["tuned"]), f"{a['change']:+.3f}" if a["change"] is not None else "-"]
                 for a in s.get("accuracy", [])])
    return table(["figure", "value"], rows) + "\n\nExact-match accuracy on held-out questions, base -> tuned:\n\n" + acc


def _eval(e: dict) -> str:
    head = f"Evaluation `{e['eval_id']}`: {e.get('status')}, backend {e.get('backend')}, {fmt(e.get('seconds'), 1)} s\n"
    several = len({r.get("model") for r in e.get("rows", [])}) > 1
    rows = [[(f"{r.get('model')}: " if several else "") + r["task"] + (" (group)" if r.get("group") else ""),
             r.get("metric"), fmt(r["score"]),
             f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if r.get("ci95") else "-",
             f"{r['normalized']:+.3f}" if r.get("normalized") is not None else "-", fmt(r.get("n"))]
            for r in e.get("rows", [])]
    out = [head, table(["task", "metric", "score", "95% CI", "vs chance", "n"], rows),
           "\nvs chance: (score - chance) / (1 - chance); 0 is guessing, 1 is perfect."]
    out += [f"\nFAILED {err}" for err in e.get("errors", [])]
    return "\n".join(out)


def _samples(samples: list[dict]) -> str:
    return table(["split", "question", "expected", "base model", "tuned model", "correct"],
                 [[s["split"], s["question"], s.get("expected"), s.get("base"), s.get("tuned"), fmt(s.get("correct"))]
                  for s in samples])


def render_markdown(report: dict) -> str:
    """The whole report.md."""
    parts = [f"# {report.get('title') or 'Report card'}", "", "## Environment", "", _environment(report), "",
             "## Stages", "", stage_table(report)]
    render = {"data": _data, "tokenizer": _tokenizer, "pretrain": _pretrain, "sft": _sft, "eval": _eval,
              "samples": _samples}
    for key, title in TITLES.items():
        if report.get(key):
            parts += ["", f"## {title}", "", render[key](report[key])]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- comparing two reports


PRETRAIN_FIGURES = {"parameters": "parameters", "steps": "steps", "first_loss": "first train loss",
                    "last_loss": "last train loss", "best_val_loss": "best val loss", "last_val_loss": "last val loss",
                    "perplexity": "perplexity", "bits_per_byte": "bits per byte", "tokens_per_s": "tokens/s"}


def key_figures(report: dict) -> dict[tuple[str, str], float | int | None]:
    """(stage, figure) -> value: the numbers two reports are compared on."""
    out: dict[tuple[str, str], float | int | None] = {}
    data, tok, pre, sft, ev = (report.get(k) or {} for k in ("data", "tokenizer", "pretrain", "sft", "eval"))
    if data:
        out |= {("data", "documents kept"): data["kept"]["docs"], ("data", "characters kept"): data["kept"]["chars"],
                ("data", "documents removed"): (data.get("removed") or {}).get("docs")}
    if tok:
        out |= {("tokenizer", "vocab size"): tok.get("vocab_size"), ("tokenizer", "chars/token"): tok.get("chars_per_token")}
    if pre:
        out |= {("pretrain", label): pre.get(key) for key, label in PRETRAIN_FIGURES.items()}
    if sft:
        out[("sft", "trainable params")] = sft.get("trainable_params")
        for row in sft.get("accuracy", []):
            out |= {("sft", f"{row['split']} base"): row["base"], ("sft", f"{row['split']} tuned"): row["tuned"]}
    for row in ev.get("rows", []):  # the demo's tuned model plain; another model evaluated alongside by name
        other = f" ({row.get('model')})" if row.get("model") != report.get("sft_id") else ""
        out[("eval", f"{row['task']} {row['metric']}{other}")] = row["score"]
    for s in report.get("stages", []):
        out[("time", f"{s.get('name')} seconds")] = s.get("seconds")
    out[("time", "total seconds")] = report.get("total_seconds")
    return out


def compare_reports(a: dict, b: dict) -> list[dict]:
    """Two reports' key figures side by side: [{"stage", "figure", "a", "b", "change"}], change = b - a.

    A figure only one report has keeps None on the other side (and as its change).
    """
    fa, fb = key_figures(a), key_figures(b)

    def num(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    return [{"stage": stage, "figure": figure, "a": fa.get((stage, figure)), "b": fb.get((stage, figure)),
             "change": fb[(stage, figure)] - fa[(stage, figure)]
             if num(fa.get((stage, figure))) and num(fb.get((stage, figure))) else None}
            for stage, figure in dict.fromkeys([*fa, *fb])]
