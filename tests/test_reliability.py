"""The lab's reliability story, proved on the real parts: real torch models saved by the training
runs' own save path, a process really SIGKILLed while it saves, a really full disk (a 2 MB tmpfs),
NaN and Cancel through the real background job, eight real browser sessions at once against a real
``streamlit run`` server, and that server's memory over hundreds of real requests.

- A save killed at any moment (temp folder just made, weights being written, between the two
  renames that swap a new version in, after them) never costs the checkpoint: the previous version
  loads and the listing shows no half-written folder.
- A full disk fails the run with "disk full: there is no space left ..." and the folder, nothing
  half-written stays behind and the previous run of that name is untouched.
- NaN stops a job with a plain message and saves nothing (an earlier run of the name stays as it
  was); Cancel stops it within a step and saves the partial run as "cancelled", for every kind of
  family (two optimizers, diffusers layout, conditional).
- Eight sessions at once open every page without an exception and see the same images for the
  same seed; each family page serves 100 sampling requests without the server's memory growing.

With ``GENLIB_RELIABILITY_FIGURES=path.json`` set, the measured figures (timings, RSS) are written
there; ``python -m benchmarks.reliability`` runs this file that way for its report.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect
from test_e2e_browser import EXCEPTION, LOAD_MS, _compare_view, app_server, browser, wait_idle  # noqa: F401

import genlib
from genlib import TrainConfig, background
from genlib.checkpoints import CheckpointError, list_checkpoints, load_model, read_history
from genlib.families.autoencoders import VAE
from genlib.model import StepOutput
from genlib.runs import TrainingJob, build_model, save_run, start_training_job, train_run
from genlib.training import TrainResult

ROOT = Path(__file__).resolve().parent.parent
LONG = TrainConfig(epochs=1000, batch_size=16, device="cpu", preview_every=1000)  # far longer than any test
FIGURES = os.environ.get("GENLIB_RELIABILITY_FIGURES")


def record(name: str, value) -> None:
    """Store one measured figure in $GENLIB_RELIABILITY_FIGURES (a JSON object), when that is set."""
    if not FIGURES:
        return
    path = Path(FIGURES)
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))


def _tiny(family: str, **overrides) -> dict:
    return {**genlib.get_family(family).tiny_config, **overrides}


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path: equal digests mean an untouched folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _save(out: Path, family: str, config: dict, seed: int = 0) -> Path:
    """Save a model the way a training run does (``save_run``: weights, config, metrics, preview, card)."""
    model = build_model(family, config, seed=seed)
    return save_run(model, TrainConfig(device="cpu"), TrainResult(steps=0), out, {})


def _leftovers(root: Path) -> list[str]:
    """Names under ``root`` that a save leaves only when it is interrupted (temp folders, an old version)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def _listed_runs() -> list[str]:
    return [info.name for info in list_checkpoints() if info.origin == "run"]


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A fresh runs folder (GENLIB_RUNS_DIR) that ``list_checkpoints`` and name lookups read."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def no_job_left_running():
    """Every training job a test starts has ended when it ends (cancelling only its own)."""
    before = {w.id for w in background.works("training")}
    yield
    for work in background.works("training"):
        if work.id not in before and not work.snapshot().done:
            work.cancel()
            work.wait(60)


# -- 1. a save killed mid-way ------------------------------------------------------------------------------
# The child saves a new version of the checkpoint through save_run. "after-weights", "between-renames"
# and "after-renames" kill it at exactly that point (a SIGKILL it sends itself from inside the real call);
# the other two are killed from outside, by timing, as soon as the parent sees the temp folder or its
# weights file appear.
CHILD = r"""
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import genlib.checkpoints.writing as writing  # the module whose save_file save_folder calls
from genlib import TrainConfig
from genlib.runs import build_model, save_run
from genlib.training import TrainResult

out, family, config, crash = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if crash == "after-weights":
    real_save_file = writing.save_file
    def save_file(*args, **kwargs):
        real_save_file(*args, **kwargs)
        die()
    writing.save_file = save_file
elif crash in ("between-renames", "after-renames"):
    real_replace = os.replace
    def replace(src, dst):
        into_place = Path(dst) == out and Path(src).name.startswith(f".{out.name}.tmp-")
        if into_place and crash == "between-renames":
            die()
        real_replace(src, dst)
        if into_place:
            die()
    os.replace = replace
model = build_model(family, config, seed=1)
print(f"saving {model.num_parameters()} parameters", flush=True)
if os.environ.get("SAVE_AT_LOWEST_PRIORITY"):
    os.nice(19)  # only the save itself: importing torch at nice 19 on a loaded machine could take minutes
save_run(model, TrainConfig(device="cpu"), TrainResult(steps=0), out, {})
print("saved", flush=True)
"""
# ~51M parameters (206 MB of weights): long enough to write that the parent sees it happen.
BIG_VAE = {"latent_dim": 16, "width": 128, "hidden": 2048}


