"""Plotly figures of the book.

Every figure of a chapter comes from a function here or in
:mod:`lpsbook.show.filterplots` (conv filters and their alignment), so that the HTML book,
JupyterLab and the tests share it.  The functions take plain arrays or the
package's small result objects and return a ``plotly.graph_objects.Figure``;
they never compute anything expensive.  Interactive figures use plotly's own
``updatemenus``/``sliders``, which work in the static HTML book (no kernel).

Labels are plain text or unicode (plotly draws before MathJax loads, so
``$...$`` would stay raw in the HTML book).  Tables and text for the page are
:mod:`lpsbook.show.tables`.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core.nets import layer_number, short_layer
from ..protocols.results import label as row_label
from .tables import METRIC_NAMES

FONT_SMALL = 9


def as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def wrap(text: str, width: int = 28) -> str:
    """``text`` broken into lines of at most ``width`` characters (``<br>``), at spaces.

    Subplot titles and axis titles are drawn as one SVG line each; a long one
    runs into its neighbour's. Wrapping keeps each within its panel.
    """
    lines, line = [], ""
    for word in str(text).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join(lines + [line])


BRANCH_AXIS_TITLE = "conv layer (numbered 1-19 as in the paper)"


def branch_axis(layers) -> dict:
    """An x axis of conv layers as the paper numbers them: ``1`` (conv1) to ``19`` (layer3.2.conv2).

    Parameters
    ----------
    layers : sequence of str
        Layer names (``conv1.weight``, ``layer2.1.conv1`` ...).

    Returns
    -------
    dict
        Axis settings: one tick per number 1-19, whatever subset is plotted, so
        that every figure of layers shares one axis; the names go on hover
        (see :func:`branch_points`).
    """
    return {"title": {"text": BRANCH_AXIS_TITLE}, "tickmode": "array", "tickvals": list(range(1, 20)),
            "ticktext": [str(i) for i in range(1, 20)], "range": [0.5, 19.5]}


def branch_points(layers) -> dict:
    """``x`` (the paper's layer numbers) and ``customdata`` (the layer names) of a trace over ``layers``."""
    return {"x": [layer_number(str(n)) for n in layers], "customdata": [short_layer(str(n)) for n in layers]}


def logits_scatter(reference, others: dict, title=None) -> go.Figure:
    """Each test image's logit margin under the original weights vs under modified ones.

    Parameters
    ----------
    reference : array-like [n, 2]
        Logits of the original model.
    others : dict {name: array-like [n, 2]}
        Logits of modified models (e.g. consistently and inconsistently shuffled).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One scatter per entry of ``others`` and the diagonal ``y = x``.
    """
    ref = as_numpy(reference)
    x = ref[:, 1] - ref[:, 0]
    fig = go.Figure()
    ys = []
    for name, logits in others.items():
        z = as_numpy(logits)
        y = z[:, 1] - z[:, 0]
        ys.append(y)
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, marker={"size": 6, "opacity": 0.7},
                                 customdata=np.arange(len(x)),
                                 hovertemplate="image %{customdata}<br>original %{x:.3f}<br>modified %{y:.3f}"))
    lo = float(min(x.min(), *(y.min() for y in ys)))
    hi = float(max(x.max(), *(y.max() for y in ys)))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x (same function)",
                             line={"dash": "dot", "color": "gray"}, hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title="logit margin z₁ − z₀, original weights",
                      yaxis_title="logit margin z₁ − z₀, modified weights", height=480,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def layer_similarity_figure(layers, series: dict, title=None,
                            yaxis_title="mean cosine similarity of filters", errors: dict | None = None) -> go.Figure:
    """A per-layer quantity for several comparisons, as lines over the layers.

    Parameters
    ----------
    layers : sequence of str
        Layer names, in forward order; the x axis numbers them as the paper does
        (:func:`branch_axis`) and shows the names on hover.
    series : dict {name: sequence of float}
        One value per layer for every comparison.
    title, yaxis_title : str
    errors : dict {name: sequence of float}, optional
        Error bar half-widths (e.g. standard deviations) for some series.

    Returns
    -------
    plotly.graph_objects.Figure
        One line per entry of ``series``.
    """
    errors = errors or {}
    fig = go.Figure([go.Scatter(**branch_points(layers), y=list(map(float, v)), mode="lines+markers", name=k,
                                hovertemplate="layer %{x} · %{customdata}: %{y:.3f}<extra>" + str(k) + "</extra>",
                                error_y={"type": "data", "array": list(map(float, errors[k])), "thickness": 1}
                                if k in errors else None)
                     for k, v in series.items()])
    fig.add_hline(y=0, line={"color": "gray", "width": 1})
    fig.update_layout(title=title, yaxis_title=yaxis_title, xaxis=branch_axis(layers), height=450,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def spec_figure(spec, layers, title=None) -> go.Figure:
    """Which permutation orders each layer's filters (out) and input channels (in).

    Parameters
    ----------
    spec : lpsbook.core.symmetry.PermutationSpec
    layers : sequence of str
        Weight keys (rows), e.g. the 19 conv layers.
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap (layers x permutations) labelled "out" / "in".
    """
    perms = spec.names
    z = np.zeros((len(layers), len(perms)))
    text = np.full(z.shape, "", dtype=object)
    for i, key in enumerate(layers):
        for axis, name in spec.axes_to_perm.get(key, {}).items():
            j = perms.index(name)
            z[i, j] = 1 if axis == 0 else 2
            text[i, j] = "out" if axis == 0 else "in"
    scale = [[0, "#f4f4f4"], [0.33, "#f4f4f4"], [0.34, "#d6604d"], [0.66, "#d6604d"],
             [0.67, "#4393c3"], [1, "#4393c3"]]
    fig = go.Figure(go.Heatmap(z=z, x=perms, y=[f"{layer_number(str(k))} · {short_layer(str(k))}" for k in layers],
                               zmin=0, zmax=2,
                               text=text, texttemplate="%{text}", colorscale=scale, showscale=False,
                               xgap=1, ygap=1, hovertemplate="%{y} · %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=60 + 24 * len(layers), xaxis={"side": "top", "tickangle": -45},
                      yaxis={"autorange": "reversed"}, margin={"t": 140})
    return fig


# --- model sets and the paper's experiments ---------------------------------------------------

def accuracy_by_task(meta, title="Test accuracy of every model, by task"):
    """Box plot of the models' test accuracy per task (one box per task)."""
    fig = go.Figure()
    labels = [f"{a}/{b}" for a, b in meta["classes"]]
    fig.add_trace(go.Box(x=labels, y=meta["test_acc"], boxpoints="all", jitter=0.4, pointpos=0,
                         marker_size=3, line_width=1, name="test accuracy"))
    fig.update_layout(title=title, xaxis_title="task (class pair)", yaxis_title="test accuracy",
                      showlegend=False, height=420)
    return fig


def model_map(embeddings: dict, task_labels, title="Models in two dimensions (UMAP), coloured by task"):
    """Side-by-side 2-D maps, one per embedding ``{name: [models, 2]}``, points coloured by task."""
    names = list(embeddings)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    tasks = np.asarray(task_labels)
    for c, name in enumerate(names, start=1):
        xy = np.asarray(embeddings[name])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers",
                                 marker=dict(color=tasks, colorscale="Turbo", size=5),
                                 text=[f"task {t}" for t in tasks], hoverinfo="text", showlegend=False),
                      row=1, col=c)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title, height=450)
    return fig


