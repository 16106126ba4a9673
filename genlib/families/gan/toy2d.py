"""A 2-D GAN you can watch learn (in the spirit of GAN Lab): points, not images.

Real points come from a named 2-D distribution; G maps noise (B,noise_dim) to points (B,2) and D
maps points (B,2) to one score (B,1). Both are small MLPs trained with the loss functions and
gradient penalty of ``genlib.families.gan``, so the toy shows exactly what the image GANs do.
What a page draws, from ``Toy2DGAN.snapshot()``:

    real     (n,2)    a fixed sample of the real distribution
    fake     (n,2)    G applied to fixed noise, so the same points move as G learns
    surface  (R,R)    D's score on a grid over ``bounds`` (row i is ys[i], column j is xs[j])
    arrows   (n,2)    where G's next update pushes each fake point: -d(g_loss)/dx

``ToySession`` runs a model on the background runner (genlib.background, like training jobs): run,
pause, single D or G steps while paused, cancel, and a snapshot that any thread may read. Nothing here
imports Streamlit, and nothing touches torch's global random state: every draw comes from the
model's own generator, so two sessions with the same seed make the same pictures.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from genlib import background
from genlib.background import Control, Failed, Work
from genlib.config import Config, setting
from genlib.families.gan.losses import LOSS_NAMES, LOSSES, gradient_penalty
from genlib.toy_data import DISTRIBUTIONS, GAUSSIAN_MEAN, init_linear_, sample_distribution  # noqa: F401 - re-exported
from genlib.training import TrainingDiverged

MAX_HISTORY = 5000           # loss rows kept per model (one per G update)
TICK_SLEEP_S = 0.02          # pause between ticks, so a running session never hogs a small CPU
MAX_RUNNING_TOY_SESSIONS = 4


# -- the model -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyConfig(Config):
    """Everything a toy run depends on; the same seed gives the same run."""

    distribution: str = setting("ring", "the real distribution", choices=tuple(DISTRIBUTIONS))
    loss: str = setting("bce", "adversarial loss (as for the image GANs)", choices=LOSS_NAMES)
    noise_dim: int = setting(2, "size of G's noise vector", min=1, max=8)
    hidden: int = setting(32, "units per hidden layer, in G and in D", min=2, max=256)
    hidden_layers: int = setting(2, "hidden layers, in G and in D", min=1, max=4)
    g_lr: float = setting(5e-4, "generator learning rate (Adam); below D's, the two time-scale rule that keeps "
                          "the toy from orbiting", min=1e-5, max=1.0, format="%.5f")
    d_lr: float = setting(2e-3, "discriminator learning rate (Adam)", min=1e-5, max=1.0, format="%.5f")
    d_steps: int = setting(1, "D updates per G update", min=1, max=10)
    adam_beta1: float = setting(0.5, "Adam beta1 for both networks", min=0.0, max=0.999)
    gp_weight: float = setting(0.1, "weight of the WGAN-GP gradient penalty", min=0.0, max=100.0)
    batch_size: int = setting(128, "real and fake points per update", min=8, max=4096)
    num_points: int = setting(512, "real and fake points drawn in the picture", min=16, max=4096)
    max_steps: int = setting(20_000, "a running session stops after this many G updates", min=1, max=10**7)
    seed: int = setting(0, "seed for weights, noise and real samples", min=0, max=2**31 - 1)


def _mlp(n_in: int, hidden: int, layers: int, n_out: int, act: Callable[[], nn.Module]) -> nn.Sequential:
    sizes = [n_in] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        mods += [nn.Linear(a, b), act()]
    return nn.Sequential(*mods, nn.Linear(sizes[-1], n_out))


@dataclass
class ToySnapshot:
    """A picture of a toy GAN at one moment; numpy copies, safe to keep and to plot."""

    step: int                                  # G updates so far
    real: np.ndarray                           # (n,2)
    fake: np.ndarray                           # (n,2) G(fixed noise)
    xs: np.ndarray                             # (R,)
    ys: np.ndarray                             # (R,)
    surface: np.ndarray                        # (R,R) D's score; row i is ys[i]
    surface_is_probability: bool               # bce/lsgan: a probability of "real"; hinge/wgan: raw
    arrows: np.ndarray                         # (n,2) where G pushes each fake point
    bounds: tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax)
    history: list[dict[str, float]] = field(default_factory=list)


class Toy2DGAN:
    """Small MLP generator and discriminator on 2-D points, updated one phase at a time."""

    def __init__(self, config: ToyConfig):
        self.config = c = config
        self.rng = torch.Generator().manual_seed(c.seed)
        self.loss = LOSSES["logit"][c.loss]
        self.generator = _mlp(c.noise_dim, c.hidden, c.hidden_layers, 2, lambda: nn.LeakyReLU(0.2))
        self.discriminator = _mlp(2, c.hidden, c.hidden_layers, 1, nn.Tanh)  # tanh: a smooth surface
        init_linear_(self.generator, self.rng)
        init_linear_(self.discriminator, self.rng)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c.g_lr, betas=(c.adam_beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.d_lr, betas=(c.adam_beta1, 0.999))
        self.fixed_noise = torch.randn((c.num_points, c.noise_dim), generator=self.rng)
        self.real_points = sample_distribution(c.distribution, c.num_points, self.rng)
        lo, hi = self.real_points.min(0).values - 1.0, self.real_points.max(0).values + 1.0
        self.bounds = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
        self.steps = 0
        self.history: deque[dict[str, float]] = deque(maxlen=MAX_HISTORY)
        self._last_d: dict[str, float] = {}

    def _update(self, loss: Tensor, opt: torch.optim.Optimizer, net: nn.Module, name: str) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the {name} became {loss.item()} at step {self.steps}; "
                                   "try lower learning rates or the wgan-gp loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(nn.utils.clip_grad_norm_(net.parameters(), math.inf)):
            raise TrainingDiverged(f"the gradients of the {name} became non-finite at step {self.steps}; "
                                   "try lower learning rates")
        opt.step()

    def d_step(self, real_batch: Tensor | None = None) -> dict[str, float]:
        """One D update on ``real_batch`` (B,2) (a fresh sample when None) and fresh fakes."""
        c = self.config
        real = real_batch if real_batch is not None else sample_distribution(c.distribution, c.batch_size, self.rng)
        with torch.no_grad():
            fake = self.generator(torch.randn((real.shape[0], c.noise_dim), generator=self.rng))
        real_out, fake_out = self.discriminator(real), self.discriminator(fake)
        loss = self.loss.d_loss_fn(real_out, fake_out)
        scalars = {}
        if self.loss.gradient_penalty:
            gp = gradient_penalty(self.discriminator, real, fake, generator=self.rng)
            loss = loss + c.gp_weight * gp
            scalars["gp"] = gp.item()
        self._update(loss, self.opt_d, self.discriminator, "discriminator loss")
        scalars.update(d_loss=loss.item(), d_real=self.loss.score(real_out).mean().item(),
                       d_fake=self.loss.score(fake_out).mean().item())
        self._last_d = scalars
        return scalars

    def g_step(self) -> dict[str, float]:
        """One G update; it completes a step and appends a row to ``history``."""
        c = self.config
        self.discriminator.requires_grad_(False)
        try:
            fake = self.generator(torch.randn((c.batch_size, c.noise_dim), generator=self.rng))
            loss = self.loss.g_loss_fn(self.discriminator(fake))
            self._update(loss, self.opt_g, self.generator, "generator loss")
        finally:
            self.discriminator.requires_grad_(True)
        self.steps += 1
        self.history.append({"step": self.steps, **self._last_d, "g_loss": loss.item()})
        return {"g_loss": loss.item()}

    def step(self) -> dict[str, float]:
        """``d_steps`` D updates, then one G update; returns the step's scalars."""
        for _ in range(self.config.d_steps):
            self.d_step()
        self.g_step()
        return dict(self.history[-1])

    @torch.no_grad()
    def fake_points(self, noise: Tensor | None = None) -> Tensor:
        """G(noise) (n,2); the fixed noise by default, so the same points can be followed."""
        return self.generator(self.fixed_noise if noise is None else noise)

    @torch.no_grad()
    def decision_surface(self, bounds: tuple[float, float, float, float] | None = None,
                         resolution: int = 60) -> tuple[Tensor, Tensor, Tensor]:
        """(xs (R,), ys (R,), values (R,R)): D's score on a grid; values[i, j] is at (xs[j], ys[i]).

        The score is a probability of "real" for bce (sigmoid of the logit) and D's own output
        for lsgan (it regresses to 1/0), and the raw, unbounded critic value for hinge and wgan-gp.
        """
        x0, x1, y0, y1 = bounds or self.bounds
        xs, ys = torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        return xs, ys, self.loss.score(self.discriminator(grid)).view(resolution, resolution)

    def generator_gradients(self, points: Tensor | None = None) -> Tensor:
        """(n,2): the direction G's loss pushes each generated point, -d g_loss(D(x)) / dx.

        Evaluated at ``points`` (the fixed fake points by default) with D held fixed. Each point is
        treated alone: this is the gradient of the batch-mean loss times n, so arrows do not
        shrink as more points are drawn. G moves its points along these arrows (through its weights).
        """
        x = (self.fake_points() if points is None else points).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            per_point = self.loss.g_loss_fn(self.discriminator(x)) * x.shape[0]
            (grad,) = torch.autograd.grad(per_point, x)
        return -grad

    def snapshot(self, resolution: int = 60) -> ToySnapshot:
        """Everything a page needs to draw the current state (see ``ToySnapshot``)."""
        fake = self.fake_points()
        xs, ys, values = self.decision_surface(resolution=resolution)
        return ToySnapshot(self.steps, self.real_points.numpy().copy(), fake.numpy().copy(), xs.numpy(),
                           ys.numpy(), values.numpy(), self.loss.probability,
                           self.generator_gradients(fake).numpy(), self.bounds, list(self.history))


