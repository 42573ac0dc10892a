"""What the book's chapters share: the preset they run on and a result cache.

``LPSBOOK_PRESET`` picks the preset; without it the book runs on
``cifar100-small`` when CIFAR-100 is found (``$LPSBOOK_DATA``, see
``lpsbook data check``) and on ``digits`` otherwise.  Results of
expensive steps are cached under ``$LPSBOOK_CACHE/results/`` (default
``data/results/``) keyed by the preset's hash, the step's settings and the
package's code version, so a rebuild of the book does not retrain and a
change in the code is never hidden by an old result.
"""
from __future__ import annotations

import os
from pathlib import Path

from .presets import Preset, get_preset


def cifar100_found() -> bool:
    """Whether CIFAR-100 is where the package looks for it (``$LPSBOOK_DATA`` or ``data/``)."""
    from .data import cifar100_source, default_data_dir
    from .errors import LpsbookError

    try:
        cifar100_source(default_data_dir())
    except LpsbookError:
        return False
    return True


def current_preset() -> Preset:
    """The preset named by ``$LPSBOOK_PRESET``; else ``cifar100-small`` when CIFAR-100 is found, else ``digits``."""
    name = os.environ.get("LPSBOOK_PRESET") or ("cifar100-small" if cifar100_found() else "digits")
    return get_preset(name)


def banner(preset: Preset | None = None) -> str:
    """Which preset a chapter ran on, in short lines (and why, when the book fell back to digits)."""
    p = preset or current_preset()
    lines = [f"preset {p.name!r} ({p.hash}) on {p.dataset}",
             f"{len(p.tasks)} tasks x {p.seeds} seeds = {p.num_models} ResNet-20s of width {p.width}"]
    if p.dataset == "digits" and not os.environ.get("LPSBOOK_PRESET") and not cifar100_found():
        lines += ["CIFAR-100 not found, so this runs on digits:",
                  "`make data` downloads it (or set LPSBOOK_DATA to cifar100.npz)"]
    return "\n".join(lines)


def modelset(preset: Preset | None = None, progress: bool = True):
    """The chapter's model set: built on first use, then loaded from the cache."""
    from . import modelset as ms

    return ms.ensure(preset or current_preset(), progress=progress)


def result_path(name: str, settings: dict, preset: Preset | None = None, root=None) -> Path:
    """:func:`lpsbook.store.result_path` for the chapter's preset (by default)."""
    from . import store

    return store.result_path(name, settings, preset or current_preset(), root)


def cached_json(name: str, settings: dict, compute, preset: Preset | None = None, root=None):
    """:func:`lpsbook.store.cached_json` for the chapter's preset (by default)."""
    from . import store

    return store.cached_json(name, settings, compute, preset or current_preset(), root)


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
    """Settings of experiment ``name`` in the book: the paper's protocol on its recipe (cifar100);
    on the CPU presets fewer seeds, epochs and branches so the whole book builds in minutes."""
    from .experiments import EXTRA_METHODS, PAPER_METHODS, PARAMETER_METHODS

    p = preset or current_preset()
    full = p.follows_paper
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
        every["branches"] = {"seeds": 2, "config": quick, "second_order_filters": 8,
                             "layers": [1, 2, 4, 7, 10, 13, 16, 19]}
        # the paper ablates branches 2-19; the first branch is added, as the one that carries the task here
        every["ablation"] = {"seeds": 2, "config": quick, "second_order_filters": 8,
                             "layers": [1, 2, 4, 7, 10, 13]}
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
        if name in ("transferability", "similarity"):  # both compare with the same measured transfer
            kwargs["ari"] = transfer_matrix(p)
        if name != "similarity":  # finished fits survive an interruption
            kwargs["checkpoint"] = result_path(name, settings, p).with_suffix(".partial")
        return experiments.PROTOCOLS[name](ms, **kwargs)

    return cached_json(name, settings, compute, preset=p)


