"""Fine-tune an encoder: any Hugging Face encoder (the lab's own small BERT, a local folder, or a hub id
such as bert-base-uncased when online) fine-tuned for text classification in the background, on the
built-in set of standard-library docstrings or an uploaded CSV, and compared with a TF-IDF + logistic
regression baseline on the same test split. A typed sentence is classified, and its attention opens in
the explorer. The maths is in genlib.families.transformers (encoder, textclass). Session-state keys
start with ``finetune_``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitAPIException

from genlib import background
from genlib.background import RunnerBusy, Snapshot
from genlib.checkpoints import CheckpointError, shipped_dir
from genlib.families.transformers.encoder import (SHIPPED_ENCODER, FinetuneConfig, FinetuneView, finetuned_runs,
                                                  load_classifier, predict, read_finetune_metrics,
                                                  start_finetune_job)
from genlib.families.transformers.textclass import (MAX_CSV_BYTES, DatasetError, TextSet, builtin_dataset,
                                                    read_csv_dataset)
from pages._ui import (caps, check_source, demo_caption, progress_text, require_router, scalars_figure, visitor,
                       visitor_token, watch)
from pages._widgets import config_widgets, make_config

require_router()

SHIPPED = "The lab's small BERT (bert-mini-pydoc)"
TYPED = "A folder or Hugging Face id"
BUILTIN = "Built-in: standard-library docstrings"
UPLOAD = "Upload a CSV (text, label)"
SETTINGS = ("epochs", "lr", "batch_size", "max_length")
ATTENTION_PAGE = "pages/attention.py"


# -- cached data and models -----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Building the built-in set from the standard library's docstrings…")
def _builtin() -> TextSet:
    return builtin_dataset()


@st.cache_data(show_spinner="Reading the CSV…", max_entries=4)
def _csv(data: bytes, name: str) -> TextSet:
    return read_csv_dataset(data, name)


@st.cache_resource(show_spinner="Loading the fine-tuned model…", max_entries=4)
def _classifier(folder: str, stamp: float):
    """(model, tokenizer) of a fine-tuned folder, shared by all sessions: never trained or moved."""
    model, tokenizer, _ = load_classifier(folder)
    return model.eval(), tokenizer


def _stamp(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=0.0)


def _runs_root() -> Path | None:
    ws = visitor()
    return ws.runs if ws is not None else None


# -- the inputs -------------------------------------------------------------------------------------------------
def encoder_input() -> str | None:
    """The encoder to fine-tune: the shipped folder's path, or what the visitor typed."""
    kind = st.radio("Encoder", (SHIPPED, TYPED), horizontal=True, key="finetune_encoder_kind")
    if kind == SHIPPED:
        folder = shipped_dir() / SHIPPED_ENCODER
        if not (folder / "config.json").is_file():
            st.warning(f"The shipped encoder is missing from {folder.parent}; train it with "
                       f"`python -m genlib pretrain-encoder --out checkpoints/{SHIPPED_ENCODER}`, or type a folder.")
            return None
        st.caption(_describe(folder))
        return str(folder)
    source = st.text_input("Local transformers folder or hub id", key="finetune_source",
                           placeholder="path/to/folder, or bert-base-uncased (the machine must be online)",
                           help="Any encoder AutoModelForSequenceClassification loads from safetensors weights: "
                                "BERT, RoBERTa, DistilBERT, ... Pickled weights and remote code are refused.").strip()
    if not source:
        st.info("Type the path of a transformers folder, or a hub id such as bert-base-uncased.")
        return None
    try:
        check_source(source)
    except CheckpointError as err:
        st.error(str(err))
        return None
    return source


