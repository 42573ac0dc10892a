"""The paper's evaluation protocols (Section 5), one function each.

Every protocol takes a loaded :class:`~lpsbook.modelset.ModelSet`, trains the
similarity methods it compares on one split of the models, evaluates on the
rest, repeats over several seeds and returns a JSON-ready dict with each
metric's mean, standard deviation and per-seed values, the settings and the
time taken.

* :func:`classification`: 8 train / 2 test models per task; top-1/5/10.
* :func:`retrieval`: train on 80 % of the tasks; two query models per test
  task, the others form the gallery; rank-1/5/10 and mAP.
* :func:`transferability`: a source model's penultimate features on a target
  task's test images, k-means (k = 2), adjusted Rand index; Spearman
  correlation with each method's source/target similarity.
* :func:`branches`: one LPS branch at a time (Fig. 3b).
* :func:`ablation`: filter / channel alignment switched off (Fig. 3c).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import torch

from . import code_version
from .errors import LpsbookError
from .lps import LPSConfig, SecondOrderNet, layer_shapes
from .methods import display_name, make
from .metrics import retrieval_metrics, spearman, topk_accuracy
from .progress import bar as progress_bar
from .store import Checkpoint, write_atomic
from .similarity import features_in_bf16, penultimate_features

PAPER = {
    "classification": {"random prediction": (2.0, 9.6, 18.3), "only one FC layer": (5.3, 17.5, 29.3),
                       "Frobenius+FC w/o alignment": (5.5, 18.3, 29.0), "LPS": (79.8, 94.8, 98.0)},
    "retrieval": {"random prediction": (10.0, 41.0, 65.1), "only one FC layer": (15.0, 55.8, 83.3),
                  "Frobenius+FC w/o alignment": (13.3, 58.3, 80.0), "LPS": (80.7, 95.0, 95.8)},
}
PAPER_METHODS = ("random prediction", "only one FC layer", "Frobenius+FC w/o alignment", "LPS")
EXTRA_METHODS = ("weight statistics", "re-basin + FC")


def default_config(ms) -> LPSConfig:
    """Second-order training settings: the paper's on its recipe (cifar100), a faster mini-batch one otherwise."""
    if ms.preset.follows_paper:
        return LPSConfig.paper()
    return LPSConfig(epochs=60, batch_size=8, lr=0.05, milestones=(30, 45))


def _summary(values: list) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "values": arr.tolist()}


def _collect(per_seed: dict) -> dict:
    """{method: [ {metric: v}, ...per seed ]} -> {method: {metric: summary}}."""
    return {m: {k: _summary([r[k] for r in runs]) for k in runs[0]} for m, runs in per_seed.items()}


def classification_split(ms, seed: int, train_per_task: int | None = None):
    """Rows of training and test models: per task, ``train_per_task`` random models train."""
    k = train_per_task or max(1, round(0.8 * ms.preset.seeds))
    g = np.random.default_rng(seed)
    train, test = [], []
    for t in sorted(ms.meta["task_id"].unique()):
        rows = g.permutation(np.flatnonzero(ms.meta["task_id"].to_numpy() == t))
        train += rows[:k].tolist()
        test += rows[k:].tolist()
    return np.array(train), np.array(test)


def _run(kind, ms, methods, seeds, config, device, evaluate, extra_settings=None, checkpoint=None):
    t0 = time.time()
    config = config or default_config(ms)
    settings = {"seeds": seeds, "lps": config.to_dict(), "device": str(device), **(extra_settings or {})}
    ckpt = Checkpoint(checkpoint, {"kind": kind, "preset": ms.preset.hash, "methods": [display_name(m) for m in methods],
                                    **settings})
    per_seed, extras = {}, {}
    methods = [display_name(m) for m in methods]
    jobs = [(m, s) for s in range(seeds) for m in methods]
    for method, seed in progress_bar(jobs, desc=kind, unit="fit"):
        key = f"{method}|{seed}"
        res = ckpt.get(key)
        if res is None:
            res = evaluate(method, seed, config)
            ckpt.put(key, res)
        per_seed.setdefault(method, []).append({k: v for k, v in res.items() if not k.startswith("_")})
        for k, v in res.items():
            if k.startswith("_"):
                extras.setdefault(k[1:], {}).setdefault(method, []).append(v)
    out = {"experiment": kind, "preset": ms.preset.name, "preset_hash": ms.preset.hash, "code_version": code_version(),
           "models": len(ms), "settings": settings, "results": _collect(per_seed),
           "seconds": round(time.time() - t0, 2), **extras}
    ckpt.finish()
    return out


