"""Tables and text for the page: results as a reader writes them (an estimate with its interval, or
``mean ± sd``, in one cell; names a reader uses; the paper's number beside ours), settings as sentences.

Results keep method ids (:mod:`lpsbook.protocols.results`); this module is where they
become display names.  Figures are :mod:`lpsbook.show.viz` and :mod:`lpsbook.show.filterplots`.
"""
from __future__ import annotations

from ..methods import registry
from ..findings.claims import PAPER, main_metrics
from ..core.nets import layer_number, short_layer
from ..protocols.results import label as row_label


def show(table, digits: int = 1):
    """A results table for the page: numbers rounded, a dash where there is no value (e.g. the paper's),
    verdicts (bools) as yes / no."""
    table = table.copy()
    for col in table.columns[(table.dtypes == bool).to_numpy()]:
        table[col] = table[col].map({True: "yes", False: "no"})
    return table.style.format(precision=digits, na_rep="—")


def paper_table(result: dict, metrics, rows=None):
    """Numbers for :func:`paper_vs_ours`, in %: per method (display names) and metric, the paper's
    (``"<metric> paper"``), ours (``"<metric> ours"``) and our sd over splits (``"<metric> ours sd"``); for a
    result run on folds, also the 95 % interval (``"<metric> ours low"``, ``"<metric> ours high"``)."""
    import pandas as pd

    from ..protocols.statistics import result_interval, view

    paper, out = PAPER.get(result["experiment"], {}), {}
    for m in rows or list(result["results"]):
        row = {}
        for i, metric in enumerate(metrics):
            row[f"{metric} paper"] = paper[m][i] if m in paper else float("nan")
            row[f"{metric} ours"] = 100 * result["results"][m][metric]["mean"]
            row[f"{metric} ours sd"] = 100 * result["results"][m][metric]["std"]
            if m in (result.get("predictions") or {}):  # every test model kept: the 95 % interval instead
                iv = result_interval(view(step=result), "step", m, metric)
                row[f"{metric} ours"], row[f"{metric} ours low"], row[f"{metric} ours high"] = iv.estimate, iv.low, iv.high
        out[row_label(m)] = row
    return pd.DataFrame(out).T


def challenge_table(verdicts):
    """:func:`lpsbook.findings.claims.challenges` for the page: challengers by name, each verdict with its interval."""
    table = verdicts.rename(index=row_label, level=0)
    return show(table.rename(columns={"challenger": "challenger", "incumbent": "LPS"}), digits=2)


def layer_table(table, scale: float = 100, digits: int = 1):
    """A per-layer table for the page (HTML, so it never wraps like printed text): one row per conv
    layer, labelled as the paper numbers them (``2 · layer1.0.conv1``), values scaled (100: %)."""
    out = table * scale
    out.index = [f"{layer_number(str(n))}\u00a0·\u00a0{short_layer(str(n))}" for n in table.index]  # no break
    out.index.name = "conv layer"
    return show(out, digits)


METRIC_NAMES = {"top1": "top-1", "top5": "top-5", "top10": "top-10", "rank1": "rank-1", "rank5": "rank-5",
                "rank10": "rank-10", "mAP": "mAP", "spearman": "Spearman ρ", "spearman_per_target": "Spearman ρ per target",
                "related_auc": "related-task AUC (retrieval split)"}


def mean_sd(summary: dict, scale: float = 100, digits: int = 1) -> str:
    """``"29.0 ± 5.6"``: a result's ``{"mean", "std"}`` over splits, scaled (100 for %), in one cell (non-breaking
    spaces: a number never wraps inside its cell)."""
    return f"{scale * summary['mean']:.{digits}f}\u00a0±\u00a0{scale * summary['std']:.{digits}f}"


def result_cell(result: dict, method: str, metric: str, scale: float = 100, digits: int = 1) -> str:
    """One method's ``metric`` for a table: the estimate with its 95 % interval over resampled tasks where
    the result keeps what it needs (every test model's prediction; every target task's Spearman; every
    held-out task pair, for the related-task AUC), else ``mean ± sd`` over its splits."""
    from ..findings.claims import target_interval
    from ..protocols.statistics import cell, pair_auc, result_interval, view

    if scale == 100 and method in (result.get("predictions") or {}):
        return cell(result_interval(view(step=result), "step", method, metric), digits)
    if metric == "related_auc" and method in (result.get("related_pairs") or {}):
        return cell(pair_auc(result["related_pairs"][method]).scaled(scale), digits)
    if metric == "spearman_per_target" and method in (result.get("per_target") or {}):
        return cell(target_interval(result, method).scaled(scale), digits)
    return mean_sd(result["results"][method][metric], scale, digits)


