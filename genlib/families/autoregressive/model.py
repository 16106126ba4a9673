"""Autoregressive image models on 28x28 digits: a Gated PixelCNN and a Row-LSTM PixelRNN.

Both factor the likelihood exactly, pixel by pixel in raster order:

    p(x) = prod_{i,j} p(x_ij | every pixel before (i, j))

so -log p(x) is a sum of per-pixel cross-entropies: exact, with no bound and no estimate. Each model
works on one of the lab's two likelihood benchmarks (``genlib.likelihood``), set by ``data``:

- "binarized": x in {0,1}, one Bernoulli logit per pixel; trained on digits binarized afresh each
  batch, scored on the fixed binarized test digits, in nats per image.
- "8-bit": x in {0,...,255}/255, a 256-way softmax per pixel; scored in bits/dim.

Sampling draws one pixel at a time, 784 network passes per image. Because the output at row i depends
only on rows <= i, each pass runs on the rows drawn so far, not the whole image (``_logits(x, rows)``),
about halving the cost. A ``callback`` gets every finished row, which the page animates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import setting
from genlib.families.autoregressive.layers import GatedBlock, MaskedConv2d, RowLSTM
from genlib.likelihood import BINARIZED, EIGHT_BIT, LEVELS
from genlib.model import GenerativeModel, ModelConfig, SamplingCallback, SamplingStep, StepOutput
from genlib.registry import register

LOG2 = math.log(2.0)
SIDE = 28
DATA = (BINARIZED.key, EIGHT_BIT.key)


@dataclass(frozen=True)
class AutoregressiveConfig(ModelConfig):
    """Settings both models share: the data they model and their width."""

    data: str = setting("binarized", "binarized digits (a Bernoulli per pixel) or 8-bit ones (a 256-way softmax)",
                        choices=DATA)
    channels: int = setting(64, "feature channels of every layer", min=4, max=512)


@dataclass(frozen=True)
class PixelCNNConfig(AutoregressiveConfig):
    """pixelcnn: gated layers and their kernel."""

    layers: int = setting(8, "gated layers", min=1, max=30)
    kernel: int = setting(5, "kernel size of the gated layers (odd)", min=3, max=9, step=2)


@dataclass(frozen=True)
class PixelRNNConfig(AutoregressiveConfig):
    """pixelrnn: Row LSTM layers."""

    channels: int = setting(32, "feature channels of the first layer and hidden units of each Row LSTM", min=4,
                            max=256)
    layers: int = setting(2, "Row LSTM layers", min=1, max=8)


class AutoregressiveModel(GenerativeModel):
    """Base of the pixel-by-pixel models: the output head, the exact likelihood, raster-order sampling.
    Subclasses write ``features(x)``: (B,C,H,W) features where position (i, j) saw only earlier pixels."""

    Config = AutoregressiveConfig
    group = "Autoregressive"
    page = "pages/autoregressive.py"
    likelihood = "exact"

    def __init__(self, config: AutoregressiveConfig):
        super().__init__(config)
        outputs = 1 if config.data == BINARIZED.key else LEVELS
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(config.channels, config.channels, 1), nn.ReLU(),
                                  nn.Conv2d(config.channels, outputs, 1))

    @property
    def binary(self) -> bool:
        """True when the model works on binarized digits."""
        return self.config.data == BINARIZED.key

    def likelihood_benchmark(self) -> str:
        """The benchmark of its ``data``."""
        return self.config.data

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover - every model overrides
        """Causal features (B,C,H,W) of x (B,1,H,W)."""
        raise NotImplementedError

    def _input(self, x: Tensor) -> Tensor:
        """What the network sees: bits as they are, grey levels centred on 0."""
        return x if self.binary else x * 2 - 1

    def logits(self, x: Tensor) -> Tensor:
        """Per-pixel logits: (B,1,H,W) of p(x_ij = 1) for bits, (B,256,H,W) over grey levels for 8-bit."""
        return self.head(self.features(self._input(x)))

    def target(self, x: Tensor) -> Tensor:
        """x as the training target: bits, or grey-level indices 0..255 (B,H,W)."""
        return x if self.binary else torch.round(x.clamp(0, 1) * (LEVELS - 1)).long().squeeze(1)

    def nll_nats(self, x: Tensor) -> Tensor:
        """-ln p(x) (B,) of data x (B,1,28,28): bits for a binarized model, the 8-bit grid for the other."""
        logits = self.logits(x)
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        return F.cross_entropy(logits, self.target(x), reduction="none").flatten(1).sum(1)

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Maximum likelihood; a binarized model sees the digits binarized afresh every batch."""
        x = batch[0]
        x = torch.bernoulli(x) if self.binary else x
        nats = self.nll_nats(x).mean()
        scalars = {"loss": nats.item()}
        scalars["nats" if self.binary else "bits_per_dim"] = nats.item() if self.binary else \
            nats.item() / (x[0].numel() * LOG2)
        return StepOutput(nats, scalars)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """The exact -log2 p(x) / 784 (B,) of x: bits in {0,1} (binarized) or levels k/255 (8-bit)."""
        return self.nll_nats(x) / (x[0].numel() * LOG2)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, max_rows: int = SIDE) -> Tensor:
        """``n`` digits (N,1,28,28) drawn pixel by pixel in raster order; ``callback`` gets each finished
        row (the image so far). ``max_rows`` < 28 stops early, leaving the rest black (a preview)."""
        self.check_labels(labels, n)
        x = torch.zeros(n, 1, SIDE, SIDE, device=self.device)
        rows = min(max(1, max_rows), SIDE)
        for i in range(rows):
            for j in range(SIDE):
                logits = self.head(self.features(self._input(x[:, :, :i + 1])))[:, :, i, j]   # (N,1) or (N,256)
                x[:, 0, i, j] = self._draw(logits, generator)
            if callback is not None:
                callback(SamplingStep(i, SIDE, x.clone(), x.clone()))
        return x

    def _draw(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """One pixel for each of N images from its logits (N,1) or (N,256): a bit, or a level k/255."""
        n = logits.shape[0]
        if self.binary:
            u = torch.rand((n,), generator=generator).to(logits.device)
            return (u < torch.sigmoid(logits[:, 0])).float()
        probs = torch.softmax(logits.float(), dim=1).cpu()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device).float() / (LEVELS - 1)