def classification(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
                   device="cpu", checkpoint=None) -> dict:
    """Task classification: predict a held-out model's task; top-1/5/10 accuracy."""
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        train, test = classification_split(ms, seed)
        m = make(method, ms, seed, cfg, device).fit(ms.state_of(train), labels[train])
        return topk_accuracy(m.scores(ms.state_of(test)), torch.searchsorted(m.classes_, labels[test]), ks=(1, 5, 10))

    return _run("classification", ms, methods, seeds, config, device, evaluate, checkpoint=checkpoint)


def retrieval_split(ms, seed: int, test_fraction: float = 0.2, queries_per_task: int = 2):
    """(train rows, query rows, gallery rows) with the tasks split ``1 - test_fraction`` / ``test_fraction``."""
    g = np.random.default_rng(seed)
    tasks = g.permutation(sorted(ms.meta["task_id"].unique()))
    n_test = max(1, round(test_fraction * len(tasks)))
    task_col = ms.meta["task_id"].to_numpy()
    test_tasks = set(tasks[:n_test].tolist())
    train = np.flatnonzero(~np.isin(task_col, list(test_tasks)))
    query, gallery = [], []
    for t in sorted(test_tasks):
        rows = g.permutation(np.flatnonzero(task_col == t))
        query += rows[:queries_per_task].tolist()
        gallery += rows[queries_per_task:].tolist()
    return train, np.array(query), np.array(gallery)


def _fit_retrieval_split(ms, method, seed, cfg, device):
    """``method`` trained on the training tasks of retrieval split ``seed``: (method, query rows, gallery rows)."""
    train, query, gallery = retrieval_split(ms, seed)
    return make(method, ms, seed, cfg, device).fit(ms.state_of(train), ms.task_ids[train]), query, gallery


def retrieval(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
              device="cpu", checkpoint=None) -> dict:
    """Task retrieval on tasks unseen in training: rank-1/5/10 and mAP."""
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        m, query, gallery = _fit_retrieval_split(ms, method, seed, cfg, device)
        return retrieval_metrics(m.embed(ms.state_of(query)), labels[query],
                                 m.embed(ms.state_of(gallery)), labels[gallery], ks=(1, 5, 10))

    return _run("retrieval", ms, methods, seeds, config, device, evaluate, checkpoint=checkpoint)


# --- transferability ---------------------------------------------------------------------------

