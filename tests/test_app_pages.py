"""AppTest of every page: the real app script, real checkpoints, real models, no mocks.

Checkpoints come from the ``app_checkpoints`` fixture (the shipped ones, or tiny stand-ins
trained on the spot before they exist); runs land in a temp folder (``app_env``).

AppTest quirk: because the pages live in ``pages/``, AppTest runs only the page script after the
first run of a session (it resets Streamlit's old "pages directory" mode before every run), so
the router's sidebar is checked on the first run and the seed is set through session state.
"""
from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import genlib
from genlib.background import get as get_job
from genlib.data import mnist
from genlib.images import to_grid, to_png

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 120  # seconds per script run: the first one imports torch and reads MNIST on a busy CPU


def run_clean(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str, state: dict | None = None, timeout: int = TIMEOUT) -> AppTest:
    """A page through the router, with ``state`` (e.g. the open tab: tabs are keyed and lazy) set first."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    run_clean(at)
    at.switch_page(page)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    return run_clean(at)


def open_ae_page(tab: str | None = None) -> AppTest:
    return open_page("pages/autoencoders.py", {"ae_tab": tab} if tab else None)


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["ae_tab"] = tab
    return run_clean(at)


def open_family_page(page: str, prefix: str, family: str, tab: str | None = None) -> AppTest:
    """A family page (its widgets keyed ``<prefix>_...``) on ``tab``, its chooser on the family's shipped
    checkpoint."""
    at = open_page(page, {f"{prefix}_tab": tab} if tab else None)
    path = str(shipped(family).path)
    if at.selectbox(key=f"{prefix}_model_choice").value != path:
        at.selectbox(key=f"{prefix}_model_choice").set_value(path)
        run_clean(at)
    return at


def show_family_tab(at: AppTest, prefix: str, tab: str) -> AppTest:
    """Open ``tab`` of a family page keyed ``<prefix>_...``; it must draw without an error."""
    at.session_state[f"{prefix}_tab"] = tab
    run_clean(at)
    assert not at.error, (tab, texts(at.error))
    return at


def captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def loss_axis_title(at: AppTest) -> str:
    """The left axis title of the Metrics tab's loss chart (the tab's only chart)."""
    charts = at.get("plotly_chart")
    assert len(charts) == 1, len(charts)
    return json.loads(charts[0].proto.spec)["layout"]["yaxis"]["title"]["text"]


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def shipped(family: str) -> genlib.CheckpointInfo:
    return next(i for i in genlib.list_checkpoints(family) if i.origin == "shipped")


def test_home_lists_shipped_checkpoints(app_env):
    at = run_clean(AppTest.from_file(APP, default_timeout=TIMEOUT))
    markdown = " ".join(texts(at.markdown))
    names = [i.name for i in genlib.list_checkpoints() if i.origin == "shipped"]
    assert names
    for name in names:
        assert f"**{name}**" in markdown
    assert "digit-classifier" in markdown  # the evaluator and its accuracy
    texts_shipped = [i for i in genlib.list_checkpoints() if i.origin == "shipped" and i.preview_text]
    assert len(at.get("image")) >= len(names) - len(texts_shipped)  # one preview per card: an image grid ...
    assert len(at.code) >= len(texts_shipped)                       # ... or a text model's first sample
    assert at.sidebar.number_input(key="global_seed").value == 0
    assert any("Device" in m for m in texts(at.sidebar.markdown))


def test_the_global_seed_drives_the_samples(app_env):
    at = open_ae_page()
    at.session_state["global_seed"] = 7  # the sidebar widget's key
    run_clean(at)
    assert any(c.startswith("64 samples from the prior · seed 7") for c in captions(at))
    assert any(c.endswith("the prior: a mixture of 20 full-covariance Gaussians, fitted to the training codes")
               for c in captions(at))  # the shipped VAE's fitted prior, named where its samples are shown
    seven = at.get("image")[0].value
    at.session_state["global_seed"] = 0
    run_clean(at)
    assert any(c.startswith("64 samples from the prior · seed 0") for c in captions(at))
    zero = at.get("image")[0].value
    assert zero != seven
    at.session_state["global_seed"] = 7
    run_clean(at)
    assert at.get("image")[0].value == seven  # same seed, same samples


def test_home_empty_state(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(tmp_path / "nothing-here"))
    at = run_clean(AppTest.from_file(APP, default_timeout=TIMEOUT))
    assert any("No shipped checkpoints" in i for i in texts(at.info))
    assert any("digit classifier" in w for w in texts(at.warning))


def test_autoencoders_page_shows_every_tab_for_the_default_vae(app_env):
    at = open_ae_page()
    vaes = [i for i in genlib.list_checkpoints("vae") if i.origin == "shipped"]
    best = min(vaes, key=lambda i: i.metrics.get("frechet_distance", float("inf")))
    assert at.selectbox(key="ae_model_choice").value == str(best.path)  # the best shipped VAE by default
    assert any(c.startswith("64 samples") for c in captions(at))
    assert at.download_button(key="ae_dl_samples")

    show_tab(at, "Reconstructions")
    assert {"input", "output"} <= set(captions(at))
    assert "noisy input" not in " ".join(captions(at))  # a VAE does not denoise

    show_tab(at, "Latent space")
    assert len(at.get("plotly_chart")) == 1

    show_tab(at, "Interpolation & traversal")
    assert len(at.get("image")) == 4  # two end digits, the interpolation strip, the traversal strip

    show_tab(at, "Anomalies")
    assert len(at.get("plotly_chart")) == 1
    auroc = float(at.metric[0].value)
    assert 0.0 <= auroc <= 1.0

    show_tab(at, "Metrics & downloads")
    assert at.table
    keys = {b.key for b in at.download_button}
    assert {"ae_dl_preview", "ae_dl_weights", "ae_dl_metrics", "ae_dl_config", "ae_dl_history"} <= keys


def test_a_broken_loss_log_is_named_and_the_rest_of_the_panel_still_works(app_env):
    import shutil

    run = app_env["runs"] / "broken-log"
    shutil.copytree(shipped("ae").path, run)
    genlib.checkpoints.history_file(run).unlink()
    rows = [{"step": step, "loss": 1.0 / step} for step in range(1, 500)]
    (run / "history.csv.gz").write_bytes(genlib.checkpoints.history_bytes(rows)[:40])   # a gzip file cut short
    at = open_ae_page()
    at.selectbox(key="ae_model_choice").set_value(str(run))
    show_tab(run_clean(at), "Metrics & downloads")
    assert any("The loss log cannot be shown" in w.value and "not a complete gzip file" in w.value
               for w in at.warning), [w.value for w in at.warning]
    keys = {b.key for b in at.download_button}
    assert {"ae_dl_weights", "ae_dl_metrics", "ae_dl_config"} <= keys and "ae_dl_history" not in keys


@pytest.mark.parametrize("family", ["ae", "dae", "cvae"])
def test_switching_models(app_env, family):
    info = shipped(family)
    model, _ = genlib.load_model(info.path)
    at = open_ae_page()
    at.selectbox(key="ae_model_choice").set_value(str(info.path))
    run_clean(at)
    expected = model.num_classes ** 2 if model.conditional else 64
    assert any(c.startswith(f"{expected} samples") for c in captions(at)), captions(at)
    if model.conditional:
        at.radio(key="ae_sample_mode").set_value("a single digit")
        run_clean(at)
        at.selectbox(key="ae_sample_digit").set_value(7)
        assert any(c.startswith("64 samples") for c in captions(run_clean(at)))

    show_tab(at, "Reconstructions")
    if model.has("denoise"):
        assert any(c.startswith("noisy input") for c in captions(at))
        at.slider(key="ae_rec_noise").set_value(0.8)
        assert any(c.startswith("noisy input (std 0.80)") for c in captions(run_clean(at)))
    else:
        assert not any(c.startswith("noisy input") for c in captions(at))

    show_tab(at, "Latent space")
    assert len(at.get("plotly_chart")) == 1
    if model.config.latent_dim == 2:
        assert any(c.startswith("decoded 15x15 grid") for c in captions(at))
    else:
        assert any("needs a 2-D latent space" in i for i in texts(at.info))

    show_tab(at, "Interpolation & traversal")
    assert len(at.get("image")) == 4

    at.switch_page("pages/home.py")
    run_clean(at)
    at.switch_page("pages/autoencoders.py")
    run_clean(at)
    assert at.selectbox(key="ae_model_choice").value == str(info.path)  # the choice survives a page visit


def test_a_2d_latent_shows_the_manifold_grid(app_env):
    flat = [i for i in genlib.list_checkpoints() if i.model_config.get("latent_dim") == 2]
    assert flat, "vae-2d-mnist (a 2-D latent) is shipped so this view works without training"
    at = open_ae_page()
    at.selectbox(key="ae_model_choice").set_value(str(flat[0].path))
    show_tab(at, "Latent space")
    assert any(c.startswith("decoded 15x15 grid") for c in captions(at))
    assert len(at.get("plotly_chart")) == 1


def test_offline_hub_id_and_bad_folder_show_errors(app_env, tmp_path):
    at = open_ae_page()
    at.text_input(key="ae_model_source").input("someone/some-model")
    run_clean(at)
    assert any("someone/some-model" in e and "Hugging Face" in e for e in texts(at.error)), texts(at.error)
    assert any(c.startswith("64 samples") for c in captions(at))  # the listed model is still shown

    not_a_checkpoint = tmp_path / "empty-folder"
    not_a_checkpoint.mkdir()
    at.text_input(key="ae_model_source").input(str(not_a_checkpoint))
    run_clean(at)
    assert any("not a genlib checkpoint" in e for e in texts(at.error)), texts(at.error)

    at.text_input(key="ae_model_source").input(str(shipped("dae").path))  # a folder by path works
    run_clean(at)
    assert not at.error
    assert "Denoising" in " ".join(texts(at.caption))


def test_uploads(app_env):
    at = open_ae_page("Reconstructions")
    at.file_uploader(key="ae_upload").upload("digit.png", b"definitely not an image", "image/png")
    run_clean(at)
    assert any("not a readable image" in e for e in texts(at.error)), texts(at.error)

    digit = to_png(to_grid(mnist().test_images[:1], nrow=1, pad=0))
    at.file_uploader(key="ae_upload").set_value(("digit.png", digit, "image/png"))
    run_clean(at)
    assert not at.error
    assert "your digit (28x28)" in captions(at)


def test_invalid_settings_end_in_an_error(app_env):
    at = AppTest.from_string(
        "from genlib.families.autoencoders import AEConfig\n"
        "from pages._widgets import make_config\n"
        "make_config(AEConfig, {'latent_dim': 1})\n",
        default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("latent_dim=1 is out of range" in e for e in texts(at.error))


def _set_tiny_training(at: AppTest, epochs: int) -> None:
    at.selectbox(key="ae_train_family").set_value("ae")
    run_clean(at)
    for key, value in {"ae_train_ae_width": 4, "ae_train_ae_hidden": 16, "ae_train_epochs": epochs,
                       "ae_train_batch_size": 500}.items():
        at.number_input(key=key).set_value(value)


def test_training_job_finishes_and_appears_in_the_chooser(app_env):
    at = open_ae_page("Train")
    _set_tiny_training(at, epochs=1)
    at.button(key="ae_start").click()
    run_clean(at)
    job = get_job(at.session_state["ae_job_id"])
    assert at.button(key="ae_start").disabled  # one job at a time per page
    at.switch_page("pages/home.py")
    run_clean(at)
    at.switch_page("pages/autoencoders.py")
    show_tab(at, "Train")
    assert at.progress and at.session_state["ae_job_id"] == job.id  # the job's panel comes back
    snap = job.wait(timeout=300)
    assert snap.status == "finished", snap.message
    assert snap.state.result_path.parent == app_env["runs"]

    run_clean(at)
    assert any(snap.state.result_path.name in s for s in texts(at.success))
    assert "step 8/8" in at.progress[0].proto.text  # 4,000 digits / 500 per batch
    assert any(c.startswith("samples at step 8") for c in captions(at))
    assert not at.button(key="ae_start").disabled

    at.button(key="ae_open_run").click()
    run_clean(at)
    assert at.selectbox(key="ae_model_choice").value == str(snap.state.result_path)


def test_training_job_can_be_cancelled(app_env):
    at = open_ae_page("Train")
    _set_tiny_training(at, epochs=200)
    at.button(key="ae_start").click()
    run_clean(at)
    job_id = at.session_state["ae_job_id"]
    at.button(key=f"ae_cancel_{job_id}").click()
    run_clean(at)
    snap = get_job(job_id).wait(timeout=120)
    assert snap.status == "cancelled", snap.message
    run_clean(at)
    assert any("cancelled" in w for w in texts(at.warning))


# -- Compare -----------------------------------------------------------------------------------------------
def scoring_in_background(at: AppTest) -> bool:
    return any("in the background" in bar.proto.text for bar in at.get("progress"))


def open_compare(models: list[str] | None = None, seed: int | None = None, wait: bool = True) -> AppTest:
    """The Compare page; with ``wait``, rerun (as its polling fragment does) until every row is scored."""
    state = {k: v for k, v in (("cmp_models", models), ("cmp_seed", seed)) if v is not None}
    at = open_page("pages/compare.py", state, timeout=300)
    deadline = time.time() + 600
    while wait and scoring_in_background(at) and time.time() < deadline:
        time.sleep(1)
        run_clean(at)
    return at


def scoreboard_rows(at: AppTest) -> dict[str, list[str]]:
    """The scoreboard table as the user reads it: row name -> its cells' texts (models, then references)."""
    body = next(h.proto.body for h in at.get("html") if "genlib-scoreboard" in h.proto.body)
    rows = re.findall(r"<tr class=\"\w+\">(.*?)</tr>", body)
    cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in rows]
    return {row[0]: row[2:] for row in cells}


