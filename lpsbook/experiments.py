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
import os
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from . import code_version
from .errors import LpsbookError
from .lps import LPSConfig, SecondOrderNet, layer_shapes
from .methods import display_name, make, reads
from .metrics import retrieval_metrics, spearman, topk_accuracy
from .progress import bar as progress_bar
from .store import Checkpoint, write_atomic
from .similarity import features_in_bf16, models_features

PAPER = {
    "classification": {"random prediction": (2.0, 9.6, 18.3), "only one FC layer": (5.3, 17.5, 29.3),
                       "Frobenius+FC w/o alignment": (5.5, 18.3, 29.0), "LPS": (79.8, 94.8, 98.0)},
    "retrieval": {"random prediction": (10.0, 41.0, 65.1), "only one FC layer": (15.0, 55.8, 83.3),
                  "Frobenius+FC w/o alignment": (13.3, 58.3, 80.0), "LPS": (80.7, 95.0, 95.8)},
}
PAPER_METHODS = ("random", "fc", "frobenius", "lps")  # ids in lpsbook.methods.REGISTRY
EXTRA_METHODS = ("weight_stats", "rebasin_fc")


def default_config(ms) -> LPSConfig:
    """Second-order training settings: the paper's on its recipe (cifar100), a faster mini-batch one otherwise."""
    if ms.preset.follows_paper:
        return LPSConfig.paper()
    return LPSConfig(epochs=60, batch_size=8, lr=0.05, milestones=(30, 45))


def _summary(values: list) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "values": arr.tolist()}


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


@dataclass
class ProtocolResult:
    """What every protocol returns.

    Attributes
    ----------
    experiment : str
        The protocol's name.
    preset, preset_hash : the model set's preset.
    code_version : str
        :func:`lpsbook.code_version` of the code that computed it.
    models : int
    settings : dict
        Everything the numbers depend on besides the model set.
    results : dict
        ``{row: {metric: {"mean", "std", "values"}}}``: a row is a method (or
        an ablation variant), ``values`` has one entry per split (seed), in
        order; ``std`` is the sample sd over splits.
    seconds : float
        Wall-clock time of the run (not of reading it from a cache).
    extras : dict
        Protocol-specific data (e.g. the transfer matrix).

    Indexing (``result["results"]``, ``result["ari"]``) reads fields and
    extras alike, so a result read back from JSON (:meth:`from_dict`) and a
    fresh one are used the same way.
    """

    experiment: str
    preset: str
    preset_hash: str
    code_version: str
    models: int
    settings: dict
    results: dict
    seconds: float
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: the fields, with the extras at the top level."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extras"}
        return {**d, **self.extras}

    @classmethod
    def from_dict(cls, d: dict) -> "ProtocolResult":
        names = {f.name for f in fields(cls)} - {"extras"}
        return cls(**{k: d[k] for k in names}, extras={k: v for k, v in d.items() if k not in names})

    def __getitem__(self, key):
        return self.extras[key] if key in self.extras else getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.extras or key in {f.name for f in fields(self)}

    def get(self, key, default=None):
        """``result[key]``, or ``default`` when there is no such field or extra (as a dict's ``get``)."""
        return self[key] if key in self else default

    def mean(self, row: str, metric: str) -> float:
        return self.results[row][metric]["mean"]

    def sd(self, row: str, metric: str) -> float:
        return self.results[row][metric]["std"]


def run_protocol(kind: str, ms, jobs, evaluate, settings: dict, checkpoint=None) -> ProtocolResult:
    """Run every job of a protocol, resumably, and summarise over splits.

    Parameters
    ----------
    kind : str
        The protocol's name.
    ms : ModelSet
    jobs : list of (row, part, seed)
        One fit each: ``row`` is where its numbers are reported (a method),
        ``part`` an optional sub-key (a layer; ``""`` if none), ``seed`` the split.
    evaluate : callable (row, part, seed) -> dict
        ``{metric: value}``; keys starting with ``_`` are extras, kept per
        row in job order (``"_pairs"`` becomes ``extras["pairs"][row]``).
    settings : dict
        What the run depends on; keys the checkpoint, with the preset and the code version.
    checkpoint : path, optional
        Finished jobs are kept there, so an interrupted run resumes; removed at the end.
    """
    t0 = time.time()
    ckpt = Checkpoint(checkpoint, {"kind": kind, "preset": ms.preset.hash, **settings})
    per_seed, extras = {}, {}
    for row, part, seed in progress_bar(jobs, desc=kind, unit="fit"):
        key = f"{row}|{part}|{seed}"
        res = ckpt.get(key)
        if res is None:
            res = evaluate(row, part, seed)
            ckpt.put(key, res)
        per_seed.setdefault(row, {}).setdefault(seed, {}).update({k: v for k, v in res.items() if not k.startswith("_")})
        for k, v in res.items():
            if k.startswith("_"):
                extras.setdefault(k[1:], {}).setdefault(row, []).append(v)
    results = {}
    for row, by_seed in per_seed.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        results[row] = {metric: _summary([r[metric] for r in runs]) for metric in runs[0]}
    ckpt.finish()
    return ProtocolResult(kind, ms.preset.name, ms.preset.hash, code_version(), len(ms), settings, results,
                          round(time.time() - t0, 2), extras)


def _method_protocol(kind, ms, methods, seeds, config, device, evaluate, checkpoint) -> ProtocolResult:
    """A protocol of one fit per (method, split): ``evaluate(method, seed, config) -> {metric: value}``."""
    config = config or default_config(ms)
    names = [display_name(m) for m in methods]
    settings = {"methods": names, "seeds": seeds, "lps": config.to_dict(), "device": str(device)}
    jobs = [(m, "", s) for s in range(seeds) for m in names]
    return run_protocol(kind, ms, jobs, lambda m, _, s: evaluate(m, s, config), settings, checkpoint)