def transfer_ari(ms, dataset=None, source_seed: int = 0, kmeans_seed: int = 0, progress=True) -> np.ndarray:
    """ARI[s, t]: source task ``s``'s model (seed ``source_seed``) clustering target ``t``'s test images.

    The source model's penultimate features of the target task's test images
    are clustered by k-means (k = 2); the adjusted Rand index against the
    target's labels measures how well the source's features transfer.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from .data import load_dataset

    data = dataset or load_dataset(ms.preset)
    tasks = ms.preset.tasks
    targets = [data.task_indices(t, "test") for t in tasks]
    truth = [(data.test_labels[i] == t[1]).numpy() for i, t in zip(targets, tasks)]
    ari = np.zeros((len(tasks), len(tasks)))
    bf16 = features_in_bf16(ms.preset)
    for s in progress_bar(range(len(tasks)), desc="transfer (source tasks)", disable=not progress):
        row = np.flatnonzero((ms.meta["task_id"] == s).to_numpy() & (ms.meta["seed"] == source_seed).to_numpy())
        feats = penultimate_features(ms.model(int(row[0])), data.test_images, data.mean, data.std, bf16=bf16)
        for t, idx in enumerate(targets):
            pred = KMeans(2, n_init=4, random_state=kmeans_seed).fit_predict(feats[idx].numpy())
            ari[s, t] = adjusted_rand_score(truth[t], pred)
    return ari


def transferability(ms, methods=PAPER_METHODS + EXTRA_METHODS, seeds: int = 3,
                    config: LPSConfig | None = None, device="cpu", dataset=None, checkpoint=None,
                    ari: np.ndarray | None = None) -> dict:
    """Spearman correlation between each method's task similarity and measured transfer (ARI).

    As in the paper, similarities come from the retrieval setting: the
    method is trained on 80 % of the tasks and compares pairs of the held-out
    tasks.  Reported: Spearman over all held-out (source, target) pairs, and
    the mean over targets of the per-target Spearman (as the DDS paper does).
    ``ari`` is :func:`transfer_ari`'s matrix when it was computed before.
    """
    ari = transfer_ari(ms, dataset) if ari is None else np.asarray(ari)
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        m, query, gallery = _fit_retrieval_split(ms, method, seed, cfg, device)
        held = np.concatenate([query, gallery])
        tasks, sim = m.task_similarity(ms.state_of(held), labels[held])
        tasks = tasks.tolist()
        xs, ys, per_target = [], [], []
        for j, t in enumerate(tasks):
            sims = [sim[i, j].item() for i, s in enumerate(tasks) if s != t]
            aris = [ari[s, t] for s in tasks if s != t]
            xs += sims
            ys += aris
            per_target.append(spearman(sims, aris))
        return {"spearman": spearman(xs, ys), "spearman_per_target": float(np.nanmean(per_target)),
                "_pairs": [list(p) for p in zip(xs, ys)]}

    out = _run("transferability", ms, methods, seeds, config, device, evaluate, checkpoint=checkpoint)
    out["ari"] = ari.tolist()
    return out


# --- branches and ablation ---------------------------------------------------------------------

def _single_branch(ms, layers, variants, seeds, config, device, kind, second_order_filters=None, checkpoint=None):
    labels = ms.task_ids
    n_tasks = int(labels.max()) + 1
    t0 = time.time()
    config = config or default_config(ms)
    results = {}
    ckpt = Checkpoint(checkpoint, {"kind": kind, "preset": ms.preset.hash, "layers": list(layers), "seeds": seeds,
                                    "lps": config.to_dict(), "g": second_order_filters})
    jobs = [(v, layer, s) for v in variants for layer in layers for s in range(seeds)]
    for (label, filt, chan), layer, seed in progress_bar(jobs, desc=kind, unit="fit"):
        key = f"{label}|{layer}|{seed}"
        if ckpt.get(key) is not None:
            results.setdefault(label, {}).setdefault(layer, []).append(ckpt.get(key))
            continue
        train, test = classification_split(ms, seed)
        net = SecondOrderNet(layer_shapes(ms.conv_weights), n_tasks, {layer: 1.0},
                             second_order_filters=second_order_filters,
                             align_filters=filt, align_channels=chan, seed=seed)
        net.fit(ms.state_of(train), labels[train], config=replace(config, seed=seed), device=device)
        acc = topk_accuracy(net.scores(ms.state_of(test)), labels[test], ks=(1,))["top1"]
        ckpt.put(key, acc)
        results.setdefault(label, {}).setdefault(layer, []).append(acc)
    summary = {label: {layer: _summary(v) for layer, v in per.items()} for label, per in results.items()}
    ckpt.finish()
    return {"experiment": kind, "preset": ms.preset.name, "preset_hash": ms.preset.hash, "models": len(ms),
            "settings": {"seeds": seeds, "lps": config.to_dict(), "layers": list(layers), "device": str(device),
                         "second_order_filters": second_order_filters},
            "results": summary, "seconds": round(time.time() - t0, 2)}


def branches(ms, layers=None, seeds: int = 1, config: LPSConfig | None = None, device="cpu",
             second_order_filters=None, checkpoint=None) -> dict:
    """Top-1 task classification with one branch at a time (the paper's Fig. 3b)."""
    return _single_branch(ms, layers or ms.layers, [("LPS", True, True)], seeds, config, device, "branches",
                          second_order_filters, checkpoint)


ABLATION_VARIANTS = [("both on", True, True), ("filter alignment off", False, True),
                     ("channel alignment off", True, False), ("both off", False, False)]


def ablation(ms, layers=None, seeds: int = 1, config: LPSConfig | None = None, device="cpu",
             second_order_filters=None, checkpoint=None) -> dict:
    """Branches 2..L with filter and/or channel alignment off (the paper's Fig. 3c)."""
    return _single_branch(ms, layers or ms.layers[1:], ABLATION_VARIANTS, seeds, config, device, "ablation",
                          second_order_filters, checkpoint)


def weight_movement(ms) -> "pandas.DataFrame":
    """How far training moved each conv layer from its initialisation, per model.

    The initial weights are re-created from each model's recorded training
    seed (:func:`lpsbook.nets.init_state`). Returns one row per conv layer:
    the mean, minimum and maximum over models of the relative Frobenius
    change ``||W - W0|| / ||W0||``. A set whose weights barely moved cannot
    say much about its tasks through its weights.
    """
    import pandas as pd

    from .nets import init_state
    from .training import model_rng_seed

    rel = {name: [] for name in ms.layers}
    for i, row in enumerate(ms.meta.itertuples()):
        start = init_state(ms.preset.width, ms.preset.in_channels, model_rng_seed(row.task_id, row.train_seed))
        for name in ms.layers:
            w0 = start[name]
            rel[name].append(((ms.conv_weights[name][i] - w0).norm() / w0.norm()).item())
    return pd.DataFrame({"mean": {n: float(np.mean(v)) for n, v in rel.items()},
                         "min": {n: float(np.min(v)) for n, v in rel.items()},
                         "max": {n: float(np.max(v)) for n, v in rel.items()}}).rename_axis("layer")


def table(result: dict, metrics=None) -> "pandas.DataFrame":
    """Results as a table in %: mean and standard deviation per method and metric, the paper's beside them."""
    import pandas as pd

    kind = result["experiment"]
    paper = PAPER.get(kind, {})
    rows = {}
    for method, per_metric in result["results"].items():
        names = metrics or list(per_metric)
        row = {}
        for i, metric in enumerate(names):
            scale = 100 if kind in PAPER else 1
            if method in paper and i < len(paper[method]):
                row[f"{metric} paper"] = paper[method][i]
            elif kind in PAPER:
                row[f"{metric} paper"] = float("nan")
            row[f"{metric} ours"] = round(scale * per_metric[metric]["mean"], 1 if scale == 100 else 3)
            row[f"{metric} ours sd"] = round(scale * per_metric[metric]["std"], 1 if scale == 100 else 3)
        rows[method] = row
    return pd.DataFrame(rows).T


# --- weights or activations: parameter vs activation-based task similarity ---------------------

ACTIVATION_MEASURES = ("rsa", "cka_linear", "cka_rbf", "dds_zscore_cosine", "dds_zscore_pearson",
                       "dds_zscore_euclidean", "dds_none_linear")
PARAMETER_METHODS = ("LPS", "weight statistics", "only one FC layer", "re-basin + FC")


def task_folds(ms, folds: int, seed: int = 0) -> list:
    """The tasks split into ``folds`` disjoint groups (seeded)."""
    tasks = np.random.default_rng(seed).permutation(sorted(ms.meta["task_id"].unique()))
    folds = max(2, min(folds, len(tasks) // 3))  # at least three tasks per fold where possible
    return [sorted(part.tolist()) for part in np.array_split(tasks, folds)]


def related_groups(tasks, data) -> tuple[list, str]:
    """What makes two tasks related, per task: ``([set per task], description)``.

    With superclasses (CIFAR-100's 20 coarse labels), two tasks are related
    when a class of one shares its superclass with a class of the other (their
    classes are disjoint); without them (digits), when they share a class.
    """
    if data.coarse_train_labels is None:
        return [set(t) for t in tasks], "share a class"
    fine, coarse = data.train_labels.numpy(), data.coarse_train_labels.numpy()
    coarse_of = {int(c): int(coarse[np.flatnonzero(fine == c)[0]]) for c in np.unique(fine)}
    return [{coarse_of[c] for c in t} for t in tasks], "share a superclass"


def related_pairs(groups) -> int:
    """How many pairs of tasks are related, given :func:`related_groups`' sets (or the tasks' class sets)."""
    return sum(bool(a & b) for i, a in enumerate(groups) for b in groups[i + 1:])


def _pair_metrics(sim: dict, ari: np.ndarray, tasks_by_fold: list, groups) -> dict:
    """Compare task similarities with transfer (ARI) and with relatedness (``groups`` overlap), within folds."""
    from sklearn.metrics import roc_auc_score

    per_target, hits, chance, s_all, related = [], [], [], [], []
    nan = float("nan")
    for fold in tasks_by_fold:
        for t in fold:
            sources = [s for s in fold if s != t]
            sims = [sim[(s, t)] for s in sources]
            per_target.append(spearman(sims, [ari[s, t] for s in sources]))
            rel = [bool(groups[s] & groups[t]) for s in sources]
            if any(rel):
                hits.append(rel[int(np.argmax(sims))])
                chance.append(np.mean(rel))
            s_all += sims
            related += rel
    both = len(set(related)) == 2
    return {"transfer_spearman_per_target": float(np.nanmean(per_target)) if per_target else nan,
            "related_rank1": float(np.mean(hits)) if hits else nan,
            "related_rank1_chance": float(np.mean(chance)) if chance else nan,
            "related_auc": float(roc_auc_score(related, s_all)) if both else nan}


def similarity(ms, measures=ACTIVATION_MEASURES, methods=PARAMETER_METHODS, folds: int = 5,
               config: LPSConfig | None = None, device="cpu", seeds: int = 1,
               dataset=None, ari: np.ndarray | None = None) -> dict:
    """Weights or activations: every method's task similarity against the same ground truth.

    Tasks are split into ``folds`` groups; every method is fitted on the
    other groups' models and compares the held-out tasks (the retrieval
    setting) with its :meth:`~lpsbook.estimator.SimilarityMethod.task_similarity`.
    The activation measures (``measures``) learn nothing from the fit; they
    compare the models' features on shared probe images.  For each method:
    the mean over targets of the Spearman correlation between similarity and
    measured transfer (ARI), rank-1 retrieval of a related task (see
    :func:`related_groups`), and the ROC AUC of related vs unrelated pairs,
    all on the same within-fold pairs; plus the cost in seconds per 100 model
    pairs. ``ari`` is :func:`transfer_ari`'s matrix when it was computed before.
    """
    from .data import load_dataset

    t0 = time.time()
    config = config or default_config(ms)
    data = dataset or load_dataset(ms.preset)
    ari = transfer_ari(ms, data) if ari is None else np.asarray(ari)
    labels = ms.task_ids
    groups, relation = related_groups(ms.preset.tasks, data)
    results, cost = {}, {}
    for seed in range(seeds):
        parts = task_folds(ms, folds, seed)
        pairs = sum(len(f) * ms.preset.seeds * (len(f) * ms.preset.seeds - 1) / 2 for f in parts)
        for key in progress_bar(list(measures) + list(methods), desc="similarity methods"):
            name, sim, seconds = display_name(key), {}, 0.0
            for fold in parts:
                held = np.flatnonzero(np.isin(labels.numpy(), fold))
                train = np.flatnonzero(~np.isin(labels.numpy(), fold))
                if len(np.unique(labels[train])) < 2 or len(fold) < 2:
                    continue  # too few tasks to train on or to compare (tiny model sets)
                m = make(key, ms, seed, config, device).fit(ms.state_of(train), labels[train])
                t = time.time()
                tasks, tsim = m.task_similarity(ms.state_of(held), labels[held])
                seconds += time.time() - t
                for i, s in enumerate(tasks.tolist()):
                    for j, u in enumerate(tasks.tolist()):
                        sim[(s, u)] = tsim[i, j].item()
            cost.setdefault(name, []).append(seconds / pairs * 100)
            usable = [[t for t in f if any((s, t) in sim for s in f)] for f in parts]
            results.setdefault(name, []).append(_pair_metrics(sim, ari, usable, groups))
    return {"experiment": "similarity", "preset": ms.preset.name, "preset_hash": ms.preset.hash,
            "code_version": code_version(), "models": len(ms), "related": relation,
            "settings": {"folds": folds, "seeds": seeds, "lps": config.to_dict(), "device": str(device)},
            "results": _collect(results),
            "cost_seconds_per_100_pairs": {k: float(np.mean(v)) for k, v in cost.items()},
            "seconds": round(time.time() - t0, 2)}


PROTOCOLS = {"similarity": similarity, "classification": classification, "retrieval": retrieval, "transferability": transferability,
             "branches": branches, "ablation": ablation}


def run_cli(name, modelset_dir, out, device="auto", seeds=None, epochs=None, data_dir=None,
            layers=None, second_order_filters=None):
    """Load a model set, run protocol ``name``, write its JSON to ``out``.

    Every path is checked before the (possibly long) run starts; a path that
    cannot be used raises LpsbookError naming the argument.
    """
    from pathlib import Path

    from . import modelset
    from .data import load_dataset
    from .training import resolve_device

    modelset.check_modelset_dir(modelset_dir, "--modelset")
    out = Path(out).expanduser()
    for path, arg in ((out, "--out"), (Path(f"{out}.partial"), f"--out {out}: its checkpoint")):
        problem = modelset.output_problem(path, folder=False)
        if problem:
            raise LpsbookError(f"{arg} {problem}; give the path of a JSON file in a folder you can write to.")
    ms = modelset.load(modelset_dir)
    dev = resolve_device(device)
    kwargs = {"device": dev}
    if seeds is not None:
        kwargs["seeds"] = seeds
    if epochs is not None:
        cfg = default_config(ms)
        scale = epochs / cfg.epochs
        kwargs["config"] = replace(cfg, epochs=epochs,
                                   milestones=tuple(max(1, round(m * scale)) for m in cfg.milestones))
    if name in ("branches", "ablation"):
        if layers:
            try:
                kwargs["layers"] = [ms.layers[int(i) - 1] for i in str(layers).split(",")]
                assert all(int(i) >= 1 for i in str(layers).split(","))
            except (ValueError, IndexError, AssertionError):
                raise LpsbookError(f"--layers must list conv layers 1..{len(ms.layers)} like 1,2,5; got {layers!r}") from None
        kwargs["second_order_filters"] = second_order_filters
    elif layers or second_order_filters:
        raise LpsbookError("--layers and --second-order-filters apply to the branches and ablation experiments only")
    if data_dir is not None and name in ("transferability", "similarity"):
        kwargs["dataset"] = load_dataset(ms.preset, data_dir)
    if name != "similarity":
        kwargs["checkpoint"] = Path(str(out) + ".partial")
    try:  # before the run: the checkpoint is written beside the results
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LpsbookError(f"--out {out}: could not create {out.parent} ({exc.strerror or exc}); "
                           "choose another --out.") from None
    result = PROTOCOLS[name](ms, **kwargs)
    result["modelset"] = str(modelset_dir)
    result["settings"]["device"] = str(dev)
    write_atomic(out, json.dumps(result, indent=1).encode())
    return result
