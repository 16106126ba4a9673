"""AppTest of the PixelCNN & PixelRNN page: the real page script, real checkpoints (shipped, or tiny
stand-ins trained on the spot), sampling on the real background runner, no mocks."""
from __future__ import annotations

import pytest
from test_app_pages import captions, loss_axis_title, shipped, open_family_page, run_clean, show_family_tab, texts

from genlib.background import get as get_job

PAGE = "pages/autoregressive.py"


def open_ar(family: str, tab: str | None = None):
    return open_family_page(PAGE, "ar", family, tab)


def show_tab(at, tab: str):
    return show_family_tab(at, "ar", tab)


@pytest.mark.parametrize("family", ["pixelcnn", "pixelrnn"])
def test_sampling_pixel_by_pixel_then_scrubbing_the_rows(app_env, family):
    at = open_ar(family)
    assert any("Press **Draw**" in i for i in texts(at.info))
    at.number_input(key="ar_count").set_value(2)
    at.button(key="ar_draw").click()
    run_clean(at)
    snap = get_job(at.session_state["ar_sampling_id"]).wait(timeout=300)
    assert snap.status == "finished", snap.message
    assert len(snap.state) == 28 and tuple(snap.state[-1].shape) == (2, 1, 28, 28)
    run_clean(at)
    assert any(c.startswith("after 28 of 28 rows") for c in captions(at))
    at.slider(key="ar_frame").set_value(5)
    run_clean(at)
    assert any(c.startswith("after 5 of 28 rows") for c in captions(at))
    assert at.get("download_button")
    at.number_input(key="ar_count").set_value(99)  # above the cap: the widget refuses it
    run_clean(at)


def test_the_receptive_field_tab_shows_the_blind_spot(app_env):
    at = open_ar("pixelcnn", "Receptive field")
    shown = captions(at)
    assert len(shown) == 2 and shown[0].startswith("masked convolutions") and shown[1].startswith("this model")
    seen = [int(c.split(" · ")[1].split()[0]) for c in shown]
    assert seen[1] > seen[0]  # the gated stacks see more: no blind spot
    at.number_input(key="ar_field_row").set_value(0)
    at.number_input(key="ar_field_col").set_value(0)
    run_clean(at)
    assert all(c.endswith("· 0 pixels seen") for c in captions(at))  # nothing comes before the first pixel


def test_the_likelihood_tab(app_env):
    at = open_ar("pixelcnn", "Likelihood")
    assert len(at.get("plotly_chart")) == 2  # the histogram and the per-pixel surprise map
    labels = [m.label for m in at.metric]
    assert "AUROC digits vs non-digits" in labels and any(label.startswith("test digits, mean") for label in labels)
    show_tab(at, "Metrics & downloads")
    assert at.table
    data = shipped("pixelcnn").model_config["data"]   # the checkpoint on show: its loss's unit follows its data
    assert loss_axis_title(at) == {"8-bit": "bits/dim (8-bit digits)",
                                   "binarized": "−log p(x) (nats/image, binarized digits)"}[data]
