"""Prompt templates: text with `{{variables}}`, the schema every template follows, and strict rendering.

A template is a prompt with holes. `{{ review }}` (spaces inside the braces are allowed) is filled
with the value of the variable `review`; `\\{{` is a literal `{{` (for a prompt that must show
double braces itself); single braces are plain text, so JSON examples need no escaping.

Rendering is strict, because a prompt sent with a hole in it ("Classify: {{review}}") still gets
an answer, just a useless one, and nobody notices:

- a variable that is not filled (missing, or blank) falls back to its declared `default`, and
  without one it is an error that names it: `variables.review: not filled ...`;
- a value for a variable the template does not have is an error too (a typo in a form);
- values are inserted once, never re-read: a value that itself contains `{{x}}` stays as typed.

The curated templates are YAML files in configs/prompts/, one template each, validated by
`PromptTemplate` (tests/unit/test_prompts.py checks every file).

>>> render("Q: {{ q }}\\nA:", {"q": "2+2?"})
'Q: 2+2?\\nA:'
>>> render("Use \\\\{{name}} for a hole; this is {{name}}.", {"name": "Ada"})
'Use {{name}} for a hole; this is Ada.'
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "prompts"
CATEGORIES = ("classification", "summarization", "question_answering", "extraction", "rewriting",
              "chain_of_thought", "dialogue")
Category = Literal["classification", "summarization", "question_answering", "extraction", "rewriting",
                   "chain_of_thought", "dialogue", "other"]  # "other": a user's own, uncategorised
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# One pass over the text finds, in order: an escaped `\{{`, a placeholder `{{ name }}`, or a stray `{{`.
_TOKEN = re.compile(r"\\\{\{|\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\{\{")


class Variable(BaseModel):
    """One hole of a template: what to put there, and what goes there when nothing is given."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field("", description="what the variable holds, shown beside its field in the form")
    default: str | None = Field(None, description="used when no value is given; null: the variable must be "
                                                  "filled ('' makes it optional)")


class PromptTemplate(BaseModel):
    """A prompt template, as in configs/prompts/*.yaml and as saved in the workspace."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="its id: lowercase letters, digits, '-' and '_'")
    title: str = Field("", max_length=200, description="a human name for it")
    category: Category = Field("other", description="what kind of task it is for")
    template: str = Field(min_length=1, max_length=50_000, description="the message, with {{variable}} holes")
    system: str | None = Field(None, max_length=50_000, description="an optional system prompt (may use "
                                                                     "variables too)")
    variables: dict[str, Variable] = Field(default_factory=dict, description="every variable the template "
                                                                             "and system use, and only those")
    when_it_helps: str = Field("", max_length=2000, description="a short note: when to reach for it")
    example: dict[str, str] | None = Field(None, description="a filling of the variables that shows it at work")

    @model_validator(mode="after")
    def _variables_match(self):
        used = placeholders(self.template, "template") + placeholders(self.system or "", "system")
        for name in self.variables:
            if not VARIABLE.fullmatch(name):
                raise ValueError(f"variables.{name}: a variable name is letters, digits and '_', not starting "
                                 "with a digit")
        if missing := [v for v in dict.fromkeys(used) if v not in self.variables]:
            raise ValueError(f"variables: {', '.join(missing)} used in the text but not declared")
        if unused := [v for v in self.variables if v not in used]:
            raise ValueError(f"variables: {', '.join(unused)} declared but never used in the text")
        if self.example is not None:
            fill(self, self.example, field="example")  # every example must render
        return self


def placeholders(text: str, field: str = "template") -> list[str]:
    """The variable names in `text`, in order of first use (a stray `{{` is a UserError naming `field`).

    >>> placeholders("{{a}} and {{ b }} and {{a}} and \\\\{{c}}")
    ['a', 'b']
    """
    names = []
    for m in _TOKEN.finditer(text):
        if m.group(0) == "{{":
            snippet = text[m.start():m.start() + 20].split("\n")[0]
            raise UserError(f"{field}: '{snippet}' is not a placeholder: write {{{{name}}}} with a variable name, "
                            "or \\{{ for literal braces")
        if m.group(1) and m.group(1) not in names:
            names.append(m.group(1))
    return names


def render(text: str, values: dict[str, str], field: str = "variables") -> str:
    """`text` with every `{{name}}` replaced by `values[name]` (a missing one: UserError `field.name`)."""
    def one(m: re.Match) -> str:
        if m.group(0) == "\\{{":
            return "{{"
        if m.group(1) is None:
            raise UserError(f"template: a stray '{{{{' at character {m.start()}; escape it as \\{{{{")
        if m.group(1) not in values:
            raise UserError(f"{field}.{m.group(1)}: not filled")
        return str(values[m.group(1)])

    return _TOKEN.sub(one, text)


def fill(t: PromptTemplate, values: dict, *, field: str = "variables", extra: str = "error") -> dict[str, str]:
    """The values to render `t` with: the given ones, blanks filled from defaults; a variable left
    without a value is a UserError naming `field.<name>`, and so (unless `extra="ignore"`) is a value
    for a variable that `t` does not have."""
    if not isinstance(values, dict):
        raise UserError(f"{field}: a mapping of variable names to values, got {type(values).__name__}")
    if extra == "error" and (unknown := [k for k in values if k not in t.variables]):
        raise UserError(f"{field}.{unknown[0]}: template {t.name!r} has no such variable (its variables: "
                        f"{', '.join(t.variables) or 'none'})")
    out = {}
    for name, var in t.variables.items():
        value = values.get(name)
        value = None if value is None else (value if isinstance(value, str) else str(value))
        if value is None or not value.strip():
            if var.default is None:
                hint = f" ({var.description})" if var.description else ""
                raise UserError(f"{field}.{name}: not filled; template {t.name!r} needs it{hint}")
            value = var.default
        out[name] = value
    return out


def render_template(t: PromptTemplate, values: dict, *, field: str = "variables",
                    extra: str = "error") -> dict[str, str | None]:
    """`{"system", "text"}`: the template's system prompt (None if it has none) and message, filled in."""
    filled = fill(t, values, field=field, extra=extra)
    return {"system": render(t.system, filled, field) if t.system else None,
            "text": render(t.template, filled, field)}


def validate(data: dict, field_prefix: str = "") -> PromptTemplate:
    """`data` as a PromptTemplate; the first problem as a UserError naming its field."""
    try:
        return PromptTemplate.model_validate(data)
    except UserError as e:  # raised by a validator (a stray `{{`, an example that does not render)
        raise UserError(f"{field_prefix}{e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        named = re.match(r"[\w.\[\]]+: ", msg)
        raise UserError(f"{field_prefix}{msg}" if named or not where else f"{field_prefix}{where}: {msg}") from None


@functools.cache
def _curated(folder: str) -> dict[str, PromptTemplate]:
    out = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        t = validate(data, f"{path.name}: ")
        if t.name != path.stem:
            raise UserError(f"{path.name}: name: {t.name!r} differs from the file's name {path.stem!r}")
        out[t.name] = t
    return out


def curated(folder: Path = CONFIGS) -> dict[str, PromptTemplate]:
    """name -> the curated template, from configs/prompts/*.yaml (read once; each is version 1 of its name)."""
    return _curated(str(folder))


def count_curated(folder: Path = CONFIGS) -> int:
    """How many curated templates ship (the benchmark key `templates`; the goal is at least 20)."""
    return len(curated(folder))
