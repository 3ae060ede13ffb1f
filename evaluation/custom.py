"""Custom benchmarks: your own questions as a JSONL file, checked line by line, run like every other suite.

A benchmark is one JSON object per line, all of one kind:

- multiple choice: `{"question": "What is the capital of France?", "choices": ["Lyon", "Paris"],
  "answer": 1}`. 2 to 10 distinct, non-empty choices; `answer` is the right choice's index (from 0)
  or its exact text ("Paris"). Scored like world_facts: the model writes nothing; lm-eval compares
  log P(choice | "<question>\\nAnswer:") over the choices, and the item is right when the true one is
  the most likely (`acc`) or the most likely per character (`acc_norm`, so a short choice does not
  win for being short). The choices are the continuations themselves (" Paris"), not letters: a
  small model that never saw "A. B. C. D." lists can still show what it knows.
- generation: `{"prompt": "Q: What is 7 plus 5?\\nA:", "answer": "12"}`. The model writes a reply
  after the prompt (greedy), cut at the first line break, or at the end-of-sequence token when some
  answer spans lines; it is scored by the benchmark's `metric`, one of
  `exact_match` (the stripped reply is the stripped answer), `contains` (the answer appears in the
  reply, ignoring case: kind to a model that says "It is 12.") and `f1` (SQuAD's token F1, partial
  credit for the words in common; evaluation/text_metrics.py). The reference goes in `answer`
  only: one name for one thing (`target` is refused, with a hint).

Either kind may carry an `id` (a string or an integer, unique; default `line-<n>`) and a
`category` (a string, kept with each item for a per-category breakdown). Any other field, a wrong
type, a mixed file or an answer that is not among the choices is a `UserError` naming the line and
the field: `line 7: answer: 4 is out of range for 3 choices`.

    register(ws.root, "capitals", Path("capitals.jsonl").read_text())   # or `playground benchmark add`
    playground eval --model M --tasks capitals                          # lm-eval runs it as custom_capitals

`register` writes `workspace/evals/custom/<name>.jsonl` (the rows, normalised: answers as indexes)
and `<name>.json` (what it is: kind, metric, size, chance level). evaluation/suites.py turns the
registered benchmarks into lm-eval tasks named `custom_<name>`, so they never clash with lm-eval's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from evaluation.text_metrics import token_f1
from evaluation.world_suites import Function
from training.errors import UserError

PREFIX = "custom_"  # lm-eval task names of registered benchmarks: custom_<name>
MC, GEN = "multiple_choice", "generate_until"
METRICS = {MC: ("acc",), GEN: ("exact_match", "contains", "f1")}  # the first of each is the default
MAX_ROWS = 100_000
MAX_CHOICES = 10
MAX_DESCRIPTION = 500
NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
# the built-in suites' families (check_name); hellaswag...gsm8k: lm-eval's Hub tasks and their samples (online_tasks.py)
RESERVED = ("world", "mmlu", "humaneval", "custom", "hellaswag", "truthfulqa", "arc", "gsm8k")
_FIELDS = {MC: ("question", "choices", "answer"), GEN: ("prompt", "answer")}
_OPTIONAL = ("id", "category")
_SHAPE = {MC: '{"question", "choices", "answer"}', GEN: '{"prompt", "answer"}'}
_KIND_WORDS = {MC: "multiple-choice", GEN: "generation"}


def folder(ws_root: Path) -> Path:
    """Where registered benchmarks live: workspace/evals/custom/."""
    return Path(ws_root) / "evals" / "custom"


# ---------------------------------------------------------------- checking a file


def _type(value) -> str:
    """A JSON value's type as the file spells it: null, true, a number, a list, an object, a string."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return {int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(value), repr(value))


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = repr(value) if isinstance(value, str) else _type(value)
        raise UserError(f"{field}: a non-empty string, got {got}")
    return value


