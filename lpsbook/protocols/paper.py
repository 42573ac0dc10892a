"""The paper's evaluation protocols (Section 5) and chapter 9's, one function each.

Every protocol takes a loaded :class:`~lpsbook.training.modelset.ModelSet`, fits the
similarity methods it compares on one split of the models, evaluates on the
rest, repeats over several splits (:func:`lpsbook.protocols.results.run_protocol`) and
returns a :class:`~lpsbook.protocols.results.ProtocolResult` keyed by method id.

* :func:`classification`: 8 train / 2 test models per task; top-1/5/10.
* :func:`retrieval`: train on 80 % of the tasks; two query models per test
  task, the others form the gallery; rank-1/5/10 and mAP.
* :func:`transferability`: Spearman correlation of each method's task
  similarity with measured transfer (:mod:`lpsbook.protocols.transfer`).
* :func:`similarity`: weights or activations, on the same ground truth.
* :func:`branches`, :func:`ablation`: one LPS branch at a time, alignment off (Fig. 3b, 3c).
* :func:`stages`, :func:`probe_counts`, :func:`reference_transfer`: chapter 9.

:func:`arguments` turns plain settings (what the book caches, what the
command line parses) into a protocol's keyword arguments; both use it.
A new protocol is one function here and one line in :data:`PROTOCOLS`.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from .. import code_version
from ..core.data import load_dataset
from ..core.errors import LpsbookError
from ..methods.lps import LPSConfig, SecondOrderNet, layer_shapes
from ..core.memo import Memo
from ..core.parallel import imap, seeded, workers
from ..core.progress import bar as progress_bar
from ..methods.registry import make, method_id
from ..core.metrics import leave_one_out_retrieval, retrieval_metrics, spearman, topk_accuracy
from ..methods.probing import Probing
from .results import ABLATION_VARIANTS, ProtocolResult, classification_split, default_config, retrieval_split, run_protocol, task_folds
from ..core.runtime import PeakMemory
from . import statistics
from .transfer import pair_metrics, per_target_spearman, related_groups, transfer_ari

PAPER_METHODS = ("random", "fc", "frobenius", "lps")  # the methods of the paper's Tables 1-2
EXTRA_METHODS = ("weight_stats", "rebasin_fc")  # chapter 7's
ACTIVATION_MEASURES = ("rsa", "cka_linear", "cka_rbf", "dds_zscore_cosine", "dds_zscore_pearson",
                       "dds_zscore_euclidean", "dds_none_linear")
PARAMETER_METHODS = ("lps", "weight_stats", "fc", "rebasin_fc")
STAGES = {"stem": ("conv1.", "bn1."), "stage 1": ("layer1.",), "stage 2": ("layer2.",), "stage 3": ("layer3.",)}


def fit(method, ms, rows):
    """``method`` fitted on the models ``rows`` of ``ms`` and their tasks."""
    return method.fit(ms.state_of(rows), ms.task_ids[rows])


def held_out_topk(method, ms, rows, ks=(1,), predictions: bool = False) -> dict:
    """Top-k task classification of the fitted ``method`` on the models ``rows``: ``{"top1": ...}``.

    With ``predictions``, also ``"_predictions"``: per test model its row, its task, the rank of its true task
    among the method's scores (0 = top-1; ties count against it) and the task predicted first.
    """
    scores = method.scores(ms.state_of(rows))
    target = torch.searchsorted(method.classes_, ms.task_ids[rows])
    out = topk_accuracy(scores, target, ks=ks)
    if predictions:
        true = scores.gather(1, target[:, None])
        out["_predictions"] = {"rows": [int(r) for r in rows], "task": ms.task_ids[rows].tolist(),
                               "rank": (scores >= true).sum(1).sub(1).tolist(),
                               "top1": method.classes_[scores.argmax(1)].tolist()}
    return out


def fold_rows(fold_of, f: int) -> tuple:
    """(training rows, test rows) of fold ``f`` (:mod:`lpsbook.protocols.statistics`'s folds)."""
    return np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)


