"""docs/reference/ is generated from the code (`make docs`); these tests keep it current and complete.

Two checks, on purpose independent of each other:

- the committed pages equal what the generator writes now (a changed help text, default
  or route makes them stale: run `make docs`);
- every command and option of the argparse tree, every config key of the schemas and
  every route of the API's OpenAPI schema appears in the pages, walked here without the
  generator's help, so a generator that skips something fails too.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from cluster import reference

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reference"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reference")
    reference.write_all(out)
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def committed(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/reference/{name} is missing: run `make docs`"
    return path.read_text()


# --------------------------------------------------------------------------- current


def test_generator_writes_the_expected_pages(generated):
    assert sorted(generated) == sorted(reference.PAGES)
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(reference.PAGES), \
        "docs/reference/ holds pages the generator does not write (or lacks some): run `make docs`"


@pytest.mark.parametrize("name", reference.PAGES)
def test_committed_page_is_current(generated, name):
    want, have = generated[name], committed(name)
    if have != want:
        diff = "".join(list(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                                 f"docs/reference/{name} (committed)", "(generated now)"))[:40])
        pytest.fail(f"docs/reference/{name} is out of date: run `make docs` and commit the result\n{diff}")


def test_pages_are_deterministic_and_hold_no_local_paths(generated):
    assert generated == {name: text for name, text in reference.render_all().items()}
    for name, text in generated.items():
        assert str(ROOT) not in text and "/home/" not in text, name


# --------------------------------------------------------------------------- complete: commands


def walk_parser(parser: argparse.ArgumentParser, path: str = "playground"):
    """(command line, its option strings and positional names) for every command, walked here."""
    names = []
    subs = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            subs += [(f"{path} {name}", p) for name, p in a.choices.items()]
        elif not isinstance(a, argparse._HelpAction):
            names += a.option_strings or [a.metavar or a.dest]
    yield path, names
    for sub_path, sub in subs:
        yield from walk_parser(sub, sub_path)


def sections(text: str, marker: str) -> dict[str, str]:
    """Heading line -> the text up to the next heading of the same level."""
    parts = ("\n" + text).split("\n" + marker)
    return {part.split("\n", 1)[0]: part for part in parts[1:]}


def missing_cli(text: str) -> list[str]:
    from cluster.cli import build_parser

    found = sections(text, "## ")
    missing = []
    for command, names in walk_parser(build_parser()):
        section = found.get(f"`{command}`")
        if section is None:
            missing.append(command)
            continue
        missing += [f"{command} {n}" for n in names if f"`{n}`" not in section]
    return missing


def test_cli_page_lists_every_command_and_option():
    assert missing_cli(committed("cli.md")) == []


# --------------------------------------------------------------------------- complete: config keys


def schema_keys(cls: type, prefix: str = "") -> list[str]:
    if issubclass(cls, BaseModel):
        items = [(name, f.annotation) for name, f in cls.model_fields.items()]
    else:
        hints = typing.get_type_hints(cls)
        items = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    keys = []
    for name, tp in items:
        keys.append(prefix + name)
        inner, path = tp, ""
        while typing.get_origin(inner) is not None:  # Optional[X], list[X], dict[str, X]
            args = [a for a in typing.get_args(inner) if a is not type(None)]
            if typing.get_origin(inner) is list:
                path += "[]"
            elif typing.get_origin(inner) is dict:
                path, args = path + ".<name>", args[1:]
            if len(args) != 1:
                break
            inner = args[0]
        if isinstance(inner, type) and (issubclass(inner, BaseModel) or dataclasses.is_dataclass(inner)):
            keys += schema_keys(inner, f"{prefix}{name}{path}.")
    return keys


def config_schemas() -> list[type]:
    from services.schemas import APIAppArgs, LLMAppArgs
    from training.config import PretrainConfig
    from training.data.config import PipelineConfig
    from training.posttrain.config import SFTConfig
    from training.pretrain.sweep import SweepConfig

    return [PretrainConfig, PipelineConfig, SFTConfig, SweepConfig, LLMAppArgs, APIAppArgs]


def missing_config(text: str) -> list[str]:
    found = sections(text, "## ")
    missing = []
    for cls in config_schemas():
        section = next((body for head, body in found.items() if head.endswith(f"`{cls.__name__}`")), None)
        if section is None:
            missing.append(cls.__name__)
            continue
        missing += [f"{cls.__name__}: {k}" for k in schema_keys(cls) if f"| `{k}` |" not in section]
    return missing


def test_config_page_lists_every_key():
    keys = schema_keys(config_schemas()[0])
    assert {"train.lr", "model.n_layer", "data.sources", "tokenizer.vocab_size"} <= set(keys)
    assert missing_config(committed("config.md")) == []


def test_config_page_names_a_schema_for_every_configs_folder():
    from cluster.reference_config import FOLDERS

    folders = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())
    assert sorted(FOLDERS) == folders, "add the folder to FOLDERS in cluster/reference_config.py"
    text = committed("config.md")
    assert all(f"| `configs/{f}/` |" in text for f in folders)


# --------------------------------------------------------------------------- complete: routes


def missing_http(text: str) -> list[str]:
    from services.api import app
    from services.llm import CHECKED_PATHS

    api = [f"#### `{m.upper()} /api{path}`" for path, ops in app.openapi()["paths"].items() for m in ops]
    openai = [f"| `{r}` |" for r in [f"POST {p}" for p in CHECKED_PATHS] + ["GET /v1/models"]]
    lines = set(text.splitlines())
    return [r for r in api if r not in lines] + [r for r in openai if r not in text]


def test_http_page_lists_every_route():
    assert missing_http(committed("http.md")) == []


# --------------------------------------------------------------------------- the checks can fail


@pytest.mark.parametrize(("name", "line", "check"), [
    ("cli.md", "| `--force` |", missing_cli),
    ("config.md", "| `train.lr` |", missing_config),
    ("http.md", "#### `POST /api/deployments`", missing_http),
])
def test_a_page_missing_a_line_fails_the_coverage_check(generated, name, line, check):
    text = generated[name]
    assert line in text
    dropped = "\n".join(x for x in text.splitlines() if not x.startswith(line))
    assert check(text) == [] and check(dropped) != []


def test_links_between_the_pages_resolve(generated):
    anchors = {name: {reference.anchor(line.lstrip("#").strip()) for line in text.splitlines()
                      if line.startswith("#")} for name, text in generated.items()}
    for name, text in generated.items():
        for target, frag in re.findall(r"\]\(([\w.]*)#([^)]+)\)", text):
            assert frag in anchors[target or name], f"{name}: link to {target or name}#{frag} goes nowhere"
