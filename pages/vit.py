"""Vision Transformer: what a ViT predicts for a digit or an image, and where its CLS token looks.

Pick the lab's shipped ViT (trained on the 4,000 training digits) or any ViT folder / Hugging Face
ViT hub id, then a test digit or an upload. The page shows the prediction and probabilities, each
head's attention from the CLS token over the patches of one layer, and the attention rollout
(Abnar & Zuidema 2020) over the image. The maths is in genlib.families.transformers.vit.
Session-state keys start with ``vit_``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from genlib.checkpoints import is_local_folder, resolve, shipped_dir
from genlib.data import (DIGIT_UPLOAD_FORMATS, PHOTO_UPLOAD_FORMATS, UploadError, format_names, load_photo_upload,
                         load_upload, mnist, upload_types)
from genlib.images import from_uint8
from genlib.families.transformers.vit import SHIPPED_VIT
from genlib.families.transformers.vit_explain import Explained, ViTSource, load_vit_source, overlay_map
from pages._ui import caps, checkpoint_mtime, demo_caption, load_typed_source, require_router

require_router()

SHIPPED = "The shipped ViT (vit-digits)"
OTHER = "Another ViT: a folder or a Hugging Face hub id"
HEADS_PER_ROW = 4


@st.cache_resource(show_spinner="Loading the ViT…", max_entries=6)
def _load(source: str, mtime: float) -> ViTSource:
    """A loaded ViT shared by all sessions (never modify it); ``mtime`` only keys the cache."""
    return load_vit_source(source)


def pick_model() -> ViTSource | None:
    """The ViT chosen on the page, or None (with the reason shown in words)."""
    kind = st.radio("Model", [SHIPPED, OTHER], key="vit_model_kind", horizontal=True)
    if kind == SHIPPED:
        source = str(shipped_dir() / SHIPPED_VIT)
        if not is_local_folder(source):
            st.warning(f"The shipped ViT is missing ({source}). Train it with "
                       "`python -m genlib train-vit --out checkpoints/vit-digits`, or load another ViT.")
            return None
    else:
        source = st.text_input("ViT folder or Hugging Face hub id", key="vit_source",
                               placeholder="path/to/folder or google/vit-base-patch16-224",
                               help="A folder written by `python -m genlib train-vit`, a Hugging Face "
                                    "ViTForImageClassification folder (safetensors), or a hub id when the "
                                    "machine is online.").strip()
        if not source:
            st.info("Type a folder or a hub id to load it.")
            return None
    return load_typed_source(source, "vit_failed", _load_source)


def _load_source(source: str) -> ViTSource:
    """The ViT at ``source``, cached by its folder's modification time (a hub id: by its name)."""
    mtime = checkpoint_mtime(resolve(source)[0]) if is_local_folder(source) else 0.0
    return _load(source, mtime)


def pick_image(model: ViTSource):
    """The image to explain, (C,H,W) in [0,1], from the test digits or an upload; None until there is one."""
    left, right = st.columns([1, 2])
    kind = left.radio("Image", ["A test digit", "Upload an image"], key="vit_image_kind")
    with right:
        if kind == "A test digit":
            split = mnist()
            index = int(st.number_input("Test digit (index into the 1,000 held-out digits)", 0,
                                        split.test_images.shape[0] - 1, 0, key="vit_digit"))
            st.caption(f"True label: **{int(split.test_labels[index])}**")
            return split.test_images[index]
        digits = not model.hf   # the lab's ViT reads digits; a Hugging Face ViT usually reads photos
        formats = DIGIT_UPLOAD_FORMATS if digits else PHOTO_UPLOAD_FORMATS
        upload = st.file_uploader(f"{format_names(formats)}" + (" (a digit: dark ink on light paper is inverted)"
                                                               if digits else ""),
                                  type=upload_types(formats), key="vit_upload")
        demo_caption("upload_bytes", "upload_pixels")
        if upload is None:
            st.info("Upload an image to see where the model looks.")
            return None
        try:
            if digits:
                return load_upload(upload.getvalue())[0]
            photo = load_photo_upload(upload.getvalue(), max_bytes=caps().upload_bytes)
        except UploadError as err:
            st.error(f"That file cannot be used: {err}.")
            return None
        array = (np.clip(photo.image, 0, 1) * 255 + 0.5).astype(np.uint8)
        return from_uint8(array[None] if array.shape[2] == 3 else array[None, ..., 0])[0]


