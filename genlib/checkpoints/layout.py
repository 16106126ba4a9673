"""What a checkpoint folder is: its file names, the limits on what a source may be, where shipped
checkpoints and runs live, the error every checkpoint problem raises, and what a folder says about itself
(``CheckpointInfo``). The rest of genlib.checkpoints builds on this module; it imports none of them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# What a hub download fetches: configs, safetensors weights (a diffusers pipeline's unet/ and
# scheduler/ folders included: fnmatch's * crosses "/") and side files; never pickles or code.
HUB_ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.png", "*.md", "*.csv", "*.csv.gz", "*.txt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_TOP_LEVEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")  # the Hub's old un-owned ids: gpt2, bert-base-uncased
MAX_HUB_NAME_CHARS = 96     # the Hub's limit on each of owner and name
MAX_SOURCE_CHARS = 4096     # PATH_MAX on Linux: no folder path or hub id is longer
REPO_ROOT = Path(__file__).resolve().parents[2]  # genlib/checkpoints/layout.py -> the repository
MAX_JSON_BYTES = 16 * 1024 * 1024   # far above any config.json or metrics.json genlib writes


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


def shipped_dir() -> Path:
    """Where the shipped checkpoints live: ``$GENLIB_CHECKPOINTS``, else the repository's checkpoints/."""
    return Path(os.environ.get("GENLIB_CHECKPOINTS", REPO_ROOT / "checkpoints"))


def runs_dir() -> Path:
    """Where runs trained in the app or CLI land unless told otherwise."""
    return Path(os.environ.get("GENLIB_RUNS_DIR", REPO_ROOT / "runs"))


@dataclass
class CheckpointInfo:
    """What a folder says about itself, read without loading weights."""

    path: Path
    family: str
    model_config: dict[str, Any]
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    origin: str = "local"  # shipped | run | local | hub
    kind: str = "generative"  # or "evaluator" (the digit classifier), "classifier" (the ViT): not generative

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.path.name

    @property
    def preview(self) -> Path | None:
        """The folder's samples.png, or None when it has none."""
        p = self.path / "samples.png"
        return p if p.exists() else None

    @property
    def preview_text(self) -> str | None:
        """A text model's samples.txt, or None when there is none."""
        p = self.path / "samples.txt"
        return p.read_text(encoding="utf-8", errors="replace")[:MAX_JSON_BYTES] if p.is_file() else None


def shown(text: str, keep: int = 60) -> str:
    """``text`` quoted for a message, cut to its first ``keep`` characters when longer (a pasted page of
    text stays one short line): ``'aaaa…' (5,000 characters)``."""
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}… ({len(text):,} characters)"
