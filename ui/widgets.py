"""Small Streamlit helpers shared by the pages (the network stays in ui/client.py)."""

import streamlit as st

from ui.client import ApiError


def call(fn, *args, **kwargs):
    """Call the API; on failure show its one-line error (never a traceback) and return None."""
    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        st.error(str(e))
        return None
