"""genlib.jobs: background training that a page can poll and cancel."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

import genlib
from genlib import ConfigError, TrainConfig
from genlib.jobs import MAX_RUNNING_JOBS, JobLimitError, get_job, list_jobs, start_training_job
from genlib.registry import UnknownFamilyError

pytestmark = pytest.mark.usefixtures("core_runs_dir")

LONG = TrainConfig(epochs=1000, batch_size=16, device="cpu", preview_every=1000)  # far longer than any test


@pytest.fixture(autouse=True)
def core_no_running_jobs():
    """Each test starts and ends with no job of this process running (cancelling only its own)."""
    for job in list_jobs():
        job.wait(60)
    before = set(j.id for j in list_jobs())
    yield
    for job in list_jobs():
        if job.id not in before:
            job.cancel()
            job.wait(60)
    assert not [j.id for j in list_jobs() if not j.snapshot().done]


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


def test_job_runs_in_background_progresses_and_finishes(core_tiny_config, tmp_path):
    train = TrainConfig(epochs=1, max_steps=200, batch_size=16, device="cpu", preview_every=50)
    job = start_training_job("vae", core_tiny_config("vae"), train, name="bg", out_root=tmp_path)
    assert job.snapshot().status in ("queued", "running")  # returned at once, before training ended
    assert get_job(job.id) is job and job in list_jobs()
    assert job._thread is not threading.current_thread() and job._thread.daemon
    seen = _poll(job, lambda s: s.done)
    final = seen[-1]
    assert final.status == "finished", final.message
    # progress was visible while it ran
    steps = [s.step for s in seen]
    assert steps == sorted(steps)
    assert len(set(steps)) >= 3, f"saw only steps {sorted(set(steps))}"
    assert any(s.status == "running" and 0 < s.step < 200 for s in seen)
    assert final.step == final.total_steps == 200 and final.fraction == 1.0
    assert len(final.history) == 200 and final.history[-1]["step"] == 200 and "loss" in final.history[-1]
    assert all(len(a.history) <= len(b.history) for a, b in zip(seen, seen[1:]))
    assert isinstance(final.preview, np.ndarray) and final.preview.dtype == np.uint8
    assert final.preview.ndim == 2 and final.preview.shape[0] > 28 and final.preview_step == 200
    assert {s.preview_step for s in seen if s.preview is not None} <= {1, 50, 100, 150, 200}
    # every preview is kept as a snapshot (for the scrub slider), with the evaluator's class histogram
    assert [snap.step for snap in final.snapshots] == [1, 50, 100, 150, 200]
    assert all(sum(snap.class_counts) == 100 and len(snap.class_counts) == 10 for snap in final.snapshots)
    assert np.array_equal(final.snapshots[-1].grid, final.preview)
    # a real, loadable checkpoint
    assert final.result_path == tmp_path / "bg" and "saved as bg" in final.message
    model, info = genlib.load_model(final.result_path)
    assert info.family == "vae" and model.config == core_tiny_config("vae")
    metrics = json.loads((final.result_path / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["train_steps"] == 200 and "frechet_distance" in metrics
    for name in ("samples.png", "history.csv", "README.md"):
        assert (final.result_path / name).exists()


def test_cancel_stops_quickly_and_saves_the_partial_run(core_tiny_config, tmp_path):
    job = start_training_job("ae", core_tiny_config("ae"), LONG, name="to-cancel", out_root=tmp_path)
    _poll(job, lambda s: s.step >= 3)
    t0 = time.monotonic()
    job.cancel()
    final = _poll(job, lambda s: s.done, timeout=30)[-1]
    took = time.monotonic() - t0
    assert took < 5.0, f"cancel took {took:.1f}s"  # behaviour, not a benchmark: it stops within a step
    assert final.status == "cancelled" and "cancelled at step" in final.message
    assert 3 <= final.step < final.total_steps
    metrics = json.loads((final.result_path / "metrics.json").read_text())
    assert metrics["status"] == "cancelled" and metrics["train_steps"] == final.step
    assert "frechet_distance" not in metrics  # not evaluated
    model, _ = genlib.load_model(final.result_path)
    assert torch.isfinite(model.sample(2)).all()


def test_status_matches_the_saved_run_when_cancel_comes_after_training(core_tiny_config, tmp_path):
    # Cancel pressed while the finished model is being evaluated: training was complete and the run
    # is saved as finished, so the job must not report "cancelled ... partial run".
    train = TrainConfig(epochs=1, max_steps=3, batch_size=16, device="cpu")
    job = start_training_job("vae", core_tiny_config("vae"), train, name="late", out_root=tmp_path)
    at_cancel = _poll(job, lambda s: "evaluating" in s.message or s.done)[-1]
    job.cancel()
    assert not at_cancel.done and at_cancel.step == 3  # the cancel really came while evaluating
    final = _poll(job, lambda s: s.done)[-1]
    saved = json.loads((final.result_path / "metrics.json").read_text())["status"]
    assert final.status == saved, (final.status, saved, final.message)


def test_job_limit(core_tiny_config, tmp_path):
    jobs = [start_training_job("ae", core_tiny_config("ae"), LONG, name=f"j{i}", out_root=tmp_path)
            for i in range(MAX_RUNNING_JOBS)]
    with pytest.raises(JobLimitError, match=f"{MAX_RUNNING_JOBS} training jobs are already running"):
        start_training_job("ae", core_tiny_config("ae"), LONG, name="one-too-many", out_root=tmp_path)
    assert not (tmp_path / "one-too-many").exists()
    jobs[0].cancel()
    jobs[0].wait(30)
    extra = start_training_job("ae", core_tiny_config("ae"), LONG, name="fits-now", out_root=tmp_path)
    for job in (*jobs, extra):
        job.cancel()
    for job in (*jobs, extra):
        assert job.wait(30).status == "cancelled"


def test_bad_config_fails_synchronously(tmp_path):
    before = len(list_jobs())
    with pytest.raises(ConfigError, match="latent_dim"):
        start_training_job("vae", {"latent_dim": 0}, TrainConfig(), out_root=tmp_path)
    with pytest.raises(ConfigError, match="latnt_dim"):
        start_training_job("vae", {"latnt_dim": 4}, TrainConfig(), out_root=tmp_path)
    with pytest.raises(UnknownFamilyError, match="known families"):
        start_training_job("no-such-family", {}, TrainConfig(), out_root=tmp_path)
    assert len(list_jobs()) == before  # nothing was started
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_worker_is_reported_not_swallowed(core_tiny_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("the output root is a file, so saving must fail")
    job = start_training_job("ae", core_tiny_config("ae"), LONG, name="x", out_root=blocker)
    _poll(job, lambda s: s.step >= 1)
    job.cancel()  # cancelled runs are saved too: the save is what fails
    final = job.wait(30)
    assert final.status == "failed" and final.result_path is None
    # The page shows this message: the reason in words and the file, never an exception's class name.
    assert str(blocker) in final.message and "Error" not in final.message, final.message
    assert final.family == "ae"


@pytest.mark.parametrize("err, expected", [
    (FileExistsError(17, "File exists", "/runs/x"), "file exists: /runs/x"),
    (OSError(28, "No space left on device"), "no space left on device"),
    (MemoryError(), "the machine ran out of memory"),
    (ValueError("steps must be positive\nsecond line"), "steps must be positive"),
    (KeyError("latent_dim"), "an expected entry is missing: 'latent_dim'"),
    (RuntimeError(), "an unexpected error stopped it (the server log has the details)"),
])
def test_plain_error_names_the_problem_without_the_class(err, expected):
    from genlib.tasks import plain_error

    assert plain_error(err) == expected
    assert type(err).__name__ not in plain_error(err)
