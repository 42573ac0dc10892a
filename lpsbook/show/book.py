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

import inspect

import os
from pathlib import Path

from ..findings import analyses
from ..core import data, store
from ..training import modelset as msets, packed
from ..protocols import paper, transfer
from ..findings.claims import means
from ..core.data import cifar100_source, default_cache_dir, default_data_dir, load_dataset
from ..core.errors import LpsbookError
from ..core.presets import Preset, get_preset
from ..protocols.paper import EXTRA_METHODS, PAPER_METHODS, PARAMETER_METHODS
from ..protocols.results import ProtocolResult, merge
from ..core.runtime import resolve_device
from ..methods.similarity import features_in_bf16
from ..core.store import read_note
from ..protocols.transfer import related_pairs


def cifar100_found() -> bool:
    """Whether CIFAR-100 is where the package looks for it (``$LPSBOOK_DATA`` or ``data/``).

    ``LPSBOOK_NO_CIFAR=1`` makes the book behave as on a machine without the
    data (``make test`` builds the digits fallback that way, beside the book
    on CIFAR-100).
    """
    if _no_cifar():
        return False
    try:
        cifar100_source(default_data_dir())
    except LpsbookError:
        return False
    return True


def _no_cifar() -> bool:
    return os.environ.get("LPSBOOK_NO_CIFAR", "") not in ("", "0")


def current_preset() -> Preset:
    """The preset named by ``$LPSBOOK_PRESET``; else ``cifar100-small`` when CIFAR-100 is found, else ``digits``."""
    name = os.environ.get("LPSBOOK_PRESET") or ("cifar100-small" if cifar100_found() else "digits")
    return get_preset(name)


UNAVAILABLE = "cifar100-unavailable.txt"  # in the cache folder: why the last attempt to get CIFAR-100 failed


def fetch_data(probe_timeout: float = 3.0) -> str | None:
    """``make book``'s first step: get CIFAR-100 when the book would otherwise fall back to digits.

    Does nothing when a preset is asked for (``LPSBOOK_PRESET``), when
    ``LPSBOOK_NO_CIFAR`` is set or when CIFAR-100 is found. Otherwise, unless
    ``LPSBOOK_OFFLINE=1``, it checks within ``probe_timeout`` seconds that
    the download server answers, then downloads with torchvision into
    :func:`lpsbook.core.data.default_data_dir` (about 170 MB, md5 checked, nothing
    half-written on failure). Returns ``None`` when the data is there, else why
    the book falls back to digits; the reason is kept for :func:`banner`.
    """
    import urllib.request

    if os.environ.get("LPSBOOK_PRESET") or _no_cifar() or cifar100_found():
        return None
    note = Path(data.default_cache_dir()) / UNAVAILABLE
    target, url = Path(data.default_data_dir()), data.cifar100_url()
    if os.environ.get("LPSBOOK_OFFLINE", "") not in ("", "0"):
        reason = "LPSBOOK_OFFLINE is set, so CIFAR-100 was not downloaded"
    elif target.suffix == ".npz":
        reason = f"LPSBOOK_DATA names {target}, which does not exist (a download needs a folder)"
    else:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=probe_timeout).close()
        except (OSError, ValueError) as exc:
            reason = f"CIFAR-100 could not be downloaded: {url} did not answer ({exc})"
        else:
            print(f"CIFAR-100 not found: downloading it with torchvision into {target} (about 170 MB, checksums "
                  "verified; LPSBOOK_OFFLINE=1 skips this)", flush=True)
            try:
                data.fetch_cifar100(target)
                reason = None
            except data.DOWNLOAD_ERRORS as exc:
                reason = f"the CIFAR-100 download failed ({type(exc).__name__}: {exc})"
    if reason is None:
        note.unlink(missing_ok=True)
        return None
    print(f"{reason}; the book runs on digits.", flush=True)
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(reason + "\n")
    except OSError:
        pass
    return reason


def _unavailable() -> str | None:
    """Why the last attempt to get CIFAR-100 failed, as :func:`fetch_data` noted it (None if no readable note)."""
    return read_note(Path(default_cache_dir()) / UNAVAILABLE)


def banner(preset: Preset | None = None) -> str:
    """Which preset a chapter ran on, in short lines (and why, when the book fell back to digits)."""
    p = preset or current_preset()
    lines = [f"preset {p.name!r} ({p.hash}) on {p.dataset}",
             f"{len(p.tasks)} tasks x {p.seeds} seeds = {p.num_models} ResNet-20s of width {p.width}"]
    if p.dataset == "digits" and not os.environ.get("LPSBOOK_PRESET") and not cifar100_found():
        import textwrap

        why = "LPSBOOK_NO_CIFAR is set" if _no_cifar() else (_unavailable() or "CIFAR-100 not found")
        lines += textwrap.wrap(f"{why}, so this runs on digits:", 72)
        lines += ["`make data` downloads it (or set LPSBOOK_DATA to cifar100.npz)"]
    return "\n".join(lines)


