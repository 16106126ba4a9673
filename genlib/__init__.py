"""genlib: the core of the generative-model lab. Pages and the CLI use these entry points.

    from genlib import all_families, load_model, list_checkpoints, train_run, TrainConfig

``genlib.families`` is the package holding one package per family (imported on first use of the
registry); ``all_families()`` lists the registered model classes.
"""
from genlib.checkpoints import CheckpointError, CheckpointInfo, list_checkpoints, load_model
from genlib.config import Config, ConfigError, TrainConfig
from genlib.model import GenerativeModel, StepOutput
from genlib.registry import all_families, get_family, register
from genlib.runs import build_model, train_run
from genlib.training import Trainer, TrainingCancelled, TrainingDiverged, pick_device

__all__ = [
    "CheckpointError", "CheckpointInfo", "Config", "ConfigError", "GenerativeModel", "StepOutput", "TrainConfig",
    "Trainer", "TrainingCancelled", "TrainingDiverged", "all_families", "build_model", "get_family",
    "list_checkpoints", "load_model", "pick_device", "register", "train_run",
]