# -- background sessions -----------------------------------------------------------------------------------
class ToySession(Work):
    """A Toy2DGAN trained on the background runner: run, pause, single steps, cancel, snapshot.

    Status (genlib.background): paused | running | finished (max_steps reached) | cancelled | failed
    (NaN). ``snapshot().state`` is the ``ToySnapshot`` picture. Every method may be called from any
    thread; ``self.lock`` guards the model between ticks.
    """

    kind = "toy"
    limit = MAX_RUNNING_TOY_SESSIONS
    busy_message = "{n} toy sessions are already running; pause one first"

    def __init__(self, config: ToyConfig, steps_per_tick: int = 5):
        super().__init__(title=f"2-D toy on {config.distribution}")
        self.config = config
        self.model = Toy2DGAN(config)
        self.steps_per_tick = _checked_speed(steps_per_tick)

    def run(self, control: Control) -> None:
        """Tick until paused (then wait), cancelled, diverged or at ``max_steps``."""
        while True:
            control.wait_while_paused()
            with self.lock:
                if self.status != "running":  # paused between the wait and the lock: no step after pause()
                    continue
                for _ in range(self.steps_per_tick):
                    try:
                        self.model.step()
                    except TrainingDiverged as err:
                        raise Failed(f"training diverged: {err}") from None
                    if self.model.steps >= self.config.max_steps:
                        control.publish(step=self.model.steps, total=self.config.max_steps)
                        control.final_message = f"reached max_steps={self.config.max_steps}"
                        return
            control.report(step=self.model.steps, total=self.config.max_steps, message="")
            time.sleep(TICK_SLEEP_S)

    def view(self) -> ToySnapshot:
        """The picture of the model now."""
        return self.model.snapshot()

    def pause(self) -> None:
        """Hold the session; once this returns the model takes no further step until ``start``.

        Taking the model's lock waits for a tick in progress, so the paused picture a page draws next
        shows the step the session really stopped at (single steps then count on from it).
        """
        with self.lock:
            super().pause()

    def start(self, steps_per_tick: int = 5) -> None:
        """Run continuously, ``steps_per_tick`` G updates every tick (RunnerBusy at the limit)."""
        self._require_alive()
        self.steps_per_tick = _checked_speed(steps_per_tick)
        self.resume()

    def single_step(self, phase: str) -> dict[str, float]:
        """One D update (``phase="d"``) or one G update (``"g"``), in the caller's thread."""
        steps = {"d": self.model.d_step, "g": self.model.g_step}
        if phase not in steps:
            raise ValueError(f"phase must be 'd' or 'g', got {phase!r}")
        self._require_alive()
        with self.lock:
            try:
                scalars = steps[phase]()
            except TrainingDiverged as err:
                self.fail(f"training diverged: {err}")
                raise
            self.control.publish(step=self.model.steps, total=self.config.max_steps)
            return scalars

    def _require_alive(self) -> None:
        if self.status in ("cancelled", "failed", "finished"):
            raise RuntimeError(f"this session is {self.status}; start a new one")


def _checked_speed(steps_per_tick: int) -> int:
    if not 1 <= steps_per_tick <= 1000:
        raise ValueError(f"steps_per_tick must be 1 to 1000, got {steps_per_tick}")
    return steps_per_tick


def start_toy_session(config: ToyConfig | dict[str, Any], *, run: bool = True, steps_per_tick: int = 5) -> ToySession:
    """Create a session (validating a dict config) on the background runner; with ``run`` it runs at once.

    Raises ConfigError for a bad config and RunnerBusy when MAX_RUNNING_TOY_SESSIONS run already
    (then nothing is registered). ``run=False`` gives a paused session for step-by-step mode.
    """
    config = ToyConfig.from_dict(config) if isinstance(config, dict) else config
    session = background.start(ToySession(config, steps_per_tick), paused=not run)
    assert isinstance(session, ToySession)
    return session
