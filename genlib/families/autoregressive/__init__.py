"""Autoregressive image models: a Gated PixelCNN and a Row-LSTM PixelRNN (``model.py``; their causal
layers in ``layers.py``), each with an exact likelihood on binarized or 8-bit digits and pixel-by-pixel
sampling."""
from genlib.families.autoregressive.layers import GatedBlock, MaskedConv2d, RowLSTM, gate
from genlib.families.autoregressive.model import (AutoregressiveConfig, AutoregressiveModel, GatedPixelCNN,
                                                  MaskedStack, PixelCNNConfig, PixelRNNConfig, RowLSTMPixelRNN,
                                                  receptive_field)

__all__ = ["AutoregressiveConfig", "AutoregressiveModel", "GatedBlock", "GatedPixelCNN", "MaskedConv2d", "MaskedStack",
           "PixelCNNConfig", "PixelRNNConfig", "RowLSTM", "RowLSTMPixelRNN", "gate", "receptive_field"]
