"""Charts and tables of the Decoding page, from what POST /api/decoding returns.

Pure functions of JSON (no Streamlit, no HTTP), so the unit tests check them directly.
"""

from __future__ import annotations

import pandas as pd

STATUS_COLOURS = {"root": "#444444", "kept": "#2a9d8f", "finished": "#1d4ed8", "pruned": "#c0c0c0"}
CHOSEN = "#e63946"


def show(text: str | None) -> str:
    """A token's text, visible: spaces as ·, newlines as ⏎ (a lone space is otherwise invisible)."""
    return "∅" if text is None else text.replace(" ", "·").replace("\n", "⏎") or "∅"


def tokens_markdown(column: dict) -> str:
    """The generated text with each token set apart, so a learner sees where tokens split."""
    return " ".join(f"`{show(t['text'])}`" for t in column.get("tokens") or []) or "(nothing)"


def stages_frame(step: dict) -> pd.DataFrame:
    """One step of a sampling column: the top tokens' probability at each stage (raw, then after each
    processor), one column per stage; the chosen token marked."""
    stages = step["stages"]
    order = [t["token"] for t in stages[0]["top"]]
    text = {t["token"]: t["text"] for s in stages for t in s["top"]}
    for s in stages[1:]:
        order += [t["token"] for t in s["top"] if t["token"] not in order]
    text[step["token"]] = step["text"]
    if step["token"] not in order:  # a sample from the tail, outside every stage's top: shown last
        order.append(step["token"])
    rows = []
    for tok in order:
        chosen = tok == step["token"]
        row = {"token": show(text[tok]) + ("  ◀ chosen" if chosen else "")}
        for s in stages:
            row[s["name"]] = s["chosen_p"] if chosen else next((t["p"] for t in s["top"] if t["token"] == tok), 0.0)
        rows.append(row)
    return pd.DataFrame(rows, columns=["token", *(s["name"] for s in stages)])


def stages_figure(step: dict):
    """Grouped bars: each top token's probability raw and after each processor; the chosen one in red."""
    import plotly.graph_objects as go

    frame = stages_frame(step)
    fig = go.Figure()
    for i, s in enumerate(step["stages"]):
        colours = [CHOSEN if "chosen" in t else "#1d4ed8" for t in frame["token"]]
        fig.add_trace(go.Bar(x=frame["token"], y=frame[s["name"]], name=f"{s['name']} (H={s['entropy_bits']:.2f} bits)",
                             marker={"color": colours} if i == len(step["stages"]) - 1 else None))
    fig.update_layout(barmode="group", height=330, yaxis_title="probability", margin={"l": 40, "r": 10, "t": 20, "b": 60},
                      legend={"orientation": "h", "y": 1.15})
    return fig


def tree_layout(tree: list[dict]) -> dict[int, tuple[int, float]]:
    """(step, vertical position) of every node: leaves one per row in depth-first order, a parent at the
    middle of its children, so branches never cross."""
    children: dict[int, list[int]] = {}
    for n in tree:
        if n["parent"] is not None:
            children.setdefault(n["parent"], []).append(n["id"])
    pos: dict[int, tuple[int, float]] = {}
    nxt = [0]

    def place(i: int) -> float:
        kids = children.get(i, [])
        if not kids:
            y = float(nxt[0])
            nxt[0] += 1
        else:
            ys = [place(k) for k in kids]
            y = (min(ys) + max(ys)) / 2
        pos[i] = (tree[i]["step"], y)
        return y

    place(0)
    return pos


def beam_tree_figure(column: dict):
    """The whole beam search tree: every node a token at its step, coloured by status (kept, finished,
    pruned), the returned path in red; hover shows the token and cumulative log-probability."""
    import plotly.graph_objects as go

    tree, chosen = column["tree"], set(column["chosen"])
    pos = tree_layout(tree)
    fig = go.Figure()
    for on_path in (False, True):
        xs, ys = [], []
        for n in tree:
            if n["parent"] is None or ((n["id"] in chosen and n["parent"] in chosen) != on_path):
                continue
            (x0, y0), (x1, y1) = pos[n["parent"]], pos[n["id"]]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line={"color": CHOSEN if on_path else "#bbbbbb", "width": 3 if on_path else 1}))
    for status, colour in STATUS_COLOURS.items():
        nodes = [n for n in tree if n["status"] == status]
        if not nodes:
            continue
        fig.add_trace(go.Scatter(
            x=[pos[n["id"]][0] for n in nodes], y=[pos[n["id"]][1] for n in nodes], mode="markers+text",
            name=status, text=[show(n["text"]) if n["id"] in chosen or status != "pruned" else "" for n in nodes],
            textposition="top center", textfont={"size": 10},
            marker={"color": colour, "size": [11 if n["id"] in chosen else 7 for n in nodes],
                    "line": {"color": [CHOSEN if n["id"] in chosen else colour for n in nodes], "width": 2}},
            customdata=[[show(n["text"]), n["logprob"], n["cumulative"], n["score"]] for n in nodes],
            hovertemplate="%{customdata[0]}<br>log p %{customdata[1]:.3f}<br>cumulative %{customdata[2]:.3f}"
                          "<br>score %{customdata[3]}<extra>" + status + "</extra>"))
    fig.update_layout(height=max(320, 14 * (max(y for _, y in pos.values()) + 2)), xaxis_title="step",
                      yaxis={"visible": False}, margin={"l": 20, "r": 20, "t": 20, "b": 40},
                      legend={"orientation": "h", "y": 1.08})
    return fig


def beams_frame(column: dict) -> pd.DataFrame:
    return pd.DataFrame([{"rank": i + 1, "text": b["text"], "score": b["score"], "sum of log p": b["logprob"],
                          "tokens": len(b["tokens"])} for i, b in enumerate(column["beams"])],
                        columns=["rank", "text", "score", "sum of log p", "tokens"])


def served_frame(served: dict) -> pd.DataFrame:
    """vLLM's greedy answer, token by token, with its chosen log-probability and its top alternatives."""
    steps = (served.get("greedy") or {}).get("steps") or []
    return pd.DataFrame([{"token": show(s["text"]), "log p": s["logprob"],
                          "top": ", ".join(f"{show(t['text'])} {t['logprob']:.2f}" for t in s["top"][:5])}
                         for s in steps], columns=["token", "log p", "top"])


def agreement_text(out: dict) -> str | None:
    """Whether the served engine decoded as the lesson: its greedy text against ours, its best beam against ours."""
    served = out.get("served") or {}
    if "error" in served or not served:
        return None
    lines = []
    ours = {c["name"]: c for c in out["strategies"]}
    greedy = next((c for c in out["strategies"] if c["strategy"] == "greedy"), None)
    if greedy and "greedy" in served:
        same = served["greedy"]["text"] == greedy["text"]
        lines.append(f"Greedy: vLLM {'wrote the same text' if same else 'wrote a different text'} as the lesson's code.")
    for name, b in (served.get("beams") or {}).items():
        if "error" in b:
            lines.append(f"{name}: vLLM's beam search refused: {b['error']}")
        elif name in ours:
            same = b["texts"] and b["texts"][0] == ours[name]["text"]
            lines.append(f"{name}: vLLM's best beam {'matches' if same else 'differs from'} the lesson's.")
    return " ".join(lines) or None
