"""The paper's claims and ours, decided by fixed rules from protocol results (methods by id).

* :data:`PAPER`: the paper's Tables 1-2;
* :func:`paper_claims` (Tables 1-2), :func:`figure3_claims` (Figure 3):
  each claim with the paper's number, ours and a verdict of three outcomes
  (:data:`HOLDS`, :data:`FAILS`, :data:`CANNOT_TELL`) decided by
  :mod:`lpsbook.protocols.statistics` from an interval, by a rule written in the docstring;
* :func:`challenge`, :func:`challenges`: does a method beat LPS, protocol by protocol (paired);
* :func:`whole_network_findings`: what chapter 9 concludes.

A new claim is one row of a rule table here.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.errors import LpsbookError
from ..core.nets import layer_number
from ..methods.registry import reads
from ..protocols import statistics as st
from ..protocols.results import label
from ..protocols.statistics import decide, decide_by_spread

# the paper's Tables 1-2 (%): top-1/5/10 and rank-1/5/10, by method id
PAPER = {
    "classification": {"random": (2.0, 9.6, 18.3), "fc": (5.3, 17.5, 29.3), "frobenius": (5.5, 18.3, 29.0),
                       "lps": (79.8, 94.8, 98.0)},
    "retrieval": {"random": (10.0, 41.0, 65.1), "fc": (15.0, 55.8, 83.3), "frobenius": (13.3, 58.3, 80.0),
                  "lps": (80.7, 95.0, 95.8)},
}


def means(result: dict, metric: str, scale: float = 1.0) -> dict:
    """{method: scale x mean over seeds of ``metric``} of a protocol's result."""
    return {m: scale * r[metric]["mean"] for m, r in result["results"].items() if metric in r}


def measure_families(result: dict) -> tuple:
    """(activation measures, weight methods) of a weights-or-activations result, in its order."""
    names = list(result["results"])
    return [m for m in names if reads(m) == "activations"], [m for m in names if reads(m) == "weights"]


def chance_topk(n_tasks: int, ks=(1, 5, 10)) -> dict:
    """Chance level (%) of top-k task classification among ``n_tasks`` tasks."""
    return {f"top{k}": 100 * min(k, n_tasks) / n_tasks for k in ks}


def spread(result: dict, method: str, metric: str, scale: float = 100) -> tuple:
    """``(mean, sd)`` over splits of one method's metric, times ``scale``."""
    r = result["results"][method][metric]
    return scale * r["mean"], scale * r["std"]


def relation_findings(tr: dict, sim: dict) -> dict:
    """Chapter 6's reading of transfer and relatedness among the weight-based methods of ``tr``: LPS's
    per-target Spearman with transfer and its related-task AUC (the similarity protocol's), and the best
    other method on each (by display name)."""
    rho = means(tr, "spearman_per_target")
    auc = {m: v for m, v in means(sim, "related_auc").items() if m in rho and v == v}  # v == v: not NaN
    others = {m: v for m, v in rho.items() if m != "lps"}
    best_rho, best_auc = max(others, key=others.get), max(auc, key=auc.get)
    return {"lps_rho": rho["lps"], "lps_auc": auc["lps"], "best_rho": label(best_rho),
            "best_rho_value": others[best_rho], "best_auc": label(best_auc), "best_auc_value": auc[best_auc]}


def interval_of(result, method: str, metric: str):
    """``metric`` (%) of ``method`` with its interval over resampled tasks, from the result's predictions."""
    return st.result_interval(st.view(step=result), "step", method, metric)


def _paired(result, a: str, b: str, metric: str):
    """``a - b`` in points of ``metric`` on the same test models (paired interval over resampled tasks)."""
    return st.result_paired(st.view(step=result), "step", a, b, metric)


def _cell(iv, digits: int = 1) -> str:
    """An interval for a table cell, in percent by default (one decimal)."""
    return st.cell(iv, digits)


PAPER_TEST_MODELS = 100  # the paper's classification: one split, two test models of each of 50 tasks


def headline(lps) -> "st.Verdict":
    """"LPS reaches the paper's 79.8 %": our top-1 interval (``lps``, %) against the paper's, which has its
    own (a binomial one over its 100 test models); the difference is judged by :func:`statistics.decide`
    at 0: cannot tell unless the whole interval of the difference is above or below it."""
    paper = PAPER["classification"]["lps"][0]
    theirs = st.published(paper / 100, PAPER_TEST_MODELS)
    d = st.versus_published(lps.scaled(0.01), theirs).scaled(100)
    return decide(f"LPS reaches the paper's {paper:.1f} % top-1", d, 0.0,
                  "LPS's top-1 minus the paper's in points, both uncertainties combined")


