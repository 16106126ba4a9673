"""The lab's reliability, measured: a hostile corpus sent to the real entry points, and the fault, load and
memory figures of tests/test_reliability.py.

    python -m benchmarks.reliability                   # the corpus, then the reliability tests (15-25 minutes)
    python -m benchmarks.reliability --corpus-only --out /tmp/reliability.md   # the corpus alone (3-5 minutes)

1. The hostile corpus: files and model ids built here in a temporary folder (pickles disguised as
   safetensors, one whose unpickling would leave a marker file; truncated, corrupt and oversized-header
   safetensors; foreign and broken config.json; a wrong family; impossible diffusers UNets and foreign
   pipeline classes; ids of 5,000 characters, path traversal and hub ids with no network; decompression
   bombs, polyglots, SVG/GIF/WebP/TIFF, 16-bit, CMYK, EXIF-rotated and zero-byte uploads; out-of-range and
   NaN-producing settings). Each case goes to one real entry point in a fresh process: the CLI
   (``python -m genlib sample|eval|denoise|train ...``) or the loaders the pages call
   (``genlib.checkpoints.load_model``, ``genlib.data.load_upload`` / ``load_photo_upload``), with a
   timeout and a cap on the process's address space, so a crash, a hang or a memory blow-up stays that
   case's own. Recorded: refused (with its message, trimmed) or accepted (with what came out), and
   whether anything crashed (a traceback, an exception that is not the entry point's own error, a
   signal, a hang) or ran code it was given (the pickle's marker).
2. Faults, load and memory: ``pytest tests/test_reliability.py`` with ``GENLIB_RELIABILITY_FIGURES``
   set, so the tests write what they measured (how far a killed save got, the disk-full message, the
   cancel latency, the eight-session timings and the server's peak memory, its RSS over 100 requests
   per page), read back here.

Writes benchmarks/reliability.md (or ``--out``) and prints it. A measurement, not a test: nothing here
asserts; the tests do.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import pickle
import platform
import re
import resource
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

OUT = Path(__file__).with_suffix(".md")
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 180          # per case
ADDRESS_SPACE_GB = 6     # per case: torch alone maps about 1.4 GB; a runaway read or decode hits this instead
MESSAGE_CHARS = 170


@dataclass
class Case:
    """One hostile input and the entry point it is sent to."""

    group: str
    what: str
    entry: str            # cli | load_model | load_upload | load_photo_upload
    arg: object           # cli: argv after ``python -m genlib``; loaders: a source or a file path
    safe: str = "refused"  # what a safe lab does: refused, or accepted (a valid file of an unusual kind)


# -- building the corpus ------------------------------------------------------------------------------------------
class Marker:
    """A pickle whose loading runs code: it touches a marker file. If the marker ever appears, weights were
    unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


