"""What the committed results file shows of the 50-task set (``cifar100-w16-e40``, chapter 10):
Tables 1 and 2 beside the paper's, and the prose's findings.

A file measured on five folds keeps every test model's prediction: its cells are an estimate with a 95 %
interval (tasks resampled) and LPS is compared with its best rival on the same test models
(:func:`lpsbook.protocols.statistics.decide`). A file measured before the folds keeps means and sds
over three random splits, judged by the weaker spread rule; every caption and sentence says which.
"""
from __future__ import annotations

from ..findings.claims import PAPER
from ..protocols import statistics as st
from ..show import book
from ..show.tables import mean_sd, result_cell, show
from .ladder import COMMAND, FULL_SET, TABLE_METHODS, rung_label

PAPER_TOP1 = PAPER["classification"]["lps"][0]  # LPS, the paper's Table 1 (%)
FULL_RIVALS = ("weight_stats", "probing", "graph")  # the strongest rivals of chapters 7 and 9


def full_view(results: dict) -> dict | None:
    """The 50-task set's predictions in the shape :mod:`lpsbook.protocols.statistics` reads, or None when
    the file keeps only means and sds over three random splits (measured before the folds)."""
    kept = results.get("tables", {}).get("predictions")
    return st.view(**{p: {"predictions": v} for p, v in kept.items()}) if kept else None


def full_note(results: dict) -> str:
    """How the 50-task set's numbers were measured, for a caption."""
    return "estimate [95 % interval], 5 folds" if full_view(results) else "mean ± sd over 3 random splits"


def full_table(results: dict, book_set=None, protocol: str = "classification", metric: str = "top1"):
    """Table 1 (or 2) on the 50-task width-16 set beside the paper's and, optionally, the book's set.

    ``book_set``: the book's own result of the same protocol (a ProtocolResult of cifar100-small), or None.
    Rows are methods; cells ``estimate [95 % interval]`` (%) from the kept predictions, or ``mean ± sd``
    over three random splits in a file measured before the folds (:func:`full_note`); the book's set as
    chapter 5 shows it (:func:`lpsbook.show.tables.result_cell`); None when the 50-task set is not built yet.
    """
    import pandas as pd

    if not results.get("tables"):
        return None
    k = {"top1": 0, "top5": 1, "top10": 2, "rank1": 0, "rank5": 1, "rank10": 2}[metric]
    paper = PAPER[protocol]
    ours, view = results["tables"][protocol], full_view(results)
    mine = book_set["results"] if book_set is not None else {}
    rows = {}
    for m in TABLE_METHODS:
        value = ("—" if m not in ours else st.cell(st.result_interval(view, protocol, m, metric), 1) if view
                 else mean_sd(ours[m][metric]))
        row = {"paper": f"{paper[m][k]:.1f}" if m in paper else "—", "50 tasks, width 16, 40 epochs": value}
        if book_set is not None:
            row[f"{book_set['preset']} (this book)"] = result_cell(book_set, m, metric) if m in mine else "—"
        rows[rung_label(m)] = row
    return pd.DataFrame(rows).T


FULL_TABLES = (("classification", "top1", "Table 1: task classification, top-1 % (50 tasks: {}; this book's "
                                          "set: estimate [95 % interval], 5 folds)"),
               ("retrieval", "rank1", "Table 2: task retrieval on unseen tasks, rank-1 % (50 tasks: {}; this "
                                      "book's set: estimate [95 % interval], 5 folds)"))


def full_tables(results: dict) -> tuple:
    """Tables 1 and 2 of the 50-task set (:func:`full_table`), captioned for the page; when the book runs
    on CIFAR-100, with the book's own numbers beside them (chapters 5-9's results, from the cache).
    ``(None, None)`` before the 50-task set is built."""
    if not results.get("tables"):
        return None, None
    mine = book.with_whole_network()[:2] if book.current_preset().dataset == "cifar100" else (None, None)
    return tuple(show(full_table(results, own, protocol, metric)).set_caption(caption.format(full_note(results)))
                 for (protocol, metric, caption), own in zip(FULL_TABLES, mine))


def _on_folds(results: dict, view: dict) -> dict:
    """LPS, its best rival and their paired difference, each an interval (tasks resampled)."""
    cls = results["tables"]["classification"]
    top1 = {m: st.result_interval(view, "classification", m, "top1") for m in ("lps", *FULL_RIVALS) if m in cls}
    rival = max((m for m in FULL_RIVALS if m in top1), key=lambda m: top1[m].estimate)
    diff = st.result_paired(view, "classification", "lps", rival, "top1")
    verdict = st.decide("LPS is ahead of its best rival", diff, 0.0,
                        f"LPS minus {rung_label(rival)} on the same test models")
    rank1 = st.result_interval(view, "retrieval", "lps", "rank1")
    return {"lps": top1["lps"].estimate, "lps_low": top1["lps"].low, "lps_cell": st.cell(top1["lps"], 1),
            "lps_rank1": rank1.estimate, "rank1_cell": st.cell(rank1, 1), "rival": rival,
            "rival_top1": top1[rival].estimate, "rival_cell": st.cell(top1[rival], 1),
            "difference": st.cell(diff, 1), "rule": verdict.rule,
            "lps_leads": verdict.outcome == st.HOLDS, "lps_trails": verdict.outcome == st.FAILS}


