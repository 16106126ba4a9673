"""The diffusion family's settings: the UNet and forward process (``DiffusionConfig``), the
class-conditional extras, the samplers by name, and how sampling is asked for (``DiffusionSampling``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from genlib.config import ConfigError, setting
from genlib.families.diffusion.pipelines import PREDICTIONS, SCHEDULES
from genlib.model import ModelConfig, SamplingOptions

# sampler name -> (scheduler class, settings over the model's scheduler config)
SAMPLERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm-solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler": (EulerDiscreteScheduler, {}),
}


# -- configs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffusionConfig(ModelConfig):
    """The UNet's shape and the forward process. The defaults sample 16 digits in 20 steps in ~1.5 s
    on one CPU core (1.1M parameters)."""

    sample_size: int = setting(28, "image height and width in pixels", min=8, max=1024)
    in_channels: int = setting(1, "image channels (1 grey, 3 RGB)", min=1, max=4)
    base_channels: int = setting(32, "channels of the first UNet level; the deeper levels have twice as many",
                                 min=8, max=1024)
    levels: int = setting(3, "UNet resolutions (28 -> 14 -> 7 for 3); sample_size must halve levels-1 times",
                          min=1, max=8)
    layers_per_block: int = setting(1, "ResNet blocks per level on the way down (one more on the way up)",
                                    min=1, max=4)
    attention: bool = setting(True, "self-attention at the lowest resolution (down, middle and up blocks)")
    attention_head_dim: int = setting(32, "channels per attention head (divides the lowest level's channels)",
                                      min=4, max=1024)
    schedule: str = setting("linear", "beta schedule of the forward process (cosine = squaredcos_cap_v2)",
                            choices=tuple(SCHEDULES))
    prediction: str = setting("epsilon", "what the UNet predicts: the noise, the velocity v, or x0 itself",
                              choices=PREDICTIONS)
    num_train_timesteps: int = setting(1000, "steps T of the forward process", min=10, max=4000)
    sample_steps: int = setting(50, "sampler steps when a caller gives none (previews, evaluation)", min=1, max=4000)
    sampler: str = setting("ddim", "sampler used when a caller names none (previews, evaluation)",
                           choices=("ddpm", "ddim", "dpm-solver++", "euler"))
    snr_gamma: float = setting(0.0, "Min-SNR loss weighting: clip each timestep's SNR weight at this value "
                                    "(Hang et al. 2023; 5 is typical; 0 = plain MSE)", min=0.0, max=100.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_steps > self.num_train_timesteps:
            raise ConfigError(f"sample_steps={self.sample_steps} exceeds "
                              f"num_train_timesteps={self.num_train_timesteps}")

    def block_out_channels(self) -> tuple[int, ...]:
        """Channels per level: base, 2*base, 2*base, ... (as DDPM's (1,2,2,2) multipliers)."""
        return tuple(self.base_channels * (1 if i == 0 else 2) for i in range(self.levels))

    def unet_config(self, num_class_embeds: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``UNet2DModel``; ConfigError for combinations that cannot be built."""
        steps = 2 ** (self.levels - 1)
        if self.sample_size % steps:
            raise ConfigError(f"sample_size={self.sample_size} must be divisible by {steps} for levels={self.levels}")
        channels = self.block_out_channels()
        if self.attention and channels[-1] % self.attention_head_dim:
            raise ConfigError(f"attention_head_dim={self.attention_head_dim} must divide the lowest level's "
                              f"{channels[-1]} channels")
        down, up = ["DownBlock2D"] * self.levels, ["UpBlock2D"] * self.levels
        if self.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        return dict(sample_size=self.sample_size, in_channels=self.in_channels, out_channels=self.in_channels,
                    block_out_channels=channels, layers_per_block=self.layers_per_block,
                    down_block_types=tuple(down), up_block_types=tuple(up), add_attention=self.attention,
                    attention_head_dim=self.attention_head_dim, norm_num_groups=math.gcd(self.base_channels, 8),
                    num_class_embeds=num_class_embeds)

    def scheduler_config(self) -> dict[str, Any]:
        """The DDPMScheduler config of the forward process (x0 clipped to [-1,1] when sampling)."""
        sched = DDPMScheduler(num_train_timesteps=self.num_train_timesteps, beta_schedule=SCHEDULES[self.schedule],
                              prediction_type=self.prediction, clip_sample=True, timestep_spacing="trailing")
        return {"_class_name": type(sched).__name__, **public_config(sched.config)}


@dataclass(frozen=True)
class CDiffusionConfig(DiffusionConfig):
    """A DiffusionConfig plus the classes and how often training hides them."""

    num_classes: int = setting(10, "number of classes to condition on (one more is the null class)", min=2, max=1000)
    cond_drop_prob: float = setting(0.1, "fraction of training images whose class is replaced by the null class "
                                         "(enables classifier-free guidance)", min=0.0, max=1.0)


@dataclass(frozen=True)
class DiffusionSampling(SamplingOptions):
    """How a diffusion model draws: the sampler and its number of steps."""

    sampler: str = setting("ddim", "ddpm (ancestral), ddim (eta 0: deterministic), dpm-solver++ or euler",
                           choices=tuple(SAMPLERS))
    steps: int = setting(50, "sampler steps (at most the model's training timesteps)", min=1, max=4000)
    eta: float = setting(0.0, "DDIM's noise: 0 is deterministic, 1 is as noisy as DDPM (ddim only)", min=0.0, max=1.0)


@dataclass(frozen=True)
class CDiffusionSampling(DiffusionSampling):
    """A class-conditional model's options: the guidance scale too."""

    guidance_scale: float = setting(2.0, "classifier-free guidance: 1 is plain conditional, higher follows the class "
                                         "more closely at the cost of variety", min=0.0, max=20.0, step=0.5)


def public_config(config: dict) -> dict[str, Any]:
    """A diffusers config without its private keys (_class_name, _use_default_values, ...), tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}
