"""Stored scorecards (cache, and shipped beside a checkpoint), background scoring, the default
selection, and the charts' axes. Real models, real folders, the shipped evaluator."""
from __future__ import annotations

import json
import math

import pytest
import torch

import genlib
from genlib import comparison
from genlib.checkpoints import save_folder, shipped_dir
from genlib.comparison import (REFERENCES_FILE, SCORECARD_FILE, Evaluator, ScoringFailure, cached_references,
                               cached_scorecard, default_selection, score_checkpoint, scored_families, scorecard_key,
                               start_scoring, write_checkpoint_scorecard)
from genlib.report import class_histograms, quality_vs_parameters, quality_vs_time
from genlib.scoring import metric_title

QUALITY = ("frechet_distance", "kid", "precision", "recall", "class_entropy_bits", "nn_train_distance",
           "bits_per_dim", "binarized_nats", "test_recon_mse", "class_accuracy")


@pytest.fixture
def tiny_vae(core_tiny_model, tmp_path):
    model = core_tiny_model("vae")
    return model, save_folder(tmp_path / "tiny-vae", model, {"family": "vae", "model": model.config.to_dict()})


def forget_memory() -> None:
    comparison._MEMORY.clear()  # as after a server restart


def test_a_scorecard_written_beside_the_checkpoint_is_found_without_scoring(tiny_vae, core_evaluator, tmp_path,
                                                                            monkeypatch):
    model, folder = tiny_vae
    card = score_checkpoint(folder, core_evaluator, num_samples=50, seed=2)
    write_checkpoint_scorecard(folder, card, core_evaluator, num_samples=50, seed=2)
    assert (folder / f"{SCORECARD_FILE}.json").exists() and (folder / f"{SCORECARD_FILE}.npz").exists()
    monkeypatch.setenv("GENLIB_SCORE_CACHE", str(tmp_path / "empty-cache"))  # a fresh clone: no cache at all
    forget_memory()
    monkeypatch.setattr(comparison, "score_model", lambda *a, **k: pytest.fail("scored instead of read"))
    found = cached_scorecard(folder, core_evaluator, num_samples=50, seed=2)
    assert found is not None and found.metrics == card.metrics and (found.grid == card.grid).all()
    again = score_checkpoint(folder, core_evaluator, num_samples=50, seed=2)  # eval reads the same card
    assert again.metrics == card.metrics
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())
    # another request, or other weights, is not answered by the stored card
    assert cached_scorecard(folder, core_evaluator, num_samples=50, seed=3) is None
    assert cached_scorecard(folder, core_evaluator, num_samples=60, seed=2) is None
    stale = {name: (folder / name).read_bytes() for name in (f"{SCORECARD_FILE}.json", f"{SCORECARD_FILE}.npz")}
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    save_folder(folder, model, {"family": "vae", "model": model.config.to_dict()}, stale)  # new weights, old card
    assert cached_scorecard(folder, core_evaluator, num_samples=50, seed=2) is None


def test_writing_a_scorecard_does_not_change_the_checkpoints_identity(tiny_vae, core_evaluator):
    _, folder = tiny_vae
    before = scorecard_key(folder, core_evaluator, 50, 0)
    card = score_checkpoint(folder, core_evaluator, num_samples=50, seed=0)
    write_checkpoint_scorecard(folder, card, core_evaluator, num_samples=50, seed=0)
    (folder / "metrics.json").write_text("{}")
    assert scorecard_key(folder, core_evaluator, 50, 0) == before


def test_a_corrupt_or_foreign_scorecard_file_is_ignored(tiny_vae, core_evaluator, tmp_path, monkeypatch):
    _, folder = tiny_vae
    monkeypatch.setenv("GENLIB_SCORE_CACHE", str(tmp_path / "cache"))
    (folder / f"{SCORECARD_FILE}.json").write_text("not json")
    (folder / f"{SCORECARD_FILE}.npz").write_bytes(b"\x80\x04pickle")
    forget_memory()
    assert cached_scorecard(folder, core_evaluator, num_samples=40, seed=0) is None
    card = score_checkpoint(folder, core_evaluator, num_samples=40, seed=0)  # scored instead
    assert math.isfinite(card.metrics["frechet_distance"])


