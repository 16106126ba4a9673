"""Look inside a diffusion model's sampling: the reverse process frame by frame, and steps against quality.

``reverse_timelines`` runs several samplers from the same seed and keeps, at every step s, the
sample x_t entering the step and the model's prediction of the clean image x0, so frame s of one
sampler can be set beside frame s of another; ``timeline_gif`` animates one timeline.

``steps_quality`` measures how the Fréchet distance falls as a sampler gets more steps. It uses the
shared evaluator exactly as genlib.scoring does (the digit classifier's features, compared with the
same 4,000 training digits), so its numbers read on the Compare page's scale. A curve costs minutes
on the CPU, so results are cached by the checkpoint's content (genlib.comparison's fingerprint),
and a checkpoint folder may carry its own ``steps_quality.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from genlib.checkpoints import write_extra
from genlib.comparison import Evaluator, folder_fingerprint, score_cache_dir
from genlib.families.diffusion.model import DiffusionModel
from genlib.images import to_grid
from genlib.metrics import classifier_features, frechet_distance_from_features
from genlib.model import GenerativeModel, SamplingStep
from genlib.scoring import EVAL_SHAPE, SAMPLE_QUALITY_VERSION

ReportFn = Callable[[float, str], None]
MAX_TIMELINE_IMAGES = 64
FINAL_FRAME_MS = 1500        # the finished samples stay on screen before the GIF loops
SEPARATOR_PX = 4             # grey band between the x_t grid and the x0 grid in a GIF frame
STEPS_GRID = (5, 10, 20, 50, 100, 1000)
DEFAULT_CURVE_STEPS = (5, 10, 20, 50, 100)
CURVE_SAMPLERS = ("ddpm", "ddim", "dpm-solver++")
SAMPLE_CHUNK = 250           # images per model.sample call, as genlib.scoring.draw_samples
MIN_CURVE_SAMPLES = 10       # as genlib.scoring.score_model
STEPS_QUALITY_FILE = "steps_quality.json"


def _no_report(fraction: float, message: str) -> None:
    pass


def _require_diffusion(model: GenerativeModel) -> DiffusionModel:
    if not isinstance(model, DiffusionModel):
        raise ValueError(f"{model.family} is not a diffusion model; only diffusion and cdiffusion have samplers")
    return model


# -- the reverse process, frame by frame ------------------------------------------------------------------
@dataclass
class Timeline:
    """One sampler's reverse process: S steps for N images of shape (C,H,W), all float32 in [0,1]."""

    sampler: str
    timesteps: list[int]     # (S,) the t of each step, decreasing
    x_t: np.ndarray          # (S,N,C,H,W) the sample entering step s (frame 0 is x_T, the seed's noise)
    x0_pred: np.ndarray      # (S,N,C,H,W) the model's predicted clean image at step s
    final: np.ndarray        # (N,C,H,W) the finished samples
    seconds: float           # wall time of this sampler's run


@torch.no_grad()
def reverse_timelines(model: DiffusionModel, samplers: Sequence[str], n: int, steps: int, seed: int, *,
                      labels: torch.Tensor | None = None, guidance_scale: float | None = None, eta: float = 0.0,
                      report: ReportFn | None = None) -> dict[str, Timeline]:
    """{sampler: Timeline} for each sampler, every one started from the same ``seed``.

    The same seed gives every sampler the same x_T, so frame s is comparable across samplers.
    ``eta`` applies to "ddim" only (the others run with 0). ``report(fraction, message)`` is called
    after every step of every sampler; raising from it (a task's cancel) stops the run.
    Keeps 2 * S * N * C*H*W float32 values per sampler (28x28, 100 steps, 64 images: 40 MB).
    """
    _require_diffusion(model)
    if not 1 <= n <= MAX_TIMELINE_IMAGES:
        raise ValueError(f"n must be between 1 and {MAX_TIMELINE_IMAGES}, got {n}")
    samplers = list(dict.fromkeys(samplers))
    if not samplers:
        raise ValueError("name at least one sampler")
    for sampler in samplers:  # check them all before running any
        model.check_sampling(sampler, steps, eta if sampler == "ddim" else 0.0)
    labels = model.check_labels(labels, n)
    report = report or _no_report
    total = len(samplers) * steps
    timelines = {}
    for k, sampler in enumerate(samplers):
        frames: dict[str, list] = {"t": [], "x_t": [], "x0_pred": []}

        def keep(step: SamplingStep, k: int = k, sampler: str = sampler) -> None:
            frames["t"].append(step.t)
            frames["x_t"].append(step.state.float().cpu().numpy())          # (N,C,H,W)
            frames["x0_pred"].append(step.prediction.float().cpu().numpy())  # (N,C,H,W)
            report((k * steps + step.step + 1) / total, f"{sampler}: step {step.step + 1}/{steps}")

        start = time.perf_counter()
        final = model.sample(n, generator=torch.Generator().manual_seed(seed), labels=labels, sampler=sampler,
                             steps=steps, eta=eta if sampler == "ddim" else 0.0, guidance_scale=guidance_scale,
                             callback=keep)
        timelines[sampler] = Timeline(sampler, frames["t"], np.stack(frames["x_t"]), np.stack(frames["x0_pred"]),
                                      final.float().cpu().numpy(), time.perf_counter() - start)
    return timelines


