"""The RBM's CLI subcommand: ``python -m genlib rbm-ais SOURCE``, a fresh AIS estimate of log Z for the
checkpoint's weights as stored (after ``half``, say), printed with the test likelihood it gives, and with
``--write`` stored in the checkpoint."""
from __future__ import annotations

import argparse
import math

import torch

from genlib.checkpoints import load_model, resolve, update_weights
from genlib.cli import Command
from genlib.data import mnist
from genlib.families.boltzmann.model import RBM, ais_log_z, base_visible_bias
from genlib.likelihood import binarize


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``rbm-ais``."""
    p.add_argument("source", help="checkpoint name or folder of an RBM")
    p.add_argument("--betas", type=int, help="intermediate distributions (default: the model's ais_betas)")
    p.add_argument("--runs", type=int, help="independent runs (default: the model's ais_runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store log Z and its standard error in model.safetensors")


def run(args: argparse.Namespace) -> int:
    """Estimate log Z, print it with the test -log p(v) it gives, and store it with --write."""
    folder, _ = resolve(args.source)
    model, _ = load_model(folder)
    if not isinstance(model, RBM):
        print(f"{args.source} is a {model.family} checkpoint, not an RBM")
        return 2
    split = mnist()
    betas, runs = args.betas or model.config.ais_betas, args.runs or model.config.ais_runs
    result = ais_log_z(model, base_visible_bias(split.train_images), betas, runs,
                       generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        nll = (model.free_energy(binarize(split.test_images)).double() + result.log_z).mean().item()
    print(f"log Z = {result.log_z:.3f} ± {result.stderr:.3f} (AIS, {runs} runs, {betas} temperatures); "
          f"test -log p(v) = {nll:.2f} nats ({nll / (784 * math.log(2)):.4f} bits/dim), an estimate")
    if args.write:
        update_weights(folder, {"log_z": torch.tensor(result.log_z, dtype=torch.float64),
                                "log_z_stderr": torch.tensor(result.stderr, dtype=torch.float64)})
        print(f"stored in {folder}; re-score it with `python -m genlib eval {args.source} --write`")
    return 0


COMMANDS = (Command("rbm-ais", "Annealed importance sampling estimate of an RBM's log Z (and its test likelihood)",
                    add_arguments, run),)
