"""The classical side of restoration, through the libraries that already do it, plus noise and scores.

Denoisers (scikit-image's ``restoration`` module and the ``bm3d`` package), each
``fn(noisy (H,W,C) in [0,1], sigma in [0,1] or None) -> (H,W,C)``; with no sigma they use
scikit-image's wavelet estimate of it. Upscalers: bicubic and Lanczos resampling. Noise: Gaussian,
Poisson, salt and pepper, JPEG, each reproducible from a seed. Scores: PSNR and SSIM from
scikit-image's ``metrics``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image
from skimage import metrics, restoration

from genlib.data import resize_photo

Denoiser = Callable[[np.ndarray, "float | None"], np.ndarray]
NOISE_KINDS = {  # kind -> (what the level means, its range, a sensible default)
    "gaussian": ("σ on the 0-255 scale", (0.0, 75.0), 25.0),
    "poisson": ("photons at full brightness (fewer: noisier)", (1.0, 1000.0), 30.0),
    "salt-and-pepper": ("share of pixels set to black or white", (0.0, 0.5), 0.05),
    "jpeg": ("JPEG quality (lower: more artefacts)", (1.0, 95.0), 10.0),
}


def estimate_sigma(image: np.ndarray) -> float:
    """The Gaussian noise level of a photo (H,W,C) in [0,1] (wavelet median estimator), on the 0-1 scale."""
    return float(restoration.estimate_sigma(image, channel_axis=-1, average_sigmas=True))


def add_noise(image: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """``image`` (H,W,C) in [0,1] degraded by ``kind`` at ``level`` (see NOISE_KINDS), clipped to [0,1]."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    lo, hi = NOISE_KINDS[kind][1]
    if not lo <= level <= hi:
        raise ValueError(f"{kind} level {level:g} is out of range; allowed {lo:g} to {hi:g} ({NOISE_KINDS[kind][0]})")
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        out = image + rng.standard_normal(image.shape, dtype=np.float32) * (level / 255)
    elif kind == "poisson":
        out = rng.poisson(image * level).astype(np.float32) / level
    elif kind == "salt-and-pepper":
        out, hit = image.copy(), rng.random(image.shape[:2]) < level
        out[hit] = (rng.random(int(hit.sum())) < 0.5).astype(np.float32)[:, None]
    else:
        arr = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="JPEG", quality=int(level))
        decoded = np.asarray(Image.open(buf), dtype=np.float32) / 255
        out = decoded[..., None] if decoded.ndim == 2 else decoded
    return np.clip(out, 0, 1).astype(np.float32)


# -- denoisers ----------------------------------------------------------------------------------------------
def _sigma(noisy: np.ndarray, sigma: float | None) -> float:
    return estimate_sigma(noisy) if sigma is None else float(sigma)