def _start_saving(out: Path, family: str, config: dict, crash: str, lowest_priority: bool = False) -> subprocess.Popen:
    """The child saving a new version of ``out``; its save at the lowest CPU priority when the parent must catch it
    mid-way (on a busy machine the parent then runs first, and each step of the save takes longer)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENLIB_RUNS_DIR": str(out.parent), "OMP_NUM_THREADS": "1",
           **({"SAVE_AT_LOWEST_PRIORITY": "1"} if lowest_priority else {})}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), family, json.dumps(config), crash], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(proc: subprocess.Popen, appeared, timeout: float = 180.0) -> bool:
    """SIGKILL ``proc`` the moment ``appeared()`` holds (polled every millisecond); False if it had ended first."""
    deadline = time.monotonic() + timeout
    while not appeared():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the save never started"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return proc.returncode == -signal.SIGKILL


def _temp_folders(runs: Path, name: str) -> list[Path]:
    return [p for p in runs.iterdir() if p.name.startswith(f".{name}.tmp-")]


@pytest.mark.parametrize("moment", ["temp folder made", "weights file written"])
def test_a_save_killed_from_outside_keeps_the_previous_version(runs, moment):
    if moment == "temp folder made":
        def appeared():
            return bool(_temp_folders(runs, "my-run"))
    else:
        def appeared():
            return any((t / "model.safetensors").exists() for t in _temp_folders(runs, "my-run"))
    try:
        for _ in range(3):  # on a busy machine the save may finish between the sighting and the kill: again
            previous = _save(runs / "my-run", "vae", _tiny("vae"))
            before = _digest(previous)
            child = _start_saving(runs / "my-run", "vae", BIG_VAE, "none", lowest_priority=True)
            if _kill_when(child, appeared) and _temp_folders(runs, "my-run"):
                break
        else:
            pytest.fail(f"three times the save finished before the kill landed: {child.stdout.read()}")
        assert "saved" not in child.stdout.read().split()  # killed mid-save: its temp folder is still there
        written = {f.name: f.stat().st_size for t in _temp_folders(runs, "my-run") for f in t.iterdir()}
        between_renames = not previous.exists()  # the kill landed after the first rename (see the next test)
        assert _listed_runs() == ["my-run"]  # no half-written folder is listed (and the listing recovers it)
        assert _digest(previous) == before  # the previous version, byte for byte
        model, info = load_model("my-run")
        assert model.config == genlib.get_family("vae").Config.from_dict(_tiny("vae"))
        record(f"kill.{moment}", {"temp_folder_at_kill": written, "previous_intact": True, "listed": ["my-run"],
                                  "between_renames": between_renames})
    finally:
        for leftover in _temp_folders(runs, "my-run"):
            shutil.rmtree(leftover)  # up to 206 MB


@pytest.mark.parametrize("family, crash", [("vae", "after-weights"), ("vae", "between-renames"),
                                           ("diffusion", "between-renames"), ("vae", "after-renames")])
def test_a_save_killed_at_each_step_never_loses_the_checkpoint(runs, family, crash):
    old_config, new_config = _tiny(family), _tiny(family, **({"latent_dim": 3} if family == "vae" else
                                                             {"base_channels": 16}))
    cls = genlib.get_family(family)
    previous = _save(runs / "my-run", family, old_config)
    before = _digest(previous)
    child = _start_saving(runs / "my-run", family, new_config, crash)
    child.wait(180)
    assert child.returncode == -signal.SIGKILL, child.stdout.read()
    left = sorted(re.sub(r"\.tmp-\w+$", ".tmp-*", p.name) for p in runs.iterdir())
    record(f"kill.{family}.{crash}", {"left_after_kill": left})

    if crash == "between-renames":
        # The moment with no folder under the name: the previous version waits, complete, in .my-run.old.
        assert not previous.exists() and (runs / ".my-run.old").is_dir()
        model, _ = load_model("my-run")  # loading by name puts it back...
        assert model.config == cls.Config.from_dict(old_config) and _digest(previous) == before
        child = _start_saving(runs / "my-run", family, new_config, crash)
        child.wait(180)
        assert not previous.exists()
        assert _listed_runs() == ["my-run"]  # ... and so does listing
        assert _digest(previous) == before
    expected = new_config if crash == "after-renames" else old_config
    assert _listed_runs() == ["my-run"]
    model, _ = load_model("my-run")
    assert model.config == cls.Config.from_dict(expected)
    if crash != "after-renames":
        assert _digest(previous) == before
    # The next save of the name goes through and tidies what the killed one left of the old version.
    _save(runs / "my-run", family, new_config, seed=2)
    assert load_model("my-run")[0].config == cls.Config.from_dict(new_config)
    assert ".my-run.old" not in _leftovers(runs)


# -- 2. a full disk ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs): saving a few MB of weights into it fails with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip(f"a full disk is made by mounting a 2 MB tmpfs, which needs root; this is uid {os.geteuid()}")
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not mount or not umount:
        pytest.skip("a full disk is made by mounting a 2 MB tmpfs, and this machine has no mount command")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a 2 MB tmpfs is not permitted here ({done.stderr.strip() or done.returncode}), "
                    "so a full disk cannot be made")
    try:
        yield folder
    finally:
        gc.collect()  # a loaded model may still map a file in it (safetensors mmap): let it go first
        if subprocess.run([umount, str(folder)], capture_output=True).returncode != 0:
            subprocess.run([umount, "--lazy", str(folder)], check=True)  # detached now, freed once unused


def _disk_full_message(message: str, folder: Path) -> None:
    assert message.startswith("disk full: there is no space left on the device to save the run in "), message
    assert str(folder) in message and "Error" not in message and "os error" not in message, message


@pytest.mark.parametrize("family", ["vae", "diffusion"])  # safetensors by genlib, and a diffusers pipeline
def test_a_full_disk_fails_the_run_in_words_and_keeps_the_previous_one(small_disk, family):
    short = TrainConfig(epochs=1, max_steps=2, batch_size=16, device="cpu")
    previous = train_run(family, _tiny(family), short, small_disk / "run", evaluate_model=False).path
    before = _digest(previous)
    with pytest.raises(CheckpointError) as refused:   # the family's default size: 4-7 MB of weights
        train_run(family, {}, short, small_disk / "run", evaluate_model=False)
    _disk_full_message(str(refused.value), small_disk / "run")
    record(f"disk_full.train_run.{family}", str(refused.value))
    assert sorted(p.name for p in small_disk.iterdir()) == ["run"]  # no temp folder, no old version
    assert _digest(previous) == before
    assert load_model(previous)[0].config == genlib.get_family(family).Config.from_dict(_tiny(family))


def test_a_full_disk_fails_the_background_job_in_words(small_disk):
    previous = train_run("vae", _tiny("vae"), TrainConfig(epochs=1, max_steps=2, batch_size=16, device="cpu"),
                         small_disk / "run", evaluate_model=False).path
    before = _digest(previous)
    job = start_training_job("vae", {}, LONG, name="run", out_root=small_disk)
    assert wait_until(lambda: job.snapshot().step >= 1 or job.snapshot().done, 60)
    job.cancel()  # a cancelled run is saved: here is where the disk is full
    final = job.wait(60)
    assert final.status == "failed" and final.result is None and final.state.result_path is None
    _disk_full_message(final.message, small_disk / "run")  # what the page shows
    record("disk_full.job", final.message)
    assert sorted(p.name for p in small_disk.iterdir()) == ["run"]
    assert _digest(previous) == before


def wait_until(predicate, timeout: float) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- 3. NaN and Cancel through the background job ---------------------------------------------------------------
class NaNAtStep3(VAE):
    """A VAE whose loss turns NaN at step 3 (as a too-high learning rate does, only on cue)."""

    def training_step(self, batch, step):
        out = super().training_step(batch, step)
        return StepOutput(out.loss * float("nan"), out.scalars) if step == 3 else out


def test_nan_mid_run_stops_the_job_cleanly_and_keeps_the_earlier_run_of_its_name(runs):
    earlier = train_run("vae", _tiny("vae"), TrainConfig(epochs=1, max_steps=2, batch_size=16, device="cpu"),
                        runs / "same", evaluate_model=False).path
    before = _digest(earlier)
    model = NaNAtStep3(genlib.get_family("vae").Config.from_dict(_tiny("vae")))
    train = TrainConfig(epochs=1, max_steps=50, batch_size=16, device="cpu", preview_every=1)
    job = background.start(TrainingJob(model, train, name="same", out_root=runs))
    final = job.wait(60)
    assert not job._thread.is_alive()
    assert final.status == "failed" and final.result is None and final.state.result_path is None
    assert final.message.startswith("training diverged: the loss became nan at step 3; ")
    assert final.message.endswith(". Nothing was saved.") and "Error" not in final.message
    assert [row["step"] for row in final.state.history] == [1, 2, 3]  # the curve up to the last good step stays
    assert [snap.step for snap in final.state.snapshots] == [1, 2, 3]
    assert _digest(earlier) == before and _leftovers(runs) == []  # nothing saved, nothing half-written
    assert load_model("same")[0].config == genlib.get_family("vae").Config.from_dict(_tiny("vae"))
    assert not [w for w in background.works("training") if w.status == "running"]  # its slot is free
    record("nan.job", {"message": final.message, "history_steps": len(final.state.history)})


@pytest.mark.parametrize("family", ["dcgan", "diffusion", "cvae"])  # two optimizers; diffusers layout; labels
def test_cancel_stops_the_job_within_a_step_and_saves_a_usable_partial_run(runs, family):
    job = start_training_job(family, _tiny(family), LONG, name=f"partial-{family}", out_root=runs)
    assert wait_until(lambda: job.snapshot().step >= 2, 120), job.snapshot().message
    at_cancel = job.snapshot().step
    cancelled = time.monotonic()
    job.cancel()
    final = job.wait(60)
    stopped_s = time.monotonic() - cancelled
    assert not job._thread.is_alive()
    assert final.status == "cancelled" and final.error is None
    assert at_cancel <= final.step <= at_cancel + 2, "training ran on after the cancel"
    assert final.message == f"cancelled at step {final.step}; the partial run was saved as partial-{family}"
    path = final.state.result_path
    assert path == runs / f"partial-{family}" and _leftovers(runs) == []
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["status"] == "cancelled" and metrics["train_steps"] == final.step
    assert "Status: cancelled." in (path / "README.md").read_text()
    assert list(read_history(path)["step"]) == list(range(1, final.step + 1))  # one row per step
    listed = [i for i in list_checkpoints(family) if i.name == f"partial-{family}"]
    assert len(listed) == 1 and listed[0].metrics["status"] == "cancelled"
    model, _ = load_model(f"partial-{family}")
    gen = torch.Generator().manual_seed(0)
    images = model.sample(4, generator=gen, labels=model.default_labels(4)) if model.conditional else \
        model.sample(4, generator=gen)
    assert images.shape[0] == 4 and torch.isfinite(images).all()
    record(f"cancel.{family}", {"seconds_to_stop_and_save": round(stopped_s, 2), "steps_at_cancel": at_cancel,
                                "steps_saved": final.step, "message": final.message})


# -- browser helpers ------------------------------------------------------------------------------------------------
def _server_pid(url: str) -> int:
    """The process id of the ``streamlit run`` server listening on ``url``'s port (found in /proc)."""
    port = str(urllib.parse.urlparse(url).port).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in args and b"--server.port" in args and port in args:
            return int(entry.name)
    pytest.fail(f"no streamlit process serves {url}")


