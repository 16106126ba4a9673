"""Demo mode (genlib.demo) and each visitor's private folder (genlib.workspace): the caps, their
environment overrides, the quota, the time-to-live, which sources a visitor may load, per-visitor
job limits, the per-job time limit, the hub switch and its size check before downloading, and that
a shared cached model is never changed by sampling. The two-browser test is test_e2e_demo.py."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import genlib
from genlib import TrainConfig
from genlib.background import RunnerBusy
from genlib.checkpoints import CheckpointError, load_model
from genlib.demo import DEMO_LIMITS, ENV, Limits, limits
from genlib.runs import start_training_job
from genlib.workspace import QuotaExceeded, Workspace, new_token, sweep

ROOT = Path(__file__).resolve().parent.parent
LONG = TrainConfig(epochs=1000, batch_size=16, device="cpu", preview_every=1000)


@pytest.fixture
def demo_env(monkeypatch, tmp_path):
    """Demo mode on, with the visitors' folders and runs in temp folders and no GENLIB_DEMO_* override."""
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GENLIB_DEMO", "1")
    monkeypatch.setenv("GENLIB_VISITORS_DIR", str(tmp_path / "visitors"))
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def _tiny(family: str):
    cls = genlib.get_family(family)
    return cls.Config.from_dict(cls.tiny_config)


def _stop(*jobs) -> None:
    for job in jobs:
        job.cancel()
        job.wait(60)


# -- the caps ------------------------------------------------------------------------------------------------
def test_demo_mode_caps_everything_and_the_lab_does_not(demo_env, monkeypatch):
    assert limits() == DEMO_LIMITS
    assert DEMO_LIMITS.train_steps and DEMO_LIMITS.train_seconds and DEMO_LIMITS.jobs_per_session == 1
    assert DEMO_LIMITS.hub is False and DEMO_LIMITS.samples and DEMO_LIMITS.tokens and DEMO_LIMITS.torch_threads
    monkeypatch.setenv("GENLIB_DEMO", "0")
    assert limits() == Limits()
    assert Limits().train_steps is None and Limits().hub is True


def test_each_cap_can_be_set_from_its_environment_variable(demo_env, monkeypatch):
    monkeypatch.setenv(ENV["train_steps"], "40")
    monkeypatch.setenv(ENV["train_seconds"], "2.5")
    monkeypatch.setenv(ENV["hub"], "1")
    monkeypatch.setenv(ENV["samples"], "none")
    got = limits()
    assert (got.train_steps, got.train_seconds, got.hub, got.samples) == (40, 2.5, True, None)
    monkeypatch.setenv(ENV["train_steps"], "many")
    with pytest.raises(ValueError, match="GENLIB_DEMO_TRAIN_STEPS='many' is not a number"):
        limits()


def test_the_summary_states_each_cap_in_words():
    text = DEMO_LIMITS.summary("train_steps", "train_seconds", "upload_bytes", "hub")
    assert text == ("at most 1,500 training steps per job; 3 min of training per job (the run is saved then); "
                    "uploads up to 5 MB; loading from the Hugging Face hub is off")
    assert Limits().summary("train_steps") == ""   # no cap: nothing to say


# -- the visitor's folder ------------------------------------------------------------------------------------
def test_a_workspace_needs_a_well_formed_token_and_tokens_are_unguessable(demo_env):
    for bad in ["", "../../etc", "a" * 8, "x/y" * 10]:
        with pytest.raises(ValueError, match="visitor token"):
            Workspace.for_token(bad, 10_000)
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 32 for t in tokens)
    ws = Workspace.for_token(new_token(), 10_000)
    assert ws.runs.is_dir() and ws.root.parent == demo_env / "visitors"


def test_the_quota_is_enforced_with_a_message_in_words(demo_env):
    ws = Workspace.for_token(new_token(), 50_000)
    (ws.runs / "big.bin").write_bytes(b"x" * 40_000)
    ws.check_room(5_000)
    with pytest.raises(QuotaExceeded, match=r"your runs use 0\.0 MB of the 0 MB each visitor may keep, and this needs "
                                            r"about 0\.0 MB more; delete a run first"):
        ws.check_room(20_000)


def test_folders_idle_past_their_time_to_live_are_swept(demo_env):
    old, fresh = Workspace.for_token(new_token(), 10_000), Workspace.for_token(new_token(), 10_000)
    (old.runs / "run").mkdir()
    hour_ago = time.time() - 3600
    os.utime(old.root / ".last_seen", (hour_ago, hour_ago))
    removed = sweep(ttl_s=1800)
    assert removed == [old.root] and not old.root.exists() and fresh.root.exists()
    old.touch()  # the visitor comes back to an open tab: a new, empty folder
    assert old.runs.is_dir() and not any(old.runs.iterdir())