def _method_protocol(kind, ms, methods, seeds, config, device, evaluate, checkpoint, folds=None,
                     parallel=False, prepare=None) -> ProtocolResult:
    """A protocol of one fit per (method, split): ``evaluate(method id, seed, config) -> {metric: value}``.

    With ``folds``, the splits are the folds (``seeds`` is their number) and the settings say so; ``parallel``
    as for :func:`~lpsbook.protocols.results.run_protocol`; ``prepare(config, [(method id, seed)])`` is given
    the jobs still to run first."""
    config = config or default_config(ms)
    ids = [method_id(m) for m in methods]
    settings = {"methods": ids, "seeds": seeds, "lps": config.to_dict(), "device": str(device),
                **({"folds": folds} if folds else {})}
    jobs = [(m, "", s) for s in range(seeds) for m in ids]
    before = None if prepare is None else lambda todo: prepare(config, [(m, s) for m, _, s in todo])
    return run_protocol(kind, ms, jobs, lambda m, _, s: evaluate(m, s, config), settings, checkpoint, parallel,
                        before)


# --- Tables 1 and 2 ---------------------------------------------------------------------------------

def classification(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
                   device="cpu", checkpoint=None, dataset=None, folds: int | None = None) -> ProtocolResult:
    """Task classification: predict a held-out model's task; top-1/5/10 accuracy.

    By default ``seeds`` random 8/2 splits. With ``folds=k``, the ``k`` folds of
    :func:`~lpsbook.protocols.statistics.classification_folds` instead (every model tested exactly once),
    and every test model's prediction is kept (``result["predictions"][method]``, one entry per fold:
    rows, rank of the true task, task predicted first), so any statistic can be computed from the result.
    Each fit's cost is kept too (``result["cost"][method]``, one per split):
    seconds to fit, seconds to embed 100 models (scaled from the test models),
    and the peak memory above the level before the fit (:class:`~lpsbook.core.runtime.PeakMemory`).
    """
    fold_of = statistics.classification_folds(ms.meta["task_id"].to_numpy(), folds) if folds else None
    seeds = int(fold_of.max()) + 1 if folds else seeds

    def evaluate(method, seed, cfg):
        train, test = classification_split(ms, seed) if fold_of is None else fold_rows(fold_of, seed)
        with PeakMemory() as peak:
            t0 = time.perf_counter()
            m = fit(make(method, ms, seed, cfg, device, dataset), ms, train)
            t1 = time.perf_counter()
            m.embed(ms.state_of(test[:100]))
            t2 = time.perf_counter()
        return {**held_out_topk(m, ms, test, ks=(1, 5, 10), predictions=fold_of is not None),
                "_cost": {"fit seconds": t1 - t0, "seconds to embed 100 models": (t2 - t1) * 100 / min(100, len(test)),
                          "peak memory MiB": peak.mib}}

    return _method_protocol("classification", ms, methods, seeds, config, device, evaluate, checkpoint, folds,
                            parallel=True)


FITS = Memo(64)  # retrieval and transferability fit the same method on the same split: the second reuses it


def task_fold_of(ms, folds: int) -> np.ndarray:
    """Fold of every model of ``ms`` by its task (:func:`~lpsbook.protocols.statistics.task_folds`, seed 0): the
    folds that retrieval, transferability and the references share."""
    return statistics.task_folds(ms.meta["task_id"].to_numpy(), folds)


def _retrieval_rows(ms, seed, folds):
    if folds:
        return fold_rows(task_fold_of(ms, folds), seed)
    train, query, gallery = retrieval_split(ms, seed)
    return train, np.concatenate([query, gallery])


def _fit_key(ms, method, seed, cfg, device, folds) -> tuple:
    models = tuple(zip(ms.meta["task_id"].tolist(), ms.meta["seed"].tolist()))
    return (str(ms.path), ms.preset.hash, models, method_id(method), seed, folds, repr(cfg), str(device), code_version())


def fit_retrieval_split(ms, method, seed, cfg, device, dataset=None, folds: int | None = None):
    """``method`` trained on the training tasks of retrieval split ``seed``: (method, held-out rows).

    Without ``folds``, the random split of :func:`~lpsbook.protocols.results.retrieval_split` (held-out rows:
    its queries, then its gallery); with ``folds=k``, fold ``seed`` of
    :func:`~lpsbook.protocols.statistics.task_folds` (every model of the fold's tasks held out). Retrieval
    and transferability on the same split share the fit (:data:`FITS`); its random numbers are seeded from
    the method and the split alone, so either protocol, in any process, fits the same method.
    """
    train, held = _retrieval_rows(ms, seed, folds)

    def compute():
        with seeded(f"retrieval fit|{method_id(method)}|{seed}|{folds}"):
            return fit(make(method, ms, seed, cfg, device, dataset), ms, train)

    return FITS.get(_fit_key(ms, method, seed, cfg, device, folds), compute), held


