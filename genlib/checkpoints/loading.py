"""Loading a checkpoint into its model: strict, from safetensors only, with clear errors."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from genlib.checkpoints.finding import _recover_source, read_info, resolve
from genlib.checkpoints.layout import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, CheckpointError
from genlib.config import ConfigError
from genlib.registry import UnknownFamilyError, get_family


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
