"""Browser check of the built book: every page renders offline, completely.

Serves the built HTML over a localhost ``http.server`` and opens every page in
headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright;
Playwright never downloads a browser here). For each page it asserts:

* no request failed (network error, or HTTP status >= 400);
* no request went to a host other than localhost (such requests are blocked,
  so a CDN dependency shows up here even on a machine that is online);
* no console error and no uncaught JavaScript exception;
* every plotly figure (``.plotly-graph-div``) was drawn (contains ``.main-svg``);
* every ipywidget placeholder (``<script type="application/vnd.jupyter.widget-view+json">``)
  was replaced by a rendered widget;
* every math element was typeset by MathJax;
* no text inside a figure is drawn over other text (titles, subplot titles,
  axis titles, annotations, legend entries: their boxes, pairwise), and no
  figure is narrower than its column;
* no printed table wraps (a line of a ``<pre>`` output with columns separated
  by runs of spaces, wider than its box; a wrapped sentence is allowed);
* the figures a page must show are there (``REQUIRED_FIGURES``, found by
  ``layout.meta``: chapter 3's conv1 filters as RGB patches).

Synthetic pages show that the overlap, wrapped-table and leftover-bar checks
fail on a broken version and pass on the fixed one.

A full-page screenshot of each page is written to ``<build>/screenshots/``
(``_build/screenshots/<page>.png`` for the default build) for a human look.

Run after building the book::

    jupyter-book build book/ -W -n --keep-going
    LPSBOOK_RENDER_CHECK=1 python -m pytest -q tests/test_book_render.py

Environment variables:

``LPSBOOK_RENDER_CHECK=1``
    run the check (``make test`` sets it after building the book). Without it
    (and without ``LPSBOOK_HTML_DIR``) the test is skipped, so that a plain
    ``pytest tests`` does not check a stale build. When it is set, a missing
    build or browser is a failure, not a skip.
``LPSBOOK_HTML_DIR``
    the built HTML to check (implies the check). Default: ``_build/html`` under
    the repository root, where ``jupyter-book build book/`` writes it (the
    config is the top-level ``_config.yml``), else ``book/_build/html``.
``LPSBOOK_SCREENSHOT_DIR``
    where to write the screenshots (default: ``screenshots/`` next to the
    HTML folder).
``LPSBOOK_SCREENSHOTS``
    a folder (e.g. ``docs/img``) to write the README's pictures to: on the pages
    named in ``README_FIGURES``, a screenshot of just that figure (found by its
    title), reduced to a 256-colour palette to stay small.
``LPSBOOK_CHROMIUM``
    the Chromium executable (default ``/usr/bin/chromium``, installed by
    ``scripts/install_browser.sh``).
"""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
from browser_settings import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS  # noqa: E402

# Pages Sphinx generates that hold no book content.
SKIPPED_PAGES = {"genindex.html", "search.html"}
# Figures a page must show, found by their layout.meta["figure"] (lpsbook.show.viz).
REQUIRED_FIGURES = {"ch3_alignment.html": ("conv1 filter patches",)}
# The README's pictures (LPSBOOK_SCREENSHOTS): page -> {file name: text in the figure's title}.
README_FIGURES = {"ch3_alignment.html": {"explorer.png": "aligned-filter explorer"},
                  "ch5_classification_retrieval.html": {"table1.png": "Task classification: the paper"}}
README_SHOTS = os.environ.get("LPSBOOK_SCREENSHOTS")
# How long to wait for widgets, figures and math to render on one page (ms).
RENDER_TIMEOUT_MS = 30_000

REQUESTED = os.environ.get("LPSBOOK_RENDER_CHECK", "") not in ("", "0")
EXPLICIT_DIR = os.environ.get("LPSBOOK_HTML_DIR")
ENABLED = REQUESTED or bool(EXPLICIT_DIR)


