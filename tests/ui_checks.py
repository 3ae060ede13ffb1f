"""Page checks shared by the UI unit tests (against a stub) and the integration tests
(against the real Serve cluster): drive a Streamlit page headlessly with AppTest.

Pages are opened the way `streamlit run ui/Home.py` opens them: from the Home entry point,
then `switch_page`, so page links and relative paths resolve as in the real app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[1] / "ui" / "Home.py"


@contextmanager
def playground_env(base_url: str, api_key: str | None = None) -> Iterator[None]:
    """Point the pages at `base_url` (they read PLAYGROUND_URL / PLAYGROUND_API_KEY) for a while."""
    values = {"PLAYGROUND_URL": base_url} | ({"PLAYGROUND_API_KEY": api_key} if api_key is not None else {})
    with mock.patch.dict(os.environ, values):
        yield


def open_page(page: str | None, timeout: float = 10) -> AppTest:
    """Run Home, then switch to `page` (e.g. "pages/1_Chat.py") and run it; None stays on Home."""
    at = AppTest.from_file(str(HOME), default_timeout=timeout).run()
    if page:
        at.switch_page(page).run()
    return at


def shown(frame):
    """The cells of an AppTest dataframe as the page shows them: a Styler's display values
    (ui/format.py `readable`), else the data itself (`frame.value` is always the data)."""
    from streamlit import dataframe_util

    styler = frame.proto.arrow_data.styler
    if not styler.display_values:
        return frame.value
    return dataframe_util.convert_arrow_bytes_to_pandas_df(styler.display_values)


def assistant_texts(at: AppTest) -> list[str]:
    """The text of every assistant message on the page, oldest first."""
    return ["".join(md.value for md in msg.markdown) for msg in at.chat_message if msg.name == "assistant"]


def check_chat_page(base_url: str, timeout: float = 60, message: str = "Hello",
                    api_key: str | None = None, **sampling) -> str:
    """Open the Chat page against `base_url`, send `message`, and return the assistant's full
    (streamed) answer. Fails with the page's own error text if it shows one.

    `sampling` sets sidebar widgets by parameter name, e.g. temperature=0.0, max_tokens=8.
    """
    with playground_env(base_url, api_key):
        at = open_page("pages/1_Chat.py", timeout)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert at.selectbox(key="chat_model").options, "the Chat page lists no served model"
        widgets = {w.key: w for w in (*at.slider, *at.number_input, *at.text_input)}
        for name, value in sampling.items():
            widgets[f"sampling_{name}"].set_value(value)  # KeyError: not a SAMPLING parameter
        at.chat_input[0].set_value(message).run(timeout=timeout)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        answers = assistant_texts(at)
        assert answers, "the Chat page showed no assistant message"
        return answers[-1]