def transfer_matrix(preset: Preset | None = None) -> list:
    """Measured transfer between every pair of tasks (cached): :func:`lpsbook.experiments.transfer_ari`."""
    from . import experiments
    from .similarity import features_in_bf16

    p = preset or current_preset()
    return cached_json("transfer_ari", {"source_seed": 0, "kmeans_seed": 0, "bf16": features_in_bf16(p)},
                       lambda: experiments.transfer_ari(modelset(p)).tolist(), preset=p)


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
        net.fit(ms.state_of(train), labels[train], config=experiments.default_config(ms))
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

    from . import methods

    rows = {m: {k: round(v["mean"], 3) for k, v in r.items()} for m, r in result["results"].items()}
    table = pd.DataFrame(rows).T
    table.insert(0, "family", [methods.reads(m) for m in table.index])
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
    from . import methods

    names = list(result["results"])
    return ([m for m in names if methods.reads(m) == "activations"],
            [m for m in names if methods.reads(m) == "weights"])


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
    scaled alike).  Returns ``None`` on the paper's recipe (cifar100).
    """
    from . import experiments
    from . import modelset as ms_module

    p = preset or current_preset()
    if p.follows_paper:
        return None
    tasks = p.tasks[::every]
    longer = p.with_(name=f"{p.name}-x{factor}", tasks=tasks, epochs=factor * p.epochs,
                     milestones=tuple(factor * m for m in p.milestones))
    methods = ("random", "lps", "weight_stats")

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


def weight_movement(preset: Preset | None = None) -> dict:
    """Per layer, how far training moved the weights from their initialisation (cached; see
    :func:`lpsbook.experiments.weight_movement`): ``{"mean": {layer: x}, "min": ..., "max": ...}``."""
    from . import experiments

    p = preset or current_preset()
    return cached_json("weight_movement", {}, lambda: experiments.weight_movement(modelset(p)).to_dict(), preset=p)


def contrast_with_digits(preset: Preset | None = None):
    """The book's CIFAR set beside the digits set: the same classification protocol, and the facts
    that differ between the two (images, task overlap, training, weight movement).

    A table with one column per model set, or ``None`` when the book itself runs on digits.
    """
    import pandas as pd

    from . import experiments
    from .data import load_dataset

    p = preset or current_preset()
    if p.dataset == "digits":
        return None
    columns = {}
    for q in (p, get_preset("digits")):
        data, ms, cls, moved = load_dataset(q), modelset(q), experiment("classification", q), weight_movement(q)
        shape = tuple(data.train_images.shape[1:])
        shared = experiments.related_pairs([set(t) for t in q.tasks])
        top1, chance = means(cls, "top1", 100), 100 / len(q.tasks)
        columns[f"{q.name} ({q.dataset})"] = {
            "image": f"{shape[1]}x{shape[2]}, {'colour' if shape[0] == 3 else 'grey'}",
            "training images per task": len(data.task_indices(q.tasks[0], "train")),
            "task pairs sharing a class %": 100 * shared / (len(q.tasks) * (len(q.tasks) - 1) / 2),
            "SGD steps per model": steps_per_model(q),
            "model test accuracy %": 100 * ms.meta["test_acc"].mean(),
            "conv1 weight change (relative)": moved["mean"][ms.layers[0]],
            "last conv weight change (relative)": moved["mean"][ms.layers[-1]],
            "chance top-1 %": chance,
            "LPS top-1 %": top1["LPS"],
            "LPS top-1 / chance": top1["LPS"] / chance,
            "weight statistics top-1 %": top1["weight statistics"],
        }
    return pd.DataFrame(columns)


def chance_topk(preset: Preset | None = None, ks=(1, 5, 10)) -> dict:
    """Chance level (%) of top-k task classification: k in the number of tasks."""
    p = preset or current_preset()
    return {f"top{k}": 100 * min(k, len(p.tasks)) / len(p.tasks) for k in ks}


def _spread(result: dict, method: str, metric: str, scale: float = 100) -> tuple:
    r = result["results"][method][metric]
    return scale * r["mean"], scale * r["std"]


def paper_claims(cls: dict, ret: dict, preset: Preset | None = None):
    """The paper's claims about Tables 1-2, each with its number, ours (mean +- sd over splits) and a verdict.

    The verdicts are decided by fixed rules, with the spread over splits as the margin:

    * *far above chance*: LPS top-1 minus two sd is above three times chance;
    * *beats the symmetry-blind baselines*: LPS top-1 minus its sd is above the
      better of one FC layer and Frobenius+FC plus that one's sd (spreads do not overlap);
    * *baselines near chance*: both of those are below five times chance;
    * *retrieval above random*: the same non-overlap rule on rank-1 against random prediction;
    * *the paper's level*: LPS top-1 plus two sd reaches the paper's 79.8 % less five points.
    """
    from .experiments import PAPER

    p = preset or current_preset()
    chance = 100 / len(p.tasks)
    lps, lps_sd = _spread(cls, "LPS", "top1")
    blind = max(("only one FC layer", "Frobenius+FC w/o alignment"), key=lambda m: _spread(cls, m, "top1")[0])
    base, base_sd = _spread(cls, blind, "top1")
    r_lps, r_lps_sd = _spread(ret, "LPS", "rank1")
    r_rand, r_rand_sd = _spread(ret, "random prediction", "rank1")
    paper_cls, paper_ret = PAPER["classification"], PAPER["retrieval"]
    rows = [
        ("LPS reads the task of held-out models far above chance (Table 1)",
         f"{paper_cls['LPS'][0]:.1f} % top-1, chance 2.0 %", f"{lps:.1f} ± {lps_sd:.1f} %, chance {chance:.1f} %",
         lps - 2 * lps_sd > 3 * chance),
        ("LPS beats the baselines that ignore the symmetry (Table 1)",
         f"{paper_cls['LPS'][0]:.1f} vs at most {paper_cls['Frobenius+FC w/o alignment'][0]:.1f} %",
         f"{lps:.1f} ± {lps_sd:.1f} vs {base:.1f} ± {base_sd:.1f} % ({blind})", lps - lps_sd > base + base_sd),
        ("those baselines stay near chance (Table 1)",
         f"at most {paper_cls['Frobenius+FC w/o alignment'][0]:.1f} %", f"at most {base:.1f} %", base < 5 * chance),
        ("LPS retrieves the query's task first far more often than random (Table 2)",
         f"{paper_ret['LPS'][0]:.1f} vs {paper_ret['random prediction'][0]:.1f} % rank-1",
         f"{r_lps:.1f} ± {r_lps_sd:.1f} vs {r_rand:.1f} ± {r_rand_sd:.1f} %", r_lps - r_lps_sd > r_rand + r_rand_sd),
        ("LPS reaches the paper's level (Table 1)", f"{paper_cls['LPS'][0]:.1f} % top-1", f"{lps:.1f} ± {lps_sd:.1f} %",
         lps + 2 * lps_sd >= paper_cls["LPS"][0] - 5),
    ]
    return _verdict_table(rows)


def figure3_claims(tr: dict, br: dict, ab: dict, preset: Preset | None = None):
    """The paper's claims about its Figure 3, each with what we measured and a verdict by a fixed rule.

    * (a) *LPS similarity rises with transfer*: LPS's mean per-target Spearman
      with measured transfer, minus its sd over splits, is above 0.1;
    * (b) *the first branch carries the most*: branch 1's top-1 is at least
      every other measured branch's;
    * (b) *the deepest branches are at chance*: measured branches from layer 13
      on average below twice chance;
    * (c) *each alignment matters*: with the sort over filters (or the max over
      channels) switched off, top-1 drops by more than one point and more than
      its sd over splits, on the ablated branch where LPS does best with both on
      (the paper finds the drop on branches 2-19; where those sit at chance,
      as on our CPU model sets, only the best branch can show one).
    """
    p = preset or current_preset()
    chance = 100 / len(p.tasks)
    rho, rho_sd = _spread(tr, "LPS", "spearman_per_target", scale=1)
    per_branch = {layer: 100 * v["mean"] for layer, v in br["results"]["LPS"].items()}
    layers = list(per_branch)
    first, rest = per_branch[layers[0]], max(per_branch[layer] for layer in layers[1:])
    deep = [per_branch[layer] for i, layer in enumerate(layers) if _layer_number(layer) >= 13]
    deep_mean = sum(deep) / len(deep) if deep else float("nan")
    on = ab["results"]["both on"]
    best = max(on, key=lambda layer: on[layer]["mean"])
    margin = max(1.0, 100 * on[best]["std"])
    drop_f = 100 * (on[best]["mean"] - ab["results"]["filter alignment off"][best]["mean"])
    drop_c = 100 * (on[best]["mean"] - ab["results"]["channel alignment off"][best]["mean"])
    where = f" at branch {_layer_number(best)}"
    rows = [
        ("(a) LPS similarity rises with transfer", "roughly proportional",
         f"Spearman {rho:+.2f} ± {rho_sd:.2f}", rho - rho_sd > 0.1),
        ("(b) the first branch carries the most", "79.8 % top-1 at branch 1",
         f"{first:.1f} % at branch 1, best other {rest:.1f} %", first >= rest),
        ("(b) the deepest branches are at chance", "branches 13-19 at chance",
         f"{deep_mean:.1f} % (chance {chance:.1f} %)", deep_mean < 2 * chance),
        ("(c) filter alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_f:+.1f} points without it{where}", drop_f > margin),
        ("(c) channel alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_c:+.1f} points without it{where}", drop_c > margin),
    ]
    return _verdict_table(rows)


def _verdict_table(rows: list):
    """(claim, paper, ours, holds) rows as a table indexed by claim, with "yes"/"no" verdicts."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"]).set_index("claim")
    table["holds"] = table["holds"].map({True: "yes", False: "no"})
    return table


def _layer_number(layer: str) -> int:
    """1-based position of a conv layer of ResNet-20 in forward order (conv1 is 1)."""
    if layer.startswith("conv1"):
        return 1
    stage, block, conv = layer.split(".")[:3]
    return 2 + 6 * (int(stage.removeprefix("layer")) - 1) + 2 * int(block) + int(conv.removeprefix("conv")) - 1


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
            row.update({"related AUC": s["related_auc"]["mean"], "related rank-1 %": 100 * s["related_rank1"]["mean"],
                        "rank-1 chance %": 100 * s["related_rank1_chance"]["mean"]})
        rows[m] = row
    return pd.DataFrame(rows).T
