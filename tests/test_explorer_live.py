"""End-to-end check of chapter 3's live aligned-filter explorer in JupyterLab.

Starts a JupyterLab server on localhost (a private port, token, config and
settings; no news, update or extension-manager requests), opens chapter 3 in
headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, which
never downloads a browser here), runs the chapter's code cells one by one up to
and including the ``AlignedFilterExplorer`` cell, and then works the rendered
ipywidgets as a reader would:

* picks another task in the ``task`` dropdown: the figure's title names the
  new task and the stored filters shown are those of another model;
* picks the last (deepest) layer in the ``layer`` dropdown: the title names it
  and the figure shows more filters than for ``conv1``;
* moves the ``order by φ filter g′`` slider with the keyboard (ArrowRight on
  its handle, twice): the aligned-order panel's title names the new g′ and its
  filter order is the one that sorts row g′ of the score panel.

Every assertion reads the figure's rendered state, i.e. the ``layout`` and
``_fullData`` that plotly keeps on the ``.js-plotly-plot`` element, never a
screenshot.  A cell that raises fails the test with the kernel's traceback.

The chapter runs on a copy of ``book/ch3_alignment.ipynb`` in a temporary
folder, not in ``book/``: JupyterLab (autosave is off as well) then cannot
write outputs into a notebook others are editing.  The kernel still imports
this checkout's ``lpsbook`` and reads the model set from ``data/`` (or
``$LPSBOOK_CACHE``).

Run it after the book has been built (``make test`` does), so that the model
set and chapter 3's brief training are cached::

    LPSBOOK_LIVE_CHECK=1 python -m pytest -q tests/test_explorer_live.py

Environment variables:

``LPSBOOK_LIVE_CHECK=1``
    run the check; without it the test is skipped.  When it is set, a missing
    browser, Playwright or JupyterLab is a failure, not a skip.
``LPSBOOK_PRESET``, ``LPSBOOK_DATA``, ``LPSBOOK_CACHE``
    passed on to the kernel (the server inherits the environment), e.g.
    ``LPSBOOK_PRESET=tiny LPSBOOK_CACHE=/tmp/livecheck-data`` for a quick run
    that builds the tiny model set and its brief training there (under a
    minute) instead of using the book's model set in ``data/``.
``LPSBOOK_CHROMIUM``
    the Chromium executable (default ``/usr/bin/chromium``, installed by
    ``scripts/install_browser.sh``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTER = REPO_ROOT / "book" / "ch3_alignment.ipynb"
EXPLORER_MARK = "AlignedFilterExplorer("  # the text that finds the explorer's cell
from browser_settings import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS  # noqa: E402

# Timeouts (seconds).  Generous: 2 slow cores, a cold kernel, numba/torch imports.
SERVER_START_S = 120
LAB_LOAD_S = 180  # JupyterLab's page, the notebook and the first kernel start
RUN_CHAPTER_S = 900  # every cell up to the explorer
WIDGET_CHANGE_S = 120  # one control changed -> Python callback -> figure redrawn

ENABLED = os.environ.get("LPSBOOK_LIVE_CHECK", "") not in ("", "0")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ENABLED,
        reason="live JupyterLab check of chapter 3's explorer: set LPSBOOK_LIVE_CHECK=1 "
        "to run it after the book is built (make test does)",
    ),
]


def _why_not_runnable() -> str | None:
    if not CHAPTER.is_file():
        return f"chapter 3 not found at {CHAPTER}"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM}: run `bash scripts/install_browser.sh`"
    for module, package in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("ipywidgets", "ipywidgets")):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package `{package}` is not installed"
    return None


# --- the JupyterLab server ----------------------------------------------------------------------

# User settings of the private JupyterLab: never autosave (the notebook is a
# copy anyway), no news or update checks, every cell attached to the DOM.
_LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return text[-chars:]


def _descendants(pid: int) -> list[int]:
    """Processes started by the server (kernels run in their own sessions)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