def test_compare_page_scores_two_models_like_genlib_eval(app_env):
    from genlib.comparison import Evaluator, score_checkpoint
    from genlib.scoring import METRIC_BY_KEY

    models = [shipped("vae").name, shipped("cvae").name]
    first = open_compare(models, seed=3, wait=False)  # seed 3 ships no scorecard: scored in the background
    assert scoring_in_background(first) and not first.get("plotly_chart")
    assert any("scoring…" in m for m in texts(first.markdown))  # each model's slot says it is being scored
    at = open_compare(models, seed=3)
    assert not at.error, texts(at.error)
    rows = scoreboard_rows(at)
    assert list(rows)[-4:] == ["real test digits", "blurred digits (σ=1)", "noisy digits (σ=0.3)", "uniform noise"]
    assert sorted(list(rows)[:2]) == sorted(models)
    assert [c for c in captions(at) if " · " in c][:2] == [f"{m} · {f}" for m, f in zip(models, ("vae", "cvae"))]
    assert {"cmp_report", "cmp_csv"} <= {b.key for b in at.get("download_button")}
    # the page's numbers are the CLI's: score the same checkpoint afresh, outside the app's caches
    fresh = score_checkpoint(models[1], Evaluator.load(), seed=3, use_cache=False)
    columns = list(at.multiselect(key="cmp_columns").value)
    for key in ("frechet_distance", "kid", "precision", "recall", "class_accuracy"):
        shown = rows[models[1]][columns.index(key)]
        assert shown == METRIC_BY_KEY[key].format.format(fresh.metrics[key]), key
    assert rows[models[0]][columns.index("class_accuracy")] == "n/a"  # with its reason beside the table
    assert any("unconditional model" in m for m in texts(at.markdown))
    assert len(at.get("plotly_chart")) == 4
    at.session_state["cmp_nn_index"] = 42  # nearest training images of another sample
    run_clean(at)
    assert any(c.endswith("sample 42") for c in captions(at))