def test_the_evaluator_loads_without_computing_features():
    evaluator = Evaluator.load()
    assert evaluator._ref is None and len(evaluator.fingerprint) == 64
    assert cached_references(evaluator, seed=0) is not None  # shipped beside it
    assert evaluator._ref is None


def test_every_shipped_checkpoint_carries_its_scorecard_and_it_matches_metrics_json():
    evaluator = Evaluator.load()
    infos = [i for i in genlib.list_checkpoints() if i.origin == "shipped" and i.family in scored_families()]
    assert len(infos) >= 10
    for info in infos:
        key = scorecard_key(info.path, evaluator)
        stored = json.loads((info.path / f"{SCORECARD_FILE}.json").read_text())
        assert stored["key"] == key, f"{info.name}: its scorecard was scored under another key; rerun eval --write"
        card = cached_scorecard(info.path, evaluator)
        assert card is not None and card.grid is not None and card.closest_images is not None
        for metric, value in card.metrics.items():
            assert info.metrics[metric] == value, (info.name, metric)  # the very same numbers as Home shows
    refs = json.loads((shipped_dir() / "digit-classifier" / f"{REFERENCES_FILE}.json").read_text())
    assert [c["name"] for c in refs["cards"]] == ["real test digits", "blurred digits (σ=1)",
                                                  "noisy digits (σ=0.3)", "uniform noise"]


@pytest.mark.parametrize("name", ["vae-mnist", "dcgan-mnist"])
def test_a_shipped_scorecard_is_what_the_scoring_code_computes_today(name, core_evaluator):
    stored = cached_scorecard(name, core_evaluator)
    fresh = score_checkpoint(name, core_evaluator, use_cache=False)
    for metric in QUALITY:
        if metric in fresh.metrics:
            assert stored.metrics[metric] == pytest.approx(fresh.metrics[metric], rel=1e-4, abs=1e-6), metric
    assert (stored.grid == fresh.grid).mean() > 0.999 and stored.class_counts == fresh.class_counts


def test_the_default_selection_is_one_unconditional_model_per_family_group():
    infos = genlib.list_checkpoints()
    chosen = default_selection(infos)
    by_name = {i.name: i for i in infos}
    registered = genlib.all_families()
    groups = [registered[by_name[n].family].group for n in chosen]
    assert sorted(groups) == sorted({registered[i.family].group for i in infos
                                     if i.origin == "shipped" and i.family in scored_families()})
    for name in chosen:
        info = by_name[name]
        rivals = [i for i in infos if i.origin == "shipped" and not registered[i.family].conditional
                  and registered[i.family].group == registered[info.family].group]
        assert not registered[info.family].conditional
        assert info.metrics["frechet_distance"] == min(i.metrics["frechet_distance"] for i in rivals)


def test_background_scoring_returns_the_card_or_a_reason(tiny_vae, core_evaluator, tmp_path):
    _, folder = tiny_vae
    task = start_scoring(folder, core_evaluator, num_samples=40, seed=7)
    assert start_scoring(folder, core_evaluator, num_samples=40, seed=7) is task  # shared, not scored twice
    snap = task.wait(timeout=120)
    assert snap.status == "finished" and snap.result.metrics["num_samples"] == 40
    assert cached_scorecard(folder, core_evaluator, num_samples=40, seed=7) is not None
    (tmp_path / "junk").mkdir()
    bad = start_scoring(tmp_path / "junk", core_evaluator, num_samples=40).wait(timeout=60)
    assert isinstance(bad.result, ScoringFailure) and "config.json is missing" in bad.result.message


