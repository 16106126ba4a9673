"""Text generation: the lab's byte-level GPT, and any Hugging Face causal LM (a local folder or a hub id).

Choose a model, then write a prompt and watch the text stream in with its speed and, for every new
token, the candidates it was drawn from; train a new GPT in the background; or read a checkpoint's
metrics. The sampling loop lives in ``genlib.families.transformers.generation``; this file only draws.
Session-state keys start with ``text_``.
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

import genlib
from genlib.data import UploadError
from genlib.text_data import TEXT_UPLOAD_TYPES, load_text_upload, save_text_corpus
from genlib.demo import limits
from genlib.families.transformers.generation import stream_text
from pages._panels import metrics_panel, train_panel
from pages._ui import (Picked, caps, checkpoint_picker, demo_caption, global_seed, model_tabs, page_families,
                       require_router, scalars_figure)
from pages._widgets import config_widgets, make_config

require_router()

FAMILIES = page_families(__file__)
TRAINABLE = [f for f in FAMILIES if genlib.get_family(f).trainable]
TRAIN_FIELDS = ("epochs", "max_steps", "batch_size", "lr", "lr_schedule", "preview_every")
TRAIN_DEFAULTS = {"epochs": 1, "max_steps": 300, "batch_size": 32, "lr": 1e-3, "preview_every": 50}
REDRAW_EVERY = 4   # tokens between redraws of the streaming text: each redraw is a message to the browser
CANDIDATES = 5


def token_label(model, token: int) -> str:
    """A token as the table shows it: whitespace made visible."""
    return repr(model.token_text(token))[1:-1] or "∅"


def candidates_table(model, events: list[dict]) -> pd.DataFrame:
    """One row per generated token: what was drawn, with what probability, from which top candidates."""
    return pd.DataFrame({
        "#": [e["index"] + 1 for e in events],
        "token": [token_label(model, e["token"]) for e in events],
        "probability": [e["probability"] for e in events],
        "top candidates": [" · ".join(f"{token_label(model, t)} {p:.2f}" for t, p in e["candidates"])
                           for e in events],
    })


def probability_figure(model, events: list[dict]) -> go.Figure:
    """The probability each drawn token had, along the text: low bars are the surprising choices."""
    fig = go.Figure(go.Bar(x=[e["index"] + 1 for e in events], y=[e["probability"] for e in events],
                           hovertext=[token_label(model, e["token"]) for e in events], marker_color="#4c78a8"))
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="new token",
                      yaxis=dict(title="probability", range=[0, 1]), title="How likely each drawn token was")
    return fig


def generate_tab(p: Picked) -> None:
    m = p.model
    key = f"text_gen_{p.info.family}"
    defaults = m.sampling_defaults().to_dict()
    prompt = st.text_area("Prompt", value=st.session_state.get("text_prompt_last", "def "), height=100,
                          key="text_prompt", help="The text the model continues. A newline starts a fresh text.")
    st.session_state["text_prompt_last"] = prompt
    values = config_widgets(m.Sampling, key, defaults=defaults, only=("max_new_tokens", "temperature", "top_k",
                                                                      "top_p"), columns=4)
    cap = limits().tokens
    if cap is not None and values["max_new_tokens"] > cap:
        st.warning(f"This demo generates at most {cap} tokens at a time; generating {cap}.")
        values["max_new_tokens"] = cap
    demo_caption("tokens")
    options = make_config(m.Sampling, {**values, "prompt": prompt or ""})
    seed = global_seed()
    if st.button("Generate", type="primary", key="text_generate", icon=":material/edit_note:",
                 disabled=options is None):
        text_slot, stats_slot = st.empty(), st.empty()
        events: list[dict] = []
        text = ""
        try:
            stream = stream_text(m, options, generator=torch.Generator().manual_seed(seed), candidates=CANDIDATES)
            for text, event in stream:
                events.append({"index": event.index, "token": event.token, "probability": event.probability,
                               "candidates": event.candidates})
                if event.index % REDRAW_EVERY == 0 or event.index + 1 == options.max_new_tokens:
                    text_slot.code(prompt + text, language=None, wrap_lines=True)
                    best = " · ".join(f"{token_label(m, t)} {q:.2f}" for t, q in event.candidates)
                    stats_slot.caption(f"{event.index + 1} / {options.max_new_tokens} tokens · "
                                       f"{event.tokens_per_s:.0f} tokens/s · next token drawn from: {best}")
        except ValueError as err:
            st.error(str(err))
            return
        st.session_state["text_result"] = {"source": p.path, "prompt": prompt, "text": text, "events": events,
                                           "seed": seed, "tokens_per_s": event.tokens_per_s}
        text_slot.empty()
        stats_slot.empty()
    result = st.session_state.get("text_result")
    if not result or result["source"] != p.path:
        st.caption(f"Seed {seed} (the global seed in the sidebar): the same seed and settings give the same text.")
        return
    st.code(result["prompt"] + result["text"], language=None, wrap_lines=True)
    st.caption(f"{len(result['events'])} new tokens at {result['tokens_per_s']:.0f} tokens/s · seed {result['seed']}")
    st.download_button("Download the text", data=result["prompt"] + result["text"], file_name=f"{p.info.name}.txt",
                       mime="text/plain", key="text_dl", on_click="ignore", icon=":material/download:")
    st.plotly_chart(probability_figure(m, result["events"]), key="text_prob_fig")
    st.markdown("**Each new token and the candidates it was drawn from** (after temperature, top-k and top-p)")
    st.dataframe(candidates_table(m, result["events"]), hide_index=True, height=300,
                 column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                               format="%.3f")})


def render_text_job(snap, key_prefix: str) -> None:
    """The live view of a GPT training job: the latest generated text and the loss curve."""
    view = snap.state
    if view.preview_text:
        st.code(view.preview_text, language=None, wrap_lines=True)
        st.caption(f"generated at step {view.preview_step}")
    if view.history:
        st.plotly_chart(scalars_figure(view.history, ["loss"], [], "loss (nats per byte)", height=260),
                        key=f"{key_prefix}_job_loss_{snap.id}")
    if snap.message and not snap.done:
        st.caption(snap.message)


def uploaded_corpus() -> str | None:
    """The name of the .txt file the user uploaded to train on (kept by content hash), or None."""
    upload = st.file_uploader("Train on your own text instead (.txt, UTF-8)", type=TEXT_UPLOAD_TYPES,
                              key="text_corpus_upload", help="Its first 90% trains the model and its last 10% "
                                                             "measures it, as with the Python docs.")
    demo_caption("upload_bytes")
    if upload is None:
        return None
    try:
        text = load_text_upload(upload.getvalue(), max_bytes=caps().upload_bytes)
    except UploadError as err:
        st.error(f"Could not use {upload.name}: {err}")
        return None
    name = save_text_corpus(text)
    if st.session_state.get("text_corpus_last") != name:  # a new upload: point the corpus setting at it once
        st.session_state["text_corpus_last"] = name
        for family in TRAINABLE:
            st.session_state[f"text_train_{family}_corpus"] = name
    st.success(f"{upload.name}: {len(text):,} characters, kept as **{name}** (the corpus setting below).")
    return name


def train_tab() -> None:
    if not TRAINABLE:
        st.info("None of this page's models can be trained here.")
        return
    st.caption("Trains on the first 90% of the Python documentation topics (bytes); the last 10% is held out.")
    corpus = uploaded_corpus()
    train_panel(TRAINABLE, "text", TRAIN_FIELDS, TRAIN_DEFAULTS, render=render_text_job,
                model_defaults=(lambda family: {"corpus": corpus}) if corpus else None)
    if corpus is None and st.session_state.get("text_train_gpt_corpus", "pydoc") != "pydoc":
        st.caption("The corpus setting names an uploaded text; set it back to pydoc for the Python docs.")


def model_tab(p: Picked) -> None:
    metrics_panel(p, "text", history_figure=lambda df: scalars_figure(df, ["loss"], [], "loss (nats per byte)"))
    if p.info.preview_text:
        st.markdown("**The checkpoint's own samples** (samples.txt)")
        st.code(p.info.preview_text, language=None, wrap_lines=True)


st.title("Text generation")
st.caption("A byte-level GPT trained by the lab, or any Hugging Face causal LM: prompt it and watch each token "
           "arrive with the candidates it was drawn from.")
picked = checkpoint_picker(FAMILIES, "text_model", default_family="gpt")
model_tabs({"Generate": generate_tab, "Train": train_tab, "Model": model_tab}, "text_tabs", picked,
           needs_no_model=[train_tab])
