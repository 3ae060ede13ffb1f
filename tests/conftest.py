"""Shared test fixtures. Unit tests (tests/unit) need no Ray; integration tests
(tests/integration) share one local Ray cluster per session."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Tests never reach the Hugging Face Hub (there is no internet here, and none is needed).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _ray_env_is_restored():
    """`playground eval` points its process at a Ray cluster left running on this machine
    (cluster.local.join_running_cluster sets RAY_ADDRESS and RAY_AUTH_MODE). A test that runs it
    must not leave the later tests, and the integration session's own cluster, pointing there."""
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
