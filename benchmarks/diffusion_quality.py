"""The diffusion family's quality targets, measured on the shipped checkpoints.

1. ``diffusion-mnist`` sampled with DDIM in 50 steps against the shipped ``vae-mnist``: Fréchet
   distance in the evaluator's features, 1,000 samples each, the same reference as the Compare page.
2. DPM-Solver++ in 20 steps against DDIM in 100 steps (target: within 10%).
3. ``cdiffusion-mnist``: how often its samples are classified as the requested digit, at several
   guidance scales (1,000 samples, labels 0..9 in turn, the checkpoint's own sampler and steps).

    OMP_NUM_THREADS=1 python -m benchmarks.diffusion_quality [--num 1000] [--seed 0]

The FD points are cached like the page's steps-vs-quality curve (genlib.families.diffusion.analysis), so a
rerun on unchanged checkpoints is instant. Writes benchmarks/diffusion_quality.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genlib import load_model
from genlib.comparison import Evaluator, score_checkpoint
from genlib.families.diffusion.analysis import load_steps_quality, save_steps_quality, steps_quality
from genlib.metrics import class_accuracy

OUT = Path(__file__).with_suffix(".md")
GUIDANCE_SCALES = (1.0, 2.0)  # 1 = no guidance; 2 = the checkpoint default


def fd_points(name: str, wanted: dict[str, tuple[int, ...]], num: int, seed: int, evaluator: Evaluator) -> dict:
    """{(sampler, steps): (FD, seconds)} for the checkpoint ``name``, computed once and cached."""
    model, info = load_model(name)
    out = {}
    for sampler, grid in wanted.items():
        result = load_steps_quality(info.path, num_samples=num, seed=seed, steps_grid=grid, samplers=(sampler,))
        if result is None:
            print(f"{name}: {sampler} at {grid} steps, {num} samples ...", flush=True)
            result = steps_quality(model, samplers=(sampler,), steps_grid=grid, num_samples=num, seed=seed,
                                   evaluator=evaluator)
            save_steps_quality(info.path, result)
        out.update({(p.sampler, p.steps): (p.frechet_distance, p.seconds) for p in result.points})
    return out


def guided_accuracy(name: str, num: int, seed: int, evaluator: Evaluator) -> list[tuple[float, float, float]]:
    """[(guidance scale, class accuracy, seconds)] with labels 0..K-1 repeated."""
    model, _ = load_model(name)
    labels = torch.arange(num) % model.num_classes
    rows = []
    for scale in GUIDANCE_SCALES:
        start = time.perf_counter()
        images = torch.cat([model.sample(len(chunk), generator=torch.Generator().manual_seed(seed + i),
                                         labels=chunk, guidance_scale=scale)
                            for i, chunk in enumerate(labels.split(100))])
        rows.append((scale, class_accuracy(evaluator.classifier, images, labels), time.perf_counter() - start))
        print(f"{name}: guidance {scale}: class accuracy {rows[-1][1]:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diffusion", default="diffusion-mnist")
    parser.add_argument("--cdiffusion", default="cdiffusion-mnist")
    parser.add_argument("--vae", default="vae-mnist")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    evaluator = Evaluator.load()
    vae = score_checkpoint(args.vae, evaluator, num_samples=args.num, seed=args.seed)
    points = fd_points(args.diffusion, {"ddim": (50, 100), "dpm-solver++": (20,)}, args.num, args.seed, evaluator)
    accuracy = guided_accuracy(args.cdiffusion, args.num, args.seed, evaluator)
    cmodel, cinfo = load_model(args.cdiffusion)

    vae_fd = vae.value("frechet_distance")
    ddim50, ddim100, dpm20 = points[("ddim", 50)][0], points[("ddim", 100)][0], points[("dpm-solver++", 20)][0]
    lines = [
        "# Diffusion quality targets",
        "",
        f"Fréchet distance in the evaluator's features against the 4,000 training digits (as on the Compare page), "
        f"{args.num} samples, seed {args.seed}. Command: `OMP_NUM_THREADS=1 python -m benchmarks.diffusion_quality`.",
        "",
        "| model · sampler | Fréchet distance ↓ | sampling s |",
        "|---|---|---|",
        f"| shipped `{args.vae}` | {vae_fd:.1f} | {vae.value('sample_ms_per_image') * args.num / 1000:.1f} |",
    ]
    for (sampler, steps), (fd, seconds) in sorted(points.items()):
        lines.append(f"| `{args.diffusion}` · {sampler} {steps} steps | {fd:.1f} | {seconds:.1f} |")
    lines += [
        "",
        f"- DDIM 50 vs the VAE: {ddim50:.1f} vs {vae_fd:.1f} "
        f"({'beats' if ddim50 < vae_fd else 'does NOT beat'} it).",
        f"- DPM-Solver++ 20 vs DDIM 100: {dpm20:.1f} vs {ddim100:.1f}, "
        f"{100 * (dpm20 - ddim100) / ddim100:+.1f}% ({'within' if dpm20 <= 1.1 * ddim100 else 'NOT within'} 10%).",
        "",
        f"`{args.cdiffusion}`: share of samples classified as the requested digit "
        f"({cmodel.config.sampler}, {cmodel.config.sample_steps} steps, {args.num} samples, labels 0-9 in turn).",
        "",
        "| guidance scale | class accuracy ↑ | sampling s |",
        "|---|---|---|",
        *[f"| {scale:g} | {acc:.3f} | {seconds:.1f} |" for scale, acc, seconds in accuracy],
        "",
        f"The checkpoint's default guidance is {cmodel.default_guidance_scale:g} "
        f"(trained {cinfo.metrics.get('train_steps')} steps in {cinfo.metrics.get('train_seconds', 0):.0f} s).",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
