"""genlib.families.diffusion.analysis: reverse-process timelines, their GIFs, steps against quality and its cache.

Real tiny UNets (the family's declared tiny_config), the shipped digit classifier as the evaluator,
real threads; no mocks.
"""
from __future__ import annotations

import io
import json
import math
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from genlib import cli
from genlib.background import start_task
from genlib.checkpoints import save_folder
from genlib.comparison import folder_fingerprint
from genlib.families.diffusion.analysis import (STEPS_QUALITY_FILE, StepsQuality, load_steps_quality, reverse_timelines,
                                                save_steps_quality, steps_quality, timeline_gif)
from genlib.metrics import classifier_features, frechet_distance_from_features

pytestmark = pytest.mark.usefixtures("core_runs_dir")
SAMPLERS3 = ("ddpm", "ddim", "dpm-solver++")
STEPS = 4
CURVE = dict(steps_grid=(2, 4), num_samples=16, seed=0)


@pytest.fixture(scope="module")
def core_curve(core_diffusion, core_evaluator):
    """A real steps-quality result of the tiny unconditional model, and the progress it reported."""
    fractions = []
    result = steps_quality(core_diffusion, **CURVE, evaluator=core_evaluator,
                           report=lambda fraction, message: fractions.append(fraction))
    return result, fractions


@pytest.fixture
def core_folder(core_diffusion, tmp_path):
    meta = {"family": "diffusion", "model": core_diffusion.config.to_dict()}
    return save_folder(tmp_path / "tiny-diffusion", core_diffusion, meta)


# -- timelines ----------------------------------------------------------------------------------------------
def test_timelines_share_x_T_and_end_on_the_last_x0_prediction(core_diffusion):
    fractions = []
    timelines = reverse_timelines(core_diffusion, SAMPLERS3, 3, STEPS, seed=5,
                                  report=lambda fraction, message: fractions.append(fraction))
    assert list(timelines) == list(SAMPLERS3)
    for name, tl in timelines.items():
        assert tl.sampler == name and tl.seconds > 0
        assert tl.x_t.shape == tl.x0_pred.shape == (STEPS, 3, 1, 28, 28) and tl.final.shape == (3, 1, 28, 28)
        assert tl.x_t.dtype == tl.x0_pred.dtype == tl.final.dtype == np.float32
        assert 0 <= tl.x_t.min() and tl.x0_pred.max() <= 1
        assert len(tl.timesteps) == STEPS and tl.timesteps == sorted(tl.timesteps, reverse=True)
        assert np.array_equal(tl.x_t[0], timelines["ddim"].x_t[0]), name  # the same seed: the same x_T
    # DDIM's last step lands on its x0 prediction; the first prediction (from pure noise) is far from it
    ddim = timelines["ddim"]
    assert np.allclose(ddim.final, ddim.x0_pred[-1], atol=1e-6)
    assert not np.allclose(ddim.final, ddim.x0_pred[0], atol=1e-2)
    # the timeline's final samples are exactly what model.sample gives for that seed
    direct = core_diffusion.sample(3, generator=torch.Generator().manual_seed(5), sampler="ddpm", steps=STEPS)
    assert np.array_equal(timelines["ddpm"].final, direct.numpy())
    assert fractions == sorted(fractions) and len(fractions) == 3 * STEPS and fractions[-1] == 1.0
    other = reverse_timelines(core_diffusion, ["ddim"], 3, STEPS, seed=6)["ddim"]
    assert not np.array_equal(other.x_t[0], ddim.x_t[0])


def test_conditional_timelines_take_labels_guidance_and_eta(core_cdiffusion):
    labels = torch.tensor([1, 7])
    plain = reverse_timelines(core_cdiffusion, ["ddim"], 2, STEPS, 0, labels=labels, guidance_scale=1.0)["ddim"]
    guided = reverse_timelines(core_cdiffusion, ["ddim"], 2, STEPS, 0, labels=labels, guidance_scale=4.0)["ddim"]
    assert not np.array_equal(plain.final, guided.final)
    noisy = reverse_timelines(core_cdiffusion, ["ddim", "ddpm"], 2, STEPS, 0, labels=labels, eta=1.0)
    assert not np.array_equal(noisy["ddim"].final, reverse_timelines(
        core_cdiffusion, ["ddim"], 2, STEPS, 0, labels=labels)["ddim"].final)


