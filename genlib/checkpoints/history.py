"""A checkpoint's loss log: one row per training step, stored as gzip-compressed CSV (history.csv.gz).

Compressed, because a long run's log outweighs its weights: Glow's 30,000 steps took 675 kB as plain
CSV (its fp16 weights take 320 kB) and 206 kB gzipped, with every row kept. Folders written before the
change carry a plain history.csv, and both load. The log is read with a cap on its unpacked size, so a
hostile folder's gzip bomb is refused instead of filling memory.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from genlib.checkpoints.layout import CheckpointError

HISTORY_FILE = "history.csv.gz"
PLAIN_HISTORY_FILE = "history.csv"   # the log's name in folders written before it was compressed
MAX_HISTORY_BYTES = 64 * 1024 * 1024  # unpacked; a million steps of a dozen scalars fit well inside
SIGNIFICANT_DIGITS = 5               # a loss curve needs no more; full float precision doubles the text


def history_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    """``rows`` (one dict of scalars per step, the keys of every row as columns) as history.csv.gz's bytes.

    The gzip header's timestamp is fixed, so the same rows always give the same bytes (a retrained
    checkpoint's diff shows only what changed)."""
    text = pd.DataFrame(list(rows)).to_csv(index=False, float_format=f"%.{SIGNIFICANT_DIGITS}g") if rows else ""
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def history_file(folder: str | Path) -> Path | None:
    """The folder's loss log (history.csv.gz, else an older plain history.csv), or None when it has none."""
    for name in (HISTORY_FILE, PLAIN_HISTORY_FILE):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def read_history(folder: str | Path) -> pd.DataFrame | None:
    """The folder's loss log as a frame (one row per step), or None when the folder has none.

    Raises CheckpointError, naming the file, when the log is not gzip or CSV, or unpacks to more than
    ``MAX_HISTORY_BYTES``."""
    path = history_file(folder)
    if path is None:
        return None
    packed = path.name == HISTORY_FILE
    try:
        with (gzip.open if packed else open)(path, "rb") as fh:
            data = fh.read(MAX_HISTORY_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:   # a gzip file cut short raises EOFError, a foreign one OSError
        why = "it is not a complete gzip file" if packed else "the file cannot be opened"
        raise CheckpointError(f"the loss log {path} cannot be read: {why} ({err})") from None
    if len(data) > MAX_HISTORY_BYTES:
        raise CheckpointError(f"the loss log {path} unpacks to more than {MAX_HISTORY_BYTES // 2**20} MiB, far more "
                              "than any training run writes; it was not read")
    if not data.strip():
        return pd.DataFrame()
    try:
        return pd.read_csv(io.BytesIO(data))
    except ValueError as err:  # pandas' parser and empty-data errors, and bad UTF-8, are ValueErrors
        raise CheckpointError(f"the loss log {path} is not a CSV table ({err})") from None
