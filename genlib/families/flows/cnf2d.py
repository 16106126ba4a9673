"""A continuous normalizing flow on 2-D points (FFJORD, Grathwohl et al. 2019), trained live.

The flow is an ODE dz/dt = f(z, t) with f a small MLP, integrated by torchdiffeq from the data
(t = 0) to the base N(0, I) (t = 1). Along the way the log-density changes by the trace of f's
Jacobian (the instantaneous change of variables, Chen et al. 2018):

    log p(x) = log N(z(1); 0, I) + integral_0^1 tr(df/dz(z(t), t)) dt

In 2-D the trace is two autograd derivatives, so it is computed exactly here, not with FFJORD's
Hutchinson estimator: the log-likelihood is exact up to the ODE solver's tolerance. Samples are
z(1) ~ N(0, I) integrated backwards to t = 0. Every call counts the solver's function evaluations
(NFE), which grow as the learned dynamics get more complex.

``CNFSession`` trains one on the background runner (``genlib.background``) and publishes, for a page
to draw: the loss curve, the NFE, the density on a grid and the trajectories of points from noise
to data. Nothing here imports Streamlit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from genlib.background import Control, Failed, Work
from genlib.config import Config, setting
from genlib.toy_data import DISTRIBUTIONS, init_linear_, sample_distribution

LOG_2PI = math.log(2 * math.pi)
BOUNDS = (-3.5, 3.5)           # the square the density is drawn on
TEST_POINTS = 2000             # held-out points the exact log-likelihood is reported on
MAX_RUNNING_CNF_SESSIONS = 2


@dataclass(frozen=True)
class CNFConfig(Config):
    """Everything a 2-D CNF run depends on; the same seed gives the same run."""

    distribution: str = setting("moons", "the 2-D data to fit", choices=tuple(DISTRIBUTIONS))
    hidden: int = setting(64, "units per hidden layer of the dynamics f(z, t)", min=4, max=256)
    hidden_layers: int = setting(3, "hidden layers of f", min=1, max=5)
    lr: float = setting(3e-3, "learning rate (Adam)", min=1e-5, max=0.1, format="%.5f")
    batch_size: int = setting(256, "points per training step", min=16, max=4096)
    steps: int = setting(1500, "training steps", min=1, max=20_000)
    tolerance: float = setting(1e-4, "the adaptive solver's relative and absolute tolerance", min=1e-7, max=1e-1,
                               format="%.0e")
    resolution: int = setting(50, "grid points per side of the density picture", min=10, max=200)
    every: int = setting(25, "steps between refreshed pictures", min=1, max=1000)
    seed: int = setting(0, "seed for the weights and the data", min=0, max=2**31 - 1)


class Dynamics(nn.Module):
    """f(z, t): an MLP on (z, t) (B,3) -> dz/dt (B,2), with smooth activations (the ODE needs them)."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        sizes = [3] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            mods += [nn.Linear(a, b), nn.Softplus()]
        self.net = nn.Sequential(*mods, nn.Linear(sizes[-1], 2))
        self.nfe = 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """dz/dt (B,2) at time t (a scalar tensor) for points z (B,2); counts one evaluation."""
        self.nfe += 1
        return self.net(torch.cat([z, t.expand(z.shape[0], 1)], 1))


