"""Building the model sets of the long runs: one preset's set, started from the models another set of the
same recipe already holds, and what a built set records of itself (per model and in summary)."""
from __future__ import annotations

import numpy as np

from ..core.presets import PRESETS, get_preset
from ..findings.analyses import weight_movement
from ..training import modelset as msets

# what each model of a committed set records of how, where and when it was trained
MODEL_FIELDS = ("task_id", "seed", "train_seed", "classes", "test_acc", "train_acc", "precision", "device", "cpu",
                "gpu", "host", "torch_version", "code_version", "lpsbook_version", "created", "train_seconds",
                "workers", "weights_sha256", "copied_from")


def ensure_set(name, progress: bool = True, device: str = "auto", path=None, data_dir=None, ray=None):
    """The model set of preset ``name``, built or resumed (on ``device``, from the data at ``data_dir`` or
    where :func:`lpsbook.core.data.load_dataset` looks) in the book's cache or at ``path``.

    Before training, every model that another cached set of the same recipe already holds (the same task,
    seeded the same way: the ladder's rungs, the 50-task set, ModelSet500) is copied from it
    (:func:`lpsbook.training.modelset.extract`), so only the rest is trained, on a Ray cluster when ``ray``
    is a :class:`lpsbook.training.distributed.RayOptions`.
    """
    p = get_preset(name)
    target = msets.cache_dir(p) if path is None else path
    for q in PRESETS.values():
        source = msets.cache_dir(q)
        if q.name != p.name and msets.same_recipe(p, q) and (source / msets.SET_FILE).is_file():
            msets.extract(source, p, target)
    if path is None:
        return msets.ensure(p, device=device, data_dir=data_dir, progress=progress, ray=ray)
    msets.build_on(p, path, device, data_dir, progress, ray)
    return msets.load(path)


def set_summary(ms) -> dict:
    """The models of a set: accuracies, weight movement, and how, where and how long they were built."""
    meta = ms.meta
    moved = weight_movement(ms)["mean"]
    last_stage = [n for n in ms.layers if n.startswith("layer3.")]
    col = lambda name: sorted(set(meta[name].dropna().astype(str))) if name in meta else []  # noqa: E731
    # a model's recorded time is its pack's wall time per model; packs trained side by side (``workers``: forked
    # ones, or the Ray tasks the cluster runs at once; 1 before it was recorded), so the set gains a model every
    # seconds / workers
    workers = meta["workers"].fillna(1).astype(float) if "workers" in meta else 1.0
    seconds = meta.train_seconds.astype(float) / workers
    copied = int(meta["copied_from"].notna().sum()) if "copied_from" in meta else 0
    return {
        "models": len(meta),
        "test_acc": {"mean": float(meta.test_acc.mean()), "min": float(meta.test_acc.min()),
                     "sd": float(meta.test_acc.std(ddof=1))},
        "train_acc_mean": float(meta.train_acc.mean()),
        "movement": {"conv1": float(moved[ms.layers[0]]), "last_stage": float(np.mean([moved[n] for n in last_stage]))},
        # train_seconds: the models' times (over their workers) summed, pauses of the build included;
        # training_seconds: median per model x the models trained for this set (copies counted where trained)
        "build": {"train_seconds": float(seconds.sum()), "median_model_seconds": float(seconds.median()),
                  "copied": copied, "training_seconds": float(seconds.median() * (len(meta) - copied)),
                  "first_model": str(meta.created.min()),
                  "last_model": str(meta.created.max()), "hosts": col("host"), "cpus": col("cpu"),
                  "precision": col("precision"), "devices": col("device"), "torch": col("torch_version"),
                  "workers": col("workers"), "copied_from": col("copied_from")},
    }


def model_records(ms) -> dict:
    """Every model's provenance as columns (``{field: [value per model]}``, task-major order): compact in
    JSON, and a DataFrame with ``pandas.DataFrame(records)``."""
    meta = ms.meta
    out = {}
    for name in MODEL_FIELDS:
        values = meta[name].tolist() if name in meta else [None] * len(meta)
        out[name] = [None if isinstance(v, float) and np.isnan(v) else v for v in values]
    return out
