"""The architecture lab: configure a transformer and see what it costs; look inside a trained one.

Configurator: parameters by component, memory, FLOPs per token and training time for a
shape (POST /api/architecture). Inside the model: attention heatmaps, head patterns,
activation flow, the logit lens and next-token probabilities of a prompt on an exported
model, computed by the Inspector deployment (POST /api/inspect).
"""

import altair as alt
import pandas as pd
import streamlit as st

from ui.client import PlaygroundClient
from ui.format import human_bytes, visible
from ui.widgets import call

st.set_page_config(page_title="Architecture · LLM Playground", page_icon="🧠", layout="wide")
client = PlaygroundClient()
st.title("🧠 Architecture lab")


info = call(client.architecture_presets)
if info is None:
    st.stop()

tab_config, tab_inside = st.tabs(["Configurator", "Inside the model"])

# The widgets that hold a model field; picking another preset resets them to its values.
FIELD_KEYS = ("arch_n_layer", "arch_n_embd", "arch_n_head", "arch_block", "arch_kv", "arch_vocab", "arch_arch",
              "arch_tie", "arch_pos_embedding", "arch_norm", "arch_norm_position", "arch_mlp")


def _load_preset() -> None:
    for key in FIELD_KEYS:
        st.session_state.pop(key, None)


# ---- configurator ----------------------------------------------------------------------
with tab_config:
    preset = st.selectbox("Start from a preset", list(info["presets"]), key="arch_preset", on_change=_load_preset,
                          index=list(info["presets"]).index("micro") if "micro" in info["presets"] else 0)
    base = dict(info["presets"][preset]["model"])
    with st.expander("Shape and components", expanded=True):
        c = st.columns(4)
        fields = {
            "n_layer": c[0].number_input("Layers", 1, 512, int(base.get("n_layer", 4)), key="arch_n_layer"),
            "n_embd": c[1].number_input("Width (n_embd)", 8, 65536, int(base.get("n_embd", 128)), step=8,
                                        key="arch_n_embd"),
            "n_head": c[2].number_input("Heads", 1, 512, int(base.get("n_head", 4)), key="arch_n_head"),
            "block_size": c[3].number_input("Context (block_size)", 8, 1_048_576, int(base.get("block_size", 256)),
                                            key="arch_block"),
        }
        c = st.columns(4)
        kv = c[0].number_input("Key/value heads (1 = multi-query)", 1, 512,
                               int(base.get("n_kv_head") or base.get("n_head", 4)), key="arch_kv")
        fields["n_kv_head"] = int(kv)
        fields["vocab_size"] = c[1].number_input("Vocabulary", 2, 1_000_000, int(base.get("vocab_size", 4096)),
                                                 key="arch_vocab")
        fields["arch"] = c[2].selectbox("Base layout", ["gpt2", "llama"], key="arch_arch",
                                        index=["gpt2", "llama"].index(base.get("arch", "gpt2")))
        fields["tie_embeddings"] = c[3].checkbox("Tied head", bool(base.get("tie_embeddings", True)), key="arch_tie")
        c = st.columns(4)
        choices = {"pos_embedding": ["learned", "sinusoidal", "rope", "alibi", "none"],
                   "norm": ["layernorm", "rmsnorm"], "norm_position": ["pre", "post"],
                   "mlp": ["gelu", "relu", "swiglu"]}
        for col, (name, options) in zip(c, choices.items()):
            current = base.get(name)
            picked = col.selectbox(name, ["(layout default)"] + options, key=f"arch_{name}",
                                   index=(options.index(current) + 1) if current in options else 0)
            if picked != "(layout default)":
                fields[name] = picked
    c = st.columns(5)
    batch = c[0].number_input("Batch size", 1, 65536, 8, key="arch_batch")
    precision = c[1].selectbox("Precision", info["precisions"], key="arch_precision",
                               index=info["precisions"].index("bf16") if "bf16" in info["precisions"] else 0)
    gpu = c[2].selectbox("GPU", list(info["gpus"]), key="arch_gpu")
    mfu = c[3].slider("MFU", 0.05, 0.8, 0.4, 0.05, key="arch_mfu")
    n_gpus = c[4].number_input("GPUs", 1, 100_000, 1, key="arch_ngpus")
    tokens = st.number_input("Training tokens (0 = 20 per parameter, Chinchilla)", 0.0, 1e15, 0.0,
                             format="%.0f", key="arch_tokens")

    model = {**{k: (int(v) if isinstance(v, float) else v) for k, v in fields.items()}}
    out = call(client.architecture, model, batch_size=int(batch), precision=precision, gpu=gpu, mfu=float(mfu),
               n_gpus=int(n_gpus), tokens=float(tokens) or None)
    if out:
        p = out["params"]
        a, b, c3, d = st.columns(4)
        a.metric("Parameters", f"{p['total']:,}")
        b.metric("FLOPs per token", f"{out['flops_per_token']:.3g}")
        c3.metric("Training memory", human_bytes(out["memory"]["total"]))
        d.metric("Training time", out["training_time"].get("readable", ""))
        left, right = st.columns(2)
        with left:
            st.subheader("Parameters by component")
            st.dataframe(pd.DataFrame([{"component": k, "parameters": p[k], "share": p[k] / p["total"]}
                                       for k in ("embeddings", "attention", "mlp", "norms", "head")]),
                         hide_index=True, key="arch_params_table")
            st.caption(f"Per layer: {p['per_layer']:,}. Sums to exactly sum(p.numel()) of the PyTorch model.")
            st.subheader(f"Training memory (batch {int(batch)}, {precision}, AdamW)")
            st.dataframe(pd.DataFrame([{"part": k, "size": human_bytes(out["memory"][k])}
                                       for k in ("weights", "gradients", "optimizer", "activations", "total")]),
                         hide_index=True)
        with right:
            st.subheader("Block diagram")
            st.code(out["diagram"]["text"], language=None)
            t = out["training_time"]
            st.caption(f"{t['tokens']:,.0f} tokens on {t['n_gpus']} x {t['gpu_name']} at {t['mfu']:.0%} MFU "
                       f"({t['peak_flops_per_gpu'] / 1e12:,.0f} TFLOP/s peak each): {t['readable']}")

