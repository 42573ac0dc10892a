"""The ground truth task similarity is judged against: measured transfer and relatedness.

* :func:`transfer_scores`: for every (source task, target task), how well
  the source model's features cluster the target's images (ARI), and the
  data-based references LEEP and LogME;
* :func:`related_groups`: which tasks are related (a shared superclass on
  CIFAR-100, a shared class on digits);
* :func:`per_target_spearman`: the one per-target correlation every protocol
  reports (for each target, over the other sources);
* :func:`pair_metrics`: a similarity's agreement with transfer and with relatedness.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.data import load_dataset
from ..core.metrics import leep, logme, spearman
from ..core.parallel import imap, workers
from ..core.progress import bar as progress_bar
from ..methods.similarity import features_in_bf16, models_features


def transfer_scores(ms, dataset=None, source_seed: int = 0, kmeans_seed: int = 0, progress=True,
                    pack: int = 5) -> dict:
    """Measured transfer and the data-based references, for every (source task, target task).

    For source ``s`` (its model of seed ``source_seed``) and target ``t``:

    * ``ari[s, t]``: the source's penultimate features of the target task's
      test images, clustered by k-means (k = 2), against the target's
      labels (adjusted Rand index): how well the source's features transfer;
    * ``leep[s, t]``: :func:`lpsbook.core.metrics.leep` of the source's class
      probabilities on those images;
    * ``logme[s, t]``: :func:`lpsbook.core.metrics.logme` of its features.

    LEEP and LogME read the target's labels; a weights-only method does not. The sources go ``pack`` at a
    time through one packed network, and the packs side by side in forked workers on a CPU.
    Returns ``{"ari": [T, T], "leep": [T, T], "logme": [T, T]}`` (numpy).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    data = dataset or load_dataset(ms.preset)
    tasks = ms.preset.tasks
    targets = [data.task_indices(t, "test") for t in tasks]
    truth = [(data.test_labels[i] == t[1]).numpy() for i, t in zip(targets, tasks)]
    bf16 = features_in_bf16(ms.preset)
    packs = [list(range(s, min(s + pack, len(tasks)))) for s in range(0, len(tasks), pack)]

    def rows(sources):  # the scores of a few sources against every target: {name: [len(sources), T]}
        idx = [ms.index_of(s, source_seed) for s in sources]
        feats = models_features(ms.state_of(idx), data.test_images, data.mean, data.std, bf16=bf16, pack=pack)
        out = {k: np.zeros((len(sources), len(tasks))) for k in ("ari", "leep", "logme")}
        for i, row in enumerate(idx):
            w, b = ms.state["fc.weight"][row], ms.state["fc.bias"][row]
            probs = torch.softmax(feats[i] @ w.float().T + b.float(), dim=1).numpy()
            for t, rows_t in enumerate(targets):
                x = feats[i][rows_t].numpy()
                pred = KMeans(2, n_init=4, random_state=kmeans_seed).fit_predict(x)
                out["ari"][i, t] = adjusted_rand_score(truth[t], pred)
                out["leep"][i, t] = leep(probs[rows_t], truth[t])
                out["logme"][i, t] = logme(x, truth[t])
        return out

    scores = {k: np.zeros((len(tasks), len(tasks))) for k in ("ari", "leep", "logme")}
    with progress_bar(total=len(tasks), desc="transfer (source tasks)", disable=not progress) as bar:
        for j, part in imap(rows, packs, workers(len(packs))):
            for k, v in part.items():
                scores[k][packs[j]] = v
            bar.update(len(packs[j]))
    return scores


def transfer_ari(ms, dataset=None, source_seed: int = 0, kmeans_seed: int = 0, progress=True) -> np.ndarray:
    """``ARI[s, t]`` alone: see :func:`transfer_scores`."""
    return transfer_scores(ms, dataset, source_seed, kmeans_seed, progress)["ari"]


def per_target_spearman(score, truth, tasks) -> list:
    """For each target ``t`` of ``tasks``: Spearman over the other sources ``s`` of ``score(s, t)`` and
    ``truth(s, t)`` (``nan`` where it is undefined)."""
    tasks = list(tasks)
    return [spearman([score(s, t) for s in tasks if s != t], [truth(s, t) for s in tasks if s != t])
            for t in tasks]


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


def pair_metrics(sim: dict, ari: np.ndarray, tasks_by_fold: list, groups) -> dict:
    """Compare task similarities ``sim[(s, t)]`` with transfer (ARI) and with relatedness (``groups``
    overlap), on the pairs within each fold of ``tasks_by_fold``."""
    from sklearn.metrics import roc_auc_score

    per_target, hits, chance, s_all, related = [], [], [], [], []
    nan = float("nan")
    for fold in tasks_by_fold:
        per_target += per_target_spearman(lambda s, t: sim[(s, t)], lambda s, t: ari[s, t], fold)
        for t in fold:
            sims = [sim[(s, t)] for s in fold if s != t]
            rel = [bool(groups[s] & groups[t]) for s in fold if s != t]
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
