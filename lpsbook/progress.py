"""Progress bars for long work: one place that makes them (``tqdm.auto``).

In JupyterLab they are widgets; in a terminal, text. A transient bar (an
inner loop's, ``leave=False``) is removed from the page when it closes: tqdm
only hides it, which in the static HTML book left a blank band after the
outer bar for every inner loop it had run.
"""
from __future__ import annotations

from tqdm.auto import tqdm


class Bar(tqdm):
    """``tqdm.auto.tqdm`` whose transient notebook widget takes no room once closed."""

    def close(self):
        super().close()
        container = getattr(self, "container", None)  # the widget, in a notebook front end
        if container is not None and not self.leave:
            container.layout.display = "none"


def bar(iterable=None, **kwargs) -> Bar:
    """A progress bar (same arguments as ``tqdm``)."""
    return Bar(iterable, **kwargs)
