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
* :func:`explorer_views` and :func:`views_of_layer`: views of several models
  and layers at once, for the static figures of :mod:`lpsbook.show.filterplots`.
* :class:`AlignedFilterExplorer`: an ipywidgets explorer (task, seed, layer,
  reference filter) that redraws :func:`lpsbook.show.filterplots.alignment_view_figure`
  on every change (and, for the first layer, its filters as colour
  patches).  Its current state is readable from Python (``.view``,
  ``.figure``, ``.model_index``), which is what the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import filterplots
from ..findings.alignment import train_briefly
from ..core.errors import LpsbookError
from ..methods.lps import SecondOrderNet, filter_scores, sort_filters
from ..core.nets import short_layer


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
    s, match = filter_scores(t[None], p, channel_alignment, matches=True)  # Eqs. 5-7
    scores, match = s[0], match[0]  # [g, g'], [g, g', c_j]
    sorted_scores = sort_filters(scores)  # Eq. 8
    order = torch.sort(-scores[:, reference], stable=True).indices
    channel_match = match[order, reference]  # [g, c_j]
    aligned = t[order[:, None], channel_match]
    return AlignedView(layer, reference, channel_alignment, t.numpy(), scores.numpy(),
                       sorted_scores.numpy(), order.numpy(), channel_match.numpy(), aligned.numpy())


def branch_view(net: SecondOrderNet, layer: str, theta, reference: int = 0) -> AlignedView:
    """:func:`aligned_view` of ``theta`` through the branch of ``net`` for ``layer``."""
    if layer not in net.names:
        raise LpsbookError(f"the second-order net has no branch for {layer!r}; it has {net.names}")
    branch = net.branch(layer)
    return aligned_view(theta, branch.phi.detach(), branch.align_channels, reference, layer)




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
    (:func:`lpsbook.show.filterplots.alignment_view_figure`) in the output area.

    Parameters
    ----------
    modelset : ModelSet
    net : SecondOrderNet, optional
        The branches whose ``phi`` align the layers; by default
        :func:`lpsbook.findings.alignment.train_briefly` on ``modelset`` (cached).
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
    patches : plotly.graph_objects.Figure or None
        For the first layer (whose channels are the image's), its filters as
        small RGB (or grey) images in stored and aligned order, shown below
        :attr:`figure` (:func:`lpsbook.show.filterplots.filter_patches_figure`); None for
        the other layers.
    model_index : int
        Row of the shown model in ``modelset``.
    """

    def __init__(self, modelset, net: SecondOrderNet | None = None, task: int | None = None,
                 seed: int | None = None, layer: str | None = None, reference: int = 0):
        import ipywidgets as w

        self.modelset = modelset
        if net is None:
            net = train_briefly(modelset).net
        self.net = net
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
        return self.net.branch(layer).phi.shape[0]

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
        self._busy = True
        try:
            self.reference.max = self._filters(self.layer.value) - 1
        finally:
            self._busy = False
        self.model_index = self.modelset.index_of(self.task.value, self.seed.value)
        theta = self.modelset.conv_weights[self.layer.value][self.model_index]
        self.view = branch_view(self.net, self.layer.value, theta, self.reference.value)
        title = f"{self.modelset.task_label(self.task.value)}, seed {self.seed.value} · {short_layer(self.layer.value)}"
        self.figure = filterplots.alignment_view_figure(self.view, title=title)
        # the first layer reads the image: its filters are also shown as small images (RGB, or grey)
        self.patches = (None if self.view.channel_alignment or self.view.raw.shape[1] not in (1, 3) else
                        filterplots.filter_patches_figure({title: self.view}, title=f"{short_layer(self.layer.value)} filters "
                                                  f"as {'RGB' if self.view.raw.shape[1] == 3 else 'grey'} patches"))
        self._show()

    def _show(self):
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:  # plain Python (e.g. tests): keep the state, draw nothing
            return
        # Set the Output widget's outputs directly rather than `with output: display(...)`:
        # the figure then lives in the widget's state, and never leaks into the
        # output of the cell that changed a control when no front end routes it.
        shown = [self.figure] + ([self.patches] if self.patches is not None else [])
        # plotly's bundle for the active renderers; publishes nothing
        self.output.outputs = tuple({"output_type": "display_data", "data": f._repr_mimebundle_(), "metadata": {}}
                                    for f in shown)

    def describe(self) -> str:
        """One line on what is shown (handy in a notebook without a live view)."""
        v = self.view
        return (f"{self.modelset.task_label(self.task.value)}, seed {self.seed.value}, "
                f"{short_layer(v.layer)}: {v.filters} filters x {v.raw.shape[1]} channels\n"
                f"  stored indices in the order of phi filter {v.reference}: {v.order.tolist()}")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
