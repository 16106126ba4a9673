"""GANs on 28x28 images: a textbook MLP GAN, DCGAN, and a conditional DCGAN (cGAN).

A generator G maps noise z (B,Z) to images in [-1,1]; a discriminator (or critic) D maps images
to one score per image. Real images arrive in [0,1] and are scaled to [-1,1]; ``sample`` maps
G's tanh output back with (x+1)/2. Shapes (B batch, Z noise_dim, w width, E embed_dim):

    mlp-gan  G: z (B,Z) -> (B,h) -> (B,2h) -> tanh (B,784) -> (B,1,28,28)
             D: x (B,1,28,28) -> (B,784) -> (B,2h) -> (B,h) -> score (B,1)
             minibatch_std appends the batch's spread as one more unit (B,h+1) before the score;
             pack k: D reads k images at once, (B//k, k*784) -> (B//k,1) (PacGAN)
    dcgan    G: z (B,Z) -fc-> (B,2w,7,7) -BN,ReLU,deconv s2-> (B,w,14,14) -BN,ReLU,deconv s2-> tanh (B,1,28,28)
             D: x (B,1,28,28) -conv s2-> (B,w,14,14) -conv s2-> (B,2w,7,7) -fc-> score (B,1)
             g_convs adds 3x3 conv layers at 7x7 and 14x14; augment shifts D's inputs (DiffAugment)
             minibatch_std appends a batch-spread map at D's 7x7 level; d_dropout follows each D conv
    cgan     as dcgan; G sees [z, embed(y)] (B,Z+E); D sees [x, embed(y) as a 28x28 plane] (B,2,28,28),
             or, with d_conditioning="projection", scores psi(phi(x)) + <embed(y), phi(x)> (B,1)
    every family: augment shifts the images D sees by up to 3 pixels (DiffAugment's translation), and
             cutout blanks a square of half their side

D never uses BatchNorm (it would couple the images of a batch and break the WGAN-GP penalty);
``spectral_norm`` wraps each of its layers instead. One optimisation step is ``d_steps`` updates
of D (each on fresh noise, sharing the step's real batch), then one update of G. The losses, the
penalties and the D-wins detector are in losses.py beside this file.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.config import ConfigError, setting
from genlib.data import TRAINING_SETS
from genlib.families.gan.losses import LOSS_NAMES, LOSS_TITLES, LOSSES, DWinDetector, gradient_penalty, r1_penalty
from genlib.families.gan.networks import (ProjectionDiscriminator, conv_discriminator, conv_generator,
                                          cutout, mlp_discriminator, mlp_generator, translate)
from genlib.model import (KINDS_BY_DATASET, DataKind, GenerativeModel, ModelConfig, SamplingCallback, SamplingOptions,
                          SamplingStep, StepOutput, StepTools)
from genlib.registry import register

# -- configs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GANConfig(ModelConfig):
    """Settings shared by every GAN family."""

    noise_dim: int = setting(64, "size of the noise vector z", min=1, max=512)
    loss: str = setting("bce", "adversarial loss: non-saturating BCE, least squares, hinge, or Wasserstein "
                        "with gradient penalty", choices=LOSS_NAMES)
    gp_weight: float = setting(10.0, "weight of the WGAN-GP gradient penalty", min=0.0, max=1000.0)
    r1_gamma: float = setting(0.0, "R1 penalty on real images, gamma/2 * |grad D(x)|^2 (0 = off): keeps D smooth "
                                   "where the data is", min=0.0, max=1000.0)
    spectral_norm: bool = setting(False, "spectral normalisation on every discriminator layer")
    d_lr_scale: float = setting(1.0, "D's learning rate = the training lr times this (G gets the training lr)",
                                min=0.01, max=100.0)
    d_steps: int = setting(1, "discriminator updates per generator update", min=1, max=10)
    adam_beta1: float = setting(0.5, "Adam beta1 for both networks (0.5 is the DCGAN choice)", min=0.0, max=0.999)
    d_output: str = setting("logit", "D's last layer: a raw logit, or a sigmoid probability (the textbook GAN)",
                            choices=tuple(LOSSES))
    augment: bool = setting(False, "DiffAugment: shift real and generated images by up to 3 pixels before D sees "
                                   "them (differentiable), so D cannot memorise a small training set")
    cutout: bool = setting(False, "DiffAugment's cutout: blank a random square of half the image's side in the images "
                                  "D sees (real and generated, differentiable)")
    minibatch_std: bool = setting(False, "ProGAN's minibatch standard deviation: D sees how varied each batch is, so a "
                                         "generator collapsing onto a few images is caught")
    dataset: str = setting("mnist", "training images: MNIST digits or 100 LFW faces", choices=tuple(TRAINING_SETS))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES[self.d_output]:
            raise ConfigError(f"{LOSS_TITLES[self.loss]} needs an unbounded critic: set d_output='logit' "
                              "(a sigmoid D is only defined for bce and lsgan)")


@dataclass(frozen=True)
class MLPGANConfig(GANConfig):
    """mlp-gan: one width for both fully connected nets."""

    hidden: int = setting(256, "units of G's first and D's last hidden layer (the other has twice as many)",
                          min=8, max=2048)
    pack: int = setting(1, "PacGAN (Lin et al. 2018): D judges packs of this many images at once, real or generated, "
                           "so a generator repeating itself is easy to catch (1 = one image at a time)", min=1, max=8)


@dataclass(frozen=True)
class DCGANConfig(GANConfig):
    """dcgan: channel widths of the two conv nets."""

    g_width: int = setting(32, "channels of G's 14x14 layer (its 7x7 layer has twice as many)", min=4, max=256)
    d_width: int = setting(32, "channels of D's 14x14 layer (its 7x7 layer has twice as many)", min=4, max=256)
    g_convs: int = setting(0, "extra 3x3 conv layers (BatchNorm, ReLU) at each of G's 7x7 and 14x14 levels; "
                              "the TF tutorial's G has one stride-1 layer at 7x7", min=0, max=3)
    d_dropout: float = setting(0.0, "dropout after each of D's conv layers (the TF tutorial uses 0.3): a noisier, "
                                    "slower D", min=0.0, max=0.9)


@dataclass(frozen=True)
class CGANConfig(DCGANConfig):
    """cgan: dcgan plus the classes and the size of G's label embedding."""

    num_classes: int = setting(10, "number of classes to condition on", min=2, max=100)
    embed_dim: int = setting(16, "size of the label embedding appended to z", min=1, max=256)
    d_conditioning: str = setting("plane", "how D sees the class: an embedded 28x28 plane beside the image, or "
                                           "a projection of its features onto a class embedding (Miyato & "
                                           "Koyama 2018)", choices=("plane", "projection"))
    # only labelled images: the faces have no classes to condition on
    dataset: str = setting("mnist", "training images: MNIST digits, the classes it conditions on", choices=("mnist",))