@register("pixelcnn")
class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN: vertical and horizontal stacks (no blind spot), mask A first, then B."""

    Config = PixelCNNConfig
    description = "Gated PixelCNN: vertical and horizontal stacks, no blind spot"
    tiny_config = {"channels": 8, "layers": 2, "kernel": 3}

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        c = config.channels
        self.embed = nn.Conv2d(1, c, 1)
        self.blocks = nn.ModuleList(GatedBlock(c, config.kernel if i else 7, first=i == 0)
                                    for i in range(config.layers))

    def features(self, x: Tensor) -> Tensor:
        """The horizontal stack's output after every gated layer: (B,C,H,W)."""
        v = h = self.embed(x)
        for block in self.blocks:
            v, h = block(v, h)
        return h

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, max_rows: int = SIDE) -> Tensor:
        """As ``AutoregressiveModel.sample``, with the same draws, about 20x faster. The vertical stack's row i
        sees only rows < i, so it runs once per row; then each pixel of row i needs only the horizontal
        stack over that one row, fed the vertical stack's row i."""
        self.check_labels(labels, n)
        x = torch.zeros(n, 1, SIDE, SIDE, device=self.device)
        for i in range(min(max(1, max_rows), SIDE)):
            v = self.embed(self._input(x[:, :, :i + 1]))
            rows_v = []
            for block in self.blocks:
                v_pre, v = block.vertical_step(v)
                rows_v.append(v_pre[:, :, i:i + 1])                            # (N,2C,1,W)
            for j in range(SIDE):
                h = self.embed(self._input(x[:, :, i:i + 1]))                 # (N,C,1,W)
                for block, v_pre in zip(self.blocks, rows_v):
                    h = block.horizontal_step(h, v_pre)
                x[:, 0, i, j] = self._draw(self.head(h)[:, :, 0, j], generator)
            if callback is not None:
                callback(SamplingStep(i, SIDE, x.clone(), x.clone()))
        return x


