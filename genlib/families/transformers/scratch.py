"""Self-attention from scratch: one short sentence walked through a multi-head attention layer.

Plain torch, no nn.Module, so every matrix can be looked at. For a sentence of T word tokens and
a model width d = H * d_k (H heads of width d_k):

    E  (T, d)   one fixed random vector per word            PE (T, d)  sinusoidal positions
    X  = E + PE                                              (T, d)
    Q  = X Wq,  K = X Wk,  V = X Wv                          (T, d) each; Wq, Wk, Wv, Wo are (d, d)
    per head h: Q_h, K_h, V_h = columns h*d_k .. (h+1)*d_k   (T, d_k)
        S_h = Q_h K_h^T                                      (T, T)  scores
        S_h / sqrt(d_k)                                      (T, T)  scaled
        future positions set to -inf (causal only)           (T, T)  masked
        A_h = softmax(rows)                                  (T, T)  each row sums to 1
        O_h = A_h V_h                                        (T, d_k) the weighted sum
    concat(O_1 .. O_H)                                       (T, d)
    out = concat Wo                                          (T, d)

``multi_head_attention`` is that computation on any batch of inputs (the tests hold it equal to
``torch.nn.functional.scaled_dot_product_attention`` and ``torch.nn.MultiheadAttention``);
``attention_walk`` runs it on a sentence and names every intermediate for the page.
``sinusoidal_positions`` is also the lab GPT's "sinusoidal" position option.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_TOKENS = 32      # longer sentences make unreadable T x T heatmaps
MAX_D_MODEL = 128
MAX_HEADS = 16
POSITION_BASE = 10000.0  # Vaswani et al.'s wavelength base
_TOKEN = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation mark


# -- positions ---------------------------------------------------------------------------------------------
def sinusoidal_positions(T: int, d: int) -> Tensor:
    """Sinusoidal position encodings (Vaswani et al. 2017), a float32 tensor (T, d).

    PE[pos, 2i] = sin(pos / 10000^(2i/d)) and PE[pos, 2i+1] = cos(pos / 10000^(2i/d)). For odd d
    the last column is a sine with no cosine partner. Row ``pos`` encodes position ``pos`` (from 0).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"The number of positions must be a whole number of at least 1, not {T!r}.")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"The encoding width must be a whole number of at least 1, not {d!r}.")
    # float64 for the angles: at positions in the thousands float32 loses the fast dimensions' phase.
    pos = torch.arange(T, dtype=torch.float64)[:, None]                     # (T, 1)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)                      # (ceil(d/2),)
    angles = pos / POSITION_BASE ** (two_i / d)                             # (T, ceil(d/2))
    pe = torch.empty(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d // 2])                            # odd d: one cosine fewer
    return pe.float()


def position_wavelengths(d: int) -> Tensor:
    """Wavelength in positions of each of ``sinusoidal_positions``' d columns, (d,): 2*pi*10000^(2i/d)
    for columns 2i and 2i+1, from 2*pi (column 0) up to nearly 2*pi*10000."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"The encoding width must be a whole number of at least 1, not {d!r}.")
    two_i = torch.arange(d, dtype=torch.float64) // 2 * 2
    return (2 * math.pi * POSITION_BASE ** (two_i / d)).float()


# -- the layer -----------------------------------------------------------------------------------------------
def causal_mask(T: int) -> Tensor:
    """Bool (T, T), True above the diagonal: the future positions a query may not look at."""
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def _split_heads(m: Tensor, heads: int) -> Tensor:
    """(..., T, d) -> (..., H, T, d/H): head h owns columns h*d_k .. (h+1)*d_k."""
    *lead, T, d = m.shape
    return m.reshape(*lead, T, heads, d // heads).transpose(-3, -2)


def _merge_heads(m: Tensor) -> Tensor:
    """(..., H, T, d_k) -> (..., T, H*d_k): the heads' outputs side by side, head 0 first."""
    *lead, H, T, dk = m.shape
    return m.transpose(-3, -2).reshape(*lead, T, H * dk)


def _check_layer(x: Tensor, weights: dict[str, Tensor], heads: int) -> None:
    if x.dim() < 2 or x.shape[-2] < 1:
        raise ValueError("The input must have at least one token: a (T, d) or (batch, T, d) tensor.")
    d = x.shape[-1]
    for name, w in weights.items():
        if tuple(w.shape) != (d, d):
            raise ValueError(f"{name} must be a {d} x {d} matrix for inputs of width {d}; it is "
                             f"{' x '.join(map(str, w.shape))}.")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"The number of heads must be a whole number of at least 1, not {heads!r}.")
    if d % heads:
        raise ValueError(f"{heads} heads do not divide the model width {d}: each head takes d_model / heads "
                         f"columns, so pick a number of heads that divides {d}.")


