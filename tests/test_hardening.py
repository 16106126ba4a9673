"""What a hostile probe found, each fixed and held here with the real thing: real files, real
subprocesses of ``python -m genlib``, real diffusers configs, the real pages through AppTest.

1. A source no path can be (5,000 characters, ``~nobody``) is a short CheckpointError, in the loader,
   in both CLI commands that take one, and on a page (which crashed on its next rerun).
2. Every page's uploader takes exactly the files its loader reads (one table per kind), and a file that
   arrives under another name reaches the loader, which refuses it in words, instead of a Streamlit
   exception that took the page and its uploader away.
3. EXIF orientation is applied to digit and photo uploads alike.
4. A decompression bomb is refused as too many pixels, with the count and the limit.
5. A diffusers UNet config that asks for an impossible size is refused from its parameter count (built on
   the meta device) before any weight is allocated.
6. A model_index.json naming a class outside diffusers is refused, and nothing it names is imported.
7. ``genlib eval`` and ``genlib compare`` check their sources before they load the evaluator.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image
from safetensors.torch import save_file
from streamlit.elements.lib.file_uploader_utils import enforce_filename_restriction, normalize_upload_file_type
from test_app_pages import captions, open_ae_page, open_page, run_clean, texts

import genlib
from genlib.checkpoints import MAX_SOURCE_CHARS, CheckpointError, is_local_folder, resolve
from genlib.data import (DIGIT_UPLOAD_FORMATS, MAX_UPLOAD_PIXELS, PHOTO_UPLOAD_FORMATS, UploadError, bundled_photo,
                         load_photo_upload, load_upload, mnist, photo_png, upload_types)
from genlib.families.diffusion.pipelines import MAX_UNET_PARAMETERS, SCHEDULER_CLASSES

ROOT = Path(__file__).resolve().parent.parent
LONG = "a" * 5000
SHORT_MESSAGE = 300   # characters: a message that quotes a prefix, not the whole source


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlib", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


# -- 1. sources no path can be ----------------------------------------------------------------------------
@pytest.mark.parametrize("source, says", [
    (LONG, f"at most {MAX_SOURCE_CHARS:,} characters"),       # past PATH_MAX: refused before any look
    ("b" * 300, "too long for a path"),                         # under it, but one name past NAME_MAX (OSError 36)
    ("c" * 150 + "/d", "not a folder"),                         # looks like owner/name, longer than the hub allows
    ("~no-such-user-here/model", "names no home folder"),      # Path.expanduser raises RuntimeError
])
def test_a_source_no_path_can_be_is_a_short_checkpoint_error(source, says):
    for load in (resolve, genlib.load_model):
        with pytest.raises(CheckpointError) as refused:
            load(source)
        message = str(refused.value)
        assert says in message and len(message) < SHORT_MESSAGE and "Errno" not in message, message
        assert len(source) < 100 or source[:100] not in message, message  # a prefix is quoted, never all of it
    assert not is_local_folder(source)


@pytest.mark.parametrize("command", [["sample", LONG, "--out", "never.npz"], ["eval", LONG]])
def test_both_cli_commands_say_a_long_source_in_one_short_line(command, tmp_path):
    done = cli(*command)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < SHORT_MESSAGE, done.stderr[-2000:]
    assert lines[0].startswith("error: no checkpoint called 'aaaa") and "5,000 characters" in lines[0]


def test_a_page_shows_a_long_source_in_words_and_survives_the_next_rerun(app_env):
    at = open_ae_page()
    at.text_input(key="ae_model_source").input(LONG)
    run_clean(at)
    errors = texts(at.error)
    assert len(errors) == 1 and len(errors[0]) < SHORT_MESSAGE and "Errno" not in errors[0], errors
    run_clean(at)  # the remembered failure was checked with Path.is_dir, which raised OSError here
    assert texts(at.error) == errors


# -- 2. uploaders and loaders agree ---------------------------------------------------------------------
def _saved(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _digit() -> Image.Image:
    return Image.fromarray((mnist().test_images[0, 0].numpy() * 255).astype(np.uint8))


@pytest.mark.parametrize("formats, load", [(DIGIT_UPLOAD_FORMATS, load_upload),
                                           (PHOTO_UPLOAD_FORMATS, load_photo_upload)])
def test_each_uploader_takes_every_file_its_loader_reads(formats, load):
    allowed = normalize_upload_file_type(upload_types(formats))  # what st.file_uploader(type=...) makes of it
    for fmt, endings in formats.items():
        data = _saved(_digit().convert("RGB"), fmt)
        load(data)  # the loader reads the format ...
        for ending in endings:  # ... and Streamlit's own check takes its names
            enforce_filename_restriction(f"digit.{ending}", allowed)
            enforce_filename_restriction(f"DIGIT.{ending.upper()}", allowed)
    # A file under another name is not Streamlit's to refuse: the loader reads the content and says why.
    enforce_filename_restriction("drawing.svg", allowed)
    with pytest.raises(UploadError, match="not a readable image"):
        load(b"<svg xmlns='http://www.w3.org/2000/svg' width='28' height='28'><circle r='9'/></svg>")


def test_the_digit_uploader_refuses_another_file_in_words_and_stays_usable(app_env):
    at = open_ae_page("Reconstructions")
    uploader = at.file_uploader(key="ae_upload")
    assert uploader.allowed_type == list(normalize_upload_file_type(upload_types(DIGIT_UPLOAD_FORMATS)))
    # AppTest sends the file as a forged request would: the browser's own check never sees it
    uploader.upload("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    run_clean(at)  # before: StreamlitAPIException "Invalid file extension", and no page at all
    assert any(e.startswith("Could not use drawing.svg: this file is not a readable image") for e in texts(at.error))
    at.file_uploader(key="ae_upload").upload("digit.gif", _saved(_digit(), "GIF"), "image/gif")  # GIF: read, and taken
    run_clean(at)
    assert not at.error, texts(at.error)
    assert "your digit (28x28)" in captions(at)


def test_the_diffusion_uploader_takes_what_load_upload_reads(app_env):
    from test_app_diffusion import open_diffusion

    at = open_diffusion("Editing")
    at.radio(key="dif_edit_mode").set_value("SDEdit")
    at.radio(key="dif_edit_source").set_value("my own image")
    run_clean(at)
    assert at.file_uploader(key="dif_upload").allowed_type == list(
        normalize_upload_file_type(upload_types(DIGIT_UPLOAD_FORMATS)))
    for name, fmt in (("digit.webp", "WEBP"), ("digit.tiff", "TIFF")):
        at.file_uploader(key="dif_upload").upload(name, _saved(_digit(), fmt), f"image/{fmt.lower()}")
        run_clean(at)  # before: the uploader took only png/jpg/jpeg, so each raised inside Streamlit
        assert not at.error, texts(at.error)
        assert not at.button(key="dif_sde_run").disabled  # the digit was read: SDEdit can run on it


def test_the_photo_uploader_takes_what_load_photo_upload_reads(app_env):
    at = open_page("pages/restore.py", timeout=300)
    at.radio(key="rst_source").set_value("Upload your own")
    run_clean(at)
    assert at.file_uploader(key="rst_upload").allowed_type == list(
        normalize_upload_file_type(upload_types(PHOTO_UPLOAD_FORMATS)))
    at.file_uploader(key="rst_upload").upload("cat.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                              "image/svg+xml")
    run_clean(at)
    assert any(e.startswith("That file cannot be used: this file is not a readable image") for e in texts(at.error))
    photo = bundled_photo("chelsea")[:64, :80]
    gif = _saved(Image.open(io.BytesIO(photo_png(photo))).convert("P"), "GIF")  # was read, yet not listed
    at.file_uploader(key="rst_upload").upload("cat.gif", gif, "image/gif")
    run_clean(at)
    assert not at.error, texts(at.error)
    assert "80x64, colour" in texts(at.caption)


# -- 3. EXIF orientation ----------------------------------------------------------------------------------
def _jpeg_turned(pixels: np.ndarray, orientation: int) -> bytes:
    """A real JPEG of ``pixels`` (grey) whose EXIF says how to turn it for showing."""
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def test_exif_orientation_is_applied_to_digit_and_photo_uploads():
    stored = np.zeros((28, 28), dtype=np.uint8)
    stored[:7] = 255  # a bright bar along the top of the stored pixels
    data = _jpeg_turned(stored, 6)  # 6: turn 90 degrees clockwise to show, so the bar stands on the right
    digit = load_upload(data, invert_if_light=False)[0, 0]
    photo = load_photo_upload(data).image[..., 0]
    for shown in (digit.numpy(), photo):
        assert shown[:, -7:].mean() > 0.9 and shown[:, :7].mean() < 0.1, shown.mean(axis=0)
        assert shown[:7].mean() < 0.4  # not the stored top bar (0.25 here is the bar's crossing)


# -- 4. decompression bombs -------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _gif_header_only(width: int, height: int) -> bytes:
    data = bytearray(_saved(Image.new("L", (8, 8)), "GIF"))
    data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("data, pixels", [
    (_png_header_only(100_000, 100_000), "10,000,000,000"),   # past PIL's own limit: DecompressionBombError
    (_gif_header_only(30_000, 30_000), "900,000,000"),
    (_png_header_only(5000, 5000), "5000x5000"),              # under PIL's, over ours
])
def test_a_decompression_bomb_is_refused_as_too_many_pixels(data, pixels):
    for load in (load_upload, load_photo_upload):
        with pytest.raises(UploadError) as refused:
            load(data)
        message = str(refused.value)
        assert message.startswith("the image has too many pixels") and pixels in message, message
        assert f"the limit is {MAX_UPLOAD_PIXELS:,} pixels" in message
        assert "Error" not in message and "readable" not in message


# -- 5 and 6. diffusers folders ----------------------------------------------------------------------------
def _pipeline(folder: Path, index: dict | None = None, **unet_config) -> Path:
    """A diffusers pipeline folder written by hand: model_index.json, unet/ (config + a token safetensors
    file), scheduler/. ``unet_config`` goes over a tiny valid UNet2DModel config."""
    unet = {"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 8,
            "add_attention": False, "attention_head_dim": 8, **unet_config}
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    save_file({"token": torch.zeros(1)}, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    DDPMScheduler(num_train_timesteps=50).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(index or {"_class_name": "DDPMPipeline",
                                                                  "unet": ["diffusers", "UNet2DModel"],
                                                                  "scheduler": ["diffusers", "DDPMScheduler"]}))
    return folder


def test_an_impossible_unet_is_refused_from_its_parameter_count_before_allocating(tmp_path):
    # 2 levels of 64 and 262,144 channels: about 7 * 10^12 parameters (28 TB), built for real before
    folder = _pipeline(tmp_path / "huge", block_out_channels=[64, 262_144], norm_num_groups=32)
    started = time.monotonic()
    with pytest.raises(CheckpointError) as refused:
        genlib.load_model(folder)
    message = str(refused.value)
    count = re.search(r"would have ([\d,]+) parameters", message)
    assert count and int(count.group(1).replace(",", "")) > 10**12, message
    assert f"at most {MAX_UNET_PARAMETERS:,} parameters" in message and "alloc" not in message
    assert time.monotonic() - started < 60  # shapes only: the meta device allocates nothing

    # a genlib folder (its own config.json) whose unet/config.json asks for the same is refused the same way
    small = genlib.get_family("diffusion").Config.from_dict({"sample_size": 8, "base_channels": 8, "levels": 2,
                                                             "attention": False})
    mine = _pipeline(tmp_path / "mine", block_out_channels=[8, 1_000_000])
    (mine / "config.json").write_text(json.dumps({"format": 1, "family": "diffusion", "model": small.to_dict()}))
    with pytest.raises(CheckpointError, match="parameters"):
        genlib.load_model(mine)


def test_a_unet_too_deep_to_build_is_refused_without_building(tmp_path):
    # genlib's own config.json is small and valid; only the UNet's config asks for 200 layers per block
    small = genlib.get_family("diffusion").Config.from_dict({"sample_size": 8, "base_channels": 8, "levels": 2,
                                                             "attention": False})
    folder = _pipeline(tmp_path / "deep", layers_per_block=200)
    (folder / "config.json").write_text(json.dumps({"format": 1, "family": "diffusion", "model": small.to_dict()}))
    with pytest.raises(CheckpointError, match="1 to 8 layers_per_block"):
        genlib.load_model(folder)


@pytest.fixture
def evil_package(tmp_path, monkeypatch):
    """A real importable package ``mypackage`` whose import leaves a mark: proof that nothing imported it."""
    marker = tmp_path / "imported"
    package = tmp_path / "site" / "mypackage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                         "class EvilUNet: pass\nclass EvilPipeline: pass\nclass EvilScheduler: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield marker
    sys.modules.pop("mypackage", None)


@pytest.mark.parametrize("index, says", [
    ({"unet": ["mypackage", "EvilUNet"], "scheduler": ["diffusers", "DDPMScheduler"]}, "outside diffusers"),
    ({"unet": ["mypackage", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}, "outside diffusers"),
    ({"unet": ["diffusers", "UNet2DModel"], "scheduler": ["mypackage", "EvilScheduler"]}, "outside diffusers"),
    ({"_class_name": "EvilPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]},
     "pipeline class 'EvilPipeline'"),
    ({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DModel"],
      "scheduler": ["diffusers", "DDPMScheduler"]}, "pipeline class 'StableDiffusionPipeline'"),
    ({"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]},
     "one UNet2DModel and one scheduler"),
    ({"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"], "../../elsewhere":
      ["diffusers", "DDPMScheduler"]}, "not a part name"),
    ({"unet": [], "scheduler": ["diffusers", "DDPMScheduler"]}, "one UNet2DModel and one scheduler"),
])
def test_a_pipeline_naming_other_classes_is_refused_and_nothing_is_imported(index, says, tmp_path, evil_package):
    folder = _pipeline(tmp_path / "evil", {"_class_name": "DDPMPipeline", **index})
    with pytest.raises(CheckpointError) as refused:
        genlib.load_model(folder)
    message = str(refused.value)
    assert says in message and "DDPMPipeline" in message and SCHEDULER_CLASSES[0] in message, message
    assert not evil_package.exists() and "mypackage" not in sys.modules


def test_a_diffusers_pipeline_of_its_own_classes_still_loads(tmp_path):
    folder = _pipeline(tmp_path / "ok")
    unet = UNet2DModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))
    unet.save_pretrained(folder / "unet", safe_serialization=True)  # real weights over the token file
    model, info = genlib.load_model(folder)
    assert info.family == "diffusion" and model.sample(1, steps=2).shape == (1, 1, 8, 8)


# -- 7. sources before the evaluator ----------------------------------------------------------------------
def test_eval_and_compare_check_their_sources_before_loading_the_evaluator(tmp_path):
    # No evaluator in this checkpoints folder: a command that loaded it first would fail on that instead.
    env = {"GENLIB_CHECKPOINTS": str(tmp_path / "no-checkpoints-here"), "GENLIB_RUNS_DIR": str(tmp_path / "runs")}
    done = cli("eval", "/no/such/path", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: no checkpoint called '/no/such/path': not a folder, not a shipped or "
                                   "trained run, and not a Hugging Face id of the form owner/name"), done.stderr
    done = cli("compare", "/no/such/path", "/nor/this", "--out", str(tmp_path / "report"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "evaluator" not in done.stderr, done.stderr
    assert "error: /no/such/path: no checkpoint called" in done.stderr and "error: /nor/this:" in done.stderr
    assert done.stderr.strip().endswith("error: none of the given checkpoints could be compared")
    assert not (tmp_path / "report").exists()


# -- endless, special and unwritable files (found by benchmarks/reliability.py) ------------------------------
def test_endless_and_special_files_are_refused_without_reading_them(tmp_path):
    from genlib.checkpoints import CheckpointError as _CheckpointError
    from genlib.checkpoints import read_info
    from genlib.data import UploadError as _UploadError
    from genlib.data import bundled_photo, photo_png, read_photo_file

    folder = tmp_path / "zero-config"
    folder.mkdir()
    (folder / "config.json").symlink_to("/dev/zero")
    with pytest.raises(_CheckpointError, match="config.json is not a regular file"):
        read_info(folder)
    with pytest.raises(_UploadError, match="/dev/zero is not a regular file"):
        read_photo_file("/dev/zero")
    root = Path(__file__).resolve().parent.parent
    photo = tmp_path / "p.png"
    photo.write_bytes(photo_png(bundled_photo("coins")[:32, :32]))
    for args in (["denoise", "/dev/zero", "--out", str(tmp_path / "o.png"), "--method", "wavelet"],
                 ["denoise", str(photo), "--out", "/proc/denoised.png", "--method", "wavelet"]):
        proc = subprocess.run([sys.executable, "-m", "genlib", *args], cwd=root, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: "), proc.stderr
