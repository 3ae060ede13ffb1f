"""docs/reference/config.md: every config key, walked from the schemas in code.

`config_keys(schema)` flattens a schema into dotted keys (`train.lr`, `model.n_layer`,
`stages.near_dedup.threshold`): pydantic models and plain dataclasses (the transformer's
`ModelConfig` is one; pydantic validates it when it sits inside a run config), nested
ones, optional ones (`X | None`), lists of them (`key[].field`) and dicts of them
(`key.<name>.field`). A field's text is its `description`, else the comment on or just
above its line, so the dataclass documents itself the way it is read.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import json
import tokenize
import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cluster.reference_md import ROOT, anchor, cell, escape, first_paragraph, rel, table

_CONSTRAINTS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"),
                ("min_length", "min length"), ("max_length", "max length"), ("pattern", "matches"))


@dataclass(frozen=True)
class Key:
    """One row of the page: a leaf key, or a section (a nested schema) with its own table."""

    key: str
    type: str
    default: str
    doc: str
    parent: str = ""  # the section it sits in ("" for the top level)
    schema: type | None = None  # set for a section


@dataclass(frozen=True)
class Schema:
    """A documented schema: its title, the class, what reads it."""

    title: str
    cls: type
    used_by: str


def schemas() -> list[Schema]:
    """The schemas the page documents, in page order (imports here: the run config pulls in torch)."""
    from evaluation.config import EvalConfig
    from services.prompts.templates import PromptTemplate
    from services.schemas import APIAppArgs, LLMAppArgs
    from training.config import PretrainConfig
    from training.data.config import PipelineConfig
    from training.posttrain.align_config import AlignConfig
    from training.posttrain.config import SFTConfig
    from training.posttrain.experiment import ExperimentConfig
    from training.pretrain.sweep import SweepConfig

    return [
        Schema("Pretraining run", PretrainConfig,
               "`configs/pretrain/*.yaml`; `playground pretrain`, `playground data prepare`, "
               "`playground tokenizer train`, `playground bench train`; `POST /api/jobs` (kind pretrain, tokenizer). "
               "Tokenizer training is its `tokenizer.*` section."),
        Schema("Data pipeline", PipelineConfig,
               "`configs/data/*.yaml`; `playground data run`; `POST /api/data/jobs`, `POST /api/jobs` (kind data)"),
        Schema("Fine-tuning run", SFTConfig,
               "`configs/sft/*.yaml`; `playground sft`; `POST /api/jobs` (kind sft), which the Fine-tune page sends."),
        Schema("Alignment run", AlignConfig,
               "`configs/align/*.yaml`; `playground reward`, `playground dpo`, `playground grpo` (the command names "
               "the method); `POST /api/jobs` (kinds reward, dpo, grpo), which the Fine-tune page's Align view sends."),
        Schema("Sweep", SweepConfig,
               "`configs/tune/*.yaml`; `playground tune`; `POST /api/jobs` (kind tune). "
               "`fixed` and `search` take dotted keys of the run config of its `stage` (pretraining or fine-tuning)."),
        Schema("Fine-tuning experiment", ExperimentConfig,
               "`configs/experiments/*.yaml`; `playground experiment`; `POST /api/jobs` (kind experiment), which "
               "the Fine-tune page's Experiments view sends. `fixed` and each variant take dotted keys of the "
               "fine-tuning run config."),
        Schema("Evaluation", EvalConfig,
               "`configs/eval/*.yaml`; `playground eval`; `POST /api/evals`, `POST /api/jobs` (kind eval). "
               "`models` and `tasks` are usually given on the command line (`--model`, `--tasks`)."),
        Schema("Prompt template", PromptTemplate,
               "`configs/prompts/*.yaml` (curated, version 1 of each name); `POST /api/prompts` saves a new version"),
        Schema("Serve args of the LLM application", LLMAppArgs,
               "the `args:` block of the application `services.app:build_llm_app` in `configs/serve/*.yaml`"),
        Schema("Serve args of the playground API", APIAppArgs,
               "the `args:` block of the application `services.app:build_api_app` in `configs/serve/*.yaml`"),
    ]


# What each folder of configs/ holds. The test checks that every folder is listed here.
FOLDERS = {
    "align": "Alignment run",
    "data": "Data pipeline",
    "eval": "Evaluation",
    "experiments": "Fine-tuning experiment",
    "pretrain": "Pretraining run",
    "prompts": "Prompt template",
    "sft": "Fine-tuning run",
    "serve": "Ray Serve's own config file schema (`ray.serve.schema.ServeDeploySchema`, see "
             "https://docs.ray.io/en/latest/serve/production-guide/config.html); each application's `args:` "
             "follows the schema of its `import_path`: [`services.app:build_llm_app`](#{LLMAppArgs}), "
             "[`services.app:build_api_app`](#{APIAppArgs})",
    "tune": "Sweep",
}


# --------------------------------------------------------------------------- walking


def fields(cls: type) -> list[tuple[str, object, list, object, str]]:
    """(name, annotation, constraints, default, description) of a pydantic model or a dataclass, in
    declaration order. The default is `PydanticUndefined` for a required field; a default factory is called.
    """
    comments = _comments(cls)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        out = []
        for name, f in cls.model_fields.items():
            default = f.default_factory() if f.default_factory is not None else f.default
            out.append((name, f.annotation, list(f.metadata), default, f.description or comments.get(name, "")))
        return out
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = PydanticUndefined
        out.append((f.name, hints[f.name], [], default, f.metadata.get("description") or comments.get(f.name, "")))
    return out


def is_schema(tp: object) -> bool:
    return isinstance(tp, type) and (issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp))


def config_keys(cls: type, prefix: str = "", parent: str = "") -> list[Key]:
    """Every key of `cls`, depth first: a section row, then its keys, for each nested schema."""
    out: list[Key] = []
    for name, tp, limits, default, doc in fields(cls):
        key = f"{prefix}{name}"
        nested, path = _nested(tp)
        if nested is not None:
            out.append(Key(key, type_text(tp, limits), _default(default, section=True), doc, parent, nested))
            out.extend(config_keys(nested, f"{key}{path}.", key))
        else:
            out.append(Key(key, type_text(tp, limits), _default(default), doc, parent))
    return out


def _nested(tp: object) -> tuple[type | None, str]:
    """The schema inside `tp` and the key path to it: `Model`, `Model | None` -> "", `list[Model]` -> "[]",
    `dict[str, Model]` -> ".<name>"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _nested(args[0])
    if is_schema(tp):
        return tp, ""
    if origin in (typing.Union, types.UnionType):
        models = [a for a in args if a is not type(None)]
        if len(models) == 1:
            return _nested(models[0])
    if origin in (list, tuple, set, frozenset) and args:
        inner, path = _nested(args[0])
        return inner, "[]" + path
    if origin is dict and len(args) == 2:
        inner, path = _nested(args[1])
        return inner, ".<name>" + path
    return None, ""


