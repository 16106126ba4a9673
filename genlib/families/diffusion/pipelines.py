"""Diffusers pipeline folders and noise schedules, apart from the diffusion model itself.

Writing and reading a pipeline folder (model_index.json naming one UNet2DModel and one scheduler, diffusers'
own classes only, matched by name and never imported; weights as safetensors only, and a UNet's size checked
on the meta device before any weight is allocated), deriving genlib's config from a UNet's and a scheduler's
configs, and the schedule curves the page plots.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor

from genlib.checkpoints import CheckpointError

# genlib's schedule names -> diffusers' beta_schedule
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid", "scaled_linear": "scaled_linear"}
PREDICTIONS = ("epsilon", "v_prediction", "sample")
PIPELINE_INDEX = "model_index.json"
# What a pipeline folder may name: diffusers' own classes only, matched by name and never imported from it.
PIPELINE_CLASSES = ("DDPMPipeline", "DDIMPipeline", "PNDMPipeline")   # one UNet2DModel and one scheduler
UNET_CLASS = "UNet2DModel"
# Schedulers of a discrete beta schedule: their config sets up the DDPMScheduler genlib samples with.
SCHEDULER_CLASSES = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                     "DPMSolverSinglestepScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                     "HeunDiscreteScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler",
                     "DEISMultistepScheduler")
MAX_UNET_PARAMETERS = 1_000_000_000   # 4 GB of float32 weights; google/ddpm-celebahq-256 has 114M
MAX_UNET_LEVELS = 8                   # len(block_out_channels): each level halves the image
MAX_UNET_LAYERS = 8                   # layers_per_block (diffusers' pipelines use 1 or 2)
_PART_NAME = re.compile(r"^[A-Za-z0-9_][\w-]*$")   # a sub-folder's name: never "..", never a path


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


def _named(value: Any) -> str:
    """A class or library name from a folder's JSON, quoted and cut short for a message."""
    text = str(value)
    return repr(text) if len(text) <= 60 else f"{text[:60]!r}…"


def _pipeline_parts(folder: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler folder) named by model_index.json; CheckpointError for other pipelines.

    Only diffusers' own classes are accepted, by name (PIPELINE_CLASSES, one UNET_CLASS, one of
    SCHEDULER_CLASSES); nothing the folder names is ever imported.
    """
    index = _read_json(folder / PIPELINE_INDEX)
    accepted = (f"genlib loads diffusers' {', '.join(PIPELINE_CLASSES)} folders of one {UNET_CLASS} and one "
                f"scheduler ({', '.join(SCHEDULER_CLASSES)}), and never imports a class a folder names")
    pipeline = index.get("_class_name")
    if pipeline not in PIPELINE_CLASSES:
        raise CheckpointError(f"{folder}: {PIPELINE_INDEX} names the pipeline class {_named(pipeline)}; {accepted}")
    parts: dict[str, tuple[str, str]] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or not any(value):
            continue  # a setting, or an optional part left out ([null, null])
        if len(value) != 2 or not all(isinstance(v, str) for v in value) or not _PART_NAME.match(name):
            raise CheckpointError(f"{folder}: {PIPELINE_INDEX} has an entry {_named(name)} that is not a part name "
                                  f"with [library, class]; {accepted}")
        parts[name] = (value[0], value[1])
    foreign = [f"{name} ({_named(lib)}, {_named(cls)})" for name, (lib, cls) in parts.items() if lib != "diffusers"]
    if foreign:
        raise CheckpointError(f"{folder}: {PIPELINE_INDEX} names classes from outside diffusers: "
                              f"{', '.join(foreign)}; {accepted}")
    unets = [k for k, (_, cls) in parts.items() if cls == UNET_CLASS]
    schedulers = [k for k, (_, cls) in parts.items() if cls in SCHEDULER_CLASSES]
    others = sorted(set(parts) - set(unets) - set(schedulers))
    if len(unets) != 1 or len(schedulers) != 1 or others:
        raise CheckpointError(f"{folder} is a {pipeline} pipeline of "
                              f"{', '.join(f'{k} ({_named(cls)})' for k, (_, cls) in parts.items()) or 'nothing'}; "
                              f"{accepted}")
    return folder / unets[0], folder / schedulers[0]


def unet_on_meta(unet_dir: Path) -> UNet2DModel:
    """The UNet that ``unet_dir/config.json`` describes, built on torch's meta device (shapes only, no
    memory), to check it before any weight is allocated: CheckpointError for a config that names another
    class, cannot be built, or asks for more than MAX_UNET_PARAMETERS parameters."""
    config = _read_json(unet_dir / "config.json")
    if config.get("_class_name", UNET_CLASS) != UNET_CLASS:
        raise CheckpointError(f"{unet_dir / 'config.json'} is a {_named(config['_class_name'])}, not a {UNET_CLASS}")
    levels, layers = config.get("block_out_channels", (224, 448, 672, 896)), config.get("layers_per_block", 2)
    if not isinstance(levels, (list, tuple)) or not 1 <= len(levels) <= MAX_UNET_LEVELS \
            or not isinstance(layers, int) or not 1 <= layers <= MAX_UNET_LAYERS:
        raise CheckpointError(f"the UNet in {unet_dir} is not one genlib builds: it needs 1 to {MAX_UNET_LEVELS} "
                              f"levels (block_out_channels) and 1 to {MAX_UNET_LAYERS} layers_per_block")
    try:
        with torch.device("meta"):
            unet = UNet2DModel.from_config(config)
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or ["its settings do not fit together"])[0][:200]
        raise CheckpointError(f"the UNet config in {unet_dir} cannot be built ({reason})") from None
    count = sum(p.numel() for p in unet.parameters())
    if count > MAX_UNET_PARAMETERS:
        raise CheckpointError(f"the UNet in {unet_dir} would have {count:,} parameters ({count * 4 / 1e9:,.0f} GB "
                              f"as float32); genlib loads UNets of at most {MAX_UNET_PARAMETERS:,} parameters")
    return unet


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


def curves_of(betas: Tensor, alphas_cumprod: Tensor) -> dict[str, np.ndarray]:
    """t, betas, alphas_cumprod and log SNR, each (T,) numpy, of a beta schedule and its cumulative product."""
    abar = alphas_cumprod.double()
    return {"t": np.arange(len(betas)), "betas": betas.double().numpy(), "alphas_cumprod": abar.numpy(),
            "log_snr": (abar.log() - (1 - abar).log()).numpy()}


def schedule_curves_for(schedule: str, num_train_timesteps: int = 1000) -> dict[str, np.ndarray]:
    """t, betas, alphas_cumprod and log SNR, each (T,), of one of genlib's schedule names."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    sched = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=SCHEDULES[schedule])
    return curves_of(sched.betas, sched.alphas_cumprod)


