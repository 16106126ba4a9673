"""AppTest of the Restore page through the router: real photos, real classical methods run in the
background (genlib.background), no mocks.

Denoising adds Gaussian noise to a bundled photo and scores three methods against the clean one;
blind mode estimates the noise level and has no reference; super-resolution shrinks the photo so
it is its own reference; the Train tab shows the shared train panel; uploads (a file that is not
an image, then a real PNG) go through AppTest's file_uploader. The slider's drag and the PNG
download's bytes are checked in a real browser (test_e2e_restore.py).
"""
from __future__ import annotations

import re

from test_app_pages import open_page, run_clean, texts

from genlib import background
from genlib.data import bundled_photo, photo_png

PHOTO = "chelsea"   # 451x300 colour, held out: the smallest bundled colour photo, so the methods are quick
METHODS = ["wavelet", "tv", "nl-means"]
TASK_TIMEOUT = 300  # seconds per method on a busy 2-core machine (each takes a few seconds alone)


def open_restore(state: dict | None = None):
    at = open_page("pages/restore.py", state, timeout=300)
    at.selectbox(key="rst_photo").set_value(PHOTO)
    return run_clean(at)


def press(at, kind: str):
    """Press Restore/Upscale, wait for every background method of the session, and draw the results."""
    at.button(key=f"rst_go_{kind}").click()
    run_clean(at)
    tasks = at.session_state["rst_tasks"]
    assert tasks
    for task_id in tasks.values():
        snap = background.get(task_id).wait(timeout=TASK_TIMEOUT)
        assert snap.status == "finished", snap.message
    return run_clean(at)


def keys(elements) -> set[str]:
    return {e.key for e in elements}


def images(at) -> list:
    return list(at.get("image"))


def image_captions(at) -> list[str]:
    """The zoom panels' captions, sorted (four columns: the tree lists them column by column)."""
    return sorted(c for image in images(at) for c in image.captions)


def slider_html(at) -> str:
    frames = at.get("iframe")
    assert len(frames) == 1
    return frames[0].proto.srcdoc


def test_the_page_opens_on_a_bundled_photo(app_env):
    at = open_restore()
    assert not at.error, texts(at.error)
    assert "Restore photos" in texts(at.title)
    assert at.radio(key="rst_source").value == "A bundled photo"
    assert at.selectbox(key="rst_photo").value == PHOTO
    assert at.radio(key="rst_mode").value.startswith("Add noise")
    assert at.selectbox(key="rst_noise_kind").value == "gaussian"
    assert any("Press **Restore**" in i for i in texts(at.info))
    assert "rst_go_denoise" in keys(at.button)
    assert not at.dataframe and not at.get("iframe")  # nothing runs until Restore is pressed


