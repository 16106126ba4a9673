"""The encoder fine-tune: the built-in labelled set, the small BERT's pretraining, fine-tuning any encoder in
the background (and cancelling it), the metrics, the TF-IDF baseline, CSV uploads, the CLI and the page.

Everything is real: a tiny BERT (2 layers, hidden 32) pretrained here for a few steps and saved to a
temp folder, real threads on the lab's background runner, a real Streamlit AppTest. Nothing downloads.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

from conftest import wait_for
from genlib import background
from genlib.checkpoints import CheckpointError, read_history
from genlib.families.transformers.encoder import (FinetuneConfig, FinetuneJob, encoder_folder, finetune_encoder,
                                                  finetuned_runs, load_classifier, predict, read_finetune_metrics,
                                                  start_finetune_job)
from genlib.families.transformers.encoder_pretrain import PretrainConfig, pretrain_encoder
from genlib.families.transformers.encoder_cli import ENCODER_COMMANDS
from genlib.families.transformers.textclass import (MAX_CSV_BYTES, DatasetError, builtin_dataset,
                                                    classification_metrics, read_csv_dataset, tfidf_baseline)

TINY = PretrainConfig(vocab_size=2000, hidden=32, layers=2, heads=2, intermediate=64, seq_len=32, steps=4,
                      batch_size=8)
QUICK = FinetuneConfig(epochs=1, batch_size=16, max_length=32)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the network: the hub client believes it is offline."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny BERT pretrained for a few MLM steps on the lab's corpus, saved as a transformers folder."""
    out = tmp_path_factory.mktemp("encoders") / "tiny-bert"
    losses = []
    metrics = pretrain_encoder(TINY, out, report=lambda step, total, message, scalars: losses.append(scalars["loss"]))
    return out, {**metrics, "losses": losses}


def small_csv(per_label: int = 8) -> bytes:
    """A small CSV of real built-in examples: ``per_label`` texts of each of three families."""
    data = builtin_dataset()
    rows: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for text, label in data.train:
        if label in rows and len(rows[label]) < per_label:
            rows[label].append(text)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    for label, texts in rows.items():
        writer.writerows([t, data.labels[label]] for t in texts)
    return out.getvalue().encode()


# -- the built-in set ----------------------------------------------------------------------------------------------
def test_builtin_set_is_deterministic_disjoint_and_balanced():
    data = builtin_dataset()
    builtin_dataset.cache_clear()
    again = builtin_dataset()
    assert again == data and again is not data   # rebuilt from the docstrings, the same to the last text
    train, val, test = (set(data.texts(s)) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert 2000 <= len(data.train) + len(data.val) + len(data.test) <= 5000
    counts = Counter(data.targets("train"))
    assert set(counts) == set(range(len(data.labels))) == set(data.targets("test")) == set(data.targets("val"))
    assert max(counts.values()) <= 1.5 * min(counts.values())
    assert all(40 <= len(t) <= 700 for t in train | val | test)


def test_tfidf_baseline_learns_but_is_far_from_perfect():
    base = tfidf_baseline(builtin_dataset())
    chance = 1 / len(builtin_dataset().labels)
    assert 3 * chance < base["accuracy"] < 0.95    # learnable, not trivial
    assert 0 < base["macro_f1"] < 0.95
    assert sum(map(sum, base["confusion"])) == len(builtin_dataset().test)


def test_metrics_on_a_hand_made_case():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1 per class: 2*1/(2+2) = 0.5, 2*2/(3+2) = 0.8, 0 (never predicted right)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], average="macro"))
    with pytest.raises(ValueError, match="as many predictions"):
        classification_metrics([0, 1], [0], 2)


# -- CSV uploads ---------------------------------------------------------------------------------------------
def test_a_good_csv_is_split_within_each_label():
    data = read_csv_dataset(small_csv(10), "mine.csv")
    assert len(data.labels) == 3
    assert len(data.train) == 24 and len(data.val) == 3 and len(data.test) == 3
    assert set(data.targets("test")) == {0, 1, 2}
    assert read_csv_dataset(small_csv(10), "mine.csv") == data


