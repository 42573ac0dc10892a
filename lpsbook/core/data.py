"""Datasets as uint8 tensors, task definitions, and batched augmentation.

A *task* is an ordered pair of class ids of a source dataset, relabelled 0/1.
A whole dataset is held as one uint8 tensor ``[n, C, H, W]`` (on the training
device); every model draws its own batches and augmentation from its own
``torch.Generator`` (see :class:`SampleStream`), so a model's training data do
not depend on which other models it is trained with.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import LpsbookError
from .memo import Memo
from .presets import Preset

CIFAR_FILES = ("train", "test", "meta")
CIFAR_FOLDER = "cifar-100-python"  # torchvision's folder under its root
CIFAR_NPZ = "cifar100.npz"  # the offline copy's file name inside a --data-dir folder
CHECKSUMS = "SHA256SUMS"  # beside the .npz, in the format of `sha256sum`
NPZ_ARRAYS = ("train_images", "train_labels", "train_coarse_labels",
              "test_images", "test_labels", "test_coarse_labels", "class_names", "coarse_names")
CIFAR_FINE, CIFAR_COARSE = 100, 20


@dataclass
class Dataset:
    """Train and test images of a source dataset, uint8 ``[n, C, H, W]``.

    CIFAR-100 also has its 20 superclasses: ``coarse_train_labels`` and
    ``coarse_test_labels`` (int64, aligned with the images) and
    ``coarse_names``; they are ``None`` for datasets without them (digits).
    ``source`` says where the data came from, in words.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list
    coarse_train_labels: torch.Tensor | None = None
    coarse_test_labels: torch.Tensor | None = None
    coarse_names: list | None = None
    source: str = ""

    @functools.cached_property
    def mean(self) -> torch.Tensor:
        """Per-channel mean of the training images, on the 0..1 scale (computed once)."""
        return self.train_images.float().mean(dim=(0, 2, 3)) / 255.0

    @functools.cached_property
    def std(self) -> torch.Tensor:
        """Per-channel standard deviation of the training images, on the 0..1 scale (computed once)."""
        return self.train_images.float().std(dim=(0, 2, 3)) / 255.0

    def task_indices(self, task, split: str) -> torch.Tensor:
        """Indices of the images of ``task``'s two classes in ``split``."""
        labels = self.train_labels if split == "train" else self.test_labels
        a, b = task
        return torch.nonzero((labels == a) | (labels == b)).flatten()

    def to(self, device) -> "Dataset":
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits with a fixed per-class train/test split.

    Pixel values 0..16 are scaled to 0..255.  Within each class a fixed
    permutation (``split_seed``) puts ``test_fraction`` of the images in the
    test split, so every class is split in the same proportion.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = np.sort(np.concatenate(train_idx))
    test_idx = np.sort(np.concatenate(test_idx))
    t = torch.from_numpy
    return Dataset("digits", t(images[train_idx]), t(labels[train_idx]),
                   t(images[test_idx]), t(labels[test_idx]), [str(c) for c in range(10)],
                   source="scikit-learn's load_digits()")


# --- CIFAR-100: torchvision's folder or the offline .npz ------------------------------------------

LOADED = Memo(2)  # (resolved source path, stamp) -> Dataset: the CIFAR-100 arrays loaded in this process


def clear_cache() -> None:
    """Forget the CIFAR-100 datasets loaded in this process."""
    LOADED.clear()


