"""The attention explorer: records from real (tiny, random) Hugging Face models saved to tmp folders, the
three views and their exports, the loader's refusals, and the page.

Each model is built from a 2-layer, 2-head, 32-wide config with a tokenizer made offline (a WordPiece
vocab file for BERT and DistilBERT, a byte-level BPE trained on the spot for RoBERTa and GPT-2), saved
with safetensors and loaded back through ``load_hf_attention_model``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network

from streamlit.testing.v1 import AppTest  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import (BertConfig, BertModel, BertTokenizer, DistilBertConfig, DistilBertModel,  # noqa: E402
                          DistilBertTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer, RobertaConfig, RobertaModel,
                          RobertaTokenizer)

from genlib import get_family  # noqa: E402
from genlib.checkpoints import CheckpointError, save_folder  # noqa: E402
from genlib.families.transformers.attention import (AttentionRecord, hf_attention_record,  # noqa: E402
                                                    load_hf_attention_model, neuron_data, select_heads, select_layers,
                                                    softmax_scores, window)
from genlib.families.transformers.attention_views import (figure_html, head_view, head_view_png,  # noqa: E402
                                                          model_view, model_view_png, mosaic, neuron_view,
                                                          neuron_view_png, picked_thumbnail, pool, size_of)

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the cat sat on the mat and the dog ran after the cat"
WORDS = sorted(set(TEXT.split())) + ["dogs", "running"]
# A large init spread makes the attention peaked, so reproducing it from q and k is a real check
# (near-uniform rows would match almost any scores).
SPREAD = dict(initializer_range=0.6)
ARCHITECTURES = ("bert", "distilbert", "roberta", "gpt2")


def _build(kind: str, folder: Path) -> Path:
    """Save a tiny random ``kind`` model and its tokenizer to ``folder`` (safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **SPREAD)
    if kind in ("bert", "distilbert"):
        vocab = folder / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing"]) + "\n")
        if kind == "bert":
            tokenizer = BertTokenizer(str(vocab))
            model = BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=1100, **common))
        else:
            tokenizer = DistilBertTokenizer(str(vocab))
            model = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2,
                                                     hidden_dim=64, max_position_embeddings=1100, **SPREAD))
    else:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator([TEXT] * 4, vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<|endoftext|>"])
        bpe.save_model(str(folder))
        vocab, merges = str(folder / "vocab.json"), str(folder / "merges.txt")
        if kind == "roberta":
            tokenizer = RobertaTokenizer(vocab, merges)
            model = RobertaModel(RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=1100, **common))
        else:
            tokenizer = GPT2Tokenizer(vocab, merges)
            model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                                               n_positions=1100, bos_token_id=0, eos_token_id=0, **SPREAD))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-attention")
    return {kind: _build(kind, root / kind) for kind in ARCHITECTURES}


@pytest.fixture(scope="module")
def loaded(folders):
    return {kind: load_hf_attention_model(str(folder)) for kind, folder in folders.items()}


@pytest.fixture(scope="module")
def long_record(loaded) -> AttentionRecord:
    """A 1,000-token GPT-2 record."""
    model, tokenizer = loaded["gpt2"]
    record = hf_attention_record(model, tokenizer, " ".join([TEXT] * 100), max_tokens=1000)
    assert record.n_tokens == 1000
    return record


# -- records ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_records_have_per_layer_probabilities(loaded, kind):
    model, tokenizer = loaded[kind]
    assert model.config._attn_implementation == "eager"
    record = hf_attention_record(model, tokenizer, TEXT)
    assert record.n_layers == 2 and record.n_heads == 2 and record.n_tokens > 10
    assert "cat" in "".join(record.tokens)
    for attn in record.attentions:
        assert attn.dtype == np.float32 and attn.shape == (2, record.n_tokens, record.n_tokens)
        np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
    assert record.causal == (kind == "gpt2")
    upper = np.triu(np.ones((record.n_tokens,) * 2, dtype=bool), k=1)
    if kind == "gpt2":
        assert all(np.abs(a[:, upper]).max() == 0 for a in record.attentions)
    else:
        assert all(a[:, upper].min() > 0 for a in record.attentions)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_queries_and_keys_reproduce_the_models_attention(loaded, kind):
    model, tokenizer = loaded[kind]
    record = hf_attention_record(model, tokenizer, TEXT)
    assert record.has_qk and record.queries[0].shape == (2, record.n_tokens, 16)
    upper = np.triu(np.ones((record.n_tokens,) * 2, dtype=bool), k=1)
    for layer, attn in enumerate(record.attentions):
        q, k = record.queries[layer], record.keys[layer]                      # (H, T, d)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])              # (H, T, T)
        if record.causal:
            scores = np.where(upper, -np.inf, scores)
        np.testing.assert_allclose(softmax_scores(scores), attn, atol=1e-4)
        assert attn.max() > 0.5  # peaked, so the check above means something
        # without the 1/sqrt(d) scaling the rows come out measurably different
        assert np.abs(softmax_scores(scores * np.sqrt(q.shape[-1])) - attn).max() > 1e-2
    one = neuron_data(record, 1, 0, 5)
    np.testing.assert_allclose(one.product, record.queries[1][0, 5] * record.keys[1][0], rtol=1e-6)
    np.testing.assert_allclose(softmax_scores(one.scores), one.probs, atol=1e-4)


