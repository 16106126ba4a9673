"""Looking inside trained autoencoders: latent maps, manifolds, interpolations, anomaly scores.

Pure torch / numpy / scikit-learn, no Streamlit: the Autoencoders page calls these and only
draws the results. Every function takes a model in eval mode (any family with the ``encode``,
``decode`` and ``reconstruct`` abilities), never changes it, and returns CPU tensors or
DataFrames. Images are (N,1,28,28) float32 in [0,1], labels (N,) int64, codes (N,latent_dim).

Conditional models need a label to encode or decode. Where the caller has none (an uploaded
digit, a face, noise), ``reconstruct_best`` tries every class and keeps the one that
reconstructs best: a classifier-free choice that favours neither digits nor outliers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genlib.data import corrupt, mnist
from genlib.families.autoencoders.model import Autoencoder
from genlib.metrics import mean_squared_error
from genlib.model import GenerativeModel
# the set names and the AUROC are shared with other families (genlib.outliers); the page reads them here
from genlib.outliers import SOURCE_DIGITS, SOURCE_FACES, SOURCE_NOISE, score_sources  # noqa: F401
from genlib.outliers import auroc as anomaly_auroc  # noqa: F401

BATCH = 500


# -- small helpers ------------------------------------------------------------------------------------
def _labels_for(model: GenerativeModel, labels: Tensor | None) -> Tensor | None:
    """Labels on the model's device for a conditional model, None for an unconditional one."""
    if not model.conditional:
        return None
    if labels is None:
        raise ValueError(f"{model.family} is conditional: pass one label per image")
    labels = torch.as_tensor(labels)
    return model.check_labels(labels, labels.shape[0])


def _full(model: GenerativeModel, n: int, label: int | None) -> Tensor | None:
    """``n`` copies of ``label`` (default 0) for a conditional model, else None."""
    if not model.conditional:
        return None
    label = 0 if label is None else int(label)
    if not 0 <= label < model.num_classes:
        raise ValueError(f"label must be in 0..{model.num_classes - 1}, got {label}")
    return torch.full((n,), label, dtype=torch.long, device=model.device)


@torch.no_grad()
def encode(model: GenerativeModel, images: Tensor, labels: Tensor | None = None) -> Tensor:
    """Codes (N,latent_dim) for images (N,1,28,28), in batches; the posterior mean for VAEs."""
    out = []
    for start in range(0, images.shape[0], BATCH):
        xb = images[start:start + BATCH].to(model.device)
        yb = _labels_for(model, None if labels is None else labels[start:start + BATCH])
        out.append(model.encode(xb, yb).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.latent_dim)


@torch.no_grad()
def decode(model: GenerativeModel, z: Tensor, labels: Tensor | None = None) -> Tensor:
    """Images (N,1,28,28) in [0,1] for codes z (N,latent_dim)."""
    return model.decode(z.to(model.device), _labels_for(model, labels)).float().cpu()


def prior_stats(model: Autoencoder) -> tuple[Tensor, Tensor]:
    """(mean (D,), std (D,)) of the prior the model samples its codes from.

    A VAE with ``prior_components=0``: N(0, I) (its buffers keep that value). Otherwise the prior
    fitted to the training codes: for one Gaussian, its mean and the square root of the diagonal of
    L L^T (the row norms of the Cholesky factor L); for a mixture, the mixture's own mean and std
    (classes weighted equally for a conditional model).
    """
    means = model.prior_mean.detach().float().cpu()
    variances = model.prior_scale_tril.detach().float().cpu().pow(2).sum(-1)  # diag(L L^T): (D,) or (S,D)
    if means.dim() == 1:
        return means, variances.sqrt()
    k = model.config.prior_components
    weights = model.prior_log_weight.detach().float().cpu().view(-1, k).softmax(1).flatten()
    weights = weights / weights.sum()                                          # (S,)
    mean = (weights[:, None] * means).sum(0)
    second_moment = (weights[:, None] * (variances + means.pow(2))).sum(0)
    return mean, (second_moment - mean.pow(2)).clamp_min(0).sqrt()


# -- sampling and reconstruction ---------------------------------------------------------------------
@torch.no_grad()
def sample_grid(model: GenerativeModel, seed: int, n: int = 64, digit: int | None = None) -> tuple[Tensor, int]:
    """Samples from the prior and the grid width to show them with.

    Unconditional: ``n`` images, 8 per row. Conditional with ``digit=None``: one row per class
    (K*K images, row r = class r); with a ``digit``: ``n`` images of that class.
    Returns (images (N,1,28,28), nrow).
    """
    gen = torch.Generator().manual_seed(int(seed))
    if model.conditional and digit is None:
        labels = model.class_rows()
        return model.sample(len(labels), generator=gen, labels=labels).float().cpu(), model.num_classes
    labels = _full(model, n, digit)
    return model.sample(n, generator=gen, labels=labels).float().cpu(), 8


