"""The GAN families (genlib/families/gan.py): real tiny models trained through the real Trainer.

The contract test already covers build / sample / save+load for the tiny configs; this file covers
what is GAN-specific: every loss trains, the gradient penalty is right, bad combinations are
refused, the D-wins detector fires, truncation, slerp, labels, and the faces training set.
"""
from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch

import genlib
from genlib import ConfigError, TrainConfig, Trainer, TrainingDiverged
from genlib.data import mnist, training_set
from genlib.families.gan import D_WIN_STEPS, LOSS_NAMES, LOSSES, DWinDetector, gradient_penalty, r1_penalty, slerp
from genlib.families.gan.networks import MinibatchStd, cutout, translate
from genlib.model import StepTools
from genlib.runs import save_run, train_run
from genlib.training import TrainResult

GAN_FAMILIES = ("mlp-gan", "dcgan", "cgan")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "max_steps": 3, "device": "cpu", **kw})


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def _plain_tools(step: int = 0) -> StepTools:
    def backward_and_step(loss, opt, params):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return StepTools(backward_and_step, contextlib.nullcontext, step)


# -- every loss x family trains ---------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("family", GAN_FAMILIES)
def test_every_loss_and_family_trains_through_the_trainer(family, loss, core_tiny_model, core_slice):
    model = core_tiny_model(family, loss=loss)
    g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
    result = Trainer(_cfg()).fit(model, *core_slice)
    assert result.steps == 3
    row = result.history[-1]
    assert {"loss", "d_loss", "g_loss", "d_real", "d_fake"} <= set(row)
    assert ("gp" in row) == (loss == "wgan-gp")
    assert all(math.isfinite(v) for v in row.values())
    if loss in ("bce",):
        assert 0.0 <= row["d_real"] <= 1.0 and 0.0 <= row["d_fake"] <= 1.0  # reported as probabilities
    assert _changed(g0, model.generator) and _changed(d0, model.discriminator)
    assert all(p.requires_grad for p in model.parameters())  # D's grads were switched back on after G's step
    assert model.sample(2, labels=model.default_labels(2)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("overrides", [
    {"d_output": "sigmoid", "loss": "bce"},
    {"d_output": "sigmoid", "loss": "lsgan"},
    {"spectral_norm": True, "loss": "hinge", "d_steps": 2},
    {"spectral_norm": True, "loss": "wgan-gp"},
    {"g_convs": 2, "augment": True},
    {"r1_gamma": 1.0, "augment": True},
    {"d_dropout": 0.3},
    {"minibatch_std": True, "augment": True},
    {"augment": True, "cutout": True},
])
def test_variants_train(overrides, core_tiny_model, core_slice):
    model = core_tiny_model("dcgan", **overrides)
    result = Trainer(_cfg(max_steps=2)).fit(model, *core_slice)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.history[-1].values())
    assert ("r1" in result.history[-1]) == ("r1_gamma" in overrides)  # the penalty is logged when it is on
    if overrides.get("d_output") == "sigmoid":
        row = result.history[-1]
        assert 0.0 <= row["d_real"] <= 1.0 and 0.0 <= row["d_fake"] <= 1.0


def test_separate_learning_rates_and_betas(core_tiny_model):
    model = core_tiny_model("cgan", d_lr_scale=4.0, adam_beta1=0.3)
    opt_d, opt_g = model.configure_optimizers(1e-3)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(4e-3)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert opt_d.param_groups[0]["betas"] == (0.3, 0.999) == opt_g.param_groups[0]["betas"]
    d_ids = {id(p) for g in opt_d.param_groups for p in g["params"]}
    g_ids = {id(p) for g in opt_g.param_groups for p in g["params"]}
    assert not d_ids & g_ids and d_ids | g_ids == {id(p) for p in model.parameters()}  # the embeddings too


def test_d_steps_updates_d_that_many_times_per_g_update(core_tiny_model, core_slice):
    model = core_tiny_model("mlp-gan", d_steps=3)
    opt_d, opt_g = model.configure_optimizers(1e-3)
    x, y = core_slice[0][:8], core_slice[1][:8]
    for step in range(2):
        model.optimization_step((x, y), [opt_d, opt_g], _plain_tools(step))
    assert all(int(s["step"]) == 6 for s in opt_d.state.values())
    assert all(int(s["step"]) == 2 for s in opt_g.state.values())


