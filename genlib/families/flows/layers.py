"""The invertible layers of NICE, RealNVP and Glow, written out so the page can show their inside.

Every layer maps x -> z (``forward``) and back (``inverse``), and its forward returns
``(z, logdet)``: logdet (B,) is log |det dz/dx| summed over the item, so a stack's log-density is
log p(z) + the sum of its layers' logdets (the change of variables). Shapes are (B,C,H,W) except
NICE's layers, which see each digit as a flat vector (B,784).

- ``AffineCoupling``: half the units pass through unchanged and set a scale and shift for the other
  half (RealNVP, Dinh et al. 2017); ``additive=True`` keeps only the shift (NICE, Dinh et al. 2015),
  whose Jacobian determinant is 1. The halves are a checkerboard of pixels or the two halves of the
  channels.
- ``ActNorm`` and ``InvConv1x1``: Glow's per-channel affine normalisation and learned channel
  permutation (Kingma and Dhariwal 2018).
- ``Squeeze``: (C,H,W) -> (4C,H/2,W/2), so channel couplings can mix neighbouring pixels.
- ``MLPAdditiveCoupling`` and ``Scaling``: NICE's fully connected coupling and its final diagonal scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FlowLayer(nn.Module):
    """An invertible map with a tractable log-determinant."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - every layer overrides
        """(z, logdet (B,)) for x."""
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:  # pragma: no cover - every layer overrides
        """The x that ``forward`` maps to z."""
        raise NotImplementedError


