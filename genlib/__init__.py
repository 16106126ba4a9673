"""genlib: the core of the generative-model lab. Pages and the CLI use these entry points.

    from genlib import families, load_model, list_checkpoints, train_run, TrainConfig
"""
from genlib.checkpoints import CheckpointError, CheckpointInfo, list_checkpoints, load_model
from genlib.config import Config, ConfigError, TrainConfig
from genlib.model import GenerativeModel, StepOutput

# Import the built-in families package before binding the function ``families``: importing a
# subpackage sets it as an attribute of its parent, so a later first import of genlib.families
# would replace the function ``genlib.families`` with the package.
from genlib import families as _builtin_families  # noqa: E402,F401  (registers the built-in families)
from genlib.registry import families, get_family, register  # noqa: E402
from genlib.runs import build_model, train_run
from genlib.training import Trainer, TrainingCancelled, TrainingDiverged, pick_device

__all__ = [
    "CheckpointError", "CheckpointInfo", "Config", "ConfigError", "GenerativeModel", "StepOutput", "TrainConfig",
    "Trainer", "TrainingCancelled", "TrainingDiverged", "build_model", "families", "get_family", "list_checkpoints",
    "load_model", "pick_device", "register", "train_run",
]