def tv(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Total variation (Chambolle), weight 0.9 sigma (the best of 0.5-2.5 sigma on a training photo)."""
    return restoration.denoise_tv_chambolle(noisy, weight=max(0.01, 0.9 * _sigma(noisy, sigma)), channel_axis=-1)


def bilateral(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Bilateral filter: neighbours weighted by distance and by likeness of colour (sigma_color = the noise
    level, sigma_spatial = 2: the best of a small sweep on a training photo at sigma 15, 25 and 50)."""
    s = _sigma(noisy, sigma)
    if noisy.shape[2] == 1:  # its colour path refuses a single channel axis
        return restoration.denoise_bilateral(noisy[..., 0], sigma_color=max(0.02, s), sigma_spatial=2)[..., None]
    return restoration.denoise_bilateral(noisy, sigma_color=max(0.02, s), sigma_spatial=2, channel_axis=-1)


def wavelet(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Wavelet shrinkage with BayesShrink thresholds, in YCbCr for colour photos."""
    return restoration.denoise_wavelet(noisy, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True,
                                       channel_axis=-1, convert2ycbcr=noisy.shape[2] == 3)


def nl_means(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Non-local means with scikit-image's recommended h = 0.8 sigma (sigma estimated when not given)."""
    s = _sigma(noisy, sigma)
    return restoration.denoise_nl_means(noisy, h=0.8 * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6,
                                        channel_axis=-1)


def j_invariant(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Wavelet denoising whose threshold is calibrated self-supervised (J-invariance, Batson & Royer 2019)."""
    s = _sigma(noisy, sigma)
    grid = {"sigma": list(np.linspace(0.3, 2.0, 8) * max(s, 1e-3)), "method": ["BayesShrink"],
            "mode": ["soft"], "rescale_sigma": [True], "channel_axis": [-1],
            "convert2ycbcr": [noisy.shape[2] == 3]}
    calibrated = restoration.calibrate_denoiser(noisy, restoration.denoise_wavelet, denoise_parameters=grid)
    return calibrated(noisy)


def bm3d(noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """BM3D (the ``bm3d`` package): collaborative filtering of similar blocks; the classical state of the art."""
    import bm3d as bm3d_package  # imported on use: it loads its own native library

    s = _sigma(noisy, sigma)
    if noisy.shape[2] == 3:
        return np.asarray(bm3d_package.bm3d_rgb(noisy, sigma_psd=s), dtype=np.float32)
    return np.asarray(bm3d_package.bm3d(noisy[..., 0], sigma_psd=s), dtype=np.float32)[..., None]


@dataclass(frozen=True)
class Method:
    """A classical restoration method: its function and a line on what it does."""

    name: str
    run: Callable
    about: str


DENOISERS = {m.name: m for m in (
    Method("tv", tv, "total variation (Chambolle)"),
    Method("bilateral", bilateral, "bilateral filter"),
    Method("wavelet", wavelet, "wavelet shrinkage (BayesShrink)"),
    Method("nl-means", nl_means, "non-local means (sigma estimated)"),
    Method("j-invariant", j_invariant, "wavelet, self-calibrated by J-invariance"),
    Method("bm3d", bm3d, "BM3D (bm3d package)"),
)}


def denoise_with(name: str, noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Run classical denoiser ``name`` on ``noisy`` (H,W,C) in [0,1]; the result is clipped to [0,1], float32."""
    if name not in DENOISERS:
        raise ValueError(f"unknown method {name!r}; classical methods: {', '.join(DENOISERS)}")
    out = np.asarray(DENOISERS[name].run(noisy, sigma), dtype=np.float32)
    return np.clip(out.reshape(noisy.shape), 0, 1)  # some scikit-image methods drop a grey photo's channel axis


# -- super-resolution baselines --------------------------------------------------------------------------------
def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` (H,W,C) shrunk by ``scale`` (antialiased bicubic, the degradation the learned model trains on);
    H and W are first cropped to multiples of ``scale``."""
    h, w = image.shape[0] // scale * scale, image.shape[1] // scale * scale
    x = torch.from_numpy(np.ascontiguousarray(image[:h, :w].transpose(2, 0, 1)))[None]
    small = torch.nn.functional.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True,
                                            align_corners=False).clamp(0, 1)
    return small[0].numpy().transpose(1, 2, 0)


def bicubic_up(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling of (H,W,C) by ``scale``."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    up = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return up[0].numpy().transpose(1, 2, 0)


def lanczos_up(image: np.ndarray, scale: int) -> np.ndarray:
    """Lanczos upscaling of (H,W,C) by ``scale`` (PIL)."""
    return resize_photo(image, scale)


UPSCALERS = {m.name: m for m in (Method("bicubic", bicubic_up, "bicubic interpolation"),
                                 Method("lanczos", lanczos_up, "Lanczos resampling"))}


# -- scores ---------------------------------------------------------------------------------------------------
def psnr_ssim(restored: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB, SSIM) of ``restored`` against ``clean``, both (H,W,C) in [0,1]."""
    psnr = metrics.peak_signal_noise_ratio(clean, np.clip(restored, 0, 1), data_range=1.0)
    ssim = metrics.structural_similarity(clean, np.clip(restored, 0, 1), data_range=1.0, channel_axis=-1)
    return float(psnr), float(ssim)