def test_timeline_arguments_are_checked(core_diffusion, core_tiny_model):
    for kwargs, match in [(dict(samplers=["plms"]), "unknown sampler"), (dict(n=0), "n must be"),
                          (dict(n=65), "n must be"), (dict(steps=1000), "steps must be"),
                          (dict(samplers=[]), "at least one sampler")]:
        args = {"samplers": ["ddim"], "n": 2, "steps": STEPS, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=match):
            reverse_timelines(core_diffusion, **args)
    with pytest.raises(ValueError, match="guidance_scale"):
        reverse_timelines(core_diffusion, ["ddim"], 2, STEPS, 0, guidance_scale=3.0)
    with pytest.raises(ValueError, match="not a diffusion model"):
        reverse_timelines(core_tiny_model("vae"), ["ddim"], 2, STEPS, 0)


def test_timeline_gif_has_a_frame_per_step_then_the_final_held_longer(core_diffusion):
    tl = reverse_timelines(core_diffusion, ["ddpm"], 4, STEPS, seed=1)["ddpm"]
    gif = Image.open(io.BytesIO(timeline_gif(tl, nrow=2, scale=2, frame_ms=80)))
    assert gif.format == "GIF" and gif.n_frames == STEPS + 1 and gif.info["loop"] == 0
    grid = 2 * (2 * 28 + 3 * 2)                                   # 2 images + 3 pads of 2 px, scaled 2x
    assert gif.size == (grid, 2 * grid + 2 * 4)                    # x_t grid, 4 px band, x0 grid
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert durations[:-1] == [80] * STEPS and durations[-1] > 80
    gif.seek(gif.n_frames - 1)  # the last frame is the final samples: its top-left image is sample 0
    top_left = np.asarray(gif.convert("L"))[4:4 + 56:2, 4:4 + 56:2].astype(int)
    error = np.abs(top_left - np.round(tl.final[0, 0] * 255))
    assert error.max() <= 3 and error.mean() < 1  # GIF palettes round a few grey levels
    x_t_only = Image.open(io.BytesIO(timeline_gif(tl, scale=1, with_x0=False)))
    side = 2 * 28 + 3 * 2                                          # default nrow: ceil(sqrt(4)) = 2
    assert x_t_only.size == (side, side) and x_t_only.n_frames == STEPS + 1


# -- steps against quality ------------------------------------------------------------------------------------
def test_steps_quality_measures_every_sampler_at_every_step_count(core_curve, core_diffusion, core_evaluator):
    result, fractions = core_curve
    assert [(p.sampler, p.steps) for p in result.points] == [(s, k) for s in SAMPLERS3 for k in (2, 4)]
    assert all(math.isfinite(p.frechet_distance) and p.frechet_distance > 0 and p.seconds > 0 for p in result.points)
    assert (result.num_samples, result.seed, result.guidance_scale) == (16, 0, None)
    assert result.evaluator == core_evaluator.fingerprint
    # the same reference set and features as genlib.scoring: ddim at 4 steps, recomputed by hand
    images = core_diffusion.sample(16, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=4)
    expected = frechet_distance_from_features(core_evaluator.ref.train_features,
                                              classifier_features(core_evaluator.ref.classifier, images))
    assert next(p for p in result.points if (p.sampler, p.steps) == ("ddim", 4)).frechet_distance == \
        pytest.approx(expected, rel=1e-6)
    # one report per denoising step of every chunk, increasing evenly to 1
    assert len(fractions) == 3 * (2 + 4) + 1 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[0] == pytest.approx(16 / (3 * 6 * 16))
    assert StepsQuality.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_steps_quality_on_a_conditional_model_uses_its_default_guidance(core_cdiffusion, core_evaluator):
    result = steps_quality(core_cdiffusion, samplers=["ddim"], steps_grid=[3], num_samples=10, seed=1,
                           evaluator=core_evaluator)
    assert result.guidance_scale == 2.0 and len(result.points) == 1
    assert math.isfinite(result.points[0].frechet_distance)


def test_steps_quality_arguments_are_checked(core_diffusion, core_tiny_model, core_evaluator):
    with pytest.raises(ValueError, match="at least 10 samples"):
        steps_quality(core_diffusion, num_samples=5, evaluator=core_evaluator)
    with pytest.raises(ValueError, match="steps must be"):
        steps_quality(core_diffusion, steps_grid=(5, 1000), num_samples=10, evaluator=core_evaluator)
    with pytest.raises(ValueError, match="unknown sampler"):
        steps_quality(core_diffusion, samplers=["plms"], num_samples=10, evaluator=core_evaluator)
    with pytest.raises(ValueError, match="1x28x28"):
        steps_quality(core_tiny_model("diffusion", sample_size=16), num_samples=10, evaluator=core_evaluator)
    with pytest.raises(ValueError, match="not a diffusion model"):
        steps_quality(core_tiny_model("dcgan"), evaluator=core_evaluator)


