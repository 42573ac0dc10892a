"""The one in-memory cache: :class:`Memo`, at most a few results, least recently used dropped first.

Every cache that lives only as long as the process goes through it: the
loaded CIFAR-100 arrays, models' features, alignments to a reference model,
fits shared between two protocols.  :func:`digest` keys results that are pure
functions of tensors by their content.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict


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

    def __contains__(self, key) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def put(self, key, value) -> None:
        """Store ``value`` under ``key`` (computed elsewhere, such as in another process)."""
        self.get(key, lambda: value)

    def clear(self) -> None:
        """Forget every result."""
        self.items.clear()
