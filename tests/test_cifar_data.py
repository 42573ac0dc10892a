"""CIFAR-100 from either source: the offline ``.npz`` or torchvision's ``cifar-100-python/``.

Everything runs on small files in the real formats, written here (100
classes x 3 train / 1 test image).  One test reads the real offline copy,
only when ``$LPSBOOK_DATA`` points at it.
"""
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lpsbook import cli
from lpsbook.core import data
from lpsbook.core.data import Dataset, cifar100_source, clear_cache, load_cifar100, load_dataset
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import get_preset


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _arrays(train_per_class=3, test_per_class=1, seed=0) -> dict:
    """CIFAR-100's arrays in the offline copy's format: random pixels, the real taxonomy."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, k in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(100, dtype=np.int64), k)
        out[f"{split}_images"] = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
        out[f"{split}_labels"] = labels
        out[f"{split}_coarse_labels"] = np.asarray(data.CIFAR100_COARSE_OF_FINE, dtype=np.int64)[labels]
    out["class_names"] = np.array([f"class{c}" for c in range(100)])
    out["coarse_names"] = np.array(data.CIFAR100_COARSE_NAMES)
    return out


def _write_npz(path: Path, arrays: dict, sums: bool = True) -> Path:
    """``arrays`` as ``path`` (.npz), with a SHA256SUMS beside it unless ``sums`` is false."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    if sums:
        _write_sums(path)
    return path


def _write_sums(path: Path, digest: str | None = None):
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")