def type_text(tp: object, metadata: list) -> str:
    """The Type column: the type in code, then its constraints (`int`, > 0).

    The constraints stay apart from the type: `Annotated[float, Gt(0.0)]` would come back from
    typing's cache as an earlier `Annotated[float, Gt(0)]` (they compare equal), and the page
    would depend on import order.
    """
    if typing.get_origin(tp) is typing.Annotated:
        metadata = [*typing.get_args(tp)[1:], *metadata]
    limits = [c for c in (constraint_text(m) for m in metadata) if c]
    return ", ".join([f"`{type_name(tp)}`", *limits])


def type_name(tp: object) -> str:
    """A type as a reader of YAML sees it: `int`, `"hf" | "scratch"`, `float | null`, `list[str]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any"
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(json.dumps(m.value) for m in tp)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    return getattr(tp, "__name__", str(tp))


def constraint_text(meta: object) -> str:
    """`> 0` for `Gt(0)`, `matches ^[a-z]+$` for a pattern; "" for metadata that is not a constraint."""
    return ", ".join(f"{word} `{getattr(meta, attr)}`" if attr == "pattern" else f"{word} {getattr(meta, attr)}"
                     for attr, word in _CONSTRAINTS if getattr(meta, attr, None) is not None)


def _default(value: object, section: bool = False) -> str:
    if value is PydanticUndefined:
        return "required"
    if section:  # a nested schema: its keys carry the defaults
        return "" if value is not None else "null"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment at the end of its line, else the comment lines right above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1].strip() != tok.string:
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    for i, line in enumerate(lines, start=1):
        name = line.strip().split(":")[0]
        if not line.startswith("    ") or line.startswith("     ") or not name.isidentifier():
            continue
        if i in trailing:
            out[name] = trailing[i]
            continue
        above = []
        j = i - 1
        while j >= 1 and lines[j - 1].strip().startswith("#"):
            above.insert(0, lines[j - 1].strip().lstrip("#").strip())
            j -= 1
        out[name] = " ".join(above)
    return out


# --------------------------------------------------------------------------- page


def render_config() -> str:
    """The whole config.md page."""
    docs = schemas()
    out = ["# Configuration reference", "",
           ("Generated from the schemas in code by `make docs` (`python -m cluster.reference`); "
           "`tests/unit/test_docs_reference.py` fails when this page is out of date."), "",
           ("Layering, lowest to highest priority: the defaults below, then the YAML file given with "
           "`--config`, then dotted `key=value` overrides on the command line (`train.lr=3e-4`). "
           "Unknown keys are errors that name the key. Types: `A | B` is either, `null` is YAML's null, "
           "`list[T]` a YAML list, `dict[K, V]` a mapping; `> 0` and the like are the allowed range. "
           "A key `a[].b` is `b` in each item of the list `a`; `a.<name>.b` is `b` in each value of the mapping `a`."),
           "", "## Which schema each folder of `configs/` follows", "",
           *table(["Folder", "Schema", "Files"], [_folder_row(folder, docs) for folder in _folders()]), ""]
    for s in docs:
        out += _schema_section(s)
    return "\n".join(out).rstrip() + "\n"


def schema_anchors() -> dict[str, str]:
    """Class name -> its section's anchor on config.md, for every schema the page has a table for."""
    out = {}
    for s in schemas():
        out[s.cls.__name__] = anchor(_heading(s.title, s.cls))
        for k in config_keys(s.cls):
            if k.schema is not None:
                out.setdefault(k.schema.__name__, anchor(_section_heading(k)))
    return out


