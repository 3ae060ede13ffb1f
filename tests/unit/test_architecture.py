"""The layout rules a reader relies on, checked so they stay true."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Only the recipes (and the benchmark that runs them) may import Ray inside training/.
RAY_ALLOWED_IN_TRAINING = {"pretrain.py", "sweep.py", "bench.py"}  # the recipes


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "training").glob("*.py")), ids=lambda p: p.name)
def test_ray_only_in_recipes(path):
    if path.name not in RAY_ALLOWED_IN_TRAINING:
        assert "ray" not in imported_modules(path), f"{path.name} must stay plain PyTorch"


def test_model_file_is_framework_free():
    assert imported_modules(ROOT / "training/model.py") <= {"__future__", "dataclasses", "math", "typing", "torch"}


@pytest.mark.parametrize("path", sorted((ROOT / "ui").rglob("*.py")), ids=lambda p: p.name)
def test_ui_is_a_thin_http_client(path):
    assert not imported_modules(path) & {"torch", "ray", "training", "services"}


@pytest.mark.parametrize("name", ["tokenlab.py", "labtokenizer.py", "hf_tokenizers.py", "bench_tokenizer.py", "tokenizer.py"])
def test_tokenizer_lab_is_plain_python(name):
    """The tokenizer lab is a library the API calls: no Ray, no web framework, no torch, no services."""
    assert not imported_modules(ROOT / "training" / name) & {"ray", "fastapi", "starlette", "torch", "services"}


@pytest.mark.parametrize("name", ["inspection.py", "configurator.py", "bench_inspect.py", "export.py"])
def test_architecture_lab_is_plain_pytorch(name):
    """The lab's libraries are called by the API: no Ray, no web framework, no services."""
    assert not imported_modules(ROOT / "training" / name) & {"ray", "fastapi", "starlette", "services"}