def test_a_visitor_may_load_shipped_models_and_their_own_runs_only(demo_env, monkeypatch, app_checkpoints):
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(app_checkpoints))
    mine, theirs = Workspace.for_token(new_token(), 10**7), Workspace.for_token(new_token(), 10**7)
    for ws in (mine, theirs):
        (ws.runs / "run-1").mkdir()
    shipped = next(p for p in app_checkpoints.iterdir() if p.is_dir())
    mine.allows(shipped.name, hub=False)
    mine.allows(str(shipped), hub=False)
    mine.allows(str(mine.runs / "run-1"), hub=False)
    refused = [str(theirs.runs / "run-1"), str(theirs.root), "/etc", str(mine.runs / ".." / ".." / theirs.root.name),
               "run-1", str(ROOT)]
    link = mine.runs / "sneaky"
    link.symlink_to(theirs.runs / "run-1")   # a link inside my folder to theirs still points outside
    refused.append(str(link))
    for source in refused:
        with pytest.raises(CheckpointError, match="only its shipped models and your own runs"):
            mine.allows(source, hub=False)
    with pytest.raises(CheckpointError, match="hub is off in this demo"):
        mine.allows("owner/model", hub=False)
    for long_id in ("a" * 5000, "owner/" + "b" * 5000):   # no OS error, and a short message
        with pytest.raises(CheckpointError, match=r"^no checkpoint called 'a+'… \(5,\d+ characters\)|^no checkpoint "):
            mine.allows(long_id, hub=True)
    mine.allows("owner/model", hub=True)


def test_listing_shows_shipped_models_and_only_the_given_runs_folder(demo_env, monkeypatch, app_checkpoints,
                                                                  core_tiny_model):
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(app_checkpoints))
    mine, theirs = Workspace.for_token(new_token(), 10**8), Workspace.for_token(new_token(), 10**8)
    model = core_tiny_model("vae")
    genlib.checkpoints.save_folder(theirs.runs / "their-run", model, {"family": "vae",
                                                                       "model": model.config.to_dict()})
    names = {i.name for i in genlib.list_checkpoints(runs=mine.runs)}
    assert "their-run" not in names and {p.name for p in app_checkpoints.iterdir() if p.is_dir()} >= names
    assert "their-run" in {i.name for i in genlib.list_checkpoints(runs=theirs.runs)}
    assert "their-run" not in {i.name for i in genlib.list_checkpoints()}   # the shared runs/ hides .visitors


# -- jobs ------------------------------------------------------------------------------------------------------
def test_one_job_per_visitor_at_once_and_others_still_start(demo_env, core_runs_dir):
    a, b = new_token(), new_token()
    first = start_training_job("vae", _tiny("vae"), LONG, owner=a)
    try:
        with pytest.raises(RunnerBusy, match="you have 1 training job running already, the most one visitor may run"):
            start_training_job("vae", _tiny("vae"), LONG, owner=a)
        other = start_training_job("vae", _tiny("vae"), LONG, owner=b)
        _stop(other)
    finally:
        _stop(first)
    again = start_training_job("vae", _tiny("vae"), LONG, owner=a)   # the first one ended: a may start again
    _stop(again)


def test_the_demo_caps_steps_and_stops_a_job_at_its_time_limit_saving_the_run(demo_env, monkeypatch):
    monkeypatch.setenv(ENV["train_seconds"], "1.5")
    ws = Workspace.for_token(new_token(), 10**8)
    job = start_training_job("vae", _tiny("vae"), LONG, workspace=ws)
    assert job.train_config.max_steps == DEMO_LIMITS.train_steps   # 1000 epochs asked for, the cap applies
    snap = job.wait(120)
    assert snap.status == "finished", snap.message
    assert snap.message.startswith("stopped at the time limit of 0.025 min after ")
    assert 0 < len(snap.state.history) < DEMO_LIMITS.train_steps
    saved = json.loads((snap.result / "metrics.json").read_text())
    assert snap.result.parent == ws.runs and saved["status"] == "cancelled"
    load_model(snap.result)   # the partial run is a usable checkpoint


def test_a_run_that_would_break_the_quota_is_refused_or_deleted(demo_env):
    tight = Workspace.for_token(new_token(), 1_000)
    with pytest.raises(QuotaExceeded, match="delete a run first"):
        start_training_job("vae", _tiny("vae"), LONG, workspace=tight)
    assert not any(tight.runs.iterdir())
    # room when it starts, but the folder fills up while it trains (another tab's upload, say): deleted after
    ws = Workspace.for_token(new_token(), 4 * 2**20)
    job = start_training_job("vae", _tiny("vae"), TrainConfig(epochs=50, max_steps=300, batch_size=16, device="cpu"),
                             workspace=ws)
    (ws.root / "filler.bin").write_bytes(b"x" * (4 * 2**20))
    snap = job.wait(120)
    assert snap.status == "failed", snap.message
    assert snap.message.startswith("the run was deleted: it took your folder past the 4 MB each visitor may keep")
    assert not any(ws.runs.iterdir())