def test_denoise_three_methods_beat_the_noisy_photo(app_env):
    at = open_restore()
    at.multiselect(key="rst_methods").set_value(METHODS)
    run_clean(at)
    at = press(at, "denoise")
    assert not at.error, texts(at.error)

    # the tasks are keyed "<kind>:<digest>:<sigma>:<method>", σ the true one on the 0-1 scale
    tasks = at.session_state["rst_tasks"]
    assert sorted(k.rsplit(":", 1)[1] for k in tasks) == sorted(METHODS)
    assert all(k.startswith("denoise:") and k.split(":")[2] == str(25 / 255) for k in tasks)
    assert "rst_go_denoise" not in keys(at.button)  # everything chosen is done: nothing left to run

    table = at.dataframe[0].value
    assert sorted(table["method"]) == sorted(METHODS)
    assert list(table["PSNR (dB)"]) == sorted(table["PSNR (dB)"], reverse=True)  # best first
    noisy = next(c for c in texts(at.caption) if c.startswith("The noisy photo itself:"))
    noisy_psnr = float(re.match(r"The noisy photo itself: ([\d.]+) dB", noisy).group(1))
    assert 15 < noisy_psnr < 25  # σ = 25 on the 0-255 scale
    assert (table["PSNR (dB)"] > noisy_psnr + 3).all(), (noisy_psnr, table)
    assert ((table["SSIM"] > 0) & (table["SSIM"] <= 1)).all()
    assert (table["seconds"] >= 0).all()
    assert len(at.get("plotly_chart")) == 1

    # downloads: the metrics CSV and one PNG per method, best first
    downloads = {b.key: b for b in at.get("download_button")}
    assert set(downloads) == {"rst_csv_denoise", *(f"rst_dl_denoise_{i}" for i in range(3))}
    assert downloads["rst_csv_denoise"].proto.url.endswith(".csv")
    assert [downloads[f"rst_dl_denoise_{i}"].proto.label for i in range(3)] == [f"{m} (PNG)" for m in table["method"]]

    # the before/after slider: the noisy photo against the best method once every result is in, then another
    pick = at.selectbox(key="rst_pick_denoise_3")
    assert pick.options == list(table["method"]) and pick.value == table["method"].iloc[0]
    first = slider_html(at)
    assert 'type="range"' in first and first.count("data:image/png;base64,") == 2
    at.selectbox(key="rst_pick_denoise_3").set_value(next(m for m in table["method"] if m != pick.value))
    run_clean(at)
    assert slider_html(at) != first

    # the synchronised zoom: noisy, clean, then every method; a smaller window elsewhere changes them all
    assert image_captions(at) == sorted(["noisy", "clean reference", *table["method"]])
    before = [i.value for i in images(at)]
    at.select_slider(key="rst_zs_denoise").set_value(32)
    at.slider(key="rst_zx_denoise").set_value(10)
    run_clean(at)
    after = [i.value for i in images(at)]
    assert len(after) == 5 and all(a != b for a, b in zip(before, after))

    # the difference map: one more zoomed row, one per method
    at.toggle(key="rst_diff_denoise").set_value(True)
    run_clean(at)
    assert image_captions(at) == sorted(["noisy", "clean reference", *table["method"], *table["method"]])
    at.toggle(key="rst_diff_denoise").set_value(False)
    run_clean(at)
    assert len(images(at)) == 5
    assert not at.error


def test_blind_mode_estimates_sigma_and_has_no_reference(app_env):
    at = open_restore()
    label = "Estimated noise σ (0-255)"
    assert at.metric[0].label == label
    assert 20 < float(at.metric[0].value) < 30  # of the photo with σ = 25 added

    at.radio(key="rst_mode").set_value("It is already noisy (blind)")
    run_clean(at)
    assert "rst_noise_kind" not in keys(at.selectbox)
    assert at.metric[0].label == label
    assert 0 <= float(at.metric[0].value) < 10  # the clean photo itself

    at.multiselect(key="rst_methods").set_value(["wavelet"])
    run_clean(at)
    at = press(at, "denoise")
    assert not at.error, texts(at.error)
    assert [k.split(":")[2] for k in at.session_state["rst_tasks"]] == ["None"]  # σ left to the method
    table = at.dataframe[0].value
    assert list(table["method"]) == ["wavelet"] and "PSNR (dB)" not in table.columns
    assert not at.get("plotly_chart") and not any("photo itself" in c for c in texts(at.caption))
    assert image_captions(at) == ["noisy", "wavelet"]  # no clean reference to show
    at.toggle(key="rst_diff_denoise").set_value(True)  # what the method removed
    run_clean(at)
    assert image_captions(at) == ["noisy", "wavelet", "wavelet"]  # sorted
    assert {"rst_csv_denoise", "rst_dl_denoise_0"} == keys(at.get("download_button"))


