"""Finding checkpoints: turning a user's source (a path, a shipped or run name, a hub id) into a folder,
reading what a folder says about itself without loading weights, and listing the shipped ones and the runs.
"""
from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from genlib.checkpoints.hub import _download
from genlib.checkpoints.layout import (CONFIG_FILE, HUB_ID, HUB_TOP_LEVEL_ID, MAX_HUB_NAME_CHARS, MAX_JSON_BYTES,
                                       MAX_SOURCE_CHARS, PICKLE_SUFFIXES, CheckpointError, CheckpointInfo, runs_dir,
                                       shipped_dir, shown)
from genlib.checkpoints.writing import recover_interrupted_save
from genlib.registry import all_families


def resolve(source: str | Path) -> tuple[Path, str]:
    """Turn a user's source into a local folder and its origin.

    Order: an existing path; a shipped checkpoint name; a run name; a hub id ``owner/name``. A source
    no path can be (too long, a ``~user`` that does not exist, a null character) or a path that cannot
    be looked at is a CheckpointError, whose message quotes at most the first characters of the source.
    """
    text = str(source).strip()
    if not text:
        raise CheckpointError("no checkpoint given")
    if len(text) > MAX_SOURCE_CHARS:
        raise CheckpointError(f"no checkpoint called {shown(text)}: that is longer than any folder path or "
                              f"Hugging Face id can be (at most {MAX_SOURCE_CHARS:,} characters)")
    try:
        path = Path(text).expanduser()
        kind = "file" if path.is_file() else "folder" if path.is_dir() else None
        if kind == "file" and (path.suffix in PICKLE_SUFFIXES or _looks_pickled(path)):
            kind = "pickle"
        named = [(root / text, origin) for root, origin in ((shipped_dir(), "shipped"), (runs_dir(), "run"))
                 if "/" not in text and (root / text).is_dir()]
    except (OSError, RuntimeError, ValueError) as err:  # RuntimeError: "~nobody"; ValueError: a null character
        raise CheckpointError(f"no checkpoint called {shown(text)}: {_unusable(err)}; give a checkpoint's name, "
                              "a folder or a Hugging Face id of the form owner/name") from None
    if kind == "pickle":
        raise CheckpointError(f"{path.name} is a pickle-based file; genlib never unpickles weights. "
                              "Convert it to a folder with model.safetensors and config.json.")
    if kind == "file":
        raise CheckpointError(f"{path} is a file; give the checkpoint folder that contains {CONFIG_FILE}")
    if kind == "folder":
        return path, "local"
    if named:
        return named[0]
    if HUB_ID.match(text) and all(len(part) <= MAX_HUB_NAME_CHARS for part in text.split("/")):
        return _download(text), "hub"
    if HUB_TOP_LEVEL_ID.match(text) and len(text) <= MAX_HUB_NAME_CHARS:
        try:
            return _download(text), "hub"
        except CheckpointError as err:  # a typo of a run's name reads better with the places looked in first
            raise CheckpointError(f"no checkpoint called {shown(text)}: not a folder and not a shipped or trained "
                                  f"run; as a Hugging Face id, {err}") from None
    raise CheckpointError(f"no checkpoint called {shown(text)}: not a folder, not a shipped or trained run, "
                          "and not a Hugging Face id of the form owner/name")


def is_local_folder(source: str | Path) -> bool:
    """Whether ``source`` is an existing folder on this machine; False, never an error, for a source no
    path can be (too long, ``~nobody``, a null character) or one that cannot be looked at."""
    try:
        return Path(str(source).strip()).expanduser().is_dir()
    except (OSError, RuntimeError, ValueError):
        return False


def _unusable(err: Exception) -> str:
    """Why a source cannot be a path, in words."""
    if isinstance(err, OSError):
        if err.errno == errno.ENAMETOOLONG:
            return "the name is too long for a path on this machine"
        return f"it cannot be looked at ({(err.strerror or 'unreadable').lower()})"
    if isinstance(err, RuntimeError):
        return "it starts with ~ but names no home folder on this machine"
    return "it contains a character no path can hold"