def test_a_model_sees_the_same_attention_through_the_record_as_directly(loaded):
    model, tokenizer = loaded["bert"]
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        direct = model(input_ids=ids, output_attentions=True).attentions
    hooks = lambda: {name: len(m._forward_hooks) for name, m in model.named_modules()}  # noqa: E731
    before = hooks()  # transformers may keep hooks of its own
    record = hf_attention_record(model, tokenizer, TEXT)
    np.testing.assert_allclose(record.attentions[1], direct[1][0].numpy(), atol=1e-6)
    assert hooks() == before  # ours are removed again: the cached, shared model is left as it was


def test_other_architectures_say_why_there_is_no_neuron_view(loaded):
    model, tokenizer = loaded["gpt2"]
    record = hf_attention_record(model, tokenizer, TEXT)
    bare = AttentionRecord(tokens=record.tokens, attentions=record.attentions, model_name="x",
                           qk_missing="the neuron view is not available for the 'x' architecture")
    assert not bare.has_qk
    with pytest.raises(ValueError, match="not available"):
        neuron_view(bare, 0, 0, 1)


def test_long_inputs_are_cut_to_max_tokens_and_filters_keep_original_numbers(loaded, long_record):
    model, tokenizer = loaded["gpt2"]
    assert hf_attention_record(model, tokenizer, " ".join([TEXT] * 100), max_tokens=50).n_tokens == 50
    cut = window(select_heads(select_layers(long_record, [1]), [1]), 500, 540)
    assert (cut.n_layers, cut.n_heads, cut.n_tokens, cut.offset) == (1, 1, 40, 500)
    assert cut.layer_ids == [1] and cut.head_ids == [1] and cut.queries[0].shape == (1, 40, 16)
    np.testing.assert_array_equal(cut.attentions[0][0], long_record.attentions[1][1, 500:540, 500:540])
    assert window(cut, 10, 20).offset == 510
    with pytest.raises(ValueError, match="empty"):
        window(long_record, 30, 30)
    with pytest.raises(ValueError, match="none of layers"):
        select_layers(long_record, [7])


def test_a_record_refuses_arrays_of_the_wrong_shape():
    with pytest.raises(ValueError, match="expected"):
        AttentionRecord(tokens=["a", "b"], attentions=[np.ones((2, 3, 3))])
    with pytest.raises(ValueError, match="both"):
        AttentionRecord(tokens=["a"], attentions=[np.ones((1, 1, 1))], queries=[np.ones((1, 1, 4))])


# -- the loader's refusals ----------------------------------------------------------------------------------
def test_a_hub_id_offline_fails_with_the_offline_message():
    with pytest.raises(CheckpointError, match="offline"):
        load_hf_attention_model("nobody-here/no-such-model")


