"""``python -m genlib`` in real subprocesses: list, train, sample, eval, and clean errors.

Subprocesses are started together where they do not depend on each other (each spends most of
its time importing torch), and one trained VAE and one conditional VAE are shared by the module.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlib
from genlib import TrainConfig
from genlib.runs import save_run
from genlib.training import TrainResult

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 300
# One thread per subprocess: several run at once on a small machine (see tests/conftest.py).
CORE_SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _env(runs_dir: Path) -> dict[str, str]:
    """The test process's environment, with runs going to ``runs_dir`` and this checkout importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **CORE_SUBPROCESS_ENV, "GENLIB_RUNS_DIR": str(runs_dir), "PYTHONPATH": path}
    env.pop("GENLIB_CHECKPOINTS", None)  # list/eval use this repo's shipped checkpoints (the evaluator)
    return env


def _run_many(calls: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, subprocess.CompletedProcess]:
    """Start every ``python -m genlib ARGS`` at once; wait for all; results by key."""
    procs = {key: subprocess.Popen([sys.executable, "-m", "genlib", *args], cwd=REPO, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for key, (args, env) in calls.items()}
    results = {}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT)
            results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    command = " ".join(map(str, result.args))
    assert result.returncode == 0, f"{command}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


# -- shared runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def core_cli_runs(tmp_path_factory):
    """Train a tiny VAE (into GENLIB_RUNS_DIR, as run 'cli-vae') and a tiny CVAE with the CLI, together."""
    runs = tmp_path_factory.mktemp("cli-runs")
    env = _env(runs)
    vae, cvae = runs / "cli-vae", tmp_path_factory.mktemp("cli-out") / "cli-cvae"
    results = _run_many({
        "vae": (["train", "vae", "--out", str(vae), "--epochs", "1", "--max-steps", "5", "--latent-dim", "4",
                 "--width", "8"], env),
        "cvae": (["train", "cvae", "--out", str(cvae), "--epochs", "1", "--max-steps", "5", "--latent-dim", "4",
                  "--width", "8", "--hidden", "16", "--batch-size", "32"], env),
    })
    return {"runs": runs, "env": env, "vae": vae, "cvae": cvae,
            "vae_result": _ok(results["vae"]), "cvae_result": _ok(results["cvae"])}


@pytest.fixture(scope="module")
def core_cli_calls(core_cli_runs, tmp_path_factory):
    """The read-only commands on the shared runs, started together."""
    out = tmp_path_factory.mktemp("cli-samples")
    env, vae = core_cli_runs["env"], str(core_cli_runs["vae"])
    calls = {
        "list": ["list"],
        "help": ["train", "vae", "--help"],
        "sample": ["sample", vae, "--num", "7", "--seed", "3", "--out", str(out / "a.npz")],
        "eval": ["eval", vae, "--num", "200"],
        "compare": ["compare", vae, str(core_cli_runs["cvae"]), "--num", "100", "--seed", "2",
                    "--out", str(out / "report")],
        "compare-bad": ["compare", vae, str(out / "no-such-model"), "--num", "100", "--out", str(out / "report2")],
    }
    results = _run_many({k: (v, env) for k, v in calls.items()})
    return {"out": out, **results}


def _main(*argv: str) -> int:
    """The same CLI entry point in-process (for the cheaper variations of the subprocess calls)."""
    from genlib.cli import main

    return main(list(argv))


