"""Demo mode (``GENLIB_DEMO=1``, on in the Dockerfile): the limits a public hosted demo runs under.

A public demo has many visitors on two small cores, so in demo mode every kind of work is capped,
and each cap is a number the pages state where it applies. Outside demo mode nothing is capped
beyond the lab's usual limits. Any limit can be set by its environment variable (``GENLIB_DEMO_*``,
see ``ENV``), in demo mode or not, so an operator can size a demo to the host.

Each visitor's own files live in a ``genlib.workspace.Workspace``; this module only says how much
they may hold and for how long.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import torch

from genlib.data import MAX_PHOTO_PIXELS, MAX_UPLOAD_BYTES

DEMO_ENV = "GENLIB_DEMO"


def demo_mode() -> bool:
    """Whether the lab runs as a public demo (``GENLIB_DEMO`` set to 1, true, yes or on)."""
    return os.environ.get(DEMO_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Limits:
    """Every cap, with the lab's own values outside demo mode (None: no cap beyond the setting's range)."""

    train_steps: int | None = None        # optimisation steps per training job
    train_seconds: float | None = None    # wall time per training job; the run is saved when it is reached
    jobs_total: int | None = None         # training jobs running at once, all visitors (None: the runner's 2)
    jobs_per_session: int | None = None   # training jobs running at once for one visitor
    upload_bytes: int = MAX_UPLOAD_BYTES  # one uploaded file
    upload_pixels: int = MAX_PHOTO_PIXELS  # a photo upload above this is shrunk to it
    samples: int | None = None            # images drawn per request
    tokens: int | None = None             # tokens generated per request (text models)
    torch_threads: int | None = None      # CPU threads torch may use (None: torch's default)
    hub: bool = True                      # whether Hugging Face hub ids may be loaded
    hub_bytes: int = 2 * 1024 ** 3        # the most a hub download may fetch, checked before downloading
    session_ttl_s: float = 3600.0         # a visitor's folder is deleted this long after their last visit
    session_quota_bytes: int = 200 * 1024 ** 2   # disk one visitor's folder may use

    def summary(self, *names: str) -> str:
        """The named caps as one sentence for a page, e.g. "at most 1,500 steps and 3 min per job"."""
        return "; ".join(_DESCRIBE[name](getattr(self, name)) for name in names
                         if getattr(self, name) is not None)


DEMO_LIMITS = Limits(train_steps=1500, train_seconds=180.0, jobs_total=2, jobs_per_session=1,
                     upload_bytes=5 * 1024 ** 2, upload_pixels=2_000_000, samples=100, tokens=256, torch_threads=2,
                     hub=False, hub_bytes=200 * 1024 ** 2, session_ttl_s=3600.0, session_quota_bytes=100 * 1024 ** 2)

# The environment variable of each limit: GENLIB_DEMO_TRAIN_STEPS=500, GENLIB_DEMO_HUB=1, ...
ENV = {f.name: f"GENLIB_DEMO_{f.name.upper()}" for f in fields(Limits)}

_MB = 1024 ** 2
_DESCRIBE = {
    "train_steps": lambda v: f"at most {v:,} training steps per job",
    "train_seconds": lambda v: f"{v / 60:g} min of training per job (the run is saved then)",
    "jobs_total": lambda v: f"{v} training job{'s' if v != 1 else ''} at once for all visitors",
    "jobs_per_session": lambda v: f"{v} job{'s' if v != 1 else ''} at once per visitor",
    "upload_bytes": lambda v: f"uploads up to {v / _MB:g} MB",
    "upload_pixels": lambda v: f"photos above {v / 1e6:g} megapixels are shrunk to that",
    "samples": lambda v: f"at most {v} images per request",
    "tokens": lambda v: f"at most {v} generated tokens per request",
    "torch_threads": lambda v: f"{v} CPU thread{'s' if v != 1 else ''} for the models",
    "hub": lambda v: "Hugging Face hub ids can be loaded" if v else "loading from the Hugging Face hub is off",
    "hub_bytes": lambda v: f"hub downloads up to {v / _MB:g} MB",
    "session_ttl_s": lambda v: f"your runs are deleted {v / 60:g} min after your last visit",
    "session_quota_bytes": lambda v: f"your runs may use {v / _MB:g} MB of disk",
}


def _parse(name: str, raw: str, current: object) -> object:
    """One limit from its environment variable's text, typed like the current value."""
    raw = raw.strip()
    if raw.lower() in {"", "none", "off"} and name != "hub":
        return None
    if isinstance(current, bool) or name == "hub":
        return raw.lower() in {"1", "true", "yes", "on"}
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{ENV[name]}={raw!r} is not a number") from None
    if number < 0:
        raise ValueError(f"{ENV[name]}={raw!r} must not be negative")
    return number if name in {"train_seconds", "session_ttl_s"} else int(number)


def limits() -> Limits:
    """The caps in force: the demo's in demo mode, else the lab's own, then each ``GENLIB_DEMO_*`` override."""
    base = DEMO_LIMITS if demo_mode() else Limits()
    overrides = {name: _parse(name, os.environ[var], getattr(base, name)) for name, var in ENV.items()
                 if var in os.environ}
    return replace(base, **overrides)


def apply_thread_limit(current: Limits | None = None) -> None:
    """Give torch the capped number of CPU threads (once per process; a no-op without a cap)."""
    cap = (current or limits()).torch_threads
    if cap is not None and torch.get_num_threads() != cap:
        torch.set_num_threads(cap)