def test_super_resolution_x2_with_bicubic_and_lanczos(app_env):
    at = open_restore({"rst_tab": "Super-resolution"})
    assert at.radio(key="rst_scale").value == 2
    assert at.toggle(key="rst_measure").value
    h, w = bundled_photo(PHOTO).shape[:2]
    assert any(c.startswith(f"Input {w // 2}x{h // 2} → output {w // 2 * 2}x{h // 2 * 2}") for c in texts(at.caption))
    at.multiselect(key="rst_sr_methods_2").set_value(["bicubic", "lanczos"])
    run_clean(at)
    at = press(at, "upscale")
    assert not at.error, texts(at.error)
    table = at.dataframe[0].value
    assert sorted(table["method"]) == ["bicubic", "lanczos"]
    assert (table["PSNR (dB)"] > 20).all() and ((table["SSIM"] > 0) & (table["SSIM"] <= 1)).all()
    assert not any("photo itself" in c for c in texts(at.caption))  # that line is for denoising
    assert len(at.get("plotly_chart")) == 1
    assert image_captions(at) == sorted(["low-resolution", "clean reference", *table["method"]])
    assert keys(at.get("download_button")) == {"rst_csv_upscale", "rst_dl_upscale_0", "rst_dl_upscale_1"}
    assert len(at.get("iframe")) == 1  # the slider, over the low-resolution photo enlarged


def test_the_train_tab_renders_the_train_panel(app_env):
    at = open_restore({"rst_tab": "Train"})
    assert not at.error, texts(at.error)
    family = at.selectbox(key="rst_train_family")
    assert {"dncnn", "espcn"} <= {o.split(" · ")[0] for o in family.options}  # "name · description"
    assert at.number_input(key="rst_train_epochs").value == 5  # the page's own defaults
    assert at.number_input(key="rst_train_max_steps").value == 300
    assert "rst_start" in keys(at.button) and not at.button(key="rst_start").disabled
    assert any("Start a run to watch it here" in i for i in texts(at.info))
    assert any("48x48 crops" in c for c in texts(at.caption))


def test_a_bad_upload_is_refused_in_words_and_a_good_one_is_used(app_env):
    at = open_restore()
    at.radio(key="rst_source").set_value("Upload your own")
    run_clean(at)
    assert any(i.startswith("Upload a photo") for i in texts(at.info))
    assert any("Choose or upload a photo above" in i for i in texts(at.info))

    at.file_uploader(key="rst_upload").upload("holiday.png", b"definitely not an image", "image/png")
    run_clean(at)  # no exception
    assert any(e.startswith("That file cannot be used: this file is not a readable image") for e in texts(at.error)), \
        texts(at.error)
    assert any("Choose or upload a photo above" in i for i in texts(at.info))
    assert "rst_methods" not in keys(at.multiselect)

    photo = bundled_photo(PHOTO)
    at.file_uploader(key="rst_upload").upload("holiday.png", photo_png(photo), "image/png")
    run_clean(at)
    assert not at.error, texts(at.error)
    h, w = photo.shape[:2]
    assert f"{w}x{h}, colour" in texts(at.caption)
    assert "rst_methods" in keys(at.multiselect) and "rst_go_denoise" in keys(at.button)


def test_a_test_digit_brings_in_the_labs_own_digit_models(app_env):
    # sigma 75: the denoising AE was trained at heavy noise (std 0.5) and only helps there
    at = open_page("pages/restore.py", {"rst_source": "A test digit (28x28)", "rst_level_gaussian": 75.0}, timeout=300)
    methods = at.multiselect(key="rst_methods_digit")
    assert {"dae-mnist", "diffusion-mnist"} <= set(methods.options)
    assert set(methods.value) == {"nl-means", "dae-mnist", "diffusion-mnist"}
    at = press(at, "denoise")
    table = at.dataframe[0].value
    assert set(table["method"]) == {"nl-means", "dae-mnist", "diffusion-mnist"}
    noisy = float(re.search(r"itself: ([\d.]+) dB", " ".join(texts(at.caption))).group(1))
    assert (table["PSNR (dB)"] > noisy).all(), table
