"""Attention explorer: what each head of a transformer attends to, for the lab's GPT or any Hugging Face
encoder or decoder (BERT, GPT-2, RoBERTa, DistilBERT, ...), offline.

Three views of one input: the head view (one layer, token to token), the model view (every layer x head
as a thumbnail; a click opens that head in the head view) and the neuron view (how one query's vector
meets every key). Layer and head filters and a token window keep a 1,000-token input responsive. Each
view downloads as PNG and as a self-contained HTML file. The maths and the figures are in
genlib.families.transformers (attention, attention_views). Session-state keys start with ``attention_``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

import genlib
from genlib.background import plain_error
from genlib.checkpoints import CheckpointError, resolve
from genlib.families.transformers.attention import (DEFAULT_MAX_TOKENS, AttentionRecord, hf_attention_record,
                                                    load_hf_attention_model, select_heads, select_layers, window)
from genlib.families.transformers.attention_views import (LINE_VIEW_MAX_TOKENS, figure_html, head_view, head_view_png,
                                                          label, model_view, model_view_png, neuron_view,
                                                          neuron_view_png, picked_thumbnail)
from pages._ui import (checkpoint_mtime, load_cached, load_typed_source, require_router, visible_checkpoints)
from pages._widgets import keep_widget_state

require_router()

LAB_GPT = "The lab's text models"
# the lab's families that can make an AttentionRecord themselves (the GPT, a wrapped Hugging Face LM)
RECORDING_FAMILIES = tuple(name for name, cls in genlib.all_families().items() if "text_attention" in cls.abilities)
HUGGING_FACE = "A Hugging Face folder or hub id"
TABS = ("Head view", "Model view", "Neuron view")
HEAD_MODES = ("Each head in its colour", "Mean of the heads", "One head")
DEFAULT_TEXT = "The cat sat on the mat because it was warm, and the dog watched it from the door."
DEFAULT_WINDOW = 128   # tokens shown at first: a long input opens on its start, the slider moves on


# -- loading (cached, shared by all sessions: never modified) ------------------------------------------------
def _folder_stamp(folder: str) -> float:
    """Newest modification time in a folder's top level: keys the cache, so a re-saved folder reloads."""
    return max((p.stat().st_mtime for p in Path(folder).iterdir() if p.is_file()), default=0.0)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _hf_model(folder: str, stamp: float):
    """(model, tokenizer) of a transformers folder; ``stamp`` only keys the cache. Errors are not cached."""
    return load_hf_attention_model(folder)


@st.cache_data(show_spinner="Running the model…", max_entries=16)
def _hf_record(_model, _tokenizer, key: str, text: str, max_tokens: int) -> AttentionRecord:
    return hf_attention_record(_model, _tokenizer, text, max_tokens=max_tokens)


@st.cache_data(show_spinner="Running the model…", max_entries=16)
def _gpt_record(_model, key: str, text: str) -> AttentionRecord:
    return _model.attention_record(text)


def _hf_source() -> tuple[object, object, str] | None:
    """(model, tokenizer, cache key) for the typed folder or hub id; None after saying what is wrong."""
    source = st.text_input("Local Hugging Face folder or hub id", key="attention_hf_source",
                           placeholder="path/to/folder or owner/name (e.g. gpt2 needs the machine online)",
                           help="A transformers model folder with safetensors weights and tokenizer files, or a "
                                "Hugging Face hub id when the machine is online. Pickled weights are refused.").strip()
    if not source:
        st.info("Type the path of a transformers model folder (BERT, GPT-2, RoBERTa, DistilBERT, ...) or a hub id.")
        return None
    return load_typed_source(source, "attention_failed", _load_hf)


def _load_hf(source: str) -> tuple[object, object, str]:
    """(model, tokenizer, cache key); a hub id downloads (or fails with the offline message) here."""
    folder, _ = resolve(source)
    model, tokenizer = _hf_model(str(folder), _folder_stamp(str(folder)))
    return model, tokenizer, f"{folder}:{_folder_stamp(str(folder))}"


def _lab_models() -> list:
    """The checkpoints (shipped, then runs) of families that record their own attention."""
    return [i for i in visible_checkpoints() if i.family in RECORDING_FAMILIES]


