"""The loss log (history.csv.gz): written compressed and byte-stable, read back row for row, older plain
history.csv folders still read, and hostile or broken logs refused in words."""
from __future__ import annotations

import gzip
import math

import pytest

from genlib.checkpoints import HISTORY_FILE, CheckpointError, history_bytes, history_file, read_history
from genlib.checkpoints.history import MAX_HISTORY_BYTES, PLAIN_HISTORY_FILE

ROWS = [{"step": s, "loss": 1.0 / s + 0.123456789, "kl": 2.0 ** -s} for s in range(1, 2001)]


def test_round_trip_keeps_every_row_to_five_significant_digits(tmp_path):
    (tmp_path / HISTORY_FILE).write_bytes(history_bytes(ROWS))
    frame = read_history(tmp_path)
    assert list(frame.columns) == ["step", "loss", "kl"]
    assert list(frame["step"]) == list(range(1, 2001))
    for row, got in zip(ROWS, frame.itertuples()):
        assert math.isclose(got.loss, row["loss"], rel_tol=1e-4) and math.isclose(got.kl, row["kl"], rel_tol=1e-4)


def test_the_same_rows_give_the_same_bytes_and_compress_well():
    data = history_bytes(ROWS)
    assert data == history_bytes(ROWS)   # no timestamp in the gzip header: a retrained log diffs cleanly
    plain = gzip.decompress(data)
    assert plain.startswith(b"step,loss,kl\n") and len(data) < len(plain) / 2


def test_rows_with_a_late_key_keep_it_as_a_column(tmp_path):
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4, "val_loss": 0.45}]
    (tmp_path / HISTORY_FILE).write_bytes(history_bytes(rows))
    frame = read_history(tmp_path)
    assert frame["val_loss"].isna().tolist() == [True, False]


def test_an_older_plain_history_csv_still_reads(tmp_path):
    (tmp_path / PLAIN_HISTORY_FILE).write_text("step,loss\n1,0.5\n2,0.25\n")
    assert history_file(tmp_path) == tmp_path / PLAIN_HISTORY_FILE
    assert read_history(tmp_path)["loss"].tolist() == [0.5, 0.25]


def test_the_compressed_log_wins_over_a_plain_one(tmp_path):
    (tmp_path / PLAIN_HISTORY_FILE).write_text("step,loss\n1,9\n")
    (tmp_path / HISTORY_FILE).write_bytes(history_bytes([{"step": 1, "loss": 0.5}]))
    assert read_history(tmp_path)["loss"].tolist() == [0.5]


def test_no_log_and_an_empty_run(tmp_path):
    assert history_file(tmp_path) is None and read_history(tmp_path) is None
    (tmp_path / HISTORY_FILE).write_bytes(history_bytes([]))
    assert read_history(tmp_path).empty


def test_a_truncated_log_is_refused_in_words(tmp_path):
    (tmp_path / HISTORY_FILE).write_bytes(history_bytes(ROWS)[:200])
    with pytest.raises(CheckpointError, match="not a complete gzip file"):
        read_history(tmp_path)


def test_a_log_that_is_not_csv_is_refused_in_words(tmp_path):
    (tmp_path / HISTORY_FILE).write_bytes(gzip.compress(b'step,loss\n1,"unclosed\n' + b"\xff" * 64))
    with pytest.raises(CheckpointError, match="is not a CSV table"):
        read_history(tmp_path)


def test_a_gzip_bomb_is_refused_without_unpacking_it_all(tmp_path):
    # 65 MiB of zeros packs into about 64 kB; reading stops one byte past the cap
    (tmp_path / HISTORY_FILE).write_bytes(gzip.compress(bytes(MAX_HISTORY_BYTES + 2**20), compresslevel=1))
    with pytest.raises(CheckpointError, match="unpacks to more than 64 MiB"):
        read_history(tmp_path)
