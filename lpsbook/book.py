"""What the book's chapters share: the preset they run on and a result cache.

``LPSBOOK_PRESET`` picks the preset (default ``digits``); results of
expensive steps are cached under ``$LPSBOOK_CACHE/results/`` (default
``data/results/``) keyed by the preset's hash and the step's settings, so a
rebuild of the book does not retrain.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .data import default_cache_dir
from .presets import Preset, get_preset


def current_preset() -> Preset:
    """The preset named by ``$LPSBOOK_PRESET`` (default ``digits``)."""
    return get_preset(os.environ.get("LPSBOOK_PRESET", "digits"))


def banner(preset: Preset | None = None) -> str:
    """Which preset a chapter ran on, in two lines short enough for a narrow page."""
    p = preset or current_preset()
    return (f"preset {p.name!r} ({p.hash}) on {p.dataset}\n"
            f"{len(p.tasks)} tasks x {p.seeds} seeds = {p.num_models} ResNet-20s of width {p.width}")


def modelset(preset: Preset | None = None, progress: bool = True):
    """The chapter's model set: built on first use, then loaded from the cache."""
    from . import modelset as ms

    return ms.ensure(preset or current_preset(), progress=progress)


def _key(preset: Preset, name: str, settings: dict) -> str:
    text = json.dumps({"preset": preset.hash, "name": name, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_path(name: str, settings: dict, preset: Preset | None = None, root=None) -> Path:
    """Where the cached result of (preset, name, settings) lives."""
    preset = preset or current_preset()
    folder = Path(root or default_cache_dir()) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{preset.name}-{name}-{_key(preset, name, settings)}.json"


def cached_json(name: str, settings: dict, compute, preset: Preset | None = None, root=None):
    """``compute()`` once per (preset, name, settings); its JSON result is kept on disk."""
    from .modelset import _write_atomic

    path = result_path(name, settings, preset, root)
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    _write_atomic(path, json.dumps(result, indent=1, default=float).encode())
    return json.loads(path.read_text())


def setup_plotly():
    """Make plotly figures render in the HTML book offline (call in a chapter's first, hidden cell).

    Registers a notebook renderer that embeds plotly.js once (in this cell's
    output) and never asks a CDN for MathJax, and makes it the default
    together with plotly's JSON mimetype (used by JupyterLab).
    """
    import plotly.io as pio
    from plotly.io.base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        _activated = False

        def activate(self):  # embed plotly.js only once
            if not self._activated:
                self._activated = True
                super().activate()

        def to_mimebundle(self, fig_dict):  # no MathJax <script> from a CDN
            html = pio.to_html(fig_dict, config=self.config, auto_play=self.auto_play,
                               include_plotlyjs=False, include_mathjax=False, full_html=False,
                               animation_opts=self.animation_opts, default_width="100%",
                               default_height=525, validate=False)
            return {"text/html": html}

    if "lpsbook" not in pio.renderers:
        pio.renderers["lpsbook"] = OfflineNotebookRenderer()
    pio.renderers.default = "plotly_mimetype+lpsbook"
    pio.renderers["lpsbook"].activate()


def glue(**values):
    """Hand numbers to the chapter's prose without showing them.

    In a hidden cell, ``book.glue(acc=93.5)``; in the text,
    ``{glue:text}`acc:.1f` %``. Values are passed as plain Python numbers.
    Strings are glued as plain text (no quotes).
    """
    from myst_nb import glue as myst_glue

    for name, value in values.items():
        if hasattr(value, "item"):  # numpy / torch scalars
            value = value.item()
        if isinstance(value, str):
            value = _PlainText(value)
        myst_glue(name, value, display=False)


class _PlainText(str):
    """A string whose text/plain display is itself (a str's repr would add quotes)."""

    def __repr__(self):
        return str(self)


def show(table, digits: int = 1):
    """A results table for the page: numbers rounded, a dash where there is no value (e.g. the paper's)."""
    return table.style.format(precision=digits, na_rep="—")


CIFAR100_TRAIN_IMAGES_PER_CLASS = 500


def steps_per_model(preset: Preset | None = None) -> int:
    """SGD steps one model of ``preset`` is trained for (epochs x batches of its two-class task).

    CIFAR-100's count comes from its fixed size, so the data need not be present.
    """
    import math

    p = preset or current_preset()
    if p.dataset == "cifar100":
        return p.epochs * math.ceil(2 * CIFAR100_TRAIN_IMAGES_PER_CLASS / p.batch_size)
    from .data import load_dataset
    from .training import steps_per_epoch

    return p.epochs * steps_per_epoch(p, load_dataset(p))


# --- the experiments as the book runs them -------------------------------------------------------

def experiment_settings(name: str, preset: Preset | None = None) -> dict:
    """Settings of experiment ``name`` in the book: the paper's protocol on cifar100; on the CPU
    presets fewer seeds, epochs and branches so the whole book builds in minutes."""
    from .experiments import EXTRA_METHODS, PAPER_METHODS, PARAMETER_METHODS

    p = preset or current_preset()
    full = p.dataset == "cifar100"
    every = {"classification": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "seeds": 3},
             "retrieval": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "seeds": 3},
             "transferability": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "seeds": 3 if full else 2},
             "similarity": {"methods": list(PARAMETER_METHODS), "seeds": 1}}
    if full:
        every["branches"] = {"seeds": 1, "config": {"epochs": 300, "batch_size": 1, "lr": 1e-3,
                                                    "milestones": [150, 225]}}
        every["ablation"] = dict(every["branches"])
    else:
        quick = {"epochs": 20, "batch_size": 8, "lr": 0.05, "milestones": [10, 15]}
        # every other branch; g' = 8 keeps the width-32 stage affordable on a CPU
        every["branches"] = {"seeds": 1, "config": quick, "second_order_filters": 8,
                             "layers": [1, 2, 4, 7, 10, 13, 16, 19]}
        every["ablation"] = {"seeds": 1, "config": quick, "second_order_filters": 8,
                             "layers": [2, 4, 6, 8, 10, 12, 14]}
    return every[name]


