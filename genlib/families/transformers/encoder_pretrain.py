"""The small BERT the lab pretrains itself by masked-language modelling, all offline.

``pretrain_encoder``:

    text_corpus() -> text_split(): first 90% train, last 10% held out
      (+ with also_docstrings: the built-in set's train texts, unlabelled, never its val/test texts)
      -> WordPiece tokenizer trained on the train split (tokenizers, lowercased, ~4k pieces)
      -> windows of seq_len tokens at random offsets: [CLS] w_1 .. w_{L-2} [SEP]   (B, L) int64
      -> DataCollatorForLanguageModeling: 15% of pieces picked, 80% [MASK] / 10% random / 10% kept
      -> BertModel -> hidden (B, L, H) -> only the picked positions (M, H) -> MLM head -> (M, V)
    saved as a transformers folder (config.json, model.safetensors, tokenizer files) + metrics.json

The MLM head runs on the picked positions only: the (B, L, V) logits of every position would cost
more than the rest of the model at this size, and the loss ignores the others anyway.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers.implementations import BertWordPieceTokenizer
from torch.nn import functional as F
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DataCollatorForLanguageModeling

from genlib import background
from genlib.checkpoints import HISTORY_FILE, history_bytes
from genlib.config import Config, ConfigError, setting
from genlib.text_data import text_split
from genlib.families.transformers.encoder import (SHIPPED_ENCODER, Report, save_transformers_folder,
                                                  warmup_linear_factor)
from genlib.families.transformers.textclass import builtin_dataset

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# -- pretraining ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainConfig(Config):
    """The small encoder and how it is pretrained by masked-language modelling on the lab's corpus."""

    vocab_size: int = setting(6000, "most WordPiece pieces (the corpus has room for about 4,300)", min=300,
                              max=50000)
    hidden: int = setting(128, "width of each token's vector", min=16, max=1024)
    layers: int = setting(4, "transformer layers", min=1, max=24)
    heads: int = setting(4, "attention heads (must divide hidden)", min=1, max=32)
    intermediate: int = setting(512, "feed-forward width", min=16, max=8192)
    seq_len: int = setting(128, "tokens per training window, [CLS] and [SEP] included (the model's max length)",
                           min=8, max=512)
    steps: int = setting(1500, "optimisation steps", min=1, max=10**6)
    batch_size: int = setting(32, "windows per step", min=1, max=4096)
    lr: float = setting(1e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    warmup: float = setting(0.06, "fraction of the steps warming the learning rate up", min=0.0, max=0.5)
    mask_prob: float = setting(0.15, "fraction of pieces the model must predict", min=0.01, max=0.5)
    seed: int = setting(0, "seed for the weights, the windows and the masks", min=0, max=2**31 - 1)
    also_docstrings: bool = setting(False, "also pretrain on the unlabelled texts of the built-in set's train split "
                                           "(domain-adaptive pretraining; never its validation or test texts)")
    max_minutes: float = setting(0.0, "stop after this many minutes of training, the learning rate decaying to zero "
                                      "by then (0 = run all the steps)", min=0.0, max=10000.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be a multiple of heads={self.heads}")


def train_tokenizer(text: str, vocab_size: int, max_length: int):
    """A lowercasing WordPiece tokenizer (BERT's pre-tokenizer and special pieces) trained on ``text``'s
    paragraphs, as a transformers ``BertTokenizerFast``."""
    pieces = BertWordPieceTokenizer(lowercase=True)
    pieces.train_from_iterator(text.split("\n\n"), vocab_size=vocab_size, min_frequency=2,
                               special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    return BertTokenizerFast(vocab=pieces.get_vocab(), do_lower_case=True, model_max_length=max_length)


def token_stream(tokenizer, text: str) -> torch.Tensor:
    """(T,) int64: ``text`` tokenized as one stream of pieces, without special pieces."""
    return torch.tensor(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.int64)


def frame(tokenizer, pieces: torch.Tensor) -> torch.Tensor:
    """(N, L) rows of pieces -> (N, L + 2) with [CLS] before and [SEP] after each row."""
    n = pieces.shape[0]
    cls = torch.full((n, 1), tokenizer.cls_token_id, dtype=torch.int64)
    sep = torch.full((n, 1), tokenizer.sep_token_id, dtype=torch.int64)
    return torch.cat([cls, pieces, sep], dim=1)


def token_windows(tokenizer, text: str, seq_len: int) -> torch.Tensor:
    """(N, seq_len) int64: ``text``'s stream cut into back-to-back windows of seq_len - 2 pieces, each
    between [CLS] and [SEP] (the last, shorter one is dropped). The held-out windows."""
    stream, body = token_stream(tokenizer, text), seq_len - 2
    n = len(stream) // body
    if n == 0:
        raise ValueError(f"the text has {len(stream):,} tokens; pretraining needs at least {body:,}")
    return frame(tokenizer, stream[:n * body].view(n, body))


def random_windows(tokenizer, stream: torch.Tensor, seq_len: int, count: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(count, seq_len) windows starting at random pieces of ``stream``: every step sees new cuts of the
    text, not the same fixed chunks again."""
    body = seq_len - 2
    starts = torch.randint(len(stream) - body + 1, (count,), generator=generator)
    return frame(tokenizer, stream[starts[:, None] + torch.arange(body)])


def mlm_loss(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a ``BertForMaskedLM`` on the masked positions only (labels != -100)."""
    hidden = model.bert(input_ids=input_ids).last_hidden_state      # (B, L, H)
    picked = labels != -100                                          # (B, L) bool
    logits = model.cls(hidden[picked])                               # (M, V): M picked positions
    return F.cross_entropy(logits, labels[picked])


@torch.no_grad()
def held_out_mlm_loss(model, collator, windows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean masked-LM loss (nats per masked piece) over ``windows``, masked by ``collator`` (seeded)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = collator([{"input_ids": row} for row in windows[start:start + batch_size]])
        n = int((batch["labels"] != -100).sum())
        total += float(mlm_loss(model, batch["input_ids"], batch["labels"])) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def pretrain_encoder(config: PretrainConfig, out: str | Path, *, report: Report | None = None,
                     cancel: threading.Event | None = None) -> dict[str, Any]:
    """Pretrain a ``BertForMaskedLM`` on the lab's corpus (and with ``also_docstrings`` the built-in set's
    train texts, without their labels) and save it to ``out``; returns its metrics.

    Each step draws ``batch_size`` training windows starting at random pieces (seeded). The held-out loss is measured
    on every window of the corpus's last 10% with fixed masks. With ``max_minutes`` the run ends at
    whichever comes first, the steps or the time, and the learning rate follows the larger of the two
    fractions done, so it reaches zero at the end either way (the step count then depends on the
    machine). ``cancel`` stops it before the next step (nothing is saved then).
    """
    started = time.time()
    torch.manual_seed(config.seed)
    train_text, val_text = (part.decode("utf-8") for part in text_split())
    if config.also_docstrings:   # one paragraph per blank-line block, like the topics
        train_text += "\n\n" + "\n\n".join(builtin_dataset().texts("train"))
    tokenizer = train_tokenizer(train_text, config.vocab_size, config.seq_len)
    train_stream = token_stream(tokenizer, train_text)
    if len(train_stream) < config.seq_len:
        raise ValueError(f"the corpus has {len(train_stream):,} tokens, fewer than one window of {config.seq_len}")
    val_windows = token_windows(tokenizer, val_text, config.seq_len)
    bert_config = BertConfig(vocab_size=len(tokenizer), hidden_size=config.hidden, num_hidden_layers=config.layers,
                             num_attention_heads=config.heads, intermediate_size=config.intermediate,
                             max_position_embeddings=config.seq_len, pad_token_id=tokenizer.pad_token_id,
                             attn_implementation="eager")
    model = BertForMaskedLM(bert_config)
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_prob, seed=config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    pick = torch.Generator().manual_seed(config.seed)
    model.train()
    history = []
    budget_s = config.max_minutes * 60 or math.inf
    step, done, loop_start = 0, 0.0, time.time()
    while done < 1.0:
        step += 1
        lr = config.lr * warmup_linear_factor(done, config.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if cancel is not None and cancel.is_set():
            raise background.Cancelled(f"cancelled at step {step - 1}; nothing was saved")
        windows = random_windows(tokenizer, train_stream, config.seq_len, config.batch_size, pick)
        batch = collate([{"input_ids": row} for row in windows])
        loss = mlm_loss(model, batch["input_ids"], batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done = max(step / config.steps, (time.time() - loop_start) / budget_s)
        history.append({"step": step, "loss": loss.item(), "lr": lr})
        if report is not None:
            report(step, config.steps, f"step {step}/{config.steps} ({done:.0%})", history[-1])
    val_collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_prob, seed=1234)
    val_loss = held_out_mlm_loss(model, val_collate, val_windows)
    metrics = {"task": "masked-language-model", "held_out_mlm_loss": round(val_loss, 4),
               "held_out_mlm_perplexity": round(math.exp(val_loss), 2),
               "final_train_loss": round(sum(h["loss"] for h in history[-50:]) / len(history[-50:]), 4),
               "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
               "train_tokens": len(train_stream), "held_out_windows": len(val_windows), "train_steps": step,
               "train_seconds": round(time.time() - started, 1), "pretrain": config.to_dict()}
    card = _pretrain_card(config, metrics)
    save_transformers_folder(out, model, tokenizer, {"metrics.json": json.dumps(metrics, indent=2),
                                                      HISTORY_FILE: history_bytes(history), "README.md": card})
    return metrics


def _pretrain_card(config: PretrainConfig, metrics: dict[str, Any]) -> str:
    return (f"# {SHIPPED_ENCODER}: a small BERT pretrained by genlib\n\n"
            f"A {config.layers}-layer BERT (hidden {config.hidden}, {config.heads} heads, feed-forward "
            f"{config.intermediate}, at most {config.seq_len} tokens; {metrics['parameters']:,} parameters) pretrained "
            f"by masked-language modelling ({config.mask_prob:.0%} of pieces) on the first 90% of the Python "
            f"documentation topics (`pydoc_data.topics`)"
            + (" and the unlabelled train-split texts of the built-in stdlib-docs set (never its validation or test "
               "texts)" if config.also_docstrings else "")
            + f", with a WordPiece tokenizer of {metrics['vocab_size']:,} pieces trained on the same text."
            "\n\nHeld-out masked-LM loss on the last 10%: "
            f"{metrics['held_out_mlm_loss']} nats (perplexity {metrics['held_out_mlm_perplexity']}).\n\n"
            "Made with `python -m genlib pretrain-encoder`; fine-tune it with `python -m genlib finetune`. "
            "It loads with `transformers.AutoModel.from_pretrained(folder)`.\n")