def all_schedule_curves(num_train_timesteps: int = 1000) -> dict[str, dict[str, np.ndarray]]:
    """{schedule name: schedule_curves_for(name)} for every schedule, to plot side by side."""
    return {name: schedule_curves_for(name, num_train_timesteps) for name in SCHEDULES}


# -- pipeline folders ------------------------------------------------------------------------------------
def write_pipeline(folder: Path, unet: UNet2DModel, scheduler_config: dict[str, Any], scheduler_class: str) -> None:
    """model_index.json, unet/ (config.json + safetensors) and scheduler/scheduler_config.json in ``folder``."""
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    version = {"_diffusers_version": diffusers.__version__}
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": scheduler_class, **version, **scheduler_config}, indent=2, sort_keys=True))
    (folder / PIPELINE_INDEX).write_text(json.dumps(
        {"_class_name": "DDPMPipeline", **version, "scheduler": ["diffusers", scheduler_class],
         "unet": ["diffusers", "UNet2DModel"]}, indent=2, sort_keys=True))


def read_pipeline(folder: Path, config: Any, conditional: bool) -> tuple[UNet2DModel, dict[str, Any]]:
    """(the UNet, loaded from safetensors only; the scheduler config, verbatim) of ``folder``.

    CheckpointError if the weights are missing or pickled, or if genlib's ``config`` does not match
    what the UNet and scheduler configs say.
    """
    unet_dir, scheduler_dir = _pipeline_parts(folder)
    shape = unet_on_meta(unet_dir)  # its size and its fit are checked before a single weight is allocated
    scheduler_config = _read_json(scheduler_dir / "scheduler_config.json")
    derived = derive_config(dict(shape.config), scheduler_config, conditional)
    wrong = sorted(k for k, v in derived.items() if getattr(config, k) != v)
    if wrong:
        raise CheckpointError(f"config.json of {folder} does not fit its unet/ and scheduler/ configs "
                              f"({', '.join(f'{k}: {getattr(config, k)!r} vs {derived[k]!r}' for k in wrong)})")
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, local_files_only=True,
                                           low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as err:
        pickles = [p.name for p in unet_dir.glob("*.bin")]
        hint = f"; it holds {', '.join(pickles)}: pickled weights are refused" if pickles else ""
        raise CheckpointError(f"cannot load the UNet in {unet_dir}: {str(err).splitlines()[0]}{hint}") from None
    return unet, scheduler_config


def claim_pipeline(folder: Path) -> dict[str, Any] | None:
    """genlib's config for an unconditional UNet2DModel pipeline folder without genlib's config.json;
    None if ``folder`` is no pipeline; CheckpointError for pipelines genlib cannot run."""
    if not (folder / PIPELINE_INDEX).is_file():
        return None
    unet_dir, scheduler_dir = _pipeline_parts(folder)
    unet_config = _read_json(unet_dir / "config.json")
    if unet_config.get("num_class_embeds") or unet_config.get("class_embed_type"):
        raise CheckpointError(f"{folder}: a class-conditional UNet2DModel without genlib's config.json; "
                              "genlib loads unconditional diffusers pipelines only")
    if unet_config.get("time_embedding_type", "positional") != "positional":
        raise CheckpointError(f"{folder}: a UNet with {unet_config['time_embedding_type']} time embedding "
                              "(a score-SDE model); genlib loads DDPM-style pipelines only")
    derived = derive_config(unet_config, _read_json(scheduler_dir / "scheduler_config.json"), conditional=False)
    return {**derived, "sample_steps": min(50, derived["num_train_timesteps"])}  # a default: not in the folder
