"""Chat with a served model: multi-turn, streamed token by token, every sampling knob exposed.

The conversation lives in st.session_state (Streamlit reruns this script on every click),
and each turn resends the whole history, as the OpenAI chat API expects (or its newest part,
when the whole no longer fits the model's context).
"""

from datetime import datetime, timezone

import streamlit as st

from ui.client import ApiError, PlaygroundClient
from ui.format import SAMPLING, conversation_to_json, conversation_to_markdown, request_params, without_oldest_exchange

st.set_page_config(page_title="Chat · LLM Playground", page_icon="💬", layout="wide")
client = PlaygroundClient()
history: list[dict] = st.session_state.setdefault("chat_messages", [])

st.title("💬 Chat")

try:
    served = client.served_models()
except ApiError as e:
    st.error(str(e))
    st.stop()

if not served:
    st.info("No model is being served yet. Open the **Home** page and press **Deploy** on a model.")
    st.page_link("Home.py", label="Go to Home", icon="🏠")
    st.stop()

# ---- sidebar: model, system prompt, sampling -----------------------------------------
with st.sidebar:
    model = st.selectbox("Model", list(served), key="chat_model")
    context = served[model]
    system = st.text_area("System prompt", key="chat_system", placeholder="You are a helpful assistant.",
                          help="Sent first on every turn. Tiny models trained from scratch may ignore it.")
    st.subheader("Sampling")
    values = {}
    for p in SAMPLING:
        key = f"sampling_{p.name}"
        if p.kind == "seed":
            values[p.name] = st.number_input(p.label, min_value=0, value=None, step=1, key=key,
                                             help=p.help, placeholder="random")
        elif p.kind == "stop":
            values[p.name] = st.text_input(p.label, value=p.default, key=key, help=p.help)
        elif p.name == "max_tokens" and context:
            # vLLM refuses max_tokens above the model's context length (a 400 on the first
            # message with a small model), so the slider stops there.
            top = min(int(p.max), int(context))
            if st.session_state.get(key, top + 1) > top:  # first run, or a model with less context
                st.session_state[key] = min(int(p.default), top)
            values[p.name] = st.slider(p.label, int(p.min), top, step=int(p.step), key=key,
                                       help=f"{p.help} This model's context: {context} tokens.")
        elif p.kind == "int":
            values[p.name] = st.slider(p.label, int(p.min), int(p.max), int(p.default), int(p.step),
                                       key=key, help=p.help)
        else:
            values[p.name] = st.slider(p.label, float(p.min), float(p.max), float(p.default), float(p.step),
                                       key=key, help=p.help)
    params = request_params(values)

# ---- the conversation so far ---------------------------------------------------------
for m in history:
    with st.chat_message(m["role"]):
        st.markdown(m["content"])

if prompt := st.chat_input(f"Message {model}"):
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    messages = ([{"role": "system", "content": system}] if system.strip() else []) + history
    left_out = 0
    with st.chat_message("assistant"):
        while True:
            try:
                answer = st.write_stream(client.chat_stream(model, messages, **params))
            except ApiError as e:
                shorter = without_oldest_exchange(messages) if e.context_overflow else None
                if shorter is not None:  # too long for the model: leave the oldest exchange out
                    messages, left_out = shorter, left_out + 1
                    continue
                # Drop the failed turn: chat templates expect user/assistant to alternate,
                # so leaving it in would break every later turn too.
                history.pop()
                st.error(str(e))
            else:
                history.append({"role": "assistant", "content": answer if isinstance(answer, str) else str(answer)})
                if left_out:
                    oldest = "the oldest exchange was" if left_out == 1 else f"the oldest {left_out} exchanges were"
                    st.caption(f"The whole conversation no longer fits {model}'s context ({context or '?'} "
                               f"tokens): {oldest} left out of this request.")
            break

# ---- export and clear (after the new turn, so downloads include it) -------------------
with st.sidebar:
    st.divider()
    meta = {"model": model, "system_prompt": system, "sampling": params,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    st.download_button("Download JSON", conversation_to_json(history, meta), file_name="chat.json",
                       mime="application/json", disabled=not history, on_click="ignore")
    st.download_button("Download Markdown", conversation_to_markdown(history, meta), file_name="chat.md",
                       mime="text/markdown", disabled=not history, on_click="ignore")
    st.button("Clear conversation", on_click=lambda: st.session_state["chat_messages"].clear(),
              disabled=not history)