@pytest.mark.parametrize("content, words", [
    (b"", "is empty"),
    (b"\xff\xfe\x00t\x00e\x00x\x00t", "not UTF-8"),
    (b"sentence,category\nhello world,a\n", "needs the columns 'text' and 'label'"),
    (b"text,label\n" + b"some text,a\n" * 6, "a single label"),
    (b"text,label\n" + b"some text,a\n" * 6 + b"other text,b\n", "at least 5 examples"),
    (b"text,label\nhello,\n", "empty text or label"),
    (b"text,label\n" + "".join(f"text {i},{i}\n" for i in range(60)).encode(), "60 different labels"),
    (b"text,label\n\"" + b"x" * 6000 + b"\",a\n", "6,000 characters"),
    (b"text,label\n\"unclosed,a\n" * 3, "empty text or label"),
])
def test_bad_csvs_are_refused_in_words(content, words):
    with pytest.raises(DatasetError, match=words) as err:
        read_csv_dataset(content, "bad.csv")
    assert "Error" not in str(err.value) and "Traceback" not in str(err.value)


def test_a_csv_too_large_is_refused_before_reading():
    with pytest.raises(DatasetError, match=f"the most a CSV may be is {MAX_CSV_BYTES // 2**20} MB"):
        read_csv_dataset(b"x" * (MAX_CSV_BYTES + 1), "huge.csv")


# -- pretraining ---------------------------------------------------------------------------------------------
def test_tiny_bert_pretrains_saves_and_reloads(tiny_encoder):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder, metrics = tiny_encoder
    assert len(metrics["losses"]) == TINY.steps and all(math.isfinite(x) for x in metrics["losses"])
    assert math.isfinite(metrics["held_out_mlm_loss"]) and metrics["held_out_windows"] > 0
    # a random guess over the vocabulary: the loss starts there
    assert abs(metrics["losses"][0] - math.log(metrics["vocab_size"])) < 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    model = AutoModelForMaskedLM.from_pretrained(folder, use_safetensors=True, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("Return the square root of x.", return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(ids["input_ids"][0])[:3] == ["[CLS]", "return", "the"]
    out = model(**ids, output_attentions=True)
    assert out.logits.shape == (1, ids["input_ids"].shape[1], metrics["vocab_size"])
    assert len(out.attentions) == TINY.layers and out.attentions[0].shape[1] == TINY.heads
    assert json.loads((folder / "metrics.json").read_text())["pretrain"] == TINY.to_dict()


def test_pretrain_config_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="multiple of heads"):
        PretrainConfig(hidden=30, heads=4)


# -- loading encoders ----------------------------------------------------------------------------------------
def test_a_hub_id_offline_fails_in_words():
    for hub_id in ("bert-base-uncased", "google-bert/bert-base-uncased"):
        with pytest.raises(CheckpointError, match="offline") as err:
            encoder_folder(hub_id)
        assert "Error" not in str(err.value)


def test_bad_sources_are_refused_in_words(tmp_path):
    with pytest.raises(CheckpointError, match="no encoder given"):
        encoder_folder("  ")
    with pytest.raises(CheckpointError, match="not a folder"):
        encoder_folder("no such thing !")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        encoder_folder(tmp_path / "empty")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="never loads pickled weights"):
        load_classifier(pickled, ("a", "b"))