def paper_claims(cls: dict, ret: dict, n_tasks: int):
    """The paper's claims about Tables 1-2, each with its number, ours (with its 95 % interval) and a verdict.

    ``cls`` and ``ret`` are classification and retrieval results run on folds (every test model's
    prediction kept). Each claim is a quantity whose 95 % interval (tasks resampled) decides it by
    :func:`lpsbook.protocols.statistics.decide`: holds when the interval lies above 0, does not hold when
    it lies below, cannot tell when it contains 0:

    * *far above chance*: LPS's top-1 minus three times chance;
    * *beats the symmetry-blind baselines*: LPS's top-1 minus the better of one FC layer and
      Frobenius+FC, paired on the same test models;
    * *baselines near chance*: five times chance minus that baseline's top-1;
    * *retrieval above random*: LPS's rank-1 minus random prediction's, paired on the same queries;
    * *the paper's level*: LPS's top-1 minus the paper's 79.8 %, the paper's own binomial interval (one
      split of 100 test models) combined with ours.
    """
    chance = 100 / n_tasks
    lps = interval_of(cls, "lps", "top1")
    blind = max(("fc", "frobenius"), key=lambda m: interval_of(cls, m, "top1").estimate)
    base, r_lps, r_rand = interval_of(cls, blind, "top1"), interval_of(ret, "lps", "rank1"), interval_of(ret, "random", "rank1")
    paper_cls, paper_ret = PAPER["classification"], PAPER["retrieval"]
    level = headline(lps)
    rows = [
        ("LPS reads the task of held-out models far above chance (Table 1)",
         f"{paper_cls['lps'][0]:.1f} % top-1, chance 2.0 %", f"{_cell(lps)} %, chance {chance:.1f} %",
         decide("", lps - 3 * chance, 0.0, "LPS's top-1 minus three times chance"), "LPS − 3 × chance"),
        ("LPS beats the baselines that ignore the symmetry (Table 1)",
         f"{paper_cls['lps'][0]:.1f} vs at most {paper_cls['frobenius'][0]:.1f} %", f"{label(blind)}: {_cell(base)} %",
         decide("", _paired(cls, "lps", blind, "top1"), 0.0, f"LPS minus {label(blind)} (paired)"),
         f"LPS − {label(blind)}, paired"),
        ("those baselines stay near chance (Table 1)",
         f"at most {paper_cls['frobenius'][0]:.1f} %", f"{_cell(base)} %",
         decide("", 5 * chance - base, 0.0, f"five times chance minus {label(blind)}"), f"5 × chance − {label(blind)}"),
        ("LPS retrieves the query's task first far more often than random (Table 2)",
         f"{paper_ret['lps'][0]:.1f} vs {paper_ret['random'][0]:.1f} % rank-1", f"{_cell(r_lps)} vs {_cell(r_rand)} %",
         decide("", _paired(ret, "lps", "random", "rank1"), 0.0, "LPS's rank-1 minus random's (paired)"),
         "LPS − random, rank-1, paired"),
        ("LPS reaches the paper's level (Table 1)", f"{paper_cls['lps'][0]:.1f} % top-1", f"{_cell(lps)} %",
         level, "LPS − paper, both intervals"),
    ]
    return verdict_table(rows)


