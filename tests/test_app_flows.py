"""AppTest of the Normalizing flows page: the real page script, real flow checkpoints (shipped, or tiny
stand-ins trained on the spot), no mocks."""
from __future__ import annotations

import pytest
from test_app_pages import captions, loss_axis_title, open_family_page, open_page, run_clean, show_family_tab, texts

from genlib.background import get as get_job
from genlib.data import mnist
from genlib.images import to_grid, to_png

PAGE = "pages/flows.py"


def open_flows(family: str, tab: str | None = None):
    return open_family_page(PAGE, "flow", family, tab)


def show_tab(at, tab: str):
    return show_family_tab(at, "flow", tab)


@pytest.mark.parametrize("family", ["nice", "realnvp", "glow"])
def test_every_tab_of_the_flows_page(app_env, family):
    at = open_flows(family)
    assert any("temperature 1 · seed 0" in c for c in captions(at))
    at.number_input(key="flow_sampling_temperature").set_value(0.5)
    run_clean(at)
    assert any("temperature 0.5 · seed 0" in c for c in captions(at))
    assert at.download_button(key="flow_dl_samples")

    show_tab(at, "x and z")
    assert any("gives back every grey level" in c and "largest difference 0.0e+00" in c for c in texts(at.caption))
    latent_captions = [c for c in captions(at) if c.startswith("z")]
    assert len(latent_captions) == (1 if family == "nice" else 2), latent_captions

    show_tab(at, "Interpolation")
    assert any("straight line between the latents of test digits 0 and 1" in c for c in captions(at))

    show_tab(at, "Likelihood")
    assert len(at.get("plotly_chart")) == 1
    labels = [m.label for m in at.metric]
    assert "AUROC digits vs non-digits" in labels and "test digits, mean bits/dim" in labels
    mean_bpd = float(next(m.value for m in at.metric if m.label == "test digits, mean bits/dim"))
    assert 0 < mean_bpd < 20  # finite (a tiny stand-in trained for 5 steps is above uniform noise's 8)

    show_tab(at, "Metrics & downloads")
    assert at.table
    assert loss_axis_title(at) == "bits/dim (8-bit digits)"   # a flow's loss, not a VAE's reconstruction loss


def test_an_uploaded_digit_shows_its_latents_and_a_bad_upload_says_why(app_env):
    at = open_flows("glow", "x and z")
    at.radio(key="flow_z_pick").set_value("your own digit")
    run_clean(at)
    assert any("Upload an image" in i for i in texts(at.info))
    at.file_uploader(key="flow_upload").upload("digit.png", b"definitely not an image", "image/png")
    run_clean(at)
    assert any("not a readable image" in e for e in texts(at.error)), texts(at.error)
    digit = to_png(to_grid(mnist().test_images[:1], nrow=1, pad=0))
    at.file_uploader(key="flow_upload").set_value(("digit.png", digit, "image/png"))
    run_clean(at)
    assert not at.error and "digit" in captions(at)
    assert any("largest difference 0.0e+00" in c for c in texts(at.caption))


def test_a_flow_trains_in_the_background_and_opens_in_the_chooser(app_env):
    at = open_page(PAGE, {"flow_tab": "Train"})
    at.selectbox(key="flow_train_family").set_value("realnvp")
    run_clean(at)
    for key, value in {"flow_train_realnvp_hidden": 4, "flow_train_realnvp_steps": 1, "flow_train_epochs": 1,
                       "flow_train_batch_size": 500}.items():
        at.number_input(key=key).set_value(value)
    at.button(key="flow_start").click()
    run_clean(at)
    snap = get_job(at.session_state["flow_job_id"]).wait(timeout=300)
    assert snap.status == "finished", snap.message
    run_clean(at)
    assert "step 8/8" in at.progress[0].proto.text
    at.button(key="flow_open_run").click()
    run_clean(at)
    assert at.selectbox(key="flow_model_choice").value == str(snap.state.result_path)


def test_the_2d_continuous_flow_trains_live_and_draws_its_density_and_paths(app_env):
    at = open_page(PAGE, {"flow_tab": "2-D continuous flow"})
    assert any("Press Train" in i for i in texts(at.info))
    for key, value in {"flow_cnf_hidden": 8, "flow_cnf_hidden_layers": 1, "flow_cnf_steps": 20}.items():
        at.number_input(key=key).set_value(value)
    at.selectbox(key="flow_cnf_distribution").set_value("gaussian")
    at.button(key="flow_cnf_start").click()
    run_clean(at)
    snap = get_job(at.session_state["flow_cnf_id"]).wait(timeout=300)
    assert snap.status == "finished", snap.message
    run_clean(at)
    assert len(at.get("plotly_chart")) == 3  # density, paths, curves
    labels = {m.label: m.value for m in at.metric}
    assert labels["held-out exact log-likelihood"].endswith("nats") and int(labels["NFE, last training step"]) > 0
    at.slider(key="flow_cnf_time").set_value(0)
    run_clean(at)
    assert not at.error
