"""Evaluation metrics: top-k task classification, retrieval (CMC rank-k, mAP), Spearman."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LpsbookError


def _labels(labels, n: int, what: str) -> torch.Tensor:
    labels = torch.as_tensor(labels).reshape(-1).long()
    if labels.numel() != n:
        raise LpsbookError(f"{what} has {labels.numel()} entries for {n} models; give one label per model")
    return labels


def topk_accuracy(scores, labels, ks=(1, 5, 10)) -> dict:
    """Fraction of models whose true class is among their ``k`` highest scores.

    Parameters
    ----------
    scores : Tensor ``[models, classes]``
        Any class scores (higher is better).
    labels : Tensor ``[models]``
        True classes.
    ks : sequence of int
        A ``k`` at least the number of classes gives 1.0.

    Returns
    -------
    dict
        ``{"top1": ..., "top5": ..., ...}``, fractions in 0..1.  Ties are
        broken as :func:`torch.topk` breaks them.
    """
    scores = torch.as_tensor(scores)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise LpsbookError(f"scores must be [models, classes] with at least one model, got shape {tuple(scores.shape)}")
    labels = _labels(labels, scores.shape[0], "labels")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise LpsbookError(f"labels must lie in 0..{scores.shape[1] - 1} (the columns of scores)")
    out = {}
    for k in ks:
        if k < 1:
            raise LpsbookError(f"ks: every k must be >= 1, got {k}")
        top = torch.topk(scores, min(int(k), scores.shape[1]), dim=1).indices
        out[f"top{k}"] = (top == labels[:, None]).any(1).float().mean().item()
    return out


def retrieval_metrics(query_emb, query_labels, gallery_emb, gallery_labels, ks=(1, 5, 10)) -> dict:
    """CMC rank-k accuracy and mean average precision of retrieval by cosine similarity.

    Each query ranks the gallery by cosine similarity (ties keep gallery
    order).  Rank-k is the fraction of queries whose first gallery item of
    the same label is within the first ``k``; AP is scikit-learn's
    ``average_precision_score`` of the gallery's relevance (same label)
    against the similarity, and mAP its mean over the queries.  Queries with
    no item of their label in the gallery are left out.

    Parameters
    ----------
    query_emb : Tensor ``[queries, d]``
    query_labels : Tensor ``[queries]``
    gallery_emb : Tensor ``[gallery, d]``
    gallery_labels : Tensor ``[gallery]``
    ks : sequence of int

    Returns
    -------
    dict
        ``{"rank1": ..., "rank5": ..., "rank10": ..., "mAP": ...}``, fractions in 0..1.
    """
    from sklearn.metrics import average_precision_score

    q = torch.as_tensor(query_emb, dtype=torch.float64)
    g = torch.as_tensor(gallery_emb, dtype=torch.float64)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise LpsbookError(f"query_emb and gallery_emb must be [n, d] with the same d, got "
                           f"{tuple(q.shape)} and {tuple(g.shape)}")
    ql = _labels(query_labels, q.shape[0], "query_labels")
    gl = _labels(gallery_labels, g.shape[0], "gallery_labels")
    relevant = ql[:, None] == gl[None, :]
    keep = relevant.any(1)
    if not keep.any():
        raise LpsbookError("retrieval_metrics: no query has an item of its label in the gallery")
    sim = F.normalize(q[keep], dim=1) @ F.normalize(g, dim=1).T
    relevant = relevant[keep]
    order = torch.argsort(sim, dim=1, descending=True, stable=True)
    first_hit = torch.gather(relevant, 1, order).float().argmax(1)  # 0-based position
    out = {}
    for k in ks:
        if k < 1:
            raise LpsbookError(f"ks: every k must be >= 1, got {k}")
        out[f"rank{k}"] = (first_hit < k).double().mean().item()
    out["mAP"] = float(np.mean([average_precision_score(r, s) for r, s in zip(relevant.numpy(), sim.numpy())]))
    return out


def spearman(x, y) -> float:
    """Spearman rank correlation of two sequences (``nan`` if either is constant)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise LpsbookError(f"spearman: x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)