def _looks_pickled(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4)
    return head[:1] == b"\x80" or head[:2] == b"PK"  # pickle protocol 2+, or torch's zip container


def _recover_source(source: str | Path) -> None:
    """``recover_interrupted_save`` for each folder ``source`` can name: a path, a shipped or a run name."""
    text = str(source).strip()
    if not text:
        return
    try:
        folders = [Path(text).expanduser()] + ([shipped_dir() / text, runs_dir() / text] if "/" not in text else [])
    except (RuntimeError, ValueError):  # "~nobody", a null character: resolve says what is wrong
        return
    for folder in folders:
        recover_interrupted_save(folder)


def _claim(folder: Path) -> dict[str, Any] | None:
    """{"family", "model"} from the first family that claims a folder of another library, else None.

    A family that recognises the folder but cannot load it raises CheckpointError; that error is
    reported only if no other family claims the folder.
    """
    refusal = None
    for name, cls in all_families().items():
        try:
            model_config = cls.claim_folder(folder)
        except CheckpointError as err:
            refusal = refusal or err
            continue
        if model_config is not None:
            return {"family": name, "model": model_config}
    if refusal is not None:
        raise refusal
    return None


def read_info(folder: str | Path, origin: str = "local") -> CheckpointInfo:
    """Read config.json and metrics.json of a folder; raise CheckpointError if unusable.

    A folder without genlib's config.json (e.g. a diffusers pipeline) is described by the family
    that claims it.
    """
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    meta = None
    if cfg_path.exists():
        try:
            meta = json.loads(_small_text(cfg_path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{cfg_path} is corrupt (not valid JSON: {err})") from None
    if not isinstance(meta, dict) or "family" not in meta or "model" not in meta:
        meta = _claim(folder) or meta
    if meta is None:
        pickles = [p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES]
        hint = f" It holds {', '.join(pickles)}: pickled weights are refused." if pickles else ""
        raise CheckpointError(f"{folder} is not a genlib checkpoint: {CONFIG_FILE} is missing.{hint}")
    if not isinstance(meta, dict) or "family" not in meta or "model" not in meta:
        raise CheckpointError(f"{cfg_path} was not written by genlib (no 'family'/'model' entries); "
                              "it may belong to another library")
    metrics = {}
    if (folder / "metrics.json").exists():
        try:
            metrics = json.loads(_small_text(folder / "metrics.json"))
        except (json.JSONDecodeError, UnicodeDecodeError, CheckpointError):
            metrics = {}
        if not isinstance(metrics, dict):  # side files are informative: a broken one never hides a run
            metrics = {}
    return CheckpointInfo(folder, str(meta["family"]), meta["model"], meta.get("train", {}), metrics, origin,
                          str(meta.get("kind", "generative")))


def _small_text(path: Path) -> str:
    """A side file's text; CheckpointError when it is not a regular file (a link to /dev/zero, a fifo) or is
    larger than MAX_JSON_BYTES, so reading it can never hang or fill memory."""
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    with path.open("rb") as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MB; no genlib side file is")
    return data.decode("utf-8")


def list_checkpoints(family: str | None = None, include_evaluators: bool = False,
                     runs: Path | None = None) -> list[CheckpointInfo]:
    """Shipped checkpoints, then the user's runs (in ``runs``, default ``runs_dir()``: a hosted demo
    passes the visitor's own folder); unreadable folders are skipped.

    Evaluators (the digit classifier) and classifiers (the ViT) are not generative models and are left
    out unless asked.
    """
    found = []
    for root, origin in ((shipped_dir(), "shipped"), (runs if runs is not None else runs_dir(), "run")):
        if not root.is_dir():
            continue
        for old in root.glob(".*.old"):  # a save killed between its renames: its previous version comes back
            recover_interrupted_save(root / old.name[1:-len(".old")])
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                info = read_info(folder, origin)
            except (CheckpointError, OSError):  # OSError: a folder replaced while we list it
                continue
            if info.kind != "generative" and not include_evaluators:
                continue
            if family is None or info.family == family:
                found.append(info)
    return found