def results_table(result: dict, metrics=None):
    """A protocol's results as a reader writes them: one cell per method and metric, one column per metric
    ("top-1 %"), the paper's number beside it where the paper has one ("top-1 %, paper"). A cell is the
    estimate with its 95 % interval over resampled tasks (``29.0 [24.0, 34.1]``) when the result keeps
    every test model's prediction (run on folds), else ``mean ± sd`` over its splits.

    Percentages for classification and retrieval, plain values (3 decimals) for the other protocols.
    """
    import pandas as pd

    kind = result["experiment"]
    paper, pct = PAPER.get(kind, {}), kind in PAPER
    rows = {}
    for method, per_metric in result["results"].items():
        row = {}
        for i, metric in enumerate(metrics or list(per_metric)):
            name = METRIC_NAMES.get(metric, metric.replace("_", " ")) + (" %" if pct else "")
            row[name] = result_cell(result, method, metric) if pct else result_cell(result, method, metric, 1, 3)
            if pct:
                row[f"{name}, paper"] = f"{paper[method][i]:.1f}" if method in paper and i < len(paper[method]) else "—"
        rows[row_label(method)] = row
    return pd.DataFrame(rows).T


def summary(result: dict, metric: str, scale: float = 100) -> str:
    """``metric`` mean +- sd over seeds: a heading line, then one line per method."""
    unit = " %" if scale == 100 else ""
    parts = [f"  {row_label(m)}: {scale * r[metric]['mean']:.1f} +- {scale * r[metric]['std']:.1f}{unit}" if scale == 100
             else f"  {row_label(m)}: {r[metric]['mean']:.3f} +- {r[metric]['std']:.3f}"
             for m, r in result["results"].items() if metric in r]
    return "\n".join([f"{result['experiment']} {metric}:"] + parts)


def contrast_text(contrast) -> str:
    """Chapter 5's reading of :func:`lpsbook.show.book.contrast_with_digits` (Markdown): the comparison and its
    three explanations when both sets are there, else (the digits fallback) why it is left out."""
    d = contrast.iloc[:, -1]  # the digits set: the only column when the book runs on digits
    if contrast.shape[1] == 1:
        return f"""This build did not find CIFAR-100 (the banner at the top of the chapter says
why), so the table shows the digits set alone and the comparison with a
CIFAR-100 set is left out. Here LPS classifies at {d["LPS top-1 / chance"]:.1f} times chance, although
the models are nearly perfect on their tasks ({d["model test accuracy %"]:.1f} % test accuracy
on average) and their first conv layers moved by {d["conv1 weight change (relative)"]:.2f} of their
initial norm. With the data (`make data`, or `LPSBOOK_DATA` pointing at
`cifar100.npz`), this section compares the two model sets and weighs what
differs between them: the input and the overlap between tasks."""
    c = contrast.iloc[:, 0]
    return f"""On CIFAR-100 LPS classifies at {c["LPS top-1 / chance"]:.1f} times chance, on digits at
{d["LPS top-1 / chance"]:.1f} times: there, held-out models are no better placed than by
a guess. What the measurements rule out, and what they leave:

* **Not untrained weights.** The digits models are nearly perfect on their
  tasks ({d["model test accuracy %"]:.1f} % test accuracy on average), and their first
  conv layers moved by {d["conv1 weight change (relative)"]:.2f} of their initial norm
  (CIFAR-100: {c["conv1 weight change (relative)"]:.2f}). Chapter 7 also trains digits models
  five times longer, and LPS stays at chance.
* **The input.** A digits model's first layer sees one grey channel of an
  8x8 image, {d["training images per task"]} images per task; a CIFAR-100 model's sees
  three colour channels of a 32x32 image, {c["training images per task"]} per task.
  Two digit pairs differ in shape only, so first-layer edge detectors may
  serve every pair alike; CIFAR-100 pairs differ in colour too, which a first
  layer with three input channels can encode.
* **Task overlap.** {d["task pairs sharing a class %"]:.0f} % of the digits tasks share a
  class with each other, none of CIFAR-100's: tasks that share a digit
  should look alike, which makes them harder to tell apart.

We have not separated the last two (that would take, for instance, a CIFAR-100
set trained on grey 8x8 images); the table states what differs, not which
difference is the cause."""


def settings_text(result: dict) -> str:
    """A protocol's settings as a sentence a reader can check (not the dict it is stored as)."""
    st, parts = result["settings"], []
    if st.get("lps"):
        c = st["lps"]
        steps = ", ".join(str(m) for m in c["milestones"])
        parts.append(f"second-order network trained {c['epochs']} epochs in batches of {c['batch_size']}, "
                     f"lr {c['lr']:g} divided by 10 after epochs {steps}")
    if st.get("layers"):
        parts.append("branches " + ", ".join(str(layer_number(n)) for n in st["layers"]) + " (of 19)")
    if st.get("second_order_filters"):
        parts.append(f"{st['second_order_filters']} second-order filters per branch")
    if st.get("folds"):
        first = f"the first {st['seeds']} of " if st.get("seeds") and st["seeds"] < st["folds"] else ""
        parts.append(f"{first}{st['folds']} folds (every test model's prediction kept)")
    elif st.get("seeds"):
        parts.append(f"{st['seeds']} random split{'s' if st['seeds'] > 1 else ''}")
    return "; ".join(parts) + "."


