"""Normalizing flows on 28x28 digits, trained by maximum likelihood: NICE, RealNVP and Glow.

A flow is an invertible map f from an image to a latent z of the same size, so
log p(x) = log p(z) + log |det df/dx| exactly (the change of variables). Here, for an 8-bit digit x:

    y = (255 x + u) / 256,  u ~ U[0,1)^784         uniform dequantization: y in [0,1)
    s = logit(a + (1 - 2a) y)                      onto the real line; its Jacobian is counted
    z = f(s)                                       the layers of ``layers.py``, z ~ N(0, I) (NICE: logistic)

    bits/dim = -(log p(z) + log|det df/ds| + log|ds/dy|) / (784 ln 2) + 8

The +8 is the 1/256 width of each grey level's bin in y. This is the exact log-density of the
dequantized digit, and by Jensen's inequality an upper bound on -log2 P(x) of the 8-bit digit, which
is how the published figures (RealNVP, Glow, FFJORD) are reported too.

Architectures (``layers.py`` holds the layers):

- NICE (Dinh et al. 2015): the digit as a flat vector, 4 additive MLP couplings and a diagonal scale;
  logistic prior. Volume-preserving apart from the scale.
- RealNVP (Dinh et al. 2017): multi-scale. At 1x28x28: checkerboard affine couplings, squeeze to
  4x14x14, channel couplings, then half the channels are factored out as z1 (2x14x14); the rest goes
  through the same again at 14x14, and the last 8x7x7 is z2.
- Glow (Kingma and Dhariwal 2018): squeeze, then K steps of actnorm, invertible 1x1 convolution and
  affine channel coupling, then a split whose factored-out half has a learned Gaussian prior given the
  kept half; twice, 28x28 -> 14x14 -> 7x7.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import setting
from genlib.families.flows.layers import (ActNorm, AffineCoupling, FlowLayer, InvConv1x1, MLPAdditiveCoupling, Scaling,
                                          Squeeze)
from genlib.model import GenerativeModel, ModelConfig, SamplingCallback, SamplingOptions, SamplingStep, StepOutput
from genlib.registry import register

LOG2 = math.log(2.0)
DIMS = 28 * 28
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class FlowConfig(ModelConfig):
    """Settings every flow shares: the width of its coupling networks and the logit's margin."""

    hidden: int = setting(64, "channels (NICE: units) of each coupling layer's network", min=4, max=1024)
    logit_alpha: float = setting(0.05, "the logit transform's margin a: y is squeezed into [a, 1-a] first, so "
                                 "pixels at 0 or 1 stay finite", min=1e-6, max=0.2)


@dataclass(frozen=True)
class NICEConfig(FlowConfig):
    """nice: additive MLP couplings on the flat digit."""

    hidden: int = setting(256, "units of each coupling layer's MLP", min=4, max=2048)
    couplings: int = setting(4, "additive coupling layers (alternating even and odd pixels)", min=2, max=12)
    mlp_layers: int = setting(3, "hidden layers in each coupling's MLP", min=1, max=6)


@dataclass(frozen=True)
class RealNVPConfig(FlowConfig):
    """realnvp: affine couplings, checkerboard then channel masks, at two scales."""

    steps: int = setting(3, "coupling layers of each mask type per scale", min=1, max=8)


@dataclass(frozen=True)
class GlowConfig(FlowConfig):
    """glow: actnorm, 1x1 convolution and affine coupling, K steps per scale."""

    steps: int = setting(6, "flow steps (actnorm, 1x1 conv, coupling) per scale", min=1, max=32)


@dataclass(frozen=True)
class FlowSampling(SamplingOptions):
    """How a flow draws: the temperature of its latents."""

    temperature: float = setting(1.0, "scale of the latent noise: below 1 draws more typical digits, 1 is the "
                                 "model's own distribution", min=0.0, max=1.5, step=0.05)


