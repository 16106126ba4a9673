"""The one background runner: training jobs, long tasks and stepping sessions all run here.

A ``Work`` runs its ``run(control)`` in a daemon thread that never touches Streamlit. A page keeps
only the work's id in its session state and polls ``snapshot()`` from one fragment
(``pages._ui.watch``); widget clicks and page switches rerun the script but never touch the thread,
so work survives navigation and is shared by every session that knows its id.

The worker talks to the runner through its ``Control``:

    control.report(fraction, message, step=..., total=...)   progress; raises Cancelled after cancel()
    control.wait_while_paused()                               blocks while paused; raises Cancelled
    control.cancel_event                                      for code that checks an Event (the Trainer)
    with work.lock: ...                                       guards state that other threads read

Status: running | paused | finished | cancelled | failed. ``cancel()`` takes effect at the
worker's next report (within a second for every worker here). Kinds with a limit
(``Work.limit``) refuse to start or resume beyond it with ``RunnerBusy``. Work started with a key
is shared: a second ``start`` with the same key, from any session, gets the work already running
or finished instead of a second computation; a failed or cancelled one is replaced.

Three kinds of work subclass ``Work``: ``FunctionWork`` (a function, used by ``start_task``),
``genlib.runs.TrainingJob`` and the GAN family's ``ToySession``.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

ReportFn = Callable[[float, str], None]
TaskFn = Callable[[ReportFn, threading.Event], Any]
MAX_ENDED = 48      # ended or idle (paused) work kept for polling and sharing; their results can be large
ACTIVE = ("running", "paused")


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


class Cancelled(Exception):
    """Raised in the worker by ``Control.report`` / ``wait_while_paused`` after ``cancel()``; the work
    ends as "cancelled" with this message. A worker may raise it itself, with its own message."""


class Failed(Exception):
    """Raise in the worker to end the work as "failed" with this message and no traceback in the log
    (an expected failure, such as a diverged training run)."""


class RunnerBusy(RuntimeError):
    """Too many works of this kind are running already; the message says what to do."""


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a work's state, safe to read from any thread."""

    id: str
    key: str | None
    kind: str
    title: str
    status: str              # running | paused | finished | cancelled | failed
    fraction: float          # 0..1, as last reported
    step: int                # as last reported (0 when the work counts no steps)
    total_steps: int
    message: str             # for the page: progress, or what went wrong in plain words
    error: str | None        # failed only: one technical line (class and text) for logs and tests
    result: Any              # what run() returned, once finished
    elapsed_s: float         # frozen when the work ends
    eta_s: float | None      # estimated seconds left while running
    state: Any = None        # the kind's own view (``Work.view``): live curves, previews, a 2-D picture

    @property
    def done(self) -> bool:
        """True once the work has ended, whichever way."""
        return self.status in ("finished", "cancelled", "failed")

    @property
    def running(self) -> bool:
        """True while the work runs (not paused, not ended)."""
        return self.status == "running"


class Control:
    """The worker's side of a work: report progress, honour cancel and pause."""

    def __init__(self, work: "Work"):
        self._work = work
        self.cancel_event = work._cancel
        self.final_message = "done"  # the message a finished work shows; a worker may set its own

    def report(self, fraction: float | None = None, message: str | None = None, *, step: int | None = None,
               total: int | None = None, eta_s: float | None = None) -> None:
        """Publish progress (see ``publish``); raises Cancelled after ``cancel()``."""
        self._work._check_cancel()
        self.publish(fraction, message, step=step, total=total, eta_s=eta_s)

    def publish(self, fraction: float | None = None, message: str | None = None, *, step: int | None = None,
                total: int | None = None, eta_s: float | None = None) -> None:
        """Publish progress without the cancel check, for code that handles the cancel itself (the
        Trainer saves a partial run). An argument left None keeps its value; the fraction defaults
        to step / total."""
        with self._work._state_lock:
            w = self._work
            if step is not None:
                w._step = int(step)
            if total is not None:
                w._total = int(total)
            if fraction is None and w._total:
                fraction = w._step / w._total
            if fraction is not None:
                w._fraction = min(max(float(fraction), 0.0), 1.0)
            if message is not None:
                w._message = message
            w._eta = eta_s

    def wait_while_paused(self) -> None:
        """Return at once while running; block while paused; raise Cancelled after ``cancel()``."""
        w = self._work
        with w._resumed:
            while w._status == "paused" and not w._cancel.is_set():
                w._resumed.wait(timeout=1.0)
        w._check_cancel()