class CNF2D(nn.Module):
    """The continuous flow: exact log-density, sampling and trajectories by integrating ``Dynamics``."""

    def __init__(self, hidden: int = 64, layers: int = 3, tolerance: float = 1e-4):
        super().__init__()
        self.dynamics = Dynamics(hidden, layers)
        self.tolerance = tolerance

    def _solve(self, fn, state, times: Tensor):
        return odeint(fn, state, times, method="dopri5", rtol=self.tolerance, atol=self.tolerance)

    def log_prob(self, x: Tensor) -> tuple[Tensor, int]:
        """(exact log p(x) (N,), function evaluations) for points x (N,2): z and the trace integral
        solved together from t = 0 to 1."""
        self.dynamics.nfe = 0
        grad_mode = torch.is_grad_enabled()

        def augmented(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            z = state[0]
            with torch.enable_grad():
                z = z if z.requires_grad else z.requires_grad_(True)
                dz = self.dynamics(t, z)
                trace = sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=grad_mode, retain_graph=True)[0][:, i]
                            for i in range(2))
            if not grad_mode:  # evaluation: no graph is kept between solver steps
                dz, trace = dz.detach(), trace.detach()
            return dz, trace

        z1, delta = (s[-1] for s in self._solve(augmented, (x, x.new_zeros(x.shape[0])),
                                                torch.tensor([0.0, 1.0])))
        base = -0.5 * (z1 ** 2).sum(1) - LOG_2PI
        return base + delta, self.dynamics.nfe

    @torch.no_grad()
    def trajectories(self, z1: Tensor, times: int = 41) -> Tensor:
        """Positions (times, N, 2) of base points z1 (N,2) carried from t = 1 (noise) to t = 0 (data)."""
        self.dynamics.nfe = 0
        return self._solve(self.dynamics, z1, torch.linspace(1.0, 0.0, times))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points (n,2): z(1) ~ N(0, I) integrated back to t = 0."""
        return self.trajectories(torch.randn((n, 2), generator=generator), times=2)[-1]

    @torch.no_grad()
    def density_grid(self, resolution: int, bounds: tuple[float, float] = BOUNDS) -> tuple[np.ndarray, int]:
        """(p(x) on a resolution x resolution grid over ``bounds`` (row i is y[i], column j is x[j]), NFE)."""
        axis = torch.linspace(*bounds, resolution)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        points = torch.stack([xs.flatten(), ys.flatten()], 1)
        log_p, nfe = self.log_prob(points)
        return log_p.exp().view(resolution, resolution).numpy(), nfe


@dataclass
class CNFSnapshot:
    """What a page draws of a CNF run at one moment (plain numpy and lists)."""

    step: int
    losses: list[float] = field(default_factory=list)      # mean negative log-likelihood (nats) per step
    nfe: list[int] = field(default_factory=list)           # forward-pass function evaluations per step
    data: np.ndarray | None = None                         # (n,2) training points drawn in the picture
    density: np.ndarray | None = None                      # (R,R) model density on the grid
    density_nfe: int = 0
    trajectories: np.ndarray | None = None                 # (T,n,2) from noise (t=1) to data (t=0)
    test_log_likelihood: float | None = None               # mean exact log p(x) of held-out points, nats
    bounds: tuple[float, float] = BOUNDS


class CNFSession(Work):
    """Trains a ``CNF2D`` on the background runner, publishing a ``CNFSnapshot`` every ``every`` steps."""

    kind = "cnf2d"
    limit = MAX_RUNNING_CNF_SESSIONS
    busy_message = "{n} 2-D flows are already training; wait for one to end or cancel it"

    def __init__(self, config: CNFConfig, key: str | None = None):
        super().__init__(key, title=f"2-D continuous flow on {config.distribution}")
        self.config = config
        self.model = CNF2D(config.hidden, config.hidden_layers, config.tolerance)
        self.rng = torch.Generator().manual_seed(config.seed)
        init_linear_(self.model, self.rng)
        def seeded(offset: int) -> torch.Generator:  # separate streams for the picture, the test set, the base
            return torch.Generator().manual_seed(config.seed + offset)

        self.shown = sample_distribution(config.distribution, 500, seeded(1))
        self.test = sample_distribution(config.distribution, TEST_POINTS, seeded(2))
        self.base = torch.randn((300, 2), generator=seeded(3))
        self._snapshot = CNFSnapshot(0, data=self.shown.numpy())

    def view(self) -> CNFSnapshot:
        """The latest picture (read under the work's lock)."""
        return self._snapshot

    def _picture(self, step: int, losses: list[float], nfe: list[int]) -> CNFSnapshot:
        self.model.eval()
        density, density_nfe = self.model.density_grid(self.config.resolution)
        with torch.no_grad():
            test_ll = self.model.log_prob(self.test)[0].mean().item()
        paths = self.model.trajectories(self.base).numpy()
        self.model.train()
        return CNFSnapshot(step, list(losses), list(nfe), self.shown.numpy(), density, density_nfe, paths, test_ll)

    def run(self, control: Control) -> CNFSnapshot:
        """Maximum-likelihood training for ``steps`` steps, a fresh batch each; the last picture."""
        c = self.config
        optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)
        losses: list[float] = []
        nfe: list[int] = []
        start = time.perf_counter()
        for step in range(1, c.steps + 1):
            control.wait_while_paused()
            batch = sample_distribution(c.distribution, c.batch_size, self.rng)
            log_p, evaluations = self.model.log_prob(batch)
            loss = -log_p.mean()
            if not torch.isfinite(loss):
                raise Failed(f"training diverged: the negative log-likelihood became {loss.item()} at step {step}; "
                             "lower the learning rate or the tolerance")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            nfe.append(evaluations)
            if step % c.every == 0 or step == c.steps:
                picture = self._picture(step, losses, nfe)
                with self.lock:
                    self._snapshot = picture
            elapsed = time.perf_counter() - start
            control.report(step / c.steps, f"step {step}/{c.steps} · −log p {loss.item():.3f} nats · NFE {evaluations}",
                           step=step, total=c.steps, eta_s=elapsed / step * (c.steps - step))
        control.final_message = (f"trained {c.steps} steps; held-out exact log-likelihood "
                                 f"{self._snapshot.test_log_likelihood:.3f} nats per point")
        return self._snapshot


def start_cnf_session(config: CNFConfig, owner: str | None = None) -> CNFSession:
    """A new CNF run on the background runner (``RunnerBusy`` when too many are running)."""
    from genlib import background

    session = CNFSession(config)
    session.owner = owner
    return background.start(session)  # type: ignore[return-value]
