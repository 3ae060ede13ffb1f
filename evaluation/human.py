"""Human evaluation: blind pairwise votes and 1-5 ratings, kept in the workspace, and what they add up to.

Automatic metrics miss what people care about (is the answer helpful, clear, right?), so the last
word is human. Two ways to ask, both here:

- **blind pairwise comparison** (Chatbot Arena's way): two models answer the same prompt, the rater
  sees the answers as *left* and *right* in a random order, without names, and picks one, a tie,
  or "both bad". Showing the names, or always the same model on the left, biases the vote;
  comparing is easier and more consistent than scoring on an absolute scale;
- **1-5 ratings** of single answers, by named raters, so several people can rate the same items
  and their agreement can be measured.

```
workspace/evals/human.db     SQLite (WAL: the API, the CLI and a notebook can read and write at once)
  sets         (id, name, created_at)                        an item set: prompts that belong together
  prompts      (id, set_id, prompt)                          each prompt once per set
  comparisons  (id, set_id, prompt_id, model_a, model_b, answer_a, answer_b, shown_left, created_at)
  votes        (comparison_id, rater, choice, created_at)    choice in a | b | tie | both_bad, about the
                                                             models as stored, not the sides shown
  answers      (id, set_id, prompt_id, model, answer, created_at)
  ratings      (answer_id, rater, score, created_at)         score 1..5
```

One vote per rater per comparison and one rating per rater per answer: voting again replaces the
earlier one (people change their minds; counting both would give them two voices). The statistics
(Fleiss' kappa, Bradley-Terry with bootstrap intervals, Arena ranks) are in evaluation/human_stats.py.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from evaluation import human_stats as hs
from training import sqlite_store
from training.errors import UserError
from training.workspace import Workspace

SCHEMA_VERSION = 1  # PRAGMA user_version: a later schema migrates from the number it finds
CHOICES = ("a", "b", "tie", "both_bad")  # as stored
SHOWN_CHOICES = ("left", "right", "tie", "both_bad")  # as the rater sees them
SCORE_OF_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # Bradley-Terry: "both bad" is a tie

SCHEMA = """
CREATE TABLE IF NOT EXISTS sets (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id), prompt TEXT NOT NULL,
    UNIQUE (set_id, prompt));
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id),
    prompt_id INTEGER NOT NULL REFERENCES prompts(id), model_a TEXT NOT NULL, model_b TEXT NOT NULL,
    answer_a TEXT NOT NULL, answer_b TEXT NOT NULL, shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    comparison_id INTEGER NOT NULL REFERENCES comparisons(id), rater TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')), created_at TEXT NOT NULL,
    PRIMARY KEY (comparison_id, rater));
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id),
    prompt_id INTEGER NOT NULL REFERENCES prompts(id), model TEXT NOT NULL, answer TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    answer_id INTEGER NOT NULL REFERENCES answers(id), rater TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), created_at TEXT NOT NULL,
    PRIMARY KEY (answer_id, rater));