class Work:
    """One unit of background work. Subclasses implement ``run`` (and ``view`` for their own state)."""

    kind: ClassVar[str] = "task"
    limit: int | None = None   # at most this many of this kind running at once (None: no limit); per class or instance
    # Who started it (a visitor's token in the hosted demo) and how many of its kind that owner may
    # run at once; None: anyone's, no per-owner limit. Set on the instance before ``start``.
    owner: str | None = None
    owner_limit: int | None = None
    busy_message: ClassVar[str] = "{n} of these are already running; wait for one to end or cancel it"

    def __init__(self, key: str | None = None, title: str = ""):
        self.id = uuid.uuid4().hex[:8]
        self.key = key
        self.title = title or self.kind
        self.lock = threading.RLock()          # the worker holds it while it changes what ``view`` reads
        self._state_lock = threading.Lock()    # the runner's own fields; never held while the worker computes
        self._resumed = threading.Condition(self._state_lock)
        self._cancel = threading.Event()
        self._status, self._fraction, self._message = "running", 0.0, "starting"
        self._step = self._total = 0
        self._eta: float | None = None
        self._result: Any = None
        self._error: str | None = None
        self._started = time.time()
        self._ended: float | None = None
        self._thread = threading.Thread(target=self._main, name=f"genlib-{self.kind}-{self.id}", daemon=True)
        self.control = Control(self)  # the worker's handle; a subclass may publish from other threads too

    # -- what a subclass writes ----------------------------------------------------------------------
    def run(self, control: Control) -> Any:
        """The work itself, in the worker thread; its return value becomes the snapshot's ``result``."""
        raise NotImplementedError

    def view(self) -> Any:
        """The kind's own state for ``Snapshot.state`` (called under ``self.lock``); default None."""
        return None

    # -- what pages and tests call -------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The work's state now."""
        try:
            with self.lock:
                state = self.view()
        except Exception:  # a broken model must not hide the status and message that say what broke
            logging.getLogger(__name__).exception("%s %s: its view failed", self.kind, self.id)
            state = None
        with self._state_lock:
            end = self._ended if self._ended is not None else time.time()
            eta = self._eta
            if eta is None and self._status == "running" and self._fraction > 0.01:
                eta = (end - self._started) * (1 - self._fraction) / self._fraction
            return Snapshot(self.id, self.key, self.kind, self.title, self._status, self._fraction, self._step,
                            self._total, self._message, self._error, self._result, end - self._started,
                            eta if self._status == "running" else None, state)

    @property
    def status(self) -> str:
        """running | paused | finished | cancelled | failed, as of now."""
        return self._status

    def cancel(self) -> None:
        """Stop for good at the worker's next report; a paused work ends at once."""
        self._cancel.set()
        with self._resumed:
            self._resumed.notify_all()

    def pause(self) -> None:
        """Hold a running work at its next ``wait_while_paused``; it keeps its state."""
        with self._state_lock:
            if self._status == "running":
                self._status = "paused"

    def resume(self) -> None:
        """Continue a paused work (RunnerBusy if its kind is at its limit)."""
        with _REGISTRY_LOCK, self._resumed:
            if self._status != "paused":
                return
            _check_limit(self, exclude=self)
            self._status = "running"
            self._resumed.notify_all()

    def fail(self, message: str) -> None:
        """End the work as failed from outside its thread (say a single step run by the caller diverged)."""
        self._end("failed", message, None, f"Failed: {message}")
        self.cancel()

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Block until the worker thread ends (or ``timeout`` seconds pass); return the snapshot."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return self.snapshot()

    # -- runner side -----------------------------------------------------------------------------------
    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            where = f"step {self._step}" if self._total else f"{self._fraction:.0%}"
            raise Cancelled(f"cancelled at {where}")

    def _end(self, status: str, message: str, result: Any, error: str | None) -> None:
        with self._state_lock:
            if self._ended is not None:  # fail() from outside came first
                return
            self._status, self._message, self._result, self._error = status, message, result, error
            if status == "finished":
                self._fraction = 1.0
            self._ended = time.time()

    def _main(self) -> None:
        control = self.control
        try:
            result = self.run(control)
            self._end("finished", control.final_message, result, None)
        except Cancelled as err:
            self._end("cancelled", str(err), None, None)
        except Failed as err:
            self._end("failed", str(err), None, f"Failed: {err}")
        except Exception as err:  # the thread must never die silently: the page shows the message
            # Plain words for the page; the class name and traceback are for whoever reads the log.
            logging.getLogger(__name__).exception("%s %s (%s) failed", self.kind, self.id, self.key or self.title)
            self._end("failed", plain_error(err), None,
                      f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}")


