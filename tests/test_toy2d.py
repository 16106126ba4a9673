"""The 2-D toy GAN (genlib/families/gan/toy2d.py): it really learns, its pictures have the right shapes,
and its session on the background runner (genlib.background) runs, pauses, single-steps and cancels
from another thread."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from genlib import ConfigError, TrainingDiverged, background
from genlib.background import RunnerBusy, Snapshot
from genlib.families.gan import ToyConfig, ToySession, ToySnapshot, start_toy_session
from genlib.families.gan.toy2d import (DISTRIBUTIONS, GAUSSIAN_MEAN, MAX_RUNNING_TOY_SESSIONS, Toy2DGAN,
                                       sample_distribution)
from conftest import wait_for


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_distributions_shape_and_reproducibility(name):
    a = sample_distribution(name, 300, torch.Generator().manual_seed(1))
    b = sample_distribution(name, 300, torch.Generator().manual_seed(1))
    assert a.shape == (300, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert float(a.abs().max()) < 4.0  # all of them fit the same picture


def test_distribution_details():
    g = torch.Generator().manual_seed(0)
    ring = sample_distribution("ring", 2000, g)
    assert ring.norm(dim=1).mean().item() == pytest.approx(2.0, abs=0.05)
    angles = torch.atan2(ring[:, 1], ring[:, 0]) / (2 * torch.pi / 8)
    assert len(torch.unique(torch.round(angles) % 8)) == 8  # eight modes
    grid = sample_distribution("grid", 2000, g)
    assert len({tuple(p) for p in torch.round(grid).int().tolist()}) == 25
    gauss = sample_distribution("gaussian", 4000, g)
    assert torch.allclose(gauss.mean(0), torch.tensor(GAUSSIAN_MEAN), atol=0.05)
    with pytest.raises(ValueError, match="unknown distribution 'blob'"):
        sample_distribution("blob", 3)
    with pytest.raises(ConfigError, match="distribution"):
        ToyConfig(distribution="blob")


def _mean_error(model: Toy2DGAN) -> float:
    return float((model.fake_points().mean(0) - torch.tensor(GAUSSIAN_MEAN)).norm())


def test_learns_a_single_gaussian():
    model = Toy2DGAN(ToyConfig(distribution="gaussian", seed=0))
    before = _mean_error(model)
    assert before > 0.5, "the untrained generator is already at the target: the test would prove nothing"
    for _ in range(400):
        model.step()
    assert _mean_error(model) < 0.25
    spread = model.fake_points().std(0)
    assert (spread > 0.2).all(), f"the generator collapsed to a point: std {spread.tolist()}"
    assert model.steps == 400 and len(model.history) == 400


def test_same_seed_same_run():
    a, b = Toy2DGAN(ToyConfig(seed=3)), Toy2DGAN(ToyConfig(seed=3))
    for _ in range(5):
        assert a.step() == b.step()
    assert torch.equal(a.fake_points(), b.fake_points())


@pytest.mark.parametrize("loss", ["bce", "lsgan", "hinge", "wgan-gp"])
def test_surface_gradients_and_snapshot(loss):
    model = Toy2DGAN(ToyConfig(loss=loss, num_points=64, batch_size=32))
    for _ in range(3):
        row = model.step()
    assert ("gp" in row) == (loss == "wgan-gp") and {"d_loss", "g_loss", "d_real", "d_fake"} <= set(row)
    xs, ys, values = model.decision_surface((-2.0, 2.0, -1.0, 1.0), resolution=17)
    assert xs.shape == ys.shape == (17,) and values.shape == (17, 17)
    assert float(xs[0]) == -2.0 and float(ys[-1]) == 1.0
    # values[i, j] is D at (xs[j], ys[i])
    point = torch.tensor([[float(xs[5]), float(ys[2])]])
    with torch.no_grad():
        assert float(values[2, 5]) == pytest.approx(float(model.loss.score(model.discriminator(point))), abs=1e-5)
    if loss == "bce":
        assert 0.0 <= float(values.min()) and float(values.max()) <= 1.0
    points = torch.randn(10, 2)
    arrows = model.generator_gradients(points)
    assert arrows.shape == (10, 2) and torch.isfinite(arrows).all()
    # following an arrow a little lowers G's loss at that point
    one = points[:1]
    step = 1e-3 * arrows[:1] / arrows[:1].norm()
    with torch.no_grad():
        assert model.loss.g_loss_fn(model.discriminator(one + step)) < model.loss.g_loss_fn(model.discriminator(one))
    snap = model.snapshot(resolution=20)
    assert snap.real.shape == snap.fake.shape == snap.arrows.shape == (64, 2)
    assert snap.surface.shape == (20, 20) and snap.step == 3 and len(snap.history) == 3
    assert snap.surface_is_probability == (loss in ("bce", "lsgan"))


def test_single_phases():
    model = Toy2DGAN(ToyConfig(num_points=32))
    d0 = [p.clone() for p in model.discriminator.parameters()]
    g0 = [p.clone() for p in model.generator.parameters()]
    model.d_step()
    assert not all(torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))  # D's step leaves G alone
    assert model.steps == 0
    d1 = [p.clone() for p in model.discriminator.parameters()]
    model.g_step()
    assert all(torch.equal(a, b) for a, b in zip(d1, model.discriminator.parameters()))  # and G's leaves D alone
    assert model.steps == 1 and {"d_loss", "g_loss"} <= set(model.history[-1])
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_nan_is_reported():
    model = Toy2DGAN(ToyConfig(num_points=32))
    with torch.no_grad():
        model.discriminator[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="discriminator loss became nan"):
        model.d_step()


# -- background sessions ------------------------------------------------------------------------------
@pytest.fixture
def toy_sessions():
    """Cancel every session a test started, so none outlives it."""
    started: list[ToySession] = []
    yield started
    for s in started:
        s.cancel()
    for s in started:
        s._thread.join(5)  # (not wait(): its snapshot draws the picture, which a broken model cannot)
        assert not s._thread.is_alive(), f"session {s.id} did not stop"


def test_session_start_pause_single_step_cancel(toy_sessions):
    session = start_toy_session({"distribution": "moons", "num_points": 64}, steps_per_tick=3)
    toy_sessions.append(session)
    assert isinstance(session, ToySession) and background.get(session.id) is session
    assert session in background.works("toy")
    assert wait_for(lambda: session.snapshot().state.step >= 6), "the worker made no progress"
    snap = session.snapshot()  # from this (the main) thread while the worker runs
    assert isinstance(snap, Snapshot) and snap.kind == "toy" and snap.status == "running"
    assert isinstance(snap.state, ToySnapshot) and not hasattr(snap.state, "status")
    assert snap.state.fake.shape == (64, 2) and snap.state.surface.shape == (60, 60)
    assert 0 < snap.step <= snap.state.step and snap.total_steps == ToyConfig().max_steps  # progress towards max_steps
    with session.lock:  # hold the model, as a page drawing it does, so the worker waits for it...
        time.sleep(0.1)  # ...past its wait_while_paused: it was running when it last looked
        session.pause()
        paused_at = session.model.steps
    assert session.snapshot().status == "paused"
    assert session.snapshot().state.step == paused_at  # the worker saw the pause once it had the lock
    time.sleep(0.3)
    assert session.snapshot().state.step == paused_at and session.snapshot().status == "paused"
    assert session._thread.is_alive()  # held at wait_while_paused, not ended
    assert set(session.single_step("d")) >= {"d_loss", "d_real", "d_fake"}
    assert session.snapshot().state.step == paused_at  # a D step is half a step
    assert "g_loss" in session.single_step("g")
    assert session.snapshot().state.step == paused_at + 1
    assert session.snapshot().state.history[-1]["step"] == paused_at + 1
    assert session.snapshot().status == "paused"  # single steps leave it paused
    with pytest.raises(ValueError, match="phase"):
        session.single_step("x")
    with pytest.raises(ValueError, match="steps_per_tick"):
        session.start(steps_per_tick=0)
    assert session.snapshot().status == "paused"
    session.start(steps_per_tick=2)
    assert session.snapshot().status == "running" and session.steps_per_tick == 2
    assert wait_for(lambda: session.snapshot().state.step >= paused_at + 4)
    t0 = time.monotonic()
    session.cancel()
    final = session.wait(2)
    assert time.monotonic() - t0 < 1.0 and not session._thread.is_alive()  # within a tick
    assert final.status == "cancelled" and final.done
    with pytest.raises(RuntimeError, match="cancelled"):
        session.start()
    with pytest.raises(RuntimeError, match="cancelled"):
        session.single_step("g")


def test_a_session_made_paused_waits_and_cancels_at_once(toy_sessions):
    session = start_toy_session(ToyConfig(num_points=32), run=False)
    toy_sessions.append(session)
    assert session.snapshot().status == "paused"
    time.sleep(0.1)
    assert session.snapshot().state.step == 0  # it never stepped by itself
    t0 = time.monotonic()
    session.cancel()
    assert session.wait(2).status == "cancelled" and time.monotonic() - t0 < 1.0


def test_bad_settings_are_refused_and_nothing_is_registered():
    before = len(background.works("toy"))
    with pytest.raises(ConfigError, match="distribution"):
        start_toy_session({"distribution": "blob"})
    with pytest.raises(ValueError, match="steps_per_tick"):
        start_toy_session(ToyConfig(num_points=16), steps_per_tick=0)
    assert len(background.works("toy")) == before


def test_session_finishes_at_max_steps_and_fails_on_nan(toy_sessions):
    done = start_toy_session(ToyConfig(max_steps=7, num_points=32), steps_per_tick=5)
    toy_sessions.append(done)
    assert wait_for(lambda: done.snapshot().status == "finished")
    snap = done.snapshot()
    assert snap.state.step == 7 and snap.message == "reached max_steps=7" and snap.fraction == 1.0
    assert snap.error is None and snap.eta_s is None
    with pytest.raises(RuntimeError, match="finished"):
        done.start()

    bad = start_toy_session(ToyConfig(num_points=32), run=False)
    toy_sessions.append(bad)
    assert bad.snapshot().status == "paused"
    with torch.no_grad():
        bad.model.generator[0].weight.fill_(float("nan"))
    bad.start()
    assert wait_for(lambda: bad.snapshot().status == "failed")
    snap = bad.snapshot()
    assert snap.message.startswith("training diverged: ") and "nan" in snap.message
    assert "learning rate" in snap.message and snap.error == f"Failed: {snap.message}"


def test_a_single_step_that_diverges_fails_the_session(toy_sessions):
    session = start_toy_session(ToyConfig(num_points=32), run=False)
    toy_sessions.append(session)
    with torch.no_grad():
        session.model.discriminator[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="discriminator loss became nan"):
        session.single_step("d")
    # (the picture asks this D too, so it would be NaN, but the status and message are plain)
    snap = session.snapshot()
    assert snap.status == "failed" and snap.message.startswith("training diverged: ")
    assert "discriminator loss became nan" in snap.message
    session.wait(2)
    assert not session._thread.is_alive()  # the paused worker ended too
    with pytest.raises(RuntimeError, match="failed"):
        session.single_step("g")


def test_an_unexpected_failure_is_reported_in_words(toy_sessions):
    session = start_toy_session(ToyConfig(num_points=32), run=False)
    toy_sessions.append(session)
    first = session.model.discriminator[0]  # a D that expects 3-D points: the first 2-D batch fails in torch
    session.model.discriminator[0] = torch.nn.Linear(3, first.out_features)
    session.start()
    assert wait_for(lambda: session.status == "failed")  # (a snapshot would fail too: it asks this D)
    session._thread.join(2)
    session.model.discriminator[0] = first  # the picture asks D too: give it back its 2-D layer
    snap = session.snapshot()
    assert "mat1 and mat2" in snap.message and "Error" not in snap.message, snap.message
    assert snap.error.startswith("RuntimeError: ") and "mat1 and mat2" in snap.error


def test_running_sessions_are_capped(toy_sessions):
    assert ToySession.limit == MAX_RUNNING_TOY_SESSIONS == 4
    others = sum(w.status == "running" for w in background.works("toy"))  # another test's, if any
    for _ in range(MAX_RUNNING_TOY_SESSIONS - others):
        toy_sessions.append(start_toy_session(ToyConfig(num_points=16), steps_per_tick=1))
    before = len(background.works("toy"))
    with pytest.raises(RunnerBusy, match=f"^{MAX_RUNNING_TOY_SESSIONS} toy sessions are already running; "
                                         "pause one first$"):
        start_toy_session(ToyConfig(num_points=16))
    assert len(background.works("toy")) == before  # nothing was registered
    paused = start_toy_session(ToyConfig(num_points=16), run=False)  # a paused one is fine
    toy_sessions.append(paused)
    with pytest.raises(RunnerBusy, match="already running"):
        paused.start()
    assert paused.snapshot().status == "paused"
    first = toy_sessions[0]
    first.pause()
    paused.start()
    assert paused.snapshot().status == "running"
    with pytest.raises(RunnerBusy):
        first.start()
    assert first.snapshot().status == "paused"


def test_snapshot_arrays_are_copies():
    model = Toy2DGAN(ToyConfig(num_points=16))
    snap = model.snapshot(resolution=8)
    before = snap.fake.copy()
    model.step()
    assert np.array_equal(snap.fake, before)