def figure3_claims(tr: dict, br: dict, ab: dict, n_tasks: int):
    """The paper's claims about its Figure 3, each with what we measured and a verdict of three outcomes,
    each decided on a 95 % interval (tasks resampled) by :func:`~lpsbook.protocols.statistics.decide`:

    * (a) *LPS similarity rises with transfer*: LPS's Spearman with measured transfer, per target task,
      minus 0.1, with its interval over resampled target tasks;
    * (b) *the first branch carries the most*: branch 1's top-1 minus the best other measured branch's,
      paired on the same test models;
    * (b) *the deepest branches are at chance*: twice chance minus their top-1 (averaged over the branches
      from layer 13 on, per test model);
    * (c) *each alignment matters*: the drop in top-1 with the sort over filters (or the max over
      channels) switched off, minus one point, paired on the same test models, on the ablated branch where
      LPS does best with both on (the paper finds the drop on branches 2-19; where those sit at chance, as
      on our CPU model sets, only the best branch can show one).

    Branches and ablation are run on folds (``folds`` in their settings) and keep every test model's
    prediction per branch; they test the models of their first folds only (each once).
    """
    chance = 100 / n_tasks
    rho = target_interval(tr, "lps")
    v = st.view(branches=br, ablation=ab)
    per_branch = {layer: 100 * s["mean"] for layer, s in br["results"]["lps"].items()}
    layers = list(per_branch)
    first, rest = layers[0], max(layers[1:], key=per_branch.get)
    on_first = st.result_interval(v, "branches", "lps", "top1", first)
    lead = st.result_paired(v, "branches", "lps", "lps", "top1", (first, rest))
    deep = [layer for layer in layers if layer_number(layer) >= 13]
    outs = [st.result_outcomes(v, "branches", "lps", layer) for layer in deep]
    deep_iv = st.interval(np.mean([o["top1"] for o in outs], axis=0), outs[0]["task"]).scaled(100) if deep else None
    on = ab["results"]["both_on"]
    best = max(on, key=lambda layer: on[layer]["mean"])
    where = f" at branch {layer_number(best)}"

    def drop(variant):
        return st.result_paired(v, "ablation", "both_on", variant, "top1", (best, best))

    drop_f, drop_c = drop("no_filter_alignment"), drop("no_channel_alignment")
    rows = [
        ("(a) LPS similarity rises with transfer", "roughly proportional", f"Spearman per target {_cell(rho, 2)}",
         decide("", rho - 0.1, 0.0, "LPS's per-target Spearman minus 0.1 (target tasks resampled)"),
         "Spearman − 0.1"),
        ("(b) the first branch carries the most", "79.8 % top-1 at branch 1",
         f"{on_first} % at branch 1, best other (branch {layer_number(rest)}) {per_branch[rest]:.1f} %",
         decide("", lead, 0.0, "branch 1 minus the best other, on the same test models"), "branch 1 − best other"),
        ("(b) the deepest branches are at chance", "branches 13-19 at chance",
         f"{deep_iv} % (chance {chance:.1f} %)" if deep_iv else "no branch from layer 13 on measured",
         decide("", 2 * chance - deep_iv, 0.0, "twice chance minus their top-1") if deep_iv else
         decide_by_spread("", float("nan"), float("nan")), "2 × chance − top-1"),
        ("(c) filter alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_f.estimate:+.1f} points without it{where}",
         decide("", drop_f - 1.0, 0.0, "the drop minus one point, on the same test models"), "drop − 1 point"),
        ("(c) channel alignment matters", "accuracy drops without it (branches 2-19)",
         f"{-drop_c.estimate:+.1f} points without it{where}",
         decide("", drop_c - 1.0, 0.0, "the drop minus one point, on the same test models"), "drop − 1 point"),
    ]
    return verdict_table(rows)


HOLDS, FAILS, CANNOT_TELL = st.HOLDS, st.FAILS, st.CANNOT_TELL  # a claim's outcome, in the words the prose uses


def verdict_table(rows: list):
    """(claim, paper, ours, verdict, test) rows as a table indexed by claim: the paper's number, ours, the
    quantity that decides (``test``, judged against 0), its 95 % interval and the outcome. The verdicts
    (with their rules) are in ``table.attrs["verdicts"]``."""
    import pandas as pd

    verdicts = [replace(v, claim=claim) for claim, _, _, v, _ in rows]
    table = pd.DataFrame([{"claim": claim, "paper": paper, "ours": ours, "decided on (> 0)": test,
                           "95 % interval": st.cell(v.interval), "outcome": v.outcome}
                          for (claim, paper, ours, v, test) in rows]).set_index("claim")
    table.attrs["verdicts"] = verdicts
    return table


def ablation_reading(ab) -> tuple:
    """Chapter 6's reading of the ablation: top-1 (%) of each variant on its first ablated branch, and the
    best top-1 of any variant on the other branches."""
    first = ab["settings"]["layers"][0]
    on_first = {variant: 100 * per[first]["mean"] for variant, per in ab["results"].items()}
    deeper = max(100 * v["mean"] for per in ab["results"].values() for layer, v in per.items() if layer != first)
    return on_first, deeper


def follow_their_rules(table) -> bool:
    """Whether every verdict of a :func:`verdict_table` has the outcome its interval and line give
    (:func:`lpsbook.protocols.statistics.follows_rule`): the chapters' hidden check."""
    return all(st.follows_rule(v) for v in table.attrs["verdicts"])


