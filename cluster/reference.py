"""The reference pages in docs/reference/, generated from the code:

    python -m cluster.reference          # or `make docs`

- `cli.md`: every `playground` command and option, walked from the argparse parser
  (`cluster.cli.build_parser`), here;
- `config.md`: every config key, walked from the pydantic schemas (`cluster/reference_config.py`);
- `http.md`: every HTTP route, from the playground API's OpenAPI schema and the code that
  mounts the OpenAI-compatible routes (`cluster/reference_http.py`).

The output is deterministic (no timestamps, no absolute paths): regenerating gives the
same bytes, and `tests/unit/test_docs_reference.py` fails when a page is out of date.
Nothing here starts Ray or vLLM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.reference_cli import render_cli
from cluster.reference_config import render_config
from cluster.reference_http import render_http
from cluster.reference_md import ROOT, anchor, rel, table

__all__ = ["PAGES", "anchor", "main", "render_all", "render_cli", "render_config", "render_http", "write_all"]

OUT = ROOT / "docs" / "reference"
PAGES = ("README.md", "cli.md", "config.md", "http.md")


# --------------------------------------------------------------------------- the pages


def render_index() -> str:
    out = ["# Reference", "",
           ("Generated from the code: run `make docs` after changing a command, a config schema or a route; "
           "`tests/unit/test_docs_reference.py` fails while a page is out of date or misses one of them."), "",
           *table(["Page", "What it lists", "Generated from"], [
               ["[Command line](cli.md)", "every `playground` command and subcommand with its options",
                "the argparse parser, `cluster/cli.py` and `cluster/cli_bench.py`"],
               ["[Configuration](config.md)", ("every config key (dotted, as in overrides) with its type, default "
                "and meaning; which schema each folder of `configs/` follows"),
                ("the pydantic schemas: `training/config.py`, `training/model/model_config.py`, "
                "`training/data/config.py`, `training/pretrain/sweep.py`, `services/schemas.py`")],
               ["[HTTP](http.md)", "every route of the playground API (`/api`) and the OpenAI-compatible routes",
                ("the API's OpenAPI schema (`services/api.py` and its routers), `services/llm.py` and Ray Serve "
                "LLM's ingress")],
           ])]
    return "\n".join(out).rstrip() + "\n"


def render_all() -> dict[str, str]:
    """Page name -> its text."""
    return {"README.md": render_index(), "cli.md": render_cli(), "config.md": render_config(),
            "http.md": render_http()}


def write_all(out_dir: str | Path = OUT) -> list[Path]:
    """Write every page into `out_dir` (created if needed); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT), help="output folder (default: docs/reference)")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(f"wrote {rel(path) if path.resolve().is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