def experiment(name: str, preset: Preset | None = None, progress: bool = True, **overrides) -> dict:
    """Run (or load from the cache) experiment ``name`` on the book's model set."""
    import dataclasses

    from . import experiments
    from .training import resolve_device

    p = preset or current_preset()
    settings = {**experiment_settings(name, p), **overrides}

    def compute():
        ms = modelset(p, progress=progress)
        kwargs = dict(settings)
        if "config" in kwargs:
            base = experiments.default_config(ms)
            kwargs["config"] = dataclasses.replace(base, **{k: tuple(v) if k == "milestones" else v
                                                            for k, v in kwargs["config"].items()})
        else:
            kwargs["config"] = experiments.default_config(ms)
        if "layers" in kwargs:
            kwargs["layers"] = [ms.layers[i - 1] for i in kwargs["layers"]]
        if "methods" in kwargs:
            kwargs["methods"] = tuple(kwargs["methods"])
        kwargs["device"] = resolve_device("auto")
        if name != "similarity":  # finished fits survive an interruption
            kwargs["checkpoint"] = result_path(name, settings, p).with_suffix(".partial")
        return experiments.PROTOCOLS[name](ms, **kwargs)

    return cached_json(name, settings, compute, preset=p)


def model_maps(preset: Preset | None = None, layer_index: int = 1) -> dict:
    """2-D UMAP maps of all models: by raw conv weights and by LPS features (cached).

    The LPS network is trained on the classification split (seed 0), so the
    map shows training and held-out models alike.  Returns
    ``{"task_id": [...], "maps": {title: [[x, y], ...]}, "held_out": [...]}``.
    """
    p = preset or current_preset()

    def compute():
        import warnings

        import umap

        from . import experiments
        from .lps import SecondOrderNet, layer_shapes

        ms = modelset(p)
        name = ms.layers[layer_index - 1]
        train, test = experiments.classification_split(ms, 0)
        labels = ms.task_ids
        net = SecondOrderNet(layer_shapes(ms.conv_weights), int(labels.max()) + 1, {name: 1.0})
        net.fit(experiments._state(ms, train), labels[train], config=experiments.default_config(ms))
        raw = ms.conv_weights[name].flatten(1).numpy()
        lps = net.embed(ms.conv_weights).numpy()
        def reducer(x):
            with warnings.catch_warnings():  # a fixed random_state runs UMAP on one thread, and says so
                warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
                return umap.UMAP(n_neighbors=15, random_state=0).fit_transform(x).tolist()

        return {"task_id": labels.tolist(), "held_out": sorted(int(i) for i in test),
                "maps": {f"raw weights of {name}": reducer(raw), f"LPS features of {name}": reducer(lps)}}

    return cached_json("model_maps", {"layer_index": layer_index}, compute, preset=p)


def summary(result: dict, metric: str, scale: float = 100) -> str:
    """``metric`` mean +- sd over seeds: a heading line, then one line per method."""
    unit = " %" if scale == 100 else ""
    parts = [f"  {m}: {scale * r[metric]['mean']:.1f} +- {scale * r[metric]['std']:.1f}{unit}" if scale == 100
             else f"  {m}: {r[metric]['mean']:.3f} +- {r[metric]['std']:.3f}"
             for m, r in result["results"].items() if metric in r]
    return "\n".join([f"{result['experiment']} {metric}:"] + parts)


