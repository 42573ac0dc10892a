"""Every similarity method by a short id: the registry the protocols and the book use.

One line per method: ``id: Entry(display name, builder)``.  The builder
makes a fresh, unfitted method for one model set and one split::

    builder(ms, seed, config, device) -> SimilarityMethod

where ``config`` is the second-order training setting of the run
(:class:`lpsbook.lps.LPSConfig`; the baselines that train reuse its epochs,
learning rate and batch size).  Results are reported under the display name.

Adding a method is one class (a :class:`lpsbook.estimator.SimilarityMethod`)
and one line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import baselines
from .errors import LpsbookError


@dataclass(frozen=True)
class Entry:
    name: str  # the display name results are reported under
    build: Callable  # build(ms, seed, config, device) -> an unfitted SimilarityMethod
    reads: str = "weights"  # or "activations"


def _flat_fc(ms, seed, config, device, rebasin=False, augment=0):
    flat = dict(layers=ms.layers[:1], epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                seed=seed, device=device, augment=augment)
    if rebasin:  # alignment is label-free: every model is aligned to one fixed model of the set, once
        return baselines.ReBasinFlat(reference_state=ms.state_dict(0), **flat)
    return baselines.FlatFC(**flat)


def _lps(ms, seed, config, device, aligned=True):
    from .lps import LPS

    return LPS(config, align_filters=aligned, align_channels=aligned, seed=seed, device=device)


def _activations(measure):
    def build(ms, seed, config, device):
        from .data import load_dataset
        from .similarity import ActivationSimilarity, features_in_bf16, probe_images

        data = load_dataset(ms.preset)
        return ActivationSimilarity(measure, probe_images(data, N_PROBE, seed), data.mean, data.std,
                                    bf16=features_in_bf16(ms.preset), device=device)
    return build


def _graph(seed, device, **settings):
    from .graph import GraphLearner

    return GraphLearner(seed=seed, device=device, **{**GRAPH_SETTINGS, **settings})


def _probing(seed, device, **settings):
    from .probing import Probing

    return Probing(seed=seed, device=device, **settings)


def _seeded(cls):
    return lambda ms, seed, config, device: cls(seed=seed)


N_PROBE = 200  # probe images of the activation measures
PERMUTED_COPIES = 4  # extra randomly permuted copies of each training model, for the augmented FC layer
GRAPH_SETTINGS = dict(hidden=16, rounds=1, epochs=30, lr=1e-2)  # the graph learner on a 2-core CPU

REGISTRY: dict[str, Entry] = {
    "random": Entry("random prediction", _seeded(baselines.RandomPrediction)),
    "fc": Entry("only one FC layer", _flat_fc),
    "frobenius": Entry("Frobenius+FC w/o alignment", lambda ms, seed, config, device: _lps(ms, seed, config, device, False)),
    "lps": Entry("LPS", _lps),
    "weight_stats": Entry("weight statistics", _seeded(baselines.WeightStatistics)),
    "rebasin_fc": Entry("re-basin + FC", lambda ms, seed, config, device: _flat_fc(ms, seed, config, device, rebasin=True)),
    "filter_norms": Entry("sorted filter norms", lambda ms, seed, config, device: baselines.FilterNorms()),
    "fc_permaug": Entry("one FC layer + permutation augmentation",
                        lambda ms, seed, config, device: _flat_fc(ms, seed, config, device, augment=PERMUTED_COPIES)),
    "graph": Entry("graph learner (whole network)", lambda ms, seed, config, device: _graph(seed, device)),
    "probing": Entry("probing (learned inputs)", lambda ms, seed, config, device: _probing(seed, device), "activations"),
    "rsa": Entry("rsa", _activations("rsa"), "activations"),
    "cka_linear": Entry("cka_linear", _activations("cka_linear"), "activations"),
    "cka_rbf": Entry("cka_rbf", _activations("cka_rbf"), "activations"),
    "dds_zscore_cosine": Entry("dds_zscore_cosine", _activations("dds_zscore_cosine"), "activations"),
    "dds_zscore_pearson": Entry("dds_zscore_pearson", _activations("dds_zscore_pearson"), "activations"),
    "dds_zscore_euclidean": Entry("dds_zscore_euclidean", _activations("dds_zscore_euclidean"), "activations"),
    "dds_none_linear": Entry("dds_none_linear", _activations("dds_none_linear"), "activations"),
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
    """The name a method's results are reported under."""
    return REGISTRY[method_id(key)].name


def reads(key: str) -> str:
    """What method ``key`` looks at: ``"weights"`` or ``"activations"``."""
    return REGISTRY[method_id(key)].reads


def make(key: str, ms, seed: int = 0, config=None, device="cpu"):
    """A fresh, unfitted method ``key`` (id or display name) for model set ``ms``."""
    from .lps import LPSConfig

    return REGISTRY[method_id(key)].build(ms, seed, config or LPSConfig(), device)
