"""genlib.training: the shared Trainer (NaN stop, cancel, EMA, clipping, seeding, multi-optimizer steps)."""
from __future__ import annotations

import math

import threading
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import genlib
from genlib import TrainConfig, Trainer, TrainingCancelled, TrainingDiverged, pick_device
from genlib.config import setting
from genlib.families.autoencoders import VAE
from genlib.model import GenerativeModel, ModelConfig, StepOutput
from genlib.training import Progress, TrainResult

pytestmark = pytest.mark.usefixtures("core_runs_dir")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "max_steps": 4, "batch_size": 16, "device": "cpu", **kw})


def _finite(model: nn.Module) -> bool:
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- test-only models (local subclasses, never registered) -------------------------------------------
class NaNAtStep3(VAE):
    """A tiny VAE whose loss turns NaN at step 3."""

    def training_step(self, batch, step):
        out = super().training_step(batch, step)
        if step == 3:
            return StepOutput(out.loss * float("nan"), out.scalars)
        return out


class NaNGradAtStep2(VAE):
    """Finite loss, but at step 2 its gradient is NaN (d/dx sqrt(x) at 0 is inf, times 0)."""

    def training_step(self, batch, step):
        out = super().training_step(batch, step)
        if step == 2:
            p = next(self.parameters())
            return StepOutput(out.loss + (p * 0).abs().sqrt().sum(), out.scalars)
        return out


class PlainSGD(VAE):
    """Plain SGD, so one step moves the weights by exactly lr * (clipped) gradient."""

    def configure_optimizers(self, lr):
        return [torch.optim.SGD(self.parameters(), lr=lr)]


@dataclass(frozen=True)
class ToyGANConfig(ModelConfig):
    noise_dim: int = setting(8, "size of the noise vector", min=1, max=64)


class ToyGAN(GenerativeModel):
    """A two-network, two-optimizer model: it owns its optimisation step."""

    Config = ToyGANConfig

    def __init__(self, config: ToyGANConfig):
        super().__init__(config)
        self.generator = nn.Linear(config.noise_dim, 28 * 28)
        self.discriminator = nn.Linear(28 * 28, 1)

    def configure_optimizers(self, lr):
        return [torch.optim.Adam(self.discriminator.parameters(), lr=lr),
                torch.optim.Adam(self.generator.parameters(), lr=lr)]

    def _fake(self, n, generator=None):
        z = torch.randn((n, self.config.noise_dim), generator=generator).to(self.device)
        return torch.sigmoid(self.generator(z)).view(n, 1, 28, 28)

    def optimization_step(self, batch, optimizers, tools):
        x, _ = batch
        opt_d, opt_g = optimizers
        bce = nn.functional.binary_cross_entropy_with_logits
        with tools.autocast():
            real = self.discriminator(x.flatten(1))
            fake = self.discriminator(self._fake(x.shape[0]).detach().flatten(1))
            d_loss = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
        tools.backward_and_step(d_loss, opt_d, list(self.discriminator.parameters()))
        with tools.autocast():
            out = self.discriminator(self._fake(x.shape[0]).flatten(1))
            g_loss = bce(out, torch.ones_like(out))
        tools.backward_and_step(g_loss, opt_g, list(self.generator.parameters()))
        return StepOutput(g_loss, {"d_loss": d_loss.item(), "g_loss": g_loss.item()})

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, callback=None):
        return self._fake(n, generator)


def _tiny(cls, core_tiny_config, seed=0):
    torch.manual_seed(seed)
    return cls(core_tiny_config("vae"))


# -- stop on NaN -------------------------------------------------------------------------------------
def test_nan_loss_raises_diverged_and_keeps_finite_weights(core_tiny_config, core_slice):
    model = _tiny(NaNAtStep3, core_tiny_config)
    result = TrainResult(steps=0)
    with pytest.raises(TrainingDiverged) as err:
        Trainer(_cfg(max_steps=10)).fit(model, *core_slice, result=result)
    msg = str(err.value)
    assert "nan" in msg and "step 3" in msg and "learning rate" in msg
    assert result.steps == 3 and len(result.history) == 3
    assert _finite(model)
    assert not model.training
    assert torch.isfinite(model.sample(2)).all()  # still usable


def test_nan_gradient_with_finite_loss_stops_before_the_weights_are_spoiled(core_tiny_config, core_slice):
    # No grad clipping: the Trainer must still notice the non-finite gradient before optimizer.step().
    model = _tiny(NaNGradAtStep2, core_tiny_config)
    result = TrainResult(steps=0)
    with pytest.raises(TrainingDiverged, match="step 2"):
        Trainer(_cfg(max_steps=10, grad_clip=0.0)).fit(model, *core_slice, result=result)
    assert result.steps == 2
    assert _finite(model), "a NaN gradient reached the weights"