def _html_dir() -> Path:
    if EXPLICIT_DIR:
        return Path(EXPLICIT_DIR).resolve()
    candidates = [REPO_ROOT / "_build" / "html", REPO_ROOT / "book" / "_build" / "html"]
    built = [d for d in candidates if (d / "index.html").is_file()]
    if not built:
        return candidates[0]
    # If both exist, the more recent build.
    return max(built, key=lambda d: (d / "index.html").stat().st_mtime)


HTML_DIR = _html_dir()
SCREENSHOT_DIR = Path(
    os.environ.get("LPSBOOK_SCREENSHOT_DIR", HTML_DIR.parent / "screenshots")
)


def _is_redirect(path: Path) -> bool:
    """The index.html that sphinx-external-toc writes only redirects to the root page."""
    text = path.read_text(encoding="utf-8", errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in text and "<body" not in text


def _pages() -> list[str]:
    if not HTML_DIR.is_dir():
        return []
    pages = []
    for path in sorted(HTML_DIR.rglob("*.html")):
        rel = path.relative_to(HTML_DIR)
        if rel.parts[0].startswith("_"):  # _static/, _sources/, _images/ ...
            continue
        if rel.as_posix() in SKIPPED_PAGES or _is_redirect(path):
            continue
        pages.append(rel.as_posix())
    return pages


def _why_not_runnable() -> str | None:
    if not HTML_DIR.is_dir():
        return (
            f"no built book at {HTML_DIR}: build it first with "
            "`jupyter-book build book/` (or set LPSBOOK_HTML_DIR)"
        )
    if not _pages():
        return f"no pages found in {HTML_DIR}"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM}: run `bash scripts/install_browser.sh`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package `playwright` is not installed (pip install playwright)"
    return None