"""
TABLES = ("sets", "prompts", "comparisons", "votes", "answers", "ratings")


def db_path(ws: Workspace) -> Path:
    return ws.root / "evals" / "human.db"


def connect(ws: Workspace):
    """One connection for one call, in one transaction (training/sqlite_store.py)."""
    return sqlite_store.connect(db_path(ws), SCHEMA, SCHEMA_VERSION)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _text(value, field: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{field}: a non-empty string is needed, got {value!r}")
    if len(value.strip()) > limit:
        raise UserError(f"{field}: at most {limit} characters, got {len(value.strip())}")
    return value.strip()


def _prompt_id(con: sqlite3.Connection, set_name: str, prompt: str) -> tuple[int, int]:
    """(set id, prompt id), creating either if new."""
    con.execute("INSERT OR IGNORE INTO sets (name, created_at) VALUES (?, ?)", (set_name, _now()))
    set_id = con.execute("SELECT id FROM sets WHERE name = ?", (set_name,)).fetchone()[0]
    con.execute("INSERT OR IGNORE INTO prompts (set_id, prompt) VALUES (?, ?)", (set_id, prompt))
    return set_id, con.execute("SELECT id FROM prompts WHERE set_id = ? AND prompt = ?", (set_id, prompt)).fetchone()[0]


# ---------------------------------------------------------------------------- pairwise


def new_comparison(ws: Workspace, *, prompt: str, model_a: str, model_b: str, answer_a: str, answer_b: str,
                   set_name: str = "default", seed: int | None = None) -> dict:
    """Store two models' answers to one prompt and return what a blind rater may see.

    Which model is shown on the left is a coin flip (`seed` fixes it, for tests): raters favour
    the first answer they read, and a fixed order would hand that bias to one model.

    Returns:
        `{"comparison_id", "set", "prompt", "left", "right"}`: the answers, not the model names
        (`reveal` gives those, once the rater has voted).

    Example:
        >>> import tempfile; ws = Workspace(Path(tempfile.mkdtemp()))
        >>> c = new_comparison(ws, prompt="2+2?", model_a="big", model_b="small", answer_a="4",
        ...                    answer_b="5", seed=0)
        >>> sorted(c), (c["left"], c["right"])
        (['comparison_id', 'left', 'prompt', 'right', 'set'], ('5', '4'))
    """
    prompt, set_name = _text(prompt, "prompt", 100_000), _text(set_name, "set")
    model_a, model_b = _text(model_a, "models"), _text(model_b, "models")
    if model_a == model_b:
        raise UserError(f"models: two different models are needed, got {model_a!r} twice")
    for field, answer in (("answer_a", answer_a), ("answer_b", answer_b)):
        if not isinstance(answer, str):
            raise UserError(f"{field}: a string is needed, got {type(answer).__name__}")
    shown_left = "a" if random.Random(seed).random() < 0.5 else "b"
    with connect(ws) as con:
        set_id, prompt_id = _prompt_id(con, set_name, prompt)
        cur = con.execute("INSERT INTO comparisons (set_id, prompt_id, model_a, model_b, answer_a, answer_b, "
                          "shown_left, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (set_id, prompt_id, model_a, model_b, answer_a, answer_b, shown_left, _now()))
    left, right = (answer_a, answer_b) if shown_left == "a" else (answer_b, answer_a)
    return {"comparison_id": cur.lastrowid, "set": set_name, "prompt": prompt, "left": left, "right": right}


def _comparison(con: sqlite3.Connection, comparison_id) -> sqlite3.Row:
    row = None
    if isinstance(comparison_id, int) or (isinstance(comparison_id, str) and comparison_id.isdigit()):
        row = con.execute("SELECT * FROM comparisons WHERE id = ?", (int(comparison_id),)).fetchone()
    if row is None:
        raise UserError(f"comparison_id: no comparison {comparison_id!r} (POST /api/human/comparisons makes one)")
    return row


def reveal(ws: Workspace, comparison_id: int) -> dict:
    """The model names behind a comparison's sides; a blind UI shows them only after the vote.

    Returns:
        `{"comparison_id", "model_a", "model_b", "shown_left": "a"|"b", "left_model", "right_model"}`.
    """
    with connect(ws) as con:
        c = _comparison(con, comparison_id)
    left, right = (c["model_a"], c["model_b"]) if c["shown_left"] == "a" else (c["model_b"], c["model_a"])
    return {"comparison_id": c["id"], "model_a": c["model_a"], "model_b": c["model_b"],
            "shown_left": c["shown_left"], "left_model": left, "right_model": right}


def stored_choice(choice_shown: str, shown_left: str) -> str:
    """A choice about the sides shown, as a choice about the models stored.

    >>> stored_choice("left", "b"), stored_choice("right", "b"), stored_choice("tie", "b")
    ('b', 'a', 'tie')
    """
    if choice_shown in ("tie", "both_bad"):
        return choice_shown
    other = "b" if shown_left == "a" else "a"
    return shown_left if choice_shown == "left" else other


def vote(ws: Workspace, comparison_id: int, rater: str, choice_shown: str) -> dict:
    """Record `rater`'s vote on a comparison; a second vote by the same rater replaces the first.

    Args:
        choice_shown: "left", "right", "tie" or "both_bad", about the sides as the rater saw them.

    Returns:
        the vote (`choice` as stored: a, b, tie, both_bad; `winner`, a model or None; `replaced`:
        whether it replaced an earlier vote) with the revealed names (see `reveal`).

    Example:
        >>> import tempfile; ws = Workspace(Path(tempfile.mkdtemp()))
        >>> c = new_comparison(ws, prompt="Hi", model_a="x", model_b="y", answer_a="1", answer_b="2", seed=0)
        >>> v = vote(ws, c["comparison_id"], "ann", "left")  # seed 0 put y on the left
        >>> v["choice"], v["winner"], v["replaced"]
        ('b', 'y', False)
    """
    rater = _text(rater, "rater", 100)
    if choice_shown not in SHOWN_CHOICES:
        raise UserError(f"choice: one of {', '.join(SHOWN_CHOICES)}, got {choice_shown!r}")
    with connect(ws) as con:
        c = _comparison(con, comparison_id)
        choice = stored_choice(choice_shown, c["shown_left"])
        replaced = con.execute("SELECT 1 FROM votes WHERE comparison_id = ? AND rater = ?",
                               (c["id"], rater)).fetchone() is not None
        con.execute("INSERT INTO votes (comparison_id, rater, choice, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (comparison_id, rater) DO UPDATE SET choice = excluded.choice, "
                    "created_at = excluded.created_at", (c["id"], rater, choice, _now()))
    winner = {"a": c["model_a"], "b": c["model_b"]}.get(choice)
    return {"comparison_id": c["id"], "rater": rater, "choice_shown": choice_shown, "choice": choice,
            "winner": winner, "replaced": replaced} | reveal(ws, c["id"])


# ---------------------------------------------------------------------------- single answers


def add_answer(ws: Workspace, *, prompt: str, model: str, answer: str, set_name: str = "default") -> dict:
    """Store one model's answer to be rated 1-5. The model's name is not returned: raters who know
    it rate the name as much as the answer (`rate` tells them afterwards).

    Returns:
        `{"item_id", "set", "prompt", "answer"}`.

    Example:
        >>> import tempfile; ws = Workspace(Path(tempfile.mkdtemp()))
        >>> item = add_answer(ws, prompt="Hi", model="x", answer="Hello!")
        >>> rate(ws, item["item_id"], "ann", 4)["model"]
        'x'
    """
    prompt, set_name, model = _text(prompt, "prompt", 100_000), _text(set_name, "set"), _text(model, "model")
    if not isinstance(answer, str):
        raise UserError(f"answer: a string is needed, got {type(answer).__name__}")
    with connect(ws) as con:
        set_id, prompt_id = _prompt_id(con, set_name, prompt)
        cur = con.execute("INSERT INTO answers (set_id, prompt_id, model, answer, created_at) VALUES (?, ?, ?, ?, ?)",
                          (set_id, prompt_id, model, answer, _now()))
    return {"item_id": cur.lastrowid, "set": set_name, "prompt": prompt, "answer": answer}


def rate(ws: Workspace, item_id: int, rater: str, score: int) -> dict:
    """Record `rater`'s 1-5 score of an answer (a second rating by the same rater replaces the first).

    Returns:
        `{"item_id", "rater", "score", "replaced", "model"}`.
    """
    rater = _text(rater, "rater", 100)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise UserError(f"score: an integer from 1 to 5, got {score!r}")
    with connect(ws) as con:
        row = None
        if isinstance(item_id, int) or (isinstance(item_id, str) and item_id.isdigit()):
            row = con.execute("SELECT * FROM answers WHERE id = ?", (int(item_id),)).fetchone()
        if row is None:
            raise UserError(f"item_id: no answer {item_id!r} (POST /api/human/answers makes one)")
        replaced = con.execute("SELECT 1 FROM ratings WHERE answer_id = ? AND rater = ?",
                               (row["id"], rater)).fetchone() is not None
        con.execute("INSERT INTO ratings (answer_id, rater, score, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (answer_id, rater) DO UPDATE SET score = excluded.score, "
                    "created_at = excluded.created_at", (row["id"], rater, score, _now()))
    return {"item_id": row["id"], "rater": rater, "score": score, "replaced": replaced, "model": row["model"]}


# ---------------------------------------------------------------------------- reading it back


def vote_rows(ws: Workspace, set_name: str | None = None) -> list[dict]:
    """Every vote with its comparison's set, prompt and models (the CSV export), oldest first."""
    with connect(ws) as con:
        if set_name is not None and con.execute("SELECT 1 FROM sets WHERE name = ?", (set_name,)).fetchone() is None:
            raise UserError(f"set: no item set {set_name!r}")
        rows = con.execute(
            "SELECT v.comparison_id, s.name AS 'set', p.prompt, c.model_a, c.model_b, c.shown_left, v.rater, "
            "v.choice, v.created_at FROM votes v JOIN comparisons c ON c.id = v.comparison_id "
            "JOIN sets s ON s.id = c.set_id JOIN prompts p ON p.id = c.prompt_id "
            "WHERE ? IS NULL OR s.name = ? ORDER BY v.created_at, v.comparison_id, v.rater",
            (set_name, set_name)).fetchall()
    return [dict(r) | {"winner": {"a": r["model_a"], "b": r["model_b"]}.get(r["choice"])} for r in rows]


