"""What the committed results files show: the presentation of every experiment that keeps a results file.

* ModelSet500 (:mod:`lpsbook.experiments.modelset500`, chapter 11): computed from the predictions the
  file keeps, tables whose cells carry a 95 % interval (tasks resampled), paired comparisons, and
  verdicts with three outcomes;
* the recipe ladder (:mod:`lpsbook.experiments.ladder`, chapter 10): its sets, curves, tables and
  verdicts from ``results/ladder.json``. Rungs measured on five folds keep every test model's prediction
  (intervals, paired verdicts, also across rungs); a set measured before the folds keeps means and sds
  over three random splits, so its verdicts use the spread rule, and every table and verdict says
  which. The 50-task set's tables and findings live in :mod:`lpsbook.experiments.full_report` and are
  named here as well.

Building lives in :mod:`lpsbook.experiments.sets`, the files themselves (provenance, staleness) in
:mod:`lpsbook.experiments.results_file`. Every function takes a results dict (or None before a set is
built) and returns plain data or a pandas table; nothing is trained here, so a chapter that calls these
runs in seconds on any machine (only :func:`full_tables` reads the book's own cached results beside).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.errors import LpsbookError
from ..findings.claims import PAPER, PAPER_TEST_MODELS
from ..findings.claims import headline as claims_headline
from ..protocols import statistics as st
from ..protocols.results import label
from ..protocols.statistics import decide_by_spread, published
from ..show.tables import mean_sd, result_cell
from .full_report import (FULL_RIVALS, FULL_TABLES, PAPER_TOP1, full_findings, full_note,  # noqa: F401 (the chapter's)
                          full_protocol, full_sentence, full_table, full_tables, full_view)
from .ladder import COMMAND, FLOAT32_JOBS, FULL_SET, ORDER, PAPER_LPS, on_folds, rung_label

RIVALS = ("weight_stats", "probing", "graph", "rebasin_fc", "fc", "frobenius", "random")
BOOK_LPS_STEP = "classification_lps_book"


# read from a results file's kept predictions (the functions live in :mod:`lpsbook.protocols.statistics`)
view = st.view


def cell(iv: st.Interval) -> str:
    """A percentage with its interval for a table cell, one decimal (:func:`lpsbook.protocols.statistics.cell`)."""
    return st.cell(iv, 1)


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
    """Figure 3 of the paper from the file, as tables: ``"transfer"`` (methods by Spearman of task
    similarity with measured transfer, and the AUC of related pairs; with the references step, LEEP and
    LogME below them, the data-based yardstick), ``"branches"`` (LPS on one conv layer at a time, top-1 %)
    and ``"ablation"`` (the same with filter and channel alignment switched off); a step not in the file is
    left out. A cell carries its 95 % interval where the file keeps what it needs (per-target Spearman on
    task folds, :func:`lpsbook.show.tables.result_cell`; every branch's predictions on folds), else
    ``mean ± sd`` over the protocol's runs."""
    import pandas as pd

    from ..core.nets import short_layer

    out, protocols = {}, results["protocols"]
    rows = {}
    for step in ("transferability", "references"):
        result = protocols.get(step)
        for m, metrics in (result or {}).get("results", {}).items():
            rows[label(m)] = {k: result_cell(result, m, k, scale=1, digits=2) for k in metrics}
    if rows:
        out["transfer"] = pd.DataFrame(rows).T
    for step in ("branches", "ablation"):
        if step in protocols:
            kept = "predictions" in protocols[step]  # measured on folds: an interval per branch
            out[step] = pd.DataFrame({label(row): {
                short_layer(layer): cell(interval(results, step, row, "top1", layer)) if kept else mean_sd(v)
                for layer, v in per.items()} for row, per in protocols[step]["results"].items()})
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


# --- the recipe ladder (results/ladder.json): tables, curves and verdicts, from the results file ----------------------

CURVE_METHODS = ("lps", PAPER_LPS, "weight_stats", "probing", "graph", "rebasin_fc", "fc", "random")
PAPER_STEPS = 1280  # the paper's recipe: 160 epochs of batch 128 on a two-class task (1,000 images)


def rungs(results: dict) -> list:
    """The ladder's sets in the file's order (the 50-task set left out), with their recipe."""
    return [(n, results["presets"][n]) for n in results["order"] if n != FULL_SET]


FOLDS_NOTE = "5 folds: estimate [95\u00a0% interval]"
SPLITS_NOTE = "3 random splits: mean ± sd"


def rung_view(entry: dict) -> dict:
    """A rung measured on folds, in the shape :mod:`lpsbook.protocols.statistics` reads."""
    return st.view(classification={"predictions": entry["predictions"]})


def curve(results: dict, methods=CURVE_METHODS) -> "pandas.DataFrame":
    """Top-1 (%) of each method on each finished rung: one row per (method, rung), with ``low`` and ``high``:
    the 95 % interval (tasks resampled) on a rung measured on folds, mean ± sd on one measured on three
    random splits (``protocol`` says which)."""
    import pandas as pd

    rows = []
    for name, rec in rungs(results):
        entry = results["sets"].get(name, {})
        cls = entry.get("classification")
        for m in methods if cls else ():
            mean, sd = 100 * cls[m]["top1"]["mean"], 100 * cls[m]["top1"]["std"]
            if on_folds(entry):
                iv = interval(rung_view(entry), "classification", m, "top1")
                top1, low, high, protocol = iv.estimate, iv.low, iv.high, FOLDS_NOTE
            else:
                top1, low, high, protocol = mean, mean - sd, mean + sd, SPLITS_NOTE
            rows.append({"method": rung_label(m), "id": m, "width": rec["width"], "epochs": rec["epochs"],
                         "steps": rec["steps"], "top1": top1, "sd": sd, "low": low, "high": high,
                         "protocol": protocol, "top5": 100 * cls[m]["top5"]["mean"]})
    return pd.DataFrame(rows, columns=["method", "id", "width", "epochs", "steps", "top1", "sd", "low", "high",
                                       "protocol", "top5"])


def training_seconds(summary: dict) -> float:
    """A set's own training time: median seconds per model x models trained for it (a pause of the
    build, or models copied from another set, do not count); the plain sum in files that predate it."""
    build = summary["build"]
    return build.get("training_seconds", build["train_seconds"])


def models_table(results: dict) -> "pandas.DataFrame":
    """One row per model set of the file: its recipe, and for a built one its models and build time."""
    import pandas as pd

    rows = {}
    for name in results["order"]:
        rec, entry = results["presets"][name], results["sets"].get(name)
        row = {"tasks": rec["tasks"], "width": rec["width"], "epochs": rec["epochs"], "SGD steps": rec["steps"]}
        if entry is None:
            row["status"] = "not built yet"
        else:
            s = entry["summary"]
            row.update({"status": "built", "test acc. % (mean / min)":
                        f"{100 * s['test_acc']['mean']:.1f} / {100 * s['test_acc']['min']:.1f}",
                        "conv1 moved": f"{s['movement']['conv1']:.2f}",
                        "last stage moved": f"{s['movement']['last_stage']:.2f}",
                        "training (min)": f"{training_seconds(s) / 60:.0f}"})
        rows[name] = row
    return pd.DataFrame(rows).T.fillna("")


def methods_table(results: dict, methods=CURVE_METHODS, metric: str = "top1") -> "pandas.DataFrame":
    """Methods by rungs, ``metric`` (%) in one cell (one line in the page): ``estimate [95 % interval]`` on a
    rung measured on folds, ``mean ± sd`` on one measured on three random splits (the first row says
    which); rungs not built yet are left out. Methods run down the rows, so the table stays as narrow as
    the rungs are few."""
    import pandas as pd

    columns = {}
    for name, rec in rungs(results):
        entry = results["sets"].get(name, {})
        cls = entry.get("classification")
        if cls:
            folds = on_folds(entry)
            column = {"protocol": FOLDS_NOTE if folds else SPLITS_NOTE}
            column.update({rung_label(m): cell(interval(rung_view(entry), "classification", m, metric)) if folds
                           else mean_sd(cls[m][metric]) for m in methods})
            columns[f"width {rec['width']}, {rec['epochs']} epochs"] = column
    return pd.DataFrame(columns)


def _gap(a_mean, a_sd, b_mean, b_sd) -> tuple:
    """(difference, margin): ``a - b`` and the larger of the two spreads."""
    return a_mean - b_mean, max(a_sd, b_sd)


def _row(key: str, question: str, measured: str, verdict) -> dict:
    return {"key": key, "question": question, "rule": verdict.rule, "measured": measured,
            "verdict": verdict.outcome}


def _not_yet(key: str, question: str) -> dict:
    return {"key": key, "question": question, "rule": "", "measured": "", "verdict": "not measured yet"}


def _fold_rungs(results: dict, width: int | None = None) -> list:
    """``[(name, recipe, entry)]`` of the rungs measured on folds (of ``width``), by training length."""
    found = [(n, rec, results["sets"][n]) for n, rec in rungs(results)
             if n in results["sets"] and on_folds(results["sets"][n]) and width in (None, rec["width"])]
    return sorted(found, key=lambda r: (r[1]["steps"], r[1]["width"]))


def across_rungs(longer: dict, shorter: dict, method: str = "lps", metric: str = "top1") -> st.Interval:
    """``method``'s ``metric`` on one rung minus on another (points), paired: the same tasks and seeds (the
    rungs' models differ only in their training) in the same folds, tasks resampled together."""
    a = outcomes(rung_view(longer), "classification", method)
    b = outcomes(rung_view(shorter), "classification", method)
    if not (np.array_equal(a["rows"], b["rows"]) and np.array_equal(a["task"], b["task"])):
        raise LpsbookError("the two rungs were not tested on the same tasks and seeds")
    return st.paired_difference(a[metric], b[metric], a["task"]).scaled(100)


def _gain(results: dict, c) -> list:
    """LPS's gain from the shortest to the longest rung of one width (16 first) measured on folds, paired
    across the rungs; and from means and sds between the rungs of width 16 measured on three random
    splits, when there are two (``key`` ``gain_top`` beside a gain on folds). Protocols are never mixed."""
    rows = []
    for width in (16, 8):
        fr = _fold_rungs(results, width)
        if len(fr) >= 2:
            (_, r0, e0), (_, r1, e1) = fr[0], fr[-1]
            question = f"LPS gains as training grows (width {width}, {r0['epochs']} -> {r1['epochs']} epochs)"
            iv = across_rungs(e1, e0)
            lo, hi = (interval(rung_view(e), "classification", "lps", "top1") for e in (e0, e1))
            rows.append(_row("gain", question, f"{cell(lo)} -> {cell(hi)} % ({r0['steps']} -> {r1['steps']} steps); "
                                               f"gain {cell(iv)} points",
                             st.decide(question, iv, 0.0, "the gain in points, paired on the same tasks and seeds")))
            break
    lps16 = c[(c.id == "lps") & (c.width == 16) & (c.protocol == SPLITS_NOTE)].sort_values("steps")
    if len(lps16) >= 2:
        first, last = lps16.iloc[0], lps16.iloc[-1]
        question = f"LPS gains as training grows (width 16, {first.epochs} -> {last.epochs} epochs)"
        rows.append(_row("gain_top" if rows else "gain", question,
                         f"{first.top1:.1f} -> {last.top1:.1f} % ({first.steps} -> {last.steps} steps; {SPLITS_NOTE})",
                         decide_by_spread(question, *_gap(last.top1, last.sd, first.top1, first.sd), "the gain")))
    return rows or [_not_yet("gain", "LPS gains as training grows")]


PULL_RIVALS = ("weight_stats", "probing")


def _pull(c, entry: dict | None, top) -> dict:
    """LPS minus the better of weight statistics and probing on the rung ``top`` (a row of the curve):
    paired on its test models when ``entry`` keeps predictions, else by the spread rule."""
    at = c[(c.steps == top.steps) & (c.width == top.width)].set_index("id")
    rival = at.loc[list(PULL_RIVALS)].top1.idxmax()
    recipe = f"width {top.width}, {top.epochs} epochs"
    question = f"LPS pulls away from weight statistics and probing ({recipe})"
    measured = f"LPS {at.top1['lps']:.1f}, {rung_label(rival)} {at.top1[rival]:.1f} % ({top.protocol})"
    if entry is not None and on_folds(entry):
        iv = paired(rung_view(entry), "classification", "lps", rival, "top1")
        return _row("pull", question, f"{measured}; difference {cell(iv)} points",
                    st.decide(question, iv, 0.0, f"LPS minus {rung_label(rival)} on the same test models"))
    return _row("pull", question, measured,
                decide_by_spread(question, *_gap(at.top1["lps"], at.sd["lps"], at.top1[rival], at.sd[rival]),
                                 "LPS minus the better of the two"))


def ladder_verdicts(results: dict) -> list:
    """The section's questions, each with its rule, the numbers and a verdict (``key``: level, gain, pull;
    ``gain_top`` and ``pull_top`` for the rungs measured on three random splits only, beside those on folds).

    A question whose model sets are not built yet gets the verdict ``"not measured yet"``. Rungs measured on
    five folds keep every test model's prediction: their questions are decided by
    :func:`lpsbook.protocols.statistics.decide` on a paired 95 % interval (tasks resampled). The 50-task set,
    and rungs measured before the folds, keep means and sds over three random splits: theirs by
    :func:`lpsbook.protocols.statistics.decide_by_spread`, whose rule says so.
    """
    c = curve(results)
    rows = []
    full = results["sets"].get(FULL_SET)
    question = "LPS reaches the paper's 79.8 % top-1 at a quarter of its recipe (50 tasks, width 16)"
    if full and full_view(results):
        iv = interval(full_view(results), "classification", "lps", "top1")
        rows.append(_row("level", question, f"{cell(iv)} % (paper: {published(PAPER_TOP1 / 100, PAPER_TEST_MODELS).scaled(100)})",
                         replace(claims_headline(iv), claim=question)))
    elif full and results.get("tables"):
        lps = results["tables"]["classification"]["lps"]["top1"]
        mean, sd = 100 * lps["mean"], 100 * lps["std"]
        paper = published(PAPER_TOP1 / 100, PAPER_TEST_MODELS).scaled(100)  # one split of 100 test models
        margin = float(np.hypot(sd, (paper.high - paper.low) / 2))
        rows.append(_row("level", question, f"{mean:.1f}\u00a0±\u00a0{sd:.1f}\u00a0% (paper: {paper})",
                         decide_by_spread(question, mean - PAPER_TOP1, margin,
                                          "LPS minus 79.8 (the paper's own 95 % half-width combined with the sd)")))
    else:
        rows.append(_not_yet("level", question))
    rows += _gain(results, c)
    built = c[c.id == "lps"].sort_values(["steps", "width"])
    if not len(built):
        return rows + [_not_yet("pull", "LPS pulls away from weight statistics and probing")]
    fr = _fold_rungs(results)
    on = fr[-1] if fr else None
    if on is not None:
        rows.append(_pull(c, on[2], built[(built.steps == on[1]["steps"]) & (built.width == on[1]["width"])].iloc[0]))
    top = built.iloc[-1]
    if on is None or (top.steps, top.width) != (on[1]["steps"], on[1]["width"]):
        row = _pull(c, None, top)
        rows.append({**row, "key": "pull" if on is None else "pull_top"})
    return rows


def float32_table(results: dict) -> "pandas.DataFrame | None":
    """The top rung's float32 check: per model, test accuracy (%) as built and in float32, their
    difference (points) and the float32 training time; None before the check has run."""
    import pandas as pd

    rows = results.get("float32") or []
    if not rows:
        return None
    return pd.DataFrame({f"task {r['task_id']}, seed {r['seed']}": {
        "as built (%)": 100 * r["test_acc_as_built"], "float32 (%)": 100 * r["test_acc_float32"],
        "difference (points)": 100 * (r["test_acc_float32"] - r["test_acc_as_built"]),
        "float32 training (s)": r["float32_seconds"]} for r in rows}).T


def float32_sentence(results: dict) -> str:
    """The float32 check in one sentence (glued), or what is missing."""
    table = float32_table(results)
    if table is None:
        return (f"Not measured yet: the check trains {len(FLOAT32_JOBS)} models of the top rung again in "
                f"float32 once that rung is built (`{COMMAND}`).")
    precision = ", ".join(results["sets"][ORDER[-1]]["summary"]["build"]["precision"]) or "the build's precision"
    diff = table["difference (points)"]
    return (f"{len(table)} models of the top rung, trained again in float32 from the same initialisation "
            f"and batches, differ from the {precision} models by {diff.abs().mean():.1f} points of test "
            f"accuracy on average (at most {diff.abs().max():.1f}).")


def ladder_state_sentence(results: dict) -> str:
    """Where the build stands, in one sentence (glued): the sets still to build and, once the top rung
    is built, what the paper's whole ModelSet500 would take at that rung's median time per model."""
    left = [n for n in results["order"] if n not in results["sets"]]
    top = results["sets"].get(results["order"][-1])
    cost = ""
    if top:
        build = top["summary"]["build"]
        sec = build["median_model_seconds"]
        cost = (f"At the paper's recipe one model took {sec:.0f} s of training (median over the top rung, "
                f"{', '.join(build['cpus'])}), so the paper's "
                f"whole ModelSet500, 500 such models, would take about {500 * sec / 3600:.0f} hours of this machine. ")
    todo = ("Not built yet: " + ", ".join(f"`{n}`" for n in left) + f"; `{COMMAND}` resumes where the file stops"
            if left else "Every set of the ladder and the 50-task set is built")
    return cost + todo + "."


def build_summary(results: dict) -> dict:
    """What the file holds and how it was made, for the chapter's prose: rungs built, hours of
    training, CPU, precision, first and last dates, code version (the threads are the last command's, in the
    file's provenance: sets built across sessions may have used others)."""
    summaries = [results["sets"][n]["summary"] for n in results["order"] if n in results["sets"]]
    dates = sorted(d[:10] for s in summaries for d in (s["build"]["first_model"], s["build"]["last_model"]))
    names = [n for n, _ in rungs(results)]
    return {"built": sum(n in results["sets"] for n in names), "rungs": len(names), "sets": len(summaries),
            "hours": sum(map(training_seconds, summaries)) / 3600,
            "cpu": ", ".join(sorted({c for s in summaries for c in s["build"]["cpus"]})),
            "first_date": dates[0] if dates else "",
            "last_date": dates[-1] if dates else "",
            "precision": ", ".join(sorted({p for s in summaries for p in s["build"]["precision"]})),
            "code": ", ".join(sorted({results["sets"][n].get("code_version", results["provenance"]["code_version"])
                                      for n in results["order"] if n in results["sets"]})),
            "min_mean_test_acc": min((s["test_acc"]["mean"] for s in summaries), default=float("nan"))}


def ladder_findings(results: dict) -> dict:
    """The numbers the chapter's prose quotes: each method's top-1 on the cheapest and on the longest rung
    built (``first_lps``, ``last_ws_high``: the upper end of its interval or of mean ± sd, ...), each of
    LPS's as a cell with its protocol (``first_lps_cell``), the two rungs' labels, and the verdicts by key."""
    c = curve(results).set_index(["id", "steps", "width"])
    order = c.reset_index().sort_values(["steps", "width"])[["steps", "width"]].drop_duplicates()
    short = {"lps": "lps", PAPER_LPS: "paper", "weight_stats": "ws", "probing": "probing", "graph": "graph",
             "fc": "fc", "random": "random"}
    out = {}
    for end, key in (("first", tuple(order.iloc[0])), ("last", tuple(order.iloc[-1]))):
        out[end] = f"width {key[1]}, {key[0]} steps"
        for m, s in short.items():
            row = c.loc[(m, *key)]
            out[f"{end}_{s}"], out[f"{end}_{s}_low"], out[f"{end}_{s}_high"] = row.top1, row.low, row.high
        row = c.loc[("lps", *key)]
        folds = row.protocol == FOLDS_NOTE
        out[f"{end}_lps_cell"] = (cell(st.Interval(row.top1, row.low, row.high)) + " % (95 % interval, 5 folds)"
                                  if folds else f"{row.top1:.1f} ± {row.sd:.1f} % (sd over 3 random splits)")
    verdicts = {r["key"]: r["verdict"] for r in ladder_verdicts(results)}
    out.update(level=verdicts["level"], gain=verdicts["gain"], pull=verdicts["pull"],
               gain_top=verdicts.get("gain_top", ""), pull_top=verdicts.get("pull_top", ""))
    return out


def verdict_lines(results: dict) -> str:
    """The verdicts as a markdown list for the page (glued): each question, its outcome in bold, and the
    protocol it was judged on."""
    lines = []
    for r in ladder_verdicts(results):
        how = ("" if r["verdict"] == "not measured yet" else
               " (paired 95 % interval, 5 folds)" if "interval" in r["rule"] else " (spread rule, 3 random splits)")
        lines.append(f"* {r['question']}: **{r['verdict']}**{how}.")
    return "\n".join(lines)