# ---- inside the model ------------------------------------------------------------------
with tab_inside:
    models = call(client.models) or []
    if not models:
        st.info("No exported model yet: `make demo`, or `playground export RUN`.")
    else:
        model_id = st.selectbox("Model", [m["id"] for m in models], key="arch_model")
        prompt = st.text_area("Prompt", "Once upon a time, there was a little girl named Mia. She",
                              key="arch_prompt", height=80)
        top_k = st.slider("Top-k", 1, 20, 5, key="arch_topk")
        if st.button("Inspect", key="arch_inspect_go", type="primary"):
            st.session_state["arch_result"] = call(client.inspect, model_id, prompt, top_k=top_k)
        r = st.session_state.get("arch_result")
        if r:
            labels = [f"{i}:{visible(t)}" for i, t in enumerate(r["tokens"])]
            st.caption(f"{len(labels)} tokens · {r['n_layer']} layers × {r['n_head']} heads · "
                       f"server {r['timings_ms'].get('api', r['timings_ms']['total']):.0f} ms")

            st.subheader("Attention")
            c1, c2 = st.columns(2)
            layer = c1.selectbox("Layer", range(r["n_layer"]), key="arch_layer")
            head = c2.selectbox("Head", range(r["n_head"]), key="arch_head")
            att = r["attention"][layer][head]
            cells = pd.DataFrame([{"query": labels[q], "key": labels[k], "weight": w, "q": q, "k": k}
                                  for q, row in enumerate(att) for k, w in enumerate(row)])
            heat = alt.Chart(cells).mark_rect().encode(
                x=alt.X("key:N", sort=labels, title="attends to (key)"),
                y=alt.Y("query:N", sort=labels, title="token (query)"),
                color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], range=["#ffffff", "#08306b"])),
                tooltip=["query", "key", alt.Tooltip("weight:Q", format=".3f")])
            st.altair_chart(heat, use_container_width=True, key="arch_heatmap")

            st.subheader("Head patterns")
            grid = pd.DataFrame([[None] * r["n_head"] for _ in range(r["n_layer"])],
                                columns=[f"head {h}" for h in range(r["n_head"])],
                                index=[f"layer {lay}" for lay in range(r["n_layer"])])
            for hp in r["head_patterns"]:
                score = hp["scores"][hp["label"]]
                grid.iloc[hp["layer"], hp["head"]] = f"{hp['label']} ({score:.2f})"
            st.dataframe(grid, key="arch_head_grid")

            st.subheader("Activation flow")
            flow = pd.DataFrame({"after": ["embeddings"] + [f"block {i}" for i in range(r["n_layer"])],
                                 "mean residual norm": [sum(x) / len(x) for x in r["residual_norms"]]})
            contrib = pd.DataFrame([{"layer": i, "attention adds": sum(c["attn"]) / len(c["attn"]),
                                     "MLP adds": sum(c["mlp"]) / len(c["mlp"])}
                                    for i, c in enumerate(r["contributions"])])
            f1, f2 = st.columns(2)
            f1.line_chart(flow.set_index("after"))
            f2.bar_chart(contrib.set_index("layer"))

            st.subheader("Logit lens")
            pos = st.slider("Position", 0, len(labels) - 1, len(labels) - 1, key="arch_pos")
            st.dataframe(pd.DataFrame([{"after": "embeddings" if i == 0 else f"block {i - 1}",
                                        "top predictions": "  ".join(f"{visible(t['token'])} {t['prob']:.2f}"
                                                                     for t in layer_preds[pos])}
                                       for i, layer_preds in enumerate(r["logit_lens"])]), hide_index=True)

            st.subheader("Next-token probabilities")
            st.dataframe(pd.DataFrame([{"token": labels[i], "entropy (nats)": round(n["entropy"], 3),
                                        "top next tokens": "  ".join(f"{visible(t['token'])} {t['prob']:.2f}"
                                                                     for t in n["top"])}
                                       for i, n in enumerate(r["next_token"])]), hide_index=True)
