"""Chat with served models: streamed token by token, every sampling knob exposed, saved on the server.

A conversation is a tree kept by the playground API (/api/conversations): editing an earlier
message or regenerating an answer starts a branch beside it, and the page follows one path
through the tree. Compare mode sends one message to 2-4 columns (models, or one model with
different settings) and streams their answers side by side; each is stored as a sibling answer.
Each turn resends the path so far, as the OpenAI chat API expects (or its newest part, when the
whole no longer fits the model's context). The pieces are in ui/chat_view.py.
"""

from datetime import datetime, timezone

import streamlit as st

from ui import chat_view as view
from ui.client import ApiError, PlaygroundClient
from ui.format import conversation_to_json, conversation_to_markdown, request_params
from ui.format_chat import COT_INSTRUCTION, active_messages, export_rows

st.set_page_config(page_title="Chat · LLM Playground", page_icon="💬", layout="wide")
client = PlaygroundClient()

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

# ---- sidebar: conversations, model, system prompt, compare, sampling ------------------
with st.sidebar:
    conversation = view.conversation_picker(client, served)
    st.divider()
    model = st.selectbox("Model", list(served), key="chat_model")
    system = st.text_area("System prompt", key="chat_system", placeholder="You are a helpful assistant.",
                          help="Sent first on every turn. Tiny models trained from scratch may ignore it.")
    cot = st.toggle("Chain of thought", key="chat_cot",
                    help=f"Adds to the system prompt: “{COT_INSTRUCTION}” An answer with an `Answer:` line "
                         "shows its reasoning folded.")
    view.template_picker(client)
    compare = st.toggle("Compare side by side", key="chat_compare",
                        help="One message to 2-4 columns: other models, or this one with other settings. "
                             "Each answer is kept as a branch.")
    n_columns = st.radio("Columns", (2, 3, 4), key="chat_columns", horizontal=True) if compare else 1
    st.subheader("Sampling")
    params = request_params(view.sampling_widgets(served[model]))

first = view.column(model, served[model], system, cot, params)
columns = view.compare_columns(served, first, n_columns) if compare else [first]

# ---- the conversation: the active path of its tree -------------------------------------
path = active_messages(conversation)
st.session_state["chat_messages"] = export_rows(path)
view.show_conversation(client, conversation, compare)

turn = st.session_state.pop("chat_pending", None)  # queued by Edit or Regenerate
if prompt := st.chat_input(f"Message {'all columns' if compare else model}", key="chat_input"):
    turn = {"parent_id": path[-1]["id"] if path else None, "text": prompt}
if turn:
    view.run_turn(client, conversation, turn["parent_id"], turn["text"], columns)
view.show_notes()

# ---- export and a new conversation --------------------------------------------------
with st.sidebar:
    st.divider()
    history = st.session_state["chat_messages"]
    meta = {"conversation": conversation["title"] if conversation else None, "model": model,
            "system_prompt": system, "chain_of_thought": cot, "sampling": params,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    st.download_button("Download JSON", conversation_to_json(history, meta), file_name="chat.json",
                       mime="application/json", disabled=not history, on_click="ignore")
    st.download_button("Download Markdown", conversation_to_markdown(history, meta), file_name="chat.md",
                       mime="text/markdown", disabled=not history, on_click="ignore")
    st.button("New conversation", icon=":material/add:", on_click=view.open_conversation, args=(None,),
              disabled=conversation is None, help="The open one stays saved in the list above.")