def _page_params():
    if not ENABLED:
        reason = (
            "browser check of the built book: set LPSBOOK_RENDER_CHECK=1 to run it "
            "after `jupyter-book build book/` (make test does)"
        )
        return [pytest.param(None, id="book", marks=pytest.mark.skip(reason=reason))]
    if _why_not_runnable() is not None:
        # Asked for explicitly: a missing build or browser must not pass silently.
        return [pytest.param(None, id="book-not-checkable")]
    return [pytest.param(p, id=p) for p in _pages()]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def server_url():
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # executable_path: the system Chromium; Playwright downloads nothing.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# Runs in the page: a report of what did not render.
_RENDER_REPORT_JS = r"""
() => {
  const describe = (el) => {
    const cell = el.closest('.cell');
    const id = el.id ? '#' + el.id : '';
    const where = cell && cell.id ? ' in cell #' + cell.id : '';
    return el.tagName.toLowerCase() + id + where;
  };
  const plotly = Array.from(document.querySelectorAll('.plotly-graph-div'));
  const plotlyMissing = plotly.filter((d) => !d.querySelector('.main-svg')).map(describe);
  // plotly draws its figures before the (deferred) MathJax has loaded, so a
  // label written in LaTeX stays raw "$...$" text.
  const rawLatex = [];
  plotly.forEach((d) => d.querySelectorAll('.main-svg text').forEach((t) => {
    const s = (t.textContent || '').trim();
    if (s.length > 1 && s.startsWith('$') && s.endsWith('$')) rawLatex.push(describe(d) + ': ' + s);
  }));

  const views = Array.from(document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]'));
  const hasState = document.querySelector(
      'script[type="application/vnd.jupyter.widget-state+json"]') !== null;
  const widgetsMissing = [], blankWidgets = [];
  views.forEach((tag, i) => {
    let modelId = '?';
    try { modelId = JSON.parse(tag.textContent).model_id; } catch (e) {}
    const area = tag.previousElementSibling;
    const widget = area && area.querySelector('.jupyter-widgets, [class*="widget-"]');
    const removed = widget && getComputedStyle(widget).display === 'none';  // a closed transient bar
    const ok = area && area.classList.contains('widget-subarea') && widget !== null
        && (area.getBoundingClientRect().height > 0 || removed);
    if (!ok) widgetsMissing.push('widget view #' + i + ' (model ' + modelId + ')');
    if (widget && getComputedStyle(widget).visibility === 'hidden' && widget.getBoundingClientRect().height > 0)
      blankWidgets.push('widget view #' + i + ' (model ' + modelId + ')');
  });
  // an output line wider than the page column gets a scrollbar and is cut off on a laptop screen
  const longest = (e) => e.textContent.split('\n').sort((a, b) => b.length - a.length)[0].slice(0, 80);
  const cutOff = Array.from(document.querySelectorAll('.cell_output pre'))
      .filter((e) => e.scrollWidth > e.clientWidth + 1).map(longest);
  // ... or, with white-space: pre-wrap (the book's style), it wraps. A wrapped sentence still
  // reads; a wrapped printed table (columns separated by runs of spaces) breaks every row in two.
  // A line's width: its length in the <pre>'s monospace font.
  const canvas = document.createElement('canvas').getContext('2d');
  const wrapped = [];
  document.querySelectorAll('.cell_output pre').forEach((e) => {
    const box = e.clientWidth - parseFloat(getComputedStyle(e).paddingLeft) - parseFloat(getComputedStyle(e).paddingRight);
    if (e.getBoundingClientRect().width === 0 || e.scrollWidth > e.clientWidth + 1) return;  // hidden, or cut off
    canvas.font = getComputedStyle(e).font;
    const tableRows = e.textContent.split('\n').filter((line) => /\S {2,}\S/.test(line));
    const wide = tableRows.filter((line) => canvas.measureText(line).width > box + 1);
    if (wide.length) wrapped.push(describe(e) + ': ' + wide[0].trim().slice(0, 70));
  });

  // a number broken over lines inside a table cell ("51.7 ± 7.6" as three lines, an interval split at
  // its comma): each number with its spread or interval must sit on one line of its cell
  // (a sign only where no letter or digit precedes it: the hyphen of "top-1" or "2-19" is no minus sign)
  const numberPattern = /(?<![\w.])[-+−]?\d+(?:\.\d+)?(?:[\s\u00a0]*±[\s\u00a0]*\d+(?:\.\d+)?|[\s\u00a0]*\[[-+−]?\d+(?:\.\d+)?,[\s\u00a0]*[-+−]?\d+(?:\.\d+)?\])?/g;
  const wrappedNumbers = [];
  document.querySelectorAll('.cell_output table td, .cell_output table th').forEach((td) => {
    if (td.getBoundingClientRect().width === 0) return;
    const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(numberPattern)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size > 1) wrappedNumbers.push(describe(td) + ': ' + m[0].replace(/\u00a0/g, ' '));
      }
    }
  });

  // a figure narrower than its output column wastes the page (a fixed width, or autosize off)
  const narrow = plotly.filter((d) => {
    const out = d.closest('.cell_output, .output') || d.parentElement;
    const have = d.getBoundingClientRect().width, room = out.getBoundingClientRect().width;
    return have > 0 && have < 0.95 * room;
  }).map((d) => describe(d) + ': ' + Math.round(d.getBoundingClientRect().width) + ' px of '
      + Math.round((d.closest('.cell_output, .output') || d.parentElement).getBoundingClientRect().width));

  // text drawn over other text inside a figure: titles, subplot titles, axis titles, annotations,
  // legend entries and colour-bar labels (plotly's info layer), pairwise by their boxes
  const overlaps = [];
  plotly.forEach((d) => {
    const texts = Array.from(d.querySelectorAll('.main-svg .infolayer text, .main-svg .annotation-text'))
        .filter((t, i, all) => all.indexOf(t) === i && (t.textContent || '').trim() !== '')
        .filter((t) => { const s = getComputedStyle(t); return s.display !== 'none' && s.visibility !== 'hidden'
                         && !t.closest('[style*="display: none"], [visibility="hidden"]'); })
        .map((t) => ({t, r: t.getBoundingClientRect()}))
        .filter(({r}) => r.width > 0 && r.height > 0);
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        const a = texts[i].r, b = texts[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 2 && h > 2) {
          overlaps.push(describe(d) + ': "' + texts[i].t.textContent.trim().slice(0, 40) + '" over "'
              + texts[j].t.textContent.trim().slice(0, 40) + '"');
        }
      }
    }
  });
  // figures the page must show, by their layout.meta (e.g. chapter 3's conv1 patches)
  const metas = plotly.map((d) => (d.layout && d.layout.meta && d.layout.meta.figure) || '').filter((m) => m);

  // a finished progress bar left on the page shows the build's timings, not the book
  const barText = /\d+\/\d+ ?\[\d\d:\d\d<\d\d:\d\d/;
  const leftoverBars = Array.from(document.querySelectorAll('.widget-hprogress, .widget-progress'))
      .filter((b) => b.getBoundingClientRect().height > 0)
      .map((b) => describe(b) + ': ' + ((b.closest('.widget-hbox') || b).textContent || '').trim().slice(0, 60))
      .concat(Array.from(document.querySelectorAll('.cell_output pre'))
          .filter((e) => barText.test(e.textContent))
          .map((e) => describe(e) + ': ' + e.textContent.trim().slice(0, 60)));

  const maths = Array.from(document.querySelectorAll('.math'));
  const mathMissing = maths.filter((m) => !m.querySelector('mjx-container'))
      .map((m) => m.textContent.trim().slice(0, 60));

  return {
    nPlotly: plotly.length, plotlyMissing, rawLatex,
    nViews: views.length, hasState, widgetsMissing, blankWidgets, cutOff, wrapped, wrappedNumbers, narrow, overlaps, metas,
    leftoverBars,
    nMath: maths.length, mathMissing,
  };
}
"""