# -- the hub -------------------------------------------------------------------------------------------------
def test_the_hub_switch_refuses_before_any_network(demo_env, monkeypatch):
    monkeypatch.setenv(ENV["hub"], "0")
    with pytest.raises(CheckpointError, match="from the Hugging Face Hub is off here"):
        load_model("someone/some-model")


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """A local stand-in for the hub's model-info API: one repo whose files add up to 300 MB."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the http.server hook's name
        type(self).requests.append(self.path)
        if self.path.startswith("/api/models/big/model"):
            body = json.dumps({"id": "big/model", "sha": "0" * 40, "siblings": [
                {"rfilename": "config.json", "size": 1_000},
                {"rfilename": "model.safetensors", "size": 300 * 2**20},
                {"rfilename": "pytorch_model.bin", "size": 900 * 2**20}]}).encode()  # a pickle: never fetched
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


def test_a_hub_download_over_the_size_limit_is_refused_before_downloading(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path),
               "GENLIB_DEMO_HUB": "1", "GENLIB_DEMO_HUB_BYTES": str(200 * 2**20), "PYTHONPATH": str(ROOT)}
        env.pop("HF_HUB_OFFLINE", None)
        proc = subprocess.run([sys.executable, "-c", "from genlib.checkpoints import load_model\n"
                               "try:\n    load_model('big/model')\nexcept Exception as e:\n    print(e)"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert "'big/model' would download 300 MB of weights and configs, more than the 200 MB allowed here; " \
           "nothing was downloaded" in proc.stdout, proc.stdout + proc.stderr
    assert "/api/models/big/model?blobs=true" in _FakeHub.requests   # it asked for the file list
    assert not [p for p in _FakeHub.requests if "/resolve/" in p], _FakeHub.requests   # and fetched no file


# -- shared cached models --------------------------------------------------------------------------------------
def _fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("family", ["vae", "dcgan", "diffusion", "resunet"])
def test_sampling_a_shared_model_from_many_threads_never_changes_it(family, core_tiny_model):
    model = core_tiny_model(family).eval()
    before = _fingerprint(model)

    def draw(seed: int) -> torch.Tensor:
        return model.sample(4, generator=torch.Generator().manual_seed(seed), labels=model.default_labels(4))

    expected = [draw(seed) for seed in range(4)]
    results: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, draw(s % 4))) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(torch.equal(results[s], expected[s % 4]) for s in range(8))   # each call's own generator/scheduler
    assert _fingerprint(model) == before and not model.training


# -- the pages in demo mode (AppTest: the real scripts) --------------------------------------------------------
PAGES_AND_TABS = {"pages/home.py": None, "pages/autoencoders.py": ("ae_tab", "Train"),
                  "pages/gans.py": ("gan_tab", "Train"), "pages/diffusion.py": ("dif_tab", "Train"),
                  "pages/restore.py": ("rst_tab", "Train"), "pages/flows.py": ("flow_tab", "Train"),
                  "pages/autoregressive.py": ("ar_tab", "Train"), "pages/boltzmann.py": ("rbm_tab", "Train"),
                  "pages/compare.py": None}


def test_every_page_runs_in_demo_mode_and_states_its_caps(demo_env, app_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GENLIB_DEMO", "1")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "Hosted demo limits: 2 CPU threads for the models; loading from the Hugging Face hub is off" in sidebar
    for page, tab in PAGES_AND_TABS.items():
        at.switch_page(page)
        if tab:
            at.session_state[tab[0]] = tab[1]
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        said = " ".join(c.value for c in at.caption) + " ".join(i.value for i in at.info)
        if page == "pages/home.py":
            assert "This is the hosted demo" in said and "your runs may use 100 MB of disk" in said
        if tab:
            assert "Hosted demo limits: at most 1,500 training steps per job; 3 min of training per job" in said, page
    visitors = list((demo_env / "visitors").iterdir())
    assert len(visitors) == 1 and (visitors[0] / "runs").is_dir()   # this session's folder, and only it


def test_the_community_cloud_pipfile_matches_requirements():
    """Community Cloud installs the Pipfile, not requirements.txt: a package added to one only must fail here."""
    root = Path(__file__).resolve().parent.parent
    check = subprocess.run([sys.executable, "scripts/cloud_deps.py"], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_server_config_turns_off_streamlits_gc_after_every_script_run():
    """Streamlit's own reading of .streamlit/config.toml (run where `streamlit run` runs): a full gc.collect()
    after every script run, each poll of a live panel included, held the GIL ~0.3 s and starved the runner."""
    code = ("from streamlit import config; "
            "print(config.get_option('runner.postScriptGC'), config.get_option('server.maxUploadSize'))")
    read = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert read.stdout.split() == ["False", "5"], read.stdout + read.stderr
