"""The training commands written down for the shipped checkpoints are the ones that made them.

scripts/train_shipped.sh (run with GENLIB_DRY_RUN=1, so it only prints its commands) and the README's
"Shipped checkpoints" block each give a `python -m genlib train FAMILY ...` line per checkpoint. Parsed
by the CLI's own parser, every such line must give the model and training settings that the
checkpoint's config.json recorded when it was trained. A retrain that changes a flag and forgets to
update the script or the README fails here.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from genlib.cli import train_settings

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["python", "-m", "genlib", "train"]
# Not part of a recipe: how often previews are drawn, and which device the trainer picked.
NOT_RECIPE = {"preview_every", "device"}


def script_commands() -> dict[str, list[str]]:
    """{checkpoint folder: the command's words} for every `python -m genlib` command with an --out."""
    printed = subprocess.run(["bash", "scripts/train_shipped.sh"], cwd=ROOT, capture_output=True, text=True,
                             check=True, env={**os.environ, "GENLIB_DRY_RUN": "1"}).stdout
    commands = {}
    for line in printed.splitlines():
        words = shlex.split(line)
        if words[:3] == TRAIN[:3] and "--out" in words:
            commands[words[words.index("--out") + 1]] = words
    return commands


def readme_commands() -> dict[str, list[str]]:
    """The same from the README's block; lines that elide shared flags with "..." are left out."""
    block = re.search(r"## Shipped checkpoints\n.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README has no 'Shipped checkpoints' command block"
    commands = {}
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        words = [w for w in words if not w.startswith("OMP_NUM_THREADS=")]
        if words[:4] == TRAIN and "..." not in words:
            commands[words[words.index("--out") + 1]] = words[4:]
    return commands


def mismatches(family_and_flags: list[str]) -> dict[str, tuple]:
    """{"model.key" or "train.key": (the command's value, the recorded value)} where they differ."""
    family, *flags = family_and_flags
    out, model, train = train_settings(family, flags)
    recorded = json.loads((ROOT / out / "config.json").read_text())
    assert recorded["family"] == family, f"{out} holds a {recorded['family']}, the command trains a {family}"
    wrong = {}
    for section, config in (("model", model), ("train", train)):
        defaults = type(config)().to_dict()
        for key, value in config.to_dict().items():
            # A setting added after the checkpoint was trained is absent from its config.json: it ran
            # with the default then, so the command must not ask for anything else.
            saved = recorded[section].get(key, defaults[key])
            if key not in NOT_RECIPE and saved != value:
                wrong[f"{section}.{key}"] = (value, saved)
    return wrong


EVERY_OUT = script_commands()
SCRIPT = {out: words[4:] for out, words in EVERY_OUT.items() if words[:4] == TRAIN}
README = readme_commands()


def test_every_shipped_generative_checkpoint_has_a_command():
    configs = {f"checkpoints/{p.parent.name}": json.loads(p.read_text())
               for p in (ROOT / "checkpoints").glob("*/config.json")}
    trained = {out for out, config in configs.items() if "family" in config and "train" in config}
    assert len(SCRIPT) >= 20
    assert trained - set(EVERY_OUT) == set(), "shipped checkpoints that the script does not make"
    assert set(README) <= set(SCRIPT)
    assert len(README) >= 10


@pytest.mark.parametrize("out", sorted(SCRIPT))
def test_script_command_reproduces_the_recorded_config(out):
    assert mismatches(SCRIPT[out]) == {}


@pytest.mark.parametrize("out", sorted(README))
def test_readme_command_reproduces_the_recorded_config(out):
    assert mismatches(README[out]) == {}


def test_a_forgotten_flag_is_caught():
    # The README once gave vae-2d-mnist's command without --prior-components 20.
    flags = SCRIPT["checkpoints/vae-2d-mnist"]
    i = flags.index("--prior-components")
    assert mismatches(flags[:i] + flags[i + 2:]) == {"model.prior_components": (0, 20)}
