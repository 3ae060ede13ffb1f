"""docs/reference/http.md: every HTTP route.

- The playground API: the OpenAPI schema of `services.api.app`, the FastAPI app that
  `PlaygroundAPI` serves as its Serve ingress. Importing it needs `ray.serve` but starts
  nothing (the routes are on the app at import time). A route's text is its docstring,
  else its line in the route table of its module's docstring (`GET /api/runs  ...`).
- The OpenAI-compatible routes: vLLM and Ray Serve LLM define them, and importing those
  loads vLLM (tens of seconds), so they are read from source with `ast` instead: Ray's
  `DEFAULT_ENDPOINTS` (the routes of its multi-model ingress, which the playground mounts
  on its own FastAPI app), plus the routes `services/llm.py` declares itself.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
from importlib.metadata import version
from pathlib import Path

import yaml

from cluster.reference_config import schema_anchors
from cluster.reference_md import ROOT, anchor, cell, escape, first_paragraph, rel, table

API_IMPORT_PATH = "services.app:build_api_app"
LLM_IMPORT_PATH = "services.app:build_llm_app"
METHODS = ("get", "post", "put", "patch", "delete")
RAY_INGRESS = "llm/_internal/serve/core/ingress/ingress.py"  # inside the installed ray package
_DOC_ROUTE = re.compile(r"^\s+(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)\s+(\S.*)$")
_LIMITS = (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<="),
           ("minLength", "min length"), ("maxLength", "max length"), ("minItems", "min items"),
           ("maxItems", "max items"), ("pattern", "matches"))


def api_app():
    """The playground API's FastAPI app (import only: no Ray, no Serve started)."""
    from services.api import app

    return app


def serve_settings() -> tuple[dict[str, str], dict]:
    """(import path -> route prefix, http_options) from the Serve configs in configs/serve/."""
    prefixes: dict[str, str] = {}
    http: dict = {}
    for path in sorted((ROOT / "configs" / "serve").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        http = http or cfg.get("http_options") or {}
        for a in cfg.get("applications", []):
            prefixes.setdefault(a["import_path"], a.get("route_prefix", "/"))
    return prefixes, http


def api_routes(app=None) -> list[tuple[str, str, dict, str]]:
    """(METHOD, path, OpenAPI operation, module) for every route in the app's OpenAPI schema, in app order."""
    app = app or api_app()
    modules = {(m, r.path): r.endpoint.__module__ for r in app.routes
               for m in getattr(r, "methods", ()) if hasattr(r, "endpoint")}
    return [(method.upper(), path, op, modules.get((method.upper(), path), ""))
            for path, ops in app.openapi()["paths"].items() for method, op in ops.items() if method in METHODS]


def doc_routes(module: str) -> dict[tuple[str, str], str]:
    """(METHOD, path with {} for each parameter) -> its line in the route table of the module's docstring."""
    out: dict[tuple[str, str], str] = {}
    key, column = None, 0
    for line in (importlib.import_module(module).__doc__ or "").splitlines():
        m = _DOC_ROUTE.match(line)
        if m:
            key, column = (m.group(1), _shape(m.group(2).split("?")[0])), m.start(3)
            out[key] = m.group(3).strip()
        elif key and line.strip() and len(line) - len(line.lstrip()) >= column:
            out[key] += " " + line.strip()
        else:
            key = None
    return out


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


# --------------------------------------------------------------------------- JSON schema to text


def _ref_name(s: dict) -> str | None:
    return s["$ref"].rsplit("/", 1)[-1] if "$ref" in s else None


def js_type(s: dict, links: dict[str, str]) -> str:
    """A JSON schema as a short type: `integer`, `"bpe" | "unigram"`, `array of string`, a link to a schema."""
    if name := _ref_name(s):
        return f"[`{name}`]({links.get(name, '#' + anchor(name))})"
    if "enum" in s:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in s["enum"])
    if "const" in s:
        return f"`{json.dumps(s['const'])}`"
    if "anyOf" in s or "oneOf" in s:
        return " \\| ".join(js_type(x, links) for x in s.get("anyOf") or s["oneOf"])
    kind = s.get("type")
    if kind == "array":
        return f"`array` of {js_type(s.get('items', {}), links)}"
    if kind == "object" and isinstance(s.get("additionalProperties"), dict):
        return f"`object` of {js_type(s['additionalProperties'], links)}"
    return f"`{kind}`" if kind else "any"


def js_limits(s: dict) -> list[str]:
    """The constraints of a schema and of the members of its union, as `> 0`, `max length 200`."""
    out = [f"{word} `{s[k]}`" if k == "pattern" else f"{word} {s[k]:g}" if isinstance(s[k], float)
           else f"{word} {s[k]}" for k, word in _LIMITS if k in s]
    for member in s.get("anyOf") or s.get("oneOf") or []:
        out += js_limits(member)
    return out