class Split(nn.Module):
    """Factor out half the channels as this scale's latent z. With ``learned_prior`` z's Gaussian has a
    mean and log-std predicted from the kept half (Glow); otherwise it is N(0, I) (RealNVP)."""

    def __init__(self, channels: int, learned_prior: bool):
        super().__init__()
        self.out = channels // 2
        self.keep = channels - self.out
        self.prior = nn.Conv2d(self.keep, 2 * self.out, 3, padding=1) if learned_prior else None
        if self.prior is not None:
            nn.init.zeros_(self.prior.weight)
            nn.init.zeros_(self.prior.bias)

    def prior_parameters(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-std) of z given the kept half, each (B,out,H,W)."""
        if self.prior is None:
            zeros = kept.new_zeros(kept.shape[0], self.out, *kept.shape[2:])
            return zeros, zeros
        mean, log_std = self.prior(kept).chunk(2, dim=1)
        return mean, log_std

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(kept (B,keep,H,W), z (B,out,H,W), log p(z | kept) (B,))."""
        kept, z = h[:, :self.keep], h[:, self.keep:]
        mean, log_std = self.prior_parameters(kept)
        eps = (z - mean) * torch.exp(-log_std)
        return kept, z, (-0.5 * (eps ** 2 + LOG_2PI) - log_std).flatten(1).sum(1)

    def inverse(self, kept: Tensor, z: Tensor | None, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
        """The full h from the kept half and z; z is drawn from its prior (at ``temperature``) when None."""
        if z is None:
            mean, log_std = self.prior_parameters(kept)
            noise = torch.randn(mean.shape, generator=generator).to(kept.device)
            z = mean + temperature * torch.exp(log_std) * noise
        return torch.cat([kept, z], 1)


class Scale(nn.Module):
    """One scale of a multi-scale flow: its layers, then (except the last scale) a split."""

    def __init__(self, layers: list[FlowLayer], split: Split | None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.split = split

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(h after every layer of this scale, their summed logdet (B,))."""
        logdet = h.new_zeros(h.shape[0])
        for layer in self.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        return h, logdet

    def inverse(self, h: Tensor) -> Tensor:
        """The layers undone in reverse order."""
        for layer in reversed(self.layers):
            h = layer.inverse(h)
        return h


class NormalizingFlow(GenerativeModel):
    """Base of the flows: dequantization and the logit, the exact bits/dim, sampling at a temperature,
    encoding to z and back. Subclasses ``build`` their scales and say how z is laid out."""

    Config = FlowConfig
    Sampling = FlowSampling
    group = "Normalizing flows"
    page = "pages/flows.py"
    likelihood = "exact"
    latent_shapes: ClassVar[tuple[tuple[int, ...], ...]] = ()   # one item's latent per scale, outermost first

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        self.scales = nn.ModuleList(self.build())

    def build(self) -> list[Scale]:
        """The flow's scales, outermost first."""
        raise NotImplementedError

    def likelihood_note(self) -> str:
        """What exact means here."""
        return ("the exact log-density of the uniformly dequantized digits, which bounds the 8-bit likelihood "
                "from above, as the published flow figures do")

    # -- pre-processing: dequantize, then logit --------------------------------------------------
    def dequantize(self, x: Tensor, generator: torch.Generator | None = None, midpoint: bool = False) -> Tensor:
        """y = (255 x + u) / 256 (B,1,28,28) in [0,1): u uniform, or 1/2 with ``midpoint`` (encoding)."""
        u = (torch.full_like(x, 0.5) if midpoint else
             torch.rand(x.shape, generator=generator).to(x.device) if generator is not None else torch.rand_like(x))
        return (torch.round(x.clamp(0, 1) * 255) + u) / 256

    def to_logit(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(s, log|ds/dy| (B,)) for s = logit(a + (1 - 2a) y)."""
        a = self.config.logit_alpha
        p = a + (1 - 2 * a) * y
        s = torch.log(p) - torch.log1p(-p)
        logdet = (math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return s, logdet

    def from_logit(self, s: Tensor) -> Tensor:
        """Images (B,1,28,28) on the 8-bit grid from s: the inverse logit, then the grey level whose bin holds y."""
        a = self.config.logit_alpha
        y = ((torch.sigmoid(s) - a) / (1 - 2 * a)).clamp(0, 1 - 1e-6)
        return torch.floor(y * 256).clamp(max=255) / 255

    # -- the flow: s -> latents and back -------------------------------------------------------------
    def latent_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) (B,) of the last scale's latent under the base distribution (standard normal)."""
        return (-0.5 * (z ** 2 + LOG_2PI)).flatten(1).sum(1)

    def flow_forward(self, s: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """(latents, one per scale, outermost first; log p(latents) (B,); log|det| (B,))."""
        latents, log_pz, logdet, h = [], s.new_zeros(s.shape[0]), s.new_zeros(s.shape[0]), s
        for scale in self.scales:
            h, ld = scale(h)
            logdet = logdet + ld
            if scale.split is not None:
                h, z, lp = scale.split(h)
                latents.append(z)
                log_pz = log_pz + lp
        latents.append(h)
        return latents, log_pz + self.latent_log_prob(h), logdet

    def flow_inverse(self, latents: list[Tensor | None], n: int, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Tensor:
        """s from the latents (one per scale, outermost first); a None latent is drawn from its prior."""
        if len(latents) != len(self.latent_shapes):
            raise ValueError(f"{self.family} has {len(self.latent_shapes)} latents, got {len(latents)}")
        h = latents[-1] if latents[-1] is not None else temperature * self.sample_top(n, generator)
        inner = list(latents[:-1])
        for scale in reversed(self.scales):
            if scale.split is not None:
                h = scale.split.inverse(h, inner.pop(), temperature, generator)
            h = scale.inverse(h)
        return h

    def sample_top(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The last scale's latent (n,*shape) from the base distribution at temperature 1."""
        return torch.randn((n, *self.latent_shapes[-1]), generator=generator).to(self.device)

    # -- the contract ---------------------------------------------------------------------------------
    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-log2 p(y) / 784 + 8 (B,) of one dequantization y of each 8-bit digit x (B,1,28,28)."""
        s, logdet_logit = self.to_logit(self.dequantize(x, generator))
        _, log_pz, logdet = self.flow_forward(self.shape_input(s))
        return -(log_pz + logdet + logdet_logit) / (DIMS * LOG2) + 8.0

    def shape_input(self, s: Tensor) -> Tensor:
        """s (B,1,28,28) as the first scale takes it."""
        return s

    def shape_output(self, h: Tensor) -> Tensor:
        """The first scale's input back as (B,1,28,28)."""
        return h

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Maximum likelihood: the mean bits/dim of the batch, each digit freshly dequantized."""
        bpd = self.nll_bits_per_dim(batch[0])
        loss = bpd.mean()
        return StepOutput(loss, {"loss": loss.item(), "bits_per_dim": loss.item()})

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """The exact bits/dim (B,) of the dequantized 8-bit digits x (B,1,28,28); see the module docstring."""
        return self.nll_bits_per_dim(x, generator)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` digits (N,1,28,28) on the 8-bit grid: latents from the prior at ``temperature``, inverted."""
        self.check_labels(labels, n)
        s = self.shape_output(self.flow_inverse([None] * len(self.latent_shapes), n, temperature, generator))
        images = self.from_logit(s)
        if callback is not None:
            callback(SamplingStep(0, 1, images, images))
        return images

    @torch.no_grad()
    def latents(self, x: Tensor) -> list[Tensor]:
        """Each scale's latent for digits x (B,1,28,28), outermost first (midpoint dequantization, so
        encoding is deterministic)."""
        s, _ = self.to_logit(self.dequantize(x, midpoint=True))
        return self.flow_forward(self.shape_input(s))[0]

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Every latent of x (B,1,28,28), flattened and joined: (B,784), as many numbers as pixels."""
        return torch.cat([z.flatten(1) for z in self.latents(x)], 1)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Digits (B,1,28,28) from joined latents (B,784), the inverse of ``encode``."""
        parts, start = [], 0
        for shape in self.latent_shapes:
            size = math.prod(shape)
            parts.append(z[:, start:start + size].reshape(-1, *shape))
            start += size
        return self.from_logit(self.shape_output(self.flow_inverse(parts, z.shape[0])))


@register("nice")
class NICE(NormalizingFlow):
    """NICE: additive MLP couplings on the flat digit, a diagonal scale, and a logistic prior."""

    Config = NICEConfig
    description = "NICE: additive coupling (volume-preserving) on the flat digit"
    tiny_config = {"hidden": 16, "couplings": 2, "mlp_layers": 1}
    latent_shapes = ((DIMS,),)

    def build(self) -> list[Scale]:
        """One scale: the additive couplings, alternating even and odd pixels, then the diagonal scale."""
        c = self.config
        layers: list[FlowLayer] = [MLPAdditiveCoupling(DIMS, c.hidden, c.mlp_layers, i % 2) for i in range(c.couplings)]
        return [Scale([*layers, Scaling(DIMS)], None)]


    def shape_input(self, s: Tensor) -> Tensor:
        """The flat digit (B,784)."""
        return s.flatten(1)

    def shape_output(self, h: Tensor) -> Tensor:
        """The flat vector back as (B,1,28,28)."""
        return h.view(-1, 1, 28, 28)

    def latent_log_prob(self, z: Tensor) -> Tensor:
        """The standard logistic, as in the NICE paper: log p(z) = -sum(softplus(z) + softplus(-z))."""
        return -(F.softplus(z) + F.softplus(-z)).sum(1)

    def sample_top(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard logistic noise by the inverse CDF: logit(u), u uniform."""
        u = torch.rand((n, DIMS), generator=generator).clamp(1e-6, 1 - 1e-6).to(self.device)
        return torch.log(u) - torch.log1p(-u)


@register("realnvp")
class RealNVP(NormalizingFlow):
    """RealNVP: affine couplings with checkerboard then channel masks, two scales."""

    Config = RealNVPConfig
    description = "RealNVP: affine coupling, checkerboard and channel masks, multi-scale"
    tiny_config = {"hidden": 8, "steps": 1}
    latent_shapes = ((2, 14, 14), (8, 7, 7))

    def build(self) -> list[Scale]:
        """Two scales of checkerboard then channel couplings, half the channels factored out between."""
        k, hidden = self.config.steps, self.config.hidden

        def checker(c: int) -> list[FlowLayer]:
            return [AffineCoupling(c, hidden, "checkerboard", i % 2) for i in range(k)]

        def channel(c: int) -> list[FlowLayer]:
            return [AffineCoupling(c, hidden, "channel", i % 2) for i in range(k)]

        # 1x28x28 -> (squeeze) 4x14x14 -> split: z1 2x14x14 | 2x14x14 -> (squeeze) 8x7x7 = z2
        return [Scale([*checker(1), Squeeze(), *channel(4)], Split(4, learned_prior=False)),
                Scale([*checker(2), Squeeze(), *channel(8), *checker(8)], None)]



@register("glow")
class Glow(NormalizingFlow):
    """Glow: squeeze, then K steps of actnorm, invertible 1x1 conv and affine coupling; a learned prior
    for each factored-out half."""

    Config = GlowConfig
    description = "Glow: actnorm, invertible 1x1 convolution and affine coupling, multi-scale"
    tiny_config = {"hidden": 8, "steps": 1}
    latent_shapes = ((2, 14, 14), (8, 7, 7))

    def build(self) -> list[Scale]:
        """Two scales of squeeze then K x (actnorm, 1x1 conv, coupling), a learned-prior split between."""
        k, hidden = self.config.steps, self.config.hidden

        def steps(c: int) -> list[FlowLayer]:
            return [layer for i in range(k)
                    for layer in (ActNorm(c), InvConv1x1(c), AffineCoupling(c, hidden, "channel", i % 2))]

        # 1x28x28 -> (squeeze) 4x14x14 -> split: z1 2x14x14 | 2x14x14 -> (squeeze) 8x7x7 = z2
        return [Scale([Squeeze(), *steps(4)], Split(4, learned_prior=True)),
                Scale([Squeeze(), *steps(8)], None)]

