"""Fine-tuning any Hugging Face encoder for classification (the lab's own small BERT is pretrained by
``encoder_pretrain``), and the folder helpers both share.

Fine-tuning (``finetune_encoder``; ``FinetuneJob`` runs it on the background runner): any folder or hub
id that ``AutoModelForSequenceClassification`` loads from safetensors (eager attention, so the
explorer can read the attention weights; never remote code), trained with AdamW and a linear
warmup/decay (lr 0 picks 1e-3 for a small encoder, 3e-5 for a bert-base-sized one), the epoch with the best
validation accuracy kept, then scored on the test split beside
the TF-IDF baseline of ``textclass.tfidf_baseline`` and saved as a transformers folder with metrics.json.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn import functional as F
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer)
from transformers.utils import logging as hf_logging

from genlib import background
from genlib.background import Control, Work
from genlib.checkpoints import HISTORY_FILE, CheckpointError, history_bytes, resolve, runs_dir, shown
from genlib.config import Config, setting
from genlib.demo import limits
from genlib.families.transformers.textclass import TextSet, classification_metrics, tfidf_baseline

SHIPPED_ENCODER = "bert-mini-pydoc"
AUTO_LR_PARAMETERS = 20_000_000   # below this many parameters an encoder counts as small (see ``auto_lr``)
# A hub id: "owner/name", or one of the Hub's old un-owned names ("bert-base-uncased").
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")
Report = Callable[[int, int, str, dict[str, float]], None]   # (step, total steps, message, scalars)


class EncoderError(CheckpointError):
    """An encoder cannot be loaded or fine-tuned; the message says why and what to do."""


def warmup_linear_factor(done: float, warmup: float) -> float:
    """The learning-rate factor at fraction ``done`` of a run: a linear warmup over ``warmup``, then a
    linear decay to zero at the end (BERT's schedule)."""
    if done < warmup:
        return (done + 1e-3) / warmup
    return max(0.0, (1.0 - done) / max(1e-9, 1.0 - warmup))


def warmup_linear(optimizer, total: int, warmup: float):
    """``warmup_linear_factor`` over ``total`` steps, as a scheduler stepped once per step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear_factor(s / total, warmup))


def save_transformers_folder(out: str | Path, model, tokenizer, files: dict[str, str | bytes]) -> Path:
    """Write model + tokenizer + side files into a fresh folder beside ``out``, then swap it in, so a
    run killed while saving never leaves a half-written ``out`` (the previous one stays until the swap)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content, encoding="utf-8")
        for weights in tmp.glob("*.safetensors"):   # safetensors writes 0600; readable like the files beside it
            shutil.copymode(tmp / "config.json", weights)
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- loading any encoder ----------------------------------------------------------------------------------------
def encoder_folder(source: str | Path) -> Path:
    """A local transformers folder for ``source``: an existing folder, the name of a shipped checkpoint or
    of a run, or a Hugging Face hub id (``bert-base-uncased``, ``owner/name``; downloaded when online).
    EncoderError in words otherwise, the offline case included."""
    text = str(source).strip()
    if not text:
        raise EncoderError("no encoder given: pick the shipped one, or type a folder or a Hugging Face id")
    try:
        folder, _ = resolve(text)   # the lab's one way in: folders, shipped names, runs, hub ids (demo caps)
    except CheckpointError as err:
        raise EncoderError(str(err)) from None
    if not (folder / "config.json").is_file():
        raise EncoderError(f"{folder} is not a transformers model folder: it has no config.json")
    return folder


