"""A Bernoulli-Bernoulli restricted Boltzmann machine on binarized digits, trained by contrastive
divergence (CD-k) or persistent CD, with its likelihood estimated by annealed importance sampling.

Energy and free energy, for visible bits v (784) and hidden bits h (H), weights W (H,784), biases b, c:

    E(v, h) = -b.v - c.h - h.W v          p(v) = exp(-F(v)) / Z
    F(v)    = -b.v - sum_j softplus(c_j + W_j.v)

Training. The gradient of the mean -log p(v) is E_data[dF/dtheta] - E_model[dF/dtheta]. CD-k estimates
the model term from k Gibbs steps started at the data; persistent CD (Tieleman 2008) keeps the chains
going from one batch to the next. The loss minimised is mean F(v_data) - mean F(v_model) with the
chain's samples held fixed, whose gradient is exactly that estimate. Each batch is binarized afresh.

Likelihood. Z sums over 2^784 visible states, so -log p(v) = F(v) + log Z needs log Z. ``ais_log_z``
estimates it by annealed importance sampling (Neal 2001; Salakhutdinov and Murray 2008): from a
base RBM with W = 0 and the data's visible biases (whose log Z is exact), through intermediate
distributions p_beta proportional to exp(-((1-beta) E_base + beta E)), with Gibbs transitions; the
mean importance weight estimates Z / Z_base, and its spread gives a standard error. The test
likelihood is therefore an **estimate**. ``exact_log_z`` enumerates the hidden states of an RBM with
few hidden units, the check AIS is tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import setting
from genlib.likelihood import BINARIZED
from genlib.model import GenerativeModel, ModelConfig, SamplingCallback, SamplingOptions, SamplingStep, StepOutput
from genlib.registry import register

LOG2 = math.log(2.0)
DIMS = 28 * 28
MAX_ENUMERATED_HIDDEN = 20     # exact_log_z enumerates 2^H hidden states


@dataclass(frozen=True)
class RBMConfig(ModelConfig):
    """rbm: hidden units, the CD variant, and how hard AIS works after training."""

    hidden: int = setting(500, "hidden units", min=1, max=4096)
    cd_steps: int = setting(1, "Gibbs steps per update (the k of CD-k)", min=1, max=100)
    persistent: bool = setting(False, "persistent CD: keep the negative chains from batch to batch")
    ais_betas: int = setting(14_500, "intermediate distributions of the AIS estimate of log Z after training (as in "
                             "Salakhutdinov and Murray 2008)",
                             min=10, max=100_000)
    ais_runs: int = setting(100, "independent AIS runs (their spread is the standard error)", min=2, max=10_000)


@dataclass(frozen=True)
class RBMSampling(SamplingOptions):
    """How an RBM draws: the length of its Gibbs chain from noise."""

    gibbs_steps: int = setting(1000, "Gibbs steps from uniform noise", min=1, max=100_000)


@dataclass
class AISResult:
    """An AIS estimate of log Z: the value, its standard error, and the log importance weights (runs,)."""

    log_z: float
    stderr: float
    log_weights: Tensor


@register("rbm")
class RBM(GenerativeModel):
    """Bernoulli-Bernoulli RBM: filters W (H,784), visible biases b (784,), hidden biases c (H,)."""

    Config = RBMConfig
    Sampling = RBMSampling
    group = "Boltzmann machines"
    page = "pages/boltzmann.py"
    likelihood = "estimate"
    description = "Restricted Boltzmann machine: CD-k or persistent CD, log Z by annealed importance sampling"
    tiny_config = {"hidden": 8, "ais_betas": 20, "ais_runs": 4}

    def __init__(self, config: RBMConfig):
        super().__init__(config)
        self.weight = nn.Parameter(0.01 * torch.randn(config.hidden, DIMS))
        self.visible_bias = nn.Parameter(torch.zeros(DIMS))
        self.hidden_bias = nn.Parameter(torch.zeros(config.hidden))
        # log Z and its standard error, set by AIS after training (NaN until then); buffers, so they ship
        self.register_buffer("log_z", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("log_z_stderr", torch.tensor(float("nan"), dtype=torch.float64))
        self._chains: Tensor | None = None   # persistent CD's negative particles (B,784)

    # -- the energy -----------------------------------------------------------------------------------
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) (B,) for visible vectors v (B,784) or images (B,1,28,28)."""
        v = v.flatten(1)
        return -v @ self.visible_bias - F.softplus(v @ self.weight.T + self.hidden_bias).sum(1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """p(h_j = 1 | v) (B,H)."""
        return torch.sigmoid(v.flatten(1) @ self.weight.T + self.hidden_bias)

    def visible_probs(self, h: Tensor) -> Tensor:
        """p(v_i = 1 | h) (B,784)."""
        return torch.sigmoid(h @ self.weight + self.visible_bias)

    def gibbs(self, v: Tensor, steps: int = 1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(v, p(v | h) of the last step), each (B,784), after ``steps`` rounds of v -> h -> v."""
        probs = v
        for _ in range(steps):
            h = self._bernoulli(self.hidden_probs(v), generator)
            probs = self.visible_probs(h)
            v = self._bernoulli(probs, generator)
        return v, probs

    @staticmethod
    def _bernoulli(p: Tensor, generator: torch.Generator | None) -> Tensor:
        if generator is None:
            return torch.bernoulli(p)
        return (torch.rand(p.shape, generator=generator).to(p.device) < p).to(p.dtype)

    # -- training -------------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """SGD with momentum 0.5, the usual choice for CD's noisy gradients (Hinton's practical guide)."""
        return [torch.optim.SGD(self.parameters(), lr=lr, momentum=0.5)]

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """CD-k (or PCD-k): minimise mean F(data) - mean F(chain samples), the chain held fixed."""
        v_data = torch.bernoulli(batch[0].flatten(1))
        with torch.no_grad():
            start = v_data
            if self.config.persistent:
                if self._chains is None or self._chains.shape != v_data.shape:
                    self._chains = torch.bernoulli(torch.full_like(v_data, 0.5))
                start = self._chains
            v_model, _ = self.gibbs(start, self.config.cd_steps)
            if self.config.persistent:
                self._chains = v_model
            recon = self.visible_probs(self.hidden_probs(v_data))
            recon_error = F.mse_loss(recon, v_data).item()
        loss = self.free_energy(v_data).mean() - self.free_energy(v_model).mean()
        return StepOutput(loss, {"loss": loss.item(), "reconstruction_error": recon_error})

    @torch.no_grad()
    def on_train_end(self, train_images: Tensor, train_labels: Tensor) -> None:
        """Estimate log Z by AIS, with the training digits' mean as the base distribution's visible biases."""
        result = ais_log_z(self, base_visible_bias(train_images), self.config.ais_betas, self.config.ais_runs,
                           generator=torch.Generator().manual_seed(0))
        self.log_z.fill_(result.log_z)
        self.log_z_stderr.fill_(result.stderr)

    # -- the contract ---------------------------------------------------------------------------------
    def likelihood_benchmark(self) -> str:
        """Binarized digits: an RBM is a distribution over bits."""
        return BINARIZED.key

    def likelihood_note(self) -> str:
        """How the value was made."""
        return (f"F(v) + log Z, with log Z estimated by annealed importance sampling ({self.config.ais_runs} runs, "
                f"{self.config.ais_betas} temperatures): an estimate, its standard error from the runs' spread")

    def likelihood_uncertainty(self) -> float:
        """The AIS standard error of log Z, in nats: it shifts every image's -log p(v) together."""
        return float(self.log_z_stderr)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """(F(x) + log Z) / (784 ln 2) (B,) of binarized digits x; log Z is the stored AIS estimate."""
        if not torch.isfinite(self.log_z):
            raise ValueError("this RBM has no estimate of log Z yet: train it (AIS runs at the end) or call "
                             "genlib.families.boltzmann.ais_log_z")
        return ((self.free_energy(x).double() + self.log_z) / (DIMS * LOG2)).float()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, gibbs_steps: int = 1000) -> Tensor:
        """``n`` digits (N,1,28,28): a Gibbs chain from uniform noise, shown as p(v | h) of its last step.
        ``callback`` gets the chain after every 1% of the Gibbs steps: one sampler step is a chunk of
        ``gibbs_steps // 100`` Gibbs sweeps, so the payload counts chunks (0..99), as the contract asks."""
        self.check_labels(labels, n)
        v = self._bernoulli(torch.full((n, DIMS), 0.5, device=self.device), generator)
        every = max(1, gibbs_steps // 100)
        starts = range(0, gibbs_steps, every)
        probs = v
        for index, start in enumerate(starts):
            v, probs = self.gibbs(v, min(every, gibbs_steps - start), generator)
            if callback is not None:
                image = probs.view(n, 1, 28, 28)
                callback(SamplingStep(index, len(starts), image, image))
        return probs.view(n, 1, 28, 28)


# -- the partition function -------------------------------------------------------------------------------
def base_visible_bias(images: Tensor) -> Tensor:
    """log(p / (1 - p)) (784,) of the mean pixel of training images: AIS's base distribution, the
    independent-pixel model of the data (Salakhutdinov and Murray 2008)."""
    p = images.flatten(1).float().mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.log(p) - torch.log1p(-p)


@torch.no_grad()
def ais_log_z(model: RBM, base_bias: Tensor, num_betas: int = 2000, runs: int = 64,
              generator: torch.Generator | None = None) -> AISResult:
    """Annealed importance sampling estimate of log Z.

    p_beta(v, h) is proportional to exp((1 - beta) b_A.v + beta (b.v + c.h + h.W v)), beta from 0 to 1
    in ``num_betas`` steps. Each run starts with v drawn exactly from the base (independent pixels with
    biases b_A), adds log p*_beta_k(v) - log p*_beta_(k-1)(v) (unnormalised, hidden units summed out) at
    every step, and moves v by one Gibbs transition that leaves p_beta_k invariant. Then
    Z / Z_A is estimated by the mean of exp(log w), and log Z_A = sum softplus(b_A) + H log 2 exactly (the
    base's hidden units are free coins).
    The standard error of log Z is the delta method's: std(w) / (sqrt(runs) * mean(w)).
    """
    dev = model.weight.device
    w, b, c = model.weight.double(), model.visible_bias.double(), model.hidden_bias.double()
    b_a = base_bias.double().to(dev)
    betas = torch.linspace(0.0, 1.0, num_betas + 1, dtype=torch.float64)

    def log_p_star(v: Tensor, beta: float) -> Tensor:  # hidden units summed out, (runs,)
        return (1 - beta) * (v @ b_a) + beta * (v @ b) + F.softplus(beta * (v @ w.T + c)).sum(1)

    def draw(p: Tensor) -> Tensor:
        u = torch.rand(p.shape, generator=generator, dtype=torch.float64).to(dev)
        return (u < p).double()

    v = draw(torch.sigmoid(b_a).expand(runs, -1))
    log_w = torch.zeros(runs, dtype=torch.float64, device=dev)
    for k in range(1, num_betas + 1):
        beta_prev, beta = float(betas[k - 1]), float(betas[k])
        log_w += log_p_star(v, beta) - log_p_star(v, beta_prev)
        h = draw(torch.sigmoid(beta * (v @ w.T + c)))
        v = draw(torch.sigmoid((1 - beta) * b_a + beta * (h @ w + b)))
    log_z_base = F.softplus(b_a).sum() + model.config.hidden * math.log(2)   # Z_A = 2^H prod(1 + e^b_A)
    log_mean_w = torch.logsumexp(log_w, 0) - math.log(runs)
    ratio = torch.exp(log_w - log_w.max())           # w / max(w): the delta method is scale-free
    stderr = (ratio.std() / (math.sqrt(runs) * ratio.mean())).item()
    return AISResult((log_z_base + log_mean_w).item(), stderr, log_w.cpu())


@torch.no_grad()
def exact_log_z(model: RBM) -> float:
    """log Z by enumerating the 2^H hidden states (the visible units summed out in closed form):
    log Z = logsumexp_h (c.h + sum_i softplus(b_i + (W^T h)_i)). Only for H <= 20."""
    hidden = model.config.hidden
    if hidden > MAX_ENUMERATED_HIDDEN:
        raise ValueError(f"enumerating 2^{hidden} hidden states is too many; at most {MAX_ENUMERATED_HIDDEN} hidden "
                         "units")
    codes = torch.arange(2 ** hidden)
    h = ((codes.unsqueeze(1) >> torch.arange(hidden)) & 1).double().to(model.weight.device)   # (2^H, H)
    w, b, c = model.weight.double(), model.visible_bias.double(), model.hidden_bias.double()
    return torch.logsumexp(h @ c + F.softplus(h @ w + b).sum(1), 0).item()


def pseudo_log_likelihood(model: RBM, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The stochastic pseudo-log-likelihood (B,) of binary v (B,784): 784 log sigmoid(F(v~) - F(v)), v~
    being v with one random bit flipped (as scikit-learn's BernoulliRBM.score_samples). Not a likelihood:
    a proxy that needs no Z."""
    v = v.flatten(1)
    idx = torch.randint(0, DIMS, (v.shape[0],), generator=generator).to(v.device)
    flipped = v.clone()
    flipped[torch.arange(v.shape[0]), idx] = 1 - flipped[torch.arange(v.shape[0]), idx]
    return DIMS * F.logsigmoid(model.free_energy(flipped) - model.free_energy(v))
