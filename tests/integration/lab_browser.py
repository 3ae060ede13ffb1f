"""The Decoding, Prompts and Chat pages in a real browser, against a live playground API (Ray Serve) with
two served models. Not a test module itself: test_serve_lab.py calls `check_lab_pages` and asserts on
what it returns. Headless Chromium (Debian's), driven by Playwright, as in eval_browser.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from eval_browser import _shows
from finetune_browser import CHROMIUM_ARGS
from serve_helpers import wait_for


def _errors(page) -> list[str]:
    return [e.inner_text() for e in page.locator("[data-testid=stAlertContentError]").all()]


def _text(page) -> str:
    """What the page shows (the whole body: Streamlit swaps its main block out while a script reruns)."""
    return page.locator("body").inner_text()


def _settled(page, timeout_ms: int) -> None:
    """Wait for Streamlit's script run to end. While it reruns, the elements of the last run stay on the
    page (marked data-stale) until new ones replace them, so text read mid-run mixes the two."""
    page.wait_for_function(
        "() => !document.querySelector('[data-stale=true]')"
        " && !document.querySelector('[data-testid^=stStatusWidgetRunning]')", timeout=timeout_ms)


def _shot(page, tmp_path: Path, name: str, out: dict) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    out["screenshots"].append(path)


def decoding_page(page, port: int, tmp_path: Path, out: dict, timeout_ms: int) -> None:
    """Decode with the default three strategies (greedy, sampling, beam search). The served column is
    test_serve_lab.py's API test: vLLM's beam search on CPU can take longer than a page should wait."""
    page.goto(f"http://127.0.0.1:{port}/Decoding")
    page.get_by_label("New tokens").fill("8")
    page.get_by_role("button", name="Decode").click()
    tree = page.get_by_text("Beam search tree:").first
    if not _shows(tree.or_(page.locator("[data-testid=stAlertContentError]").first), timeout_ms):
        raise TimeoutError("no beam tree and no error on the Decoding page")
    page.locator("[data-testid=stPlotlyChart]").last.wait_for(timeout=timeout_ms)
    out["decoding_text"] = _text(page)
    out["decoding_charts"] = page.locator("[data-testid=stPlotlyChart]").count()
    _shot(page, tmp_path, "decoding", out)
    out["errors"] += _errors(page)


def prompts_page(page, port: int, tmp_path: Path, out: dict, timeout_ms: int) -> None:
    """Render the first template with its example values."""
    page.goto(f"http://127.0.0.1:{port}/Prompts")
    page.get_by_role("button", name="Render").click(timeout=timeout_ms)
    page.get_by_text("counted as").first.wait_for(timeout=timeout_ms)
    out["prompts_text"] = _text(page)
    _shot(page, tmp_path, "prompts", out)
    out["errors"] += _errors(page)


def chat_page(page, port: int, tmp_path: Path, out: dict, timeout_ms: int) -> None:
    """Two models side by side on one message; then an edited first message (a branch), and back."""
    page.goto(f"http://127.0.0.1:{port}/Chat")
    page.get_by_text("Compare side by side").click(timeout=timeout_ms)
    page.get_by_text("Compare: 2 columns").first.wait_for(timeout=timeout_ms)
    box = page.get_by_placeholder("Message all columns")
    answered = page.get_by_role("button", name="Continue from this").first
    failed = page.locator("[data-testid=stAlertContentError]").first
    for _ in range(3):  # the first requests after tiny-b's deployment can time out while its engine warms up
        box.fill("Tell me about the sea")
        box.press("Enter")
        page.wait_for_timeout(3000)  # the rerun starts: an error box of the last try goes
        if _shows(answered.or_(failed), timeout_ms) and answered.is_visible():
            break
        page.wait_for_timeout(5000)  # a failed turn is dropped, not stored: ask again
    answered.wait_for(timeout=timeout_ms)
    out["compare_text"] = _text(page)
    _shot(page, tmp_path, "chat-compare", out)

    page.get_by_text("Compare side by side").click()
    page.get_by_role("button", name="Edit").first.click(timeout=timeout_ms)
    page.get_by_label("Edit the message").fill("Tell me about the hills")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_text("branch 2 of 2").first.wait_for(timeout=timeout_ms)
    _settled(page, timeout_ms)
    out["branch_text"] = _text(page)
    page.locator("button:has-text('chevron_left')").first.click()
    page.get_by_text("branch 1 of 2").first.wait_for(timeout=timeout_ms)
    _settled(page, timeout_ms)
    out["switched_text"] = _text(page)
    _shot(page, tmp_path, "chat-branch", out)
    out["errors"] += _errors(page)


def check_lab_pages(base_url: str, port: int, tmp_path: Path, timeout_ms: int = 120_000) -> dict:
    """Start the UI on 127.0.0.1:`port` against `base_url` and go through the three pages.

    Returns {"decoding_text", "decoding_charts", "prompts_text", "compare_text", "branch_text",
    "switched_text", "errors", "screenshots"}; raises Playwright's TimeoutError when something never shows.
    """
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make install` installs it with apt-get"
    ui = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "ui/Home.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env={**os.environ, "PLAYGROUND_URL": base_url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {"errors": [], "screenshots": []}
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200, 60, "the UI")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for step in (decoding_page, prompts_page, chat_page):
                try:
                    step(page, port, tmp_path, out, timeout_ms)
                except Exception:
                    _shot(page, tmp_path, f"failed-{step.__name__}", out)
                    out["errors"] += _errors(page)
                    raise
            browser.close()
        return out
    finally:
        ui.terminate()
        ui.wait(timeout=30)
