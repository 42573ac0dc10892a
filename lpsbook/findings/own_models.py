"""Your own models, worked through: a population of an architecture that is not ResNet-20, trained on a
few of the book's tasks, written to a folder of checkpoints and a CSV as a user's would be, imported
(:func:`lpsbook.training.population.import_population`), and described.

* :func:`small_vgg_rgb`, :func:`small_vgg_grey`: the architecture (a VGG-style net with BatchNorm, three
  3x3 convolutions, max pooling, a flatten into a linear layer), callable without arguments as
  ``--arch`` wants it;
* :func:`write_population`: train it and write the folder (resumable: a checkpoint already written is kept);
* :func:`imported_population`: the folder imported once, then loaded;
* :func:`spec_table`: the derived symmetry, a row per permutation group;
* :func:`classification_results`: every weight-space method by folds, every test model's prediction kept,
  in the form :mod:`lpsbook.experiments.reports` reads.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from ..core.data import default_cache_dir, load_dataset, normalise
from ..core.progress import bar as progress_bar
from ..core.store import cached_json, write_atomic
from ..methods.registry import REGISTRY
from ..protocols import paper
from ..training import modelset, population

WIDTH = 8
SETTINGS = {"tasks": 10, "seeds": 10, "epochs": 4, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
            "weight_decay": 5e-4, "width": WIDTH}


def small_vgg(in_channels: int, width: int = WIDTH) -> nn.Sequential:
    """A VGG-style network with BatchNorm: conv-BN-ReLU-pool twice, conv-BN-ReLU, a 2x2 average, linear."""
    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * w, 2))


def small_vgg_rgb() -> nn.Sequential:
    """:func:`small_vgg` for colour images (CIFAR-100)."""
    return small_vgg(3)


def small_vgg_grey() -> nn.Sequential:
    """:func:`small_vgg` for grey images (digits)."""
    return small_vgg(1)


def arch_of(preset) -> str:
    """``MODULE:CALLABLE`` of the architecture for ``preset``'s images."""
    return f"{__name__}:{'small_vgg_grey' if preset.in_channels == 1 else 'small_vgg_rgb'}"


