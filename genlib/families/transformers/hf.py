"""Any Hugging Face causal language model (GPT-2, Llama, ...), loaded with transformers and driven by the
same generation controls as the lab's own GPT.

    prompt --tokenizer--> ids (N,T) --lm(ids, cache)--> logits (N,V) of the next token
        --generation (temperature, top-k, top-p, seed)--> one token per row --> append --> repeat

Nothing is trained here: a model comes from a transformers folder (``config.json`` whose
``architectures`` end in ``ForCausalLM`` or ``LMHeadModel``, safetensors weights, tokenizer files) or a
hub id, through ``genlib.load_model``. Weights load from safetensors only, never with remote code, and
with eager attention so the attention explorer gets every head's weights. Saved by genlib, the
transformers folder goes in ``transformers/`` beside genlib's own config.json (both files are called
config.json), so ``AutoModelForCausalLM.from_pretrained(run, subfolder="transformers")`` reads it too.

``next_logits`` keeps the key/value cache of the previous call (per thread: a cached model is shared by
the app's sessions) and feeds only the new tokens when the ids extend that call's; any other ids get a
fresh forward pass. The held-out metrics are bits per token and per character, perplexity per token
and generation tokens per second, on the same held-out 10% of the corpus as the lab's GPT.
"""
from __future__ import annotations

import inspect
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers  # a lazy module: the model classes are imported when a model is loaded
from safetensors import SafetensorError
from torch import Tensor

from genlib.checkpoints import PICKLE_SUFFIXES, CheckpointError
from genlib.config import setting
from genlib.text_data import text_split
from genlib.families.transformers.attention import AttentionRecord, hf_attention_record
from genlib.families.transformers.generation import MAX_PROMPT_CHARS, sample_ids
from genlib.families.transformers.gpt import GPTSampling
from genlib.model import DataKind, GenerativeModel, ModelConfig, SamplingCallback, StepOutput
from genlib.registry import register

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")   # transformers' names of causal LM classes
SUBFOLDER = "transformers"                         # where genlib saves the transformers folder
DEFAULT_CONTEXT = 1024        # when a config names no position table (rotary models: their trained length)
EVAL_CONTEXT = 1024           # the longest block scored at once when measuring the held-out loss
EVAL_TOKENS_PER_FORWARD = 1024  # logits (tokens, V) per forward pass: 200 MB for GPT-2's 50,257 tokens
SPEED_TOKENS = 128            # tokens generated (one row) to measure generation speed
MAX_VOCAB = 10_000_000
LN2 = math.log(2)

# The declared kind: text as some tokenizer's ids. A loaded model's own kind (``trained_data``) names its
# tokenizer and vocabulary size, so models are only compared per token with the same tokenizer.
HF_TEXT = DataKind("text (Hugging Face tokens)", (None,), None,
                   "text as a Hugging Face tokenizer's token ids (the loaded tokenizer's vocabulary); loaded, "
                   "not trained here", tokens=MAX_VOCAB)


@dataclass(frozen=True)
class HFCausalLMConfig(ModelConfig):
    """What a loaded model is, read from its transformers config.json; the weights' own config builds it."""

    architecture: str = setting("", "the transformers class of the weights (GPT2LMHeadModel, LlamaForCausalLM, ...)")
    model_type: str = setting("", "the transformers architecture name (gpt2, llama, ...)")
    vocab_size: int = setting(1, "token ids the model predicts", min=1, max=MAX_VOCAB)
    context: int = setting(DEFAULT_CONTEXT, "longest input in tokens (its position table)", min=1, max=MAX_VOCAB)


@dataclass(frozen=True)
class HFSampling(GPTSampling):
    """The lab GPT's controls (same names, defaults and limits), counted in the tokenizer's tokens."""

    max_new_tokens: int = setting(200, "tokens to generate after the prompt", min=1, max=4000)
    top_k: int = setting(0, "draw only from the k most likely tokens (0: off)", min=0, max=256)