def load_classifier(source: str | Path, labels: tuple[str, ...] | None = None):
    """(model, tokenizer, folder) of ``source`` as ``AutoModelForSequenceClassification`` in float32 with
    eager attention, from safetensors only and without remote code. ``labels`` sets a fresh head of
    that many classes (an encoder without one, or with another number, gets it newly initialised);
    None keeps the folder's own head (a fine-tuned folder)."""
    folder = encoder_folder(source)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (ValueError, OSError, KeyError) as err:
        raise EncoderError(f"{folder}'s config.json is not one transformers can read without running the "
                           f"model's own code: {background.plain_error(err)}") from None
    if not any(f.name == "model.safetensors" or f.name.endswith(".safetensors") for f in folder.iterdir()):
        raise EncoderError(f"{folder} has no .safetensors weights; genlib never loads pickled weights "
                           "(pytorch_model.bin)")
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {label: i for i, label in enumerate(labels)}, "ignore_mismatched_sizes": True}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # not the warning about the new head: a fresh head is the point here
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, attn_implementation="eager", use_safetensors=True, trust_remote_code=False,
            dtype=torch.float32, **kwargs)
    except ValueError as err:
        kind = getattr(config, "model_type", "unknown")
        raise EncoderError(f"transformers cannot use {folder.name} (a {kind!r} model) for sequence "
                           f"classification: {background.plain_error(err)}") from None
    except OSError as err:
        raise EncoderError(f"{folder} could not be loaded: {background.plain_error(err)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:  # GPT-style tokenizers have none; batches need one
        if tokenizer.eos_token is None:
            raise EncoderError(f"{folder.name}'s tokenizer has no padding token, so texts cannot be batched")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.eos_token_id
    return model, tokenizer, folder


def usable_length(model, tokenizer, wanted: int) -> int:
    """``wanted`` tokens, or fewer when the model has fewer positions (or its tokenizer a lower limit)."""
    limits = [wanted, getattr(model.config, "max_position_embeddings", None) or wanted]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length < 10**6:
        limits.append(tokenizer.model_max_length)
    return min(limits)


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 64) -> torch.Tensor:
    """(N, C) class probabilities of ``texts`` (each cut to ``max_length`` tokens, or the model's limit)."""
    max_length = usable_length(model, tokenizer, max_length)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        out.append(model(**batch).logits.float().softmax(-1))
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.config.num_labels)


# -- fine-tuning --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneConfig(Config):
    """How an encoder is fine-tuned for sequence classification."""

    epochs: int = setting(20, "passes over the training split (the best epoch on validation is kept)", min=1,
                          max=100)
    lr: float = setting(0.0, "peak AdamW learning rate; 0 = automatic: 1e-3 for a small encoder (under 20M "
                             "parameters, like the lab's own), 3e-5 for a larger one (bert-base)",
                        min=0.0, max=0.1, step=1e-5, format="%.6f")
    batch_size: int = setting(32, "texts per step", min=1, max=1024)
    max_length: int = setting(128, "tokens per text; longer texts are cut", min=8, max=512)
    weight_decay: float = setting(0.01, "AdamW weight decay", min=0.0, max=1.0)
    warmup: float = setting(0.1, "fraction of the steps warming the learning rate up", min=0.0, max=0.5)
    seed: int = setting(0, "seed for the new head, the shuffling and dropout", min=0, max=2**31 - 1)


@dataclass(frozen=True)
class FinetuneResult:
    """A finished fine-tune: where it was saved and its metrics.json."""

    path: Path
    metrics: dict[str, Any]


