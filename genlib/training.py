"""One Trainer for every family: device, seeding, AMP on CUDA, gradient clipping, EMA,
callbacks, stop-on-NaN and cancellation. The model decides what a step does
(``GenerativeModel.optimization_step``); the Trainer owns the loop around it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genlib.config import TrainConfig
from genlib.model import GenerativeModel, StepTools


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf. The message says where and what to try."""


class TrainingCancelled(RuntimeError):
    """The cancel event was set; the model holds the weights of the last finished step."""


def pick_device(name: str = "auto") -> torch.device:
    """'auto' means CUDA when there is one, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate of ``step`` (0-based) as a share of ``config.lr``: a linear warm-up over
    ``warmup_steps`` (from 1/(warmup+1) up to 1, as nanoGPT's), then constant, or a cosine decay that
    reaches zero as the last of ``total`` steps ends (without warm-up: CosineAnnealingLR's closed form)."""
    warmup = min(config.warmup_steps, max(0, total - 1))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.lr_schedule != "cosine":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@dataclass
class Progress:
    """A snapshot handed to callbacks after every step."""

    step: int
    total_steps: int
    epoch: int
    scalars: dict[str, float]
    elapsed_s: float

    @property
    def fraction(self) -> float:
        """Share of the steps done, 0..1."""
        return self.step / max(1, self.total_steps)

    @property
    def eta_s(self) -> float:
        """Estimated seconds left, from the mean time per step so far."""
        return self.elapsed_s / max(1, self.step) * (self.total_steps - self.step)


@dataclass
class TrainResult:
    """What a fit did: steps run, one history row per step, and wall time."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)  # one row per step
    seconds: float = 0.0


Callback = Callable[[Progress, GenerativeModel], None]


class Trainer:
    """Runs ``config.epochs`` passes of a family's optimisation step over a labelled image set."""

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = (),
                 cancel: threading.Event | None = None):
        self.config = config
        self.callbacks = list(callbacks)
        self.cancel = cancel or threading.Event()
        self.device = pick_device(config.device)
        self.use_amp = config.amp and self.device.type == "cuda" or config.cpu_bf16 and self.device.type == "cpu"
        self.ema: AveragedModel | None = None

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer,
                           params: Sequence[nn.Parameter]) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {self._step}; "
                "try a lower learning rate, gradient clipping, or a smaller beta"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Check the gradient norm even without clipping: a finite loss can still have a NaN/inf
        # gradient, and one optimizer.step() with it would spoil the weights.
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norm = nn.utils.clip_grad_norm_(params, max_norm)
        if not torch.isfinite(norm):
            raise TrainingDiverged(f"gradients became non-finite at step {self._step}; lower the learning rate")
        optimizer.step()

    def fit(self, model: GenerativeModel, images: Tensor, labels: Tensor,
            result: TrainResult | None = None) -> TrainResult:
        """Train ``model`` in place on images (N,C,H,W) in [0,1] with labels (N,).

        Raises TrainingDiverged on NaN/inf and TrainingCancelled when ``cancel`` is set; in both
        cases the model keeps its last good weights and can still be used. Pass ``result`` to
        keep the partial history when an exception ends the run.
        """
        cfg = self.config
        gen = seed_everything(cfg.seed)
        model.to(self.device).train()
        optimizers = model.configure_optimizers(cfg.lr)
        if cfg.ema_decay > 0:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        n = images.shape[0]
        batch = min(cfg.batch_size, n)
        steps_per_epoch = n // batch  # drop the last partial batch: steady batch statistics
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        result = result if result is not None else TrainResult(steps=0)
        schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg))
                     for opt in optimizers] if cfg.lr_schedule == "cosine" or cfg.warmup_steps else []
        tools = StepTools(self._backward_and_step, self._autocast, step=0)
        start = time.perf_counter()
        self._step = 0
        try:
            for epoch in range(cfg.epochs):
                order = torch.randperm(n, generator=gen)
                for i in range(steps_per_epoch):
                    if self._step >= total:
                        break
                    if self.cancel.is_set():
                        raise TrainingCancelled(f"cancelled at step {self._step} of {total}")
                    idx = order[i * batch:(i + 1) * batch]
                    xb = images[idx].to(self.device, non_blocking=True)
                    yb = labels[idx].to(self.device, non_blocking=True)
                    tools.step = self._step
                    out = model.optimization_step((xb, yb), optimizers, tools)
                    bad = [k for k, v in out.scalars.items() if not math.isfinite(v)]
                    if bad:
                        raise TrainingDiverged(f"{', '.join(bad)} became non-finite at step {self._step}; "
                                               "try a lower learning rate or gradient clipping")
                    if self.ema is not None:
                        self.ema.update_parameters(model)
                    for schedule in schedules:
                        schedule.step()
                    self._step += 1
                    result.steps = self._step
                    result.history.append({"step": self._step, "epoch": epoch + 1, **out.scalars})
                    progress = Progress(self._step, total, epoch + 1, out.scalars, time.perf_counter() - start)
                    for cb in self.callbacks:
                        cb(progress, model)
        except BaseException:  # cancelled (the partial run is saved) or diverged: finish the model all the same
            try:
                self._finish(model, images, labels, result, start)
            except Exception:  # never hide why the run stopped behind a second error
                logging.getLogger(__name__).exception("finishing the model after the run stopped failed")
            raise
        self._finish(model, images, labels, result, start)
        return result

    def _finish(self, model: GenerativeModel, images: Tensor, labels: Tensor, result: TrainResult,
                start: float) -> None:
        """Every exit path: record the time, ship the EMA weights, switch to eval mode and call
        ``on_train_end`` (the plain AE fits its sampling prior there)."""
        result.seconds = time.perf_counter() - start
        if self.ema is not None and result.steps:
            # Ship the averaged weights: copy them into the model the caller holds.
            model.load_state_dict(self.ema.module.state_dict())
        model.eval()
        with torch.no_grad():
            model.on_train_end(images.to(self.device), labels.to(self.device))