def _describe(folder: Path) -> str:
    """One line about a local encoder folder, from its config.json and metrics.json."""
    try:
        config = json.loads((folder / "config.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    except (OSError, ValueError):
        return f"Folder {folder}"
    parts = [f"{config.get('model_type', '?')}: {config.get('num_hidden_layers', '?')} layers, hidden "
             f"{config.get('hidden_size', '?')}, {config.get('num_attention_heads', '?')} heads"]
    if "parameters" in metrics:
        parts.append(f"{metrics['parameters']:,} parameters")
    if "held_out_mlm_loss" in metrics:
        parts.append(f"held-out masked-LM loss {metrics['held_out_mlm_loss']}")
    done = metrics.get("finetune", {})
    if "test" in done:
        parts.append(f"fine-tuned on the built-in set: test accuracy {done['test']['accuracy']:.1%} against "
                     f"TF-IDF's {done['baseline']['accuracy']:.1%}")
    return " · ".join(parts)


def dataset_input() -> TextSet | None:
    """The labelled set: the built-in one, or the visitor's CSV (errors said in words)."""
    kind = st.radio("Data", (BUILTIN, UPLOAD), horizontal=True, key="finetune_data_kind")
    if kind == BUILTIN:
        dataset = _builtin()
    else:
        most = min(MAX_CSV_BYTES, caps().upload_bytes)
        upload = st.file_uploader(f"CSV with the columns text and label (at most {most / 2**20:g} MB)",
                                  type=["csv", "text/csv"], key="finetune_csv")
        if upload is None:
            st.info("Upload a CSV file whose header row is text,label, one example per row; each label needs at "
                    "least 5 examples.")
            return None
        data = upload.getvalue()
        if len(data) > most:
            st.error(f"{upload.name} is {len(data) / 2**20:.1f} MB; the most a CSV may be here is {most / 2**20:g} MB")
            return None
        try:
            dataset = _csv(data, upload.name)
        except DatasetError as err:
            st.error(str(err))
            return None
    sizes = dataset.summary()
    st.caption(f"{dataset.description}. {sizes['train']:,} train · {sizes['val']:,} validation · "
               f"{sizes['test']:,} test; labels: {', '.join(dataset.labels)}.")
    with st.expander("A few training examples"):
        st.dataframe(pd.DataFrame([{"label": dataset.labels[y], "text": t} for t, y in dataset.train[:12]]),
                     hide_index=True, use_container_width=True)
    return dataset


# -- the job ----------------------------------------------------------------------------------------------------
def _curves(view: FinetuneView, key: str) -> None:
    if view.history:
        st.plotly_chart(scalars_figure(view.history, ["loss"], height=260), key=f"{key}_loss")
    if view.evals:
        fig = go.Figure(go.Scatter(x=[e["epoch"] for e in view.evals], y=[e["val_accuracy"] for e in view.evals],
                                   mode="lines+markers", name="validation accuracy"))
        fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10), title="validation accuracy by epoch",
                          xaxis_title="epoch", yaxis=dict(range=[0, 1], tickformat=".0%"))
        st.plotly_chart(fig, key=f"{key}_val")


def _live(snaps: list[Snapshot]) -> None:
    """The running fine-tune, redrawn every second by ``watch``."""
    snap = snaps[0]
    text = progress_text(snap) if snap.total_steps else snap.message
    st.progress(min(1.0, snap.fraction), text=f"run **{snap.title}** · {text}")
    if st.button("Cancel", key=f"finetune_cancel_{snap.id}", icon=":material/stop:"):
        background.get(snap.id).cancel()
        st.caption("Cancelling after the current step…")
    _curves(snap.state, f"finetune_live_{snap.id}")


def job_panel() -> None:
    """The fine-tune started in this session: live while it runs, then how it ended."""
    job = background.get(st.session_state.get("finetune_job_id"))
    if job is None:
        return
    snap = job.snapshot()
    if not snap.done:
        watch([job.id], _live)
        return
    if snap.status == "finished":
        st.success(f"Fine-tune {snap.message}.")
        if st.session_state.get("finetune_shown_job") != snap.id:   # show its results once; then the picker rules
            st.session_state["finetune_shown_job"] = snap.id
            st.session_state["finetune_results"] = str(snap.result.path)
    elif snap.status == "cancelled":
        st.warning(f"The fine-tune was {snap.message}.")
    else:
        st.error(f"The fine-tune failed: {snap.message}")
    with st.expander("Training curves", expanded=snap.status != "finished"):
        _curves(snap.state, f"finetune_done_{snap.id}")


def start_button(source: str | None, dataset: TextSet | None, config: FinetuneConfig | None) -> None:
    running = background.get(st.session_state.get("finetune_job_id"))
    busy = running is not None and not running.snapshot().done
    if st.button("Start fine-tuning", type="primary", key="finetune_start", icon=":material/play_arrow:",
                 disabled=busy or any(x is None for x in (source, dataset, config))):
        try:
            job = start_finetune_job(source, dataset, config, out_root=_runs_root(), owner=visitor_token())
        except RunnerBusy as err:
            st.warning(str(err))
            return
        st.session_state["finetune_job_id"] = job.id
        st.rerun()


# -- the results --------------------------------------------------------------------------------------------------
def _confusion(matrix: list[list[int]], labels: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues", text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} texts<extra></extra>",
                               showscale=False))
    fig.update_layout(title=title, height=420, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="predicted",
                      yaxis_title="true", yaxis_autorange="reversed")
    return fig