@register("pixelrnn")
class RowLSTMPixelRNN(AutoregressiveModel):
    """PixelRNN with Row LSTM layers: a 7x7 mask-A convolution, then LSTMs that run down the rows."""

    Config = PixelRNNConfig
    description = "PixelRNN (Row LSTM): one LSTM step per row, a triangular receptive field"
    tiny_config = {"channels": 8, "layers": 1}

    def __init__(self, config: PixelRNNConfig):
        super().__init__(config)
        c = config.channels
        self.first = MaskedConv2d("A", 1, c, 7)
        self.rows = nn.ModuleList(RowLSTM(c, c) for _ in range(config.layers))
        self.skip = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(config.layers))

    def features(self, x: Tensor) -> Tensor:
        """Residual Row LSTM layers over the mask-A features: (B,C,H,W)."""
        h = self.first(x)
        for lstm, skip in zip(self.rows, self.skip):
            h = h + skip(lstm(h))
        return h

    def _row_features(self, x: Tensor, i: int, states: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list]:
        """Features (N,C,W) of row i alone, from the LSTM states of row i-1, and the states of row i."""
        reach = self.first.kernel_size[0] // 2                                # the 7x7 conv sees 3 rows up
        rows = self.first(x[:, :, max(0, i - reach):i + 1])[:, :, -1]       # (N,C,W), row i's mask-A features
        new_states = []
        for lstm, skip, (h, c) in zip(self.rows, self.skip, states):
            h, c = lstm.step(rows, h, c)
            new_states.append((h, c))
            rows = rows + skip(h.unsqueeze(2)).squeeze(2)
        return rows, new_states

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, max_rows: int = SIDE) -> Tensor:
        """As ``AutoregressiveModel.sample``, with the same draws, many times faster: the LSTM states of the
        rows above are kept, so each pixel costs one LSTM step per layer on its own row, not one per row."""
        self.check_labels(labels, n)
        x = torch.zeros(n, 1, SIDE, SIDE, device=self.device)
        states = [lstm.initial_state(n, SIDE, x) for lstm in self.rows]
        for i in range(min(max(1, max_rows), SIDE)):
            inp = self._input(x)
            for j in range(SIDE):
                rows, _ = self._row_features(inp, i, states)
                x[:, 0, i, j] = self._draw(self.head(rows.unsqueeze(2))[:, :, 0, j], generator)
                inp = self._input(x)
            _, states = self._row_features(inp, i, states)                   # row i finished: its states
            if callback is not None:
                callback(SamplingStep(i, SIDE, x.clone(), x.clone()))
        return x


class MaskedStack(nn.Module):
    """The original PixelCNN's stack of masked convolutions (a 7x7 mask A, then 3x3 mask B), with tanh
    between them: the stack whose receptive field has the blind spot. Untrained; only its shape matters."""

    def __init__(self, layers: int, channels: int = 8, kernel: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv2d("A", 1, channels, 7)] +
                                   [MaskedConv2d("B", channels, channels, kernel) for _ in range(layers - 1)])

    def forward(self, x: Tensor) -> Tensor:
        """Features (B,C,H,W) of x (B,1,H,W)."""
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return x


def receptive_field(output: Callable[[Tensor], Tensor], row: int, col: int) -> Tensor:
    """(28,28) bool: the input pixels that change ``output(x)`` at (row, col), from the gradient of that
    output with respect to a random input. Raster order allows only pixels before (row, col).
    ``output`` maps (1,1,28,28) to (1,C,28,28): a model's ``logits`` or a ``MaskedStack``."""
    x = torch.rand(1, 1, SIDE, SIDE, requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(output(x)[0, :, row, col].sum(), x)
    return grad[0, 0].abs() > 0
