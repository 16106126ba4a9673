"""Autoencoders on 28x28 digits: plain AE, denoising AE, VAE and conditional VAE.

All four share one small convolutional encoder/decoder:

    x (B,1,28,28) -conv s2-> (B,w,14,14) -conv s2-> (B,2w,7,7) -fc-> (B,hidden) -fc-> code
    code -fc-> (B,hidden) -fc-> (B,2w,7,7) -deconv-> (B,w,14,14) -deconv-> logits (B,1,28,28)

The VAE's code is (mu, logvar); the conditional VAE appends a one-hot label to the encoder's
features and to z. Decoders emit logits and images are ``sigmoid(logits)``, except with the
discretized-logistic loss, whose decoder emits a mean and a log-scale per pixel (B,2,28,28) and whose
images are the mean clipped to [0,1].

Likelihood. A VAE's negative ELBO bounds -log p(x), but only of data its decoder is a distribution
over (``genlib.likelihood``): the Bernoulli decoder ("bce") over binarized digits, so it is scored on
the binarized benchmark whether it trained on grey levels or (``binarize``) on binarized digits; the
Gaussian ("mse") and logistic ("logistic") decoders are integrated over each 8-bit bin, so they are
scored on the 8-bit digits.

Sampling prior. A plain AE has no prior, so after training it fits one to the training codes; a VAE
trains against N(0, I) but its aggregate posterior leaves holes there, and decoding z from those
holes draws blurred or ambiguous digits. With ``prior_components = k`` the model fits a mixture of k
full-covariance Gaussians to the training codes (the posterior means for a VAE) after training and
samples from it: ex-post density estimation (Ghosh et al., "From Variational to Deterministic
Autoencoders", ICLR 2020). A conditional VAE fits k per class, so z agrees with the label it is
decoded with. The buffers ``prior_mean`` (S,D), ``prior_scale_tril`` (S,D,D) and ``prior_log_weight``
(S,) hold S = k (x classes) components; with one Gaussian they keep the older shapes (D,) and (D,D).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from genlib.config import ConfigError, setting
from genlib.data import corrupt
from genlib.likelihood import BINARIZED, EIGHT_BIT, discretized_gaussian_nll, discretized_logistic_nll
from genlib.model import GenerativeModel, ModelConfig, SamplingCallback, SamplingStep, StepOutput
from genlib.registry import register

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class AEConfig(ModelConfig):
    """ae: latent size, network widths and the reconstruction loss."""

    latent_dim: int = setting(16, "size of the latent code z", min=2, max=128)
    width: int = setting(32, "channels of the first conv layer (the second has twice as many)", min=4, max=128)
    hidden: int = setting(256, "units of the fully connected layer", min=16, max=2048)
    loss: str = setting("bce", "reconstruction loss: per-pixel binary cross-entropy (a Bernoulli decoder), "
                        "squared error (a Gaussian one) or a discretized logistic over the 256 grey levels "
                        "with a learned scale per pixel", choices=("bce", "mse", "logistic"))
    mse_sigma: float = setting(0.1, "std of the Gaussian decoder that the MSE loss assumes", min=0.01, max=1.0)
    prior_components: int = setting(1, "Gaussians in the mixture fitted to the training codes after training, "
                                    "that samples are drawn from (per class for a conditional model)", min=1, max=64)


@dataclass(frozen=True)
class DAEConfig(AEConfig):
    """dae: ae plus the std of the training noise."""

    noise_std: float = setting(0.5, "std of the Gaussian noise added to inputs in training", min=0.0, max=2.0)


@dataclass(frozen=True)
class VAEConfig(AEConfig):
    """vae: ae plus the KL weight beta and its warm-up."""

    beta: float = setting(1.0, "weight of the KL term (beta-VAE); 1 is the true ELBO", min=0.0, max=100.0)
    kl_warmup_steps: int = setting(0, "ramp beta up from 0 over this many steps", min=0, max=100_000)
    prior_components: int = setting(0, "0: sample from the N(0, I) prior the ELBO trains with; k: from a mixture "
                                    "of k Gaussians fitted to the posterior means after training (per class for "
                                    "a conditional VAE)", min=0, max=64)
    binarize: bool = setting(False, "train on digits binarized afresh each batch (each pixel on with probability "
                             "its grey level), the classic binarized-MNIST setting; needs the bce loss")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.binarize and self.loss != "bce":
            raise ConfigError(f"binarize needs the bce loss (a Bernoulli decoder), not {self.loss}")


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """cvae: vae plus the number of classes to condition on."""

    num_classes: int = setting(10, "number of classes to condition on", min=2, max=100)


class _Encoder(nn.Module):
    def __init__(self, width: int, hidden: int, out: int, extra: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(), nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * width * 49 + extra, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, x: Tensor, extra: Tensor | None) -> Tensor:
        h = self.conv(x)
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.fc(h)


class _Decoder(nn.Module):
    def __init__(self, width: int, hidden: int, code: int, out_channels: int = 1):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(code, hidden), nn.SiLU(), nn.Linear(hidden, 2 * width * 49), nn.SiLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.deconv(self.fc(z).view(-1, 2 * self.width, 7, 7))  # (B,out_channels,28,28)


@register("ae")
class Autoencoder(GenerativeModel):
    """A deterministic autoencoder. It samples by drawing z from a Gaussian, or a mixture of
    ``prior_components`` Gaussians, fitted to the training codes after training (a plain AE has no
    prior of its own)."""

    Config = AEConfig
    group = "Autoencoders"
    page = "pages/autoencoders.py"
    tiny_config = {"latent_dim": 2, "width": 4, "hidden": 16}
    description = "Plain autoencoder; samples from a Gaussian (mixture) fitted to its training codes"
    code_factor = 1  # encoder outputs code_factor * latent_dim numbers

    def __init__(self, config: AEConfig):
        super().__init__(config)
        c = config
        extra = self.num_classes if self.conditional else 0
        self.encoder = _Encoder(c.width, c.hidden, self.code_factor * c.latent_dim, extra)
        self.decoder = _Decoder(c.width, c.hidden, c.latent_dim + extra, 2 if c.loss == "logistic" else 1)
        # The sampling prior, fitted in on_train_end (see the module docstring); standard normal until then.
        slots = self.prior_slots
        if slots == 1:  # one Gaussian: the shapes of every checkpoint saved before mixtures existed
            self.register_buffer("prior_mean", torch.zeros(c.latent_dim))
            self.register_buffer("prior_scale_tril", torch.eye(c.latent_dim))
        else:
            self.register_buffer("prior_mean", torch.zeros(slots, c.latent_dim))
            self.register_buffer("prior_scale_tril", torch.eye(c.latent_dim).repeat(slots, 1, 1))
            self.register_buffer("prior_log_weight", torch.full((slots,), -math.log(c.prior_components)))

    # -- the sampling prior --------------------------------------------------------------------
    @property
    def fitted_prior(self) -> bool:
        """True when samples come from a prior fitted to the training codes (False: a VAE's N(0, I))."""
        return self.config.prior_components > 0

    @property
    def prior_slots(self) -> int:
        """Gaussians the prior holds: k, or k per class for a conditional model (1 for N(0, I))."""
        k = self.config.prior_components
        return 1 if k == 0 else k * (self.num_classes if self.conditional else 1)

    def prior_summary(self) -> str:
        """The sampling prior in words, for pages and model cards."""
        k = self.config.prior_components
        if k == 0:
            return "the standard normal N(0, I) the ELBO trains with"
        per = " per digit" if self.conditional else ""
        return ("a full-covariance Gaussian" if k == 1 else f"a mixture of {k} full-covariance Gaussians") + \
            f"{per}, fitted to the training codes"

    def card_notes(self) -> list[str]:
        """The sampling prior, which the config names only by its number of components."""
        return [f"It samples z from {self.prior_summary()}."]

    def _prior_rows(self, labels: Tensor | None, n: int) -> Tensor:
        """(n,) index of the block of k components each code is drawn from: its class, or 0."""
        if self.conditional and self.prior_slots > 1:
            return self.check_labels(labels, n).cpu()
        return torch.zeros(n, dtype=torch.long)

    def prior_log_prob(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """log p(z) (B,) under the sampling prior, for codes z (B,D) (and their labels if conditional)."""
        if self.prior_mean.dim() == 1:
            return MultivariateNormal(self.prior_mean, scale_tril=self.prior_scale_tril).log_prob(z)
        k, d = self.config.prior_components, self.config.latent_dim
        rows = self._prior_rows(labels, z.shape[0]).to(z.device)
        means = self.prior_mean.view(-1, k, d)[rows]                   # (B,k,D)
        trils = self.prior_scale_tril.view(-1, k, d, d)[rows]          # (B,k,D,D)
        log_w = self.prior_log_weight.view(-1, k)[rows].log_softmax(1)  # (B,k)
        per_component = MultivariateNormal(means, scale_tril=trils).log_prob(z[:, None, :])  # (B,k)
        return (per_component + log_w).logsumexp(1)

    @torch.no_grad()
    def fit_prior(self, codes: Tensor, labels: Tensor | None = None) -> None:
        """Fit the sampling prior to training codes (N,D) (and their labels (N,) if conditional)."""
        if self.prior_slots == 1:  # one Gaussian: mean and covariance in closed form
            cov = torch.cov(codes.T) + 1e-4 * torch.eye(codes.shape[1], device=codes.device)
            self.prior_mean.copy_(codes.mean(0))
            self.prior_scale_tril.copy_(torch.linalg.cholesky(cov))
            return
        from sklearn.mixture import GaussianMixture

        k = self.config.prior_components
        rows = self._prior_rows(labels, codes.shape[0])
        means, trils, log_w = [], [], []
        for row in range(self.prior_slots // k):
            block = codes[rows.to(codes.device) == row].double().cpu().numpy()
            if len(block) < 2 * k:
                what = f"digit {row}" if self.conditional else "the training set"
                raise ValueError(f"{what} has {len(block)} codes: too few to fit {k} Gaussians to "
                                 f"(at least {2 * k}); lower prior_components")
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=0).fit(block)
            means.append(torch.from_numpy(gmm.means_))
            trils.append(torch.linalg.cholesky(torch.from_numpy(gmm.covariances_)))
            log_w.append(torch.from_numpy(gmm.weights_).log())
        self.prior_mean.copy_(torch.cat(means))
        self.prior_scale_tril.copy_(torch.cat(trils))
        self.prior_log_weight.copy_(torch.cat(log_w))

    # -- conditioning --------------------------------------------------------------------------
    def _onehot(self, labels: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        if labels is None:  # encoding needs the true class: no default here
            raise ValueError(f"{self.family} is conditional: pass labels (one per image)")
        return F.one_hot(self.check_labels(labels, n), self.num_classes).float()

    def _decode_logits(self, z: Tensor, labels: Tensor | None) -> Tensor:
        onehot = self._onehot(labels, z.shape[0])
        return self.decoder(z if onehot is None else torch.cat([z, onehot], dim=1))

    # -- abilities -----------------------------------------------------------------------------
    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Codes (B,latent_dim) for images (B,1,28,28); the posterior mean for VAEs."""
        return self.encoder(x, self._onehot(labels, x.shape[0]))[:, : self.config.latent_dim]

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images (B,1,28,28) in [0,1] for codes (B,latent_dim)."""
        out = self._decode_logits(z, labels)
        return out[:, :1].clamp(0, 1) if self.config.loss == "logistic" else torch.sigmoid(out)

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Decode the code of x (B,1,28,28): images (B,1,28,28) in [0,1] (the posterior mean for VAEs)."""
        return self.decode(self.encode(x, labels), labels)

    def reconstruction_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-image reconstruction loss (B,), summed over pixels: the decoder's negative log-likelihood in
        nats (for "mse" a Gaussian density on [0,1], which training uses as it is)."""
        if self.config.loss == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        elif self.config.loss == "logistic":
            return discretized_logistic_nll(target, *self._logistic_parameters(logits))
        else:
            sigma = self.config.mse_sigma
            per_pixel = 0.5 * ((torch.sigmoid(logits) - target) / sigma) ** 2 + math.log(sigma * math.sqrt(2 * math.pi))
        return per_pixel.flatten(1).sum(1)

    @staticmethod
    def _logistic_parameters(out: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-scale), each (B,1,28,28), of the discretized-logistic decoder output (B,2,28,28). The
        log-scale floor keeps a saturated pixel's probability finite (about 1/20 of a grey level)."""
        return out[:, :1], out[:, 1:].clamp(min=-9.0)

    def discrete_nll(self, logits: Tensor, target: Tensor) -> Tensor:
        """-ln P(target) per image (B,) under a decoder that is a distribution over discrete pixels: Bernoulli
        for "bce" (target in {0,1}); for "mse" the Gaussian integrated over each 8-bit bin."""
        if self.config.loss == "mse":
            return discretized_gaussian_nll(target, torch.sigmoid(logits), math.log(self.config.mse_sigma))
        return self.reconstruction_loss(logits, target)

    # -- training ------------------------------------------------------------------------------
    def model_input(self, x: Tensor) -> Tensor:
        """What the encoder sees in training (the denoising AE corrupts it)."""
        return x

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Mean reconstruction loss of the batch from its codes (of ``model_input``, so noisy for the DAE)."""
        x, y = batch
        labels = y if self.conditional else None
        logits = self._decode_logits(self.encode(self.model_input(x), labels), labels)
        recon = self.reconstruction_loss(logits, x).mean()
        return StepOutput(recon, {"loss": recon.item(), "recon": recon.item()})

    @torch.no_grad()
    def on_train_end(self, train_images: Tensor, train_labels: Tensor) -> None:
        """Fit the sampling prior to the training images' codes (a VAE with prior_components=0 keeps N(0, I))."""
        if not self.fitted_prior:
            return
        if getattr(self.config, "binarize", False):  # the codes of the data it trained on
            train_images = torch.bernoulli(train_images, generator=torch.Generator().manual_seed(0))
        codes = torch.cat([self.encode(xb.to(self.device), yb.to(self.device) if self.conditional else None)
                           for xb, yb in zip(train_images.split(512), train_labels.split(512))])
        self.fit_prior(codes.float(), train_labels if self.conditional else None)

    # -- sampling ------------------------------------------------------------------------------
    def sample_latents(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """z (n,latent_dim) from the model's prior (a conditional model's mixture needs the labels)."""
        eps = torch.randn((n, self.config.latent_dim), generator=generator).to(self.device)
        if self.prior_mean.dim() == 1:
            return self.prior_mean + eps @ self.prior_scale_tril.T
        k = self.config.prior_components
        rows = self._prior_rows(labels, n)
        weights = self.prior_log_weight.detach().float().cpu().view(-1, k)[rows].softmax(1)   # (n,k)
        slot = (rows * k + torch.multinomial(weights, 1, generator=generator).squeeze(1)).to(self.device)
        return self.prior_mean[slot] + torch.einsum("nij,nj->ni", self.prior_scale_tril[slot], eps)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None) -> Tensor:
        """Decode ``n`` codes drawn from the prior: images (N,1,28,28) in [0,1], in one step."""
        labels = self.check_labels(labels, n)
        images = self.decode(self.sample_latents(n, generator, labels), labels)
        if callback is not None:
            callback(SamplingStep(0, 1, images, images))
        return images


@register("dae")
class DenoisingAutoencoder(Autoencoder):
    """An autoencoder trained to undo Gaussian pixel noise."""

    Config = DAEConfig
    description = "Denoising autoencoder: learns to remove Gaussian pixel noise"

    def model_input(self, x: Tensor) -> Tensor:
        """x (B,1,28,28) with Gaussian noise of std ``noise_std``, clipped back to [0,1]."""
        return corrupt(x, self.config.noise_std)

    def denoise(self, noisy: Tensor, labels: Tensor | None = None) -> Tensor:
        """The reconstruction (B,1,28,28) in [0,1] of noisy images: the DAE learned to drop the noise."""
        return self.reconstruct(noisy, labels)


@register("vae")
class VAE(Autoencoder):
    """Variational autoencoder: a diagonal Gaussian posterior trained against N(0, I); it samples from
    N(0, I) or from a mixture fitted to its posterior means (``prior_components``)."""

    Config = VAEConfig
    likelihood = "bound"
    description = "Variational autoencoder (beta, and a Bernoulli, Gaussian or discretized-logistic decoder)"
    code_factor = 2

    def posterior(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B,latent_dim)."""
        mu, logvar = self.encoder(x, self._onehot(labels, x.shape[0])).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def _elbo_terms(self, x: Tensor, labels: Tensor | None, generator: torch.Generator | None = None,
                    sampling_prior: bool = False):
        """(reconstruction (B,), KL (B,)). Training measures KL to N(0, I) in closed form; with
        ``sampling_prior`` and a fitted prior it is the one-sample estimate log q(z|x) - log p(z) for
        the prior the model samples from, so the bound belongs to the model that draws the samples.
        With ``sampling_prior`` the reconstruction term is also the discrete one (``discrete_nll``)."""
        mu, logvar = self.posterior(x, labels)
        eps = (torch.randn(mu.shape, generator=generator).to(mu.device) if generator is not None
               else torch.randn_like(mu))
        z = mu + eps * torch.exp(0.5 * logvar)
        nll = self.discrete_nll if sampling_prior else self.reconstruction_loss
        recon = nll(self._decode_logits(z, labels), x)                           # (B,)
        if sampling_prior and self.fitted_prior:
            log_q = (-0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi))).sum(1)
            return recon, log_q - self.prior_log_prob(z, labels)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)               # (B,)
        return recon, kl

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Negative ELBO: reconstruction plus beta * KL, beta ramped up over ``kl_warmup_steps``."""
        x, y = batch
        if self.config.binarize:
            x = torch.bernoulli(x)
        recon, kl = self._elbo_terms(x, y if self.conditional else None)
        warm = self.config.kl_warmup_steps
        beta = self.config.beta * (min(1.0, (step + 1) / warm) if warm else 1.0)
        loss = recon.mean() + beta * kl.mean()
        return StepOutput(loss, {"loss": loss.item(), "recon": recon.mean().item(), "kl": kl.mean().item(),
                                 "beta": beta})

    def likelihood_benchmark(self) -> str:
        """Binarized digits for the Bernoulli decoder, 8-bit digits for the discretized ones."""
        return BINARIZED.key if self.config.loss == "bce" else EIGHT_BIT.key

    def likelihood_note(self) -> str:
        """How the bound was made, where the benchmark's data differs from the training data."""
        if self.config.loss == "bce" and not self.config.binarize:
            return "a Bernoulli decoder trained on grey levels, scored on the binarized test digits"
        return ""

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """Negative ELBO per image in bits/dim (B,): an upper bound on -log2 P(x) / dims, under the
        prior the model samples from (the fitted mixture when there is one). x is binarized (the bce
        decoder) or on the 8-bit grid (mse and logistic, integrated over each grey level's bin).

        A conditional model given no labels bounds p(x) = mean over classes of p(x | y) (the classes
        are equally likely in training): log p(x) >= logsumexp_y ELBO(x, y) - log K.
        """
        dims = x[0].numel()
        if self.conditional and labels is None:
            per_class = []
            for c in range(self.num_classes):
                y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
                recon, kl = self._elbo_terms(x, y, generator, sampling_prior=True)
                per_class.append(-(recon + kl))
            log_p = torch.stack(per_class).logsumexp(0) - math.log(self.num_classes)
            return -log_p / (dims * LOG2)
        recon, kl = self._elbo_terms(x, labels, generator, sampling_prior=True)
        return (recon + kl) / (dims * LOG2)


@register("cvae")
class ConditionalVAE(VAE):
    """A VAE whose encoder and decoder both see the digit's class."""

    Config = CVAEConfig
    conditional = True
    description = "Conditional VAE: choose which digit to draw"
