"""Named, frozen configurations of a model set.

A preset says which dataset, which tasks, how many seeds per task, which
network and which training recipe.  Provided:

``tiny``, ``tiny-cifar100``
    a few tasks, seeds and steps, for tests and rehearsals (seconds on a CPU);
``digits``
    the embedded default: scikit-learn's 8x8 digits, all 45 class pairs as
    tasks, 10 seeds each, a narrow ResNet-20;
``cifar100-small``
    ModelSet500's 50 tasks x 10 seeds and ResNet-20 on real CIFAR-100, with
    a short schedule that a 2-core CPU builds in about half an hour;
``cifar100``
    the paper's ModelSet500: 50 disjoint CIFAR-100 tasks {2t, 2t+1}, 10 seeds
    each, ResNet-20 16/32/64, SGD 160 epochs with the paper's recipe; on a CPU
    with native bf16 it trains in bf16 autocast, two models per step (the
    fastest path measured, ``benchmarks/RESULTS.md``), as on a GPU;
``cifar100-w16-e40`` and ``ladder-w<width>-e<epochs>``
    the paper's recipe at a quarter of its training (all 50 tasks), and the
    recipe ladder on ten of them (:func:`paper_recipe` makes them all).
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
    task_numbers : tuple of int
        The number each task's random stream is drawn from (by default its
        position in ``tasks``). A preset of a few of another preset's tasks
        sets them to those tasks' positions there, so that its models are the
        other set's models of those tasks, bit for bit on one machine.
    milestones may be fractions of an epoch (3/4 of 10 epochs: 7.5); they are
    rounded to whole steps.
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
    task_numbers: tuple = ()

    def task_number(self, task_id: int) -> int:
        """The number that seeds task ``task_id``'s models (see ``task_numbers``)."""
        return self.task_numbers[task_id] if self.task_numbers else task_id

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
        d["task_numbers"] = list(self.task_numbers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        d = dict(d)
        d["tasks"] = tuple(tuple(t) for t in d["tasks"])
        d["milestones"] = tuple(d["milestones"])
        d["task_numbers"] = tuple(d.get("task_numbers", ()))
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
LATER_FIELDS = {"cpu_bf16": False, "task_numbers": []}

DIGITS_PAIRS = tuple(itertools.combinations(range(10), 2))

PRESETS = {
    "tiny": Preset(
        name="tiny", dataset="digits", tasks=((0, 1), (0, 2), (3, 4)), seeds=3,
        width=4, epochs=3, batch_size=32, lr=0.05, milestones=(2,),
        crop_padding=1, flip=False, pack_size_cpu=4,
    ),
    # The tiny recipe on CIFAR-100 (three of ModelSet500's tasks): a check, in seconds, that the data and a
    # whole pipeline work before hours go into the real preset (scripts/gpu_modelset500.sh rehearses on it).
    "tiny-cifar100": Preset(
        name="tiny-cifar100", dataset="cifar100", tasks=((0, 1), (2, 3), (4, 5)), seeds=3,
        width=4, epochs=1, batch_size=64, lr=0.05, milestones=(), pack_size_cpu=6,
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
        crop_padding=4, flip=True, pack_size_cpu=2, cpu_bf16=True,
    ),
}


def paper_recipe(name: str, width: int = 16, epochs: int = 160, every: int = 1, pack_size_cpu: int = 1) -> Preset:
    """The paper's recipe (the ``cifar100`` preset) with only width and training length changed.

    SGD with batch 128, lr 0.1 divided by 10 at 1/2 and 3/4 of training,
    momentum 0.9, weight decay 1e-4, crop 4 + flip, 10 seeds; bf16 with
    channels_last on a CPU that has native bf16. ``every=5`` keeps every fifth
    of the 50 tasks, seeded as in the 50-task set (``task_numbers``), so a
    rung that shares width and epochs with the 50-task set holds its models.
    """
    base = PRESETS["cifar100"]
    half, three_quarters = epochs / 2, 3 * epochs / 4
    numbers = tuple(range(0, len(base.tasks), every))
    return base.with_(name=name, width=width, epochs=epochs,
                      milestones=tuple(int(m) if m == int(m) else m for m in (half, three_quarters)),
                      tasks=tuple(base.tasks[i] for i in numbers), task_numbers=numbers if every > 1 else (),
                      pack_size_cpu=pack_size_cpu)


# The recipe ladder: ten of ModelSet500's tasks (every fifth), only width and epochs changed;
# (width, epochs) -> preset name. The paper trains width 16 for 160 epochs.
LADDER = {(8, 10): "ladder-w8-e10", (8, 40): "ladder-w8-e40", (16, 10): "ladder-w16-e10",
          (16, 40): "ladder-w16-e40", (16, 160): "ladder-w16-e160"}
# Models trained together on a CPU, by width (fastest per model: see benchmarks/RESULTS.md).
LADDER_PACK = {8: 4, 16: 2}
PRESETS["cifar100-w16-e40"] = paper_recipe("cifar100-w16-e40", 16, 40, pack_size_cpu=LADDER_PACK[16])
for (_w, _e), _name in LADDER.items():
    PRESETS[_name] = paper_recipe(_name, _w, _e, every=5, pack_size_cpu=LADDER_PACK[_w])


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
