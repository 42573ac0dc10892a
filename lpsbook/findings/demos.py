"""The worked examples of chapters 1 and 2: a small plain chain, outputs compared before and after a
permutation, a spec as a table, and the matching study (stored order against weight matching).

The symmetry itself, written once as data, is :mod:`lpsbook.core.symmetry`; this
module only uses it to show it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.nets import short_layer
from ..core.symmetry import chain_spec, filter_similarity, perm_sizes, permute_state, random_permutations, weight_matching


def _short(key: str) -> str:
    return key.removesuffix(".weight")


def spec_table(spec, state, conv_names=None):
    """One row per permutation of ``spec``: its size and the layers whose order it fixes.

    Parameters
    ----------
    spec : PermutationSpec
    state : dict of str to Tensor
        Gives the sizes.
    conv_names : sequence of str, optional
        Conv weight keys; a pair ``(conv, 0)`` is reported under "filters of",
        ``(conv, 1)`` under "channels of".  By default every 4-d weight.

    Returns
    -------
    pandas.DataFrame
        Columns: permutation, size, log10(size!), filters of, channels of,
        also moves (the other tensors it acts on: BatchNorm, linear layers).
    """
    import pandas as pd

    convs = set(conv_names) if conv_names is not None else {k for k, v in state.items() if v.dim() == 4}
    sizes = perm_sizes(spec, state)
    rows = []
    for name, pairs in spec.perm_to_axes.items():
        filters = [_short(k) for k, a in pairs if k in convs and a == 0]
        channels = [_short(k) for k, a in pairs if k in convs and a == 1]
        others = sorted({k if f"{k.rsplit('.', 1)[0]}.weight" in convs else k.rsplit(".", 1)[0]
                         for k, a in pairs if k not in convs})
        rows.append({"permutation": name, "size": sizes[name],
                     "log10(size!)": round(math.lgamma(sizes[name] + 1) / math.log(10), 2),
                     "filters of": ", ".join(filters), "channels of": ", ".join(channels),
                     "also moves": ", ".join(others)})
    return pd.DataFrame(rows)


def plain_chain(channels=(6, 8, 10), in_channels=1, image_size=8, num_classes=2, seed=0):
    """A small plain CNN (conv-ReLU chain, then a linear layer) and its order-chain spec.

    Parameters
    ----------
    channels : sequence of int
        Filters of each 3x3 conv (padding 1, with bias).
    in_channels, image_size, num_classes : int
    seed : int
        Initialisation seed.

    Returns
    -------
    net : torch.nn.Sequential
        ``conv1, relu1, ..., flatten, fc``, in eval mode.
    spec : PermutationSpec
        :func:`chain_spec` of its conv weights and the linear weight.
    """
    from collections import OrderedDict

    from torch import nn

    layers, cin = OrderedDict(), in_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, c in enumerate(channels, start=1):
            layers[f"conv{i}"], layers[f"relu{i}"] = nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()
            cin = c
        layers["flatten"] = nn.Flatten()
        layers["fc"] = nn.Linear(cin * image_size * image_size, num_classes)
        net = nn.Sequential(layers).eval()
    return net, chain_spec([f"conv{i}.weight" for i in range(1, len(channels) + 1)], "fc.weight")


@torch.no_grad()
def compare_outputs(net, state_a, state_b, x) -> dict:
    """Run one architecture with two state dicts on the same inputs.

    The check every permutation should pass: ``pi(B)(x) == B(x)``.

    Parameters
    ----------
    net : torch.nn.Module
        Any module of the right architecture (a copy is used; ``net`` is not
        changed); it runs in eval mode.
    state_a, state_b : dict of str to Tensor
    x : Tensor
        Inputs.

    Returns
    -------
    dict
        ``logits_a``, ``logits_b`` (Tensors), ``max_abs_diff`` (float) and
        ``same_predictions`` (fraction of inputs whose argmax agrees).
    """
    import copy

    model = copy.deepcopy(net).eval()
    model.load_state_dict(state_a)
    a = model(x)
    model.load_state_dict(state_b)
    b = model(x)
    return {"logits_a": a, "logits_b": b, "max_abs_diff": (a - b).abs().max().item(),
            "same_predictions": (a.argmax(1) == b.argmax(1)).float().mean().item()}


def layer_similarities(state_a, state_b, keys) -> list:
    """:func:`filter_similarity` of every key in ``keys``, as a list of floats."""
    return [filter_similarity(state_a, state_b, k) for k in keys]


def matched_similarities(reference_state, stacked_state, spec, keys, seed=0):
    """Per-layer filter similarity of several models to a reference, before and after weight matching.

    Parameters
    ----------
    reference_state : dict of str to Tensor
    stacked_state : dict of str to Tensor
        The other models' state dicts stacked on a leading axis, ``{key: [n, ...]}``
        (e.g. ``ModelSet.subset(rows).state``).
    spec : PermutationSpec
    keys : sequence of str
        The weights to compare (e.g. the 19 conv layers).
    seed : int
        Seed of :func:`weight_matching`.

    Returns
    -------
    stored, matched : ndarray [n, len(keys)]
        :func:`filter_similarity` of every model and key, in the model's own
        order and after :func:`weight_matching` to the reference.
    """
    n = len(next(iter(stacked_state.values())))
    stored, matched = [], []
    for i in range(n):
        state = {k: v[i] for k, v in stacked_state.items()}
        perms = weight_matching(reference_state, state, spec, seed=seed)
        stored.append(layer_similarities(reference_state, state, keys))
        matched.append(layer_similarities(reference_state, permute_state(state, perms, spec), keys))
    return np.asarray(stored), np.asarray(matched)


def align(reference_state, state, spec, seed=0) -> dict:
    """``state`` rewritten in the order of ``reference_state``: :func:`weight_matching`, then :func:`permute_state`.

    Parameters
    ----------
    reference_state, state : dict of str to Tensor
        Two state dicts of the same architecture.
    spec : PermutationSpec
    seed : int
        Seed of :func:`weight_matching`.

    Returns
    -------
    dict of str to Tensor
        A new state dict computing the same function as ``state``.
    """
    return permute_state(state, weight_matching(reference_state, state, spec, seed=seed), spec)


def accuracy(logits, labels) -> float:
    """Fraction of inputs whose largest logit is at their label.

    Parameters
    ----------
    logits : Tensor [n, classes]
    labels : Tensor [n]

    Returns
    -------
    float
        In 0..1.
    """
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


def shuffle_table(results, labels=None):
    """One row per shuffle: how far :func:`compare_outputs` found the shuffled network from the original.

    Parameters
    ----------
    results : dict of str to dict
        Results of :func:`compare_outputs` (original as ``a``, shuffled as
        ``b``), by the name of the shuffle.
    labels : Tensor [n], optional
        True labels of the inputs; adds the shuffled network's accuracy.

    Returns
    -------
    pandas.DataFrame
        Indexed by shuffle; columns ``max |Δ logit|``, ``predictions changed``
        (a fraction) and, with ``labels``, ``accuracy`` (a fraction).
    """
    import pandas as pd

    rows = {}
    for name, out in results.items():
        rows[name] = {"max |Δ logit|": out["max_abs_diff"], "predictions changed": 1 - out["same_predictions"]}
        if labels is not None:
            rows[name]["accuracy"] = accuracy(out["logits_b"], labels)
    return pd.DataFrame.from_dict(rows, orient="index")


SIMILARITY_COLUMNS = ("same task, stored order", "same task, matched",
                      "other task, stored order", "other task, matched",
                      "scrambled copy of the reference, matched")
"""The columns of :attr:`MatchingStudy.similarity`, in order."""


@dataclass
class MatchingStudy:
    """Filter similarity to a reference model, before and after weight matching (see :func:`matching_study`).

    Attributes
    ----------
    task, other_task, reference_seed : int
    reference : dict of str to Tensor
        The reference model's state dict.
    same_rows, other_rows : list of int
        Model-set rows of the other models of ``task`` and of the models of
        ``other_task`` (every seed but ``reference_seed``).
    per_model : dict of str to ndarray [models, layers]
        :func:`filter_similarity` of every compared model and layer, under the
        first four names of :data:`SIMILARITY_COLUMNS`.
    similarity : pandas.DataFrame
        One row per layer (short names, :func:`lpsbook.core.nets.short_layer`),
        columns :data:`SIMILARITY_COLUMNS`: the means over models of
        ``per_model``, and the similarity of a randomly scrambled copy of the
        reference after matching it back (1 if the search finds the exact
        permutation).
    """

    task: int
    other_task: int
    reference_seed: int
    reference: dict
    same_rows: list
    other_rows: list
    per_model: dict
    similarity: "pandas.DataFrame"

    @property
    def errors(self) -> dict:
        """Standard deviation over models of the two matched columns, per layer (for error bars)."""
        return {name: self.per_model[name].std(0) for name in ("same task, matched", "other task, matched")}

    def summary(self) -> str:
        """The mean similarity over layers of every column, and the first layer's before/after values."""
        means, first = self.similarity.mean(), self.similarity.iloc[0]
        return (f"mean filter cosine similarity to the reference, {len(self.similarity)} layers, "
                f"{len(self.same_rows)} models each:\n{means.round(3).to_string()}\n"
                f"{self.similarity.index[0]}: same task {first.iloc[0]:.3f} stored -> {first.iloc[1]:.3f} matched; "
                f"other task {first.iloc[2]:.3f} -> {first.iloc[3]:.3f}")


