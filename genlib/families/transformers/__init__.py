"""Transformers: the lab's own byte-level GPT (``gpt``), text generation for it and for any Hugging Face
causal LM (``generation``, ``hf``), the attention explorer for any model (``attention``,
``attention_views``), self-attention written out step by step (``scratch``), an encoder fine-tuned for
text classification (``encoder``) and a Vision Transformer on the digits with attention rollout (``vit``).
"""
from genlib.families.transformers import generation, hf
from genlib.families.transformers.encoder_cli import ENCODER_COMMANDS
from genlib.families.transformers.vit_cli import VIT_COMMANDS
from genlib.families.transformers.gpt import GPT, GPTConfig, GPTSampling, heldout_nats_per_byte

COMMANDS = (*ENCODER_COMMANDS, *VIT_COMMANDS)

__all__ = ["COMMANDS", "GPT", "GPTConfig", "GPTSampling", "generation", "heldout_nats_per_byte", "hf"]
