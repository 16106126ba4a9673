"""Compare any set of checkpoints: score each once, cache the scorecard on disk by content.

A scorecard is keyed by what determines it: the bytes of the checkpoint's config and weights,
the evaluator's weights, the sample count, the seed and ``SCORE_VERSION``. So a shipped model is
scored once per machine, a retrained run under the same name is scored again, and the
Compare page, ``python -m genlib eval`` and ``python -m genlib compare`` read the same numbers.
Cache files are JSON plus a NumPy ``.npz`` read with ``allow_pickle=False``: nothing is unpickled.
Scorecards read once are also kept in memory (shared by the app's sessions; treat them as read-only).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from genlib.checkpoints import CheckpointError, load_model, resolve, runs_dir
from genlib.evaluator import DigitClassifier, load_classifier
from genlib.scoring import (NUM_EVAL_SAMPLES, SCORE_VERSION, ProgressFn, ReferenceData, Scorecard,
                            reference_data, reference_scorecards, score_model)


def score_cache_dir() -> Path:
    """Where scorecards are cached (GENLIB_SCORE_CACHE, default runs/.cache/scores)."""
    return Path(os.environ.get("GENLIB_SCORE_CACHE", runs_dir() / ".cache" / "scores"))


_MEMORY: OrderedDict[tuple, object] = OrderedDict()  # scorecards and fingerprints, most recent last
_MEMORY_LOCK = threading.Lock()
MEMORY_ENTRIES = 256


def _remember(key: tuple, make: Callable[[], object]) -> object:
    with _MEMORY_LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    value = make()  # outside the lock: scoring takes seconds and other sessions must not wait
    with _MEMORY_LOCK:
        _MEMORY[key] = value
        while len(_MEMORY) > MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)
    return value


# Side files written from scores: writing them must not change the checkpoint's identity.
NOT_FINGERPRINTED = frozenset({"metrics.json", "steps_quality.json"})


def _fingerprinted_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")
                  and p.name not in NOT_FINGERPRINTED
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the checkpoint's JSON configs and safetensors weights (relative path + bytes).

    Remembered per (file, size, mtime) so an unchanged checkpoint is not hashed again."""
    files = _fingerprinted_files(folder)
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _remember(("fingerprint", stats), lambda: _hash_files(folder, files))  # type: ignore[return-value]


