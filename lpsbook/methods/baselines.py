"""Baseline similarity methods that read the weights.

Every method has the interface of :class:`lpsbook.methods.estimator.SimilarityMethod`
(``fit(models, task_labels)``, ``scores``, ``predict``, ``embed``,
``task_similarity``); ``models`` is a stacked state dict like
:attr:`lpsbook.training.modelset.ModelSet.state`.

* :class:`RandomPrediction`: the paper's chance level.
* :class:`FlatFC`: the paper's "only one FC layer": a linear classifier on
  the flattened weights; sensitive to the order of filters and channels.
* :class:`WeightStatistics`: Unterthiner et al. (2020): per-tensor summary
  statistics and a scikit-learn classifier; permutation-invariant by
  construction.
* :class:`ReBasinFlat`: Git Re-Basin weight matching (Ainsworth et al., 2023)
  to one reference model over ResNet-20's whole permutation structure, then
  :class:`FlatFC` on the aligned weights.
* :class:`FilterNorms`: every conv layer's filter norms, sorted; invariant,
  nothing to train (the smallest example of a method).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import LpsbookError
from .estimator import SimilarityMethod, num_models
from ..core.memo import Memo, digest
from ..core.nets import conv_layers
from ..core.progress import bar as progress_bar
from ..core.runtime import minibatch_sgd, one_thread
from ..core.symmetry import perm_sizes, permute_state, random_permutations, resnet20_spec, weight_matching

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _check_layers(state: dict, layers) -> list:
    layers = list(layers)
    if not layers:
        raise LpsbookError("layers is empty: name at least one state-dict key")
    unknown = [n for n in layers if n not in state]
    if unknown:
        raise LpsbookError(f"layers: unknown state-dict keys {unknown}; known keys include {sorted(state)[:6]}...")
    return layers


def flatten_layers(state: dict, layers) -> torch.Tensor:
    """Concatenate the flattened weights of ``layers``, model by model.

    Parameters
    ----------
    state : dict of str to Tensor
        Stacked state dict ``{key: [models, ...]}``.
    layers : sequence of str
        Keys of ``state``, in the order their values are concatenated.

    Returns
    -------
    Tensor
        ``[models, features]``, float32.
    """
    layers = _check_layers(state, layers)
    m = num_models({n: state[n] for n in layers})
    return torch.cat([state[n].reshape(m, -1).float() for n in layers], dim=1)


class RandomPrediction(SimilarityMethod):
    """Chance level: random class scores and random unit embeddings.

    Parameters
    ----------
    seed : int
        Seeds one generator created in :meth:`fit`; later calls draw from it
        in turn, so two calls (e.g. queries, then gallery) never share rows.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, models, y, n_classes):
        self.generator_ = torch.Generator().manual_seed(self.seed)

    def _scores(self, models):
        """Uniform random scores, ``[models, classes]``."""
        return torch.rand(num_models(models), len(self.classes_), generator=self.generator_)

    def _embed(self, models):
        """Random directions, uniform on the sphere, ``[models, max(classes, 2)]``."""
        z = torch.randn(num_models(models), max(len(self.classes_), 2), generator=self.generator_)
        return F.normalize(z, dim=1)


