"""Markdown helpers shared by the reference pages (`cluster/reference.py` and the page modules)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cell(text: object) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped, `<name>` kept visible."""
    return escape(" ".join(str(text).split())).replace("|", "\\|")


def escape(text: str) -> str:
    """Escape a `<` that opens a tag, outside `code spans`: Markdown renderers take `<model>` for HTML and drop it."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i])
    return "`".join(parts)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line ("" for none)."""
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


def rel(path: str | Path) -> str:
    """A path inside the repository, relative to its root (pages never hold absolute paths)."""
    return Path(path).resolve().relative_to(ROOT).as_posix()


def header(title: str, intro: str) -> list[str]:
    return [f"# {title}", "", "Generated from the code by `make docs` (`python -m cluster.reference`); "
            "`tests/unit/test_docs_reference.py` fails when this page is out of date. " + intro, ""]
