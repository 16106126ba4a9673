"""Self-attention from scratch (genlib/families/transformers/scratch.py) against torch's own attention,
and the page that walks through it (pages/attention_scratch.py), run with AppTest."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from genlib.families.transformers.scratch import (MAX_TOKENS, attention_parts, attention_walk, causal_mask,
                                                  multi_head_attention, projection_weights, sinusoidal_positions,
                                                  tokenize)

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "attention_scratch.py")
TOL = dict(atol=1e-5, rtol=0)


def layer(d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(4)]  # Wq, Wk, Wv, Wo


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_equals_scaled_dot_product_attention(heads, causal):
    torch.manual_seed(1)
    d, T = 16, 7
    x = torch.randn(3, T, d)
    w_q, w_k, w_v, w_o = layer(d)
    out, weights = multi_head_attention(x, w_q, w_k, w_v, w_o, heads, causal)

    def split(m):  # (B, T, d) -> (B, H, T, d/H)
        return m.view(3, T, heads, d // heads).transpose(1, 2)
    o = F.scaled_dot_product_attention(split(x @ w_q), split(x @ w_k), split(x @ w_v), is_causal=causal)
    expected = o.transpose(1, 2).reshape(3, T, d) @ w_o
    assert out.shape == (3, T, d) and weights.shape == (3, heads, T, T)
    torch.testing.assert_close(out, expected, **TOL)


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_equals_nn_multihead_attention_with_the_same_weights(heads, causal):
    torch.manual_seed(2)
    d, T = 16, 9
    x = torch.randn(2, T, d)
    w_q, w_k, w_v, w_o = layer(d, seed=3)
    mha = torch.nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
    with torch.no_grad():  # nn.Linear computes x W^T, the from-scratch layer x W
        mha.in_proj_weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T]))
        mha.out_proj.weight.copy_(w_o.T)
    mha.eval()
    mask = causal_mask(T) if causal else None
    with torch.no_grad():
        expected, expected_weights = mha(x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False)
    out, weights = multi_head_attention(x, w_q, w_k, w_v, w_o, heads, causal)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(weights, expected_weights, **TOL)


def test_an_unbatched_input_gives_the_batched_result():
    x = torch.randn(5, 8)
    w = layer(8)
    out, weights = multi_head_attention(x, *w, 2, True)
    out_b, weights_b = multi_head_attention(x[None], *w, 2, True)
    assert out.shape == (5, 8) and weights.shape == (2, 5, 5)
    torch.testing.assert_close(out, out_b[0], **TOL)
    torch.testing.assert_close(weights, weights_b[0], **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_rows_sum_to_one_and_the_mask_zeros_the_future(causal):
    walk = attention_walk("the cat sat on the mat .", d_model=12, heads=3, causal=causal, seed=4)
    T = len(walk.tokens)
    assert walk.weights.shape == (3, T, T)
    torch.testing.assert_close(walk.weights.sum(-1), torch.ones(3, T), **TOL)
    assert (walk.weights >= 0).all()
    upper = walk.weights[:, causal_mask(T)]
    if causal:
        assert torch.equal(upper, torch.zeros_like(upper))
        masked = walk.step("masked, head 2").matrix
        assert torch.isneginf(masked[causal_mask(T)]).all() and torch.isfinite(masked.tril()).all()
        assert walk.weights[:, 0, 0].eq(1).all()  # the first token can only look at itself
    else:
        assert (upper > 0).all()
        assert not any(s.name.startswith("masked") for s in walk.steps)


def test_the_walk_is_the_layer_step_by_step():
    walk = attention_walk("Attention is all you need!", d_model=8, heads=2, causal=True, seed=7)
    assert walk.tokens == ("Attention", "is", "all", "you", "need", "!")  # word tokens, punctuation apart
    T, d = 6, 8
    x = walk.step("X").matrix
    torch.testing.assert_close(x, walk.step("E").matrix + sinusoidal_positions(T, d))
    w = projection_weights(d, seed=7)
    out, weights = multi_head_attention(x, w["Wq"], w["Wk"], w["Wv"], w["Wo"], 2, True)
    torch.testing.assert_close(walk.out, out, **TOL)
    torch.testing.assert_close(walk.weights, weights, **TOL)
    torch.testing.assert_close(walk.step("out").matrix, out, **TOL)
    # the head slices, scaling and weighted sum are what the formulas say
    q, k, v = (walk.step(n).matrix for n in "QKV")
    torch.testing.assert_close(walk.step("Q, head 2").matrix, q[:, 4:8])
    scores = q[:, 4:] @ k[:, 4:].T
    torch.testing.assert_close(walk.step("scores, head 2").matrix, scores, **TOL)
    torch.testing.assert_close(walk.step("scaled, head 2").matrix, scores / 2, **TOL)
    o2 = weights[1] @ v[:, 4:]
    torch.testing.assert_close(walk.step("weighted sum, head 2").matrix, o2, **TOL)
    torch.testing.assert_close(walk.step("concat").matrix[:, 4:], o2, **TOL)
    for s in walk.steps:  # every step's labels fit its matrix, and names are unique
        assert s.shape == (len(s.rows), len(s.cols)) and s.explanation and s.formula
    assert len({s.name for s in walk.steps}) == len(walk.steps)
    assert [s.name for s in walk.section(walk.sections[2], head=0)] == [
        "Q, head 1", "K, head 1", "V, head 1", "scores, head 1", "scaled, head 1", "masked, head 1",
        "weights, head 1", "weighted sum, head 1"]


def test_embeddings_are_deterministic_per_word_and_seed():
    a = attention_walk("the dog saw the cat", d_model=6, heads=3, seed=1)
    b = attention_walk("the cat", d_model=6, heads=3, seed=1)
    e = a.step("E").matrix
    torch.testing.assert_close(e[0], e[3])             # "the" is "the" wherever it is
    torch.testing.assert_close(e[4], b.step("E").matrix[1])  # and in any sentence
    assert not torch.equal(a.step("X").matrix[0], a.step("X").matrix[3])  # positions tell them apart
    c = attention_walk("the dog saw the cat", d_model=6, heads=3, seed=2)
    assert not torch.allclose(e, c.step("E").matrix)
    torch.testing.assert_close(a.out, attention_walk("the dog saw the cat", d_model=6, heads=3, seed=1).out)


def test_sinusoidal_positions_match_the_formula():
    pe = sinusoidal_positions(50, 6)
    assert pe.shape == (50, 6) and pe.dtype == torch.float32
    assert torch.equal(pe[0], torch.tensor([0.0, 1, 0, 1, 0, 1]))
    # hand-checked: PE[pos, 2i] = sin(pos / 10000^(2i/6)), PE[pos, 2i+1] = cos(same)
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert pe[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 6)), abs=1e-7)
    assert pe[10, 5].item() == pytest.approx(math.cos(10 / 10000 ** (4 / 6)), abs=1e-7)
    assert pe[49, 3].item() == pytest.approx(math.cos(49 / 10000 ** (2 / 6)), abs=1e-7)


def test_sinusoidal_positions_for_an_odd_width():
    pe = sinusoidal_positions(20, 7)
    assert pe.shape == (20, 7)
    assert pe[5, 6].item() == pytest.approx(math.sin(5 / 10000 ** (6 / 7)), abs=1e-7)  # a sine, no cosine partner
    assert pe[5, 1].item() == pytest.approx(math.cos(5.0), abs=1e-7)
    assert pe[5, 4].item() == pytest.approx(math.sin(5 / 10000 ** (4 / 7)), abs=1e-7)
    assert sinusoidal_positions(4, 1)[:, 0].tolist() == pytest.approx([math.sin(p) for p in range(4)])
    assert torch.isfinite(sinusoidal_positions(4096, 7)).all()


@pytest.mark.parametrize("call, words", [
    (lambda: attention_walk("   "), "no words"),
    (lambda: attention_walk(""), "no words"),
    (lambda: attention_walk("?!", d_model=6, heads=4), "do not divide"),
    (lambda: attention_walk(" ".join(["word"] * (MAX_TOKENS + 1))), f"at most {MAX_TOKENS}"),
    (lambda: attention_walk("hi", d_model=0), "d_model"),
    (lambda: attention_walk("hi", heads=0), "heads"),
    (lambda: multi_head_attention(torch.randn(4, 6), *layer(6), 4), "do not divide"),
    (lambda: multi_head_attention(torch.randn(4, 6), *layer(8), 2), "must be a 6 x 6 matrix"),
    (lambda: multi_head_attention(torch.randn(0, 6), *layer(6), 2), "at least one token"),
    (lambda: sinusoidal_positions(0, 4), "at least 1"),
    (lambda: sinusoidal_positions(4, 0), "at least 1"),
])
def test_bad_inputs_say_what_is_wrong(call, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


def test_tokens_are_words_and_punctuation():
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert len(tokenize(" ".join(["a"] * MAX_TOKENS))) == MAX_TOKENS


def test_parts_keep_their_documented_shapes():
    parts = attention_parts(torch.randn(2, 5, 12), *layer(12), heads=3, causal=False)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "q": (2, 5, 12), "k": (2, 5, 12), "v": (2, 5, 12), "q_heads": (2, 3, 5, 4), "k_heads": (2, 3, 5, 4),
        "v_heads": (2, 3, 5, 4), "scores": (2, 3, 5, 5), "scaled": (2, 3, 5, 5), "masked": (2, 3, 5, 5),
        "weights": (2, 3, 5, 5), "heads_out": (2, 3, 5, 4), "concat": (2, 5, 12), "out": (2, 5, 12)}


# -- the page -----------------------------------------------------------------------------------------------
def captions(at: AppTest) -> str:
    return " | ".join(c.value for c in at.caption)


def run_page(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_walks_through_a_sentence_and_follows_the_settings():
    at = run_page(AppTest.from_file(PAGE, default_timeout=120))
    assert at.title[0].value == "Self-attention from scratch"
    default = tokenize(at.text_input(key="scratch_sentence").value)
    T, d, h = len(default), at.number_input(key="scratch_d_model").value, at.number_input(key="scratch_heads").value
    shown = captions(at)
    assert f"shape {T} × {d}" in shown and f"shape {T} × {T}" in shown and f"shape {T} × {d // h}" in shown
    assert len(at.get("plotly_chart")) >= 10  # the sinusoids, the PE heatmap and the matrices

    at.text_input(key="scratch_sentence").set_value("the quick brown fox jumps over the lazy dog")
    at.number_input(key="scratch_heads").set_value(4)
    at.toggle(key="scratch_causal").set_value(True)
    run_page(at)
    shown = captions(at)
    assert "shape 9 × 9" in shown and f"shape 9 × {d // 4}" in shown and f"shape 9 × {d}" in shown
    assert "masked, head 1" in shown
    assert f"shape {T} × {T}" not in shown  # the old sentence is gone
    assert not at.error

    at.number_input(key="scratch_heads").set_value(3)  # 3 does not divide the default width
    run_page(at)
    assert at.error and "do not divide" in at.error[0].value
    assert "Error" not in at.error[0].value

    at.number_input(key="scratch_heads").set_value(2)
    at.text_input(key="scratch_sentence").set_value("  ")
    run_page(at)
    assert at.error and "no words" in at.error[0].value