def modelset(preset: Preset | None = None, progress: bool = True, device: str = "auto", data_dir=None,
             ray: str | None = None):
    """The chapter's model set: built on first use (on ``device``, from the data at ``data_dir`` or where
    :func:`lpsbook.core.data.load_dataset` looks; on Ray with ``ray``: ``"local"``, ``"auto"`` or an
    address), then loaded from the cache."""
    from ..training.distributed import RayOptions

    options = None if not ray else RayOptions(None if ray == "local" else ray)
    return msets.ensure(preset or current_preset(), device=device, progress=progress, data_dir=data_dir,
                        ray=options)


def result_path(name: str, settings: dict, preset: Preset | None = None, root=None) -> Path:
    """:func:`lpsbook.core.store.result_path` for the chapter's preset (by default)."""
    return store.result_path(name, settings, preset or current_preset(), root)


def cached_json(name: str, settings: dict, compute, preset: Preset | None = None, root=None):
    """:func:`lpsbook.core.store.cached_json` for the chapter's preset (by default)."""
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
    Strings are glued as plain text (no quotes); :class:`Prose`, a sentence
    whose words depend on the results, as Markdown for a ``{glue:md}`` directive.
    """
    from myst_nb import glue as myst_glue

    for name, value in values.items():
        if hasattr(value, "item"):  # numpy / torch scalars
            value = value.item()
        if isinstance(value, str) and not isinstance(value, _PlainText):
            value = _PlainText(value)
        myst_glue(name, value, display=False)


class _PlainText(str):
    """A string whose text/plain display is itself (a str's repr would add quotes)."""

    def __repr__(self):
        return str(self)


class Prose(_PlainText):
    """Markdown text for the page, glued whole: ``book.glue(key=Prose(text))``, then in a markdown cell
    a ``{glue:md}`` directive with ``:format: myst``."""

    def _repr_markdown_(self):
        return str(self)


# --- the experiments as the book runs them -------------------------------------------------------

FOLDS = 5  # the paper's 8/2 split of ten seeds, every model tested once


def experiment_settings(name: str, preset: Preset | None = None) -> dict:
    """Settings of experiment ``name`` in the book: the paper's protocol on its recipe (cifar100);
    on the CPU presets fewer seeds, epochs and branches so the whole book builds in minutes."""
    p = preset or current_preset()
    full = p.follows_paper
    # classification and retrieval: every model tested once (five folds), every prediction kept;
    # transferability: the first folds of retrieval's (their fits shared)
    every = {"classification": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "folds": FOLDS},
             "retrieval": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "folds": FOLDS},
             "transferability": {"methods": list(PAPER_METHODS + EXTRA_METHODS), "seeds": 3 if full else 2,
                                 "folds": FOLDS},
             "similarity": {"methods": list(PARAMETER_METHODS), "seeds": 1}}
    every["stages"] = {"seeds": 3 if full else 1}
    every["probe_counts"] = {"seeds": 1, "counts": [1, 2, 4]}
    if full:
        every["branches"] = {"seeds": 1, "folds": FOLDS, "config": {"epochs": 300, "batch_size": 1, "lr": 1e-3,
                                                                    "milestones": [150, 225]}}
        every["ablation"] = dict(every["branches"])
    else:
        quick = {"epochs": 20, "batch_size": 8, "lr": 0.05, "milestones": [10, 15]}
        # every other branch; g' = 8 keeps the width-32 stage affordable on a CPU
        # the first two of the five folds: no model tested twice, every prediction kept
        every["branches"] = {"seeds": 2, "folds": FOLDS, "config": quick, "second_order_filters": 8,
                             "layers": [1, 2, 4, 7, 10, 13, 16, 19]}
        # the paper ablates branches 2-19; the first branch is added, as the one that carries the task here
        every["ablation"] = {"seeds": 2, "folds": FOLDS, "config": quick, "second_order_filters": 8,
                             "layers": [1, 2, 4, 7, 10, 13]}
    return every[name]


def experiment(name: str, preset: Preset | None = None, progress: bool = True, data_dir=None, **overrides):
    """Run (or load from the cache) experiment ``name`` on the book's model set (settings translated by
    :func:`lpsbook.protocols.paper.arguments`, as on the command line); ``data_dir`` as for :func:`modelset`."""
    p = preset or current_preset()
    settings = {**experiment_settings(name, p), **overrides}

    def compute():
        ms = modelset(p, progress=progress, data_dir=data_dir)
        kwargs = paper.arguments(name, ms, settings, resolve_device("auto"))
        if data_dir is not None and "dataset" in inspect.signature(paper.PROTOCOLS[name]).parameters:
            kwargs["dataset"] = load_dataset(p, data_dir)
        if name in ("transferability", "similarity"):  # both compare with the same measured transfer
            kwargs["ari"] = transfer_matrix(p, data_dir)
        if name != "similarity":  # finished fits survive an interruption
            kwargs["checkpoint"] = result_path(name, settings, p).with_suffix(".partial")
        return paper.PROTOCOLS[name](ms, **kwargs).to_dict()

    return ProtocolResult.from_dict(cached_json(name, settings, compute, preset=p))


