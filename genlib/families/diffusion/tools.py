"""What a trained diffusion model can do besides sampling: edit images, bound their likelihood,
and show its attention. Functions take a ``genlib.families.diffusion.DiffusionModel``; the model's
methods of the same names call them.

Images are (N,C,H,W) in [0,1] at the edges, as everywhere in genlib; inside, x lives in [-1,1].
Nothing here changes the model: schedulers are fresh per call, attention is captured on a copy.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Sequence

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor
from torch import Tensor

from genlib.likelihood import discretized_gaussian_nll
from genlib.model import SamplingCallback, SamplingStep

if TYPE_CHECKING:
    from genlib.families.diffusion.model import DiffusionModel

MASK_KINDS = ("half", "box", "random")
LOG2 = math.log(2.0)


def to_model_range(images: Tensor) -> Tensor:
    """genlib images in [0,1] -> the model's range [-1,1] (same shape)."""
    return images * 2 - 1


def to_image_range(x: Tensor) -> Tensor:
    """Model-range tensors -> images clamped to [0,1] (same shape)."""
    return ((x + 1) / 2).clamp(0, 1)


def _noise(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Gaussian noise drawn on the CPU from ``generator`` (the same numbers on every device)."""
    return torch.randn(tuple(shape), generator=generator).to(device)


# -- masks and inpainting --------------------------------------------------------------------------------------
def make_mask(kind: str, shape: Sequence[int], generator: torch.Generator | None = None,
              fraction: float = 0.5) -> Tensor:
    """A float mask (N,1,H,W) for images of ``shape`` (N,C,H,W): 1 = known pixel, 0 = to fill.

    "half": the bottom half is missing; "box": a random square of side H/2 is missing;
    "random": each pixel is missing with probability ``fraction``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    n, _, h, w = shape
    mask = torch.ones(n, 1, h, w)
    if kind == "half":
        mask[:, :, h // 2:, :] = 0
    elif kind == "box":
        side_h, side_w = max(1, h // 2), max(1, w // 2)
        tops = torch.randint(0, h - side_h + 1, (n,), generator=generator)
        lefts = torch.randint(0, w - side_w + 1, (n,), generator=generator)
        for i in range(n):
            mask[i, :, tops[i]:tops[i] + side_h, lefts[i]:lefts[i] + side_w] = 0
    else:
        mask = (torch.rand(n, 1, h, w, generator=generator) >= fraction).float()
    return mask


@torch.no_grad()
def inpaint(model: DiffusionModel, x0: Tensor, mask: Tensor, steps: int | None = None,
            generator: torch.Generator | None = None, callback: SamplingCallback | None = None, *,
            labels: Tensor | None = None, jump_n: int = 1, guidance_scale: float | None = None) -> Tensor:
    """RePaint (Lugmayr et al. 2022) with DDPM steps: fill where ``mask`` (N,1,H,W) is 0.

    Each step denoises the whole image, then overwrites the known region with x0 noised afresh to
    the next step's level, so the model only ever invents the unknown part. With ``jump_n`` > 1 a
    step is repeated: the merged image is diffused one step back and denoised again, which lets the
    filled region agree with the known one (RePaint's resampling with jump length 1). Costs
    steps * jump_n UNet calls. Returns (N,C,H,W) in [0,1]; known pixels equal x0 exactly.
    """
    steps = model.config.sample_steps if steps is None else steps
    model.check_sampling("ddpm", steps, 0.0)
    if jump_n < 1:
        raise ValueError(f"jump_n must be at least 1, got {jump_n}")
    n, dev = x0.shape[0], model.device
    labels = model.check_labels(labels, n)
    scale = model.resolve_guidance(guidance_scale)
    x0, mask = x0.to(dev), mask.to(dev).float()
    known = to_model_range(x0)                                                       # (N,C,H,W) in [-1,1]
    abar = model.alphas_cumprod
    scheduler = model.make_scheduler("ddpm")
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    x = _noise(x0.shape, generator, dev)                                        # x_T
    for i, t in enumerate(timesteps):
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        for u in range(jump_n):
            out = model.predict(x, t, labels, scale)
            step = scheduler.step(out, t, x, generator=generator)
            if prev >= 0:  # the known region at the next step's noise level, from fresh noise
                a = abar[prev].to(dev)
                known_prev = a.sqrt() * known + (1 - a).sqrt() * _noise(x0.shape, generator, dev)
            else:
                known_prev = known
            merged = mask * known_prev + (1 - mask) * step.prev_sample
            if u < jump_n - 1:  # resample: diffuse merged from `prev` back to t and denoise again
                a = (abar[int(t)] / (abar[prev] if prev >= 0 else 1.0)).to(dev)
                x = a.sqrt() * merged + (1 - a).sqrt() * _noise(x0.shape, generator, dev)
        if callback is not None:
            callback(SamplingStep(i, len(timesteps), to_image_range(x), to_image_range(step.pred_original_sample),
                                  int(t)))
        x = merged
    return mask * x0 + (1 - mask) * to_image_range(x)


@torch.no_grad()
def sdedit(model: DiffusionModel, x0: Tensor, strength: float, steps: int | None = None,
           generator: torch.Generator | None = None, sampler: str = "ddim", *, labels: Tensor | None = None,
           callback: SamplingCallback | None = None, eta: float = 0.0,
           guidance_scale: float | None = None) -> Tensor:
    """SDEdit (Meng et al. 2022): noise x0 (N,C,H,W) in [0,1] part way and denoise it again.

    ``strength`` in [0,1] is the fraction of the ``steps`` sampler steps that are run: 0 returns
    x0, 1 starts from (almost) pure noise. Small strengths keep the layout, large ones only the
    rough shape. Returns (N,C,H,W) in [0,1].
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    steps = model.config.sample_steps if steps is None else steps
    model.check_sampling(sampler, steps, eta)
    n, dev = x0.shape[0], model.device
    labels = model.check_labels(labels, n)
    scale = model.resolve_guidance(guidance_scale)
    scheduler = model.make_scheduler(sampler)
    scheduler.set_timesteps(steps)
    start = steps - int(round(steps * strength))
    timesteps = scheduler.timesteps[start:]
    if len(timesteps) == 0:
        return x0.to(dev).clamp(0, 1)
    if hasattr(scheduler, "set_begin_index"):  # Euler / DPM-Solver index their sigmas from here
        scheduler.set_begin_index(start)
    noise = _noise(x0.shape, generator, dev)
    x = scheduler.add_noise(to_model_range(x0.to(dev)), noise, timesteps[:1].repeat(n))  # in the scheduler's own scale
    x = model.denoise_loop(x, scheduler, timesteps, labels=labels, guidance_scale=scale, callback=callback,
                           generator=generator, eta=eta)
    return to_image_range(x)


def denoise_from_noise_level(model: DiffusionModel, noisy: Tensor, sigma: float, steps: int = 20,
                             labels: Tensor | None = None) -> Tensor:
    """Denoise images (N,C,H,W) in [0,1] carrying Gaussian noise of ``sigma`` (0-1 scale) by running the
    reverse process from the timestep whose noise matches it (Kadkhodaie & Simoncelli's reading of a
    diffusion model as a denoiser at every level), with deterministic DDIM steps.

    In the model's [-1,1] range the noise is 2*sigma, and x_t / sqrt(abar_t) = x0 + sqrt((1-abar_t)/abar_t) eps,
    so the start is the t with sqrt((1-abar_t)/abar_t) closest to 2*sigma and x_t = sqrt(abar_t) * noisy.
    ``labels`` None on a class-conditional model uses its null class (the digit is unknown).
    """
    abar = model.alphas_cumprod.double()
    t_start = int(torch.argmin(((1 - abar) / abar).sqrt().sub(2 * float(sigma)).abs()))
    scheduler = model.make_scheduler("ddim")
    scheduler.set_timesteps(steps)
    stride = model.num_train_timesteps // steps
    scheduler.timesteps = torch.arange(t_start, -1, -max(1, stride))
    x = to_model_range(noisy.to(model.device)) * abar[t_start].sqrt().float().to(model.device)
    x = model.denoise_loop(x, scheduler, scheduler.timesteps, labels=labels, guidance_scale=1.0)
    return to_image_range(x)


# -- likelihood -------------------------------------------------------------------------------------------------
@torch.no_grad()
def bits_per_dim(model: DiffusionModel, x: Tensor, labels: Tensor | None = None,
                 generator: torch.Generator | None = None, num_timesteps: int = 2) -> Tensor:
    """The DDPM variational bound on -log2 p(x) per dimension (N,), for images x (N,C,H,W) in [0,1].

    Following Ho et al. (2020), with timestep index i = t-1 and fixed reverse variances beta~_i:

        L = KL(q(x_T|x0) || N(0,I))                                          prior, exact
          + sum_{i=1}^{T-1} KL(q(x_{i-1}|x_i,x0) || p(x_{i-1}|x_i))          denoising terms
          - log p(x0 | x_1)                                                  discretized Gaussian decoder

    Each denoising KL is c_i^2 ||x0 - x0_hat(x_i)||^2 / (2 beta~_i) with c_i = sqrt(abar_{i-1}) beta_i / (1-abar_i).
    Estimator: the T-1 denoising terms are split into ``num_timesteps`` strata with geometrically
    spaced edges (T=1000, 2 strata: 1..31 and 32..999), because a trained model's terms are largest
    at small t. Each image gets one uniformly drawn timestep per stratum, weighted by the stratum's
    size: an unbiased estimate of the sum from ``num_timesteps`` UNet calls per image, plus one for
    the decoder term. It is noisy per image and accurate on average over a test set (1,000 digits
    cost 3,000 calls of the default UNet, about 16 s on one CPU core). Pixels are read as 8-bit
    levels. Class-conditional models bound p(x | label), or p(x) with the null class when
    ``labels`` is None.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
    dev = model.device
    n, dims, T = x.shape[0], x[0].numel(), model.num_train_timesteps
    x0 = to_model_range(torch.round(x.to(dev).clamp(0, 1) * 255) / 255)                 # (N,C,H,W) on the 8-bit grid
    classes = model.check_labels(labels, n) if labels is not None else None
    betas, abar = model.betas.double(), model.alphas_cumprod.double()              # (T,)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    post_var = betas * (1 - abar_prev) / (1 - abar)                                # beta~, (T,); beta~_0 = 0
    coef_x0 = abar_prev.sqrt() * betas / (1 - abar)                                # c_i, (T,)

    def x0_hat(i: Tensor) -> Tensor:  # i (N,) timestep indices -> x0 prediction (N,C,H,W)
        noise = _noise(x0.shape, generator, dev)
        a = abar[i].float().to(dev).view(-1, 1, 1, 1)
        x_i = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return model.predict_x0(x_i, i, model.predict(x_i, i.to(dev), classes))

    # prior: KL(N(sqrt(abar_T) x0, 1-abar_T) || N(0,1)), summed over pixels
    a_T = abar[-1].float()
    prior = 0.5 * (a_T * x0.pow(2) + (1 - a_T) - 1 - torch.log(1 - a_T)).flatten(1).sum(1)
    # decoder at index 0: mean x0_hat(x_1), std sqrt(beta~_1) (beta~_0 = 0 is clipped, as in improved DDPM)
    zero = torch.zeros(n, dtype=torch.long)
    decoder = discretized_gaussian_nll(x0, x0_hat(zero), 0.5 * torch.log(post_var[1]).float(), low=-1.0, high=1.0)
    # denoising terms 1..T-1, stratified
    edges = torch.unique(torch.logspace(0, math.log10(T), num_timesteps + 1).round().long())  # 1 .. T
    middle = torch.zeros(n, device=dev)
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
        if hi <= lo:
            continue
        i = torch.randint(lo, hi, (n,), generator=generator)                       # (N,)
        sq_err = (x0 - x0_hat(i)).pow(2).flatten(1).sum(1)                          # (N,)
        kl = (coef_x0[i] ** 2 / (2 * post_var[i])).float().to(dev) * sq_err
        middle = middle + (hi - lo) * kl
    return (prior + decoder + middle) / (dims * LOG2)


# -- attention ---------------------------------------------------------------------------------------------------
class StoringAttnProcessor(AttnProcessor):
    """diffusers' plain AttnProcessor, written out, that also keeps its softmax probabilities.

    After each call, ``store[name]`` holds the probabilities (batch*heads, Q, K): Q = K = h*w
    tokens of the block's feature map (self-attention), each row summing to 1.
    """

    def __init__(self, name: str, store: dict[str, Tensor]):
        super().__init__()
        self.name, self.store = name, store

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, *args, **kwargs) -> Tensor:
        residual = hidden_states                                                   # (B,C,h,w)
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        is_map = hidden_states.ndim == 4
        if is_map:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)         # (B,h*w,C)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], context.shape[0])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
            if encoder_hidden_states is None:
                context = hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))                   # (B*heads,Q,d)
        key = attn.head_to_batch_dim(attn.to_k(context))                           # (B*heads,K,d)
        value = attn.head_to_batch_dim(attn.to_v(context))                         # (B*heads,K,d)
        probs = attn.get_attention_scores(query, key, attention_mask)              # (B*heads,Q,K)
        self.store[self.name] = probs.detach().float().cpu()
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))            # (B,Q,heads*d)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))              # linear, dropout
        if is_map:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def attention_layers(unet) -> dict[str, Attention]:
    """The attention modules of a UNet by name, e.g. "mid_block.attentions.0" (UNet2DModel has no attn_processors)."""
    return {name: module for name, module in unet.named_modules() if isinstance(module, Attention)}