def test_compare_page_reports_a_bad_source_and_keeps_the_rest(app_env, tmp_path):
    (tmp_path / "junk").mkdir()
    at = open_compare([shipped("vae").name, str(tmp_path / "junk")])
    assert any("config.json is missing" in e for e in texts(at.error))
    assert list(scoreboard_rows(at))[0] == shipped("vae").name
    at = open_compare([])
    assert any("Choose at least one model" in i for i in texts(at.info))


def test_compare_page_opens_on_one_model_per_family_without_scoring(app_env):
    from genlib.comparison import default_selection

    at = open_compare(wait=False)
    assert not scoring_in_background(at) and not at.error
    chosen = default_selection(genlib.list_checkpoints())
    assert at.multiselect(key="cmp_models").value == chosen
    assert len(scoreboard_rows(at)) == len(chosen) + 4 and len(at.get("plotly_chart")) == 4


# -- GANs ----------------------------------------------------------------------------------------------------
def open_gan_page(tab: str | None = None) -> AppTest:
    return open_page("pages/gans.py", {"gan_tab": tab} if tab else None)


@pytest.mark.parametrize("family", ["mlp-gan", "dcgan", "cgan"])
def test_gan_page_tabs_for_each_shipped_gan(app_env, family):
    at = open_gan_page()
    at.selectbox(key="gan_model_choice").set_value(str(shipped(family).path))
    run_clean(at)
    caption = [c for c in captions(at) if "seed" in c][0]
    assert ("one row per digit" in caption) == (family == "cgan")
    at.number_input(key="gan_sampling_truncation").set_value(0.5)  # generated from the family's GANSampling
    run_clean(at)
    assert any("truncation 0.5" in c for c in captions(at))
    for tab in ("Interpolation", "Nearest training images", "Metrics & downloads"):
        at.session_state["gan_tab"] = tab
        run_clean(at)
        assert not at.error, (tab, texts(at.error))
    assert {"gan_dl_preview", "gan_dl_weights"} <= {b.key for b in at.get("download_button")}