@dataclass(frozen=True)
class GANSampling(SamplingOptions):
    """How a GAN draws: the truncation trick or not."""

    truncation: float = setting(0.0, "truncation trick: bound each noise coordinate to |z| <= this; less variety, "
                                     "more typical images (0 = off)", min=0.0, max=5.0, step=0.1)


# -- the model ---------------------------------------------------------------------------------------
class GAN(GenerativeModel):
    """Base of the GAN families: subclasses only ``build`` the generator and discriminator."""

    Config = GANConfig
    Sampling = GANSampling
    group = "GANs"
    page = "pages/gans.py"

    def __init__(self, config: GANConfig):
        super().__init__(config)
        k = self.num_classes
        self.g_embed = nn.Embedding(k, config.embed_dim) if self.conditional else None  # label -> (B,E)
        self.projection = self.conditional and config.d_conditioning == "projection"
        plane = self.conditional and not self.projection
        self.d_embed = nn.Embedding(k, 28 * 28) if plane else None                    # label -> a 28x28 plane
        self.generator, self.discriminator = self.build()
        self.loss = LOSSES[config.d_output][config.loss]
        self.d_wins = DWinDetector()

    def build(self) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator) for this family."""
        raise NotImplementedError

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G: noise (B,Z) (and labels (B,) for cgan) -> images (B,1,28,28) in [-1,1]."""
        return self.generator(z if self.g_embed is None else torch.cat([z, self.g_embed(labels)], 1))

    def critic(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """D: images (B,1,28,28) in [-1,1] (and labels (B,) for cgan) -> scores (B,1)."""
        if self.projection:
            return self.discriminator(x, labels)
        if self.d_embed is not None:
            x = torch.cat([x, self.d_embed(labels).view(-1, 1, 28, 28)], 1)
        return self.discriminator(x)

    def augmented(self, x: Tensor) -> Tensor:
        """Images as D sees them in training: DiffAugment-shifted (``augment``), then cut out (``cutout``)."""
        x = translate(x) if self.config.augment else x
        return cutout(x) if self.config.cutout else x

    def training_critic(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``critic`` as training calls it, on ``augmented`` images."""
        return self.critic(self.augmented(x), labels)

    def d_parameters(self) -> list[nn.Parameter]:
        """Everything D's optimizer trains (the discriminator and cgan's D-side embedding)."""
        return [p for m in (self.discriminator, self.d_embed) if m is not None for p in m.parameters()]

    def g_parameters(self) -> list[nn.Parameter]:
        """Everything G's optimizer trains (the generator and cgan's G-side embedding)."""
        return [p for m in (self.generator, self.g_embed) if m is not None for p in m.parameters()]

    def trained_data(self) -> DataKind:
        """Digits, or faces when ``dataset`` says so."""
        return KINDS_BY_DATASET[self.config.dataset]

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """[opt_d, opt_g]: Adam for each net; D's learning rate is ``lr * d_lr_scale``."""
        betas = (self.config.adam_beta1, 0.999)
        self.d_wins.reset()  # a fresh fit starts a fresh count
        return [torch.optim.Adam(self.d_parameters(), lr=lr * self.config.d_lr_scale, betas=betas),
                torch.optim.Adam(self.g_parameters(), lr=lr, betas=betas)]

    def optimization_step(self, batch: tuple[Tensor, Tensor], optimizers: list[torch.optim.Optimizer],
                          tools: StepTools) -> StepOutput:
        """``d_steps`` D updates, then one G update; returns G's loss and the scalars to log."""
        x, y = batch
        real, labels = x * 2 - 1, (y if self.conditional else None)
        opt_d, opt_g = optimizers
        d_params, g_params = self.d_parameters(), self.g_parameters()
        scalars: dict[str, float] = {}
        r1_gamma = self.config.r1_gamma
        for _ in range(self.config.d_steps):
            with torch.no_grad():
                fake = self.generate(torch.randn(x.shape[0], self.config.noise_dim, device=x.device), labels)
            with tools.autocast():
                real_in = self.augmented(real).requires_grad_(r1_gamma > 0)  # R1 differentiates D at these
                real_out, fake_out = self.critic(real_in, labels), self.training_critic(fake, labels)
                d_loss = self.loss.d_loss_fn(real_out, fake_out)
                if r1_gamma > 0:
                    r1 = r1_penalty(real_out, real_in)
                    d_loss = d_loss + r1_gamma / 2 * r1
                    scalars["r1"] = r1.item()
                if self.loss.gradient_penalty:
                    gp = gradient_penalty(lambda im: self.critic(im, labels), real, fake)
                    d_loss = d_loss + self.config.gp_weight * gp
                    scalars["gp"] = gp.item()
            tools.backward_and_step(d_loss, opt_d, d_params)
        scalars.update(d_loss=d_loss.item(), d_real=self.loss.score(real_out.float()).mean().item(),
                       d_fake=self.loss.score(fake_out.float()).mean().item())
        for p in d_params:  # G's backward needs no gradients for D's weights
            p.requires_grad_(False)
        try:
            with tools.autocast():
                fake = self.generate(torch.randn(x.shape[0], self.config.noise_dim, device=x.device), labels)
                g_loss = self.loss.g_loss_fn(self.training_critic(fake, labels))
            tools.backward_and_step(g_loss, opt_g, g_params)
        finally:
            for p in d_params:
                p.requires_grad_(True)
        scalars.update(loss=g_loss.item(), g_loss=g_loss.item())
        if self.loss.probability:
            self.d_wins.update(scalars["d_real"], scalars["d_fake"])
        return StepOutput(g_loss, scalars)

    # -- sampling ------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> Tensor:
        """z (n,noise_dim) on the model's device, drawn on CPU from ``generator``.

        With ``truncation`` t, each coordinate follows N(0,1) conditioned on |z| <= t (the
        truncation trick: less variety, more typical images). It is drawn by the inverse CDF,
        which gives exactly the distribution of resampling every |z| > t, in one pass.
        """
        shape = (n, self.config.noise_dim)
        if truncation is None:
            return torch.randn(shape, generator=generator).to(self.device)
        if not truncation > 0:
            raise ValueError(f"truncation must be positive, got {truncation}")
        lo = torch.special.ndtr(torch.tensor(-float(truncation), dtype=torch.float64))
        u = lo + (1 - 2 * lo) * torch.rand(shape, generator=generator, dtype=torch.float64)
        return torch.special.ndtri(u).clamp(-truncation, truncation).float().to(self.device)

    @torch.no_grad()
    def sample_from_noise(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images (N,1,28,28) in [0,1] for noise z (N,noise_dim); conditional models take labels (N,)."""
        images = self.generate(z.to(self.device), self.check_labels(labels, z.shape[0]))
        return ((images.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None, truncation: float | None = None) -> Tensor:
        """``n`` images (N,1,28,28) in [0,1]; ``truncation`` bounds each noise coordinate (see ``noise``;
        None or 0 = off)."""
        labels = self.check_labels(labels, n)  # validated before any noise is drawn
        images = self.sample_from_noise(self.noise(n, generator, truncation or None), labels)
        if callback is not None:
            callback(SamplingStep(0, 1, images, images))
        return images


def slerp(z0: Tensor, z1: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation between noise vectors z0 and z1 (same shape (..., D)).

    ``t`` in [0,1]: a float gives one point; a 1-D tensor of T values gives (T, ...) points.
    Along the great circle the norm moves smoothly from |z0| to |z1| (unit vectors stay unit),
    so midpoints keep the typical norm of Gaussian noise, unlike linear interpolation. Nearly
    parallel vectors fall back to linear interpolation.
    """
    tt = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    single = tt.dim() == 0
    tt = tt.reshape(-1, *([1] * z0.dim()))                                    # (T,1,...,1)
    cos = (F.normalize(z0, dim=-1) * F.normalize(z1, dim=-1)).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    ok = sin.abs() > 1e-6
    safe = torch.where(ok, sin, torch.ones_like(sin))
    w0 = torch.where(ok, torch.sin((1 - tt) * omega) / safe, 1 - tt)
    w1 = torch.where(ok, torch.sin(tt * omega) / safe, tt)
    out = w0 * z0 + w1 * z1
    return out[0] if single else out


@register("mlp-gan")
class MLPGAN(GAN):
    """The textbook GAN (Goodfellow et al., 2014): fully connected G and D."""

    Config = MLPGANConfig
    tiny_config = {"noise_dim": 8, "hidden": 16}
    description = "Textbook GAN with fully connected generator and discriminator"

    def build(self) -> tuple[nn.Module, nn.Module]:
        """Fully connected G and D; D's input is ``pack`` images side by side."""
        c = self.config
        return (mlp_generator(c.noise_dim, c.hidden),
                mlp_discriminator(c.hidden, c.spectral_norm, c.d_output == "sigmoid", c.minibatch_std, c.pack))

    def critic(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """D on packs: images (B,1,28,28) -> scores (B//pack,1), each for ``pack`` consecutive images.

        A batch that is not a whole number of packs leaves its last images out.
        """
        k = self.config.pack
        if x.shape[0] < k:
            raise ValueError(f"the discriminator judges packs of {k} images; this batch has only {x.shape[0]}")
        return self.discriminator(x[: x.shape[0] // k * k].reshape(-1, k * 28 * 28))  # (B//k, k*784)


@register("dcgan")
class DCGAN(GAN):
    """Deep convolutional GAN (Radford et al., 2015): transposed convs and BatchNorm in G."""

    Config = DCGANConfig
    tiny_config = {"noise_dim": 8, "g_width": 4, "d_width": 4}
    description = "DCGAN: convolutional generator (with BatchNorm) and discriminator"

    def build(self) -> tuple[nn.Module, nn.Module]:
        """Conv G and D; cgan's G takes [z, label embedding] and its D a second, label, channel."""
        c = self.config
        in_dim, in_channels = (c.noise_dim + c.embed_dim, 2) if self.conditional else (c.noise_dim, 1)
        sigmoid = c.d_output == "sigmoid"
        d_options = (c.spectral_norm, sigmoid, c.d_dropout, c.minibatch_std)
        d = (ProjectionDiscriminator(c.d_width, c.num_classes, *d_options) if self.projection
             else conv_discriminator(in_channels, c.d_width, *d_options))
        return conv_generator(in_dim, c.g_width, c.g_convs), d


@register("cgan")
class ConditionalGAN(DCGAN):
    """Conditional DCGAN (Mirza & Osindero, 2014): both nets see a learned embedding of the class."""

    Config = CGANConfig
    tiny_config = {"noise_dim": 8, "g_width": 4, "d_width": 4, "embed_dim": 4}
    conditional = True
    description = "Conditional DCGAN: choose which digit to draw"