def rating_rows(ws: Workspace, set_name: str | None = None) -> list[dict]:
    """Every 1-5 rating with its answer's set, prompt and model, oldest first."""
    with connect(ws) as con:
        rows = con.execute(
            "SELECT r.answer_id AS item_id, s.name AS 'set', p.prompt, a.model, r.rater, r.score, r.created_at "
            "FROM ratings r JOIN answers a ON a.id = r.answer_id JOIN sets s ON s.id = a.set_id "
            "JOIN prompts p ON p.id = a.prompt_id WHERE ? IS NULL OR s.name = ? "
            "ORDER BY r.created_at, r.answer_id, r.rater", (set_name, set_name)).fetchall()
    return [dict(r) for r in rows]


def export(ws: Workspace) -> dict:
    """Every table as a list of rows (dicts), plus the schema version: the whole store, as JSON."""
    with connect(ws) as con:
        out = {t: [dict(r) for r in con.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in TABLES}
    return {"schema_version": SCHEMA_VERSION} | out


def _kappa(groups: dict, categories: tuple) -> dict:
    """Fleiss' kappa of items rated by >= 2 raters, on the modal number of raters."""
    totals = [len(v) for v in groups.values()]
    n = hs.modal_raters(totals)
    table = [[v.count(c) for c in categories] for v in groups.values() if len(v) == n]
    kappa = hs.fleiss_kappa(table, raters=n) if n else math.nan
    return {"kappa": None if math.isnan(kappa) else round(kappa, 4), "items": len(table), "raters": n}


def leaderboard(ws: Workspace, set_name: str | None = None, iters: int = 1000, seed: int = 0) -> dict:
    """The models by human preference, and how far the raters agree.

    Returns:
        `{"set", "battles", "models": [...], "sets": [...]}`. Per model: Bradley-Terry `rating` with
        its bootstrap `ci95` and Arena `rank` (None without pairwise votes), `wins`, `losses`, `ties`
        (both_bad included), `both_bad`, `battles`; `mean_score` of its 1-5 ratings with `score_se`
        over items (each item's mean over its raters first: ratings of one answer by several people
        are not independent) and `n_items`. Per item set: Fleiss' kappa of the pairwise votes
        (categories a, b, tie, both_bad) and of the 1-5 scores, each over the items with the modal
        number of raters (>= 2), with how many items and raters that is. Models by rank, then rating.
    """
    votes, ratings = vote_rows(ws, set_name), rating_rows(ws, set_name)
    battles = [(v["model_a"], v["model_b"], SCORE_OF_A[v["choice"]]) for v in votes]
    fitted = hs.bootstrap_ratings(battles, iters=iters, seed=seed) if battles else {}
    rank = hs.ranks(fitted)
    models: dict[str, dict] = defaultdict(lambda: {"wins": 0, "losses": 0, "ties": 0, "both_bad": 0, "battles": 0})
    for v in votes:
        for side, model in (("a", v["model_a"]), ("b", v["model_b"])):
            m = models[model]
            m["battles"] += 1
            m["ties" if v["choice"] in ("tie", "both_bad") else "wins" if v["choice"] == side else "losses"] += 1
            m["both_bad"] += v["choice"] == "both_bad"
    per_item: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in ratings:
        per_item[r["model"]][r["item_id"]].append(r["score"])
    rows = []
    for model in sorted(set(models) | set(per_item)):
        item_means = [sum(s) / len(s) for s in per_item[model].values()]
        mean, se = hs.mean_se(item_means)
        f = fitted.get(model)
        rows.append({"model": model, "rating": f and round(f["rating"], 1),
                     "ci95": f and [round(x, 1) for x in f["ci95"]], "rank": rank.get(model),
                     **models[model], "mean_score": mean, "score_se": se, "n_items": len(item_means)})
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, -(r["rating"] or 0), r["model"]))
    sets = []
    for name in sorted({v["set"] for v in votes} | {r["set"] for r in ratings}):
        pair, single = defaultdict(list), defaultdict(list)
        for v in votes:
            if v["set"] == name:
                pair[v["comparison_id"]].append(v["choice"])
        for r in ratings:
            if r["set"] == name:
                single[r["item_id"]].append(r["score"])
        sets.append({"set": name, "votes": sum(map(len, pair.values())), "ratings": sum(map(len, single.values())),
                     "pairwise_agreement": _kappa(pair, CHOICES), "rating_agreement": _kappa(single, (1, 2, 3, 4, 5))})
    return {"set": set_name, "battles": len(battles), "models": rows, "sets": sets}