class LabServer:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.root = workdir / "root"
        self.log_path = workdir / "jupyterlab.log"
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        return f"{self.base}/lab/tree/{name}?token={self.token}"

    def log_tail(self, chars: int = 6000) -> str:
        if self._log is not None:
            self._log.flush()
        return _tail(self.log_path, chars)

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def _request(self, method: str, path: str, timeout: float = 5):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        return urllib.request.urlopen(req, timeout=timeout)

    def start(self):
        self.root.mkdir(parents=True)
        shutil.copy2(CHAPTER, self.root / CHAPTER.name)
        for rel, value in _LAB_SETTINGS.items():
            path = self.workdir / "user-settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value), encoding="utf-8")
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
            (self.workdir / sub).mkdir(exist_ok=True)
            env[var] = str(self.workdir / sub)  # nothing from ~/.jupyter or ~/.ipython
        env.pop("JUPYTER_PATH", None)
        self._log = open(self.log_path, "ab")
        last_error = None
        for _attempt in range(3):  # the free port may be taken before the server binds it
            self.port = _free_port()
            cmd = [
                sys.executable, "-m", "jupyterlab",  # = `jupyter lab` of this environment
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",  # ServerApp.token is deprecated
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.terminals_enabled=False",
                "--ServerApp.allow_root=True",
                # No requests to the internet: news feed, update check, PyPI extension manager.
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
                f"--LabApp.user_settings_dir={self.workdir / 'user-settings'}",
                f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
                # window.jupyterapp: the test runs cells through JupyterLab's own commands.
                "--LabApp.expose_app_in_browser=True",
            ]
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            last_error = self._wait_until_up()
            if last_error is None:
                return
            self.stop()
        raise RuntimeError(f"JupyterLab did not start: {last_error}\n--- server log ---\n{self.log_tail()}")

    def _wait_until_up(self) -> str | None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"the server exited with status {self.proc.returncode}"
            try:
                with self._request("GET", "/api/status") as resp:
                    if resp.status == 200:
                        return None
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        return f"no answer on port {self.port} within {SERVER_START_S} s"

    def stop(self):
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        children = _descendants(proc.pid)
        if proc.poll() is None:
            try:  # the clean way: shuts the kernels down too
                self._request("POST", "/api/shutdown", timeout=10).close()
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the server's process group, then its kernels (own sessions).
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers still in the group
        except (ProcessLookupError, PermissionError):
            pass
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self):
        try:
            self.stop()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request):
    why = _why_not_runnable()
    if why is not None:
        pytest.fail(f"the live explorer check cannot run: {why}", pytrace=False)
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    request.addfinalizer(server.close)  # registered first: the server always goes
    server.start()
    return server


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    # executable_path: the system Chromium; Playwright downloads nothing.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# --- JavaScript run in JupyterLab's page ---------------------------------------------------------

# The notebook panel once it is loaded, and its kernel's status.
_NOTEBOOK_STATE_JS = r"""
(name) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {stage: 'app'};
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== name) return {stage: 'panel'};
  if (!w.context.isReady || !w.content || w.content.widgets.length === 0) return {stage: 'document'};
  const dialog = document.querySelector('.jp-Dialog');
  const session = w.sessionContext && w.sessionContext.session;
  const kernel = session && session.kernel;
  return {stage: kernel ? 'kernel' : 'session', status: kernel ? kernel.status : null,
          dialog: dialog ? dialog.innerText.slice(0, 500) : null};
}
"""

# Finds the explorer's cell, marks its node, clears all outputs and starts
# collecting the kernel's error messages (for the diagnostics).
_PREPARE_JS = r"""
async (mark) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const nb = panel.content;
  window.__lpsKernelErrors = [];
  panel.sessionContext.iopubMessage.connect((_, msg) => {
    const t = msg.header.msg_type;
    if (t === 'error') {
      window.__lpsKernelErrors.push(msg.content.ename + ': ' + msg.content.evalue + '\n'
                                    + (msg.content.traceback || []).join('\n'));
    }
  });
  if (!app.commands.hasCommand('notebook:clear-all-cell-outputs')) {
    return {error: 'JupyterLab has no command notebook:clear-all-cell-outputs'};
  }
  await app.commands.execute('notebook:clear-all-cell-outputs');
  const cells = nb.widgets.map((c, i) => ({
    index: i, type: c.model.type,
    tags: (c.model.getMetadata ? c.model.getMetadata('tags') : c.model.metadata.tags) || [],
    head: c.model.sharedModel.getSource().split('\n')[0].slice(0, 80),
    isExplorer: c.model.type === 'code' && c.model.sharedModel.getSource().includes(mark),
  }));
  const target = cells.findIndex((c) => c.isExplorer);
  if (target >= 0) nb.widgets[target].node.setAttribute('data-lps-live', 'explorer');
  return {cells, target};
}
"""