# -- losses and the gradient penalty, by hand ------------------------------------------------------------
def test_gradient_penalty_of_a_linear_critic_is_exact():
    w = torch.tensor([3.0, 4.0, 0.0], requires_grad=True)  # D(x) = w.x, so |grad D| = |w| = 5 everywhere

    def critic(x):
        return x @ w[:, None]

    real, fake = torch.randn(6, 3), torch.randn(6, 3)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-6)
    gp.backward()  # the penalty trains the critic: d/dw (|w|-1)^2 = 2(|w|-1) w/|w|
    assert torch.allclose(w.grad, 2 * 4.0 * torch.tensor([3.0, 4.0, 0.0]) / 5.0, atol=1e-5)


def test_r1_penalty_of_a_linear_critic_is_exact():
    w = torch.tensor([[3.0], [4.0], [0.0]], requires_grad=True)  # D(x) = x.w, so |grad_x D|^2 = |w|^2 = 25
    real = torch.randn(6, 3, requires_grad=True)
    r1 = r1_penalty(real @ w, real)
    assert r1.item() == pytest.approx(25.0, rel=1e-6)
    r1.backward()  # the penalty trains D: d/dw |w|^2 = 2w
    assert torch.allclose(w.grad, 2 * w.detach())


def test_r1_penalty_changes_the_discriminator_update(core_tiny_model, core_slice):
    x, y = core_slice[0][:8], core_slice[1][:8]
    d_after = []
    for gamma in (0.0, 50.0):
        torch.manual_seed(0)
        model = core_tiny_model("dcgan", r1_gamma=gamma)
        model.optimization_step((x, y), model.configure_optimizers(1e-3), _plain_tools(0))
        d_after.append(torch.cat([p.detach().flatten() for p in model.discriminator.parameters()]))
    assert not torch.allclose(d_after[0], d_after[1])


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic_on_images():
    w = torch.zeros(1, 1, 28, 28)
    w[0, 0, 3, 4] = 1.0  # |grad| = 1 everywhere
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1, keepdim=True), torch.rand(4, 1, 28, 28),
                          torch.rand(4, 1, 28, 28))
    assert gp.item() == pytest.approx(0.0, abs=1e-8)


