"""Sampling text one token at a time, for any language model: the lab's GPT and any Hugging Face causal LM.

A model hands this module one function, ``next_logits(ids (N,T)) -> (N,V)``: the logits of the next
token after each row. Everything else is shared: temperature, top-k and top-p (nucleus) filtering, a
``torch.Generator`` for reproducible draws, and a stream of ``TokenEvent`` (the token, its
probability, the top candidates it was drawn from, and the speed so far) for pages that show tokens
as they are produced.

    logits / temperature -> keep the top_k largest -> keep the smallest set whose probability
    reaches top_p -> softmax -> draw one token -> append -> repeat
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from genlib.model import SamplingCallback, SamplingStep

NextLogits = Callable[[Tensor], Tensor]   # ids (N,T) long -> logits (N,V) of the token after each row
MAX_PROMPT_CHARS = 4000                   # a prompt longer than this is refused in words


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, the probability it was drawn with, and the top candidates."""

    index: int                            # 0-based position among the new tokens
    token: int
    probability: float
    candidates: list[tuple[int, float]]   # (token id, probability) after filtering, most likely first
    elapsed_s: float                      # seconds since generation began

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second so far."""
        return (self.index + 1) / max(self.elapsed_s, 1e-9)


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """ValueError in words for settings no sampler can use."""
    if not temperature > 0:
        raise ValueError(f"temperature must be above 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top-k must be 0 (off) or a positive count, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top-p must be in (0, 1], got {top_p}")


def filtered_probabilities(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Next-token probabilities (N,V) after temperature, top-k and top-p; filtered-out tokens get 0.

    Top-p keeps the smallest set of most likely tokens whose total probability reaches ``top_p``
    (always at least the most likely one), as Holtzman et al. (2019) define nucleus sampling.
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p            # probability of the tokens ranked above each one
        drop_sorted = before >= top_p                       # the first token is never dropped (before = 0)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def stream(next_logits: NextLogits, ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
           candidates: int = 5) -> Iterator[tuple[Tensor, TokenEvent]]:
    """Yield (ids so far (N,T+i+1), event of row 0) after each new token; draws use ``generator`` (CPU)."""
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError("generation needs a prompt of at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"the number of new tokens must be at least 1, got {max_new_tokens}")
    check_sampling(temperature, top_k, top_p)
    start = time.perf_counter()
    for i in range(max_new_tokens):
        probs = filtered_probabilities(next_logits(ids), temperature, top_k, top_p).cpu()   # (N,V)
        token = torch.multinomial(probs, 1, generator=generator)                           # (N,1)
        ids = torch.cat([ids, token.to(ids.device)], dim=1)
        top = torch.topk(probs[0], min(candidates, probs.shape[-1]))
        shown = [(int(t), float(p)) for t, p in zip(top.indices, top.values) if p > 0]
        event = TokenEvent(i, int(token[0, 0]), float(probs[0, token[0, 0]]), shown, time.perf_counter() - start)
        yield ids, event


def generate(next_logits: NextLogits, ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
             on_token: Callable[[Tensor, TokenEvent], None] | None = None) -> Tensor:
    """``ids`` (N,T) followed by ``max_new_tokens`` drawn tokens: (N, T + max_new_tokens)."""
    out = ids
    for out, event in stream(next_logits, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=generator):
        if on_token is not None:
            on_token(out, event)
    return out


def stream_text(model: Any, options: Any, generator: torch.Generator | None = None,
                candidates: int = 5) -> Iterator[tuple[str, TokenEvent]]:
    """Continue ``options.prompt`` with a text model (the lab's GPT or a Hugging Face causal LM) one token at
    a time: yields (the new text so far, decoded; the token's event). ``options`` is the model's Sampling."""
    prompt = model.prompt_ids(options.prompt, 1)
    for ids, event in stream(model.next_logits, prompt, options.max_new_tokens, temperature=options.temperature,
                             top_k=options.top_k, top_p=options.top_p, generator=generator, candidates=candidates):
        yield model.decode_text(ids[0, prompt.shape[1]:]), event


def sample_ids(next_logits: NextLogits, ids: Tensor, max_new_tokens: int, *, temperature: float, top_k: int,
               top_p: float, generator: torch.Generator | None, callback: SamplingCallback | None) -> Tensor:
    """``generate`` for a family's ``sample``: (N, T + max_new_tokens) on the CPU; the sampler callback gets one
    ``SamplingStep`` per new token whose state is the ids so far, padded with zeros to the final length."""
    total = ids.shape[1] + max_new_tokens

    def report(out: Tensor, event: TokenEvent) -> None:
        if callback is not None:
            padded = F.pad(out, (0, total - out.shape[1]))
            callback(SamplingStep(event.index, max_new_tokens, padded, padded))

    return generate(next_logits, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    generator=generator, on_token=report).cpu()