def finetune_encoder(source: str | Path, dataset: TextSet, config: FinetuneConfig, out: str | Path, *,
                     report: Report | None = None, on_eval: Callable[[dict[str, float]], None] | None = None,
                     cancel: threading.Event | None = None, max_steps: int | None = None,
                     log: Callable[[str], None] = lambda message: None) -> FinetuneResult:
    """Fine-tune ``source`` on ``dataset``'s train split, keep the epoch with the best validation accuracy,
    score it and the TF-IDF baseline on the test split, and save the model + tokenizer + metrics.json
    to ``out``. ``report(step, total, message, scalars)`` after every step, ``on_eval`` after every epoch;
    a set ``cancel`` stops before the next step (background.Cancelled; nothing saved)."""
    started = time.time()
    log(f"loading {shown(str(source))}")
    torch.manual_seed(config.seed)   # the new head's weights
    model, tokenizer, folder = load_classifier(source, dataset.labels)
    log("fitting the TF-IDF baseline")
    baseline = tfidf_baseline(dataset)
    max_length = usable_length(model, tokenizer, config.max_length)
    encoded = tokenizer(dataset.texts("train"), truncation=True, max_length=max_length)["input_ids"]
    targets = torch.tensor(dataset.targets("train"))
    per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = config.epochs * per_epoch
    if max_steps is not None:
        total = min(total, max_steps)
    lr = config.lr or auto_lr(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    schedule = warmup_linear(optimizer, total, config.warmup)
    order = torch.Generator().manual_seed(config.seed)
    history, evals = [], []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    step = 0
    model.train()
    for epoch in range(1, config.epochs + 1):
        for rows in torch.randperm(len(encoded), generator=order).split(config.batch_size):
            if step >= total:
                break
            if cancel is not None and cancel.is_set():
                raise background.Cancelled(f"cancelled at step {step}; nothing was saved")
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
            loss = F.cross_entropy(model(**batch).logits, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            history.append({"step": step, "epoch": epoch, "loss": loss.item(), "lr": schedule.get_last_lr()[0]})
            if report is not None:
                report(step, total, f"epoch {epoch}/{config.epochs} · step {step}/{total}", history[-1])
        val = _score(model, tokenizer, dataset, "val", max_length)
        evals.append({"epoch": epoch, "step": step, "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]})
        if on_eval is not None:
            on_eval(evals[-1])
        if best is None or val["accuracy"] > best[0]:
            best = (val["accuracy"], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if step >= total:
            break
    assert best is not None
    model.load_state_dict(best[2])
    test = _score(model, tokenizer, dataset, "test", max_length)
    metrics = {"task": "sequence-classification", "source": str(source), "source_folder": str(folder),
               "dataset": dataset.summary(), "labels": list(dataset.labels), "test": test, "baseline": baseline,
               "beats_baseline": test["accuracy"] > baseline["accuracy"] and test["macro_f1"] > baseline["macro_f1"],
               "best_epoch": best[1], "best_val_accuracy": best[0], "evals": evals, "train_steps": step,
               "train_seconds": round(time.time() - started, 1), "finetune": config.to_dict(), "lr_used": lr}
    path = save_transformers_folder(out, model, tokenizer, {
        "metrics.json": json.dumps(metrics, indent=2), HISTORY_FILE: history_bytes(history),
        "README.md": _finetune_card(metrics)})
    return FinetuneResult(path, metrics)


def auto_lr(model) -> float:
    """The learning rate for ``lr`` 0: small encoders learn best with a large one, and bert-base-sized ones
    forget their pretraining with anything above about 5e-5."""
    return 1e-3 if sum(p.numel() for p in model.parameters()) < AUTO_LR_PARAMETERS else 3e-5


def _score(model, tokenizer, dataset: TextSet, split: str, max_length: int) -> dict[str, Any]:
    predicted = predict(model, tokenizer, dataset.texts(split), max_length).argmax(-1).tolist()
    return classification_metrics(dataset.targets(split), predicted, len(dataset.labels))


def _finetune_card(metrics: dict[str, Any]) -> str:
    test, base = metrics["test"], metrics["baseline"]
    return (f"# Fine-tuned {metrics['source']} on {metrics['dataset']['name']}\n\n"
            f"{metrics['dataset']['description']}.\n\n| model | test accuracy | test macro-F1 |\n|---|---|---|\n"
            f"| this encoder (best epoch {metrics['best_epoch']}) | {test['accuracy']:.4f} | {test['macro_f1']:.4f} |\n"
            f"| {base['model']} | {base['accuracy']:.4f} | {base['macro_f1']:.4f} |\n\n"
            "Load it with `transformers.AutoModelForSequenceClassification.from_pretrained(folder)`.\n")


# -- the background job -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneView:
    """A fine-tune's own state in its snapshot: what it trains, the curves, the result once saved."""

    source: str
    dataset: dict[str, Any]
    config: FinetuneConfig
    history: list[dict[str, float]]   # one row per step: step, epoch, loss, lr
    evals: list[dict[str, float]]     # one row per epoch: epoch, step, val_accuracy, val_macro_f1
    result: FinetuneResult | None


class FinetuneJob(Work):
    """``finetune_encoder`` on the lab's background runner: progress, curves, Cancel, the saved folder."""

    kind = "finetune"
    limit = 1    # a fine-tune takes both cores of this machine
    busy_message = "a fine-tune is already running; wait for it to end or cancel it"

    def __init__(self, source: str, dataset: TextSet, config: FinetuneConfig, name: str | None = None,
                 out_root: Path | None = None):
        super().__init__()
        self.title = name or f"finetune-{time.strftime('%Y%m%d-%H%M%S')}-{self.id}"
        self.out = (out_root or runs_dir()) / self.title
        self.source, self.dataset, self.config = source, dataset, config
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.result: FinetuneResult | None = None

    def view(self) -> FinetuneView:
        """Copies of the curves, safe to keep."""
        return FinetuneView(self.source, self.dataset.summary(), self.config, list(self.history), list(self.evals),
                            self.result)

    def run(self, control: Control) -> FinetuneResult:
        """Fine-tune and save; the result names the folder and holds its metrics."""
        def report(step: int, total: int, message: str, scalars: dict[str, float]) -> None:
            with self.lock:
                self.history.append(scalars)
            control.report(step=step, total=total, message=message)   # raises Cancelled after cancel()

        def on_eval(row: dict[str, float]) -> None:
            with self.lock:
                self.evals.append(row)

        result = finetune_encoder(self.source, self.dataset, self.config, self.out, report=report, on_eval=on_eval,
                                  cancel=control.cancel_event, max_steps=limits().train_steps,
                                  log=lambda message: control.publish(message=message))
        with self.lock:
            self.result = result
        test, base = result.metrics["test"], result.metrics["baseline"]
        control.final_message = (f"finished: test accuracy {test['accuracy']:.1%} (TF-IDF {base['accuracy']:.1%}); "
                                 f"saved as {result.path.name}")
        return result


def start_finetune_job(source: str, dataset: TextSet, config: FinetuneConfig, name: str | None = None,
                       out_root: Path | None = None, owner: str | None = None) -> FinetuneJob:
    """Start a fine-tune on the background runner and return it at once (RunnerBusy when one runs).
    The model is saved in ``out_root`` (default runs/) as ``name`` (default finetune-<time>-<id>)."""
    caps = limits()
    job = FinetuneJob(str(source), dataset, config, name, out_root)
    job.owner, job.owner_limit = owner, caps.jobs_per_session
    started = background.start(job)
    assert isinstance(started, FinetuneJob)
    return started



# -- fine-tuned folders ------------------------------------------------------------------------------------------
def read_finetune_metrics(folder: str | Path) -> dict[str, Any]:
    """The metrics.json a fine-tune wrote in ``folder``; EncoderError when there is none or it is not one."""
    path = Path(folder) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        metrics = None
    if not isinstance(metrics, dict) or metrics.get("task") != "sequence-classification" or "test" not in metrics:
        raise EncoderError(f"{folder} holds no fine-tune results (no metrics.json written by a fine-tune)")
    return metrics


def finetuned_runs(root: Path | None = None) -> list[Path]:
    """Folders in ``root`` (default runs/) that hold a fine-tuned classifier, newest first."""
    root = root or runs_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            try:
                read_finetune_metrics(folder)
            except EncoderError:
                continue
            found.append(folder)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
