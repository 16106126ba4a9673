"""Diffusion on diffusers' UNet2DModel and schedulers, unconditional and class-conditional: the model
(``model.py``) and its settings (``config.py``); editing, the likelihood bound and attention
(``tools``); diffusers pipeline folders (``pipelines``); the reverse process frame by frame and steps
against quality (``analysis``); and the ``steps-quality`` CLI subcommand (``cli``)."""
from genlib.families.diffusion import analysis, tools
from genlib.families.diffusion.analysis import (CURVE_SAMPLERS, DEFAULT_CURVE_STEPS, MIN_CURVE_SAMPLES, STEPS_GRID,
                                                StepsQuality, Timeline, load_steps_quality, reverse_timelines,
                                                save_steps_quality, steps_quality, timeline_gif)
from genlib.families.diffusion.cli import COMMANDS
from genlib.families.diffusion.config import (SAMPLERS, CDiffusionConfig, CDiffusionSampling, DiffusionConfig,
                                              DiffusionSampling)
from genlib.families.diffusion.model import ConditionalDiffusionModel, DiffusionModel
from genlib.families.diffusion.pipelines import PREDICTIONS, SCHEDULES, all_schedule_curves, schedule_curves_for
from genlib.families.diffusion.tools import MASK_KINDS, make_mask

__all__ = ["COMMANDS", "CURVE_SAMPLERS", "DEFAULT_CURVE_STEPS", "MIN_CURVE_SAMPLES", "STEPS_GRID", "StepsQuality",
           "Timeline", "load_steps_quality", "reverse_timelines", "save_steps_quality", "steps_quality",
           "timeline_gif", "CDiffusionConfig", "CDiffusionSampling", "ConditionalDiffusionModel", "DiffusionConfig",
           "DiffusionModel", "DiffusionSampling", "MASK_KINDS", "PREDICTIONS", "SAMPLERS", "SCHEDULES",
           "all_schedule_curves", "analysis", "make_mask", "schedule_curves_for", "tools"]