# -- fine-tuning ----------------------------------------------------------------------------------------------
def test_finetune_job_trains_saves_and_reloads(tiny_encoder, tmp_path):
    folder, _ = tiny_encoder
    data = read_csv_dataset(small_csv(10), "mine.csv")
    job = start_finetune_job(str(folder), data, QUICK.replace(epochs=2), name="ft", out_root=tmp_path)
    snap = job.wait(timeout=120)
    assert snap.status == "finished", snap.message
    assert "test accuracy" in snap.message
    view = snap.state
    assert len(view.history) == snap.total_steps == 4     # 24 texts in batches of 16, two epochs
    assert [e["epoch"] for e in view.evals] == [1, 2]
    path = snap.result.path
    assert path == tmp_path / "ft" and (path / "model.safetensors").is_file()
    metrics = read_finetune_metrics(path)
    assert metrics["labels"] == list(data.labels) and len(metrics["test"]["confusion"]) == 3
    assert 0 <= metrics["test"]["accuracy"] <= 1 and "accuracy" in metrics["baseline"]
    assert finetuned_runs(tmp_path) == [path]
    assert metrics["lr_used"] == 1e-3    # lr 0: automatic, and the tiny BERT is small
    # the saved classifier predicts what the metrics say it predicted
    model, tokenizer, _ = load_classifier(path)
    assert model.config.id2label[0] == data.labels[0]
    predicted = predict(model, tokenizer, data.texts("test"), max_length=QUICK.max_length).argmax(-1).tolist()
    again = classification_metrics(data.targets("test"), predicted, len(data.labels))
    assert again == {k: metrics["test"][k] for k in ("accuracy", "macro_f1", "confusion")}


def test_cancel_stops_a_finetune_and_saves_nothing(tiny_encoder, tmp_path):
    folder, _ = tiny_encoder
    data = read_csv_dataset(small_csv(10), "mine.csv")
    job = start_finetune_job(str(folder), data, QUICK.replace(epochs=100, batch_size=2), name="stopped",
                             out_root=tmp_path)
    assert wait_for(lambda: job.snapshot().step >= 2, timeout=60)
    job.cancel()
    snap = job.wait(timeout=30)
    assert snap.status == "cancelled" and "cancelled at step" in snap.message
    assert snap.step < snap.total_steps
    assert not (tmp_path / "stopped").exists()


def test_only_one_finetune_runs_at_once(tiny_encoder, tmp_path):
    folder, _ = tiny_encoder
    data = read_csv_dataset(small_csv(10), "mine.csv")
    first = start_finetune_job(str(folder), data, QUICK.replace(epochs=100, batch_size=2), out_root=tmp_path)
    try:
        with pytest.raises(background.RunnerBusy, match="already running"):
            start_finetune_job(str(folder), data, QUICK, out_root=tmp_path)
    finally:
        first.cancel()
        first.wait(timeout=30)


def test_a_failed_load_ends_the_job_in_words(tmp_path):
    data = read_csv_dataset(small_csv(10), "mine.csv")
    job = start_finetune_job("bert-base-uncased", data, QUICK, out_root=tmp_path)
    snap = job.wait(timeout=60)
    assert snap.status == "failed" and "offline" in snap.message


def test_finetune_keeps_the_best_validation_epoch(tiny_encoder, tmp_path):
    folder, _ = tiny_encoder
    data = read_csv_dataset(small_csv(10), "mine.csv")
    result = finetune_encoder(folder, data, QUICK.replace(epochs=3), tmp_path / "best")
    m = result.metrics
    best = max(m["evals"], key=lambda e: e["val_accuracy"])
    assert m["best_val_accuracy"] == best["val_accuracy"]
    assert m["best_epoch"] == min(e["epoch"] for e in m["evals"] if e["val_accuracy"] == best["val_accuracy"])


