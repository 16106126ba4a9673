"""genlib.background, the one runner: progress and ETA, results, failures in plain words, cancel,
pause and resume, sharing by key, the per-kind limits and forgetting old work (real threads)."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import pytest

from genlib import background
from genlib.background import (Cancelled, Control, Failed, FunctionWork, RunnerBusy, Snapshot, Work, get, plain_error,
                               start, start_task, works)
from conftest import wait_for


def _key(name: str) -> str:
    """A key no other test (or earlier run in this process) has used."""
    return f"{name}-{uuid.uuid4().hex}"


class Counter(Work):
    """Counts to ``n``, one count per report, honouring pause at every count."""

    kind = "test-counter"

    def __init__(self, n: int = 100_000, key: str | None = None, every_s: float = 0.002):
        super().__init__(key, title=f"count to {n}")
        self.n, self.every_s, self.count = n, every_s, 0

    def run(self, control: Control) -> int:
        while self.count < self.n:
            control.wait_while_paused()
            with self.lock:
                self.count += 1
            control.report(step=self.count, total=self.n, message=f"count {self.count}")
            time.sleep(self.every_s)
        control.final_message = f"counted to {self.count}"
        return self.count

    def view(self) -> dict:
        return {"count": self.count}


class Limited(Counter):
    """A kind with a limit of two running at once."""

    kind = "test-limited"
    limit = 2
    busy_message = "{n} limited works are already running; pause one"


class Raises(Work):
    """Raises ``err`` from its worker after reporting a quarter."""

    def __init__(self, err: BaseException):
        super().__init__(title="raises")
        self.err = err

    def run(self, control: Control) -> None:
        control.report(0.25, "about to stop")
        raise self.err


@pytest.fixture
def cleanup():
    """Cancel (and release) every work a test hands over, so none outlives it."""
    held: list = []
    yield held
    for item in held:
        item.set() if isinstance(item, threading.Event) else item.cancel()
    for item in held:
        if isinstance(item, Work):
            assert not item._thread.is_alive() or item.wait(5).done, f"{item.title} did not stop"


# -- functions as tasks ----------------------------------------------------------------------------------
def test_a_task_reports_progress_and_eta_and_returns_its_result():
    gate = threading.Event()

    def work(report, cancel):
        report(0.5, "half way")
        gate.wait(30)
        return {"answer": 42}

    key = _key("progress")
    task = start_task(key, work, title="the answer")
    assert isinstance(task, FunctionWork) and task.kind == "task"
    assert get(task.id) is task and get("nope") is None and get(None) is None
    assert task in works("task") and task in works() and task not in works("training")
    assert wait_for(lambda: task.snapshot().fraction == 0.5)
    time.sleep(0.05)
    snap = task.snapshot()
    assert isinstance(snap, Snapshot) and (snap.id, snap.key, snap.kind, snap.title) == (task.id, key, "task",
                                                                                       "the answer")
    assert snap.status == "running" and snap.running and not snap.done
    assert snap.message == "half way" and snap.result is None and snap.error is None
    # ETA from the rate so far: half done after elapsed_s, so as long again to go
    assert snap.elapsed_s >= 0.05 and snap.eta_s == pytest.approx(snap.elapsed_s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.status = "finished"  # type: ignore[misc]
    gate.set()
    final = task.wait(30)
    assert final.status == "finished" and final.done and not final.running and final.fraction == 1.0
    assert final.result == {"answer": 42} and final.error is None and final.message == "done"
    assert final.eta_s is None and final.elapsed_s >= snap.elapsed_s
    time.sleep(0.02)
    assert task.snapshot().elapsed_s == final.elapsed_s  # frozen once ended


def test_no_eta_before_there_is_progress_to_go_by():
    gate = threading.Event()
    task = start_task(_key("no-eta"), lambda report, cancel: (report(0.005, "barely started"), gate.wait(30)))
    try:
        assert wait_for(lambda: task.snapshot().message == "barely started")
        assert task.snapshot().eta_s is None
    finally:
        gate.set()
    assert task.wait(30).status == "finished"


def test_an_exception_becomes_a_plain_message_and_one_technical_line(caplog):
    def work(report, cancel):
        report(0.25, "about to fail")
        raise ValueError("steps must be between 1 and 100\nsecond line")

    with caplog.at_level(logging.ERROR, logger="genlib.background"):
        snap = start_task(_key("fail"), work).wait(30)
    assert snap.status == "failed" and snap.done and snap.result is None and snap.eta_s is None
    assert snap.message == "steps must be between 1 and 100"  # for the page: no class name, one line
    assert snap.error == "ValueError: steps must be between 1 and 100"  # for logs and tests
    assert snap.fraction == 0.25
    # the traceback went to the log
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ValueError]
    assert logged, "an unexpected failure left no traceback in the log"


def test_failed_ends_the_work_with_its_own_message_and_no_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="genlib.background"):
        snap = start(Raises(Failed("the loss became nan at step 3; lower the learning rate"))).wait(30)
    assert snap.status == "failed" and snap.message == "the loss became nan at step 3; lower the learning rate"
    assert snap.error == "Failed: the loss became nan at step 3; lower the learning rate"
    assert snap.fraction == 0.25 and snap.result is None
    assert not [r for r in caplog.records if r.exc_info], "an expected failure logged a traceback"


def test_a_worker_may_end_as_cancelled_with_its_own_message():
    snap = start(Raises(Cancelled("stopped: the data went away"))).wait(30)
    assert snap.status == "cancelled" and snap.message == "stopped: the data went away" and snap.error is None


def test_cancel_stops_the_task_at_its_next_report_within_a_second():
    calls = []

    def work(report, cancel):
        for i in range(100_000):
            calls.append(i)
            report(i / 100_000, f"step {i}")
            threading.Event().wait(0.001)
        return "finished"

    task = start_task(_key("cancel"), work)
    assert wait_for(lambda: len(calls) > 2)
    t0 = time.monotonic()
    task.cancel()
    snap = task.wait(30)
    assert time.monotonic() - t0 < 1.0
    assert snap.status == "cancelled" and snap.done and snap.result is None and snap.error is None
    assert snap.message.startswith("cancelled at ") and snap.eta_s is None
    assert len(calls) < 100_000


def test_report_raises_cancelled_only_after_cancel():
    seen = {}

    def work(report, cancel):
        report(0.1, "fine")
        seen["before"] = cancel.is_set()
        cancel.wait(30)  # the cancel Event is handed to fn too
        try:
            report(0.2, "too late")
        except Cancelled:
            seen["raised"] = True
            raise

    gate_task = start_task(_key("raises"), work)
    assert wait_for(lambda: "before" in seen)
    gate_task.cancel()
    assert gate_task.wait(30).status == "cancelled" and seen == {"before": False, "raised": True}


# -- sharing by key ---------------------------------------------------------------------------------------
def test_the_same_key_shares_running_paused_or_finished_work_and_replaces_failed_or_cancelled(cleanup):
    key, gate, runs = _key("dedupe"), threading.Event(), []
    cleanup.append(gate)

    def work(report, cancel):
        runs.append(1)
        gate.wait(30)
        return len(runs)

    first = start_task(key, work)
    assert start_task(key, work) is first  # still running: shared
    gate.set()
    assert first.wait(30).result == 1
    assert start_task(key, work) is first and len(runs) == 1  # finished OK: shared, not recomputed
    assert start_task(_key("other"), work) is not first

    failed_key = _key("failed")
    failed = start_task(failed_key, lambda report, cancel: 1 / 0)
    assert failed.wait(30).status == "failed" and failed.snapshot().message == "division by zero"
    retry = start_task(failed_key, lambda report, cancel: "ok")
    assert retry is not failed and retry.wait(30).result == "ok"

    paused_key = _key("paused")
    paused = start(Counter(key=paused_key), paused=True)
    cleanup.append(paused)
    second = Counter(key=paused_key)
    assert start(second) is paused and paused.snapshot().status == "paused"  # paused: shared too
    assert second.id not in {w.id for w in works()} and second._thread.ident is None  # it never ran
    paused.cancel()
    assert paused.wait(5).status == "cancelled"
    again = start(Counter(key=paused_key))
    cleanup.append(again)
    assert again is not paused and again.snapshot().status == "running"  # cancelled: replaced


# -- pause and resume ------------------------------------------------------------------------------------
def test_pause_holds_the_worker_and_resume_continues_it():
    work = start(Counter(n=60))
    assert isinstance(work, Counter) and work.snapshot().kind == "test-counter"
    assert wait_for(lambda: work.count >= 3)
    work.pause()
    at_pause = work.count
    snap = work.snapshot()
    assert snap.status == "paused" and not snap.running and not snap.done and snap.eta_s is None
    time.sleep(0.05)
    held = work.count
    assert held <= at_pause + 1  # at most the count in progress completes
    time.sleep(0.2)
    assert work.count == held and work.snapshot().state == {"count": held}, "the worker ran on while paused"
    assert work._thread.is_alive()  # held, not ended: it keeps its state
    work.pause()  # pausing twice is harmless
    work.resume()
    assert work.snapshot().status == "running"
    final = work.wait(30)
    assert final.status == "finished" and final.result == 60 and final.message == "counted to 60"
    assert final.step == final.total_steps == 60 and final.fraction == 1.0 and final.state == {"count": 60}
    work.pause()
    work.resume()  # neither touches an ended work
    assert work.snapshot().status == "finished"


def test_work_started_paused_waits_for_resume_and_a_paused_work_cancels_at_once():
    work = start(Counter(n=5), paused=True)
    assert work.snapshot().status == "paused"
    time.sleep(0.1)
    assert work.count == 0  # it waits at its first wait_while_paused
    work.resume()
    assert work.wait(30).result == 5

    idle = start(Counter(), paused=True)
    time.sleep(0.05)
    t0 = time.monotonic()
    idle.cancel()
    snap = idle.wait(5)
    assert time.monotonic() - t0 < 1.0 and not idle._thread.is_alive()
    assert snap.status == "cancelled" and idle.count == 0


def test_an_eta_the_worker_gives_is_shown_while_running():
    class Timed(Work):
        def run(self, control):
            control.report(0.5, "half", eta_s=12.0)
            control.cancel_event.wait(30)
            control.report(0.6, "never")

    work = start(Timed())
    assert wait_for(lambda: work.snapshot().message == "half")
    assert work.snapshot().eta_s == 12.0
    work.cancel()
    assert work.wait(5).eta_s is None


# -- failing from outside ---------------------------------------------------------------------------------
def test_fail_from_outside_ends_the_work_as_failed_and_stops_its_thread(cleanup):
    work = start(Counter())
    cleanup.append(work)
    assert wait_for(lambda: work.count >= 2)
    work.fail("training diverged: the generator loss became nan")
    snap = work.snapshot()
    assert snap.status == "failed" and snap.done and snap.message == "training diverged: the generator loss became nan"
    assert snap.error and "the generator loss became nan" in snap.error
    final = work.wait(5)
    assert not work._thread.is_alive()  # the worker stopped at its next report
    assert final.status == "failed" and final.message == snap.message  # its Cancelled did not overwrite it

    paused = start(Counter(), paused=True)
    cleanup.append(paused)
    paused.fail("the single step diverged")
    assert paused.wait(5).status == "failed" and not paused._thread.is_alive()

    finished = start(Counter(n=2))
    assert finished.wait(30).status == "finished"
    finished.fail("too late")  # an ended work keeps its outcome
    assert finished.snapshot().status == "finished" and finished.snapshot().result == 2


# -- limits ------------------------------------------------------------------------------------------------
def test_a_kind_at_its_limit_refuses_to_start_or_resume(cleanup):
    assert not [w for w in works("test-limited") if w.status == "running"]
    a, b = start(Limited()), start(Limited(key=_key("limited")))
    cleanup += [a, b]
    refused = Limited()
    with pytest.raises(RunnerBusy, match="^2 limited works are already running; pause one$"):
        start(refused)
    assert get(refused.id) is None and refused._thread.ident is None  # nothing registered, never ran
    assert start(Limited(key=b.key)) is b  # the same key is shared, not refused
    cleanup.append(start_task(_key("other-kind"), lambda report, cancel: None))  # other kinds are not counted

    paused = start(Limited(), paused=True)  # a paused one does not count, so it may be made at the limit
    cleanup.append(paused)
    with pytest.raises(RunnerBusy, match="already running"):
        paused.resume()
    assert paused.snapshot().status == "paused"
    a.pause()
    paused.resume()  # room now: a paused one frees its place
    assert paused.snapshot().status == "running"
    with pytest.raises(RunnerBusy):
        a.resume()
    b.cancel()
    assert b.wait(5).status == "cancelled"
    a.resume()  # an ended one frees its place too
    assert a.snapshot().status == "running"
    extra = Limited()
    with pytest.raises(RunnerBusy):
        start(extra)

    assert Work.limit is None and FunctionWork.limit is None
    many = [start_task(_key("unlimited"), lambda report, cancel: cancel.wait(30)) for _ in range(5)]
    cleanup += many
    assert all(t.snapshot().status == "running" for t in many)


# -- forgetting old work ----------------------------------------------------------------------------------
def test_forgetting_old_work_drops_ended_first_then_paused_and_never_running(monkeypatch, cleanup):
    monkeypatch.setattr(background, "MAX_ENDED", 3)
    gate = threading.Event()
    cleanup.append(gate)
    running = [start_task(_key("running"), lambda report, cancel: gate.wait(30)) for _ in range(2)]
    paused = start(Counter(), paused=True)
    cleanup += [paused, *running]
    ended = [start_task(_key("ended"), lambda report, cancel, i=i: i) for i in range(4)]
    for task in ended:
        task.wait(30)
    cleanup.append(start_task(_key("trigger"), lambda report, cancel: gate.wait(30)))  # forgetting runs on start

    ids = {w.id for w in works()}
    assert all(w.id in ids for w in running), "running work was forgotten"
    assert paused.id in ids and paused.snapshot().status == "paused"  # kept: two ended ones went first
    assert [t.id in ids for t in ended] == [False, False, True, True]  # the oldest ended ones went
    assert get(ended[0].id) is None and ended[0].snapshot().result == 0  # a held reference still reads

    monkeypatch.setattr(background, "MAX_ENDED", 0)
    cleanup.append(start_task(_key("trigger"), lambda report, cancel: gate.wait(30)))
    ids = {w.id for w in works()}
    assert all(w.id in ids for w in running), "running work was forgotten"
    assert paused.id not in ids and paused.wait(5).status == "cancelled"  # a forgotten paused work is cancelled
    assert not any(t.id in ids for t in ended)


# -- plain words -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("err, expected", [
    (FileExistsError(17, "File exists", "/runs/x"), "file exists: /runs/x"),
    (OSError(28, "No space left on device"), "no space left on device"),
    (MemoryError(), "the machine ran out of memory"),
    (ValueError("steps must be positive\nsecond line"), "steps must be positive"),
    (KeyError("latent_dim"), "an expected entry is missing: 'latent_dim'"),
    (RuntimeError(), "an unexpected error stopped it (the server log has the details)"),
])
def test_plain_error_names_the_problem_without_the_class(err, expected):
    assert plain_error(err) == expected
    assert type(err).__name__ not in plain_error(err)
