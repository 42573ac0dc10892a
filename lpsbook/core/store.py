"""What lpsbook keeps on disk between runs: one atomic write, one result cache, one checkpoint.

* :func:`write_atomic`: every file lpsbook writes goes through a temporary
  file and a rename, so an interrupted write never leaves half a file.
* :func:`seal` and :func:`read_sealed`: JSON that carries a sha256 of its own
  content, so a file read back is either exactly what was written or a
  :class:`DamagedFile` error naming it (truncated, emptied, overwritten,
  edited); :func:`recall` reads a file that can be computed again and, when
  it is damaged, says so once (a :class:`DamagedFileWarning` naming the file),
  removes it and answers None, so the caller recomputes it.
* :func:`cached_json`: a result computed once per (preset, name, settings,
  code version) and kept as sealed JSON; a change to the package's code is a
  new key, so a fix is never hidden by an old result.
* :class:`Checkpoint`: the finished pieces of a long run (one fit, one
  split), kept under the same kind of key so an interrupted run resumes.

In memory, the one cache is :class:`lpsbook.core.memo.Memo`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

from .data import default_cache_dir
from .errors import LpsbookError


def os_fix(exc: OSError) -> str:
    """What to do about an OSError met while writing the output of a command."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space, then run the same command again to resume"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable or choose another --out"
    return "choose another --out"


def output_problem(path, folder: bool) -> str | None:
    """Why nothing can be written at ``path``, or None if it looks writable.

    ``path`` is the folder (``folder=True``) or file to write; it and its
    missing parents may be created later.  Checks that nothing of the wrong
    kind is in the way, then really writes (and removes) a temporary file in
    the nearest existing folder, which ``os.access`` alone would not prove.
    """
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != folder:
        return f"{path} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
    base = path if folder else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return f"{path} cannot be created because {base} is a file, not a folder"
    try:
        tempfile.TemporaryFile(dir=base).close()
    except OSError as exc:
        where = "" if base == path else f"{path} cannot be {'written' if path.exists() else 'created'}: "
        return f"{where}{base} is not writable ({exc.strerror or exc})"
    return None


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


class DamagedFile(LpsbookError):
    """A file lpsbook wrote earlier does not read back as written; ``path`` is the file."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = Path(path)


class DamagedFileWarning(UserWarning):
    """A file lpsbook wrote earlier was damaged: it is removed and computed again."""


def plain(obj):
    """``obj`` as it reads back from JSON (tuples become lists, numpy numbers floats, keys strings)."""
    return json.loads(json.dumps(obj, default=float))


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(body: dict, field: str = "sha256") -> bytes:
    """JSON of the dict ``body`` with a ``field`` holding the sha256 of the rest (see :func:`read_sealed`)."""
    body = {k: v for k, v in plain(body).items() if k != field}
    return json.dumps({**body, field: _checksum(body)}, indent=1, sort_keys=True).encode()


def read_sealed(path, fix: str, field: str = "sha256", check=None) -> dict:
    """The dict :func:`seal` wrote to ``path``, exactly; a :class:`DamagedFile` otherwise.

    Raised when the file cannot be read, is empty, is not UTF-8 JSON, is not
    a sealed dict, its checksum does not match, or ``check(body)`` (a test of
    its shape) is false.  The message names the file and ends with ``fix``,
    what to do about it (if not empty).  ``FileNotFoundError`` is left to the caller.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DamagedFile(f"{path} could not be read ({exc.strerror or exc}){'; ' + fix if fix else ''}.",
                          path) from None
    why = None
    try:
        body = json.loads(data.decode("utf-8")) if data.strip() else None
    except ValueError:  # not UTF-8, or not JSON (a truncated file is either)
        why = "not JSON: truncated or overwritten"
    else:
        if body is None:
            why = "empty"
        elif not isinstance(body, dict) or field not in body:
            why = "not a file lpsbook wrote: it has no checksum"
        elif body.pop(field) != _checksum(body):
            why = "its checksum does not match: it was altered"
        elif check is not None and not check(body):
            why = "its content has the wrong shape"
    if why:
        raise DamagedFile(f"{path} is corrupt ({why}){'; ' + fix if fix else ''}.", path)
    return body


