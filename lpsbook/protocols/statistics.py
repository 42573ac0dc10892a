"""How the book decides a verdict: folds that test every model once, intervals that resample tasks,
paired differences, and three outcomes.

* :func:`classification_folds`: every task's models dealt into ``k`` folds (the paper's 8/2 with
  ``k = 5`` and ten seeds), so that every model is tested exactly once.
* :func:`task_folds`: whole tasks dealt into ``k`` folds (retrieval: each task unseen exactly once).
* :func:`interval`: a statistic over test models (accuracy, mean rank, ...) with a 95 % interval from
  a bootstrap that resamples **tasks**: the models of one task share its data and are not independent.
* :func:`paired_difference`: the interval of ``a - b`` for two methods scored on the same test models,
  from the same resampled tasks; :func:`unpaired_difference` resamples each method on its own (for
  contrast: it ignores that both were tested on the same models, and is wider when their errors agree).
* :func:`published`: a number from a paper with its own binomial uncertainty.
* :func:`result_interval`, :func:`result_paired` (and :func:`result_outcomes`): the same from the
  predictions a protocol result or results file keeps (``{"protocols": {step: result}}``; :func:`view`
  wraps protocol results), in percent; :func:`cell` writes an interval for a table.
* :func:`decide`: one of :data:`HOLDS`, :data:`FAILS`, :data:`CANNOT_TELL` for "the difference is
  above ``line``": holds when the whole interval is above it, does not hold when the whole interval is
  below it, cannot tell when the interval straddles it.

The bootstrap is :func:`scipy.stats.bootstrap` (BCa, 2,000 resamples, seeded), on per-task sums and
counts, so tasks of different sizes weigh by their models.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..core.errors import LpsbookError

HOLDS, FAILS, CANNOT_TELL = "holds", "does not hold", "cannot tell"
LEVEL = 0.95
RESAMPLES = 2000
MIN_TASKS = 10  # fewer tasks than this: a bootstrap over tasks says little, and no verdict is drawn


# --- folds ------------------------------------------------------------------------------------------

def classification_folds(task_ids, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) of every model: each task's models, in a seeded random order, dealt into ``k`` folds.

    With ten models a task and ``k = 5``, every fold tests two models of every task and trains on the
    other eight (the paper's split), and every model is tested in exactly one fold.
    """
    task_ids = np.asarray(task_ids)
    counts = np.unique(task_ids, return_counts=True)[1]
    if len(task_ids) == 0 or counts.min() < 2:
        raise LpsbookError(f"classification folds need at least two models of every task (found {counts.min(initial=0)})")
    k = int(min(k, counts.min()))
    g, fold = np.random.default_rng(seed), np.empty(len(task_ids), dtype=int)
    for t in np.unique(task_ids):
        rows = g.permutation(np.flatnonzero(task_ids == t))
        for f, part in enumerate(np.array_split(rows, k)):
            fold[part] = f
    return fold


def task_folds(task_ids, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) of every model, by its task: the tasks, in a seeded random order, dealt into ``k`` folds."""
    task_ids = np.asarray(task_ids)
    tasks = np.random.default_rng(seed).permutation(np.unique(task_ids))
    if len(tasks) < 2:
        raise LpsbookError("task folds need at least two tasks")
    k = int(min(k, len(tasks)))
    of_task = {int(t): f for f, part in enumerate(np.array_split(tasks, k)) for t in part}
    return np.array([of_task[int(t)] for t in task_ids], dtype=int)


# --- intervals ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """An estimate with its interval: ``estimate`` and ``[low, high]`` at ``level``, from ``tasks`` tasks."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL
    tasks: int = 0

    def scaled(self, factor: float) -> "Interval":
        """The same interval in other units (``100`` for percent)."""
        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.level, self.tasks)

    def __sub__(self, c: float) -> "Interval":
        """The interval of ``estimate - c`` (a line moved to 0)."""
        return Interval(self.estimate - c, self.low - c, self.high - c, self.level, self.tasks)

    def __rsub__(self, c: float) -> "Interval":
        """The interval of ``c - estimate``."""
        return Interval(c - self.estimate, c - self.high, c - self.low, self.level, self.tasks)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.1f}\u00a0[{self.low:.1f},\u00a0{self.high:.1f}]"  # one line in a table cell


