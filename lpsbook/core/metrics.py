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


def leave_one_out_retrieval(emb, labels) -> dict:
    """Every model a query against all the others (itself left out), by cosine similarity.

    Returns per query (in the order given) ``first_hit``, the 0-based position of the first other model
    of its label (``-1`` when it has none), and ``ap``, the average precision of the others' relevance
    (``nan`` when it has none): rank-k is ``mean(0 <= first_hit < k)``, mAP the mean of ``ap``.
    """
    from sklearn.metrics import average_precision_score

    e = torch.as_tensor(emb, dtype=torch.float64)
    if e.ndim != 2 or e.shape[0] < 2:
        raise LpsbookError(f"emb must be [n, d] with n >= 2, got {tuple(e.shape)}")
    lab = _labels(labels, e.shape[0], "labels")
    sim = F.normalize(e, dim=1) @ F.normalize(e, dim=1).T
    n, first, ap = e.shape[0], [], []
    for i in range(n):
        others = torch.arange(n) != i
        rel, s = (lab[others] == lab[i]), sim[i, others]
        if not rel.any():
            first.append(-1)
            ap.append(float("nan"))
            continue
        order = torch.argsort(s, descending=True, stable=True)
        first.append(int(rel[order].float().argmax()))
        ap.append(float(average_precision_score(rel.numpy(), s.numpy())))
    return {"first_hit": np.array(first), "ap": np.array(ap)}


def spearman(x, y) -> float:
    """Spearman rank correlation of two sequences (``nan`` if either is constant)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise LpsbookError(f"spearman: x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def leep(source_probs, target_labels) -> float:
    """LEEP (Nguyen et al., 2020): how well a source model's label distribution predicts target labels.

    ``source_probs [n, Z]``: the source model's softmax over its own classes
    on the target images; ``target_labels [n]``.  With the empirical joint
    ``P(y, z) = mean over images of [y_i = y] * source_probs[i, z]``, LEEP is
    the mean log-likelihood ``log sum_z P(y_i | z) source_probs[i, z]``.
    Higher (closer to 0) means better expected transfer.
    """
    p = np.asarray(source_probs, dtype=float)
    y = np.asarray(target_labels)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise LpsbookError(f"source_probs must be [n, Z] with one row per target label; got {p.shape} and {y.shape}")
    classes, y = np.unique(y, return_inverse=True)
    joint = np.stack([p[y == c].sum(0) for c in range(len(classes))]) / len(y)  # [Y, Z]
    cond = joint / joint.sum(0, keepdims=True).clip(1e-12)  # P(y | z)
    return float(np.mean(np.log((p @ cond.T)[np.arange(len(y)), y].clip(1e-12))))


def linear_evidence(features, y, alpha: float, beta: float) -> float:
    """Log evidence per image of ``y = F w + noise``, ``w ~ N(0, I / alpha)``, noise ``N(0, 1 / beta)``."""
    f, y = np.asarray(features, dtype=float), np.asarray(y, dtype=float)
    n, d = f.shape
    sigma, v = np.linalg.eigh(f.T @ f)
    sigma = sigma.clip(0)
    m = v @ (beta * (v.T @ (f.T @ y)) / (alpha + beta * sigma))  # posterior mean of w
    res, m2 = float(np.sum((y - f @ m) ** 2)), float(m @ m)
    return float((d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                  - beta / 2 * res - alpha / 2 * m2 - 0.5 * np.sum(np.log(alpha + beta * sigma))) / n)


def logme(features, target_labels, iterations: int = 30) -> float:
    """LogME (You et al., 2021): the log marginal evidence of a Bayesian linear model on the features.

    For each target class (one-vs-rest 0/1 target), ``y = F w + noise`` with
    ``w ~ N(0, I / alpha)`` and noise ``N(0, 1 / beta)``; alpha and beta are
    set by the fixed-point updates that maximise the evidence
    (:func:`linear_evidence`).  Returns the mean over classes of the evidence
    per image.  Higher means the target labels are more linearly predictable
    from the features.
    """
    f = np.asarray(features, dtype=float)
    labels = np.asarray(target_labels)
    if f.ndim != 2 or len(f) != len(labels) or len(labels) == 0:
        raise LpsbookError(f"features must be [n, D] with one row per target label; got {f.shape} and {labels.shape}")
    n = len(f)
    sigma, v = np.linalg.eigh(f.T @ f)  # F^T F = V diag(sigma) V^T
    sigma = sigma.clip(0)
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)
        proj = v.T @ (f.T @ y)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            m = v @ (beta * proj / (alpha + beta * sigma))
            gamma = float(np.sum(beta * sigma / (alpha + beta * sigma)))
            alpha = gamma / max(float(m @ m), 1e-12)
            beta = max(n - gamma, 1e-12) / max(float(np.sum((y - f @ m) ** 2)), 1e-12)
        evidences.append(linear_evidence(f, y, alpha, beta))
    return float(np.mean(evidences))