def test_a_task_cancels_steps_quality_at_its_next_report(core_diffusion, core_evaluator):
    calls = []

    def curve(report, cancel):
        def counted(fraction, message):
            calls.append(fraction)
            if len(calls) == 3:
                cancel.set()  # as a click on Cancel would, from inside so the timing is exact
            report(fraction, message)

        return steps_quality(core_diffusion, **CURVE, report=counted, evaluator=core_evaluator)

    snap = start_task(f"curve-cancel-{id(calls)}-{threading.get_ident()}", curve).wait(120)
    assert snap.status == "cancelled" and snap.result is None and len(calls) == 3


# -- the cache --------------------------------------------------------------------------------------------------
def test_cache_round_trip_covers_subsets_and_misses_a_changed_checkpoint(core_curve, core_folder):
    result, _ = core_curve
    ask = dict(num_samples=16, seed=0, steps_grid=(2, 4), samplers=SAMPLERS3)
    assert load_steps_quality(core_folder, **ask) is None
    path = save_steps_quality(core_folder, result)
    assert not (core_folder / STEPS_QUALITY_FILE).exists() and path.is_file()
    assert load_steps_quality(core_folder, **ask) == result
    subset = load_steps_quality(core_folder, **{**ask, "steps_grid": (4,), "samplers": ("ddim",)})
    assert [(p.sampler, p.steps) for p in subset.points] == [("ddim", 4)]
    for other in (dict(steps_grid=(2, 8)), dict(samplers=("euler",)), dict(seed=1), dict(num_samples=17)):
        assert load_steps_quality(core_folder, **{**ask, **other}) is None, other
    # a retrained checkpoint under the same folder: another fingerprint, so the old curve is not used
    unet_config = core_folder / "unet" / "config.json"
    unet_config.write_text(unet_config.read_text() + "\n")
    assert load_steps_quality(core_folder, **ask) is None


def test_a_curve_stored_in_the_folder_is_found_and_does_not_change_its_fingerprint(core_curve, core_folder,
                                                                                   tmp_path, monkeypatch):
    result, _ = core_curve
    monkeypatch.setenv("GENLIB_SCORE_CACHE", str(tmp_path / "empty-cache"))
    before = folder_fingerprint(core_folder)
    save_steps_quality(core_folder, result, into_folder=True)
    assert folder_fingerprint(core_folder) == before  # Compare's cached scorecards stay valid
    stored = json.loads((core_folder / STEPS_QUALITY_FILE).read_text())
    assert stored["fingerprint"] == before and len(stored["points"]) == 6
    assert load_steps_quality(core_folder, num_samples=16, seed=0, steps_grid=(2,), samplers=("ddpm",)).points == \
        [p for p in result.points if (p.sampler, p.steps) == ("ddpm", 2)]
    assert not (tmp_path / "empty-cache").exists()  # found in the folder, not the cache


def test_cli_steps_quality_prints_a_table_caches_and_writes(core_folder, core_evaluator, capsys):
    argv = ["steps-quality", str(core_folder), "--num", "10", "--steps", "2", "3", "--samplers", "ddim", "euler"]
    assert cli.main(argv + ["--write"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert "10 samples, seed 0" in lines[0] and lines[1].split() == ["steps", "ddim", "euler"]
    assert [line.split()[0] for line in lines[2:]] == ["2", "3"] and "100%" in out.err
    written = StepsQuality.from_dict(json.loads((core_folder / STEPS_QUALITY_FILE).read_text()))
    assert [(p.sampler, p.steps) for p in written.points] == [("ddim", 2), ("ddim", 3), ("euler", 2), ("euler", 3)]
    assert cli.main(argv[:-1]) == 0  # ddim alone: already measured
    again = capsys.readouterr()
    assert "from the cache" in again.err and again.out.splitlines()[1].split() == ["steps", "ddim"]
    assert cli.main(["steps-quality", str(core_folder), "--steps", "1000"]) == 2
    assert "steps must be" in capsys.readouterr().err
