"""Independent jobs on several CPU cores: forked worker processes with one torch thread each.

Most fits of a protocol (one method on one fold) are small networks that
a second torch thread barely speeds up, so on a CPU the jobs themselves run
side by side instead: one forked process per core, one thread each. Every job
draws its random numbers from a seed of its own name (:func:`seeded`), so its
result does not depend on which process ran it, or after which other job.

A model set's build uses the same workers for its packs of models
(:func:`lpsbook.training.modelset.build`): on two cores, two packs in two
processes of one thread each train faster than one pack on two threads.
So do retrieval's fits (:func:`lpsbook.protocols.paper.prefit_retrieval`,
shared with transferability) and the transfer matrix's sources
(:func:`lpsbook.protocols.transfer.transfer_scores`). A worker holds every
thread pool to one thread, scikit-learn's OpenMP included.

``LPSBOOK_WORKERS=N`` sets the number of processes (1: everything in this
process, as on a GPU, where jobs always run here).
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import random
import signal
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .errors import LpsbookError

_TASK = None  # (function, items) of the running map: a forked worker inherits it
_IN_WORKER = False


def workers(jobs: int) -> int:
    """How many processes run ``jobs`` independent jobs: ``$LPSBOOK_WORKERS``, else torch's thread count;
    1 inside a worker, without fork (not Linux), with CUDA, or for fewer than two jobs."""
    text = os.environ.get("LPSBOOK_WORKERS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise LpsbookError(f"LPSBOOK_WORKERS must be a whole number of processes, at least 1; got {text!r}")
        wanted = int(text)
    else:
        wanted = torch.get_num_threads()
    if _IN_WORKER or jobs < 2 or not sys.platform.startswith("linux") or torch.cuda.is_available():
        return 1
    return max(1, min(wanted, jobs))


@contextlib.contextmanager
def seeded(name: str):
    """Seed torch, numpy and ``random`` from ``name`` inside the block; the caller's generators are
    restored after it."""
    seed = zlib.crc32(name.encode())
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def in_worker() -> bool:
    """Whether this process is one of :func:`imap`'s workers (where progress bars stay off: in a notebook,
    a worker's widget messages would reach no front end)."""
    return _IN_WORKER


def _start_worker(parent: int):
    global _IN_WORKER
    _IN_WORKER = True
    torch.set_num_threads(1)
    # one thread for the other pools loaded before the fork too (scikit-learn's k-means: two workers of two
    # OpenMP threads each on two cores wait on one another)
    threadpool_limits(1)
    # A worker ends with the process that started it, even one killed outright (a build stopped with
    # SIGKILL), instead of waiting for jobs forever: Linux's parent-death signal.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was set
        os.kill(os.getpid(), signal.SIGKILL)


def _run(i: int):
    # The result goes back as plain pickled bytes: multiprocessing would send a torch tensor as a shared
    # file descriptor, and those ran out over the hundreds of state dicts of a build ("received 0 items of
    # ancdata").
    function, items = _TASK
    return pickle.dumps(function(items[i]))


def imap(function, items: list, processes: int):
    """``(i, function(items[i]))`` for every item, as each finishes: in this process when ``processes`` is 1,
    else in that many forked processes (whose results come back pickled, tensors as copies). An error in a
    job is raised here, once the running jobs end."""
    global _TASK
    if processes <= 1:
        for i, item in enumerate(items):
            yield i, function(item)
        return
    _TASK = (function, items)
    try:
        with ProcessPoolExecutor(processes, mp_context=mp.get_context("fork"), initializer=_start_worker,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_run, i): i for i in range(len(items))}
            try:
                for done in as_completed(futures):
                    yield futures[done], pickle.loads(done.result())
            finally:
                for f in futures:
                    f.cancel()
    finally:
        _TASK = None
