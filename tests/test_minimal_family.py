"""The minimal family of the README, dropped in as one folder, works everywhere with no other file changed.

A copy of the project (genlib, pages, tests, the app) goes to a temp folder, the family is written
to ``genlib/families/my_family/__init__.py`` there, and the real CLI, the real contract tests and
the real Compare page (AppTest) run against that copy in subprocesses, with the shipped
checkpoints (the evaluator) from this repository.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The README's sketch, with its three methods written out: a learned mean image plus a linear map
# of ``width`` noise numbers, squashed into [0,1].
MINIMAL_FAMILY = '''
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlib.config import setting
from genlib.model import GenerativeModel, ModelConfig, StepOutput
from genlib.registry import register


@dataclass(frozen=True)
class MyConfig(ModelConfig):
    width: int = setting(8, "hidden units", min=1, max=512)


@register("my-family")
class MyModel(GenerativeModel):
    Config = MyConfig
    description = "a mean digit plus linear noise"

    def __init__(self, config):
        super().__init__(config)
        self.mean = nn.Parameter(torch.zeros(1, 1, 28, 28))
        self.spread = nn.Linear(config.width, 28 * 28)

    def _draw(self, n, generator=None):
        z = torch.randn((n, self.config.width), generator=generator).to(self.mean.device)
        return torch.sigmoid(self.mean + self.spread(z).view(n, 1, 28, 28))

    def training_step(self, batch, step) -> StepOutput:
        images, _ = batch
        loss = F.mse_loss(self._draw(images.shape[0]), images)
        return StepOutput(loss, {"loss": loss.item()})

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, callback=None) -> torch.Tensor:
        return self._draw(n, generator)
'''


@pytest.fixture(scope="module")
def minimal_copy(tmp_path_factory):
    """(project copy with the minimal family dropped in, environment for subprocesses there)."""
    copy = tmp_path_factory.mktemp("minimal") / "project"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("genlib", "pages", "tests", ".streamlit"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy(ROOT / "streamlit_app.py", copy / "streamlit_app.py")
    (copy / "genlib" / "families" / "my_family").mkdir()
    (copy / "genlib" / "families" / "my_family" / "__init__.py").write_text(MINIMAL_FAMILY)
    runs = copy / "runs"
    env = {**os.environ, "GENLIB_CHECKPOINTS": str(ROOT / "checkpoints"), "GENLIB_RUNS_DIR": str(runs),
           "GENLIB_SCORE_CACHE": str(copy / "score-cache"), "PYTHONPATH": str(copy)}
    return copy, env


def run(copy: Path, env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_minimal_family_is_listed_trained_sampled_and_scored_by_the_cli(minimal_copy):
    copy, env = minimal_copy
    assert "my-family" in run(copy, env, "-m", "genlib", "list").stdout
    out = copy / "runs" / "mine"
    run(copy, env, "-m", "genlib", "train", "my-family", "--out", str(out), "--max-steps", "20")
    assert json.loads((out / "config.json").read_text())["family"] == "my-family"
    assert (out / "samples.png").is_file() and (out / "metrics.json").is_file()
    samples = copy / "samples.npz"
    run(copy, env, "-m", "genlib", "sample", str(out), "--num", "16", "--seed", "0", "--out", str(samples))
    with np.load(samples) as data:
        images = data["images"]
    assert images.shape == (16, 28, 28) and 0 <= images.min() and images.max() <= 1
    metrics = json.loads(run(copy, env, "-m", "genlib", "eval", str(out)).stdout)
    assert metrics["frechet_distance"] > 0 and metrics["num_parameters"] > 0
    assert "bits_per_dim" in metrics["missing"]  # no likelihood: said so, with a reason


def test_the_minimal_family_passes_the_contract_tests(minimal_copy):
    copy, env = minimal_copy
    proc = run(copy, env, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contract.py",
               "tests/test_registry.py", "-k", "my-family or abilities or page")
    passed = int(proc.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 12, proc.stdout[-1500:]


def test_the_minimal_family_is_selectable_on_compare(minimal_copy):
    copy, env = minimal_copy
    out = copy / "runs" / "mine-for-compare"
    run(copy, env, "-m", "genlib", "train", "my-family", "--out", str(out), "--max-steps", "5")
    script = textwrap.dedent(f"""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("streamlit_app.py", default_timeout=300)
        at.run()
        at.switch_page("pages/compare.py")
        at.session_state["cmp_models"] = [{str(out)!r}]
        at.run()
        assert not at.exception, at.exception
        picker = at.multiselect(key="cmp_models")
        assert any("mine-for-compare" in option for option in picker.options), picker.options
        print("ok", [e.value for e in at.error])
        # Compare scores the new run in a background thread; let it end before the interpreter does, or a
        # torch op still running in that daemon thread aborts the exit ("terminate called", exit -6).
        from genlib import background
        for work in background.works():
            work.wait(timeout=300)
    """)
    proc = run(copy, env, "-c", script)
    assert "ok" in proc.stdout and "cannot" not in proc.stdout, proc.stdout
