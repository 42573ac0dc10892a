"""Datasets as uint8 tensors, task definitions, and batched augmentation.

A *task* is an ordered pair of class ids of a source dataset, relabelled 0/1.
A whole dataset is held as one uint8 tensor ``[n, C, H, W]`` (on the training
device); every model draws its own batches and augmentation from its own
``torch.Generator`` (see :class:`SampleStream`), so a model's training data do
not depend on which other models it is trained with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import LpsbookError
from .presets import Preset

CIFAR_FILES = ("train", "test", "meta")


@dataclass
class Dataset:
    """Train and test images of a source dataset, uint8 ``[n, C, H, W]``."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean of the training images, on the 0..1 scale."""
        return self.train_images.float().mean(dim=(0, 2, 3)) / 255.0

    @property
    def std(self) -> torch.Tensor:
        return self.train_images.float().std(dim=(0, 2, 3)) / 255.0

    def task_indices(self, task, split: str) -> torch.Tensor:
        """Indices of the images of ``task``'s two classes in ``split``."""
        labels = self.train_labels if split == "train" else self.test_labels
        a, b = task
        return torch.nonzero((labels == a) | (labels == b)).flatten()

    def to(self, device) -> "Dataset":
        return Dataset(self.name, self.train_images.to(device), self.train_labels.to(device),
                       self.test_images.to(device), self.test_labels.to(device), self.class_names)


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
                   t(images[test_idx]), t(labels[test_idx]), [str(c) for c in range(10)])


def load_cifar100(data_dir, download: bool = False) -> Dataset:
    """CIFAR-100 through torchvision's dataset class.

    Reads ``cifar-100-python/{train,test,meta}`` under ``data_dir``; downloads
    them there only when ``download`` is true.
    """
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / "cifar-100-python"
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    if missing and not download:
        raise LpsbookError(
            f"CIFAR-100 not found: expected the files {', '.join(CIFAR_FILES)} in {folder} "
            f"(missing: {', '.join(missing)}). Download them with "
            f"`lpsbook modelset build --preset cifar100 --data-dir {data_dir} --download`, "
            "or point --data-dir at the folder that holds cifar-100-python/."
        )
    from ._torchvision import import_torchvision

    datasets = import_torchvision().datasets
    try:
        train = datasets.CIFAR100(str(data_dir), train=True, download=download)
        test = datasets.CIFAR100(str(data_dir), train=False, download=download)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise LpsbookError(
            f"CIFAR-100 files in {folder} could not be read ({exc}). Delete the folder "
            "and download again with --download."
        ) from None

    def as_tensor(ds):
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(ds.targets, dtype=torch.int64)

    x_train, y_train = as_tensor(train)
    x_test, y_test = as_tensor(test)
    return Dataset("cifar100", x_train, y_train, x_test, y_test, list(train.classes))


def load_dataset(preset: Preset, data_dir=None, download: bool = False) -> Dataset:
    """The source dataset of ``preset``."""
    if preset.dataset == "digits":
        return load_digits()
    if preset.dataset == "cifar100":
        return load_cifar100(data_dir or default_data_dir(), download=download)
    raise LpsbookError(f"unknown dataset {preset.dataset!r} in preset {preset.name!r}")


def default_data_dir() -> Path:
    """``$LPSBOOK_DATA`` or ``data/`` in the repository."""
    import os

    return Path(os.environ.get("LPSBOOK_DATA", Path(__file__).resolve().parent.parent / "data"))


class SampleStream:
    """One model's endless stream of training samples and augmentations.

    The stream is a concatenation of random permutations of the task's
    training images; with each permutation the crop offsets and flips of its
    samples are drawn too.  All draws come from the model's own generator,
    seeded by the model's seed, so the stream is the same whichever models
    it is trained with.
    """

    def __init__(self, indices: torch.Tensor, seed: int, crop_padding: int, flip: bool):
        self.indices = indices.cpu()
        self.generator = torch.Generator().manual_seed(seed)
        self.pad = crop_padding
        self.flip = flip
        self._buf = (torch.empty(0, dtype=torch.long),) * 3 + (torch.empty(0, dtype=torch.bool),)

    def _refill(self):
        n, g = len(self.indices), self.generator
        perm = self.indices[torch.randperm(n, generator=g)]
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        fl = torch.rand(n, generator=g) < 0.5
        if not self.flip:
            fl = torch.zeros(n, dtype=torch.bool)
        self._buf = tuple(torch.cat([a, b]) for a, b in zip(self._buf, (perm, dy, dx, fl)))

    def take(self, k: int):
        """Next ``k`` samples: (indices, dy, dx, flip), each of length ``k``."""
        while len(self._buf[0]) < k:
            self._refill()
        out = tuple(b[:k] for b in self._buf)
        self._buf = tuple(b[k:] for b in self._buf)
        return out


def augment_batch(padded: torch.Tensor, idx, dy, dx, flip, size: int) -> torch.Tensor:
    """Crop and flip many samples at once, on the device of ``padded``.

    ``padded`` is the whole dataset, uint8 ``[n, C, H+2p, W+2p]``; ``idx``,
    ``dy``, ``dx``, ``flip`` have any common shape ``S``; returns uint8
    ``[*S, C, size, size]``.
    """
    shape = idx.shape
    idx, dy, dx, flip = (t.reshape(-1).to(padded.device) for t in (idx, dy, dx, flip))
    ar = torch.arange(size, device=padded.device)
    rows = dy[:, None] + ar  # [B, H]
    cols = dx[:, None] + ar  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    C = padded.shape[1]
    ch = torch.arange(C, device=padded.device)
    out = padded[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    return out.reshape(*shape, C, size, size)


def pad_images(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad uint8 images ``[n, C, H, W]`` on every side."""
    return torch.nn.functional.pad(images, (padding,) * 4) if padding else images


def normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype=None):
    """uint8 images ``[..., C, H, W]`` to normalised floats."""
    dtype = dtype or torch.get_default_dtype()
    x = x_uint8.to(dtype) / 255.0
    view = (-1, 1, 1)
    return (x - mean.to(x.device, dtype).view(view)) / std.to(x.device, dtype).view(view)
