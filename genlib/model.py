"""The written family contract: what every generative family is, declares and may do.

A family is one package in ``genlib/families/<name>/``. It subclasses ``GenerativeModel``, declares
its ``Config`` dataclass and registers itself (``@register("name")``). Three methods are the whole
required contract, and everything else has one default here, so the minimal family in the README
is complete:

    training_step(batch, step) -> StepOutput     batch = (images (B,*shape) in [0,1], labels (B,))
    configure_optimizers(lr) -> [Optimizer]      default: one Adam over all parameters
    sample(n, *, generator, labels, callback, **options) -> (N,*shape) in [0,1]

What a family declares (class attributes, each with a default):

    group, page         the page a family belongs to ("GANs", "pages/gans.py"); "" = Compare only
    data_kind           the data it consumes and produces (``DIGITS``: 1x28x28 in [0,1]); scoring
                        and Compare group models by it, so a model is only scored against its kind
    tiny_config         settings of a tiny model, so the tests can iterate the registry
    Sampling            its sampling options (a Config): the pages' widgets and the CLI's ``sample``
                        flags are generated from it, as ``train``'s are from ``Config``
    conditional         whether it takes class labels (then its Config has ``num_classes``)
    generative          False for a restorer (denoiser, super-resolution): its ``sample`` restores
                        fixed held-out items, so previews and checkpoints still show what it does
    trainable           False for a family that is only loaded, never built from settings or trained
                        (``hf-causal-lm``: any Hugging Face causal LM); it claims its library's folders
                        (``claim_folder``), and train panels and the contract's training tests leave it out
    likelihood          "exact" | "bound" | "estimate" when it implements ``bits_per_dim``; which of the
                        two benchmarks it answers (8-bit or binarized digits, ``genlib.likelihood``) is
                        ``likelihood_benchmark()``, since it can depend on the model's settings

Abilities are methods with one default each (``AbilityMissing``); a family has an ability when
it overrides the method, and pages show a tab only where ``model.has(ability)``:

    encode, decode, reconstruct, denoise    autoencoders
    likelihood                              bits_per_dim(x) -> (N,) bits per dimension of x, where x
                                            is the data of its ``likelihood_benchmark()``
    attention                               attention_maps(x0, t) -> {layer: (heads, Q, K)}
    edit                                    inpaint(x0, mask) and sdedit(x0, strength)
    upscale                                 upscale(x) -> (N,C,s*H,s*W), super-resolution
    text_attention                          attention_record(text) -> AttentionRecord, every layer's
                                            attention and per-head queries and keys (the explorer)

A family of a token kind (``data_kind.tokens`` > 0, such as ``TEXT``) samples integer ids (N,T) instead
of values in [0,1], and also writes ``decode_text(ids) -> str``: its previews and checkpoints then hold
text (samples.txt) instead of an image grid.

Every sampler reports through one callback payload, ``SamplingStep`` (as k-diffusion's samplers do),
and conditional families share one label check (``check_labels``) and one "one row per class"
helper (``class_rows``). The Trainer owns the loop (device, AMP, clipping, EMA, NaN checks,
cancel); the model owns what one step does, so a GAN overrides ``optimization_step`` to run two
optimizers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from genlib.config import Config, ConfigError

# ability -> the methods that provide it; a family has the ability when it overrides the first one
ABILITY_METHODS: dict[str, tuple[str, ...]] = {
    "encode": ("encode",), "decode": ("decode",), "reconstruct": ("reconstruct",), "denoise": ("denoise",),
    "likelihood": ("bits_per_dim",), "attention": ("attention_maps",), "edit": ("inpaint", "sdedit"),
    "upscale": ("upscale",), "text_attention": ("attention_record",),
}
ABILITIES = tuple(ABILITY_METHODS)
LIKELIHOOD_KINDS = ("exact", "bound", "estimate")


# -- data kinds --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataKind:
    """A kind of data a family consumes and produces, with the shape of one item.

    ``shape`` entries of None mean "any size" (photos of any size: (3, None, None)). ``dataset``
    names the offline training set in genlib.data (None when there is none). Models are scored and
    compared only against their own kind. ``tokens`` > 0 makes it a kind of token sequences: items
    are integer ids in [0, tokens) rather than values in [0, 1] (text: UTF-8 bytes, 256 of them).
    """

    name: str
    shape: tuple[int | None, ...]
    dataset: str | None
    description: str
    tokens: int = 0

    def fits(self, shape: Sequence[int]) -> bool:
        """True when one item of ``shape`` is of this kind."""
        return len(shape) == len(self.shape) and all(s is None or s == t for s, t in zip(self.shape, shape))

    def check(self, batch: Tensor, what: str = "samples") -> Tensor:
        """``batch`` (N,*shape) when it is a finite batch of this kind in [0,1]; else ValueError in words."""
        item = tuple(batch.shape[1:])
        if batch.ndim != len(self.shape) + 1 or not self.fits(item):
            want = "x".join("any" if s is None else str(s) for s in self.shape)
            raise ValueError(f"{what} of {self.name} should be N x {want}, got {'x'.join(map(str, batch.shape))}")
        if self.tokens:
            if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
                raise ValueError(f"{what} of {self.name} should be integer token ids, got {batch.dtype}")
            if batch.numel() and (batch.min() < 0 or batch.max() >= self.tokens):
                raise ValueError(f"{what} of {self.name} should be token ids in 0..{self.tokens - 1}")
        elif batch.numel() and not (torch.isfinite(batch).all() and batch.min() >= 0 and batch.max() <= 1):
            raise ValueError(f"{what} of {self.name} should be finite and in [0, 1]")
        return batch


DIGITS = DataKind("digits", (1, 28, 28), "mnist", "28x28 grey digits in [0,1] (the lab's MNIST split)")
FACES = DataKind("faces", (1, 28, 28), "faces", "28x28 grey faces in [0,1] (scikit-image's LFW subset)")


PHOTOS = DataKind("photos", (3, None, None), "photos",
                  "colour photos of any size in [0,1] (grey ones as three equal channels); trained on crops of the "
                  "bundled photos")
TEXT = DataKind("text", (None,), "pydoc",
                "text as UTF-8 bytes (token ids 0-255); trained on the Python documentation topics that install "
                "with Python", tokens=256)
KINDS_BY_DATASET = {kind.dataset: kind for kind in (DIGITS, FACES, PHOTOS, TEXT)}


def images_of_shape(shape: Sequence[int]) -> DataKind:
    """The kind of images a model from elsewhere draws (a hub diffusion pipeline of 3x32x32, say)."""
    shape = tuple(int(s) for s in shape)
    if DIGITS.fits(shape):
        return DIGITS
    return DataKind(f"images {'x'.join(map(str, shape))}", shape, None, "images with no offline training set")


# -- what a step and a sampler report ----------------------------------------------------------------------
@dataclass
class StepOutput:
    """What one training step reports: the loss to minimise and scalars to log."""

    loss: Tensor
    scalars: dict[str, float] = field(default_factory=dict)


@dataclass
class StepTools:
    """What the Trainer lends a model for one step: backward with AMP scaling and clipping."""

    backward_and_step: Callable[[Tensor, torch.optim.Optimizer, Sequence[nn.Parameter]], None]
    autocast: Callable[[], Any]
    step: int


@dataclass(frozen=True)
class SamplingStep:
    """The one callback payload of every sampler, once per step (a one-shot sampler calls it once).

    ``state`` is what the sampler holds entering the step (a diffusion model's x_t) and
    ``prediction`` its current guess of the final output; both (N,*shape) in [0,1].
    """

    step: int                 # 0-based index of this step
    num_steps: int
    state: Tensor
    prediction: Tensor
    t: int | None = None      # the diffusion timestep, for samplers that have one


SamplingCallback = Callable[[SamplingStep], None]


class AbilityMissing(NotImplementedError):
    """The family does not have this ability (``model.has(...)`` says so beforehand)."""


# -- configs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig(Config):
    """Base of every generative family's config."""


@dataclass(frozen=True)
class SamplingOptions(Config):
    """Base of a family's sampling options (``GenerativeModel.Sampling``); by default there are none.

    Each field is passed to ``sample`` as a keyword argument of the same name.
    """


class GenerativeModel(nn.Module):
    """Base class of every family. Subclasses set ``Config`` (and what they declare) and are created from a config."""

    family: ClassVar[str] = ""                      # set by @register
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    Sampling: ClassVar[type[SamplingOptions]] = SamplingOptions
    description: ClassVar[str] = ""
    group: ClassVar[str] = ""                       # Home groups shipped models by it; "" = Compare only
    page: ClassVar[str] = ""                        # the app page that drives it, from the repo root
    data_kind: ClassVar[DataKind] = DIGITS
    tiny_config: ClassVar[dict[str, Any]] = {}      # settings of a tiny model for the tests ({}: the defaults)
    conditional: ClassVar[bool] = False
    likelihood: ClassVar[str] = ""                  # exact | bound | estimate, with bits_per_dim
    generative: ClassVar[bool] = True               # False for restorers: sample() restores fixed held-out items
    trainable: ClassVar[bool] = True                # False for a family that is only loaded (a Hugging Face LM)
    abilities: ClassVar[frozenset[str]] = frozenset()  # derived from the overridden methods, never set

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.abilities = frozenset(name for name, methods in ABILITY_METHODS.items()
                                  if getattr(cls, methods[0]) is not getattr(GenerativeModel, methods[0]))
        if "likelihood" in cls.abilities and cls.likelihood not in LIKELIHOOD_KINDS:
            raise TypeError(f"{cls.__name__} implements bits_per_dim, so it must declare likelihood as one of "
                            f"{', '.join(LIKELIHOOD_KINDS)}")
        if cls.conditional and "num_classes" not in {f.name for f in fields(cls.Config)}:
            raise TypeError(f"{cls.__name__} is conditional, so its Config must have a num_classes setting")

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    # -- the three methods every family writes -------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        """Loss for one batch of (images (B,*shape) in [0,1], labels (B,))."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The optimizers ``optimization_step`` uses, at learning rate ``lr``; default one Adam over all parameters."""
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               callback: SamplingCallback | None = None) -> Tensor:
        """``n`` items (N,*shape) in [0,1]. Conditional families take ``labels`` (N,); a family with
        sampling options takes each of them as a keyword argument."""
        raise NotImplementedError

    # -- hooks with sensible defaults ------------------------------------------------------------
    def optimization_step(self, batch: tuple[Tensor, Tensor], optimizers: list[torch.optim.Optimizer],
                          tools: StepTools) -> StepOutput:
        """One optimisation step. Single-optimizer default; multi-optimizer families override."""
        with tools.autocast():
            out = self.training_step(batch, tools.step)
        tools.backward_and_step(out.loss, optimizers[0], list(self.parameters()))
        return out

    def on_train_end(self, train_images: Tensor, train_labels: Tensor) -> None:
        """Called once when training stops (finished or cancelled), e.g. to fit a latent prior. Default: nothing."""

    def card_notes(self) -> list[str]:
        """Sentences the model card adds about what this model does that its config alone does not say
        (how it samples, say). Default: none."""
        return []

    def held_out_metrics(self) -> dict[str, Any]:
        """Metrics a family measures itself on its data kind's held-out set, for kinds the shared evaluator
        does not score (digits are scored by genlib.scoring); stored in the run's metrics.json. Default: none."""
        return {}

    def trained_data(self) -> DataKind:
        """The kind of data this model was trained on and draws: the family's ``data_kind`` unless a
        setting changes it (a GAN trained on faces)."""
        return self.data_kind

    # -- sampling --------------------------------------------------------------------------------------
    def sampling_defaults(self) -> SamplingOptions:
        """This model's default sampling options (its own step count, say); the widgets start here."""
        return self.Sampling()

    def draw(self, n: int, options: SamplingOptions | dict[str, Any] | None = None, *,
             generator: torch.Generator | None = None, labels: Tensor | None = None,
             callback: SamplingCallback | None = None) -> Tensor:
        """``sample`` with the family's declared options: a ``Sampling`` instance, or a dict of
        changes to ``sampling_defaults()`` (validated; unknown keys refused). ``callback`` gets at
        least one ``SamplingStep``: a one-shot family that never calls it gets one call with its output."""
        if options is None or isinstance(options, dict):
            options = self.sampling_defaults().replace(**(options or {}))
        elif not isinstance(options, self.Sampling):
            raise ConfigError(f"{self.family} takes {self.Sampling.__name__} options, got {type(options).__name__}")
        calls = []

        def counted(step: SamplingStep) -> None:
            calls.append(step.step)
            callback(step)

        out = self.sample(n, generator=generator, labels=labels, callback=counted if callback else None,
                          **options.to_dict())
        if callback is not None and not calls:
            callback(SamplingStep(0, 1, out, out))
        return out

    def check_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        """Validated labels (n,) on the model's device; ``default_labels`` when a conditional model
        gets none; None for unconditional models (labels do not apply). ValueError in words."""
        if not self.conditional:
            return None
        if labels is None:
            return self.default_labels(n)
        labels = torch.as_tensor(labels)
        if labels.shape != (n,) or labels.is_floating_point() or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be {n} integers in 0..{self.num_classes - 1}")
        return labels.to(self.device).long()

    def default_labels(self, n: int) -> Tensor | None:
        """Labels used when a conditional model is sampled without any: 0..K-1 repeated."""
        if not self.conditional:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def class_rows(self, per_class: int | None = None) -> Tensor:
        """Labels for a grid with one row per class: K rows of ``per_class`` (default K), row r = class r."""
        k = self.num_classes
        return torch.arange(k, device=self.device).repeat_interleave(per_class or k)

    @property
    def num_classes(self) -> int:
        """Number of classes of a conditional model (its config's ``num_classes``); 0 otherwise."""
        return int(self.config.num_classes) if self.conditional else 0  # type: ignore[attr-defined]

    # -- abilities: one default each; a family has the ability when it overrides the method ------------
    def has(self, ability: str) -> bool:
        """True when the family overrides the ability's method (see ``ABILITY_METHODS``)."""
        if ability not in ABILITY_METHODS:
            raise ValueError(f"unknown ability {ability!r}; known: {', '.join(ABILITIES)}")
        return ability in self.abilities

    def _missing(self, ability: str) -> AbilityMissing:
        return AbilityMissing(f"{self.family or type(self).__name__} models cannot {ability}")

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Codes (N,D) of items (N,*shape)."""
        raise self._missing("encode")

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Items (N,*shape) in [0,1] of codes (N,D)."""
        raise self._missing("decode")

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The model's copy (N,*shape) of items x (N,*shape)."""
        raise self._missing("reconstruct")

    def denoise(self, noisy: Tensor, labels: Tensor | None = None) -> Tensor:
        """Clean items (N,*shape) estimated from noisy ones."""
        raise self._missing("denoise")

    def bits_per_dim(self, x: Tensor, labels: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """-log2 p(x) / dims (N,): exact, a bound or an estimate, as ``likelihood`` declares. x is the
        data of ``likelihood_benchmark()``: 8-bit digits (levels k/255) or binarized ones ({0, 1}).
        With ``labels`` None a conditional model scores p(x), the class marginalised out."""
        raise self._missing("score likelihoods")

    def likelihood_benchmark(self) -> str:
        """The benchmark ``bits_per_dim`` answers (a ``genlib.likelihood.BENCHMARKS`` key: "8-bit" or
        "binarized"), or "" when the model has no likelihood. A family whose answer depends on its
        settings overrides this; the default is the 8-bit digits."""
        return "8-bit" if self.has("likelihood") else ""

    def likelihood_uncertainty(self) -> float:
        """The estimator's own standard error of -log p(x) in nats per image, shared by every image (an AIS
        estimate of log Z); scoring adds it to the spread over the test digits. 0 for exact values and bounds."""
        return 0.0

    def likelihood_note(self) -> str:
        """Why this model has no likelihood on either benchmark, or a word on how its value was made
        (shown beside it); "" when there is nothing to say."""
        return ""

    def attention_maps(self, x0: Tensor | None, t: int, labels: Tensor | None = None,
                       generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """{layer name: attention probabilities (heads, Q, K)} of one item."""
        raise self._missing("show attention")

    def inpaint(self, x0: Tensor, mask: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                callback: SamplingCallback | None = None, **options: Any) -> Tensor:
        """Items (N,*shape) with the pixels where ``mask`` is 0 redrawn to fit the known ones (mask 1)."""
        raise self._missing("edit")

    def sdedit(self, x0: Tensor, strength: float, steps: int | None = None,
               generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """Items (N,*shape) re-imagined from x0 partly noised (``strength`` in (0,1])."""
        raise self._missing("edit")

    def upscale(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images (N,C,s*H,s*W) from (N,C,H,W): super-resolution by the family's ``scale``."""
        raise self._missing("upscale")

    def attention_record(self, text: str, labels: Tensor | None = None) -> Any:
        """Every layer's attention (heads, T, T) and per-head queries and keys on ``text``, as a
        ``genlib.families.transformers.attention.AttentionRecord``."""
        raise self._missing("show the attention of a text")

    # -- text: what a family of a token kind writes as well ------------------------------------------------
    def decode_text(self, ids: Tensor) -> str:
        """The text that token ids (T,) stand for."""
        raise self._missing("write text")

    # -- facts --------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model's parameters are."""
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    # -- checkpoint layout -------------------------------------------------------------------------
    # By default genlib.checkpoints writes the state dict as model.safetensors beside config.json and
    # loads it into ``cls(config)``. A family whose weights belong in another library's folder layout
    # (diffusion: a diffusers pipeline) sets ``own_checkpoint_layout`` and implements the first two
    # hooks; genlib.checkpoints still writes config.json, the side files, and does it atomically.
    own_checkpoint_layout: ClassVar[bool] = False

    def save_pretrained_files(self, folder: Path) -> None:
        """Write the weights (and their own configs) into ``folder``, which already exists."""
        raise NotImplementedError(f"{type(self).__name__} is saved by genlib.checkpoints as model.safetensors")

    @classmethod
    def from_folder(cls, folder: Path, config: ModelConfig) -> "GenerativeModel":
        """Build the model from files written by ``save_pretrained_files``; raise CheckpointError if unusable."""
        raise NotImplementedError(f"{cls.__name__} is loaded by genlib.checkpoints from model.safetensors")

    @classmethod
    def claim_folder(cls, folder: Path) -> dict[str, Any] | None:
        """The model config of a folder written by another library that this family loads as it is
        (it has no genlib config.json), or None if the folder is not one. May raise CheckpointError
        for a folder it recognises but cannot load."""
        return None
