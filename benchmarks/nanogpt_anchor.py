"""The anchor: nanoGPT's shakespeare_char recipe for a CPU, re-implemented faithfully (karpathy/nanoGPT,
``model.py``, ``train.py`` and ``config/train_shakespeare_char.py`` with the README's CPU overrides).

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

So: 4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000 iterations; AdamW lr 1e-3 with 100
warm-up iterations and cosine decay to 1e-4 at 2,000, betas (0.9, 0.99), weight decay 0.1 on the
matrices, gradient clipping at 1.0; no biases (``bias=False``), tied embeddings, GPT-2 init. Batches
are random 64-byte crops of the training data, as nanoGPT's ``get_batch``. The one change: the
vocabulary is the lab's 256 bytes instead of the corpus's characters, so both models read the same
tokens and their losses compare directly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AnchorConfig:
    """nanoGPT's GPTConfig at the CPU shakespeare_char settings (vocabulary: bytes)."""

    block_size: int = 64
    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False


@dataclass
class AnchorRecipe:
    """nanoGPT's train.py settings for the run."""

    batch_size: int = 12
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0


class CausalSelfAttention(nn.Module):
    def __init__(self, c: AnchorConfig):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head, self.n_embd, self.dropout = c.n_head, c.n_embd, c.dropout

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, c: AnchorConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, c: AnchorConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(c.n_embd, bias=c.bias), CausalSelfAttention(c)
        self.ln_2, self.mlp = nn.LayerNorm(c.n_embd, bias=c.bias), MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class AnchorGPT(nn.Module):
    """nanoGPT's GPT: token + learned position embeddings, pre-norm blocks, tied output head."""

    def __init__(self, c: AnchorConfig):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout), h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=nn.LayerNorm(c.n_embd, bias=c.bias)))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        """Logits (B,T,V) at every position (nanoGPT returns only the last one at inference)."""
        t = idx.size(1)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t, device=idx.device)))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    def configure_optimizers(self, r: AnchorRecipe):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=r.learning_rate, betas=(r.beta1, r.beta2))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, generator=None):
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.config.block_size:])[:, -1, :] / temperature
            idx = torch.cat((idx, torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)), dim=1)
        return idx


def get_lr(it: int, r: AnchorRecipe) -> float:
    """nanoGPT's schedule: linear warm-up, cosine decay to min_lr, then min_lr."""
    if it < r.warmup_iters:
        return r.learning_rate * (it + 1) / (r.warmup_iters + 1)
    if it > r.lr_decay_iters:
        return r.min_lr
    ratio = (it - r.warmup_iters) / (r.lr_decay_iters - r.warmup_iters)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.learning_rate - r.min_lr)


def train_anchor(train: bytes, config: AnchorConfig = AnchorConfig(), recipe: AnchorRecipe = AnchorRecipe(),
                 seed: int = 1337) -> tuple[AnchorGPT, dict]:
    """Train the anchor on ``train`` bytes exactly as nanoGPT's loop does; returns the model and timings."""
    torch.manual_seed(seed)
    data = torch.frombuffer(bytearray(train), dtype=torch.uint8).long()
    model = AnchorGPT(config)
    optimizer = model.configure_optimizers(recipe)
    start = time.perf_counter()
    losses = []
    for it in range(recipe.max_iters):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it, recipe)
        ix = torch.randint(len(data) - config.block_size, (recipe.batch_size,))
        x = torch.stack([data[i:i + config.block_size] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + config.block_size] for i in ix])
        loss = F.cross_entropy(model(x).view(-1, config.vocab_size), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    tokens = recipe.max_iters * recipe.batch_size * config.block_size
    return model, {"seconds": seconds, "iterations": recipe.max_iters, "train_tokens": tokens,
                   "train_tokens_per_s": tokens / seconds, "final_train_loss": sum(losses[-50:]) / 50,
                   "parameters": sum(p.numel() for p in model.parameters())}