_ALL_RENDERED_JS = (
    "() => { const r = (" + _RENDER_REPORT_JS + ")();"
    " return r.plotlyMissing.length === 0 && r.widgetsMissing.length === 0"
    " && r.mathMissing.length === 0; }"
)


@pytest.mark.parametrize("page_path", _page_params())
def test_page_renders_offline(page_path, request):
    if page_path is None:
        pytest.fail(
            f"the browser check of the book cannot run: {_why_not_runnable()}",
            pytrace=False,
        )
    server = request.getfixturevalue("server_url")
    browser = request.getfixturevalue("browser")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url = server + page_path
    problems: list[str] = []

    def is_local(u: str) -> bool:
        parts = urlsplit(u)
        if parts.scheme in ("data", "blob", "about", "javascript"):
            return True
        return parts.hostname in LOCAL_HOSTS

    external: list[str] = []

    def block_external(route):
        req_url = route.request.url
        if is_local(req_url):
            route.continue_()
        else:
            external.append(req_url)
            route.abort("blockedbyclient")

    in_flight = set()

    def on_request_failed(req):
        in_flight.discard(req.url)
        if is_local(req.url):
            problems.append(f"request failed: {req.url} ({req.failure})")

    def on_response(resp):
        if resp.status >= 400:
            problems.append(f"HTTP {resp.status} for {resp.url}")

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            src = loc.get("url") or "?"
            problems.append(
                f"console error: {msg.text} (at {src}:{loc.get('lineNumber', '?')})"
            )

    def on_page_error(exc):
        text = f"uncaught JavaScript exception: {exc}"
        if "'Queue'" in str(exc):
            text += (
                " (MathJax 2's MathJax.Hub.Queue called under MathJax 3: the "
                "ipywidgets embed script typesets widget labels this way; is "
                "widgets/mathjax2-compat.js listed before widgets/embed.js in "
                "nb_ipywidgets_js?)"
            )
        problems.append(text)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.route("**/*", block_external)
        page = context.new_page()
        page.on("request", lambda req: in_flight.add(req.url))
        page.on("requestfinished", lambda req: in_flight.discard(req.url))
        page.on("requestfailed", on_request_failed)
        page.on("response", on_response)
        page.on("console", on_console)
        page.on("pageerror", on_page_error)

        page.goto(url, wait_until="load", timeout=60_000)
        try:
            page.wait_for_load_state("networkidle", timeout=RENDER_TIMEOUT_MS)
        except PlaywrightTimeout:
            # Chromium's idle signal can be late on a loaded machine; what
            # matters is that no request is left hanging.
            if in_flight:
                problems.append(f"requests still pending {RENDER_TIMEOUT_MS} ms after load: {sorted(in_flight)}")
        # MathJax 3 typesets asynchronously; wait for it if the page loads it.
        page.evaluate(
            "async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
            " { await MathJax.startup.promise; } }"
        )
        try:
            page.wait_for_function(_ALL_RENDERED_JS, timeout=RENDER_TIMEOUT_MS)
        except PlaywrightTimeout:
            pass  # reported below, element by element
        report = page.evaluate(_RENDER_REPORT_JS)

        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / (page_path[: -len(".html")].replace("/", "__") + ".png")
        page.screenshot(path=str(shot), full_page=True)
        if README_SHOTS:
            problems += _readme_pictures(page, page_path, Path(README_SHOTS))
    finally:
        context.close()

    problems += [f"request to a non-localhost host (blocked): {u}" for u in external]
    problems += [f"plotly figure not rendered (no .main-svg): {d}" for d in report["plotlyMissing"]]
    problems += [
        f"LaTeX in a plotly label is shown raw (plotly draws before MathJax loads; "
        f"use plain text, unicode or HTML tags like x<sub>i</sub>): {t}"
        for t in report["rawLatex"]
    ]
    if report["nViews"] and not report["hasState"]:
        problems.append(
            "ipywidget views on the page but no saved widget state "
            "(application/vnd.jupyter.widget-state+json): the notebook's widget "
            "state was not stored at execution"
        )
    problems += [
        f"ipywidget not rendered: {w} (is the vendored widgets/embed.js loaded?)"
        for w in report["widgetsMissing"]
    ]
    problems += [f"math not typeset by MathJax: {m!r}" for m in report["mathMissing"]]
    problems += [f"hidden widget leaves a blank band (e.g. a closed progress bar): {w}" for w in report["blankWidgets"]]
    problems += [f"output line cut off at 1280 px (horizontal scrollbar): {t!r}" for t in report["cutOff"]]
    problems += [f"a finished progress bar is left on the page: {b}" for b in report["leftoverBars"]]
    problems += [f"a printed table wraps at 1280 px (show it as HTML, e.g. tables.show): {t!r}" for t in report["wrapped"]]
    problems += [f"a number wraps inside its table cell at 1280 px (non-breaking spaces, fewer columns or a "
                 f"transposed table): {t!r}" for t in report["wrappedNumbers"]]
    problems += [f"figure narrower than its column (fixed width?): {d}" for d in report["narrow"]]
    problems += [f"overlapping text in a figure: {o}" for o in report["overlaps"]]
    problems += [f"figure missing: {m!r} (layout.meta.figure) is not on the page"
                 for m in REQUIRED_FIGURES.get(page_path, ()) if m not in report["metas"]]

    summary = (
        f"{report['nPlotly']} plotly figure(s), {report['nViews']} widget view(s), "
        f"{report['nMath']} math element(s); screenshot {shot}"
    )
    if problems:
        pytest.fail(
            f"page {page_path} ({url}) does not render cleanly offline "
            f"[{summary}]:\n  - " + "\n  - ".join(dict.fromkeys(problems)),
            pytrace=False,
        )