def test_subset(n: int = 16, seed: int | None = None) -> tuple[Tensor, Tensor, np.ndarray]:
    """``n`` test digits: the first ``n``, or a random ``n`` drawn with ``seed``.

    Returns (images (n,1,28,28), labels (n,), indices into the test split (n,)).
    """
    split = mnist()
    total = split.test_images.shape[0]
    if seed is None:
        idx = np.arange(min(n, total))
    else:
        idx = np.sort(np.random.default_rng(int(seed)).choice(total, size=min(n, total), replace=False))
    t = torch.from_numpy(idx)
    return split.test_images[t], split.test_labels[t], idx


def test_digit(index: int) -> tuple[Tensor, int]:
    """One test digit: (image (1,1,28,28), its label)."""
    split = mnist()
    if not 0 <= index < split.test_images.shape[0]:
        raise ValueError(f"index must be in 0..{split.test_images.shape[0] - 1}, got {index}")
    return split.test_images[index:index + 1], int(split.test_labels[index])


@torch.no_grad()
def reconstruct_best(model: GenerativeModel, images: Tensor) -> tuple[Tensor, Tensor | None]:
    """Reconstruct images (N,1,28,28) without knowing their labels.

    Unconditional models simply reconstruct. A conditional model reconstructs every image with
    each of its K classes and keeps, per image, the class with the lowest squared error.
    Returns (reconstructions (N,1,28,28), chosen labels (N,) or None).
    """
    if not model.conditional:
        out = [model.reconstruct(xb.to(model.device)).float().cpu() for xb in images.split(BATCH)]
        return (torch.cat(out) if out else images.clone()), None
    best_err = torch.full((images.shape[0],), float("inf"))
    best = images.clone()
    best_labels = torch.zeros(images.shape[0], dtype=torch.long)
    for k in range(model.num_classes):
        for start in range(0, images.shape[0], BATCH):
            xb = images[start:start + BATCH]
            rec = model.reconstruct(xb.to(model.device), _full(model, xb.shape[0], k)).float().cpu()
            err = mean_squared_error(rec, xb)
            better = err < best_err[start:start + BATCH]
            best_err[start:start + BATCH] = torch.where(better, err, best_err[start:start + BATCH])
            best[start:start + BATCH][better] = rec[better]
            best_labels[start:start + BATCH][better] = k
    return best, best_labels


@torch.no_grad()
def reconstructions(model: GenerativeModel, images: Tensor, labels: Tensor | None = None,
                    noise_std: float | None = None, seed: int = 0) -> dict[str, Tensor | None]:
    """Inputs, optionally corrupted inputs, and the model's outputs.

    images (N,1,28,28), labels (N,) (needed only by conditional models; without them the best
    class per image is chosen, see ``reconstruct_best``). ``noise_std=None``: a denoising model
    (``model.has("denoise")``) gets the noise it was trained on, other models clean inputs; a
    number corrupts the input with that std for any model (0 means clean). The noise comes
    from a ``torch.Generator`` seeded with ``seed``, so the same seed gives the same noise.

    Returns {"input": (N,1,28,28), "noisy": (N,1,28,28) or None, "output": (N,1,28,28),
    "mse": (N,) error of the output against the clean input, "labels": (N,) or None}.
    """
    images = images.float().cpu()
    if noise_std is None:
        noise_std = float(model.config.noise_std) if model.has("denoise") else 0.0
    noisy = corrupt(images, noise_std, generator=torch.Generator().manual_seed(int(seed))) if noise_std > 0 else None
    source = images if noisy is None else noisy
    if model.conditional and labels is None:
        output, labels = reconstruct_best(model, source)
    else:
        y = _labels_for(model, labels)
        output = model.reconstruct(source.to(model.device), y).float().cpu()
    return {"input": images, "noisy": noisy, "output": output, "mse": mean_squared_error(output, images),
            "labels": labels if model.conditional else None}