def _kind(row: dict) -> str:
    if "choices" in row or "question" in row:
        return MC
    if "prompt" in row:
        return GEN
    raise UserError(f'a row is {_SHAPE[MC]} (multiple choice) or {_SHAPE[GEN]} (generation); '
                    f"this one has {', '.join(row) or 'no fields'}")


def _fields(row: dict, kind: str) -> None:
    """Every required field there, no unknown one."""
    for field in _FIELDS[kind]:
        if field not in row:
            raise UserError(f"{field}: missing (a {_KIND_WORDS[kind]} row is {_SHAPE[kind]})")
    for field in row:
        if field not in _FIELDS[kind] + _OPTIONAL:
            hint = " (the reference answer goes in \"answer\")" if field in ("target", "output", "label") else ""
            raise UserError(f"{field}: unknown field{hint}; a {_KIND_WORDS[kind]} row has "
                            f"{', '.join(_FIELDS[kind])} and optionally id, category")


def _answer_index(answer, choices: list[str]) -> int:
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise UserError(f"answer: {answer} is out of range for {len(choices)} choices")
        return answer
    if isinstance(answer, str):
        if answer not in choices:
            raise UserError(f"answer: {answer!r} is not one of the choices (its text, exactly, or its index)")
        return choices.index(answer)
    raise UserError(f"answer: a choice's index (0-{len(choices) - 1}) or its text, got {_type(answer)}")


def _mc_row(row: dict) -> dict:
    question = _text(row["question"], "question")
    choices = row["choices"]
    if not isinstance(choices, list) or not 2 <= len(choices) <= MAX_CHOICES:
        got = f"{len(choices)}" if isinstance(choices, list) else _type(choices)
        raise UserError(f"choices: a list of 2 to {MAX_CHOICES} strings, got {got}")
    seen: dict[str, int] = {}
    for i, choice in enumerate(choices):
        _text(choice, f"choices[{i}]")
        if choice in seen:
            raise UserError(f"choices[{i}]: {choice!r} is already choices[{seen[choice]}]")
        seen[choice] = i
    return {"question": question, "choices": choices, "answer": _answer_index(row["answer"], choices)}


def _row(row, kind: str | None, first_line: int | None) -> dict:
    """One parsed line, checked and normalised; `kind` is the file's (None on its first row)."""
    if not isinstance(row, dict):
        raise UserError(f"a row is a JSON object ({{...}}), got {_type(row)}")
    this = _kind(row)
    if kind is not None and this != kind:
        raise UserError(f"a {_KIND_WORDS[this]} row in a {_KIND_WORDS[kind]} benchmark (line {first_line} "
                        "is one): one kind per file")
    _fields(row, this)
    out = _mc_row(row) if this == MC else {"prompt": _text(row["prompt"], "prompt"),
                                            "answer": _text(row["answer"], "answer")}
    if "id" in row and (not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool) or row["id"] == ""):
        raise UserError(f"id: a string or an integer, got {_type(row['id'])}")
    category = _text(row["category"], "category") if "category" in row else ""
    # Every stored row has the same fields: the JSON reader lm-eval uses wants one schema per file.
    return {"id": str(row["id"]) if "id" in row else "", **out, "category": category}


