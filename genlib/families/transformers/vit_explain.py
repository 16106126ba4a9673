"""Where a Vision Transformer's CLS token looks: the lab's ViT (``vit``) and any Hugging Face one alike.

Two views of what the classifier attends to, the same for the lab's ViT and a Hugging Face one:

- ``cls_maps``: each head's attention from the CLS token (query row 0) to the N patches, one
  (grid_h, grid_w) map per head of one layer;
- ``attention_rollout`` (Abnar & Zuidema 2020): a residual connection carries half of each token
  through unchanged, so each layer's head-averaged attention A becomes (A + I) with its rows
  renormalised, and the layers compose by matrix product, R = Â_L ... Â_1. Row 0 of R over the
  patches says how much each patch flows into the CLS token at the top.

``ViTSource`` is the one interface over both kinds of model: ``explain(image)`` gives the prediction
and every layer's attention; ``load_vit_source`` loads either from a folder, a shipped name or a hub id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn

from genlib.checkpoints import CONFIG_FILE, CheckpointError, resolve
from genlib.families.transformers.vit import VIT_FAMILY, VisionTransformer, load_vit
from genlib.images import to_grid


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