def _frame(top: np.ndarray, bottom: np.ndarray | None, nrow: int) -> np.ndarray:
    """One GIF frame (uint8, (H,W) or (H,W,3)): the grid of ``top`` (N,C,H,W) above the grid of ``bottom``."""
    grid = to_grid(torch.from_numpy(top), nrow)
    if bottom is None:
        return grid
    band = np.full((SEPARATOR_PX, *grid.shape[1:]), 128, dtype=np.uint8)
    return np.concatenate([grid, band, to_grid(torch.from_numpy(bottom), nrow)])


def timeline_gif(timeline: Timeline, nrow: int | None = None, scale: int = 3, frame_ms: int = 120,
                 with_x0: bool = True) -> bytes:
    """An endlessly looping GIF of ``timeline``: one frame per step, then the final samples held longer.

    Each frame shows the grid of x_t above the grid of the predicted x0 (``with_x0``); the last
    frame shows the finished samples in both places. ``nrow`` images per grid row (default: a square).
    """
    n = timeline.final.shape[0]
    nrow = nrow or math.ceil(math.sqrt(n))
    arrays = [_frame(x_t, x0 if with_x0 else None, nrow) for x_t, x0 in zip(timeline.x_t, timeline.x0_pred)]
    arrays.append(_frame(timeline.final, timeline.final if with_x0 else None, nrow))
    frames = [Image.fromarray(a) for a in arrays]
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST) for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=[frame_ms] * (len(frames) - 1) + [max(FINAL_FRAME_MS, frame_ms)])
    return buf.getvalue()


# -- steps against quality ----------------------------------------------------------------------------------
@dataclass
class QualityPoint:
    """One sampler at one step count: its Fréchet distance and the wall time to draw the samples."""

    sampler: str
    steps: int
    frechet_distance: float
    seconds: float


