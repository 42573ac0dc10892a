"""What the book's chapters share: the preset they run on and a result cache.

``LPSBOOK_PRESET`` picks the preset (default ``digits``); results of
expensive steps are cached under ``data/results/`` keyed by the preset's
hash and the step's settings, so a rebuild of the book does not retrain.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .data import default_data_dir
from .presets import Preset, get_preset


def current_preset() -> Preset:
    """The preset named by ``$LPSBOOK_PRESET`` (default ``digits``)."""
    return get_preset(os.environ.get("LPSBOOK_PRESET", "digits"))


def banner(preset: Preset | None = None) -> str:
    """One line saying which preset a chapter ran on."""
    p = preset or current_preset()
    return (f"preset {p.name!r} ({p.hash}): {len(p.tasks)} tasks x {p.seeds} seeds = "
            f"{p.num_models} ResNet-20 models of width {p.width} on {p.dataset}")


def modelset(preset: Preset | None = None, progress: bool = True):
    """The chapter's model set: built on first use, then loaded from the cache."""
    from . import modelset as ms

    return ms.ensure(preset or current_preset(), progress=progress)


def _key(preset: Preset, name: str, settings: dict) -> str:
    text = json.dumps({"preset": preset.hash, "name": name, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_json(name: str, settings: dict, compute, preset: Preset | None = None, root=None):
    """``compute()`` once per (preset, name, settings); its JSON result is kept on disk."""
    from .modelset import _write_atomic

    preset = preset or current_preset()
    folder = Path(root or default_data_dir()) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{preset.name}-{name}-{_key(preset, name, settings)}.json"
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