def recall(path, check=None, field: str = "sha256"):
    """The sealed dict at ``path`` (see :func:`read_sealed`), or None when there is none to use.

    For files that can be computed again (cached results, checkpoints): a
    damaged one is reported once, as a :class:`DamagedFileWarning` that names
    it, and removed, so that the caller computes it again and overwrites it.
    """
    path = Path(path)
    try:
        return read_sealed(path, "it is removed and computed again", field, check)
    except FileNotFoundError:
        return None
    except DamagedFile as exc:
        warnings.warn(str(exc), DamagedFileWarning, stacklevel=2)
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a folder, say: the write that follows says what is wrong
            pass
        return None


def read_note(path) -> str | None:
    """A short text note lpsbook left at ``path``; None when it is missing, empty or not printable text."""
    try:
        text = Path(path).read_bytes().decode("utf-8").strip()
    except (OSError, ValueError):
        return None
    return text if text and all(c.isprintable() or c in "\n\t" for c in text) else None


def key(settings: dict) -> dict:
    """``settings`` as plain JSON with the package's code version added: what every stored result is keyed by."""
    from .. import code_version

    return json.loads(json.dumps({**settings, "code": code_version()}, sort_keys=True, default=str))


def result_path(name: str, settings: dict, preset, root=None) -> Path:
    """Where the cached result of (preset, name, settings, code version) lives."""
    text = json.dumps(key({"preset": preset.hash, "name": name, "settings": settings}), sort_keys=True)
    folder = Path(root or default_cache_dir()) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{preset.name}-{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def cached_json(name: str, settings: dict, compute, preset, root=None):
    """``compute()`` once per (preset, name, settings, code version); its JSON result is kept on disk.

    The file is sealed (:func:`seal`) together with its key; a damaged one
    (truncated, emptied, overwritten, edited, or another key's) is reported,
    removed and computed again (:func:`recall`).  Returns the result as it
    reads back from JSON, whether just computed or read.
    """
    path = result_path(name, settings, preset, root)
    k = key({"preset": preset.hash, "name": name, "settings": settings})
    stored = recall(path, check=lambda body: body.keys() == {"key", "result"} and body["key"] == k)
    if stored is not None:
        return stored["result"]
    body = plain({"key": k, "result": compute()})
    write_atomic(path, seal(body))
    return body["result"]


class Checkpoint:
    """Finished pieces of a run, kept on disk so an interrupted run resumes.

    Parameters
    ----------
    path : path or None
        The checkpoint file (None: keep nothing).
    settings : dict
        What the run depends on; a checkpoint written under other settings, or
        by another version of the code, is ignored (and overwritten). A
        damaged one is reported, removed and the run starts afresh
        (:func:`recall`).
    """

    def __init__(self, path, settings: dict):
        self.path, self.settings = (Path(path) if path else None), key(settings)
        self.done = {}
        saved = recall(self.path, check=_is_checkpoint) if self.path else None
        if saved is not None and saved["settings"] == self.settings:
            self.done = saved["done"]

    def get(self, name):
        return self.done.get(name)

    def put(self, name, value):
        self.done[name] = value
        if self.path:
            write_atomic(self.path, seal({"settings": self.settings, "done": self.done}))

    def finish(self):
        """The run is complete: remove the checkpoint."""
        if self.path:
            self.path.unlink(missing_ok=True)


def _is_checkpoint(body: dict) -> bool:
    return (body.keys() == {"settings", "done"} and isinstance(body["done"], dict)
            and all(isinstance(v, dict) for v in body["done"].values()))