def target_interval(tr, method: str):
    """``method``'s Spearman with measured transfer, per target task, pooled over the splits, with its
    interval over resampled targets (an :class:`~lpsbook.protocols.statistics.Interval`)."""
    values, tasks = _per_target(tr, method)
    return st.interval(values, tasks)


def auc_interval(tr, method: str):
    """``method``'s related-task AUC (mean over folds) with its interval over resampled tasks, from the
    held-out pairs a transferability result keeps."""
    if "related_pairs" not in tr:
        raise LpsbookError("this transferability result keeps no task pairs; run it again")
    return st.pair_auc(tr["related_pairs"][method])


def _per_target(tr, method: str, other: str | None = None):
    """(values, target tasks) of ``method`` (minus ``other``'s on the same targets), undefined ones left out."""
    if "per_target" not in tr:
        raise LpsbookError("this transferability result keeps no per-target values; run it again with folds")
    a = tr["per_target"][method]
    values = np.concatenate([np.asarray(s["spearman"], dtype=float) for s in a])
    if other is not None:
        values = values - np.concatenate([np.asarray(s["spearman"], dtype=float) for s in tr["per_target"][other]])
    tasks = np.concatenate([np.asarray(s["task"]) + 10_000 * i for i, s in enumerate(a)])  # a split's targets apart
    keep = np.isfinite(values)
    return values[keep], tasks[keep]


def challenge(results: dict, challenger: str, incumbent: str = "lps") -> "pandas.DataFrame":
    """Does ``challenger`` beat ``incumbent``, protocol by protocol, in three outcomes?

    ``results = {label: (protocol result, metric, scale)}``; methods are ids. Classification and retrieval
    metrics are compared on the same test models (a paired interval over resampled tasks, from the kept
    predictions); per-target transfer Spearman on the same target tasks (paired, targets resampled); the
    related-task AUC on the same held-out task pairs (paired, tasks resampled,
    :func:`~lpsbook.protocols.statistics.pair_auc`); a metric kept only as a mean and sd over splits (a
    result run before these were kept) by :func:`~lpsbook.protocols.statistics.decide_by_spread`. A row per label: both values, the difference
    with its interval, and the outcome (column ``beats it``: holds, does not hold or cannot tell).
    """
    import pandas as pd

    rows, verdicts = [], []
    for name, (result, metric, scale) in results.items():
        claim = f"{label(challenger)} beats {label(incumbent)} on {name}"
        if "predictions" in result and metric in ("top1", "top5", "top10", "rank1", "rank5", "rank10", "mAP"):
            c, i = interval_of(result, challenger, metric), interval_of(result, incumbent, metric)
            v = decide(claim, _paired(result, challenger, incumbent, metric), 0.0, "the paired difference")
            cells = _cell(c), _cell(i)
        elif metric == "related_auc" and "related_pairs" in result:
            c, i = auc_interval(result, challenger), auc_interval(result, incumbent)
            v = decide(claim, st.pair_auc(result["related_pairs"][challenger], result["related_pairs"][incumbent]),
                       0.0, "the paired difference over resampled tasks")
            cells = _cell(c, 2), _cell(i, 2)
        elif metric == "spearman_per_target" and "per_target" in result:
            c, i = target_interval(result, challenger), target_interval(result, incumbent)
            v = decide(claim, st.interval(*_per_target(result, challenger, incumbent)), 0.0,
                       "the paired difference over target tasks")
            cells = f"{c.estimate:.2f}", f"{i.estimate:.2f}"
        else:
            (c, c_sd), (i, i_sd) = spread(result, challenger, metric, scale), spread(result, incumbent, metric, scale)
            splits = len(result["results"][incumbent][metric].get("values") or [0] * 3)
            v = decide_by_spread(claim, c - i, max(c_sd, i_sd), "the difference", splits)
            cells = f"{c:.2f}\u00a0±\u00a0{c_sd:.2f}", f"{i:.2f}\u00a0±\u00a0{i_sd:.2f}"
        rows.append((name, *cells, _cell(v.interval, 1 if scale == 100 else 2), v.outcome))
        verdicts.append(v)
    table = pd.DataFrame(rows, columns=["claim", label(challenger), label(incumbent), "difference [95 % interval]",
                                        "beats it"]).set_index("claim")
    table.attrs["verdicts"] = verdicts
    return table