@dataclass
class StepsQuality:
    """A steps-against-quality curve per sampler, and what it was measured with."""

    points: list[QualityPoint]
    num_samples: int
    seed: int
    guidance_scale: float | None   # None for unconditional models
    evaluator: str                 # the evaluator's fingerprint (genlib.comparison.module_fingerprint)

    def to_dict(self) -> dict:
        """JSON-ready: the points as dicts plus the measurement settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StepsQuality":
        """The inverse of ``to_dict``; KeyError/TypeError/ValueError when ``data`` is not one."""
        points = [QualityPoint(str(p["sampler"]), int(p["steps"]), float(p["frechet_distance"]), float(p["seconds"]))
                  for p in data["points"]]
        scale = data["guidance_scale"]
        return cls(points, int(data["num_samples"]), int(data["seed"]), None if scale is None else float(scale),
                   str(data["evaluator"]))

    def restricted_to(self, samplers: Sequence[str], steps_grid: Sequence[int]) -> "StepsQuality | None":
        """The points for every (sampler, steps) asked for, in that order; None when one is missing."""
        have = {(p.sampler, p.steps): p for p in self.points}
        wanted = [(s, k) for s in dict.fromkeys(samplers) for k in dict.fromkeys(steps_grid)]
        if any(pair not in have for pair in wanted):
            return None
        return dataclasses.replace(self, points=[have[pair] for pair in wanted])


@torch.no_grad()
def steps_quality(model: DiffusionModel, *, samplers: Sequence[str] = CURVE_SAMPLERS,
                  steps_grid: Sequence[int] = DEFAULT_CURVE_STEPS, num_samples: int = 500, seed: int = 0,
                  report: ReportFn | None = None, evaluator: Evaluator | None = None) -> StepsQuality:
    """The Fréchet distance of ``num_samples`` samples for every sampler and step count.

    Each (sampler, steps) draws from a fresh generator seeded with ``seed`` (conditional models:
    labels 0..K-1 in turn, the family's default guidance) and is compared with the training digits
    in the evaluator's features, as genlib.scoring does. ``report(fraction, message)`` is called
    after every denoising step, weighted by steps x samples so the bar moves evenly; raising from it
    (a task's cancel) stops the run. ``seconds`` times the sampling only, not the features.
    """
    _require_diffusion(model)
    if model.image_shape != EVAL_SHAPE:
        shape = "x".join(map(str, model.image_shape))
        raise ValueError(f"the evaluator judges 1x28x28 digits; this model draws {shape} images")
    if num_samples < MIN_CURVE_SAMPLES:
        raise ValueError(f"the Fréchet distance needs at least {MIN_CURVE_SAMPLES} samples, got {num_samples}")
    samplers, steps_grid = list(dict.fromkeys(samplers)), [int(k) for k in dict.fromkeys(steps_grid)]
    if not samplers or not steps_grid:
        raise ValueError("name at least one sampler and one step count")
    for sampler in samplers:
        for steps in steps_grid:
            model.check_sampling(sampler, steps, 0.0)
    evaluator = evaluator or Evaluator.load()
    report = report or _no_report
    labels = model.default_labels(num_samples)            # (num_samples,) cycling 0..K-1, or None
    scale = model.resolve_guidance(None)
    total_work = len(samplers) * sum(steps_grid) * num_samples  # UNet image-evaluations, the cost unit
    work_done = 0
    points = []
    for sampler in samplers:
        for steps in steps_grid:
            generator = torch.Generator().manual_seed(seed)
            chunks, seconds = [], 0.0
            for lo in range(0, num_samples, SAMPLE_CHUNK):
                size = min(SAMPLE_CHUNK, num_samples - lo)

                def progress(step: dict, size: int = size, lo: int = lo, sampler: str = sampler,
                             steps: int = steps) -> None:
                    fraction = (work_done + (step.step + 1) * size) / total_work
                    report(min(fraction, 0.999), f"{sampler}, {steps} steps: samples {lo + 1}-{lo + size} "
                                                 f"of {num_samples}, step {step.step + 1}")

                part = None if labels is None else labels[lo:lo + size]
                start = time.perf_counter()
                chunks.append(model.sample(size, generator=generator, labels=part, sampler=sampler, steps=steps,
                                           guidance_scale=scale, callback=progress).cpu())
                seconds += time.perf_counter() - start
                work_done += steps * size
            features = classifier_features(evaluator.ref.classifier, torch.cat(chunks))  # (num_samples,128)
            fd = frechet_distance_from_features(evaluator.ref.train_features, features)
            points.append(QualityPoint(sampler, steps, fd, seconds))
    report(1.0, "done")
    return StepsQuality(points, num_samples, seed, scale if model.conditional else None, evaluator.fingerprint)


# -- the cache --------------------------------------------------------------------------------------------
def _cache_path(fingerprint: str, num_samples: int, seed: int) -> Path:
    key = json.dumps(["steps-quality", SAMPLE_QUALITY_VERSION, fingerprint, num_samples, seed])
    return score_cache_dir() / f"steps-quality-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _read(path: Path, fingerprint: str) -> StepsQuality | None:
    """The result stored at ``path`` for this checkpoint content; None if missing, unreadable or stale."""
    try:
        data = json.loads(path.read_text())
        if data.get("fingerprint") != fingerprint or data.get("score_version") != SAMPLE_QUALITY_VERSION:
            return None
        return StepsQuality.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load_steps_quality(folder: str | Path, *, num_samples: int, seed: int, steps_grid: Sequence[int],
                       samplers: Sequence[str]) -> StepsQuality | None:
    """A stored result covering every (sampler, steps) asked for, restricted to them; None if none does.

    Looks first at the folder's own steps_quality.json (shipped checkpoints carry one), then at the
    disk cache. Either counts only if it was measured on this exact checkpoint content (the
    folder's fingerprint), with ``num_samples`` samples from ``seed``.
    """
    folder = Path(folder)
    fingerprint = folder_fingerprint(folder)
    for path in (folder / STEPS_QUALITY_FILE, _cache_path(fingerprint, num_samples, seed)):
        stored = _read(path, fingerprint)
        if stored is not None and (stored.num_samples, stored.seed) == (num_samples, seed):
            covered = stored.restricted_to(samplers, steps_grid)
            if covered is not None:
                return covered
    return None


def save_steps_quality(folder: str | Path, result: StepsQuality, *, into_folder: bool = False) -> Path:
    """Store ``result`` in the disk cache or, ``into_folder``, as the folder's steps_quality.json.

    Points already stored for the same checkpoint, sample count, seed and evaluator are kept unless
    ``result`` measured them again, so curves computed in parts add up. Writes are atomic. Returns
    the file written.
    """
    folder = Path(folder)
    fingerprint = folder_fingerprint(folder)
    path = folder / STEPS_QUALITY_FILE if into_folder else _cache_path(fingerprint, result.num_samples, result.seed)
    old = _read(path, fingerprint)
    points = {(p.sampler, p.steps): p for p in result.points}
    if old is not None and (old.num_samples, old.seed, old.evaluator) == (result.num_samples, result.seed,
                                                                          result.evaluator):
        points = {**{(p.sampler, p.steps): p for p in old.points}, **points}
    merged = dataclasses.replace(result, points=list(points.values()))
    text = json.dumps({"score_version": SAMPLE_QUALITY_VERSION, "fingerprint": fingerprint, **merged.to_dict()},
                      indent=1)
    if into_folder:
        write_extra(folder, STEPS_QUALITY_FILE, text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")  # one per writer, threads too
        tmp.write_text(text)
        os.replace(tmp, path)
    return path