def results(folder: Path) -> None:
    """A fine-tuned folder's test figures beside the baseline, a typed sentence classified, its attention."""
    try:
        metrics = read_finetune_metrics(folder)
    except CheckpointError as err:
        st.error(str(err))
        return
    test, base, labels = metrics["test"], metrics["baseline"], metrics["labels"]
    st.markdown(f"**{folder.name}**: {metrics['source']} on {metrics['dataset']['name']} "
                f"({metrics['dataset']['test']:,} test texts), best epoch {metrics['best_epoch']}, "
                f"{metrics['train_seconds']:.0f} s")
    cols = st.columns(4)
    cols[0].metric("Encoder accuracy", f"{test['accuracy']:.1%}",
                   f"{test['accuracy'] - base['accuracy']:+.1%} vs TF-IDF")
    cols[1].metric("Encoder macro-F1", f"{test['macro_f1']:.3f}",
                   f"{test['macro_f1'] - base['macro_f1']:+.3f} vs TF-IDF")
    cols[2].metric("TF-IDF accuracy", f"{base['accuracy']:.1%}")
    cols[3].metric("TF-IDF macro-F1", f"{base['macro_f1']:.3f}")
    left, right = st.columns(2)
    left.plotly_chart(_confusion(test["confusion"], labels, "Fine-tuned encoder"), key="finetune_confusion")
    right.plotly_chart(_confusion(base["confusion"], labels, base["model"]), key="finetune_confusion_baseline")
    st.download_button("Download metrics JSON", json.dumps(metrics, indent=2), file_name=f"{folder.name}-metrics.json",
                       mime="application/json", key="finetune_download", icon=":material/download:")
    classify(folder, labels)


def classify(folder: Path, labels: list[str]) -> None:
    st.subheader("Classify a sentence")
    text = st.text_input("Sentence", "Return the number of seconds until the lock is released.",
                         key="finetune_sentence").strip()
    if not text:
        return
    try:
        model, tokenizer = _classifier(str(folder), _stamp(folder))
    except CheckpointError as err:
        st.error(str(err))
        return
    probs = predict(model, tokenizer, [text])[0].tolist()
    names = [model.config.id2label.get(i, labels[i] if i < len(labels) else str(i)) for i in range(len(probs))]
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    st.markdown(f"Predicted: **{names[order[0]]}** ({probs[order[0]]:.0%})")
    fig = go.Figure(go.Bar(x=[probs[i] for i in order][::-1], y=[names[i] for i in order][::-1], orientation="h"))
    fig.update_layout(height=40 + 28 * len(probs), margin=dict(l=10, r=10, t=10, b=10), xaxis_tickformat=".0%")
    st.plotly_chart(fig, key="finetune_probs")
    st.markdown(f"Its attention, head by head: the explorer takes this folder, `{folder}`.")
    if Path(ATTENTION_PAGE).is_file() and st.button("Open this sentence in the attention explorer",
                                                    key="finetune_to_attention", icon=":material/visibility:"):
        # The explorer's own widgets, set before it draws them: its Hugging Face source, the folder, the text.
        st.session_state["attention_source_kind"] = "A Hugging Face folder or hub id"
        st.session_state["attention_hf_source"] = str(folder)
        st.session_state["attention_text"] = text
        try:
            st.switch_page(ATTENTION_PAGE)
        except StreamlitAPIException:   # the explorer is not in this app's page list
            st.info(f"The attention explorer is not part of this app; open it and give it the folder `{folder}`.")


def results_picker() -> Path | None:
    """The fine-tune whose results are shown: the one just finished, or an earlier one."""
    runs = finetuned_runs(_runs_root())
    if not runs:
        return None
    by_name = {p.name: p for p in runs}
    latest = st.session_state.get("finetune_results")
    if latest and Path(latest).name in by_name:
        st.session_state["finetune_results_pick"] = Path(latest).name
        st.session_state.pop("finetune_results")
    name = st.selectbox("Results of", list(by_name), key="finetune_results_pick")
    return by_name.get(name)


# -- the page -------------------------------------------------------------------------------------------------------
st.title("Fine-tune an encoder")
st.caption("Fine-tune a transformer encoder for text classification in the background and compare it with a TF-IDF "
           "+ logistic regression baseline on the same test split. Offline, the lab's own small BERT (pretrained "
           "by masked-language modelling on the Python documentation) and a labelled set built from the standard "
           "library's docstrings; online, any encoder by its hub id.")
demo_caption("train_steps", "jobs_total", "upload_bytes", "hub")

source = encoder_input()
dataset = dataset_input()
st.markdown("**Settings**")
values = config_widgets(FinetuneConfig, "finetune_cfg", only=SETTINGS, columns=4)
config = make_config(FinetuneConfig, values)
start_button(source, dataset, config)
job_panel()

st.divider()
st.header("Results")
picked = results_picker()
if picked is None:
    st.info("No fine-tune yet: start one above; its test accuracy, macro-F1 and confusion matrix appear here.")
else:
    results(picked)