def _error_bars(table, metric: str) -> dict:
    """Plotly error bars of ``metric``: the 95 % interval (asymmetric) when the table has one, else the sd."""
    if f"{metric} ours low" in table:
        ours = table[f"{metric} ours"]
        return dict(type="data", symmetric=False, array=table[f"{metric} ours high"] - ours,
                    arrayminus=ours - table[f"{metric} ours low"])
    return dict(type="data", array=table[f"{metric} ours sd"])


def paper_vs_ours(table, metrics, title, chance: dict | None = None):
    """Bars side by side: each method's metrics, the paper's beside ours (error bars: our 95 % interval where
    :func:`~lpsbook.show.tables.paper_table` has one, else our sd over splits).

    One panel per metric; the methods run down the shared y axis (their names read once, in full,
    never running into the next panel); bars are horizontal. ``chance`` ({metric: %}, optional) draws
    each metric's chance level as a dashed line.
    """
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"{METRIC_NAMES.get(m, m)} %" for m in metrics],
                        shared_yaxes=True, horizontal_spacing=0.06)
    names = list(map(str, table.index))
    for c, metric in enumerate(metrics, start=1):
        paper = table[f"{metric} paper"]
        fig.add_trace(go.Bar(y=names, x=paper, orientation="h", name="paper (CIFAR-100)", marker_color="#9aa5b1",
                             showlegend=c == 1, hovertemplate="%{y}: %{x:.1f} %<extra>paper</extra>"), row=1, col=c)
        fig.add_trace(go.Bar(y=names, x=table[f"{metric} ours"], orientation="h", name="ours",
                             error_x=_error_bars(table, metric),
                             marker_color="#1f77b4", showlegend=c == 1,
                             hovertemplate="%{y}: %{x:.1f} %<extra>ours</extra>"), row=1, col=c)
        if chance and metric in chance:  # after the bars: plotly skips lines on empty subplots
            fig.add_vline(x=chance[metric], line={"dash": "dash", "color": "gray", "width": 1}, row=1, col=c)
    fig.update_xaxes(range=[0, 100], tickvals=[0, 25, 50, 75, 100], tickfont={"size": FONT_SMALL})
    fig.update_yaxes(autorange="reversed")  # the table's first row on top
    legend = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.12, "yanchor": "top"}
    if chance:
        legend["title"] = {"text": "dashed line: chance ·"}
    fig.update_layout(title=title, barmode="group", height=200 + 55 * len(names), margin={"t": 90, "b": 90},
                      legend=legend)
    return fig


