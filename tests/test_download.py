"""`make book` gets CIFAR-100 itself: torchvision's download from a server on 127.0.0.1 serving a small
archive in the real format, and every way it can fail (broken, truncated, unreachable, offline) falls back
to digits with a reason and leaves nothing half-written."""
import hashlib
import http.server
import io
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lpsbook.show import book
from lpsbook.core import data

from test_cifar_data import _arrays, _write_torchvision


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """A small cifar-100-python.tar.gz in torchvision's format, its md5s patched into torchvision."""
    src = _write_torchvision(tmp_path / "src", _arrays(), monkeypatch)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-100-python", arcname="cifar-100-python")
    blob = buf.getvalue()
    cls = data._torchvision_datasets().CIFAR100
    monkeypatch.setattr(cls, "tgz_md5", hashlib.md5(blob).hexdigest())
    return blob


class _Handler(http.server.BaseHTTPRequestHandler):
    body, status, claimed = b"", 200, None  # claimed: a Content-Length larger than the body (truncated)

    def _head(self):
        self.send_response(self.status)
        self.send_header("Content-Length", str(self.claimed or len(self.body)))
        self.end_headers()

    def do_HEAD(self):  # noqa: N802 - http.server's name
        self._head()

    def do_GET(self):  # noqa: N802
        self._head()
        if self.status == 200:
            self.wfile.write(self.body)
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """serve(body, status=200, claimed=None): CIFAR-100's URL answered by a local server; the data dir is empty."""
    servers = []
    monkeypatch.setenv("LPSBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LPSBOOK_CACHE", str(tmp_path / "cache"))
    for var in ("LPSBOOK_PRESET", "LPSBOOK_NO_CIFAR", "LPSBOOK_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    data.clear_cache()

    def start(body, status=200, claimed=None):
        handler = type("H", (_Handler,), {"body": body, "status": status, "claimed": claimed})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-100-python.tar.gz"
        monkeypatch.setattr(data._torchvision_datasets().CIFAR100, "url", url)
        return url

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
    data.clear_cache()


def _left_in(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_when_missing(archive, serve, tmp_path, capsys):
    serve(archive)
    assert book.fetch_data() is None
    out = capsys.readouterr().out
    assert "downloading it with torchvision" in out and "about 170 MB" in out and "LPSBOOK_OFFLINE=1" in out
    assert _left_in(tmp_path / "data") == ["cifar-100-python"], "the archive and the temporary folder are gone"
    ds = data.load_cifar100(tmp_path / "data")
    assert ds.train_images.shape[1:] == (3, 32, 32) and len(ds.class_names) == 100
    assert book.current_preset().name == "cifar100-small" and "digits" not in book.banner()
    assert book.fetch_data() is None and "downloading" not in capsys.readouterr().out, "found: nothing fetched"


@pytest.mark.parametrize("how, says", [
    ("missing", "HTTP Error 404"),
    ("garbage", "download failed (RuntimeError"),  # torchvision's md5 check
    ("truncated", "download failed"),
])
def test_a_failed_download_falls_back_to_digits(archive, serve, tmp_path, how, says):
    if how == "missing":
        serve(b"", status=404)
    elif how == "garbage":
        serve(np.random.default_rng(0).bytes(len(archive)))  # md5 does not match
    else:
        serve(archive[: len(archive) // 2], claimed=len(archive))  # the connection drops half-way
    reason = book.fetch_data()
    assert reason and says in reason
    assert _left_in(tmp_path / "data") == [], "nothing half-written"
    assert book.current_preset().name == "digits"
    banner = book.banner()
    assert max(len(line) for line in banner.splitlines()) <= 72
    banner = " ".join(banner.split())
    assert f"{says}" in banner and "so this runs on digits" in banner and "make data" in banner


def test_offline_falls_back_within_seconds(serve, tmp_path, monkeypatch):
    url = serve(b"")
    port = int(url.split(":")[2].split("/")[0])
    monkeypatch.setattr(data._torchvision_datasets().CIFAR100, "url", url.replace(str(port), str(_closed_port())))
    start = time.perf_counter()
    reason = book.fetch_data()
    assert "did not answer" in reason and time.perf_counter() - start < 5
    monkeypatch.setenv("LPSBOOK_OFFLINE", "1")
    assert "LPSBOOK_OFFLINE is set" in book.fetch_data()
    assert "LPSBOOK_OFFLINE is set" in book.banner()


def test_nothing_is_tried_when_the_data_or_a_preset_is_there(serve, monkeypatch):
    serve(b"", status=500)  # would fail if asked
    monkeypatch.setenv("LPSBOOK_PRESET", "digits")
    assert book.fetch_data() is None
    monkeypatch.delenv("LPSBOOK_PRESET")
    monkeypatch.setenv("LPSBOOK_NO_CIFAR", "1")
    assert book.fetch_data() is None


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