# Starts one cell through JupyterLab's "Run Selected Cell" command.
_START_CELL_JS = r"""
(index) => {
  const app = window.jupyterapp;
  const nb = app.shell.currentWidget.content;
  nb.deselectAll();
  nb.activeCellIndex = index;
  window.__lpsRun = {index, done: false};
  app.commands.execute('notebook:run-cell').then(
    (ok) => { window.__lpsRun = {index, done: true, ok}; },
    (e) => { window.__lpsRun = {index, done: true, ok: false, error: String(e)}; });
}
"""

# The run's progress, the cell's outputs, the kernel's status.
_CELL_STATE_JS = r"""
(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cell = panel.content.widgets[index];
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {run: window.__lpsRun, executionCount: cell.model.executionCount,
          outputs: cell.model.outputs.toJSON(), kernel: kernel ? kernel.status : 'none',
          kernelErrors: window.__lpsKernelErrors};
}
"""

# What the explorer shows now: its controls and the plotly figure's state.
_EXPLORER_STATE_JS = r"""
() => {
  const cell = document.querySelector('[data-lps-live="explorer"]');
  if (!cell) return {missing: 'the explorer cell'};
  const text = (el) => el ? el.textContent.replace(/\u00a0/g, ' ').trim() : null;
  const selected = (label) => {
    const box = Array.from(cell.querySelectorAll('.widget-dropdown'))
        .find((d) => text(d.querySelector('label')) === label);
    if (!box) return null;
    const sel = box.querySelector('select');
    return sel && sel.selectedIndex >= 0 ? text(sel.options[sel.selectedIndex]) : null;
  };
  const controls = {task: selected('task'), seed: selected('model (seed)'),
                    layer: selected('layer'),
                    reference: text(cell.querySelector('.widget-slider .widget-readout'))};
  const gd = cell.querySelector('.widget-output .js-plotly-plot');
  if (!gd || !gd.layout || !gd._fullData || !gd.querySelector('.main-svg')) {
    return {controls, missing: 'the drawn plotly figure',
            outputText: text(cell.querySelector('.jp-Cell-outputArea')).slice(0, 2000)};
  }
  const trace = (name) => gd._fullData.find((t) => t.name === name);
  const rows = (t) => t && t.z ? Array.from(t.z, (r) => Array.from(r)) : null;
  const ticks = (axis) => Array.from((gd.layout[axis] || {}).ticktext || []);
  return {
    controls,
    title: (gd.layout.title && gd.layout.title.text) || '',
    annotations: (gd.layout.annotations || []).map((a) => a.text),
    traces: gd._fullData.map((t) => t.name),
    storedTicks: ticks('xaxis'),
    alignedTicks: ticks('xaxis2'),
    stored: rows(trace('stored order')),
    scores: rows(trace('s')),
  };
}
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _explorer_state(page) -> dict:
    return page.evaluate(_EXPLORER_STATE_JS)


def _wait_for_figure(page, predicate, what: str, lab: LabServer, timeout_s: float = WIDGET_CHANGE_S) -> dict:
    """Poll the explorer until ``predicate(state)`` holds; fail with everything known if it does not."""
    deadline = time.monotonic() + timeout_s
    state = {}
    while time.monotonic() < deadline:
        state = _explorer_state(page)
        if "missing" not in state and predicate(state):
            return state
        page.wait_for_timeout(250)
    errors = page.evaluate("() => window.__lpsKernelErrors || []")
    summary = {k: v for k, v in state.items() if k not in ("stored", "scores", "storedTicks")}
    pytest.fail(
        f"after {timeout_s:.0f} s the explorer's figure does not show {what}.\n"
        f"what it shows: {json.dumps(summary, ensure_ascii=False)}\n"
        f"kernel errors: {_ANSI.sub('', chr(10).join(errors)) or 'none'}\n"
        f"--- JupyterLab/kernel log (tail) ---\n{lab.log_tail()}",
        pytrace=False,
    )


def _filters(state) -> int:
    """g of the shown layer: the score panel s[g, g'] has one column per trained filter."""
    return len(state["scores"][0])


def _check_order(state, reference: int):
    """The aligned panel's filters are the stored filters sorted by s[g, reference], descending."""
    g = _filters(state)
    ticks = [int(t) for t in state["alignedTicks"]]
    stored = [int(t) for t in state["storedTicks"]]
    step = stored[1] - stored[0] if len(stored) > 1 else 1  # long axes label every step-th tile
    assert len(stored) == -(-g // step) and stored == list(range(0, g, step)), state["storedTicks"]
    assert len(ticks) == len(stored) and len(set(ticks)) == len(ticks) and all(0 <= t < g for t in ticks), (
        f"the aligned panel's tick labels are not stored filter indices: {ticks} (g = {g})")
    column = [state["scores"][reference][t] for t in ticks]
    assert all(a >= b for a, b in zip(column, column[1:])), (
        f"the aligned order {ticks} does not sort row g′={reference} of the score panel "
        f"(scores in that order: {column})")


def _check_consistent(state):
    """Title and panel titles name what the controls select; the order follows the slider."""
    c = state["controls"]
    assert None not in c.values(), f"a control was not found in the rendered widget: {c}"
    assert c["task"] in state["title"], f"figure title {state['title']!r} does not name task {c['task']!r}"
    assert f"seed {c['seed']}" in state["title"], f"figure title {state['title']!r} does not name seed {c['seed']}"
    assert state["title"].endswith(c["layer"]), f"figure title {state['title']!r} does not name layer {c['layer']!r}"
    reference = int(c["reference"])
    assert any(f"g′={reference}" in a for a in state["annotations"]), (
        f"no panel title names g′={reference}: {state['annotations']}")
    _check_order(state, reference)


def _run_chapter(page, lab: LabServer) -> int:
    """Run the code cells up to and including the explorer's; return the explorer's index."""
    prepared = page.evaluate(_PREPARE_JS, EXPLORER_MARK)
    if prepared.get("error"):
        pytest.fail(prepared["error"], pytrace=False)
    target = prepared["target"]
    if target < 0:
        pytest.fail(f"no code cell of {CHAPTER.name} contains {EXPLORER_MARK!r}", pytrace=False)
    deadline = time.monotonic() + RUN_CHAPTER_S
    for cell in prepared["cells"][: target + 1]:
        if cell["type"] != "code" or "skip-execution" in cell["tags"]:
            continue
        index = cell["index"]
        page.evaluate(_START_CELL_JS, index)
        while True:
            state = page.evaluate(_CELL_STATE_JS, index)
            errors = [o for o in state["outputs"] if o.get("output_type") == "error"]
            if errors and "raises-exception" not in cell["tags"]:
                tb = "\n".join(_ANSI.sub("", "\n".join(o.get("traceback") or [])) or
                               f"{o.get('ename')}: {o.get('evalue')}" for o in errors)
                pytest.fail(f"cell #{index} of {CHAPTER.name} ({cell['head']!r}) raised:\n{tb}", pytrace=False)
            if state["kernel"] in ("dead", "autorestarting", "restarting"):
                pytest.fail(f"the kernel died ({state['kernel']}) while running cell #{index} "
                            f"({cell['head']!r})\n--- JupyterLab/kernel log (tail) ---\n{lab.log_tail()}",
                            pytrace=False)
            run = state["run"]
            if run and run.get("index") == index and run.get("done"):
                if run.get("error") or (state["executionCount"] is None):
                    pytest.fail(f"cell #{index} ({cell['head']!r}) did not run: {run}\n"
                                f"--- JupyterLab/kernel log (tail) ---\n{lab.log_tail()}", pytrace=False)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the chapter did not reach the explorer within {RUN_CHAPTER_S} s "
                            f"(still in cell #{index}: {cell['head']!r})", pytrace=False)
            page.wait_for_timeout(250)
    return target


@pytest.mark.timeout(SERVER_START_S + LAB_LOAD_S + RUN_CHAPTER_S + 6 * WIDGET_CHANGE_S + 120)
def test_live_explorer_follows_its_widgets(lab, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    external: list[str] = []
    page_errors: list[str] = []

    def block_external(route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort("blockedbyclient")

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        context.route("**/*", block_external)
        page = context.new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        t0 = time.monotonic()
        page.goto(lab.notebook_url(CHAPTER.name), wait_until="domcontentloaded", timeout=LAB_LOAD_S * 1000)

        # JupyterLab up, the notebook open, its kernel started and idle.
        state = {}
        while time.monotonic() - t0 < LAB_LOAD_S:
            state = page.evaluate(_NOTEBOOK_STATE_JS, CHAPTER.name)
            if state.get("dialog"):
                pytest.fail(f"JupyterLab shows a dialog: {state['dialog']}", pytrace=False)
            if state.get("status") == "idle":
                break
            page.wait_for_timeout(500)
        else:
            pytest.fail(f"the notebook's kernel was not idle within {LAB_LOAD_S} s (stage: {state}); "
                        f"page errors: {page_errors}; blocked requests: {external}\n"
                        f"--- JupyterLab/kernel log (tail) ---\n{lab.log_tail()}", pytrace=False)

        _run_chapter(page, lab)
        # The kernel's own log (e.g. an exception in a widget callback) goes to the server's output.
        log_offset = lab.log_size()
        explorer = page.locator('[data-lps-live="explorer"]')
        explorer.scroll_into_view_if_needed()
        try:
            explorer.locator(".widget-output .js-plotly-plot .main-svg").first.wait_for(timeout=WIDGET_CHANGE_S * 1000)
        except PlaywrightTimeout:
            _wait_for_figure(page, lambda s: True, "anything (no widget or figure was rendered; is the "
                             "@jupyter-widgets/jupyterlab-manager extension installed?)", lab, timeout_s=1)

        # The initial view: task 0, seed 0, conv1, g' = 0 (the explorer's defaults).
        initial = _wait_for_figure(page, lambda s: True, "the initial view", lab)
        _check_consistent(initial)
        assert initial["controls"]["reference"] == "0", initial["controls"]

        # 1. Another task in the task dropdown.
        task_select = explorer.locator(".widget-dropdown:has(label:text-is('task')) select")
        options = task_select.locator("option").all_inner_texts()
        assert len(options) > 1, f"the task dropdown offers only {options}"
        task_select.select_option(index=1)
        new_task = options[1].replace("\u00a0", " ").strip()
        after_task = _wait_for_figure(page, lambda s: new_task in s["title"], f"task {new_task!r}", lab)
        _check_consistent(after_task)
        assert after_task["controls"]["task"] == new_task
        assert after_task["controls"]["layer"] == initial["controls"]["layer"]
        assert after_task["stored"] != initial["stored"], "another task's model shows the same filters"

        # 2. The deepest layer in the layer dropdown: ResNet-20's last stage has 4x the filters of conv1.
        layer_select = explorer.locator(".widget-dropdown:has(label:text-is('layer')) select")
        layers = [t.replace("\u00a0", " ").strip() for t in layer_select.locator("option").all_inner_texts()]
        assert after_task["controls"]["layer"] == layers[0], "the explorer does not start on the first layer"
        layer_select.select_option(index=len(layers) - 1)
        new_layer = layers[-1]
        after_layer = _wait_for_figure(page, lambda s: s["title"].endswith(new_layer), f"layer {new_layer!r}", lab)
        _check_consistent(after_layer)
        assert new_task in after_layer["title"], "changing the layer changed the task"
        assert _filters(after_layer) > _filters(after_task), (
            f"{new_layer} shows {_filters(after_layer)} filters, {layers[0]} showed {_filters(after_task)}")

        # 3. The reference filter g', moved with the keyboard on the slider's handle.
        handle = explorer.locator(".widget-slider .noUi-handle")
        previous = after_layer
        for expected in (1, 2):
            handle.focus()
            page.keyboard.press("ArrowRight")
            moved = _wait_for_figure(
                page, lambda s, r=expected: any(f"g′={r}" in a for a in s["annotations"]),
                f"the order by g′={expected}", lab)
            _check_consistent(moved)  # includes: the aligned order sorts row g'=expected of s
            assert moved["controls"]["reference"] == str(expected)
            assert moved["title"] == previous["title"] and moved["scores"] == previous["scores"], (
                "moving the g′ slider changed the model or layer shown")
            previous = moved

        assert not page_errors, f"uncaught JavaScript exceptions in JupyterLab: {page_errors}"
        kernel_errors = page.evaluate("() => window.__lpsKernelErrors")
        assert not kernel_errors, "the kernel reported errors:\n" + _ANSI.sub("", "\n".join(kernel_errors))
        log = lab.log_since(log_offset)
        assert "Traceback" not in log, f"a traceback in the kernel's log while the widgets were used:\n{log[-6000:]}"
    finally:
        context.close()
    # Offline by design: JupyterLab, the widgets and plotly need nothing from the internet.
    assert not external, f"requests to non-localhost hosts (blocked): {external}"
