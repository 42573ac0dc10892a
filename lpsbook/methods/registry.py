"""Every similarity method by a short id: the registry the protocols and the book use.

One line per method: ``id: Entry(display name, builder)``.  The builder
makes a fresh, unfitted method for one model set and one split::

    builder(ms, seed, config, device, dataset) -> SimilarityMethod

where ``config`` is the second-order training setting of the run
(:class:`lpsbook.methods.lps.LPSConfig`; the baselines that train reuse its epochs,
learning rate and batch size).  Results are keyed by the id; tables and figures show the display name.

Adding a method is one class (a :class:`lpsbook.methods.estimator.SimilarityMethod`)
and one line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import baselines
from ..core.data import load_dataset
from ..core.errors import LpsbookError
from .graph import GraphLearner
from .lps import LPS, LPSConfig
from .probing import Probing
from .similarity import ActivationSimilarity, features_in_bf16, probe_images


@dataclass(frozen=True)
class Entry:
    name: str  # the display name tables and figures show
    kind: type  # the SimilarityMethod class it builds: what it reads is the class's ``reads``
    build: Callable  # build(ms, seed, config, device, dataset) -> an unfitted instance of ``kind``
    any_arch: bool = True  # False: runs lpsbook's ResNet-20 on images, so not on an imported population


def _flat_fc(ms, seed, config, device, rebasin=False, augment=0):
    flat = dict(layers=ms.layers[:1], epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                seed=seed, device=device, augment=augment)
    if rebasin:  # alignment is label-free: every model is aligned to one fixed model of the set, once
        return baselines.ReBasinFlat(reference_state=ms.state_dict(0), spec=ms.spec, **flat)
    return baselines.FlatFC(spec=ms.spec, **flat)


def _lps(ms, seed, config, device, aligned=True):
    return LPS(config, align_filters=aligned, align_channels=aligned, layers=ms.layers, seed=seed, device=device)


def _activations(measure):
    def build(ms, seed, config, device, dataset):
        data = dataset or load_dataset(ms.preset)
        return ActivationSimilarity(measure, probe_images(data, N_PROBE, seed), data.mean, data.std,
                                    bf16=features_in_bf16(ms.preset), device=device)
    return Entry(measure, ActivationSimilarity, build, any_arch=False)


def _entry(name, kind, build):
    """An entry whose builder needs only some of ``(ms, seed, config, device)``."""
    return Entry(name, kind, lambda ms, seed, config, device, dataset: build(ms, seed, config, device))


N_PROBE = 200  # probe images of the activation measures
PERMUTED_COPIES = 4  # extra randomly permuted copies of each training model, for the augmented FC layer
GRAPH_SETTINGS = dict(hidden=16, rounds=1, epochs=30, lr=1e-2)  # the graph learner on a 2-core CPU

REGISTRY: dict[str, Entry] = {
    "random": _entry("random prediction", baselines.RandomPrediction,
                     lambda ms, seed, config, device: baselines.RandomPrediction(seed=seed)),
    "fc": _entry("only one FC layer", baselines.FlatFC, _flat_fc),
    "frobenius": _entry("Frobenius+FC w/o alignment", LPS,
                        lambda ms, seed, config, device: _lps(ms, seed, config, device, aligned=False)),
    "lps": _entry("LPS", LPS, _lps),
    "weight_stats": _entry("weight statistics", baselines.WeightStatistics,
                           lambda ms, seed, config, device: baselines.WeightStatistics(seed=seed)),
    "rebasin_fc": _entry("re-basin + FC", baselines.ReBasinFlat,
                         lambda ms, seed, config, device: _flat_fc(ms, seed, config, device, rebasin=True)),
    "filter_norms": _entry("sorted filter norms", baselines.FilterNorms,
                           lambda ms, seed, config, device: baselines.FilterNorms(layers=ms.layers)),
    "fc_permaug": _entry("one FC layer + permutation augmentation", baselines.FlatFC,
                         lambda ms, seed, config, device: _flat_fc(ms, seed, config, device, augment=PERMUTED_COPIES)),
    "graph": _entry("graph learner (whole network)", GraphLearner,
                    lambda ms, seed, config, device: GraphLearner(seed=seed, device=device, spec=ms.spec,
                                                                              **GRAPH_SETTINGS)),
    "probing": Entry("probing (learned inputs)", Probing,
                     lambda ms, seed, config, device, dataset: Probing(seed=seed, device=device), any_arch=False),
    **{m: _activations(m) for m in ("rsa", "cka_linear", "cka_rbf", "dds_zscore_cosine", "dds_zscore_pearson",
                                    "dds_zscore_euclidean", "dds_none_linear")},
}


def method_id(key: str) -> str:
    """The registry id of ``key``, given as an id or as a display name."""
    if key in REGISTRY:
        return key
    for k, entry in REGISTRY.items():
        if entry.name == key:
            return k
    raise LpsbookError(f"unknown method {key!r}; choose from {', '.join(REGISTRY)}")


def display_name(key: str) -> str:
    """The name tables and figures show for method ``key``."""
    return REGISTRY[method_id(key)].name


def reads(key: str) -> str:
    """What method ``key`` looks at: ``"weights"`` or ``"activations"`` (its class's ``reads``)."""
    return REGISTRY[method_id(key)].kind.reads


def make(key: str, ms, seed: int = 0, config=None, device="cpu", dataset=None):
    """A fresh, unfitted method ``key`` (id or display name) for model set ``ms``; ``dataset`` is where the
    activation measures draw their probe images (default: the preset's data, :func:`lpsbook.core.data.load_dataset`)."""
    entry = REGISTRY[method_id(key)]
    if not entry.any_arch and getattr(ms.preset, "dataset", None) == "imported":
        raise LpsbookError(f"{entry.name} runs lpsbook's ResNet-20 on images: it cannot read a population imported "
                           "from checkpoints (the weight-space methods can: "
                           f"{', '.join(k for k, e in REGISTRY.items() if e.any_arch)})")
    return entry.build(ms, seed, config or LPSConfig(), device, dataset)
