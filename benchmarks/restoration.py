"""Photo restoration on the held-out photos: every denoiser and upscaler, scored and timed on this CPU.

    python -m benchmarks.restoration                # the full benchmark (about 10-20 minutes on 2 cores)
    python -m benchmarks.restoration --quick --out /tmp/restoration.md   # smoke test: one photo, σ=25, x2

1. Denoising: the held-out photos (genlib.data.HELD_OUT_PHOTOS, each in its own colour mode) with
   Gaussian noise σ = 15, 25, 50 (0-255 scale, ``classical.add_noise(..., seed=0)``) through every
   method of ``restore.denoise_methods()``: mean PSNR and SSIM over the photos and seconds per
   megapixel. Classical methods are given the true σ; one more row runs non-local means with σ
   estimated from the photo. The learned model is blind: it is never told σ.
2. Speed: a 512x512 colour photo (the astronaut, σ=25) through the shipped learned denoiser (median of
   3 runs after a warm-up), and a 12-megapixel photo (the noisy astronaut tiled to 3000x4000x3) through
   ``restore.denoise`` (tiled), timed, with the peak resident memory of a fresh subprocess that does
   only that; checked against the targets "≤ 2 s for 512x512" and "12 MP without running out of memory".
3. Super-resolution x2 and x4: each photo cropped to a multiple of the scale, shrunk with
   ``classical.downscale`` and brought back by bicubic, Lanczos and the shipped learned model: mean
   PSNR and SSIM against the original, and seconds per output megapixel.

Writes benchmarks/restoration.md (or ``--out``) and prints it. With ``--quick`` and no ``--out`` it
only prints, so a smoke test never overwrites the full results. A measurement, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genlib.data import HELD_OUT_PHOTOS, bundled_photo
from genlib.families.restoration import classical, restore
from genlib.families.restoration.classical import DENOISERS, UPSCALERS

OUT = Path(__file__).with_suffix(".md")
ROOT = Path(__file__).resolve().parent.parent
SEED = 0
SIGMAS = (15, 25, 50)
SCALES = (2, 4)
SPEED_PHOTO, SPEED_SIGMA = "astronaut", 25
BIG_SHAPE = (3000, 4000)          # (H, W): 12 megapixels
TARGET_512_S = 2.0
ESTIMATED_NLM = "nl-means (σ estimated)"
SKIMAGE_DENOISERS = tuple(n for n in DENOISERS if n != "bm3d")   # BM3D is the bm3d package, not scikit-image
# Published PSNR on BSD68 at σ=25 (grey): other test photos, so a sense of scale only.
REFERENCES = ("BM3D 28.57 dB and DnCNN-S 29.23 dB (Zhang et al. 2017, BSD68, grey, σ=25); "
              "SwinIR and Restormer ≈ 29.5 dB on the same set")


def megapixels(image: np.ndarray) -> float:
    """Pixels of (H,W,C) in millions."""
    return image.shape[0] * image.shape[1] / 1e6


def rss_mb() -> float:
    """This process's current resident memory in MB (Linux /proc), or nan elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (ru_maxrss is in KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def total_memory_gb() -> float:
    """Physical memory of the machine in GB."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError):
        return float("nan")


def noisy_speed_photo() -> np.ndarray:
    """The 512x512 colour astronaut with Gaussian noise σ=25 (seed 0)."""
    return classical.add_noise(bundled_photo(SPEED_PHOTO), "gaussian", SPEED_SIGMA, seed=SEED)


# -- 1. denoising ---------------------------------------------------------------------------------------------
def denoise_tables(photos: dict[str, np.ndarray], sigmas: tuple[int, ...], model, model_name: str):
    """{sigma: [(method, psnr, ssim, seconds per MP)]} sorted by PSNR, best first."""
    warm = classical.add_noise(photos[next(iter(photos))][:64, :64], "gaussian", 25, seed=SEED)
    for name in DENOISERS:   # first calls load libraries (bm3d's native one) and fill caches: not timed
        restore.denoise(name, warm, 25 / 255)
    restore.denoise(model_name, warm, model=model)
    tables = {}
    for sigma in sigmas:
        rows = []
        noisy = {name: classical.add_noise(p, "gaussian", sigma, seed=SEED) for name, p in photos.items()}
        runs = [(name, name, sigma / 255) for name in DENOISERS]
        runs += [(ESTIMATED_NLM, "nl-means", None), (model_name, model_name, None)]
        for label, method, given in runs:
            scores, seconds, mp = [], 0.0, 0.0
            for name, clean in photos.items():
                result = restore.denoise(method, noisy[name], given, model=model if method == model_name else None)
                scores.append(classical.psnr_ssim(result.image, clean))
                seconds += result.seconds
                mp += megapixels(clean)
            psnr, ssim = np.mean(scores, axis=0)
            rows.append((label, float(psnr), float(ssim), seconds / mp, [float(v[0]) for v in scores]))
            print(f"  σ={sigma} {label}: {psnr:.2f} dB, SSIM {ssim:.4f}, {seconds / mp:.2f} s/MP", flush=True)
        noisy_scores = [classical.psnr_ssim(noisy[n], p) for n, p in photos.items()]
        mean = np.mean(noisy_scores, axis=0)
        rows.append(("(the noisy input)", float(mean[0]), float(mean[1]), float("nan"),
                     [float(v[0]) for v in noisy_scores]))
        tables[sigma] = sorted(rows, key=lambda r: -r[1])
    return tables


def margin_line(rows, model_name: str, colour: list[bool]) -> str:
    """The learned model's PSNR/SSIM margin over the best scikit-image method and over BM3D (and, when some
    photos are grey, its PSNR margin over the colour photos alone)."""
    by = {r[0]: r for r in rows}
    ours = by[model_name]
    skimage_rows = [r for r in rows if r[0] in SKIMAGE_DENOISERS or r[0] == ESTIMATED_NLM]
    best = max(skimage_rows, key=lambda r: r[1])
    bm3d = by["bm3d"]

    def vs(other) -> str:
        return f"{ours[1] - other[1]:+.2f} dB PSNR, {ours[2] - other[2]:+.4f} SSIM"

    line = (f"**{model_name}** vs the best scikit-image method ({best[0]}): {vs(best)}; "
            f"vs BM3D: {vs(bm3d)}.")
    if any(colour) and not all(colour):
        def colour_mean(r) -> float:
            return float(np.mean([v for v, c in zip(r[4], colour) if c]))

        best_c = max(skimage_rows, key=colour_mean)
        line += (f" On the colour photos alone: {colour_mean(ours):.2f} dB, "
                 f"{colour_mean(ours) - colour_mean(best_c):+.2f} dB vs the best scikit-image method there "
                 f"({best_c[0]}), {colour_mean(ours) - colour_mean(bm3d):+.2f} dB vs BM3D.")
    return line


# -- 2. speed and memory ------------------------------------------------------------------------------------
def speed_512(model, model_name: str) -> tuple[float, list[float]]:
    """Median seconds (and all three) for the 512x512 noisy astronaut through the learned model, after a warm-up."""
    noisy = noisy_speed_photo()
    restore.denoise(model_name, noisy, model=model)
    times = [restore.denoise(model_name, noisy, model=model).seconds for _ in range(3)]
    return statistics.median(times), times


def big_child(source: str, shape: tuple[int, int], threads: int) -> None:
    """In a fresh process: denoise a (H,W,3) tiling of the noisy astronaut; print a JSON line of time and memory."""
    torch.set_num_threads(threads)
    began = time.perf_counter()
    model = restore.load_restorer(source, "denoise")
    load_s = time.perf_counter() - began
    noisy = noisy_speed_photo()
    h, w = shape
    reps = (-(-h // noisy.shape[0]), -(-w // noisy.shape[1]), 1)
    big = np.ascontiguousarray(np.tile(noisy, reps)[:h, :w])
    del noisy
    before, peak_before = rss_mb(), peak_rss_mb()
    result = restore.denoise(source, big, model=model)
    finite = bool(np.isfinite(result.image).all())
    print(json.dumps({"seconds": result.seconds, "load_seconds": load_s, "shape": list(result.image.shape),
                      "photo_mb": big.nbytes / 1e6, "rss_before_mb": before, "peak_before_mb": peak_before,
                      "peak_mb": peak_rss_mb(), "finite": finite}))


def speed_big(source: str, shape: tuple[int, int], threads: int) -> dict:
    """Run ``big_child`` in a subprocess (its peak memory is its own) and return what it measured."""
    cmd = [sys.executable, "-m", "benchmarks.restoration", "--big-child", source, "--big-size",
           f"{shape[1]}x{shape[0]}", "--threads", str(threads)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode}: {done.stderr.strip()[-800:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 3. super-resolution ----------------------------------------------------------------------------------
def sr_tables(photos: dict[str, np.ndarray], scales: tuple[int, ...], sources: dict[int, str]):
    """{scale: [(method, psnr, ssim, seconds per output MP)]} sorted by PSNR, best first."""
    tables = {}
    for s in scales:
        model = restore.load_restorer(sources[s], "upscale")
        pairs = {}
        for name, photo in photos.items():
            h, w = photo.shape[0] // s * s, photo.shape[1] // s * s
            high = np.ascontiguousarray(photo[:h, :w])
            pairs[name] = (high, classical.downscale(high, s))
        warm = pairs[next(iter(pairs))][1][:32, :32]
        for method in UPSCALERS:
            restore.upscale(method, warm, s)
        restore.upscale(sources[s], warm, s, model=model)
        rows = []
        for method in [*UPSCALERS, sources[s]]:
            scores, seconds, mp = [], 0.0, 0.0
            for high, low in pairs.values():
                result = restore.upscale(method, low, s, model=model if method == sources[s] else None)
                assert result.image.shape == high.shape, (method, result.image.shape, high.shape)
                scores.append(classical.psnr_ssim(result.image, high))
                seconds += result.seconds
                mp += megapixels(high)
            psnr, ssim = np.mean(scores, axis=0)
            rows.append((method, float(psnr), float(ssim), seconds / mp, [float(v[0]) for v in scores]))
            print(f"  x{s} {method}: {psnr:.2f} dB, SSIM {ssim:.4f}, {seconds / mp:.3f} s/MP", flush=True)
        tables[s] = sorted(rows, key=lambda r: -r[1])
    return tables


# -- the report --------------------------------------------------------------------------------------------
def table(rows, unit: str, photo_names) -> list[str]:
    """A markdown table of (method, PSNR, SSIM, seconds per MP, PSNR per photo) rows."""
    out = [f"| method | PSNR (dB) | SSIM | {unit} | " + " | ".join(photo_names) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(photo_names)]
    for name, psnr, ssim, spm, each in rows:
        out.append(f"| {name} | {psnr:.2f} | {ssim:.4f} | {'–' if np.isnan(spm) else f'{spm:.3f}'} | "
                   + " | ".join(f"{v:.2f}" for v in each) + " |")
    return out


def describe_photos(photos: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{n} ({p.shape[1]}x{p.shape[0]}, {'grey' if p.shape[2] == 1 else 'colour'})"
                     for n, p in photos.items())


def checkpoint_note(source: str) -> str:
    """Where a learned model came from and how long it trained, from its folder."""
    from genlib.checkpoints import read_info, resolve

    try:
        folder, origin = resolve(source)
        info = read_info(folder, origin)
    except Exception as err:   # noqa: BLE001 - a note, never a failure
        return f"`{source}` ({err})"
    steps = info.train_config.get("max_steps") or info.train_config.get("steps")
    config = ", ".join(f"{k}={v}" for k, v in info.model_config.items() if not isinstance(v, (dict, list)))
    return f"`{info.name}` ({info.family}; {config}{f'; {steps} training steps' if steps else ''})"


def main() -> None:
    """Run the benchmark and write the markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the first held-out photo, σ=25 and x2 (a "
                        "smoke test; the big photo is 1000x750); without --out it only prints")
    parser.add_argument("--out", type=Path, help=f"the markdown to write (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--denoiser", default=restore.SHIPPED_DENOISER,
                        help="the learned denoiser: checkpoint name, folder or hub id")
    parser.add_argument("--upscaler-x2", default=restore.SHIPPED_UPSCALERS[2], help="the learned x2 upscaler")
    parser.add_argument("--upscaler-x4", default=restore.SHIPPED_UPSCALERS[4], help="the learned x4 upscaler")
    parser.add_argument("--big-size", help="WxH of the big photo (default 4000x3000: 12 MP; --quick 1000x750)")
    parser.add_argument("--big-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    big_size = args.big_size or ("1000x750" if args.quick else f"{BIG_SHAPE[1]}x{BIG_SHAPE[0]}")
    width, height = (int(v) for v in big_size.lower().split("x"))
    if args.big_child:
        big_child(args.big_child, (height, width), args.threads)
        return

    command = "python -m benchmarks.restoration" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    began = time.perf_counter()
    names = HELD_OUT_PHOTOS[:1] if args.quick else HELD_OUT_PHOTOS
    photos = {n: bundled_photo(n) for n in names}
    colour = [p.shape[2] == 3 for p in photos.values()]
    sigmas = (SPEED_SIGMA,) if args.quick else SIGMAS
    scales = (2,) if args.quick else SCALES
    torch.manual_seed(SEED)

    load_began = time.perf_counter()
    model = restore.load_restorer(args.denoiser, "denoise")
    load_s = time.perf_counter() - load_began
    print("denoising", flush=True)
    dn = denoise_tables(photos, sigmas, model, args.denoiser)
    print("speed", flush=True)
    median_512, times_512 = speed_512(model, args.denoiser)
    big = speed_big(args.denoiser, (height, width), args.threads)
    print("super-resolution", flush=True)
    sr = sr_tables(photos, scales, {2: args.upscaler_x2, 4: args.upscaler_x4})
    total_s = time.perf_counter() - began

    cpu = platform.processor() or platform.machine()
    lines = ["# Photo restoration: denoising and super-resolution on the held-out photos", "",
             "```", command, "```", "",
             f"Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {cpu}, {os.cpu_count()} CPU cores, "
             f"torch {torch.__version__} with {args.threads} thread(s), no GPU; {total_memory_gb():.0f} GB of "
             f"memory. Noise seed {SEED}. The whole benchmark took {total_s / 60:.1f} minutes.", "",
             f"Photos: {describe_photos(photos)} — genlib.data.HELD_OUT_PHOTOS, never trained on, each scored in "
             "its own colour mode (the learned models see a grey photo as three equal channels and give it "
             "back grey). Learned models: " + "; ".join(checkpoint_note(s) for s in
                                                        [args.denoiser, *(
                                                            [args.upscaler_x2, args.upscaler_x4][:len(scales)])])
             + ".", "",
             "PSNR and SSIM (`classical.psnr_ssim`, scikit-image) are means over the photos; seconds per "
             "megapixel are the total time over the total input (denoising) or output (super-resolution) pixels, "
             "after one untimed warm-up call of each method, with the model already loaded "
             f"(loading the denoiser took {load_s:.2f} s).", "",
             "## 1. Denoising (Gaussian noise)", "",
             "`classical.add_noise(photo, \"gaussian\", σ, seed=0)` (clipped to [0,1], like an 8-bit photo). "
             "The classical methods are told the true σ (σ/255); "
             f"\"{ESTIMATED_NLM}\" is non-local means left to estimate it. The learned model is blind "
             "(trained over σ in [0, 55]) and is never told σ. The columns after the timing are the PSNR "
             "of each photo.", "",
             f"Published reference points: {REFERENCES}. Those are different test photos (and grey only), "
             "so they give a scale, not a comparison with the numbers here.", ""]
    for sigma, rows in dn.items():
        lines += [f"### σ = {sigma}", "", *table(rows, "s / MP", names), "",
                  margin_line(rows, args.denoiser, colour), ""]
    weak = []   # grey photos where the learned denoiser barely beats its input
    for sigma, rows in dn.items():
        by = {r[0]: r for r in rows}
        for i, name in enumerate(names):
            gain = by[args.denoiser][4][i] - by["(the noisy input)"][4][i]
            if not colour[i] and gain < 3:
                weak.append(f"{name} at σ={sigma}: {gain:+.2f} dB over the noisy input")
    if weak:
        lines += ["**The learned denoiser is weak on grey photos** (" + "; ".join(weak) + "). A grey photo goes "
                  "through the colour net as three equal channels with the same noise in each; the model sees "
                  "such crops in training (a quarter of them), yet it still leaves much of a grey photo's "
                  "noise in. Its means above are pulled down by this; the colour-only margins show it "
                  "apart from that.", ""]
    lines += ["## 2. Speed and memory of the learned denoiser", ""]
    verdict = "meets" if median_512 <= TARGET_512_S else "misses"
    lines += [f"- **512x512 colour photo** (the astronaut, σ=25) through `restore.denoise` with `{args.denoiser}`: "
              f"**{median_512:.2f} s** (median of 3 after a warm-up; runs "
              f"{', '.join(f'{t:.2f}' for t in times_512)} s) — {verdict} the target ≤ {TARGET_512_S:g} s."]
    mp = height * width / 1e6
    if "error" in big:
        lines += [f"- **{width}x{height} ({mp:.3g} MP) photo**: failed — {big['error']}"]
    else:
        ok = big["finite"] and list(big["shape"]) == [height, width, 3]
        lines += [f"- **{width}x{height} colour photo ({mp:.3g} MP)** (the noisy astronaut tiled) through "
                  f"`restore.denoise` (tiles): **{big['seconds']:.1f} s** ({big['seconds'] / mp:.2f} s/MP), "
                  f"peak resident memory **{big['peak_mb'] / 1e3:.2f} GB** (ru_maxrss of a fresh process that loads "
                  f"the model ({big['load_seconds']:.1f} s, not counted), builds the photo and denoises it; "
                  f"{big['rss_before_mb'] / 1e3:.2f} GB resident "
                  f"before denoising; the photo itself is {big['photo_mb']:.0f} MB as float32) — "
                  + ("it finished with a full-size, finite result on a machine with "
                     f"{total_memory_gb():.0f} GB: meets the target \"{mp:.3g} MP without running out of memory\"."
                     if ok else "the result was not a full-size finite photo: misses the target.")]
    if args.quick:
        lines += ["", f"(--quick: the big photo is {width}x{height}, not the 12 MP of the target.)"]
    lines += ["", "## 3. Super-resolution", "",
              "Each photo is cropped to a multiple of the scale, shrunk with `classical.downscale` (antialiased "
              "bicubic, the degradation the learned models train on) and brought back through `restore.upscale`; "
              "scored against the cropped original. The last columns are the PSNR of each photo.", ""]
    for s, rows in sr.items():
        by = {r[0]: r for r in rows}
        learned = [args.upscaler_x2, args.upscaler_x4][SCALES.index(s)]
        gain = by[learned][1] - by["bicubic"][1]
        lines += [f"### x{s}", "", *table(rows, "s / output MP", names), "",
                  f"**{learned}** vs bicubic: {gain:+.2f} dB PSNR, {by[learned][2] - by['bicubic'][2]:+.4f} SSIM; "
                  f"vs Lanczos: {by[learned][1] - by['lanczos'][1]:+.2f} dB.", ""]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    out = args.out or (None if args.quick else OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