def attention_parts(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, heads: int,
                    causal: bool = False) -> dict[str, Tensor]:
    """Every intermediate of multi-head self-attention on ``x`` (..., T, d), in computation order.

    Keys and shapes: q, k, v (..., T, d); q_heads, k_heads, v_heads (..., H, T, d_k); scores,
    scaled, masked, weights (..., H, T, T) (masked equals scaled when not causal); heads_out
    (..., H, T, d_k); concat and out (..., T, d). Raises ValueError for mismatched shapes or
    heads that do not divide d.
    """
    _check_layer(x, {"Wq": w_q, "Wk": w_k, "Wv": w_v, "Wo": w_o}, heads)
    T, d = x.shape[-2:]
    d_k = d // heads
    p: dict[str, Tensor] = {"q": x @ w_q, "k": x @ w_k, "v": x @ w_v}            # (..., T, d)
    for name in ("q", "k", "v"):
        p[f"{name}_heads"] = _split_heads(p[name], heads)                     # (..., H, T, d_k)
    p["scores"] = p["q_heads"] @ p["k_heads"].transpose(-2, -1)               # (..., H, T, T)
    # Without the scaling, dot products of d_k-wide vectors grow like sqrt(d_k) and the softmax saturates.
    p["scaled"] = p["scores"] / math.sqrt(d_k)
    p["masked"] = p["scaled"].masked_fill(causal_mask(T).to(x.device), float("-inf")) if causal else p["scaled"]
    p["weights"] = torch.softmax(p["masked"], dim=-1)                        # rows sum to 1; e^-inf = 0
    p["heads_out"] = p["weights"] @ p["v_heads"]                             # (..., H, T, d_k)
    p["concat"] = _merge_heads(p["heads_out"])                               # (..., T, d)
    p["out"] = p["concat"] @ w_o                                             # (..., T, d)
    return p


def multi_head_attention(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, heads: int,
                         causal: bool = False) -> tuple[Tensor, Tensor]:
    """Multi-head self-attention from scratch: ``(out (..., T, d), weights (..., H, T, T))``.

    ``x`` is (T, d) or (batch, T, d); the projections are (d, d) and act on the right (Q = x Wq),
    with no biases. ``torch.nn.MultiheadAttention`` stores the transposes: its in_proj_weight is
    [Wq^T; Wk^T; Wv^T] and its out_proj.weight is Wo^T.
    """
    parts = attention_parts(x, w_q, w_k, w_v, w_o, heads, causal)
    return parts["out"], parts["weights"]


# -- the walk through one sentence ---------------------------------------------------------------------------
def tokenize(sentence: str) -> list[str]:
    """Word tokens: each run of letters/digits is a token, and so is each punctuation mark.

    Raises ValueError for a sentence with no tokens or more than MAX_TOKENS.
    """
    tokens = _TOKEN.findall(sentence if isinstance(sentence, str) else "")
    if not tokens:
        raise ValueError("Type a sentence: this one has no words in it.")
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"The sentence has {len(tokens)} tokens; this walk takes at most {MAX_TOKENS}, so the "
                         "attention maps stay readable. Shorten it.")
    return tokens