def similarity_vs_transfer(pairs: dict, title="Task similarity vs transferability (ARI)"):
    """Scatter of (similarity, ARI) over held-out task pairs; a dropdown picks the method."""
    methods = list(pairs)
    fig = go.Figure()
    for i, m in enumerate(methods):
        xs = [x for run in pairs[m] for x, _ in run]
        ys = [y for run in pairs[m] for _, y in run]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=row_label(m), visible=i == 0, marker_size=5))
    buttons = [dict(label=row_label(m), method="update", args=[{"visible": [j == i for j in range(len(methods))]},
                                                               {"xaxis.title.text": f"{row_label(m)} similarity"}])
               for i, m in enumerate(methods)]
    fig.update_layout(title=title, xaxis_title=f"{row_label(methods[0])} similarity", yaxis_title="ARI (transfer)",
                      updatemenus=[dict(buttons=buttons, x=1.0, y=1.15, xanchor="right")], height=450)
    return fig


def per_branch(result, paper_top1_first=79.8, title="Top-1 task classification, one branch at a time",
               chance: float | None = None):
    """Line plot of top-1 per branch (and per alignment variant) with the spread over seeds.

    ``chance`` (%, optional) is drawn as a dashed line.
    """
    fig = go.Figure()
    if chance is not None:
        fig.add_hline(y=chance, line={"dash": "dash", "color": "gray", "width": 1},
                      annotation_text=f"chance {chance:.1f} %", annotation_position="top left")
    for row, per_layer in result["results"].items():
        label, layers = row_label(row), list(per_layer)
        fig.add_trace(go.Scatter(**branch_points(layers), y=[100 * per_layer[l]["mean"] for l in layers],
                                 error_y=dict(type="data", array=[100 * per_layer[l]["std"] for l in layers]),
                                 mode="lines+markers", name=label,
                                 hovertemplate="branch %{x} · %{customdata}: %{y:.1f} %<extra>" + label + "</extra>"))
    axis = branch_axis([])
    axis["title"]["text"] = "branch (conv layer, numbered 1-19 as in the paper)"
    fig.update_layout(title=title, xaxis=axis, yaxis_title="top-1 (%)", height=430)
    return fig


def metric_bars(rows: dict, metric_names, title):
    """Grouped bars of several metrics for several methods: ``rows = {method: {metric: value}}``."""
    fig = go.Figure()
    methods = list(rows)
    for metric in metric_names:
        fig.add_trace(go.Bar(x=methods, y=[rows[m][metric] for m in methods], name=metric))
    fig.update_layout(title=title, barmode="group", height=430)
    return fig


def weight_movement(moved: dict, title="How far training moved each conv layer from its initialisation"):
    """Per conv layer, the relative change ``||W - W0|| / ||W0||``: mean over models with its range.

    ``moved`` is ``{"mean": {layer: x}, "min": {...}, "max": {...}}`` (see ``book.weight_movement``).
    """
    layers = list(moved["mean"])
    mean = np.array([moved["mean"][n] for n in layers])
    low, high = mean - np.array([moved["min"][n] for n in layers]), np.array([moved["max"][n] for n in layers]) - mean
    fig = go.Figure(go.Scatter(**branch_points(layers), y=mean, mode="lines+markers",
                               name="mean over models (bars: min to max)",
                               hovertemplate="layer %{x} · %{customdata}: %{y:.3f}<extra></extra>",
                               error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low}))
    fig.update_layout(title=title, yaxis_title="||W − W0|| / ||W0||", xaxis=branch_axis(layers), height=420,
                      yaxis={"rangemode": "tozero"})
    return fig