def test_loss_functions_by_hand():
    a, b = torch.tensor([[0.3], [-1.2]]), torch.tensor([[2.0], [-0.5]])
    bce_logit, bce_prob = LOSSES["logit"]["bce"], LOSSES["sigmoid"]["bce"]
    expected = (-torch.log(torch.sigmoid(a)).mean() - torch.log(1 - torch.sigmoid(b)).mean()).item()
    assert bce_logit.d_loss_fn(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert bce_prob.d_loss_fn(torch.sigmoid(a), torch.sigmoid(b)).item() == pytest.approx(expected, rel=1e-5)
    assert bce_logit.g_loss_fn(b).item() == pytest.approx(-torch.log(torch.sigmoid(b)).mean().item(), rel=1e-5)
    hinge, wgan = LOSSES["logit"]["hinge"], LOSSES["logit"]["wgan-gp"]
    assert hinge.d_loss_fn(torch.tensor([[2.0]]), torch.tensor([[-3.0]])).item() == 0.0  # both beyond the margin
    assert hinge.d_loss_fn(torch.tensor([[0.0]]), torch.tensor([[0.0]])).item() == 2.0
    assert wgan.d_loss_fn(torch.tensor([[1.0]]), torch.tensor([[3.0]])).item() == 2.0
    assert LOSSES["logit"]["lsgan"].d_loss_fn(torch.ones(2, 1), torch.zeros(2, 1)).item() == 0.0
    assert wgan.gradient_penalty and not hinge.gradient_penalty
    assert set(LOSSES["sigmoid"]) == {"bce", "lsgan"}


# -- invalid configurations ------------------------------------------------------------------------------
@pytest.mark.parametrize("family, overrides, message", [
    ("dcgan", {"loss": "wgan-gp", "d_output": "sigmoid"}, "WGAN-GP needs an unbounded critic: set d_output='logit'"),
    ("mlp-gan", {"loss": "hinge", "d_output": "sigmoid"}, "hinge loss needs an unbounded critic"),
    ("cgan", {"dataset": "faces"}, "dataset='faces' is not one of mnist"),  # faces have no classes
    ("dcgan", {"loss": "kl"}, "loss='kl' is not one of"),
    ("dcgan", {"d_steps": 0}, "d_steps=0 is out of range"),
    ("mlp-gan", {"width": 4}, "unknown setting"),
])
def test_invalid_combinations_are_refused(family, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        genlib.build_model(family, overrides)


def test_valid_sigmoid_and_faces_configs_build():
    assert genlib.build_model("mlp-gan", {"d_output": "sigmoid", "loss": "lsgan", "dataset": "faces"})
    cfg = genlib.get_family("dcgan").Config(loss="wgan-gp", spectral_norm=True)
    assert genlib.get_family("dcgan").Config.from_json(cfg.to_json()) == cfg


# -- the discriminator-wins detector ---------------------------------------------------------------------
def test_detector_counts_consecutive_wins_only():
    det = DWinDetector(steps=5)
    for _ in range(4):
        det.update(0.999, 0.001)
    det.update(0.9, 0.001)  # one step where D is not sure resets the count
    for _ in range(4):
        det.update(0.999, 0.001)
    with pytest.raises(TrainingDiverged, match="won outright for 5 steps.*d_lr_scale.*spectral_norm.*hinge/wgan-gp"):
        det.update(0.999, 0.001)
    assert D_WIN_STEPS == DWinDetector().steps == 200


def test_a_dominant_discriminator_stops_training(core_tiny_model, core_mnist):
    # G learns at lr 1e-5 and D at 100x that: D separates digits from G's noise within ~80 steps,
    # then wins outright for D_WIN_STEPS steps in a row.
    model = core_tiny_model("mlp-gan", d_lr_scale=100.0)
    result = TrainResult(steps=0)
    with pytest.raises(TrainingDiverged, match="the discriminator has won outright for 200 steps"):
        Trainer(_cfg(epochs=100, max_steps=1000, lr=1e-5)).fit(model, core_mnist.train_images[:256],
                                                                core_mnist.train_labels[:256], result=result)
    assert D_WIN_STEPS <= result.steps < 1000
    assert all(r["d_real"] > 0.99 and r["d_fake"] < 0.01 for r in result.history[-D_WIN_STEPS + 1:])


# -- sampling: truncation, slerp, labels ---------------------------------------------------------------
def test_truncation_bounds_the_noise(core_tiny_model):
    model = core_tiny_model("dcgan").eval()
    z = model.noise(4000, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.shape == (4000, 8) and float(z.abs().max()) <= 0.5
    assert 0.25 < float(z.std()) < 0.3  # N(0,1) truncated to [-0.5,0.5] has std 0.28: not squashed to a point
    z2 = model.noise(4000, torch.Generator().manual_seed(0), truncation=2.0)
    assert float(z2.abs().max()) <= 2.0 and float(z2.abs().max()) > 1.9
    a = model.sample(3, generator=torch.Generator().manual_seed(1), truncation=0.7)
    b = model.sample(3, generator=torch.Generator().manual_seed(1), truncation=0.7)
    assert torch.equal(a, b) and a.shape == (3, 1, 28, 28) and 0 <= float(a.min()) and float(a.max()) <= 1
    with pytest.raises(ValueError, match="truncation"):
        model.noise(2, truncation=0.0)


def test_sample_from_noise_matches_sample(core_tiny_model):
    model = core_tiny_model("mlp-gan").eval()
    z = model.noise(4, torch.Generator().manual_seed(3))
    assert torch.equal(model.sample_from_noise(z), model.sample(4, generator=torch.Generator().manual_seed(3)))


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, generator=g), torch.randn(16, generator=g)
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-5)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-5)
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    path = slerp(u0, u1, torch.linspace(0, 1, 9))
    assert path.shape == (9, 16)
    assert torch.allclose(path.norm(dim=1), torch.ones(9), atol=1e-5)  # stays on the unit sphere
    assert path[4].dot(u0).item() == pytest.approx(path[4].dot(u1).item(), abs=1e-5)  # midpoint: equal angles
    batch = slerp(torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g), torch.tensor([0.0, 0.5, 1.0]))
    assert batch.shape == (3, 3, 16)
    same = slerp(u0, u0, 0.5)  # parallel vectors: no division by sin(0)
    assert torch.isfinite(same).all() and torch.allclose(same, u0, atol=1e-5)


