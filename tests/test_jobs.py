"""Background training jobs (genlib.runs.TrainingJob on genlib.background): a page can poll their
progress, curves and previews, cancel them (the partial run is saved) and is told in plain words
when one fails. The runner's generic behaviour is tested in test_background.py."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

import genlib
from genlib import ConfigError, TrainConfig, background
from genlib.background import RunnerBusy
from genlib.registry import UnknownFamilyError
from genlib.runs import (HISTOGRAM_COUNT, MAX_RUNNING_JOBS, MAX_SNAPSHOTS, PREVIEW_COUNT, JobView, PreviewSnapshot,
                         TrainingJob, _preview, build_model, start_training_job)

pytestmark = pytest.mark.usefixtures("core_runs_dir")

LONG = TrainConfig(epochs=1000, batch_size=16, device="cpu", preview_every=1000)  # far longer than any test


def _tiny(family: str):
    """The family's own tiny config (``tiny_config``), validated."""
    cls = genlib.get_family(family)
    return cls.Config.from_dict(cls.tiny_config)


def _jobs() -> list[TrainingJob]:
    return background.works("training")  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def core_no_running_jobs():
    """Each test starts and ends with no job of this process running (cancelling only its own)."""
    for job in _jobs():
        job.wait(60)
    before = set(j.id for j in _jobs())
    yield
    for job in _jobs():
        if job.id not in before:
            job.cancel()
            job.wait(60)
    assert not [j.id for j in _jobs() if not j.snapshot().done]


