"""How long the attention explorer takes on a 512-token input: computing the record, then building each
view (plotly figure + its JSON, which is what the browser receives) and each PNG export.

    python -m benchmarks.attention_speed                      # GPT-2 small's shape (12 x 12 heads), random weights
    python -m benchmarks.attention_speed --source path/or/id  # any transformers folder (or hub id when online)
    python -m benchmarks.attention_speed --gpt NAME           # a lab GPT checkpoint (model.attention_record)

The default model is built from GPT-2 small's config (12 layers, 12 heads, 768 wide) with random weights,
saved to a temp folder and loaded through the explorer's own loader: nothing is downloaded, and the
timings depend on the shape, not on the weights. Run it with ``-m`` from the repository root: run by
its path, this folder's transformers.py would stand in for the transformers package. ``measure``
returns the figures as a dict; the lead's transformers benchmark folds them into benchmarks/transformers.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

import genlib
from genlib.families.transformers.attention import AttentionRecord, hf_attention_record, load_hf_attention_model
from genlib.families.transformers.attention_views import (figure_html, head_view, head_view_png, model_view,
                                                          model_view_png, neuron_view, neuron_view_png)

CORPUS_LINE = "The attention explorer draws every layer and head of a transformer, for any model, offline. "


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def gpt2_small_folder(folder: Path) -> Path:
    """A GPT-2-small-shaped model with random weights and a byte-level BPE trained on a few lines, saved
    to ``folder`` with safetensors."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([CORPUS_LINE] * 8, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(folder))
    tokenizer = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def measure_record(record: AttentionRecord, compute_s: float) -> dict[str, float]:
    """Seconds to build each view (figure + JSON) and each PNG, and the figures' JSON sizes, for ``record``
    (the page shows the whole record here: all layers, all heads, the full window)."""
    layer, head, query = record.layer_ids[-1], record.head_ids[0], record.n_tokens - 1
    out: dict[str, float] = {"tokens": record.n_tokens, "layers": record.n_layers, "heads": record.n_heads,
                             "record_s": compute_s}
    views = {"head_view": lambda: head_view(record, layer), "model_view": lambda: model_view(record),
             "neuron_view": lambda: neuron_view(record, layer, head, query)}
    for name, build in views.items():
        (fig, built) = _timed(build)
        payload, serialised = _timed(fig.to_json)
        out[f"{name}_s"] = built + serialised
        out[f"{name}_kb"] = len(payload) / 1024
    pngs = {"head_view_png": lambda: head_view_png(record, layer), "model_view_png": lambda: model_view_png(record),
            "neuron_view_png": lambda: neuron_view_png(record, layer, head, query)}
    for name, draw in pngs.items():
        out[f"{name}_s"] = _timed(draw)[1]
    out["html_export_s"] = _timed(lambda: figure_html(model_view(record)))[1]
    out["total_draw_s"] = out["head_view_s"] + out["model_view_s"] + out["neuron_view_s"]
    return out


def measure(model, tokenizer, n_tokens: int = 512) -> dict[str, float]:
    """Time a ``n_tokens`` record of a Hugging Face model and then its views (``measure_record``)."""
    text = CORPUS_LINE * (4 * n_tokens // len(CORPUS_LINE.split()) + 1)
    record, compute_s = _timed(lambda: hf_attention_record(model, tokenizer, text, max_tokens=n_tokens))
    return measure_record(record, compute_s)


def table(results: dict[str, float], model_name: str) -> str:
    """The figures as a markdown table."""
    rows = [f"| {key} | {value:,.3f} |" if isinstance(value, float) else f"| {key} | {value} |"
            for key, value in results.items()]
    return "\n".join([f"Attention explorer on {model_name}", "", "| measure | value |", "|---|---|", *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a transformers folder or hub id (default: GPT-2 small's shape, random)")
    parser.add_argument("--gpt", help="a lab GPT checkpoint name or folder")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.gpt:
        model, info = genlib.load_model(args.gpt)
        text = CORPUS_LINE * (args.tokens // len(CORPUS_LINE) + 2)
        record, compute_s = _timed(lambda: model.attention_record(text[: args.tokens]))
        results, name = measure_record(record, compute_s), info.name
    elif args.source:
        model, tokenizer = load_hf_attention_model(args.source)
        results, name = measure(model, tokenizer, args.tokens), args.source
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model, tokenizer = load_hf_attention_model(str(gpt2_small_folder(Path(tmp))))
        results, name = measure(model, tokenizer, args.tokens), "GPT-2 small shape (random weights)"
    print(json.dumps(results, indent=2) if args.json else table(results, name))


if __name__ == "__main__":
    main()
