"""What a protocol returns, how its models are split, and the runner every protocol goes through.

* :class:`ProtocolResult`: the typed result, one row per method **id**
  (:data:`lpsbook.methods.registry.REGISTRY`; display names appear only in tables
  and figures), or per variant where a protocol compares variants.
* :func:`classification_split`, :func:`retrieval_split`, :func:`task_folds`:
  the seeded splits of a model set.
* :func:`run_protocol`: every (row, part, split) fit, resumable, summarised
  over splits; :func:`merge` joins results of one protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import numpy as np

from .. import code_version
from ..core.errors import LpsbookError
from ..methods.lps import LPSConfig
from ..methods.registry import display_name
from ..core.progress import bar as progress_bar
from ..core.parallel import imap, seeded, workers
from ..core.store import Checkpoint


# the ablation's rows (Fig. 3c): id -> (label, filter alignment on, channel alignment on)
ABLATION_VARIANTS = {"both_on": ("both on", True, True), "no_filter_alignment": ("filter alignment off", False, True),
                     "no_channel_alignment": ("channel alignment off", True, False),
                     "both_off": ("both off", False, False)}
REFERENCES = {"leep": "LEEP (reads the target data)", "logme": "LogME (reads the target data)"}  # not weight methods


def label(row: str) -> str:
    """What tables and figures call a result row: a method's display name, an ablation variant's label,
    any other row (a part of the network, a probe count) as it is."""
    if row in ABLATION_VARIANTS:
        return ABLATION_VARIANTS[row][0]
    if row in REFERENCES:
        return REFERENCES[row]
    try:
        return display_name(row)
    except LpsbookError:
        return row


def default_config(ms) -> LPSConfig:
    """Second-order training settings: the paper's on its recipe (cifar100), a faster mini-batch one otherwise."""
    if ms.preset.follows_paper:
        return LPSConfig.paper()
    return LPSConfig(epochs=60, batch_size=8, lr=0.05, milestones=(30, 45))


def summarise(values: list) -> dict:
    """``{"mean", "std", "values"}`` of one metric over splits (``std`` the sample sd)."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "values": arr.tolist()}


# --- splits ---------------------------------------------------------------------------------------

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


def task_folds(ms, folds: int, seed: int = 0) -> list:
    """The tasks split into ``folds`` disjoint groups (seeded)."""
    tasks = np.random.default_rng(seed).permutation(sorted(ms.meta["task_id"].unique()))
    folds = max(2, min(folds, len(tasks) // 3))  # at least three tasks per fold where possible
    return [sorted(part.tolist()) for part in np.array_split(tasks, folds)]


# --- the result and the runner --------------------------------------------------------------------

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
        ``{row: {metric: {"mean", "std", "values"}}}``: a row is a method id
        (or an ablation variant, a part of the network), ``values`` has one entry per split (seed), in
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


def run_protocol(kind: str, ms, jobs, evaluate, settings: dict, checkpoint=None, parallel: bool = False,
                 prepare=None) -> ProtocolResult:
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
        Each job runs with random generators seeded from its own key
        (:func:`lpsbook.core.parallel.seeded`).
    settings : dict
        What the run depends on; keys the checkpoint, with the preset and the code version.
    checkpoint : path, optional
        Finished jobs are kept there, so an interrupted run resumes; removed at the end.
    parallel : bool
        The jobs are independent: run them side by side in forked processes, one thread each, where
        :func:`lpsbook.core.parallel.workers` allows (a CPU-only machine with fork). The results are
        the same up to float rounding (one thread adds in another order than two).
    prepare : callable (list of jobs) -> None, optional
        Called once with the jobs still to run (none when every job is checkpointed), before the first:
        what they share can be made ready there (retrieval fits its methods side by side).
    """
    t0 = time.time()
    ckpt = Checkpoint(checkpoint, {"kind": kind, "preset": ms.preset.hash, **settings})
    keys = [f"{row}|{part}|{seed}" for row, part, seed in jobs]
    todo = [(k, job) for k, job in zip(keys, jobs) if ckpt.get(k) is None]

    def one(item):
        key, (row, part, seed) = item
        with seeded(f"{kind}|{key}"):
            return evaluate(row, part, seed)

    if prepare is not None and todo:
        prepare([job for _, job in todo])
    with progress_bar(total=len(jobs), initial=len(jobs) - len(todo), desc=kind, unit="fit") as bar:
        for i, res in imap(one, todo, workers(len(todo)) if parallel else 1):
            ckpt.put(todo[i][0], res)
            bar.update()
    per_seed, extras = {}, {}
    for key, (row, _, seed) in zip(keys, jobs):
        res = ckpt.get(key)
        per_seed.setdefault(row, {}).setdefault(seed, {}).update({k: v for k, v in res.items() if not k.startswith("_")})
        for k, v in res.items():
            if k.startswith("_"):
                extras.setdefault(k[1:], {}).setdefault(row, []).append(v)
    results = {}
    for row, by_seed in per_seed.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        results[row] = {metric: summarise([r[metric] for r in runs]) for metric in runs[0]}
    ckpt.finish()
    return ProtocolResult(kind, ms.preset.name, ms.preset.hash, code_version(), len(ms), settings, results,
                          round(time.time() - t0, 2), extras)


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
