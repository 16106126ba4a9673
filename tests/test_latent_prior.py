"""The autoencoders' sampling prior (``prior_components``): a Gaussian mixture fitted to the training codes
after training, per class for the conditional VAE, saved and loaded with the weights, and the VAE's bound
taken under the prior it samples from."""
from __future__ import annotations

import math

import pytest
import torch
from sklearn.mixture import GaussianMixture

from genlib import build_model
from genlib.checkpoints import load_model, save_folder
from genlib.families.autoencoders import analysis

TINY = {"latent_dim": 2, "width": 4, "hidden": 16}
CENTRES = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])


def tiny(family: str, **overrides):
    torch.manual_seed(0)
    return build_model(family, {**TINY, **overrides}).eval()


def clustered_codes(n_per: int = 200, spread: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (3*n_per, 2) around three far-apart centres, and which centre each came from."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(n_per)
    return CENTRES[labels] + spread * torch.randn(len(labels), 2, generator=g), labels


def nearest_centre(z: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z, CENTRES).argmin(1)


def test_a_mixture_prior_samples_every_cluster_and_none_of_the_gaps_between():
    codes, _ = clustered_codes()
    one, mixture = tiny("ae"), tiny("ae", prior_components=3)
    one.fit_prior(codes)
    mixture.fit_prior(codes)
    assert one.prior_mean.shape == (2,) and mixture.prior_mean.shape == (3, 2)
    z = mixture.sample_latents(3000, torch.Generator().manual_seed(0))
    distance = torch.cdist(z, CENTRES).min(1).values
    assert (distance < 1.5).float().mean() > 0.99  # the mixture draws near a cluster...
    share = torch.bincount(nearest_centre(z), minlength=3) / 3000
    assert (share - 1 / 3).abs().max() < 0.05  # ...and from each of them alike
    z_one = one.sample_latents(3000, torch.Generator().manual_seed(0))
    assert (torch.cdist(z_one, CENTRES).min(1).values < 1.5).float().mean() < 0.5  # one Gaussian fills the gaps


def test_the_mixture_log_density_is_the_fitted_mixtures():
    codes, _ = clustered_codes()
    model = tiny("vae", prior_components=3)
    model.fit_prior(codes)
    reference = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=0).fit(codes.double().numpy())
    points = torch.tensor([[-6.0, 0.2], [0.1, 5.0], [3.0, 3.0], [20.0, -20.0]])
    expected = torch.from_numpy(reference.score_samples(points.double().numpy())).float()
    assert torch.allclose(model.prior_log_prob(points), expected, atol=1e-3, rtol=1e-4)
    # std 1 of N(0, I) for the unfitted VAE; the mixture's own spread once fitted
    mean, std = analysis.prior_stats(model)
    assert torch.allclose(mean, codes.mean(0), atol=0.05) and torch.allclose(std, codes.std(0), atol=0.05)


def test_a_conditional_vae_draws_each_digit_from_its_own_components():
    codes, labels = clustered_codes()
    model = tiny("cvae", prior_components=1, num_classes=3)
    model.fit_prior(codes, labels)
    assert model.prior_mean.shape == (3, 2) and model.prior_slots == 3
    asked = torch.tensor([0, 1, 2]).repeat(500)
    z = model.sample_latents(len(asked), torch.Generator().manual_seed(0), asked)
    assert (nearest_centre(z) == asked).float().mean() > 0.99
    images = model.sample(len(asked), generator=torch.Generator().manual_seed(0), labels=asked)
    assert images.shape == (1500, 1, 28, 28)
    with pytest.raises(ValueError, match="too few"):
        tiny("cvae", prior_components=64, num_classes=3).fit_prior(*clustered_codes(n_per=50))


def test_the_fitted_prior_is_saved_with_the_weights_and_samples_alike_after_loading(tmp_path):
    codes, labels = clustered_codes()
    model = tiny("cvae", prior_components=2, num_classes=3)
    model.fit_prior(codes, labels)
    folder = save_folder(tmp_path / "cvae", model, {"family": "cvae", "model": model.config.to_dict()})
    loaded, _ = load_model(folder)
    for name in ("prior_mean", "prior_scale_tril", "prior_log_weight"):
        assert torch.equal(getattr(loaded, name), getattr(model, name))
    asked = torch.tensor([2, 0, 1, 1])
    draw = [m.sample(4, generator=torch.Generator().manual_seed(5), labels=asked) for m in (model, loaded)]
    assert torch.equal(draw[0], draw[1])


def test_the_vae_bound_under_its_prior_matches_the_closed_form_kl_for_a_standard_normal_fit():
    """A fitted prior equal to N(0, I): the one-sample KL estimate must average to the closed-form KL."""
    standard, fitted = tiny("vae"), tiny("vae", prior_components=1)
    fitted.load_state_dict(standard.state_dict())  # same weights; prior buffers N(0, I) in both
    x = torch.rand(1, 1, 28, 28).repeat(4000, 1, 1, 1)
    exact = standard.bits_per_dim(x, generator=torch.Generator().manual_seed(0))
    estimate = fitted.bits_per_dim(x, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(exact, estimate)  # per image the estimate varies with z...
    assert math.isclose(estimate.mean().item(), exact.mean().item(), rel_tol=2e-3)  # ...its mean is the KL's
    codes, _ = clustered_codes()
    fitted.fit_prior(codes)  # a prior far from the posterior: a looser, still finite bound
    looser = fitted.bits_per_dim(x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(looser).all() and looser.mean() > exact.mean()


def test_training_fits_the_mixture_to_the_real_training_codes_and_saves_it(tmp_path):
    from genlib import TrainConfig
    from genlib.runs import train_run

    saved = train_run("cvae", {**TINY, "prior_components": 2}, TrainConfig(max_steps=5, batch_size=32, seed=0),
                      tmp_path / "cvae", evaluate_model=False)
    model, _ = load_model(saved.path)
    assert model.prior_mean.shape == (20, 2) and not torch.equal(model.prior_mean, torch.zeros(20, 2))
    weights = model.prior_log_weight.view(10, 2).exp()
    assert torch.allclose(weights.sum(1), torch.ones(10), atol=1e-5)  # each digit's two weights sum to 1
    assert "mixture of 2 full-covariance Gaussians per digit" in model.prior_summary()