def _write_torchvision(root: Path, arrays: dict, monkeypatch) -> Path:
    """The same images as torchvision's ``cifar-100-python/{train,test,meta}`` pickles.

    torchvision checks the md5 of the published files, so the md5 of these
    files is patched into its dataset class (as in tests/test_modelset.py).
    """
    from lpsbook.core._torchvision import import_torchvision

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        x = arrays[f"{split}_images"]
        entry = {"data": x.transpose(0, 3, 1, 2).reshape(len(x), 3072),  # CHW planes, as the originals
                 "fine_labels": arrays[f"{split}_labels"].tolist(),
                 "coarse_labels": arrays[f"{split}_coarse_labels"].tolist(),
                 "filenames": [f"{i}.png" for i in range(len(x))], "batch_label": split}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": arrays["class_names"].tolist(),
                     "coarse_label_names": arrays["coarse_names"].tolist()}, f, protocol=2)
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in ("train", "test", "meta")}
    cls = import_torchvision().datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(cls, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(cls, "meta", dict(cls.meta, md5=md5["meta"]))
    return root


def _same(ds: Dataset, arrays: dict):
    for split in ("train", "test"):
        x = getattr(ds, f"{split}_images")
        assert x.dtype == torch.uint8 and x.shape == (len(arrays[f"{split}_images"]), 3, 32, 32)
        assert torch.equal(x, torch.from_numpy(arrays[f"{split}_images"]).permute(0, 3, 1, 2))
        assert torch.equal(getattr(ds, f"{split}_labels"), torch.from_numpy(arrays[f"{split}_labels"]))
        assert torch.equal(getattr(ds, f"coarse_{split}_labels"), torch.from_numpy(arrays[f"{split}_coarse_labels"]))
    assert ds.class_names == arrays["class_names"].tolist()
    assert ds.coarse_names == arrays["coarse_names"].tolist()


# --- loading ----------------------------------------------------------------------------------

def test_loads_from_the_file_and_from_its_folder(tmp_path):
    arrays = _arrays()
    f = _write_npz(tmp_path / "cifar" / "cifar100.npz", arrays)
    for where in (f, f.parent):
        clear_cache()
        ds = load_cifar100(where)
        _same(ds, arrays)
        assert ds.name == "cifar100" and "sha256 matches SHA256SUMS" in ds.source
    ds = load_dataset(get_preset("cifar100"), f)
    assert sorted(ds.task_indices((0, 1), "test").tolist()) == [0, 1]


def test_a_file_of_another_name_and_no_checksums(tmp_path):
    arrays = _arrays()
    f = _write_npz(tmp_path / "my-copy.npz", arrays, sums=False)
    ds = load_cifar100(f)
    _same(ds, arrays)
    assert "not checked" in ds.source


def test_the_npz_is_preferred_over_the_torchvision_folder(tmp_path):
    _write_npz(tmp_path / "cifar100.npz", _arrays())
    (tmp_path / "cifar-100-python").mkdir()
    for name in ("train", "test", "meta"):
        (tmp_path / "cifar-100-python" / name).write_bytes(b"not read")
    assert cifar100_source(tmp_path) == ("npz", tmp_path / "cifar100.npz")


def test_neither_source_says_what_was_looked_for(tmp_path):
    with pytest.raises(LpsbookError) as e:
        load_cifar100(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar100.npz") in msg and str(tmp_path / "cifar-100-python") in msg
    assert "lpsbook data download" in msg and "$LPSBOOK_DATA" in msg
    with pytest.raises(LpsbookError, match="looked for the file"):
        load_cifar100(tmp_path / "missing.npz")


def test_loaded_once_per_path_and_mtime(tmp_path, monkeypatch):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays(), sums=False)
    first = load_cifar100(f)
    assert load_cifar100(tmp_path) is first  # same file through its folder: not read again
    reads = []
    real = data._read_npz
    monkeypatch.setattr(data, "_read_npz", lambda p: reads.append(p) or real(p))
    assert load_cifar100(f) is first and reads == []
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_cifar100(f) is not first and len(reads) == 1


def test_npz_and_torchvision_folder_give_identical_tensors(tmp_path, monkeypatch):
    arrays = _arrays()
    npz = load_cifar100(_write_npz(tmp_path / "npz" / "cifar100.npz", arrays))
    tv = load_cifar100(_write_torchvision(tmp_path / "tv", arrays, monkeypatch))
    assert "torchvision" in tv.source
    _same(tv, arrays)
    for field in ("train_images", "train_labels", "test_images", "test_labels",
                  "coarse_train_labels", "coarse_test_labels"):
        a, b = getattr(npz, field), getattr(tv, field)
        assert a.dtype == b.dtype and a.is_contiguous() and b.is_contiguous() and torch.equal(a, b), field
    assert npz.class_names == tv.class_names and npz.coarse_names == tv.coarse_names
    # the cifar-100-python folder itself is accepted too
    assert cifar100_source(tmp_path / "tv" / "cifar-100-python") == ("torchvision", tmp_path / "tv")


def test_dataset_stays_compatible():
    x, y = torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1])
    ds = Dataset("d", x, y, x, y, ["a", "b"])  # positional, as before coarse labels existed
    assert ds.coarse_train_labels is None and ds.coarse_names is None
    moved = Dataset("d", x, y, x, y, ["a", "b"], y, y, ["all"]).to("cpu")
    assert torch.equal(moved.coarse_test_labels, y) and moved.coarse_names == ["all"]
    assert data.load_digits().coarse_names is None


# --- what is refused --------------------------------------------------------------------------

def test_digest_mismatch(tmp_path):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    _write_sums(f, "0" * 64)
    with pytest.raises(LpsbookError, match="sha256 is [0-9a-f]{64}, .*SHA256SUMS says 0{64}"):
        load_cifar100(f)


def test_a_changed_byte_is_caught_by_the_digest(tmp_path):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(LpsbookError, match="damaged or not the expected file"):
        load_cifar100(tmp_path)


def test_checksums_that_do_not_list_the_file(tmp_path):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other.npz\n")
    with pytest.raises(LpsbookError, match="does not list cifar100.npz"):
        load_cifar100(f)


@pytest.mark.parametrize("damage, says", [
    ("truncated", "(BadZipFile: File is not a zip file); it is truncated or damaged"),
    ("changed byte", "Bad CRC-32 for file 'train_images.npy'"),
    ("changed byte, compressed", "truncated or damaged"),
    ("not a zip", "is not a .npz archive"),
    ("empty", "is not a .npz archive")])