def token_embeddings(tokens: list[str], d_model: int, seed: int = 0) -> Tensor:
    """E (T, d_model): a fixed N(0, 1) vector per distinct word, drawn from (seed, word).

    The same word gets the same row wherever it appears and whatever the sentence, so any
    difference between two occurrences in X comes from the positional encoding alone.
    """
    rows = []
    for token in tokens:
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{token}".encode()))  # stable across runs
        rows.append(torch.randn(d_model, generator=g))
    return torch.stack(rows)


def projection_weights(d_model: int, seed: int = 0) -> dict[str, Tensor]:
    """Wq, Wk, Wv and Wo, each (d_model, d_model), N(0, 1/d_model) from ``seed``: the scale that keeps
    X W about as large as X, as a freshly initialised layer would."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model) for name in ("Wq", "Wk", "Wv", "Wo")}


@dataclass(frozen=True)
class Step:
    """One named matrix of the walk: what it is, its axis labels and a one-line explanation."""

    section: str
    name: str                 # unique in the walk, e.g. "Q" or "weights, head 2"
    formula: str              # how it is computed, in plain text: "Q = X Wq"
    matrix: Tensor            # 2-D, (len(rows), len(cols)); -inf where the causal mask hides a score
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    explanation: str
    head: int | None = None   # 0-based head this step belongs to, None for whole-layer steps

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the matrix."""
        return tuple(self.matrix.shape)


@dataclass(frozen=True)
class AttentionWalk:
    """Every step of self-attention on one sentence, in order, with the settings that produced it."""

    sentence: str
    tokens: tuple[str, ...]
    d_model: int
    heads: int
    causal: bool
    seed: int
    steps: tuple[Step, ...]
    out: Tensor        # (T, d_model): the layer's output
    weights: Tensor    # (heads, T, T): every head's softmax weights

    @property
    def d_k(self) -> int:
        """Width of one head: d_model / heads."""
        return self.d_model // self.heads

    @property
    def sections(self) -> list[str]:
        """Section titles in the order their steps come."""
        return list(dict.fromkeys(s.section for s in self.steps))

    def section(self, title: str, head: int | None = None) -> list[Step]:
        """The steps of one section; for per-head steps only those of ``head`` when it is given."""
        return [s for s in self.steps if s.section == title and (head is None or s.head in (None, head))]

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"No step is called {name!r}.")


EMBED, PROJECT, ONE_HEAD, COMBINE = ("Embeddings and positions", "Queries, keys and values",
                                     "One head: scores, scaling, mask and softmax",
                                     "Heads concatenated and the output projection")