def test_cgan_labels(core_tiny_model):
    model = core_tiny_model("cgan").eval()
    labels = torch.tensor([0, 3, 3, 9, 5])
    x = model.sample(5, generator=torch.Generator().manual_seed(0), labels=labels)
    assert x.shape == (5, 1, 28, 28)
    z = model.noise(5, torch.Generator().manual_seed(0))
    assert torch.equal(model.sample_from_noise(z, labels), x)
    assert model.sample(4).shape == (4, 1, 28, 28)  # default labels 0..K-1
    with pytest.raises(ValueError, match="labels"):
        model.sample(5, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        model.sample_from_noise(z, torch.tensor([0, 1, 2, 3, 10]))


# -- data and runs ---------------------------------------------------------------------------------------
def test_faces_training_set():
    images, labels = training_set("faces")
    assert images.shape == (100, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0 and float(images.std()) > 0.05
    assert labels.shape == (100,) and labels.dtype == torch.int64 and int(labels.abs().sum()) == 0
    digits, digit_labels = training_set("mnist")
    assert digits.shape == mnist().train_images.shape and torch.equal(digit_labels, mnist().train_labels)
    with pytest.raises(ValueError, match="unknown training set 'cifar'"):
        training_set("cifar")


def test_train_run_on_faces_skips_the_digit_metrics(tmp_path, core_tiny_config):
    config = core_tiny_config("mlp-gan", dataset="faces")
    saved = train_run("mlp-gan", config, _cfg(max_steps=2, batch_size=50), tmp_path / "faces-gan")
    assert saved.status == "finished"
    metrics = json.loads((saved.path / "metrics.json").read_text())
    assert "frechet_distance" not in metrics and "MNIST" in metrics["note"] and metrics["train_steps"] == 2
    assert "LFW" in (saved.path / "README.md").read_text()
    model, info = genlib.load_model(saved.path, expect_family="mlp-gan")
    assert model.config.dataset == "faces" and model.sample(2).shape == (2, 1, 28, 28)


def test_spectral_norm_model_saves_and_loads_exactly(tmp_path, core_tiny_model, core_slice):
    model = core_tiny_model("cgan", spectral_norm=True, loss="hinge")
    result = Trainer(_cfg(max_steps=2)).fit(model, *core_slice)
    out = save_run(model, _cfg(max_steps=2), result, tmp_path / "sn", {})
    loaded, _ = genlib.load_model(out, expect_family="cgan")
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    labels = torch.arange(6) % 10
    with torch.no_grad():
        x = torch.rand(6, 1, 28, 28) * 2 - 1
        assert torch.equal(model.critic(x, labels), loaded.critic(x, labels))  # the normalised weights agree
    assert torch.equal(model.sample(6, generator=torch.Generator().manual_seed(0), labels=labels),
                       loaded.sample(6, generator=torch.Generator().manual_seed(0), labels=labels))


def test_translate_moves_whole_images_by_at_most_three_pixels_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, 13, 13] = 1.0  # one bright pixel in the middle of a blank image
    x.requires_grad_(True)
    shifted = translate(x)
    bright = (shifted > 0).nonzero()[:, 2:]                    # (64, 2): where each image's pixel went
    assert bright.shape == (64, 2)                            # moved, not smeared or lost
    offsets = bright - 13
    assert offsets.abs().max() <= 3 and len({tuple(o) for o in offsets.tolist()}) > 5  # random, bounded
    shifted.sum().backward()
    assert x.grad.abs().sum() > 0                             # G still gets a gradient through the shift


def test_projection_discriminator_scores_depend_on_the_class(core_tiny_model, core_slice):
    model = core_tiny_model("cgan", d_conditioning="projection", spectral_norm=True, loss="hinge")
    assert model.d_embed is None and hasattr(model.discriminator, "class_embed")
    result = Trainer(_cfg(max_steps=2)).fit(model, *core_slice)
    assert all(math.isfinite(v) for v in result.history[-1].values())
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        a, b = model.critic(x, torch.zeros(4, dtype=torch.long)), model.critic(x, torch.ones(4, dtype=torch.long))
    assert a.shape == (4, 1) and not torch.allclose(a, b)
    assert any(p is model.discriminator.class_embed.parametrizations.weight.original for p in model.d_parameters())


def test_g_convs_deepens_the_generator(core_tiny_model):
    shallow, deep = core_tiny_model("dcgan"), core_tiny_model("dcgan", g_convs=2)
    convs = [sum(isinstance(m, torch.nn.Conv2d) and not isinstance(m, torch.nn.ConvTranspose2d)
                 for m in g.generator.modules()) for g in (shallow, deep)]
    assert convs == [0, 4]  # two at 7x7, two at 14x14
    assert deep.sample(2).shape == (2, 1, 28, 28)


def test_d_dropout_adds_dropout_to_d_only_when_asked(core_tiny_model):
    def dropouts(model):
        return [m.p for m in model.discriminator.modules() if isinstance(m, torch.nn.Dropout)]

    plain, dropped = core_tiny_model("dcgan"), core_tiny_model("dcgan", d_dropout=0.3)
    assert dropouts(plain) == [] and dropouts(dropped) == [0.3, 0.3]
    # without dropout the layer names are those of checkpoints saved before the option existed
    assert "discriminator.2.weight" in plain.state_dict() and "discriminator.3.weight" in dropped.state_dict()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    dropped.train()
    assert not torch.equal(dropped.critic(x), dropped.critic(x))  # a noisy D in training ...
    dropped.eval()
    assert torch.equal(dropped.critic(x), dropped.critic(x))  # ... and a deterministic one after


def test_minibatch_std_tells_a_collapsed_batch_from_a_varied_one():
    varied = torch.randn(8, 3, 7, 7)
    collapsed = varied[:1].expand(8, 3, 7, 7)
    out_varied, out_collapsed = MinibatchStd()(varied), MinibatchStd()(collapsed)
    assert out_varied.shape == (8, 4, 7, 7) and torch.equal(out_varied[:, :3], varied)
    expected = varied.var(0, unbiased=False).add(1e-8).sqrt().mean()  # one number for the whole batch
    assert torch.allclose(out_varied[:, 3], expected.expand(8, 7, 7))
    assert out_collapsed[:, 3].max() < 1e-3 < out_varied[:, 3].min()


@pytest.mark.parametrize("family, overrides",
                         [("mlp-gan", {}), ("dcgan", {}), ("cgan", {}), ("cgan", {"d_conditioning": "projection"})])
def test_minibatch_std_discriminator_sees_the_extra_map(family, overrides, core_tiny_model):
    model = core_tiny_model(family, minibatch_std=True, **overrides)
    assert any(isinstance(m, MinibatchStd) for m in model.discriminator.modules())
    labels = model.default_labels(4)
    assert model.critic(torch.rand(4, 1, 28, 28) * 2 - 1, labels).shape == (4, 1)


def test_the_mlp_gan_trains_with_minibatch_std_and_augment_and_keeps_its_old_layer_names(core_tiny_model, core_slice):
    plain, spread = core_tiny_model("mlp-gan"), core_tiny_model("mlp-gan", minibatch_std=True, augment=True)
    # the option inserts a layer, so only a model that asks for it has the shifted names
    assert "discriminator.5.weight" in plain.state_dict() and "discriminator.6.weight" in spread.state_dict()
    assert spread.discriminator[-2].in_features == plain.discriminator[-2].in_features + 1
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    assert not torch.equal(spread.augmented(x), x) and torch.equal(plain.augmented(x), x)
    result = Trainer(_cfg(max_steps=2)).fit(spread, *core_slice)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.history[-1].values())