# -- train -----------------------------------------------------------------------------------------------
def test_train_writes_a_complete_checkpoint_folder(core_cli_runs):
    vae = core_cli_runs["vae"]
    assert sorted(p.name for p in vae.iterdir()) == ["README.md", "config.json", "history.csv.gz", "metrics.json",
                                                     "model.safetensors", "samples.png"]
    assert not [p for p in vae.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    config = json.loads((vae / "config.json").read_text())
    assert config["family"] == "vae" and config["format"] == 1
    assert config["model"]["latent_dim"] == 4 and config["model"]["width"] == 8
    assert config["model"]["hidden"] == genlib.get_family("vae").Config().hidden  # untouched flags keep defaults
    assert config["train"]["epochs"] == 1 and config["train"]["max_steps"] == 5
    metrics = json.loads((vae / "metrics.json").read_text())
    assert isinstance(metrics["frechet_distance"], float) and metrics["frechet_distance"] > 0
    # a Bernoulli VAE's bound is on the binarized benchmark, never as bits/dim of the 8-bit digits
    assert isinstance(metrics["binarized_nats"], float) and metrics["binarized_nats"] > 0
    assert metrics["likelihood_benchmark"] == "binarized" and "bits_per_dim" not in metrics
    assert metrics["status"] == "finished" and metrics["train_steps"] == 5
    rows = list(csv.DictReader(io.StringIO(gzip.decompress((vae / "history.csv.gz").read_bytes()).decode())))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5] and {"loss", "kl", "recon"} <= set(rows[0])
    png = Image.open(vae / "samples.png")
    assert png.format == "PNG" and png.text["family"] == "vae"
    card = (vae / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: genlib" in card and "# vae:" in card
    assert "frechet_distance" in card
    assert re.search(r"on the CPU \(\S+, \d+ cores, \d+ torch threads?\)", card)  # which device trained it
    assert "It samples z from the standard normal N(0, I)" in card  # the family's own note: how it samples
    model, info = genlib.load_model(vae)
    assert info.family == "vae" and model.config.latent_dim == 4


def test_train_reports_progress_on_stdout(core_cli_runs):
    out = core_cli_runs["vae_result"].stdout
    assert "step 5/5 epoch 1" in out and "loss=" in out
    assert "saved to" in out and "frechet_distance=" in out


def test_conditional_train_records_its_flags(core_cli_runs):
    config = json.loads((core_cli_runs["cvae"] / "config.json").read_text())
    assert config["family"] == "cvae" and config["model"]["hidden"] == 16 and config["train"]["batch_size"] == 32
    assert "class_accuracy" in json.loads((core_cli_runs["cvae"] / "metrics.json").read_text())


def test_train_help_lists_model_and_training_flags(core_cli_calls):
    out = _ok(core_cli_calls["help"]).stdout
    for flag in ("--latent-dim", "--beta", "--kl-warmup-steps", "--loss", "--epochs", "--lr", "--max-steps", "--out"):
        assert flag in out, flag
    assert "{bce,mse,logistic}" in out and "--binarize, --no-binarize" in out  # choices shown
    assert "--amp, --no-amp" in out  # booleans as on/off pairs


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        _main("--help")
    assert exit_.value.code == 0
    top = capsys.readouterr().out
    assert all(cmd in top for cmd in ("list", "train", "sample", "eval"))


# -- list ------------------------------------------------------------------------------------------------
def test_list_shows_families_and_checkpoints(core_cli_calls, core_cli_runs):
    out = _ok(core_cli_calls["list"]).stdout
    families_part, checkpoints_part = out.split("checkpoints:")
    for name in genlib.all_families():
        assert f"  {name} " in families_part
    assert "likelihood" in families_part  # abilities are listed
    lines = {line.split()[0]: line.split() for line in checkpoints_part.strip().splitlines()}
    assert lines["digit-classifier"][1:3] == ["digit-classifier", "shipped"]
    assert lines["cli-vae"][1:3] == ["vae", "run"]
    fd = json.loads((core_cli_runs["vae"] / "metrics.json").read_text())["frechet_distance"]
    assert lines["cli-vae"][3] == f"{fd:.3f}"


def test_list_prints_aligned_tables_with_separate_fd_and_accuracy_columns(capsys, monkeypatch, core_runs_dir):
    monkeypatch.delenv("GENLIB_CHECKPOINTS", raising=False)  # the shipped checkpoints, evaluator included
    assert _main("list") == 0
    families_part, checkpoints_part = capsys.readouterr().out.split("checkpoints:\n")

    family_lines = families_part.splitlines()[1:]
    assert family_lines[0].split() == ["family", "description", "abilities"]
    column = family_lines[0].index("description")
    for line, (name, cls) in zip(family_lines[1:], genlib.all_families().items(), strict=True):
        assert line.startswith(f"  {name} ") and line[column:].startswith(cls.description)

    header, *rows = checkpoints_part.rstrip("\n").splitlines()
    assert header.split() == ["name", "family", "origin", "FD", "↓", "accuracy", "path"]
    starts = {name: header.index(name) for name in ("family", "origin", "path")}
    fd_end, accuracy_end = header.index("FD ↓") + len("FD ↓"), header.index("accuracy") + len("accuracy")
    infos = {info.name: info for info in genlib.list_checkpoints(include_evaluators=True)}
    assert sorted(row.split()[0] for row in rows) == sorted(infos)
    for row in rows:
        info = infos[row.split()[0]]
        # Left-aligned columns start under their header, the numbers end under theirs.
        assert row[starts["family"]:].startswith(info.family + " ")
        assert row[starts["origin"]:].startswith(info.origin + " ")
        assert row[starts["path"]:] == str(info.path)
        fd, accuracy = row[:fd_end].split()[-1], row[:accuracy_end].split()[-1]
        expected_fd = info.metrics.get("frechet_distance")
        expected_accuracy = info.metrics.get("test_accuracy")
        assert fd == (f"{expected_fd:.3f}" if expected_fd is not None else "-"), row
        assert accuracy == (f"{expected_accuracy:.3f}" if expected_accuracy is not None else "-"), row
    # The classifier's accuracy never lands in the Fréchet distance column, nor a model's FD in accuracy.
    classifier = next(row for row in rows if row.split()[0] == "digit-classifier")
    assert classifier[:fd_end].split()[-1] == "-" and float(classifier[:accuracy_end].split()[-1]) > 0.9
    vae = next(row for row in rows if row.split()[0] == "vae-mnist")
    assert float(vae[:fd_end].split()[-1]) > 1 and vae[:accuracy_end].split()[-1] == "-"


# -- sample ----------------------------------------------------------------------------------------------
def test_sample_writes_images_reproducibly(core_cli_calls, core_cli_runs, monkeypatch):
    assert "wrote 7 samples (7, 28, 28) to" in _ok(core_cli_calls["sample"]).stdout
    out = core_cli_calls["out"]
    a = np.load(out / "a.npz")
    assert a.files == ["images"]  # no labels for an unconditional model
    x = a["images"]
    assert x.dtype == np.float32 and x.shape == (7, 28, 28)
    assert x.min() >= 0.0 and x.max() <= 1.0
    # the same seed, naming the run instead of its folder (the same main(), in-process): same images
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(core_cli_runs["runs"]))
    assert _main("sample", "cli-vae", "--num", "7", "--seed", "3", "--out", str(out / "b.npz")) == 0
    assert np.array_equal(x, np.load(out / "b.npz")["images"])
    assert _main("sample", "cli-vae", "--num", "7", "--seed", "4", "--out", str(out / "c.npz")) == 0
    assert not np.array_equal(x, np.load(out / "c.npz")["images"])  # another seed: other images
    # and the same images the library gives
    model, _ = genlib.load_model(core_cli_runs["vae"])
    ref = model.sample(7, generator=torch.Generator().manual_seed(3))[:, 0].numpy()
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_sample_conditional_labels(core_cli_runs, tmp_path):
    cvae = str(core_cli_runs["cvae"])
    assert _main("sample", cvae, "--num", "3", "--labels", "3,1,4", "--out", str(tmp_path / "l.npz")) == 0
    given = np.load(tmp_path / "l.npz")
    assert given["images"].shape == (3, 28, 28) and given["labels"].dtype == np.int64
    assert given["labels"].tolist() == [3, 1, 4]
    assert _main("sample", cvae, "--num", "5", "--labels", "2,7", "--out", str(tmp_path / "r.npz")) == 0
    assert np.load(tmp_path / "r.npz")["labels"].tolist() == [2, 7, 2, 7, 2]  # repeated to --num
    assert _main("sample", cvae, "--num", "12", "--out", str(tmp_path / "d.npz")) == 0
    assert np.load(tmp_path / "d.npz")["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


# -- eval ------------------------------------------------------------------------------------------------
def test_eval_prints_json_metrics(core_cli_calls):
    metrics = json.loads(_ok(core_cli_calls["eval"]).stdout)
    assert metrics["num_samples"] == 200 and metrics["frechet_distance"] > 0
    assert "binarized_nats" in metrics and "test_recon_mse" in metrics


def test_eval_matches_the_scoring_code_and_can_update_metrics_json(core_cli_calls, core_cli_runs, monkeypatch,
                                                                  capsys):
    from genlib.comparison import Evaluator, score_checkpoint

    printed = json.loads(_ok(core_cli_calls["eval"]).stdout)
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(core_cli_runs["runs"]))
    monkeypatch.setenv("GENLIB_SCORE_CACHE", str(core_cli_runs["runs"] / "fresh-cache"))
    card = score_checkpoint(core_cli_runs["vae"], Evaluator.load(), num_samples=200, use_cache=False)
    compared = 0
    for key, value in card.metrics.items():  # the same values the Compare page shows
        if key == "sample_ms_per_image":  # wall time differs between runs
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # a score: recomputed, so approx
            assert printed[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
            compared += 1
        else:  # a label, flag or None (pytest.approx refuses strings): exactly equal
            assert printed[key] == value, key
    assert compared >= 3, card.metrics  # the scores themselves were compared, not only the labels
    cvae = core_cli_runs["cvae"]
    before = json.loads((cvae / "metrics.json").read_text())
    assert _main("eval", str(cvae), "--num", "100", "--write") == 0
    after = json.loads((cvae / "metrics.json").read_text())
    assert after["num_samples"] == 100 and after["train_steps"] == before["train_steps"] == 5
    assert after["status"] == "finished" and "class_accuracy" in after
    assert json.loads(capsys.readouterr().out)["num_samples"] == 100
    card = (cvae / "README.md").read_text()   # the card's table now holds the new figures, once
    assert card.count("## Metrics") == 1 and "| num_samples | 100 |" in card
    assert f"| frechet_distance | {after['frechet_distance']:.4g} |" in card
    assert card.rstrip().endswith("Load it with `genlib.load_model(path_or_hub_id)`.")


def test_compare_writes_the_report(core_cli_calls):
    out = core_cli_calls["out"] / "report"
    assert "wrote" in _ok(core_cli_calls["compare"]).stdout
    assert sorted(p.name for p in out.iterdir()) == ["grids", "report.html", "scoreboard.csv", "scoreboard.json"]
    rows = list(csv.DictReader(io.StringIO((out / "scoreboard.csv").read_text())))
    assert [r["model"] for r in rows[:2]] == ["cli-vae", "cli-cvae"] and len(rows) == 6  # + 4 reference rows
    assert rows[0]["class_accuracy"] == "" and float(rows[1]["class_accuracy"]) >= 0
    assert Image.open(out / "grids" / "cli-cvae.png").text["seed"] == "2"
    bad = core_cli_calls["compare-bad"]
    assert bad.returncode == 2 and "no-such-model" in bad.stderr and "Traceback" not in bad.stderr
    assert (core_cli_calls["out"] / "report2" / "report.html").exists()  # the good model is still reported


# -- bad input -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def core_cli_errors(tmp_path_factory):
    """The bad invocations, each a real subprocess, started together."""
    tmp = tmp_path_factory.mktemp("cli-bad")
    env = _env(tmp / "runs")
    npz = str(tmp / "x.npz")
    cases = {
        "beta": (["train", "vae", "--out", str(tmp / "o1"), "--beta", "1000"], "beta=1000.0 is out of range"),
        "family": (["train", "gann", "--out", str(tmp / "o2")], "unknown model family 'gann'; known families"),
        "missing": (["sample", str(tmp / "no-such-folder"), "--out", npz], "no checkpoint called"),
        "hub": (["sample", "nobody-xyz/definitely-not-a-model", "--out", npz], "offline"),
    }
    results = _run_many({k: (args, {**env, "HF_HUB_OFFLINE": "1"} if k == "hub" else env)
                         for k, (args, _) in cases.items()})
    return tmp, {k: (results[k], expect) for k, (_, expect) in cases.items()}


@pytest.mark.parametrize("case", ["beta", "family", "missing", "hub"])
def test_bad_input_exits_2_with_one_line_error(core_cli_errors, case):
    tmp, results = core_cli_errors
    result, expect = results[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expect in lines[0]
    assert not any((tmp / o).exists() for o in ("o1", "o2"))  # nothing written on refusal
    assert not (tmp / "x.npz").exists()


@pytest.fixture(scope="module")
def core_tiny_folders(tmp_path_factory):
    """Untrained tiny vae/cvae checkpoints saved in-process, to feed the CLI bad arguments."""
    tmp = tmp_path_factory.mktemp("cli-tiny")
    folders = {}
    for family in ("vae", "cvae"):
        torch.manual_seed(0)
        model = genlib.build_model(family, {"latent_dim": 2, "width": 4, "hidden": 16})
        folders[family] = str(save_run(model, TrainConfig(), TrainResult(steps=0), tmp / family, {}))
    torch.save({"w": torch.zeros(2)}, tmp / "model.pt")
    folders["pickle"] = str(tmp / "model.pt")
    return folders


BAD_ARGS = {
    "num": (["sample", "{vae}", "--num", "0", "--out", "{out}"], "--num must be between 1 and 100000"),
    "uncond-labels": (["sample", "{vae}", "--labels", "1,2", "--out", "{out}"], "unconditional"),
    "label-range": (["sample", "{cvae}", "--num", "2", "--labels", "3,12", "--out", "{out}"],
                    "labels must be 2 integers in 0..9"),
    "label-text": (["sample", "{cvae}", "--labels", "three", "--out", "{out}"], "three"),
    "pickle": (["sample", "{pickle}", "--out", "{out}"], "never unpickles"),
    "config-file": (["eval", "{vae}/config.json"], "give the checkpoint folder"),
}
if not torch.cuda.is_available():  # with a GPU, asking for CUDA is fine
    BAD_ARGS["device"] = (["train", "vae", "--device", "cuda", "--max-steps", "1", "--out", "{out}"],
                          "no CUDA GPU is available")


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_more_bad_arguments_give_one_line_errors(case, core_tiny_folders, tmp_path, capsys, core_runs_dir):
    # The same main() in-process: a refused input returns 2 with one "error:" line and raises nothing.
    args, expect = BAD_ARGS[case]
    out = tmp_path / "out"
    assert _main(*(a.format(out=out, **core_tiny_folders) for a in args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists()


def test_unknown_flag_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _main("train", "vae", "--out", str(tmp_path / "o"), "--latnt-dim", "4")
    assert exit_.value.code == 2
    assert "unrecognized arguments: --latnt-dim 4" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_a_rescored_card_keeps_its_text_and_swaps_only_the_table():
    from genlib.runs import refresh_card_metrics

    card = "# vae\n\n## Metrics\n\n| metric | value |\n|---|---|\n| frechet_distance | 281.5 |\n\nLoad it with x.\n"
    fresh = refresh_card_metrics(card, {"frechet_distance": 605.02, "likelihood": "bound", "missing": {"a": "b"}})
    assert fresh == ("# vae\n\n## Metrics\n\n| metric | value |\n|---|---|\n| frechet_distance | 605 |\n"
                     "| likelihood | bound |\n\nLoad it with x.\n")
    assert refresh_card_metrics("# bare card\n", {"kid": 3}).endswith("| metric | value |\n|---|---|\n| kid | 3 |\n")
