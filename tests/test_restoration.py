"""Photo restoration (genlib/families/restoration and genlib.data's photos): uploads, noise, classical
methods, seamless tiles, the denoise / upscale CLI. Real photos, real tiny CNNs, real files; no mocks."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlib.data import (HELD_OUT_PHOTOS, TRAINING_PHOTOS, UploadError, bundled_photo, load_photo_upload, photo_png,
                         training_set)
from genlib.families.restoration import (DnCNN, DnCNNConfig, ESPCN, ESPCNConfig, ResUNet, ResUNetConfig, classical,
                                        restore, tiles)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A 96x96 colour crop of a held-out photo."""
    return bundled_photo("astronaut")[100:196, 200:296].copy()


def png_bytes(array: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


# -- data -----------------------------------------------------------------------------------------------------
def test_held_out_photos_are_never_trained_on_and_patches_are_fixed():
    assert not set(HELD_OUT_PHOTOS) & set(TRAINING_PHOTOS)
    a, labels = training_set("photos")
    assert a.shape[1:] == (3, 48, 48) and 0 <= float(a.min()) and float(a.max()) <= 1 and (labels == 0).all()
    assert torch.equal(a[:5], training_set("photos")[0][:5])


def test_uploads_keep_their_colour_mode_and_are_read_safely():
    rgb = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    up = load_photo_upload(png_bytes(rgb))
    assert up.image.shape == (40, 60, 3) and np.allclose(up.image * 255, rgb, atol=0.51)
    grey = load_photo_upload(png_bytes(rgb[..., 0]))
    assert grey.image.shape == (40, 60, 1)
    deep = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    sixteen = load_photo_upload(png_bytes(deep, format="TIFF"))
    assert sixteen.image.shape == (40, 60, 1) and abs(float(sixteen.image.max()) - 1) < 1e-3
    assert any("16-bit" in n for n in sixteen.notes)
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)  # fully transparent black: becomes white
    assert np.allclose(load_photo_upload(png_bytes(rgba)).image, 1.0)
    for bad, why in ((b"", "empty"), (b"not an image at all", "not a readable image"),
                     (png_bytes(rgb)[:60], "not a readable image")):
        with pytest.raises(UploadError, match=why):
            load_photo_upload(bad)


def test_exif_orientation_is_applied_and_big_uploads_are_downscaled():
    tall = np.zeros((30, 20, 3), dtype=np.uint8)
    img = Image.fromarray(tall)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    up = load_photo_upload(buf.getvalue())
    assert up.image.shape[:2] == (20, 30) and "EXIF orientation applied" in up.notes
    big = load_photo_upload(png_bytes(np.zeros((400, 300, 3), dtype=np.uint8)), max_pixels=30_000)
    assert big.downscaled and big.original_size == (300, 400)
    assert big.image.shape[0] * big.image.shape[1] <= 30_000 * 1.02


# -- noise and classical methods --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(classical.NOISE_KINDS))
def test_noise_is_reproducible_in_range_and_checked(crop, kind):
    level = classical.NOISE_KINDS[kind][2]
    a, b = classical.add_noise(crop, kind, level, seed=3), classical.add_noise(crop, kind, level, seed=3)
    assert np.array_equal(a, b) and a.shape == crop.shape and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, crop)
    with pytest.raises(ValueError, match="out of range"):
        classical.add_noise(crop, kind, classical.NOISE_KINDS[kind][1][1] + 1)


def test_the_noise_estimate_reads_a_known_gaussian_level(crop):
    noisy = classical.add_noise(bundled_photo("chelsea"), "gaussian", 25, seed=0)
    assert abs(classical.estimate_sigma(noisy) * 255 - 25) < 4


@pytest.mark.parametrize("method", list(classical.DENOISERS))
def test_every_classical_denoiser_improves_a_noisy_photo(crop, method):
    noisy = classical.add_noise(crop, "gaussian", 25, seed=0)
    out = classical.denoise_with(method, noisy, 25 / 255)
    assert out.shape == crop.shape and out.dtype == np.float32
    assert classical.psnr_ssim(out, crop)[0] > classical.psnr_ssim(noisy, crop)[0] + 1.0, method


def test_grey_photos_stay_grey_through_every_method(crop):
    grey = crop.mean(axis=2, keepdims=True)
    noisy = classical.add_noise(grey, "gaussian", 25, seed=0)
    for method in ("wavelet", "nl-means", "bm3d"):
        assert classical.denoise_with(method, noisy, 25 / 255).shape == grey.shape
    model = DnCNN(DnCNNConfig(depth=3, width=8)).eval()
    assert restore.denoise("tiny", noisy, model=model).image.shape == grey.shape
    assert classical.UPSCALERS["lanczos"].run(grey, 2).shape == (192, 192, 1)