def _capture(model: DiffusionModel, x_t: Tensor, t: Tensor, classes: Tensor | None) -> dict[str, Tensor]:
    """Run a copy of the UNet with storing processors once; {block name: (B, heads, Q, K)}.

    The copy keeps the shared model's processors untouched, even while other threads sample with it.
    """
    unet = copy.deepcopy(model.unet)
    store: dict[str, Tensor] = {}
    layers = attention_layers(unet)
    for name, layer in layers.items():
        layer.set_processor(StoringAttnProcessor(name, store))
    unet(x_t, t, class_labels=classes)
    return {name: probs.reshape(x_t.shape[0], layers[name].heads, *probs.shape[1:]) for name, probs in store.items()}


def _noisy_inputs(model: DiffusionModel, x0: Tensor | None, t: Tensor, labels: Tensor | None,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    """x_t (len(t),C,H,W) for one image x0 (1,C,H,W) or pure noise, with the same noise at every t."""
    m, dev = t.shape[0], model.device
    noise = _noise((1, *model.image_shape), generator, dev).expand(m, -1, -1, -1)
    if x0 is None:
        x_t = noise
    else:
        x_t = model.noise_scheduler().add_noise(to_model_range(x0.to(dev)[:1]).expand(m, -1, -1, -1), noise, t.to(dev))
    classes = model.class_input(None if labels is None else model.check_labels(labels, 1).expand(m), m)
    return x_t, classes


@torch.no_grad()
def attention_maps(model: DiffusionModel, x0: Tensor | None, t: int, labels: Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Self-attention probabilities of every attention layer for one image at timestep ``t``.

    x0 (1,C,H,W) in [0,1] is noised to x_t; None starts from pure noise (x_T). ``labels`` (1,) for
    class-conditional models (None: the null class). Returns {block name, e.g.
    "down_blocks.2.attentions.0" or "mid_block.attentions.0": (heads, Q, K)}, where Q = K = h*w
    tokens of that block's feature map in row-major order; every row is a distribution over keys.
    """
    tt = torch.tensor([int(t)])
    x_t, classes = _noisy_inputs(model, x0, tt, labels, generator)
    return {name: probs[0] for name, probs in _capture(model, x_t, tt.to(model.device), classes).items()}


@torch.no_grad()
def attention_over_time(model: DiffusionModel, x0: Tensor | None, query: tuple[int, int], timesteps: Sequence[int],
                        labels: Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Where the pixel ``query`` = (row, col) attends at each timestep: {block name: (len(timesteps), heads, h, w)}.

    The query pixel is mapped to each block's resolution (h, w); the maps sum to 1. All timesteps
    share one noise draw and run as one batch.
    """
    tt = torch.tensor([int(t) for t in timesteps])                                  # (M,)
    x_t, classes = _noisy_inputs(model, x0, tt, labels, generator)
    _, height, width = model.image_shape
    out = {}
    for name, probs in _capture(model, x_t, tt.to(model.device), classes).items():  # (M,heads,Q,K)
        q = probs.shape[-2]
        h = max(1, round(math.sqrt(q * height / width)))
        w = q // h
        row, col = query[0] * h // height, query[1] * w // width
        out[name] = probs[:, :, row * w + col, :].reshape(len(tt), -1, h, w)
    return out