def _status_mb(pid: int, field: str) -> float:
    """A size from /proc/<pid>/status in MB: VmRSS (resident now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def _idle_rss_mb(pid: int) -> float:
    """The server's resident memory once it is idle: the median of five reads 0.1 s apart."""
    reads = []
    for _ in range(5):
        reads.append(_status_mb(pid, "VmRSS"))
        time.sleep(0.1)
    return statistics.median(reads)


def _set_seed(page, seed: int) -> None:
    box = page.get_by_label("Global seed", exact=True)
    box.fill(str(seed))
    box.press("Enter")


def _grid(page, seed: int):
    """The image whose caption ends in "· seed N" (a page's seeded sample grid)."""
    return page.locator('[data-testid="stImage"]').filter(has_text=re.compile(rf"· seed {seed}( |$)"))


def _image_digests(page, images) -> list[str]:
    """sha256 of the bytes the server serves for each <img> under ``images``."""
    imgs = images.locator("img")
    digests = []
    for i in range(imgs.count()):
        response = page.request.get(imgs.nth(i).get_attribute("src"))
        assert response.ok, response.status
        digests.append(hashlib.sha256(response.body()).hexdigest())
    return digests


def _routed(page) -> None:
    """Wait until the page shows the router's sidebar (its page links and the global seed)."""
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Home").wait_for()
    page.get_by_label("Global seed", exact=True).wait_for()


