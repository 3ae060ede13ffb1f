"""The layout rules a reader relies on, checked so they stay true."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Only the recipes may import Ray inside training/: Ray Train, Ray Tune, Ray Data.
RAY_ALLOWED_IN_TRAINING = {"pretrain/pretrain.py", "pretrain/sweep.py", "data/pipeline.py", "posttrain/sft.py",
                           "posttrain/align.py"}
PROJECT_PACKAGES = ("cluster", "services", "training", "evaluation", "ui", "benchmarks")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "training").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_ray_only_in_recipes(path):
    if path.relative_to(ROOT / "training").as_posix() not in RAY_ALLOWED_IN_TRAINING:
        assert "ray" not in imported_modules(path), f"{path} must stay plain PyTorch"


@pytest.mark.parametrize("name", ["transformer.py", "model_config.py", "positions.py"])
def test_model_files_are_framework_free(name):
    assert imported_modules(ROOT / "training/model" / name) <= {"__future__", "dataclasses", "math", "typing", "torch"}


@pytest.mark.parametrize("path", sorted((ROOT / "ui").rglob("*.py")), ids=lambda p: p.name)
def test_ui_is_a_thin_http_client(path):
    assert not imported_modules(path) & {"torch", "ray", "training", "services"}


@pytest.mark.parametrize("name", ["training/tokenizers/tokenlab.py", "training/tokenizers/labtokenizer.py",
                                  "training/tokenizers/hf_tokenizers.py", "benchmarks/tokenizer.py",
                                  "training/tokenizers/tokenizer.py"])
def test_tokenizer_lab_is_plain_python(name):
    """The tokenizer lab is a library the API calls: no Ray, no web framework, no torch, no services."""
    assert not imported_modules(ROOT / name) & {"ray", "fastapi", "starlette", "torch", "services"}


@pytest.mark.parametrize("name", ["training/model/inspection.py", "training/model/configurator.py",
                                  "benchmarks/inspection.py", "training/model/export.py"])
def test_architecture_lab_is_plain_pytorch(name):
    """The lab's libraries are called by the API: no Ray, no web framework, no services."""
    assert not imported_modules(ROOT / name) & {"ray", "fastapi", "starlette", "services"}


# ---- the layout: one folder per stage, dependencies pointing one way ----

def _module_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (module-level and function-level imports alike)."""
    files = {}
    for pkg in PROJECT_PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = p

    def owner(name: str) -> str | None:  # the longest project module that `name` names or lies in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {t for t in map(owner, targets) if t and t != mod and not mod.startswith(t + ".")}
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more modules (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_module_graph()) == []


def test_training_reads_as_the_lifecycle():
    """Each stage in its own folder; only the shared plumbing lies loose in training/."""
    loose = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert len(loose) <= 10, loose
    stages = {p.name for p in (ROOT / "training").iterdir() if (p / "__init__.py").exists()}
    assert {"tokenizers", "data", "model", "pretrain"} <= stages


def test_benchmarks_live_together():
    """`services/` holds Serve deployments, their routes and schemas; every `playground bench` lives in benchmarks/."""
    assert not [p.name for p in (ROOT / "services").glob("*.py") if "bench" in p.name]
    for p in (ROOT / "services").rglob("*.py"):
        assert "benchmarks" not in imported_modules(p), p
    for p in (ROOT / "training").rglob("*.py"):  # lessons and recipes never depend on a benchmark
        assert "benchmarks" not in imported_modules(p), p


def test_one_place_reads_hugging_face_datasets():
    """Sources are read by one reader: a single `load_dataset` call site in training/."""
    sites = [f"{p.relative_to(ROOT)}:{node.lineno}"
             for p in (ROOT / "training").rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "load_dataset"]
    assert len(sites) == 1, sites