def test_nan_gradient_with_clipping_also_stops(core_tiny_config, core_slice):
    model = _tiny(NaNGradAtStep2, core_tiny_config)
    with pytest.raises(TrainingDiverged, match="step 2"):
        Trainer(_cfg(max_steps=10, grad_clip=1.0)).fit(model, *core_slice)
    assert _finite(model)


# -- cancel ------------------------------------------------------------------------------------------
def test_cancel_from_a_callback_at_step_3(core_tiny_config, core_slice):
    model = _tiny(VAE, core_tiny_config)
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(progress: Progress, m):
        seen.append(progress.step)
        if progress.step == 3:
            cancel.set()

    result = TrainResult(steps=0)
    with pytest.raises(TrainingCancelled, match="cancelled at step 3"):
        Trainer(_cfg(max_steps=50), [on_step], cancel).fit(model, *core_slice, result=result)
    assert result.steps == 3 and seen == [1, 2, 3]
    assert _finite(model) and not model.training


def test_cancel_before_start_runs_no_step(core_tiny_config, core_slice):
    model = _tiny(VAE, core_tiny_config)
    before = _weights(model)
    cancel = threading.Event()
    cancel.set()
    result = TrainResult(steps=0)
    with pytest.raises(TrainingCancelled):
        Trainer(_cfg(ema_decay=0.9), cancel=cancel).fit(model, *core_slice, result=result)
    assert result.steps == 0
    assert _same(before, _weights(model))


# -- progress ----------------------------------------------------------------------------------------
def test_progress_and_history(core_tiny_config, core_slice):
    model = _tiny(VAE, core_tiny_config)
    got: list[Progress] = []
    result = Trainer(_cfg(epochs=3, max_steps=0), [lambda p, m: got.append(p)]).fit(model, *core_slice)
    # 64 images / 16 per batch = 4 steps per epoch, 3 epochs
    assert result.steps == 12 and [p.step for p in got] == list(range(1, 13))
    assert {p.total_steps for p in got} == {12}
    assert [p.epoch for p in got] == [1] * 4 + [2] * 4 + [3] * 4
    assert got[-1].fraction == 1.0 and got[-1].eta_s == 0.0
    assert [r["step"] for r in result.history] == list(range(1, 13))
    assert {"loss", "recon", "kl", "beta"} <= set(result.history[0])
    assert result.seconds > 0


def test_max_steps_caps_the_run(core_tiny_config, core_slice):
    model = _tiny(VAE, core_tiny_config)
    assert Trainer(_cfg(epochs=5, max_steps=6)).fit(model, *core_slice).steps == 6


def _learning_rates(model, config: TrainConfig, images, labels) -> list[float]:
    """The first optimizer's learning rate after each step of a fit."""
    optimizers: list = []
    original = model.configure_optimizers
    model.configure_optimizers = lambda lr: optimizers.extend(original(lr)) or optimizers
    seen: list[float] = []
    Trainer(config, callbacks=[lambda p, m: seen.append(optimizers[0].param_groups[0]["lr"])]).fit(model, images,
                                                                                                  labels)
    return seen