def classification(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
                   device="cpu", checkpoint=None) -> dict:
    """Task classification: predict a held-out model's task; top-1/5/10 accuracy.

    Each fit's cost is kept too (``result["cost"][method]``, one per split):
    seconds to fit, seconds to embed 100 models (scaled from the test models),
    and the peak memory above the level before the fit (:class:`PeakMemory`).
    """
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        train, test = classification_split(ms, seed)
        with PeakMemory() as peak:
            t0 = time.perf_counter()
            m = make(method, ms, seed, cfg, device).fit(ms.state_of(train), labels[train])
            t1 = time.perf_counter()
            m.embed(ms.state_of(test[:100]))
            t2 = time.perf_counter()
        return {**topk_accuracy(m.scores(ms.state_of(test)), torch.searchsorted(m.classes_, labels[test]), ks=(1, 5, 10)),
                "_cost": {"fit seconds": t1 - t0, "seconds to embed 100 models": (t2 - t1) * 100 / min(100, len(test)),
                          "peak memory MiB": peak.mib}}

    return _method_protocol("classification", ms, methods, seeds, config, device, evaluate, checkpoint)


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


FITTED_ON_RETRIEVAL_SPLITS: dict = {}  # (model set, method, split, settings) -> fitted method: retrieval and
# transferability fit the same method on the same split; the second protocol reuses the fit (same process)


def _fit_retrieval_split(ms, method, seed, cfg, device):
    """``method`` trained on the training tasks of retrieval split ``seed``: (method, query rows, gallery rows)."""
    train, query, gallery = retrieval_split(ms, seed)
    models = tuple(zip(ms.meta["task_id"].tolist(), ms.meta["seed"].tolist()))
    key = (str(ms.path), ms.preset.hash, models, display_name(method), seed, repr(cfg), str(device), code_version())
    if key not in FITTED_ON_RETRIEVAL_SPLITS:
        while len(FITTED_ON_RETRIEVAL_SPLITS) >= 32:
            FITTED_ON_RETRIEVAL_SPLITS.pop(next(iter(FITTED_ON_RETRIEVAL_SPLITS)))
        FITTED_ON_RETRIEVAL_SPLITS[key] = make(method, ms, seed, cfg, device).fit(ms.state_of(train),
                                                                                  ms.task_ids[train])
    return FITTED_ON_RETRIEVAL_SPLITS[key], query, gallery


def retrieval(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
              device="cpu", checkpoint=None) -> dict:
    """Task retrieval on tasks unseen in training: rank-1/5/10 and mAP."""
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        m, query, gallery = _fit_retrieval_split(ms, method, seed, cfg, device)
        return retrieval_metrics(m.embed(ms.state_of(query)), labels[query],
                                 m.embed(ms.state_of(gallery)), labels[gallery], ks=(1, 5, 10))

    return _method_protocol("retrieval", ms, methods, seeds, config, device, evaluate, checkpoint)


# --- transferability ---------------------------------------------------------------------------

