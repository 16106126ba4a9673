"""Writing checkpoints: a whole folder atomically (``save_folder``), a side file, the weights in half
precision, or some tensors of them; and putting back a folder whose save was killed between its renames.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genlib.checkpoints.layout import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, CheckpointError


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


def _rewrite_safetensors(weights: Path, change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Replace a .safetensors file by ``change(its tensors)``, atomically (a temp file, then a rename)."""
    state = change(load_file(str(weights)))
    tmp = weights.with_name(f".{weights.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        shutil.copymode(weights, tmp)  # safetensors writes 0600; keep the file's mode
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)


def store_half_precision(folder: str | Path) -> tuple[int, int]:
    """Rewrite every .safetensors file in a checkpoint folder (model.safetensors, or the weights in
    the sub-folders of a diffusers pipeline) with its float32 tensors in float16 (integer and float64
    buffers untouched: a float64 one is kept at that precision on purpose, such as an RBM's log Z), each
    atomically. The model loads them back as float32 (``load_state_dict`` casts), so a shipped checkpoint
    takes half the space; its scores move by less than the sampling noise (vae-mnist's Fréchet distance
    605.01 -> 605.02, diffusion-mnist's 156.20 -> 156.47). Returns (bytes before, bytes after), summed
    over the files."""
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE} nor any other .safetensors weights")
    before = after = 0
    for weights in files:
        before += weights.stat().st_size
        _rewrite_safetensors(weights, lambda state: {k: v.half() if v.dtype == torch.float32 else v
                                                     for k, v in state.items()})
        after += weights.stat().st_size
    return before, after


def update_weights(folder: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Set some tensors of a checkpoint's model.safetensors (a buffer estimated after training, say),
    keeping every other tensor as it is stored, atomically."""
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")

    def change(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        unknown = set(tensors) - set(state)
        if unknown:
            raise CheckpointError(f"{weights} has no tensor named {', '.join(sorted(unknown))}")
        return {**state, **{k: v.detach().cpu() for k, v in tensors.items()}}

    _rewrite_safetensors(weights, change)