# -- figures ------------------------------------------------------------------------------------------------
def _base(fig: go.Figure, image: np.ndarray, row: int, col: int) -> None:
    """The image the model saw, as the bottom layer of one subplot."""
    if image.ndim == 2:
        fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, hoverinfo="skip"), row, col)
    else:
        fig.add_trace(go.Image(z=(image * 255).astype(np.uint8), hoverinfo="skip"), row, col)


def overlays(e: Explained, maps: list[np.ndarray], titles: list[str], opacity: float, per_row: int,
             from_zero: bool = True) -> go.Figure:
    """One subplot per map (H,W): the image with the map as a translucent heatmap over it, on one colour
    scale from 0 (or, with ``from_zero`` False, from the smallest value: a flat rollout keeps its contrast)."""
    rows = math.ceil(len(maps) / per_row)
    cols = min(per_row, len(maps))
    fig = make_subplots(rows, cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)
    top = max(float(m.max()) for m in maps) or 1.0   # one colour scale across heads, so they compare
    low = 0.0 if from_zero else min(float(m.min()) for m in maps)
    for i, m in enumerate(maps):
        r, c = divmod(i, per_row)
        _base(fig, e.image, r + 1, c + 1)
        fig.add_trace(go.Heatmap(z=m, zmin=low, zmax=max(top, low + 1e-9), colorscale="Hot", opacity=opacity,
                                 showscale=i == 0,
                                 hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>"), r + 1, c + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=260 * rows, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def show(model: ViTSource, e: Explained) -> None:
    """Prediction, probabilities, the per-head CLS maps of one layer and the rollout."""
    probs = pd.DataFrame({"class": e.labels, "probability": e.probs.numpy()})
    top = probs.sort_values("probability", ascending=False).head(10)
    left, right = st.columns([1, 2])
    left.metric("Prediction", e.prediction)
    left.caption(f"with probability **{float(e.probs.max()):.1%}**")
    acc = model.metrics.get("test_accuracy")
    left.caption(f"Test accuracy: **{acc:.2%}** on the {model.metrics.get('test_images', 1000):,} held-out digits "
                 "(its metrics.json)" if isinstance(acc, (int, float)) else "Test accuracy: not measured "
                 "(no metrics.json); `python -m genlib eval-vit SOURCE` measures it on the test digits.")
    left.caption(f"{model.layers} layers × {model.heads} heads · {e.grid[0]}×{e.grid[1]} patches")
    right.bar_chart(top, x="class", y="probability", horizontal=True, sort="-probability", height=240)

    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="vit_opacity")
    size = e.image.shape[:2]
    st.subheader("Attention rollout")
    st.caption("How much each patch flows into the CLS token through all layers: each layer's heads averaged, "
               "the identity added for the residual connection, rows renormalised, layers multiplied "
               "(Abnar & Zuidema 2020). Scaled so the strongest patch is 1; the colours run from the weakest patch "
               "to the strongest.")
    st.plotly_chart(overlays(e, [overlay_map(e.rollout(), size)], ["rollout, all layers"], opacity, 1, from_zero=False)
                    .update_layout(width=360), key="vit_fig_rollout", width="content")

    st.subheader("Each head's CLS attention")
    layer = st.select_slider("Layer", options=list(range(1, model.layers + 1)), value=model.layers,
                             key="vit_layer", help="1 is the first block, the last one feeds the classifier.")
    maps = e.cls_maps(layer - 1)
    st.caption(f"Layer {layer}: row 0 of each head's attention (the CLS token as the query) over the "
               f"{e.grid[0] * e.grid[1]} patches; what is left of each row went to the CLS token itself.")
    st.plotly_chart(overlays(e, [overlay_map(m, size) for m in maps], [f"head {h + 1}" for h in range(len(maps))],
                             opacity, HEADS_PER_ROW), key="vit_fig_heads")


st.title("Vision Transformer")
st.caption("A ViT cuts the image into patches, adds a CLS token, and lets every token attend to every other. "
           "Here is what it predicts, and where its CLS token looks.")
vit = pick_model()
if vit is not None:
    image = pick_image(vit)
    if image is not None:
        try:
            explained = vit.explain(image)
        except ValueError as err:
            st.error(f"This image cannot go through the model: {err}.")
        else:
            show(vit, explained)
