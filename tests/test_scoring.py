"""genlib.scoring, genlib.comparison and genlib.report: scorecards, their cache, and the report files."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from genlib.checkpoints import save_folder
from genlib.comparison import compare, score_cache_dir, score_checkpoint
from genlib.config import setting
from genlib.model import GenerativeModel, ModelConfig
from genlib.report import FIGURES, report_files, report_zip, scoreboard_frame
from genlib.scoring import METRICS, flops_per_sample, reference_scorecards, score_model


@dataclass(frozen=True)
class LinearConfig(ModelConfig):
    noise_dim: int = setting(8, "noise size", min=1, max=64)


class LinearSampler(GenerativeModel):
    """sample = sigmoid(W z + b): exactly 2 * noise_dim * 784 FLOPs per image (one matmul)."""

    Config = LinearConfig
    family = "linear-test"

    def __init__(self, config: LinearConfig):
        super().__init__(config)
        self.net = nn.Linear(config.noise_dim, 28 * 28)

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, callback=None):
        z = torch.randn((n, self.config.noise_dim), generator=generator)
        return torch.sigmoid(self.net(z)).view(n, 1, 28, 28)


def test_flops_per_sample_counts_the_matmul():
    model = LinearSampler(LinearConfig(noise_dim=8))
    assert flops_per_sample(model) == 2 * 8 * 784


def test_score_model_has_every_metric_or_a_reason(core_tiny_model, core_evaluator):
    for family in ("vae", "cvae", "ae"):
        model = core_tiny_model(family)
        steps = []
        card = score_model(model, family, core_evaluator.ref, num_samples=100, seed=3,
                           progress=lambda f, m: steps.append(f))
        for spec in METRICS:
            assert (spec.key in card.metrics) != (spec.key in card.missing), (family, spec.key)
        assert steps[-1] == 1.0 and steps == sorted(steps)
        assert card.grid.shape == (100, 28, 28) and sum(card.class_counts) == 100
        assert len(card.closest) == 8 and card.closest_images.shape == (8, 28, 28)
        assert card.metrics["num_parameters"] == model.num_parameters() and card.metrics["flops_per_sample"] > 0
    assert "class_accuracy" in card.missing and "bits_per_dim" in card.missing  # the plain AE
    assert "binarized_nats" in card.missing
    json.dumps(card.summary())


def test_score_model_is_reproducible_from_the_seed(core_tiny_model, core_evaluator):
    model = core_tiny_model("vae")
    a = score_model(model, "a", core_evaluator.ref, num_samples=50, seed=1)
    b = score_model(model, "b", core_evaluator.ref, num_samples=50, seed=1)
    c = score_model(model, "c", core_evaluator.ref, num_samples=50, seed=2)
    assert a.metrics["frechet_distance"] == b.metrics["frechet_distance"] != c.metrics["frechet_distance"]
    assert (a.grid == b.grid).all()


def test_conditional_grid_has_one_row_per_class(core_tiny_model, core_evaluator):
    card = score_model(core_tiny_model("cvae"), "c", core_evaluator.ref, num_samples=200, seed=0)
    assert card.grid_nrow == 10 and card.grid.shape[0] == 100  # 10 classes x 10 samples


def test_reference_rows_order_the_scale(core_evaluator):
    cards = {c.name: c for c in reference_scorecards(core_evaluator.ref)}
    fd = {name: c.metrics["frechet_distance"] for name, c in cards.items()}
    assert fd["real test digits"] < fd["blurred digits (σ=1)"] < fd["uniform noise"]
    assert fd["real test digits"] < fd["noisy digits (σ=0.3)"] < fd["uniform noise"]
    real = cards["real test digits"].metrics
    assert real["precision"] > 0.8 and real["recall"] > 0.8 and real["class_entropy_bits"] > 3.3
    assert cards["uniform noise"].metrics["recall"] < 0.01
    assert "num_parameters" in cards["uniform noise"].missing


def test_score_checkpoint_caches_by_content(core_tiny_model, core_evaluator, tmp_path):
    model = core_tiny_model("vae")
    folder = save_folder(tmp_path / "m", model, {"family": "vae", "model": model.config.to_dict()})
    first = score_checkpoint(folder, core_evaluator, num_samples=60, seed=0)
    files = sorted(p.name for p in score_cache_dir().iterdir())
    assert any(f.endswith(".json") for f in files) and any(f.endswith(".npz") for f in files)
    again = score_checkpoint(folder, core_evaluator, num_samples=60, seed=0)
    fresh = score_checkpoint(folder, core_evaluator, num_samples=60, seed=0, use_cache=False)
    assert again.metrics == first.metrics and fresh.metrics["frechet_distance"] == first.metrics["frechet_distance"]
    with torch.no_grad():  # new weights under the same name: scored again
        for param in model.parameters():
            param.add_(0.05)
    save_folder(folder, model, {"family": "vae", "model": model.config.to_dict()})
    changed = score_checkpoint(folder, core_evaluator, num_samples=60, seed=0)
    assert changed.metrics["frechet_distance"] != first.metrics["frechet_distance"]


def test_a_corrupt_cache_entry_is_recomputed(core_tiny_model, core_evaluator, tmp_path):
    model = core_tiny_model("ae")
    folder = save_folder(tmp_path / "ae", model, {"family": "ae", "model": model.config.to_dict()})
    first = score_checkpoint(folder, core_evaluator, num_samples=40, seed=5)
    for path in score_cache_dir().glob("*.npz"):
        path.write_bytes(b"not a zip")
    from genlib import comparison

    comparison._MEMORY.clear()  # as after a server restart
    again = score_checkpoint(folder, core_evaluator, num_samples=40, seed=5)
    assert again.metrics["frechet_distance"] == first.metrics["frechet_distance"] and again.grid is not None


def test_compare_reports_bad_sources_and_writes_a_report(core_tiny_model, core_evaluator, tmp_path):
    folders = []
    for family in ("vae", "cvae"):
        model = core_tiny_model(family)
        folders.append(str(save_folder(tmp_path / family, model, {"family": family, "model": model.config.to_dict()})))
    result = compare(folders + [str(tmp_path / "missing")], seed=4, num_samples=50, evaluator=core_evaluator)
    assert [c.name for c in result.models] == ["vae", "cvae"] and list(result.errors) == [str(tmp_path / "missing")]
    frame = scoreboard_frame(result)
    assert len(frame) == 2 + 4 and frame["frechet_distance"].notna().all()
    assert frame.loc[frame.model == "vae", "class_accuracy"].isna().all()  # n/a, with the reason beside it
    assert "unconditional" in frame.loc[frame.model == "vae", "n/a because"].item()
    files = report_files(result)
    assert {"scoreboard.csv", "scoreboard.json", "report.html", "grids/vae.png", "grids/cvae.png"} <= set(files)
    png = Image.open(io.BytesIO(files["grids/cvae.png"]))
    assert png.text["seed"] == "4" and png.text["model"] == "cvae"
    payload = json.loads(files["scoreboard.json"])
    assert payload["seed"] == 4 and payload["models"][0]["missing"]["class_accuracy"]
    html = files["report.html"].decode()
    assert html.count("<figure><img") == 6 and "plotly" in html.lower()
    names = zipfile.ZipFile(io.BytesIO(report_zip(result))).namelist()
    assert "genlib-report/report.html" in names
    for make in FIGURES:
        assert make(result).data, make.__name__  # every chart has something to draw
