"""Learned photo restoration: a blind residual denoiser (DnCNN line) and a sub-pixel super-resolution net (ESPCN).

Both work on colour photos of any size, (N,3,H,W) in [0,1]; a grey photo goes in as three equal
channels. They train on 48x48 crops of the bundled training photos (genlib.data, "photos"), never
on the held-out ones.

    dncnn   noisy y (N,3,H,W) -conv3x3,ReLU-> (N,w,H,W) -[conv3x3,BN,ReLU] x (depth-2)-> -conv3x3-> noise n
            clean = y - n   (residual learning: the net estimates the noise, Zhang et al. 2017)
            trained blind: each crop gets Gaussian noise of a sigma drawn from [0, max_sigma] (0-255 scale)
    espcn   low-res x (N,3,H,W) -conv5x5,tanh-> (N,w,H,W) -conv3x3,tanh-> (N,w/2,H,W) -conv3x3-> (N,3s^2,H,W)
            -pixel shuffle-> (N,3,sH,sW) + bicubic(x)   (Shi et al. 2016, learning the residual over bicubic)

They are not generative, so ``sample(n)`` is what a restorer "draws": the restoration of ``n``
fixed held-out crops, degraded with noise (or downscaled) from ``generator``. The training preview,
the checkpoint's samples.png and the contract tests all use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import ConfigError, setting
from genlib.data import HELD_OUT_PHOTOS, bundled_photo
from genlib.families.restoration.classical import add_noise
from genlib.model import (PHOTOS, GenerativeModel, ModelConfig, SamplingCallback, SamplingOptions, SamplingStep,
                          StepOutput)
from genlib.registry import register

PREVIEW_CROP = 64
SCALES = (2, 4)
METRIC_SIGMAS = (15, 25, 50)   # Gaussian noise levels (0-255) of the stored held-out metrics
METRIC_SEED = 0
VALIDATE_EVERY = 50           # steps between validation PSNRs (the held-out crops) in the training log
VALIDATION_SEED = 1
GREY_SHARE = 0.25              # training crops turned grey (equal channels, equal noise), as grey photos arrive


def held_out_rgb() -> list[np.ndarray]:
    """The held-out photos (H,W,3) in [0,1] (grey ones as three equal channels)."""
    return [np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p for p in map(bundled_photo, HELD_OUT_PHOTOS)]


@lru_cache(maxsize=1)
def preview_crops() -> Tensor:
    """Fixed 64x64 colour crops (4,3,64,64) from the centres of the held-out photos, for previews."""
    crops = []
    for name in HELD_OUT_PHOTOS:
        p = bundled_photo(name)
        p = np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p
        y, x = (p.shape[0] - PREVIEW_CROP) // 2, (p.shape[1] - PREVIEW_CROP) // 2
        crops.append(p[y:y + PREVIEW_CROP, x:x + PREVIEW_CROP].transpose(2, 0, 1))
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


def psnr(restored: Tensor, clean: Tensor) -> Tensor:
    """PSNR in dB (N,) of images in [0,1], the peak being 1."""
    mse = (restored.float().clamp(0, 1) - clean.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def bicubic(x: Tensor, scale: float) -> Tensor:
    """Bicubic resize (antialiased when shrinking) of (N,C,H,W), clipped to [0,1]."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False,
                         antialias=scale < 1).clamp(0, 1)


# -- the denoiser ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DnCNNConfig(ModelConfig):
    """The residual denoiser's depth and width, and the noise range it learns to remove."""

    depth: int = setting(12, "convolution layers (the receptive field is 2*depth+1 pixels)", min=3, max=30)
    width: int = setting(48, "channels of the hidden layers", min=8, max=256)
    max_sigma: float = setting(55.0, "training noise levels are drawn from [0, this] on the 0-255 scale", min=1.0,
                               max=100.0)


@dataclass(frozen=True)
class DenoiserSampling(SamplingOptions):
    """What ``sample`` degrades the held-out crops with before denoising them."""

    sigma: float = setting(25.0, "Gaussian noise level of the crops, on the 0-255 scale", min=0.0, max=75.0)


