"""The aligned-filter explorer: what the alignment of Eqs. 5-8 does to one layer.

Three pieces:

* :func:`aligned_view` computes, for one trained layer ``theta [g, c, k, k]``
  and a branch's second-order filters ``phi [g', c, k, k]``, the score matrix
  ``s[g, g']`` (Eq. 6, or Eq. 7 for the first layer), its column-wise sort
  (Eq. 8), and a *display* of the filters in the "standard" order that the
  alignment induces: filters sorted by their score against one second-order
  filter ``g'`` (the *reference*), and inside each filter, for every channel
  ``c_j`` of ``phi[g']``, the trained channel that the max of Eq. 6 matched
  to it.  Permuting the trained layer's filters or input channels leaves the
  aligned display unchanged (up to ties).
* :func:`train_briefly` trains one LPS branch per conv layer for a few epochs
  (cached on disk with :func:`lpsbook.book.cached_json`) and returns them as
  one :class:`~lpsbook.lps.SecondOrderNet`, whose ``phi`` the views use.
* :class:`AlignedFilterExplorer`: an ipywidgets explorer (task, seed, layer,
  reference filter) that redraws :func:`lpsbook.viz.alignment_view_figure`
  on every change.  Its current state is readable from Python (``.view``,
  ``.figure``, ``.model_index``), which is what the tests check.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import LpsbookError
from .lps import LPSConfig, SecondOrderNet, layer_shapes
from .nets import short_layer
from .training import one_thread


@dataclass
class AlignedView:
    """One trained layer seen through one LPS branch.

    Attributes
    ----------
    layer : str
        The conv weight key.
    reference : int
        The second-order filter ``g'`` whose scores order the filters for display.
    channel_alignment : bool
        Whether Eq. 6 (max over channels) was used; False for the first layer (Eq. 7).
    raw : ndarray [g, c, k, k]
        The trained filters as stored.
    scores : ndarray [g, g']
        ``s[g, g']`` of Eq. 6/7, rows in the stored filter order.
    sorted_scores : ndarray [g, g']
        Eq. 8: every column of ``scores`` sorted in descending order (what the
        branch's FC layer reads).
    order : ndarray [g]
        Stored filter indices in display order: ``argsort(-scores[:, reference])``.
    channel_match : ndarray [g, c]
        For the filter at display position ``i`` and channel ``c_j`` of
        ``phi[reference]``, the stored channel ``c_i`` chosen by the max of
        Eq. 6 (the identity for the first layer).
    aligned : ndarray [g, c, k, k]
        ``raw[order[i], channel_match[i, j]]``: the filters in the aligned order.
    """

    layer: str
    reference: int
    channel_alignment: bool
    raw: np.ndarray
    scores: np.ndarray
    sorted_scores: np.ndarray
    order: np.ndarray
    channel_match: np.ndarray
    aligned: np.ndarray

    @property
    def filters(self) -> int:
        return self.raw.shape[0]


def aligned_view(theta, phi, channel_alignment: bool, reference: int = 0, layer: str = "") -> AlignedView:
    """Align one trained layer to one branch's second-order filters (Eqs. 5-8).

    Parameters
    ----------
    theta : Tensor or ndarray [g, c, k, k]
        A trained conv layer.
    phi : Tensor or ndarray [g', c, k, k]
        The branch's second-order filters.
    channel_alignment : bool
        Use Eq. 6 (max over the trained filter's channels); False gives Eq. 7
        (the first layer, whose channels are the image's).
    reference : int
        The second-order filter ``g'`` used to order the filters for display.
    layer : str
        Name kept in the view.

    Returns
    -------
    AlignedView
    """
    t = torch.as_tensor(np.asarray(theta), dtype=torch.float64)
    p = torch.as_tensor(np.asarray(phi), dtype=torch.float64)
    if t.dim() != 4 or p.dim() != 4 or t.shape[1:] != p.shape[1:]:
        raise LpsbookError(f"theta {tuple(t.shape)} and phi {tuple(p.shape)} must be [g, c, k, k] and "
                           "[g', c, k, k] with the same c, k, k")
    g, c = t.shape[:2]
    if not 0 <= reference < p.shape[0]:
        raise LpsbookError(f"reference must lie in 0..{p.shape[0] - 1}, got {reference}")
    tf, pf = t.flatten(2), p.flatten(2)
    if channel_alignment:
        pairs = torch.einsum("gik,hjk->gihj", tf, pf)  # Eq. 5: [g, c_i, g', c_j]
        best, match = pairs.max(dim=1)  # Eq. 6: max over the trained channels c_i
        scores = best.sum(dim=-1)
    else:
        scores = torch.einsum("gck,hck->gh", tf, pf)  # Eq. 7
        match = torch.arange(c).expand(g, p.shape[0], c)
    sorted_scores = torch.sort(scores, dim=0, descending=True).values  # Eq. 8
    order = torch.sort(-scores[:, reference], stable=True).indices
    channel_match = match[order, reference]  # [g, c_j]
    aligned = t[order[:, None], channel_match]
    return AlignedView(layer, reference, channel_alignment, t.numpy(), scores.numpy(),
                       sorted_scores.numpy(), order.numpy(), channel_match.numpy(), aligned.numpy())


def branch_view(net: SecondOrderNet, layer: str, theta, reference: int = 0) -> AlignedView:
    """:func:`aligned_view` of ``theta`` through the branch of ``net`` for ``layer``."""
    if layer not in net.names:
        raise LpsbookError(f"the second-order net has no branch for {layer!r}; it has {net.names}")
    branch = net.branches[net.names.index(layer)]
    return aligned_view(theta, branch.phi.detach(), branch.align_channels, reference, layer)




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
    branch = net.branches[net.names.index(layer)]
    p = branch.phi.detach().double().flatten(2)
    raw = []
    for i in range(0, len(thetas), chunk):
        t = thetas[i:i + chunk].double().flatten(3)
        if branch.align_channels:
            raw.append(torch.einsum("mgik,hjk->mgihj", t, p).amax(dim=2).sum(dim=-1))
        else:
            raw.append(torch.einsum("mgck,hck->mgh", t, p))
    raw = torch.cat(raw)
    return raw, torch.sort(raw, dim=1, descending=True).values


def _correlations(x: torch.Tensor) -> torch.Tensor:
    z = x.flatten(1)
    z = z - z.mean(dim=1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return z @ z.T


def alignment_agreement(ms, net: SecondOrderNet, layers=None, rows=None) -> "pandas.DataFrame":
    """Do models of the same task have alike score matrices, with and without the sort of Eq. 8?

    Two models are compared by the Pearson correlation of their flattened
    ``s[g, g']`` (Eq. 6/7), once in the stored filter order and once with
    every column sorted (Eq. 8).  Reported per layer: the fraction of models
    whose most correlated other model is of the same task (1-NN), and the
    mean correlation of same-task pairs minus that of different-task pairs.
    Sorting raises every correlation (sorted columns are all monotone), so
    compare the same-task and different-task numbers, not the raw level.

    Parameters
    ----------
    ms : ModelSet
    net : SecondOrderNet
    layers : sequence of str, optional
        Default: every branch of ``net``.
    rows : array-like of int, optional
        Models to use (default: all).

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
                corr = _correlations(s)
                nearest = corr.masked_fill(~off, -float("inf")).argmax(dim=1)
                row[f"1-NN {name}"] = (tasks[nearest] == tasks).double().mean().item()
                row[f"gap {name}"] = corr[same & off].mean().item() - corr[~same].mean().item()
            out.append(row)
    table = pd.DataFrame(out).set_index("layer")
    table.attrs["chance"] = ((same & off).sum() / off.sum()).item()
    return table


# --- a briefly trained second-order network --------------------------------------------------


@dataclass
class BriefLPS:
    """One LPS branch per conv layer, each trained alone for a few epochs.

    Attributes
    ----------
    net : SecondOrderNet
        All branches together (weights ``w_l = 1``); only the branches'
        ``phi`` matter for the alignment views.
    heldout_top1 : dict {layer: float}
        Task-classification top-1 of each branch alone on held-out models
        (the last ``heldout_seeds`` seeds of every task).
    chance : float
        ``1 / tasks``.
    seconds : float
        Training time when the result was computed (not when read from the cache).
    settings : dict
    """

    net: SecondOrderNet
    heldout_top1: dict
    chance: float
    seconds: float
    settings: dict

    def describe(self) -> str:
        """The training settings in two short lines."""
        s = self.settings
        return (f"{len(self.heldout_top1)} branches, each trained alone: {s['epochs']} epochs, batch "
                f"{s['batch_size']}, lr {s['lr']} (/10 from epoch {s['milestones'][0]}), "
                f"g′ = {s['second_order_filters']}\n"
                f"held out: the last {s['heldout_seeds']} seeds of every task")


def _train_branches(ms, settings: dict, progress: bool = False) -> dict:
    from .progress import bar as progress_bar

    seeds = ms.meta["seed"].to_numpy()
    held = seeds >= ms.preset.seeds - settings["heldout_seeds"]
    if held.all() or not held.any():
        raise LpsbookError(f"heldout_seeds={settings['heldout_seeds']} must leave models for training "
                           f"and for testing (the preset has {ms.preset.seeds} seeds per task)")
    labels = ms.task_ids
    shapes = layer_shapes(ms.conv_weights)
    config = LPSConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       milestones=tuple(settings["milestones"]), seed=settings["seed"])
    train, test = torch.from_numpy(~held), torch.from_numpy(held)
    start, state, top1 = time.perf_counter(), {}, {}
    with one_thread():
        for name in progress_bar(ms.layers, desc="LPS branches", disable=not progress, leave=False):
            net = SecondOrderNet(shapes, len(ms.preset.tasks), {name: 1.0},
                                 second_order_filters=settings["second_order_filters"], seed=settings["seed"])
            net.fit({name: ms.conv_weights[name][train]}, labels[train], config=config)
            pred = net.scores({name: ms.conv_weights[name][test]}).argmax(1)
            top1[name] = (pred == labels[test]).float().mean().item()
            state[name] = {k: v.tolist() for k, v in net.branches[0].state_dict().items()}
    return {"state": state, "heldout_top1": top1, "seconds": time.perf_counter() - start}


def train_briefly(ms, epochs: int = 5, second_order_filters: int = 8, heldout_seeds: int = 2,
                  batch_size: int = 8, lr: float = 0.05, seed: int = 0, cache: bool = True,
                  cache_root=None, progress: bool = False) -> BriefLPS:
    """Train one LPS branch per conv layer for a few epochs (cached on disk).

    Each branch is trained alone (as in the paper's Fig. 3b) on the models of
    every task except the last ``heldout_seeds`` seeds, which give each
    branch's held-out top-1.

    Parameters
    ----------
    ms : ModelSet
    epochs, batch_size, lr, seed : training settings (the learning rate is
        divided by 10 for the last quarter of the epochs).
    second_order_filters : int
        ``g'`` of every branch.
    heldout_seeds : int
    cache : bool
        Keep the result with :func:`lpsbook.book.cached_json` (keyed by the
        model set's preset and these settings).
    cache_root : path, optional
        Folder of the cache (default ``data/``).
    progress : bool
        Show a progress bar over the layers while training.

    Returns
    -------
    BriefLPS
    """
    settings = {"epochs": epochs, "second_order_filters": second_order_filters, "heldout_seeds": heldout_seeds,
                "batch_size": batch_size, "lr": lr, "seed": seed,
                "milestones": [max(1, epochs - max(1, epochs // 4))]}
    if cache:
        from .book import cached_json

        result = cached_json("brief-lps", settings, lambda: _train_branches(ms, settings, progress),
                             preset=ms.preset, root=cache_root)
    else:
        result = _train_branches(ms, settings, progress)
    shapes = layer_shapes(ms.conv_weights)
    net = SecondOrderNet(shapes, len(ms.preset.tasks), {n: 1.0 for n in ms.layers},
                         second_order_filters=second_order_filters, seed=seed)
    for name, branch in zip(net.names, net.branches):
        branch.load_state_dict({k: torch.tensor(v) for k, v in result["state"][name].items()})
    net.eval()
    return BriefLPS(net, result["heldout_top1"], 1.0 / len(ms.preset.tasks), result["seconds"], settings)


def explorer_views(ms, net: SecondOrderNet, models, layers=None, reference: int = 0) -> dict:
    """:func:`branch_view` of every (model, layer): ``{(model label, layer): AlignedView}``.

    Parameters
    ----------
    ms : ModelSet
    net : SecondOrderNet
        Has a branch for every layer in ``layers``.
    models : sequence of (task_id, seed)
    layers : sequence of str, optional
        Default: every branch of ``net``.
    reference : int
    """
    layers = list(layers or net.names)
    views = {}
    for task_id, seed in models:
        i = ms.index_of(task_id, seed)
        label = f"{ms.task_label(task_id)}, seed {seed}"
        for layer in layers:
            views[(label, layer)] = branch_view(net, layer, ms.conv_weights[layer][i], reference)
    return views



def views_of_layer(views: dict, layer: str) -> dict:
    """``{model label: AlignedView}`` of one layer, from :func:`explorer_views`' result."""
    out = {m: v for (m, l), v in views.items() if l == layer}
    if not out:
        raise LpsbookError(f"no views of layer {layer!r}")
    return out


# --- the widget ---------------------------------------------------------------------------------


class AlignedFilterExplorer:
    """Interactive view of one layer of one model, in raw and in aligned order.

    Dropdowns choose the task, the model (seed) and the layer; a slider
    chooses the second-order filter ``g'`` that orders the filters.  Every
    change recomputes :attr:`view` and redraws :attr:`figure`
    (:func:`lpsbook.viz.alignment_view_figure`) in the output area.

    Parameters
    ----------
    modelset : ModelSet
    net : SecondOrderNet, optional
        The branches whose ``phi`` align the layers; by default
        :func:`train_briefly` on ``modelset`` (cached).
    task, seed : int, optional
        Initial model (default: the first).
    layer : str, optional
        Initial layer (default: the first branch).
    reference : int

    Attributes
    ----------
    widget : ipywidgets.VBox
        What is displayed.
    task, seed, layer, reference : ipywidgets controls
    view : AlignedView
        What is shown now.
    figure : plotly.graph_objects.Figure
        The figure shown now.
    model_index : int
        Row of the shown model in ``modelset``.
    """

    def __init__(self, modelset, net: SecondOrderNet | None = None, task: int | None = None,
                 seed: int | None = None, layer: str | None = None, reference: int = 0):
        import ipywidgets as w

        self.modelset = modelset
        self.net = net if net is not None else train_briefly(modelset).net
        meta = modelset.meta
        tasks = sorted(set(int(t) for t in meta["task_id"]))
        task = tasks[0] if task is None else task
        style = {"description_width": "initial"}
        self.task = w.Dropdown(options=[(modelset.task_label(t), t) for t in tasks], value=task,
                               description="task", style=style)
        self.seed = w.Dropdown(options=self._seeds(task), description="model (seed)", style=style)
        if seed is not None:
            self.seed.value = seed
        self.layer = w.Dropdown(options=[(short_layer(n), n) for n in self.net.names],
                                value=layer or self.net.names[0], description="layer", style=style)
        self.reference = w.IntSlider(value=reference, min=0, max=self._filters(self.layer.value) - 1,
                                     description="order by φ filter g′", style=style,
                                     continuous_update=False)
        self.output = w.Output()
        self.widget = w.VBox([w.HBox([self.task, self.seed]), w.HBox([self.layer, self.reference]),
                              self.output])
        self._busy = False
        self.task.observe(self._on_task, names="value")
        for control in (self.seed, self.layer, self.reference):
            control.observe(self.update, names="value")
        self.update()

    def _seeds(self, task):
        meta = self.modelset.meta
        return sorted(int(s) for s in meta.loc[meta["task_id"] == task, "seed"])

    def _filters(self, layer):
        return self.net.branches[self.net.names.index(layer)].phi.shape[0]

    def _on_task(self, change):
        self._busy = True  # one redraw, not one per changed control
        try:
            current = self.seed.value
            self.seed.options = self._seeds(change["new"])
            if current in self.seed.options:
                self.seed.value = current
        finally:
            self._busy = False
        self.update()

    def update(self, change=None):
        """Recompute the view for the current controls and redraw."""
        if self._busy:
            return
        from . import viz

        self._busy = True
        try:
            self.reference.max = self._filters(self.layer.value) - 1
        finally:
            self._busy = False
        self.model_index = self.modelset.index_of(self.task.value, self.seed.value)
        theta = self.modelset.conv_weights[self.layer.value][self.model_index]
        self.view = branch_view(self.net, self.layer.value, theta, self.reference.value)
        title = f"{self.modelset.task_label(self.task.value)}, seed {self.seed.value} · {short_layer(self.layer.value)}"
        self.figure = viz.alignment_view_figure(self.view, title=title)
        self._show()

    def _show(self):
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:  # plain Python (e.g. tests): keep the state, draw nothing
            return
        # Set the Output widget's outputs directly rather than `with output: display(...)`:
        # the figure then lives in the widget's state, and never leaks into the
        # output of the cell that changed a control when no front end routes it.
        data = self.figure._repr_mimebundle_()  # plotly's bundle for the active renderers; publishes nothing
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)

    def describe(self) -> str:
        """One line on what is shown (handy in a notebook without a live view)."""
        v = self.view
        return (f"{self.modelset.task_label(self.task.value)}, seed {self.seed.value}, "
                f"{short_layer(v.layer)}: {v.filters} filters x {v.raw.shape[1]} channels\n"
                f"  stored indices in the order of phi filter {v.reference}: {v.order.tolist()}")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