def main_metrics(classification, retrieval, transferability) -> dict:
    """The five numbers chapter 9 compares methods on: ``{label: (result, metric, scale)}``."""
    return {"classification top-1 %": (classification, "top1", 100), "retrieval rank-1 %": (retrieval, "rank1", 100),
            "retrieval mAP %": (retrieval, "mAP", 100),
            "transfer Spearman (per target)": (transferability, "spearman_per_target", 1),
            "related-task AUC (retrieval split)": (transferability, "related_auc", 1)}


CHALLENGE_COLUMNS = ["challenger", "incumbent", "difference [95 % interval]", "beats it"]


def challenges(classification, retrieval, transferability, challengers, incumbent: str = "lps"):
    """:func:`challenge` of every method id in ``challengers`` on the five main metrics, one table indexed by
    (challenger id, metric)."""
    import pandas as pd

    metrics = main_metrics(classification, retrieval, transferability)
    return pd.concat({m: challenge(metrics, m, incumbent).set_axis(CHALLENGE_COLUMNS, axis=1) for m in challengers},
                     names=["challenger"])


# Chapter 7: does respecting the symmetry help? Each (challenger, incumbent) on the same test models.
SYMMETRY_PAIRS = (("weight_stats", "fc"), ("rebasin_fc", "fc"), ("lps", "rebasin_fc"), ("lps", "weight_stats"))


def pairwise(classification, retrieval, pairs=SYMMETRY_PAIRS):
    """:func:`challenge` of each ``(challenger, incumbent)`` of ``pairs`` on classification top-1 and retrieval
    rank-1 (paired on the same test models), one table indexed by (comparison, metric); the verdicts, with
    their rules, in ``table.attrs["verdicts"]`` (each claim "challenger beats incumbent on metric")."""
    import pandas as pd

    metrics = {"classification top-1 %": (classification, "top1", 100), "retrieval rank-1 %": (retrieval, "rank1", 100)}
    tables, verdicts = {}, []
    for a, b in pairs:
        table = challenge(metrics, a, b)
        tables[f"{label(a)} vs {label(b)}"], verdicts = table.set_axis(CHALLENGE_COLUMNS, axis=1), verdicts + table.attrs["verdicts"]
    out = pd.concat(tables, names=["comparison"])
    out.attrs["verdicts"] = verdicts
    return out


def pairwise_lines(table) -> str:
    """:func:`pairwise`'s verdicts as a markdown list for the page (glued): each comparison, its outcome in
    bold and the paired difference with its interval, per metric."""
    lines = []
    for comparison in dict.fromkeys(table.index.get_level_values(0)):
        parts = [f"{metric}: **{row['beats it']}** ({row['difference [95 % interval]']} points)"
                 for metric, row in table.loc[comparison].iterrows()]
        lines.append(f"* {comparison.replace(' vs ', ' beats ')}? " + "; ".join(parts) + ".")
    return "\n".join(lines)


def whole_network_findings(cls, tr, verdicts, stages_result, references, probes_result, n_tasks: int) -> dict:
    """What chapter 9's conclusion says, computed from its results (names and numbers for the prose)."""
    top1 = means(cls, "top1", 100)
    new = list(verdicts.index.get_level_values(0).unique())
    best = max(new, key=top1.get)
    wins = {m: verdicts.loc[m]["beats it"] == HOLDS for m in new}
    stage_top1 = {p: 100 * v["top1"]["mean"] for p, v in stages_result["results"].items()}
    best_part = max(stage_top1, key=stage_top1.get)
    ref_rho, weights_rho = means(references, "spearman_per_target"), means(tr, "spearman_per_target")
    best_weights = max((m for m in weights_rho if reads(m) == "weights"), key=weights_rho.get)
    probes = sorted((int(r), 100 * v["top1"]["mean"]) for r, v in probes_result["results"].items())
    some = sorted(label(m) for m, w in wins.items() if w.any())
    return {"best_id": best, "best": label(best), "best_top1": top1[best], "lps_top1": top1["lps"],
            "chance": 100 / n_tasks,
            "verdict": ("beats LPS on every protocol" if any(w.all() for w in wins.values())
                        else "does not beat LPS on every protocol"), "some": ", ".join(some) or "none of them",
            "best_part": best_part, "best_part_top1": stage_top1[best_part],
            "whole_top1": top1["graph"], "leep": ref_rho["leep"], "logme": ref_rho["logme"],
            "best_weights": label(best_weights), "best_weights_rho": weights_rho[best_weights],
            "probe_counts": ", ".join(f"{n}: {v:.1f} %" for n, v in probes)}