def test_damaged_files_without_checksums(tmp_path, damage, says):
    f = tmp_path / "cifar100.npz"
    if damage.endswith("compressed"):
        np.savez_compressed(f, **_arrays())  # deflated, as the real file
    else:
        _write_npz(f, _arrays(), sums=False)
    raw = f.read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) * 2 // 3]
    elif damage.startswith("changed byte"):  # inside the first array's data: the zip's CRC catches it
        raw = bytearray(raw)
        raw[2000] ^= 0xFF
        raw = bytes(raw)
    elif damage == "not a zip":
        raw = b"hello, I am not an archive" * 100
    else:
        raw = b""
    f.write_bytes(raw)
    with pytest.raises(LpsbookError) as e:
        load_cifar100(f)
    assert says in str(e.value) and str(f) in str(e.value) and "fresh copy" in str(e.value), str(e.value)


def _bad(arrays, change):
    a = dict(arrays)
    if change == "wrong image shape":
        a["train_images"] = a["train_images"][:, :, :, :1]
    elif change == "CHW images":
        a["test_images"] = a["test_images"].transpose(0, 3, 1, 2)
    elif change == "float images":
        a["train_images"] = a["train_images"].astype(np.float32)
    elif change == "float labels":
        a["test_labels"] = a["test_labels"].astype(np.float64)
    elif change == "label out of range":
        a["train_labels"] = a["train_labels"].copy()
        a["train_labels"][0] = 100
    elif change == "negative label":
        a["test_labels"] = a["test_labels"].copy()
        a["test_labels"][0] = -1
    elif change == "coarse label out of range":
        a["train_coarse_labels"] = a["train_coarse_labels"] + 1
    elif change == "missing array":
        del a["test_coarse_labels"]
    elif change == "missing class":
        keep = a["test_labels"] != 42
        for k in ("test_images", "test_labels", "test_coarse_labels"):
            a[k] = a[k][keep]
    elif change == "fewer labels than images":
        a["train_labels"] = a["train_labels"][:-1]
    elif change == "99 class names":
        a["class_names"] = a["class_names"][:99]
    elif change == "numeric class names":
        a["class_names"] = np.arange(100)
    return a


@pytest.mark.parametrize("change, says", [
    ("wrong image shape", "train_images has shape (300, 32, 32, 1)"),
    ("CHW images", "test_images has shape (100, 3, 32, 32)"),
    ("float images", "dtype float32, expected (n, 32, 32, 3) uint8"),
    ("float labels", "test_labels has shape (100,) and dtype float64"),
    ("label out of range", "train_labels holds labels from 0 to 100, expected 0..99"),
    ("negative label", "test_labels holds labels from -1"),
    ("coarse label out of range", "train_coarse_labels holds labels from 1 to 20, expected 0..19"),
    ("missing array", "lacks the arrays test_coarse_labels"),
    ("missing class", "test has no image of the classes 42"),
    ("fewer labels than images", "train_labels has 299 labels for 300 images"),
    ("99 class names", "class_names has shape (99,)"),
    ("numeric class names", "class_names has shape (100,) and dtype int64"),
])
def test_wrong_arrays_are_refused(tmp_path, change, says):
    f = _write_npz(tmp_path / "cifar100.npz", _bad(_arrays(), change))  # its digest matches: the content is wrong
    with pytest.raises(LpsbookError) as e:
        load_cifar100(f)
    assert says in str(e.value), str(e.value)
    assert str(f) in str(e.value) and "fresh copy" in str(e.value)


def test_object_arrays_are_never_unpickled(tmp_path, monkeypatch):
    a = _arrays()
    a["class_names"] = np.array([f"class{c}" for c in range(100)], dtype=object)
    f = _write_npz(tmp_path / "cifar100.npz", a)  # np.savez pickles object arrays
    monkeypatch.setattr(pickle, "loads", lambda *_, **__: pytest.fail("pickle.loads was called"))
    monkeypatch.setattr(pickle, "load", lambda *_, **__: pytest.fail("pickle.load was called"))
    with pytest.raises(LpsbookError, match="the array class_names holds Python objects.*never unpickles"):
        load_cifar100(f)


