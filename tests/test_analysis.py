"""genlib.families.autoencoders.analysis on tiny, untrained models: shapes, the maths of each view, and that nothing
changes the model it looks at."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from genlib import build_model
from genlib.data import mnist
from genlib.families.autoencoders import analysis
from genlib.metrics import mean_squared_error

TINY = {"latent_dim": 2, "width": 4, "hidden": 16}


def tiny(family: str, **overrides):
    torch.manual_seed(0)
    return build_model(family, {**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def digits():
    split = mnist()
    return split.test_images[:40], split.test_labels[:40]


def test_projection_keeps_a_2d_latent_and_projects_larger_ones(digits):
    x, y = digits
    ae = tiny("ae")
    df = analysis.latent_projection(ae, x, y, max_points=30)
    assert list(df.columns) == ["x", "y", "label", "index"] and len(df) == 30
    codes = ae.encode(x[:30])
    assert torch.allclose(torch.tensor(df[["x", "y"]].to_numpy(), dtype=torch.float32), codes, atol=1e-5)
    assert df["label"].tolist() == y[:30].tolist()

    vae = tiny("cvae", latent_dim=8)
    for method in ("pca", "tsne"):
        df = analysis.latent_projection(vae, x, y, method=method)
        assert df.shape == (40, 4) and df[["x", "y"]].notna().all().all()
    with pytest.raises(ValueError):
        analysis.latent_projection(vae, x, y, method="umap")


def test_manifold_grid_spans_the_prior():
    vae = tiny("vae")
    grid = analysis.manifold_grid(vae, n=5)
    assert grid.shape == (25, 1, 28, 28)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.05, 0.95]))
    top_left = vae.decode(torch.tensor([[q[0], q[1]]]))  # smallest z1, largest z2
    assert torch.allclose(grid[0], top_left[0], atol=1e-5)

    ae = tiny("ae")
    ae.prior_mean.copy_(torch.tensor([1.0, -1.0]))
    ae.prior_scale_tril.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5]]))
    grid = analysis.manifold_grid(ae, n=3)
    assert torch.allclose(grid[-1], ae.decode(torch.tensor([[1.0 + 4.0, -1.0 - 1.0]]))[0], atol=1e-5)
    with pytest.raises(ValueError, match="2-D"):
        analysis.manifold_grid(tiny("vae", latent_dim=4))


def test_interpolation_ends_at_both_reconstructions(digits):
    x, y = digits
    for family in ("ae", "cvae"):
        model = tiny(family)
        labels = (int(y[0]), int(y[1])) if model.conditional else None
        strip = analysis.interpolate(model, x[0], x[1], steps=6, labels=labels)
        assert strip.shape == (6, 1, 28, 28)
        la = torch.tensor([labels[0]]) if labels else None
        lb = torch.tensor([labels[1]]) if labels else None
        assert torch.allclose(strip[0], model.reconstruct(x[:1], la)[0], atol=1e-5)
        assert torch.allclose(strip[-1], model.reconstruct(x[1:2], lb)[0], atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        analysis.interpolate(tiny("cvae"), x[0], x[1])


def test_traversal_moves_one_dimension(digits):
    x, _ = digits
    vae = tiny("vae", latent_dim=3)
    strip = analysis.traverse(vae, x[0], dim=1, span=2.0, steps=5)
    assert strip.shape == (5, 1, 28, 28)
    z = vae.encode(x[:1])
    z[0, 1] = 0.0  # the middle step sits on the prior mean
    assert torch.allclose(strip[2], vae.decode(z)[0], atol=1e-5)
    with pytest.raises(ValueError):
        analysis.traverse(vae, x[0], dim=3)


def test_reconstructions_corrupt_only_for_denoisers_and_reproducibly(digits):
    x, y = digits
    dae = tiny("dae", noise_std=0.3)
    a = analysis.reconstructions(dae, x[:8], y[:8], seed=1)
    b = analysis.reconstructions(dae, x[:8], y[:8], seed=1)
    assert a["noisy"] is not None and torch.equal(a["noisy"], b["noisy"])
    assert not torch.equal(a["noisy"], analysis.reconstructions(dae, x[:8], y[:8], seed=2)["noisy"])
    assert torch.allclose(a["output"], dae.denoise(a["noisy"]), atol=1e-5)
    assert analysis.reconstructions(dae, x[:8], y[:8], noise_std=0.0)["noisy"] is None
    vae = analysis.reconstructions(tiny("vae"), x[:8], y[:8])
    assert vae["noisy"] is None and vae["output"].shape == (8, 1, 28, 28) and vae["mse"].shape == (8,)
    cvae = analysis.reconstructions(tiny("cvae"), x[:8], None)  # no labels: the best class is chosen
    assert cvae["labels"].shape == (8,)


def test_anomaly_scores_use_the_best_class_for_conditional_models(digits):
    x, _ = digits
    faces, noise = torch.rand(5, 1, 28, 28), torch.rand(6, 1, 28, 28)
    cvae = tiny("cvae")
    scores = analysis.anomaly_scores(cvae, x[:10], faces, noise)
    assert isinstance(scores, pd.DataFrame) and list(scores.columns) == ["score", "source"]
    assert scores["source"].value_counts().to_dict() == {analysis.SOURCE_DIGITS: 10, analysis.SOURCE_FACES: 5,
                                                         analysis.SOURCE_NOISE: 6}
    digit_scores = torch.tensor(scores["score"].to_numpy()[:10], dtype=torch.float32)
    for k in range(10):
        fixed = mean_squared_error(cvae.reconstruct(x[:10], torch.full((10,), k)), x[:10])
        assert (digit_scores <= fixed + 1e-6).all()
    assert 0.0 <= analysis.anomaly_auroc(scores) <= 1.0


def test_auroc_extremes():
    perfect = pd.DataFrame({"score": [0.1, 0.2, 0.9, 0.8],
                            "source": [analysis.SOURCE_DIGITS] * 2 + [analysis.SOURCE_NOISE] * 2})
    assert analysis.anomaly_auroc(perfect) == 1.0
    with pytest.raises(ValueError):
        analysis.anomaly_auroc(perfect[perfect["source"] == analysis.SOURCE_DIGITS])


def test_sample_grid_and_models_left_untouched():
    cvae = tiny("cvae")
    before = {k: v.clone() for k, v in cvae.state_dict().items()}
    images, nrow = analysis.sample_grid(cvae, seed=3)
    assert images.shape == (100, 1, 28, 28) and nrow == 10
    again, _ = analysis.sample_grid(cvae, seed=3)
    assert torch.equal(images, again)
    sevens, nrow = analysis.sample_grid(cvae, seed=3, n=12, digit=7)
    assert sevens.shape == (12, 1, 28, 28) and nrow == 8
    assert analysis.sample_grid(tiny("ae"), seed=0, n=16)[0].shape == (16, 1, 28, 28)
    assert not cvae.training
    assert all(torch.equal(before[k], v) for k, v in cvae.state_dict().items())
