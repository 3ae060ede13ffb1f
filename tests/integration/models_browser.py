"""The Models page in a real browser, against a live playground API (Ray Serve). Not a test module
itself: test_serve_models.py calls `check_models_page` and asserts on what it returns. The browser is
finetune_browser.py's `browser_page` (Debian's headless Chromium, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from finetune_browser import _errors, browser_page


def check_models_page(base_url: str, port: int, model: str, diff: tuple[str, str], deploy: str, tmp_path: Path,
                      timeout_ms: int = 90_000) -> dict:
    """Open `model` on the Models page: its lineage graph (an SVG drawn by Graphviz), its card, its run's
    checkpoints, and the diff of the two checkpoints `diff` (the URL's `?models_diff_a=&models_diff_b=`);
    then open `deploy` and press its Deploy button. Screenshots go to `tmp_path`.

    Returns {"lineage_svg", "card_text", "checkpoints_text", "diff_text", "deploy_text", "screenshots",
    "errors"}. Raises (Playwright's TimeoutError) if a part never shows."""
    out: dict = {"errors": [], "screenshots": []}
    with browser_page(base_url, port) as page:
        main = page.locator("[data-testid=stMain]")

        def shoot(name: str) -> None:
            page.wait_for_timeout(800)
            path = tmp_path / f"models-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            out["screenshots"].append(path)
            out["errors"] += _errors(page)

        query = urlencode({"models_selected": model, "models_diff_a": diff[0], "models_diff_b": diff[1]})
        page.goto(f"http://127.0.0.1:{port}/Models?{query}")
        svg = page.locator("[data-testid=stGraphVizChart] svg").first
        svg.wait_for(timeout=timeout_ms)
        out["lineage_svg"] = svg.inner_html()
        shoot("lineage")

        page.get_by_role("tab", name="Model card").click(timeout=timeout_ms)
        page.get_by_text("How to use").first.wait_for(timeout=timeout_ms)
        out["card_text"] = main.inner_text()
        shoot("card")

        page.get_by_role("tab", name="Checkpoints").click()
        page.get_by_role("button", name=f"Export {diff[0]} as a model").wait_for(timeout=timeout_ms)
        out["checkpoints_text"] = main.inner_text()

        page.get_by_role("tab", name="Diff").click()
        page.get_by_role("button", name="Compare").click(timeout=timeout_ms)
        page.get_by_text("Relative change, all weights").first.wait_for(timeout=timeout_ms)
        out["diff_text"] = main.inner_text()
        shoot("diff")

        page.goto(f"http://127.0.0.1:{port}/Models?{urlencode({'models_selected': deploy})}")
        # by its key: Streamlit's own toolbar has a "Deploy" button too
        page.locator(".st-key-models_deploy button").click(timeout=timeout_ms)
        page.get_by_text("it can take a minute to load").first.wait_for(timeout=timeout_ms)  # the success box
        out["deploy_text"] = main.inner_text()
        shoot("deploy")
    return out
