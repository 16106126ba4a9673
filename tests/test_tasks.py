"""genlib.tasks: background tasks with progress, results, failures, cancel and dedupe by key (real threads)."""
from __future__ import annotations

import threading
import uuid

from genlib.tasks import TaskCancelled, get_task, start_task


def _key(name: str) -> str:
    """A key no other test (or earlier run in this process) has used."""
    return f"{name}-{uuid.uuid4().hex}"


def test_a_task_reports_progress_and_returns_its_result():
    gate = threading.Event()

    def work(report, cancel):
        report(0.5, "half way")
        gate.wait(30)
        return {"answer": 42}

    task = start_task(_key("progress"), work)
    assert get_task(task.id) is task and get_task("nope") is None
    for _ in range(3000):  # the thread publishes 0.5 while it waits on the gate
        snap = task.snapshot()
        if snap.fraction == 0.5:
            break
        threading.Event().wait(0.001)
    assert snap.status == "running" and not snap.done and snap.message == "half way" and snap.result is None
    gate.set()
    final = task.wait(30)
    assert final.status == "done" and final.done and final.fraction == 1.0
    assert final.result == {"answer": 42} and final.error is None and final.seconds >= 0
    assert task.snapshot().seconds == final.seconds  # frozen once ended


def test_an_exception_becomes_a_one_line_failure():
    def work(report, cancel):
        report(0.25, "about to fail")
        raise ValueError("steps must be between 1 and 100\nsecond line")

    snap = start_task(_key("fail"), work).wait(30)
    assert snap.status == "failed" and snap.done and snap.result is None
    assert snap.error == "ValueError: steps must be between 1 and 100"
    assert snap.fraction == 0.25


def test_cancel_stops_the_task_at_its_next_report():
    calls = []

    def work(report, cancel):
        for i in range(100_000):
            calls.append(i)
            report(i / 100_000, f"step {i}")
            threading.Event().wait(0.001)
        return "finished"

    task = start_task(_key("cancel"), work)
    while not calls:
        threading.Event().wait(0.001)
    task.cancel()
    snap = task.wait(30)
    assert snap.status == "cancelled" and snap.result is None and snap.error is None
    assert len(calls) < 100_000


def test_the_same_key_shares_a_running_or_finished_task_and_replaces_a_failed_one():
    key, gate, runs = _key("dedupe"), threading.Event(), []

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

    def broken(report, cancel):
        raise RuntimeError("boom")

    failed_key = _key("failed")
    failed = start_task(failed_key, broken)
    assert failed.wait(30).status == "failed"
    retry = start_task(failed_key, lambda report, cancel: "ok")
    assert retry is not failed and retry.wait(30).result == "ok"


def test_report_raises_task_cancelled_only_after_cancel():
    seen = {}

    def work(report, cancel):
        report(0.1, "fine")
        cancel.wait(30)  # the cancel Event is handed to fn too
        try:
            report(0.2, "too late")
        except TaskCancelled:
            seen["raised"] = True
            raise

    task = start_task(_key("raises"), work)
    task.cancel()
    assert task.wait(30).status == "cancelled" and seen == {"raised": True}
