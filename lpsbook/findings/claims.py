"""The paper's claims and ours, decided by fixed rules from protocol results (methods by id).

* :data:`PAPER`: the paper's Tables 1-2;
* :func:`paper_claims` (Tables 1-2), :func:`figure3_claims` (Figure 3):
  each claim with the paper's number, ours (mean ± sd over splits) and a
  verdict, :data:`HOLDS` or :data:`FAILS`, by a rule written in the docstring;
* :func:`challenge`, :func:`challenges`: does a method beat LPS, protocol by protocol;
* :func:`whole_network_findings`: what chapter 9 concludes.

A new claim is one row of a rule table here.
"""
from __future__ import annotations

from ..methods.registry import reads
from ..core.nets import layer_number
from ..protocols.results import label

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
    lps, lps_sd = spread(cls, "lps", "top1")
    blind = max(("fc", "frobenius"), key=lambda m: spread(cls, m, "top1")[0])
    base, base_sd = spread(cls, blind, "top1")
    r_lps, r_lps_sd = spread(ret, "lps", "rank1")
    r_rand, r_rand_sd = spread(ret, "random", "rank1")
    paper_cls, paper_ret = PAPER["classification"], PAPER["retrieval"]
    rows = [
        ("LPS reads the task of held-out models far above chance (Table 1)",
         f"{paper_cls['lps'][0]:.1f} % top-1, chance 2.0 %", f"{lps:.1f} ± {lps_sd:.1f} %, chance {chance:.1f} %",
         lps - 2 * lps_sd > 3 * chance),
        ("LPS beats the baselines that ignore the symmetry (Table 1)",
         f"{paper_cls['lps'][0]:.1f} vs at most {paper_cls['frobenius'][0]:.1f} %",
         f"{lps:.1f} ± {lps_sd:.1f} vs {base:.1f} ± {base_sd:.1f} % ({label(blind)})", lps - lps_sd > base + base_sd),
        ("those baselines stay near chance (Table 1)",
         f"at most {paper_cls['frobenius'][0]:.1f} %", f"at most {base:.1f} %", base < 5 * chance),
        ("LPS retrieves the query's task first far more often than random (Table 2)",
         f"{paper_ret['lps'][0]:.1f} vs {paper_ret['random'][0]:.1f} % rank-1",
         f"{r_lps:.1f} ± {r_lps_sd:.1f} vs {r_rand:.1f} ± {r_rand_sd:.1f} %", r_lps - r_lps_sd > r_rand + r_rand_sd),
        ("LPS reaches the paper's level (Table 1)", f"{paper_cls['lps'][0]:.1f} % top-1", f"{lps:.1f} ± {lps_sd:.1f} %",
         lps + 2 * lps_sd >= paper_cls["lps"][0] - 5),
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
    chance = 100 / n_tasks
    rho, rho_sd = spread(tr, "lps", "spearman_per_target", scale=1)
    per_branch = {layer: 100 * v["mean"] for layer, v in br["results"]["lps"].items()}
    layers = list(per_branch)
    first, rest = per_branch[layers[0]], max(per_branch[layer] for layer in layers[1:])
    deep = [per_branch[layer] for i, layer in enumerate(layers) if layer_number(layer) >= 13]
    deep_mean = sum(deep) / len(deep) if deep else float("nan")
    on = ab["results"]["both_on"]
    best = max(on, key=lambda layer: on[layer]["mean"])
    margin = max(1.0, 100 * on[best]["std"])
    drop_f = 100 * (on[best]["mean"] - ab["results"]["no_filter_alignment"][best]["mean"])
    drop_c = 100 * (on[best]["mean"] - ab["results"]["no_channel_alignment"][best]["mean"])
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


HOLDS, FAILS = "holds", "does not hold"  # a claim's verdict, in the words the prose uses


def verdict_table(rows: list):
    """(claim, paper, ours, holds) rows as a table indexed by claim; ``holds`` is :data:`HOLDS` or :data:`FAILS`."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"]).set_index("claim")
    table["holds"] = [HOLDS if h else FAILS for h in table["holds"]]
    return table


def challenge(results: dict, challenger: str, incumbent: str = "lps") -> "pandas.DataFrame":
    """Does ``challenger`` beat ``incumbent`` on each protocol, with non-overlapping spreads?

    ``results = {label: (protocol result, metric, scale)}``; methods are ids.
    A row per label: both means ± sd (over splits) and whether the
    challenger's mean minus its sd is above the incumbent's mean plus its sd
    (column ``beats it``, a bool).
    """
    import pandas as pd

    rows = []
    for name, (result, metric, scale) in results.items():
        c, c_sd = spread(result, challenger, metric, scale)
        i, i_sd = spread(result, incumbent, metric, scale)
        rows.append((name, f"{c:.2f} ± {c_sd:.2f}", f"{i:.2f} ± {i_sd:.2f}", c - c_sd > i + i_sd))
    return pd.DataFrame(rows, columns=["claim", label(challenger), label(incumbent), "beats it"]).set_index("claim")


def main_metrics(classification, retrieval, transferability) -> dict:
    """The five numbers chapter 9 compares methods on: ``{label: (result, metric, scale)}``."""
    return {"classification top-1 %": (classification, "top1", 100), "retrieval rank-1 %": (retrieval, "rank1", 100),
            "retrieval mAP %": (retrieval, "mAP", 100),
            "transfer Spearman (per target)": (transferability, "spearman_per_target", 1),
            "related-task AUC (retrieval split)": (transferability, "related_auc", 1)}


def challenges(classification, retrieval, transferability, challengers, incumbent: str = "lps"):
    """:func:`challenge` of every method id in ``challengers`` on the five main metrics, one table indexed by
    (challenger id, metric)."""
    import pandas as pd

    metrics = main_metrics(classification, retrieval, transferability)
    return pd.concat({m: challenge(metrics, m, incumbent).set_axis(["challenger", "incumbent", "beats it"], axis=1)
                      for m in challengers}, names=["challenger"])


def whole_network_findings(cls, tr, verdicts, stages_result, references, probes_result, n_tasks: int) -> dict:
    """What chapter 9's conclusion says, computed from its results (names and numbers for the prose)."""
    top1 = means(cls, "top1", 100)
    new = list(verdicts.index.get_level_values(0).unique())
    best = max(new, key=top1.get)
    wins = {m: verdicts.loc[m]["beats it"] for m in new}
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