def check_rows(text: str) -> tuple[str, list[dict]]:
    """Check a benchmark file, every line, and return its kind and its rows, normalised.

    Blank lines are skipped (they still count in the line numbers an error gives). The first row
    decides the kind; every row must then be of it. A multiple-choice answer given as text becomes
    its index; a missing `id` becomes `line-<n>`; a missing `category` "".

    >>> check_rows('{"question": "2 + 2?", "choices": ["3", "4"], "answer": "4"}\\n')
    ('multiple_choice', [{'id': 'line-1', 'question': '2 + 2?', 'choices': ['3', '4'], 'answer': 1, 'category': ''}])

    Raises:
        UserError: "line N: field: what is wrong" for the first bad line; "text: ..." for an empty file.
    """
    kind, first, rows, ids = None, None, [], {}
    for n, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = line.rstrip("\r")  # not str.splitlines: it also splits inside strings, at U+2028
        if not line.strip():
            continue
        if len(rows) == MAX_ROWS:
            raise UserError(f"line {n}: more than {MAX_ROWS:,} rows; split the benchmark in two")
        try:
            row = _row(json.loads(line), kind, first)
        except json.JSONDecodeError as e:
            raise UserError(f"line {n}: not JSON ({e.msg} at column {e.colno})") from None
        except UserError as e:
            raise UserError(f"line {n}: {e}") from None
        row["id"] = row["id"] or f"line-{n}"
        if row["id"] in ids:
            raise UserError(f"line {n}: id: {row['id']!r} is already the id of line {ids[row['id']]}")
        ids[row["id"]] = n
        kind, first = kind or _kind(row), first or n
        rows.append(row)
    if not rows:
        raise UserError("text: no rows (a benchmark is one JSON object per line)")
    return kind, rows


# ---------------------------------------------------------------- the registry