def _readme_pictures(page, page_path: str, folder: Path) -> list:
    """Screenshots of the figures README_FIGURES names on this page; a figure not found is a problem."""
    problems = []
    if page_path in README_FIGURES:  # taller than any figure, and no sticky page header over it
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.add_style_tag(content=".bd-header-article, .bd-header { visibility: hidden !important; }")
    for name, title in README_FIGURES.get(page_path, {}).items():
        figure = page.locator(".plotly-graph-div", has=page.locator(".gtitle", has_text=title))
        if figure.count() != 1:
            problems.append(f"README picture {name}: {figure.count()} figures titled {title!r} on the page")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        figure.scroll_into_view_if_needed()
        figure.screenshot(path=str(folder / name))
        try:
            from PIL import Image
        except ImportError:
            continue
        with Image.open(folder / name) as img:  # a palette of 256 colours: a fraction of the bytes
            img.convert("RGB").quantize(colors=256).save(folder / name, optimize=True)
    return problems


_BAR_PAGE = """<div class="cell" id="c1"><div class="cell_output">
<div class="widget-hbox"><div class="widget-html">classification: 100%</div>
<div class="widget-hprogress" style="height: 20px"></div><div class="widget-html">24/24 [00:16<00:00]</div></div>
<pre>fit: 100%|##########| 3/3 [00:08<00:00,  2.87s/fit]</pre><pre>top-1 29.0 %</pre></div></div>"""


