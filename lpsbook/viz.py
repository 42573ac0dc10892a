"""Plotly figures of the book.

Every figure of a chapter comes from a function here, so that the HTML book,
JupyterLab and the tests share it.  The functions take plain arrays or the
package's small result objects and return a ``plotly.graph_objects.Figure``;
they never compute anything expensive.  Interactive figures use plotly's own
``updatemenus``/``sliders``, which work in the static HTML book (no kernel).

Conventions for conv weights ``[g, c, k, k]``: a *filter grid* puts the
trained filters along the x axis and their input channels along the y axis,
one k x k tile each, separated by blank (NaN) lines; weights use a diverging
colour scale centred on 0.  Labels are plain text or unicode (plotly draws
before MathJax loads, so ``$...$`` would stay raw in the HTML book).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .nets import layer_number, short_layer
from .results import label as row_label

WEIGHT_SCALE = "RdBu_r"
SCORE_SCALE = "Viridis"
FONT_SMALL = 9


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def filter_grid(weights, gap: int = 1) -> np.ndarray:
    """Lay out conv weights ``[g, c, k, k]`` as one 2-d image.

    Parameters
    ----------
    weights : array-like [g, c, kh, kw]
    gap : int
        Blank (NaN) pixels between tiles.

    Returns
    -------
    ndarray, float32, shape ``(c*(kh+gap)-gap, g*(kw+gap)-gap)``
        Tile ``(channel j, filter i)`` starts at row ``j*(kh+gap)``, column ``i*(kw+gap)``.
    """
    w = _np(weights).astype(np.float32)
    if w.ndim != 4:
        raise ValueError(f"weights must be [g, c, k, k], got shape {w.shape}")
    g, c, kh, kw = w.shape
    grid = np.full((c, kh + gap, g, kw + gap), np.nan, dtype=np.float32)
    grid[:, :kh, :, :kw] = w.transpose(1, 2, 0, 3)
    return grid.reshape(c * (kh + gap), g * (kw + gap))[: c * (kh + gap) - gap, : g * (kw + gap) - gap]


def _tile_ticks(n: int, k: int, gap: int, labels=None, most: int = 16) -> dict:
    """Tick at the centre of every tile, labelled (every tile up to ``most`` tiles, else every 2nd, ...)."""
    labels = list(range(n)) if labels is None else list(labels)
    step = -(-n // most)
    return {"tickvals": [i * (k + gap) + (k - 1) / 2 for i in range(0, n, step)],
            "ticktext": [str(int(v)) if isinstance(v, (int, np.integer)) else str(v) for v in labels[::step]],
            "tickfont": {"size": FONT_SMALL}}


def _filter_trace(weights, zmax, showscale=False, colorbar=None, name="", gap=1) -> go.Heatmap:
    return go.Heatmap(z=filter_grid(weights, gap), zmin=-zmax, zmax=zmax, zmid=0, colorscale=WEIGHT_SCALE,
                      showscale=showscale, colorbar=colorbar, name=name, hoverongaps=False,
                      hovertemplate="weight %{z:.3f}<extra>" + name + "</extra>")


def _zmax(*arrays) -> float:
    m = max(float(np.nanmax(np.abs(_np(a)))) for a in arrays)
    return m if m > 0 else 1.0


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


def before_after_figure(rows, titles=("original", "shuffled"), title=None) -> go.Figure:
    """Conv weights before and after a permutation, side by side.

    Parameters
    ----------
    rows : sequence of dict
        One row of panels per layer, with keys ``name``, ``before``,
        ``after`` (arrays ``[g, c, k, k]``) and optionally ``filter_labels``
        / ``channel_labels``: the old index of every filter / channel of
        ``after`` (its tick labels).
    titles : (str, str)
        Column titles.
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap per panel (``2 * len(rows)`` traces).
    """
    n = len(rows)
    fig = make_subplots(rows=n, cols=2, horizontal_spacing=0.08, vertical_spacing=0.16,
                        subplot_titles=[f"{r['name']}: {t}" for r in rows for t in titles])
    for i, r in enumerate(rows, start=1):
        zmax = _zmax(r["before"], r["after"])
        g, c, k = _np(r["before"]).shape[:3]
        for j, (key, fl, cl) in enumerate([("before", None, None),
                                           ("after", r.get("filter_labels"), r.get("channel_labels"))], start=1):
            last = i == 1 and j == 2
            fig.add_trace(_filter_trace(r[key], zmax, showscale=last, name=f"{r['name']} {titles[j - 1]}",
                                        colorbar={"title": {"text": "weight"}, "len": 0.8} if last else None),
                          row=i, col=j)
            fig.update_xaxes(title_text="filter (old index)", row=i, col=j, **_tile_ticks(g, k, 1, fl))
            fig.update_yaxes(title_text="input channel (old index)", autorange="reversed", row=i, col=j,
                             **_tile_ticks(c, k, 1, cl))
    fig.update_layout(title=title, height=330 * n + 80, margin={"t": 90})
    return fig


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
    ref = _np(reference)
    x = ref[:, 1] - ref[:, 0]
    fig = go.Figure()
    ys = []
    for name, logits in others.items():
        z = _np(logits)
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
    spec : lpsbook.symmetry.PermutationSpec
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


# --- the alignment of Eqs. 5-8 ------------------------------------------------------------------

_VIEW_TITLES = ("trained filters, stored order", "aligned order (sorted by s[·, g′], channels matched to φ)",
                "scores s[g, g′] ({eq})", "each row sorted over g (Eq. 8)")


def _tile_lines(g: int, c: int, k: int) -> go.Scatter:
    """White lines between the k x k tiles of a gap-free filter grid (one cheap trace)."""
    xs, ys = [], []
    for i in range(1, g):
        xs += [i * k - 0.5, i * k - 0.5, None]
        ys += [-0.5, c * k - 0.5, None]
    for j in range(1, c):
        xs += [-0.5, g * k - 0.5, None]
        ys += [j * k - 0.5, j * k - 0.5, None]
    return go.Scatter(x=xs, y=ys, mode="lines", line={"color": "white", "width": 2}, hoverinfo="skip",
                      showlegend=False, name="tile borders")


def _view_panels(view, zmax=None, title=None, gap=1):
    """The traces of an AlignedView and the layout that labels them (flattened keys).

    With ``gap=1`` the filter grids have blank lines between tiles (4 traces);
    with ``gap=0`` they are drawn without them, and two line traces mark the
    tiles instead (6 traces, about half the data).
    """
    g, c, k = view.raw.shape[:3]
    zmax = zmax or _zmax(view.raw)
    s = view.scores.T  # [g', g]
    lo, hi = float(s.min()), float(s.max())
    traces = [
        _filter_trace(view.raw, zmax, name="stored order", gap=gap),
        _filter_trace(view.aligned, zmax, showscale=True, name="aligned order", gap=gap,
                      colorbar={"title": {"text": "weight"}, "len": 0.4, "y": 0.8, "x": 1.02}),
        go.Heatmap(z=s, zmin=lo, zmax=hi, colorscale=SCORE_SCALE, showscale=False, name="s",
                   hovertemplate="g=%{x}, g′=%{y}: %{z:.3f}<extra>s[g, g′]</extra>"),
        go.Heatmap(z=view.sorted_scores.T, zmin=lo, zmax=hi, colorscale=SCORE_SCALE, showscale=True,
                   colorbar={"title": {"text": "score"}, "len": 0.4, "y": 0.2, "x": 1.02}, name="sorted s",
                   hovertemplate="rank %{x}, g′=%{y}: %{z:.3f}<extra>sorted</extra>"),
    ]
    channel_label = "φ channel c_j" if view.channel_alignment else "input channel"
    layout = {
        "xaxis.title.text": "filter (stored index)",
        "yaxis.title.text": "input channel",
        "xaxis2.title.text": "filter (stored index), aligned order",
        "yaxis2.title.text": channel_label,
        "xaxis3.title.text": "trained filter g (stored order)",
        "yaxis3.title.text": "second-order filter g′",
        "xaxis4.title.text": "rank",
        "yaxis4.title.text": "second-order filter g′",
        "annotations[2].text": _VIEW_TITLES[2].format(eq="Eq. 6" if view.channel_alignment else "Eq. 7"),
        "annotations[1].text": _VIEW_TITLES[1].replace("g′", f"g′={view.reference}"),
    }
    for axis, ticks in (("xaxis", _tile_ticks(g, k, gap)), ("yaxis", _tile_ticks(c, k, gap)),
                        ("xaxis2", _tile_ticks(g, k, gap, view.order)), ("yaxis2", _tile_ticks(c, k, gap))):
        layout[f"{axis}.tickvals"] = ticks["tickvals"]
        layout[f"{axis}.ticktext"] = ticks["ticktext"]
    if title is not None:
        layout["title.text"] = title
    if gap == 0:
        traces += [_tile_lines(g, c, k), _tile_lines(g, c, k)]
    return traces, layout


_PANEL_CELLS = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 1), (1, 2)]  # where each trace of _view_panels goes


def _view_subplots():
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.1, vertical_spacing=0.2,
                        subplot_titles=[t.format(eq="Eq. 6") for t in _VIEW_TITLES])
    for i in (1, 2):
        fig.update_yaxes(autorange="reversed", tickfont={"size": FONT_SMALL}, row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=2, col=i)
        fig.update_xaxes(tickfont={"size": FONT_SMALL}, row=1, col=i)
    fig.update_annotations(font={"size": 12})
    return fig


def alignment_view_figure(view, title=None) -> go.Figure:
    """One layer of one model in stored and aligned order, with its score matrices.

    Parameters
    ----------
    view : lpsbook.explorer.AlignedView
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        2 x 2 panels: the stored filters, the aligned filters (tick labels
        give each filter's stored index), ``s[g, g']`` and its sort over
        ``g`` (Eq. 8).  Four heatmap traces.
    """
    fig = _view_subplots()
    traces, layout = _view_panels(view, title=title)
    for trace, (r, c) in zip(traces, _PANEL_CELLS):
        fig.add_trace(trace, row=r, col=c)
    fig.plotly_relayout(layout)
    fig.update_layout(height=720, margin={"t": 90})
    return fig


def aligned_filters_figure(views: dict, title=None) -> go.Figure:
    """One layer of several models: stored order (left) and aligned order (right).

    Parameters
    ----------
    views : dict {label: AlignedView}
        Views of the same layer (e.g. models of one task and of another).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        ``2 * len(views)`` heatmaps on one shared colour scale.
    """
    labels = list(views)
    zmax = _zmax(*(v.raw for v in views.values()))
    fig = make_subplots(rows=len(labels), cols=2, horizontal_spacing=0.06, vertical_spacing=0.5 / len(labels),
                        subplot_titles=[f"{lab}: {t}" for lab in labels for t in ("stored order", "aligned order")])
    for i, lab in enumerate(labels, start=1):
        v = views[lab]
        g, c, k = v.raw.shape[:3]
        fig.add_trace(_filter_trace(v.raw, zmax, name=f"{lab}, stored"), row=i, col=1)
        fig.add_trace(_filter_trace(v.aligned, zmax, showscale=i == 1, name=f"{lab}, aligned",
                                    colorbar={"title": {"text": "weight"}} if i == 1 else None), row=i, col=2)
        fig.update_xaxes(row=i, col=1, **_tile_ticks(g, k, 1))
        fig.update_xaxes(row=i, col=2, **_tile_ticks(g, k, 1, v.order))
        for col in (1, 2):
            fig.update_yaxes(row=i, col=col, autorange="reversed", **_tile_ticks(c, k, 1))
    per_row = 90 + 12 * (c * (k + 1))
    fig.update_layout(title=title, height=100 + per_row * len(labels), margin={"t": 90})
    fig.update_annotations(font={"size": 11})
    return fig


def filter_patches(weights, gap: int = 1) -> np.ndarray:
    """First-layer filters ``[g, c, k, k]`` (c = 3 colour channels, or 1 grey) as one row of image patches.

    Every filter is scaled on its own so that a weight of 0 is mid-grey and the
    filter's largest ``|w|`` reaches black or full colour: ``0.5 + 0.5 * w / max|w|``
    per channel (red, green, blue in the order of the image's channels). This
    is the picture of first-layer filters found in CNN papers; the sign and
    the colour balance of a filter stay visible, its overall size does not
    (the per-channel heatmaps show that).

    Returns
    -------
    ndarray, uint8, shape ``(k, g*(k+gap)-gap, 3)``
        Filter ``i`` occupies columns ``i*(k+gap)`` to ``i*(k+gap)+k-1``; the
        gaps are white.
    """
    w = _np(weights).astype(np.float64)
    if w.ndim != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"filter patches need first-layer weights [g, 3 or 1, k, k], got shape {w.shape}")
    g, c, kh, kw = w.shape
    peak = np.abs(w).reshape(g, -1).max(axis=1)
    scaled = 0.5 + 0.5 * w / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    rgb = np.repeat(scaled, 3, axis=1) if c == 1 else scaled  # grey: the same value in R, G and B
    tiles = np.full((kh, g, kw + gap, 3), 1.0)
    tiles[:, :, :kw] = rgb.transpose(2, 0, 3, 1)  # [kh, g, kw, 3]
    row = tiles.reshape(kh, g * (kw + gap), 3)[:, : g * (kw + gap) - gap]
    return np.round(255 * np.clip(row, 0, 1)).astype(np.uint8)


PATCHES_META = "conv1 filter patches"  # layout.meta of the figure: how the browser check finds it


def filter_patches_figure(views: dict, title=None) -> go.Figure:
    """The first layer of several models as image patches: stored order (left), aligned order (right).

    Parameters
    ----------
    views : dict {label: AlignedView}
        Views of the first conv layer (its 3 colour channels, or 1 grey
        channel on the digits fallback), e.g. from
        :func:`lpsbook.explorer.views_of_layer`.
    title : str, optional
        Default: says whether the patches are in colour or grey.

    Returns
    -------
    plotly.graph_objects.Figure
        ``2 * len(views)`` image traces (:func:`filter_patches`); the tick
        labels give each filter's stored index; ``layout.meta`` is
        ``{"figure": PATCHES_META, "channels": c}``.
    """
    labels = list(views)
    c = views[labels[0]].raw.shape[1]
    if title is None:
        title = "conv1 filters as RGB patches" if c == 3 else "conv1 filters as grey patches (one input channel)"
    fig = make_subplots(rows=len(labels), cols=2, horizontal_spacing=0.06, vertical_spacing=0.5 / len(labels),
                        subplot_titles=[f"{wrap(lab, 40)}:<br>{t}" for lab in labels for t in ("stored order", "aligned order")])
    for i, lab in enumerate(labels, start=1):
        v = views[lab]
        g, _, k = v.raw.shape[:3]
        for col, (w, order, name) in enumerate([(v.raw, np.arange(g), "stored"), (v.aligned, v.order, "aligned")],
                                               start=1):
            hover = [[f"filter {order[x // (k + 1)]}" if x % (k + 1) < k else "" for x in range(g * (k + 1) - 1)]
                     for _ in range(k)]
            fig.add_trace(go.Image(z=filter_patches(w), name=f"{lab}, {name}", hovertext=hover,
                                   hoverinfo="text"), row=i, col=col)
            fig.update_xaxes(row=i, col=col, **_tile_ticks(g, k, 1, order))
            fig.update_yaxes(row=i, col=col, showticklabels=False)
    fig.update_layout(title=title, height=110 + 115 * len(labels), margin={"t": 100, "b": 30},
                      meta={"figure": PATCHES_META, "channels": int(c)})
    fig.update_annotations(font={"size": 11})
    return fig


def score_matrices_figure(views: dict, title=None) -> go.Figure:
    """Score matrices of several models before (top) and after (bottom) the sort of Eq. 8.

    Parameters
    ----------
    views : dict {label: AlignedView}
        Views of one layer through one branch.
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        ``2 * len(views)`` heatmaps on one shared colour scale.
    """
    labels = list(views)
    lo = min(float(v.scores.min()) for v in views.values())
    hi = max(float(v.scores.max()) for v in views.values())
    fig = make_subplots(rows=2, cols=len(labels), horizontal_spacing=0.03, vertical_spacing=0.22,
                        column_titles=[wrap(lab, 22) for lab in labels])  # one column is narrow: titles wrap
    for j, lab in enumerate(labels, start=1):
        v = views[lab]
        for i, (z, xname) in enumerate([(v.scores.T, "g"), (v.sorted_scores.T, "rank")], start=1):
            show = i == 1 and j == len(labels)
            fig.add_trace(go.Heatmap(z=z, zmin=lo, zmax=hi, colorscale=SCORE_SCALE, showscale=show,
                                     colorbar={"title": {"text": "score"}} if show else None,
                                     hovertemplate=f"{xname}=%{{x}}, g′=%{{y}}: %{{z:.3f}}<extra>{lab}</extra>"),
                          row=i, col=j)
            fig.update_xaxes(title_text="filter g (stored)" if i == 1 else "rank after sort", row=i, col=j)
            fig.update_yaxes(autorange="reversed", showticklabels=j == 1, row=i, col=j)
    fig.update_yaxes(title_text="before: g′", row=1, col=1)
    fig.update_yaxes(title_text="Eq. 8: g′", row=2, col=1)
    fig.update_layout(title=title, height=580, margin={"t": 150})
    fig.update_annotations(font={"size": 11})
    return fig


def second_order_filters_figure(phi, title=None) -> go.Figure:
    """A branch's learnable second-order filters ``phi [g', c, k, k]`` as one filter grid.

    Parameters
    ----------
    phi : array-like [g', c, k, k]
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap.
    """
    p = _np(phi)
    gp, c, k = p.shape[:3]
    fig = go.Figure(_filter_trace(p, _zmax(p), showscale=True, name="φ",
                                  colorbar={"title": {"text": "weight"}}))
    fig.update_xaxes(title_text="second-order filter g′", **_tile_ticks(gp, k, 1))
    fig.update_yaxes(title_text="channel c_j", autorange="reversed", **_tile_ticks(c, k, 1))
    fig.update_layout(title=title, height=min(900, 160 + 14 * c * (k + 1)))
    return fig


TRACES_PER_STATE = 6


def alignment_explorer_figure(views: dict, title=None) -> go.Figure:
    """The aligned-filter explorer as one self-contained plotly figure (works without a kernel).

    A dropdown chooses the model and a slider the layer; each state shows the
    four panels of :func:`alignment_view_figure`.  There is one slider per
    model (only the chosen model's is visible), so that the two controls
    combine: the dropdown switches sliders and shows that model's first layer.

    Parameters
    ----------
    views : dict {(model label, layer): AlignedView}
        Every (model, layer) pair to offer, e.g. from
        :func:`lpsbook.explorer.explorer_views`.
    title : str, optional
        Prefix of every state's title.

    Returns
    -------
    plotly.graph_objects.Figure
        ``TRACES_PER_STATE * len(views)`` traces (per state: the four
        heatmaps of :func:`alignment_view_figure`, drawn without blank lines
        to halve the data, and two line traces marking the tiles), one
        dropdown menu with a button per model, one slider per model with a
        step per layer.
    """
    models = list(dict.fromkeys(m for m, _ in views))
    layers = list(dict.fromkeys(l for _, l in views))
    missing = [(m, l) for m in models for l in layers if (m, l) not in views]
    if missing:
        raise ValueError(f"views lack the (model, layer) pairs {missing[:3]}")
    fig = _view_subplots()
    per = TRACES_PER_STATE
    layouts, n = {}, per * len(models) * len(layers)
    for m in models:
        for l in layers:
            name = f"{title} · " if title else ""
            traces, layouts[(m, l)] = _view_panels(views[(m, l)], title=f"{name}{m} · {l.removesuffix('.weight')}",
                                                   gap=0)
            for trace, (r, c) in zip(traces, _PANEL_CELLS):
                trace.visible = m == models[0] and l == layers[0]
                fig.add_trace(trace, row=r, col=c)

    def visible(m, l):
        start = per * (models.index(m) * len(layers) + layers.index(l))
        return [start <= i < start + per for i in range(n)]

    sliders = []
    for mi, m in enumerate(models):
        steps = [{"method": "update", "label": l.removesuffix(".weight"),
                  "args": [{"visible": visible(m, l)}, layouts[(m, l)]]} for l in layers]
        sliders.append({"active": 0, "visible": mi == 0, "steps": steps, "pad": {"t": 70},
                        "currentvalue": {"prefix": "layer: "}, "len": 1.0})
    buttons = []
    for mi, m in enumerate(models):
        switch = {f"sliders[{k}].visible": k == mi for k in range(len(models))}
        switch[f"sliders[{mi}].active"] = 0
        buttons.append({"method": "update", "label": m,
                        "args": [{"visible": visible(m, layers[0])}, {**layouts[(m, layers[0])], **switch}]})
    fig.plotly_relayout(layouts[(models[0], layers[0])])
    fig.update_layout(sliders=sliders, height=900, margin={"t": 170, "b": 120},  # room for the slider's labels
                      title={"y": 0.985, "yanchor": "top"},
                      updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.09, "xanchor": "left",
                                    "y": 1.2, "yanchor": "top", "showactive": True}])
    fig.add_annotation(text="model:", x=0, xref="paper", xanchor="left", y=1.185, yref="paper",
                       yanchor="top", showarrow=False, font={"size": 13})
    return fig


# --- model sets and the paper's experiments ---------------------------------------------------

def accuracy_by_task(meta, title="Test accuracy of every model, by task"):
    """Box plot of the models' test accuracy per task (one box per task)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [f"{a}/{b}" for a, b in meta["classes"]]
    fig.add_trace(go.Box(x=labels, y=meta["test_acc"], boxpoints="all", jitter=0.4, pointpos=0,
                         marker_size=3, line_width=1, name="test accuracy"))
    fig.update_layout(title=title, xaxis_title="task (class pair)", yaxis_title="test accuracy",
                      showlegend=False, height=420)
    return fig


def model_map(embeddings: dict, task_labels, title="Models in two dimensions (UMAP), coloured by task"):
    """Side-by-side 2-D maps, one per embedding ``{name: [models, 2]}``, points coloured by task."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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


def paper_vs_ours(table, metrics, title, chance: dict | None = None):
    """Bars side by side: each method's metrics, the paper's beside ours (with our spread as error bars).

    One panel per metric; the methods run down the shared y axis (their names read once, in full,
    never running into the next panel); bars are horizontal. ``chance`` ({metric: %}, optional) draws
    each metric's chance level as a dashed line.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"{METRIC_NAMES.get(m, m)} %" for m in metrics],
                        shared_yaxes=True, horizontal_spacing=0.06)
    names = list(map(str, table.index))
    for c, metric in enumerate(metrics, start=1):
        paper = table[f"{metric} paper"]
        fig.add_trace(go.Bar(y=names, x=paper, orientation="h", name="paper (CIFAR-100)", marker_color="#9aa5b1",
                             showlegend=c == 1, hovertemplate="%{y}: %{x:.1f} %<extra>paper</extra>"), row=1, col=c)
        fig.add_trace(go.Bar(y=names, x=table[f"{metric} ours"], orientation="h", name="ours",
                             error_x=dict(type="data", array=table[f"{metric} ours sd"]),
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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

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
    the spread over splits as error bars, chance and the paper's training length marked.

    ``curve``: rows with method, width, epochs, steps, top1, sd (:func:`lpsbook.ladder.curve`).
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
                x=rows["steps"], y=rows["top1"], error_y={"type": "data", "array": rows["sd"], "thickness": 1},
                mode="lines+markers", name=f"{method}, width {width}", legendgroup=method,
                line={"color": colours[i % len(colours)], "dash": "solid" if width == 16 else "dot"},
                customdata=np.stack([rows["epochs"], rows["sd"]], axis=1),
                hovertemplate=f"{method}, width {width}<br>%{{x}} steps (%{{customdata[0]}} epochs)<br>"
                              "top-1 %{y:.1f} ± %{customdata[1]:.1f} %<extra></extra>"))
    fig.add_hline(y=chance, line={"dash": "dash", "color": "gray", "width": 1},
                  annotation_text=f"chance {chance:.0f} %", annotation_position="bottom right")
    fig.add_vline(x=paper_steps, line={"dash": "dash", "color": "black", "width": 1},
                  annotation_text="the paper's recipe", annotation_position="top left")
    fig.update_xaxes(type="log", title_text="SGD steps per model (log scale)",
                     tickvals=sorted(set(curve["steps"]) | {paper_steps}))
    fig.update_yaxes(title_text="top-1 %", range=[0, 100])
    fig.update_layout(title=title, height=480, legend={"font": {"size": FONT_SMALL}})
    return fig


# --- results as tables and text ---------------------------------------------------------------

def show(table, digits: int = 1):
    """A results table for the page: numbers rounded, a dash where there is no value (e.g. the paper's),
    verdicts (bools) as yes / no."""
    table = table.copy()
    for col in table.columns[(table.dtypes == bool).to_numpy()]:
        table[col] = table[col].map({True: "yes", False: "no"})
    return table.style.format(precision=digits, na_rep="—")


def paper_table(result: dict, metrics, rows=None):
    """Numbers for :func:`paper_vs_ours`, in %: per method (display names) and metric, the paper's
    (``"<metric> paper"``), ours (``"<metric> ours"``) and our sd over splits (``"<metric> ours sd"``)."""
    import pandas as pd

    from .claims import PAPER

    paper, out = PAPER.get(result["experiment"], {}), {}
    for m in rows or list(result["results"]):
        row = {}
        for i, metric in enumerate(metrics):
            row[f"{metric} paper"] = paper[m][i] if m in paper else float("nan")
            row[f"{metric} ours"] = 100 * result["results"][m][metric]["mean"]
            row[f"{metric} ours sd"] = 100 * result["results"][m][metric]["std"]
        out[row_label(m)] = row
    return pd.DataFrame(out).T


def challenge_table(verdicts):
    """:func:`lpsbook.claims.challenges` for the page: challengers by name, the verdict as yes / no."""
    table = verdicts.rename(index=row_label, level=0)
    return show(table.rename(columns={"challenger": "challenger", "incumbent": "LPS"}), digits=2)


def layer_table(table, scale: float = 100, digits: int = 1):
    """A per-layer table for the page (HTML, so it never wraps like printed text): one row per conv
    layer, labelled as the paper numbers them (``2 · layer1.0.conv1``), values scaled (100: %)."""
    out = table * scale
    out.index = [f"{layer_number(str(n))}\u00a0·\u00a0{short_layer(str(n))}" for n in table.index]  # no break
    out.index.name = "conv layer"
    return show(out, digits)


METRIC_NAMES = {"top1": "top-1", "top5": "top-5", "top10": "top-10", "rank1": "rank-1", "rank5": "rank-5",
                "rank10": "rank-10", "mAP": "mAP", "spearman": "Spearman ρ", "spearman_per_target": "Spearman ρ per target",
                "related_auc": "related-task AUC (retrieval split)"}


def mean_sd(summary: dict, scale: float = 100, digits: int = 1) -> str:
    """``"29.0 ± 5.6"``: a result's ``{"mean", "std"}`` over splits, scaled (100 for %), in one cell."""
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"


def results_table(result: dict, metrics=None):
    """A protocol's results as a reader writes them: ``mean ± sd`` in one cell, one column per metric
    ("top-1 %"), the paper's number beside it where the paper has one ("top-1 %, paper").

    Percentages for classification and retrieval, plain values (3 decimals) for the other protocols.
    """
    import pandas as pd

    from .claims import PAPER

    kind = result["experiment"]
    paper, pct = PAPER.get(kind, {}), kind in PAPER
    rows = {}
    for method, per_metric in result["results"].items():
        row = {}
        for i, metric in enumerate(metrics or list(per_metric)):
            name = METRIC_NAMES.get(metric, metric.replace("_", " ")) + (" %" if pct else "")
            r = per_metric[metric]
            row[name] = mean_sd(r) if pct else mean_sd(r, scale=1, digits=3)
            if pct:
                row[f"{name}, paper"] = f"{paper[method][i]:.1f}" if method in paper and i < len(paper[method]) else "—"
        rows[row_label(method)] = row
    return pd.DataFrame(rows).T


def summary(result: dict, metric: str, scale: float = 100) -> str:
    """``metric`` mean +- sd over seeds: a heading line, then one line per method."""
    unit = " %" if scale == 100 else ""
    parts = [f"  {row_label(m)}: {scale * r[metric]['mean']:.1f} +- {scale * r[metric]['std']:.1f}{unit}" if scale == 100
             else f"  {row_label(m)}: {r[metric]['mean']:.3f} +- {r[metric]['std']:.3f}"
             for m, r in result["results"].items() if metric in r]
    return "\n".join([f"{result['experiment']} {metric}:"] + parts)


def contrast_text(contrast) -> str:
    """Chapter 5's reading of :func:`lpsbook.book.contrast_with_digits` (Markdown): the comparison and its
    three explanations when both sets are there, else (the digits fallback) why it is left out."""
    d = contrast.iloc[:, -1]  # the digits set: the only column when the book runs on digits
    if contrast.shape[1] == 1:
        return f"""This build did not find CIFAR-100 (the banner at the top of the chapter says
why), so the table shows the digits set alone and the comparison with a
CIFAR-100 set is left out. Here LPS classifies at {d["LPS top-1 / chance"]:.1f} times chance, although
the models are nearly perfect on their tasks ({d["model test accuracy %"]:.1f} % test accuracy
on average) and their first conv layers moved by {d["conv1 weight change (relative)"]:.2f} of their
initial norm. With the data (`make data`, or `LPSBOOK_DATA` pointing at
`cifar100.npz`), this section compares the two model sets and weighs what
differs between them: the input and the overlap between tasks."""
    c = contrast.iloc[:, 0]
    return f"""On CIFAR-100 LPS classifies at {c["LPS top-1 / chance"]:.1f} times chance, on digits at
{d["LPS top-1 / chance"]:.1f} times: there, held-out models are no better placed than by
a guess. What the measurements rule out, and what they leave:

* **Not untrained weights.** The digits models are nearly perfect on their
  tasks ({d["model test accuracy %"]:.1f} % test accuracy on average), and their first
  conv layers moved by {d["conv1 weight change (relative)"]:.2f} of their initial norm
  (CIFAR-100: {c["conv1 weight change (relative)"]:.2f}). Chapter 7 also trains digits models
  five times longer, and LPS stays at chance.
* **The input.** A digits model's first layer sees one grey channel of an
  8x8 image, {d["training images per task"]} images per task; a CIFAR-100 model's sees
  three colour channels of a 32x32 image, {c["training images per task"]} per task.
  Two digit pairs differ in shape only, so first-layer edge detectors may
  serve every pair alike; CIFAR-100 pairs differ in colour too, which a first
  layer with three input channels can encode.
* **Task overlap.** {d["task pairs sharing a class %"]:.0f} % of the digits tasks share a
  class with each other, none of CIFAR-100's: tasks that share a digit
  should look alike, which makes them harder to tell apart.

We have not separated the last two (that would take, for instance, a CIFAR-100
set trained on grey 8x8 images); the table states what differs, not which
difference is the cause."""


def settings_text(result: dict) -> str:
    """A protocol's settings as a sentence a reader can check (not the dict it is stored as)."""
    from .nets import layer_number

    st, parts = result["settings"], []
    if st.get("lps"):
        c = st["lps"]
        steps = ", ".join(str(m) for m in c["milestones"])
        parts.append(f"second-order network trained {c['epochs']} epochs in batches of {c['batch_size']}, "
                     f"lr {c['lr']:g} divided by 10 after epochs {steps}")
    if st.get("layers"):
        parts.append("branches " + ", ".join(str(layer_number(n)) for n in st["layers"]) + " (of 19)")
    if st.get("second_order_filters"):
        parts.append(f"{st['second_order_filters']} second-order filters per branch")
    if st.get("seeds"):
        parts.append(f"{st['seeds']} random split{'s' if st['seeds'] > 1 else ''}")
    return "; ".join(parts) + "."


def branch_summary(result: dict) -> str:
    """Best and worst branch per variant of a branches/ablation result."""
    lines = []
    for variant, per_layer in result["results"].items():
        means = {layer: 100 * v["mean"] for layer, v in per_layer.items()}
        best, worst = max(means, key=means.get), min(means, key=means.get)
        lines.append(f"{result['experiment']} [{row_label(variant)}]: best {best} {means[best]:.1f} %, "
                     f"worst {worst} {means[worst]:.1f} %, mean over branches {sum(means.values()) / len(means):.1f} %")
    return "\n".join(lines)


def similarity_table(result: dict):
    """The weights-or-activations comparison as a table (mean over seeds)."""
    import pandas as pd

    from . import methods

    rows = {m: {k: round(v["mean"], 3) for k, v in r.items()} for m, r in result["results"].items()}
    table = pd.DataFrame(rows).T
    table.insert(0, "family", [methods.reads(m) for m in table.index])
    return table.rename(index=row_label).sort_values("transfer_spearman_per_target", ascending=False)


def cost_table(result: dict):
    """Seconds per 100 model pairs, per measure."""
    import pandas as pd

    cost = result["cost_seconds_per_100_pairs"]
    return pd.DataFrame({"seconds per 100 model pairs": cost}).rename(index=row_label).sort_values("seconds per 100 model pairs")


def method_rows(classification: dict, retrieval: dict) -> dict:
    """{method: {metric: %}} of the main metrics of both protocols, for a bar chart."""
    return {row_label(m): {"classification top-1 %": 100 * classification["results"][m]["top1"]["mean"],
                "retrieval rank-1 %": 100 * retrieval["results"][m]["rank1"]["mean"],
                "retrieval mAP %": 100 * retrieval["results"][m]["mAP"]["mean"]}
            for m in classification["results"] if m in retrieval["results"]}


def similarity_rows(result: dict) -> dict:
    """{measure: {metric: mean}} of the weights-or-activations comparison, for a bar chart."""
    return {row_label(m): {k: v["mean"] for k, v in r.items() if k != "related_rank1_chance"}
            for m, r in result["results"].items()}


def training_length_table(check: dict):
    """Top-1 (%) per method for both recipes, with each recipe's epochs and model accuracy."""
    import pandas as pd

    rows = {}
    for label, r in check.items():
        row = {"epochs": r["epochs"], "model test accuracy": round(r["test_acc_mean"], 4),
               "tasks": r["tasks"], "chance top-1 %": round(100 / r["tasks"], 1)}
        row.update({f"{row_label(m)} top-1 %": f"{100 * v['top1']['mean']:.1f} +- {100 * v['top1']['std']:.1f}"
                    for m, v in r["results"].items()})
        rows[label] = row
    return pd.DataFrame(rows).T


def relation_table(tr: dict, sim: dict):
    """Per weight-based method: Spearman with measured transfer (transferability protocol), and how well its
    similarity singles out related tasks (similarity protocol: ROC AUC, rank-1 with its chance rate)."""
    import pandas as pd

    rows = {}
    for m, r in tr["results"].items():
        row = {"transfer Spearman (per target)": r["spearman_per_target"]["mean"],
               "transfer Spearman sd": r["spearman_per_target"]["std"]}
        if m in sim["results"]:
            s = sim["results"][m]
            row.update({"related-task AUC (5 folds)": s["related_auc"]["mean"], "related rank-1 %": 100 * s["related_rank1"]["mean"],
                        "rank-1 chance %": 100 * s["related_rank1_chance"]["mean"]})
        rows[row_label(m)] = row
    return pd.DataFrame(rows).T


def protocol_table(classification: dict, retrieval: dict, transferability: dict):
    """Every method on every protocol: mean ± sd over splits of the main metric of each."""
    import pandas as pd

    from .claims import main_metrics

    columns = main_metrics(classification, retrieval, transferability)
    rows = {}
    for m in classification["results"]:
        row = {}
        for label, (result, metric, scale) in columns.items():
            r = result["results"].get(m, {}).get(metric)
            digits = 1 if scale == 100 else 2
            row[label] = mean_sd(r, scale, digits) if r else float("nan")
        rows[row_label(m)] = row
    return pd.DataFrame(rows).T


def cost_of_methods(costs: dict):
    """:func:`lpsbook.analyses.costs` as a table, cheapest fit first."""
    import pandas as pd

    return pd.DataFrame(costs).T.rename(index=row_label).sort_values("fit seconds")


def per_stage(stages, branches, whole: tuple | None = None, chance: float | None = None,
              title="Which part of the network carries the task"):
    """Top-1 of the graph learner reading one part of the network, beside LPS's best branch of that part;
    ``whole = (mean %, sd %)`` adds the learner on the whole network."""
    import plotly.graph_objects as go

    from .nets import layer_number

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