def describe_architecture(meta: dict[str, Any]) -> str:
    """The first causal LM class among a transformers config's ``architectures``; "" when there is none."""
    archs = meta.get("architectures") or []
    return next((a for a in archs if isinstance(a, str) and a.endswith(CAUSAL_SUFFIXES)), "") \
        if isinstance(archs, list) else ""


def describe(meta: dict[str, Any]) -> dict[str, Any]:
    """An HFCausalLMConfig's settings from a transformers config.json; CheckpointError when it lacks them."""
    text = meta.get("text_config") if isinstance(meta.get("text_config"), dict) else {}
    vocab = meta.get("vocab_size", text.get("vocab_size"))
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise CheckpointError("its config.json gives no vocab_size, so the size of its output is unknown")
    context = next((v for v in (meta.get(k, text.get(k)) for k in ("n_positions", "max_position_embeddings"))
                    if isinstance(v, int) and not isinstance(v, bool) and v > 0), DEFAULT_CONTEXT)
    return {"architecture": describe_architecture(meta), "model_type": str(meta.get("model_type", "")),
            "vocab_size": vocab, "context": min(context, MAX_VOCAB)}


def weights_problem(folder: Path) -> str | None:
    """Why ``folder`` holds no loadable weights, in words (pickles are refused unopened); None when it does."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if any(name.endswith(".safetensors") for name in names):
        return None
    pickles = sorted(name for name in names if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        return (f"{folder} has only pickled weights ({', '.join(pickles)}); the lab loads safetensors only and "
                "never unpickles. Save the model again with save_pretrained(safe_serialization=True).")
    return f"{folder} has a causal LM's config.json but no .safetensors weights"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or ["no detail"])[0]


@register("hf-causal-lm")
class HFCausalLM(GenerativeModel):
    """A Hugging Face causal LM and its tokenizer, loaded from a transformers folder or a hub id."""

    Config = HFCausalLMConfig
    Sampling = HFSampling
    description = "any Hugging Face causal LM (GPT-2, Llama, ...) loaded with transformers: generate, measure, attend"
    group = "Transformers"
    page = "pages/text.py"
    data_kind = HF_TEXT
    own_checkpoint_layout = True
    trainable = False   # loaded, never built from settings or trained

    def __init__(self, config: HFCausalLMConfig, lm: Any = None, tokenizer: Any = None):
        """Wrap a loaded transformers causal LM ``lm`` and its ``tokenizer``; ``from_folder`` makes both."""
        super().__init__(config)
        if lm is None or tokenizer is None:
            raise ValueError("a Hugging Face causal LM is loaded, not built from settings: give genlib.load_model "
                             "a transformers folder or a hub id such as openai-community/gpt2")
        self.lm, self.tokenizer = lm, tokenizer
        params = inspect.signature(lm.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"   # transformers 5 renamed it
        self._kv = threading.local()   # (ids (N,T), cache) of this thread's last next_logits call

    # -- checkpoints: a transformers folder ------------------------------------------------------------------
    @classmethod
    def claim_folder(cls, folder: Path) -> dict[str, Any] | None:
        """The config of a transformers causal LM folder (no genlib ``family`` key); None if it is not one.
        CheckpointError for one it recognises but cannot load (pickled weights only, no vocab_size)."""
        path = Path(folder) / "config.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None   # the generic "not a checkpoint" message is the right one
        if not isinstance(meta, dict) or "family" in meta:
            return None
        if not describe_architecture(meta):
            return None
        problem = weights_problem(Path(folder))
        if problem:
            raise CheckpointError(problem)
        try:
            return describe(meta)
        except CheckpointError as err:
            raise CheckpointError(f"{folder} cannot be loaded as a causal LM: {err}") from None

    @classmethod
    def from_folder(cls, folder: Path, config: HFCausalLMConfig) -> "HFCausalLM":
        """Load the model (safetensors, eager attention, no remote code) and tokenizer from a transformers
        folder, or from the ``transformers/`` folder of one genlib saved."""
        folder = Path(folder)
        root = folder / SUBFOLDER if (folder / SUBFOLDER / "config.json").is_file() else folder
        problem = weights_problem(root)
        if problem:
            raise CheckpointError(problem)
        try:
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                str(root), attn_implementation="eager", use_safetensors=True, trust_remote_code=False,
                dtype=torch.float32)   # float16 weights (a Hub upload, a halved folder) compute in float32
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
            raise CheckpointError(f"transformers could not load the causal LM in {root}: {_first_line(err)}") from None
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(root), trust_remote_code=False)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{root} has a model but no usable tokenizer: {_first_line(err)}") from None
        found = HFCausalLMConfig.from_dict(describe(lm.config.to_dict()))
        if found != config:
            raise CheckpointError(f"{folder / 'config.json'} describes {config.to_dict()}, but the transformers "
                                  f"folder holds {found.to_dict()}")
        return cls(config, lm.eval(), tokenizer)

    def save_pretrained_files(self, folder: Path) -> None:
        """Write the transformers folder (config, safetensors weights, tokenizer files) into folder/transformers."""
        target = Path(folder) / SUBFOLDER
        self.lm.save_pretrained(str(target))   # safetensors: the default since transformers 4.35
        self.tokenizer.save_pretrained(str(target))
        pickles = [p.name for p in target.iterdir() if p.name.endswith(PICKLE_SUFFIXES)]
        if pickles or not any(p.suffix == ".safetensors" for p in target.iterdir()):
            raise CheckpointError(f"transformers wrote {', '.join(pickles) or 'no safetensors weights'}; "
                                  "the lab keeps safetensors only")

    # -- training: not here ------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Refused in words: Hugging Face causal LMs are loaded, not trained here."""
        raise ValueError(f"{self.config.architecture or 'this model'} is a Hugging Face causal LM: the lab loads "
                         "it to generate and measure, it does not train it")

    def trained_data(self) -> DataKind:
        """Text as this tokenizer's ids (0..vocab_size-1), with no offline training set."""
        return DataKind(f"text ({self.config.model_type or 'Hugging Face'} tokenizer, {self.config.vocab_size:,} "
                        "tokens)", (None,), None, f"text as the token ids of {type(self.tokenizer).__name__} "
                        f"({self.config.vocab_size:,} tokens); loaded, not trained here",
                        tokens=self.config.vocab_size)

    # -- text ----------------------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> Tensor:
        """The tokenizer's ids (T,) of ``text``, without special tokens (so decode_text gives ``text`` back)."""
        return torch.tensor(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"],
                            dtype=torch.long)

    def decode_text(self, ids: Tensor | list[int]) -> str:
        """The text of token ids (T,), special tokens included, spaces exactly as the tokens hold them."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def token_text(self, token: int) -> str:
        """How one token reads on its own ('Ġthe' reads ' the'); one that is not whole text alone (half a
        UTF-8 character) shows the tokenizer's own name for it."""
        text = self.decode_text([int(token)])
        return text if text and "\ufffd" not in text else str(self.tokenizer.convert_ids_to_tokens(int(token)))

    def prompt_ids(self, prompt: str, n: int) -> Tensor:
        """The prompt's ids (with the tokenizer's usual special tokens, a BOS for Llama) for ``n`` rows (n,T)."""
        if not prompt:
            raise ValueError("the prompt is empty; give at least one character (a newline starts a fresh text)")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
        ids = self.tokenizer(prompt, verbose=False)["input_ids"]
        if not ids:
            raise ValueError("the tokenizer turned the prompt into no tokens; type some other text")
        return torch.tensor(ids, dtype=torch.long, device=self.device).repeat(n, 1)

    # -- generation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def next_logits(self, ids: Tensor) -> Tensor:
        """Logits (N,V) of the token after each row of ids (N,T), seeing at most the last ``context`` tokens.

        When ids extend this thread's previous call's ids, only the new tokens go through the model, with
        the key/value cache of that call; otherwise (another prompt, rows, or past the context) a fresh pass."""
        ids = ids.to(self.device)
        context = self.config.context
        if ids.shape[1] > context:   # positions past the table: the last `context` tokens, no cache
            self.clear_cache()
            return self.lm(input_ids=ids[:, -context:], use_cache=False).logits[:, -1].float()
        last = getattr(self._kv, "state", None)
        if last is not None:
            seen, cache = last
            t = seen.shape[1]
            if seen.shape[0] == ids.shape[0] and ids.shape[1] > t and torch.equal(ids[:, :t], seen):
                out = self.lm(input_ids=ids[:, t:], use_cache=True, **{self._cache_arg: cache})
                self._kv.state = (ids.clone(), out[self._cache_arg])
                return out.logits[:, -1].float()
        out = self.lm(input_ids=ids, use_cache=True)
        self._kv.state = (ids.clone(), out[self._cache_arg])
        return out.logits[:, -1].float()

    def clear_cache(self) -> None:
        """Drop this thread's key/value cache (``sample`` does when it ends)."""
        self._kv.state = None

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, prompt: str = "\n", max_new_tokens: int = 200,
               temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95) -> Tensor:
        """``n`` continuations of ``prompt``: token ids (n, prompt tokens + max_new_tokens), prompt first.

        The callback gets each step's ids so far, padded with zeros to the final length."""
        ids = self.prompt_ids(prompt, n)
        self.clear_cache()
        try:
            return sample_ids(self.next_logits, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                              top_p=top_p, generator=generator, callback=callback)
        finally:
            self.clear_cache()

    # -- measures ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def nats_per_token(self, ids: list[int] | Tensor, block: int | None = None) -> float:
        """Mean next-token cross-entropy (nats) over token ids, in non-overlapping blocks of ``block`` + 1
        tokens (default the context, at most EVAL_CONTEXT), each token predicted from those before it in its block."""
        block = block or min(self.config.context, EVAL_CONTEXT)
        t = torch.as_tensor(ids, dtype=torch.long)
        n = (len(t) - 1) // block
        if n < 1:
            raise ValueError(f"the text is {len(t)} tokens; measuring needs more than {block}")
        x = t[: n * block].view(n, block)            # (n, block) inputs
        y = t[1: n * block + 1].view(n, block)       # (n, block) the token after each input
        rows = max(1, EVAL_TOKENS_PER_FORWARD // block)
        total = 0.0
        for i in range(0, n, rows):
            logits = self.lm(input_ids=x[i:i + rows].to(self.device), use_cache=False).logits   # (rows, block, V)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y[i:i + rows].flatten().to(self.device),
                                     reduction="sum").item()
        return total / (n * block)

    def held_out_metrics(self) -> dict[str, Any]:
        """Bits per token and per character, perplexity per token, generation speed: the lab GPT's keys where
        they mean the same (val_loss is nats per token here, per byte there), on the same held-out 10%."""
        was = self.training
        self.eval()
        held_out = text_split()[1]
        text = held_out.decode("utf-8", "ignore")
        ids = self.encode_text(text)
        block = min(self.config.context, EVAL_CONTEXT)
        nats = self.nats_per_token(ids, block)
        speed_tokens = max(1, min(SPEED_TOKENS, self.config.context - len(self.prompt_ids("\n", 1)[0])))
        start = time.perf_counter()
        self.sample(1, generator=torch.Generator().manual_seed(0), max_new_tokens=speed_tokens)
        speed = speed_tokens / (time.perf_counter() - start)
        self.train(was)
        return {"val_loss": round(nats, 4), "bits_per_token": round(nats / LN2, 4),
                "bits_per_char": round(nats * len(ids) / len(text) / LN2, 4), "perplexity": round(math.exp(nats), 3),
                "generation_tokens_per_s": round(speed, 1), "eval_context": block,
                "held_out": f"the last 10% of the Python documentation topics ({len(held_out):,} bytes, "
                            f"{len(ids):,} tokens of this tokenizer)"}

    @torch.no_grad()
    def attention_record(self, text: str) -> AttentionRecord:
        """Every layer's attention (and GPT-2's per-head queries and keys) on ``text``, for the explorer."""
        return hf_attention_record(self.lm, self.tokenizer, text)