def transfer_scores(preset: Preset | None = None, data_dir=None) -> dict:
    """Measured transfer (ARI) and the LEEP and LogME references for every pair of tasks (cached):
    :func:`lpsbook.protocols.transfer.transfer_scores`, as lists."""
    p = preset or current_preset()
    data = load_dataset(p, data_dir) if data_dir is not None else None

    def compute():
        return {k: v.tolist() for k, v in transfer.transfer_scores(modelset(p, data_dir=data_dir), data).items()}

    return cached_json("transfer", {"source_seed": 0, "kmeans_seed": 0, "bf16": features_in_bf16(p)}, compute,
                       preset=p)


def transfer_matrix(preset: Preset | None = None, data_dir=None) -> list:
    """Measured transfer (ARI) between every pair of tasks (cached, see :func:`transfer_scores`)."""
    return transfer_scores(preset, data_dir)["ari"]


WHOLE_NETWORK = ("graph", "probing", "fc_permaug", "filter_norms")  # the methods of chapter 9


def with_whole_network(preset: Preset | None = None) -> tuple:
    """Classification, retrieval and transferability of chapters 5-6's methods and of :data:`WHOLE_NETWORK`,
    each merged into one result (same splits; cached like :func:`experiment`)."""
    return tuple(merge(experiment(n, preset), experiment(n, preset, methods=list(WHOLE_NETWORK)))
                 for n in ("classification", "retrieval", "transferability"))


def model_maps(preset: Preset | None = None, layer_index: int = 1) -> dict:
    """2-D UMAP maps of all models: by raw conv weights and by LPS features (cached).

    The LPS network is trained on the classification split (seed 0), so the
    map shows training and held-out models alike.  Returns
    ``{"task_id": [...], "maps": {title: [[x, y], ...]}, "held_out": [...]}``.
    """
    p = preset or current_preset()
    return cached_json("model_maps", {"layer_index": layer_index},
                       lambda: analyses.model_maps(modelset(p), layer_index), preset=p)


def training_length_check(preset: Preset | None = None, every: int = 3, factor: int = 5, seeds: int = 3):
    """Is the short CPU recipe why weights reveal so little? (cached; CPU presets only)

    Takes every ``every``-th task of the preset, and compares task
    classification on the book's models of those tasks with a model set of
    the same tasks trained ``factor`` times longer (learning-rate steps
    scaled alike).  Returns ``None`` on the paper's recipe (cifar100).
    """
    p = preset or current_preset()
    if p.follows_paper:
        return None
    tasks = p.tasks[::every]
    longer = p.with_(name=f"{p.name}-x{factor}", tasks=tasks, epochs=factor * p.epochs,
                     milestones=tuple(factor * m for m in p.milestones))
    return cached_json("training_length", {"every": every, "factor": factor, "seeds": seeds},
                       lambda: analyses.training_length_comparison(modelset(p), msets.ensure(longer), seeds),
                       preset=p)


def weight_movement(preset: Preset | None = None) -> dict:
    """Per layer, how far training moved the weights from their initialisation (cached; see
    :func:`lpsbook.findings.analyses.weight_movement`): ``{"mean": {layer: x}, "min": ..., "max": ...}``."""
    p = preset or current_preset()
    return cached_json("weight_movement", {}, lambda: analyses.weight_movement(modelset(p)).to_dict(), preset=p)


def contrast_with_digits(preset: Preset | None = None):
    """The book's CIFAR set beside the digits set: the same classification protocol, and the facts
    that differ between the two (images, task overlap, training, weight movement).

    A table with one column per model set; when the book itself runs on
    digits (no CIFAR-100 to compare with), the digits column alone.
    """
    import pandas as pd

    p = preset or current_preset()
    columns = {}
    for q in (p,) if p.dataset == "digits" else (p, get_preset("digits")):
        data, ms, cls, moved = load_dataset(q), modelset(q), experiment("classification", q), weight_movement(q)
        shape = tuple(data.train_images.shape[1:])
        shared = related_pairs([set(t) for t in q.tasks])
        top1, chance = means(cls, "top1", 100), 100 / len(q.tasks)
        columns[f"{q.name} ({q.dataset})"] = {
            "image": f"{shape[1]}x{shape[2]}, {'colour' if shape[0] == 3 else 'grey'}",
            "training images per task": len(data.task_indices(q.tasks[0], "train")),
            "task pairs sharing a class %": 100 * shared / (len(q.tasks) * (len(q.tasks) - 1) / 2),
            "SGD steps per model": packed.steps_per_model(q),
            "model test accuracy %": 100 * ms.meta["test_acc"].mean(),
            "conv1 weight change (relative)": moved["mean"][ms.layers[0]],
            "last conv weight change (relative)": moved["mean"][ms.layers[-1]],
            "chance top-1 %": chance,
            "LPS top-1 %": top1["lps"],
            "LPS top-1 / chance": top1["lps"] / chance,
            "weight statistics top-1 %": top1["weight_stats"],
        }
    return pd.DataFrame(columns)