class BlindDenoiser(GenerativeModel):
    """What every blind photo denoiser shares: the noise it trains on, its validation curve, its stored
    held-out metrics and what it "samples". A subclass builds ``self.net`` (noisy -> noise estimate)."""

    Sampling = DenoiserSampling
    data_kind = PHOTOS
    group = "Restore"
    page = "pages/restore.py"
    generative = False

    def forward(self, noisy: Tensor) -> Tensor:
        """Clean estimate (N,3,H,W) of noisy photos (N,3,H,W), not clipped."""
        return noisy - self.net(noisy)

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Noise each crop at its own sigma in [0, max_sigma], clip to [0,1] (an 8-bit photo), learn the residual."""
        clean = batch[0]
        n = clean.shape[0]
        sigma = torch.rand((n, 1, 1, 1), device=clean.device) * self.config.max_sigma / 255
        noise = torch.randn_like(clean)
        # A grey photo arrives as three equal channels with the same noise in each: a quarter of the
        # crops are made grey that way, or the net would only know noise drawn apart per channel.
        grey = torch.rand((n, 1, 1, 1), device=clean.device) < GREY_SHARE
        clean = torch.where(grey, clean.mean(1, keepdim=True).expand_as(clean), clean)
        noise = torch.where(grey, noise[:, :1].expand_as(noise), noise)
        noisy = (clean + sigma * noise).clamp(0, 1)
        restored = self(noisy)
        loss = F.mse_loss(restored, clean)
        scalars = {"loss": loss.item(), "psnr": psnr(restored.detach(), clean).mean().item()}
        if step % VALIDATE_EVERY == 0:
            scalars["val_psnr"] = self._validation_psnr(step)
        return StepOutput(loss, scalars)

    @torch.no_grad()
    def _validation_psnr(self, step: int) -> float:
        """Mean PSNR of the held-out preview crops at sigma 25 (fixed noise), in eval mode: the curve to watch."""
        was_training = self.training
        self.eval()
        out = self.sample(len(HELD_OUT_PHOTOS), generator=torch.Generator().manual_seed(VALIDATION_SEED))
        self.train(was_training)
        return psnr(out.cpu(), preview_crops()).mean().item()

    @torch.no_grad()
    def held_out_metrics(self) -> dict[str, float]:
        """Mean PSNR (dB) over the held-out photos at Gaussian sigma 15, 25 and 50 (seed 0), kept in metrics.json."""
        out = {}
        for sigma in METRIC_SIGMAS:
            scores = []
            for photo in map(bundled_photo, HELD_OUT_PHOTOS):  # each in its own colour mode, noised as it is
                noisy = add_noise(photo, "gaussian", sigma, METRIC_SEED)
                x = torch.from_numpy(np.repeat(noisy, 3 // noisy.shape[2], axis=2).transpose(2, 0, 1).copy())[None]
                restored = self.denoise(x).cpu().mean(1, keepdim=True) if photo.shape[2] == 1 else self.denoise(x).cpu()
                scores.append(psnr(restored, torch.from_numpy(photo.transpose(2, 0, 1).copy())[None]))
            out[f"psnr_sigma{sigma}"] = float(torch.cat(scores).mean())
        return out

    @torch.no_grad()
    def denoise(self, noisy: Tensor, labels: Tensor | None = None) -> Tensor:
        """Clean photos (N,3,H,W) in [0,1] from noisy ones; for big photos use ``tiles.restore_tiled``."""
        return self(noisy.to(self.device)).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, sigma: float = 25.0) -> Tensor:
        """The denoising of ``n`` held-out crops (n,3,64,64) given Gaussian noise of ``sigma`` (0-255 scale)
        drawn from ``generator``."""
        clean = preview_crops().repeat(math.ceil(n / len(HELD_OUT_PHOTOS)), 1, 1, 1)[:n]
        noisy = (clean + sigma / 255 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
        out = self.denoise(noisy)
        if callback is not None:
            callback(SamplingStep(0, 1, noisy.to(out.device), out))
        return out


@register("dncnn")
class DnCNN(BlindDenoiser):
    """A blind Gaussian denoiser for photos that predicts the noise and subtracts it."""

    Config = DnCNNConfig
    tiny_config = {"depth": 3, "width": 8}
    description = "Residual CNN denoiser (DnCNN line), blind over noise levels 0-55"

    def __init__(self, config: DnCNNConfig):
        super().__init__(config)
        c = config
        layers: list[nn.Module] = [nn.Conv2d(3, c.width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(c.depth - 2):
            layers += [nn.Conv2d(c.width, c.width, 3, padding=1, bias=False), nn.BatchNorm2d(c.width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(c.width, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel sees on each side: tiles overlap by at least this."""
        return self.config.depth