# -- tiles ----------------------------------------------------------------------------------------------------
def test_tiles_give_exactly_the_whole_image_result():
    torch.manual_seed(0)
    photo = bundled_photo("coffee")[:150, :170]
    den = DnCNN(DnCNNConfig(depth=4, width=8)).eval()
    whole = den.denoise(torch.from_numpy(photo.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    seen = []
    tiled = tiles.restore_tiled(den.denoise, photo, margin=den.receptive_radius, tile=64,
                                progress=lambda f, m: seen.append(f))
    assert np.abs(tiled - whole).max() < 1e-5 and seen[-1] == 1.0 and len(seen) == 9
    sr = ESPCN(ESPCNConfig(scale=2, width=8)).eval()
    whole = sr.upscale(torch.from_numpy(photo.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    tiled = tiles.restore_tiled(sr.upscale, photo, scale=2, margin=sr.receptive_radius, tile=64)
    assert tiled.shape == (300, 340, 3) and np.abs(tiled - whole).max() < 1e-5


def test_the_unet_denoiser_tiles_without_seams_and_takes_any_size():
    """Its margin keeps the quarter-resolution grid of every tile aligned with the whole photo's, so the
    tiles agree with one pass; odd sizes are padded inside the net and cropped back."""
    torch.manual_seed(0)
    photo = bundled_photo("coffee")[:150, :170]
    net = ResUNet(ResUNetConfig(width=4, blocks=1)).eval()
    assert net.receptive_radius % 4 == 0
    whole = net.denoise(torch.from_numpy(photo.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    tiled = tiles.restore_tiled(net.denoise, photo, margin=net.receptive_radius, tile=64)
    assert tiled.shape == photo.shape and np.abs(tiled - whole).max() < 1e-5
    for h, w in [(1, 1), (2, 7), (33, 5)]:
        assert net.denoise(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_a_model_of_the_wrong_kind_is_refused(tmp_path):
    with pytest.raises(Exception, match="cannot denoise"):
        restore.denoise("vae-mnist", np.zeros((8, 8, 3), dtype=np.float32))


# -- the CLI ----------------------------------------------------------------------------------------------------
def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_denoise_and_upscale_keep_size_and_colour_mode(tmp_path, crop):
    listed = cli("denoise", "--list")
    assert listed.returncode == 0 and all(m in listed.stdout for m in classical.DENOISERS)
    noisy = classical.add_noise(crop, "gaussian", 25, seed=0)
    (tmp_path / "noisy.png").write_bytes(photo_png(noisy))
    (tmp_path / "grey.png").write_bytes(photo_png(noisy.mean(axis=2, keepdims=True)))
    done = cli("denoise", str(tmp_path / "noisy.png"), "--out", str(tmp_path / "clean.png"), "--method", "wavelet",
               "--sigma", "25")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "clean.png") as img:
        assert img.size == (96, 96) and img.mode == "RGB"
        restored = np.asarray(img, dtype=np.float32)[..., :3] / 255
    assert classical.psnr_ssim(restored, crop)[0] > classical.psnr_ssim(noisy, crop)[0]
    done = cli("denoise", str(tmp_path / "grey.png"), "--out", str(tmp_path / "grey-clean.png"), "--method", "tv")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "grey-clean.png") as img:
        assert img.mode == "L" and img.size == (96, 96)
    up = cli("upscale", str(tmp_path / "noisy.png"), "--out", str(tmp_path / "up.png"), "--scale", "4",
             "--method", "bicubic")
    assert up.returncode == 0, up.stderr
    with Image.open(tmp_path / "up.png") as img:
        assert img.size == (384, 384)
    bad = cli("denoise", str(tmp_path / "noisy.png"), "--out", str(tmp_path / "x.png"), "--sigma", "300")
    assert bad.returncode == 2 and "between 0 and 255" in bad.stderr
    missing = cli("denoise", str(tmp_path / "nope.png"), "--out", str(tmp_path / "x.png"), "--method", "tv")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_cli_runs_a_learned_model_it_is_given(tmp_path, crop):
    trained = cli("train", "dncnn", "--out", str(tmp_path / "tiny-dn"), "--depth", "3", "--width", "8",
                  "--max-steps", "3", "--batch-size", "8")
    assert trained.returncode == 0, trained.stderr
    (tmp_path / "in.png").write_bytes(photo_png(crop))
    done = cli("denoise", str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png"), "--model",
               str(tmp_path / "tiny-dn"))
    assert done.returncode == 0, done.stderr
    wrong = cli("upscale", str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png"), "--model",
                str(tmp_path / "tiny-dn"))
    assert wrong.returncode == 2 and "cannot upscale" in wrong.stderr


@pytest.mark.parametrize("method", ["dae-mnist", "diffusion-mnist"])
def test_the_labs_digit_models_denoise_a_digit(method):
    from genlib.data import mnist

    digit = mnist().test_images[3, 0].numpy()[..., None]
    noisy = classical.add_noise(digit, "gaussian", 75, seed=0)
    result = restore.denoise(method, noisy, 75 / 255)
    assert result.image.shape == (28, 28, 1)
    assert classical.psnr_ssim(result.image, digit)[0] > classical.psnr_ssim(noisy, digit)[0] + 2, method
    with pytest.raises(Exception, match="28x28 grey digits"):
        restore.denoise(method, np.zeros((40, 40, 1), dtype=np.float32))


def test_training_logs_a_validation_psnr_on_held_out_crops():
    model = DnCNN(DnCNNConfig(depth=3, width=8))
    batch = (training_set("photos")[0][:8], torch.zeros(8))
    assert "val_psnr" in model.training_step(batch, 0).scalars and model.training
    assert "val_psnr" not in model.training_step(batch, 1).scalars
    sr = ESPCN(ESPCNConfig(scale=2, width=8))
    assert sr.training_step(batch, 50).scalars["val_psnr"] > 10


def test_cli_takes_a_file_larger_than_a_page_upload(tmp_path):
    from genlib.data import MAX_UPLOAD_BYTES

    noise = (np.random.default_rng(0).random((1500, 1500, 3)) * 255).astype(np.uint8)  # incompressible
    (tmp_path / "big.png").write_bytes(png_bytes(noise))
    assert (tmp_path / "big.png").stat().st_size > MAX_UPLOAD_BYTES
    with pytest.raises(UploadError, match="limit"):
        load_photo_upload((tmp_path / "big.png").read_bytes())  # a page upload is refused ...
    done = cli("denoise", str(tmp_path / "big.png"), "--out", str(tmp_path / "out.png"), "--method", "wavelet")
    assert done.returncode == 0, done.stderr  # ... the same local file is fine for the CLI
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (1500, 1500)