# -- 4. eight sessions at once on every page ----------------------------------------------------------------------
SESSIONS = 8


def _seeded_grid(page):
    return _image_digests(page, _grid(page, 0))


def _compare_grids(page):
    chosen_and_sources = _compare_view(page)
    grids = page.locator('[data-testid="stImage"]').filter(has_text=" · ")
    return [c for c in chosen_and_sources if not c.startswith("http")] + _image_digests(page, grids)


def _estimated_sigma(page):
    return [page.get_by_test_id("stMetricValue").first.inner_text()]  # of the photo plus seed-0 noise


def _home_previews(page):
    return _image_digests(page, page.locator('[data-testid="stImage"]'))


EVERY_PAGE = [  # sidebar link, what shows once it has drawn, (an action, what shows after it), what is alike
    ("Autoencoders", lambda p: _grid(p, 0).wait_for(), None, _seeded_grid),
    ("GANs", lambda p: _grid(p, 0).wait_for(), None, _seeded_grid),
    ("Diffusion", lambda p: p.get_by_text("Press Sample to draw").wait_for(),  # then Sample, and its grid
     (lambda p: p.get_by_role("button", name="Sample", exact=True).click(), lambda p: _grid(p, 0).wait_for()),
     _seeded_grid),
    ("Restore photos", lambda p: p.get_by_text("Press Restore to run").wait_for(), None, _estimated_sigma),
    ("Compare", lambda p: p.get_by_role("heading", name="Scoreboard").wait_for(), None, _compare_grids),
    ("Home", lambda p: p.get_by_role("heading", name="Evaluator").wait_for(), None, _home_previews),
]