# -- latent space ----------------------------------------------------------------------------------
@torch.no_grad()
def latent_projection(model: GenerativeModel, images: Tensor, labels: Tensor, method: str = "pca",
                      max_points: int = 1000, seed: int = 0) -> pd.DataFrame:
    """A 2-D map of the codes of labelled images, for a scatter plot coloured by digit.

    images (N,1,28,28), labels (N,). The first ``max_points`` images are encoded (with their
    labels if the model is conditional). A 2-D latent is shown as it is; a larger one is
    projected with PCA or t-SNE (``method`` "pca" | "tsne", seeded with ``seed``).
    Returns a DataFrame with columns x, y (floats), label (int) and index (row in ``images``).
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    n = min(int(max_points), images.shape[0])
    codes = encode(model, images[:n], labels[:n]).numpy().astype(np.float64)
    if codes.shape[1] == 2:
        xy = codes
    elif method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(codes)
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (n - 1) / 3)), init="pca",
                  random_state=seed).fit_transform(codes)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "label": labels[:n].numpy().astype(int),
                         "index": np.arange(n)})


@torch.no_grad()
def manifold_grid(model: GenerativeModel, n: int = 15, label: int | None = None) -> Tensor:
    """Decode an n x n grid of codes spanning a 2-D latent space: (n*n,1,28,28).

    Only for ``latent_dim == 2``. VAEs sampling from N(0, I) use the standard-normal quantiles
    of linspace(0.05, 0.95, n) on each axis; models with a fitted prior span its mean +- 2 std.
    Row-major order: the top row has the largest z2, columns go from the smallest to the largest
    z1, so ``to_grid(images, nrow=n)`` shows the usual picture. Conditional models draw every
    cell as ``label`` (default 0).
    """
    if model.config.latent_dim != 2:
        raise ValueError(f"a manifold grid needs a 2-D latent space; this model has {model.config.latent_dim}")
    mean, std = prior_stats(model)
    if not model.fitted_prior:
        t = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    else:
        t = torch.linspace(-2.0, 2.0, n)
    z1 = mean[0] + t * std[0]
    z2 = mean[1] + t.flip(0) * std[1]
    zz2, zz1 = torch.meshgrid(z2, z1, indexing="ij")  # rows: z2 (top = largest), cols: z1
    z = torch.stack([zz1.reshape(-1), zz2.reshape(-1)], dim=1)
    return decode(model, z, _full(model, n * n, label))


@torch.no_grad()
def interpolate(model: GenerativeModel, x_a: Tensor, x_b: Tensor, steps: int = 10,
                labels: tuple[int, int] | None = None) -> Tensor:
    """Decode ``steps`` codes on the straight line from encode(x_a) to encode(x_b): (steps,1,28,28).

    x_a, x_b: single images (1,28,28) or (1,1,28,28). Conditional models need ``labels``
    (label_a, label_b): each image is encoded with its own label and the first half of the
    strip is decoded as label_a, the second half as label_b.
    """
    x_a, x_b = x_a.reshape(1, 1, *x_a.shape[-2:]), x_b.reshape(1, 1, *x_b.shape[-2:])
    if model.conditional and labels is None:
        raise ValueError(f"{model.family} is conditional: pass labels=(label_a, label_b)")
    la = lb = None
    if model.conditional:
        la, lb = torch.tensor([int(labels[0])]), torch.tensor([int(labels[1])])
    z_a, z_b = encode(model, x_a, la), encode(model, x_b, lb)
    t = torch.linspace(0.0, 1.0, steps).unsqueeze(1)
    z = (1 - t) * z_a + t * z_b
    dec_labels = None
    if model.conditional:
        dec_labels = torch.where(t.squeeze(1) < 0.5, la, lb).long()
    return decode(model, z, dec_labels)


@torch.no_grad()
def traverse(model: GenerativeModel, x: Tensor, dim: int, span: float = 3.0, steps: int = 11,
             label: int | None = None) -> Tensor:
    """Vary latent dimension ``dim`` of x's code, keep the others: (steps,1,28,28).

    The dimension runs over prior_mean[dim] + linspace(-span, span, steps) * prior_std[dim]:
    +-span standard deviations of the prior (std 1 for VAEs, the fitted std for AEs).
    x: one image (1,28,28) or (1,1,28,28); conditional models need its ``label``.
    """
    d = model.config.latent_dim
    if not 0 <= dim < d:
        raise ValueError(f"dim must be in 0..{d - 1}, got {dim}")
    x = x.reshape(1, 1, *x.shape[-2:])
    lab = None if not model.conditional else torch.tensor([0 if label is None else int(label)])
    z = encode(model, x, lab).repeat(steps, 1)
    mean, std = prior_stats(model)
    z[:, dim] = mean[dim] + torch.linspace(-span, span, steps) * std[dim]
    return decode(model, z, None if lab is None else lab.repeat(steps))


# -- anomaly detection --------------------------------------------------------------------------------
@torch.no_grad()
def anomaly_scores(model: GenerativeModel, digits: Tensor, faces: Tensor, noise: Tensor) -> pd.DataFrame:
    """Per-image reconstruction MSE for test digits, faces and noise (each (N,1,28,28)).

    A model trained on digits should reconstruct digits well and everything else badly, so the
    error works as an anomaly score. Conditional models use the best class for every image
    (``reconstruct_best``), the same rule for digits and outliers.
    Returns a DataFrame with columns score (float) and source (one of the SOURCE_* names).
    """
    return score_sources(lambda images: mean_squared_error(reconstruct_best(model, images)[0], images),
                         digits, faces, noise)