def checkerboard(height: int, width: int, parity: int, device=None) -> Tensor:
    """(1,1,H,W) mask of 1s on the squares where (row + column) % 2 == parity."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return ((rows + cols) % 2 == parity).float().view(1, 1, height, width)


class CouplingNet(nn.Module):
    """The network inside a coupling layer: 3x3 conv, 1x1 conv, 3x3 conv to (scale, shift) per unit.
    The last conv starts at zero, so every coupling starts as the identity (as in Glow)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, hidden, 1), nn.ReLU())
        self.out = nn.Conv2d(hidden, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(raw log-scale, shift), each (B,out_channels,H,W), from the passed-through half."""
        raw_scale, shift = self.out(self.body(x)).chunk(2, dim=1)
        return raw_scale, shift


class AffineCoupling(FlowLayer):
    """z_b = x_b * exp(s(x_a)) + t(x_a), z_a = x_a, for a split of x into (x_a, x_b).

    ``mask="checkerboard"``: x_a is the pixels where (row + column) % 2 == parity, in every channel;
    the network also sees the mask as a channel, so it knows which pixels it is given.
    ``mask="channel"``: x_a is the first half of the channels (the second when parity is 1).
    The log-scale is ``scale * tanh(raw)`` with a learned per-channel ``scale``: bounded, so one
    step cannot blow a unit up (RealNVP's choice). logdet = sum of the log-scales.
    """

    def __init__(self, channels: int, hidden: int, mask: str, parity: int, additive: bool = False):
        super().__init__()
        if mask not in ("checkerboard", "channel"):
            raise ValueError(f"mask must be checkerboard or channel, not {mask!r}")
        if mask == "channel" and channels < 2:
            raise ValueError("a channel coupling needs at least 2 channels")
        self.mask, self.parity, self.additive = mask, parity, additive
        self.channels = channels
        half = channels // 2
        if mask == "checkerboard":
            self.net = CouplingNet(channels + 1, channels, hidden)
        else:
            self.keep = half if parity == 0 else channels - half          # channels of x_a
            self.net = CouplingNet(self.keep, channels - self.keep, hidden)
        self.log_scale_factor = nn.Parameter(torch.zeros(1, self.net.out.out_channels // 2, 1, 1))

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        raw, shift = self.net(x_a)
        log_scale = torch.zeros_like(raw) if self.additive else self.log_scale_factor.exp() * torch.tanh(raw)
        return log_scale, shift

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.parity == 0:
            return x[:, :self.keep], x[:, self.keep:]
        return x[:, -self.keep:], x[:, :-self.keep]

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b], 1) if self.parity == 0 else torch.cat([b, a], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, logdet (B,)): the changed half scaled and shifted by functions of the kept half."""
        if self.mask == "checkerboard":
            m = checkerboard(x.shape[2], x.shape[3], self.parity, x.device)
            log_scale, shift = self._scale_shift(torch.cat([x * m, m.expand(x.shape[0], 1, -1, -1)], 1))
            log_scale, shift = log_scale * (1 - m), shift * (1 - m)       # only x_b (mask 0) changes
            return x * torch.exp(log_scale) + shift, log_scale.flatten(1).sum(1)
        a, b = self._split(x)
        log_scale, shift = self._scale_shift(a)
        return self._join(a, b * torch.exp(log_scale) + shift), log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        """x from z: the kept half is z's own, so the same scale and shift can be undone."""
        if self.mask == "checkerboard":
            m = checkerboard(z.shape[2], z.shape[3], self.parity, z.device)
            log_scale, shift = self._scale_shift(torch.cat([z * m, m.expand(z.shape[0], 1, -1, -1)], 1))
            return z * m + (1 - m) * (z - shift) * torch.exp(-log_scale)
        a, b = self._split(z)
        log_scale, shift = self._scale_shift(a)
        return self._join(a, (b - shift) * torch.exp(-log_scale))


class ActNorm(FlowLayer):
    """z = (x + bias) * exp(log_scale) per channel; the first batch it sees sets bias and scale so that
    batch comes out with zero mean and unit variance per channel (data-dependent initialisation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp(min=1e-3)))
        self.initialised.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, logdet (B,) = H * W * sum(log_scale)); the first training batch initialises it."""
        if self.training and not bool(self.initialised):
            self._initialise(x)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        """x = z * exp(-log_scale) - bias."""
        return z * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(FlowLayer):
    """A learned invertible 1x1 convolution (C,C), started at a random rotation: a soft channel
    permutation. logdet = H * W * log |det W| (``slogdet``; C is at most a few dozen here)."""

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = nn.Parameter(q)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(W x per pixel, logdet (B,) = H * W * log|det W|). In x's own precision, also under bf16 autocast:
        this is the main path, and W x rounded to bf16 would no longer be the map whose logdet is counted
        (a coupling's network may run in bf16: its scale and shift are any function of the kept half)."""
        logdet = torch.linalg.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        with torch.autocast(x.device.type, enabled=False):
            z = F.conv2d(x, self.weight.view(*self.weight.shape, 1, 1))
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        """W^-1 z per pixel (the inverse in float64, so the round trip stays exact)."""
        inv = torch.linalg.inv(self.weight.double()).to(z.dtype)
        return F.conv2d(z, inv.view(*inv.shape, 1, 1))


class Squeeze(FlowLayer):
    """(B,C,H,W) -> (B,4C,H/2,W/2): each 2x2 block of pixels becomes 4 channels (logdet 0)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B,4C,H/2,W/2) and logdet 0."""
        return F.pixel_unshuffle(x, 2), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        """(B,C,2H,2W): the 4 channels of each pixel back into a 2x2 block."""
        return F.pixel_shuffle(z, 2)


class MLPAdditiveCoupling(FlowLayer):
    """NICE's coupling on flat vectors (B,D): z_b = x_b + m(x_a), where a is the even units and b the
    odd ones (swapped when parity is 1), and m is an MLP. Volume-preserving: logdet = 0."""

    def __init__(self, dims: int, hidden: int, layers: int, parity: int):
        super().__init__()
        self.parity = parity
        index = torch.arange(dims)
        self.register_buffer("kept", index[index % 2 == parity], persistent=False)
        self.register_buffer("changed", index[index % 2 != parity], persistent=False)
        sizes = [len(self.kept)] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(hidden, len(self.changed))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*body, last)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, logdet 0): the changed units shifted by the MLP of the kept ones."""
        z = x.clone()
        z[:, self.changed] = x[:, self.changed] + self.net(x[:, self.kept])
        return z, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        """x from z: subtract the same shift."""
        x = z.clone()
        x[:, self.changed] = z[:, self.changed] - self.net(z[:, self.kept])
        return x


class Scaling(FlowLayer):
    """NICE's last layer: z = x * exp(s), one learned s per unit; logdet = sum(s)."""

    def __init__(self, dims: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, dims))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x * exp(s), logdet (B,) = sum(s))."""
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        """z * exp(-s)."""
        return z * torch.exp(-self.log_scale)
