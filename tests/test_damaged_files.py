"""Every file lpsbook reads back, damaged every way: recomputed, or one LpsbookError naming it.

Kinds of file: the result cache, a protocol's checkpoint, a model set's three
kinds of file (a model's JSON, its weights, ``modelset.json``), the ladder's
results file, the note on why CIFAR-100 is unavailable, and CIFAR-100's
files as torchvision downloads them. Kinds of damage: truncated, emptied,
overwritten with garbage, overwritten with valid JSON of the wrong shape,
and (where a file carries a checksum) one digit edited.

A file that can be computed again is: the result equals the undamaged one,
and one :class:`lpsbook.core.store.DamagedFileWarning` names the file. A file
that cannot be recomputed silently is an LpsbookError naming the file and
the command that fixes it; running that command gives back the undamaged
result. Never a traceback of another type.
"""
import hashlib
import importlib
import json
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch

from lpsbook.show import book
from lpsbook.core import data, store
from lpsbook.experiments import ladder
from lpsbook.training import modelset
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import get_preset
from lpsbook.core.store import DamagedFileWarning


def _edit_a_digit(blob: bytes) -> bytes:
    """The last ASCII digit changed to another: valid JSON stays valid JSON of the same shape."""
    i = max(blob.rfind(bytes([d])) for d in b"0123456789")
    assert i >= 0
    return blob[:i] + (b"1" if blob[i:i + 1] != b"1" else b"2") + blob[i + 1:]


DAMAGES = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "garbage": lambda b: np.random.default_rng(0).integers(0, 256, max(len(b), 64), dtype=np.uint8).tobytes(),
    "wrong-shape JSON": lambda b: b'[{"done": 1}, "result", 2]',
    "edited": _edit_a_digit,
}
WITHOUT_CHECKSUM = [d for d in DAMAGES if d != "edited"]  # files meant to be read and edited by people


def damage(path, how: str):
    path.write_bytes(DAMAGES[how](path.read_bytes()))


def one_warning_naming(record, path):
    """The single DamagedFileWarning of ``record``, which names ``path``."""
    found = [w for w in record if issubclass(w.category, DamagedFileWarning)]
    assert len(found) == 1, [str(w.message) for w in record]
    assert str(path) in str(found[0].message)
    return str(found[0].message)


# --- the result cache ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_cached_result_is_computed_again(tmp_path, how):
    tiny, calls = get_preset("tiny"), []

    def compute():
        calls.append(1)
        return {"top1": np.float32(0.625), "per_task": [0.5, 0.75], "rows": (1, 2)}

    first = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    path = book.result_path("thing", {"a": 1}, tiny, root=tmp_path)
    assert book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path) == first and len(calls) == 1
    damage(path, how)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    assert again == first == {"top1": 0.625, "per_task": [0.5, 0.75], "rows": [1, 2]} and len(calls) == 2
    one_warning_naming(record, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file written again reads back whole
        assert book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path) == first
    assert len(calls) == 2


def test_a_cached_result_moved_under_another_key_is_computed_again(tmp_path):
    """A whole, sealed file of another key (copied, or a collision of the file name) is not served."""
    tiny = get_preset("tiny")
    book.cached_json("thing", {"a": 1}, lambda: {"n": 1}, preset=tiny, root=tmp_path)
    one, two = (book.result_path("thing", {"a": a}, tiny, tmp_path) for a in (1, 2))
    shutil.copy(one, two)
    with pytest.warns(DamagedFileWarning, match="wrong shape"):
        assert book.cached_json("thing", {"a": 2}, lambda: {"n": 2}, preset=tiny, root=tmp_path) == {"n": 2}


# --- a protocol's checkpoint --------------------------------------------------------------------

def _run_protocol():
    return importlib.import_module("lpsbook.protocols.results").run_protocol


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_is_ignored_and_the_run_starts_afresh(tiny_modelset, tmp_path, how):
    run_protocol, calls = _run_protocol(), []
    jobs = [(row, "", seed) for row in ("a", "b") for seed in range(2)]

    def evaluate(row, part, seed):
        calls.append((row, seed))
        if getattr(evaluate, "interrupt", False) and len(calls) == 3:
            raise KeyboardInterrupt
        return {"top1": 0.25 * seed + (row == "b"), "_pairs": [seed]}

    whole = run_protocol("toy", tiny_modelset, jobs, evaluate, {"x": 1})
    ckpt, calls[:] = tmp_path / "toy.json.partial", []
    evaluate.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run_protocol("toy", tiny_modelset, jobs, evaluate, {"x": 1}, checkpoint=ckpt)
    assert len(json.loads(ckpt.read_text())["done"]) == 2
    damage(ckpt, how)
    evaluate.interrupt, calls[:] = False, []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed = run_protocol("toy", tiny_modelset, jobs, evaluate, {"x": 1}, checkpoint=ckpt)
    one_warning_naming(record, ckpt)
    assert len(calls) == len(jobs), "the damaged checkpoint's fits were not run again"
    assert resumed.results == whole.results and resumed.extras == whole.extras
    assert not ckpt.exists()