def test_cutout_blanks_one_square_of_half_the_side_and_passes_gradients_elsewhere():
    torch.manual_seed(0)
    x = torch.ones(500, 1, 28, 28, requires_grad=True)
    out = cutout(x)
    blank = out.detach()[:, 0] == 0                                  # (B,28,28)
    rows, cols = blank.any(2).sum(1), blank.any(1).sum(1)             # the square's extent per image
    assert torch.equal(blank.sum((1, 2)), rows * cols)               # one axis-aligned rectangle each
    assert rows.max() == 14 and cols.max() == 14 and rows.min() >= 7  # 14x14, cut by the edge at most by half
    assert (rows == 14).float().mean() > 0.3                          # most squares lie wholly inside
    out.sum().backward()
    assert torch.equal(x.grad[:, 0] == 0, blank)                     # no gradient through blanked pixels only


def test_a_packed_mlp_discriminator_scores_packs_and_trains(core_tiny_model, core_slice):
    model = core_tiny_model("mlp-gan", pack=2)
    x = torch.rand(7, 1, 28, 28) * 2 - 1
    assert model.critic(x).shape == (3, 1)  # three whole packs of two; the odd image is left out
    pair = torch.stack([x[0], x[1]])
    swapped = torch.stack([x[1], x[0]])
    assert not torch.allclose(model.critic(pair), model.critic(swapped))  # D reads the pack as one input
    with pytest.raises(ValueError, match="packs of 2 images; this batch has only 1"):
        model.critic(x[:1])
    result = Trainer(_cfg(max_steps=2)).fit(model, *core_slice)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.history[-1].values())
