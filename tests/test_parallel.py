"""Protocol jobs side by side in forked processes (lpsbook.core.parallel)."""
import os
import random

import numpy as np
import pytest
import torch

from lpsbook.core import parallel
from lpsbook.core.errors import LpsbookError
from lpsbook.protocols import paper

linux_only = pytest.mark.skipif(not parallel.sys.platform.startswith("linux"), reason="forked workers: Linux only")


def test_workers_follow_the_setting_and_the_job_count(monkeypatch):
    monkeypatch.setenv("LPSBOOK_WORKERS", "3")
    expected = 1 if torch.cuda.is_available() or not parallel.sys.platform.startswith("linux") else 3
    assert parallel.workers(10) == expected
    assert parallel.workers(1) == 1  # one job: no process to start
    monkeypatch.setenv("LPSBOOK_WORKERS", "1")
    assert parallel.workers(10) == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("LPSBOOK_WORKERS", bad)
        with pytest.raises(LpsbookError, match="LPSBOOK_WORKERS"):
            parallel.workers(10)


def test_a_seeded_job_draws_the_same_numbers_whatever_ran_before():
    def draw():
        return torch.rand(3).tolist(), np.random.rand(), random.random()

    with parallel.seeded("fit a"):
        first = draw()
    torch.rand(5), np.random.rand(7)  # another job's draws in between
    before = torch.random.get_rng_state()
    with parallel.seeded("fit a"):
        again = draw()
    assert first == again
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's generator is left as it was
    with parallel.seeded("fit b"):
        assert draw() != first


@linux_only
def test_forked_jobs_return_every_result_once_and_raise_a_jobs_error():
    out = dict(parallel.imap(lambda x: (x * x, os.getpid()), list(range(6)), 2))
    assert {i: v[0] for i, v in out.items()} == {i: i * i for i in range(6)}
    assert os.getpid() not in {v[1] for v in out.values()}  # they ran in the workers

    def fails(x):
        if x == 3:
            raise LpsbookError("job 3 failed")
        return x

    with pytest.raises(LpsbookError, match="job 3 failed"):
        list(parallel.imap(fails, list(range(5)), 2))


@linux_only
def test_every_thread_pool_of_a_worker_has_one_thread():
    import sklearn.cluster  # noqa: F401  (its OpenMP runtime, loaded before the fork)
    from threadpoolctl import threadpool_info

    pools = [v for _, v in parallel.imap(lambda _: [p["num_threads"] for p in threadpool_info()], [0, 1], 2)]
    assert all(pool and set(pool) == {1} for pool in pools), pools


@linux_only
def test_workers_show_no_progress_bars_of_their_own():
    from lpsbook.core.progress import bar

    assert not bar(range(2)).disable
    assert [v for _, v in parallel.imap(lambda n: bar(range(n)).disable, [1, 2, 3], 2)] == [True] * 3


@linux_only
def test_a_protocol_gives_the_same_predictions_in_two_processes_as_in_one(tiny_modelset, monkeypatch):
    runs = {}
    for n in ("1", "2"):
        monkeypatch.setenv("LPSBOOK_WORKERS", n)
        runs[n] = paper.classification(tiny_modelset, methods=("random", "fc"), folds=5)
    for method in ("random", "fc"):  # random draws from its own seed; one FC layer fits on one thread either way
        assert runs["1"]["predictions"][method] == runs["2"]["predictions"][method]
        assert runs["1"]["results"][method]["top1"]["values"] == pytest.approx(runs["2"]["results"][method]["top1"]["values"])


@linux_only
def test_retrieval_fits_in_workers_and_transferability_reuses_them(tiny_modelset, monkeypatch):
    from lpsbook.protocols.results import default_config

    methods, ms = ("fc", "weight_stats", "graph"), tiny_modelset
    runs, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' own thread count, so that only the process differs
    try:
        monkeypatch.setenv("LPSBOOK_WORKERS", "1")
        paper.FITS.clear()
        runs["1"] = paper.retrieval(ms, methods=methods, folds=3)
        monkeypatch.setenv("LPSBOOK_WORKERS", "2")
        paper.FITS.clear()
        jobs = [(m, f) for f in range(3) for m in methods]
        assert paper.prefit_retrieval(ms, jobs, default_config(ms), "cpu", None, 3) == len(jobs)
        with monkeypatch.context() as m:  # every fit came back from a worker: neither protocol makes one
            m.setattr(paper, "make", lambda *a, **k: pytest.fail("a fit was made again"))
            runs["2"] = paper.retrieval(ms, methods=methods, folds=3)
            paper.transferability(ms, methods=methods, seeds=2, folds=3)
    finally:
        torch.set_num_threads(threads)
        paper.FITS.clear()
    for method in methods:
        assert runs["1"]["predictions"][method] == runs["2"]["predictions"][method]


@linux_only
def test_transfer_scores_from_workers_are_those_of_one_process(tiny_modelset, monkeypatch):
    from lpsbook.protocols.transfer import transfer_scores

    runs, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for n in ("1", "2"):
            monkeypatch.setenv("LPSBOOK_WORKERS", n)
            runs[n] = transfer_scores(tiny_modelset, progress=False, pack=1)  # three packs of one source
    finally:
        torch.set_num_threads(threads)
    for k in ("ari", "leep", "logme"):
        assert runs["2"][k].shape == (3, 3) and np.isfinite(runs["2"][k]).all()
        np.testing.assert_allclose(runs["1"][k], runs["2"][k], atol=1e-6)


@linux_only
def test_a_build_in_forked_processes_saves_the_same_models_as_one_process(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from lpsbook.training import modelset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' own thread count, so that only the process differs
    try:
        monkeypatch.setenv("LPSBOOK_WORKERS", "1")
        modelset.build("tiny", tmp_path / "one", pack_size=3, progress=False)
        monkeypatch.setenv("LPSBOOK_WORKERS", "2")
        modelset.build("tiny", tmp_path / "two", pack_size=3, progress=False)
    finally:
        torch.set_num_threads(threads)
    files = sorted(p.name for p in (tmp_path / "one" / "models").glob("*.safetensors"))
    assert len(files) == 9 and files == sorted(p.name for p in (tmp_path / "two" / "models").glob("*.safetensors"))
    for name in files:
        a, b = (load_file(tmp_path / d / "models" / name) for d in ("one", "two"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    meta = modelset.read_meta(tmp_path / "two" / "models" / files[0].replace(".safetensors", ".json"))
    assert meta["threads"] == 1 and modelset.verify(tmp_path / "two")["models"] == 9


@linux_only
def test_workers_end_with_a_parent_killed_outright():
    import signal
    import subprocess
    import sys
    import time

    script = ("import os, time\nfrom lpsbook.core import parallel\n"
              "def job(i):\n    print('worker', os.getpid(), flush=True)\n    time.sleep(120)\n"
              "list(parallel.imap(job, [0, 1], 2))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = []
    for line in proc.stdout:  # other lines (a library's notice) are not the workers'
        pids += [int(line.split()[1])] if line.startswith("worker ") else []
        if len(pids) == 2:
            break
    assert len(pids) == 2, "both workers started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and "Z" not in _state(p) for p in pids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") and "Z" not in _state(p) for p in pids), "orphaned workers"


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
