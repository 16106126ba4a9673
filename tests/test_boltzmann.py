"""The RBM: free energy and log Z against brute force, AIS against the exact log Z of an RBM small
enough to enumerate (within its standard error), CD and persistent CD training, and the likelihood
labelled as an estimate with the AIS error in its standard error."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from genlib.families.boltzmann import (RBM, RBMConfig, ais_log_z, base_visible_bias, exact_log_z,
                                       pseudo_log_likelihood)
from genlib.families.boltzmann.analysis import feature_accuracy, filters, free_energy_table, gibbs_frames
from genlib.scoring import score_model


def _trained(core_slice, hidden: int = 12, steps: int = 300, persistent: bool = False, seed: int = 0) -> RBM:
    torch.manual_seed(seed)
    model = RBM(RBMConfig(hidden=hidden, persistent=persistent))
    x = core_slice[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(steps):
        batch = x[torch.randint(0, len(x), (32,))]
        optimizer.zero_grad()
        model.training_step((batch, None), step).loss.backward()
        optimizer.step()
    return model.eval()


def test_the_free_energy_sums_the_hidden_units_out():
    torch.manual_seed(0)
    model = RBM(RBMConfig(hidden=3)).double()
    with torch.no_grad():
        model.weight.normal_(0, 0.1)
        model.visible_bias.normal_()
        model.hidden_bias.normal_()
    v = torch.bernoulli(torch.full((4, 784), 0.3, dtype=torch.float64))
    energies = []
    for bits in itertools.product([0.0, 1.0], repeat=3):
        h = torch.tensor(bits, dtype=torch.float64)
        energies.append(-(v @ model.visible_bias) - h @ model.hidden_bias - (v @ model.weight.T) @ h)
    brute = -torch.logsumexp(-torch.stack(energies), 0)                 # F(v) = -log sum_h exp(-E(v, h))
    assert torch.allclose(model.free_energy(v), brute, atol=1e-9)


def test_exact_log_z_is_the_closed_form_for_independent_units():
    model = RBM(RBMConfig(hidden=5))
    with torch.no_grad():
        model.weight.zero_()
        model.visible_bias.normal_()
        model.hidden_bias.normal_()
    expected = F.softplus(model.visible_bias.double()).sum() + F.softplus(model.hidden_bias.double()).sum()
    assert exact_log_z(model) == pytest.approx(expected.item(), abs=1e-8)
    with pytest.raises(ValueError, match="too many"):
        exact_log_z(RBM(RBMConfig(hidden=21)))


def test_ais_agrees_with_the_exact_log_z_within_its_standard_error(core_slice):
    model = _trained(core_slice, hidden=12)
    exact = exact_log_z(model)
    result = ais_log_z(model, base_visible_bias(core_slice[0]), num_betas=10_000, runs=100,
                       generator=torch.Generator().manual_seed(1))
    assert 0 < result.stderr < 1
    assert abs(result.log_z - exact) <= result.stderr, (result.log_z, exact, result.stderr)
    # and a far too short schedule is visibly worse: the estimate needs its temperatures
    crude = ais_log_z(model, base_visible_bias(core_slice[0]), num_betas=5, runs=100,
                      generator=torch.Generator().manual_seed(1))
    assert abs(crude.log_z - exact) > abs(result.log_z - exact)


def test_cd_training_lowers_the_reconstruction_error_and_pcd_keeps_its_chains(core_slice):
    x = core_slice[0][:32]
    for persistent in (False, True):
        torch.manual_seed(0)
        model = RBM(RBMConfig(hidden=16, persistent=persistent))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        first = model.training_step((x, None), 0).scalars["reconstruction_error"]
        for step in range(60):
            optimizer.zero_grad()
            model.training_step((x, None), step).loss.backward()
            optimizer.step()
        last = model.training_step((x, None), 99).scalars["reconstruction_error"]
        assert last < first, (persistent, first, last)
        assert (model._chains is not None) == persistent


def test_the_likelihood_is_an_estimate_with_the_ais_error_in_it(core_slice, core_evaluator):
    model = _trained(core_slice, hidden=12, steps=100)
    with pytest.raises(ValueError, match="no estimate of log Z"):
        model.bits_per_dim(torch.ones(1, 1, 28, 28))
    model.on_train_end(core_slice[0], core_slice[1])   # AIS with the config's schedule
    assert math.isfinite(float(model.log_z)) and float(model.log_z_stderr) > 0
    v = torch.bernoulli(core_slice[0][:4])
    expected = (model.free_energy(v).double() + model.log_z) / (784 * math.log(2))
    assert torch.allclose(model.bits_per_dim(v).double(), expected, atol=1e-5)
    card = score_model(model, "rbm", core_evaluator.ref, num_samples=20)
    assert card.metrics["likelihood"] == "estimate" and card.metrics["likelihood_benchmark"] == "binarized"
    assert card.metrics["likelihood_stderr"] >= float(model.log_z_stderr)   # the AIS error is part of it
    assert "annealed importance sampling" in card.metrics["likelihood_note"]


def test_sampling_pseudo_likelihood_and_the_analysis(core_slice, core_tiny_model):
    model = _trained(core_slice, hidden=16, steps=100)
    steps = []
    images = model.sample(3, generator=torch.Generator().manual_seed(0), gibbs_steps=50,
                          callback=lambda s: steps.append(s.step))
    assert images.shape == (3, 1, 28, 28) and 0 <= images.min() and images.max() <= 1 and steps[-1] == 49
    assert torch.equal(images, model.sample(3, generator=torch.Generator().manual_seed(0), gibbs_steps=50))
    v = torch.bernoulli(core_slice[0][:8])
    pll = pseudo_log_likelihood(model, v, torch.Generator().manual_seed(0))
    assert pll.shape == (8,) and (pll <= 0).all()
    assert filters(model, 4).shape == (4, 1, 28, 28)
    frames, done_at = gibbs_frames(model, v[:2].view(2, 1, 28, 28), steps=20, frames=5)
    assert len(frames) == len(done_at) == 5 and done_at == [0, 5, 10, 15, 20]
    assert torch.equal(frames[0], v[:2].view(2, 1, 28, 28))
    table = free_energy_table(model, core_slice[0][:10], torch.rand(5, 1, 28, 28), torch.rand(6, 1, 28, 28))
    assert len(table) == 21


def test_rbm_features_against_scikit_learns_bernoulli_rbm(core_slice, core_mnist):
    model = _trained(core_slice, hidden=16, steps=50)
    scores = feature_accuracy(model, core_slice[0], core_slice[1], core_mnist.test_images[:100],
                              core_mnist.test_labels[:100])
    assert scores.hidden == 16
    for value in (scores.lab_rbm, scores.sklearn_rbm, scores.raw_pixels):
        assert 0.0 <= value <= 1.0
    assert scores.raw_pixels > 0.3  # 64 digits are enough for well above chance


def test_rbm_ais_re_estimates_log_z_for_the_stored_weights(tmp_path, capsys):
    from safetensors.torch import load_file

    from genlib import TrainConfig, load_model, train_run
    from genlib.checkpoints import store_half_precision
    from genlib.cli import main

    folder = train_run("rbm", {"hidden": 10, "ais_betas": 200, "ais_runs": 10},
                       TrainConfig(epochs=1, max_steps=20, batch_size=64, lr=0.05), tmp_path / "rbm",
                       evaluate_model=False).path
    store_half_precision(folder)
    stored = load_file(str(folder / "model.safetensors"))
    assert stored["weight"].dtype == torch.float16 and stored["log_z"].dtype == torch.float64  # log Z kept exact
    assert main(["rbm-ais", str(folder), "--betas", "5000", "--runs", "50", "--write"]) == 0
    out = capsys.readouterr().out
    assert "log Z = " in out and "an estimate" in out
    model, _ = load_model(folder)
    assert abs(float(model.log_z) - exact_log_z(model)) <= 3 * float(model.log_z_stderr)
    assert load_file(str(folder / "model.safetensors"))["weight"].dtype == torch.float16  # the rest as stored
    vae = tmp_path / "not-an-rbm"
    train_run("vae", {"latent_dim": 2, "width": 4, "hidden": 16}, TrainConfig(epochs=1, max_steps=2), vae,
              evaluate_model=False)
    assert main(["rbm-ais", str(vae)]) == 2 and "not an RBM" in capsys.readouterr().out