def _by_spread(results: dict) -> dict:
    """The same from means and sds over three random splits: ahead or behind by more than the larger sd."""
    cls, ret = results["tables"]["classification"], results["tables"]["retrieval"]
    top1 = {m: (100 * v["top1"]["mean"], 100 * v["top1"]["std"]) for m, v in cls.items()}
    rival = max((m for m in FULL_RIVALS if m in top1), key=lambda m: top1[m][0])
    (lps, sd), diff, margin = top1["lps"], top1["lps"][0] - top1[rival][0], max(top1["lps"][1], top1[rival][1])
    return {"lps": lps, "lps_low": lps - sd, "lps_cell": mean_sd(cls["lps"]["top1"]),
            "lps_rank1": 100 * ret["lps"]["rank1"]["mean"], "rank1_cell": mean_sd(ret["lps"]["rank1"]),
            "rival": rival, "rival_top1": top1[rival][0], "rival_cell": mean_sd(cls[rival]["top1"]),
            "difference": None, "rule": "LPS minus its best rival beyond ± the larger sd over 3 random splits",
            "lps_leads": diff > margin, "lps_trails": -diff > margin}


def full_findings(results: dict) -> dict | None:
    """What the chapter's prose says of the 50-task set (% throughout), or None before it is built:
    LPS's top-1 (``lps``, ``lps_low``, ``lps_cell``) and rank-1 beside the paper's, chance, the best of
    :data:`FULL_RIVALS` (``rival``, a method id) and whether LPS is ahead of it (``lps_leads``) or behind
    it (``lps_trails``): on the same test models by a paired 95 % interval in a file measured on folds
    (``difference``), by the larger sd in one measured on three random splits (``difference`` None)."""
    if not results.get("tables"):
        return None
    view = full_view(results)
    found = _on_folds(results, view) if view else _by_spread(results)
    return {**found, "paper": PAPER_TOP1, "paper_rank1": PAPER["retrieval"]["lps"][0],
            "chance": 100 / results["presets"][FULL_SET]["tasks"]}


def full_sentence(results: dict) -> str:
    """The 50-task set in one sentence of numbers, for the chapter (glued), or what is missing."""
    f = full_findings(results)
    if f is None:
        return f"The 50-task set is not built yet: `{COMMAND}` builds it."
    name = rung_label(f["rival"])
    if f["difference"] is None:
        standing = ("above it by more than the spread" if f["lps_leads"] else
                    "below it by more than the spread" if f["lps_trails"] else "level with it within the spread")
    else:
        outcome = "ahead of it" if f["lps_leads"] else "behind it" if f["lps_trails"] else "not told apart from it"
        standing = (f"{outcome}: on the same test models LPS minus {name} is {f['difference']} points "
                    "(95 % interval, tasks resampled)")
    return (f"On the 50 tasks (chance {f['chance']:.0f} %), LPS classifies {f['lps_cell']} % "
            f"of the held-out models, against the paper's {f['paper']:.1f} %; on tasks unseen in training, the "
            f"first model it retrieves shares the query's task for {f['rank1_cell']} % of queries "
            f"(the paper: {f['paper_rank1']:.1f} %). "
            f"The best of weight statistics, probing and the graph learner is {name}, "
            f"{f['rival_cell']} %: LPS is {standing}.")


def full_protocol(results: dict) -> str:
    """How the 50-task set's numbers were measured and judged, for the chapter's prose (glued)."""
    if full_view(results) or not results.get("tables"):
        return ("The 50-task set is measured the same way on its 50 tasks: classification on five folds "
                "over seeds, retrieval on five folds over tasks, every test model's prediction kept, every "
                "number with its 95 % interval (tasks resampled) and every comparison paired; its comparison "
                f"with the paper's {PAPER_TOP1:.1f} % combines that interval with the paper's own (one split "
                "of 100 test models).")
    return ("The 50-task set was measured before the folds, on three random splits, and the file keeps "
            "only a mean and an sd of each number: it is judged by a weaker rule, holds beyond the larger "
            "sd, does not hold below minus it, cannot tell within it. Its comparison with the paper's "
            f"{PAPER_TOP1:.1f} % adds the paper's own uncertainty (one split of 100 test models) to the sd.")