def _per_task(values, task_ids):
    """Per-task sums of ``values`` (rows: one per task) and per-task counts."""
    values, task_ids = np.asarray(values, dtype=float), np.asarray(task_ids)
    if values.shape[0] != task_ids.shape[0]:
        raise LpsbookError(f"{values.shape[0]} values for {task_ids.shape[0]} task ids")
    if values.shape[0] == 0:
        raise LpsbookError("no test models to compute an interval from")
    tasks, inverse = np.unique(task_ids, return_inverse=True)
    sums = np.zeros((len(tasks),) + values.shape[1:])
    np.add.at(sums, inverse, values)
    return sums, np.bincount(inverse).astype(float)


def _bootstrap(samples, statistic, paired: bool, seed: int, level: float):
    """scipy's BCa bootstrap of ``statistic`` (its low and high); the percentile interval where BCa is
    undefined (every resample alike), and the point itself when every task has the same value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: handled below
        for method in ("BCa", "percentile"):
            res = stats.bootstrap(samples, statistic, paired=paired, vectorized=True, n_resamples=RESAMPLES,
                                  confidence_level=level, method=method, random_state=np.random.default_rng(seed))
            low, high = res.confidence_interval
            if np.isfinite(low) and np.isfinite(high):
                return float(low), float(high)
    point = float(statistic(*samples, axis=-1))
    return point, point


def _ratio(sums, counts, axis=-1):
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def interval(values, task_ids, seed: int = 0, level: float = LEVEL) -> Interval:
    """The mean of ``values`` (one per test model) and its interval from resampled tasks."""
    sums, counts = _per_task(values, task_ids)
    estimate = float(sums.sum() / counts.sum())
    if len(counts) < 2 or np.allclose(sums / counts, estimate):
        return Interval(estimate, estimate, estimate, level, len(counts))
    low, high = _bootstrap((sums, counts), _ratio, True, seed, level)
    return Interval(estimate, min(low, estimate), max(high, estimate), level, len(counts))


def paired_difference(a, b, task_ids, seed: int = 0, level: float = LEVEL) -> Interval:
    """``mean(a) - mean(b)`` for two methods scored on the same test models, resampling tasks once for both."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise LpsbookError(f"a paired comparison needs the same test models: {a.shape} vs {b.shape} values")
    return interval(a - b, task_ids, seed, level)


def unpaired_difference(a, b, task_ids, seed: int = 0, level: float = LEVEL) -> Interval:
    """``mean(a) - mean(b)`` with each method's tasks resampled on their own (as if tested on other models)."""
    sa, ca = _per_task(a, task_ids)
    sb, cb = _per_task(b, task_ids)
    estimate = float(sa.sum() / ca.sum() - sb.sum() / cb.sum())

    def diff(sa, ca, sb, cb, axis=-1):
        return _ratio(sa, ca, axis) - _ratio(sb, cb, axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((sa, ca, sb, cb), diff, paired=False, vectorized=True, n_resamples=RESAMPLES, confidence_level=level,
                              method="percentile", random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return Interval(estimate, float(low), float(high), level, len(ca))


# --- pairs of tasks (the related-task AUC) -------------------------------------------------------------

def _auc(score, related, weight) -> float:
    """ROC AUC of related against unrelated pairs, each pair counted ``weight`` times (a tie counts half);
    NaN when either kind has no weight."""
    wp, wn = weight[related], weight[~related]
    total = wp.sum() * wn.sum()
    if total == 0:
        return np.nan
    d = score[related][:, None] - score[~related][None, :]
    return float((wp[:, None] * wn[None, :] * ((d > 0) + 0.5 * (d == 0))).sum() / total)


def pair_auc(folds, others=None, seed: int = 0, level: float = LEVEL) -> Interval:
    """The related-task AUC (mean over folds) from every held-out task pair a result keeps, with its
    interval from resampled **tasks** (percentile, seeded): a drawn task brings its pairs with every other
    drawn task, so a pair counts as often as both its tasks were drawn; a resample without a related (or an
    unrelated) pair left has no AUC and is left out, and with more than half of them left out the interval
    is undefined (NaN bounds, so a verdict on it cannot tell). ``folds``: per fold ``{"source", "target", "score",
    "related"}``, one entry per pair. With ``others`` (another method's pairs on the same folds), the
    paired difference ``folds - others`` on the same resampled tasks."""
    tasks = sorted({int(t) for f in folds for t in (*f["source"], *f["target"])})
    index = {t: i for i, t in enumerate(tasks)}

    def arrays(fs):
        return [(np.array([index[int(a)] for a in f["source"]]), np.array([index[int(b)] for b in f["target"]]),
                 np.asarray(f["score"], dtype=float), np.asarray(f["related"], dtype=bool)) for f in fs]

    sides = [arrays(folds)] + ([arrays(others)] if others is not None else [])

    def one(counts) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resample with no related pair in a fold: that fold left out
            v = [np.nanmean([_auc(sc, rel, counts[a] * counts[b]) for a, b, sc, rel in side]) for side in sides]
        return v[0] - v[1] if len(v) == 2 else v[0]

    estimate = one(np.ones(len(tasks)))
    if len(tasks) < 2 or not np.isfinite(estimate):
        return Interval(estimate, estimate, estimate, level, len(tasks))
    # Percentile bootstrap over tasks, seeded. A resample whose folds hold no related (or no unrelated) pair
    # has no AUC and is left out; when more than half have none, the pairs are too few for an interval
    # (NaN bounds: a verdict on it cannot tell).
    draws = np.random.default_rng(seed).integers(0, len(tasks), size=(RESAMPLES, len(tasks)))
    values = np.array([one(np.bincount(d, minlength=len(tasks))) for d in draws])
    values = values[np.isfinite(values)]
    if len(values) < RESAMPLES / 2:
        return Interval(estimate, float("nan"), float("nan"), level, len(tasks))
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate), level, len(tasks))


