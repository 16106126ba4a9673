"""AppTest of the Boltzmann machines page: the real page script, a real RBM checkpoint (shipped, or a
tiny stand-in trained on the spot), scikit-learn's baseline on the real background runner, no mocks."""
from __future__ import annotations

from test_app_pages import captions, loss_axis_title, open_family_page, run_clean, show_family_tab, texts

from genlib.background import get as get_job

PAGE = "pages/boltzmann.py"


def open_rbm(tab: str | None = None):
    return open_family_page(PAGE, "rbm", "rbm", tab)


def show_tab(at, tab: str):
    return show_family_tab(at, "rbm", tab)


def test_gibbs_chains_scrub_from_noise_and_from_digits(app_env):
    at = open_rbm()
    at.number_input(key="rbm_chain_steps").set_value(100)
    run_clean(at)
    assert any("after 100 of 100 Gibbs steps" in c for c in captions(at))
    at.slider(key="rbm_chain_frame").set_value(0)
    run_clean(at)
    assert any("from noise after 0 of 100" in c for c in captions(at))
    at.radio(key="rbm_chain_start").set_value("test digits")
    run_clean(at)
    assert any("from test digits after 0 of 100" in c for c in captions(at))
    assert at.get("download_button")


def test_filters_free_energy_likelihood_and_metrics(app_env):
    at = open_rbm("Filters")
    assert any("hidden units' weights" in c for c in captions(at))
    show_tab(at, "Free energy")
    assert len(at.get("plotly_chart")) == 1 and any(m.label == "AUROC digits vs non-digits" for m in at.metric)
    show_tab(at, "Likelihood")
    labels = {m.label: m.value for m in at.metric}
    assert "±" in labels["log Z (AIS estimate)"] and labels["test −log p(v), estimate"].endswith("nats")
    assert "pseudo-log-likelihood" in labels
    show_tab(at, "Metrics & downloads")
    assert at.table
    assert loss_axis_title(at) == "reconstruction error (mean squared, per pixel)"   # the curve the issue asks for


def test_the_features_comparison_runs_in_the_background(app_env):
    at = open_rbm("Features")
    assert any("Press the button" in i for i in texts(at.info))
    at.button(key="rbm_features_run").click()
    run_clean(at)
    snap = get_job(at.session_state["rbm_features_id"]).wait(timeout=600)
    assert snap.status == "finished", snap.message
    run_clean(at)
    labels = [m.label for m in at.metric]
    assert "scikit-learn BernoulliRBM" in labels and "raw pixels" in labels