def _record(kind: str, text: str, max_tokens: int) -> AttentionRecord | None:
    """The attention record of ``text`` from the chosen model; None after saying why there is none."""
    if kind == LAB_GPT:
        infos = _lab_models()
        if not infos:
            st.info("There is no GPT checkpoint yet: train one on the GPT page, or choose a Hugging Face folder.")
            return None
        by_path = {str(i.path): i for i in infos}
        path = st.selectbox("Checkpoint", list(by_path), key="attention_gpt",
                            format_func=lambda p: f"{by_path[p].name} · {by_path[p].family} · {by_path[p].origin}")
        try:
            model, _ = load_cached(path, checkpoint_mtime(path))
        except (CheckpointError, OSError) as err:
            st.error(str(err))
            return None
        try:
            return _gpt_record(model, f"{path}:{checkpoint_mtime(path)}", text)
        except ValueError as err:
            st.error(str(err))
            return None
    loaded = _hf_source()
    if loaded is None:
        return None
    model, tokenizer, key = loaded
    try:
        return _hf_record(model, tokenizer, key, text, max_tokens)
    except ValueError as err:
        st.error(str(err))
        return None


# -- the views -------------------------------------------------------------------------------------------------
def _keep_valid(key: str, options: list) -> None:
    """Forget a picker's value that the current filters no longer offer (before the picker is drawn)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def _open_thumbnail() -> None:
    """on_select of the model view: open the clicked layer x head in the head view."""
    state = st.session_state.get("attention_model_chart")
    picked = picked_thumbnail(list(state.selection.points)) if state is not None else None
    if picked is not None:
        _open(*picked)


def _open_picked() -> None:
    """on_click of the model view's button: open the layer and head picked beside the grid (read from
    state when clicked, so a pick changed in the same moment counts)."""
    _open(st.session_state["attention_pick_layer"], st.session_state["attention_pick_head"])


def _open(layer: int, head: int) -> None:
    """Show ``layer`` x ``head`` alone in the head view (set before the next run draws its pickers)."""
    st.session_state["attention_layer"], st.session_state["attention_head"] = layer, head
    st.session_state["attention_head_mode"] = "One head"
    st.session_state["attention_tab"] = "Head view"


def _downloads(name: str, png, fig, key: str) -> None:
    """PNG and HTML buttons; both are made only when clicked (``png`` is a callable)."""
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("PNG", data=png, file_name=f"{name}.png", mime="image/png", key=f"attention_png_{key}",
                         on_click="ignore", icon=":material/download:")
    right.download_button("HTML", data=lambda: figure_html(fig), file_name=f"{name}.html", mime="text/html",
                          key=f"attention_html_{key}", on_click="ignore", icon=":material/download:",
                          help="A self-contained page: plotly is inside it, so it opens offline.")


def _layer_and_head(record: AttentionRecord, where) -> tuple[int, int]:
    keep_widget_state("attention_layer")  # the tabs are lazy: a visit to another tab forgets the picks
    keep_widget_state("attention_head")
    _keep_valid("attention_layer", record.layer_ids)
    _keep_valid("attention_head", record.head_ids)
    layer = where[0].selectbox("Layer", record.layer_ids, key="attention_layer")
    head = where[1].selectbox("Head", record.head_ids, key="attention_head")
    return layer, head


def head_tab(record: AttentionRecord) -> None:
    cols = st.columns(3)
    keep_widget_state("attention_head_mode")
    mode = cols[2].radio("Heads", HEAD_MODES, key="attention_head_mode")
    layer, head = _layer_and_head(record, cols)
    heads = [head] if mode == "One head" else None
    combine = "mean" if mode == "Mean of the heads" else "each"
    if record.n_tokens > LINE_VIEW_MAX_TOKENS:
        st.caption(f"{record.n_tokens} tokens in the window: drawn as a heatmap (rows: queries, columns: keys"
                   f"{', the mean of the heads' if heads is None else ''}). Narrow the window to "
                   f"{LINE_VIEW_MAX_TOKENS} tokens or fewer for the line view.")
    else:
        st.caption("Each query token (left) is joined to the keys (right) it attends to; the stronger the line, the "
                   "more weight. Lines under 2% are left out.")
    fig = head_view(record, layer, heads, combine)
    st.plotly_chart(fig, key="attention_head_chart")
    _downloads(f"head-view-layer{layer}", lambda: head_view_png(record, layer, heads, combine), fig, "head")


def model_tab(record: AttentionRecord) -> None:
    st.caption("Every layer x head of the window, each scaled to its own 99th percentile. Click a thumbnail to open "
               "it in the head view, or pick one on the right.")
    left, right = st.columns([4, 1])
    fig = model_view(record)
    with left:
        st.plotly_chart(fig, key="attention_model_chart", on_select=_open_thumbnail, selection_mode="points")
    with right:
        st.selectbox("Layer", record.layer_ids, key="attention_pick_layer")
        st.selectbox("Head", record.head_ids, key="attention_pick_head")
        st.button("Open in the head view", key="attention_open", on_click=_open_picked, icon=":material/open_in_full:")
    _downloads("model-view", lambda: model_view_png(record), fig, "model")


def neuron_tab(record: AttentionRecord) -> None:
    if not record.has_qk:
        st.info(record.qk_missing or "The neuron view is not available for this model: its queries and keys "
                "were not recorded.")
        return
    cols = st.columns(3)
    layer, head = _layer_and_head(record, cols)
    positions = list(range(record.offset, record.offset + record.n_tokens))
    keep_widget_state("attention_query")
    _keep_valid("attention_query", positions)
    st.session_state.setdefault("attention_query", positions[-1])  # a default through state: no index= clash
    query = cols[2].selectbox("Query token", positions, key="attention_query",
                              format_func=lambda p: label(record, p - record.offset))
    st.caption("The query vector q of the chosen token meets each key vector k_j: their elementwise product "
               "sums (divided by √d) to the score, and the softmax of the scores is the attention."
               + (" Keys after the query are masked (causal model)." if record.causal else "")
               + (" In a window, the probabilities are the model's own: their softmax also counted tokens "
                  "outside it." if record.offset or record.causal else ""))
    fig = neuron_view(record, layer, head, query)
    st.plotly_chart(fig, key="attention_neuron_chart")
    _downloads(f"neuron-view-layer{layer}-head{head}-token{query}",
               lambda: neuron_view_png(record, layer, head, query), fig, "neuron")


# -- the page ------------------------------------------------------------------------------------------------
st.title("Attention explorer")
st.caption("What each head attends to, for the lab's GPT or any Hugging Face encoder or decoder. Everything is "
           "drawn here, offline: no script comes from the internet.")

has_gpt = bool(_lab_models())
keep_widget_state("attention_source_kind", None)
st.session_state.setdefault("attention_source_kind", LAB_GPT if has_gpt else HUGGING_FACE)
kind = st.radio("Model", (LAB_GPT, HUGGING_FACE), horizontal=True, key="attention_source_kind")
text = st.text_area("Text", DEFAULT_TEXT, key="attention_text", height=100)
max_tokens = int(st.number_input("At most this many tokens", 8, DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS, step=8,
                                 key="attention_max_tokens", help="Longer text is cut here (and at the model's own "
                                 "longest input)."))
try:
    full = _record(kind, text, max_tokens) if text.strip() else None
except Exception as err:  # an unusual model must not take the page down
    logging.getLogger(__name__).exception("attention record failed")  # the class and traceback, for the log
    st.error(f"The attention could not be computed: {plain_error(err)}")
    full = None
if not text.strip():
    st.info("Type some text to see its attention.")
if full is not None:
    st.caption(f"{full.model_name} · {full.n_tokens} tokens · {full.n_layers} layers x {full.n_heads} heads · "
               f"{'causal (each token sees only those before it)' if full.causal else 'bidirectional'}")
    left, middle, right = st.columns([1, 1, 2])
    layers = left.multiselect("Layers", full.layer_ids, default=full.layer_ids, key="attention_layers")
    heads = middle.multiselect("Heads", full.head_ids, default=full.head_ids, key="attention_heads")
    start, stop = 0, full.n_tokens
    if full.n_tokens > 1:
        start, stop = right.slider("Token window", 0, full.n_tokens, (0, min(full.n_tokens, DEFAULT_WINDOW)),
                                   key=f"attention_window_{full.n_tokens}",
                                   help="The positions shown, as queries and as keys.")
    if not layers or not heads:
        st.info("Pick at least one layer and one head.")
    elif stop <= start:
        st.info("The token window is empty: widen it.")
    else:
        shown = window(select_heads(select_layers(full, layers), heads), start, stop)
        views = {"Head view": head_tab, "Model view": model_tab, "Neuron view": neuron_tab}
        for tab, (name, draw) in zip(st.tabs(list(TABS), key="attention_tab", on_change="rerun"), views.items()):
            if tab.open is False:
                continue
            with tab:
                try:
                    draw(shown)
                except (ValueError, KeyError) as err:
                    st.error(f"{name} could not be shown: {err}")
