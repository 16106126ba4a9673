"""Checkpoints are Hugging Face-style folders, written atomically, read from safetensors only.

    my-run/
      config.json        {"family": "vae", "format": 1, "model": {...}, "train": {...}}
      model.safetensors  the weights (never a pickle)
      metrics.json       what genlib.evaluation measured
      samples.png        a preview grid
      history.csv        the loss log, one row per step
      README.md          a model card

A family with ``own_checkpoint_layout`` writes its weights in its own library's layout instead of
model.safetensors: diffusion models are diffusers pipeline folders (model_index.json, unet/,
scheduler/) with genlib's config.json beside them. A folder without genlib's config.json loads
when a family claims it (``GenerativeModel.claim_folder``): any unconditional diffusers
UNet2DModel pipeline loads as family ``diffusion``.

One loader (``load_model``) takes a shipped checkpoint name, a run the user trained, a local
folder, or a Hugging Face hub id (downloaded with huggingface_hub when the machine is online).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from genlib.config import ConfigError
from genlib.registry import UnknownFamilyError, all_families, get_family

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# What a hub download fetches: configs, safetensors weights (a diffusers pipeline's unet/ and
# scheduler/ folders included: fnmatch's * crosses "/") and side files; never pickles or code.
HUB_ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.png", "*.md", "*.csv", "*.txt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_TOP_LEVEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")  # the Hub's old un-owned ids: gpt2, bert-base-uncased
MAX_HUB_NAME_CHARS = 96     # the Hub's limit on each of owner and name
MAX_SOURCE_CHARS = 4096     # PATH_MAX on Linux: no folder path or hub id is longer
REPO_ROOT = Path(__file__).resolve().parent.parent


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


# -- writing ---------------------------------------------------------------------------------------
def save_folder(folder: str | Path, module: nn.Module, meta: dict[str, Any],
                extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Write weights + config.json (+ extra files) into ``folder`` atomically.

    Everything is written to a temporary sibling first and renamed into place, so a crash or a
    full disk never leaves a half-written checkpoint under the final name.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, so the umask applies (tempfile.mkdtemp would make the checkpoint private, 0700).
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()
    try:
        if getattr(module, "own_checkpoint_layout", False):
            module.save_pretrained_files(tmp)  # e.g. a diffusers pipeline: model_index.json, unet/, scheduler/
        else:
            # contiguous clones: safetensors refuses shared or strided storage
            state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=2, sort_keys=True))
        for written in tmp.rglob("*"):  # safetensors writes 0600; match the others (umask)
            if written.is_file():
                shutil.copymode(tmp / CONFIG_FILE, written)
        for name, content in (extra_files or {}).items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / name, mode) as fh:
                fh.write(content)
        _swap_in(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _old_version(folder: Path) -> Path:
    """Where ``save_folder`` keeps a checkpoint's previous version while it renames the new one in."""
    return folder.with_name(f".{folder.name}.old")


def _swap_in(tmp: Path, folder: Path, attempts: int = 5) -> None:
    """Rename the finished ``tmp`` to ``folder``, moving a previous version aside to ``.name.old`` first.

    A directory cannot replace a non-empty one in one rename, so there is a moment with no folder
    under the name; a process killed then leaves the previous version complete in ``.name.old``,
    and ``recover_interrupted_save`` (run by listing and loading) puts it back. If a lister does
    that while this process is in the gap, the second rename finds the name taken: move it aside
    again and retry.
    """
    old = _old_version(folder)
    for attempt in range(attempts):
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
            break
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == attempts - 1:
                raise
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_save(folder: str | Path) -> bool:
    """Put back the previous version of a checkpoint whose save was killed between its two renames.

    Then there is no folder under the name, only ``.name.old`` with the previous, complete version
    (``save_folder``); this renames it back and returns True. A no-op (False) otherwise, also when
    the path cannot be checked at all (a name too long for the file system).
    """
    folder = Path(folder)
    try:
        old = _old_version(folder)
        if folder.exists() or not old.is_dir():
            return False
        os.replace(old, folder)
    except (OSError, ValueError):  # a save finished meanwhile, or the path is unusable
        return False
    return True


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


def write_extra(folder: str | Path, name: str, content: str | bytes) -> None:
    """Atomically add or replace one side file (metrics.json, samples.png) of a checkpoint."""
    folder = Path(folder)
    tmp = folder / f".{name}.tmp-{uuid.uuid4().hex[:12]}"  # open(), not mkstemp: the umask applies
    try:
        with open(tmp, "wb" if isinstance(content, bytes) else "w") as fh:
            fh.write(content)
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)


