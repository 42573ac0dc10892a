#!/usr/bin/env bash
# Install Debian's Chromium for the headless browser check of the built book
# (tests/test_book_render.py drives /usr/bin/chromium through Playwright; no
# browser is ever downloaded by Playwright itself). Idempotent and quiet.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_browser.sh: /usr/bin/chromium is missing and this user is not root (no sudo)." >&2
    echo "Install it with: apt-get install -y chromium" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install Chromium so that /usr/bin/chromium exists." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Output is kept only to be shown when something fails.
if ! { $SUDO apt-get update -qq && \
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_browser.sh: apt-get install chromium failed (see above)." >&2
    exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser.sh: chromium was installed but /usr/bin/chromium is missing." >&2
    exit 1
fi