def published(value: float, n: int, level: float = LEVEL) -> Interval:
    """A proportion a paper reports (``value`` in [0, 1]) measured on ``n`` test items, with its Wilson interval.

    The paper's 79.8 % top-1 is one split of 100 test models: its own 95 % interval is about 71 to 87 %.
    """
    ci = stats.binomtest(round(value * n), n).proportion_ci(confidence_level=level, method="wilson")
    low, high = ci.low, ci.high
    return Interval(float(value), float(low), float(high), level, 0)


def versus_published(ours: Interval, paper: Interval) -> Interval:
    """The interval of ``ours - paper`` when the published number has its own uncertainty: the two
    half-widths on each side combined in quadrature (independent measurements)."""
    d = ours.estimate - paper.estimate
    return Interval(d, d - float(np.hypot(ours.estimate - ours.low, paper.high - paper.estimate)),
                    d + float(np.hypot(ours.high - ours.estimate, paper.estimate - paper.low)), ours.level, ours.tasks)


# --- from a result's kept predictions ------------------------------------------------------------------

def view(**steps) -> dict:
    """Protocol results (the book's :func:`lpsbook.show.book.experiment`, run with ``folds``) in the shape
    the functions here read: ``view(classification=cls, retrieval=ret)``."""
    return {"protocols": steps}


def result_outcomes(results: dict, step: str, method: str, part: str | None = None) -> dict:
    """One method's per-test-model outcomes of a step, in the order of the set's models:
    ``{"rows", "task", "top1", "top5", ...}`` (classification) or ``{"rows", "task", "rank1", ..., "ap"}``
    (retrieval), from the predictions the file keeps; ``part``: the branch (layer) of a protocol that
    fits one per layer (branches, ablation)."""
    folds = [f for f in results["protocols"][step]["predictions"][method] if part is None or f.get("layer") == part]
    if not folds:
        raise LpsbookError(f"{step} keeps no predictions of {method}{f' at {part}' if part else ''}")
    rows = np.concatenate([np.asarray(f["rows"], dtype=int) for f in folds])
    order = np.argsort(rows)
    if "task" in folds[0]:
        tasks = np.concatenate([np.asarray(f["task"], dtype=int) for f in folds])[order]
    else:  # files written before predictions carried the task
        tasks = np.asarray(results["models"]["task_id"])[rows[order]]
    out = {"rows": rows[order], "task": tasks}
    if "rank" in folds[0]:
        rank = np.concatenate([np.asarray(f["rank"]) for f in folds])[order]
        out.update({f"top{k}": (rank < k).astype(float) for k in (1, 5, 10)})
    else:
        hit = np.concatenate([np.asarray(f["first_hit"]) for f in folds])[order]
        out.update({f"rank{k}": ((hit >= 0) & (hit < k)).astype(float) for k in (1, 5, 10)})
        ap = np.concatenate([np.asarray(f["ap"], dtype=float) for f in folds])[order]
        out["mAP"] = np.nan_to_num(ap)
    return out