def _type_cell(s: dict, links: dict[str, str]) -> str:
    return ", ".join([js_type(s, links), *js_limits(s)])


def _default(s: dict) -> str:
    return f"`{json.dumps(s['default'])}`".replace("|", "\\|") if "default" in s else ""


# --------------------------------------------------------------------------- the OpenAI-compatible routes


def ray_endpoints() -> list[tuple[str, str, str, str]]:
    """(METHOD, path, handler, its docstring's first line) from Ray Serve LLM's `DEFAULT_ENDPOINTS`, read
    with `ast` from the installed ray (importing it would load vLLM)."""
    source_path = Path(importlib.util.find_spec("ray").submodule_search_locations[0]) / RAY_INGRESS
    tree = ast.parse(source_path.read_text())
    docs = {f.name: first_paragraph(ast.get_docstring(f)) for c in tree.body
            if isinstance(c, ast.ClassDef) and c.name == "OpenAiIngress"
            for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEFAULT_ENDPOINTS" for t in node.targets):
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                for method, path in _route_calls(v):
                    out.append((method, path, k.value, docs.get(k.value, "")))
    return out


def module_routes(path: Path) -> list[tuple[str, str, str]]:
    """(METHOD, path, enclosing function) for every `@<app>.get("/...")`-style route declared in a source file."""
    out = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in fn.body:
                for decorator in getattr(node, "decorator_list", []):
                    out += [(method, route, fn.name) for method, route in _route_calls(decorator)]
    return out


def _route_calls(node: ast.AST) -> list[tuple[str, str]]:
    if isinstance(node, ast.Lambda):
        node = node.body
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in METHODS \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return [(node.func.attr.upper(), node.args[0].value)]
    return []


# --------------------------------------------------------------------------- page


def render_http(app=None) -> str:
    """The whole http.md page."""
    app = app or api_app()
    prefixes, http = serve_settings()
    api_prefix = prefixes.get(API_IMPORT_PATH, "/api").rstrip("/")
    llm_prefix = prefixes.get(LLM_IMPORT_PATH, "/").rstrip("/")
    links = {name: f"config.md#{a}" for name, a in schema_anchors().items()}
    base = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    out = ["# HTTP reference", "",
           ("Generated from the code by `make docs` (`python -m cluster.reference`); "
           "`tests/unit/test_docs_reference.py` fails when this page is out of date or misses a route."), "",
           (f"Ray Serve answers on `{base}` (`http_options` in `configs/serve/`). Two applications: the playground "
           f"API under `{api_prefix}` and the OpenAI-compatible API under `{llm_prefix or '/'}`. When an API key is "
           "set (`api_key` in the Serve args, or `PLAYGROUND_API_KEY`), every route wants `Authorization: Bearer "
           "KEY`. Errors come in OpenAI's shape, `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`, "
           "with `param` naming the field at fault (`services/llm.py`)."), ""]
    out += _api_section(app, api_prefix, links)
    out += _openai_section(llm_prefix)
    out += _schemas_section(app, links)
    return "\n".join(out).rstrip() + "\n"


def _api_section(app, prefix: str, links: dict[str, str]) -> list[str]:
    routes = api_routes(app)
    modules = list(dict.fromkeys(m for *_, m in routes))
    notes = {m: doc_routes(m) for m in modules if m}
    out = [f"## Playground API (`{prefix}`)", "",
           (f"From the OpenAPI schema of the FastAPI app in `services/api.py` (the Serve ingress of `PlaygroundAPI`) "
           f"and the routers it mounts. The running API serves the same schema at `{prefix}{app.openapi_url}` and "
           f"interactive docs at `{prefix}{app.docs_url}`."), ""]
    rows = []
    for method, path, op, module in routes:
        note = notes.get(module, {}).get((method, _shape(prefix + path)))
        rows.append([f"[`{method} {prefix}{path}`](#{anchor(f'{method} {prefix}{path}')})",
                     cell(note or op.get("summary", "")), f"`{_module_file(module)}`"])
    out += [*table(["Route", "What it does", "Code"], rows), ""]
    for module in modules:
        out += [f"### `{_module_file(module)}`", ""]
        if doc := first_paragraph(importlib.import_module(module).__doc__):
            out += [escape(doc), ""]
        for method, path, op, m in routes:
            if m == module:
                out += _route(method, prefix + path, op, notes.get(module, {}), links)
    extra = [r for r in app.routes if not getattr(r, "include_in_schema", False)]
    if extra:
        out += ["### FastAPI's own routes", "", "Not in the OpenAPI schema: the schema and the docs pages.", "",
                *table(["Route", "Name"], [[f"`{' '.join(sorted(r.methods - {'HEAD'}))} {prefix}{r.path}`",
                                            f"`{r.name}`"] for r in extra]), ""]
    return out


def _module_file(module: str) -> str:
    return rel(inspect.getsourcefile(importlib.import_module(module))) if module else "?"


def _route(method: str, path: str, op: dict, notes: dict, links: dict[str, str]) -> list[str]:
    out = [f"#### `{method} {path}`", ""]
    for text in (notes.get((method, _shape(path))), op.get("description")):
        if text:
            out += [escape(" ".join(text.split())), ""]
    params = op.get("parameters", [])
    if params:
        rows = [[f"`{p['name']}`", p["in"], _type_cell(p.get("schema", {}), links),
                 "yes" if p.get("required") else "", _default(p.get("schema", {})),
                 cell(p.get("description") or p.get("schema", {}).get("description", ""))] for p in params]
        out += [*table(["Parameter", "In", "Type", "Required", "Default", "Description"], rows), ""]
    body = op.get("requestBody")
    if body:
        for media, content in sorted(body.get("content", {}).items()):
            out += [(f"Body ({'required' if body.get('required') else 'optional'}, `{media}`): "
                    f"{js_type(content.get('schema', {}), links)}"), ""]
    ok = sorted(code for code in op.get("responses", {}) if code.startswith("2"))
    if ok:
        out += [f"Success: {', '.join(ok)}.", ""]
    return out


def _openai_section(prefix: str) -> list[str]:
    from services.llm import CHECKED_PATHS

    llm_file = ROOT / "services" / "llm.py"
    out = [f"## OpenAI-compatible API (`{prefix or '/'}`)", "",
           ("vLLM's OpenAI server answers these routes (through `ray.serve.llm`), so no schema of them exists "
           "without starting vLLM. They are read from the code that mounts them: the routes of Ray Serve LLM's "
           f"ingress (`DEFAULT_ENDPOINTS` in ray {version('ray')}'s `ray/{RAY_INGRESS}`), which "
           "`services/llm.py` mounts on its own FastAPI app when several models are served. With one model the "
           "replica answers with vLLM's own OpenAI server, which has these routes and a few more that depend on "
           f"the vLLM version. The playground checks the body of `POST` requests to "
           f"{', '.join(f'`{p}`' for p in CHECKED_PATHS)} itself first (`CHECKED_PATHS` in `services/llm.py`: "
           "JSON object, a served `model`, non-empty `messages`)."), ""]
    rows = [[f"`{method} {prefix}{path}`", f"`OpenAiIngress.{handler}`",
             "yes" if method == "POST" and path in CHECKED_PATHS else "", cell(doc)]
            for method, path, handler, doc in ray_endpoints()]
    out += [*table(["Route", "Ray handler", "Checked by the playground", "Description"], rows), ""]
    own = module_routes(llm_file)
    if own:
        out += ["Routes `services/llm.py` declares itself:", "",
                *table(["Route", "In", "Description"],
                       [[f"`{m} {prefix}{p}`", f"`{fn}`", cell(first_paragraph(_function_doc(llm_file, fn)))]
                        for m, p, fn in own]), ""]
    return out


def _function_doc(path: Path, name: str) -> str:
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == name:
            return ast.get_docstring(fn) or ""
    return ""


def _schemas_section(app, links: dict[str, str]) -> list[str]:
    components = app.openapi().get("components", {}).get("schemas", {})
    names = [n for n in _request_schemas(app.openapi()) if n not in links]
    if not names:
        return []
    out = ["## Request bodies", "",
           ("The JSON bodies of the routes above, from the same OpenAPI schema. Those that are config schemas link "
           "to [the configuration reference](config.md)."), ""]
    for name in names:
        s = components[name]
        out += [f"### `{name}`", ""]
        if s.get("description"):
            out += [escape(" ".join(s["description"].split())), ""]
        required = set(s.get("required", []))
        rows = [[f"`{field}`", _type_cell(p, links), "yes" if field in required else "", _default(p),
                 cell(p.get("description", ""))] for field, p in s.get("properties", {}).items()]
        out += [*table(["Field", "Type", "Required", "Default", "Description"], rows), ""]
    return out


def _request_schemas(spec: dict) -> list[str]:
    """Component names reachable from request bodies and parameters, in first-seen order."""
    components = spec.get("components", {}).get("schemas", {})
    seen: dict[str, None] = {}

    def visit(node):
        if isinstance(node, dict):
            name = _ref_name(node)
            if name and name not in seen:
                seen[name] = None
                visit(components.get(name, {}))
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            visit(op.get("requestBody", {}))
            visit(op.get("parameters", []))
    return list(seen)