def test_background_scoring_can_be_cancelled(tiny_vae, core_evaluator):
    _, folder = tiny_vae
    task = start_scoring(folder, core_evaluator, num_samples=2000, seed=11)
    task.cancel()
    assert task.wait(timeout=120).status == "cancelled"
    assert cached_scorecard(folder, core_evaluator, num_samples=2000, seed=11) is None


def _comparison_of_shipped():
    evaluator = Evaluator.load()
    cards = [cached_scorecard(i.path, evaluator) for i in genlib.list_checkpoints()
             if i.origin == "shipped" and i.family in scored_families()]
    return comparison.Comparison(0, cards, cached_references(evaluator, 0))


@pytest.mark.parametrize("make, key", [(quality_vs_time, "sample_ms_per_image"),
                                       (quality_vs_parameters, "num_parameters")])
def test_the_scatter_axes_fit_the_models_and_name_the_references_off_the_scale(make, key):
    result = _comparison_of_shipped()
    fig = make(result)
    fds = [c.metrics["frechet_distance"] for c in result.models]
    xs = [c.metrics[key] for c in result.models]
    y_range, x_range = fig.layout.yaxis.range, fig.layout.xaxis.range
    assert y_range[0] < math.log10(min(fds)) and math.log10(max(fds)) < y_range[1] < math.log10(max(fds)) + 0.5
    assert x_range[0] < math.log10(min(xs)) and math.log10(max(xs)) < x_range[1] < math.log10(max(xs)) + 1
    assert "↓" in fig.layout.yaxis.title.text and "↓" in fig.layout.xaxis.title.text
    lines = {t.text[1] for t in fig.data if t.mode == "lines+text"}
    assert "blurred digits (σ=1)" in lines  # FD 645: inside the models' range
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "uniform noise" in notes and "off the scale" in notes and "uniform noise" not in lines


def test_class_histograms_are_small_multiples_one_panel_per_model():
    result = _comparison_of_shipped()
    fig = class_histograms(result)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == len(result.models) and len({t.xaxis for t in bars}) == len(result.models)
    assert {a.text for a in fig.layout.annotations} >= {c.name for c in result.models}
    assert "10%" in fig.layout.title.text


def test_metric_titles_carry_units_and_direction():
    assert metric_title("frechet_distance") == "Fréchet distance ↓"
    assert metric_title("precision") == "precision ↑"
    assert metric_title("bits_per_dim", "bound") == "bits/dim (8-bit) ↓ (upper bound)"
    assert metric_title("binarized_nats", "estimate") == "NLL binarized (nats) ↓ (estimate)"
    assert metric_title("train_seconds") == "training time (s)"
    assert "_" not in metric_title("some_new_key")


def test_the_scoreboard_table_says_n_a_with_the_reason_and_sorts_best_first():
    import re

    from genlib.report import na_reasons, scoreboard_html

    result = _comparison_of_shipped()
    table = scoreboard_html(result, ["frechet_distance", "class_accuracy"], "frechet_distance",
                            pending={"my-run": "scoring… 40%"})
    names = re.findall(r'<tr class="model"><td class="name">(.*?)</td>', table)
    by_fd = sorted(result.models, key=lambda c: c.metrics["frechet_distance"])
    assert names == [c.name for c in by_fd]  # best first
    assert "None" not in table and 'title="unconditional model: no class is asked for">n/a<' in table
    assert f'<td class="best">{by_fd[0].metrics["frechet_distance"]:.1f}</td>' in table
    assert "scoring… 40%" in table and table.index("my-run") < table.index("real test digits")
    assert "Fréchet distance ↓" in table and "class accuracy ↑" in table
    by_accuracy = scoreboard_html(result, ["class_accuracy"], "class_accuracy")
    first = re.search(r'<tr class="model"><td class="name">(.*?)</td>', by_accuracy).group(1)
    assert first == max((c for c in result.models if "class_accuracy" in c.metrics),
                        key=lambda c: c.metrics["class_accuracy"]).name  # higher is better: largest first
    reasons = na_reasons(result, ["class_accuracy"])
    assert any("unconditional" in why for why in reasons) and all(names for names in reasons.values())
