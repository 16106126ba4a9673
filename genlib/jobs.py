"""Background training jobs for the app.

A job runs ``genlib.runs.train_run`` in a worker thread that never touches Streamlit. The page
keeps only the job id in its session state and polls ``snapshot()`` from an
``st.fragment(run_every=...)``; widget clicks and page switches re-run the script but never
touch the thread, so a job survives navigation. Cancel sets an Event that the Trainer checks
before every step, so a job stops within one step (well under a second here).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlib.checkpoints import runs_dir
from genlib.config import Config, TrainConfig
from genlib.images import to_grid
from genlib.model import GenerativeModel
from genlib.tasks import plain_error
from genlib.training import Progress, TrainingDiverged

MAX_RUNNING_JOBS = 2  # a 2-core machine gains nothing from more
PREVIEW_COUNT = 16
PREVIEW_NROW = 4        # a square 4x4 grid stays large enough to read in a narrow live panel
HISTOGRAM_COUNT = 100   # fixed-noise samples the evaluator classifies at each snapshot
MAX_SNAPSHOTS = 64      # older snapshots are thinned (every other one dropped) beyond this


@dataclass(frozen=True)
class PreviewSnapshot:
    """What the model drew at one step, from fixed noise: a grid and its class histogram."""

    step: int
    grid: np.ndarray                 # uint8 grid of PREVIEW_COUNT samples
    class_counts: list[int] | None   # evaluator's predicted classes of HISTOGRAM_COUNT samples (28x28 digits only)


class JobLimitError(RuntimeError):
    """Too many jobs are running already."""


@dataclass
class JobSnapshot:
    """A consistent copy of a job's state, safe to read from the script thread."""

    id: str
    title: str
    status: str                      # queued | running | finished | cancelled | failed
    step: int
    total_steps: int
    elapsed_s: float
    eta_s: float | None
    history: list[dict[str, float]]
    message: str
    result_path: Path | None
    snapshots: list[PreviewSnapshot] = field(default_factory=list)  # oldest first
    family: str = ""                 # the family being trained (a page names it beside the form)

    @property
    def preview(self) -> np.ndarray | None:
        """The latest fixed-noise grid (uint8), or None before the first snapshot."""
        return self.snapshots[-1].grid if self.snapshots else None

    @property
    def preview_step(self) -> int:
        return self.snapshots[-1].step if self.snapshots else 0

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        return self.status in ("finished", "cancelled", "failed")


