"""Background tasks for long work that is not training: a sampler comparison, a steps-vs-quality curve.

A task runs ``fn(report, cancel_event)`` in a daemon thread that never touches Streamlit. The page
keeps only the task id in its session state and polls ``snapshot()``; widget clicks re-run the
script but never touch the thread. ``report(fraction, message)`` publishes progress and is also
where a cancel takes effect: it raises ``TaskCancelled`` once ``cancel()`` was called, so ``fn``
stops at its next report without checking the event itself.

Tasks are keyed by what they compute (say "steps-quality:<fingerprint>:500:0"): a second request
with the same key, from another browser session, gets the task already running or already done
instead of a second computation. A failed or cancelled task is replaced by a fresh one.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

ReportFn = Callable[[float, str], None]
TaskFn = Callable[[ReportFn, threading.Event], Any]
MAX_FINISHED_TASKS = 32  # finished tasks kept for dedupe and polling; their results can be large


def plain_error(err: BaseException) -> str:
    """What went wrong, in words a page can show: the error's own first line, never its class name.

    An OSError gives its reason and file ("no space left on device: runs/x"), a MemoryError says
    so, and an error without text gets a sentence pointing at the server log, where the caller
    logs the traceback.
    """
    if isinstance(err, MemoryError):
        return "the machine ran out of memory"
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror[0].lower() + err.strerror[1:]
        return f"{reason}: {err.filename}" if err.filename else reason
    line = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, KeyError) and line:
        return f"an expected entry is missing: {line}"
    return line or "an unexpected error stopped it (the server log has the details)"


class TaskCancelled(Exception):
    """Raised inside a task by ``report`` after ``cancel()``; ends the task as "cancelled"."""


@dataclass
class TaskSnapshot:
    """A consistent copy of a task's state, safe to read from any thread."""

    id: str
    key: str
    status: str          # "running" | "done" | "failed" | "cancelled"
    fraction: float      # 0..1, as last reported
    message: str         # for the page: progress, or what went wrong in plain words
    result: Any          # fn's return value once status is "done", else None
    error: str | None    # "failed" only: one technical line (the error's class and text) for logs and tests
    started: float       # time.time() when the thread started
    seconds: float       # elapsed so far; frozen when the task ends

    @property
    def done(self) -> bool:
        """True once the task stopped, whichever way."""
        return self.status != "running"


class Task:
    """One background computation; create it with ``start_task``."""

    def __init__(self, key: str, fn: TaskFn):
        self.id = uuid.uuid4().hex[:8]
        self.key = key
        self._fn = fn
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._status, self._fraction, self._message = "running", 0.0, "starting"
        self._result: Any = None
        self._error: str | None = None
        self._started, self._ended = time.time(), None
        self._thread = threading.Thread(target=self._run, name=f"genlib-task-{self.id}", daemon=True)

    def snapshot(self) -> TaskSnapshot:
        """The task's state now."""
        with self._lock:
            end = self._ended if self._ended is not None else time.time()
            return TaskSnapshot(self.id, self.key, self._status, self._fraction, self._message, self._result,
                                self._error, self._started, end - self._started)

    def cancel(self) -> None:
        """Ask the task to stop at its next ``report``."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> TaskSnapshot:
        """Block until the task ends (or ``timeout`` seconds pass) and return its snapshot."""
        self._thread.join(timeout)
        return self.snapshot()

    # -- worker side -------------------------------------------------------------------------------
    def _report(self, fraction: float, message: str) -> None:
        if self._cancel.is_set():
            raise TaskCancelled(f"cancelled at {self._fraction:.0%}")
        with self._lock:
            self._fraction, self._message = min(max(float(fraction), 0.0), 1.0), message

    def _run(self) -> None:
        try:
            result = self._fn(self._report, self._cancel)
            outcome = ("done", 1.0, "done", result, None)
        except TaskCancelled as err:
            outcome = ("cancelled", self._fraction, str(err), None, None)
        except Exception as err:  # the thread must never die silently: the page shows the message
            # The class name is for whoever reads the log, not for the page's reader.
            error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
            logging.getLogger(__name__).exception("task %s (%s) failed", self.id, self.key)
            outcome = ("failed", self._fraction, plain_error(err), None, error)
        with self._lock:
            self._status, self._fraction, self._message, self._result, self._error = outcome
            self._ended = time.time()


_TASKS: dict[str, Task] = {}  # id -> task, oldest first
_TASKS_LOCK = threading.Lock()


def start_task(key: str, fn: TaskFn) -> Task:
    """Run ``fn(report, cancel_event)`` in a daemon thread and return its Task at once.

    If a task with ``key`` is running or finished successfully, that task is returned instead and
    ``fn`` is not called. Exceptions in ``fn`` end the task as "failed" with a one-line error.
    """
    with _TASKS_LOCK:
        for task in reversed(list(_TASKS.values())):
            if task.key == key and task.snapshot().status in ("running", "done"):
                return task
        task = Task(key, fn)
        _TASKS[task.id] = task
        _forget_old_finished()
    task._thread.start()
    return task


def _forget_old_finished() -> None:
    """Drop the oldest finished tasks beyond MAX_FINISHED_TASKS (caller holds _TASKS_LOCK)."""
    finished = [t.id for t in _TASKS.values() if t.snapshot().done]
    for task_id in finished[:max(0, len(finished) - MAX_FINISHED_TASKS)]:
        del _TASKS[task_id]


def get_task(task_id: str) -> Task | None:
    """The task with this id, or None (unknown, or forgotten long after it ended)."""
    with _TASKS_LOCK:
        return _TASKS.get(task_id)
