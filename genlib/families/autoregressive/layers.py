"""The layers of the autoregressive image models, written out so their causality can be read and checked.

Pixels are generated in raster order (row by row, left to right), so the output at pixel (i, j) may
depend only on pixels before it: rows above, and the pixels to its left in its own row.

- ``MaskedConv2d``: the original PixelCNN's convolution (van den Oord et al., 2016a). Its kernel is
  zeroed at and after the centre: mask "A" also hides the centre pixel (first layer), mask "B" lets a
  layer see its own position in the layer below. Stacking them leaves a **blind spot**: pixels above
  and to the right of the receptive field's edge are never seen.
- ``GatedBlock``: Gated PixelCNN (van den Oord et al., 2016b). A vertical stack sees every pixel of the
  rows above (a (k//2+1) x k convolution, shifted down), a horizontal stack the pixels to the left in
  the row (a 1 x (k//2+1) convolution) plus the vertical stack's view, so there is no blind spot. Each
  stack uses the gated unit tanh(f) * sigmoid(g), and the horizontal stack is residual.
- ``RowLSTM``: PixelRNN's Row LSTM (van den Oord et al., 2016a): one LSTM step per row, its state for
  row i from a 1 x 3 convolution of row i-1's state and a masked 1 x 3 convolution of row i's input.
  Its receptive field is a triangle above the pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution that sees only pixels before the centre in raster order (mask "A") or also
    the centre (mask "B")."""

    def __init__(self, mask: str, in_channels: int, out_channels: int, kernel: int):
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', not {mask!r}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        centre = kernel // 2
        m = torch.ones(kernel, kernel)
        m[centre, centre + (mask == "B"):] = 0   # the centre row: the centre (mask A) and everything right of it
        m[centre + 1:] = 0                        # every row below the centre
        self.register_buffer("mask", m.view(1, 1, kernel, kernel), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """The masked convolution of x (B,C,H,W), same size out."""
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def gate(x: Tensor) -> Tensor:
    """tanh(f) * sigmoid(g) for x = (f, g) split along channels: (B,2C,H,W) -> (B,C,H,W)."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedBlock(nn.Module):
    """One Gated PixelCNN layer: (vertical, horizontal) stacks in, the same out.

    The vertical convolution covers rows i - k//2 .. i of the padded input for output row i; with
    ``first`` its last kernel row is zeroed, so vertical output row i sees only rows < i, and so does
    every later layer (they see the previous layer's rows <= i, which saw rows < i). The horizontal
    convolution covers columns j - k//2 .. j; with ``first`` its last column is zeroed, so the first
    layer does not see the pixel it predicts (mask A).
    """

    def __init__(self, channels: int, kernel: int, first: bool = False):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the kernel must be odd, got {kernel}")
        self.first, self.k = first, kernel
        self.vertical = nn.Conv2d(channels, 2 * channels, (kernel // 2 + 1, kernel), padding=(kernel // 2, kernel // 2))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, kernel // 2 + 1), padding=(0, kernel // 2))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)

    def _weights(self) -> tuple[Tensor, Tensor]:
        wv, wh = self.vertical.weight, self.horizontal.weight
        if self.first:  # mask A: the vertical stack skips row i, the horizontal one pixel j
            wv = wv * torch.ones_like(wv).index_fill_(2, torch.tensor([wv.shape[2] - 1], device=wv.device), 0)
            wh = wh * torch.ones_like(wh).index_fill_(3, torch.tensor([wh.shape[3] - 1], device=wh.device), 0)
        return wv, wh

    def vertical_step(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(pre-activation (B,2C,H,W), output (B,C,H,W)) of the vertical stack; row i sees rows < i only."""
        wv, _ = self._weights()
        v_pre = F.conv2d(v, wv, self.vertical.bias, padding=self.vertical.padding)[:, :, :v.shape[2]]
        return v_pre, gate(v_pre)

    def horizontal_step(self, h: Tensor, v_pre: Tensor) -> Tensor:
        """The horizontal stack's output (B,C,H,W) from its input h and the vertical pre-activation of the
        same rows (B,2C,H,W). It works row by row, so it runs as well on a single row (H = 1)."""
        _, wh = self._weights()
        h_pre = F.conv2d(h, wh, self.horizontal.bias, padding=self.horizontal.padding)[:, :, :, :h.shape[3]]
        h_out = self.horizontal_out(gate(h_pre + self.vertical_to_horizontal(v_pre)))
        return h_out if self.first else h_out + h

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(vertical (B,C,H,W), horizontal (B,C,H,W)) of the next layer."""
        v_pre, v_out = self.vertical_step(v)
        return v_out, self.horizontal_step(h, v_pre)


class RowLSTM(nn.Module):
    """PixelRNN's Row LSTM over (B,C,H,W): row by row, its input-to-state a masked 1 x 3 convolution of
    the row (mask B: the pixel itself and those left of it, in the layer below) and its state-to-state a
    1 x 3 convolution of the previous row's hidden state. Returns the hidden states (B,hidden,H,W)."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = nn.Conv1d(in_channels, 4 * hidden, 3, padding=1)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)
        mask = torch.ones(1, 1, 3)
        mask[..., 2] = 0   # never the pixel to the right
        self.register_buffer("mask", mask, persistent=False)

    def step(self, row: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One row: (h, c) (B,hidden,W) of row i from its input (B,C,W) and row i-1's (h, c)."""
        gates = F.conv1d(row, self.input_to_state.weight * self.mask, self.input_to_state.bias, padding=1) \
            + self.state_to_state(h)                                       # (B,4h,W)
        ig, fg, og, cand = gates.chunk(4, dim=1)
        c = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(cand)
        return torch.sigmoid(og) * torch.tanh(c), c

    def initial_state(self, batch: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(h, c) zeros (B,hidden,W): the state above the first row."""
        zeros = like.new_zeros(batch, self.hidden, width)
        return zeros, zeros

    def forward(self, x: Tensor) -> Tensor:
        """Hidden states (B,hidden,H,W) for inputs x (B,C,H,W); row i's state depends on rows <= i."""
        h, c = self.initial_state(x.shape[0], x.shape[3], x)
        out = []
        for i in range(x.shape[2]):
            h, c = self.step(x[:, :, i], h, c)
            out.append(h)
        return torch.stack(out, dim=2)                                     # (B,hidden,H,W)