class FlatFC(SimilarityMethod):
    """The paper's "only one FC layer": a linear classifier on flattened weights.

    The weights of ``layers`` are flattened and concatenated, *standardised*
    (each feature minus its mean, divided by its standard deviation, both
    measured on the training models; constant features are only centred) and
    fed to one ``nn.Linear``.  It is trained with cross-entropy by SGD with
    momentum on mini-batches of models (seeded shuffling), the learning rate
    divided by 10 at 40 % and 80 % of the epochs.  The feature order is the
    order of the filters and channels, so the method is *not* invariant to
    permutations of the network.

    Parameters
    ----------
    layers : sequence of str
        State-dict keys (the paper: the first conv layer).
    epochs, lr, batch_size, momentum, weight_decay : training settings.
    seed : int
        Seeds the initialisation, the shuffling and the augmentation.
    device : str or torch.device
    augment : int
        Permutation augmentation: train on this many extra copies of every
        training model, each with its units permuted at random in every group
        of ResNet-20's symmetry (:func:`lpsbook.core.symmetry.random_permutations`):
        the same functions in other orders.  Needs every model's whole state.
    spec : PermutationSpec, optional
        The symmetry the augmentation draws from (default ResNet-20's).

    Notes
    -----
    :meth:`scores` returns the logits; :meth:`embed` returns the
    L2-normalised logits, as the authors' retrieval code does.
    """

    def __init__(self, layers=("conv1.weight",), epochs: int = 100, lr: float = 1e-2, batch_size: int = 16,
                 momentum: float = 0.9, weight_decay: float = 0.0, seed: int = 0, device="cpu", augment: int = 0,
                 spec=None):
        self.layers, self.augment, self.spec = tuple(layers), int(augment), spec
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.momentum, self.weight_decay, self.seed = float(momentum), float(weight_decay), seed
        self.device = torch.device(device)

    def _features(self, state) -> torch.Tensor:
        x = flatten_layers(state, self.layers)
        if x.shape[1] != self.mean_.numel():
            raise LpsbookError(f"layers {list(self.layers)} have {x.shape[1]} values per model here but "
                               f"{self.mean_.numel()} in training: same architecture needed")
        return ((x - self.mean_) / self.std_).to(self.device)

    def _fit(self, models, y, n_classes):
        if self.augment:
            models, y = permuted_copies(models, y, self.augment, self.seed, self.spec)
        x = flatten_layers(models, self.layers)
        self.mean_ = x.mean(0)
        std = x.std(0, correction=0)
        self.std_ = torch.where(std > 1e-12, std, torch.ones_like(std))
        with one_thread(self.device):
            self._train(self._features(models), y.to(self.device), n_classes)

    def _train(self, x, y, num_classes):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.linear_ = nn.Linear(x.shape[1], num_classes).to(self.device)
        opt = torch.optim.SGD(self.linear_.parameters(), lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        milestones = sorted({max(1, round(f * self.epochs)) for f in (0.4, 0.8)})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
        minibatch_sgd(lambda idx: F.cross_entropy(self.linear_(x[idx]), y[idx]), len(y), self.epochs,
                      self.batch_size, self.seed, opt, sched, self.device, "FlatFC")

    @torch.no_grad()
    def _scores(self, models):
        """Logits ``[models, classes]``."""
        return self.linear_(self._features(models)).cpu()

    def _embed(self, models):
        """L2-normalised logits ``[models, classes]``."""
        return F.normalize(self._scores(models), dim=1)


def permuted_copies(models: dict, labels: torch.Tensor, copies: int, seed: int = 0, spec=None) -> tuple:
    """``models`` and ``copies`` randomly permuted copies of each (whole networks, see :class:`FlatFC`),
    drawn from ``spec`` (default ResNet-20's)."""
    spec = spec or resnet20_spec()
    missing = sorted(spec.keys - set(models))
    if missing:
        raise LpsbookError(f"permutation augmentation needs every model's whole state; missing e.g. {missing[:3]}")
    g = torch.Generator().manual_seed(seed)
    out = {k: [v] for k, v in models.items()}
    for _ in range(copies):
        for i in range(num_models(models)):
            one = {k: v[i] for k, v in models.items()}
            for k, v in permute_state(one, random_permutations(spec, one, g), spec).items():
                out[k].append(v[None])
    return {k: torch.cat(v) for k, v in out.items()}, labels.repeat(copies + 1)


def parameter_keys(state: dict) -> list:
    """The learnable tensors of a state dict: every key but BatchNorm's running buffers."""
    return [k for k in state if not k.endswith(_BUFFERS) and state[k].is_floating_point()]


def weight_statistics(state: dict, layers) -> torch.Tensor:
    """Unterthiner et al. (2020) statistics of every tensor in ``layers``.

    For each tensor: mean, variance (population) and the quantiles
    :data:`QUANTILES` of its values (9 numbers).  They do not depend on the
    order of the values, so they are invariant to every permutation.

    Returns
    -------
    Tensor
        ``[models, 9 * len(layers)]``, float64.
    """
    layers = _check_layers(state, layers)
    m = num_models({n: state[n] for n in layers})
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    feats = []
    for n in layers:
        v = state[n].reshape(m, -1).double()
        feats += [v.mean(1, keepdim=True), v.var(1, correction=0, keepdim=True), torch.quantile(v, q, dim=1).T]
    return torch.cat(feats, dim=1)


class WeightStatistics(SimilarityMethod):
    """Per-tensor weight statistics + a scikit-learn classifier (Unterthiner et al., 2020).

    Parameters
    ----------
    layers : sequence of str, optional
        Tensors to summarise; by default every learnable tensor
        (:func:`parameter_keys`: all conv and BatchNorm weights and biases and
        the final FC layer), which for ResNet-20 includes the 19 3x3 convs.
    classifier : {"logistic", "boosting"}
        ``LogisticRegression`` or ``HistGradientBoostingClassifier``, after a
        ``StandardScaler``.
    max_iter : int
        Iterations of the classifier.
    seed : int

    Notes
    -----
    :meth:`scores` are class probabilities (columns follow ``classes_``).  :meth:`embed` needs no labels: it is the standardised
    statistics (scaler fitted on the training models), L2-normalised, so it
    also compares tasks never seen in training.
    """

    def __init__(self, layers=None, classifier: str = "logistic", max_iter: int = 2000, seed: int = 0):
        if classifier not in ("logistic", "boosting"):
            raise LpsbookError(f"classifier must be 'logistic' or 'boosting', got {classifier!r}")
        self.layers = None if layers is None else tuple(layers)
        self.classifier, self.max_iter, self.seed = classifier, int(max_iter), seed

    def _stats(self, state) -> np.ndarray:
        return weight_statistics(state, self.layers_).numpy()

    def _fit(self, models, y, n_classes):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.layers_ = list(self.layers) if self.layers is not None else parameter_keys(models)
        x = self._stats(models)
        y = y.numpy()
        if n_classes < 2:
            raise LpsbookError("labels: WeightStatistics needs models of at least two classes to fit")
        self.scaler_ = StandardScaler().fit(x)
        if self.classifier == "logistic":
            clf = LogisticRegression(max_iter=self.max_iter, random_state=self.seed)
        else:
            clf = HistGradientBoostingClassifier(max_iter=self.max_iter, random_state=self.seed)
        self.clf_ = clf.fit(self.scaler_.transform(x), y)

    def _scores(self, models):
        """Class probabilities ``[models, classes]``."""
        return torch.as_tensor(self.clf_.predict_proba(self.scaler_.transform(self._stats(models))))

    def _embed(self, models):
        """L2-normalised standardised statistics ``[models, 9 * tensors]``."""
        return F.normalize(torch.as_tensor(self.scaler_.transform(self._stats(models))), dim=1)


def _slice_norms(w: torch.Tensor, axis: int, n: int, *block) -> torch.Tensor:
    """Squared norm of each of the ``n`` (grouped) slices of ``w`` along ``axis`` (within ``block``, a
    ``start, stop`` of that axis, when given)."""
    return w.double().movedim(axis, 0)[slice(*block) if block else slice(None)].reshape(n, -1).pow(2).sum(1)


def canonical_permutations(state: dict, spec) -> dict:
    """Sort every permutation group by a key that no permutation changes.

    The key of unit ``i`` of a permutation is the summed squared norm of its
    slices in every ``(tensor, axis)`` the permutation acts on; a slice's norm
    does not depend on how the *other* axes are ordered.  Two networks that
    differ only by a permutation therefore get the same canonical form (up to
    exact ties).
    """
    perms = {}
    for name, n in perm_sizes(spec, state).items():
        key = sum(_slice_norms(state[k], axis, n, *block) for k, axis, *block in spec.perm_to_axes[name])
        perms[name] = torch.argsort(key, descending=True, stable=True)
    return perms


ALIGNED = Memo(5000)  # (reference, settings, layers, model digest) -> the model's aligned layers, shared by all fits


class ReBasinFlat(SimilarityMethod):
    """Git Re-Basin weight matching to a reference model, then :class:`FlatFC`.

    In :meth:`fit` the training model at position ``reference`` (in its
    canonical order) becomes the reference.  Every model (the training models,
    and later every model given to :meth:`scores` / :meth:`embed`) is first
    put into a canonical order
    (:func:`canonical_permutations`) and then aligned to the reference with
    :func:`lpsbook.core.symmetry.weight_matching` over ResNet-20's whole
    permutation structure (:func:`lpsbook.core.symmetry.resnet20_spec`).  A
    :class:`FlatFC` is trained on the aligned weights of ``layers``.  Starting
    the coordinate descent from the canonical order (instead of the model's
    arbitrary order) makes the result independent of how the model's units
    happen to be ordered.

    Parameters
    ----------
    layers : sequence of str
        Keys fed to the FC layer after alignment.
    reference : int
        Position of the reference among the training models.
    reference_state : dict, optional
        A fixed reference model's state dict instead (alignment uses no
        labels, so any model can serve; a fixed one lets alignments be reused
        across fits: they are memoised by the content of the weights).
    spec : PermutationSpec, optional
        The symmetry to align over (default :func:`lpsbook.core.symmetry.resnet20_spec`; a model set's
        ``spec`` for other architectures).
    canonical_start : bool
        Canonicalise before matching (see above); ``False`` matches from the
        model's own order, as Git Re-Basin does.
    max_iter : int
        Sweeps of weight matching.
    progress : bool
        Show a progress bar over the models being aligned.
    **flat_kwargs
        Passed to :class:`FlatFC` (epochs, lr, batch_size, seed, device, ...).

    Notes
    -----
    ``state`` must hold each model's whole ResNet-20 state dict (every key the
    permutation spec touches), not only ``layers``.
    """

    def __init__(self, layers=("conv1.weight",), reference: int = 0, canonical_start: bool = True,
                 max_iter: int = 100, progress: bool = True, reference_state: dict | None = None,
                 spec=None, **flat_kwargs):
        self.layers, self.reference = tuple(layers), int(reference)
        self.reference_state = reference_state
        self.canonical_start, self.max_iter, self.progress = canonical_start, int(max_iter), progress
        self.spec = spec or resnet20_spec()
        self.flat = FlatFC(layers=self.layers, **flat_kwargs)

    def align(self, state: dict) -> dict:
        """Every model of ``state`` aligned to the reference: ``{layer: [models, ...]}`` for ``layers``."""
        self.require_fit("align")
        return self._align(state)

    def _align(self, state: dict) -> dict:
        m = self._check_state(state)
        aligned = {n: [] for n in self.layers}
        ref_key = (digest(self.ref_),) + (self.canonical_start, self.max_iter)
        for i in progress_bar(range(m), desc="re-basin alignment", unit="model", disable=not self.progress, leave=False):
            model = {k: v[i] for k, v in state.items()}
            done = ALIGNED.get(ref_key + (self.layers, digest(model)), lambda: self._aligned_layers(model))
            for n in self.layers:
                aligned[n].append(done[n])
        return {n: torch.stack(v) for n, v in aligned.items()}

    def _aligned_layers(self, model: dict) -> dict:
        """One model aligned to the reference by weight matching: its ``layers``."""
        if self.canonical_start:
            model = permute_state(model, canonical_permutations(model, self.spec), self.spec)
        model = permute_state(model, weight_matching(self.ref_, model, self.spec, max_iter=self.max_iter), self.spec)
        return {n: model[n] for n in self.layers}

    def _check_state(self, state) -> int:
        m = num_models(state)
        _check_layers(state, self.layers)
        missing = sorted(self.spec.keys - set(state))
        if missing:
            raise LpsbookError(f"state lacks {len(missing)} keys of the permutation spec (e.g. {missing[:3]}); ReBasinFlat "
                               "needs every model's whole state dict to align it")
        return m

    def _fit(self, models, y, n_classes):
        state = models
        m = self._check_state(state)
        if not -m <= self.reference < m:
            raise LpsbookError(f"reference={self.reference} but there are only {m} training models")
        ref = (dict(self.reference_state) if self.reference_state is not None
               else {k: v[self.reference] for k, v in state.items()})
        if self.canonical_start:
            ref = permute_state(ref, canonical_permutations(ref, self.spec), self.spec)
        self.ref_ = ref
        self.flat.fit(self._align(state), y)

    def _scores(self, models):
        """The FC layer's logits on the aligned weights."""
        return self.flat.scores(self._align(models))

    def _embed(self, models):
        """L2-normalised logits on the aligned weights."""
        return self.flat.embed(self._align(models))


class FilterNorms(SimilarityMethod):
    """Each conv layer's filter norms, sorted: invariant to every permutation, nothing to train.

    The embedding is the standardised (on the training models), L2-normalised
    concatenation of every 3x3 conv layer's filter norms in descending order;
    classes are scored by the nearest class mean. ``layers``: the conv weights to read (default
    ResNet-20's 3x3 convs).
    """

    def __init__(self, layers=None):
        self.layers = None if layers is None else tuple(layers)

    def _features(self, models):
        layers = _check_layers(models, self.layers or [n for n in conv_layers() if n in models] or ["conv1.weight"])
        return torch.cat([models[n].double().flatten(2).norm(dim=2).sort(dim=1, descending=True).values
                          for n in layers], 1)

    def _fit(self, models, y, n_classes):
        x = self._features(models)
        self.mean_, self.std_ = x.mean(0), x.std(0).clamp_min(1e-12)

    def _embed(self, models):
        return F.normalize((self._features(models) - self.mean_) / self.std_, dim=1)
