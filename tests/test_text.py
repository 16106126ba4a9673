"""The text kind and the lab's GPT: the corpus split, sampling filters, generation, held-out measures,
attention records, the CLI, and the Text generation page (AppTest), with real tiny models."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from streamlit.testing.v1 import AppTest

import genlib
from genlib import TrainConfig, Trainer
from genlib.data import training_set
from genlib.text_data import TEXT_WINDOW, text_corpus, text_split, text_windows
from genlib.families.transformers.generation import filtered_probabilities, generate, stream_text
from genlib.families.transformers.gpt import heldout_nats_per_byte
from genlib.model import TEXT
from genlib.runs import save_run
from test_app_pages import APP, run_clean
from test_cli import REPO, _env

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}


@pytest.fixture(scope="module")
def trained_gpt():
    """A tiny GPT trained 120 steps on the corpus (a few seconds), and its loss history."""
    model = genlib.build_model("gpt", TINY, seed=0)
    windows, labels = training_set("pydoc")
    result = Trainer(TrainConfig(epochs=1, max_steps=120, batch_size=32, lr=3e-3, seed=0, device="cpu")).fit(
        model, windows, labels)
    return model, result


def test_the_corpus_and_its_fixed_split():
    text = text_corpus()
    assert len(text) > 400_000 and text.isprintable() is False  # newlines: it is prose
    train, val = text_split()
    assert train + val == text.encode("utf-8")
    assert len(val) == len(text.encode("utf-8")) - int(len(text.encode("utf-8")) * 0.9)
    windows, labels = training_set("pydoc")
    assert windows.dtype == torch.uint8 and windows.shape[1] == TEXT_WINDOW and (labels == 0).all()
    assert bytes(windows[0].tolist()) == train[:TEXT_WINDOW]
    assert bytes(windows[-1].tolist()) == train[-TEXT_WINDOW:]   # the last window ends the training bytes
    with pytest.raises(ValueError, match="at least"):
        text_windows(b"short")


def test_token_kinds_check_ids_not_pixels():
    TEXT.check(torch.tensor([[0, 255, 10]]))
    with pytest.raises(ValueError, match="integer token ids"):
        TEXT.check(torch.rand(2, 5))
    with pytest.raises(ValueError, match="0..255"):
        TEXT.check(torch.tensor([[0, 256]]))


def test_top_k_and_top_p_keep_what_they_promise():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]]))
    assert torch.allclose(filtered_probabilities(logits), torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]]), atol=1e-6)
    top2 = filtered_probabilities(logits, top_k=2)
    assert torch.allclose(top2, torch.tensor([[2 / 3, 1 / 3, 0, 0, 0]]), atol=1e-6)
    # nucleus 0.8: 0.5 + 0.25 < 0.8, so the third token (0.15) is needed to reach it; the rest go
    nucleus = filtered_probabilities(logits, top_p=0.8)
    assert torch.allclose(nucleus, torch.tensor([[0.5, 0.25, 0.15, 0, 0]]) / 0.9, atol=1e-6)
    assert filtered_probabilities(logits, top_p=0.01)[0, 0] == 1   # always at least the most likely
    cold = filtered_probabilities(logits, temperature=0.1)
    assert cold[0, 0] > 0.99
    for bad in ({"temperature": 0}, {"top_k": -1}, {"top_p": 0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            filtered_probabilities(logits, **bad)


def test_generation_draws_only_allowed_tokens_and_repeats_for_a_seed():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1, 0.0 + 1e-9]))

    def next_logits(ids):
        return logits.expand(ids.shape[0], -1)

    start = torch.zeros(3, 1, dtype=torch.long)
    out = generate(next_logits, start, 50, top_k=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 51) and set(out[:, 1:].unique().tolist()) <= {0, 1}
    again = generate(next_logits, start, 50, top_k=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_training_lowers_the_loss_and_text_starts_to_look_like_the_docs(trained_gpt):
    model, result = trained_gpt
    first, last = result.history[0]["loss"], sum(r["loss"] for r in result.history[-10:]) / 10
    assert first == pytest.approx(math.log(256), rel=0.05)  # an untrained byte model is near uniform
    assert last < 0.7 * first
    text = model.decode_text(model.sample(1, generator=torch.Generator().manual_seed(0), prompt="The ",
                                          max_new_tokens=200, temperature=0.5)[0])
    assert text.startswith("The ") and text.count(" ") > 10   # spaces between word-like runs, at least


def test_held_out_measures(trained_gpt):
    model, _ = trained_gpt
    metrics = model.held_out_metrics()
    assert metrics["val_loss"] < math.log(256)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["val_loss"]), rel=1e-3)
    assert metrics["bits_per_char"] == pytest.approx(metrics["val_loss"] / math.log(2), rel=0.02)
    assert metrics["generation_tokens_per_s"] > 0

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, 256)

    assert heldout_nats_per_byte(Uniform(), text_split()[1], 64) == pytest.approx(math.log(256), rel=1e-6)


def test_the_attention_record_is_the_models_own_attention(trained_gpt):
    model, _ = trained_gpt
    text = "def f(x):\n    return x"
    record = model.attention_record(text)
    t = len(text.encode())
    assert record.tokens == list(text) and record.causal
    assert len(record.attentions) == TINY["n_layer"]
    for att, q, k in zip(record.attentions, record.queries, record.keys):
        assert att.shape == (TINY["n_head"], t, t) and q.shape == k.shape == (TINY["n_head"], t, 16)
        assert torch.allclose(torch.from_numpy(att).sum(-1), torch.ones(TINY["n_head"], t), atol=1e-5)
        assert float(torch.from_numpy(att).triu(1).abs().max()) == 0.0     # nothing attends to the future
        scores = torch.from_numpy(q) @ torch.from_numpy(k).transpose(-1, -2) / math.sqrt(16)
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        assert torch.allclose(scores.softmax(-1), torch.from_numpy(att), atol=1e-5)
    # keeping the attention (written-out softmax) gives the same logits as the fused kernel
    ids = model.encode_text(text)[None]
    assert torch.allclose(model(ids), model(ids, []), atol=1e-5)


def test_sinusoidal_positions_are_rebuilt_not_stored():
    model = genlib.build_model("gpt", {**TINY, "positions": "sinusoidal"}, seed=0)
    assert not any("sinusoid" in k for k in model.state_dict())
    assert "wpe.weight" in genlib.build_model("gpt", TINY, seed=0).state_dict()
    with pytest.raises(genlib.ConfigError, match="must divide"):
        genlib.build_model("gpt", {**TINY, "n_head": 3})


def test_streaming_gives_the_same_text_as_sampling(trained_gpt):
    model, _ = trained_gpt
    options = model.sampling_defaults().replace(prompt="import ", max_new_tokens=30, top_k=10)
    streamed = list(stream_text(model, options, generator=torch.Generator().manual_seed(4)))
    assert len(streamed) == 30 and all(len(e.candidates) <= 5 for _, e in streamed)
    assert streamed[-1][1].tokens_per_s > 0
    drawn = model.draw(1, options, generator=torch.Generator().manual_seed(4))
    assert model.decode_text(drawn[0]) == "import " + streamed[-1][0]
    with pytest.raises(ValueError, match="prompt is empty"):
        model.sample(1, prompt="")
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, TINY["block_size"] + 1, dtype=torch.long))


def test_cli_sample_is_deterministic_and_eval_prints_text_measures(trained_gpt, tmp_path):
    model, result = trained_gpt
    folder = save_run(model, TrainConfig(max_steps=120), result, tmp_path / "gpt-tiny", {})
    assert (folder / "samples.txt").read_text().startswith("--- sample 1 ---")
    env = _env(tmp_path / "runs")
    outs = []
    for name in ("a.txt", "b.txt"):
        subprocess.run([sys.executable, "-m", "genlib", "sample", str(folder), "--prompt", "class ", "--seed", "7",
                        "--max-new-tokens", "40", "--out", str(tmp_path / name)], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=300)
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1] and outs[0].startswith("class ") and len(outs[0].encode()) == 46
    done = subprocess.run([sys.executable, "-m", "genlib", "eval", str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"bits_per_char", "perplexity", "generation_tokens_per_s"} <= set(__import__("json").loads(done.stdout))


def test_the_text_page_streams_a_generation(app_env):
    at = AppTest.from_file(APP, default_timeout=180)
    run_clean(at)
    at.switch_page("pages/text.py")
    run_clean(at)
    assert not at.error, [e.value for e in at.error]
    at.text_area(key="text_prompt").set_value("for ")
    at.number_input(key="text_gen_gpt_max_new_tokens").set_value(24)
    at.button(key="text_generate").click()
    run_clean(at)
    assert not at.error, [e.value for e in at.error]
    shown = [c.value for c in at.code]
    assert any(v.startswith("for ") and len(v.encode()) >= 24 for v in shown), shown
    assert any("tokens/s" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == 24 and table["probability"].between(0, 1).all()


def test_an_uploaded_text_trains_and_is_measured_on_its_own_held_out_tenth(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "runs"))
    from genlib.data import UploadError
    from genlib.text_data import corpus_text, load_text_upload, save_text_corpus

    text = "the quick brown fox jumps over the lazy dog. " * 200
    name = save_text_corpus(load_text_upload(("\ufeff" + text).encode("utf-8")))
    assert name == save_text_corpus(text) and corpus_text(name) == text   # by content: stored once, BOM dropped
    model = genlib.build_model("gpt", {**TINY, "corpus": name}, seed=0)
    assert model.trained_data().dataset == name and model.trained_data() != genlib.model.TEXT
    windows, labels = training_set(name)
    Trainer(TrainConfig(epochs=20, max_steps=60, batch_size=16, lr=3e-3, device="cpu")).fit(model, windows, labels)
    metrics = model.held_out_metrics()
    assert metrics["val_loss"] < 2.5 and name in metrics["held_out"]   # a repeated sentence is easy
    for bad, words in ((b"", "empty"), (b"\x00\x01" * 3000, "not a text file"), (b"\xff\xfe" * 3000, "not UTF-8"),
                       (b"short", "at least"), (b"\x07" * 5000, "control characters")):
        with pytest.raises(UploadError, match=words):
            load_text_upload(bad)
    with pytest.raises(UploadError, match="limit"):
        load_text_upload(b"a" * 5000, max_bytes=4000)
    with pytest.raises(genlib.ConfigError, match="corpus"):
        genlib.build_model("gpt", {**TINY, "corpus": "../../etc/passwd"})
    with pytest.raises(ValueError, match="not on this machine"):
        corpus_text("upload-0123456789abcdef")


def test_the_text_page_drives_a_hugging_face_folder_with_the_same_controls(app_env, tmp_path):
    from test_hf_causal_lm import save_tiny_gpt2

    folder = save_tiny_gpt2(tmp_path / "tiny-gpt2")
    at = AppTest.from_file(APP, default_timeout=180)
    run_clean(at)
    at.switch_page("pages/text.py")
    run_clean(at)
    at.text_input(key="text_model_source").set_value(str(folder))
    run_clean(at)
    assert not at.error, [e.value for e in at.error]
    at.text_area(key="text_prompt").set_value("The ")
    at.number_input(key="text_gen_hf-causal-lm_max_new_tokens").set_value(12)
    at.button(key="text_generate").click()
    run_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert any(c.value.startswith("The ") for c in at.code)
    assert len(at.dataframe[0].value) == 12
    at.text_input(key="text_model_source").set_value("openai-community/gpt2")   # offline: a message, no crash
    run_clean(at)
    assert any("offline" in e.value for e in at.error), [e.value for e in at.error]