def test_cosine_schedule_decays_the_learning_rate_to_zero_on_the_last_step(core_tiny_config, core_slice):
    seen = _learning_rates(_tiny(VAE, core_tiny_config), _cfg(epochs=5, max_steps=8, lr_schedule="cosine"), *core_slice)
    assert len(seen) == 8 and seen[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    assert seen[0] == pytest.approx(1e-3 * (1 + math.cos(math.pi / 8)) / 2)
    assert _learning_rates(_tiny(VAE, core_tiny_config), _cfg(epochs=5, max_steps=8), *core_slice) == [1e-3] * 8


def test_warmup_rises_linearly_then_the_cosine_decays(core_tiny_config, core_slice):
    seen = _learning_rates(_tiny(VAE, core_tiny_config),
                           _cfg(epochs=5, max_steps=10, lr_schedule="cosine", warmup_steps=3), *core_slice)
    # after step k the next step's rate: warm-up (k+1)/4 for k < 3, then a cosine over the last 7 steps
    expected = [1e-3 * (k + 1) / 4 if k < 3 else 1e-3 * (1 + math.cos(math.pi * (k - 3) / 7)) / 2
                for k in range(1, 11)]
    assert seen == pytest.approx(expected, abs=1e-12) and seen[-1] == pytest.approx(0.0, abs=1e-12)
    flat = _learning_rates(_tiny(VAE, core_tiny_config), _cfg(epochs=5, max_steps=6, warmup_steps=2), *core_slice)
    assert flat == pytest.approx([1e-3 * 2 / 3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])


def test_cpu_bf16_autocasts_the_step_on_the_cpu_only_when_asked(core_tiny_config, core_slice):
    seen = []
    model = _tiny(VAE, core_tiny_config)
    step = model.training_step
    model.training_step = lambda batch, i: seen.append(torch.get_autocast_dtype("cpu")
                                                       if torch.is_autocast_enabled("cpu") else None) or step(batch, i)
    Trainer(_cfg(max_steps=2, device="cpu", cpu_bf16=True)).fit(model, *core_slice)
    assert seen == [torch.bfloat16] * 2 and _finite(model)
    seen.clear()
    Trainer(_cfg(max_steps=2, device="cpu")).fit(model, *core_slice)
    assert seen == [None] * 2


# -- EMA, clipping -----------------------------------------------------------------------------------
def test_ema_changes_the_shipped_weights(core_tiny_config, core_slice):
    plain, ema = _tiny(VAE, core_tiny_config), _tiny(VAE, core_tiny_config)
    assert _same(_weights(plain), _weights(ema))
    Trainer(_cfg(max_steps=4, ema_decay=0.0)).fit(plain, *core_slice)
    Trainer(_cfg(max_steps=4, ema_decay=0.9)).fit(ema, *core_slice)
    assert not _same(_weights(plain), _weights(ema))
    assert _finite(ema)
    # the averaged weights lag behind: they stay nearer the initial weights than the raw ones
    init = _weights(_tiny(VAE, core_tiny_config))
    dist = lambda w: sum((w[k] - init[k]).pow(2).sum().item() for k in init)  # noqa: E731
    assert dist(_weights(ema)) < dist(_weights(plain))


def test_grad_clip_bounds_the_update(core_tiny_config, core_slice):
    # SGD with lr=1: one step moves the weights by exactly the (clipped) gradient.
    def one_step_move(clip):
        model = _tiny(PlainSGD, core_tiny_config)
        params0 = [p.detach().clone() for p in model.parameters()]
        Trainer(_cfg(max_steps=1, lr=1.0, grad_clip=clip)).fit(model, *core_slice)
        return torch.sqrt(sum((p - q).pow(2).sum() for p, q in zip(model.parameters(), params0))).item()

    clipped, free = one_step_move(1e-3), one_step_move(0.0)
    assert clipped <= 1e-3 * 1.01
    assert free > 10 * clipped


# -- seeding -----------------------------------------------------------------------------------------
def test_same_seed_same_weights_different_seed_different(core_tiny_config, core_slice):
    runs = []
    for seed in (7, 7, 8):
        model = _tiny(VAE, core_tiny_config, seed=0)  # identical init
        torch.rand(3)  # unrelated random work between runs must not matter
        Trainer(_cfg(max_steps=4, seed=seed)).fit(model, *core_slice)
        runs.append(_weights(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_train_run_seed_covers_the_initial_weights(core_tiny_config, tmp_path):
    # TrainConfig.seed promises "init, shuffling and noise": two runs with one seed are identical
    # even when other random work happened in the process in between.
    cfg = core_tiny_config("vae")
    train = _cfg(max_steps=2, seed=3)
    paths = []
    for i in range(2):
        torch.rand(17 + i)
        paths.append(genlib.train_run("vae", cfg, train, tmp_path / f"run{i}", evaluate_model=False).path)
    a, b = (genlib.load_model(p)[0] for p in paths)
    assert _same(_weights(a), _weights(b))


# -- a family with two optimizers ----------------------------------------------------------------------
def test_multi_optimizer_family_trains_through_the_same_trainer(core_slice):
    torch.manual_seed(0)
    model = ToyGAN(ToyGANConfig())
    g0, d0 = _weights(model.generator), _weights(model.discriminator)
    result = Trainer(_cfg(max_steps=3, grad_clip=5.0, ema_decay=0.5)).fit(model, *core_slice)
    assert result.steps == 3
    assert {"d_loss", "g_loss"} <= set(result.history[-1])
    assert not _same(g0, _weights(model.generator))
    assert not _same(d0, _weights(model.discriminator))
    assert _finite(model)
    x = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_multi_optimizer_family_nan_in_second_loss_diverges(core_slice):
    class BadG(ToyGAN):
        def optimization_step(self, batch, optimizers, tools):
            out = super().optimization_step(batch, optimizers, tools) if tools.step < 1 else None
            if out is None:
                tools.backward_and_step(self.generator.weight.sum() * float("nan"), optimizers[1],
                                        list(self.generator.parameters()))
            return out

    torch.manual_seed(0)
    model = BadG(ToyGANConfig())
    with pytest.raises(TrainingDiverged, match="step 1"):
        Trainer(_cfg(max_steps=3)).fit(model, *core_slice)
    assert _finite(model)


# -- device ------------------------------------------------------------------------------------------
def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    auto = pick_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda" and pick_device("cuda").type == "cuda"
    else:
        assert auto.type == "cpu"
        with pytest.raises(RuntimeError) as err:
            pick_device("cuda")
        assert "no CUDA GPU is available" in str(err.value) and "'auto' or 'cpu'" in str(err.value)


def test_trainer_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        assert Trainer(TrainConfig(device="cuda")).device.type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            Trainer(TrainConfig(device="cuda"))