def attention_walk(sentence: str, d_model: int = 16, heads: int = 2, causal: bool = False,
                   seed: int = 0) -> AttentionWalk:
    """Run one multi-head self-attention layer on ``sentence`` and keep every matrix, named, in order.

    Tokens are words (``tokenize``); embeddings and projections come from ``seed``. Raises
    ValueError, in words, for an empty or over-long sentence, a width outside 1..MAX_D_MODEL, or
    heads that do not divide d_model.
    """
    tokens = tokenize(sentence)
    if isinstance(d_model, bool) or not isinstance(d_model, int) or not 1 <= d_model <= MAX_D_MODEL:
        raise ValueError(f"d_model must be a whole number from 1 to {MAX_D_MODEL}, not {d_model!r}.")
    if isinstance(heads, bool) or not isinstance(heads, int) or not 1 <= heads <= MAX_HEADS:
        raise ValueError(f"The number of heads must be a whole number from 1 to {MAX_HEADS}, not {heads!r}.")
    if d_model % heads:
        raise ValueError(f"{heads} heads do not divide d_model = {d_model}: each head takes d_model / heads "
                         "columns, so choose a number of heads that divides it.")
    T, d_k = len(tokens), d_model // heads
    labels = tuple(f"{i} {tok}" for i, tok in enumerate(tokens))  # numbered: repeated words stay apart on an axis
    dims = tuple(f"d{j}" for j in range(d_model))
    sub = tuple(f"d{j}" for j in range(d_k))
    emb, pe = token_embeddings(tokens, d_model, seed), sinusoidal_positions(T, d_model)
    x = emb + pe
    w = projection_weights(d_model, seed)
    p = attention_parts(x, w["Wq"], w["Wk"], w["Wv"], w["Wo"], heads, causal)

    steps = [
        Step(EMBED, "E", "E = embedding(tokens)", emb, labels, dims,
             f"One fixed random vector per word (seed {seed}); a repeated word repeats its row."),
        Step(EMBED, "PE", "PE[pos, 2i] = sin(pos/10000^(2i/d)), PE[pos, 2i+1] = cos(...)", pe, labels, dims,
             "Sinusoidal positions: low dimensions wave fast, high ones slowly, so every position is distinct."),
        Step(EMBED, "X", "X = E + PE", x, labels, dims, "The layer's input: what each word is plus where it is."),
    ]
    for name, what in (("Wq", "queries"), ("Wk", "keys"), ("Wv", "values")):
        steps.append(Step(PROJECT, name, f"{name} ~ N(0, 1/d_model)", w[name], dims, dims,
                          f"The learned projection to {what} (random here, seed {seed})."))
    for name, what in (("Q", "what each token is looking for"), ("K", "what each token offers to be found by"),
                       ("V", "what each token passes on when it is attended to")):
        steps.append(Step(PROJECT, name, f"{name} = X W{name.lower()}", p[name.lower()], labels, dims,
                          f"{what.capitalize()}; head h uses columns h*d_k to (h+1)*d_k - 1 (d_k = {d_k})."))
    for h in range(heads):
        n = f", head {h + 1}"
        per_head = [
            ("Q" + n, f"Q_{h + 1} = Q[:, {h * d_k}:{(h + 1) * d_k}]", p["q_heads"][h], labels, sub,
             f"This head's slice of Q: {d_k} of the {d_model} columns."),
            ("K" + n, f"K_{h + 1} = K[:, {h * d_k}:{(h + 1) * d_k}]", p["k_heads"][h], labels, sub,
             "This head's slice of K."),
            ("V" + n, f"V_{h + 1} = V[:, {h * d_k}:{(h + 1) * d_k}]", p["v_heads"][h], labels, sub,
             "This head's slice of V."),
            ("scores" + n, f"S_{h + 1} = Q_{h + 1} K_{h + 1}^T", p["scores"][h], labels, labels,
             "Row i, column j: how well query i matches key j (a dot product)."),
            ("scaled" + n, f"S_{h + 1} / sqrt({d_k})", p["scaled"][h], labels, labels,
             f"Divided by sqrt(d_k) = {math.sqrt(d_k):.3g}, so the softmax does not saturate as d_k grows."),
        ]
        if causal:
            per_head.append(("masked" + n, "scaled, with -inf above the diagonal", p["masked"][h], labels, labels,
                             "The causal mask: a token may not look at later tokens (blank cells are -inf)."))
        per_head += [
            ("weights" + n, f"A_{h + 1} = softmax(rows)", p["weights"][h], labels, labels,
             "Attention weights: each row is positive and sums to 1" + (", zero above the diagonal." if causal
                                                                        else ".")),
            ("weighted sum" + n, f"O_{h + 1} = A_{h + 1} V_{h + 1}", p["heads_out"][h], labels, sub,
             "Each token's output is the weights' average of the value rows."),
        ]
        steps += [Step(ONE_HEAD, *args, head=h) for args in per_head]
    steps += [
        Step(COMBINE, "concat", "concat(O_1, ..., O_H)", p["concat"], labels, dims,
             f"The {heads} heads' outputs side by side: head h fills columns h*{d_k} to (h+1)*{d_k} - 1."),
        Step(COMBINE, "Wo", "Wo ~ N(0, 1/d_model)", w["Wo"], dims, dims,
             "The output projection mixes the heads' columns together."),
        Step(COMBINE, "out", "out = concat Wo", p["out"], labels, dims,
             "The layer's output: one new d_model-wide vector per token."),
    ]
    return AttentionWalk(sentence, tuple(tokens), d_model, heads, causal, seed, tuple(steps), p["out"], p["weights"])