def _folders() -> list[str]:
    return sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())


def _folder_row(folder: str, docs: list[Schema]) -> list[str]:
    title = FOLDERS.get(folder, "(not documented: add it to FOLDERS in cluster/reference_config.py)")
    match = next((s for s in docs if s.title == title), None)
    anchors = {s.cls.__name__: anchor(_heading(s.title, s.cls)) for s in docs}
    schema = f"[{title}: `{match.cls.__name__}`](#{anchors[match.cls.__name__]})" if match \
        else title.format(**anchors)
    files = sorted(p.name for p in (ROOT / "configs" / folder).glob("*.yaml"))
    return [f"`configs/{folder}/`", schema, ", ".join(f"`{f}`" for f in files)]


def _heading(title: str, cls: type) -> str:
    return f"{title}: `{cls.__name__}`"


def _section_heading(k: Key) -> str:
    return f"`{k.key}`: `{k.schema.__name__}`"


def _schema_section(s: Schema) -> list[str]:
    out = [f"## {_heading(s.title, s.cls)}", "",
           f"Defined in `{rel(inspect.getsourcefile(s.cls))}`. Used by {s.used_by.rstrip('.')}.", ""]
    if doc := class_doc(s.cls):
        out += [escape(doc), ""]
    keys = config_keys(s.cls)
    out += _key_table([k for k in keys if not k.parent])
    for k in keys:
        if k.schema is None:
            continue
        out += [f"### {_section_heading(k)}", ""]
        if k.doc:
            out += [escape(k.doc), ""]
        if doc := class_doc(k.schema):
            out += [escape(doc), ""]
        out += _key_table([c for c in keys if c.parent == k.key])
    return out


def class_doc(cls: type) -> str:
    """The first paragraph of the class's docstring; "" for none or for the signature a dataclass makes up."""
    doc = first_paragraph(cls.__doc__)
    return "" if dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(") else doc


def _default_cell(default: str) -> str:
    if default == "required":  # a default that is the string "required" is dumped with its quotes
        return "**required**"
    return "`" + " ".join(default.split()).replace("|", "\\|") + "`" if default else ""


def _key_table(keys: list[Key]) -> list[str]:
    rows = [[f"`{k.key}`", f"section (`{k.schema.__name__}`)" if k.schema and k.type == f"`{k.schema.__name__}`"
             else cell(k.type), _default_cell(k.default), cell(k.doc)] for k in keys]
    return [*table(["Key", "Type", "Default", "Description"], rows), ""]