@pytest.mark.slow
def test_eight_sessions_at_once_open_every_page_alike(app_server, browser):  # noqa: F811
    """On a fresh server, eight sessions open a direct link at the same moment (the first visitors of a
    restarted demo), then every page, all eight at once: no exception or error on any, and the same
    seed-0 images (the bytes the server serves), noise estimate and scoreboard in every one."""
    pid = _server_pid(app_server["url"])
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(SESSIONS)]
    timings, peaks = {}, {}
    try:
        pages = [context.new_page() for context in contexts]
        for i, (link, drawn, action, alike) in enumerate(EVERY_PAGE):
            began = time.monotonic()
            for page in pages:
                if i == 0:  # none waits for another
                    page.set_default_timeout(LOAD_MS)
                    page.goto(app_server["url"] + "/autoencoders", wait_until="commit")
                else:
                    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=link).click()
            for page in pages:
                _routed(page)  # inside the router, even for the sessions that arrived together
                drawn(page)
            if action is not None:
                act, acted = action
                for page in pages:
                    wait_idle(page)
                for page in pages:
                    act(page)
                for page in pages:
                    acted(page)
            seen = []
            for page in pages:
                wait_idle(page)
                assert page.locator(EXCEPTION).count() == 0, f"an exception on {link}"
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, f"an error on {link}"
                seen.append(alike(page))
            timings[link] = round(time.monotonic() - began, 1)
            peaks[link] = round(_status_mb(pid, "VmHWM"), 1)
            assert seen[0], f"nothing to compare on {link}"
            assert all(s == seen[0] for s in seen), f"{link}: the sessions saw different outputs for seed 0"

        # The comparison is not empty-handed: another seed draws another grid.
        page = pages[0]
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Autoencoders").click()
        _grid(page, 0).wait_for()
        wait_idle(page)
        seed_0 = _seeded_grid(page)
        _set_seed(page, 1)
        _grid(page, 1).wait_for()
        wait_idle(page)
        assert _image_digests(page, _grid(page, 1)) != seed_0
    finally:
        for context in contexts:
            context.close()
    record("concurrency", {"sessions": SESSIONS, "seconds_per_page": timings, "server_peak_rss_mb_after": peaks,
                           "server_rss_after_mb": round(_status_mb(pid, "VmRSS"), 1)})


