"""Shipped VAE vs the pytorch/examples reference VAE, on the same data and the same evaluator.

The reference is pytorch/examples' `vae/main.py`: an MLP 784-400-20 (ReLU), BCE + KL,
Adam 1e-3, batch 128, 10 epochs of 60k images = about 4.7k steps. Here it trains for 4,690
steps on our 4,000-digit training split with genlib's Trainer, then both models are scored with
the same `genlib.evaluation.evaluate` (Fréchet distance in the digit classifier's features over
1,000 samples vs the 1,000 test digits, and the negative ELBO in bits/dim).

    python -m benchmarks.reference_vae [--steps 4690] [--shipped vae-mnist]

Writes benchmarks/reference_vae.md and prints the table.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib import TrainConfig, Trainer, load_model
from genlib.config import setting
from genlib.data import mnist
from genlib.evaluation import evaluate
from genlib.images import grid_png
from genlib.model import GenerativeModel, ModelConfig, StepOutput


@dataclass(frozen=True)
class ReferenceConfig(ModelConfig):
    hidden: int = setting(400, "hidden units", min=1, max=4096)
    latent_dim: int = setting(20, "latent size", min=1, max=512)


class ReferenceVAE(GenerativeModel):
    """pytorch/examples' VAE, unchanged apart from living behind genlib's interface."""

    Config = ReferenceConfig
    likelihood = "bound"  # the negative ELBO
    family = "reference-vae"

    def __init__(self, config: ReferenceConfig = ReferenceConfig()):
        super().__init__(config)
        self.fc1 = nn.Linear(784, config.hidden)
        self.fc21 = nn.Linear(config.hidden, config.latent_dim)
        self.fc22 = nn.Linear(config.hidden, config.latent_dim)
        self.fc3 = nn.Linear(config.latent_dim, config.hidden)
        self.fc4 = nn.Linear(config.hidden, 784)

    def _terms(self, x: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        eps = torch.randn(mu.shape, generator=generator) if generator is not None else torch.randn_like(mu)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.fc4(F.relu(self.fc3(z)))
        bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="none").sum(1)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return bce, kld

    def training_step(self, batch, step: int) -> StepOutput:
        bce, kld = self._terms(batch[0])
        loss = (bce + kld).mean()
        return StepOutput(loss, {"loss": loss.item()})

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, callback=None) -> Tensor:
        z = torch.randn((n, self.config.latent_dim), generator=generator)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))).view(n, 1, 28, 28)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, labels=None, generator=None) -> Tensor:
        bce, kld = self._terms(x, generator)
        return (bce + kld) / (784 * math.log(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4690)
    parser.add_argument("--shipped", default="vae-mnist")
    parser.add_argument("--out", default=str(Path(__file__).with_name("reference_vae.md")))
    args = parser.parse_args()

    split = mnist()
    ref = ReferenceVAE()
    steps_per_epoch = split.train_images.shape[0] // 128
    train = TrainConfig(epochs=math.ceil(args.steps / steps_per_epoch), batch_size=128, lr=1e-3,
                        max_steps=args.steps, seed=0)
    start = time.perf_counter()
    Trainer(train).fit(ref, split.train_images, split.train_labels)
    ref_seconds = time.perf_counter() - start
    shipped, info = load_model(args.shipped)
    rows = [("reference MLP VAE (784-400-20)", evaluate(ref), ref_seconds, args.steps),
            (f"shipped {info.name}", evaluate(shipped), info.metrics.get("train_seconds"),
             info.metrics.get("train_steps"))]
    out = Path(args.out)
    out.with_suffix(".png").write_bytes(grid_png(ref.sample(64, generator=torch.Generator().manual_seed(0))))
    lines = ["| model | Fréchet distance ↓ | bits/dim ↓ (−ELBO bound) | parameters | train steps | train s |",
             "|---|---|---|---|---|---|"]
    for name, m, secs, steps in rows:
        lines.append(f"| {name} | {m['frechet_distance']:.1f} | {m['bits_per_dim']:.4f} | "
                     f"{m['num_parameters']:,} | {steps} | {secs if secs is None else round(secs)} |")
    table = "\n".join(lines)
    out.write_text(f"# Shipped VAE vs reference VAE\n\nCommand: `python -m benchmarks.reference_vae`\n\n{table}\n\n"
                   f"Reference samples: `{out.with_suffix('.png').name}`\n")
    print(table)


if __name__ == "__main__":
    main()
