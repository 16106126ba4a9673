"""A character-level GPT (bytes in, bytes out), in the spirit of nanoGPT's ``model.py``.

    idx (B,T) bytes -> token embedding (B,T,C) + position (learned table, or fixed sinusoids)
        -> n_layer x [ x + attn(ln(x)),  x + mlp(ln(x)) ]        (pre-norm residual blocks)
        -> ln -> logits (B,T,256) = x @ wte^T                     (weight tying: one matrix in, out)

    attn: q, k, v = split(x W_qkv) into n_head heads (B,h,T,C/h); softmax(q k^T / sqrt(C/h) + causal mask) v

Text is UTF-8 bytes, so any .txt trains with no tokenizer to fit. It trains on the lab's text
kind (``TEXT``, the Python documentation topics) through the shared Trainer; ``sample`` continues a
prompt through ``generation`` (temperature, top-k, top-p); the held-out metrics are bits per
character, perplexity and tokens per second; ``attention_record`` feeds the attention explorer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import ConfigError, setting
from genlib.text_data import UPLOADED_TEXT, corpus_text, text_split
from genlib.families.transformers.attention import AttentionRecord
from genlib.families.transformers.generation import MAX_PROMPT_CHARS, sample_ids
from genlib.families.transformers.scratch import sinusoidal_positions
from genlib.model import TEXT, DataKind, GenerativeModel, ModelConfig, SamplingCallback, SamplingOptions, StepOutput
from genlib.registry import register

VOCAB = 256                # bytes
EVAL_BATCH = 32            # blocks per forward pass when measuring the held-out loss
SPEED_TOKENS = 128         # tokens generated (one row) to measure generation speed
LN2 = math.log(2)


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """Size of the GPT and how it learns positions; the optimiser's weight decay and beta2 (nanoGPT's)."""

    n_layer: int = setting(4, "transformer blocks", min=1, max=24)
    n_head: int = setting(4, "attention heads per block (must divide n_embd)", min=1, max=32)
    n_embd: int = setting(128, "width of the residual stream", min=8, max=2048)
    block_size: int = setting(128, "context length in bytes", min=8, max=256)
    dropout: float = setting(0.0, "dropout on the attention and MLP outputs while training", min=0.0, max=0.5)
    positions: str = setting("learned", "position encoding: a learned table, or fixed sinusoids (Vaswani et al.)",
                             choices=("learned", "sinusoidal"))
    bias: bool = setting(False, "biases in the linear layers and layer norms (nanoGPT: off, a little faster)")
    weight_decay: float = setting(0.1, "AdamW weight decay of the matrices (not of norms, biases)", min=0.0, max=1.0)
    beta2: float = setting(0.99, "AdamW beta2 (0.99 for small models, as nanoGPT's char recipe)", min=0.9, max=0.9999)
    corpus: str = setting("pydoc", "the text it learns: pydoc (the Python documentation topics), or an uploaded "
                                   ".txt file's name (upload-<hash>, given when you upload it)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_head={self.n_head} must divide n_embd={self.n_embd}")
        if self.corpus != "pydoc" and not UPLOADED_TEXT.fullmatch(self.corpus):
            raise ConfigError(f"corpus={self.corpus!r}: use pydoc, or the upload-<hash> name an uploaded text gets")


@dataclass(frozen=True)
class GPTSampling(SamplingOptions):
    """How text is drawn: the prompt it continues, its length, and the sampling filters."""

    prompt: str = setting("\n", "text the samples continue (at least one character)")
    max_new_tokens: int = setting(200, "bytes to generate after the prompt", min=1, max=4000)
    temperature: float = setting(0.8, "below 1: safer, more repetitive; above 1: wilder", min=0.05, max=3.0)
    top_k: int = setting(0, "draw only from the k most likely bytes (0: off)", min=0, max=VOCAB)
    top_p: float = setting(0.95, "draw only from the most likely bytes that make up this probability", min=0.01,
                           max=1.0)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention. Given a ``kept`` dict, it writes its attention and q, k into it."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        # Dropout on the output only, not on the attention probabilities as nanoGPT also does:
        # SDPA with dropout_p > 0 leaves its fused CPU kernel for the math path, which builds the
        # (B,h,T,T) matrix and cost 40% of the training speed at a context of 256.
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, kept: dict[str, Tensor] | None = None) -> Tensor:
        """(B,T,C) -> (B,T,C); position t sees positions 0..t only."""
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)   # (B,h,T,C/h) each
                   for z in self.qkv(x).split(c, dim=2))
        if kept is not None:  # written out, to keep the probabilities; equal to the fused kernel below
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])             # (B,h,T,T)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            kept.update(attention=att, queries=q, keys=k)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)) with a 4x GELU MLP."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c.n_embd, bias=c.bias), nn.LayerNorm(c.n_embd, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias), nn.GELU(),
                                 nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias), nn.Dropout(c.dropout))

    def forward(self, x: Tensor, kept: dict[str, Tensor] | None = None) -> Tensor:
        """(B,T,C) -> (B,T,C)."""
        x = x + self.attn(self.ln_1(x), kept)
        return x + self.mlp(self.ln_2(x))


@register("gpt")
class GPT(GenerativeModel):
    """A byte-level GPT that writes text; trained on the Python documentation topics."""

    Config = GPTConfig
    Sampling = GPTSampling
    description = "character-level GPT (bytes): causal self-attention, learned or sinusoidal positions"
    group = "Transformers"
    page = "pages/text.py"
    data_kind = TEXT
    tiny_config = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        c = config
        self.wte = nn.Embedding(VOCAB, c.n_embd)
        if c.positions == "learned":
            self.wpe = nn.Embedding(c.block_size, c.n_embd)
        else:  # fixed, so not saved: rebuilt from the config on load
            self.register_buffer("sinusoids", sinusoidal_positions(c.block_size, c.n_embd), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # -- the network -------------------------------------------------------------------------------------
    def forward(self, idx: Tensor, kept: list[dict[str, Tensor]] | None = None) -> Tensor:
        """Logits (B,T,256) of the byte after each position of idx (B,T), T <= block_size. Given ``kept``
        (a list), each block appends a dict of its attention (B,h,T,T), queries and keys (B,h,T,C/h)."""
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"the input is {t} bytes; this model's context is {self.config.block_size}")
        pos = self.wpe.weight[:t] if self.config.positions == "learned" else self.sinusoids[:t]
        x = self.drop(self.wte(idx) + pos)
        for block in self.blocks:
            if kept is not None:
                kept.append({})
            x = block(x, kept[-1] if kept is not None else None)
        return F.linear(self.ln_f(x), self.wte.weight)   # tied: the output reuses the input embedding

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Next-byte cross-entropy on a random block_size crop of each window (B, TEXT_WINDOW) of bytes."""
        windows = batch[0].long()
        t = self.config.block_size
        start = int(torch.randint(0, windows.shape[1] - t, (1,)))   # the Trainer seeds torch's generator
        x, y = windows[:, start:start + t], windows[:, start + 1:start + t + 1]
        loss = F.cross_entropy(self(x).flatten(0, 1), y.flatten())
        return StepOutput(loss, {"loss": loss.item(), "bits_per_byte": loss.item() / LN2})

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """AdamW as nanoGPT sets it: weight decay on the matrices only, betas (0.9, beta2)."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        rest = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return [torch.optim.AdamW(groups, lr=lr, betas=(0.9, self.config.beta2))]

    def trained_data(self) -> DataKind:
        """TEXT, or the same kind of bytes from an uploaded text (its name is the kind's dataset)."""
        if self.config.corpus == "pydoc":
            return TEXT
        return DataKind("text", TEXT.shape, self.config.corpus, f"the uploaded text {self.config.corpus} (UTF-8 "
                        "bytes)", tokens=TEXT.tokens)

    # -- text ------------------------------------------------------------------------------------------------
    @staticmethod
    def encode_text(text: str) -> Tensor:
        """The UTF-8 bytes of ``text`` as ids (T,)."""
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)

    @staticmethod
    def decode_text(ids: Tensor | list[int]) -> str:
        """Text of byte ids; bytes that do not form UTF-8 (a character cut in two) show as U+FFFD."""
        return bytes(int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)).decode("utf-8", "replace")

    @staticmethod
    def token_text(token: int) -> str:
        """How one byte reads on its own (a lone part of a multi-byte character shows as <0xNN>)."""
        raw = bytes([token])
        return raw.decode("utf-8") if token < 128 else f"<0x{token:02X}>"

    @torch.no_grad()
    def next_logits(self, ids: Tensor) -> Tensor:
        """Logits (N,256) of the byte after each row of ids (N,T), seeing at most the last block_size bytes."""
        return self(ids[:, -self.config.block_size:].to(self.device))[:, -1]

    def prompt_ids(self, prompt: str, n: int) -> Tensor:
        """The prompt's bytes repeated for ``n`` rows (n,T); ValueError in words for an empty or huge one."""
        if not prompt:
            raise ValueError("the prompt is empty; give at least one character (a newline starts a fresh text)")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
        return self.encode_text(prompt).to(self.device).repeat(n, 1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, prompt: str = "\n", max_new_tokens: int = 200,
               temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95) -> Tensor:
        """``n`` continuations of ``prompt``: byte ids (n, len(prompt bytes) + max_new_tokens), prompt first.

        The callback gets each step's ids so far, padded with zeros to the final length."""
        return sample_ids(self.next_logits, self.prompt_ids(prompt, n), max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p, generator=generator, callback=callback)

    # -- measures ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def nats_per_byte(self, data: bytes) -> float:
        """Mean next-byte cross-entropy (nats) over ``data``, cut into non-overlapping blocks of block_size + 1
        (each block predicts its last block_size bytes from the bytes before them in the block)."""
        return heldout_nats_per_byte(self, data, self.config.block_size, self.device)

    def held_out_metrics(self) -> dict[str, Any]:
        """Bits per character and perplexity on the held-out 10% of the corpus, and generation speed."""
        was = self.training
        self.eval()
        held_out = text_split(corpus_text(self.config.corpus))[1]
        corpus = "the Python documentation topics" if self.config.corpus == "pydoc" else self.config.corpus
        nats = self.nats_per_byte(held_out)
        chars = len(held_out.decode("utf-8", "ignore"))
        bits_per_char = nats * len(held_out) / chars / LN2
        start = time.perf_counter()
        self.sample(1, generator=torch.Generator().manual_seed(0), max_new_tokens=SPEED_TOKENS)
        speed = SPEED_TOKENS / (time.perf_counter() - start)
        self.train(was)
        return {"val_loss": round(nats, 4), "bits_per_char": round(bits_per_char, 4),
                "perplexity": round(math.exp(nats), 3), "generation_tokens_per_s": round(speed, 1),
                "held_out": f"the last 10% of {corpus} ({len(held_out):,} bytes)"}

    @torch.no_grad()
    def attention_record(self, text: str, labels: Tensor | None = None) -> AttentionRecord:
        """Every layer's attention probabilities and per-head queries and keys on ``text`` (its last
        block_size bytes), for the attention explorer."""
        ids = self.prompt_ids(text, 1)[:, -self.config.block_size:]
        kept: list[dict[str, Tensor]] = []   # filled by this call alone: safe on a model shared by sessions
        self(ids, kept)

        def arrays(name: str) -> list[np.ndarray]:
            return [k[name][0].float().cpu().numpy() for k in kept]   # (heads, T, T) or (heads, T, C/h)

        return AttentionRecord(tokens=[self.token_text(int(t)) for t in ids[0]], attentions=arrays("attention"),
                               queries=arrays("queries"), keys=arrays("keys"), model_name=f"gpt ({self.family})",
                               causal=True)


@torch.no_grad()
def heldout_nats_per_byte(model: nn.Module, data: bytes, block_size: int, device: torch.device | str = "cpu",
                          batch: int = EVAL_BATCH) -> float:
    """Mean next-byte cross-entropy in nats of any ``model(idx (B,T)) -> logits (B,T,V)`` over ``data``,
    in non-overlapping blocks of block_size + 1 bytes; the benchmark scores nanoGPT's recipe with it too."""
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    n = (len(t) - 1) // block_size
    if n < 1:
        raise ValueError(f"the text is {len(t)} bytes; measuring needs more than {block_size}")
    x = t[: n * block_size].view(n, block_size)
    y = t[1: n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch):
        logits = model(x[i:i + batch].to(device))
        total += F.cross_entropy(logits.flatten(0, 1).float(), y[i:i + batch].flatten().to(device),
                                 reduction="sum").item()
    return total / (n * block_size)