def store_half_precision(folder: str | Path) -> tuple[int, int]:
    """Rewrite every .safetensors file in a checkpoint folder (model.safetensors, or the weights in
    the sub-folders of a diffusers pipeline) with its floating-point tensors in float16 (integer
    buffers untouched), each atomically. The model loads them back as float32 (``load_state_dict``
    casts), so a shipped checkpoint takes half the space; its scores move by less than the sampling
    noise (vae-mnist's Fréchet distance 605.01 -> 605.02, diffusion-mnist's 346.85 -> 347.02). Returns
    (bytes before, bytes after), summed over the files."""
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE} nor any other .safetensors weights")
    before = after = 0
    for weights in files:
        before += weights.stat().st_size
        state = load_file(str(weights))
        half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        tmp = weights.with_name(f".{weights.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            save_file(half, str(tmp), metadata={"format": "pt"})
            shutil.copymode(weights, tmp)  # safetensors writes 0600; keep the file's mode
            os.replace(tmp, weights)
        finally:
            tmp.unlink(missing_ok=True)
        after += weights.stat().st_size
    return before, after


# -- finding -----------------------------------------------------------------------------------------
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


def shown(text: str, keep: int = 60) -> str:
    """``text`` quoted for a message, cut to its first ``keep`` characters when longer (a pasted page of
    text stays one short line): ``'aaaa…' (5,000 characters)``."""
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}… ({len(text):,} characters)"


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


def _download(repo_id: str) -> Path:
    """Fetch a hub repo's safetensors folder (no pickles, no code) into the local HF cache.

    Refused when loading from the hub is off (``genlib.demo.limits().hub``), and before anything is
    downloaded when the files it would fetch add up to more than ``limits().hub_bytes``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from genlib.demo import limits

    caps = limits()
    if not caps.hub:
        raise CheckpointError(f"loading {repo_id!r} from the Hugging Face Hub is off here (set GENLIB_DEMO_HUB=1 to "
                              "allow it); use a shipped checkpoint or a local folder")
    size = _hub_download_size(repo_id)
    if size is not None and size > caps.hub_bytes:
        raise CheckpointError(f"{repo_id!r} would download {size / 2**20:,.0f} MB of weights and configs, more than "
                              f"the {caps.hub_bytes / 2**20:,.0f} MB allowed here; nothing was downloaded")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HUB_ALLOW_PATTERNS)))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"could not download {repo_id!r} from the Hugging Face Hub: this machine is offline "
                              "and the model is not in the local cache") from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"the Hugging Face Hub refused {repo_id!r}: {str(err).splitlines()[0]}") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"could not fetch {repo_id!r} from the Hugging Face Hub: {err}") from None


def _hub_download_size(repo_id: str) -> int | None:
    """Bytes of the files ``_download`` would fetch, from the hub's file list; None when the hub cannot be
    asked (offline: the download then comes from the local cache, which was checked when it was filled)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception:  # offline, unknown repo, hub down: snapshot_download says which, in words, just after
        return None
    files = {s.rfilename: s.size or 0 for s in info.siblings or []}
    return sum(files[name] for name in filter_repo_objects(files, allow_patterns=list(HUB_ALLOW_PATTERNS)))


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


MAX_JSON_BYTES = 16 * 1024 * 1024   # far above any config.json or metrics.json genlib writes


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


# -- loading -------------------------------------------------------------------------------------------
def load_state(folder: Path, module: nn.Module) -> None:
    """Fill ``module`` from folder/model.safetensors; strict, with clear errors."""
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        pickles = [p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(f"{folder} has only pickled weights ({', '.join(pickles)}); genlib loads "
                                  "safetensors only and never unpickles")
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} is corrupt or truncated ({err})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        # torch's first line is only "Error(s) in loading state_dict for X:"; the next says what.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "their names or shapes differ"
        raise CheckpointError(f"the weights in {weights} do not fit the model in config.json ({detail})") from None


def load_model(source: str | Path, *, expect_family: str | None = None, device: str | torch.device = "cpu"):
    """Load any checkpoint: returns (model in eval mode, CheckpointInfo)."""
    _recover_source(source)
    folder, origin = resolve(source)
    info = read_info(folder, origin)
    if info.kind == "evaluator":
        raise CheckpointError(f"{info.name} is the evaluator (the digit classifier that scores models), "
                              "not a generative model")
    if info.kind != "generative":
        raise CheckpointError(f"{info.name} is a {info.kind} ({info.family!r}), not a generative model; "
                              "it has a page of its own")
    if expect_family and info.family != expect_family:
        raise CheckpointError(f"{info.name} is a {info.family!r} checkpoint, not {expect_family!r}")
    try:
        cls = get_family(info.family)
        config = cls.Config.from_dict(info.model_config)
        if cls.own_checkpoint_layout:
            model = cls.from_folder(folder, config)  # weights and their configs in the family's own layout
        else:
            model = cls(config)
            load_state(folder, model)
    except (UnknownFamilyError, ConfigError) as err:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {err}") from None
    return model.to(device).eval(), info
