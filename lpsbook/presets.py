"""Named, frozen configurations of a model set.

A preset says which dataset, which tasks, how many seeds per task, which
network and which training recipe.  Provided:

``tiny``
    a few tasks, seeds and steps, for tests (seconds on a CPU);
``digits``
    the embedded default: scikit-learn's 8x8 digits, all 45 class pairs as
    tasks, 10 seeds each, a narrow ResNet-20;
``cifar100-small``
    ModelSet500's 50 tasks x 10 seeds and ResNet-20 on real CIFAR-100, with
    a short schedule that a 2-core CPU builds in about half an hour;
``cifar100``
    the paper's ModelSet500: 50 disjoint CIFAR-100 tasks {2t, 2t+1}, 10 seeds
    each, ResNet-20 16/32/64, SGD 160 epochs with the paper's recipe.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass

from .errors import LpsbookError


@dataclass(frozen=True)
class Preset:
    """Everything that determines a model set.

    Attributes
    ----------
    name : str
        Name of the preset.
    dataset : str
        ``"digits"`` or ``"cifar100"``.
    tasks : tuple of (int, int)
        Each task is an ordered pair of class ids of the dataset; the first
        class is relabelled 0, the second 1.
    seeds : int
        Models per task (seeds ``0..seeds-1``).
    width : int
        Width of the first ResNet-20 stage (stages are width, 2*width, 4*width).
    epochs, batch_size, lr, momentum, weight_decay : training recipe.
    milestones : tuple of int
        Epochs after which the learning rate is divided by 10.
    crop_padding : int
        Random crop with this zero padding (0 disables the crop).
    flip : bool
        Random horizontal flip.
    pack_size_cpu : int
        Models trained together in one step on a CPU (on CUDA the pack size
        is chosen from the free memory). A speed setting: it does not change
        the weights, so it is left out of :attr:`hash`.
    cpu_bf16 : bool
        On a CPU with native bfloat16 (AVX-512 BF16, AMX), train in bf16
        autocast with channels_last (always done on CUDA). It changes the
        weights' rounding, so it is part of :attr:`hash`; elsewhere the CPU
        trains in float32.
    seed_offset : int
        Model (task, seed) is initialised and fed from the random stream of
        seed ``seed + seed_offset``: the same recipe with other seeds gives an
        independent model set of the same kind.
    """

    name: str
    dataset: str
    tasks: tuple
    seeds: int
    width: int
    epochs: int
    batch_size: int
    lr: float
    milestones: tuple
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop_padding: int = 4
    flip: bool = True
    pack_size_cpu: int = 8
    seed_offset: int = 0
    cpu_bf16: bool = False

    @property
    def in_channels(self) -> int:
        return 3 if self.dataset == "cifar100" else 1

    @property
    def num_models(self) -> int:
        return len(self.tasks) * self.seeds

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tasks"] = [list(t) for t in self.tasks]
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        d = dict(d)
        d["tasks"] = tuple(tuple(t) for t in d["tasks"])
        d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of what determines the weights."""
        d = {k: v for k, v in self.to_dict().items()
             if k not in SPEED_SETTINGS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def follows_paper(self) -> bool:
        """Whether this is the paper's ModelSet500 recipe (the ``cifar100`` preset, any seeds).

        The experiments then use the paper's protocol settings; every other
        preset gets the faster CPU settings of the book.
        """
        paper = PRESETS["cifar100"].to_dict()
        mine = self.to_dict()
        return all(mine[k] == v for k, v in paper.items() if k not in ("name", "seed_offset", *SPEED_SETTINGS))

    def with_(self, **changes) -> "Preset":
        """A copy with some fields changed (e.g. fewer seeds for a quick run)."""
        return dataclasses.replace(self, **changes)


# Fields that change how fast a model set is built, not its weights.
SPEED_SETTINGS = ("pack_size_cpu",)
# Fields added after model sets were first published, with the value that means "as before":
# hashed only when set otherwise, so existing model sets keep their hash.
LATER_FIELDS = {"cpu_bf16": False}

DIGITS_PAIRS = tuple(itertools.combinations(range(10), 2))

PRESETS = {
    "tiny": Preset(
        name="tiny", dataset="digits", tasks=((0, 1), (0, 2), (3, 4)), seeds=3,
        width=4, epochs=3, batch_size=32, lr=0.05, milestones=(2,),
        crop_padding=1, flip=False, pack_size_cpu=4,
    ),
    "digits": Preset(
        name="digits", dataset="digits", tasks=DIGITS_PAIRS, seeds=10,
        width=8, epochs=12, batch_size=64, lr=0.05, milestones=(8, 10),
        crop_padding=1, flip=False, pack_size_cpu=30,
    ),
    # The digits recipe with other seeds. The notebooks' stored outputs are
    # produced on it, so that nbval, run on the digits set, compares them across
    # two independently trained model sets (see scripts/store_outputs.py).
    "digits-reseeded": Preset(
        name="digits-reseeded", dataset="digits", tasks=DIGITS_PAIRS, seeds=10,
        width=8, epochs=12, batch_size=64, lr=0.05, milestones=(8, 10),
        crop_padding=1, flip=False, pack_size_cpu=30, seed_offset=100,
    ),
    # ModelSet500's tasks, seeds and architecture on real CIFAR-100, with a
    # training schedule a 2-core CPU builds in about half an hour (see
    # benchmarks/RESULTS.md for the measurements behind it): the trade is epochs.
    "cifar100-small": Preset(
        name="cifar100-small", dataset="cifar100",
        tasks=tuple((2 * t, 2 * t + 1) for t in range(50)), seeds=10,
        width=8, epochs=5, batch_size=64, lr=0.05, milestones=(3, 4),
        crop_padding=4, flip=True, pack_size_cpu=8, cpu_bf16=True,
    ),
    # The same with other seeds: the stored outputs of the chapters are produced
    # on it (as digits-reseeded does for digits).
    "cifar100-small-reseeded": Preset(
        name="cifar100-small-reseeded", dataset="cifar100",
        tasks=tuple((2 * t, 2 * t + 1) for t in range(50)), seeds=10,
        width=8, epochs=5, batch_size=64, lr=0.05, milestones=(3, 4),
        crop_padding=4, flip=True, pack_size_cpu=8, cpu_bf16=True, seed_offset=100,
    ),
    "cifar100": Preset(
        name="cifar100", dataset="cifar100",
        tasks=tuple((2 * t, 2 * t + 1) for t in range(50)), seeds=10,
        width=16, epochs=160, batch_size=128, lr=0.1, milestones=(80, 120),
        crop_padding=4, flip=True, pack_size_cpu=1,
    ),
}


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; unknown names raise LpsbookError."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise LpsbookError(
            f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
        ) from None
