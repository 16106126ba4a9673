"""Each visitor's private folder in demo mode: their runs live there, under a disk quota, until a
time-to-live after their last visit.

    $GENLIB_VISITORS_DIR (default runs/.visitors/)     never listed: the dot hides it from list_checkpoints
      <token>/                one per browser session; the token is random (secrets), never derived from
        .last_seen            touched on every visit: what the time-to-live counts from
        runs/<run>/           the visitor's trained runs (checkpoint folders)

A visitor only ever learns their own token, and a source typed into a model box is checked with
``Workspace.allows`` before anything is read, so another browser can neither list nor open these
folders by name or by path. Shipped checkpoints stay shared and are only ever read.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from genlib.checkpoints import (HUB_ID, MAX_SOURCE_CHARS, CheckpointError, is_local_folder, runs_dir, shipped_dir,
                                shown)

TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SEEN_FILE = ".last_seen"
TOUCH_EVERY_S = 30.0   # a visit refreshes .last_seen at most this often


class QuotaExceeded(CheckpointError):
    """A visitor's folder would grow past its disk quota; the message says by how much."""


def visitors_dir() -> Path:
    """Where the visitors' folders live: ``$GENLIB_VISITORS_DIR``, else runs/.visitors."""
    return Path(os.environ.get("GENLIB_VISITORS_DIR", runs_dir() / ".visitors"))


def new_token() -> str:
    """A fresh unguessable visitor token (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(24)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it is missing); files vanishing meanwhile are skipped."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class Workspace:
    """One visitor's folder and its quota."""

    root: Path
    quota_bytes: int

    @classmethod
    def for_token(cls, token: str, quota_bytes: int) -> "Workspace":
        """The workspace of ``token`` (created when missing); a malformed token is refused."""
        if not TOKEN.match(token):
            raise ValueError("a visitor token is 16-64 letters, digits, '-' or '_'")
        ws = cls(visitors_dir() / token, quota_bytes)
        ws.runs.mkdir(parents=True, exist_ok=True)
        ws.touch(force=True)
        return ws

    @property
    def runs(self) -> Path:
        """Where this visitor's training runs are saved."""
        return self.root / "runs"

    def touch(self, force: bool = False) -> None:
        """Record a visit (what the time-to-live counts from)."""
        seen = self.root / SEEN_FILE
        try:
            if force or time.time() - seen.stat().st_mtime > TOUCH_EVERY_S:
                seen.touch()
        except FileNotFoundError:  # new, or swept away while the tab stayed open: start it again, empty
            self.runs.mkdir(parents=True, exist_ok=True)
            seen.touch()

    def used_bytes(self) -> int:
        """Disk this visitor's folder uses now."""
        return folder_bytes(self.root)

    def check_room(self, more_bytes: int) -> None:
        """QuotaExceeded unless ``more_bytes`` more still fit under the quota."""
        used = self.used_bytes()
        if used + more_bytes > self.quota_bytes:
            mb = 1024 ** 2
            raise QuotaExceeded(f"your runs use {used / mb:.1f} MB of the {self.quota_bytes / mb:.0f} MB each visitor "
                                f"may keep, and this needs about {more_bytes / mb:.1f} MB more; delete a run first")

    def owns(self, path: str | Path) -> bool:
        """Whether ``path`` is inside this visitor's folder (symlinks resolved)."""
        try:
            return Path(path).expanduser().resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError, ValueError):
            return False

    def allows(self, source: str, hub: bool) -> None:
        """CheckpointError unless this visitor may load ``source``: a shipped checkpoint's name or folder,
        a folder of their own, or (when ``hub``) a Hugging Face hub id. Nothing is read before the check."""
        source = source.strip()
        if len(source) > MAX_SOURCE_CHARS:
            raise CheckpointError(f"no checkpoint called {shown(source)}: that is longer than any folder path or "
                                  "Hugging Face id can be")
        shipped = shipped_dir()
        if source and "/" not in source and "\\" not in source and is_local_folder(shipped / source):
            return
        try:
            inside_shipped = Path(source).expanduser().resolve().is_relative_to(shipped.resolve())
        except (OSError, RuntimeError, ValueError):
            inside_shipped = False
        if inside_shipped or self.owns(source):
            return
        if HUB_ID.match(source) and not is_local_folder(source):
            if hub:
                return
            raise CheckpointError("loading from the Hugging Face hub is off in this demo; pick a shipped model "
                                  "or one of your runs")
        raise CheckpointError("this demo loads only its shipped models and your own runs, not folders on the "
                              "server; pick one from the list")

    def delete(self) -> None:
        """Remove this visitor's folder and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)


def sweep(ttl_s: float, now: float | None = None) -> list[Path]:
    """Delete every visitor folder not visited for ``ttl_s`` seconds; returns the folders removed."""
    root = visitors_dir()
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in root.iterdir():
        if not folder.is_dir() or not TOKEN.match(folder.name):
            continue
        seen = folder / SEEN_FILE
        try:
            last = seen.stat().st_mtime if seen.exists() else folder.stat().st_mtime
        except OSError:
            continue
        if now - last > ttl_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
