"""The Evaluate and Human eval pages in a real browser, for a test that has evaluations and two served
models behind a live playground API (Ray Serve). Not a test module itself: a test calls
`check_eval_pages` and asserts on what it returns.

Headless Chromium is Debian's package (installed by `make install`), driven by Playwright, launched
as in finetune_browser.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from finetune_browser import CHROMIUM_ARGS
from serve_helpers import wait_for


def _shows(locator, timeout_ms: int) -> bool:
    """Whether `locator` becomes visible within the time (Playwright raises TimeoutError otherwise)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        return False
    return True


def check_eval_pages(base_url: str, port: int, tmp_path: Path, timeout_ms: int = 90_000) -> dict:
    """Start the UI on 127.0.0.1:`port` against `base_url`; on Evaluate, wait for the leaderboard and
    download its CSV; on Human eval, ask both served models, vote "left", and read the reveal.

    Returns {"leaderboard_text", "csv" (the downloaded file's text), "vote_text" (the page after the
    vote), "errors" (the text of each error box), "screenshots"}. Raises (Playwright's TimeoutError)
    when something never shows.
    """
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make install` installs it with apt-get"
    ui = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "ui/Home.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env={**os.environ, "PLAYGROUND_URL": base_url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200, 60, "the UI")
        out: dict = {"errors": [], "screenshots": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            main = page.locator("[data-testid=stMain]")

            page.goto(f"http://127.0.0.1:{port}/Evaluate")
            page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=timeout_ms)
            button = page.get_by_role("button", name="Download CSV")
            button.wait_for(timeout=timeout_ms)
            with page.expect_download(timeout=timeout_ms) as download:
                button.click()
            out["csv"] = Path(download.value.path()).read_text()
            out["leaderboard_text"] = main.inner_text()
            shot = tmp_path / "evaluate-leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
            out["screenshots"].append(shot)
            out["errors"] += [e.inner_text() for e in page.locator("[data-testid=stAlertContentError]").all()]

            page.goto(f"http://127.0.0.1:{port}/Human_eval")
            rater = page.get_by_label("Your name (rater)")
            rater.wait_for(timeout=timeout_ms)
            rater.fill("browser-test")
            rater.press("Enter")
            page.wait_for_timeout(2000)  # the rerun the new name starts: a click during it can be lost
            vote = page.get_by_role("button", name="Left is better")
            errors = page.locator("[data-testid=stAlertContentError]")
            for _ in range(3):  # both models answer (64 tokens each on a busy 2-core machine); retry a lost click
                page.get_by_role("button", name="Ask both").click()
                if _shows(vote.or_(errors.first), timeout_ms // 3):
                    break
            if errors.count():
                out["errors"] += [e.inner_text() for e in errors.all()]
                return out
            vote.wait_for(timeout=timeout_ms)
            vote.click()
            page.get_by_text("Left was").first.wait_for(timeout=timeout_ms)
            out["vote_text"] = main.inner_text()
            shot = tmp_path / "human-eval-vote.png"
            page.screenshot(path=str(shot), full_page=True)
            out["screenshots"].append(shot)
            out["errors"] += [e.inner_text() for e in page.locator("[data-testid=stAlertContentError]").all()]
            browser.close()
        return out
    finally:
        ui.terminate()
        ui.wait(timeout=30)