# -- 5. memory over 100 requests per family page ------------------------------------------------------------------
@pytest.fixture(scope="module")
def memory_server(app_checkpoints, tmp_path_factory):
    """A ``streamlit run`` server of the memory tests' own (as test_e2e_browser's app_server starts one):
    they measure a server that no crowd of sessions has used before."""
    runs = tmp_path_factory.mktemp("memory-runs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GENLIB_CHECKPOINTS": str(app_checkpoints), "GENLIB_RUNS_DIR": str(runs),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(runs.parent / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the streamlit server did not start; see {log.name}")
            time.sleep(0.5)
        yield {"url": url, "pid": proc.pid}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# Each page's cheapest request that samples or restores something new: a new global seed redraws the sample
# grid (Autoencoders, GANs); a new seed, then Sample with 1 diffusion step (Diffusion); a new seed (new noise on
# a 28x28 test digit), then Restore with non-local means alone (Restore photos). A request is one or two
# phases, each an action and what shows once the server has answered it.
def _ae_setup(page) -> None:
    page.get_by_text("samples from the prior").first.wait_for()


def _gan_setup(page) -> None:
    _grid(page, 0).wait_for()


def _diffusion_setup(page) -> None:
    page.get_by_role("button", name="Sample", exact=True).wait_for()
    wait_idle(page)
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("1")
    steps.press("Enter")


def _restore_setup(page) -> None:
    page.get_by_text("Press Restore to run").wait_for()
    wait_idle(page)
    page.get_by_text("A test digit (28x28)", exact=True).click()
    page.get_by_label("Test digit (index into the 1,000 test digits)").wait_for()
    wait_idle(page)
    methods = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Methods")
    chosen = methods.locator("[data-tag]")
    methods.get_by_role("button", name="Clear all").click()  # then non-local means alone, from the list
    expect(chosen).to_have_count(0)
    wait_idle(page)
    box = methods.locator("input").first
    box.focus()
    box.press("ArrowDown")
    page.get_by_role("option", name="nl-means", exact=True).click()
    page.keyboard.press("Escape")
    expect(chosen).to_have_count(1)
    assert "nl-means" in chosen.first.inner_text()


def _restored(page):
    return page.locator('[data-testid="stDownloadButton"]').filter(has_text="nl-means (PNG)")


def _restore_ready(page, seed: int) -> None:
    page.get_by_text(f"Seed {seed} (the global seed)").wait_for()
    page.get_by_role("button", name="Restore", exact=True).wait_for()
    _restored(page).wait_for(state="detached")  # the previous seed's results are gone


def _click(name: str):
    return lambda page, seed: page.get_by_role("button", name=name, exact=True).click()


REQUESTS = {  # path, setup, phases (act, done) of one request
    "autoencoders": ("/autoencoders", _ae_setup, [(_set_seed, lambda p, s: _grid(p, s).wait_for())]),
    "gans": ("/gans", _gan_setup, [(_set_seed, lambda p, s: _grid(p, s).wait_for())]),
    "diffusion": ("/diffusion", _diffusion_setup,
                  [(_set_seed, lambda p, s: p.get_by_text("Press Sample to draw").wait_for()),
                   (_click("Sample"), lambda p, s: _grid(p, s).wait_for())]),
    "restore": ("/restore", _restore_setup,
                [(_set_seed, _restore_ready), (_click("Restore"), lambda p, s: _restored(p).wait_for())]),
}
# Visitors take turns, so one's request runs while another's page draws or waits for its background task
# (Diffusion and Restore take two script runs and more a request); each sends its share of the requests.
MEMORY_SESSIONS = {"autoencoders": 2, "gans": 2, "diffusion": 4, "restore": 4}
WARM_UP_REQUESTS = 12      # caches, lazy imports and the allocator reach their working size
MEASURED_REQUESTS = 100
MEMORY_GROWTH_MB = 40      # see test_server_memory_stays_flat_over_100_requests


def _trend_mb(reads: list[float]) -> float:
    """The Theil-Sen slope of ``reads`` (taken at equal steps): the median over every pair of the rise per step."""
    return statistics.median((reads[j] - reads[i]) / (j - i) for i in range(len(reads))
                             for j in range(i + 1, len(reads)))


def _serve(pages, phases, rounds: range, after_request=lambda: None) -> None:
    """Send one request per page per round, phase by phase: every page acts, then each is awaited;
    ``after_request`` runs as each page's last phase is answered."""
    for i in rounds:
        for number, (act, done) in enumerate(phases):
            for k, page in enumerate(pages):
                act(page, 1 + 1000 * k + i)  # each visitor its own seeds: no request is answered from a cache
            for k, page in enumerate(pages):
                done(page, 1 + 1000 * k + i)
                if number == len(phases) - 1:
                    after_request()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REQUESTS))