def test_a_checkpoint_of_other_settings_is_ignored_without_a_warning(tmp_path):
    ckpt = tmp_path / "r.partial"
    store.Checkpoint(ckpt, {"kind": "x"}).put("a||0", {"top1": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.Checkpoint(ckpt, {"kind": "x"}).done == {"a||0": {"top1": 1.0}}
        assert store.Checkpoint(ckpt, {"kind": "y"}).done == {}


# --- a model set's files ------------------------------------------------------------------------

MODEL_FILES = {"model JSON": "models/t001_s02.json", "weights": "models/t001_s02.safetensors",
               "modelset.json": modelset.SET_FILE}


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def assert_same_set(folder, original):
    """``folder`` holds the model set ``original`` holds: the same header and, model by model, the same
    weights (a model trained again alone, not in its pack of four, differs by float rounding only, which
    three epochs grow to about 1e-4; a model of another seed differs by whole units)."""
    from safetensors.torch import load_file

    assert (folder / modelset.SET_FILE).read_bytes() == (original / modelset.SET_FILE).read_bytes()
    names = sorted(p.name for p in (original / "models").glob("*.safetensors"))
    assert sorted(p.name for p in (folder / "models").glob("*.safetensors")) == names
    for name in names:
        torch.testing.assert_close(load_file(folder / "models" / name), load_file(original / "models" / name),
                                   rtol=1e-2, atol=1e-3, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", MODEL_FILES)
def test_verify_names_a_damaged_model_set_file_and_the_build_retrains(tiny_modelset_dir, tmp_path, kind, how):
    d = _copy(tiny_modelset_dir, tmp_path / "ms")
    target = d / MODEL_FILES[kind]
    damage(target, how)
    with pytest.raises(LpsbookError) as err:
        modelset.verify(d)
    fix = f"lpsbook modelset build --preset {'NAME' if kind == 'modelset.json' else 'tiny'} --out {d}"
    assert str(target) in str(err.value) and fix in str(err.value)
    if (kind, how) != ("weights", "edited"):  # whole safetensors, other numbers: only the checksum tells
        with pytest.raises(LpsbookError, match=str(target)):
            modelset.load(d, check=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        modelset.build("tiny", d, device="cpu", progress=False)
    one_warning_naming(record, target)
    assert modelset.verify(d)["models"] == 9
    assert_same_set(d, tiny_modelset_dir)


@pytest.mark.parametrize("kind", MODEL_FILES)
def test_the_books_model_set_repairs_itself(tiny_modelset_dir, tmp_path, kind):
    """:func:`lpsbook.training.modelset.ensure` (the book's model set): a damaged file is trained or written again."""
    tiny = get_preset("tiny")
    d = _copy(tiny_modelset_dir, modelset.cache_dir(tiny, tmp_path))
    damage(d / MODEL_FILES[kind], "truncated")
    with pytest.warns(DamagedFileWarning, match=MODEL_FILES[kind]):
        ms = modelset.ensure(tiny, root=tmp_path, device="cpu", progress=False)
    assert len(ms) == 9
    assert_same_set(d, tiny_modelset_dir)


@pytest.mark.parametrize("how", ["truncated", "garbage", "edited"])
def test_extract_leaves_a_damaged_model_to_the_build(tiny_modelset_dir, tmp_path, how):
    src, out = _copy(tiny_modelset_dir, tmp_path / "src"), tmp_path / "out"
    damage(src / MODEL_FILES["weights"], how)
    with pytest.warns(DamagedFileWarning, match="t001_s02.safetensors"):
        modelset.extract(src, "tiny", out)
    assert modelset.pending_models(out, get_preset("tiny")) == [(1, 2)]
    modelset.build("tiny", out, device="cpu", progress=False)
    assert_same_set(out, tiny_modelset_dir)


def test_a_damaged_modelset_json_beside_another_presets_models_is_refused(tiny_modelset_dir, tmp_path):
    d = _copy(tiny_modelset_dir, tmp_path / "ms")
    damage(d / modelset.SET_FILE, "garbage")
    other = get_preset("tiny").with_(seeds=2)
    with pytest.raises(LpsbookError, match=f"{d / modelset.SET_FILE} is corrupt.*choose another --out"):
        modelset.build(other, d, device="cpu", progress=False)
    assert (d / modelset.SET_FILE).read_bytes() != (tiny_modelset_dir / modelset.SET_FILE).read_bytes()


@pytest.mark.parametrize("kind", ["model JSON", "weights"])
def test_the_cli_names_the_damaged_file_without_a_traceback(tiny_modelset_dir, tmp_path, capsys, kind):
    from lpsbook import cli

    d = _copy(tiny_modelset_dir, tmp_path / "ms")
    damage(d / MODEL_FILES[kind], "garbage")
    for argv in (["modelset", "verify", str(d)], ["modelset", "info", str(d)]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        if kind == "weights" and argv[1] == "info":  # info reads the metadata only
            assert code == 0
            continue
        assert code == 2 and str(d / MODEL_FILES[kind]) in err and "Traceback" not in err
        assert f"lpsbook modelset build --preset tiny --out {d}" in err


# --- the ladder's results file ------------------------------------------------------------------

@pytest.mark.parametrize("how", WITHOUT_CHECKSUM + ["presets not a dict", "a preset without its hash"])
def test_a_damaged_ladder_results_file_names_itself_and_the_command(tmp_path, monkeypatch, how):
    path = tmp_path / ladder.RESULTS_FILE
    shutil.copy(ladder.REPO_RESULTS, path)
    whole = ladder.read(path)
    if how == "presets not a dict":
        path.write_text(json.dumps({**whole, "presets": ["ladder-w8-e10"]}))
    elif how == "a preset without its hash":
        path.write_text(json.dumps({**whole, "presets": {"ladder-w8-e10": {"width": 8}}}))
    else:
        damage(path, how)
    for read in (lambda: ladder.read(tmp_path), lambda: ladder.read(path)):
        with pytest.raises(LpsbookError) as err:
            read()
        assert str(path) in str(err.value) and ladder.COMMAND in str(err.value)
    monkeypatch.setattr(ladder, "REPO_RESULTS", path)
    with pytest.raises(LpsbookError, match=ladder.COMMAND):
        ladder.committed()


# --- the note on why CIFAR-100 is unavailable ---------------------------------------------------

@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])  # any printable text is a note
def test_a_damaged_unavailability_note_never_breaks_the_banner(tmp_path, monkeypatch, how):
    monkeypatch.setenv("LPSBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LPSBOOK_DATA", str(tmp_path / "no-data"))
    for var in ("LPSBOOK_PRESET", "LPSBOOK_NO_CIFAR"):
        monkeypatch.delenv(var, raising=False)
    note = tmp_path / "cache" / book.UNAVAILABLE
    note.parent.mkdir()
    note.write_text("CIFAR-100 could not be downloaded: the server did not answer\n")
    assert "the server did not answer" in book.banner(get_preset("digits"))
    damage(note, how)
    text = book.banner(get_preset("digits"))
    assert "so this runs on digits" in text and all(line.isprintable() for line in text.splitlines())
    if how != "truncated":
        assert "CIFAR-100 not found, so this runs on digits" in text.replace("\n", " ")


# --- CIFAR-100 as torchvision downloads it ------------------------------------------------------

@pytest.fixture
def small_cifar(tmp_path, monkeypatch):
    """CIFAR-100's three files in torchvision's format, small, with torchvision's md5s patched to theirs."""
    from lpsbook.core._torchvision import import_torchvision

    folder = tmp_path / "data" / data.CIFAR_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        labels = [0, 1, 2, 3] * 3
        entry = {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), "fine_labels": labels,
                 "coarse_labels": [0] * len(labels), "filenames": [f"{i}.png" for i in range(len(labels))]}
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{c}" for c in range(100)]}, protocol=2))
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in data.CIFAR_FILES}
    cls = import_torchvision().datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(cls, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(cls, "meta", dict(cls.meta, md5=md5["meta"]))
    data.clear_cache()
    yield folder
    data.clear_cache()


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", data.CIFAR_FILES)
def test_damaged_cifar100_files_name_the_folder_and_the_download(small_cifar, name, how):
    whole = data.load_cifar100(small_cifar.parent)
    damage(small_cifar / name, how)
    data.clear_cache()
    with pytest.raises(LpsbookError) as err:
        data.load_cifar100(small_cifar.parent)
    assert str(small_cifar) in str(err.value) and "lpsbook data download" in str(err.value)
    assert len(whole.train_images) == 12
