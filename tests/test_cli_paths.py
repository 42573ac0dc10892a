"""Unusable path arguments: one `lpsbook: error:` line naming the path, exit status 2, no traceback.

Every case fails before any model is trained or any dataset is loaded, so
the whole file runs in a few seconds and needs no model set.
"""
import errno
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lpsbook import cli
from lpsbook.training import modelset
from lpsbook.protocols import paper, results
from lpsbook.core import store
from lpsbook.core.presets import get_preset

BUILD = ["modelset", "build", "--preset", "tiny", "--device", "cpu"]


def _fails(capsys, argv, *needles):
    """Run the CLI on ``argv``; check the one error line and that it names every needle."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("lpsbook: error:") == 1 and err.startswith("lpsbook: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in err, f"{needle!r} not in {err!r}"
    return err


def _header_only(folder: Path) -> Path:
    """A folder that passes as a model set until its models are loaded (enough for the --out checks)."""
    folder.mkdir()
    (folder / modelset.SET_FILE).write_bytes(modelset.sealed_meta(modelset._set_header(get_preset("tiny"))))
    return folder


def _not_model_sets(tmp_path):
    """Folders that are not model sets, each with what the message must say."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk"
    (junk / "models").mkdir(parents=True)
    (junk / "notes.txt").write_text("hello")
    (junk / "models" / "t000_s00.json").write_text("{}")
    (junk / modelset.SET_FILE).write_text('{"kind": "something else"}')
    return {"missing": (tmp_path / "nowhere", "does not exist"),
            "file": (tmp_path / "a_file", "is a file, not a model set folder"),
            "empty": (tmp_path / "empty", "modelset.json is missing"),
            "random files": (junk, "is damaged or was not written by lpsbook")}


