"""The lab's text data: the Python documentation topics as UTF-8 bytes with a fixed 90/10 split, the
training windows cut from them, and uploaded texts kept by content hash.
"""
from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from genlib.data import MAX_UPLOAD_BYTES, UploadError

# Text is UTF-8 bytes (a vocabulary of 256): any uploaded .txt trains with no tokenizer to fit, and the
# Python documentation topics are ASCII but for 575 of their 464,970 characters.
TEXT_VAL_FRACTION = 0.1   # never change: the last 10% of the corpus's bytes is the held-out split (as nanoGPT's)
TEXT_WINDOW = 257          # training windows: a context of up to 256 bytes and the next byte of each
TEXT_STRIDE = 64           # windows start every 64 bytes, so each byte is seen in about four of them


@lru_cache(maxsize=1)
def text_corpus() -> str:
    """The lab's text: the Python documentation topics that install with Python (``pydoc_data.topics``),
    joined in sorted topic order with a blank line between topics (465,047 characters on Python 3.11.7)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics))


def text_split(text: str | None = None) -> tuple[bytes, bytes]:
    """(train, held-out) UTF-8 bytes of ``text`` (default the lab's corpus): the first 90% and the last 10%."""
    data = (text_corpus() if text is None else text).encode("utf-8")
    cut = int(len(data) * (1 - TEXT_VAL_FRACTION))
    return data[:cut], data[cut:]


def text_windows(data: bytes, window: int = TEXT_WINDOW, stride: int = TEXT_STRIDE) -> Tensor:
    """Overlapping windows (N, window) uint8 of ``data``, one every ``stride`` bytes (the last one ends the data)."""
    if len(data) < window:
        raise ValueError(f"the text is {len(data):,} bytes; training needs at least {window:,}")
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    starts = list(range(0, len(data) - window + 1, stride))
    if starts[-1] != len(data) - window:
        starts.append(len(data) - window)
    return torch.stack([t[s:s + window] for s in starts])


MIN_TEXT_BYTES = 4096      # an uploaded text must leave a held-out tenth longer than the longest context
UPLOADED_TEXT = re.compile(r"upload-[0-9a-f]{16}")   # the name of an uploaded text: its SHA-256, shortened
TEXT_UPLOAD_TYPES = ["txt"]


def corpora_dir() -> Path:
    """Where uploaded texts are kept, by content hash, beside the runs trained on them."""
    from genlib.checkpoints import runs_dir   # checkpoints never imports data; the reverse only here

    return runs_dir() / ".corpora"


def load_text_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The text of an uploaded .txt file (UTF-8, a BOM allowed); UploadError in words for an empty, huge,
    binary, non-UTF-8 or too short file."""
    if not data:
        raise UploadError("the file is empty")
    if len(data) > max_bytes:
        raise UploadError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    if b"\x00" in data:
        raise UploadError("this is not a text file (it holds zero bytes, as binary files do); upload plain text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UploadError(f"this file is not UTF-8 text (byte {err.start:,} cannot be read); save it as UTF-8 "
                          "plain text and upload it again") from None
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t\f")
    if controls > len(text) // 100:
        raise UploadError("this does not look like text: more than 1% of it is control characters")
    if len(text.encode("utf-8")) < MIN_TEXT_BYTES:
        raise UploadError(f"the text is {len(text.encode('utf-8')):,} bytes; training needs at least "
                          f"{MIN_TEXT_BYTES:,} (its last tenth is held out to measure the model)")
    return text


def save_text_corpus(text: str) -> str:
    """Keep an uploaded text under its content's name (``upload-<hash>``) and return that name, which a GPT's
    ``corpus`` setting takes. The same text always gets the same name, and is stored once."""
    raw = text.encode("utf-8")
    name = "upload-" + hashlib.sha256(raw).hexdigest()[:16]
    path = corpora_dir() / f"{name}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(raw)
        tmp.replace(path)
    return name


def corpus_text(name: str) -> str:
    """The text a corpus name stands for: "pydoc" (the lab's), or an uploaded text kept by ``save_text_corpus``."""
    if name == "pydoc":
        return text_corpus()
    if not UPLOADED_TEXT.fullmatch(name):
        raise ValueError(f"unknown text {name!r}: use pydoc, or upload a .txt file to train on")
    path = corpora_dir() / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"the uploaded text {name} is not on this machine (uploads are kept in {corpora_dir()}); "
                         "upload it again")
    return path.read_bytes().decode("utf-8")
