"""Model sets built on Ray: the same checksums as one process, a worker killed mid-task, the driver
killed and a rerun, an instance started apart joined by address, and fast, clear errors.

Every Ray instance here is started by the test itself on the loopback address only
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), with 2 CPUs, and stopped at the end; builds run in
subprocesses, so this process never holds Ray's state.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from lpsbook import cli
from lpsbook.training import modelset

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
BIN = Path(sys.executable).parent


def _env(**extra):
    return {**os.environ, **LOOPBACK, **extra}


def _build(out, *extra, env=None, wait=True):
    argv = [sys.executable, "-m", "lpsbook.cli", "modelset", "build", "--preset", "tiny", "--device", "cpu",
            "--out", str(out), *extra]
    if not wait:
        return subprocess.Popen(argv, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    return subprocess.run(argv, env=env or _env(), capture_output=True, text=True, timeout=300)


def _checksums(folder):
    return {p.name: json.loads(p.read_text())["weights_sha256"] for p in sorted((folder / "models").glob("*.json"))}


def test_a_set_built_through_ray_has_the_checksums_of_a_single_process_build(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task that asked for one CPU
    try:
        modelset.build("tiny", tmp_path / "plain", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    run = _build(tmp_path / "ray", "--ray", "--ray-cpus", "1")
    assert run.returncode == 0, run.stderr
    assert _checksums(tmp_path / "ray") == _checksums(tmp_path / "plain") and len(_checksums(tmp_path / "plain")) == 9
    metas = [json.loads(p.read_text()) for p in (tmp_path / "ray" / "models").glob("*.json")]
    assert {m["precision"] for m in metas} == {"float32"} and all(m["cpu"] for m in metas)
    assert {(m["threads"], m["workers"]) for m in metas} in ({(1, 1)}, {(1, 2)}), "two CPUs, one per pack"
    modelset.verify(tmp_path / "ray")


def _pack_workers():
    """Ray worker processes running a pack now (Ray titles a busy worker after its task)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any("ray::_train_pack" in part for part in (p.info["cmdline"] or [])):
            found.append(p.info["pid"])
    return found


def test_a_worker_killed_mid_task_is_retried_and_the_set_completes(tmp_path):
    proc = _build(tmp_path / "set", "--ray", "--pack-size", "1", wait=False)
    killed, deadline = None, time.time() + 120
    while killed is None and proc.poll() is None and time.time() < deadline:
        workers = _pack_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, "no worker was seen running a pack"
    assert proc.returncode == 0, err.decode()
    assert modelset.verify(tmp_path / "set")["models"] == 9


def test_the_driver_killed_then_a_rerun_completes(tmp_path):
    folder = tmp_path / "set"
    proc = _build(folder, "--ray", "--pack-size", "1", wait=False)
    deadline = time.time() + 120
    while not list((folder / "models").glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray instance it started
    proc.communicate()
    saved = len(list((folder / "models").glob("*.json")))
    assert 0 < saved < 9, f"the kill came too late to test anything ({saved} of 9 saved)"
    rerun = _build(folder, "--ray")
    assert rerun.returncode == 0, rerun.stderr
    assert modelset.verify(folder)["models"] == 9


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_joining_an_instance_started_apart_by_its_address(tmp_path):
    port, env = _free_port(), _env(RAY_AUTH_MODE="disabled")  # loopback only: no token needed
    subprocess.run([str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2",
                    "--include-dashboard", "false"], env=env, check=True, capture_output=True, timeout=120)
    try:
        run = _build(tmp_path / "set", "--ray", f"127.0.0.1:{port}", env=env)
        assert run.returncode == 0, run.stderr
        assert modelset.verify(tmp_path / "set")["models"] == 9
        assert {json.loads(p.read_text())["host"] for p in (tmp_path / "set" / "models").glob("*.json")}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_a_cluster_without_the_resources_a_pack_asks_for(tmp_path):
    run = _build(tmp_path / "set", "--ray", "--ray-gpus", "1")
    assert run.returncode == 2 and run.stderr.count("lpsbook: error:") == 1, run.stderr
    assert "0 GPUs" in run.stderr and "asks for 1 CPUs and 1 GPUs" in run.stderr


@pytest.mark.parametrize("address,needle", [("127.0.0.1:1", "no Ray cluster answers there"),
                                            ("nonsense", "give host:port")])
def test_a_bad_address_is_one_line_and_exit_2_within_seconds(tmp_path, capsys, address, needle):
    start = time.time()
    code = cli.main(["modelset", "build", "--preset", "tiny", "--out", str(tmp_path / "set"), "--ray", address])
    err = capsys.readouterr().err
    assert code == 2 and err.count("lpsbook: error:") == 1 and needle in err, err
    assert time.time() - start < 10
    assert not (tmp_path / "set").exists()  # nothing written


def test_auto_without_a_cluster_and_ray_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # no ray_current_cluster marker there
    assert cli.main(["modelset", "build", "--preset", "tiny", "--out", str(tmp_path / "a"), "--ray", "auto"]) == 2
    assert "no Ray cluster runs on this machine" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert cli.main(["modelset", "build", "--preset", "tiny", "--out", str(tmp_path / "b"), "--ray"]) == 2
    assert "pip install 'lpsbook[ray]'" in capsys.readouterr().err