def result_interval(results: dict, step: str, method: str, metric: str, part: str | None = None) -> Interval:
    """``metric`` (%) of ``method`` in ``step`` (at ``part``) with its 95 % interval over resampled tasks."""
    o = result_outcomes(results, step, method, part)
    return interval(o[metric], o["task"]).scaled(100)


def result_paired(results: dict, step: str, a: str, b: str, metric: str, parts: tuple = (None, None)) -> Interval:
    """``a - b`` (points of ``metric``) on the same test models, with its paired 95 % interval; ``parts``:
    the branch of each side, for protocols that fit one per layer (``a`` and ``b`` may then be the same row)."""
    oa, ob = result_outcomes(results, step, a, parts[0]), result_outcomes(results, step, b, parts[1])
    if not np.array_equal(oa["rows"], ob["rows"]):
        raise LpsbookError(f"{a} and {b} were not tested on the same models in {step}")
    return paired_difference(oa[metric], ob[metric], oa["task"]).scaled(100)


def cell(iv: Interval, digits: int | None = None) -> str:
    """``"75.0 [70.1, 79.8]"``, kept on one line in the page (non-breaking spaces); ``digits`` decimals (by
    default 1, or 2 for a quantity whose interval lies within ±1: a correlation, an AUC)."""
    if digits is None:
        digits = 2 if max(abs(iv.low), abs(iv.high), abs(iv.estimate)) < 1 else 1
    return f"{iv.estimate:.{digits}f}\u00a0[{iv.low:.{digits}f},\u00a0{iv.high:.{digits}f}]"


# --- verdicts -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """A claim decided from an interval: the claim, the rule, the interval and one of three outcomes."""

    claim: str
    outcome: str
    interval: Interval
    line: float = 0.0
    rule: str = ""

    def to_dict(self) -> dict:
        return {"claim": self.claim, "outcome": self.outcome, "interval": self.interval.to_dict(),
                "line": self.line, "rule": self.rule}


def decide(claim: str, diff: Interval, line: float = 0.0, what: str = "the difference") -> Verdict:
    """``claim`` holds when the whole interval of ``diff`` lies above ``line``, does not hold when it lies
    wholly below, and cannot be told at this size when the interval contains ``line`` or rests on fewer
    than :data:`MIN_TASKS` tasks (``diff.tasks``; 0 means not counted, as for a published number)."""
    if 0 < diff.tasks < MIN_TASKS:
        outcome = CANNOT_TELL
    elif diff.low > line:
        outcome = HOLDS
    elif diff.high < line:
        outcome = FAILS
    else:
        outcome = CANNOT_TELL
    rule = (f"holds if the {round(100 * diff.level)} % interval of {what} (tasks resampled) lies above {line:g}, "
            f"does not hold if it lies below, cannot tell if it contains {line:g} or rests on fewer than "
            f"{MIN_TASKS} tasks")
    return Verdict(claim, outcome, diff, line, rule)


def decide_by_spread(claim: str, diff: float, margin: float, what: str = "the difference", splits: int = 3) -> Verdict:
    """The three outcomes for results that keep only a mean and sd over a few random splits or seeds
    (``splits``; older files, and protocols that keep no per-model predictions): holds when ``diff`` exceeds
    ``margin``, does not hold when it is below ``-margin``, cannot tell within it (or when the margin is
    not a number). Weaker than :func:`decide` (no interval, no pairing); its rule says so."""
    if margin == margin and diff > margin:  # margin == margin: not NaN
        outcome = HOLDS
    elif margin == margin and diff < -margin:
        outcome = FAILS
    else:
        outcome = CANNOT_TELL
    rule = f"{what} beyond ± the larger sd over {splits} runs: above holds, below not, within cannot tell"
    return Verdict(claim, outcome, Interval(diff, diff - margin, diff + margin, tasks=0), 0.0, rule)


def follows_rule(v: Verdict) -> bool:
    """Whether ``v``'s outcome is the one :func:`decide` gives its interval and line (a check for pages
    that show verdicts computed elsewhere)."""
    return v.outcome == decide(v.claim, v.interval, v.line).outcome