def _train(net, x, y, settings: dict, seed: int):
    """SGD with momentum and weight decay, the learning rate divided by 10 for the last quarter."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=settings["lr"], momentum=settings["momentum"],
                          weight_decay=settings["weight_decay"])
    epochs = settings["epochs"]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, epochs - max(1, epochs // 4))], 0.1)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(settings["batch_size"]):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return net.eval()


def _key(preset, settings: dict) -> str:
    return hashlib.sha256(json.dumps([preset.hash, settings], sort_keys=True).encode()).hexdigest()[:12]


def population_folder(preset, settings: dict = SETTINGS, root=None) -> Path:
    """Where the worked example keeps its population (under the cache folder, keyed by preset and settings)."""
    return Path(root or default_cache_dir()) / "own-models" / f"{preset.name}-{_key(preset, settings)}"


def write_population(preset, settings: dict = SETTINGS, root=None, progress: bool = True) -> Path:
    """Train ``settings["seeds"]`` networks on each of the first ``settings["tasks"]`` tasks of ``preset``'s
    dataset and write them as a user would: ``checkpoints/<task>/seed<s>.safetensors`` (odd seeds) or
    ``.pt`` (even seeds, ``torch.save`` of the state dict) and ``labels.csv`` (file, task, seed, accuracy).
    Returns the folder; a checkpoint already there is kept (an interrupted run resumes)."""
    folder = population_folder(preset, settings, root)
    src = folder / "checkpoints"
    ds = load_dataset(preset)
    factory = small_vgg_grey if preset.in_channels == 1 else small_vgg_rgb
    rows, jobs = [], [(t, s) for t in range(settings["tasks"]) for s in range(settings["seeds"])]
    for t, s in progress_bar(jobs, desc="training small VGGs", unit="model", disable=not progress):
        task = preset.tasks[t]
        name = f"{ds.class_names[task[0]]}-vs-{ds.class_names[task[1]]}"
        file = f"{name}/seed{s}.{'safetensors' if s % 2 else 'pt'}"
        path, meta = src / file, src / f"{file}.json"
        if not meta.exists():
            torch.manual_seed(1000 * t + s)
            data = {}
            for part in ("train", "test"):
                idx = ds.task_indices(task, part)
                images, labels = (ds.train_images, ds.train_labels) if part == "train" else (ds.test_images, ds.test_labels)
                data[part] = normalise(images[idx], ds.mean, ds.std), (labels[idx] == task[1]).long()
            start = time.perf_counter()
            net = _train(factory(), *data["train"], settings, seed=1000 * t + s)
            with torch.no_grad():
                acc = (net(data["test"][0]).argmax(1) == data["test"][1]).float().mean().item()
            path.parent.mkdir(parents=True, exist_ok=True)
            if s % 2:
                save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
            else:
                torch.save(net.state_dict(), path)
            write_atomic(meta, json.dumps({"accuracy": acc, "seconds": time.perf_counter() - start}).encode())
        rows.append({"file": file, "task": name, "seed": s, "accuracy": json.loads(meta.read_text())["accuracy"]})
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def training_seconds(folder: Path) -> float:
    """The median seconds one network took to train."""
    return float(pd.Series([json.loads(p.read_text())["seconds"]
                            for p in (folder / "checkpoints").rglob("*.json")]).median())


def imported_population(preset, settings: dict = SETTINGS, root=None, progress: bool = True):
    """The population of :func:`write_population`, imported into ``<folder>/imported`` on first use, loaded."""
    folder = write_population(preset, settings, root, progress)
    out = folder / "imported"
    if not out.exists():
        population.import_population(folder / "checkpoints", arch_of(preset), folder / "labels.csv", out,
                                     input_shape=tuple(load_dataset(preset).train_images.shape[1:]),
                                     progress=progress)
    return modelset.load(out)


def spec_table(ms) -> pd.DataFrame:
    """A row per permutation group of the set's derived spec: its units and the tensors it reorders."""
    spec, state = ms.spec, ms.state_dict(0)
    from ..core.symmetry import perm_sizes

    sizes = perm_sizes(spec, state)
    return pd.DataFrame([{"group": name, "units": sizes[name],
                          "reorders": ", ".join(f"{k} (axis {a}{', grouped' if state[k].shape[a] != sizes[name] else ''})"
                                                for k, a, *_ in pairs)}
                         for name, pairs in spec.perm_to_axes.items()]).set_index("group")


def weight_methods() -> list:
    """The registry's methods that read any architecture's weights (the graph learner aside: it reads one
    node per unit, and a flattened feature map gives a linear layer several entries per unit)."""
    return [k for k, e in REGISTRY.items() if e.any_arch and k != "graph"]


def classification_results(ms, folds: int = 5, methods=None) -> dict:
    """Task classification of the population by ``folds`` folds (every model tested once), cached:
    ``{"models": {"task_id": [...]}, "protocols": {"classification": {"predictions": ...}}}``."""
    methods = list(methods or weight_methods())

    def compute():
        result = paper.classification(ms, methods=methods, folds=folds)
        return {"models": {"task_id": ms.meta["task_id"].tolist()},
                "protocols": {"classification": {"predictions": result["predictions"]}}}

    return cached_json("own-models-classification", {"folds": folds, "methods": methods}, compute, ms.preset)


def check_derived(ms, seed: int = 0) -> dict:
    """The derived spec checked on the population's first network: ``{"change"}``, its outputs' relative
    change under a random permutation from the spec, and ``{"broken_caught", "culprit"}``: the check run
    on the spec with one tensor left out of its first group (a BatchNorm's running variance, say) fails
    and names that group."""
    from ..core.derived_spec import check_spec
    from ..core.errors import LpsbookError
    from ..core.symmetry import PermutationSpec

    net, spec = ms.model(0), ms.spec
    x = torch.randn(8, *ms.header["input_shape"], generator=torch.Generator().manual_seed(seed))
    first = spec.names[0]
    broken = {n: list(p) for n, p in spec.perm_to_axes.items()}
    broken[first] = [p for p in broken[first] if not p[0].endswith("running_var")]
    try:
        check_spec(net, PermutationSpec(broken), x, seed)
        caught, culprit = False, None
    except LpsbookError as exc:
        caught, culprit = True, str(exc).rsplit("first culprit: ", 1)[-1]
    return {"change": check_spec(net, spec, x, seed), "broken_caught": caught, "culprit": culprit, "group": first}
