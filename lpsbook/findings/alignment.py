"""What the alignment of Eq. 8 does to real score matrices (chapter 3).

* :func:`score_matrices`: Eq. 6/7 scores of many models through one branch,
  in stored order and sorted;
* :func:`alignment_agreement`: do models of one task have alike score
  matrices, with and without the sort?
* :func:`train_briefly` (:class:`BriefLPS`): one branch per layer, trained a
  few epochs, the branches the chapter and the explorer look through;
* :func:`alignment_comparison`: trained against untrained branches.

The widget that shows them is :mod:`lpsbook.show.explorer`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..methods.lps import LPSConfig, SecondOrderNet, filter_scores, layer_shapes, sort_filters
from ..core.nets import short_layer
from ..core.progress import bar as progress_bar
from ..protocols.paper import fit_branch
from ..protocols.results import classification_split
from ..core.runtime import one_thread
from ..core.store import cached_json


@torch.no_grad()
def score_matrices(net: SecondOrderNet, layer: str, thetas, chunk: int = 32):
    """Eq. 6/7 scores of many models through one branch, before and after the sort of Eq. 8.

    Parameters
    ----------
    net : SecondOrderNet
    layer : str
    thetas : Tensor [M, g, c, k, k]
    chunk : int
        Models per step (the Eq. 5 tensor has ``g * c * g' * c`` entries per model).

    Returns
    -------
    raw, sorted : Tensor [M, g, g'] (float64)
    """
    branch = net.branch(layer)
    phi = branch.phi.detach().double()
    raw = torch.cat([filter_scores(thetas[i:i + chunk].double(), phi, branch.align_channels)
                     for i in range(0, len(thetas), chunk)])
    return raw, sort_filters(raw)


def alignment_agreement(ms, net: SecondOrderNet, layers=None, rows=None) -> "pandas.DataFrame":
    """Do models of the same task have alike score matrices, with and without the sort of Eq. 8?

    Two models are compared by the Pearson correlation of their flattened
    ``s[g, g']`` (Eq. 6/7), once in the stored filter order and once with
    every column sorted (Eq. 8).  Reported per layer: the fraction of models
    whose most correlated other model is of the same task (1-NN), and the
    mean correlation of same-task pairs minus that of different-task pairs.
    Sorting raises every correlation (sorted columns are all monotone), so
    compare the same-task and different-task numbers, not the raw level.

    Returns
    -------
    pandas.DataFrame, indexed by layer
        Columns ``1-NN stored order``, ``1-NN sorted``, ``gap stored order``,
        ``gap sorted``; ``attrs["chance"]`` is the 1-NN rate of a random neighbour.
    """
    import pandas as pd

    idx = torch.arange(len(ms)) if rows is None else torch.as_tensor(rows)
    tasks = ms.task_ids[idx]
    same = tasks[:, None] == tasks[None, :]
    off = ~torch.eye(len(idx), dtype=torch.bool)
    out = []
    with one_thread():
        for layer in layers or net.names:
            row = {"layer": short_layer(layer)}
            for name, s in zip(("stored order", "sorted"), score_matrices(net, layer, ms.conv_weights[layer][idx])):
                z = s.flatten(1)
                z = z - z.mean(dim=1, keepdim=True)
                z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
                corr = z @ z.T
                nearest = corr.masked_fill(~off, -float("inf")).argmax(dim=1)
                row[f"1-NN {name}"] = (tasks[nearest] == tasks).double().mean().item()
                row[f"gap {name}"] = corr[same & off].mean().item() - corr[~same].mean().item()
            out.append(row)
    table = pd.DataFrame(out).set_index("layer")
    table.attrs["chance"] = ((same & off).sum() / off.sum()).item()
    return table


@dataclass
class BriefLPS:
    """One LPS branch per conv layer, each trained alone for a few epochs.

    Attributes
    ----------
    net : SecondOrderNet
        All branches together (weights ``w_l = 1``); only the branches'
        ``phi`` matter for the alignment views.
    heldout_top1 : dict {layer: float}
        Task-classification top-1 of each branch alone on the held-out models.
    heldout : list of int
        Rows of the held-out models: the test side of
        :func:`classification_split` (the same split as chapters 5 and 6).
    chance : float
        ``1 / tasks``.
    seconds : float
        Training time when the result was computed (not when read from the cache).
    settings : dict
    """

    net: SecondOrderNet
    heldout_top1: dict
    heldout: list
    chance: float
    seconds: float
    settings: dict

    def describe(self) -> str:
        """The training settings in two short lines."""
        s = self.settings
        return (f"{len(self.heldout_top1)} branches, each trained alone: {s['epochs']} epochs, batch "
                f"{s['batch_size']}, lr {s['lr']} (/10 from epoch {s['milestones'][0]}), "
                f"g′ = {s['second_order_filters']}\n"
                f"held out: the test models of classification split {s['seed']}, as in chapters 5-6")


def train_briefly(ms, epochs: int = 5, second_order_filters: int = 8, batch_size: int = 8, lr: float = 0.05,
                  seed: int = 0, cache: bool = True, cache_root=None, progress: bool = False) -> BriefLPS:
    """Train one LPS branch per conv layer for a few epochs (cached on disk).

    Each branch is trained alone (as in the paper's Fig. 3b, through
    :func:`fit_branch`) on the training models of :func:`classification_split`
    ``seed``; its top-1 on the split's test models is kept.

    Parameters
    ----------
    ms : ModelSet
    epochs, batch_size, lr, seed : training settings (the learning rate is
        divided by 10 for the last quarter of the epochs); ``seed`` also
        picks the split.
    second_order_filters : int
        ``g'`` of every branch.
    cache : bool
        Keep the result with :func:`lpsbook.core.store.cached_json` (keyed by the
        model set's preset, these settings and the code version).
    cache_root : path, optional
        Folder of the cache (default ``data/``).
    progress : bool
        Show a progress bar over the layers while training.
    """
    settings = {"epochs": epochs, "second_order_filters": second_order_filters, "batch_size": batch_size,
                "lr": lr, "seed": seed, "milestones": [max(1, epochs - max(1, epochs // 4))]}
    config = LPSConfig(epochs=epochs, batch_size=batch_size, lr=lr, milestones=tuple(settings["milestones"]))

    def compute():
        train, test = classification_split(ms, seed)
        start, state, top1 = time.perf_counter(), {}, {}
        with one_thread():
            for name in progress_bar(ms.layers, desc="LPS branches", disable=not progress, leave=False):
                net, top1[name] = fit_branch(ms, name, train, test, config, second_order_filters, seed=seed)
                state[name] = {k: v.tolist() for k, v in net.branches[0].state_dict().items()}
        return {"state": state, "heldout_top1": top1, "heldout": test.tolist(), "seconds": time.perf_counter() - start}

    result = cached_json("brief-lps", settings, compute, ms.preset, cache_root) if cache else compute()
    net = SecondOrderNet(layer_shapes(ms.conv_weights), len(ms.preset.tasks), {n: 1.0 for n in ms.layers},
                         second_order_filters=second_order_filters, seed=seed)
    for name, branch in zip(net.names, net.branches):
        branch.load_state_dict({k: torch.tensor(v) for k, v in result["state"][name].items()})
    net.eval()
    return BriefLPS(net, result["heldout_top1"], result["heldout"], 1.0 / len(ms.preset.tasks),
                    result["seconds"], settings)


def alignment_comparison(ms, brief: BriefLPS) -> "pandas.DataFrame":
    """1-NN same-task rate per layer on ``brief``'s held-out models (:func:`alignment_agreement`).

    Columns: the trained branches' scores in stored order and sorted (Eq. 8),
    and an untrained (random) ``phi``'s sorted scores, the control.
    ``attrs["chance"]`` is the rate of a random neighbour.
    """
    untrained = SecondOrderNet(layer_shapes(ms.conv_weights), len(ms.preset.tasks), dict.fromkeys(ms.layers, 1.0),
                               second_order_filters=brief.settings["second_order_filters"], seed=brief.settings["seed"] + 1)
    trained = alignment_agreement(ms, brief.net, rows=brief.heldout)
    table = trained[["1-NN stored order", "1-NN sorted"]].set_axis(
        ["trained φ, stored order", "trained φ, sorted (Eq. 8)"], axis=1)
    table["random φ, sorted (Eq. 8)"] = alignment_agreement(ms, untrained, rows=brief.heldout)["1-NN sorted"]
    table.attrs["chance"] = trained.attrs["chance"]
    return table