def prefit_retrieval(ms, jobs, cfg, device, dataset=None, folds: int | None = None) -> int:
    """Fit the retrieval splits ``jobs`` (``(method, seed)`` pairs) that :data:`FITS` lacks side by side in
    forked workers, one thread each (where :func:`~lpsbook.core.parallel.workers` allows: a CPU), and keep
    them in :data:`FITS`; returns how many. Elsewhere (a GPU, one worker) nothing happens here and each fit is made when first asked for."""
    keys = {job: _fit_key(ms, job[0], job[1], cfg, device, folds) for job in dict.fromkeys(jobs)}
    missing = [job for job, key in keys.items() if key not in FITS][:FITS.size]
    processes = workers(len(missing))
    if processes < 2:
        return 0

    def one(job):
        return fit_retrieval_split(ms, *job, cfg, device, dataset, folds)[0]

    with progress_bar(total=len(missing), desc="retrieval fits", unit="fit") as bar:
        for i, fitted in imap(one, missing, processes):
            FITS.put(keys[missing[i]], fitted)
            bar.update()
    return len(missing)


def retrieval(ms, methods=PAPER_METHODS, seeds: int = 3, config: LPSConfig | None = None,
              device="cpu", checkpoint=None, dataset=None, folds: int | None = None) -> ProtocolResult:
    """Task retrieval on tasks unseen in training: rank-1/5/10 and mAP.

    By default ``seeds`` random splits of the tasks, two queries per unseen task. With ``folds=k``, the
    ``k`` folds of :func:`~lpsbook.protocols.statistics.task_folds` instead: every task is unseen in
    exactly one fold, where every one of its models is a query against all the other models of that
    fold's tasks, and every query's outcome is kept (``result["predictions"][method]``: rows, 0-based
    position of the first model of its task, average precision).
    """
    labels = ms.task_ids
    fold_of = task_fold_of(ms, folds) if folds else None
    seeds = int(fold_of.max()) + 1 if folds else seeds

    def evaluate(method, seed, cfg):
        m, held = fit_retrieval_split(ms, method, seed, cfg, device, dataset, folds)
        if fold_of is None:
            query, gallery = retrieval_split(ms, seed)[1:]
            return retrieval_metrics(m.embed(ms.state_of(query)), labels[query],
                                     m.embed(ms.state_of(gallery)), labels[gallery], ks=(1, 5, 10))
        per = leave_one_out_retrieval(m.embed(ms.state_of(held)), labels[held])
        hit = per["first_hit"]
        return {**{f"rank{k}": float(np.mean((hit >= 0) & (hit < k))) for k in (1, 5, 10)},
                "mAP": float(np.nanmean(per["ap"])),
                "_predictions": {"rows": held.tolist(), "task": labels[held].tolist(), "first_hit": hit.tolist(),
                                 "ap": per["ap"].tolist()}}

    return _method_protocol("retrieval", ms, methods, seeds, config, device, evaluate, checkpoint, folds,
                            prepare=lambda cfg, jobs: prefit_retrieval(ms, jobs, cfg, device, dataset, folds))


# --- task similarity against transfer ------------------------------------------------------------------