def check_name(name: str) -> str:
    """A benchmark name: lowercase, 2-41 characters, clear of the built-in suites' names.

    Every built-in suite and alias is `world`, `mmlu`, `humaneval` or one of them and "_..."
    (tests/unit/test_custom_benchmarks.py keeps it so), and lm-eval's MMLU names (mmlu_anatomy)
    stand for ours: a name in those families, or in custom_..., could mean two things.
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(f"name: {name!r} is not a benchmark name (a lowercase letter, then 1-40 lowercase "
                        "letters, digits or _)")
    if any(name == r or name.startswith(r + "_") for r in RESERVED):
        reserved = ", ".join(f"{r}, {r}_*" for r in RESERVED)
        raise UserError(f"name: {name!r} is reserved for the built-in suites ({reserved}); choose another")
    return name


def _metric(kind: str, metric: str | None) -> str:
    if metric is None:
        return METRICS[kind][0]
    if metric not in METRICS[kind]:
        extra = " (and acc_norm, reported beside it)" if kind == MC else ""
        raise UserError(f"metric: a {_KIND_WORDS[kind]} benchmark is scored by {' or '.join(METRICS[kind])}"
                        f"{extra}, not {metric!r}")
    return metric


def _write(path: Path, text: str) -> None:
    """Write to a hidden temporary name, then rename: a reader sees the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def register(ws_root: Path, name: str, text: str, *, metric: str | None = None, description: str = "") -> dict:
    """Check `text` (a JSONL benchmark) and register it as `name`, replacing one of that name.

    Args:
        ws_root: the workspace folder.
        name: what users call it (`--tasks name`); lm-eval calls it `custom_<name>`.
        text: the file's content.
        metric: for generation, exact_match (default), contains or f1; for multiple choice, acc.
        description: a line saying what it measures (at most 500 characters).

    Returns:
        Its meta, as `list_custom` gives it.

    Raises:
        UserError: naming `name`, `metric`, `description`, or the line of `text` that is wrong.
    """
    check_name(name)
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise UserError(f"description: a string of at most {MAX_DESCRIPTION} characters")
    kind, rows = check_rows(text)
    counts = Counter(len(r["choices"]) for r in rows) if kind == MC else None
    meta = {"name": name, "task": PREFIX + name, "kind": kind, "metric": _metric(kind, metric), "n": len(rows),
            "n_choices": next(iter(counts)) if counts and len(counts) == 1 else None,  # None: it varies
            # the guessing score: 1 / choices, averaged over the questions (0 for generation)
            "chance": sum(k / c for c, k in counts.items()) / len(rows) if counts else 0.0,
            "categories": sorted({r["category"] for r in rows} - {""}),
            "description": description.strip(), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if kind == GEN:
        longest = max(len(r["answer"]) for r in rows)
        # Stop at the first line break unless an answer has one (then at end of sequence). Room for
        # as many tokens as the longest answer has characters (64 at least): a token is seldom shorter.
        meta["generation"] = {"until": [] if any("\n" in r["answer"] for r in rows) else ["\n"],
                              "max_gen_toks": max(64, min(1024, longest))}
    out = folder(ws_root)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    _write(out / f"{name}.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")  # last: the commit
    return meta | {"data_file": str((out / f"{name}.jsonl").resolve())}


def list_custom(ws_root: Path) -> dict[str, dict]:
    """Every registered benchmark's meta by name, with `data_file`, the absolute path of its rows."""
    out = {}
    for path in sorted(folder(ws_root).glob("[a-z]*.json")):
        data = path.with_suffix(".jsonl")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not one of ours
        if isinstance(meta, dict) and meta.get("name") == path.stem and data.is_file():
            out[path.stem] = meta | {"data_file": str(data.resolve())}
    return out


def remove(ws_root: Path, name: str) -> dict:
    """Unregister `name`: its rows, its meta and the lm-eval YAML `suites.prepare` wrote for it.
    Evaluation records that ran it keep their scores. Returns the meta it had."""
    meta = list_custom(ws_root).get(name) if isinstance(name, str) else None
    if meta is None:
        raise UserError(f"name: no custom benchmark {name!r} (`playground benchmark list` shows them)")
    (folder(ws_root) / f"{name}.json").unlink(missing_ok=True)  # first: without it, it is not registered
    (folder(ws_root) / f"{name}.jsonl").unlink(missing_ok=True)
    shutil.rmtree(Path(ws_root) / "evals" / "tasks" / (PREFIX + name), ignore_errors=True)
    return meta


# ---------------------------------------------------------------- the lm-eval task


def exact_match_results(doc: dict, results: list[str]) -> dict[str, int]:
    """`exact_match`: the reply, stripped of surrounding whitespace, is the stripped answer."""
    return {"exact_match": int(results[0].strip() == doc["answer"].strip())}


def contains_results(doc: dict, results: list[str]) -> dict[str, int]:
    """`contains`: the answer appears somewhere in the reply, ignoring case ("It is Paris." has "paris")."""
    return {"contains": int(doc["answer"].strip().casefold() in results[0].casefold())}


def f1_results(doc: dict, results: list[str]) -> dict[str, float]:
    """`f1`: SQuAD's token F1 of the reply against the answer (text_metrics.token_f1), 0-1."""
    return {"f1": token_f1([results[0]], [doc["answer"]])}


_MEAN = {"aggregation": "mean", "higher_is_better": True}


def task_config(task: str, data_file: Path, meta: dict) -> dict:
    """The lm-eval YAML (as a dict) of a registered benchmark: task `custom_<name>` over `data_file`.

    Multiple choice: the prompt is "<question>\\nAnswer:", the choices its continuations after a
    space. Generation: the prompt as written, and one `process_results` function per metric, since
    lm-eval wants every score it gets back to be one the task lists.
    """
    config = {"task": task, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
              "test_split": "test", "doc_to_target": "answer"}
    if meta["kind"] == MC:
        return config | {"output_type": "multiple_choice", "doc_to_text": "{{question}}\nAnswer:",
                         "doc_to_choice": "choices", "target_delimiter": " ",
                         "metric_list": [{"metric": "acc", **_MEAN}, {"metric": "acc_norm", **_MEAN}],
                         "metadata": {"version": 1}}
    metric = meta["metric"]
    return config | {
        "output_type": "generate_until", "doc_to_text": "prompt",
        "generation_kwargs": {**meta["generation"], "do_sample": False, "temperature": 0.0},
        "process_results": Function(f"evaluation.custom.{metric}_results"),
        "metric_list": [{"metric": metric, **_MEAN}], "metadata": {"version": 1}}