def _png(image: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


def _saved(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A real PNG of width x height black pixels at 1 bit: the zlib stream of all-zero rows compresses to almost
    nothing, so a small file decodes to a huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)
    rows_per_chunk = max(1, 2**22 // len(row))
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row * min(rows_per_chunk, height - start))
                    for start in range(0, height, rows_per_chunk)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, and no pixel data at all."""
    data = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(data)) + b"IHDR" + data
            + struct.pack(">I", zlib.crc32(b"IHDR" + data) & 0xFFFFFFFF))


def _digit(size: int = 28) -> Image.Image:
    """A dark digit-like stroke on white paper."""
    image = Image.new("L", (size, size), 255)
    pixels = image.load()
    for i in range(size // 5, size - size // 5):
        for w in range(max(1, size // 14)):
            pixels[size // 2 + w, i] = 0
    return image


def _photo(width: int = 96, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8), "RGB")


def _safetensors_header(header: dict, data: bytes = b"", claimed: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", claimed if claimed is not None else len(raw)) + raw + data


def build_corpus(tmp: Path) -> tuple[list[Case], Path]:
    """Make every hostile file in ``tmp``; the cases and the pickle marker's path."""
    from genlib import TrainConfig
    from genlib.checkpoints import CONFIG_FILE, WEIGHTS_FILE
    from genlib.runs import build_model, save_run
    from genlib.training import TrainResult

    marker = tmp / "UNPICKLED-MARKER"
    evil = pickle.dumps({"weight": Marker(marker)}, protocol=2)
    base = save_run(build_model("vae", {"latent_dim": 2, "width": 4, "hidden": 16}, seed=0), TrainConfig(),
                    TrainResult(steps=0), tmp / "base-vae", {})
    weights = (base / WEIGHTS_FILE).read_bytes()
    config = json.loads((base / CONFIG_FILE).read_text())

    def folder(name: str, files: dict[str, bytes | str | None] | None = None, keep_weights: bool = True) -> str:
        """A copy of the base checkpoint with ``files`` replaced (None removes one)."""
        path = tmp / name
        shutil.copytree(base, path)
        if not keep_weights:
            (path / WEIGHTS_FILE).unlink()
        for rel, content in (files or {}).items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                target.unlink(missing_ok=True)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return str(path)

    def file(name: str, content: bytes) -> str:
        (tmp / name).write_bytes(content)
        return str(tmp / name)

    header_len = struct.unpack("<Q", weights[:8])[0]
    header = json.loads(weights[8:8 + header_len])
    shifted = {k: ({**v, "data_offsets": [v["data_offsets"][0] + 10**9, v["data_offsets"][1] + 10**9]}
                   if k != "__metadata__" else v) for k, v in header.items()}
    nan_weights = save_run(build_model("vae", {"latent_dim": 2, "width": 4, "hidden": 16}, seed=0), TrainConfig(),
                           TrainResult(steps=0), tmp / "nan-weights-tmp", {})
    from safetensors.torch import load_file, save_file
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in load_file(str(nan_weights / WEIGHTS_FILE)).items()}
    save_file(state, str(nan_weights / WEIGHTS_FILE), metadata={"format": "pt"})
    half_state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(base / WEIGHTS_FILE)).items()}
    half = io.BytesIO()
    torch.save(half_state, half)
    diffusers_base = save_run(build_model("diffusion", {"base_channels": 8, "levels": 2, "attention_head_dim": 8,
                                                        "num_train_timesteps": 100, "sample_steps": 4}, seed=0),
                              TrainConfig(), TrainResult(steps=0), tmp / "base-diffusion", {})
    unet_config = json.loads((diffusers_base / "unet" / "config.json").read_text())
    index = json.loads((diffusers_base / "model_index.json").read_text())

    def pipeline(name: str, files: dict[str, str | bytes | None]) -> str:
        path = tmp / name
        shutil.copytree(diffusers_base, path)
        (path / CONFIG_FILE).unlink()  # a foreign diffusers folder: claimed by the diffusion family, not genlib's
        for rel, content in files.items():
            target = path / rel
            if content is None:
                target.unlink(missing_ok=True)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return str(path)

    cases: list[Case] = []
    add = cases.append
    # -- checkpoints, through the loader every page uses
    add(Case("checkpoint", "pickle (its unpickling runs code) saved as model.safetensors", "load_model",
             folder("pickle-as-safetensors", {WEIGHTS_FILE: evil})))
    add(Case("checkpoint", "torch.save zip file saved as model.safetensors", "load_model",
             folder("zip-as-safetensors", {WEIGHTS_FILE: half.getvalue()})))
    add(Case("checkpoint", "a folder holding only pytorch_model.bin (a pickle)", "load_model",
             folder("only-bin", {"pytorch_model.bin": evil}, keep_weights=False)))
    add(Case("checkpoint", "a pickle file given directly (evil.pt)", "load_model", file("evil.pt", evil)))
    add(Case("checkpoint", "a pickle file named weights.safetensors given directly", "load_model",
             file("weights.safetensors", evil)))
    add(Case("checkpoint", "model.safetensors cut in half", "load_model",
             folder("truncated", {WEIGHTS_FILE: weights[: len(weights) // 2]})))
    add(Case("checkpoint", "model.safetensors of random bytes", "load_model",
             folder("random-bytes", {WEIGHTS_FILE: os.urandom(4096)})))
    add(Case("checkpoint", "safetensors header length claiming 2^60 bytes", "load_model",
             folder("huge-header", {WEIGHTS_FILE: _safetensors_header({}, claimed=2**60)})))
    add(Case("checkpoint", "safetensors with a real 60 MB JSON header", "load_model",
             folder("big-header", {WEIGHTS_FILE: _safetensors_header({"__metadata__": {"x": "a" * 60_000_000}})})))
    add(Case("checkpoint", "safetensors offsets pointing 1 GB past the file", "load_model",
             folder("bad-offsets", {WEIGHTS_FILE: _safetensors_header(shifted, weights[8 + header_len:])})))
    add(Case("checkpoint", "zero-byte model.safetensors", "load_model", folder("zero-weights", {WEIGHTS_FILE: b""})))
    add(Case("checkpoint", "weights of another size (latent_dim 8 in config.json, 2 in the weights)", "load_model",
             folder("wrong-shapes", {CONFIG_FILE: json.dumps({**config, "model": {**config["model"],
                                                                                  "latent_dim": 8}})})))
    add(Case("checkpoint", "weights that are all NaN (right names and shapes)", "load_model", str(nan_weights),
             safe="accepted"))
    add(Case("checkpoint", "foreign config.json (a transformers BERT config)", "load_model",
             folder("foreign-config", {CONFIG_FILE: json.dumps({"model_type": "bert", "hidden_size": 768,
                                                                "architectures": ["BertModel"]})})))
    add(Case("checkpoint", "config.json that is not JSON", "load_model",
             folder("garbage-config", {CONFIG_FILE: b"\xff\xfe{not json"})))
    add(Case("checkpoint", "config.json that is a JSON list", "load_model",
             folder("list-config", {CONFIG_FILE: "[1, 2]"})))
    add(Case("checkpoint", "config.json naming a family that does not exist", "load_model",
             folder("no-such-family", {CONFIG_FILE: json.dumps({**config, "family": "evil-family"})})))
    add(Case("checkpoint", "config.json of another family (a vae's weights labelled dcgan)", "load_model",
             folder("wrong-family", {CONFIG_FILE: json.dumps({**config, "family": "dcgan"})})))
    add(Case("checkpoint", "config.json with a size out of range (hidden 10^9)", "load_model",
             folder("huge-config", {CONFIG_FILE: json.dumps({**config, "model": {**config["model"],
                                                                                 "hidden": 10**9}})})))
    add(Case("checkpoint", "config.json with an unknown setting", "load_model",
             folder("unknown-key", {CONFIG_FILE: json.dumps({**config, "model": {**config["model"],
                                                                                 "exec": "rm -rf /"}})})))
    add(Case("checkpoint", "config.json is a symlink to /dev/zero", "load_model", folder("dev-zero-config")))
    os.remove(Path(cases[-1].arg) / CONFIG_FILE)
    os.symlink("/dev/zero", Path(cases[-1].arg) / CONFIG_FILE)
    add(Case("checkpoint", "an empty folder", "load_model", str((tmp / "empty").resolve())))
    (tmp / "empty").mkdir()
    add(Case("checkpoint", "the evaluator (digit-classifier) as a generative model", "load_model", "digit-classifier"))
    add(Case("diffusers", "model_index.json naming a foreign pipeline and UNet class", "load_model",
             pipeline("foreign-index", {"model_index.json": json.dumps({**index, "_class_name": "EvilPipeline",
                                                                        "unet": ["evil_module", "EvilUNet"]})})))
    add(Case("diffusers", "a UNet config of impossible size (block_out_channels 10^6, sample_size 10^5)",
             "load_model", pipeline("huge-unet", {"unet/config.json": json.dumps(
                 {**unet_config, "block_out_channels": [10**6] * len(unet_config["block_out_channels"]),
                  "sample_size": 10**5})})))
    add(Case("diffusers", "unet/ holding only diffusion_pytorch_model.bin (a pickle)", "load_model",
             pipeline("unet-bin", {"unet/diffusion_pytorch_model.safetensors": None,
                                   "unet/diffusion_pytorch_model.bin": evil})))
    # -- model ids
    add(Case("id", "an id of 5,000 characters", "load_model", "a" * 5000))
    add(Case("id", "an id of 5,000 characters, to the CLI", "cli", ["sample", "v" * 5000, "--out", str(tmp / "x.npz")]))
    add(Case("id", "path traversal: ../../../../etc", "load_model", "../../../../etc"))
    add(Case("id", "path traversal: vae-mnist/../../../../etc/passwd", "load_model",
             "vae-mnist/../../../../etc/passwd"))
    add(Case("id", "an absolute system folder: /proc/self", "load_model", "/proc/self"))
    add(Case("id", "a hub id, offline (HF_HUB_OFFLINE=1)", "load_model", "google/ddpm-cifar10-32"))
    add(Case("id", "a hub id with no network at all (no HF_HUB_OFFLINE)", "cli",
             ["sample", "google/ddpm-cifar10-32", "--out", str(tmp / "x.npz")]))
    add(Case("id", "a hub-like id with three parts: a/b/c", "load_model", "a/b/c"))
    add(Case("id", "an id with a null character", "load_model", "vae\x00mnist"))
    add(Case("id", "an id starting with ~ of no user: ~nobody-here/x", "load_model", "~nobody-here/x"))
    # -- uploads, through the loaders the pages call
    add(Case("upload", "zero-byte file", "load_upload", file("empty.png", b"")))
    add(Case("upload", "zero-byte file (photo)", "load_photo_upload", str(tmp / "empty.png")))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><script>alert(1)</script></svg>'
    add(Case("upload", "SVG with a script", "load_photo_upload", file("image.svg", svg)))
    add(Case("upload", "SVG renamed .png", "load_upload", file("svg.png", svg)))
    add(Case("upload", "decompression bomb: 50,000 x 50,000 PNG in a small file", "load_photo_upload",
             file("bomb.png", _bomb_png(50_000, 50_000))))
    add(Case("upload", "decompression bomb (digit upload)", "load_upload", str(tmp / "bomb.png")))
    add(Case("upload", "PNG header claiming 100,000 x 100,000 with no pixel data", "load_photo_upload",
             file("header-only.png", _header_only_png(100_000, 100_000))))
    add(Case("upload", "huge dimensions under the byte limit: 4,100 x 4,100 PNG", "load_photo_upload",
             file("4100.png", _bomb_png(4100, 4100))))
    add(Case("upload", "16 megapixels, 4,000 x 4,000 (downscaled to 4 MP)", "load_photo_upload",
             file("4000.png", _bomb_png(4000, 4000)), safe="accepted"))
    add(Case("upload", "extreme aspect ratio: 1 x 16,000,000 PNG", "load_photo_upload",
             file("thin.png", _bomb_png(1, 16_000_000)), safe="accepted"))
    add(Case("upload", "a file over the 5 MB limit (random bytes)", "load_photo_upload",
             file("big.bin", os.urandom(6 * 1024 * 1024))))
    add(Case("upload", "polyglot: PNG with a ZIP archive appended", "load_photo_upload",
             file("polyglot.png", _png(_photo()) + zipfile_bytes()), safe="accepted"))
    add(Case("upload", "polyglot: PNG signature, then HTML", "load_upload",
             file("html.png", b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>")))
    add(Case("upload", "polyglot: GIF header that is also JavaScript (GIFAR-style)", "load_photo_upload",
             file("gifjs.gif", b"GIF89a/*" + b"\x00" * 20 + b"*/=1;alert(1);")))
    add(Case("upload", "a pickle renamed .png", "load_upload", file("pickle.png", evil)))
    add(Case("upload", "animated GIF (3 frames)", "load_upload",
             file("anim.gif", _saved(_digit(), "GIF", save_all=True, append_images=[_digit(), _digit()])),
             safe="accepted"))
    add(Case("upload", "WebP photo", "load_photo_upload", file("photo.webp", _saved(_photo(), "WEBP")),
             safe="accepted"))
    add(Case("upload", "TIFF photo", "load_photo_upload", file("photo.tif", _saved(_photo(), "TIFF")),
             safe="accepted"))
    add(Case("upload", "16-bit grey PNG", "load_photo_upload",
             file("grey16.png", _png(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)))),
             safe="accepted"))
    add(Case("upload", "CMYK JPEG", "load_photo_upload", file("cmyk.jpg", _saved(_photo().convert("CMYK"), "JPEG")),
             safe="accepted"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    add(Case("upload", "EXIF-rotated JPEG (orientation 6, stored 96x64)", "load_photo_upload",
             file("rotated.jpg", _saved(_photo(), "JPEG", exif=exif)), safe="accepted"))
    add(Case("upload", "EXIF-rotated JPEG as a digit", "load_upload",
             file("rotated-digit.jpg", _saved(_digit(56).convert("RGB"), "JPEG", exif=exif)), safe="accepted"))
    add(Case("upload", "truncated JPEG (first half)", "load_photo_upload",
             file("cut.jpg", _saved(_photo(), "JPEG", quality=95)[:1500])))
    add(Case("upload", "ICO (a format not on the list)", "load_photo_upload",
             file("icon.ico", _saved(_photo(32, 32), "ICO"))))
    add(Case("upload", "1 x 1 pixel PNG", "load_upload", file("dot.png", _png(Image.new("L", (1, 1), 0))),
             safe="accepted"))
    add(Case("upload", "palette PNG with transparency", "load_photo_upload",
             file("palette.png", _png(_photo().convert("P"), transparency=0)), safe="accepted"))
    # -- the command line's own inputs and settings
    noisy = file("noisy.png", _png(_photo()))
    add(Case("cli", "denoise a zero-byte file", "cli", ["denoise", str(tmp / "empty.png"), "--out", str(tmp / "o.png"),
                                                         "--method", "tv"]))
    add(Case("cli", "denoise a decompression bomb", "cli", ["denoise", str(tmp / "bomb.png"), "--out",
                                                             str(tmp / "o.png"), "--method", "tv"]))
    add(Case("cli", "denoise /etc/passwd", "cli", ["denoise", "/etc/passwd", "--out", str(tmp / "o.png")]))
    add(Case("cli", "denoise /dev/zero (an endless file)", "cli",
             ["denoise", "/dev/zero", "--out", str(tmp / "o.png")]))
    add(Case("cli", "denoise a CMYK JPEG with tv", "cli", ["denoise", str(tmp / "cmyk.jpg"), "--out",
                                                            str(tmp / "o.png"), "--method", "tv"], safe="accepted"))
    add(Case("cli", "denoise with --sigma -5", "cli", ["denoise", noisy, "--out", str(tmp / "o.png"), "--method",
                                                        "tv", "--sigma", "-5"]))
    add(Case("cli", "denoise with --sigma nan", "cli", ["denoise", noisy, "--out", str(tmp / "o.png"), "--method",
                                                         "tv", "--sigma", "nan"]))
    add(Case("cli", "denoise with an unknown --method", "cli", ["denoise", noisy, "--out", str(tmp / "o.png"),
                                                                 "--method", "../../etc/passwd"]))
    add(Case("cli", "denoise writing into a folder that does not exist", "cli",
             ["denoise", noisy, "--out", str(tmp / "no" / "such" / "dir" / "o.png"), "--method", "tv"],
             safe="accepted"))
    add(Case("cli", "denoise writing to /proc (not writable)", "cli",
             ["denoise", noisy, "--out", "/proc/denoised.png", "--method", "tv"]))
    add(Case("cli", "sample the pickle-as-safetensors folder", "cli",
             ["sample", str(tmp / "pickle-as-safetensors"), "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample with --num 0", "cli", ["sample", "vae-mnist", "--num", "0", "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample with --num 10^9", "cli", ["sample", "vae-mnist", "--num", "1000000000", "--out",
                                                       str(tmp / "x.npz")]))
    add(Case("cli", "sample diffusion with --steps 0", "cli", ["sample", "diffusion-mnist", "--steps", "0", "--num",
                                                                "2", "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample diffusion with --steps 100000 (more than its 1,000 timesteps)", "cli",
             ["sample", "diffusion-mnist", "--steps", "100000", "--num", "2", "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample diffusion with --eta nan", "cli", ["sample", "diffusion-mnist", "--eta", "nan", "--num",
                                                                "2", "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample cdiffusion with --guidance-scale 20 (the most allowed), 1 euler step", "cli",
             ["sample", "cdiffusion-mnist", "--guidance-scale", "20", "--sampler", "euler", "--steps", "1", "--num",
              "10", "--out", str(tmp / "guided.npz")], safe="accepted"))
    add(Case("cli", "sample dcgan with --truncation -1", "cli", ["sample", "dcgan-mnist", "--truncation", "-1",
                                                                  "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample cvae with --labels 99", "cli", ["sample", "cvae-mnist", "--labels", "99", "--num", "4",
                                                             "--out", str(tmp / "x.npz")]))
    add(Case("cli", "sample writing to /proc (not writable)", "cli", ["sample", "vae-mnist", "--num", "2", "--out",
                                                                       "/proc/samples.npz"]))
    add(Case("cli", "eval the evaluator itself", "cli", ["eval", "digit-classifier", "--num", "50"]))
    add(Case("cli", "eval a path traversal id", "cli", ["eval", "../../../../etc", "--num", "50"]))
    add(Case("cli", "train with --lr 5 (above the 1.0 bound)", "cli", ["train", "vae", "--out", str(tmp / "r"),
                                                                        "--lr", "5"]))
    add(Case("cli", "train with --batch-size 1", "cli", ["train", "vae", "--out", str(tmp / "r"), "--batch-size",
                                                          "1"]))
    add(Case("cli", "train with --beta nan", "cli", ["train", "vae", "--out", str(tmp / "r"), "--beta", "nan"]))
    add(Case("cli", "train at the highest learning rate (--lr 1, 40 steps): does it go NaN?", "cli",
             ["train", "mlp-gan", "--out", str(tmp / "lr1"), "--lr", "1", "--max-steps", "40", "--epochs", "1",
              "--batch-size", "32", "--noise-dim", "8", "--hidden", "16"], safe="accepted"))
    return cases, marker


def zipfile_bytes() -> bytes:
    """A small ZIP archive holding one script."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("run.sh", "#!/bin/sh\necho owned\n")
    return buf.getvalue()


# -- running one case ---------------------------------------------------------------------------------------------
RUNNER = r"""
import json, math, resource, sys, time, traceback
entry, arg = sys.argv[1], json.loads(sys.argv[2])
began = time.perf_counter()
result = {}
try:
    if entry == "load_model":
        import torch
        from genlib.checkpoints import CheckpointError, load_model
        own = CheckpointError
        model, info = load_model(arg)
        gen = torch.Generator().manual_seed(0)
        images = model.sample(2, generator=gen, labels=model.default_labels(2))
        finite = bool(torch.isfinite(images).all())
        result = {"outcome": "accepted", "message": f"loaded as {info.family} ({info.origin}); its samples are "
                  + ("finite" if finite else "NaN") + f" {tuple(images.shape)}"}
    else:
        from genlib import data
        own = data.UploadError
        with open(arg, "rb") as fh:
            raw = fh.read()
        out = getattr(data, entry)(raw)
        if entry == "load_upload":
            result = {"outcome": "accepted", "message": f"a {tuple(out.shape)} digit tensor"}
        else:
            h, w, c = out.image.shape
            notes = "; ".join([*out.notes] + ([f"downscaled from {out.original_size[0]}x{out.original_size[1]}"]
                                              if out.downscaled else []))
            result = {"outcome": "accepted", "message": f"{w}x{h}x{c} photo" + (f" ({notes})" if notes else "")}
except Exception as err:
    if isinstance(err, own):
        result = {"outcome": "refused", "message": str(err)}
    else:
        traceback.print_exc()
        first = str(err).splitlines()[0] if str(err) else ""
        result = {"outcome": "crashed", "message": f"{type(err).__name__}: {first}"}
result["seconds"] = time.perf_counter() - began
result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def _limit_memory() -> None:
    cap = ADDRESS_SPACE_GB * 1024 ** 3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def run_case(case: Case, tmp: Path, env: dict[str, str]) -> dict:
    """Send one case to its entry point in a fresh process; what came back."""
    if case.entry == "cli":
        argv = [sys.executable, "-m", "genlib", *case.arg]
    else:
        argv = [sys.executable, "-c", RUNNER, case.entry, json.dumps(case.arg)]
    case_env = dict(env)
    if case.entry == "cli" and "no network at all" in case.what:
        case_env.pop("HF_HUB_OFFLINE", None)
    began = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ROOT, env=case_env, capture_output=True, text=True, timeout=TIMEOUT_S,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return {"outcome": "crashed", "message": f"hung: still running after {TIMEOUT_S} s (killed)",
                "seconds": TIMEOUT_S, "traceback": False}
    seconds = time.perf_counter() - began
    output = done.stdout + done.stderr
    traceback_seen = "Traceback (most recent call last)" in output
    if case.entry != "cli":
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            reason = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
            last = (done.stderr.strip().splitlines() or [""])[-1]
            return {"outcome": "crashed", "message": f"{reason}: {last}", "seconds": seconds,
                    "traceback": traceback_seen}
        result = json.loads(line[len("RESULT "):])
        result["traceback"] = traceback_seen
        return result
    if done.returncode < 0:
        outcome, message = "crashed", f"killed by signal {-done.returncode}"
    elif traceback_seen:
        last = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        outcome, message = "crashed", f"traceback, exit {done.returncode}: {last[-1] if last else ''}"
    elif done.returncode == 0:
        outcome, message = "accepted", (done.stdout.strip().splitlines() or ["exit 0"])[-1]
    else:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")] or \
            [ln for ln in done.stderr.strip().splitlines() if ln.strip()][-1:]
        outcome, message = "refused", (errors[0] if errors else f"exit {done.returncode}")
    return {"outcome": outcome, "message": message, "seconds": seconds, "traceback": traceback_seen}


def inspect_npz(path: Path) -> str:
    """What a sample file holds: shape and whether anything is NaN."""
    if not path.exists():
        return ""
    with np.load(path) as data:
        images = data["images"]
    return f"; {images.shape} images, {'NaN in them' if np.isnan(images).any() else 'all finite'}, " \
           f"range [{np.nanmin(images):.2f}, {np.nanmax(images):.2f}]"


def trim(text: str, keep: int = MESSAGE_CHARS) -> str:
    """One line of at most ``keep`` characters, with pipes escaped for a markdown table."""
    line = " ".join(text.split())
    line = line if len(line) <= keep else line[: keep - 1] + "…"
    return line.replace("|", "\\|")


# -- the tests' figures -----------------------------------------------------------------------------------------------
def run_tests(figures: Path) -> dict:
    """``pytest tests/test_reliability.py`` with the figures file set; its summary and per-test durations."""
    env = {**os.environ, "GENLIB_RELIABILITY_FIGURES": str(figures), "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_reliability.py", "-q", "-p", "no:cacheprovider",
                           "--durations=0", "-o", "addopts="], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    durations = {}
    for line in done.stdout.splitlines():
        hit = re.match(r"\s*([\d.]+)s call\s+tests/test_reliability.py::(.+?)\s*$", line)
        if hit:
            durations[hit.group(2)] = float(hit.group(1))
    summary = next((ln.strip("= ") for ln in reversed(done.stdout.splitlines())
                    if re.search(r"\d+ (passed|failed)", ln)), f"exit {done.returncode}")
    failures = [ln for ln in done.stdout.splitlines() if ln.startswith(("FAILED", "ERROR", "SKIPPED"))]
    errors = [ln[1:].strip() for ln in done.stdout.splitlines() if ln.startswith("E ")][:12]
    return {"summary": summary, "durations": durations, "seconds": seconds, "failures": failures, "errors": errors,
            "figures": json.loads(figures.read_text()) if figures.exists() else {}}


def figures_section(tests: dict) -> list[str]:
    """The markdown of the tests' measurements."""
    f = tests["figures"]
    lines = ["## 2. Faults, load and memory (tests/test_reliability.py)", "",
             "`python -m pytest tests/test_reliability.py` with `GENLIB_RELIABILITY_FIGURES` set: "
             f"**{tests['summary']}** in {tests['seconds'] / 60:.1f} minutes."
             + (" " + "; ".join(tests["failures"]) if tests["failures"] else ""), ""]
    if tests["errors"]:
        lines += ["What failed (pytest's E lines):", "", "```", *tests["errors"], "```", ""]
    lines += ["### A save killed mid-way", "",
              "A subprocess saves a new version of `my-run` through `save_run` (the training runs' own save path) "
              "and is SIGKILLed. From outside: the moment the parent sees the temp folder (or its weights file) "
              "appear, polling every millisecond, while a 51M-parameter VAE (206 MB of weights) is being saved. "
              "From inside: the process kills itself at exactly that step of `save_folder`.", "",
              "| killed | what the kill left | previous version |", "|---|---|---|"]
    for moment in ("temp folder made", "weights file written"):
        got = f.get(f"kill.{moment}")
        if got:
            written = ", ".join(f"{k} ({v / 1e6:.1f} MB)" for k, v in got["temp_folder_at_kill"].items()) \
                or "nothing yet"
            late = " (the kill landed between the renames: the listing put it back)" if got.get("between_renames") \
                else ""
            lines.append(f"| from outside, when the {moment.replace('made', 'appeared').replace('written', 'appeared')}"
                         f" | `.my-run.tmp-*` holding {written} | intact byte for byte, listed, loads{late} |")
    for key, label in (("kill.vae.after-weights", "after the weights, before config.json"),
                       ("kill.vae.between-renames", "between the two renames (vae)"),
                       ("kill.diffusion.between-renames", "between the two renames (diffusers pipeline)"),
                       ("kill.vae.after-renames", "after the renames, before the old version is deleted")):
        got = f.get(key)
        if got:
            left = ", ".join(f"`{n}`" for n in got["left_after_kill"])
            verdict = {"kill.vae.after-renames": "the new version is in place and listed; the next save removes "
                                                 "`.my-run.old`"}.get(
                key, "intact; put back under its name by the next listing or load"
                if "between" in key else "intact byte for byte, listed, loads")
            lines.append(f"| {label} | {left} | {verdict} |")
    lines += ["", "### A full disk", "",
              "A real 2 MB tmpfs; a run of the family's default size (4-7 MB of weights) saved into it, over an "
              "earlier tiny run of the same name. Nothing is left but the earlier run, byte for byte. What the "
              "user reads:", ""]
    for key, label in (("disk_full.train_run.vae", "`train_run` (the CLI's train), vae"),
                       ("disk_full.train_run.diffusion", "`train_run`, diffusers pipeline"),
                       ("disk_full.job", "the background job (the page), when Cancel saves the partial run")):
        if key in f:
            lines.append(f"- {label}: “{f[key]}”")
    lines += ["", "### NaN and Cancel through the background job", ""]
    if "nan.job" in f:
        lines.append("- Loss NaN at step 3 (a VAE that turns NaN on cue): the job fails with "
                     f"“{f['nan.job']['message']}”; "
                     f"its curve keeps the {f['nan.job']['history_steps']} good steps; an earlier run of the same name "
                     "is untouched; nothing half-written.")
    for family in ("dcgan", "diffusion", "cvae"):
        got = f.get(f"cancel.{family}")
        if got:
            lines.append(f"- Cancel of a {family} job at step {got['steps_at_cancel']}: stopped and saved in "
                         f"{got['seconds_to_stop_and_save']:.2f} s with {got['steps_saved']} steps, status "
                         f"`cancelled` in metrics.json and the model card, listed, loads, samples finite. "
                         f"“{got['message']}”")
    conc = f.get("concurrency")
    lines += ["", "### Eight sessions at once", ""]
    if conc:
        lines += ["Eight Chromium contexts against one fresh `streamlit run` server: all eight open "
                  "/autoencoders at the same moment (a direct link), then each page through the sidebar, all eight "
                  "at once (Diffusion: all eight then press Sample with the default 20 DPM-Solver++ steps). Seconds "
                  "until the last of the eight had drawn the page (no exception, no error, the same seed-0 images "
                  "by their served bytes, the same noise estimate and scoreboard), and the server's peak resident "
                  "memory (VmHWM of /proc/<pid>/status) after each page:", "",
                  "| page | seconds for 8 sessions | server peak RSS (MB) |", "|---|---:|---:|"]
        for page, seconds in conc["seconds_per_page"].items():
            peak = conc["server_peak_rss_mb_after"].get(page, float("nan"))
            lines.append(f"| {page} | {seconds:.1f} | {peak:,.0f} |")
        lines += ["", f"The server's resident memory once the eight had closed: {conc['server_rss_after_mb']:,.0f} MB."]
    else:
        lines += ["No figures: the test did not finish (see above)."]
    lines += ["", "### Memory over 100 requests per family page", ""]
    rows = [(name, f.get(f"memory.{name}")) for name in ("autoencoders", "gans", "diffusion", "restore")]
    if any(r for _, r in rows):
        lines += ["A second fresh server, used by these four tests in turn. Each page's cheapest real request that "
                  "draws something new: a new global seed (Autoencoders, GANs: the sample grid redraws); a new seed "
                  "then Sample with 1 step (Diffusion); a new seed (new noise on a 28x28 test digit) then Restore "
                  "with non-local means alone (Restore photos). 12 requests of warm-up, then 100, sent by 2 or 4 "
                  "browser sessions taking turns, each with its own seeds (so none is answered from a cache). RSS "
                  "is VmRSS of the server's /proc/<pid>/status: idle (median of five reads 0.1 s apart) after the "
                  "warm-up and at the end, and one read after every round of requests. The reads swing with no "
                  "trend (glibc's per-thread arenas; Streamlit runs each script run in a new thread), so the growth "
                  "is the trend through all of them: the Theil-Sen slope (the median rise per round over every pair "
                  "of reads) times the rounds. The test's bound: less than 40 MB over the 100 requests. Checked "
                  "against a leak of 0.5 MB a request injected into the Autoencoders page (a copy of the tree): "
                  "measured 43-50 MB, and the test failed.", "",
                  "| page | sessions | requests | idle after warm-up (MB) | idle at the end (MB) | reads (MB) | "
                  "growth, trend (MB) | s / request | peak RSS (MB) |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for name, r in rows:
            if not r:
                lines.append(f"| {name} | – | – | – | – | – | – | – | – |")
            else:
                low, high = r["rss_range_mb"]
                lines.append(f"| {name} | {r['sessions']} | {r['requests']} | {r['rss_before_mb']:,.1f} | "
                             f"{r['rss_after_mb']:,.1f} | {low:,.0f}-{high:,.0f} | {r['growth_mb']:+.1f} | "
                             f"{r['seconds_per_request']:.2f} | {r['server_peak_rss_mb']:,.0f} |")
    if tests["durations"]:
        lines += ["", "Test durations (call phase, seconds): " + ", ".join(
            f"`{name}` {seconds:.0f}" for name, seconds in sorted(tests["durations"].items(), key=lambda kv: -kv[1])
            if seconds >= 1) + "."]
    return lines


def main() -> None:
    """Build the corpus, send every case, run the reliability tests, write the markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-only", action="store_true", help="skip the tests (section 2)")
    parser.add_argument("--out", type=Path, help=f"the markdown to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    command = "python -m benchmarks.reliability" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    began = time.perf_counter()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="genlib-hostile-") as tmp_name:
        tmp = Path(tmp_name)
        cases, marker = build_corpus(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GENLIB_RUNS_DIR": str(tmp / "runs"),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        results = []
        for i, case in enumerate(cases, 1):
            print(f"[{i}/{len(cases)}] {case.entry}: {case.what}", flush=True)
            result = run_case(case, tmp, env)
            if case.entry == "cli" and case.arg[0] == "sample" and result["outcome"] == "accepted":
                result["message"] += inspect_npz(Path(case.arg[case.arg.index("--out") + 1]))
            result["code_ran"] = marker.exists()
            marker.unlink(missing_ok=True)
            results.append((case, result))
        corpus_s = time.perf_counter() - began
        tests = None
        if not args.corpus_only:
            print("running tests/test_reliability.py", flush=True)
            tests = run_tests(tmp / "figures.json")
    total_s = time.perf_counter() - began

    crashed = [(c, r) for c, r in results if r["outcome"] == "crashed" or r.get("traceback")]
    ran = [(c, r) for c, r in results if r["code_ran"]]
    unsafe = [(c, r) for c, r in results if r["outcome"] != c.safe and r["outcome"] != "crashed"]
    cpu = platform.processor() or platform.machine()
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    lines = ["# Reliability: a hostile corpus, killed saves, a full disk, NaN, Cancel, eight sessions, memory", "",
             "```", command, "```", "",
             f"Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {cpu}, {os.cpu_count()} CPU cores, "
             f"{memory_gb:.0f} GB of memory, no GPU, no network; torch {torch.__version__}, Python "
             f"{platform.python_version()}, the machine shared with other work (load average "
             f"{os.getloadavg()[0]:.1f} at the end). The whole benchmark took {total_s / 60:.1f} minutes "
             f"(the corpus {corpus_s / 60:.1f}).", "",
             "## 1. The hostile corpus", "",
             f"{len(results)} cases, each built by the script in a temporary folder and sent to one real entry "
             "point in a fresh process (`python -m genlib ...`, or a small runner calling `genlib.checkpoints."
             "load_model` / `genlib.data.load_upload` / `load_photo_upload` as the pages do; a model that loads "
             "also draws 2 samples). Each process has a "
             f"{TIMEOUT_S} s timeout and a {ADDRESS_SPACE_GB} GB address-space cap; `HF_HUB_OFFLINE=1` except "
             "where the case says no network. **Outcome**: refused (the entry point's own error in words: "
             "CheckpointError, UploadError, or the CLI's one-line `error:` and exit 2), accepted (what came out), "
             "or crashed (a traceback, another exception type, a signal, a hang). **Safe** is what a safe lab "
             "does with that input. The pickles carry a payload that touches a marker file when unpickled; "
             "**code ran** says whether it ever appeared.", "",
             f"**Summary**: {sum(r['outcome'] == 'refused' for _, r in results)} refused, "
             f"{sum(r['outcome'] == 'accepted' for _, r in results)} accepted, {len(crashed)} crashed; "
             f"pickled code ran {len(ran)} times; {len(unsafe)} outcome(s) other than the safe one without a crash.",
             ""]
    if crashed:
        lines += ["Crashed: " + "; ".join(f"{c.what} ({trim(r['message'], 90)})" for c, r in crashed) + ".", ""]
    if unsafe:
        lines += ["Not the safe outcome: " + "; ".join(f"{c.what} ({r['outcome']})" for c, r in unsafe) + ".", ""]
    lines += ["| # | group | input | entry point | outcome | message or result (trimmed) | safe | code ran | s | "
              "peak MB |", "|---:|---|---|---|---|---|---|---|---:|---:|"]
    for i, (case, r) in enumerate(results, 1):
        entry = f"`genlib {case.arg[0]}`" if case.entry == "cli" else f"`{case.entry}`"
        outcome = r["outcome"] + (" (traceback)" if r.get("traceback") and r["outcome"] != "crashed" else "")
        peak = f"{r['peak_mb']:,.0f}" if "peak_mb" in r else "–"
        lines.append(f"| {i} | {case.group} | {trim(case.what, 80)} | {entry} | **{outcome}** | {trim(r['message'])} | "
                     f"{'yes' if r['outcome'] == case.safe else 'NO'} | {'YES' if r['code_ran'] else 'no'} | "
                     f"{r['seconds']:.1f} | {peak} |")
    lines += ["", "Peak MB is the runner's ru_maxrss (Python, torch and genlib take about 400-600 MB before the "
              "case itself); CLI cases do not report it. Seconds include starting Python and importing torch.", ""]
    if tests is not None:
        lines += figures_section(tests)
    else:
        lines += ["## 2. Faults, load and memory", "", "Not measured in this run (`--corpus-only`)."]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    out = args.out or OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
