"""The main pages in a real browser (Chat, Tokenizer, Architecture, Data, Runs, Sweeps), for
test_serve.py's `test_browser_chat_streams_an_answer`. Not a test module itself: the test calls
`walk_main_pages` with the API's base URL and asserts on what it returns. The browser is
finetune_browser.py's `browser_page` (Debian's headless Chromium, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

from finetune_browser import browser_page


def _chart_page(page, port: int, name: str, heading: str, chart: int, tmp_path: Path) -> tuple[str, Path]:
    """Open page `name`, wait for `heading` and its `chart`-th chart to draw, screenshot it to
    `tmp_path`/<name>.png; return (the page's main text, the screenshot's path)."""
    page.goto(f"http://127.0.0.1:{port}/{name}")
    page.get_by_text(heading).first.wait_for(timeout=60_000)
    page.locator("[data-testid=stVegaLiteChart]").nth(chart).wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # let Vega draw
    shot = tmp_path / f"{name.lower()}.png"
    page.screenshot(path=str(shot), full_page=True)
    return page.locator("[data-testid=stMain]").inner_text(), shot


def walk_main_pages(base_url: str, port: int, demo_model: str, tmp_path: Path) -> dict:
    """Start the UI on 127.0.0.1:`port` against the playground at `base_url`; send "Hello" on the
    Chat page and record the answer's length at each change of the page; tokenize the sample
    text on the Tokenizer page; inspect a prompt with `demo_model` on the Architecture page; open
    the Data, Runs and Sweeps pages. A screenshot of each goes to `tmp_path`.

    Returns {"text", "lengths", "errors" (error boxes in the answer), "n_tokens", "tok_text", and
    "arch_text", "data_text", "runs_text", "sweeps_text" (each page's main text), "shots" (page
    name -> screenshot path)}. Raises (Playwright's TimeoutError) if a page never draws.
    """
    with browser_page(base_url, port) as page:
        page.goto(f"http://127.0.0.1:{port}/Chat")
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for(timeout=60_000)
        # Record the answer's length each time the page changes, to see it grow piece by
        # piece. The answer's own text only: the message's innerText also holds its avatar's
        # icon name ("smart_toy"), which is there before a single token arrives.
        page.evaluate("""() => {
            window.answerLengths = [];
            new MutationObserver(() => {
                const m = document.querySelectorAll('[data-testid=stChatMessage]');
                const c = m.length >= 2 && m[1].querySelector('[data-testid=stChatMessageContent]');
                const n = c ? c.innerText.trim().length : 0, seen = window.answerLengths;
                if (n > 0 && seen[seen.length - 1] !== n) seen.push(n);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        box.fill("Hello")
        box.press("Enter")
        message = page.get_by_test_id("stChatMessage").nth(1)
        answer = message.get_by_test_id("stChatMessageContent")
        answer.wait_for(timeout=60_000)
        # The sidebar's export buttons are drawn after the answer, so enabled = complete.
        page.get_by_role("button", name="Download JSON").and_(page.locator(":enabled")).wait_for(
            timeout=60_000)
        text, lengths = answer.inner_text(), page.evaluate("window.answerLengths")
        errors = message.get_by_test_id("stAlert").count()
        shot = tmp_path / "chat.png"
        page.screenshot(path=str(shot), full_page=True)

        # The Tokenizer page: tokenize the sample text and see coloured tokens.
        page.goto(f"http://127.0.0.1:{port}/Tokenizer")
        page.get_by_role("button", name="Tokenize").click(timeout=60_000)
        tokens = page.locator("span.tok")
        tokens.first.wait_for(timeout=60_000)
        n_tokens, tok_text = tokens.count(), page.locator("div.tokens").first.inner_text()
        tok_shot = tmp_path / "tokenizer.png"
        page.screenshot(path=str(tok_shot), full_page=True)

        # The Architecture page: pick the demo model, inspect a prompt, see the heatmap.
        page.goto(f"http://127.0.0.1:{port}/Architecture")
        page.get_by_role("tab", name="Inside the model").click(timeout=60_000)
        picker = page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Model", exact=True))
        picker.locator("input").click(timeout=60_000)
        page.get_by_role("option", name=demo_model, exact=True).click(timeout=60_000)
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Inspect").click(timeout=60_000)
        heatmap = page.locator("[data-testid=stVegaLiteChart]").first
        heatmap.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # let Vega draw
        arch_shot = tmp_path / "architecture.png"
        page.screenshot(path=str(arch_shot), full_page=True)
        arch_text = page.locator("[data-testid=stMain]").inner_text()

        # The Data page: the newest snapshot's statistics (the API job's, above). The Runs page:
        # the newest run (a sweep trial) with its loss curves, from the server. The Sweeps page:
        # the session's 4-trial sweep, its best config and the plots (the third chart).
        data_text, data_shot = _chart_page(page, port, "Data", "Removed by stage", 0, tmp_path)
        runs_text, runs_shot = _chart_page(page, port, "Runs", "Perplexity (validation)", 0, tmp_path)
        sweeps_text, sweeps_shot = _chart_page(page, port, "Sweeps", "Parallel coordinates", 2, tmp_path)
    return dict(text=text, lengths=lengths, errors=errors, n_tokens=n_tokens, tok_text=tok_text, arch_text=arch_text,
                data_text=data_text, runs_text=runs_text, sweeps_text=sweeps_text,
                shots={"chat": shot, "tokenizer": tok_shot, "architecture": arch_shot, "data": data_shot,
                       "runs": runs_shot, "sweeps": sweeps_shot})
