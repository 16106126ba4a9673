"""Checkpoints are Hugging Face-style folders, written atomically, read from safetensors only.

    my-run/
      config.json        {"family": "vae", "format": 1, "model": {...}, "train": {...}}
      model.safetensors  the weights (never a pickle)
      metrics.json       what genlib.evaluation measured
      samples.png        a preview grid
      history.csv.gz     the loss log, one row per step (gzip CSV; older folders: history.csv)
      README.md          a model card

A family with ``own_checkpoint_layout`` writes its weights in its own library's layout instead of
model.safetensors: diffusion models are diffusers pipeline folders (model_index.json, unet/,
scheduler/) with genlib's config.json beside them. A folder without genlib's config.json loads
when a family claims it (``GenerativeModel.claim_folder``): any unconditional diffusers
UNet2DModel pipeline loads as family ``diffusion``.

One loader (``load_model``) takes a shipped checkpoint name, a run the user trained, a local
folder, or a Hugging Face hub id (downloaded with huggingface_hub when the machine is online).

The package is split by job: ``layout`` (file names, limits, CheckpointError, CheckpointInfo),
``writing`` (atomic saves and rewrites), ``history`` (the loss log), ``hub`` (downloads), ``finding``
(resolve, read_info, list_checkpoints) and ``loading`` (load_model). Import from ``genlib.checkpoints``.
"""
from genlib.checkpoints.finding import is_local_folder, list_checkpoints, read_info, resolve
from genlib.checkpoints.history import HISTORY_FILE, history_bytes, history_file, read_history
from genlib.checkpoints.layout import (CONFIG_FILE, FORMAT_VERSION, HUB_ALLOW_PATTERNS, HUB_ID, HUB_TOP_LEVEL_ID,
                                       MAX_HUB_NAME_CHARS, MAX_JSON_BYTES, MAX_SOURCE_CHARS, PICKLE_SUFFIXES, REPO_ROOT,
                                       WEIGHTS_FILE, CheckpointError, CheckpointInfo, runs_dir, shipped_dir, shown)
from genlib.checkpoints.loading import load_model, load_state
from genlib.checkpoints.writing import (recover_interrupted_save, save_folder, store_half_precision, update_weights,
                                        write_extra)

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "HISTORY_FILE", "HUB_ALLOW_PATTERNS", "HUB_ID", "HUB_TOP_LEVEL_ID",
           "MAX_HUB_NAME_CHARS", "MAX_JSON_BYTES", "MAX_SOURCE_CHARS", "PICKLE_SUFFIXES", "REPO_ROOT", "WEIGHTS_FILE",
           "CheckpointError", "CheckpointInfo", "history_bytes", "history_file", "is_local_folder", "list_checkpoints",
           "load_model", "load_state", "read_history", "read_info", "recover_interrupted_save", "resolve", "runs_dir",
           "save_folder", "shipped_dir", "shown", "store_half_precision", "update_weights", "write_extra"]