class FunctionWork(Work):
    """``fn(report, cancel_event)`` as a work: a sampler comparison, a steps-vs-quality curve, scoring."""

    def __init__(self, key: str | None, fn: TaskFn, title: str = ""):
        super().__init__(key, title)
        self._fn = fn

    def run(self, control: Control) -> Any:
        """Call ``fn`` with a ``report(fraction, message)`` and the cancel event; return what it returns."""
        return self._fn(lambda fraction, message: control.report(fraction, message), control.cancel_event)


_WORKS: dict[str, Work] = {}   # id -> work, oldest first
_REGISTRY_LOCK = threading.RLock()


def _check_limit(work: Work, exclude: Work | None = None) -> None:
    """RunnerBusy when ``work.limit`` works of its kind run already, or ``work.owner_limit`` of its
    owner's (caller holds _REGISTRY_LOCK)."""
    others = [w for w in _WORKS.values() if w is not exclude and w.kind == work.kind and w.status == "running"]
    if work.limit is not None and len(others) >= work.limit:
        raise RunnerBusy(work.busy_message.format(n=len(others)))
    if work.owner is not None and work.owner_limit is not None:
        mine = sum(w.owner == work.owner for w in others)
        if mine >= work.owner_limit:
            raise RunnerBusy(f"you have {mine} {work.kind} job{'s' if mine != 1 else ''} running already, the most "
                             "one visitor may run at once; wait for it to finish or cancel it")


def start(work: Work, *, paused: bool = False) -> Work:
    """Register ``work`` and start its thread (``paused``: it waits for ``resume()`` at its first
    ``wait_while_paused``). With a key, a running, paused or finished work of that key is returned
    instead and ``work`` never runs. RunnerBusy when the kind is at its limit (nothing is registered)."""
    with _REGISTRY_LOCK:
        if work.key is not None:
            for other in reversed(list(_WORKS.values())):
                if other.key == work.key and other.status in (*ACTIVE, "finished"):
                    return other
        if not paused:
            _check_limit(work)
        work._status = "paused" if paused else "running"
        _WORKS[work.id] = work
        _forget_old()
    work._thread.start()
    return work


def start_task(key: str, fn: TaskFn, title: str = "") -> Work:
    """Run ``fn(report, cancel_event)`` in the background, shared by ``key`` (see ``start``).

    ``report(fraction, message)`` publishes progress and raises Cancelled once the work was
    cancelled, so ``fn`` stops at its next report without checking the event itself.
    """
    return start(FunctionWork(key, fn, title))


def get(work_id: str | None) -> Work | None:
    """The work with this id, or None (unknown, or forgotten long after it ended)."""
    with _REGISTRY_LOCK:
        return _WORKS.get(work_id) if work_id else None


def works(kind: str | None = None) -> list[Work]:
    """Every registered work (of ``kind``), oldest first."""
    with _REGISTRY_LOCK:
        return [w for w in _WORKS.values() if kind is None or w.kind == kind]


def _forget_old() -> None:
    """Beyond MAX_ENDED ended or paused works, drop the oldest (ended first; a dropped paused work is
    cancelled). Running work is never dropped. The caller holds _REGISTRY_LOCK."""
    idle = [w for w in _WORKS.values() if w.status != "running"]
    idle.sort(key=lambda w: w.status == "paused")  # stable: ended ones first, each group oldest first
    for old in idle[:max(0, len(idle) - MAX_ENDED)]:
        old.cancel()
        del _WORKS[old.id]
