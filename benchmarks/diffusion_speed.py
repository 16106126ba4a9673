"""How fast the default diffusion configs run on this machine's CPU.

Measures, with freshly initialised default models (speed does not depend on the weights):
sampling 16 digits in 20 steps with each sampler, the class-conditional model with classifier-free
guidance (twice the batch), ``bits_per_dim`` over 1,000 digits (what scoring evaluates), and one
training step of 128 and of 64 digits (the shipped runs use 64), and each shipped run's own training
step (its precision and thread count, as scripts/train_shipped.sh runs it) with the minutes its whole
run takes from that. Each timing is the best of ``--repeats`` runs.

    OMP_NUM_THREADS=1 python -m benchmarks.diffusion_speed [--threads 1] [--repeats 3]

Writes benchmarks/diffusion_speed.md and prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from genlib.families.diffusion import (SAMPLERS, CDiffusionConfig, ConditionalDiffusionModel, DiffusionConfig,
                                       DiffusionModel)

OUT = Path(__file__).with_suffix(".md")
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
# OMP_NUM_THREADS of both shipped diffusion runs in scripts/train_shipped.sh (steps and precision: each config.json)
SHIPPED_THREADS = 2


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Run the timings and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    plain = DiffusionModel(DiffusionConfig()).eval()
    cond = ConditionalDiffusionModel(CDiffusionConfig()).eval()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    rows = []
    for sampler in SAMPLERS:
        s = best_of(lambda: plain.sample(16, generator=gen(), sampler=sampler, steps=20), args.repeats)
        rows.append((f"diffusion: 16 samples, 20 {sampler} steps", s))
    s = best_of(lambda: cond.sample(16, generator=gen(), steps=20, guidance_scale=2.0), args.repeats)
    rows.append(("cdiffusion: 16 samples, 20 ddim steps, guidance 2 (batch 32)", s))
    digits = torch.rand(1000, 1, 28, 28)
    s = best_of(lambda: [plain.bits_per_dim(x, generator=gen()) for x in digits.split(500)], 1)
    rows.append(("diffusion: bits_per_dim of 1,000 digits (3 UNet calls each)", s))

    def train_step_seconds(model: DiffusionModel, size: int, bf16: bool) -> float:
        model.train()
        opt = model.configure_optimizers(1e-3)[0]
        batch = (torch.rand(size, 1, 28, 28), torch.zeros(size, dtype=torch.long))

        def train_step() -> None:
            # as genlib.training.Trainer: the forward pass under autocast, the update in float32
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model.training_step(batch, 0)
            opt.zero_grad()
            out.loss.backward()
            opt.step()

        seconds = best_of(train_step, args.repeats)
        model.eval()
        return seconds

    for size in (128, 64):
        rows.append((f"diffusion: one training step, batch {size}", train_step_seconds(plain, size, False)))
    for name, model in (("cdiffusion-mnist", cond), ("diffusion-mnist", plain)):
        train = json.loads((CHECKPOINTS / name / "config.json").read_text())["train"]
        steps, bf16, threads = train["max_steps"], train.get("cpu_bf16", False), SHIPPED_THREADS
        torch.set_num_threads(threads)
        seconds = train_step_seconds(model, train["batch_size"], bf16)
        how = f"batch {train['batch_size']}, {'bf16 autocast' if bf16 else 'float32'}, {threads} thread(s)"
        rows.append((f"{name}: one training step, {how}", seconds))
        rows.append((f"{name}: its {steps:,} steps (minutes, from the row above)", steps * seconds / 60))
    app_threads = 2  # the app's own setting on this 2-core machine (torch.set_num_threads(2))
    torch.set_num_threads(app_threads)
    s = best_of(lambda: plain.sample(16, generator=gen(), sampler="dpm-solver++", steps=20), args.repeats)
    rows.append((f"diffusion: 16 samples, 20 dpm-solver++ steps, {app_threads} threads (as the app runs)", s))
    s = best_of(lambda: cond.sample(16, generator=gen(), steps=20, guidance_scale=2.0), args.repeats)
    rows.append((f"cdiffusion: 16 samples, 20 steps, guidance 2, {app_threads} threads (as the app runs)", s))
    torch.set_num_threads(args.threads)
    lines = [f"# Diffusion speed on {platform.processor() or platform.machine()}, {args.threads} thread(s)", "",
             f"Default configs: {plain.num_parameters():,} parameters (unconditional), "
             f"{cond.num_parameters():,} (class-conditional). Best of {args.repeats} runs.", "",
             "| what | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in rows]
    lines += ["", f"Rows that name a thread count ran at it; the others at {args.threads}. "
              "Run it on an otherwise idle machine: the timings are only as quiet as the machine was."]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