def test_gan_training_job_shows_d_scores_snapshots_and_class_histogram(app_env):
    at = open_gan_page("Train")
    at.selectbox(key="gan_train_family").set_value("dcgan")
    run_clean(at)
    for key, value in {"gan_train_dcgan_g_width": 4, "gan_train_dcgan_d_width": 4, "gan_train_epochs": 1,
                       "gan_train_batch_size": 500, "gan_train_preview_every": 2}.items():
        at.number_input(key=key).set_value(value)
    at.button(key="gan_start").click()
    run_clean(at)
    snap = get_job(at.session_state["gan_job_id"]).wait(timeout=300)
    assert snap.status == "finished", snap.message
    assert {"d_real", "d_fake", "d_loss", "g_loss"} <= set(snap.state.history[-1])
    assert [s.step for s in snap.state.snapshots] == [1, 2, 4, 6, 8]
    run_clean(at)
    assert any(c == "fixed noise at step 8" for c in captions(at))
    at.toggle(key=f"gan_follow_{snap.id}").set_value(False)
    run_clean(at)
    at.select_slider(key=f"gan_scrub_{snap.id}_5").set_value(2)
    run_clean(at)
    assert any(c == "fixed noise at step 2" for c in captions(at))  # scrubbed back in time
    assert len(at.get("plotly_chart")) >= 2  # curves + the snapshot's class histogram


