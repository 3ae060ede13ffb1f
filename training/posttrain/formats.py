"""The two shapes an SFT file comes in, written atomically and read back with one-line errors.

An example here is a plain dict: `instruction`, `input` (may be ""), `output`, and
optionally `system` plus the metadata that instructions.py adds (`task`, `template`,
`entity`, `answer`). On disk it takes one of two shapes, one JSON object per line:

    Alpaca:  {"instruction": "What is 7 plus 5?", "input": "", "output": "7 plus 5 is 12."}
    chat:    {"messages": [{"role": "user", "content": "What is 7 plus 5?"},
                           {"role": "assistant", "content": "7 plus 5 is 12."}]}

Reading also accepts ShareGPT's variant of the chat shape (`conversations`, with `from`:
human/gpt/system and `value`). A chat row holds one exchange: an optional system message,
one user turn, one assistant reply. The user turn is the instruction and the input joined
by a blank line, so reading splits it back at the first blank line.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.errors import UserError

SHAPES: tuple[str, ...] = ("alpaca", "messages")
# Metadata that rides along as extra keys, so held-out scoring works on a file read back.
META_KEYS: tuple[str, ...] = ("task", "template", "entity", "answer")
_CHAT_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


def to_alpaca(ex: dict) -> dict[str, str]:
    """The Alpaca shape of an example.

    Args:
        ex: an example with `instruction`, `output` and optionally `input`.

    Returns:
        {"instruction", "input", "output"}; `input` is "" when the example has none.
    """
    return {"instruction": ex["instruction"], "input": ex.get("input") or "", "output": ex["output"]}


def to_messages(ex: dict, system: str | None = None) -> dict[str, list[dict[str, str]]]:
    """The chat shape of an example: one user turn, one assistant reply.

    Args:
        ex: an example with `instruction`, `output`, optionally `input` and `system`.
        system: a system message to put first; None uses the example's own `system`, if any.

    Returns:
        {"messages": [...]} where the user turn is the instruction, then a blank line and the
        input when there is one.
    """
    system = ex.get("system") if system is None else system
    user = ex["instruction"] + ("\n\n" + ex["input"] if ex.get("input") else "")
    head = [{"role": "system", "content": system}] if system else []
    return {"messages": head + [{"role": "user", "content": user}, {"role": "assistant", "content": ex["output"]}]}


def write_jsonl(examples: Iterable[dict], path: str | Path, shape: str = "alpaca", *,
                system: str | None = None, meta: bool = True) -> Path:
    """Write examples as JSON Lines, all at once: readers see the old file or the complete new one.

    The rows go to a hidden temporary file in the same folder, which `os.replace` then moves
    over `path` (a rename within one filesystem is atomic); on any error the temporary file
    is deleted and `path` is left as it was.

    Args:
        examples: the examples to write.
        path: the file to write; its folder is created if missing.
        shape: "alpaca" or "messages".
        system: a system message for every row of the "messages" shape (see `to_messages`).
        meta: also write `task`, `template`, `entity`, `answer` (and an Alpaca row's `system`)
            as extra keys when an example has them; trainers ignore extra keys.

    Returns:
        The path written.
    """
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}: expected one of {', '.join(SHAPES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            for ex in examples:
                row: dict = to_alpaca(ex) if shape == "alpaca" else to_messages(ex, system)
                if meta:
                    keys = META_KEYS + (("system",) if shape == "alpaca" else ())
                    row.update({k: ex[k] for k in keys if ex.get(k)})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


class _RowError(Exception):
    """What is wrong with one row; read_jsonl adds the file and line."""


def _kind(value: object) -> str:
    return "null" if value is None else {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__)


def _text(row: dict, key: str, required: bool = True) -> str:
    if key not in row or (not required and row[key] is None):
        if required:
            raise _RowError(f"missing field {key!r}")
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise _RowError(f"field {key!r} must be a string, got {_kind(value)}")
    if required and not value.strip():
        raise _RowError(f"field {key!r} is empty")
    return value


def _from_alpaca(row: dict) -> dict:
    ex = {"instruction": _text(row, "instruction"), "input": _text(row, "input", required=False),
          "output": _text(row, "output")}
    if isinstance(row.get("system"), str) and row["system"]:
        ex["system"] = row["system"]
    return ex


def _from_turns(row: dict, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> dict:
    """Validate a chat-style list of turns and turn it into one example."""
    if key not in row:
        raise _RowError(f"missing field {key!r}")
    turns = row[key]
    if not isinstance(turns, list) or not turns:
        raise _RowError(f"field {key!r} must be a non-empty list, got {_kind(turns) if turns else 'an empty list'}")
    names = {ours: theirs for theirs, ours in roles.items()}  # our role -> the file's word for it
    parsed = []
    for i, turn in enumerate(turns):
        at = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _RowError(f"{at} must be an object, got {_kind(turn)}")
        for field in (role_key, content_key):
            if field not in turn:
                raise _RowError(f"missing field '{at}.{field}'")
        role, content = turn[role_key], turn[content_key]
        if not isinstance(role, str) or role not in roles:
            raise _RowError(f"{at}.{role_key} must be one of {', '.join(roles)}, got {role!r}")
        if not isinstance(content, str):
            raise _RowError(f"{at}.{content_key} must be a string, got {_kind(content)}")
        if roles[role] != "system" and not content.strip():
            raise _RowError(f"{at}.{content_key} is empty")
        parsed.append((roles[role], content))
    # One exchange: [system], user, assistant. Longer conversations are a later lesson.
    expect = ["system", "user", "assistant"] if parsed[0][0] == "system" else ["user", "assistant"]
    if len(parsed) > len(expect):
        raise _RowError(f"{key} has {len(parsed)} turns; only one exchange is supported "
                        f"({', '.join(names[r] for r in expect)})")
    for i, (role, _) in enumerate(parsed):
        if role != expect[i]:
            raise _RowError(f"{key}[{i}].{role_key} must be {names[expect[i]]!r} here, got {turns[i][role_key]!r}")
    if len(parsed) < len(expect):
        raise _RowError(f"{key} must end with a reply from {names['assistant']!r}")
    instruction, _, input_ = parsed[-2][1].partition("\n\n")
    ex = {"instruction": instruction, "input": input_, "output": parsed[-1][1]}
    if len(parsed) == 3 and parsed[0][1]:
        ex["system"] = parsed[0][1]
    return ex


_READERS = {
    "alpaca": _from_alpaca,
    "messages": lambda row: _from_turns(row, "messages", "role", "content", _CHAT_ROLES),
    "sharegpt": lambda row: _from_turns(row, "conversations", "from", "value", _SHAREGPT_ROLES),
}


def _detect(row: dict) -> str:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    raise _RowError(f"cannot tell the shape from keys {sorted(row)}: expected 'instruction' and 'output' (Alpaca), "
                    "'messages' (chat) or 'conversations' (ShareGPT)")


def parse_row(row: object, where: str, shape: str | None = None) -> tuple[dict, str]:
    """One row of a file or dataset, in any of the three shapes, as an example.

    `read_jsonl` uses it for each line of a file, and sft_data.py for each row of a
    Hugging Face dataset, so both accept the same rows and word their errors alike.

    Args:
        row: the decoded row (a dict, or anything else, which is an error).
        where: where the row is, for errors: "data.jsonl:7" or "hf:tatsu-lab/alpaca row 7".
        shape: "alpaca", "messages" or "sharegpt" when an earlier row decided it; None: detect it.

    Returns:
        (example, shape): the example as `read_jsonl` returns it, and the shape it was read as.

    Raises:
        UserError: one line, `<where>: <what is wrong>`, e.g. `data.jsonl:7: missing field 'output'`.
    """
    try:
        if not isinstance(row, dict):
            raise _RowError(f"expected a JSON object, got {_kind(row)}")
        shape = shape or _detect(row)
        ex = _READERS[shape](row)
    except _RowError as e:
        raise UserError(f"{where}: {e}") from None
    ex.update({k: row[k] for k in META_KEYS if isinstance(row.get(k), str)})
    return ex, shape


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a user's SFT file in the Alpaca, chat or ShareGPT shape.

    The first row decides the file's shape; every row must then have it. Empty lines are
    skipped. Known metadata keys (`task`, `template`, `entity`, `answer`) are kept when they
    are strings; other extra keys are ignored.

    Args:
        path: a .jsonl file, one JSON object per line.

    Returns:
        The examples, each {"instruction", "input", "output"} plus `system` and metadata
        when the row had them.

    Raises:
        UserError: one line naming the file, the line and the field, e.g.
            `data.jsonl:7: missing field 'output'`.
    """
    shape, examples = None, []
    for where, row in json_lines(path):
        ex, shape = parse_row(row, where, shape)
        examples.append(ex)
    if not examples:
        raise UserError(f"{path}: no examples (the file is empty)")
    return examples


def json_lines(path: str | Path) -> Iterator[tuple[str, object]]:
    """("file:line", the parsed JSON value) for every non-empty line of a .jsonl file.

    Raises:
        UserError: the file cannot be read, or a line is not UTF-8 or not JSON (naming the line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"{path}:{lineno}: not valid UTF-8") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        yield f"{path}:{lineno}", row