def transfer_scores(ms, dataset=None, source_seed: int = 0, kmeans_seed: int = 0, progress=True) -> dict:
    """Measured transfer and the data-based references, for every (source task, target task).

    For source ``s`` (its model of seed ``source_seed``) and target ``t``:

    * ``ari[s, t]``: the source's penultimate features of the target task's
      test images, clustered by k-means (k = 2), against the target's
      labels (adjusted Rand index): how well the source's features transfer;
    * ``leep[s, t]``: :func:`lpsbook.metrics.leep` of the source's class
      probabilities on those images;
    * ``logme[s, t]``: :func:`lpsbook.metrics.logme` of its features.

    LEEP and LogME read the target's labels; a weights-only method does not.
    Returns ``{"ari": [T, T], "leep": [T, T], "logme": [T, T]}`` (numpy).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from .data import load_dataset
    from .metrics import leep, logme

    data = dataset or load_dataset(ms.preset)
    tasks = ms.preset.tasks
    targets = [data.task_indices(t, "test") for t in tasks]
    truth = [(data.test_labels[i] == t[1]).numpy() for i, t in zip(targets, tasks)]
    out = {k: np.zeros((len(tasks), len(tasks))) for k in ("ari", "leep", "logme")}
    bf16 = features_in_bf16(ms.preset)
    sources, pack = [ms.index_of(s, source_seed) for s in range(len(tasks))], 5
    for s in progress_bar(range(len(tasks)), desc="transfer (source tasks)", disable=not progress):
        if s % pack == 0:  # the next sources' features on every test image, computed together
            chunk = models_features(ms.state_of(sources[s:s + pack]), data.test_images, data.mean, data.std,
                                    bf16=bf16, pack=pack)
        feats = chunk[s % pack]
        w, b = ms.state["fc.weight"][sources[s]], ms.state["fc.bias"][sources[s]]
        probs = torch.softmax(feats @ w.float().T + b.float(), dim=1).numpy()
        for t, idx in enumerate(targets):
            pred = KMeans(2, n_init=4, random_state=kmeans_seed).fit_predict(feats[idx].numpy())
            out["ari"][s, t] = adjusted_rand_score(truth[t], pred)
            out["leep"][s, t] = leep(probs[idx], truth[t])
            out["logme"][s, t] = logme(feats[idx].numpy(), truth[t])
    return out


def transfer_ari(ms, dataset=None, source_seed: int = 0, kmeans_seed: int = 0, progress=True) -> np.ndarray:
    """``ARI[s, t]`` alone: see :func:`transfer_scores`."""
    return transfer_scores(ms, dataset, source_seed, kmeans_seed, progress)["ari"]


def reference_transfer(ms, scores: dict, seeds: int = 3) -> ProtocolResult:
    """How well the data-based references (LEEP, LogME) predict measured transfer, on the transferability
    protocol's pairs: per split, the held-out tasks of :func:`retrieval_split`, the mean over targets of the
    Spearman correlation between the reference and ARI over the other held-out sources."""
    ari = np.asarray(scores["ari"])

    def evaluate(name, _, seed):
        _, query, gallery = retrieval_split(ms, seed)
        held = sorted(set(ms.task_ids[np.concatenate([query, gallery])].tolist()))
        ref = np.asarray(scores[name])
        per_target = [spearman([ref[s, t] for s in held if s != t], [ari[s, t] for s in held if s != t])
                      for t in held]
        return {"spearman_per_target": float(np.nanmean(per_target))}

    jobs = [(name, "", s) for s in range(seeds) for name in ("leep", "logme")]
    return run_protocol("reference_transfer", ms, jobs, evaluate, {"seeds": seeds})


def transferability(ms, methods=PAPER_METHODS + EXTRA_METHODS, seeds: int = 3,
                    config: LPSConfig | None = None, device="cpu", dataset=None, checkpoint=None,
                    ari: np.ndarray | None = None) -> dict:
    """Spearman correlation between each method's task similarity and measured transfer (ARI).

    As in the paper, similarities come from the retrieval setting: the
    method is trained on 80 % of the tasks and compares pairs of the held-out
    tasks.  Reported: Spearman over all held-out (source, target) pairs, the
    mean over targets of the per-target Spearman (as the DDS paper does), and
    the ROC AUC of related vs unrelated held-out pairs (:func:`related_groups`).
    ``ari`` is :func:`transfer_ari`'s matrix when it was computed before.
    """
    from sklearn.metrics import roc_auc_score

    from .data import load_dataset

    data = dataset or load_dataset(ms.preset)
    ari = transfer_ari(ms, data) if ari is None else np.asarray(ari)
    groups = related_groups(ms.preset.tasks, data)[0]
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        m, query, gallery = _fit_retrieval_split(ms, method, seed, cfg, device)
        held = np.concatenate([query, gallery])
        tasks, sim = m.task_similarity(ms.state_of(held), labels[held])
        tasks = tasks.tolist()
        xs, ys, per_target, related = [], [], [], []
        for j, t in enumerate(tasks):
            sims = [sim[i, j].item() for i, s in enumerate(tasks) if s != t]
            aris = [ari[s, t] for s in tasks if s != t]
            xs += sims
            ys += aris
            related += [bool(groups[s] & groups[t]) for s in tasks if s != t]
            per_target.append(spearman(sims, aris))
        auc = roc_auc_score(related, xs) if len(set(related)) == 2 else float("nan")
        return {"spearman": spearman(xs, ys), "spearman_per_target": float(np.nanmean(per_target)),
                "related_auc": float(auc), "_pairs": [list(p) for p in zip(xs, ys)]}

    out = _method_protocol("transferability", ms, methods, seeds, config, device, evaluate, checkpoint)
    out.extras["ari"] = ari.tolist()
    return out


# --- branches and ablation ---------------------------------------------------------------------

def fit_branch(ms, layer: str, train, test, config: LPSConfig, second_order_filters=None,
               align_filters: bool = True, align_channels: bool = True, seed: int = 0, device="cpu") -> tuple:
    """One LPS branch (layer ``layer`` alone) fitted on the models ``train``: ``(net, top-1 on test)``."""
    labels = ms.task_ids
    net = SecondOrderNet(layer_shapes(ms.conv_weights), int(labels.max()) + 1, {layer: 1.0},
                         second_order_filters=second_order_filters,
                         align_filters=align_filters, align_channels=align_channels, seed=seed)
    net.fit({layer: ms.conv_weights[layer][train]}, labels[train], config=replace(config, seed=seed), device=device)
    top1 = topk_accuracy(net.scores({layer: ms.conv_weights[layer][test]}), labels[test], ks=(1,))["top1"]
    return net, top1


def _single_branch(ms, layers, variants, seeds, config, device, kind, second_order_filters=None, checkpoint=None):
    config = config or default_config(ms)
    settings = {"seeds": seeds, "lps": config.to_dict(), "layers": list(layers), "device": str(device),
                "second_order_filters": second_order_filters}
    align = {label: (filt, chan) for label, filt, chan in variants}
    jobs = [(label, layer, s) for label, _, _ in variants for layer in layers for s in range(seeds)]

    def evaluate(label, layer, seed):
        train, test = classification_split(ms, seed)
        return {layer: fit_branch(ms, layer, train, test, config, second_order_filters, *align[label], seed, device)[1]}

    return run_protocol(kind, ms, jobs, evaluate, settings, checkpoint)


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
        start = init_state(ms.preset.width, ms.preset.in_channels, model_rng_seed(ms.preset.task_number(row.task_id), row.train_seed))
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
PARAMETER_METHODS = ("lps", "weight_stats", "fc", "rebasin_fc")


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
               dataset=None, ari: np.ndarray | None = None, checkpoint=None) -> "ProtocolResult":
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

    config = config or default_config(ms)
    data = dataset or load_dataset(ms.preset)
    ari = transfer_ari(ms, data) if ari is None else np.asarray(ari)
    labels = ms.task_ids
    groups, relation = related_groups(ms.preset.tasks, data)
    names = {display_name(k): k for k in list(measures) + list(methods)}
    settings = {"methods": list(names), "folds": folds, "seeds": seeds, "lps": config.to_dict(), "device": str(device)}

    def evaluate(name, _, seed):
        parts = task_folds(ms, folds, seed)
        sim, seconds = {}, 0.0
        for fold in parts:
            held = np.flatnonzero(np.isin(labels.numpy(), fold))
            train = np.flatnonzero(~np.isin(labels.numpy(), fold))
            if len(np.unique(labels[train])) < 2 or len(fold) < 2:
                continue  # too few tasks to train on or to compare (tiny model sets)
            m = make(names[name], ms, seed, config, device).fit(ms.state_of(train), labels[train])
            t = time.time()
            tasks, tsim = m.task_similarity(ms.state_of(held), labels[held])
            seconds += time.time() - t
            for i, s in enumerate(tasks.tolist()):
                for j, u in enumerate(tasks.tolist()):
                    sim[(s, u)] = tsim[i, j].item()
        pairs = sum(len(f) * ms.preset.seeds * (len(f) * ms.preset.seeds - 1) / 2 for f in parts)
        usable = [[t for t in f if any((s, t) in sim for s in f)] for f in parts]
        return {**_pair_metrics(sim, ari, usable, groups), "_cost": seconds / pairs * 100}

    jobs = [(name, "", seed) for seed in range(seeds) for name in names]
    out = run_protocol("similarity", ms, jobs, evaluate, settings, checkpoint)
    out.extras = {"related": relation,
                  "cost_seconds_per_100_pairs": {k: float(np.mean(v)) for k, v in out.extras.pop("cost").items()}}
    return out




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
        os.environ["LPSBOOK_DATA"] = str(data_dir)  # where the activation measures find their probe images too
    kwargs["checkpoint"] = Path(str(out) + ".partial")
    try:  # before the run: the checkpoint is written beside the results
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LpsbookError(f"--out {out}: could not create {out.parent} ({exc.strerror or exc}); "
                           "choose another --out.") from None
    result = PROTOCOLS[name](ms, **kwargs)
    result.extras["modelset"] = str(modelset_dir)
    result.settings["device"] = str(dev)
    write_atomic(out, json.dumps(result.to_dict(), indent=1).encode())
    return result


# --- the alignment seen through briefly trained branches (chapter 3) --------------------------

@torch.no_grad()
def score_matrices(net: SecondOrderNet, layer: str, thetas, chunk: int = 32):
    """Eq. 6/7 scores of many models through one branch, before and after the sort of Eq. 8.

    Parameters
    ----------
    net : SecondOrderNet
    layer : str
    thetas : Tensor [M, g, c, k, k]
    chunk : int
        Models per step (the Eq. 5 tensor has ``g * c * g' * c`` entries per model).

    Returns
    -------
    raw, sorted : Tensor [M, g, g'] (float64)
    """
    from .lps import filter_scores, sort_filters

    branch = net.branches[net.names.index(layer)]
    phi = branch.phi.detach().double()
    raw = torch.cat([filter_scores(thetas[i:i + chunk].double(), phi, branch.align_channels)
                     for i in range(0, len(thetas), chunk)])
    return raw, sort_filters(raw)


def alignment_agreement(ms, net: SecondOrderNet, layers=None, rows=None) -> "pandas.DataFrame":
    """Do models of the same task have alike score matrices, with and without the sort of Eq. 8?

    Two models are compared by the Pearson correlation of their flattened
    ``s[g, g']`` (Eq. 6/7), once in the stored filter order and once with
    every column sorted (Eq. 8).  Reported per layer: the fraction of models
    whose most correlated other model is of the same task (1-NN), and the
    mean correlation of same-task pairs minus that of different-task pairs.
    Sorting raises every correlation (sorted columns are all monotone), so
    compare the same-task and different-task numbers, not the raw level.

    Returns
    -------
    pandas.DataFrame, indexed by layer
        Columns ``1-NN stored order``, ``1-NN sorted``, ``gap stored order``,
        ``gap sorted``; ``attrs["chance"]`` is the 1-NN rate of a random neighbour.
    """
    import pandas as pd

    from .nets import short_layer
    from .training import one_thread

    idx = torch.arange(len(ms)) if rows is None else torch.as_tensor(rows)
    tasks = ms.task_ids[idx]
    same = tasks[:, None] == tasks[None, :]
    off = ~torch.eye(len(idx), dtype=torch.bool)
    out = []
    with one_thread():
        for layer in layers or net.names:
            row = {"layer": short_layer(layer)}
            for name, s in zip(("stored order", "sorted"), score_matrices(net, layer, ms.conv_weights[layer][idx])):
                z = s.flatten(1)
                z = z - z.mean(dim=1, keepdim=True)
                z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
                corr = z @ z.T
                nearest = corr.masked_fill(~off, -float("inf")).argmax(dim=1)
                row[f"1-NN {name}"] = (tasks[nearest] == tasks).double().mean().item()
                row[f"gap {name}"] = corr[same & off].mean().item() - corr[~same].mean().item()
            out.append(row)
    table = pd.DataFrame(out).set_index("layer")
    table.attrs["chance"] = ((same & off).sum() / off.sum()).item()
    return table


@dataclass
class BriefLPS:
    """One LPS branch per conv layer, each trained alone for a few epochs.

    Attributes
    ----------
    net : SecondOrderNet
        All branches together (weights ``w_l = 1``); only the branches'
        ``phi`` matter for the alignment views.
    heldout_top1 : dict {layer: float}
        Task-classification top-1 of each branch alone on the held-out models.
    heldout : list of int
        Rows of the held-out models: the test side of
        :func:`classification_split` (the same split as chapters 5 and 6).
    chance : float
        ``1 / tasks``.
    seconds : float
        Training time when the result was computed (not when read from the cache).
    settings : dict
    """

    net: SecondOrderNet
    heldout_top1: dict
    heldout: list
    chance: float
    seconds: float
    settings: dict

    def describe(self) -> str:
        """The training settings in two short lines."""
        s = self.settings
        return (f"{len(self.heldout_top1)} branches, each trained alone: {s['epochs']} epochs, batch "
                f"{s['batch_size']}, lr {s['lr']} (/10 from epoch {s['milestones'][0]}), "
                f"g′ = {s['second_order_filters']}\n"
                f"held out: the test models of classification split {s['seed']}, as in chapters 5-6")


def train_briefly(ms, epochs: int = 5, second_order_filters: int = 8, batch_size: int = 8, lr: float = 0.05,
                  seed: int = 0, cache: bool = True, cache_root=None, progress: bool = False) -> BriefLPS:
    """Train one LPS branch per conv layer for a few epochs (cached on disk).

    Each branch is trained alone (as in the paper's Fig. 3b, through
    :func:`fit_branch`) on the training models of :func:`classification_split`
    ``seed``; its top-1 on the split's test models is kept.

    Parameters
    ----------
    ms : ModelSet
    epochs, batch_size, lr, seed : training settings (the learning rate is
        divided by 10 for the last quarter of the epochs); ``seed`` also
        picks the split.
    second_order_filters : int
        ``g'`` of every branch.
    cache : bool
        Keep the result with :func:`lpsbook.store.cached_json` (keyed by the
        model set's preset, these settings and the code version).
    cache_root : path, optional
        Folder of the cache (default ``data/``).
    progress : bool
        Show a progress bar over the layers while training.
    """
    from . import store
    from .training import one_thread

    settings = {"epochs": epochs, "second_order_filters": second_order_filters, "batch_size": batch_size,
                "lr": lr, "seed": seed, "milestones": [max(1, epochs - max(1, epochs // 4))]}
    config = LPSConfig(epochs=epochs, batch_size=batch_size, lr=lr, milestones=tuple(settings["milestones"]))

    def compute():
        train, test = classification_split(ms, seed)
        start, state, top1 = time.perf_counter(), {}, {}
        with one_thread():
            for name in progress_bar(ms.layers, desc="LPS branches", disable=not progress, leave=False):
                net, top1[name] = fit_branch(ms, name, train, test, config, second_order_filters, seed=seed)
                state[name] = {k: v.tolist() for k, v in net.branches[0].state_dict().items()}
        return {"state": state, "heldout_top1": top1, "heldout": test.tolist(), "seconds": time.perf_counter() - start}

    result = store.cached_json("brief-lps", settings, compute, ms.preset, cache_root) if cache else compute()
    net = SecondOrderNet(layer_shapes(ms.conv_weights), len(ms.preset.tasks), {n: 1.0 for n in ms.layers},
                         second_order_filters=second_order_filters, seed=seed)
    for name, branch in zip(net.names, net.branches):
        branch.load_state_dict({k: torch.tensor(v) for k, v in result["state"][name].items()})
    net.eval()
    return BriefLPS(net, result["heldout_top1"], result["heldout"], 1.0 / len(ms.preset.tasks),
                    result["seconds"], settings)


def alignment_comparison(ms, brief: BriefLPS) -> "pandas.DataFrame":
    """1-NN same-task rate per layer on ``brief``'s held-out models (:func:`alignment_agreement`).

    Columns: the trained branches' scores in stored order and sorted (Eq. 8),
    and an untrained (random) ``phi``'s sorted scores, the control.
    ``attrs["chance"]`` is the rate of a random neighbour.
    """
    untrained = SecondOrderNet(layer_shapes(ms.conv_weights), len(ms.preset.tasks), dict.fromkeys(ms.layers, 1.0),
                               second_order_filters=brief.settings["second_order_filters"], seed=brief.settings["seed"] + 1)
    trained = alignment_agreement(ms, brief.net, rows=brief.heldout)
    table = trained[["1-NN stored order", "1-NN sorted"]].set_axis(
        ["trained φ, stored order", "trained φ, sorted (Eq. 8)"], axis=1)
    table["random φ, sorted (Eq. 8)"] = alignment_agreement(ms, untrained, rows=brief.heldout)["1-NN sorted"]
    table.attrs["chance"] = trained.attrs["chance"]
    return table


# --- two analyses of chapters 4 and 7 ------------------------------------------------------------

def model_maps(ms, layer_index: int = 1) -> dict:
    """2-D UMAP maps of all models: by raw conv weights and by LPS features.

    The LPS branch of layer ``layer_index`` (1-based) is trained on the
    classification split 0, so the map shows training and held-out models
    alike.  Returns ``{"task_id": [...], "maps": {title: [[x, y], ...]}, "held_out": [...]}``.
    """
    import warnings

    import umap

    from .lps import LPS

    name = ms.layers[layer_index - 1]
    train, test = classification_split(ms, 0)
    labels = ms.task_ids
    lps = LPS(default_config(ms), branch_weights={name: 1.0}).fit(ms.state_of(train), labels[train])

    def reducer(x):
        with warnings.catch_warnings():  # a fixed random_state runs UMAP on one thread, and says so
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return umap.UMAP(n_neighbors=15, random_state=0).fit_transform(x).tolist()

    return {"task_id": labels.tolist(), "held_out": sorted(int(i) for i in test),
            "maps": {f"raw weights of {name}": reducer(ms.conv_weights[name].flatten(1).numpy()),
                     f"LPS features of {name}": reducer(lps.embed(ms.state).numpy())}}


def training_length_comparison(ms, longer, seeds: int = 3, methods=("random", "lps", "weight_stats")) -> dict:
    """Task classification on the models of ``ms`` whose tasks ``longer`` has, beside ``longer`` itself.

    ``longer`` is a model set of some of ``ms``'s tasks trained for longer;
    the two are compared on the same protocol, with each recipe's epochs and
    mean model accuracy: ``{label: classification result}``.
    """
    tasks = list(longer.preset.tasks)
    short = ms.subset(ms.meta["classes"].map(tuple).isin(tasks).to_numpy())
    short.meta["task_id"] = short.meta["task_id"].rank(method="dense").astype(int) - 1
    out = {}
    factor = longer.preset.epochs / ms.preset.epochs
    for label, s in (("recipe of the book", short), (f"{factor:g}x longer", longer)):
        r = classification(s, methods=methods, seeds=seeds, config=default_config(s))
        r.extras.update(epochs=s.preset.epochs, test_acc_mean=float(s.meta["test_acc"].mean()), tasks=len(tasks))
        out[label] = r.to_dict()
    return out


# --- reading results: the paper's claims, decided by fixed rules -------------------------------

def means(result: dict, metric: str, scale: float = 1.0) -> dict:
    """{method: scale x mean over seeds of ``metric``} of a protocol's result."""
    return {m: scale * r[metric]["mean"] for m, r in result["results"].items() if metric in r}


def measure_families(result: dict) -> tuple:
    """(activation measures, weight methods) of a weights-or-activations result, in its order."""
    from . import methods

    names = list(result["results"])
    return ([m for m in names if methods.reads(m) == "activations"],
            [m for m in names if methods.reads(m) == "weights"])


def chance_topk(n_tasks: int, ks=(1, 5, 10)) -> dict:
    """Chance level (%) of top-k task classification among ``n_tasks`` tasks."""
    return {f"top{k}": 100 * min(k, n_tasks) / n_tasks for k in ks}


def spread(result: dict, method: str, metric: str, scale: float = 100) -> tuple:
    """``(mean, sd)`` over splits of one method's metric, times ``scale``."""
    r = result["results"][method][metric]
    return scale * r["mean"], scale * r["std"]


def paper_claims(cls: dict, ret: dict, n_tasks: int):
    """The paper's claims about Tables 1-2, each with its number, ours (mean +- sd over splits) and a verdict.

    The verdicts are decided by fixed rules, with the spread over splits as the margin:

    * *far above chance*: LPS top-1 minus two sd is above three times chance;
    * *beats the symmetry-blind baselines*: LPS top-1 minus its sd is above the
      better of one FC layer and Frobenius+FC plus that one's sd (spreads do not overlap);
    * *baselines near chance*: both of those are below five times chance;
    * *retrieval above random*: the same non-overlap rule on rank-1 against random prediction;
    * *the paper's level*: LPS top-1 plus two sd reaches the paper's 79.8 % less five points.
    """
    chance = 100 / n_tasks
    lps, lps_sd = spread(cls, "LPS", "top1")
    blind = max(("only one FC layer", "Frobenius+FC w/o alignment"), key=lambda m: spread(cls, m, "top1")[0])
    base, base_sd = spread(cls, blind, "top1")
    r_lps, r_lps_sd = spread(ret, "LPS", "rank1")
    r_rand, r_rand_sd = spread(ret, "random prediction", "rank1")
    paper_cls, paper_ret = PAPER["classification"], PAPER["retrieval"]
    rows = [
        ("LPS reads the task of held-out models far above chance (Table 1)",
         f"{paper_cls['LPS'][0]:.1f} % top-1, chance 2.0 %", f"{lps:.1f} ± {lps_sd:.1f} %, chance {chance:.1f} %",
         lps - 2 * lps_sd > 3 * chance),
        ("LPS beats the baselines that ignore the symmetry (Table 1)",
         f"{paper_cls['LPS'][0]:.1f} vs at most {paper_cls['Frobenius+FC w/o alignment'][0]:.1f} %",
         f"{lps:.1f} ± {lps_sd:.1f} vs {base:.1f} ± {base_sd:.1f} % ({blind})", lps - lps_sd > base + base_sd),
        ("those baselines stay near chance (Table 1)",
         f"at most {paper_cls['Frobenius+FC w/o alignment'][0]:.1f} %", f"at most {base:.1f} %", base < 5 * chance),
        ("LPS retrieves the query's task first far more often than random (Table 2)",
         f"{paper_ret['LPS'][0]:.1f} vs {paper_ret['random prediction'][0]:.1f} % rank-1",
         f"{r_lps:.1f} ± {r_lps_sd:.1f} vs {r_rand:.1f} ± {r_rand_sd:.1f} %", r_lps - r_lps_sd > r_rand + r_rand_sd),
        ("LPS reaches the paper's level (Table 1)", f"{paper_cls['LPS'][0]:.1f} % top-1", f"{lps:.1f} ± {lps_sd:.1f} %",
         lps + 2 * lps_sd >= paper_cls["LPS"][0] - 5),
    ]
    return verdict_table(rows)


def figure3_claims(tr: dict, br: dict, ab: dict, n_tasks: int):
    """The paper's claims about its Figure 3, each with what we measured and a verdict by a fixed rule.

    * (a) *LPS similarity rises with transfer*: LPS's mean per-target Spearman
      with measured transfer, minus its sd over splits, is above 0.1;
    * (b) *the first branch carries the most*: branch 1's top-1 is at least
      every other measured branch's;
    * (b) *the deepest branches are at chance*: measured branches from layer 13
      on average below twice chance;
    * (c) *each alignment matters*: with the sort over filters (or the max over
      channels) switched off, top-1 drops by more than one point and more than
      its sd over splits, on the ablated branch where LPS does best with both on
      (the paper finds the drop on branches 2-19; where those sit at chance,
      as on our CPU model sets, only the best branch can show one).
    """
    from .nets import layer_number

    chance = 100 / n_tasks
    rho, rho_sd = spread(tr, "LPS", "spearman_per_target", scale=1)
    per_branch = {layer: 100 * v["mean"] for layer, v in br["results"]["LPS"].items()}
    layers = list(per_branch)
    first, rest = per_branch[layers[0]], max(per_branch[layer] for layer in layers[1:])
    deep = [per_branch[layer] for i, layer in enumerate(layers) if layer_number(layer) >= 13]
    deep_mean = sum(deep) / len(deep) if deep else float("nan")
    on = ab["results"]["both on"]
    best = max(on, key=lambda layer: on[layer]["mean"])
    margin = max(1.0, 100 * on[best]["std"])
    drop_f = 100 * (on[best]["mean"] - ab["results"]["filter alignment off"][best]["mean"])
    drop_c = 100 * (on[best]["mean"] - ab["results"]["channel alignment off"][best]["mean"])
    where = f" at branch {layer_number(best)}"
    rows = [
        ("(a) LPS similarity rises with transfer", "roughly proportional",
         f"Spearman {rho:+.2f} ± {rho_sd:.2f}", rho - rho_sd > 0.1),
        ("(b) the first branch carries the most", "79.8 % top-1 at branch 1",
         f"{first:.1f} % at branch 1, best other {rest:.1f} %", first >= rest),
        ("(b) the deepest branches are at chance", "branches 13-19 at chance",
         f"{deep_mean:.1f} % (chance {chance:.1f} %)", deep_mean < 2 * chance),
        ("(c) filter alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_f:+.1f} points without it{where}", drop_f > margin),
        ("(c) channel alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_c:+.1f} points without it{where}", drop_c > margin),
    ]
    return verdict_table(rows)


def verdict_table(rows: list):
    """(claim, paper, ours, holds) rows as a table indexed by claim, with "yes"/"no" verdicts."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"]).set_index("claim")
    table["holds"] = table["holds"].map({True: "yes", False: "no"})
    return table


# --- what a method costs ---------------------------------------------------------------------------

class PeakMemory:
    """The process's peak resident memory above its level at the start, sampled every few milliseconds.

    ``with PeakMemory() as peak: ...`` then ``peak.mib``.
    """

    def __init__(self, every: float = 0.005):
        self.every, self.mib = every, 0.0

    def __enter__(self):
        import threading

        import psutil

        proc = psutil.Process()
        self._start = self._peak = proc.memory_info().rss
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss)
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mib = (self._peak - self._start) / 2 ** 20
        return False


def costs(classification_result) -> dict:
    """Mean over splits of every method's cost in a :func:`classification` result: ``{method: {cost: value}}``."""
    out = {}
    for m, runs in classification_result["cost"].items():
        out[m] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        out[m]["reads"] = reads(m)
    return out


# --- reading the whole network (chapter 9) -----------------------------------------------------------

STAGES = {"stem": ("conv1.", "bn1."), "stage 1": ("layer1.",), "stage 2": ("layer2.",), "stage 3": ("layer3.",)}


def stages(ms, seeds: int = 1, config: LPSConfig | None = None, device="cpu", checkpoint=None,
           parts=tuple(STAGES)) -> ProtocolResult:
    """Which part of the network carries the task: the graph learner reading one part only (top-1).

    The whole-network counterpart of :func:`branches`: the same classification
    splits and settings as the registry's ``graph``, the learner restricted to
    the tensors of the stem or of one stage (the whole network is the
    ``graph`` row of :func:`classification`).
    """

    labels = ms.task_ids
    settings = {"seeds": seeds, "parts": list(parts), "device": str(device)}

    def evaluate(part, _, seed):
        train, test = classification_split(ms, seed)
        m = make("graph", ms, seed, config, device)
        m.keys = STAGES[part]
        m.fit(ms.state_of(train), labels[train])
        return {"top1": topk_accuracy(m.scores(ms.state_of(test)), torch.searchsorted(m.classes_, labels[test]),
                                      ks=(1,))["top1"]}

    return run_protocol("stages", ms, [(p, "", s) for s in range(seeds) for p in parts], evaluate, settings, checkpoint)


def probe_counts(ms, counts=(1, 2, 4), seeds: int = 1, config: LPSConfig | None = None, device="cpu",
                 checkpoint=None) -> ProtocolResult:
    """How many probe images probing needs: classification top-1 with ``counts`` probes."""
    from .probing import Probing

    labels = ms.task_ids
    settings = {"seeds": seeds, "counts": list(counts), "device": str(device)}

    def evaluate(row, _, seed):
        train, test = classification_split(ms, seed)
        m = Probing(n_probes=int(row.split()[0]), seed=seed, device=device).fit(ms.state_of(train), labels[train])
        return {"top1": topk_accuracy(m.scores(ms.state_of(test)), torch.searchsorted(m.classes_, labels[test]),
                                      ks=(1,))["top1"]}

    rows = [f"{n} probes" for n in counts]
    return run_protocol("probe_counts", ms, [(r, "", s) for s in range(seeds) for r in rows], evaluate, settings,
                        checkpoint)


def symmetry_check(ms, methods: dict, rows=None, seed: int = 0) -> dict:
    """Does each method see through the network's symmetry, and only through it?

    Each (unfitted) method of ``methods = {name: method}`` is fitted on the
    models ``rows``; then every model is (a) permuted at random in every group
    of ResNet-20's spec (the same function) and (b) changed by a permutation
    that breaks the spec: one block's first conv has its filters reordered,
    but not the BatchNorm and the conv after it (another function).
    Returns ``{name: {"spec permutations": max |change of embedding|,
    "spec-breaking permutation": ...}}``.
    """
    from .symmetry import permute_group, permute_state, random_permutations, resnet20_spec

    spec, g = resnet20_spec(), torch.Generator().manual_seed(seed)
    rows = np.arange(len(ms)) if rows is None else np.asarray(rows)
    states = [ms.state_dict(int(i)) for i in rows]
    n = states[0]["layer1.0.conv1.weight"].shape[0]
    valid = [permute_state(s, random_permutations(spec, s, g), spec) for s in states]
    broken = [permute_group(s, spec, "layer1.0.inner", torch.roll(torch.arange(n), 1), keys=["layer1.0.conv1.weight"])
              for s in states]

    def stack(sts):
        return {k: torch.stack([s[k] for s in sts]) for k in sts[0]}

    original, out = ms.state_of(rows), {}
    for name, method in methods.items():
        m = method.fit(original, ms.task_ids[rows])
        e = m.embed(original)
        out[name] = {"spec permutations": (m.embed(stack(valid)) - e).abs().max().item(),
                     "spec-breaking permutation": (m.embed(stack(broken)) - e).abs().max().item()}
    return out


def merge(*results) -> "ProtocolResult":
    """Results of one protocol on the same splits, for different methods, as one result (the first's settings)."""
    first = results[0]
    if any(r["experiment"] != first["experiment"] or r["settings"].get("seeds") != first["settings"].get("seeds")
           for r in results):
        raise LpsbookError("merge: results of different protocols or split counts cannot be merged")
    merged = ProtocolResult.from_dict(first.to_dict() if isinstance(first, ProtocolResult) else dict(first))
    for r in results[1:]:
        merged.results = {**merged.results, **r["results"]}
        extras = r.extras if isinstance(r, ProtocolResult) else ProtocolResult.from_dict(r).extras
        for k, v in extras.items():  # per-method extras (costs, pairs) are merged; the rest is the first's
            if isinstance(v, dict) and isinstance(merged.extras.get(k), dict):
                merged.extras[k] = {**merged.extras[k], **v}
    return merged


def challenge(results: dict, challenger: str, incumbent: str = "LPS") -> "pandas.DataFrame":
    """Does ``challenger`` beat ``incumbent`` on each protocol, with non-overlapping spreads?

    ``results = {label: (protocol result, metric, scale)}``.  A row per
    label: both means ± sd (over splits) and "yes" when the challenger's mean
    minus its sd is above the incumbent's mean plus its sd.
    """
    rows = []
    for label, (result, metric, scale) in results.items():
        c, c_sd = spread(result, challenger, metric, scale)
        i, i_sd = spread(result, incumbent, metric, scale)
        rows.append((label, f"{c:.2f} ± {c_sd:.2f}", f"{i:.2f} ± {i_sd:.2f}", c - c_sd > i + i_sd))
    table = verdict_table(rows)
    return table.rename(columns={"paper": challenger, "ours": incumbent, "holds": "beats it"})


PROTOCOLS = {"similarity": similarity, "classification": classification, "retrieval": retrieval,
             "transferability": transferability, "branches": branches, "ablation": ablation,
             "stages": stages, "probe_counts": probe_counts}


def main_metrics(classification, retrieval, transferability) -> dict:
    """The five numbers chapter 9 compares methods on: ``{label: (result, metric, scale)}``."""
    return {"classification top-1 %": (classification, "top1", 100), "retrieval rank-1 %": (retrieval, "rank1", 100),
            "retrieval mAP %": (retrieval, "mAP", 100),
            "transfer Spearman (per target)": (transferability, "spearman_per_target", 1),
            "related-task AUC (retrieval split)": (transferability, "related_auc", 1)}


def challenges(classification, retrieval, transferability, challengers, incumbent: str = "LPS"):
    """:func:`challenge` of every method in ``challengers`` (ids or names) on the five main metrics, one table."""
    import pandas as pd

    metrics = main_metrics(classification, retrieval, transferability)
    return pd.concat({display_name(m): challenge(metrics, display_name(m), incumbent) for m in challengers},
                     names=["challenger"])


def whole_network_findings(cls, tr, verdicts, stages_result, references, probes_result, n_tasks: int) -> dict:
    """What chapter 9's conclusion says, computed from its results (names and numbers for the prose)."""
    top1 = means(cls, "top1", 100)
    new = list(verdicts.index.get_level_values(0).unique())
    best = max(new, key=top1.get)
    wins = {m: verdicts.loc[m]["beats it"] == "yes" for m in new}
    stage_top1 = {p: 100 * v["top1"]["mean"] for p, v in stages_result["results"].items()}
    best_part = max(stage_top1, key=stage_top1.get)
    ref_rho, weights_rho = means(references, "spearman_per_target"), means(tr, "spearman_per_target")
    best_weights = max((m for m in weights_rho if reads(m) == "weights"), key=weights_rho.get)
    probes = sorted((int(r.split()[0]), 100 * v["top1"]["mean"]) for r, v in probes_result["results"].items())
    some = sorted(m for m, w in wins.items() if w.any())
    return {"best": best, "best_top1": top1[best], "lps_top1": top1["LPS"], "chance": 100 / n_tasks,
            "verdict": ("beats LPS on every protocol" if any(w.all() for w in wins.values())
                        else "does not beat LPS on every protocol"), "some": ", ".join(some) or "none of them",
            "best_part": best_part, "best_part_top1": stage_top1[best_part],
            "whole_top1": top1[display_name("graph")], "leep": ref_rho["leep"], "logme": ref_rho["logme"],
            "best_weights": best_weights, "best_weights_rho": weights_rho[best_weights],
            "probe_counts": ", ".join(f"{n}: {v:.1f} %" for n, v in probes)}
