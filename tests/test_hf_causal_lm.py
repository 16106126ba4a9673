"""Hugging Face causal LMs (genlib.families.transformers.hf), offline, on a tiny random GPT-2 that this
module builds and saves itself: a byte-level BPE tokenizer trained on a slice of the corpus, a
2-layer GPT-2 of width 32, written with save_pretrained (safetensors) to a temporary folder.

Loading through genlib.load_model, reproducible sampling with the shared controls, the key/value cache
against full forward passes, top-k and top-p, text round trips, held-out metrics, the attention record,
refusals in words (pickles never opened, a hub id offline, building or training), and save/load.
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import genlib
from genlib.checkpoints import CheckpointError, save_folder
from genlib.text_data import text_corpus
from genlib.families.transformers import hf
from genlib.families.transformers.generation import filtered_probabilities, stream
from genlib.runs import _dataset, train_model

VOCAB = 300
CONTEXT = 64


def tiny_tokenizer() -> GPT2TokenizerFast:
    """A byte-level BPE of VOCAB tokens (GPT-2's scheme) trained on 20k characters of the corpus."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([text_corpus()[:20_000]], trainer)
    return GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>")


def save_tiny_gpt2(folder: Path) -> Path:
    """A random 2-layer GPT-2 and its tokenizer, saved as a transformers folder (safetensors)."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("hf") / "tiny-gpt2")


@pytest.fixture(scope="module")
def loaded(tiny_folder):
    """(HFCausalLM, CheckpointInfo) loaded from the tiny folder by the lab's one loader."""
    return genlib.load_model(tiny_folder)


def full_forward(model: hf.HFCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """Logits (N,V) of the next token, from one uncached pass over all of ids (N,T)."""
    with torch.no_grad():
        return model.lm(input_ids=ids, use_cache=False).logits[:, -1].float()


# -- loading --------------------------------------------------------------------------------------------------
def test_a_transformers_folder_loads_as_the_hf_family(tiny_folder, loaded):
    model, info = loaded
    assert isinstance(model, hf.HFCausalLM) and info.family == "hf-causal-lm" == model.family
    assert info.origin == "local" and not model.training and not model.lm.training
    assert model.config == hf.HFCausalLMConfig(architecture="GPT2LMHeadModel", model_type="gpt2",
                                               vocab_size=VOCAB, context=CONTEXT)
    assert model.lm.config._attn_implementation == "eager"   # the attention explorer needs the weights
    kind = model.trained_data()
    assert kind.tokens == VOCAB and kind.dataset is None and "gpt2 tokenizer" in kind.name
    assert hf.HFCausalLM.claim_folder(tiny_folder)["vocab_size"] == VOCAB


def test_folders_of_other_kinds_are_not_claimed(tmp_path):
    encoder = tmp_path / "bert"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    assert hf.HFCausalLM.claim_folder(encoder) is None
    genlib_run = tmp_path / "run"
    genlib_run.mkdir()
    (genlib_run / "config.json").write_text(json.dumps({"family": "gpt", "architectures": ["GPT2LMHeadModel"]}))
    assert hf.HFCausalLM.claim_folder(genlib_run) is None
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "vocab_size": 10}))
    with pytest.raises(CheckpointError, match="no .safetensors weights"):
        genlib.load_model(empty)


