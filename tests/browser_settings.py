"""How the browser checks start Debian's Chromium (tests/test_book_render.py, tests/test_explorer_live.py).

Playwright drives the system browser and never downloads one. The flags keep
a headless Chromium from calling any host at start-up (this machine has no
internet, and a page must not need it either).
"""
import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("LPSBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