def test_a_folder_with_only_pickled_weights_is_refused(folders, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((folders["bert"] / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="only pickled weights.*never unpickles"):
        load_hf_attention_model(str(folder))


def test_folders_that_are_not_transformers_models_are_refused_in_words(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf_attention_model(str(tmp_path / "empty"))
    genlib_run = tmp_path / "run"
    genlib_run.mkdir()
    (genlib_run / "config.json").write_text('{"family": "vae", "model": {}}')
    (genlib_run / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="genlib checkpoint"):
        load_hf_attention_model(str(genlib_run))


# -- views -------------------------------------------------------------------------------------------------
def _is_png(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image.size


def test_pool_takes_block_means():
    matrix = np.arange(16, dtype=np.float64).reshape(4, 4)
    pooled, edges = pool(matrix, 2)
    np.testing.assert_allclose(pooled, [[2.5, 4.5], [10.5, 12.5]])
    assert edges.tolist() == [0, 2, 4]
    assert pool(matrix, 8)[0] is matrix


def test_the_views_build_for_a_short_input(loaded):
    model, tokenizer = loaded["bert"]
    record = hf_attention_record(model, tokenizer, TEXT)
    lines = head_view(record, 1, combine="each")
    assert {t.name for t in lines.data if t.mode == "lines"} == {"head 0", "head 1"}
    one = head_view(record, 1, heads=[1], style="heatmap")
    np.testing.assert_allclose(one.data[0].z, record.attentions[1][1], rtol=1e-6)
    grid = model_view(record)
    assert len(grid.data[1].customdata) == 4
    assert picked_thumbnail([{"x": 1.0, "customdata": [1, 0]}]) == (1, 0)
    assert picked_thumbnail([{"x": 1.0}]) is None
    neuron = neuron_view(record, 0, 1, 3)
    assert neuron.data[0].z.shape == (1, 16) and neuron.data[1].z.shape == (record.n_tokens, 16)
    for png in (head_view_png(record, 1), head_view_png(record, 1, heads=[0], style="heatmap"),
                model_view_png(record), neuron_view_png(record, 0, 1, 3)):
        _is_png(png)


def test_the_views_stay_light_for_1000_tokens(long_record):
    heat = head_view(long_record, 0)
    assert heat.data[0].type == "heatmap" and np.asarray(heat.data[0].z).shape == (256, 256)  # pooled
    grid = model_view(long_record)
    assert mosaic(long_record).shape == (2 * 33 - 1, 2 * 33 - 1)
    neuron = neuron_view(long_record, 1, 1, 999)
    for fig, most in ((heat, 800_000), (grid, 200_000), (neuron, 800_000)):
        assert size_of(fig) < most
        assert sum(1 for _ in fig.data) < 20  # heatmaps and bars, not thousands of line shapes
    for png in (head_view_png(long_record, 0), model_view_png(long_record), neuron_view_png(long_record, 1, 1, 999)):
        width, height = _is_png(png)
        assert width * height < 4_000_000


def test_html_exports_open_offline(loaded):
    model, tokenizer = loaded["gpt2"]
    record = hf_attention_record(model, tokenizer, TEXT)
    page = figure_html(model_view(record)).decode()
    assert "<script src=\"http" not in page and "<script src=" not in page  # no script loaded from anywhere
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js itself is inside


# -- the page ----------------------------------------------------------------------------------------------
def _page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "attention.py"), default_timeout=120)


def test_the_page_shows_a_saved_gpt2_folder(folders):
    at = _page()
    at.session_state["attention_source_kind"] = "A Hugging Face folder or hub id"
    at.session_state["attention_hf_source"] = str(folders["gpt2"])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("tokens" in c.value for c in at.caption)
    for tab in ("Model view", "Neuron view", "Head view"):
        at.session_state["attention_tab"] = tab
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
        assert not at.warning, [w.value for w in at.warning]
    assert len(at.get("download_button")) >= 2
    at.session_state["attention_tab"] = "Neuron view"
    at.run()
    at.selectbox(key="attention_query").set_value(3).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Neuron view" in str(getattr(c, "proto", "")) for c in at.get("plotly_chart"))
    # the model view's picker opens a head in the head view (a thumbnail click calls the same function)
    at.session_state["attention_tab"] = "Model view"
    at.run()
    at.selectbox(key="attention_pick_layer").set_value(1)
    at.selectbox(key="attention_pick_head").set_value(1)
    at.button(key="attention_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["attention_tab"] == "Head view"
    assert at.selectbox(key="attention_layer").value == 1 and at.selectbox(key="attention_head").value == 1
    assert at.radio(key="attention_head_mode").value == "One head"
    assert any("layer 1" in str(getattr(c, "proto", "")) for c in at.get("plotly_chart"))


def test_the_page_shows_a_lab_gpt_checkpoint(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(runs))
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(tmp_path / "none-shipped"))
    cls = get_family("gpt")
    torch.manual_seed(0)
    model = cls(cls.Config.from_dict(cls.tiny_config))
    save_folder(runs / "tiny-gpt", model, {"family": "gpt", "model": model.config.to_dict()})
    at = _page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="attention_source_kind").value == "The lab's text models"  # chosen when one exists
    assert not at.error, [e.value for e in at.error]
    assert any("causal" in c.value for c in at.caption)
    for tab in ("Model view", "Neuron view"):
        at.session_state["attention_tab"] = tab
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert at.get("plotly_chart")


def test_the_page_says_what_is_wrong_with_a_bad_source(tmp_path):
    at = _page()
    at.session_state["attention_source_kind"] = "A Hugging Face folder or hub id"
    at.session_state["attention_hf_source"] = str(tmp_path)
    at.run()
    assert not at.exception
    assert any("no config.json" in e.value for e in at.error)
    at.session_state["attention_hf_source"] = "nobody-here/no-such-model"
    at.run()
    assert not at.exception
    assert any("offline" in e.value or "Hub" in e.value for e in at.error)
    # The failed hub id is remembered: the next rerun shows the message without trying the hub again.
    remembered = at.session_state["attention_failed"]
    assert remembered[0] == "nobody-here/no-such-model"
    at.run()
    assert [e.value for e in at.error] == [remembered[1]]
    at.session_state["attention_hf_source"] = str(tmp_path)   # a local folder is always retried
    at.run()
    assert any("no config.json" in e.value for e in at.error)