def training_curve(curve, chance: float, paper_steps: int, title="Top-1 task classification against training"):
    """Top-1 (%) against SGD steps per model: one line per method (colour) and width (solid 16, dotted 8),
    each point's ``low``..``high`` as its error bar (a 95 % interval on a rung measured on folds, ± sd on one
    measured on random splits; the hover says which), chance and the paper's training length marked.

    ``curve``: rows with method, width, epochs, steps, top1, low, high, protocol
    (:func:`lpsbook.experiments.reports.curve`).
    """
    import plotly.colors

    colours = plotly.colors.qualitative.D3
    fig = go.Figure()
    for i, method in enumerate(dict.fromkeys(curve["method"])):
        for width in sorted(set(curve["width"]), reverse=True):
            rows = curve[(curve["method"] == method) & (curve["width"] == width)].sort_values("steps")
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(
                x=rows["steps"], y=rows["top1"], mode="lines+markers", name=f"{method}, width {width}",
                error_y={"type": "data", "array": rows["high"] - rows["top1"],
                         "arrayminus": rows["top1"] - rows["low"], "thickness": 1},
                legendgroup=method,
                line={"color": colours[i % len(colours)], "dash": "solid" if width == 16 else "dot"},
                customdata=np.stack([rows["epochs"], rows["low"], rows["high"], rows["protocol"]], axis=1),
                hovertemplate=f"{method}, width {width}<br>%{{x}} steps (%{{customdata[0]}} epochs)<br>"
                              "top-1 %{y:.1f} %, bar %{customdata[1]:.1f} to %{customdata[2]:.1f}"
                              "<br>%{customdata[3]}<extra></extra>"))
    fig.add_hline(y=chance, line={"dash": "dash", "color": "gray", "width": 1},
                  annotation_text=f"chance {chance:.0f} %", annotation_position="bottom right")
    fig.add_vline(x=paper_steps, line={"dash": "dash", "color": "black", "width": 1},
                  annotation_text="the paper's recipe", annotation_position="top left")
    fig.update_xaxes(type="log", title_text="SGD steps per model (log scale)",
                     tickvals=sorted(set(curve["steps"]) | {paper_steps}))
    fig.update_yaxes(title_text="top-1 %", range=[0, 100])
    fig.update_layout(title=title, height=480, legend={"font": {"size": FONT_SMALL}})
    return fig


def per_stage(stages, branches, whole: tuple | None = None, chance: float | None = None,
              title="Which part of the network carries the task"):
    """Top-1 of the graph learner reading one part of the network, beside LPS's best branch of that part;
    ``whole = (mean %, sd %)`` adds the learner on the whole network."""
    parts = list(stages["results"])
    graph = [100 * stages["results"][p]["top1"]["mean"] for p in parts]
    graph_sd = [100 * stages["results"][p]["top1"]["std"] for p in parts]
    if whole is not None:
        parts, graph, graph_sd = parts + ["whole network"], graph + [whole[0]], graph_sd + [whole[1]]
    first = {"stem": (1, 1), "stage 1": (2, 7), "stage 2": (8, 13), "stage 3": (14, 19)}
    per_layer = next(iter(branches["results"].values()))
    lps = []
    for p in parts:
        lo, hi = first.get(p, (1, 19))
        vals = [100 * v["mean"] for layer, v in per_layer.items() if lo <= layer_number(layer) <= hi]
        lps.append(max(vals) if vals else None)
    fig = go.Figure([go.Bar(x=parts, y=graph, error_y=dict(type="data", array=graph_sd),
                            name="graph learner, this part only"),
                     go.Bar(x=parts, y=lps, name="LPS, best single branch in this part")])
    if chance is not None:
        fig.add_hline(y=chance, line={"dash": "dash", "color": "gray", "width": 1},
                      annotation_text=f"chance {chance:.1f} %", annotation_position="top left")
    fig.update_layout(title=title, yaxis_title="top-1 (%)", barmode="group", height=430)
    return fig
