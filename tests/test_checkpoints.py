"""genlib.checkpoints: HF-style folders, atomic writes, finding runs, and refusing bad input clearly."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

import genlib
from genlib.checkpoints import (CheckpointError, list_checkpoints, load_model, read_info, resolve, save_folder,
                                write_extra)

pytestmark = pytest.mark.usefixtures("core_runs_dir")


@pytest.fixture
def core_runs(tmp_path, monkeypatch):
    """A fresh, empty GENLIB_RUNS_DIR for one test."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(runs))
    return runs


def _save(model, folder, family="vae", **extra_meta):
    return save_folder(folder, model, {"family": family, "model": model.config.to_dict(), **extra_meta})


def _samples(model, seed=0):
    return model.sample(5, generator=torch.Generator().manual_seed(seed))


# -- round trip ------------------------------------------------------------------------------------------
def test_save_load_round_trip(core_tiny_model, tmp_path):
    model = core_tiny_model("vae", seed=1)
    folder = _save(model, tmp_path / "ckpt", train={"epochs": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta == {"family": "vae", "format": 1, "model": model.config.to_dict(), "train": {"epochs": 3}}
    loaded, info = load_model(folder)
    assert info.family == "vae" and info.origin == "local" and info.train_config == {"epochs": 3}
    assert loaded.config == model.config and not loaded.training
    assert torch.equal(_samples(model, 4), _samples(loaded, 4))
    loaded2, _ = load_model(str(folder), expect_family="vae")  # str paths too
    assert torch.equal(_samples(model), _samples(loaded2))


def test_extra_files_and_write_extra(core_tiny_model, tmp_path):
    model = core_tiny_model("ae")
    folder = save_folder(tmp_path / "c", model, {"family": "ae", "model": model.config.to_dict()},
                         {"metrics.json": json.dumps({"frechet_distance": 1.5}), "samples.png": b"\x89PNG fake"})
    assert (folder / "samples.png").read_bytes() == b"\x89PNG fake"
    assert read_info(folder).metrics == {"frechet_distance": 1.5}
    assert read_info(folder).preview == folder / "samples.png"
    write_extra(folder, "metrics.json", json.dumps({"frechet_distance": 2.5}))
    assert read_info(folder).metrics == {"frechet_distance": 2.5}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "model.safetensors",
                                                        "samples.png"]


def test_saving_over_an_existing_folder_replaces_it_and_leaves_no_temp(core_tiny_model, tmp_path):
    first, second = core_tiny_model("vae", seed=1), core_tiny_model("vae", seed=2)
    target = tmp_path / "ckpt"
    save_folder(target, first, {"family": "vae", "model": first.config.to_dict()}, {"stale.txt": "old"})
    _save(second, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no .ckpt.* temp or .old dirs
    assert not (target / "stale.txt").exists()  # replaced as a whole, not merged
    loaded, _ = load_model(target)
    assert torch.equal(_samples(loaded), _samples(second))
    assert not torch.equal(_samples(loaded), _samples(first))


def test_a_failed_save_keeps_the_old_checkpoint(core_tiny_model, tmp_path):
    model = core_tiny_model("vae", seed=1)
    target = _save(model, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(OSError):  # a real failure mid-save: an extra file in a missing sub-folder
        save_folder(target, core_tiny_model("vae", seed=2), {"family": "vae", "model": model.config.to_dict()},
                    {"no/such/dir.txt": "x"})
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_saved_folder_has_ordinary_permissions(core_tiny_model, tmp_path):
    # Atomic saving goes through a temp dir; the result must still be readable like any folder
    # made with mkdir (umask), not private to the user who trained it.
    umask = os.umask(0)
    os.umask(umask)
    folder = _save(core_tiny_model("vae"), tmp_path / "ckpt")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f").write_text("x")
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    write_extra(folder, "metrics.json", "{}")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == stat.S_IMODE((plain / "f").stat().st_mode), f.name


# -- finding ---------------------------------------------------------------------------------------------
def test_list_checkpoints_finds_runs_and_skips_broken(core_runs, core_tiny_model):
    vae, cvae = core_tiny_model("vae"), core_tiny_model("cvae")
    _save(vae, core_runs / "good-vae")
    _save(cvae, core_runs / "good-cvae", family="cvae")
    (core_runs / "empty").mkdir()
    (core_runs / "not-json").mkdir()
    (core_runs / "not-json" / "config.json").write_text("{oops")
    (core_runs / "binary-config").mkdir()
    (core_runs / "binary-config" / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    (core_runs / "foreign").mkdir()
    (core_runs / "foreign" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    _save(vae, core_runs / ".hidden-temp")
    (core_runs / "a-file.txt").write_text("not a folder")

    runs = [i for i in list_checkpoints() if i.origin == "run"]
    assert [i.name for i in runs] == ["good-cvae", "good-vae"]
    assert {i.family for i in runs} == {"vae", "cvae"}
    cvaes = list_checkpoints(family="cvae")
    assert {i.family for i in cvaes} == {"cvae"}
    assert [i.name for i in cvaes if i.origin == "run"] == ["good-cvae"]
    # the shipped evaluator is only listed when asked for
    assert "digit-classifier" not in [i.name for i in list_checkpoints()]
    shipped = [i for i in list_checkpoints(include_evaluators=True) if i.name == "digit-classifier"]
    assert shipped and shipped[0].origin == "shipped" and shipped[0].kind == "evaluator"


@pytest.mark.parametrize("metrics_bytes", [b"{not json", b"\xff\xfe\x00\x80 binary", b"[1, 2, 3]", b'"text"'])
def test_a_broken_metrics_file_does_not_hide_or_break_a_run(core_runs, core_tiny_model, metrics_bytes):
    model = core_tiny_model("vae")
    _save(model, core_runs / "run")
    (core_runs / "run" / "metrics.json").write_bytes(metrics_bytes)
    infos = [i for i in list_checkpoints() if i.origin == "run"]
    assert [i.name for i in infos] == ["run"]
    assert infos[0].metrics == {}
    load_model(core_runs / "run")  # the weights are fine: it still loads


def test_list_checkpoints_without_a_runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "does-not-exist"))
    assert all(i.origin == "shipped" for i in list_checkpoints(include_evaluators=True))


def test_resolve_by_run_name_and_shipped_name(core_runs, core_tiny_model):
    model = core_tiny_model("vae")
    _save(model, core_runs / "my-run")
    assert resolve("my-run") == (core_runs / "my-run", "run")
    loaded, info = load_model("my-run")
    assert info.origin == "run" and torch.equal(_samples(loaded), _samples(model))
    path, origin = resolve("digit-classifier")
    assert origin == "shipped" and (path / "model.safetensors").exists()


# -- bad input -----------------------------------------------------------------------------------------
def _folder_with_config(tmp_path, content: str | bytes, weights_from=None) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    if isinstance(content, bytes):
        (folder / "config.json").write_bytes(content)
    else:
        (folder / "config.json").write_text(content)
    if weights_from is not None:
        save_file({k: v.contiguous() for k, v in weights_from.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def test_config_not_json(tmp_path):
    folder = _folder_with_config(tmp_path, '{"family": "vae", "model": ')
    with pytest.raises(CheckpointError, match="corrupt.*not valid JSON"):
        load_model(folder)


def test_config_not_text(tmp_path):
    folder = _folder_with_config(tmp_path, b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)


def test_config_of_another_library(tmp_path):
    folder = _folder_with_config(tmp_path, json.dumps({"_class_name": "UNet2DModel", "_diffusers_version": "0.30"}))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "not written by genlib" in str(err.value) and "another library" in str(err.value)


def test_config_json_list(tmp_path):
    with pytest.raises(CheckpointError, match="not written by genlib"):
        load_model(_folder_with_config(tmp_path, "[1, 2]"))


def test_unknown_family(tmp_path, core_tiny_model):
    folder = _folder_with_config(tmp_path, json.dumps({"family": "gan9000", "model": {}}),
                                 weights_from=core_tiny_model("vae"))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    known = "known families: " + ", ".join(sorted(genlib.all_families()))
    assert "gan9000" in str(err.value) and known in str(err.value)


def test_model_config_out_of_range(tmp_path, core_tiny_model):
    folder = _folder_with_config(tmp_path, json.dumps({"family": "vae", "model": {"latent_dim": 100000}}))
    with pytest.raises(CheckpointError, match="latent_dim"):
        load_model(folder)


def test_model_config_with_unknown_key(tmp_path):
    folder = _folder_with_config(tmp_path, json.dumps({"family": "vae", "model": {"latnt_dim": 4}}))
    with pytest.raises(CheckpointError, match="latnt_dim"):
        load_model(folder)


def test_family_mismatch(tmp_path, core_tiny_model):
    folder = _save(core_tiny_model("vae"), tmp_path / "v")
    with pytest.raises(CheckpointError, match="is a 'vae' checkpoint, not 'cvae'"):
        load_model(folder, expect_family="cvae")


def test_the_evaluator_is_not_a_generative_model():
    with pytest.raises(CheckpointError, match="digit-classifier"):
        load_model("digit-classifier")


def test_truncated_weights(tmp_path, core_tiny_model):
    folder = _save(core_tiny_model("vae"), tmp_path / "v")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(folder)


def test_weights_not_safetensors_at_all(tmp_path, core_tiny_model):
    folder = _save(core_tiny_model("vae"), tmp_path / "v")
    (folder / "model.safetensors").write_bytes(b"hello, I am not a tensor file")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(folder)


def test_weights_of_a_different_shape(tmp_path, core_tiny_model):
    small = core_tiny_model("vae", latent_dim=4)
    folder = _folder_with_config(tmp_path, json.dumps({"family": "vae", "model": {**small.config.to_dict(),
                                                                                   "latent_dim": 8}}),
                                 weights_from=small)
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    msg = str(err.value)
    assert "do not fit the model in config.json" in msg
    assert "size mismatch" in msg  # says what is wrong, not only that something is


def test_missing_weights(tmp_path):
    folder = _folder_with_config(tmp_path, json.dumps({"family": "vae", "model": {}}))
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model(folder)


def test_folder_with_only_pickled_weights_is_refused_not_loaded(tmp_path, core_tiny_model):
    folder = tmp_path / "hf-old"
    folder.mkdir()
    torch.save(core_tiny_model("vae").state_dict(), folder / "pytorch_model.bin")  # real pickle bytes
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "pickle" in str(err.value) and "refused" in str(err.value) and "pytorch_model.bin" in str(err.value)
    # and with a genlib config.json beside it: still refused, never unpickled
    (folder / "config.json").write_text(json.dumps({"family": "vae", "model": core_tiny_model("vae").config.to_dict()}))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "never unpickles" in str(err.value) and "pytorch_model.bin" in str(err.value)


@pytest.mark.parametrize("name", ["model.pt", "weights.ckpt", "weights.dat"])
def test_a_direct_path_to_a_pickle_file_is_refused(tmp_path, core_tiny_model, name):
    path = tmp_path / name
    torch.save(core_tiny_model("vae").state_dict(), path)  # .dat: no telling suffix, caught by its bytes
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "pickle" in str(err.value) and "never unpickles" in str(err.value)


def test_a_direct_path_to_config_json_asks_for_the_folder(tmp_path, core_tiny_model):
    folder = _save(core_tiny_model("vae"), tmp_path / "v")
    with pytest.raises(CheckpointError, match="give the checkpoint folder"):
        load_model(folder / "config.json")


@pytest.mark.parametrize("source", ["", "   "])
def test_empty_source(source):
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        load_model(source)


def test_unknown_name(core_runs):
    with pytest.raises(CheckpointError, match="no checkpoint called 'no-such-run'"):
        load_model("no-such-run")


def test_hub_id_offline_goes_through_huggingface_hub(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE once at import; set both the variable and its switch.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as err:
        load_model("nobody-xyz/definitely-not-a-model")
    msg = str(err.value)
    assert "nobody-xyz/definitely-not-a-model" in msg and "Hugging Face Hub" in msg and "offline" in msg


def test_hub_id_without_offline_flag_fails_cleanly():
    # This machine has no internet: huggingface_hub's own request fails; it must end as a CheckpointError.
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        load_model("nobody-xyz/definitely-not-a-model")


def test_public_api_reexports():
    assert genlib.load_model is load_model and genlib.CheckpointError is CheckpointError


def test_half_precision_weights_halve_the_file_and_load_back_as_float32(core_tiny_model, tmp_path):
    from safetensors.torch import load_file

    from genlib.checkpoints import store_half_precision

    model = core_tiny_model("dcgan")  # has BatchNorm: its integer buffer must stay an integer
    folder = save_folder(tmp_path / "g", model, {"family": "dcgan", "model": model.config.to_dict()})
    before, after = store_half_precision(folder)
    assert after < 0.6 * before
    state = load_file(str(folder / "model.safetensors"))
    assert {v.dtype for k, v in state.items() if "num_batches_tracked" not in k} == {torch.float16}
    assert all(v.dtype == torch.int64 for k, v in state.items() if "num_batches_tracked" in k)
    loaded, _ = load_model(folder)
    assert next(loaded.parameters()).dtype == torch.float32
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.allclose(loaded.sample(4, generator=gen()), model.eval().sample(4, generator=gen()), atol=5e-3)
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        store_half_precision(tmp_path / "g" / "nothing-here")


def test_half_precision_covers_a_diffusers_pipeline_folder(core_tiny_model, tmp_path):
    """A diffusion checkpoint keeps its weights in unet/; they are halved there and load back as float32."""
    from safetensors.torch import load_file

    from genlib.checkpoints import store_half_precision

    model = core_tiny_model("diffusion")
    folder = save_folder(tmp_path / "d", model, {"family": "diffusion", "model": model.config.to_dict()})
    weights = sorted(folder.rglob("*.safetensors"))
    assert weights and all(w.parent.name == "unet" for w in weights)
    before, after = store_half_precision(folder)
    assert after < 0.6 * before
    assert {v.dtype for w in weights for v in load_file(str(w)).values()} == {torch.float16}
    loaded, _ = load_model(folder)
    assert next(loaded.parameters()).dtype == torch.float32