# -- super-resolution -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ESPCNConfig(ModelConfig):
    """The sub-pixel network's scale and width."""

    scale: int = setting(2, "upscaling factor: 2 or 4", min=2, max=4)
    width: int = setting(64, "channels of the first layer (the second has half as many)", min=8, max=256)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale not in SCALES:
            raise ConfigError(f"scale={self.scale} is not offered; choose 2 or 4")


@register("espcn")
class ESPCN(GenerativeModel):
    """Sub-pixel convolution super-resolution, learning the detail bicubic interpolation misses."""

    Config = ESPCNConfig
    data_kind = PHOTOS
    group = "Restore"
    page = "pages/restore.py"
    tiny_config = {"width": 8}
    description = "Sub-pixel CNN super-resolution (ESPCN), x2 or x4 over bicubic"
    generative = False

    def __init__(self, config: ESPCNConfig):
        super().__init__(config)
        c, s = config, config.scale
        self.net = nn.Sequential(nn.Conv2d(3, c.width, 5, padding=2), nn.Tanh(),
                                 nn.Conv2d(c.width, c.width // 2, 3, padding=1), nn.Tanh(),
                                 nn.Conv2d(c.width // 2, 3 * s * s, 3, padding=1), nn.PixelShuffle(s))

    @property
    def receptive_radius(self) -> int:
        """Low-resolution pixels of context each output sees on each side (5x5 then two 3x3, plus bicubic's 2)."""
        return 6

    def forward(self, low: Tensor) -> Tensor:
        """High-resolution estimate (N,3,sH,sW) of (N,3,H,W), not clipped."""
        up = F.interpolate(low, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return up + self.net(low)

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Shrink each crop by the scale (bicubic, antialiased) and learn to bring it back."""
        high = batch[0]
        low = bicubic(high, 1 / self.config.scale)
        restored = self(low)
        loss = F.mse_loss(restored, high)
        scalars = {"loss": loss.item(), "psnr": psnr(restored.detach(), high).mean().item()}
        if step % VALIDATE_EVERY == 0:  # the held-out crops, shrunk and brought back
            scalars["val_psnr"] = psnr(self.sample(len(HELD_OUT_PHOTOS)).cpu(), preview_crops()).mean().item()
        return StepOutput(loss, scalars)

    @torch.no_grad()
    def held_out_metrics(self) -> dict[str, float]:
        """Mean PSNR (dB) over the held-out photos shrunk by the scale and brought back: this model and bicubic."""
        ours, base = [], []
        for photo in held_out_rgb():
            s = self.config.scale
            h, w = photo.shape[0] // s * s, photo.shape[1] // s * s
            high = torch.from_numpy(photo[:h, :w].transpose(2, 0, 1).copy())[None]
            low = bicubic(high, 1 / s)
            ours.append(psnr(self.upscale(low).cpu(), high))
            base.append(psnr(bicubic(low, s), high))
        return {f"psnr_x{self.config.scale}": float(torch.cat(ours).mean()),
                f"psnr_x{self.config.scale}_bicubic": float(torch.cat(base).mean())}

    @torch.no_grad()
    def upscale(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Photos (N,3,sH,sW) in [0,1] from (N,3,H,W); for big photos use ``tiles.restore_tiled``."""
        return self(x.to(self.device)).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None) -> Tensor:
        """The upscaling of ``n`` held-out crops shrunk by the scale: (n,3,64,64); deterministic."""
        high = preview_crops().repeat(math.ceil(n / len(HELD_OUT_PHOTOS)), 1, 1, 1)[:n]
        out = self.upscale(bicubic(high, 1 / self.config.scale))
        if callback is not None:
            callback(SamplingStep(0, 1, bicubic(bicubic(high, 1 / self.config.scale), self.config.scale).to(out.device),
                                  out))
        return out