@dataclass
class Job:
    id: str
    title: str
    family: str
    model_config: dict[str, Any]
    train_config: TrainConfig
    out: Path
    cancel_event: threading.Event = field(default_factory=threading.Event)
    status: str = "queued"
    step: int = 0
    total_steps: int = 0
    started: float = 0.0
    eta_s: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    result_path: Path | None = None
    snapshots: list[PreviewSnapshot] = field(default_factory=list)
    _classifier: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def cancel(self) -> None:
        self.cancel_event.set()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self.id, self.title, self.status, self.step, self.total_steps,
                               time.perf_counter() - self.started if self.started else 0.0, self.eta_s,
                               list(self.history), self.message,
                               self.result_path, list(self.snapshots), self.family)

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        if self._thread:
            self._thread.join(timeout)
        return self.snapshot()

    # -- worker side ---------------------------------------------------------------------------
    def _on_step(self, progress: Progress, model: GenerativeModel) -> None:
        snapshot = None
        if progress.step == 1 or progress.step % self.train_config.preview_every == 0 \
                or progress.step == progress.total_steps:
            snapshot = _preview(model, progress.step, self._evaluator())
        with self._lock:
            self.step, self.total_steps, self.eta_s = progress.step, progress.total_steps, progress.eta_s
            self.history.append({"step": progress.step, **progress.scalars})
            if snapshot is not None:
                self.snapshots.append(snapshot)
                if len(self.snapshots) > MAX_SNAPSHOTS:  # keep the first and the latest, thin the middle
                    self.snapshots = self.snapshots[:-1:2] + self.snapshots[-1:]

    def _evaluator(self):
        """The digit classifier for the snapshots' class histograms (None when it is missing)."""
        if self._classifier is None:
            from genlib.checkpoints import CheckpointError
            from genlib.evaluator import load_classifier

            try:
                self._classifier = load_classifier()
            except CheckpointError:
                self._classifier = False
        return self._classifier or None

    def _log(self, message: str) -> None:
        with self._lock:
            self.message = message

    def _run(self) -> None:
        from genlib.runs import train_run

        with self._lock:
            self.status, self.started = "running", time.perf_counter()
        try:
            # train_run's status, not the cancel flag: a cancel after the last step (while
            # evaluating) leaves a finished run, so the job is finished too.
            path, status = train_run(self.family, self.model_config, self.train_config, self.out,
                                     callbacks=[self._on_step], cancel=self.cancel_event, log=self._log)
            message = (f"cancelled at step {self.step}; the partial run was saved as {path.name}"
                       if status == "cancelled" else f"finished; saved as {path.name}")
        except TrainingDiverged as err:
            path, status, message = None, "failed", f"training diverged: {err}. Nothing was saved."
        except Exception as err:  # the worker must never die silently: report it to the page
            # Plain words for the page; the traceback (with the error's class) goes to the log.
            path, status, message = None, "failed", plain_error(err)
            logging.getLogger(__name__).exception("training job %s (%s) failed", self.id, self.family)
        with self._lock:
            self.status, self.message, self.result_path = status, message, path


@torch.no_grad()
def _preview(model: GenerativeModel, step: int, classifier=None) -> PreviewSnapshot:
    """Samples from fixed noise, so successive previews show the same images improving; the
    evaluator's class histogram of more of them shows mode collapse as it happens."""
    was_training = model.training
    model.eval()
    count = HISTOGRAM_COUNT if classifier is not None else PREVIEW_COUNT
    gen = torch.Generator().manual_seed(0)
    images = model.sample(count, generator=gen, labels=model.default_labels(count)).cpu()
    model.train(was_training)
    counts = None
    if classifier is not None and tuple(images.shape[1:]) == (1, 28, 28):
        predicted = classifier.predict(images)
        counts = torch.bincount(predicted, minlength=classifier.config.num_classes).tolist()
    return PreviewSnapshot(step, to_grid(images[:PREVIEW_COUNT], nrow=PREVIEW_NROW), counts)


_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()


def start_training_job(family: str, model_config: dict[str, Any] | Config, train_config: TrainConfig,
                       name: str | None = None, out_root: Path | None = None) -> Job:
    """Start training in a background thread and return the Job at once."""
    if isinstance(model_config, Config):
        model_config = model_config.to_dict()
    from genlib.runs import build_model

    build_model(family, model_config)  # validate now, in the caller's thread, for a clear error
    with _JOBS_LOCK:
        running = [j for j in _JOBS.values() if j.status in ("queued", "running")]
        if len(running) >= MAX_RUNNING_JOBS:
            raise JobLimitError(f"{len(running)} training jobs are already running; wait for one or cancel it")
        job_id = uuid.uuid4().hex[:8]
        name = name or f"{family}-{time.strftime('%Y%m%d-%H%M%S')}-{job_id}"
        job = Job(job_id, name, family, dict(model_config), train_config, (out_root or runs_dir()) / name)
        job._thread = threading.Thread(target=job._run, name=f"genlib-job-{job_id}", daemon=True)
        _JOBS[job_id] = job
    job._thread.start()
    return job


def get_job(job_id: str) -> Job | None:
    with _JOBS_LOCK:
        return _JOBS.get(job_id)


def list_jobs() -> list[Job]:
    with _JOBS_LOCK:
        return list(_JOBS.values())