def branch_summary(result: dict) -> str:
    """Best and worst branch per variant of a branches/ablation result."""
    lines = []
    for variant, per_layer in result["results"].items():
        means = {layer: 100 * v["mean"] for layer, v in per_layer.items()}
        best, worst = max(means, key=means.get), min(means, key=means.get)
        lines.append(f"{result['experiment']} [{variant}]: best {best} {means[best]:.1f} %, "
                     f"worst {worst} {means[worst]:.1f} %, mean over branches {sum(means.values()) / len(means):.1f} %")
    return "\n".join(lines)


def similarity_table(result: dict):
    """The weights-or-activations comparison as a table (mean over seeds)."""
    import pandas as pd

    from .experiments import ACTIVATION_MEASURES

    rows = {m: {k: round(v["mean"], 3) for k, v in r.items()} for m, r in result["results"].items()}
    table = pd.DataFrame(rows).T
    table.insert(0, "family", ["activations" if m in ACTIVATION_MEASURES else "weights" for m in table.index])
    return table.sort_values("transfer_spearman_per_target", ascending=False)


def cost_table(result: dict):
    """Seconds per 100 model pairs, per measure."""
    import pandas as pd

    cost = result["cost_seconds_per_100_pairs"]
    return pd.DataFrame({"seconds per 100 model pairs": cost}).sort_values("seconds per 100 model pairs")


def means(result: dict, metric: str, scale: float = 1.0) -> dict:
    """{method: scale x mean over seeds of ``metric``} of a protocol's result."""
    return {m: scale * r[metric]["mean"] for m, r in result["results"].items() if metric in r}


def measure_families(result: dict) -> tuple:
    """(activation measures, weight methods) of a weights-or-activations result, in its order."""
    from .experiments import ACTIVATION_MEASURES

    methods = list(result["results"])
    return [m for m in methods if m in ACTIVATION_MEASURES], [m for m in methods if m not in ACTIVATION_MEASURES]


def method_rows(classification: dict, retrieval: dict) -> dict:
    """{method: {metric: %}} of the main metrics of both protocols, for a bar chart."""
    return {m: {"classification top-1 %": 100 * classification["results"][m]["top1"]["mean"],
                "retrieval rank-1 %": 100 * retrieval["results"][m]["rank1"]["mean"],
                "retrieval mAP %": 100 * retrieval["results"][m]["mAP"]["mean"]}
            for m in classification["results"] if m in retrieval["results"]}


def similarity_rows(result: dict) -> dict:
    """{measure: {metric: mean}} of the weights-or-activations comparison, for a bar chart."""
    return {m: {k: v["mean"] for k, v in r.items() if k != "related_rank1_chance"}
            for m, r in result["results"].items()}


def training_length_check(preset: Preset | None = None, every: int = 3, factor: int = 5, seeds: int = 3):
    """Is the short CPU recipe why weights reveal so little? (cached; CPU presets only)

    Takes every ``every``-th task of the preset, and compares task
    classification on the book's models of those tasks with a model set of
    the same tasks trained ``factor`` times longer (learning-rate steps
    scaled alike).  Returns ``None`` on cifar100, whose recipe is the paper's.
    """
    from . import experiments
    from . import modelset as ms_module

    p = preset or current_preset()
    if p.dataset == "cifar100":
        return None
    tasks = p.tasks[::every]
    longer = p.with_(name=f"{p.name}-x{factor}", tasks=tasks, epochs=factor * p.epochs,
                     milestones=tuple(factor * m for m in p.milestones))
    methods = ("random prediction", "LPS", "weight statistics")

    def compute():
        ms = modelset(p)
        rows = ms.meta["classes"].map(tuple).isin(tasks).to_numpy()
        short = ms.subset(rows)
        short.meta["task_id"] = short.meta["task_id"].rank(method="dense").astype(int) - 1
        long = ms_module.ensure(longer)
        out = {}
        for label, s, preset_used in (("recipe of the book", short, p), (f"{factor}x longer", long, longer)):
            r = experiments.classification(s, methods=methods, seeds=seeds, config=experiments.default_config(s))
            r["epochs"], r["test_acc_mean"] = preset_used.epochs, float(s.meta["test_acc"].mean())
            r["tasks"] = len(tasks)
            out[label] = r
        return out

    return cached_json("training_length", {"every": every, "factor": factor, "seeds": seeds}, compute, preset=p)


def training_length_table(check: dict):
    """Top-1 (%) per method for both recipes, with each recipe's epochs and model accuracy."""
    import pandas as pd

    rows = {}
    for label, r in check.items():
        row = {"epochs": r["epochs"], "model test accuracy": round(r["test_acc_mean"], 4),
               "tasks": r["tasks"], "chance top-1 %": round(100 / r["tasks"], 1)}
        row.update({f"{m} top-1 %": f"{100 * v['top1']['mean']:.1f} +- {100 * v['top1']['std']:.1f}"
                    for m, v in r["results"].items()})
        rows[label] = row
    return pd.DataFrame(rows).T
