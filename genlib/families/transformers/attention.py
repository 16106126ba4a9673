"""Attention weights of any transformer, one record per input, for the attention explorer.

    text --tokenizer--> ids (T,) --model(output_attentions=True)--> per layer (heads, T, T)
    hooks on the query/key projections --> per layer queries, keys (heads, T, d_head)

An ``AttentionRecord`` stands alone (numpy arrays and strings, no model): the lab's own GPT builds
one itself, a Hugging Face model gets one from ``hf_attention_record``. The views
(``attention_views``) draw records; ``window``, ``select_layers`` and ``select_heads`` cut a long one
down first, keeping the original position, layer and head numbers for the labels.

Hugging Face models load with ``attn_implementation="eager"``: under SDPA recent transformers
refuse to return attention weights. Weights load from safetensors only, never with remote code.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genlib.checkpoints import PICKLE_SUFFIXES, CheckpointError, resolve

DEFAULT_MAX_TOKENS = 1024


@dataclass
class AttentionRecord:
    """What a model attended to on one input.

    ``attentions[l]`` is layer l's (heads, T, T) float32 probabilities, row = query position, column =
    key position; each row sums to 1 over the whole input. ``queries[l]`` and ``keys[l]`` are
    (heads, T, d_head): the per-head vectors before the dot product, so the model's score is
    q·k / sqrt(d_head) (plus the causal mask) and its softmax is the attention row. They are None
    where the architecture's projections are not known; ``qk_missing`` then says why, in words.
    ``layer_ids``, ``head_ids`` and ``offset`` are the original layer numbers, head numbers and the
    position of token 0 once a record has been cut down (defaults: everything, from position 0).
    """

    tokens: list[str]
    attentions: list[np.ndarray]
    queries: list[np.ndarray] | None = None
    keys: list[np.ndarray] | None = None
    model_name: str = ""
    causal: bool = False
    qk_missing: str = ""
    layer_ids: list[int] = field(default_factory=list)
    head_ids: list[int] = field(default_factory=list)
    offset: int = 0

    def __post_init__(self) -> None:
        if not self.attentions:
            raise ValueError("an attention record needs at least one layer")
        self.attentions = [np.asarray(a, dtype=np.float32) for a in self.attentions]
        heads, length = self.attentions[0].shape[0], len(self.tokens)
        for i, a in enumerate(self.attentions):
            if a.shape != (heads, length, length):
                raise ValueError(f"layer {i}'s attention has shape {a.shape}; expected (heads={heads}, "
                                 f"T={length}, T={length}) for {length} tokens")
        if (self.queries is None) != (self.keys is None):
            raise ValueError("give both queries and keys, or neither")
        if self.queries is not None:
            self.queries = [np.asarray(q, dtype=np.float32) for q in self.queries]
            self.keys = [np.asarray(k, dtype=np.float32) for k in self.keys]
            for i, (q, k) in enumerate(zip(self.queries, self.keys)):
                if q.ndim != 3 or q.shape[:2] != (heads, length) or k.shape != q.shape:
                    raise ValueError(f"layer {i}'s queries {q.shape} and keys {k.shape} should both be "
                                     f"(heads={heads}, T={length}, d_head)")
            if len(self.queries) != len(self.attentions):
                raise ValueError(f"{len(self.queries)} layers of queries for {len(self.attentions)} of attention")
        self.layer_ids = list(self.layer_ids) or list(range(len(self.attentions)))
        self.head_ids = list(self.head_ids) or list(range(heads))
        if len(self.layer_ids) != len(self.attentions) or len(self.head_ids) != heads:
            raise ValueError("layer_ids and head_ids must name every layer and head in the record")

    @property
    def n_layers(self) -> int:
        """Layers in this record (after any filter)."""
        return len(self.attentions)

    @property
    def n_heads(self) -> int:
        """Heads per layer in this record (after any filter)."""
        return self.attentions[0].shape[0]

    @property
    def n_tokens(self) -> int:
        """Positions in this record (after any window)."""
        return len(self.tokens)

    @property
    def has_qk(self) -> bool:
        """Whether the neuron view can be drawn (queries and keys were captured)."""
        return self.queries is not None


# -- cutting a long record down -------------------------------------------------------------------------
def window(record: AttentionRecord, start: int, stop: int) -> AttentionRecord:
    """Positions ``start:stop`` only, as queries and as keys: (heads, T, T) -> (heads, w, w).

    The probabilities stay the model's own, so a row no longer sums to 1 when the query also
    attended to tokens outside the window (in a causal model, to everything before ``start``).
    """
    start, stop = max(0, int(start)), min(record.n_tokens, int(stop))
    if stop <= start:
        raise ValueError(f"the token window {start}..{stop} is empty; the input has {record.n_tokens} tokens")
    cut = slice(start, stop)
    return replace(record, tokens=record.tokens[cut], attentions=[a[:, cut, cut] for a in record.attentions],
                   queries=None if record.queries is None else [q[:, cut] for q in record.queries],
                   keys=None if record.keys is None else [k[:, cut] for k in record.keys],
                   offset=record.offset + start)


def select_layers(record: AttentionRecord, layers: list[int]) -> AttentionRecord:
    """Only the layers whose original numbers are in ``layers`` (in the record's order)."""
    keep = [i for i, layer in enumerate(record.layer_ids) if layer in set(layers)]
    if not keep:
        raise ValueError(f"none of layers {sorted(layers)} is in this record (it has {record.layer_ids})")
    pick = lambda arrays: None if arrays is None else [arrays[i] for i in keep]  # noqa: E731
    return replace(record, attentions=pick(record.attentions), queries=pick(record.queries), keys=pick(record.keys),
                   layer_ids=[record.layer_ids[i] for i in keep])


def select_heads(record: AttentionRecord, heads: list[int]) -> AttentionRecord:
    """Only the heads whose original numbers are in ``heads``, in every layer."""
    keep = [i for i, head in enumerate(record.head_ids) if head in set(heads)]
    if not keep:
        raise ValueError(f"none of heads {sorted(heads)} is in this record (it has {record.head_ids})")
    pick = lambda arrays: None if arrays is None else [a[keep] for a in arrays]  # noqa: E731
    return replace(record, attentions=pick(record.attentions), queries=pick(record.queries), keys=pick(record.keys),
                   head_ids=[record.head_ids[i] for i in keep])


# -- the neuron view's numbers ----------------------------------------------------------------------------
@dataclass
class NeuronData:
    """How one head scored every key for one query token.

    query (d,), keys (T, d), product = query * keys (T, d), scores = product.sum(1) / sqrt(d) (T,), with
    the causal mask applied (-inf for keys after the query), and probs (T,): the model's own attention
    row (equal to softmax(scores) on an uncut record; in a window the softmax also counted keys outside it).
    """

    query: np.ndarray
    keys: np.ndarray
    product: np.ndarray
    scores: np.ndarray
    probs: np.ndarray


def neuron_data(record: AttentionRecord, layer: int, head: int, query: int) -> NeuronData:
    """The neuron view's numbers for record-local ``layer``, ``head`` and ``query`` position."""
    if not record.has_qk:
        raise ValueError(record.qk_missing or "this record has no query and key vectors")
    q = record.queries[layer][head, query]            # (d,)
    k = record.keys[layer][head]                      # (T, d)
    product = q[None, :] * k                          # (T, d)
    scores = product.sum(axis=1) / math.sqrt(q.shape[0])
    if record.causal:
        scores = np.where(np.arange(record.n_tokens) > query, -np.inf, scores)
    return NeuronData(q, k, product, scores.astype(np.float32), record.attentions[layer][head, query])


def softmax_scores(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, where -inf (masked) scores get probability 0."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


# -- Hugging Face models ------------------------------------------------------------------------------------
def _folder_problem(folder: Path) -> str | None:
    """Why a local folder cannot be loaded as a transformers model, in words; None when it can be tried."""
    config = folder / "config.json"
    files = [p.name for p in folder.iterdir() if p.is_file()]
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    if not has_safetensors and pickles:
        return (f"{folder} has only pickled weights ({', '.join(sorted(pickles))}); the lab loads safetensors only "
                "and never unpickles. Save the model again with save_pretrained(safe_serialization=True).")
    if not config.is_file():
        return f"{folder} is not a Hugging Face model folder: it has no config.json"
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{config} cannot be read as JSON"
    if isinstance(meta, dict) and "family" in meta and "model_type" not in meta:
        return (f"{folder.name} is a genlib checkpoint of family {meta['family']!r}, not a Hugging Face "
                "transformers folder; pick it from the lab's own models instead")
    if not isinstance(meta, dict) or "model_type" not in meta:
        return f"{config} has no model_type, so transformers cannot tell which architecture it is"
    if not has_safetensors:
        return f"{folder} has no .safetensors weights"
    return None


def load_hf_attention_model(source: str):
    """(model in eval mode, tokenizer) from a local transformers folder or a hub id.

    Eager attention (SDPA returns no weights), safetensors only, no remote code. A hub id goes through
    genlib.checkpoints (so the same offline message, demo rules and no-pickle download filter apply).
    Every failure is a CheckpointError whose message says what is wrong.
    """
    from transformers import AutoModel, AutoTokenizer

    folder, _ = resolve(source)
    problem = _folder_problem(folder)
    if problem:
        raise CheckpointError(problem)
    try:
        model = AutoModel.from_pretrained(str(folder), attn_implementation="eager", use_safetensors=True,
                                          trust_remote_code=False, dtype=torch.float32)  # fp16 weights too
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or ["no detail"])[0]
        raise CheckpointError(f"transformers could not load the model in {folder}: {first}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or ["no detail"])[0]
        raise CheckpointError(f"{folder} has a model but no usable tokenizer: {first}") from None
    return model.eval(), tokenizer


def _max_positions(model) -> int | None:
    """The longest input the model's position table allows, when its config says."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _split_heads(x: torch.Tensor, heads: int) -> np.ndarray:
    """(1, T, heads * d) -> (heads, T, d)."""
    _, length, width = x.shape
    return x[0].reshape(length, heads, width // heads).permute(1, 0, 2).float().cpu().numpy()


def _qk_hooks(model) -> tuple[list[tuple[torch.nn.Module, Callable]], str]:
    """(module, hook) pairs that fill the per-layer queries and keys, or ([], why not) for an
    architecture whose projections are not known (or whose scores are not plain q·k/sqrt(d))."""
    config, kind = model.config, model.config.model_type
    heads = config.num_attention_heads if hasattr(config, "num_attention_heads") else config.n_head
    if kind in ("bert", "roberta", "distilbert"):
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            return [], "the neuron view is not available: this model adds relative-position terms to its scores"
        q_name, k_name = ("q_lin", "k_lin") if kind == "distilbert" else ("query", "key")
        pairs = []
        for name, module in model.named_modules():
            last = name.rsplit(".", 1)[-1]
            if last in (q_name, k_name) and "crossattention" not in name:
                pairs.append((module, _store("q" if last == q_name else "k", heads)))
        return pairs, ""
    if kind == "gpt2":
        if not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx or config.reorder_and_upcast_attn:
            return [], "the neuron view is not available: this GPT-2 scales its scores in a non-standard way"
        pairs = [(module, _store_fused(heads, config.n_embd)) for name, module in model.named_modules()
                 if name.endswith("attn.c_attn") and "crossattention" not in name]
        return pairs, ""
    return [], (f"the neuron view is not available for the {kind!r} architecture: the lab knows where BERT, "
                "RoBERTa, DistilBERT and GPT-2 compute their queries and keys, not this one")


# The hooks sit on a model that the app caches and shares between sessions: one record at a time, so
# no other forward pass runs while they are attached.
_RECORD_LOCK = threading.Lock()


def _store(which: str, heads: int) -> Callable:
    def hook(module, inputs, output, capture):  # output (1, T, heads * d); layers run in order
        capture[which].append(_split_heads(output.detach(), heads))
    return hook


def _store_fused(heads: int, width: int) -> Callable:
    def hook(module, inputs, output, capture):  # GPT-2's c_attn: (1, T, 3 * width) = [q | k | v]
        q, k, _ = output.detach().split(width, dim=2)
        capture["q"].append(_split_heads(q, heads))
        capture["k"].append(_split_heads(k, heads))
    return hook


def _display(tokenizer, ids: list[int]) -> list[str]:
    """One readable string per token: decoded one at a time (so byte-level 'Ġthe' reads ' the'), with
    control characters shown; a token that does not decode alone (half a UTF-8 character) keeps its raw name."""
    raw = tokenizer.convert_ids_to_tokens(ids)
    shown = []
    for token_id, name in zip(ids, raw):
        text = tokenizer.decode([token_id])
        if not text or "\ufffd" in text:
            text = str(name)
        shown.append(text.replace("\n", "⏎").replace("\t", "⇥").replace("\r", ""))
    return shown


@torch.no_grad()
def hf_attention_record(model, tokenizer, text: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> AttentionRecord:
    """Run ``text`` through a Hugging Face model and record every layer's attention (and, for BERT,
    RoBERTa, DistilBERT and GPT-2, the per-head queries and keys).

    The input is cut to ``max_tokens`` and to the model's position table. ``causal`` is read from the
    result: a causal model's returned attention is exactly 0 above the diagonal (masked scores are -inf
    or the dtype's minimum before the softmax); a one-token input asks the config.
    The model is not changed (hooks are removed again), so a cached, shared model is safe to pass.
    """
    if not text or not text.strip():
        raise ValueError("type some text to look at its attention")
    limit = min(max_tokens, _max_positions(model) or max_tokens)
    ids = tokenizer(text, truncation=True, max_length=limit)["input_ids"]
    if not ids:
        raise ValueError("the tokenizer turned this text into no tokens")
    pairs, missing = _qk_hooks(model)
    capture: dict[str, list[np.ndarray]] = {"q": [], "k": []}
    device = next(model.parameters()).device
    with _RECORD_LOCK:
        handles = [module.register_forward_hook(partial(hook, capture=capture)) for module, hook in pairs]
        try:
            out = model(input_ids=torch.tensor([ids], device=device), output_attentions=True)
        finally:
            for handle in handles:
                handle.remove()
    if not out.attentions or out.attentions[0] is None:
        raise ValueError(f"{model.config.model_type!r} returned no attention weights (is it loaded with eager "
                         "attention?)")
    attentions = [a[0].float().cpu().numpy() for a in out.attentions]  # each (heads, T, T)
    queries, keys = capture["q"], capture["k"]
    if pairs and (len(queries) != len(attentions) or len(keys) != len(attentions)):
        queries, keys, missing = [], [], "the neuron view is not available: the query/key projections were not found"
    length = len(ids)
    upper = np.triu(np.ones((length, length), dtype=bool), k=1)
    causal = bool(getattr(model.config, "is_decoder", False)) if length == 1 else \
        all(float(np.abs(a[:, upper]).max()) == 0.0 for a in attentions)
    return AttentionRecord(tokens=_display(tokenizer, ids), attentions=attentions,
                           queries=queries or None, keys=keys or None,
                           model_name=str(getattr(model.config, "_name_or_path", "") or model.config.model_type),
                           causal=causal, qk_missing=missing if not queries else "")

