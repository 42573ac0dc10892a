"""Progress bars for long work: one place that makes them (``tqdm.auto``).

In JupyterLab they are widgets; in a terminal, text. In a notebook a bar is
removed from the page once it closes (tqdm only hides a transient one, which
in the static HTML book left a blank band for every inner loop it had run,
and keeps a finished one, which left the build's timings in the book): the
result that follows is what the reader came for.
"""
from __future__ import annotations

from tqdm.auto import tqdm

from .parallel import in_worker


class Bar(tqdm):
    """``tqdm.auto.tqdm`` whose notebook widget takes no room once closed."""

    def close(self):
        super().close()
        container = getattr(self, "container", None)  # the widget, in a notebook front end
        if container is not None:
            container.layout.display = "none"


def bar(iterable=None, **kwargs) -> Bar:
    """A progress bar (same arguments as ``tqdm``); none in a worker process of :mod:`lpsbook.core.parallel`,
    whose parent shows the progress of the whole."""
    if in_worker():
        kwargs["disable"] = True
    return Bar(iterable, **kwargs)
