"""What lpsbook keeps on disk between runs: one atomic write, one result cache, one checkpoint.

* :func:`write_atomic`: every file lpsbook writes goes through a temporary
  file and a rename, so an interrupted write never leaves half a file.
* :func:`cached_json`: a result computed once per (preset, name, settings,
  code version) and kept as JSON; a change to the package's code is a new
  key, so a fix is never hidden by an old result.
* :class:`Checkpoint`: the finished pieces of a long run (one fit, one
  split), kept under the same kind of key so an interrupted run resumes.
* :func:`digest` and :class:`Memo`: in memory, results that are pure
  functions of tensors (an alignment, a model's features), kept by content.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

from .errors import LpsbookError


def digest(*parts) -> str:
    """A content hash of tensors, dicts of tensors and plain values (for results that are pure functions of them)."""
    h = hashlib.sha1()

    def add(x):
        if isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                add(x[k])
        elif hasattr(x, "detach"):
            h.update(str((x.dtype, tuple(x.shape))).encode())
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(x).encode())

    for p in parts:
        add(p)
    return h.hexdigest()


class Memo:
    """At most ``size`` results in memory, the least recently used dropped first."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, compute):
        """The result stored under ``key``, computing (and storing) it with ``compute()`` if missing."""
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = compute()
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


def os_fix(exc: OSError) -> str:
    """What to do about an OSError met while writing the output of a command."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space, then run the same command again to resume"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable or choose another --out"
    return "choose another --out"


def write_atomic(path: Path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise LpsbookError(f"could not write {path} ({exc.strerror or exc}): {os_fix(exc)}.") from None


def key(settings: dict) -> dict:
    """``settings`` as plain JSON with the package's code version added: what every stored result is keyed by."""
    from . import code_version

    return json.loads(json.dumps({**settings, "code": code_version()}, sort_keys=True, default=str))


def result_path(name: str, settings: dict, preset, root=None) -> Path:
    """Where the cached result of (preset, name, settings, code version) lives."""
    from .data import default_cache_dir

    text = json.dumps(key({"preset": preset.hash, "name": name, "settings": settings}), sort_keys=True)
    folder = Path(root or default_cache_dir()) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{preset.name}-{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def cached_json(name: str, settings: dict, compute, preset, root=None):
    """``compute()`` once per (preset, name, settings, code version); its JSON result is kept on disk."""
    path = result_path(name, settings, preset, root)
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    write_atomic(path, json.dumps(result, indent=1, default=float).encode())
    return json.loads(path.read_text())


class Checkpoint:
    """Finished pieces of a run, kept on disk so an interrupted run resumes.

    Parameters
    ----------
    path : path or None
        The checkpoint file (None: keep nothing).
    settings : dict
        What the run depends on; a checkpoint written under other settings, or
        by another version of the code, is ignored (and overwritten).
    """

    def __init__(self, path, settings: dict):
        self.path, self.settings = (Path(path) if path else None), key(settings)
        self.done = {}
        if self.path and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                if saved.get("settings") == self.settings:
                    self.done = saved["done"]
            except (ValueError, AttributeError, KeyError):
                pass  # not a checkpoint (or a damaged one): start afresh, it is overwritten

    def get(self, name):
        return self.done.get(name)

    def put(self, name, value):
        self.done[name] = value
        if self.path:
            write_atomic(self.path, json.dumps({"settings": self.settings, "done": self.done}).encode())

    def finish(self):
        """The run is complete: remove the checkpoint."""
        if self.path:
            self.path.unlink(missing_ok=True)
