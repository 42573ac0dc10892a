"""What a committed results file shows, computed from the predictions it keeps: tables whose cells carry a
95 % interval (tasks resampled), paired comparisons, and verdicts with three outcomes.

Every function takes the results dict of :mod:`lpsbook.experiments.modelset500` (or None before the set is
built) and returns plain data or a pandas table; nothing is trained or loaded here, so a chapter that
calls these runs in seconds on any machine.
"""
from __future__ import annotations

import numpy as np

from ..findings.claims import PAPER, PAPER_TEST_MODELS
from ..findings.claims import headline as claims_headline
from ..protocols import statistics as st
from ..protocols.results import label

PAPER_TOP1 = PAPER["classification"]["lps"][0]  # LPS, the paper's Table 1 (%)
RIVALS = ("weight_stats", "probing", "graph", "rebasin_fc", "fc", "frobenius", "random")
BOOK_LPS_STEP = "classification_lps_book"


# read from a results file's kept predictions (the functions live in :mod:`lpsbook.protocols.statistics`)
view, cell = st.view, st.cell
outcomes, interval, paired = st.result_outcomes, st.result_interval, st.result_paired


def table(results: dict, step: str = "classification", metrics=("top1", "top5"),
          beside_paper: bool = True) -> "pandas.DataFrame":
    """Methods by ``metrics`` (%), each cell ``estimate [95 % interval]``, with the paper's number beside
    (unless ``beside_paper`` is False: another population than the paper's)."""
    import pandas as pd

    protocol = "classification" if step.startswith("classification") else "retrieval"
    paper = PAPER.get(protocol, {})
    rows = {}
    for m in results["protocols"][step]["predictions"]:
        row = {metric: cell(interval(results, step, m, metric)) for metric in metrics}
        if beside_paper:
            row["paper, " + metrics[0]] = f"{paper[m][0]:.1f}" if m in paper else "—"
        rows[label(m)] = row
    return pd.DataFrame(rows).T


def headline(results: dict) -> st.Verdict:
    """"LPS reaches the paper's 79.8 %" on the file's classification (:func:`lpsbook.findings.claims.headline`)."""
    return claims_headline(interval(results, "classification", "lps", "top1"))


def rivals(results: dict, step: str = "classification", metric: str = "top1") -> list:
    """"LPS beats X" for every rival in the file: the paired difference and its verdict."""
    methods = results["protocols"][step]["predictions"]
    return [st.decide(f"LPS beats {label(r)}", paired(results, step, "lps", r, metric), 0.0,
                      f"LPS minus {label(r)} in {metric} points on the same test models")
            for r in RIVALS if r in methods and "lps" in methods]


def above_chance(results: dict, method: str, chance: float, step: str = "classification") -> st.Verdict:
    """"``method`` reads the task above chance": its top-1 (%) minus ``chance`` (%), judged at 0."""
    iv = interval(results, step, method, "top1")
    d = st.Interval(iv.estimate - chance, iv.low - chance, iv.high - chance, iv.level, iv.tasks)
    return st.decide(f"{label(method)} reads the task above chance", d, 0.0, f"{label(method)}'s top-1 minus chance")


def best(results: dict, step: str = "classification", metric: str = "top1") -> tuple:
    """``(method, interval)`` of the method with the highest ``metric`` estimate in ``step``."""
    ivs = {m: interval(results, step, m, metric) for m in results["protocols"][step]["predictions"]}
    top = max(ivs, key=lambda m: ivs[m].estimate)
    return top, ivs[top]


def verdict_table(verdicts) -> "pandas.DataFrame":
    """Verdicts as a table: the claim, the interval of what decides it, and the outcome."""
    import pandas as pd

    return pd.DataFrame([{"claim": v.claim, "difference [95 % interval]": cell(v.interval), "outcome": v.outcome}
                         for v in verdicts]).set_index("claim")


def schedules(results: dict) -> st.Interval | None:
    """LPS's top-1 with the paper's second-order schedule minus with the book's shorter one (paired), or
    None when the file does not hold both."""
    if BOOK_LPS_STEP not in results["protocols"]:
        return None
    a, b = outcomes(results, "classification", "lps"), outcomes(results, BOOK_LPS_STEP, "lps")
    return st.paired_difference(a["top1"], b["top1"], a["task"]).scaled(100)