def branch_summary(result: dict) -> str:
    """Best and worst branch per variant of a branches/ablation result."""
    lines = []
    for variant, per_layer in result["results"].items():
        means = {layer: 100 * v["mean"] for layer, v in per_layer.items()}
        best, worst = max(means, key=means.get), min(means, key=means.get)
        lines.append(f"{result['experiment']} [{row_label(variant)}]: best {best} {means[best]:.1f} %, "
                     f"worst {worst} {means[worst]:.1f} %, mean over branches {sum(means.values()) / len(means):.1f} %")
    return "\n".join(lines)


def similarity_table(result: dict):
    """The weights-or-activations comparison as a table (mean over seeds)."""
    import pandas as pd

    rows = {m: {k: round(v["mean"], 3) for k, v in r.items()} for m, r in result["results"].items()}
    table = pd.DataFrame(rows).T
    table.insert(0, "family", [registry.reads(m) for m in table.index])
    return table.rename(index=row_label).sort_values("transfer_spearman_per_target", ascending=False)


def cost_table(result: dict):
    """Seconds per 100 model pairs, per measure."""
    import pandas as pd

    cost = result["cost_seconds_per_100_pairs"]
    return pd.DataFrame({"seconds per 100 model pairs": cost}).rename(index=row_label).sort_values("seconds per 100 model pairs")


def method_rows(classification: dict, retrieval: dict) -> dict:
    """{method: {metric: %}} of the main metrics of both protocols, for a bar chart."""
    return {row_label(m): {"classification top-1 %": 100 * classification["results"][m]["top1"]["mean"],
                "retrieval rank-1 %": 100 * retrieval["results"][m]["rank1"]["mean"],
                "retrieval mAP %": 100 * retrieval["results"][m]["mAP"]["mean"]}
            for m in classification["results"] if m in retrieval["results"]}


def similarity_rows(result: dict) -> dict:
    """{measure: {metric: mean}} of the weights-or-activations comparison, for a bar chart."""
    return {row_label(m): {k: v["mean"] for k, v in r.items() if k != "related_rank1_chance"}
            for m, r in result["results"].items()}


def training_length_table(check: dict):
    """Top-1 (%) per method for both recipes, with each recipe's epochs and model accuracy."""
    import pandas as pd

    rows = {}
    for label, r in check.items():
        row = {"epochs": r["epochs"], "model test accuracy": round(r["test_acc_mean"], 4),
               "tasks": r["tasks"], "chance top-1 %": round(100 / r["tasks"], 1)}
        row.update({f"{row_label(m)} top-1 %": f"{100 * v['top1']['mean']:.1f} +- {100 * v['top1']['std']:.1f}"
                    for m, v in r["results"].items()})
        rows[label] = row
    return pd.DataFrame(rows).T


def relation_table(tr: dict, sim: dict):
    """Per weight-based method: Spearman with measured transfer (transferability protocol), and how well its
    similarity singles out related tasks (similarity protocol: ROC AUC, rank-1 with its chance rate)."""
    import pandas as pd

    rows = {}
    for m, r in tr["results"].items():
        row = {"transfer Spearman (per target)": r["spearman_per_target"]["mean"],
               "transfer Spearman sd": r["spearman_per_target"]["std"]}
        if m in sim["results"]:
            s = sim["results"][m]
            row.update({"related-task AUC (5 folds)": s["related_auc"]["mean"], "related rank-1 %": 100 * s["related_rank1"]["mean"],
                        "rank-1 chance %": 100 * s["related_rank1_chance"]["mean"]})
        rows[row_label(m)] = row
    return pd.DataFrame(rows).T


def protocol_table(classification: dict, retrieval: dict, transferability: dict):
    """Every method on every protocol: the main metric of each, with its interval where the result keeps
    one (:func:`result_cell`), else mean ± sd over splits."""
    import pandas as pd

    columns = main_metrics(classification, retrieval, transferability)
    rows = {}
    for m in classification["results"]:
        row = {}
        for label, (result, metric, scale) in columns.items():
            r = result["results"].get(m, {}).get(metric)
            row[label] = result_cell(result, m, metric, scale, 1 if scale == 100 else 2) if r else float("nan")
        rows[row_label(m)] = row
    return pd.DataFrame(rows).T


def cost_of_methods(costs: dict):
    """:func:`lpsbook.findings.analyses.costs` as a table, cheapest fit first."""
    import pandas as pd

    return pd.DataFrame(costs).T.rename(index=row_label).sort_values("fit seconds")
