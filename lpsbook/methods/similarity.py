"""Activation-based similarity of networks: the Duality Diagram Similarity framework.

DDS (Dwivedi et al., 2020) compares two networks through their features
``X`` (n images x d_x units) and ``Y`` (n x d_y) in three steps:

1. weight units and images (``Q`` and ``D``): here a per-unit
   *normalisation* over the n images, one of ``"none"``, ``"centre"``,
   ``"zscore"``;
2. ``f``: an n x n matrix of image-pair (dis)similarities per network,
   a distance (``"pearson"`` = 1 - correlation, ``"euclidean"``,
   ``"cosine"`` = 1 - cosine) or a kernel (``"linear"``, ``"rbf"``,
   ``"laplacian"``; bandwidths by the median heuristic unless given);
3. ``g``: a score comparing the two n x n matrices:

   ``"pearson_unbiased"``
       Pearson correlation of the U-centred (unbiased, Szekely-Rizzo)
       matrices.  U-centred matrices have zero row sums, so this is their
       cosine, i.e. CKA with the unbiased HSIC estimator when ``f`` is a kernel.
   ``"cka"``
       HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with the biased estimator
       (double centring ``HKH``), i.e. the standard CKA.
   ``"spearman"``
       Spearman correlation of the upper triangles (classic RSA).
   ``"pearson"``
       Pearson correlation of the upper triangles, without centring.

A :class:`Measure` holds one such choice; :data:`MEASURES` names the usual
ones.  Everything is batched over models in torch and runs on the GPU when
there is one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.data import normalise
from ..core.errors import LpsbookError
from .estimator import SimilarityMethod, check_labels, num_models
from ..core.memo import Memo, digest
from ..core.nets import PackedResNet20
from ..core.runtime import mixed_precision

NORMALISATIONS = ("none", "centre", "zscore")
DISTANCES = ("pearson", "euclidean", "cosine")
KERNELS = ("linear", "rbf", "laplacian")
COMPARISONS = ("pearson_unbiased", "cka", "spearman", "pearson")
MIN_IMAGES = 4  # U-centring needs n > 3


@dataclass(frozen=True)
class Measure:
    """One DDS similarity measure: normalisation, ``f`` and ``g``.

    Parameters
    ----------
    normalisation : {"none", "centre", "zscore"}
        Applied to each unit (feature column) over the n images.  ``"zscore"``
        uses the population standard deviation; constant units become 0.
    f : {"pearson", "euclidean", "cosine", "linear", "rbf", "laplacian"}
        Image-pair distance or kernel giving the n x n matrix.
    g : {"pearson_unbiased", "cka", "spearman", "pearson"}
        Comparison of two n x n matrices (see the module docstring).
    name : str, optional
        Label; defaults to ``"{normalisation}-{f}-{g}"``.
    gamma : float, optional
        Fixed kernel bandwidth for ``"rbf"`` (``exp(-gamma |x-y|^2)``) or
        ``"laplacian"`` (``exp(-gamma |x-y|_1)``), as in scikit-learn.  By
        default ``1 / (2 median |x-y|^2)`` and ``1 / median |x-y|_1`` over the
        image pairs of each network, which makes these kernels scale invariant.
    """

    normalisation: str
    f: str
    g: str
    name: str = ""
    gamma: float | None = None

    def __post_init__(self):
        for field, allowed in (("normalisation", NORMALISATIONS),
                               ("f", DISTANCES + KERNELS), ("g", COMPARISONS)):
            if getattr(self, field) not in allowed:
                raise LpsbookError(f"Measure {field}={getattr(self, field)!r} is not one of "
                                   f"{', '.join(allowed)}")
        if self.gamma is not None and (self.f not in ("rbf", "laplacian") or not self.gamma > 0):
            raise LpsbookError(f"Measure gamma={self.gamma!r}: a bandwidth needs f='rbf' or "
                               "'laplacian' and must be positive")
        if not self.name:
            object.__setattr__(self, "name", f"{self.normalisation}-{self.f}-{self.g}")


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("none", "pearson", "spearman", "rsa"),
    Measure("centre", "linear", "cka", "cka_linear"),
    Measure("centre", "rbf", "cka", "cka_rbf"),
    # unbiased linear CKA (Q = D = I, f linear, g on U-centred matrices)
    Measure("none", "linear", "pearson_unbiased", "dds_none_linear"),
    Measure("zscore", "pearson", "pearson_unbiased", "dds_zscore_pearson"),
    Measure("zscore", "euclidean", "pearson_unbiased", "dds_zscore_euclidean"),
    Measure("zscore", "cosine", "pearson_unbiased", "dds_zscore_cosine"),
    Measure("zscore", "laplacian", "pearson_unbiased", "dds_zscore_laplacian"),
)}
"""The usual measures by name: ``rsa`` (Dwivedi & Roig 2019), ``cka_linear`` and
``cka_rbf`` (Kornblith et al. 2019), and DDS variants (``dds_zscore_laplacian``
and ``dds_zscore_cosine`` are the paper's best)."""


def _measure(measure: Measure | str) -> Measure:
    if isinstance(measure, Measure):
        return measure
    if isinstance(measure, str) and measure in MEASURES:
        return MEASURES[measure]
    raise LpsbookError(f"measure={measure!r} is neither a Measure nor one of "
                       f"{', '.join(MEASURES)}")


def _as_tensor(x, arg: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError) as e:
        raise LpsbookError(f"{arg} is not an array of numbers ({e})") from None
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                  torch.int64, torch.uint8, torch.bool)):
        raise LpsbookError(f"{arg} must hold real numbers; got dtype {t.dtype}")
    return t


