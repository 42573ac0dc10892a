"""Analyses of a model set that are not protocols: what training did to the weights, maps of the
models, longer training, whether a method sees through the symmetry, what methods cost.

* :func:`weight_movement` (chapters 4, 5, 10): how far each conv layer moved from its initialisation;
* :func:`model_maps` (chapter 4): 2-D UMAP maps of raw weights and LPS features;
* :func:`training_length_comparison` (chapter 7): the book's recipe against a longer one;
* :func:`symmetry_check` (chapter 9): invariant to the network's symmetry, and only to it?
* :func:`costs` (chapter 9): seconds and memory per method.
"""
from __future__ import annotations

import numpy as np
import torch

from ..methods.lps import LPS
from ..methods.registry import reads
from ..core.nets import init_state
from ..protocols.paper import classification
from ..protocols.results import classification_split, default_config
from ..core.symmetry import permute_group, permute_state, random_permutations, resnet20_spec
from ..training.packed import model_rng_seed


def relative_movement(preset, task_ids, train_seeds, weights: dict) -> dict:
    """``{layer: [||W - W0|| / ||W0|| per model]}`` of stacked ``weights`` (``{layer: [M, ...]}``), each model's
    ``W0`` re-created from its task and recorded training seed (:func:`lpsbook.core.nets.init_state`)."""
    rel = {name: [] for name in weights}
    for i, (task, seed) in enumerate(zip(task_ids, train_seeds)):
        start = init_state(preset.width, preset.in_channels, model_rng_seed(preset.task_number(int(task)), int(seed)))
        for name, w in weights.items():
            rel[name].append(((w[i] - start[name]).norm() / start[name].norm()).item())
    return rel


def weight_movement(ms) -> "pandas.DataFrame":
    """How far training moved each conv layer from its initialisation, per model.

    One row per conv layer: the mean, minimum and maximum over models of the
    relative Frobenius change :func:`relative_movement`. A set whose weights
    barely moved cannot say much about its tasks through its weights.
    """
    import pandas as pd

    rel = relative_movement(ms.preset, ms.meta.task_id, ms.meta.train_seed,
                            {name: ms.conv_weights[name] for name in ms.layers})
    return pd.DataFrame({"mean": {n: float(np.mean(v)) for n, v in rel.items()},
                         "min": {n: float(np.min(v)) for n, v in rel.items()},
                         "max": {n: float(np.max(v)) for n, v in rel.items()}}).rename_axis("layer")


def model_maps(ms, layer_index: int = 1) -> dict:
    """2-D UMAP maps of all models: by raw conv weights and by LPS features.

    The LPS branch of layer ``layer_index`` (1-based) is trained on the
    classification split 0, so the map shows training and held-out models
    alike.  Returns ``{"task_id": [...], "maps": {title: [[x, y], ...]}, "held_out": [...]}``.
    """
    import warnings

    import umap

    name = ms.layers[layer_index - 1]
    train, test = classification_split(ms, 0)
    labels = ms.task_ids
    lps = LPS(default_config(ms), branch_weights={name: 1.0}).fit(ms.state_of(train), labels[train])

    def reducer(x):
        with warnings.catch_warnings():  # a fixed random_state runs UMAP on one thread, and says so
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return umap.UMAP(n_neighbors=15, random_state=0).fit_transform(x).tolist()

    return {"task_id": labels.tolist(), "held_out": sorted(int(i) for i in test),
            "maps": {f"raw weights of {name}": reducer(ms.conv_weights[name].flatten(1).numpy()),
                     f"LPS features of {name}": reducer(lps.embed(ms.state).numpy())}}


def training_length_comparison(ms, longer, seeds: int = 3, methods=("random", "lps", "weight_stats")) -> dict:
    """Task classification on the models of ``ms`` whose tasks ``longer`` has, beside ``longer`` itself.

    ``longer`` is a model set of some of ``ms``'s tasks trained for longer;
    the two are compared on the same protocol, with each recipe's epochs and
    mean model accuracy: ``{label: classification result}``.
    """
    tasks = list(longer.preset.tasks)
    short = ms.subset(ms.meta["classes"].map(tuple).isin(tasks).to_numpy())
    short.meta["task_id"] = short.meta["task_id"].rank(method="dense").astype(int) - 1
    out = {}
    factor = longer.preset.epochs / ms.preset.epochs
    for label, s in (("recipe of the book", short), (f"{factor:g}x longer", longer)):
        r = classification(s, methods=methods, seeds=seeds, config=default_config(s))
        r.extras.update(epochs=s.preset.epochs, test_acc_mean=float(s.meta["test_acc"].mean()), tasks=len(tasks))
        out[label] = r.to_dict()
    return out


def symmetry_check(ms, methods: dict, rows=None, seed: int = 0) -> dict:
    """Does each method see through the network's symmetry, and only through it?

    Each (unfitted) method of ``methods = {name: method}`` is fitted on the
    models ``rows``; then every model is (a) permuted at random in every group
    of ResNet-20's spec (the same function) and (b) changed by a permutation
    that breaks the spec: one block's first conv has its filters reordered,
    but not the BatchNorm and the conv after it (another function).
    Returns ``{name: {"spec permutations": max |change of embedding|,
    "spec-breaking permutation": ...}}``.
    """
    spec, g = resnet20_spec(), torch.Generator().manual_seed(seed)
    rows = np.arange(len(ms)) if rows is None else np.asarray(rows)
    states = [ms.state_dict(int(i)) for i in rows]
    n = states[0]["layer1.0.conv1.weight"].shape[0]
    valid = [permute_state(s, random_permutations(spec, s, g), spec) for s in states]
    broken = [permute_group(s, spec, "layer1.0.inner", torch.roll(torch.arange(n), 1), keys=["layer1.0.conv1.weight"])
              for s in states]

    def stack(sts):
        return {k: torch.stack([s[k] for s in sts]) for k in sts[0]}

    original, out = ms.state_of(rows), {}
    for name, method in methods.items():
        m = method.fit(original, ms.task_ids[rows])
        e = m.embed(original)
        out[name] = {"spec permutations": (m.embed(stack(valid)) - e).abs().max().item(),
                     "spec-breaking permutation": (m.embed(stack(broken)) - e).abs().max().item()}
    return out


def costs(classification_result) -> dict:
    """Mean over splits of every method's cost in a :func:`~lpsbook.protocols.paper.classification` result:
    ``{method id: {cost: value, "reads": "weights" or "activations"}}``."""
    out = {}
    for m, runs in classification_result["cost"].items():
        out[m] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        out[m]["reads"] = reads(m)
    return out
