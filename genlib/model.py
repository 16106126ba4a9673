"""The interface every generative family implements, and the default optimisation step.

A family subclasses ``GenerativeModel``, declares its ``Config`` dataclass and its optional
abilities, and implements ``training_step``, ``configure_optimizers`` and ``sample``. The Trainer
owns the loop (device, AMP, clipping, EMA, NaN checks, cancel); the model owns what one step
does, so a GAN can override ``optimization_step`` to run two optimizers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from genlib.config import Config

# Abilities a family may declare; pages show a tab only where the family has it.
ABILITIES = ("encode", "decode", "reconstruct", "log_likelihood", "denoise", "attention_maps")


@dataclass
class StepOutput:
    """What one training step reports: the loss to minimise and scalars to log."""

    loss: Tensor
    scalars: dict[str, float] = field(default_factory=dict)


@dataclass
class StepTools:
    """What the Trainer lends a model for one step: backward with AMP scaling and clipping."""

    backward_and_step: Callable[[Tensor, torch.optim.Optimizer, Sequence[nn.Parameter]], None]
    autocast: Callable[[], Any]
    step: int


@dataclass(frozen=True)
class ModelConfig(Config):
    """Base of every generative family's config."""


class GenerativeModel(nn.Module):
    """Base class. Subclasses set ``Config`` and ``abilities`` and are created from a config."""

    family: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    abilities: ClassVar[frozenset[str]] = frozenset()
    conditional: ClassVar[bool] = False
    description: ClassVar[str] = ""
    # The family's group and the app page that drives it (a path from the repo root); Home groups
    # the shipped models by ``group`` and links each group to its page.
    group: ClassVar[str] = ""
    page: ClassVar[str] = ""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    # -- the three methods every family writes -------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Loss for one batch of (images (B,C,H,W) in [0,1], labels (B,))."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None,
               labels: Tensor | None = None, callback: Callable[[dict], None] | None = None) -> Tensor:
        """``n`` images (N,C,H,W) in [0,1]. Conditional families take ``labels`` (N,)."""
        raise NotImplementedError

    # -- hooks with sensible defaults ------------------------------------------------------------
    def optimization_step(self, batch: tuple[Tensor, Tensor], optimizers: list[torch.optim.Optimizer],
                          tools: StepTools) -> StepOutput:
        """One optimisation step. Single-optimizer default; multi-optimizer families override."""
        with tools.autocast():
            out = self.training_step(batch, tools.step)
        tools.backward_and_step(out.loss, optimizers[0], list(self.parameters()))
        return out

    def on_train_end(self, train_images: Tensor, train_labels: Tensor) -> None:
        """Called once after the last step, e.g. to fit a latent prior. Default: nothing."""

    def has(self, ability: str) -> bool:
        return ability in self.abilities

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def default_labels(self, n: int) -> Tensor | None:
        """Labels used when a conditional model is sampled without any: 0..K-1 repeated."""
        if not self.conditional:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    @property
    def num_classes(self) -> int:
        return int(getattr(self.config, "num_classes", 0))

    # -- checkpoint layout -------------------------------------------------------------------------
    # By default genlib.checkpoints writes the state dict as model.safetensors beside config.json and
    # loads it into ``cls(config)``. A family whose weights belong in another library's folder layout
    # (diffusion: a diffusers pipeline) sets ``own_checkpoint_layout`` and implements the first two
    # hooks; genlib.checkpoints still writes config.json, the side files, and does it atomically.
    own_checkpoint_layout: ClassVar[bool] = False

    def save_pretrained_files(self, folder: Path) -> None:
        """Write the weights (and their own configs) into ``folder``, which already exists."""
        raise NotImplementedError(f"{type(self).__name__} is saved by genlib.checkpoints as model.safetensors")

    @classmethod
    def from_folder(cls, folder: Path, config: ModelConfig) -> "GenerativeModel":
        """Build the model from files written by ``save_pretrained_files``; raise CheckpointError if unusable."""
        raise NotImplementedError(f"{cls.__name__} is loaded by genlib.checkpoints from model.safetensors")

    @classmethod
    def claim_folder(cls, folder: Path) -> dict[str, Any] | None:
        """The model config of a folder written by another library that this family loads as it is
        (it has no genlib config.json), or None if the folder is not one. May raise CheckpointError
        for a folder it recognises but cannot load."""
        return None
