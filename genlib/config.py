"""Typed, validated configs that round-trip through JSON.

Every config is a frozen dataclass. Field metadata carries the limits a UI or CLI needs:
``min``/``max`` for numbers, ``choices`` for strings, and ``help`` text. Validation runs in
``__post_init__``, so an out-of-range value can never reach a model, and ``from_dict`` refuses
unknown keys instead of silently dropping them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or out of range."""


def _check_field(name: str, value: Any, ftype: type, meta: dict) -> Any:
    """Return ``value`` coerced to ``ftype`` or raise a ConfigError naming the field."""
    if ftype is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if ftype in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if ftype is int:
            # float.is_integer() is False for 3.5, nan and inf; a Python int is never converted to
            # float here, so a huge JSON integer fails the range check instead of overflowing.
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            value = int(value)
        else:
            try:
                value = float(value)
            except OverflowError:  # an int too large for a float
                raise ConfigError(f"{name} must be finite, got a number too large for a float") from None
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise ConfigError(f"{name}={value} is out of range; allowed {lo} to {hi}")
        return value
    if ftype is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")
        return value
    return value


@dataclass(frozen=True)
class Config:
    """Base class: validation on construction plus JSON round-trip."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            checked = _check_field(f.name, getattr(self, f.name), hints[f.name], dict(f.metadata))
            object.__setattr__(self, f.name, checked)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name (a plain dict, ready for JSON)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """A validated config from ``data``; ConfigError for a non-dict or an unknown setting."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """``from_dict`` of the JSON ``text``; ConfigError when it is not valid JSON."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{cls.__name__}: not valid JSON ({err})") from err
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (and validated)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown setting(s) for {type(self).__name__}: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_specs(cls) -> list[dict[str, Any]]:
        """Describe each field for generated widgets and CLI flags.

        Each entry: name, type, default, and the metadata keys (min, max, choices, help, step).
        """
        hints = get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            if f.metadata.get("hidden"):
                continue
            specs.append({"name": f.name, "type": hints[f.name], "default": f.default, **f.metadata})
        return specs


def setting(default: Any, help: str, **limits: Any) -> Any:
    """A dataclass field with its limits and help text in metadata."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class TrainConfig(Config):
    """How the shared Trainer runs: the same for every family."""

    epochs: int = setting(10, "passes over the training set", min=1, max=1000)
    batch_size: int = setting(128, "images per step", min=2, max=4096)
    lr: float = setting(1e-3, "Adam learning rate", min=1e-6, max=1.0, step=1e-4, format="%.5f")
    lr_schedule: str = setting("constant", "learning rate over the run: constant, or cosine decay to zero",
                               choices=("constant", "cosine"))
    warmup_steps: int = setting(0, "steps of linear warm-up from zero to the learning rate (0 = none)", min=0,
                                max=10**6)
    grad_clip: float = setting(0.0, "clip gradient norm to this (0 = off)", min=0.0, max=1e4)
    ema_decay: float = setting(0.0, "exponential moving average of weights (0 = off)", min=0.0, max=0.99999)
    seed: int = setting(0, "random seed for init, shuffling and noise", min=0, max=2**31 - 1)
    device: str = setting("auto", "where to train", choices=("auto", "cpu", "cuda"))
    amp: bool = setting(True, "mixed precision (bf16) when on CUDA")
    cpu_bf16: bool = setting(False, "bf16 autocast on the CPU too: much faster on CPUs with AVX-512 BF16 or AMX "
                                    "for wide matrices, and no help (or slower) on others")
    max_steps: int = setting(0, "stop after this many steps (0 = run all epochs)", min=0, max=10**7)
    preview_every: int = setting(50, "steps between preview sample grids", min=1, max=10**6)