def test_server_memory_stays_flat_over_100_requests(memory_server, browser, name):  # noqa: F811
    """The server's RSS is read after each of the 100 requests (after a warm-up of 12). It swings by
    up to about 100 MB from one read to the next with no trend (the Diffusion page went 709-810 MB and back:
    glibc keeps freed memory in per-thread arenas, and Streamlit runs each script run in a new thread), so
    one read before and one after prove little. The growth is the trend through all the reads instead
    (Theil-Sen: the median slope over every pair of reads, which swings and spikes do not move), times
    the requests. A read per request, not per round of all sessions' requests: with 25 reads of the
    four Diffusion sessions the trend's own scatter reached 46 MB in one CI run (20 MB on a rerun); with
    100 it gave -12 to 7 MB on the four pages. The bound, 40 MB, sits well above that, yet a leak of
    0.5 MB a script run breaks it (one injected into the Autoencoders page measured 117 MB): less than
    any one model a page holds (the UNet is 4.5 MB, the DCGAN 3.5 MB, the VAE 6.7 MB)."""
    path, setup, phases = REQUESTS[name]
    pid = memory_server["pid"]
    pages = []
    try:
        sessions = MEMORY_SESSIONS[name]
        warm_up, measured = WARM_UP_REQUESTS // sessions, MEASURED_REQUESTS // sessions
        for _ in range(sessions):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(LOAD_MS)
            page.goto(memory_server["url"] + path)
            pages.append(page)
        for page in pages:
            _routed(page)
            setup(page)
            wait_idle(page)
        _serve(pages, phases, range(warm_up))
        for page in pages:
            wait_idle(page)
        before = _idle_rss_mb(pid)
        reads: list[float] = []
        began = time.monotonic()
        _serve(pages, phases, range(warm_up, warm_up + measured), lambda: reads.append(_status_mb(pid, "VmRSS")))
        seconds = time.monotonic() - began
        for page in pages:
            wait_idle(page)
            assert page.locator(EXCEPTION).count() == 0
        after = _idle_rss_mb(pid)
    finally:
        for page in pages:
            page.context.close()
    requests = sessions * measured
    growth = _trend_mb(reads) * len(reads)
    record(f"memory.{name}", {"requests": requests, "rss_before_mb": round(before, 1),
                              "rss_after_mb": round(after, 1), "growth_mb": round(growth, 1),
                              "rss_range_mb": [round(min(reads), 1), round(max(reads), 1)],
                              "reads_mb": [round(r, 1) for r in reads],
                              "sessions": sessions, "seconds": round(seconds, 1),
                              "seconds_per_request": round(seconds / requests, 2),
                              "server_peak_rss_mb": round(_status_mb(pid, "VmHWM"), 1)})
    assert growth < MEMORY_GROWTH_MB, (f"{name}: RSS grew by {growth:.0f} MB over {requests} requests (reads "
                                       f"{min(reads):.0f}-{max(reads):.0f} MB; idle {before:.0f} -> {after:.0f} MB)")
