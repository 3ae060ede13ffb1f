"""The Fine-tune page in a real browser, for a test that has a finished SFT run (or alignment
run) behind a live playground API (Ray Serve). Not a test module itself: a test calls
`check_finetune_page` or `check_align_pages` with the API's base URL and the run, and asserts on
what it returns.

Headless Chromium is Debian's package (installed by `make install`), driven by Playwright;
`browser_page` opens it for the other browser helpers too (pages_browser.py, models_browser.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
from serve_helpers import wait_for

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def browser_page(base_url: str, port: int):
    """The UI (`streamlit run ui/Home.py`) on 127.0.0.1:`port` against the playground at `base_url`,
    and a Playwright page in headless Chromium; both closed afterwards."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make install` installs it with apt-get"
    ui = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "ui/Home.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env={**os.environ, "PLAYGROUND_URL": base_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200, 60, "the UI")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
            browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def _errors(page) -> list[str]:
    return [e.inner_text() for e in page.locator("[data-testid=stAlertContentError]").all()]


def check_finetune_page(base_url: str, port: int, run_id: str, tmp_path: Path, timeout_ms: int = 60_000) -> dict:
    """Start the UI (`streamlit run ui/Home.py`) on 127.0.0.1:`port` against the playground at
    `base_url`, open /Fine-tune on the Compare view of `run_id` (the URL's `?ft_view=&ft_run=`),
    wait for the side-by-side replies table, then open the Watch view of the same run and wait
    for its loss chart. Screenshots of both go to `tmp_path`.

    Returns {"compare_text", "tables" (the inner text of each table, accuracy first),
    "compare_screenshot", "watch_text", "watch_screenshot", "errors" (the text of each error
    box on either view)}. Raises (Playwright's TimeoutError) if a table or chart never shows.
    """
    out: dict = {"errors": []}
    with browser_page(base_url, port) as page:
        main = page.locator("[data-testid=stMain]")

        # Compare: the accuracy table, then the replies side by side (an HTML table: st.table).
        page.goto(f"http://127.0.0.1:{port}/Fine-tune?ft_view=Compare&ft_run={quote(run_id, safe='')}")
        page.get_by_text("Replies side by side").first.wait_for(timeout=timeout_ms)
        page.locator("[data-testid=stTable]").filter(has_text="tuned reply").first.wait_for(timeout=timeout_ms)
        page.wait_for_timeout(500)  # let the rest of the script's output arrive
        shot = tmp_path / "finetune-compare.png"
        page.screenshot(path=str(shot), full_page=True)
        out |= {"compare_text": main.inner_text(), "compare_screenshot": shot,
                "tables": [t.inner_text() for t in page.locator("[data-testid=stTable]").all()]}
        out["errors"] += _errors(page)

        # Watch: the loss curves and the held-out questions' replies at each evaluation.
        page.goto(f"http://127.0.0.1:{port}/Fine-tune?ft_view=Watch&ft_run={quote(run_id, safe='')}")
        page.get_by_text("Held-out questions, answered at every evaluation").first.wait_for(timeout=timeout_ms)
        page.locator("[data-testid=stVegaLiteChart]").first.wait_for(timeout=timeout_ms)
        page.wait_for_timeout(1000)  # let Vega draw
        watch_shot = tmp_path / "finetune-watch.png"
        page.screenshot(path=str(watch_shot), full_page=True)
        out |= {"watch_text": main.inner_text(), "watch_screenshot": watch_shot}
        out["errors"] += _errors(page)
    return out


def check_align_pages(base_url: str, port: int, run_id: str, tmp_path: Path, timeout_ms: int = 60_000) -> dict:
    """The alignment views in the browser: the Fine-tune page's Align view started on DPO (its
    options shown), the Align view watching the finished run `run_id` (curves, figures, the SFT and
    aligned answers side by side), and the Runs page on the same run (its alignment charts, each
    with its one-line explanation). Screenshots of each go to `tmp_path`.

    Returns {"start_text", "watch_text", "runs_text", "tables" (inner texts on the watch view),
    "screenshots", "errors"}. Raises (Playwright's TimeoutError) if a view never shows.
    """
    out: dict = {"errors": [], "screenshots": []}
    with browser_page(base_url, port) as page:
        main = page.locator("[data-testid=stMain]")

        def shoot(name: str) -> None:
            page.wait_for_timeout(1000)  # let Vega draw
            path = tmp_path / f"align-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            out["screenshots"].append(path)
            out["errors"] += _errors(page)

        page.goto(f"http://127.0.0.1:{port}/Fine-tune?ft_view=Align&al_view=Start")
        page.get_by_text("DPO", exact=True).first.click(timeout=timeout_ms)  # the method radio
        page.get_by_text("beta", exact=True).first.wait_for(timeout=timeout_ms)  # DPO's own options appear
        shoot("start")
        out["start_text"] = main.inner_text()

        page.goto(f"http://127.0.0.1:{port}/Fine-tune?ft_view=Align&al_view=Watch&al_run={quote(run_id, safe='')}")
        page.get_by_text("SFT and aligned answers side by side").first.wait_for(timeout=timeout_ms)
        page.locator("[data-testid=stVegaLiteChart]").first.wait_for(timeout=timeout_ms)
        shoot("watch")
        out |= {"watch_text": main.inner_text(),
                "tables": [t.inner_text() for t in page.locator("[data-testid=stTable]").all()]}

        page.goto(f"http://127.0.0.1:{port}/Runs?runs_selected={quote(run_id, safe='')}")
        page.get_by_text("KL to the SFT model").first.wait_for(timeout=timeout_ms)
        shoot("runs")
        out["runs_text"] = main.inner_text()
    return out
