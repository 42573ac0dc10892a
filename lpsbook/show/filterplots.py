"""Figures of conv filters and of their alignment (chapters 1-3 and the explorer).

Conventions for conv weights ``[g, c, k, k]``: a *filter grid* puts the
trained filters along the x axis and their input channels along the y axis,
one k x k tile each, separated by blank (NaN) lines; weights use a diverging
colour scale centred on 0.  On colour images, conv1's filters are also shown
as small RGB patches (:func:`filter_patches_figure`).  Interactive figures use
plotly's own ``updatemenus``/``sliders``, which work in the static HTML book.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .viz import FONT_SMALL, as_numpy, wrap

WEIGHT_SCALE = "RdBu_r"
SCORE_SCALE = "Viridis"


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
    w = as_numpy(weights).astype(np.float32)
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
    m = max(float(np.nanmax(np.abs(as_numpy(a)))) for a in arrays)
    return m if m > 0 else 1.0


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
        g, c, k = as_numpy(r["before"]).shape[:3]
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
    view : lpsbook.show.explorer.AlignedView
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
    w = as_numpy(weights).astype(np.float64)
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
        :func:`lpsbook.show.explorer.views_of_layer`.
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
    p = as_numpy(phi)
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
        :func:`lpsbook.show.explorer.explorer_views`.
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