def transferability(ms, methods=PAPER_METHODS + EXTRA_METHODS, seeds: int = 3,
                    config: LPSConfig | None = None, device="cpu", dataset=None, checkpoint=None,
                    ari: np.ndarray | None = None, folds: int | None = None) -> ProtocolResult:
    """Spearman correlation between each method's task similarity and measured transfer (ARI).

    As in the paper, similarities come from the retrieval setting: the
    method is trained on 80 % of the tasks and compares pairs of the held-out
    tasks.  Reported: Spearman over all held-out (source, target) pairs, the
    mean over targets of the per-target Spearman (as the DDS paper does), and
    the ROC AUC of related vs unrelated held-out pairs
    (:func:`~lpsbook.protocols.transfer.related_groups`).  ``ari`` is
    :func:`~lpsbook.protocols.transfer.transfer_ari`'s matrix when it was computed before. With
    ``folds=k``, the splits are the first ``seeds`` of retrieval's ``k`` task folds (the fits are shared
    with retrieval on the same folds), and every target task's Spearman is kept
    (``result["per_target"][method]``: per split, the target tasks and their values). Every held-out pair's
    score and relatedness is kept too (``result["related_pairs"][method]``), from which
    :func:`~lpsbook.protocols.statistics.pair_auc` gives the AUC an interval over resampled tasks.
    """
    from sklearn.metrics import roc_auc_score

    data = dataset or load_dataset(ms.preset)
    ari = transfer_ari(ms, data) if ari is None else np.asarray(ari)
    groups = related_groups(ms.preset.tasks, data)[0]
    labels = ms.task_ids

    def evaluate(method, seed, cfg):
        m, held = fit_retrieval_split(ms, method, seed, cfg, device, data, folds)
        tasks, sim = m.task_similarity(ms.state_of(held), labels[held])
        tasks = tasks.tolist()
        at = {t: i for i, t in enumerate(tasks)}
        pairs = [(s, t) for t in tasks for s in tasks if s != t]
        xs, ys = [sim[at[s], at[t]].item() for s, t in pairs], [ari[s, t] for s, t in pairs]
        related = [bool(groups[s] & groups[t]) for s, t in pairs]
        per_target = per_target_spearman(lambda s, t: sim[at[s], at[t]].item(), lambda s, t: ari[s, t], tasks)
        auc = roc_auc_score(related, xs) if len(set(related)) == 2 else float("nan")
        return {"spearman": spearman(xs, ys), "spearman_per_target": float(np.nanmean(per_target)),
                "related_auc": float(auc), "_pairs": [list(p) for p in zip(xs, ys)],
                "_per_target": {"task": tasks, "spearman": [float(v) for v in per_target]},
                "_related_pairs": {"source": [s for s, _ in pairs], "target": [t for _, t in pairs], "score": xs,
                                   "related": related}}

    if folds:
        seeds = min(seeds, int(task_fold_of(ms, folds).max()) + 1)
    out = _method_protocol("transferability", ms, methods, seeds, config, device, evaluate, checkpoint, folds,
                           prepare=lambda cfg, jobs: prefit_retrieval(ms, jobs, cfg, device, data, folds))
    out.extras["ari"] = ari.tolist()
    return out


def reference_transfer(ms, scores: dict, seeds: int = 3, folds: int | None = None) -> ProtocolResult:
    """How well the data-based references (LEEP, LogME) predict measured transfer, on the transferability
    protocol's pairs: per split, the held-out tasks of :func:`~lpsbook.protocols.results.retrieval_split`, the mean over
    targets of the Spearman correlation between the reference and ARI over the other held-out sources
    (``folds``: the held-out tasks of the task folds instead, as :func:`transferability` with ``folds``)."""
    ari = np.asarray(scores["ari"])

    def evaluate(name, _, seed):
        if folds:
            held_rows = fold_rows(task_fold_of(ms, folds), seed)[1]
        else:
            held_rows = np.concatenate(retrieval_split(ms, seed)[1:])
        held = sorted(set(ms.task_ids[held_rows].tolist()))
        ref = np.asarray(scores[name])
        per_target = per_target_spearman(lambda s, t: ref[s, t], lambda s, t: ari[s, t], held)
        return {"spearman_per_target": float(np.nanmean(per_target)),
                "_per_target": {"task": held, "spearman": [float(v) for v in per_target]}}

    if folds:
        seeds = min(seeds, int(task_fold_of(ms, folds).max()) + 1)
    jobs = [(name, "", s) for s in range(seeds) for name in ("leep", "logme")]
    return run_protocol("reference_transfer", ms, jobs, evaluate, {"seeds": seeds, **({"folds": folds} if folds else {})})


