"""Normalizing flows: every layer and every flow inverts exactly, their log-determinants match a
brute-force Jacobian, the bits/dim count the dequantization and logit, and training lowers them."""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from genlib.families.flows import (ActNorm, AffineCoupling, InvConv1x1, MLPAdditiveCoupling, Scaling, Squeeze,
                                   checkerboard)

FLOWS = ("nice", "realnvp", "glow")


def _perturbed(module: torch.nn.Module, seed: int = 0, size: float = 0.05) -> torch.nn.Module:
    """The module in float64 with every parameter moved off its (often zero, identity) start."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(size * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module.eval()


def _brute_force_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log |det J| of fn at one item x (shape of one item), from the full Jacobian."""
    jac = jacobian(lambda v: fn(v.view(1, *x.shape)).flatten(), x)
    return torch.linalg.slogdet(jac.reshape(x.numel(), x.numel()))[1]


LAYERS = {
    "checkerboard coupling": (lambda: AffineCoupling(2, 8, "checkerboard", 1), (2, 4, 4)),
    "channel coupling": (lambda: AffineCoupling(4, 8, "channel", 0), (4, 2, 2)),
    "channel coupling, odd split": (lambda: AffineCoupling(3, 8, "channel", 1), (3, 2, 2)),
    "additive coupling (NICE)": (lambda: AffineCoupling(4, 8, "channel", 1, additive=True), (4, 2, 2)),
    "actnorm": (lambda: ActNorm(3), (3, 2, 2)),
    "invertible 1x1 conv": (lambda: InvConv1x1(4), (4, 3, 3)),
    "squeeze": (lambda: Squeeze(), (2, 4, 4)),
    "MLP additive coupling": (lambda: MLPAdditiveCoupling(12, 16, 2, 0), (12,)),
    "scaling": (lambda: Scaling(12), (12,)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_each_layer_inverts_and_its_logdet_is_the_jacobians(name):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = _perturbed(make())
    x = torch.randn(5, *shape, dtype=torch.float64)
    z, logdet = layer(x)
    assert torch.allclose(layer.inverse(z), x, atol=1e-10), name
    for i in range(2):
        brute = _brute_force_logdet(lambda v: layer(v)[0], x[i])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-8), name
    if name.startswith("additive") or name.startswith("MLP") or name == "squeeze":
        assert torch.allclose(logdet, torch.zeros(5, dtype=torch.float64))  # volume-preserving


def test_a_checkerboard_coupling_leaves_its_own_squares_alone():
    layer = _perturbed(AffineCoupling(1, 8, "checkerboard", 0))
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    z, _ = layer(x)
    kept = checkerboard(6, 6, 0).bool().expand_as(x)
    assert torch.equal(z[kept], x[kept]) and not torch.allclose(z[~kept], x[~kept])


def test_actnorm_starts_from_the_statistics_of_its_first_batch():
    layer = ActNorm(3).train()
    x = 2 + 5 * torch.randn(64, 3, 4, 4)
    z, _ = layer(x)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-5 and (z.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    before = layer.bias.clone()
    layer(x + 10)  # later batches do not re-initialise
    assert torch.equal(layer.bias, before) and bool(layer.initialised)


def test_under_bf16_autocast_only_the_coupling_networks_round_the_main_path_does_not():
    """Training with --cpu-bf16: a coupling's scale and shift may come from a bf16 network (any function of
    the kept half keeps the layer invertible), but the 1x1 convolution is the map itself, so it stays exact."""
    torch.manual_seed(0)
    conv, coupling = InvConv1x1(4), _perturbed(AffineCoupling(4, 8, "channel", 0)).float()
    x = torch.randn(2, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, logdet = conv(x)
        zc, logdet_c = coupling(x)
    assert z.dtype == torch.float32 and torch.equal(z, conv(x)[0]) and torch.equal(logdet, conv(x)[1])
    assert zc.dtype == torch.float32 and logdet_c.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the same bf16 network undoes it: the kept half is unchanged
        assert torch.allclose(coupling.inverse(zc), x, atol=1e-5)


@pytest.mark.parametrize("family", FLOWS)
def test_every_flow_round_trips_and_its_logdet_matches_the_full_jacobian(family, core_tiny_model):
    model = core_tiny_model(family)
    model.train().training_step((torch.rand(8, 1, 28, 28), None), 0)  # initialises actnorm
    model = _perturbed(model, seed=1, size=0.02)
    x = torch.round(torch.rand(3, 1, 28, 28, dtype=torch.float64) * 255) / 255
    s, _ = model.to_logit(model.dequantize(x, generator=torch.Generator().manual_seed(0)))
    latents, _, logdet = model.flow_forward(model.shape_input(s))
    back = model.shape_output(model.flow_inverse(latents, 3))
    assert (back - s).abs().max() < 1e-4                                   # x -> z -> x within 1e-4
    assert torch.equal(model.decode(model.encode(x)), x)                   # and back onto the same grey levels
    assert model.encode(x).shape == (3, 784)

    def flat_latents(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([z.flatten(1) for z in model.flow_forward(model.shape_input(v))[0]], 1)

    brute = _brute_force_logdet(flat_latents, s[0])                         # 784 x 784
    assert logdet[0].item() == pytest.approx(brute.item(), abs=1e-6)


def test_the_bits_per_dim_count_the_dequantization_and_the_logit(core_tiny_model):
    """An untrained RealNVP is the identity (zero-initialised couplings), so log p(x) has a closed form:
    a standard normal at s = logit(a + (1-2a) y), the logit's Jacobian, and 8 bits for the bin width."""
    model = core_tiny_model("realnvp").double().eval()
    x = torch.round(torch.rand(2, 1, 28, 28, dtype=torch.float64) * 255) / 255
    y = model.dequantize(x, generator=torch.Generator().manual_seed(3))
    a = model.config.logit_alpha
    p = a + (1 - 2 * a) * y
    s = torch.log(p / (1 - p))
    log_density = (-0.5 * s ** 2 - 0.5 * math.log(2 * math.pi) + math.log(1 - 2 * a) - torch.log(p * (1 - p)))
    expected = -log_density.flatten(1).sum(1) / (784 * math.log(2)) + 8
    got = model.bits_per_dim(x, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, expected, atol=1e-9)
    assert model.likelihood == "exact" and model.likelihood_benchmark() == "8-bit"
    assert "dequantized" in model.likelihood_note()


@pytest.mark.parametrize("family", FLOWS)
def test_training_lowers_the_bits_per_dim(family, core_tiny_model, core_slice):
    model = core_tiny_model(family)
    x = core_slice[0][:32]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - the same dequantization each time
    before = model.bits_per_dim(x, generator=gen()).mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(25):
        optimizer.zero_grad()
        model.training_step((x, None), step).loss.backward()
        optimizer.step()
    model.eval()
    after = model.bits_per_dim(x, generator=gen()).mean()
    assert torch.isfinite(after) and after < before - 0.5, (family, before, after)


def test_temperature_scales_the_latents(core_tiny_model):
    model = _perturbed(core_tiny_model("glow"), size=0.02).float()
    cold = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.equal(cold[0], cold[3])  # every latent at its prior's mean: one image
    warm = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=1.0)
    assert not torch.equal(warm[0], warm[3])
    levels = torch.round(warm * 255)
    assert torch.allclose(levels, warm * 255, atol=1e-4) and warm.min() >= 0 and warm.max() <= 1


# -- the 2-D continuous flow (FFJORD) ----------------------------------------------------------------------
class _LinearDynamics(torch.nn.Module):
    """dz/dt = A z: the flow map is expm(A), so log p(x) = log N(expm(A) x) + tr(A) in closed form."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a, self.nfe = a, 0

    def forward(self, t, z):
        self.nfe += 1
        return z @ self.a.T


def test_the_cnf_log_likelihood_is_the_change_of_variables_integral():
    from genlib.families.flows.cnf2d import CNF2D

    cnf = CNF2D(tolerance=1e-7)
    a = torch.tensor([[0.3, -0.8], [0.5, -0.2]])
    cnf.dynamics = _LinearDynamics(a)
    x = torch.randn(7, 2)
    log_p, nfe = cnf.log_prob(x)
    z1 = x @ torch.linalg.matrix_exp(a).T
    expected = -0.5 * (z1 ** 2).sum(1) - math.log(2 * math.pi) + torch.trace(a)
    assert torch.allclose(log_p, expected, atol=1e-5) and nfe > 2
    back = cnf.trajectories(z1)[-1]                       # from t = 1 back to t = 0
    assert torch.allclose(back, x, atol=1e-5)


def test_an_untrained_cnf_density_integrates_to_one_on_the_grid():
    from genlib.families.flows.cnf2d import BOUNDS, CNF2D

    torch.manual_seed(0)
    density, nfe = CNF2D(hidden=16, layers=2).density_grid(60)
    cell = ((BOUNDS[1] - BOUNDS[0]) / 59) ** 2
    assert density.shape == (60, 60) and nfe > 0
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=0.05)


def test_a_cnf_session_trains_on_the_runner_and_publishes_pictures():
    from genlib.families.flows.cnf2d import CNFConfig, start_cnf_session

    config = CNFConfig(distribution="gaussian", hidden=16, hidden_layers=2, steps=30, every=15, batch_size=128,
                       resolution=12, tolerance=1e-3)
    session = start_cnf_session(config)
    snap = session.wait(timeout=300)
    assert snap.status == "finished", snap.message
    state = snap.state
    assert state.step == 30 and len(state.losses) == 30 and all(n > 0 for n in state.nfe)
    assert state.density.shape == (12, 12) and state.trajectories.shape == (41, 300, 2)
    assert state.losses[-1] < state.losses[0]  # it learns the Gaussian
    assert "held-out exact log-likelihood" in snap.message and state.test_log_likelihood is not None
