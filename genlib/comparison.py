"""Compare any set of checkpoints: score each once, store the scorecard by content.

A scorecard is keyed by what determines it: the bytes of the checkpoint's config and weights,
the evaluator's weights, the sample count, the seed, the device and ``SCORE_VERSION``. A stored
scorecard is used only under its own key, so a retrained run under the same name is scored again,
and the Compare page, ``python -m genlib eval`` and ``python -m genlib compare`` read the same numbers.

Where a scorecard is found, first to last: in memory (shared by the app's sessions; treat it as
read-only), in the score cache (``runs/.cache/scores``), and beside the checkpoint itself
(``scorecard.json`` + ``.npz``, written by ``python -m genlib eval --write``). Shipped checkpoints
carry theirs, and the evaluator carries the reference rows, so a fresh clone shows Compare's
default view without scoring anything. Files are JSON plus a NumPy ``.npz`` read with
``allow_pickle=False``: nothing is unpickled. What is not stored is scored in a background task
(``start_scoring``), one model at a time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from genlib.background import ReportFn, Work, start_task
from genlib.checkpoints import CheckpointError, CheckpointInfo, load_model, resolve, runs_dir, shipped_dir
from genlib.evaluator import EVALUATOR_NAME, DigitClassifier, load_classifier
from genlib.registry import all_families
from genlib.scoring import (NUM_EVAL_SAMPLES, REFERENCE_SETS, SCORE_VERSION, SCORED_KIND, ProgressFn, ReferenceData,
                            Scorecard, reference_data, reference_scorecards, score_model)


def score_cache_dir() -> Path:
    """Where scorecards are cached (GENLIB_SCORE_CACHE, default runs/.cache/scores)."""
    return Path(os.environ.get("GENLIB_SCORE_CACHE", runs_dir() / ".cache" / "scores"))


_MEMORY: OrderedDict[tuple, object] = OrderedDict()  # scorecards and fingerprints, most recent last
_MEMORY_LOCK = threading.Lock()
MEMORY_ENTRIES = 256


def _remember(key: tuple, make: Callable[[], object], keep: Callable[[object], bool] = lambda value: True,
              replace: bool = False) -> object:
    """``make()`` once per key, kept in memory (most recent last); a value ``keep`` refuses (say, a
    scorecard not stored yet) is returned but not kept, so the next call looks again."""
    with _MEMORY_LOCK:
        if key in _MEMORY and not replace:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    value = make()  # outside the lock: scoring takes seconds and other sessions must not wait
    if keep(value):
        with _MEMORY_LOCK:
            _MEMORY[key] = value
            _MEMORY.move_to_end(key)
            while len(_MEMORY) > MEMORY_ENTRIES:
                _MEMORY.popitem(last=False)
    return value


# Side files written from scores: writing them must not change the checkpoint's identity.
NOT_FINGERPRINTED = frozenset({"metrics.json", "steps_quality.json", "scorecard.json", "references.json"})


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
# One JSON (metrics, reasons, closest pairs, and the key it was scored under) plus one NumPy .npz of
# uint8 images, read with allow_pickle=False. The same format serves the cache and the files shipped
# beside a checkpoint (scorecard.*) and beside the evaluator (references.*).
SCORECARD_FILE = "scorecard"    # <checkpoint>/scorecard.json + .npz: its scorecard at the default seed
REFERENCES_FILE = "references"  # <evaluator>/references.json + .npz: the reference rows at the default seed


def save_scorecards(cards: Sequence[Scorecard], stem: Path, key: dict[str, object]) -> None:
    """Write ``stem``.npz then ``stem``.json; the JSON, written last, marks the pair complete."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{i}_{name}": getattr(card, name) for i, card in enumerate(cards)
              for name in ("grid", "closest_images") if getattr(card, name) is not None}
    tmp = stem.with_name(stem.name + f".tmp-{os.getpid()}-{threading.get_ident()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, stem.with_suffix(".npz"))
    data = {"key": key, "cards": [{**card.summary(), "grid_nrow": card.grid_nrow, "closest": card.closest}
                                  for card in cards]}
    tmp_json = tmp.with_suffix(".json")
    tmp_json.write_text(json.dumps(data, indent=1))
    os.replace(tmp_json, stem.with_suffix(".json"))


def load_scorecards(stem: Path, key: dict[str, object]) -> list[Scorecard] | None:
    """The scorecards stored at ``stem``, or None when missing, unreadable, or scored under another key
    (another checkpoint, evaluator, seed, sample count or scoring version): they are then recomputed."""
    try:
        data = json.loads(stem.with_suffix(".json").read_text())
        if data.get("key") != json.loads(json.dumps(key)):
            return None
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
            images = {name: arrays[name] for name in arrays.files}
        return [Scorecard(c["name"], c["kind"], c["family"], c["metrics"], c["missing"], c["class_counts"],
                          images.get(f"{i}_grid"), c["grid_nrow"], c["closest"], images.get(f"{i}_closest_images"))
                for i, c in enumerate(data["cards"])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# -- the evaluator ------------------------------------------------------------------------------------
class Evaluator:
    """The digit classifier and its fingerprint, loaded in milliseconds; its reference data (the
    training digits' features, seconds of CPU) is computed on first use only, since shipped and
    cached scorecards need the fingerprint alone."""

    def __init__(self, classifier: DigitClassifier, fingerprint: str, folder: Path):
        self.classifier, self.fingerprint, self.folder = classifier, fingerprint, folder
        self._ref: ReferenceData | None = None
        self._ref_lock = threading.Lock()

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "Evaluator":
        """The shipped digit classifier (or the one in ``folder``)."""
        folder = Path(folder) if folder else shipped_dir() / EVALUATOR_NAME
        classifier = load_classifier(folder)
        return cls(classifier, module_fingerprint(classifier), folder)

    @property
    def ref(self) -> ReferenceData:
        """The training digits with their features (cached on disk by the evaluator's fingerprint)."""
        with self._ref_lock:
            if self._ref is None:
                self._ref = self._reference_data()
            return self._ref

    def _reference_data(self) -> ReferenceData:
        cached = score_cache_dir() / f"train-features-{self.fingerprint[:32]}.npy"
        try:
            features = torch.from_numpy(np.load(cached, allow_pickle=False))
        except (OSError, ValueError):
            features = None
        ref = reference_data(self.classifier, features)
        if features is None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}.npy")
            np.save(tmp, ref.train_features.numpy())
            os.replace(tmp, cached)
        return ref


# -- scoring with the cache ------------------------------------------------------------------------------
def _stem(key: dict[str, object]) -> Path:
    return score_cache_dir() / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def scorecard_key(folder: Path, evaluator: Evaluator, num_samples: int = NUM_EVAL_SAMPLES, seed: int = 0,
                  device: str = "cpu") -> dict[str, object]:
    """Everything a checkpoint's scorecard depends on: its content, the evaluator, the request and
    the scoring code's version. A stored scorecard is used only when its key is this one."""
    return {"score_version": SCORE_VERSION, "checkpoint": folder_fingerprint(folder),
            "evaluator": evaluator.fingerprint, "num_samples": num_samples, "seed": seed, "device": str(device)}


def resolve_local(source: str | Path) -> Path:
    """The folder of a local source; CheckpointError for a hub id or anything else."""
    text = str(source).strip()
    if text and not Path(text).expanduser().is_dir() and "/" in text:
        raise CheckpointError(f"{text} is not a folder on this machine")
    return resolve(text)[0]


def _stored(folder: Path, stem: Path, key: dict[str, object]) -> list[Scorecard] | None:
    """A stored scorecard under ``key``: the score cache first, then the one shipped beside the checkpoint."""
    return load_scorecards(stem, key) or load_scorecards(folder / SCORECARD_FILE, key)


def cached_scorecard(source: str | Path, evaluator: Evaluator, *, num_samples: int = NUM_EVAL_SAMPLES,
                     seed: int = 0, device: str = "cpu") -> Scorecard | None:
    """The scorecard of a local checkpoint if it was scored before, else None; never scores, never
    downloads. Looks in memory, then the score cache, then the checkpoint's own scorecard file."""
    try:
        folder = resolve_local(source)
        key = scorecard_key(folder, evaluator, num_samples, seed, device)
    except (CheckpointError, OSError):
        return None
    stem = _stem(key)
    cards = _remember(("scorecards", stem), lambda: _stored(folder, stem, key), keep=lambda value: value is not None)
    return dataclasses.replace(cards[0], name=folder.name) if cards else None  # type: ignore[index]


def score_checkpoint(source: str | Path, evaluator: Evaluator, *, num_samples: int = NUM_EVAL_SAMPLES,
                     seed: int = 0, device: str = "cpu", progress: ProgressFn | None = None,
                     use_cache: bool = True) -> Scorecard:
    """The scorecard of a checkpoint (shipped name, run, folder or hub id): a stored one when it was
    scored before under the same key, else scored now and cached."""
    folder, origin = resolve(source)
    name = str(source) if origin == "hub" else folder.name
    key = scorecard_key(folder, evaluator, num_samples, seed, device)
    stem = _stem(key)

    def stored_or_scored() -> list[Scorecard]:
        stored = _stored(folder, stem, key) if use_cache else None
        if stored is not None:
            return stored
        with _SCORING_LOCK:  # one model at a time: two on 2 cores would both finish late
            model, _ = load_model(folder, device=device)
            card = score_model(model, name, evaluator.ref, num_samples=num_samples, seed=seed, progress=progress)
        save_scorecards([card], stem, key)
        return [card]

    if use_cache:
        cards = _remember(("scorecards", stem), stored_or_scored, keep=lambda value: value is not None)
    else:
        cards = stored_or_scored()
        _remember(("scorecards", stem), lambda: cards, replace=True)
    return dataclasses.replace(cards[0], name=name)  # type: ignore[index]


_SCORING_LOCK = threading.Lock()


def write_checkpoint_scorecard(source: str | Path, card: Scorecard, evaluator: Evaluator, *,
                               num_samples: int = NUM_EVAL_SAMPLES, seed: int = 0, device: str = "cpu") -> Path:
    """Store ``card`` beside the checkpoint (scorecard.json + .npz), so Compare shows it at once on any
    machine, a fresh clone included. Returns the JSON's path."""
    folder = resolve_local(source)
    save_scorecards([card], folder / SCORECARD_FILE, scorecard_key(folder, evaluator, num_samples, seed, device))
    return (folder / SCORECARD_FILE).with_suffix(".json")


def _references_key(evaluator: Evaluator, seed: int) -> dict[str, object]:
    return {"score_version": SCORE_VERSION, "references": list(REFERENCE_SETS), "evaluator": evaluator.fingerprint,
            "seed": seed}


def cached_references(evaluator: Evaluator, seed: int = 0) -> list[Scorecard] | None:
    """The reference rows if stored (cache, or shipped beside the evaluator), else None; never scores."""
    key = _references_key(evaluator, seed)
    stem = _stem(key)
    return _remember(("references", stem),
                     lambda: load_scorecards(stem, key) or load_scorecards(evaluator.folder / REFERENCES_FILE, key),
                     keep=lambda value: value is not None)  # type: ignore[return-value]


def references(evaluator: Evaluator, seed: int = 0, progress: ProgressFn | None = None) -> list[Scorecard]:
    """The reference rows: stored ones, else scored now (seconds) and cached."""
    key = _references_key(evaluator, seed)

    def scored() -> list[Scorecard]:
        if progress:
            progress(0.0, "scoring the reference sets")
        cards = reference_scorecards(evaluator.ref, seed)
        save_scorecards(cards, _stem(key), key)
        return cards

    found = cached_references(evaluator, seed)
    return list(found if found is not None else _remember(("references", _stem(key)), scored))


def write_shipped_references(evaluator: Evaluator, cards: Sequence[Scorecard], seed: int = 0) -> Path:
    """Store the reference rows of ``seed`` beside the evaluator (references.json + .npz)."""
    save_scorecards(cards, evaluator.folder / REFERENCES_FILE, _references_key(evaluator, seed))
    return (evaluator.folder / REFERENCES_FILE).with_suffix(".json")


# -- what to compare ------------------------------------------------------------------------------------
def scored_families() -> dict[str, type]:
    """The registered families whose data kind the evaluator scores (digits), by name: the models
    Compare puts on one scoreboard. Other kinds are never scored against digits."""
    return {name: cls for name, cls in all_families().items() if cls.data_kind == SCORED_KIND}


# Text models are measured on their own kind's held-out split (their metrics.json), never by the digit evaluator:
# (metrics.json key, column title, lower is better).
TEXT_METRICS = (("bits_per_char", "bits per character ↓", True), ("val_loss", "held-out loss, nats per byte ↓", True),
                ("perplexity", "perplexity per byte ↓", True), ("bits_per_token", "bits per token ↓", True),
                ("generation_tokens_per_s", "generation tokens/s ↑", False))


def text_families() -> dict[str, type]:
    """The registered families of a token kind (text), by name: Compare's second scoreboard."""
    return {name: cls for name, cls in all_families().items() if cls.data_kind.tokens}


def text_scoreboard(infos: Sequence[CheckpointInfo]) -> list[dict[str, object]]:
    """One row per text checkpoint: its name, family, origin, steps and every TEXT_METRICS value its
    metrics.json holds (None where it has none), best bits per character first."""
    families = text_families()
    rows = []
    for info in infos:
        if info.family not in families:
            continue
        row: dict[str, object] = {"model": info.name, "family": info.family, "origin": info.origin,
                                  "train steps": info.metrics.get("train_steps")}
        for key, title, _ in TEXT_METRICS:
            value = info.metrics.get(key)
            row[title] = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        rows.append(row)
    first = TEXT_METRICS[0][1]
    return sorted(rows, key=lambda r: (r[first] is None, r[first] if r[first] is not None else 0.0))


def default_selection(infos: Sequence[CheckpointInfo]) -> list[str]:
    """One shipped checkpoint per family group (autoencoders, GANs, diffusion, ...): its
    unconditional model with the lowest stored Fréchet distance, so the default view compares the
    families on equal terms. Conditional models stand in only where a package has nothing else."""
    registered = scored_families()

    def rank(info: CheckpointInfo) -> tuple[bool, float]:
        fd = info.metrics.get("frechet_distance")
        return (registered[info.family].conditional, float(fd) if isinstance(fd, (int, float)) else math.inf)

    groups: dict[str, list[CheckpointInfo]] = {}
    for info in infos:
        if info.origin == "shipped" and info.family in registered:
            cls = registered[info.family]
            groups.setdefault(cls.group or info.family, []).append(info)
    return [min(group, key=rank).name for group in groups.values()]


@dataclass(frozen=True)
class ScoringFailure:
    """What a background scoring task returns when the checkpoint cannot be scored: the reason in words."""

    message: str


# -- scoring in the background -------------------------------------------------------------------------
def start_scoring(source: str | Path, evaluator: Evaluator, *, num_samples: int = NUM_EVAL_SAMPLES,
                  seed: int = 0, device: str = "cpu") -> Work:
    """Score a checkpoint on the background runner (shared by every session asking for the same thing);
    the work's result is the Scorecard, or a ScoringFailure saying why there is none. Poll it with
    ``snapshot()``; ``cancel()`` stops it at its next progress report."""
    def run(report: ReportFn, _cancel: threading.Event) -> Scorecard | ScoringFailure:
        report(0.0, "waiting for another model's scoring" if _SCORING_LOCK.locked() else "loading")
        try:
            return score_checkpoint(source, evaluator, num_samples=num_samples, seed=seed, device=device,
                                    progress=report)
        except (CheckpointError, ValueError, RuntimeError, OSError) as err:  # a bad source, said in words
            return ScoringFailure(str(err))

    try:  # a local checkpoint's task is keyed by its content: a retrained run is scored again
        content = folder_fingerprint(resolve_local(source))
    except (CheckpointError, OSError):
        content = "remote"
    return start_task(f"score:{source}:{content}:{evaluator.fingerprint[:16]}:{num_samples}:{seed}:{device}", run,
                      title=f"scoring {source}")


def start_references(evaluator: Evaluator, seed: int = 0) -> Work:
    """Score the reference rows of ``seed`` on the background runner; its result is the list of Scorecards."""
    return start_task(f"references:{evaluator.fingerprint[:16]}:{seed}",
                      lambda report, _cancel: references(evaluator, seed, progress=report), title="reference sets")


@dataclass
class Comparison:
    """The result of comparing checkpoints: one scorecard each, the reference rows, and the failures."""

    seed: int
    models: list[Scorecard]
    references: list[Scorecard]
    errors: dict[str, str] = field(default_factory=dict)  # source -> a clear message

    @property
    def cards(self) -> list[Scorecard]:
        """Every scorecard: the models' first, then the reference rows."""
        return self.models + self.references


def compare(sources: Sequence[str], *, seed: int = 0, num_samples: int = NUM_EVAL_SAMPLES,
            evaluator: Evaluator | None = None, device: str = "cpu",
            progress: Callable[[float, str], None] | None = None, use_cache: bool = True) -> Comparison:
    """Score every source (bad ones are reported in ``errors``, never raised) plus the references.
    ``use_cache=False`` scores every model afresh instead of reading stored scorecards."""
    evaluator = evaluator or Evaluator.load()
    report = progress or (lambda fraction, message: None)
    models, errors = [], {}
    for i, source in enumerate(sources):
        share = 1 / (len(sources) + 1)

        def step(fraction: float, message: str, i=i, source=source) -> None:
            report((i + fraction) * share, f"{source}: {message}")

        try:
            models.append(score_checkpoint(source, evaluator, num_samples=num_samples, seed=seed, device=device,
                                           progress=step, use_cache=use_cache))
        except (CheckpointError, ValueError, RuntimeError) as err:
            errors[str(source)] = str(err)
    report(len(sources) / (len(sources) + 1), "reference rows")
    refs = references(evaluator, seed)
    report(1.0, "done")
    return Comparison(seed, models, refs, errors)