def _hash_files(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's weights (the evaluator's identity)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# -- scorecard files -----------------------------------------------------------------------------------
def save_scorecard(card: Scorecard, stem: Path) -> None:
    """Write ``stem``.json and ``stem``.npz (atomically enough: the JSON, written last, marks it complete)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in (("grid", card.grid), ("closest_images", card.closest_images)) if v is not None}
    tmp = stem.with_name(stem.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, stem.with_suffix(".npz"))
    data = {**card.summary(), "grid_nrow": card.grid_nrow, "closest": card.closest}
    tmp_json = stem.with_name(stem.name + ".tmp.json")
    tmp_json.write_text(json.dumps(data, indent=1))
    os.replace(tmp_json, stem.with_suffix(".json"))


def load_scorecard(stem: Path) -> Scorecard | None:
    """A cached scorecard, or None when it is missing or unreadable (it is then recomputed)."""
    try:
        data = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
            grid = arrays["grid"] if "grid" in arrays else None
            closest_images = arrays["closest_images"] if "closest_images" in arrays else None
        return Scorecard(data["name"], data["kind"], data["family"], data["metrics"], data["missing"],
                         data["class_counts"], grid, data["grid_nrow"], data["closest"], closest_images)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- scoring with the cache ------------------------------------------------------------------------------
@dataclass
class Evaluator:
    """The digit classifier, its fingerprint and its reference data, loaded once."""

    classifier: DigitClassifier
    fingerprint: str
    ref: ReferenceData

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "Evaluator":
        classifier = load_classifier(folder)
        fingerprint = module_fingerprint(classifier)
        cached = score_cache_dir() / f"train-features-{fingerprint[:32]}.npy"
        try:
            features = torch.from_numpy(np.load(cached, allow_pickle=False))
        except (OSError, ValueError):
            features = None
        ref = reference_data(classifier, features)
        if features is None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + ".tmp.npy")
            np.save(tmp, ref.train_features.numpy())
            os.replace(tmp, cached)
        return cls(classifier, fingerprint, ref)


def _stem(*parts: object) -> Path:
    key = hashlib.sha256(json.dumps([SCORE_VERSION, *map(str, parts)]).encode()).hexdigest()[:32]
    return score_cache_dir() / key


def score_checkpoint(source: str | Path, evaluator: Evaluator, *, num_samples: int = NUM_EVAL_SAMPLES,
                     seed: int = 0, device: str = "cpu", progress: ProgressFn | None = None,
                     use_cache: bool = True) -> Scorecard:
    """The scorecard of a checkpoint (shipped name, run, folder or hub id), from the cache if scored before."""
    folder, origin = resolve(source)
    name = str(source) if origin == "hub" else folder.name
    stem = _stem("model", folder_fingerprint(folder), evaluator.fingerprint, num_samples, seed, device)
    if not use_cache:
        return _score_and_save(folder, name, stem, evaluator, num_samples, seed, device, progress)

    def from_disk_or_scored() -> Scorecard:
        card = load_scorecard(stem)
        return card if card is not None else _score_and_save(folder, name, stem, evaluator, num_samples, seed,
                                                             device, progress)

    card = _remember(("scorecard", stem), from_disk_or_scored)
    return dataclasses.replace(card, name=name)  # type: ignore[arg-type]


def _score_and_save(folder: Path, name: str, stem: Path, evaluator: Evaluator, num_samples: int, seed: int,
                    device: str, progress: ProgressFn | None) -> Scorecard:
    model, _ = load_model(folder, device=device)
    card = score_model(model, name, evaluator.ref, num_samples=num_samples, seed=seed, progress=progress)
    save_scorecard(card, stem)
    return card


def references(evaluator: Evaluator, seed: int = 0) -> list[Scorecard]:
    """The reference rows (cached like models)."""
    stems = [_stem("reference", i, evaluator.fingerprint, seed) for i in range(4)]

    def from_disk_or_scored() -> list[Scorecard]:
        cards = [load_scorecard(s) for s in stems]
        if any(c is None for c in cards):
            cards = reference_scorecards(evaluator.ref, seed)
            for card, stem in zip(cards, stems):
                save_scorecard(card, stem)
        return cards  # type: ignore[return-value]

    return list(_remember(("references", *stems), from_disk_or_scored))  # type: ignore[call-overload]


@dataclass
class Comparison:
    """The result of comparing checkpoints: one scorecard each, the reference rows, and the failures."""

    seed: int
    models: list[Scorecard]
    references: list[Scorecard]
    errors: dict[str, str] = field(default_factory=dict)  # source -> a clear message

    @property
    def cards(self) -> list[Scorecard]:
        return self.models + self.references


def compare(sources: Sequence[str], *, seed: int = 0, num_samples: int = NUM_EVAL_SAMPLES,
            evaluator: Evaluator | None = None, device: str = "cpu",
            progress: Callable[[float, str], None] | None = None) -> Comparison:
    """Score every source (bad ones are reported in ``errors``, never raised) plus the references."""
    evaluator = evaluator or Evaluator.load()
    report = progress or (lambda fraction, message: None)
    models, errors = [], {}
    for i, source in enumerate(sources):
        share = 1 / (len(sources) + 1)

        def step(fraction: float, message: str, i=i, source=source) -> None:
            report((i + fraction) * share, f"{source}: {message}")

        try:
            models.append(score_checkpoint(source, evaluator, num_samples=num_samples, seed=seed, device=device,
                                           progress=step))
        except (CheckpointError, ValueError, RuntimeError) as err:
            errors[str(source)] = str(err)
    report(len(sources) / (len(sources) + 1), "reference rows")
    refs = references(evaluator, seed)
    report(1.0, "done")
    return Comparison(seed, models, refs, errors)
