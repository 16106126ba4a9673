"""Denoising diffusion on diffusers' ``UNet2DModel`` and schedulers: unconditional and class-conditional.

Forward process (fixed): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with x_0 in [-1,1] and
abar_t the cumulative product of (1 - beta) over the beta schedule. The UNet learns to predict eps,
the velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0, or x_0 itself (``prediction``).

Sampling walks t from T-1 down to 0 with a scheduler (DDPM, DDIM, DPM-Solver++ or Euler) in a loop
written out as in diffusers' ``pipeline_ddpm.py``. Every call builds its own scheduler from the
model's scheduler config, so a model shared between browser sessions is never mutated.

    x_T ~ N(0, I) (N,C,H,W) -> for t in timesteps: out = unet(x_t, t[, class]); x_{t-1} = step(out, t, x_t)

The class-conditional family embeds num_classes + 1 classes: the extra index is the "null" class
that training uses for a random 10% of images, so sampling can mix conditional and unconditional
predictions (classifier-free guidance): out = out_null + s * (out_class - out_null).

Checkpoints are diffusers pipeline folders (model_index.json, unet/, scheduler/) with genlib's own
config.json beside them; any unconditional UNet2DModel pipeline folder loads as family ``diffusion``.
Editing (inpainting, SDEdit), the likelihood bound and attention maps live in tools.py beside this file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.training_utils import compute_snr
from skimage.restoration import estimate_sigma
from torch import Tensor

from genlib.families.diffusion import tools
from genlib.families.diffusion.config import (SAMPLERS, CDiffusionConfig, CDiffusionSampling, DiffusionConfig,
                                              DiffusionSampling, public_config)
from genlib.families.diffusion.pipelines import claim_pipeline, curves_of, read_pipeline, write_pipeline
from genlib.families.diffusion.tools import to_image_range, to_model_range
from genlib.model import DataKind, GenerativeModel, SamplingCallback, SamplingStep, StepOutput, images_of_shape
from genlib.registry import register

CPU_CHUNK = 128  # on the CPU, batches above ~200 28x28 images fall out of cache and run 2x slower per image


# -- the model -----------------------------------------------------------------------------------------------
@register("diffusion")
class DiffusionModel(GenerativeModel):
    """A DDPM-style diffusion model: a UNet2DModel trained to undo Gaussian noise."""

    Config = DiffusionConfig
    Sampling = DiffusionSampling
    group = "Diffusion"
    page = "pages/diffusion.py"
    tiny_config = {"base_channels": 8, "levels": 2, "attention_head_dim": 8, "num_train_timesteps": 100,
                   "sample_steps": 8}
    description = "Diffusion model (DDPM/DDIM, UNet from diffusers): denoises pure noise into digits"
    likelihood = "bound"
    own_checkpoint_layout = True
    default_guidance_scale = 1.0

    def __init__(self, config: DiffusionConfig, unet: UNet2DModel | None = None,
                 scheduler_config: dict[str, Any] | None = None):
        """Build a fresh UNet from ``config``, or wrap a loaded ``unet`` and its ``scheduler_config`` verbatim."""
        super().__init__(config)
        self.unet = unet if unet is not None else UNet2DModel(**config.unet_config(self._num_class_embeds()))
        self.scheduler_config = dict(scheduler_config or config.scheduler_config())
        forward = DDPMScheduler.from_config(self.scheduler_config)
        # Plain CPU tensors, not buffers: the schedule is saved in scheduler/, not with the weights.
        self.betas = forward.betas.clone()                    # (T,)
        self.alphas_cumprod = forward.alphas_cumprod.clone()  # (T,) abar_t, decreasing
        if not tools.attention_layers(self.unet):  # no attention layers, nothing to show
            self.abilities = self.abilities - {"attention"}

    def _num_class_embeds(self) -> int | None:
        return None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this UNet makes."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return self.unet.config.in_channels, h, w

    def trained_data(self) -> DataKind:
        """Digits for a 1x28x28 UNet; images of its own shape for a pipeline from elsewhere."""
        return images_of_shape(self.image_shape)

    def sampling_defaults(self) -> DiffusionSampling:
        """The config's sampler and step count."""
        return self.Sampling(sampler=self.config.sampler, steps=self.config.sample_steps)

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of forward-process steps."""
        return len(self.betas)

    # -- the network and its parameterisation ------------------------------------------------------------------
    def class_input(self, labels: Tensor | None, n: int) -> Tensor | None:
        """The UNet's class_labels (N,) for ``labels``: the null class K when None; None if unconditional."""
        return None

    def predict(self, x_t: Tensor, t: Tensor | int, labels: Tensor | None = None,
                guidance_scale: float = 1.0) -> Tensor:
        """The UNet's raw output (N,C,H,W) for x_t (N,C,H,W) in [-1,1] at timestep(s) t (scalar or (N,)).

        It is eps, v or x0 according to ``config.prediction``. Class-conditional models mix the
        class and null-class outputs when ``guidance_scale`` != 1 (both halves in one forward pass).
        """
        n, channels = x_t.shape[0], x_t.shape[1]
        t = torch.as_tensor(t, device=x_t.device).expand(n)        # (N,)
        classes = self.class_input(labels, n)                       # (N,) or None
        if classes is None or guidance_scale == 1.0:
            return self._unet(x_t, t, classes)[:, :channels]
        null = torch.full_like(classes, self.num_classes)
        out = self._unet(torch.cat([x_t, x_t]), t.repeat(2), torch.cat([classes, null]))[:, :channels]
        cond, uncond = out.chunk(2)                                   # each (N,C,H,W)
        return uncond + guidance_scale * (cond - uncond)

    def _unet(self, x: Tensor, t: Tensor, classes: Tensor | None) -> Tensor:
        """unet(x (B,C,H,W), t (B,), classes (B,) or None).sample, in chunks of CPU_CHUNK on the CPU."""
        if x.device.type != "cpu" or x.shape[0] <= CPU_CHUNK:
            return self.unet(x, t, class_labels=classes).sample
        parts = [self.unet(x[i:i + CPU_CHUNK], t[i:i + CPU_CHUNK],
                           class_labels=None if classes is None else classes[i:i + CPU_CHUNK]).sample
                 for i in range(0, x.shape[0], CPU_CHUNK)]
        return torch.cat(parts)

    def predict_x0(self, x_t: Tensor, t: Tensor | int | float, output: Tensor) -> Tensor:
        """x0 (N,C,H,W), unclipped, implied by the UNet ``output`` at x_t and integer timestep(s) t."""
        idx = torch.as_tensor(t).detach().cpu().double().round().long()
        abar = self.alphas_cumprod[idx].to(x_t.device).reshape(-1, 1, 1, 1)  # (1 or N,1,1,1)
        pred = self.scheduler_config.get("prediction_type", "epsilon")
        if pred == "epsilon":
            return (x_t - (1 - abar).sqrt() * output) / abar.sqrt()
        if pred == "v_prediction":
            return abar.sqrt() * x_t - (1 - abar).sqrt() * output
        return output

    # -- training ----------------------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """One AdamW over the UNet."""
        return [torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=0.0)]

    def training_labels(self, labels: Tensor) -> Tensor | None:
        """The class input the UNet sees in training (None for the unconditional family)."""
        return None

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """The DDPM loss: mean squared error between the UNet's output and its target at a random t."""
        x, y = batch
        x0 = to_model_range(x)                                              # (B,C,H,W) in [-1,1]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.num_train_timesteps, (x0.shape[0],), device=x0.device)  # (B,)
        forward = self.noise_scheduler()
        x_t = forward.add_noise(x0, noise, t)
        target = {"epsilon": noise, "sample": x0}.get(forward.config.prediction_type)
        if target is None:  # v_prediction
            target = forward.get_velocity(x0, noise, t)
        out = self.unet(x_t, t, class_labels=self.training_labels(y)).sample[:, :x0.shape[1]]
        per_image = F.mse_loss(out, target, reduction="none").mean(dim=(1, 2, 3))  # (B,)
        mse = per_image.mean()
        if not self.config.snr_gamma:
            return StepOutput(mse, {"loss": mse.item()})
        loss = (per_image * self.min_snr_weights(forward, t)).mean()
        return StepOutput(loss, {"loss": loss.item(), "mse": mse.item()})

    def min_snr_weights(self, forward: DDPMScheduler, t: Tensor) -> Tensor:
        """Min-SNR-gamma loss weights (B,) for timesteps t (B,): min(SNR, gamma) over the target's own weight.

        An eps loss already weighs x0 errors by SNR, a v loss by SNR+1, an x0 loss by 1; dividing those out
        and clipping at gamma stops the nearly clean timesteps from dominating the gradient.
        """
        snr = compute_snr(forward, t)                                      # (B,)
        clipped = snr.clamp(max=self.config.snr_gamma)
        base = {"epsilon": snr, "v_prediction": snr + 1}.get(forward.config.prediction_type, torch.ones_like(snr))
        return clipped / base

    # -- schedulers --------------------------------------------------------------------------------------------
    def noise_scheduler(self) -> DDPMScheduler:
        """A fresh DDPMScheduler of the forward process (add_noise, get_velocity, DDPM steps)."""
        return DDPMScheduler.from_config(self.scheduler_config)

    def make_scheduler(self, sampler: str = "ddim"):
        """A fresh scheduler instance for ``sampler`` (never shared between calls), on the model's betas."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        cls, extra = SAMPLERS[sampler]
        if cls is DPMSolverMultistepScheduler and self.scheduler_config.get("clip_sample", False):
            # DPM-Solver++ has no clip_sample; thresholding at sample_max_value=1 clips x0 the same way
            extra = {**extra, "thresholding": True,
                     "sample_max_value": float(self.scheduler_config.get("clip_sample_range", 1.0))}
        # trained_betas: the exact betas of the forward process, whatever beta_schedule the class supports
        return cls.from_config({**self.scheduler_config, "trained_betas": self.betas.tolist(),
                                "rescale_betas_zero_snr": False, **extra})

    # -- sampling ----------------------------------------------------------------------------------------------
    def resolve_guidance(self, guidance_scale: float | None) -> float:
        """The guidance scale to use: the family's default for None; ValueError for unconditional models."""
        if guidance_scale is None:
            return self.default_guidance_scale
        if not self.conditional and guidance_scale != 1.0:
            raise ValueError("guidance_scale applies to class-conditional models only")
        return float(guidance_scale)

    def check_sampling(self, sampler: str, steps: int, eta: float) -> None:
        """ValueError unless ``sampler`` exists, 1 <= steps <= T, and eta is 0 or the sampler is DDIM."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be between 1 and {self.num_train_timesteps}, got {steps}")
        if eta != 0.0 and sampler != "ddim":
            raise ValueError(f"eta applies to the ddim sampler only, not {sampler!r}")

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, sampler: str | None = None, steps: int | None = None,
               eta: float = 0.0, guidance_scale: float | None = None) -> Tensor:
        """``n`` images (N,C,H,W) in [0,1], denoised from Gaussian noise in ``steps`` scheduler steps.

        sampler: "ddpm" (ancestral), "ddim" (``eta`` 0 = deterministic), "dpm-solver++" or "euler";
        ``sampler`` and ``steps`` default to ``config.sampler`` and ``config.sample_steps``;
        ``guidance_scale`` to the family's default.
        The initial noise comes from ``generator`` on the CPU, so a seed gives the same images on any
        device. ``callback`` receives a SamplingStep each step: state x_t and prediction x0, in [0,1].
        """
        steps = self.config.sample_steps if steps is None else steps
        sampler = self.config.sampler if sampler is None else sampler
        self.check_sampling(sampler, steps, eta)
        labels = self.check_labels(labels, n)
        scale = self.resolve_guidance(guidance_scale)
        scheduler = self.make_scheduler(sampler)
        scheduler.set_timesteps(steps)
        noise = torch.randn((n, *self.image_shape), generator=generator).to(self.device)  # (N,C,H,W)
        x = noise * scheduler.init_noise_sigma
        x = self.denoise_loop(x, scheduler, scheduler.timesteps, labels=labels, guidance_scale=scale,
                              callback=callback, generator=generator, eta=eta)
        return to_image_range(x)

    def denoise_loop(self, x: Tensor, scheduler, timesteps: Tensor, *, labels: Tensor | None = None,
                     guidance_scale: float = 1.0, callback: SamplingCallback | None = None,
                     generator: torch.Generator | None = None, eta: float = 0.0) -> Tensor:
        """Run ``scheduler`` over ``timesteps`` from x (N,C,H,W) in the scheduler's own scale; x_0 in [-1,1]."""
        extra = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
        for i, t in enumerate(timesteps):
            x_in = scheduler.scale_model_input(x, t)           # Euler divides by sqrt(sigma^2+1); others: x
            out = self.predict(x_in, t, labels, guidance_scale)
            step = scheduler.step(out, t, x, generator=generator, **extra)
            if callback is not None:
                x0 = getattr(step, "pred_original_sample", None)
                if x0 is None:  # DPM-Solver returns only the next sample
                    x0 = self.predict_x0(x_in, t, out)
                callback(SamplingStep(i, len(timesteps), to_image_range(x_in), to_image_range(x0), int(t)))
            x = step.prev_sample
        return x

    # -- the forward process, for plots ----------------------------------------------------------------------
    @torch.no_grad()
    def noisy_at(self, x0: Tensor, t: int | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t (N,C,H,W) in [0,1] drawn from q(x_t | x_0) for images x0 (N,C,H,W) in [0,1] at timestep(s) t."""
        t = torch.as_tensor(t, dtype=torch.long).reshape(-1).expand(x0.shape[0]).to(x0.device)  # (N,)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        return to_image_range(self.noise_scheduler().add_noise(to_model_range(x0), noise, t))

    def schedule_curves(self) -> dict[str, np.ndarray]:
        """This model's schedule: t, betas, alphas_cumprod and log SNR = log(abar/(1-abar)), each (T,)."""
        return curves_of(self.betas, self.alphas_cumprod)

    # -- abilities and editing (implemented in tools.py) ------------------------------------------------
    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None,
                     num_timesteps: int = 2) -> Tensor:
        """Variational bound on -log2 p(x) per dimension (N,) for images (N,C,H,W) in [0,1]; see tools.bits_per_dim."""
        return tools.bits_per_dim(self, x, labels, generator=generator, num_timesteps=num_timesteps)

    def attention_maps(self, x0: Tensor | None, t: int, labels: Tensor | None = None,
                       generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Softmax attention of every attention layer for one image: {block name: (heads, Q, K)}."""
        return tools.attention_maps(self, x0, t, labels, generator=generator)

    def attention_over_time(self, x0: Tensor | None, query: tuple[int, int], timesteps: Sequence[int],
                            labels: Tensor | None = None, generator: torch.Generator | None = None
                            ) -> dict[str, Tensor]:
        """Where one query pixel attends at each of ``timesteps``: {block name: (len(timesteps), heads, h, w)}."""
        return tools.attention_over_time(self, x0, query, timesteps, labels, generator=generator)

    @torch.no_grad()
    def denoise(self, noisy: Tensor, labels: Tensor | None = None, sigma: float | None = None) -> Tensor:
        """Images (N,C,H,W) in [0,1] with Gaussian noise of ``sigma`` (0-1 scale; estimated per batch when None)
        removed, by the reverse process from the matching timestep (see ``tools.denoise_from_noise_level``)."""
        if sigma is None:  # the same wavelet estimate the Restore page shows
            sigma = float(estimate_sigma(noisy.float().cpu().numpy().transpose(0, 2, 3, 1).reshape(
                -1, noisy.shape[-1], noisy.shape[1]), channel_axis=-1, average_sigmas=True))
        return tools.denoise_from_noise_level(self, noisy, sigma, labels=labels)

    def inpaint(self, x0: Tensor, mask: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                callback: SamplingCallback | None = None, *, labels: Tensor | None = None, jump_n: int = 1,
                guidance_scale: float | None = None) -> Tensor:
        """Fill the pixels where ``mask`` (N,1,H,W) is 0 (RePaint); known pixels are kept. Images in [0,1]."""
        return tools.inpaint(self, x0, mask, steps, generator, callback, labels=labels, jump_n=jump_n,
                             guidance_scale=guidance_scale)

    def sdedit(self, x0: Tensor, strength: float, steps: int | None = None, generator: torch.Generator | None = None,
               sampler: str = "ddim", *, labels: Tensor | None = None, callback: SamplingCallback | None = None,
               eta: float = 0.0, guidance_scale: float | None = None) -> Tensor:
        """Noise images x0 (N,C,H,W) in [0,1] to ``strength`` * T and denoise them again (SDEdit)."""
        return tools.sdedit(self, x0, strength, steps, generator, sampler, labels=labels, callback=callback,
                            eta=eta, guidance_scale=guidance_scale)

    # -- checkpoints: a diffusers pipeline folder (read and written in pipelines.py) -----------------------------
    def save_pretrained_files(self, folder: Path) -> None:
        """Write model_index.json, unet/ (config.json + safetensors) and scheduler/scheduler_config.json."""
        write_pipeline(Path(folder), self.unet, public_config(self.scheduler_config),
                       self.scheduler_config.get("_class_name", "DDPMScheduler"))

    @classmethod
    def from_folder(cls, folder: Path, config: DiffusionConfig) -> "DiffusionModel":
        """Load a pipeline folder: the UNet from safetensors only, its config and the scheduler's verbatim."""
        unet, scheduler_config = read_pipeline(Path(folder), config, cls.conditional)
        return cls(config, unet=unet, scheduler_config=scheduler_config)

    @classmethod
    def claim_folder(cls, folder: Path) -> dict[str, Any] | None:
        """The model config of an unconditional diffusers UNet2DModel pipeline folder; None if it is not one."""
        return None if cls.conditional else claim_pipeline(Path(folder))


@register("cdiffusion")
class ConditionalDiffusionModel(DiffusionModel):
    """A diffusion model told which class to draw, with classifier-free guidance."""

    Config = CDiffusionConfig
    Sampling = CDiffusionSampling
    conditional = True
    description = "Class-conditional diffusion model with classifier-free guidance"
    default_guidance_scale = 2.0

    def sampling_defaults(self) -> CDiffusionSampling:
        """The config's sampler and step count, with the family's ``default_guidance_scale``."""
        return self.Sampling(sampler=self.config.sampler, steps=self.config.sample_steps,
                             guidance_scale=self.default_guidance_scale)

    def _num_class_embeds(self) -> int:
        return self.config.num_classes + 1  # the last index is the null class

    def class_input(self, labels: Tensor | None, n: int) -> Tensor:
        """The UNet's class_labels (N,) int64: ``labels``, or the null class K for all n when None."""
        if labels is None:  # no class given: the null class, i.e. the unconditional model
            return torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)
        return labels.to(self.device).long()

    def training_labels(self, labels: Tensor) -> Tensor:
        """``labels`` (B,) with a random ``cond_drop_prob`` share replaced by the null class K."""
        drop = torch.rand(labels.shape, device=labels.device) < self.config.cond_drop_prob  # (B,)
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)
