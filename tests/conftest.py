"""Shared fixtures.

Core (genlib) fixtures are prefixed ``core_``; the app's page tests add their own, prefixed ``app_``.
Everything here is real: real torch models, the real MNIST split, real folders under pytest's tmp dirs.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import pytest
import torch

# One intra-op thread: the models under test are tiny, and on a small shared machine two OpenMP
# threads that wait on each other made a 200-step run 30x slower (45 s instead of 1.5 s).
torch.set_num_threads(1)

def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.005) -> bool:
    """Poll ``predicate`` every ``every`` seconds until it holds or ``timeout`` passes; its last value.
    Background work is real threads, so tests wait for what they expect instead of sleeping blindly."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


# -- core (genlib) fixtures --------------------------------------------------------------------------

CORE_SLICE_SIZE = 64


@pytest.fixture(scope="session")
def core_runs_dir(tmp_path_factory: pytest.TempPathFactory):
    """GENLIB_RUNS_DIR pointed at a fresh temp dir for the session (restored afterwards), so no test
    ever writes into the repository's runs/ folder."""
    path = tmp_path_factory.mktemp("genlib-runs")
    old = os.environ.get("GENLIB_RUNS_DIR")
    os.environ["GENLIB_RUNS_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GENLIB_RUNS_DIR", None)
    else:
        os.environ["GENLIB_RUNS_DIR"] = old


@pytest.fixture(scope="session")
def core_mnist():
    """The fixed MNIST split (cached by genlib.data.mnist; ~4 s the first time)."""
    from genlib.data import mnist

    return mnist()


@pytest.fixture(scope="session")
def core_slice(core_mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 64 training digits and their labels (clones: tests may not alter the cached split)."""
    return (core_mnist.train_images[:CORE_SLICE_SIZE].clone(), core_mnist.train_labels[:CORE_SLICE_SIZE].clone())


@pytest.fixture(scope="session")
def core_tiny_config() -> Callable:
    """``core_tiny_config(family, **overrides)`` -> a validated tiny Config of that family, from the
    family's own declared ``tiny_config`` (its defaults when it declares none)."""
    from genlib import get_family

    def make(family: str, **overrides):
        cls = get_family(family)
        return cls.Config.from_dict({**cls.tiny_config, **overrides})

    return make


@pytest.fixture(scope="session")
def core_tiny_model(core_tiny_config) -> Callable:
    """``core_tiny_model(family, seed=0, **overrides)`` -> a freshly built tiny model, init seeded."""
    from genlib import get_family

    def make(family: str, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        return get_family(family)(core_tiny_config(family, **overrides))

    return make


@pytest.fixture(scope="session")
def core_classifier():
    """The shipped digit classifier (checkpoints/digit-classifier)."""
    from genlib.evaluator import load_classifier

    return load_classifier()


@pytest.fixture(scope="module")
def core_evaluator(tmp_path_factory):
    """The shipped evaluator (genlib.comparison.Evaluator), with the score cache in a temp folder for this module."""
    from genlib.comparison import Evaluator

    old = os.environ.get("GENLIB_SCORE_CACHE")
    os.environ["GENLIB_SCORE_CACHE"] = str(tmp_path_factory.mktemp("scores"))
    yield Evaluator.load()
    if old is None:
        os.environ.pop("GENLIB_SCORE_CACHE", None)
    else:
        os.environ["GENLIB_SCORE_CACHE"] = old


@pytest.fixture(scope="module")
def core_diffusion(core_tiny_model):
    """A tiny unconditional diffusion model in eval mode, shared by a test module."""
    return core_tiny_model("diffusion").eval()


@pytest.fixture(scope="module")
def core_cdiffusion(core_tiny_model):
    """A tiny class-conditional diffusion model in eval mode, shared by a test module."""
    return core_tiny_model("cdiffusion").eval()


# -- app (Streamlit pages) fixtures --------------------------------------------------------------------

def app_families() -> list[str]:
    """The registered trainable families that have a page: the app's pages show one checkpoint of each
    (a loaded-only family, hf-causal-lm, has none to ship)."""
    from genlib import all_families

    return [name for name, cls in all_families().items() if cls.page and cls.trainable]


@pytest.fixture(scope="session")
def app_checkpoints(tmp_path_factory: pytest.TempPathFactory):
    """A checkpoints folder holding one checkpoint per family with a page, plus the digit classifier.

    The shipped folder when it has them all (the real thing). Otherwise a temp folder with copies
    of what is shipped and, for each missing family, a tiny stand-in trained here in seconds.
    """
    import shutil

    from genlib import TrainConfig, get_family, list_checkpoints, train_run
    from genlib.checkpoints import shipped_dir

    shipped = shipped_dir()
    have = [i for i in list_checkpoints(include_evaluators=True) if i.origin == "shipped"]
    families = app_families()
    if set(families) <= {i.family for i in have}:
        return shipped
    folder = tmp_path_factory.mktemp("app-checkpoints")
    for info in have:
        shutil.copytree(info.path, folder / info.name)
    train = TrainConfig(epochs=1, batch_size=64, max_steps=5, preview_every=5, device="cpu")
    missing = [f for f in families if f not in {i.family for i in have}]
    for family in missing:
        train_run(family, get_family(family).tiny_config, train, folder / f"{family}-mnist", evaluate_model=False)
    return folder


@pytest.fixture
def app_env(app_checkpoints, tmp_path, monkeypatch):
    """Point the app at ``app_checkpoints`` and at a fresh runs folder for this test
    (GENLIB_CHECKPOINTS / GENLIB_RUNS_DIR), so no test writes into the repository."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(app_checkpoints))
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(runs))
    return {"checkpoints": app_checkpoints, "runs": runs}