def similarity(ms, measures=ACTIVATION_MEASURES, methods=PARAMETER_METHODS, folds: int = 5,
               config: LPSConfig | None = None, device="cpu", seeds: int = 1,
               dataset=None, ari: np.ndarray | None = None, checkpoint=None) -> ProtocolResult:
    """Weights or activations: every method's task similarity against the same ground truth.

    Tasks are split into ``folds`` groups; every method is fitted on the
    other groups' models and compares the held-out tasks (the retrieval
    setting) with its :meth:`~lpsbook.methods.estimator.SimilarityMethod.task_similarity`.
    The activation measures (``measures``) learn nothing from the fit; they
    compare the models' features on shared probe images (of ``dataset``).
    For each method: the mean over targets of the Spearman correlation
    between similarity and measured transfer (ARI), rank-1 retrieval of a
    related task, and the ROC AUC of related vs unrelated pairs
    (:func:`~lpsbook.protocols.transfer.pair_metrics`), all on the same within-fold
    pairs; plus the cost in seconds per 100 model pairs.
    """
    config = config or default_config(ms)
    data = dataset or load_dataset(ms.preset)
    ari = transfer_ari(ms, data) if ari is None else np.asarray(ari)
    labels = ms.task_ids.numpy()
    groups, relation = related_groups(ms.preset.tasks, data)
    ids = [method_id(k) for k in list(measures) + list(methods)]
    settings = {"methods": ids, "folds": folds, "seeds": seeds, "lps": config.to_dict(), "device": str(device)}

    def evaluate(method, _, seed):
        parts = task_folds(ms, folds, seed)
        sim, seconds = {}, 0.0
        for part in parts:
            held, train = np.flatnonzero(np.isin(labels, part)), np.flatnonzero(~np.isin(labels, part))
            if len(np.unique(labels[train])) < 2 or len(part) < 2:
                continue  # too few tasks to train on or to compare (tiny model sets)
            m = fit(make(method, ms, seed, config, device, data), ms, train)
            t = time.time()
            tasks, tsim = m.task_similarity(ms.state_of(held), ms.task_ids[held])
            seconds += time.time() - t
            tasks = tasks.tolist()
            sim.update({(s, u): tsim[i, j].item() for i, s in enumerate(tasks) for j, u in enumerate(tasks)})
        pairs = sum(len(f) * ms.preset.seeds * (len(f) * ms.preset.seeds - 1) / 2 for f in parts)
        usable = [[t for t in f if any((s, t) in sim for s in f)] for f in parts]
        return {**pair_metrics(sim, ari, usable, groups), "_cost": seconds / pairs * 100}

    jobs = [(m, "", seed) for seed in range(seeds) for m in ids]
    out = run_protocol("similarity", ms, jobs, evaluate, settings, checkpoint)
    out.extras = {"related": relation,
                  "cost_seconds_per_100_pairs": {k: float(np.mean(v)) for k, v in out.extras.pop("cost").items()}}
    return out


# --- one branch at a time (Figure 3b, 3c) --------------------------------------------------------------

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


def branch_ranks(net, ms, layer: str, test) -> dict:
    """Every test model's row, task and the rank of its true task among a fitted branch's scores (0 =
    top-1; ties count against it), as :func:`held_out_topk` keeps them."""
    scores = net.scores({layer: ms.conv_weights[layer][test]})
    labels = torch.as_tensor(ms.task_ids[test])
    true = scores.gather(1, labels[:, None].long())
    return {"rows": [int(r) for r in test], "task": labels.tolist(), "rank": (scores >= true).sum(1).sub(1).tolist()}


def _single_branch(ms, layers, variants, seeds, config, device, kind, second_order_filters=None, checkpoint=None,
                   folds=None):
    config = config or default_config(ms)
    fold_of = statistics.classification_folds(ms.meta["task_id"].to_numpy(), folds) if folds else None
    seeds = min(seeds, int(fold_of.max()) + 1) if folds else seeds
    settings = {"seeds": seeds, "lps": config.to_dict(), "layers": list(layers), "device": str(device),
                "second_order_filters": second_order_filters, **({"folds": folds} if folds else {})}
    jobs = [(v, layer, s) for v in variants for layer in layers for s in range(seeds)]

    def evaluate(variant, layer, seed):
        train, test = classification_split(ms, seed) if fold_of is None else fold_rows(fold_of, seed)
        align = ABLATION_VARIANTS.get(variant, ("", True, True))[1:]
        net, top1 = fit_branch(ms, layer, train, test, config, second_order_filters, *align, seed, device)
        if fold_of is None:
            return {layer: top1}
        return {layer: top1, "_predictions": {"layer": layer, "fold": seed, **branch_ranks(net, ms, layer, test)}}

    return run_protocol(kind, ms, jobs, evaluate, settings, checkpoint, parallel=True)


def branches(ms, layers=None, seeds: int = 1, config: LPSConfig | None = None, device="cpu",
             second_order_filters=None, checkpoint=None, folds: int | None = None) -> ProtocolResult:
    """Top-1 task classification with one branch at a time (the paper's Fig. 3b); the row is ``lps``.

    By default ``seeds`` random 8/2 splits. With ``folds=k``, the first ``seeds`` of the ``k`` folds of
    :func:`~lpsbook.protocols.statistics.classification_folds` (no model tested twice), and every test
    model's prediction is kept (``result["predictions"][row]``: one entry per branch and fold, with its
    ``layer``), so that branches and variants are compared on the same test models."""
    return _single_branch(ms, layers or ms.layers, ["lps"], seeds, config, device, "branches",
                          second_order_filters, checkpoint, folds)


