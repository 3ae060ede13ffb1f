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