@pytest.mark.skipif(not ENABLED, reason="with the browser check (LPSBOOK_RENDER_CHECK=1)")
def test_check_finds_a_leftover_progress_bar(request):
    """The report flags a finished bar, as a widget or as text, and nothing else on the page."""
    browser = request.getfixturevalue("browser")
    page = browser.new_page()
    try:
        page.set_content(_BAR_PAGE)
        found = page.evaluate(_RENDER_REPORT_JS)["leftoverBars"]
        page.set_content(_BAR_PAGE.replace('style="height: 20px"', 'style="display: none"').replace("<pre>fit", "<p>fit"))
        hidden = page.evaluate(_RENDER_REPORT_JS)["leftoverBars"]
    finally:
        page.close()
    assert len(found) == 2 and "24/24" in found[0] and "3/3" in found[1], found
    assert hidden == [], hidden


def _plotly_js() -> str:
    import plotly

    return str(Path(plotly.__file__).parent / "package_data" / "plotly.min.js")


def _report_of(browser, html: str, figures: dict | None = None) -> dict:
    """The render report of a synthetic page; ``figures`` ({div id: plotly figure}) are drawn in it first."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.set_content(html)
        if figures:
            page.add_script_tag(path=_plotly_js())
            for div, fig in figures.items():
                page.evaluate("([id, spec]) => Plotly.newPlot(id, spec.data, spec.layout)", [div, fig.to_plotly_json()])
        return page.evaluate(_RENDER_REPORT_JS)
    finally:
        page.close()


_FIGURE_PAGE = """<div class="cell" id="c1"><div class="cell_output" style="width: 800px">
<div id="f1" class="plotly-graph-div" style="height: 400px; width: 100%"></div></div></div>
<div class="cell" id="c2"><div class="cell_output" style="width: 800px">
<div id="f2" class="plotly-graph-div" style="height: 400px; width: 300px"></div></div></div>"""


@pytest.mark.skipif(not ENABLED, reason="with the browser check (LPSBOOK_RENDER_CHECK=1)")
def test_check_finds_overlapping_text_in_a_figure(request):
    """Four subplot titles too long for their columns run into each other: the report names them;
    the same titles wrapped by viz.wrap, with room above for their lines (the fix), do not (without the
    room, they run into the figure's title, which the check also reports); a figure of fixed narrow
    width is flagged."""
    from plotly.subplots import make_subplots

    from lpsbook.show import viz

    def figure(titles, top=None):
        fig = make_subplots(rows=1, cols=4, column_titles=titles, horizontal_spacing=0.03)
        for col in range(1, 5):
            fig.add_scatter(y=[1, 2], row=1, col=col)
        return fig.update_layout(title="overlap check", margin={"t": top})

    long = [f"task {i} (aquarium_fish vs sweet_pepper), seed {i}" for i in range(4)]
    broken = _report_of(request.getfixturevalue("browser"), _FIGURE_PAGE,
                        {"f1": figure(long), "f2": figure(["a", "b", "c", "d"])})
    fixed = _report_of(request.getfixturevalue("browser"), _FIGURE_PAGE,
                       {"f1": figure([viz.wrap(t, 18) for t in long], top=220), "f2": figure(["a", "b", "c", "d"])})
    assert broken["nPlotly"] == 2 and broken["plotlyMissing"] == []
    assert all(o.startswith("div#f1") for o in broken["overlaps"]), broken["overlaps"]
    pairs = [o for o in broken["overlaps"] if o.count('"task ') == 2]
    assert len(pairs) >= 3, broken["overlaps"]  # each title over the next one
    assert fixed["overlaps"] == [], fixed["overlaps"]
    assert [n.split(":")[0] for n in broken["narrow"]] == ["div#f2 in cell #c2"], broken["narrow"]


_TEXT_PAGE = """<style>div.cell_output pre { white-space: pre-wrap; font: 13px monospace; }</style>
<div class="cell" id="c1"><div class="cell_output" style="width: 400px">
<pre id="table">                 trained φ, stored order  trained φ, sorted (Eq. 8)  random φ, sorted (Eq. 8)
layer2.1.conv1                     0.02                       0.07                      0.00</pre>
<pre id="sentence">19 branches, each trained alone: 5 epochs, batch 8, lr 0.05 (/10 from epoch 4), g′ = 8, which is a long line</pre>
<pre id="narrow-table">layer   rate
conv1   0.02</pre></div></div>"""


_NUMBER_PAGE = """<div class="cell" id="c1"><div class="cell_output"><table style="width: 300px">
<tr><td id="sd">51.7 ± 7.6</td><td id="ci">29.0 [24.0, 34.1]</td><td id="ok">51.7\u00a0±\u00a07.6</td>
<td id="words">a sentence of words that wraps, and 12.5 in it</td><th id="head">top-1 %, branches 2-19</th></tr>
</table></div></div>"""


@pytest.mark.skipif(not ENABLED, reason="with the browser check (LPSBOOK_RENDER_CHECK=1)")
def test_check_finds_a_number_that_wraps_in_its_cell(request):
    """"51.7 ± 7.6" and an interval broken over lines in a narrow table: flagged. The same number with
    non-breaking spaces, a cell of words that wraps around a lone number, and a heading that breaks at the
    hyphen of "top-1" are not."""
    browser = request.getfixturevalue("browser")
    narrow = _report_of(browser, _NUMBER_PAGE.replace("width: 300px", "width: 120px"))
    assert sorted(w.split(" in cell")[0] for w in narrow["wrappedNumbers"]) == ["td#ci", "td#sd"], narrow["wrappedNumbers"]
    assert _report_of(browser, _NUMBER_PAGE.replace("width: 300px", "width: 1200px"))["wrappedNumbers"] == []


@pytest.mark.skipif(not ENABLED, reason="with the browser check (LPSBOOK_RENDER_CHECK=1)")
def test_check_finds_a_printed_table_that_wraps(request):
    """A printed DataFrame wider than its box wraps under pre-wrap: flagged. A long sentence (which
    still reads when wrapped) and a table that fits are not; nor is the table once the box is wide."""
    browser = request.getfixturevalue("browser")
    broken = _report_of(browser, _TEXT_PAGE)
    wide = _report_of(browser, _TEXT_PAGE.replace("width: 400px", "width: 1200px"))
    assert [w.split(":")[0] for w in broken["wrapped"]] == ["pre#table in cell #c1"], broken["wrapped"]
    assert broken["cutOff"] == []
    assert wide["wrapped"] == [], wide["wrapped"]
