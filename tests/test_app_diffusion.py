"""AppTest of the Diffusion page: the real app script, real diffusion checkpoints, real models, no mocks.

Checkpoints come from ``app_checkpoints`` (the shipped diffusion-mnist and cdiffusion-mnist, or tiny
stand-ins with T=100 trained on the spot before they exist); runs and caches land in a temp folder
(``app_env``). Settings are kept small (a few sampler steps, a few images) so each run takes seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_pages import captions, open_page, run_clean, texts

import genlib
from genlib.background import get as get_job
from genlib.background import get as get_task
from genlib.data import mnist
from genlib.images import to_grid, to_png

PAGE = "pages/diffusion.py"


def shipped_path(family: str) -> str:
    return str(next(i for i in genlib.list_checkpoints(family) if i.origin == "shipped").path)


def open_diffusion(tab: str | None = None, family: str = "diffusion") -> AppTest:
    at = open_page(PAGE, {"dif_tab": tab} if tab else None)
    if at.selectbox(key="dif_model_choice").value != shipped_path(family):
        at.selectbox(key="dif_model_choice").set_value(shipped_path(family))
        run_clean(at)
    return at


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["dif_tab"] = tab
    run_clean(at)
    assert not at.error, (tab, texts(at.error))
    return at


def markdown(at: AppTest) -> str:
    return " ".join(texts(at.markdown))


@pytest.mark.parametrize("family", ["diffusion", "cdiffusion"])
def test_every_tab_of_the_diffusion_page(app_env, family):
    at = open_diffusion(family=family)
    conditional = family == "cdiffusion"
    assert any("Press **Sample**" in i for i in texts(at.info))  # nothing is sampled before the click
    at.button(key="dif_sample").click()
    run_clean(at)
    caption = next(c for c in captions(at) if "seed 0" in c)
    assert caption.startswith("one row per digit" if conditional else "16 samples"), caption
    assert ("guidance 2" in caption) == conditional
    assert at.download_button(key="dif_dl_samples")

    show_tab(at, "Reverse process")
    assert any("press **Run**" in i for i in texts(at.info))

    show_tab(at, "Forward process")
    assert len(at.get("plotly_chart")) == 1 and len(at.get("image")) == 2
    at.slider(key="dif_fw_t").set_value(10)
    run_clean(at)
    assert any("x_t at t = 10" in c for c in captions(at))

    show_tab(at, "Steps vs quality")
    drawn, can_compute = bool(at.get("plotly_chart")), "dif_sq_compute" in {b.key for b in at.button}
    assert drawn != can_compute  # a stored curve is drawn at once; otherwise a button computes one
    shipped_curve = app_env["checkpoints"] / f"{family}-mnist" / "steps_quality.json"
    assert drawn == shipped_curve.exists()

    show_tab(at, "Attention")
    assert len(at.get("plotly_chart")) == 2  # the clickable map and the row across timesteps
    at.number_input(key="dif_attn_row").set_value(3)
    run_clean(at)
    assert any(c.startswith("Where pixel (row 3, column 14)") for c in texts(at.caption))
    # A click on the chart selects the invisible marker of a pixel: (x, y) = (column, row).
    at.session_state["dif_attn_click"] = {"selection": {"points": [{"x": 20, "y": 5}], "point_indices": [],
                                                        "box": [], "lasso": []}}
    run_clean(at)
    assert (at.number_input(key="dif_attn_row").value, at.number_input(key="dif_attn_col").value) == (5, 20)
    at.number_input(key="dif_attn_col").set_value(2)  # typing after a click is not undone by the old click
    run_clean(at)
    assert at.number_input(key="dif_attn_col").value == 2

    show_tab(at, "Editing")
    at.number_input(key="dif_inpaint_steps").set_value(5)
    at.button(key="dif_inpaint_run").click()
    run_clean(at)
    assert {"original", "masked input (grey = to fill)", "inpainted · seed 0"} <= set(captions(at))
    assert at.download_button(key="dif_dl_edit")

    show_tab(at, "Train")
    assert any("Start a run" in i for i in texts(at.info))

    show_tab(at, "Metrics & downloads")
    assert {"dif_dl_preview", "dif_dl_weights", "dif_dl_metrics", "dif_dl_config"} <= \
        {b.key for b in at.get("download_button")}
    assert any("upper bound" in c for c in texts(at.caption))


def test_the_timeline_scrubs_every_sampler_without_recomputing(app_env):
    at = open_diffusion("Reverse process")
    at.multiselect(key="dif_tl_samplers").set_value(["ddpm", "ddim"])
    at.number_input(key="dif_tl_steps").set_value(4)
    at.number_input(key="dif_tl_batch").set_value(2)
    run_clean(at)
    at.button(key="dif_tl_run").click()
    run_clean(at)
    timelines = at.session_state["dif_timeline"]["timelines"]
    assert list(timelines) == ["ddpm", "ddim"] and [len(t.timesteps) for t in timelines.values()] == [4, 4]
    assert np.array_equal(timelines["ddpm"].x_t[0], timelines["ddim"].x_t[0])  # one seed: the same x_T
    assert "**ddpm** · step 1/4" in markdown(at) and "**ddim** · step 1/4" in markdown(at)
    first = [image.value for image in at.get("image")]
    assert len(first) == 4  # x_t and predicted x0 for each sampler
    assert {"dif_gif_ddpm", "dif_gif_ddim"} <= {b.key for b in at.get("download_button")}

    at.slider(key="dif_frame").set_value(2)
    run_clean(at)
    assert at.session_state["dif_timeline"]["timelines"] is timelines  # scrubbing reuses the run
    assert "**ddim** · step 3/4" in markdown(at)
    later = [image.value for image in at.get("image")]
    assert len(later) == 4 and all(a != b for a, b in zip(first, later))

    at.slider(key="dif_frame").set_value(4)
    run_clean(at)
    assert markdown(at).count("finished samples") == 2


def test_samples_are_drawn_on_click_and_kept_per_setting(app_env):
    at = open_diffusion()
    at.button(key="dif_sample").click()
    run_clean(at)
    seed0 = at.get("image")[0].value
    # (the sidebar is not drawn in AppTest's page-only reruns, so the seed is set before every run)
    at.session_state["global_seed"] = 3
    run_clean(at)
    assert any("Press **Sample**" in i for i in texts(at.info))  # new settings: nothing drawn until asked
    at.session_state["global_seed"] = 3
    at.button(key="dif_sample").click()
    run_clean(at)
    assert any(c.endswith("seed 3") for c in captions(at)) and at.get("image")[0].value != seed0
    at.session_state["global_seed"] = 0
    run_clean(at)
    assert at.get("image")[0].value == seed0  # remembered, not sampled again

    at.selectbox(key="dif_sampler").set_value("ddpm")
    run_clean(at)
    assert at.slider(key="dif_eta").disabled  # η belongs to DDIM


def test_uploads_to_the_editing_tab(app_env):
    at = open_diffusion("Editing")
    at.radio(key="dif_edit_mode").set_value("SDEdit")
    at.radio(key="dif_edit_source").set_value("my own image")
    run_clean(at)
    at.file_uploader(key="dif_upload").upload("digit.png", b"definitely not an image", "image/png")
    run_clean(at)
    assert any("not a readable image" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="dif_sde_run").disabled

    digit = to_png(to_grid(mnist().test_images[:1], nrow=1, pad=0))
    at.file_uploader(key="dif_upload").set_value(("digit.png", digit, "image/png"))
    at.number_input(key="dif_sde_steps").set_value(4)
    run_clean(at)
    assert not at.error
    at.button(key="dif_sde_run").click()
    run_clean(at)
    assert {"original", "noised input", "SDEdit results · seed 0"} <= set(captions(at))


def test_steps_quality_runs_in_the_background_then_comes_from_the_cache(app_env):
    at = open_diffusion("Steps vs quality")
    at.multiselect(key="dif_sq_samplers").set_value(["ddim"])
    at.multiselect(key="dif_sq_grid").set_value([5])
    at.number_input(key="dif_sq_samples").set_value(10)
    run_clean(at)
    at.button(key="dif_sq_compute").click()
    run_clean(at)
    (task_id,) = at.session_state["dif_sq_tasks"].values()
    snap = get_task(task_id).wait(timeout=300)
    assert snap.status == "finished", snap.error
    run_clean(at)
    assert at.get("plotly_chart") and at.dataframe[0].value["steps"].tolist() == [5]

    # Another session with the same settings: the cached curve at once, no Compute button.
    other = open_diffusion("Steps vs quality")
    other.multiselect(key="dif_sq_samplers").set_value(["ddim"])
    other.multiselect(key="dif_sq_grid").set_value([5])
    other.number_input(key="dif_sq_samples").set_value(10)
    run_clean(other)
    assert other.get("plotly_chart") and "dif_sq_compute" not in {b.key for b in other.button}

    # A longer measurement is cancelled from the page.
    at.multiselect(key="dif_sq_grid").set_value([5, 10, 20, 50])
    at.number_input(key="dif_sq_samples").set_value(500)
    run_clean(at)
    at.button(key="dif_sq_compute").click()
    run_clean(at)
    at.button(key="dif_sq_cancel").click()
    run_clean(at)
    task = get_task(at.session_state["dif_sq_tasks"][next(k for k in at.session_state["dif_sq_tasks"]
                                                           if ":500:" in k)])
    assert task.wait(timeout=120).status == "cancelled"
    run_clean(at)
    assert any("cancelled" in w for w in texts(at.warning)) and at.button(key="dif_sq_compute")


def test_a_model_without_attention_says_so(app_env, tmp_path):
    from genlib import TrainConfig, train_run

    folder = tmp_path / "no-attention"
    train_run("diffusion", {**genlib.get_family("diffusion").tiny_config, "attention": False},
              TrainConfig(epochs=1, batch_size=64, max_steps=1, preview_every=1, device="cpu"), folder,
              evaluate_model=False)
    at = open_diffusion("Attention")
    at.text_input(key="dif_model_source").input(str(folder))
    run_clean(at)
    assert any("no attention layers" in i for i in texts(at.info)), texts(at.info)


def test_training_reports_bad_settings_then_trains_with_live_previews(app_env):
    at = open_diffusion("Train")
    at.selectbox(key="dif_train_family").set_value("cdiffusion")
    run_clean(at)
    for key, value in {"base_channels": 8, "levels": 2, "attention_head_dim": 12, "num_train_timesteps": 100,
                       "sample_steps": 4}.items():
        at.number_input(key=f"dif_train_cdiffusion_{key}").set_value(value)
    for key, value in {"epochs": 1, "batch_size": 500, "preview_every": 8}.items():
        at.number_input(key=f"dif_train_{key}").set_value(value)
    at.button(key="dif_start").click()
    run_clean(at)
    assert any("attention_head_dim=12 must divide" in e for e in texts(at.error)), texts(at.error)

    at.number_input(key="dif_train_cdiffusion_attention_head_dim").set_value(8)
    at.button(key="dif_start").click()
    run_clean(at)
    snap = get_job(at.session_state["dif_job_id"]).wait(timeout=300)
    assert snap.status == "finished", snap.message
    run_clean(at)
    assert any(c == "samples at step 8" for c in captions(at))
    assert any(c.startswith("EMA on (decay 0.99") for c in texts(at.caption))
    assert any(snap.state.result_path.name in s for s in texts(at.success))