def test_gan_toy_steps_runs_and_pauses(app_env):
    from genlib.background import get as get_toy_session

    at = open_gan_page("2-D toy")
    at.selectbox(key="gan_toy_distribution").set_value("gaussian")
    run_clean(at)
    at.button(key="gan_toy_step_d").click()
    run_clean(at)
    session = get_toy_session(at.session_state["gan_toy_id"])
    assert session.status == "paused" and session.model.steps == 0  # a D step alone completes no step
    at.button(key="gan_toy_step_g").click()
    run_clean(at)
    assert session.model.steps == 1 and at.get("plotly_chart")
    at.button(key="gan_toy_run").click()  # same settings: resumes the same session
    run_clean(at)
    assert at.session_state["gan_toy_id"] == session.id and session.status == "running"
    deadline = time.time() + 60
    while session.model.steps < 50 and time.time() < deadline:
        time.sleep(0.2)
    at.button(key="gan_toy_pause").click()
    run_clean(at)
    assert session.status == "paused" and session.model.steps >= 50
    at.number_input(key="gan_toy_d_lr").set_value(0.0001)  # new settings: Run starts a fresh session
    run_clean(at)
    at.button(key="gan_toy_run").click()
    run_clean(at)
    assert at.session_state["gan_toy_id"] != session.id and session.status == "cancelled"
    get_toy_session(at.session_state["gan_toy_id"]).cancel()