def state_sentence(results: dict | None, command: str) -> str:
    """Where ModelSet500 stands, in one sentence for the page (glued)."""
    if results is None:
        return f"ModelSet500 at the paper's recipe is not built yet; `{command}` builds and measures it."
    done = ", ".join(results["protocols"]) or "no step yet"
    models = results["models"]
    machines = sorted({m for m in (models.get("gpu") or []) if m} | {c for c in models["cpu"] if c})
    precision = ", ".join(sorted(set(models["precision"])))
    return (f"The file holds {len(models['task_id'])} models ({precision}; trained on {', '.join(machines)}) "
            f"and these steps: {done}.")


def figure3(results: dict) -> dict:
    """Figure 3 of the paper from the file, as tables (``mean ± sd`` over the protocol's random splits, which
    keep no per-model predictions): ``"transfer"`` (methods by Spearman of task similarity with measured
    transfer, per target, and the AUC of related pairs), ``"branches"`` (LPS on one conv layer at a time,
    top-1 %) and ``"ablation"`` (the same with filter and channel alignment switched off); a step not in
    the file is left out."""
    import pandas as pd

    from ..core.nets import short_layer
    from ..show.tables import mean_sd

    out, protocols = {}, results["protocols"]
    if "transferability" in protocols:
        out["transfer"] = pd.DataFrame({label(m): {k: mean_sd(v, scale=1, digits=2) for k, v in metrics.items()}
                                        for m, metrics in protocols["transferability"]["results"].items()}).T
    for step in ("branches", "ablation"):
        if step in protocols:
            out[step] = pd.DataFrame({label(row): {short_layer(layer): mean_sd(v) for layer, v in per.items()}
                                      for row, per in protocols[step]["results"].items()})
    return out


def chapter_values(results: dict | None, preset, folds: int, command: str) -> dict:
    """What chapter 11's prose quotes: the recipe of ``preset``, the fold count, the paper's
    number with its own interval, the verdict rule's settings, and where the build stands (Markdown)."""
    from ..show.book import Prose
    from ..training.packed import steps_per_model

    paper = st.published(PAPER_TOP1 / 100, PAPER_TEST_MODELS).scaled(100)
    return {"tasks": len(preset.tasks), "seeds": preset.seeds, "width": preset.width, "epochs": preset.epochs,
            "steps": steps_per_model(preset), "models": preset.num_models, "paper": PAPER_TOP1,
            "paper_n": PAPER_TEST_MODELS, "paper_low": paper.low, "paper_high": paper.high, "folds": folds,
            "min_tasks": st.MIN_TASKS, "level": round(100 * st.LEVEL), "state": Prose(state_sentence(results, command))}


def protocol_facts(preset, folds: int, seed: int = 0) -> dict:
    """What chapter 11 says of its protocol, computed on ``preset``'s models: whether every fold holds the
    same number of seeds of every task out, whether every task is unseen in exactly one retrieval fold,
    and the ratio of a paired to an unpaired interval's width for two methods that agree on nine models in
    ten (synthetic outcomes, seeded)."""
    tasks = np.repeat(np.arange(len(preset.tasks)), preset.seeds)
    fold, by_task = st.classification_folds(tasks, folds, seed), st.task_folds(tasks, folds, seed)
    rng = np.random.default_rng(seed)
    a = (rng.random(len(tasks)) < 0.7).astype(float)
    b = np.where(rng.random(len(tasks)) < 0.1, 1 - a, a)
    pair, apart = st.paired_difference(a, b, tasks), st.unpaired_difference(a, b, tasks)
    return {"even_folds": all((np.bincount(tasks[fold == f]) == preset.seeds // folds).all() for f in range(folds)),
            "task_unseen_once": all(len(set(by_task[tasks == t])) == 1 for t in range(len(preset.tasks))),
            "paired_width_ratio": (pair.high - pair.low) / (apart.high - apart.low)}
