"""Shipped DCGAN vs the TensorFlow DCGAN tutorial's architecture, same data, steps and evaluator.

The reference is https://www.tensorflow.org/tutorials/generative/dcgan: G = Dense 7x7x256 (BN,
LeakyReLU) -> ConvTranspose 128 (5x5, stride 1) -> 64 (5x5, stride 2) -> 1 (5x5, stride 2, tanh),
with BatchNorm + LeakyReLU between; D = Conv 64 -> Conv 128 (5x5, stride 2, LeakyReLU, dropout
0.3, no batch norm) -> Dense 1. It trains with the non-saturating BCE loss, Adam 2e-4 with
beta1 = 0.5 and batch 64, for the same number of steps as the shipped checkpoint, through the
same genlib Trainer and optimisation step; then both are scored by genlib.scoring.

    python -m benchmarks.reference_dcgan [--shipped dcgan-mnist] [--steps N] [--seed S] [--reuse-reference]

Writes benchmarks/reference_dcgan.md (+ .png of the reference's samples, + .json of its scores) and
prints the table. The reference takes about 23 minutes on one core; ``--reuse-reference`` scores a
new shipped checkpoint against the stored .json instead of retraining it (same steps and seed required).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genlib import TrainConfig, Trainer, load_model
from genlib.data import mnist
from genlib.evaluation import evaluate
from genlib.families.gan import GAN, DCGANConfig
from genlib.images import grid_png


@dataclass(frozen=True)
class TutorialConfig(DCGANConfig):
    """The tutorial fixes its widths; the GAN settings (loss bce, beta1 0.5) keep their defaults."""


class TutorialDCGAN(GAN):
    """The TensorFlow tutorial's networks behind genlib's GAN step (so only the networks differ)."""

    Config = TutorialConfig
    family = "reference-dcgan"

    def build(self) -> tuple[nn.Module, nn.Module]:
        z = self.config.noise_dim
        g = nn.Sequential(
            nn.Linear(z, 7 * 7 * 256, bias=False), nn.BatchNorm1d(7 * 7 * 256), nn.LeakyReLU(0.3),
            nn.Unflatten(1, (256, 7, 7)),
            nn.ConvTranspose2d(256, 128, 5, 1, 2, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.3),
            nn.ConvTranspose2d(128, 64, 5, 2, 2, output_padding=1, bias=False), nn.BatchNorm2d(64), nn.LeakyReLU(0.3),
            nn.ConvTranspose2d(64, 1, 5, 2, 2, output_padding=1, bias=False), nn.Tanh())
        d = nn.Sequential(
            nn.Conv2d(1, 64, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),
            nn.Conv2d(64, 128, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),
            nn.Flatten(), nn.Linear(128 * 7 * 7, 1))
        return g, d


def train_reference(steps: int, seed: int = 0) -> dict:
    """Train the tutorial DCGAN for ``steps`` steps of batch 64; its model, scores and wall-clock seconds."""
    split = mnist()
    torch.manual_seed(seed)
    ref = TutorialDCGAN(TutorialConfig(noise_dim=100))
    per_epoch = split.train_images.shape[0] // 64
    train = TrainConfig(epochs=math.ceil(steps / per_epoch), batch_size=64, lr=2e-4, max_steps=steps, seed=seed)
    start = time.perf_counter()
    Trainer(train).fit(ref, split.train_images, split.train_labels)
    seconds = time.perf_counter() - start
    return {"model": ref, "steps": steps, "seed": seed, "seconds": round(seconds, 1), "metrics": evaluate(ref)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipped", default="dcgan-mnist")
    parser.add_argument("--steps", type=int, default=0, help="default: the shipped checkpoint's train_steps")
    parser.add_argument("--out", default=str(Path(__file__).with_name("reference_dcgan.md")))
    parser.add_argument("--seed", type=int, default=0, help="the reference's training seed")
    parser.add_argument("--reuse-reference", action="store_true",
                        help="score against the reference stored in the .json beside --out instead of retraining it")
    args = parser.parse_args()

    shipped, info = load_model(args.shipped)
    steps = args.steps or int(info.metrics["train_steps"])
    out = Path(args.out)
    stored = out.with_suffix(".json")
    if args.reuse_reference:
        reference = json.loads(stored.read_text())
        if (reference["steps"], reference.get("seed", 0)) != (steps, args.seed):
            raise SystemExit(f"{stored} holds a reference trained for {reference['steps']} steps with seed "
                             f"{reference.get('seed', 0)}, not {steps} steps with seed {args.seed}")
    else:
        reference = train_reference(steps, args.seed)
        out.with_suffix(".png").write_bytes(grid_png(reference.pop("model").sample(
            64, generator=torch.Generator().manual_seed(0))))
        stored.write_text(json.dumps(reference, indent=2))
    rows = [(f"reference: TF tutorial DCGAN (seed {args.seed})", reference["metrics"],
             reference["seconds"], steps),
            (f"shipped `{info.name}`", evaluate(shipped), info.metrics.get("train_seconds"),
             info.metrics["train_steps"])]
    lines = ["| model | Fréchet distance ↓ | KID ↓ | precision ↑ | recall ↑ | parameters | train steps | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m, secs, n in rows:
        lines.append(f"| {name} | {m['frechet_distance']:.1f} | {m['kid']:.0f} | {m['precision']:.3f} | "
                     f"{m['recall']:.3f} | {m['num_parameters']:,} | {n} | {secs if secs is None else round(secs)} |")
    table = "\n".join(lines)
    out.write_text("# Shipped DCGAN vs the TensorFlow tutorial DCGAN\n\n"
                   f"Command: `python -m benchmarks.reference_dcgan`"
                   f"\n\nBoth trained on the 4,000-digit split for {steps} steps of batch 64; scored on 1,000 samples "
                   f"(seed 0) against the training digits.\n\n{table}\n\n"
                   f"Reference samples: `{out.with_suffix('.png').name}`\n")
    print(table)


if __name__ == "__main__":
    main()