def _check_images(n: int, arg: str) -> None:
    if n < MIN_IMAGES:
        raise LpsbookError(f"{arg} has {n} rows (images); at least {MIN_IMAGES} are needed")


def _check_finite(x: torch.Tensor, arg: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise LpsbookError(f"{arg} contains NaN or infinite values")


def _normalise(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return x
    mean = x.mean(dim=-2, keepdim=True)
    x = x - mean
    if how == "zscore":
        std = x.square().mean(dim=-2, keepdim=True).sqrt()
        constant = std <= 16 * torch.finfo(x.dtype).eps * mean.abs()
        x = torch.where(constant, 0.0, x / std.masked_fill(constant, 1.0))
    return x


def _zero_diagonal(m: torch.Tensor) -> torch.Tensor:
    return m * (1 - torch.eye(m.shape[-1], dtype=m.dtype, device=m.device))


def _sq_euclidean(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(dim=-2, keepdim=True)  # translation-free; less cancellation
    sq = x.square().sum(-1)
    d2 = sq[..., :, None] + sq[..., None, :] - 2 * (x @ x.transpose(-1, -2))
    return _zero_diagonal(d2.clamp_min(0))


def _cosine_distance(x: torch.Tensor) -> torch.Tensor:
    # rows with zero norm count as uncorrelated with everything
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return _zero_diagonal(1 - x @ x.transpose(-1, -2))


def _upper(m: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(m.shape[-1], m.shape[-1], 1, device=m.device)
    return m[..., i, j]


def _median_upper(d: torch.Tensor) -> torch.Tensor:
    v = _upper(d).sort(dim=-1).values
    k = v.shape[-1]
    med = (v[..., (k - 1) // 2] + v[..., k // 2]) / 2
    return med.clamp_min(torch.finfo(d.dtype).tiny)[..., None, None]


def pairwise_matrix(features: torch.Tensor, measure: Measure | str) -> torch.Tensor:
    """The n x n (dis)similarity matrices ``f`` of several models at once.

    Parameters
    ----------
    features : torch.Tensor
        ``[models, n, d]`` features of n images (same images for all models).
    measure : Measure or str
        Its ``normalisation`` and ``f`` are used; a key of :data:`MEASURES`
        is accepted.

    Returns
    -------
    torch.Tensor
        ``[models, n, n]`` on the device and in the (floating) dtype of
        ``features``.  Distances have an exactly zero diagonal.
    """
    m = _measure(measure)
    x = _as_tensor(features, "features")
    if x.ndim != 3:
        raise LpsbookError(f"features must be a [models, n, d] tensor; got shape {tuple(x.shape)}")
    _check_images(x.shape[1], "features")
    if not x.is_floating_point():
        x = x.double()
    x = _normalise(x, m.normalisation)
    if m.f == "linear":
        return x @ x.transpose(-1, -2)
    if m.f == "cosine":
        return _cosine_distance(x)
    if m.f == "pearson":
        return _cosine_distance(x - x.mean(dim=-1, keepdim=True))
    if m.f == "laplacian":
        d1 = torch.cdist(x, x, p=1)
        gamma = m.gamma if m.gamma is not None else 1 / _median_upper(d1)
        return torch.exp(-gamma * d1)
    d2 = _sq_euclidean(x)
    if m.f == "euclidean":
        return d2.sqrt()
    gamma = m.gamma if m.gamma is not None else 1 / (2 * _median_upper(d2))  # rbf
    return torch.exp(-gamma * d2)


def _double_centre(k: torch.Tensor) -> torch.Tensor:
    return (k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True)
            + k.mean((-1, -2), keepdim=True))


def _u_centre(k: torch.Tensor) -> torch.Tensor:
    n = k.shape[-1]
    k = _zero_diagonal(k)
    total = k.sum((-1, -2), keepdim=True) / ((n - 1) * (n - 2))
    k = k - k.sum(-1, keepdim=True) / (n - 2) - k.sum(-2, keepdim=True) / (n - 2) + total
    return _zero_diagonal(k)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank) along the last axis."""
    s = v.sort(dim=-1).values.contiguous()
    v = v.contiguous()
    lo = torch.searchsorted(s, v, side="left")
    hi = torch.searchsorted(s, v, side="right")
    return (lo + hi + 1).to(v.dtype) / 2


def _vectors(mats: torch.Tensor, g: str) -> torch.Tensor:
    """[models, n, n] -> [models, p] vectors whose Pearson correlation is ``g``."""
    if g == "cka":  # double-centred matrices have zero mean: Pearson = cosine = CKA
        return _double_centre(mats).flatten(-2)
    if g == "pearson_unbiased":  # U-centred: zero mean upper triangle too
        return _upper(_u_centre(mats))
    if g == "spearman":
        return _ranks(_upper(mats))
    return _upper(mats)


def _default_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def similarity_matrix(features, measure: Measure | str, device=None, batch: int = 16,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Similarity of every pair of models, all pairs at once.

    The dot products of :func:`embedding`'s rows (made exactly symmetric).

    Parameters
    ----------
    features : torch.Tensor or sequence of array-like
        A ``[models, n, d]`` tensor, or one ``[n, d_i]`` array per model
        (unit counts may differ; nothing is padded).  Row ``j`` must be the
        same image for every model.
    measure : Measure or str
        A :class:`Measure` or a key of :data:`MEASURES`.
    device : str or torch.device, optional
        Where to compute; default CUDA when available, else CPU.
    batch : int
        How many models' n x n matrices are computed in one go (memory bound).
    dtype : torch.dtype
        Compute precision (default float64).

    Returns
    -------
    torch.Tensor
        ``[models, models]`` symmetric, float64, on the CPU.  For every ``g``
        the diagonal is 1 (NaN for a model whose matrix is constant, e.g.
        all-constant features).
    """
    e = embedding(features, measure, device, batch, dtype)
    s = e @ e.T
    return (s + s.T) / 2


def embedding(features, measure: Measure | str, device=None, batch: int = 16,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """One unit vector per model whose dot products are ``measure``'s similarities.

    Arguments as in :func:`similarity_matrix`.  Returns ``[models, p]``
    float64 on the CPU: each model's n x n matrix ``f``, prepared for ``g``
    (centred, U-centred or ranked), flattened, centred and L2-normalised
    (a constant matrix gives NaN, as it should).
    """
    m = _measure(measure)
    if not isinstance(batch, int) or batch < 1:
        raise LpsbookError(f"batch={batch!r} must be a positive integer")
    if isinstance(features, (torch.Tensor, np.ndarray)):
        t = _as_tensor(features, "features")
        if t.ndim != 3:
            raise LpsbookError("features must be a [models, n, d] tensor or a list of [n, d] "
                               f"arrays; got shape {tuple(t.shape)}")
        items = list(t)
        names = [f"features[{i}]" for i in range(len(items))]
    elif isinstance(features, Sequence) and not isinstance(features, str):
        items, names = [], []
        for i, f in enumerate(features):
            t = _as_tensor(f, f"features[{i}]")
            if t.ndim != 2:
                raise LpsbookError(f"features[{i}] must be a 2-D [n, d] array; "
                                   f"got shape {tuple(t.shape)}")
            items.append(t)
            names.append(f"features[{i}]")
    else:
        raise LpsbookError("features must be a [models, n, d] tensor or a list of [n, d] arrays; "
                           f"got {type(features).__name__}")
    if not items:
        raise LpsbookError("features holds no models")
    n = items[0].shape[0]
    for t, name in zip(items, names):
        if t.shape[0] != n:
            raise LpsbookError(f"{name} has {t.shape[0]} rows (images) but {names[0]} has {n}; "
                               "all models must see the same images")
        if t.shape[1] == 0:
            raise LpsbookError(f"{name} has no units (columns)")
        _check_finite(t, name)
    _check_images(n, names[0])
    dev = _default_device(device)
    vecs, i = [], 0
    while i < len(items):  # group consecutive models with the same width
        j = i + 1
        while j < len(items) and j - i < batch and items[j].shape == items[i].shape:
            j += 1
        x = torch.stack(items[i:j]).to(device=dev, dtype=dtype)
        vecs.append(_vectors(pairwise_matrix(x, m), m.g))
        i = j
    v = torch.cat(vecs)
    v = v - v.mean(-1, keepdim=True)
    return (v / v.norm(dim=-1, keepdim=True)).to(device="cpu", dtype=torch.float64)


def similarity(features_a, features_b, measure: Measure | str, device=None,
               dtype: torch.dtype = torch.float64) -> float:
    """Similarity of two models' features of the same n images.

    Parameters
    ----------
    features_a, features_b : array-like
        ``[n, d_a]`` and ``[n, d_b]``.
    measure : Measure or str
        A :class:`Measure` or a key of :data:`MEASURES`.
    device, dtype
        As in :func:`similarity_matrix`.

    Returns
    -------
    float
    """
    a, b = _as_tensor(features_a, "features_a"), _as_tensor(features_b, "features_b")
    for t, arg in ((a, "features_a"), (b, "features_b")):
        if t.ndim != 2:
            raise LpsbookError(f"{arg} must be a 2-D [n, d] array; got shape {tuple(t.shape)}")
    if a.shape[0] != b.shape[0]:
        raise LpsbookError(f"features_a has {a.shape[0]} rows (images) but features_b has "
                           f"{b.shape[0]}; both models must see the same images")
    try:
        return float(similarity_matrix([a, b], measure, device=device, dtype=dtype)[0, 1])
    except LpsbookError as e:
        msg = str(e).replace("features[0]", "features_a").replace("features[1]", "features_b")
        raise LpsbookError(msg) from None


# --- activation measures as similarity methods ---------------------------------------------------

@torch.no_grad()
def penultimate_features(net, images: torch.Tensor, mean, std, batch: int = 1024,
                         bf16: bool = False) -> torch.Tensor:
    """Globally pooled last-stage features of one first-order network (float32).

    ``bf16``: compute in bfloat16 autocast with channels_last, as the model set
    was trained (see :func:`lpsbook.core.runtime.mixed_precision`); on a CPU with
    native bf16 this is about five times faster, and the features differ from
    float32's by well under 1 % of their scale.
    """
    import contextlib

    net.eval()
    layout = torch.channels_last if bf16 else torch.contiguous_format
    net = net.to(memory_format=layout)
    device = next(net.parameters()).device
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        return torch.cat([net.features(normalise(images[i:i + batch], mean, std).contiguous(memory_format=layout))
                          .float() for i in range(0, len(images), batch)])


@torch.no_grad()
def models_features(models: dict, images: torch.Tensor, mean, std, bf16: bool = False, pack: int = 5,
                    batch: int = 256) -> torch.Tensor:
    """:func:`penultimate_features` of every model in ``models`` (stacked weights), ``[models, n, d]``.

    The models run ``pack`` at a time as one packed network (grouped
    convolutions): the same numbers as one by one, about a third faster on a CPU.
    """
    import contextlib

    w = models["conv1.weight"]
    layout = torch.channels_last if bf16 else torch.contiguous_format
    out = []
    for start in range(0, num_models(models), pack):
        states = [{k: v[i] for k, v in models.items()} for i in range(start, min(start + pack, len(w)))]
        net = PackedResNet20.from_state_dicts(states, w.shape[1], w.shape[2]).to(w.device).eval()
        net = net.to(memory_format=layout)
        cast = torch.autocast(w.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), cast:
            feats = [net.features(normalise(images[i:i + batch], mean, std).repeat(1, len(states), 1, 1)
                                  .contiguous(memory_format=layout)).float().view(-1, len(states), net.fc_weight.shape[-1])
                     for i in range(0, len(images), batch)]
        out.append(torch.cat(feats).transpose(0, 1))
    return torch.cat(out)


def features_in_bf16(preset) -> bool:
    """Whether the features of a preset's models are computed in bf16 (as they were trained, on this CPU)."""
    return mixed_precision(preset, "cpu")


def probe_images(dataset, n_probe: int = 200, seed: int = 0) -> torch.Tensor:
    """``n_probe`` test images of ``dataset``, drawn without replacement (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return dataset.test_images[torch.randperm(len(dataset.test_images), generator=g)[:n_probe]]


FEATURES = Memo(8)  # the last features computed by ActivationSimilarity, by content of models and probes


class ActivationSimilarity(SimilarityMethod):
    """A DDS measure (:data:`MEASURES`) as a similarity method: it reads the models' features.

    Every model is run on the same probe images; two models are as similar
    as ``measure`` says their penultimate features are.  Fitting learns only
    the class means of the embeddings (for :meth:`scores`); no weights are
    trained.

    Parameters
    ----------
    measure : str or Measure
    images : Tensor [n, C, H, W]
        Probe images (unnormalised, as the dataset stores them).
    mean, std : the dataset's normalisation.
    bf16 : bool
        Compute the features in bf16 (see :func:`penultimate_features`).
    device : compute device of the measure (default: CUDA when present).
    """

    reads = "activations"
    lazy_centroids = True  # the similarity protocol never asks for scores: no features of the training models

    def __init__(self, measure: Measure | str, images: torch.Tensor, mean, std, bf16: bool = False, device=None):
        self.measure, self.images, self.mean, self.std = _measure(measure), images, mean, std
        self.bf16, self.device = bf16, device

    def features(self, models: dict) -> torch.Tensor:
        """Every model's penultimate features on the probe images, ``[models, n, d]``.

        They are remembered by content (:data:`FEATURES`): the measures of one
        protocol read the same models on the same probes, and compute them once.
        """
        return FEATURES.get(digest(models, self.images, self.mean, self.std, self.bf16),
                            lambda: models_features(models, self.images, self.mean, self.std, bf16=self.bf16))

    def _fit(self, models, y, n_classes):
        pass  # nothing to learn beyond the class means (the base class keeps them)

    def _embed(self, models):
        return embedding(self.features(models), self.measure, device=self.device)

    def task_similarity(self, models: dict, task_labels) -> tuple:
        """``(tasks, [T, T])``: the mean similarity of the two tasks' models (distinct tasks; diagonal 1)."""
        labels = check_labels(task_labels, num_models(models))
        e = self.embed(models)
        pair = e @ e.T
        tasks = torch.unique(labels)
        sim = torch.ones(len(tasks), len(tasks), dtype=torch.float64)
        for i, s in enumerate(tasks):
            for j, u in enumerate(tasks):
                if i != j:
                    sim[i, j] = pair[labels == s][:, labels == u].mean()
        return tasks, sim

    def __repr__(self) -> str:
        return f"ActivationSimilarity({self.measure.name!r}, {len(self.images)} probe images)"
