"""Progress bars: a closed bar leaves nothing behind in a notebook page (no blank band, no build timings)."""
import pytest


def test_widget_bar_takes_no_room_once_closed():
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as notebook_tqdm

    from lpsbook.core import progress

    class NotebookBar(progress.Bar, notebook_tqdm):  # what tqdm.auto gives inside a kernel
        pass

    kept = NotebookBar(range(3), leave=True, display=False)
    gone = NotebookBar(range(3), leave=False, display=False)
    for b in (kept, gone):
        for _ in b:
            pass
    assert gone.container.layout.display == "none"
    assert kept.container.layout.display == "none", "a finished bar would leave the build's timings in the book"
    running = NotebookBar(range(3), leave=True, display=False)
    assert running.container.layout.display != "none", "shown while it runs"
    running.close()


def test_bar_counts_like_tqdm():
    from lpsbook.core.progress import bar

    b = bar(range(5), disable=True)
    assert list(b) == list(range(5))
