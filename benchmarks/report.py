"""Where the benchmarks' figures go: reports/bench/NAME.json, and one JSON line on stdout."""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.workspace import PROJECT_ROOT

REPORT_DIR = PROJECT_ROOT / "reports" / "bench"


def emit(name: str, figures: dict) -> Path:
    """Save the figures to reports/bench/NAME.json and print them as the last stdout line."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    os.replace(tmp, path)
    print(json.dumps(figures), flush=True)
    return path