def _stamp(*paths) -> tuple:
    """(mtime_ns, size) of each path that exists: a loaded dataset is reused while this is unchanged."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _cached(key: Path, stamp: tuple, load) -> Dataset:
    """The dataset loaded from ``key``, read again only when ``stamp`` (mtimes, sizes) changed.

    The same :class:`Dataset` object is returned each time: do not modify
    its tensors in place.
    """
    return LOADED.get((key, stamp), load)


def cifar100_source(data_dir) -> tuple[str, Path]:
    """Where CIFAR-100 is under ``data_dir``: ``("npz", file)`` or ``("torchvision", root)``.

    ``data_dir`` may be the ``.npz`` file itself, a folder holding
    ``cifar100.npz``, or a folder holding torchvision's ``cifar-100-python/``
    (the ``.npz`` wins when both are there; ``cifar-100-python/`` itself is
    accepted too).  LpsbookError, saying what was looked for, when none is found.
    """
    path = Path(data_dir).expanduser()
    if path.is_file():
        if path.suffix == ".npz":
            return "npz", path
        raise LpsbookError(f"CIFAR-100 data dir {path} is a file but not a .npz file; point --data-dir "
                           f"(or $LPSBOOK_DATA) at {CIFAR_NPZ} or at the folder that holds {CIFAR_NPZ} "
                           f"or {CIFAR_FOLDER}/.")
    if (path / CIFAR_NPZ).is_file():
        return "npz", path / CIFAR_NPZ
    if all((path / CIFAR_FOLDER / f).is_file() for f in CIFAR_FILES):
        return "torchvision", path
    if path.name == CIFAR_FOLDER and all((path / f).is_file() for f in CIFAR_FILES):
        return "torchvision", path.parent
    folder = path / CIFAR_FOLDER
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    looked = (f"the file {path}" if path.suffix == ".npz" else
              f"{path / CIFAR_NPZ} and the files {', '.join(CIFAR_FILES)} in {folder} "
              f"(missing: {', '.join(missing)})")
    where = path.parent if path.suffix == ".npz" else path
    raise LpsbookError(
        f"CIFAR-100 not found: looked for {looked}. Download it with "
        f"`lpsbook data download --data-dir {where}` (or add --download to `lpsbook modelset build`), "
        f"or point --data-dir (or $LPSBOOK_DATA) at {CIFAR_NPZ} or at the folder that holds "
        f"{CIFAR_NPZ} or {CIFAR_FOLDER}/."
    )


def load_cifar100(data_dir, download: bool = False) -> Dataset:
    """CIFAR-100 from ``data_dir``: the offline ``.npz`` or torchvision's folder.

    See :func:`cifar100_source` for what ``data_dir`` may be.  When neither is
    there and ``download`` is true, torchvision downloads the original files
    into the folder ``data_dir``.  The loaded dataset is kept in this process
    and reused while the files' mtimes and sizes are unchanged.
    """
    try:
        kind, path = cifar100_source(data_dir)
    except LpsbookError:
        if not download:
            raise
        download_cifar100(data_dir)
        kind, path = "torchvision", Path(data_dir).expanduser()
    if kind == "npz":
        return load_cifar100_npz(path)
    return load_cifar100_torchvision(path)


def download_cifar100(data_dir) -> Path:
    """Download CIFAR-100 (about 170 MB) with torchvision into the folder ``data_dir``.

    Returns the folder; nothing is fetched when torchvision finds the files
    there already, with the right md5. Any failure is an LpsbookError that
    says what to do (see :func:`fetch_cifar100`, which does the work).
    """
    root = Path(data_dir).expanduser()
    if root.suffix == ".npz" or root.is_file():
        raise LpsbookError(f"cannot download CIFAR-100 into {root}: torchvision downloads into a folder; "
                           f"give --data-dir a folder (it will hold {CIFAR_FOLDER}/).")
    try:
        return fetch_cifar100(root)
    except DOWNLOAD_ERRORS as exc:
        raise LpsbookError(
            f"could not download CIFAR-100 into {root} ({type(exc).__name__}: {exc}). Check the internet "
            f"connection and that {root} is writable, then run the same command again; without internet, "
            f"point --data-dir (or $LPSBOOK_DATA) at a copy of {CIFAR_NPZ} instead."
        ) from None


# What a download can raise: no network, a refused write, a broken or truncated archive
# (torchvision's md5 check raises RuntimeError).
DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, http.client.HTTPException)


def fetch_cifar100(root: Path) -> Path:
    """torchvision's download of CIFAR-100 into the folder ``root``, all or nothing.

    The archive is fetched and unpacked in a temporary folder inside ``root``,
    checked (torchvision's md5s of the archive and of every file), and only
    then moved into place, so a failed, broken or interrupted download leaves
    nothing half-written. Raises one of :data:`DOWNLOAD_ERRORS`.
    """
    import shutil
    import tempfile

    datasets = _torchvision_datasets()
    if all((root / CIFAR_FOLDER / f).is_file() for f in CIFAR_FILES):
        datasets.CIFAR100(str(root), train=True, download=True)  # md5s checked; fetches only what is broken
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar100-download-") as tmp:
        datasets.CIFAR100(tmp, train=True, download=True)
        datasets.CIFAR100(tmp, train=False, download=False)  # the test file's md5 too
        shutil.rmtree(root / CIFAR_FOLDER, ignore_errors=True)
        os.replace(Path(tmp) / CIFAR_FOLDER, root / CIFAR_FOLDER)
    return root


def cifar100_url() -> str:
    """Where torchvision downloads CIFAR-100 from."""
    return _torchvision_datasets().CIFAR100.url


def _torchvision_datasets():
    from ._torchvision import import_torchvision

    return import_torchvision().datasets


# CIFAR-100's taxonomy (Krizhevsky 2009): the superclass of each fine class 0..99, and the
# superclass names, in the standard order. tests/test_cifar_data.py checks it against the real data.
CIFAR100_COARSE_OF_FINE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13)
CIFAR100_COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2")


def load_cifar100_torchvision(data_dir) -> Dataset:
    """CIFAR-100 from torchvision's ``cifar-100-python/{train,test,meta}`` under ``data_dir``.

    torchvision checks the files' md5 and reads images and fine labels; the
    superclasses come from CIFAR-100's fixed taxonomy
    (:data:`CIFAR100_COARSE_OF_FINE`), so lpsbook never unpickles anything.
    """
    root = Path(data_dir).expanduser()
    folder = root / CIFAR_FOLDER
    return _cached(folder.resolve(), _stamp(*(folder / f for f in CIFAR_FILES)),
                   lambda: _read_torchvision(root))


def _read_torchvision(root: Path) -> Dataset:
    folder = root / CIFAR_FOLDER
    datasets = _torchvision_datasets()
    try:
        train = datasets.CIFAR100(str(root), train=True, download=False)
        test = datasets.CIFAR100(str(root), train=False, download=False)
    except RuntimeError as exc:  # "Dataset not found or corrupted"
        raise LpsbookError(
            f"CIFAR-100 files in {folder} could not be read ({type(exc).__name__}: {exc}). Delete the folder "
            "and download again (`lpsbook data download`, or --download)."
        ) from None
    coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
    coarse_train, coarse_test = coarse[np.asarray(train.targets)], coarse[np.asarray(test.targets)]
    coarse_names = list(CIFAR100_COARSE_NAMES)
    arrays = {"train_images": np.ascontiguousarray(train.data), "train_labels": np.asarray(train.targets),
              "train_coarse_labels": np.asarray(coarse_train),
              "test_images": np.ascontiguousarray(test.data), "test_labels": np.asarray(test.targets),
              "test_coarse_labels": np.asarray(coarse_test),
              "class_names": np.asarray(list(train.classes)), "coarse_names": np.asarray(coarse_names)}
    # torchvision has checked the md5 of the published files, so they hold every class; small
    # files written by tests (their md5 patched in) may hold a few classes only.
    return _dataset_from_arrays(arrays, folder, all_classes=False,
                                source=f"{folder} (torchvision's files, md5 checked)")


def _sha256(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _expected_sha256(path: Path) -> str | None:
    """The digest ``SHA256SUMS`` beside ``path`` gives for it; None when there is no such file."""
    sums = path.parent / CHECKSUMS
    if not sums.is_file():
        return None
    for line in sums.read_text(errors="replace").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[1].lstrip("*").strip() == path.name:
            return parts[0].lower()
    raise LpsbookError(f"{sums} does not list {path.name}, so its checksum cannot be checked; add its line "
                       f"(`sha256sum {path.name} >> {CHECKSUMS}` in {path.parent}, once you trust the file) "
                       f"or give the file its original name.")


def load_cifar100_npz(path) -> Dataset:
    """CIFAR-100 from a ``.npz`` in the format of the offline copy (see ``cifar100.npz``'s README).

    Read with ``allow_pickle=False``; when a ``SHA256SUMS`` file sits beside
    it, the file's digest is checked first.  Shapes, dtypes, label ranges and
    class counts are validated; anything wrong is one LpsbookError.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LpsbookError(f"CIFAR-100 file {path} does not exist; point --data-dir (or $LPSBOOK_DATA) at "
                           f"{CIFAR_NPZ} or at the folder that holds it.")
    return _cached(path.resolve(), _stamp(path, path.parent / CHECKSUMS), lambda: _read_npz(path))


def _read_npz(path: Path) -> Dataset:
    fix = (f"get a fresh copy of {CIFAR_NPZ}, or download the original CIFAR-100 with "
           "`lpsbook data download --data-dir DIR` and point --data-dir at DIR")
    expected = _expected_sha256(path)
    if expected is not None:
        actual = _sha256(path)
        if actual != expected:
            raise LpsbookError(f"{path} is damaged or not the expected file: its sha256 is {actual}, "
                               f"{path.parent / CHECKSUMS} says {expected}; {fix}.")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise LpsbookError(f"{path} is not a .npz archive (it does not start like a zip file); {fix}.")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_ARRAYS if k not in npz.files]
            if missing:
                raise LpsbookError(f"{path} lacks the arrays {', '.join(missing)} (it has "
                                   f"{', '.join(npz.files) or 'none'}), so it is not CIFAR-100 in lpsbook's "
                                   f"format; {fix}.")
            for k in NPZ_ARRAYS:
                try:
                    arrays[k] = npz[k]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    raise LpsbookError(f"{path}: the array {k} holds Python objects, which would need "
                                       f"pickle to load, and lpsbook never unpickles a .npz (names must "
                                       f"be a numpy str array); {fix}.") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise LpsbookError(f"{path} could not be read as a .npz archive ({type(exc).__name__}: {exc}); "
                           f"it is truncated or damaged; {fix}.") from None
    checked = "sha256 matches SHA256SUMS" if expected is not None else "no SHA256SUMS beside it, not checked"
    return _dataset_from_arrays(arrays, path, all_classes=True, source=f"{path} ({checked})", fix=fix)


def _dataset_from_arrays(a: dict, where: Path, all_classes: bool, source: str, fix: str | None = None) -> Dataset:
    """Validate CIFAR-100's arrays (images NHWC uint8) and hold them as a Dataset (images NCHW)."""
    fix = fix or "delete the files and download them again"

    def bad(what):
        raise LpsbookError(f"{where}: {what}, so it is not CIFAR-100 as lpsbook expects it; {fix}.")

    for names, n in (("class_names", CIFAR_FINE), ("coarse_names", None)):
        arr = a[names]
        if arr.ndim != 1 or arr.dtype.kind != "U" or (n is not None and len(arr) != n):
            bad(f"{names} has shape {arr.shape} and dtype {arr.dtype}, expected "
                f"({n if n is not None else 'k'},) of str")
    n_coarse = len(a["coarse_names"])
    if all_classes and n_coarse != CIFAR_COARSE:
        bad(f"coarse_names holds {n_coarse} names, expected {CIFAR_COARSE}")
    for split in ("train", "test"):
        x, y, yc = a[f"{split}_images"], a[f"{split}_labels"], a[f"{split}_coarse_labels"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            bad(f"{split}_images has shape {x.shape} and dtype {x.dtype}, expected (n, 32, 32, 3) uint8")
        if len(x) == 0:
            bad(f"{split}_images holds no images")
        for k, lab, n in ((f"{split}_labels", y, CIFAR_FINE), (f"{split}_coarse_labels", yc, n_coarse)):
            if lab.ndim != 1 or lab.dtype.kind not in "iu":
                bad(f"{k} has shape {lab.shape} and dtype {lab.dtype}, expected ({len(x)},) of integers")
            if len(lab) != len(x):
                bad(f"{k} has {len(lab)} labels for {len(x)} images in {split}_images")
            if lab.min() < 0 or lab.max() >= n:
                bad(f"{k} holds labels from {lab.min()} to {lab.max()}, expected 0..{n - 1}")
        if all_classes:
            absent = np.flatnonzero(np.bincount(y, minlength=CIFAR_FINE) == 0)
            if len(absent):
                bad(f"{split} has no image of the classes {', '.join(map(str, absent[:10]))}"
                    f"{' ...' if len(absent) > 10 else ''} (every one of the {CIFAR_FINE} classes must be "
                    "in both splits)")

    def images(x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()

    def labels(y):
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return Dataset("cifar100", images(a["train_images"]), labels(a["train_labels"]),
                   images(a["test_images"]), labels(a["test_labels"]), [str(c) for c in a["class_names"]],
                   coarse_train_labels=labels(a["train_coarse_labels"]),
                   coarse_test_labels=labels(a["test_coarse_labels"]),
                   coarse_names=[str(c) for c in a["coarse_names"]], source=source)


def load_dataset(preset: Preset, data_dir=None, download: bool = False) -> Dataset:
    """The source dataset of ``preset``."""
    if preset.dataset == "digits":
        return load_digits()
    if preset.dataset == "cifar100":
        return load_cifar100(data_dir or default_data_dir(), download=download)
    if preset.dataset == "imported":
        raise LpsbookError(f"{preset.name} is a population imported from checkpoints and has no images: methods "
                           "and protocols that run its models on data (probing, activations, transfer) cannot use it")
    raise LpsbookError(f"unknown dataset {preset.dataset!r} in preset {preset.name!r}")


def default_data_dir() -> Path:
    """Where the dataset is: ``$LPSBOOK_DATA`` or ``data/`` in the repository.

    It may name CIFAR-100's ``.npz`` file or a folder (see :func:`cifar100_source`)
    and may be read-only; caches go to :func:`default_cache_dir`.
    """
    return Path(os.environ.get("LPSBOOK_DATA", _REPO_DATA))


def default_cache_dir() -> Path:
    """Where model sets and cached results go: ``$LPSBOOK_CACHE`` or ``data/`` in the repository."""
    return Path(os.environ.get("LPSBOOK_CACHE", _REPO_DATA))


_REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype=None):
    """uint8 images ``[..., C, H, W]`` to normalised floats."""
    dtype = dtype or torch.get_default_dtype()
    x = x_uint8.to(dtype) / 255.0
    view = (-1, 1, 1)
    return (x - mean.to(x.device, dtype).view(view)) / std.to(x.device, dtype).view(view)
