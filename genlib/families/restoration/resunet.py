"""A blind residual U-Net photo denoiser (the DRUNet line, Zhang et al. 2021, without its noise-level map).

The U-Net sees far more context than a plain stack of 3x3 convolutions for the same arithmetic: two
of its three levels run at half and quarter resolution, which is what smooth areas under heavy
noise need. Like DnCNN it estimates the noise and subtracts it, and it has no batch norm, so a
photo's result does not depend on what else is in the batch.

    noisy y (N,3,H,W), padded by reflection to a multiple of 4
      head conv3x3 -> (N,w,H,W) -[res x blocks]-> s1 -conv2x2/2-> (N,2w,H/2,W/2) -[res x blocks]-> s2
      -conv2x2/2-> (N,4w,H/4,W/4) -[res x blocks]- -convT2x2/2-> +s2 -[res x blocks]- -convT2x2/2-> +s1
      -[res x blocks]- tail conv3x3 -> noise n (N,3,H,W);   clean = y - n
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import setting
from genlib.families.restoration.model import BlindDenoiser
from genlib.model import ModelConfig
from genlib.registry import register

LEVELS = 3   # full, half and quarter resolution: inputs are padded to a multiple of 2**(LEVELS-1)


@dataclass(frozen=True)
class ResUNetConfig(ModelConfig):
    """The U-Net's width, residual blocks per level and the noise range it learns to remove."""

    width: int = setting(32, "channels at full resolution (doubled at each lower level)", min=4, max=128)
    blocks: int = setting(2, "residual blocks per level, on each side of the U", min=1, max=4)
    max_sigma: float = setting(55.0, "training noise levels are drawn from [0, this] on the 0-255 scale", min=1.0,
                               max=100.0)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x))), channels kept; no bias and no norm, as in DRUNet."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """(N,C,H,W) -> (N,C,H,W)."""
        return x + self.body(x)


class NoiseUNet(nn.Module):
    """noisy (N,3,H,W) -> noise estimate (N,3,H,W), for any H and W."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        w = [width * 2 ** i for i in range(LEVELS)]

        def stage(c: int) -> nn.Sequential:
            return nn.Sequential(*(ResBlock(c) for _ in range(blocks)))

        self.head = nn.Conv2d(3, w[0], 3, padding=1, bias=False)
        self.down_stages = nn.ModuleList(stage(w[i]) for i in range(LEVELS - 1))
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, stride=2, bias=False) for i in range(LEVELS - 1))
        self.bottom = stage(w[-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2, bias=False) for i in range(LEVELS - 1))
        self.up_stages = nn.ModuleList(stage(w[i]) for i in range(LEVELS - 1))
        self.tail = nn.Conv2d(w[0], 3, 3, padding=1, bias=False)

    def forward(self, noisy: Tensor) -> Tensor:
        """The noise estimate (N,3,H,W) of noisy photos (N,3,H,W)."""
        h, w = noisy.shape[-2:]
        m = 2 ** (LEVELS - 1)
        pad_h, pad_w = -h % m, -w % m
        # reflection, not zeros: the border then looks like more photo to the net (a small photo may
        # be too thin to reflect; replicate it then)
        mode = "reflect" if h > pad_h and w > pad_w else "replicate"
        x = F.pad(noisy, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else noisy
        x = self.head(x)
        skips = []   # (N,w_l,H/2**l,W/2**l) for l = 0, 1
        for stage, down in zip(self.down_stages, self.down):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for i in reversed(range(LEVELS - 1)):
            x = self.up_stages[i](self.up[i](x) + skips[i])
        return self.tail(x)[..., :h, :w]


@register("resunet")
class ResUNet(BlindDenoiser):
    """A blind Gaussian denoiser for photos: a residual U-Net that predicts the noise and subtracts it."""

    Config = ResUNetConfig
    tiny_config = {"width": 4, "blocks": 1}
    description = "Residual U-Net denoiser (DRUNet line), blind over noise levels 0-55"

    def __init__(self, config: ResUNetConfig):
        super().__init__(config)
        self.net = NoiseUNet(config.width, config.blocks)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel sees on each side, rounded up to a multiple of 4 so that
        tiles keep the quarter-resolution grid (tiles overlap by at least this)."""
        b = self.config.blocks
        # per side: head and tail 1 each; at level l (scale 2**l) each 3x3 conv adds 2**l, a stride-2
        # down or up conv adds about as much again
        radius = 2 + sum(2 ** lvl * (4 * b + 2) for lvl in range(LEVELS - 1)) + 2 ** (LEVELS - 1) * 2 * b
        return -(-radius // 4) * 4