def _read_only_folder(tmp_path) -> Path:
    """A folder this process cannot write to; skips where permissions are not enforced (root)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder
    pytest.skip("permissions are not enforced for this user (root): the parent-is-a-file cases cover it")


@pytest.fixture
def restore_permissions(tmp_path):
    yield
    for p in tmp_path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)


# --- modelset verify / info ---------------------------------------------------------------------

@pytest.mark.parametrize("action", ["verify", "info"])
@pytest.mark.parametrize("case", ["missing", "file", "empty", "random files"])
def test_verify_and_info_refuse_what_is_not_a_model_set(tmp_path, capsys, action, case):
    path, says = _not_model_sets(tmp_path)[case]
    err = _fails(capsys, ["modelset", action, path], path, says)
    assert "lpsbook modelset build" in err or "give the folder" in err


def test_verify_of_a_header_without_models_folder_lists_the_missing_models(tmp_path, capsys):
    d = _header_only(tmp_path / "ms")
    assert cli.main(["modelset", "verify", str(d)]) == 2
    err = capsys.readouterr().err
    assert "missing model t000_s00" in err and "Traceback" not in err


# --- modelset build --out / --data-dir ----------------------------------------------------------

def test_build_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    _fails(capsys, BUILD + ["--out", f], f"--out {f} is a file, not a folder", "choose another --out")
    assert f.read_text() == "x"


def test_build_out_inside_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    _fails(capsys, BUILD + ["--out", f / "ms"], f / "ms", f"because {f} is a file")


def test_build_out_in_a_read_only_folder(tmp_path, capsys, restore_permissions):
    ro = _read_only_folder(tmp_path)
    _fails(capsys, BUILD + ["--out", ro / "ms"], f"--out {ro / 'ms'}", f"{ro} is not writable")
    assert not (ro / "ms").exists()


def test_build_out_whose_modelset_json_is_a_folder(tmp_path, capsys):
    out = tmp_path / "ms"
    (out / modelset.SET_FILE).mkdir(parents=True)
    _fails(capsys, BUILD + ["--out", out], f"could not write {out / modelset.SET_FILE}", "choose another --out")


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free some disk space"),
                                        (errno.EACCES, "make the folder writable"),
                                        (errno.EISDIR, "choose another --out")],
                         ids=["disk full", "permission denied", "is a folder"])
def test_build_write_errors_become_one_message(tmp_path, capsys, monkeypatch, code, fix):
    def fail(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "replace", fail)
    out = tmp_path / "ms"
    _fails(capsys, BUILD + ["--out", out], f"could not write {out / modelset.SET_FILE}", os.strerror(code), fix)
    assert not list(out.rglob("*.tmp")), "the temporary file was left behind"


def test_build_data_dir_is_a_file(tmp_path, capsys):
    f = tmp_path / "data"
    f.write_text("x")
    _fails(capsys, BUILD + ["--out", tmp_path / "ms", "--data-dir", f],
           f"--data-dir {f} is a file, not a folder", "cifar-100-python/")
    assert not (tmp_path / "ms").exists()


def test_build_download_into_a_data_dir_inside_a_file(tmp_path, capsys):
    f = tmp_path / "data"
    f.write_text("x")
    _fails(capsys, ["modelset", "build", "--preset", "cifar100", "--out", tmp_path / "ms",
                    "--data-dir", f / "cifar", "--download"], f"--data-dir {f / 'cifar'}", f"because {f} is a file")


# --- experiment --modelset / --out / --data-dir -------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "file", "empty", "random files"])
def test_experiment_modelset_that_is_not_a_model_set(tmp_path, capsys, case):
    path, says = _not_model_sets(tmp_path)[case]
    out = tmp_path / "r.json"
    _fails(capsys, ["experiment", "classification", "--modelset", path, "--out", out], f"--modelset {path}", says)
    assert not out.exists()


def test_experiment_out_is_a_folder(tmp_path, capsys):
    ms, out = _header_only(tmp_path / "ms"), tmp_path / "results"
    out.mkdir()
    _fails(capsys, ["experiment", "retrieval", "--modelset", ms, "--out", out],
           f"--out {out} is a folder, not a file", "JSON file")


def test_experiment_out_inside_a_file(tmp_path, capsys):
    ms, f = _header_only(tmp_path / "ms"), tmp_path / "f"
    f.write_text("x")
    _fails(capsys, ["experiment", "retrieval", "--modelset", ms, "--out", f / "r.json"],
           f"--out {f / 'r.json'}", f"because {f} is a file")


def test_experiment_out_in_a_read_only_folder(tmp_path, capsys, restore_permissions):
    ms, ro = _header_only(tmp_path / "ms"), _read_only_folder(tmp_path)
    _fails(capsys, ["experiment", "retrieval", "--modelset", ms, "--out", ro / "r.json"],
           f"--out {ro / 'r.json'}", f"{ro} is not writable")


def test_experiment_checkpoint_path_is_a_folder(tmp_path, capsys):
    ms, out = _header_only(tmp_path / "ms"), tmp_path / "r.json"
    Path(f"{out}.partial").mkdir()
    _fails(capsys, ["experiment", "branches", "--modelset", ms, "--out", out],
           f"--out {out}: its checkpoint {out}.partial is a folder")


def test_experiment_data_dir_is_a_file(tmp_path, capsys):
    ms, f = _header_only(tmp_path / "ms"), tmp_path / "data"
    f.write_text("x")
    _fails(capsys, ["experiment", "transferability", "--modelset", ms, "--out", tmp_path / "r.json",
                    "--data-dir", f], f"--data-dir {f} is a file")


def test_experiment_disk_full_when_writing_the_results(tmp_path, capsys, monkeypatch):
    """The run itself is stubbed: only the final write fails."""
    ms, out = _header_only(tmp_path / "ms"), tmp_path / "sub" / "r.json"
    monkeypatch.setattr(modelset, "load", lambda path: types.SimpleNamespace(preset=get_preset("tiny"), layers=[]))
    monkeypatch.setitem(paper.PROTOCOLS, "classification", lambda ms, **kw: results.ProtocolResult("classification", "tiny", "0", "0", 0, {}, {}, 0.0))

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", full)
    _fails(capsys, ["experiment", "classification", "--modelset", ms, "--out", out, "--device", "cpu"],
           f"could not write {out}", "No space left on device", "free some disk space")
    monkeypatch.undo()
    assert not out.exists() and not list(out.parent.glob(".*.tmp"))


def test_a_damaged_checkpoint_is_ignored(tmp_path):
    ckpt = tmp_path / "r.json.partial"
    ckpt.write_text("[1, 2")
    assert store.Checkpoint(ckpt, {"kind": "x"}).done == {}
    ckpt.write_text(json.dumps(["not", "a", "checkpoint"]))
    assert store.Checkpoint(ckpt, {"kind": "x"}).done == {}


# --- any other OSError, and the installed console script ----------------------------------------

def test_an_unforeseen_os_error_still_prints_one_line(tmp_path, capsys):
    d = _header_only(tmp_path / "ms")
    (d / "models" / "t000_s00.json").mkdir(parents=True)  # a folder where a file is read
    _fails(capsys, ["modelset", "info", d], d / "models" / "t000_s00.json", "Is a directory")


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["modelset", "verify", "{file}"],
                                  ["experiment", "similarity", "--modelset", "{ms}", "--out", "{file}/r.json"]])
def test_console_script_prints_no_traceback(tmp_path, argv):
    script = Path(sys.executable).with_name("lpsbook")
    if not script.exists():
        pytest.skip("the lpsbook console script is not installed next to this Python")
    f = tmp_path / "f"
    f.write_text("x")
    ms = _header_only(tmp_path / "ms")
    proc = subprocess.run([str(script)] + [a.format(file=f, ms=ms) for a in argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("lpsbook: error:") == 1 and "Traceback" not in proc.stderr
    assert str(f) in proc.stderr and proc.stdout == ""
