"""The restoration CLI: ``python -m genlib denoise INPUT --out OUT.png`` and ``upscale INPUT --out OUT.png --scale 2``.

The output keeps the input's colour mode and size (times the scale for ``upscale``). The default
method is the shipped learned model; ``--list`` names every method.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genlib.cli import Command, stderr_progress
from genlib.data import photo_png, read_photo_file
from genlib.families.restoration import restore
from genlib.families.restoration.classical import DENOISERS, UPSCALERS


def _denoise_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", help="a noisy image file (PNG, JPEG, WebP, TIFF, BMP)")
    p.add_argument("--out", help="the PNG to write")
    p.add_argument("--method", help=f"a classical method ({', '.join(DENOISERS)}) or a learned checkpoint "
                                    f"(default {restore.SHIPPED_DENOISER})")
    p.add_argument("--model", help="a learned denoiser: checkpoint name, folder or hub id")
    p.add_argument("--sigma", type=float, help="the noise level on the 0-255 scale (default: estimated)")
    p.add_argument("--list", action="store_true", help="name every method and exit")


def _upscale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", help="a low-resolution image file")
    p.add_argument("--out", help="the PNG to write")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2)
    p.add_argument("--method", help=f"{', '.join(UPSCALERS)}, or a learned checkpoint "
                                    f"(default the shipped x2 / x4 model)")
    p.add_argument("--model", help="a learned upscaler: checkpoint name, folder or hub id")
    p.add_argument("--list", action="store_true", help="name every method and exit")


def _io(args: argparse.Namespace) -> tuple:
    if not args.input or not args.out:
        raise ValueError("give an INPUT image and --out OUTPUT.png (or --list)")
    return read_photo_file(args.input), Path(args.out)


def run_denoise(args: argparse.Namespace) -> int:
    """Denoise one image file and write the result as PNG."""
    if args.list:
        for name in DENOISERS:
            print(f"{name:12s} {DENOISERS[name].about}")
        print(f"{restore.SHIPPED_DENOISER:12s} the shipped learned denoiser (default); any dncnn checkpoint "
              "via --model")
        return 0
    if args.sigma is not None and not 0 <= args.sigma <= 255:
        raise ValueError(f"--sigma must be between 0 and 255, got {args.sigma:g}")
    image, out = _io(args)
    method = args.model or args.method or restore.SHIPPED_DENOISER
    sigma = None if args.sigma is None else args.sigma / 255
    result = restore.denoise(method, image, sigma, progress=stderr_progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(photo_png(result.image))
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, {method}, {result.seconds:.1f} s)")
    return 0


def run_upscale(args: argparse.Namespace) -> int:
    """Upscale one image file by --scale and write the result as PNG."""
    if args.list:
        for name in UPSCALERS:
            print(f"{name:16s} {UPSCALERS[name].about}")
        for scale, name in restore.SHIPPED_UPSCALERS.items():
            print(f"{name:16s} the shipped learned x{scale} model (default for --scale {scale})")
        return 0
    image, out = _io(args)
    method = args.model or args.method or restore.SHIPPED_UPSCALERS[args.scale]
    result = restore.upscale(method, image, args.scale, progress=stderr_progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(photo_png(result.image))
    h, w = result.image.shape[:2]
    print(f"wrote {out} ({w}x{h}, {method}, {result.seconds:.1f} s)", file=sys.stdout)
    return 0


COMMANDS = (Command("denoise", "denoise a photo (classical or learned methods); --list names them",
                    _denoise_arguments, run_denoise),
            Command("upscale", "upscale a photo x2 or x4 (bicubic, Lanczos or learned); --list names them",
                    _upscale_arguments, run_upscale))