def test_every_class_needs_only_one_image_per_split(tmp_path):
    arrays = _arrays(train_per_class=1, test_per_class=1)
    _same(load_cifar100(_write_npz(tmp_path / "cifar100.npz", arrays)), arrays)


# --- the command line -------------------------------------------------------------------------

def _fails(capsys, argv, *needles):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("lpsbook: error:") == 1 and err.startswith("lpsbook: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    for needle in needles:
        assert str(needle) in err, f"{needle!r} not in {err!r}"
    return err


def test_cli_data_check(tmp_path, capsys):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    for where in (f, tmp_path):
        clear_cache()
        assert cli.main(["data", "check", "--data-dir", str(where)]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1, out
        assert out[0].startswith("CIFAR-100 ok: ") and str(f) in out[0] and "sha256 matches" in out[0]
        assert "300 train + 100 test images" in out[0] and "100 classes, 20 superclasses" in out[0]
        assert out[0].endswith(" s")


def test_cli_data_check_of_bad_data(tmp_path, capsys):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    _write_sums(f, "f" * 64)
    _fails(capsys, ["data", "check", "--data-dir", f], f, "SHA256SUMS says ffff")
    _fails(capsys, ["data", "check", "--data-dir", tmp_path / "nowhere"], tmp_path / "nowhere" / "cifar100.npz")
    (tmp_path / "notes.txt").write_text("x")
    _fails(capsys, ["data", "check", "--data-dir", tmp_path / "notes.txt"], "is a file, not a folder or a .npz file")


def test_cli_data_check_uses_lpsbook_data(tmp_path, capsys, monkeypatch):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    monkeypatch.setenv("LPSBOOK_DATA", str(f))
    assert cli.main(["data", "check"]) == 0
    assert str(f) in capsys.readouterr().out


def test_modelset_build_accepts_an_npz_data_dir(tmp_path, capsys):
    f = _write_npz(tmp_path / "cifar100.npz", _bad(_arrays(), "missing class"))
    # gets past the --data-dir check to the dataset's validation, and trains nothing
    _fails(capsys, ["modelset", "build", "--preset", "cifar100", "--out", tmp_path / "ms", "--device", "cpu",
                    "--data-dir", f], "no image of the classes 42")
    assert not (tmp_path / "ms" / "models").exists() or not list((tmp_path / "ms" / "models").iterdir())


def test_cli_data_download_when_the_files_are_there(tmp_path, capsys, monkeypatch):
    arrays = _arrays()
    root = _write_torchvision(tmp_path / "data", arrays, monkeypatch)
    _write_npz(root / "cifar100.npz", arrays)  # download checks torchvision's folder, not the npz
    assert cli.main(["data", "download", "--data-dir", str(root)]) == 0  # md5s match: nothing fetched
    out = capsys.readouterr().out
    assert "CIFAR-100 ok: " in out and str(root / "cifar-100-python") in out and "md5 checked" in out


def test_cli_data_download_without_internet(tmp_path, capsys, monkeypatch):
    from urllib.error import URLError

    from lpsbook.core._torchvision import import_torchvision

    import_torchvision()
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    _fails(capsys, ["data", "download", "--data-dir", tmp_path / "data"], "could not download CIFAR-100",
           tmp_path / "data", "cifar100.npz")


def test_cli_data_download_into_a_file(tmp_path, capsys):
    f = _write_npz(tmp_path / "cifar100.npz", _arrays())
    _fails(capsys, ["data", "download", "--data-dir", f], f"cannot download CIFAR-100 into {f}",
           "give --data-dir a folder")


@pytest.mark.slow
def test_console_script_data_check(tmp_path):
    import subprocess
    import sys

    script = Path(sys.executable).with_name("lpsbook")
    if not script.exists():
        pytest.skip("the lpsbook console script is not installed next to this Python")
    good = _write_npz(tmp_path / "good" / "cifar100.npz", _arrays())
    bad = _write_npz(tmp_path / "bad" / "cifar100.npz", _bad(_arrays(), "label out of range"))
    ok = subprocess.run([str(script), "data", "check", "--data-dir", str(good.parent)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stderr == "" and ok.stdout.startswith("CIFAR-100 ok: "), ok.stderr
    proc = subprocess.run([str(script), "data", "check", "--data-dir", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("lpsbook: error:") == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "expected 0..99" in proc.stderr


# --- caches and data are separate -------------------------------------------------------------

def test_caches_follow_lpsbook_cache_not_lpsbook_data(tmp_path, monkeypatch):
    from lpsbook.show import book
    from lpsbook.training import modelset

    monkeypatch.setenv("LPSBOOK_DATA", str(tmp_path / "ro" / "cifar100.npz"))
    monkeypatch.setenv("LPSBOOK_CACHE", str(tmp_path / "cache"))
    preset = get_preset("tiny")
    assert data.default_data_dir() == tmp_path / "ro" / "cifar100.npz"
    assert data.default_cache_dir() == tmp_path / "cache"
    assert modelset.cache_dir(preset).parent == tmp_path / "cache" / "modelsets"
    assert book.result_path("x", {}, preset).parent == tmp_path / "cache" / "results"
    assert not (tmp_path / "ro").exists()
    monkeypatch.delenv("LPSBOOK_CACHE")
    monkeypatch.delenv("LPSBOOK_DATA")
    repo_data = Path(data.__file__).resolve().parents[2] / "data"
    assert data.default_cache_dir() == repo_data == data.default_data_dir()


# --- the real offline copy --------------------------------------------------------------------

def _real_data_dir():
    where = os.environ.get("LPSBOOK_DATA")
    if not where:
        pytest.skip("the real CIFAR-100 check needs $LPSBOOK_DATA pointing at cifar100.npz (or the folder "
                    "holding it or cifar-100-python/); `make data` downloads it")
    try:
        cifar100_source(where)
    except LpsbookError as exc:
        pytest.skip(f"$LPSBOOK_DATA={where} holds no CIFAR-100: {exc}")
    return where


@pytest.mark.slow
def test_the_real_cifar100():
    ds = load_cifar100(_real_data_dir())
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8
    assert torch.bincount(ds.train_labels, minlength=100).tolist() == [500] * 100
    assert torch.bincount(ds.test_labels, minlength=100).tolist() == [100] * 100
    assert len(ds.class_names) == 100 and ds.class_names[0] == "apple" and ds.class_names[99] == "worm"
    assert len(ds.coarse_names) == 20 and ds.coarse_names[0] == "aquatic_mammals"
    assert sorted(set(ds.coarse_train_labels.tolist())) == list(range(20))
    fine = torch.cat([ds.train_labels, ds.test_labels])
    coarse = torch.cat([ds.coarse_train_labels, ds.coarse_test_labels])
    pairs = torch.unique(fine * 20 + coarse)
    assert len(pairs) == 100, "a fine class maps to more than one superclass"
    assert torch.bincount(pairs % 20, minlength=20).tolist() == [5] * 20
    # the taxonomy the torchvision source uses is the data's own
    assert (pairs // 20).tolist() == list(range(100))
    assert [int(p % 20) for p in pairs] == list(data.CIFAR100_COARSE_OF_FINE)
    assert tuple(ds.coarse_names) == data.CIFAR100_COARSE_NAMES
    if ds.source.endswith("(sha256 matches SHA256SUMS)"):
        assert "cifar100.npz" in ds.source
    means = ds.train_images.sum(dim=(0, 2, 3), dtype=torch.float64) / (50000 * 32 * 32)
    assert torch.allclose(means, torch.tensor([129.4, 124.1, 112.5], dtype=torch.float64), atol=0.5)
