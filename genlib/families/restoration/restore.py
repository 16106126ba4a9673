"""One way in for every restoration method, classical or learned: what the CLI, the Restore page and
the benchmark call. Photos are (H,W,C) float32 in [0,1]; learned models run in tiles (any size)."""
from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from genlib.checkpoints import CheckpointError, load_model
from genlib.families.restoration.classical import DENOISERS, UPSCALERS, denoise_with
from genlib.families.restoration.tiles import restore_tiled
from genlib.model import DIGITS

SHIPPED_DENOISER = "resunet-photos"
SHIPPED_UPSCALERS = {2: "espcn-x2-photos", 4: "espcn-x4-photos"}
DIGIT_DENOISERS = ("dae-mnist", "diffusion-mnist")   # the lab's own digit models, for 28x28 digit images
ProgressFn = Callable[[float, str], None]
RUN_LOCK = threading.Lock()  # the page runs one method at a time, so each one's seconds are its own


@dataclass(frozen=True)
class Result:
    """A method's output (H',W',C) in [0,1] and the seconds it took."""

    method: str
    image: np.ndarray
    seconds: float


def load_restorer(source: str, ability: str):
    """A restoration model (name, folder or hub id) that has ``ability`` ("denoise" or "upscale")."""
    model, info = load_model(source)
    if not model.has(ability):
        raise CheckpointError(f"{info.name} is a {info.family} model, which cannot {ability} photos")
    return model


def denoise_methods() -> list[str]:
    """Every denoising method's name: the classical ones, then the shipped learned model."""
    return [*DENOISERS, SHIPPED_DENOISER]


def denoise(method: str, noisy: np.ndarray, sigma: float | None = None, *, model=None,
            progress: ProgressFn | None = None) -> Result:
    """Denoise with a classical ``method`` or a learned one (``model``, or ``method`` naming a checkpoint).

    ``sigma`` is the noise level on the 0-1 scale (None: estimated by the classical methods; the
    learned denoiser is blind and needs none).
    """
    began = time.perf_counter()
    if model is None and method in DENOISERS:
        out = denoise_with(method, noisy, sigma)
    else:
        model = model if model is not None else load_restorer(method, "denoise")
        if model.trained_data() == DIGITS:  # the lab's digit models: one 28x28 grey digit at a time
            if noisy.shape != (28, 28, 1):
                raise CheckpointError(f"{method} denoises 28x28 grey digits, not a {noisy.shape[1]}x{noisy.shape[0]} "
                                      "photo")
            x = torch.from_numpy(noisy.transpose(2, 0, 1).copy())[None].to(model.device)
            # a denoiser that takes the noise level (diffusion starts from the matching timestep) gets it
            options = {"sigma": sigma} if "sigma" in inspect.signature(model.denoise).parameters else {}
            with torch.no_grad():
                out = model.denoise(x, **options).float().clamp(0, 1).cpu()[0].numpy().transpose(1, 2, 0)
        else:
            out = restore_tiled(model.denoise, noisy, margin=model.receptive_radius + 4, device=model.device,
                                progress=progress)
    return Result(method, out, time.perf_counter() - began)


def upscale(method: str, image: np.ndarray, scale: int, *, model=None, progress: ProgressFn | None = None) -> Result:
    """Upscale by ``scale`` with "bicubic", "lanczos" or a learned model (``model``, or ``method`` as a checkpoint)."""
    began = time.perf_counter()
    if model is None and method in UPSCALERS:
        out = UPSCALERS[method].run(image, scale)
    else:
        model = model if model is not None else load_restorer(method, "upscale")
        if model.config.scale != scale:
            raise CheckpointError(f"{method} upscales x{model.config.scale}, not x{scale}")
        out = restore_tiled(model.upscale, image, scale=scale, margin=model.receptive_radius + 4,
                            device=model.device, progress=progress)
    return Result(method, np.clip(out, 0, 1).astype(np.float32), time.perf_counter() - began)
