"""The prompt library in the workspace: every save is a new, immutable version.

```
workspace/prompts/<name>/
  v0002.json     {"name", "version", "created_at", "note", "parent", "template": {...PromptTemplate...}}
  v0003.json     each written once, atomically (a temp file, then os.replace), never changed
  .lock          held while a save picks its number, so two saves at once get two numbers
```

A curated template (configs/prompts/<name>.yaml) is version 1 of its name, read-only; saving over a
curated name starts the user's own versions at 2, and the curated text stays one `revert` away. A
name of the user's own starts at 1. Reverting never rewrites history either: it saves the old
version's content again, as a new version whose `parent` says where it came from.

A version is compared with another as text: both are written out as the same YAML a curated file
holds, and `difflib` gives a unified diff of the two, as `git diff` would show it.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

from services.prompts.templates import NAME, PromptTemplate, curated, validate
from training.errors import UserError
from training.workspace import Workspace

_FILE = re.compile(r"^v(\d{4,})\.json$")
# Names the routes use beside /api/prompts/{name}: a template may not take them.
RESERVED = frozenset({"render", "fewshot", "ab-test", "datasets"})


def prompts_dir(ws: Workspace) -> Path:
    return ws.root / "prompts"


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME, name):
        raise UserError(f"{field}: {name!r} is not a template name (lowercase letters, digits, '-' and '_', "
                        "at most 64)")
    if name in RESERVED:
        raise UserError(f"{field}: {name!r} is reserved by the API; pick another name")
    return name


def _saved(ws: Workspace, name: str) -> dict[int, Path]:
    """version -> file, of the versions saved in the workspace under `name`."""
    folder = prompts_dir(ws) / name
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := _FILE.match(p.name))}


def _curated_record(t: PromptTemplate) -> dict:
    return {"name": t.name, "version": 1, "source": "curated", "created_at": None,
            "note": "curated (configs/prompts)", "parent": None, "template": t.model_dump()}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) | {"source": "saved"}


def version_numbers(ws: Workspace, name: str) -> list[int]:
    """Every version of `name`, oldest first (empty when there is no such template)."""
    return sorted(set(_saved(ws, name)) | ({1} if name in curated() else set()))


def _record(ws: Workspace, name: str, version: int | None, name_field: str = "name",
            version_field: str = "version") -> dict:
    """The stored record of one version (the latest when `version` is None); a UserError naming
    `name_field` or `version_field` when there is no such template or version."""
    check_name(name, name_field)
    numbers = version_numbers(ws, name)
    if not numbers:
        raise UserError(f"{name_field}: no template {name!r} (GET /api/prompts lists them)")
    version = numbers[-1] if version is None else version
    if version not in numbers:
        raise UserError(f"{version_field}: no version {version} of template {name!r} (it has "
                        f"{', '.join(map(str, numbers))})")
    saved = _saved(ws, name)
    return _read(saved[version]) if version in saved else _curated_record(curated()[name])


def get(ws: Workspace, name: str, version: int | None = None, *, field: str = "") -> dict:
    """One version of a template, flat: its fields, `version`, `latest`, `source` (curated or saved),
    `created_at`, `note`, `parent` (the version a revert copied; else None).

    Args:
        name: the template's name.
        version: a version number; None: the latest.
        field: prefix for the error's field name (`a.` makes it `a.name`, `a.version`).
    """
    rec = _record(ws, name, version, f"{field}name", f"{field}version")
    numbers = version_numbers(ws, name)
    return {**rec["template"], "version": rec["version"], "latest": numbers[-1], "versions": len(numbers),
            "source": rec["source"], "created_at": rec["created_at"], "note": rec.get("note", ""),
            "parent": rec.get("parent"), "curated": name in curated()}


def template_of(rec: dict) -> PromptTemplate:
    """The PromptTemplate inside a record from `get`."""
    return PromptTemplate.model_validate({k: rec[k] for k in PromptTemplate.model_fields})


def history(ws: Workspace, name: str) -> list[dict]:
    """Every version of `name`, oldest first: `{version, source, created_at, note, parent}`."""
    check_name(name)
    if not version_numbers(ws, name):
        raise UserError(f"name: no template {name!r} (GET /api/prompts lists them)")
    out = []
    for v in version_numbers(ws, name):
        rec = _record(ws, name, v)
        out.append({k: rec.get(k) for k in ("version", "source", "created_at", "note", "parent")})
    return out


def list_templates(ws: Workspace, category: str | None = None) -> list[dict]:
    """The latest version of every template, curated and saved, by category then name: `{name, title,
    category, when_it_helps, variables, version, versions, curated, source}`."""
    folder = prompts_dir(ws)
    names = set(curated()) | ({p.name for p in folder.iterdir() if p.is_dir() and re.fullmatch(NAME, p.name)}
                              if folder.is_dir() else set())
    out = []
    for name in sorted(names):
        if not version_numbers(ws, name):
            continue  # an empty folder (a save that failed before writing anything)
        rec = get(ws, name)
        if category and rec["category"] != category:
            continue
        out.append({k: rec[k] for k in ("name", "title", "category", "when_it_helps", "version", "versions",
                                        "curated", "source")} | {"variables": list(rec["variables"])})
    return sorted(out, key=lambda r: (r["category"], r["name"]))


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _write_new(folder: Path, version: int, record: dict) -> Path:
    """Write `record` as `v{version}.json`, all at once: readers see no file or the whole file."""
    final = folder / f"v{version:04d}.json"
    if final.exists():  # versions are immutable; under the lock this cannot happen
        raise RuntimeError(f"{final.name} exists already")
    tmp = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(record, indent=1, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def save(ws: Workspace, data: dict, *, note: str = "", parent: int | None = None) -> dict:
    """Save `data` (the fields of a PromptTemplate) as the next version of `data["name"]`.

    Nothing is written unless the whole template is valid (every placeholder declared, every
    declared variable used, the example renders); the version file appears complete or not at all.

    Returns:
        the new version, as `get` returns it.
    """
    if not isinstance(data, dict):
        raise UserError("template: a mapping of a template's fields")
    check_name(data.get("name"))
    t = validate(data)
    if len(note) > 500:
        raise UserError(f"note: at most 500 characters, got {len(note)}")
    folder = prompts_dir(ws) / t.name
    with _locked(folder):
        numbers = version_numbers(ws, t.name)
        version = (numbers[-1] if numbers else 0) + 1
        record = {"name": t.name, "version": version, "created_at": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "note": note.strip(), "parent": parent, "template": t.model_dump()}
        _write_new(folder, version, record)
    return get(ws, t.name, version)


def revert(ws: Workspace, name: str, version: int) -> dict:
    """Make version `version`'s content the newest version again (saved as a new version)."""
    rec = _record(ws, name, version)
    return save(ws, rec["template"], note=f"revert to version {version}", parent=version)


def as_text(template: dict) -> str:
    """A template's fields as the YAML of a configs/prompts file (what `diff` compares)."""
    t = {k: v for k, v in template.items() if v not in (None, "", {})}
    t["variables"] = {k: {kk: vv for kk, vv in v.items() if vv not in (None, "")}
                      for k, v in template.get("variables", {}).items()}
    return yaml.safe_dump(t, sort_keys=False, allow_unicode=True, width=100)


def diff(ws: Workspace, name: str, a: int, b: int) -> dict:
    """What changed from version `a` to version `b` of `name`: `{name, a, b, changed, fields, diff}`,
    `fields` the top-level fields that differ, `diff` a unified diff of the two as YAML."""
    ra, rb = _record(ws, name, a, version_field="a"), _record(ws, name, b, version_field="b")
    ta, tb = ra["template"], rb["template"]
    lines = difflib.unified_diff(as_text(ta).splitlines(keepends=True), as_text(tb).splitlines(keepends=True),
                                 fromfile=f"{name} v{a}", tofile=f"{name} v{b}")
    return {"name": name, "a": a, "b": b, "changed": ta != tb,
            "fields": [k for k in PromptTemplate.model_fields if ta.get(k) != tb.get(k)], "diff": "".join(lines)}
