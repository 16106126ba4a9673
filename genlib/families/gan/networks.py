"""The GAN families' networks: MLP and conv generators and discriminators, the projection
discriminator, and DiffAugment's translation and cutout. Plain modules; model.py beside this file wires them
into models (label embeddings, losses, the two-optimizer step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


# -- networks: plain nn.Sequential; the model adds cgan's label embeddings around them -------------
def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return _spectral_norm(layer) if on else layer


def mlp_generator(in_dim: int, hidden: int) -> nn.Sequential:
    """(B,in_dim) -> images (B,1,28,28) in [-1,1]."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * hidden), nn.ReLU(),
                         nn.Linear(2 * hidden, 28 * 28), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))


def mlp_discriminator(hidden: int, sn: bool, sigmoid: bool, minibatch_std: bool = False, pack: int = 1
                      ) -> nn.Sequential:
    """``pack`` images side by side (N,pack*784) (or one image (N,1,28,28)) -> scores (N,1).

    ``minibatch_std`` appends a MinibatchStd unit to the last hidden layer, (N,h) -> (N,h+1); it exists
    only when asked for, so checkpoints saved without it keep their layer names.
    """
    return nn.Sequential(nn.Flatten(), _sn(nn.Linear(pack * 28 * 28, 2 * hidden), sn), nn.LeakyReLU(0.2),
                         _sn(nn.Linear(2 * hidden, hidden), sn), nn.LeakyReLU(0.2),
                         *([MinibatchStd()] if minibatch_std else []),
                         _sn(nn.Linear(hidden + minibatch_std, 1), sn), nn.Sigmoid() if sigmoid else nn.Identity())


def _refine(channels: int, convs: int) -> list[nn.Module]:
    """``convs`` shape-keeping 3x3 conv layers, each followed by BatchNorm and ReLU."""
    return [m for _ in range(convs)
            for m in (nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())]


def conv_generator(in_dim: int, w: int, convs: int = 0) -> nn.Sequential:
    """(B,in_dim) -> images (B,1,28,28) in [-1,1]; BatchNorm before each ReLU; ``convs`` extra layers per level."""
    return nn.Sequential(nn.Linear(in_dim, 2 * w * 49), nn.Unflatten(1, (2 * w, 7, 7)), nn.BatchNorm2d(2 * w),
                         nn.ReLU(), *_refine(2 * w, convs), nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w),
                         nn.ReLU(), *_refine(w, convs), nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())


def conv_features(in_channels: int, w: int, sn: bool, dropout: float = 0.0, minibatch_std: bool = False
                  ) -> nn.Sequential:
    """images (B,in_channels,28,28) -> D's features (B,feature_size(w, minibatch_std)); no BatchNorm.

    ``dropout`` follows each conv; ``minibatch_std`` appends a MinibatchStd map at 7x7. Those layers
    exist only when asked for, so checkpoints saved without them keep their layer names.
    """
    def drop() -> list[nn.Module]:
        return [nn.Dropout(dropout)] if dropout > 0 else []

    return nn.Sequential(_sn(nn.Conv2d(in_channels, w, 4, 2, 1), sn), nn.LeakyReLU(0.2), *drop(),
                         _sn(nn.Conv2d(w, 2 * w, 4, 2, 1), sn), nn.LeakyReLU(0.2), *drop(),
                         *([MinibatchStd()] if minibatch_std else []), nn.Flatten())


def feature_size(w: int, minibatch_std: bool) -> int:
    """Width of ``conv_features``' output: 2w maps (+1 with minibatch std) of 7x7."""
    return (2 * w + minibatch_std) * 49


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation (Karras et al. 2018): (B,C,H,W) -> (B,C+1,H,W), or (B,F) -> (B,F+1).

    The extra map holds one number for the whole batch, the mean over features of their standard
    deviation across the batch. A generator that collapses onto a few images makes it small, so D
    can tell a collapsed batch from a real one.
    """

    def forward(self, x: Tensor) -> Tensor:
        """x (B,C,...) with the batch's mean feature std appended as one more channel: (B,C+1,...)."""
        spread = (x.float().var(0, unbiased=False) + 1e-8).sqrt().mean().to(x.dtype)  # scalar
        return torch.cat([x, spread.expand(x.shape[0], 1, *x.shape[2:])], 1)


def conv_discriminator(in_channels: int, w: int, sn: bool, sigmoid: bool, dropout: float = 0.0,
                       minibatch_std: bool = False) -> nn.Sequential:
    """images (B,in_channels,28,28) -> scores (B,1)."""
    return nn.Sequential(*conv_features(in_channels, w, sn, dropout, minibatch_std),
                         _sn(nn.Linear(feature_size(w, minibatch_std), 1), sn),
                         nn.Sigmoid() if sigmoid else nn.Identity())


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = psi(phi(x)) + <embed(y), phi(x)>: the class enters as an inner product with D's features."""

    def __init__(self, w: int, num_classes: int, sn: bool, sigmoid: bool, dropout: float = 0.0,
                 minibatch_std: bool = False):
        super().__init__()
        size = feature_size(w, minibatch_std)
        self.features = conv_features(1, w, sn, dropout, minibatch_std)  # (B,1,28,28) -> (B,F), F = size
        self.head = _sn(nn.Linear(size, 1), sn)                          # (B,F) -> (B,1)
        self.class_embed = _sn(nn.Embedding(num_classes, size), sn)      # y (B,) -> (B,F)
        self.out = nn.Sigmoid() if sigmoid else nn.Identity()

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """Scores (B,1) for images x (B,1,28,28) of classes ``labels`` (B,); probabilities with ``sigmoid``."""
        h = self.features(x)                                                           # (B,F)
        return self.out(self.head(h) + (self.class_embed(labels) * h).sum(1, keepdim=True))


def translate(images: Tensor, max_shift: int = 3) -> Tensor:
    """DiffAugment's translation: each image (B,C,H,W) shifted by up to ``max_shift`` pixels, edges repeated.

    Built on grid_sample, so gradients flow back to G through the shifted fakes.
    """
    b, _, h, w = images.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 2), device=images.device).float()  # (B,2) pixels
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = 2 * shift[:, 0] / w, 2 * shift[:, 1] / h  # normalised [-1,1] coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="nearest", padding_mode="border", align_corners=False)


def cutout(images: Tensor, ratio: float = 0.5) -> Tensor:
    """DiffAugment's cutout: each image (B,C,H,W) gets a random square of ``ratio`` times its side set to 0.

    0 is mid-grey in G's [-1,1] range, as in DiffAugment. A multiplied mask, so gradients flow back to G
    through the pixels that stay.
    """
    b, _, h, w = images.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # each square's top-left corner (B,1,1) each: its centre lies anywhere in the image, so it may run off the edge
    top = torch.randint(0, h + (1 - size_h % 2), (b, 1, 1), device=images.device) - size_h // 2
    left = torch.randint(0, w + (1 - size_w % 2), (b, 1, 1), device=images.device) - size_w // 2
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)  # (B,H,W)
    return images * (~inside).unsqueeze(1).to(images.dtype)