def ablation(ms, layers=None, seeds: int = 1, config: LPSConfig | None = None, device="cpu",
             second_order_filters=None, checkpoint=None, folds: int | None = None) -> ProtocolResult:
    """Branches 2..L with filter and/or channel alignment off (the paper's Fig. 3c); rows are
    :data:`~lpsbook.protocols.results.ABLATION_VARIANTS`; ``folds`` as for :func:`branches`."""
    return _single_branch(ms, layers or ms.layers[1:], list(ABLATION_VARIANTS), seeds, config, device, "ablation",
                          second_order_filters, checkpoint, folds)


# --- reading the whole network (chapter 9) -------------------------------------------------------------

def stages(ms, seeds: int = 1, config: LPSConfig | None = None, device="cpu", checkpoint=None,
           parts=tuple(STAGES)) -> ProtocolResult:
    """Which part of the network carries the task: the graph learner reading one part only (top-1).

    The whole-network counterpart of :func:`branches`: the same classification
    splits and settings as the registry's ``graph``, the learner restricted to
    the tensors of the stem or of one stage (the whole network is the
    ``graph`` row of :func:`classification`).
    """
    settings = {"seeds": seeds, "parts": list(parts), "device": str(device)}

    def evaluate(part, _, seed):
        train, test = classification_split(ms, seed)
        m = make("graph", ms, seed, config, device)
        m.keys = STAGES[part]
        return held_out_topk(fit(m, ms, train), ms, test)

    return run_protocol("stages", ms, [(p, "", s) for s in range(seeds) for p in parts], evaluate, settings, checkpoint,
                        parallel=True)


def probe_counts(ms, counts=(1, 2, 4), seeds: int = 1, config: LPSConfig | None = None, device="cpu",
                 checkpoint=None) -> ProtocolResult:
    """How many probe images probing needs: classification top-1 with ``counts`` probes (rows ``"1"``, ...)."""
    settings = {"seeds": seeds, "counts": list(counts), "device": str(device)}

    def evaluate(row, _, seed):
        train, test = classification_split(ms, seed)
        return held_out_topk(fit(Probing(n_probes=int(row), seed=seed, device=device), ms, train), ms, test)

    rows = [str(n) for n in counts]
    return run_protocol("probe_counts", ms, [(r, "", s) for s in range(seeds) for r in rows], evaluate, settings,
                        checkpoint, parallel=True)


PROTOCOLS = {"similarity": similarity, "classification": classification, "retrieval": retrieval,
             "transferability": transferability, "branches": branches, "ablation": ablation,
             "stages": stages, "probe_counts": probe_counts}
LAYERED = ("branches", "ablation")  # the protocols that take ``layers`` and ``second_order_filters``


def arguments(name: str, ms, settings: dict, device="cpu") -> dict:
    """Keyword arguments of protocol ``name`` on ``ms`` from plain settings: the one translation that the
    book (settings it caches) and the command line (settings it parses) share.

    ``settings`` may hold ``methods`` (ids or names), ``seeds``, ``counts``, ``config`` (changes to
    :func:`~lpsbook.protocols.results.default_config`; ``epochs`` alone scales the learning-rate milestones),
    ``layers`` (1-based conv layers) and ``second_order_filters`` (branches and ablation only).
    """
    if name not in PROTOCOLS:
        raise LpsbookError(f"unknown experiment {name!r}; choose from {', '.join(PROTOCOLS)}")
    kwargs = {k: v for k, v in settings.items() if k not in ("config", "layers", "methods")}
    base, changes = default_config(ms), dict(settings.get("config") or {})
    if "epochs" in changes and "milestones" not in changes:
        changes["milestones"] = [max(1, round(m * changes["epochs"] / base.epochs)) for m in base.milestones]
    kwargs["config"] = replace(base, **{k: tuple(v) if k == "milestones" else v for k, v in changes.items()})
    if name not in LAYERED and (settings.get("layers") or settings.get("second_order_filters")):
        raise LpsbookError("--layers and --second-order-filters apply to the branches and ablation experiments only")
    if settings.get("layers"):
        layers = list(settings["layers"])
        if not all(isinstance(i, int) and 1 <= i <= len(ms.layers) for i in layers):
            raise LpsbookError(f"--layers must list conv layers 1..{len(ms.layers)} like 1,2,5; got {layers!r}")
        kwargs["layers"] = [ms.layers[i - 1] for i in layers]
    if "methods" in settings:
        kwargs["methods"] = tuple(method_id(m) for m in settings["methods"])
    kwargs["device"] = device
    return kwargs
