"""The alignment views in headless Chromium against the live playground API (the session's Serve
stack): the Fine-tune page's Align view (start DPO; watch the session's real DPO run with its
curves, figures and the SFT and aligned answers side by side) and the Runs page's alignment
charts with their one-line explanations. Runs after test_serve.py (file order), on its stack."""

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import free_port

pytestmark = pytest.mark.integration


def test_browser_align_views_show_a_dpo_run(stack, dpo_run, tmp_path):
    from finetune_browser import check_align_pages

    out = check_align_pages(stack["base"], free_port(), dpo_run, tmp_path)
    assert not out["errors"], out["errors"]
    text = out["start_text"] + out["watch_text"] + out["runs_text"]
    assert "Traceback" not in text
    assert "beta" in out["start_text"] and "Loss" in out["start_text"]  # DPO's own options
    assert any("SFT reply" in t and "aligned reply" in t for t in out["tables"]), out["tables"]
    assert "KL to the SFT model" in out["watch_text"]
    for chart in ("Implicit rewards", "KL to the SFT model"):
        assert chart in out["runs_text"], chart
    assert "absolute values" in out["runs_text"]  # the line beside the implicit rewards: margins matter
    assert all(s.stat().st_size > 10_000 for s in out["screenshots"])
    keep = os.environ.get("PLAYGROUND_SCREENSHOTS")
    if keep:
        for s in out["screenshots"]:
            shutil.copy(s, Path(keep) / s.name)