def matching_study(ms, spec, task=0, other_task=None, reference_seed=0, seed=0) -> MatchingStudy:
    """Compare models of one task and of another to a reference model, in stored order and after matching.

    The reference is the model ``(task, reference_seed)``.  Every other model
    of ``task`` and every model of ``other_task`` with another seed is compared
    with it layer by layer (:func:`matched_similarities` over
    ``ms.layers``); a copy of the reference scrambled by random permutations
    and matched back (:func:`align`) checks the search itself.

    Parameters
    ----------
    ms : lpsbook.training.modelset.ModelSet
    spec : PermutationSpec
        The model set's symmetry (:func:`resnet20_spec`).
    task : int
    other_task : int, optional
        By default the model set's last task.
    reference_seed : int
    seed : int
        Seed of the scrambling permutations and of :func:`weight_matching`.

    Returns
    -------
    MatchingStudy
    """
    import pandas as pd

    other_task = len(ms.preset.tasks) - 1 if other_task is None else other_task
    if other_task == task:
        raise ValueError(f"other_task must differ from task ({task})")
    reference = ms.state_dict(ms.index_of(task, reference_seed))
    task_ids, seeds = ms.meta["task_id"].to_numpy(), ms.meta["seed"].to_numpy()
    rows = {t: np.flatnonzero((task_ids == t) & (seeds != reference_seed)).tolist() for t in (task, other_task)}
    if not all(rows.values()):
        raise ValueError(f"tasks {task} and {other_task} need models with seeds other than {reference_seed}")
    per_model = {}
    for who, t in (("same task", task), ("other task", other_task)):
        stored, matched = matched_similarities(reference, ms.state_of(rows[t]), spec, ms.layers, seed=seed)
        per_model[f"{who}, stored order"], per_model[f"{who}, matched"] = stored, matched
    scrambled = permute_state(reference, random_permutations(spec, reference, torch.Generator().manual_seed(seed)),
                              spec)
    recovered = layer_similarities(reference, align(reference, scrambled, spec, seed=seed), ms.layers)
    similarity = pd.DataFrame({**{name: values.mean(0) for name, values in per_model.items()},
                               SIMILARITY_COLUMNS[-1]: recovered}, index=ms.layers,
                              columns=list(SIMILARITY_COLUMNS)).rename(index=short_layer)
    return MatchingStudy(task, other_task, reference_seed, reference, rows[task], rows[other_task],
                         per_model, similarity)
