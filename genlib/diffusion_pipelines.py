"""Diffusers pipeline folders and noise schedules, apart from the diffusion model itself.

Reading a pipeline folder (model_index.json naming one UNet2DModel and one scheduler), deriving
genlib's config from a UNet's and a scheduler's configs, and the schedule curves the page plots.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from diffusers import DDPMScheduler
from torch import Tensor

from genlib.checkpoints import CheckpointError

# genlib's schedule names -> diffusers' beta_schedule
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid", "scaled_linear": "scaled_linear"}
PREDICTIONS = ("epsilon", "v_prediction", "sample")
PIPELINE_INDEX = "model_index.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def _pipeline_parts(folder: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler folder) named by model_index.json; CheckpointError for other pipelines."""
    index = _read_json(folder / PIPELINE_INDEX)
    parts = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[-1]}
    unets = [k for k, v in parts.items() if v[-1] == "UNet2DModel"]
    schedulers = [k for k, v in parts.items() if str(v[-1]).endswith("Scheduler")]
    others = sorted(set(parts) - set(unets) - set(schedulers))
    if len(unets) != 1 or len(schedulers) != 1 or others:
        raise CheckpointError(f"{folder} is a {index.get('_class_name', 'diffusers')} pipeline of "
                              f"{', '.join(f'{k} ({v[-1]})' for k, v in parts.items()) or 'nothing'}; genlib loads "
                              "pipelines of one UNet2DModel and one scheduler")
    return folder / unets[0], folder / schedulers[0]


def derive_config(unet: dict[str, Any], scheduler: dict[str, Any], conditional: bool) -> dict[str, Any]:
    """genlib's model config read off a UNet2DModel config and a scheduler config (both kept verbatim)."""
    size = unet.get("sample_size")
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise CheckpointError(f"non-square UNet (sample_size {size}); genlib needs square images")
        size = size[0]
    if not isinstance(size, int) or "beta_schedule" not in scheduler and not scheduler.get("trained_betas"):
        raise CheckpointError("not a DDPM-style pipeline: the UNet has no sample_size or the scheduler no betas")
    names = {v: k for k, v in SCHEDULES.items()}
    if scheduler.get("trained_betas") or scheduler.get("beta_schedule", "linear") not in names:
        raise CheckpointError(f"beta schedule {scheduler.get('beta_schedule')!r} is not one of "
                              f"{', '.join(SCHEDULES.values())}")
    channels = list(unet.get("block_out_channels", (224, 448, 672, 896)))
    blocks = list(unet.get("down_block_types", ())) + list(unet.get("up_block_types", ()))
    derived = {
        "sample_size": size, "in_channels": int(unet.get("in_channels", 3)), "base_channels": channels[0],
        "levels": len(channels), "layers_per_block": int(unet.get("layers_per_block", 2)),
        "attention": bool(unet.get("add_attention", True)) or any("Attn" in b for b in blocks),
        "attention_head_dim": int(unet.get("attention_head_dim") or channels[-1]),
        "schedule": names[scheduler.get("beta_schedule", "linear")],
        "prediction": scheduler.get("prediction_type", "epsilon"),
        "num_train_timesteps": int(scheduler.get("num_train_timesteps", 1000)),
    }
    if derived["prediction"] not in PREDICTIONS:
        raise CheckpointError(f"prediction type {derived['prediction']!r} is not one of {', '.join(PREDICTIONS)}")
    if conditional:
        derived["num_classes"] = int(unet.get("num_class_embeds") or 1) - 1
    return derived


def _curves(betas: Tensor, alphas_cumprod: Tensor) -> dict[str, np.ndarray]:
    abar = alphas_cumprod.double()
    return {"t": np.arange(len(betas)), "betas": betas.double().numpy(), "alphas_cumprod": abar.numpy(),
            "log_snr": (abar.log() - (1 - abar).log()).numpy()}


def schedule_curves_for(schedule: str, num_train_timesteps: int = 1000) -> dict[str, np.ndarray]:
    """t, betas, alphas_cumprod and log SNR, each (T,), of one of genlib's schedule names."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    sched = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=SCHEDULES[schedule])
    return _curves(sched.betas, sched.alphas_cumprod)


def all_schedule_curves(num_train_timesteps: int = 1000) -> dict[str, dict[str, np.ndarray]]:
    """{schedule name: schedule_curves_for(name)} for every schedule, to plot side by side."""
    return {name: schedule_curves_for(name, num_train_timesteps) for name in SCHEDULES}