def _poll(job, until, timeout=60.0, every=0.01):
    """Snapshots taken until ``until(snapshot)`` or the timeout."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.snapshot()
        seen.append(snap)
        if until(snap):
            return seen
        time.sleep(every)
    raise AssertionError(f"timed out; last snapshot: status={seen[-1].status} step={seen[-1].step} "
                         f"message={seen[-1].message!r}")


def test_job_runs_in_background_progresses_and_finishes(tmp_path):
    train = TrainConfig(epochs=1, max_steps=200, batch_size=16, device="cpu", preview_every=50)
    job = start_training_job("vae", _tiny("vae"), train, name="bg", out_root=tmp_path)
    assert isinstance(job, TrainingJob) and job.snapshot().status == "running"  # returned at once
    assert background.get(job.id) is job and job in _jobs()
    assert job._thread is not threading.current_thread() and job._thread.daemon
    seen = _poll(job, lambda s: s.done)
    final = seen[-1]
    assert final.status == "finished", final.message
    assert final.kind == "training" and final.title == "bg" and final.error is None
    # what is being trained travels with every snapshot (a page shows it beside the live panel)
    view = final.state
    assert isinstance(view, JobView) and view.family == "vae"
    assert view.train_config == train and view.model_config == _tiny("vae")
    assert all(s.state.train_config == train and s.state.family == "vae" for s in seen)
    # progress, with an ETA, was visible while it ran
    steps = [s.step for s in seen]
    assert steps == sorted(steps)
    assert len(set(steps)) >= 3, f"saw only steps {sorted(set(steps))}"
    assert any(s.status == "running" and 0 < s.step < 200 for s in seen)
    assert any(s.status == "running" and s.step > 0 and s.eta_s is not None and s.eta_s > 0 for s in seen)
    assert all(s.eta_s is None for s in seen if s.done)
    assert all(s.fraction == pytest.approx(s.step / 200) for s in seen if s.running and s.total_steps)
    assert final.step == final.total_steps == 200 and final.fraction == 1.0
    history = view.history
    assert len(history) == 200 and history[-1]["step"] == 200 and "loss" in history[-1]
    assert all(len(a.state.history) <= len(b.state.history) for a, b in zip(seen, seen[1:]))
    assert any(len(s.state.history) < 200 for s in seen)  # each snapshot holds a copy, not the live list
    assert isinstance(view.preview, np.ndarray) and view.preview.dtype == np.uint8
    assert view.preview.ndim == 2 and view.preview.shape[0] > 28 and view.preview_step == 200
    assert {s.state.preview_step for s in seen if s.state.preview is not None} <= {1, 50, 100, 150, 200}
    # every preview is kept as a snapshot (for the scrub slider), with the evaluator's class histogram
    assert [snap.step for snap in view.snapshots] == [1, 50, 100, 150, 200]
    assert all(isinstance(snap, PreviewSnapshot) for snap in view.snapshots)
    assert all(sum(snap.class_counts) == HISTOGRAM_COUNT and len(snap.class_counts) == 10 for snap in view.snapshots)
    assert np.array_equal(view.snapshots[-1].grid, view.preview)
    # a real, loadable checkpoint
    assert final.result == view.result_path == tmp_path / "bg"
    assert final.message == "finished; saved as bg"
    model, info = genlib.load_model(view.result_path)
    assert info.family == "vae" and model.config == _tiny("vae")
    metrics = json.loads((view.result_path / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["train_steps"] == 200 and "frechet_distance" in metrics
    for name in ("samples.png", "history.csv.gz", "README.md"):
        assert (view.result_path / name).exists()


def test_preview_snapshots_are_thinned_keeping_the_first_and_the_latest(tmp_path):
    steps = MAX_SNAPSHOTS + 6
    train = TrainConfig(epochs=1, max_steps=steps, batch_size=16, device="cpu", preview_every=1)
    final = start_training_job("ae", _tiny("ae"), train, name="thin", out_root=tmp_path).wait(120)
    assert final.status == "finished", final.message
    kept = [snap.step for snap in final.state.snapshots]
    # at MAX_SNAPSHOTS + 1 every other one of the older ones is dropped, then new ones are added again
    assert kept == list(range(1, MAX_SNAPSHOTS, 2)) + list(range(MAX_SNAPSHOTS + 1, steps + 1))
    assert len(kept) <= MAX_SNAPSHOTS and kept[0] == 1 and kept[-1] == steps


def test_a_preview_without_an_evaluator_has_no_histogram():
    model = build_model("ae", _tiny("ae"), seed=0).train()
    snap = _preview(model, step=7)
    assert snap.step == 7 and snap.class_counts is None and snap.grid.dtype == np.uint8
    assert snap.grid.shape[0] > 28 and snap.grid.shape[0] == snap.grid.shape[1]  # a square grid of PREVIEW_COUNT
    assert PREVIEW_COUNT == 16 and model.training  # the model is left as it was
    assert np.array_equal(_preview(model, step=8).grid, snap.grid)  # fixed noise: the same picture


def test_cancel_stops_quickly_and_saves_the_partial_run(tmp_path):
    job = start_training_job("ae", _tiny("ae"), LONG, name="to-cancel", out_root=tmp_path)
    at_cancel = _poll(job, lambda s: s.step >= 3)[-1]
    t0 = time.monotonic()
    job.cancel()
    final = _poll(job, lambda s: s.done, timeout=30)[-1]
    took = time.monotonic() - t0
    assert took < 5.0, f"cancel took {took:.1f}s"  # behaviour, not a benchmark: it stops within a step and saves
    assert final.status == "cancelled" and final.result is None and final.error is None
    assert 3 <= final.step < final.total_steps
    assert final.step <= at_cancel.step + 2, "training ran on after the cancel"
    assert final.message == f"cancelled at step {final.step}; the partial run was saved as to-cancel"
    path = final.state.result_path
    assert path == tmp_path / "to-cancel" and len(final.state.history) == final.step
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["status"] == "cancelled" and metrics["train_steps"] == final.step
    assert "frechet_distance" not in metrics  # not evaluated
    model, _ = genlib.load_model(path)
    assert torch.isfinite(model.sample(2)).all()


def test_status_matches_the_saved_run_when_cancel_comes_after_training(tmp_path):
    # Cancel pressed while the finished model is being evaluated: training was complete and the run
    # is saved as finished, so the job must not report "cancelled ... partial run".
    train = TrainConfig(epochs=1, max_steps=3, batch_size=16, device="cpu")
    job = start_training_job("vae", _tiny("vae"), train, name="late", out_root=tmp_path)
    at_cancel = _poll(job, lambda s: "evaluating" in s.message or s.done)[-1]
    job.cancel()
    assert not at_cancel.done and at_cancel.step == 3  # the cancel really came while evaluating
    final = _poll(job, lambda s: s.done)[-1]
    saved = json.loads((final.state.result_path / "metrics.json").read_text())["status"]
    assert final.status == saved, (final.status, saved, final.message)


def test_a_diverged_run_fails_in_plain_words_and_saves_nothing(tmp_path):
    model = build_model("ae", _tiny("ae"), seed=0)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # the first loss is nan
    job = background.start(TrainingJob(model, LONG, name="nan", out_root=tmp_path))
    final = job.wait(60)
    assert final.status == "failed" and final.result is None and final.state.result_path is None
    assert final.message.startswith("training diverged: ") and final.message.endswith(". Nothing was saved.")
    assert "nan" in final.message and "learning rate" in final.message and "Error" not in final.message
    assert final.error == f"Failed: {final.message}"
    assert not (tmp_path / "nan").exists()


def test_job_limit(tmp_path):
    assert TrainingJob.limit == MAX_RUNNING_JOBS
    jobs = [start_training_job("ae", _tiny("ae"), LONG, name=f"j{i}", out_root=tmp_path)
            for i in range(MAX_RUNNING_JOBS)]
    before = len(_jobs())
    with pytest.raises(RunnerBusy, match=f"^{MAX_RUNNING_JOBS} training jobs are already running; "
                                         "wait for one or cancel it$"):
        start_training_job("ae", _tiny("ae"), LONG, name="one-too-many", out_root=tmp_path)
    assert len(_jobs()) == before  # nothing was registered
    assert not (tmp_path / "one-too-many").exists()
    jobs[0].cancel()
    jobs[0].wait(30)
    extra = start_training_job("ae", _tiny("ae"), LONG, name="fits-now", out_root=tmp_path)
    for job in (*jobs, extra):
        job.cancel()
    for job in (*jobs, extra):
        assert job.wait(30).status == "cancelled"


def test_bad_config_fails_synchronously(tmp_path):
    before = len(_jobs())
    with pytest.raises(ConfigError, match="latent_dim"):
        start_training_job("vae", {"latent_dim": 0}, TrainConfig(), out_root=tmp_path)
    with pytest.raises(ConfigError, match="latnt_dim"):
        start_training_job("vae", {"latnt_dim": 4}, TrainConfig(), out_root=tmp_path)
    with pytest.raises(UnknownFamilyError, match="known families"):
        start_training_job("no-such-family", {}, TrainConfig(), out_root=tmp_path)
    assert len(_jobs()) == before  # nothing was started
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_worker_is_reported_not_swallowed(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("the output root is a file, so saving must fail")
    job = start_training_job("ae", _tiny("ae"), LONG, name="x", out_root=blocker)
    _poll(job, lambda s: s.step >= 1)
    job.cancel()  # cancelled runs are saved too: the save is what fails
    final = job.wait(30)
    assert final.status == "failed" and final.state.result_path is None and final.result is None
    # The page shows this message: the reason in words and the file, never an exception's class name.
    assert str(blocker) in final.message and "Error" not in final.message, final.message
    assert final.error and "Error: " in final.error  # the technical line names the class
    assert final.state.family == "ae"