# -- the CLI -------------------------------------------------------------------------------------------------
def _run_cli(name: str, argv: list[str]) -> int:
    command = next(c for c in ENCODER_COMMANDS if c.name == name)
    parser = argparse.ArgumentParser(prog=f"python -m genlib {name}")
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_cli_finetune_prints_metrics_and_baseline(tiny_encoder, tmp_path, capsys):
    folder, _ = tiny_encoder
    csv_file = tmp_path / "mine.csv"
    csv_file.write_bytes(small_csv(10))
    assert _run_cli("finetune", [str(folder), "--out", str(tmp_path / "cli"), "--csv", str(csv_file),
                                 "--epochs", "1", "--max-length", "32"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["test"]) == {"accuracy", "macro_f1", "confusion"}
    assert printed["baseline"]["model"].startswith("TF-IDF")
    assert Path(printed["saved"]) == tmp_path / "cli"


def test_cli_pretrain_writes_a_folder(tmp_path, capsys):
    out = tmp_path / "enc"
    assert _run_cli("pretrain-encoder", ["--out", str(out), "--hidden", "16", "--heads", "2", "--layers", "1",
                                         "--intermediate", "32", "--seq-len", "16", "--steps", "2",
                                         "--batch-size", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["train_steps"] == 2
    assert (out / "model.safetensors").is_file()


def test_cli_csv_that_is_missing_fails_in_words(tiny_encoder, tmp_path):
    folder, _ = tiny_encoder
    with pytest.raises(ValueError, match="no CSV file at"):
        _run_cli("finetune", [str(folder), "--out", str(tmp_path / "x"), "--csv", str(tmp_path / "none.csv")])


# -- the page ------------------------------------------------------------------------------------------------
def test_page_starts_a_finetune_and_shows_results(tiny_encoder, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    folder, _ = tiny_encoder
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).parent.parent / "pages" / "finetune.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Fine-tune an encoder"
    assert any("No fine-tune yet" in i.value for i in at.info)
    at.radio(key="finetune_encoder_kind").set_value("A folder or Hugging Face id").run()
    at.text_input(key="finetune_source").set_value(str(folder)).run()
    at.number_input(key="finetune_cfg_epochs").set_value(1).run()
    at.number_input(key="finetune_cfg_max_length").set_value(32).run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="finetune_start").click().run()
    job = background.get(at.session_state["finetune_job_id"])
    assert isinstance(job, FinetuneJob)
    assert job.wait(timeout=300).status == "finished", job.snapshot().message
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("test accuracy" in s.value for s in at.success)
    labels = [m.label for m in at.metric]
    assert {"Encoder accuracy", "Encoder macro-F1", "TF-IDF accuracy", "TF-IDF macro-F1"} <= set(labels)
    assert any("Predicted:" in m.value for m in at.markdown)
    assert any(str(job.snapshot().result.path) in m.value for m in at.markdown)
    at.button(key="finetune_to_attention").click().run()   # hands the folder and sentence to the explorer
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["attention_hf_source"] == str(job.snapshot().result.path)


def test_page_says_what_is_wrong_with_a_csv(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).parent.parent / "pages" / "finetune.py"), default_timeout=120)
    at.run()
    at.radio(key="finetune_data_kind").set_value("Upload a CSV (text, label)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("header row is text,label" in i.value for i in at.info)
    assert at.button(key="finetune_start").disabled


def test_pretraining_stops_at_its_time_limit(tmp_path):
    metrics = pretrain_encoder(TINY.replace(steps=100_000, max_minutes=0.002), tmp_path / "timed")
    # 0.12 s of training: the time, not the 100,000 steps, ended it, and the folder was still saved.
    assert 1 <= metrics["train_steps"] < 1_000
    assert (tmp_path / "timed" / "model.safetensors").is_file()
    history = read_history(tmp_path / "timed")
    assert list(history["step"]) == list(range(1, metrics["train_steps"] + 1))   # one row per step taken


def test_texts_longer_than_the_model_are_cut_to_its_positions(tiny_encoder):
    folder, _ = tiny_encoder
    model, tokenizer, _ = load_classifier(folder, ("a", "b"))
    probs = predict(model, tokenizer, ["word " * 500], max_length=512)   # the tiny BERT has 32 positions
    assert probs.shape == (1, 2) and torch.allclose(probs.sum(-1), torch.ones(1))