class _Trap:
    """Unpickling this writes a marker file: proof that a loader opened the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_weights_are_refused_in_words_and_never_opened(tmp_path, tiny_folder):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_folder / "config.json").read_text())
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(CheckpointError) as err:
        genlib.load_model(folder)
    msg = str(err.value)
    assert "pickled weights (pytorch_model.bin)" in msg and "never unpickles" in msg and "Error" not in msg
    assert not marker.exists()
    both = tmp_path / "both"   # a pickle beside the safetensors weights: the safetensors load, the pickle stays shut
    shutil.copytree(tiny_folder, both)
    (both / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    assert isinstance(genlib.load_model(both)[0], hf.HFCausalLM) and not marker.exists()


@pytest.mark.parametrize("hub_id", ["openai-community/gpt2", "gpt2"])
def test_a_hub_id_offline_fails_with_the_labs_message(monkeypatch, tmp_path, hub_id):
    # huggingface_hub reads HF_HUB_OFFLINE and its cache folder once at import: set the switches too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as err:
        genlib.load_model(hub_id)
    msg = str(err.value)
    assert "offline" in msg and repr(hub_id) in msg and "Hugging Face Hub" in msg
    assert "Error" not in msg and "Traceback" not in msg


def test_building_or_training_is_refused_in_words(loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match="loaded, not built from settings"):
        genlib.build_model("hf-causal-lm")
    with pytest.raises(ValueError, match="does not train it"):
        model.training_step((torch.zeros(2, 8, dtype=torch.long), torch.zeros(2)), 0)
    with pytest.raises(CheckpointError, match="no offline training set .* can only be loaded"):
        _dataset(model)
    with pytest.raises(CheckpointError, match="can only be loaded"):
        train_model(model, genlib.TrainConfig(max_steps=1), Path("never-written"))


# -- sampling ---------------------------------------------------------------------------------------------------
def test_sampling_is_reproducible_and_reports_each_token(loaded):
    model, _ = loaded
    prompt_len = len(model.prompt_ids("def ", 1)[0])
    options = {"prompt": "def ", "max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0}
    seen = []
    a = model.draw(3, options, generator=torch.Generator().manual_seed(1), callback=seen.append)
    b = model.sample(3, generator=torch.Generator().manual_seed(1), **model.sampling_defaults().replace(
        **options).to_dict())
    c = model.draw(3, options, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, prompt_len + 12) and a.dtype == torch.long
    model.trained_data().check(a)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, :prompt_len], model.prompt_ids("def ", 3).cpu())
    assert [s.step for s in seen] == list(range(12)) and all(s.state.shape == a.shape for s in seen)
    assert torch.equal(seen[-1].state, a)
    assert model.decode_text(a[0]).startswith("def ")
    assert isinstance(model.Sampling(), hf.GPTSampling)   # the lab GPT's controls, same names


def test_bad_prompts_are_refused_in_words(loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match="prompt is empty"):
        model.sample(1, prompt="")
    with pytest.raises(ValueError, match="limit is"):
        model.sample(1, prompt="x" * 5000)


def test_the_key_value_cache_gives_the_full_forward_logits(loaded):
    model, _ = loaded
    ids = model.prompt_ids("The import statement", 2)
    model.clear_cache()
    steps = 0
    for out, _ in stream(model.next_logits, ids, 20, temperature=1.0, generator=torch.Generator().manual_seed(0)):
        cached = model.next_logits(out)             # extends the previous call's ids: only the new token runs
        assert model._kv.state[0].shape == out.shape
        torch.testing.assert_close(cached, full_forward(model, out), atol=1e-4, rtol=0)
        steps += 1
    assert steps == 20
    other = model.prompt_ids("while True:", 2)        # not an extension: a fresh pass
    torch.testing.assert_close(model.next_logits(other), full_forward(model, other), atol=1e-4, rtol=0)
    long = torch.randint(0, VOCAB, (1, CONTEXT + 9), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.next_logits(long), full_forward(model, long[:, -CONTEXT:]), atol=1e-4, rtol=0)
    # sampling runs the prompt once, then one new token per step
    widths = []
    hook = model.lm.get_input_embeddings().register_forward_hook(lambda m, args, out: widths.append(args[0].shape))
    try:
        model.sample(2, prompt="The import statement", max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert widths == [ids.shape] + [torch.Size([2, 1])] * 5
    # sampling past the context keeps going, on the last CONTEXT tokens
    assert model.sample(1, max_new_tokens=CONTEXT + 5, generator=torch.Generator().manual_seed(0)).shape[1] > CONTEXT


def test_top_k_and_top_p_are_respected(loaded):
    model, _ = loaded
    prompt = "class "
    greedy = model.sample(2, prompt=prompt, max_new_tokens=10, top_k=1, generator=torch.Generator().manual_seed(0))
    start = len(model.prompt_ids(prompt, 1)[0])
    for t in range(start, greedy.shape[1]):
        assert torch.equal(greedy[:, t], full_forward(model, greedy[:, :t]).argmax(-1))
    for top_k, top_p in ((3, 1.0), (0, 0.5), (0, 0.01)):
        out = model.sample(4, prompt=prompt, max_new_tokens=10, temperature=1.0, top_k=top_k, top_p=top_p,
                           generator=torch.Generator().manual_seed(4))
        for t in range(start, out.shape[1]):
            probs = torch.softmax(full_forward(model, out[:, :t]), -1)            # (4, V)
            ranked, order = probs.sort(-1, descending=True)
            keep_ranks = (ranked.cumsum(-1) - ranked < top_p) & (torch.arange(VOCAB) < (top_k or VOCAB))
            for row in range(4):
                allowed = set(order[row][keep_ranks[row]].tolist())
                assert int(out[row, t]) in allowed, (top_k, top_p, t, row)
                assert len(allowed) < VOCAB // 2   # the filters cut the near-uniform random model's choice
    assert torch.equal(filtered_probabilities(torch.tensor([[0.0, 5.0, 1.0]]), top_k=1), torch.tensor([[0.0, 1, 0]]))


# -- text ---------------------------------------------------------------------------------------------------------
def test_text_round_trips_through_the_tokenizer(loaded):
    model, _ = loaded
    for text in ("for x in range(3):\n    print(x)\n", "naïve café — ✓ 数据", " leading space"):
        ids = model.encode_text(text)
        assert ids.dtype == torch.long and ids.ndim == 1 and int(ids.max()) < VOCAB
        assert model.decode_text(ids) == text
    space_the = model.tokenizer.convert_tokens_to_ids("Ġthe")
    if space_the != model.tokenizer.unk_token_id:
        assert model.token_text(space_the) == " the"
    first_byte_of_e_acute = model.tokenizer.convert_tokens_to_ids("Ã")   # byte 0xC3 alone: half a character
    assert model.token_text(first_byte_of_e_acute) == "Ã"
    assert model.token_text(model.encode_text("\n")[0]) == "\n"


def test_held_out_metrics_are_finite_and_consistent(loaded):
    model, _ = loaded
    m = model.held_out_metrics()
    assert {"val_loss", "bits_per_token", "bits_per_char", "perplexity", "generation_tokens_per_s",
            "held_out"} <= set(m)
    assert all(math.isfinite(m[k]) and m[k] > 0 for k in ("val_loss", "bits_per_token", "bits_per_char",
                                                         "perplexity", "generation_tokens_per_s"))
    # a random model is close to uniform over its vocabulary: log2(300) = 8.2 bits per token
    assert abs(m["bits_per_token"] - math.log2(VOCAB)) < 1.0
    assert m["perplexity"] == pytest.approx(2 ** m["bits_per_token"], rel=1e-3)
    assert m["bits_per_char"] < m["bits_per_token"]   # a BPE token is more than one character on average
    assert m["eval_context"] == CONTEXT and "tokens of this tokenizer" in m["held_out"]
    assert not model.training


def test_attention_record_has_every_layer_and_head(loaded):
    model, _ = loaded
    record = model.attention_record("import os\nprint(os.sep)")
    t = len(model.tokenizer("import os\nprint(os.sep)")["input_ids"])
    assert record.n_layers == 2 and record.n_heads == 2 and record.n_tokens == t and record.causal
    assert all(a.shape == (2, t, t) for a in record.attentions)
    assert all(abs(a.sum(-1) - 1).max() < 1e-5 for a in record.attentions)
    assert record.has_qk and record.queries[0].shape == (2, t, 16)


# -- saving ---------------------------------------------------------------------------------------------------------
def test_save_and_reload_give_identical_logits_and_samples(loaded, tmp_path):
    model, _ = loaded
    out = save_folder(tmp_path / "copy", model, {"family": model.family, "model": model.config.to_dict()})
    assert json.loads((out / "config.json").read_text())["family"] == "hf-causal-lm"
    assert (out / hf.SUBFOLDER / "model.safetensors").is_file()
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    again, info = genlib.load_model(out)
    assert isinstance(again, hf.HFCausalLM) and again.config == model.config and info.family == model.family
    ids = model.prompt_ids("The with statement", 3)
    assert torch.equal(full_forward(again, ids), full_forward(model, ids))
    for seed in (0, 5):
        a = model.sample(2, max_new_tokens=8, generator=torch.Generator().manual_seed(seed))
        b = again.sample(2, max_new_tokens=8, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
    # the saved transformers folder is a plain one to transformers itself
    plain = AutoModelForCausalLM.from_pretrained(str(out), subfolder=hf.SUBFOLDER, use_safetensors=True)
    with torch.no_grad():   # its default attention kernel (SDPA) differs from eager in the last float bits
        torch.testing.assert_close(plain(input_ids=ids).logits[:, -1], full_forward(model, ids), atol=1e-5, rtol=0)
