"""How much training the headline needs: the recipe ladder, and ModelSet500's tasks at width 16.

The book's model set is trained 80 SGD steps at width 8; the paper trains
1,280 steps at width 16. Two builds measure what that costs LPS:

* ``cifar100-w16-e40``: ModelSet500's 50 tasks x 10 seeds at the paper's
  recipe with a quarter of its training (40 epochs, 320 steps), width 16;
  Tables 1-2 (classification, retrieval) of every method on it;
* the recipe ladder (:data:`lpsbook.core.presets.LADDER`): ten of those tasks
  (every fifth), 10 seeds, width 8 or 16 and 10, 40 or 160 epochs, nothing
  else changed; the classification protocol of the main methods on each rung.

:func:`run` builds or resumes each model set in turn (cheap rungs first,
then the 50-task set, then the paper's own recipe), and after each one
rewrites ``results/ladder.json`` with every number and its provenance: an
interruption loses at most the pack being trained, and the file always says
how far the build got. The file is what the book reads; :func:`stale` says
when it no longer matches the presets in the code.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


from .. import code_version
from ..training.packed import train_pack
from . import results_file, sets
from ..show import book
from ..training import modelset as msets
from ..findings.claims import PAPER, PAPER_TEST_MODELS
from ..protocols.statistics import decide_by_spread, published
from ..core.data import load_dataset
from ..core.errors import LpsbookError
from ..methods.lps import LPSConfig
from ..methods.registry import display_name
from ..core.presets import get_preset
from ..protocols.paper import EXTRA_METHODS, PAPER_METHODS
from ..protocols.results import merge
from ..show.tables import mean_sd, result_cell, show

RESULTS_FILE = "ladder.json"
COMMAND = "lpsbook experiment ladder --out results/"
FULL_SET = "cifar100-w16-e40"
# Build order: cheap rungs, the 50-task set (whose ten tasks are the width-16, 40-epoch rung), the paper's recipe.
ORDER = ("ladder-w8-e10", "ladder-w16-e10", "ladder-w8-e40", FULL_SET, "ladder-w16-e40", "ladder-w16-e160")
RUNG_METHODS = ("random", "fc", "frobenius", "lps", "weight_stats", "rebasin_fc", "probing", "graph")
TABLE_METHODS = PAPER_METHODS + EXTRA_METHODS + book.WHOLE_NETWORK
PAPER_LPS = "lps_paper"  # LPS with the paper's second-order schedule (LPSConfig.paper()), beside the book's
FLOAT32_JOBS = ((0, 0), (1, 0), (2, 0))  # (task, seed) of the top rung trained in float32 as well


def rung_classification(preset, data_dir=None) -> dict:
    """The classification protocol (8 train / 2 test models per task, 3 splits) of :data:`RUNG_METHODS`,
    and of LPS with the paper's schedule (:data:`PAPER_LPS`), keyed by method id."""
    cls = dict(book.experiment("classification", preset, data_dir=data_dir, methods=list(RUNG_METHODS))["results"])
    paper = book.experiment("classification", preset, data_dir=data_dir, methods=["lps"],
                            config=LPSConfig.paper().to_dict())
    cls[PAPER_LPS] = paper["results"]["lps"]
    return cls


def tables(preset, data_dir=None) -> dict:
    """Tables 1 and 2 (classification and retrieval) of :data:`TABLE_METHODS`, keyed by method id."""
    out = {}
    for name in ("classification", "retrieval"):
        result = merge(book.experiment(name, preset, data_dir=data_dir),
                       book.experiment(name, preset, data_dir=data_dir, methods=list(book.WHOLE_NETWORK)))
        out[name] = dict(result["results"])
    return out


def float32_check(preset, jobs=FLOAT32_JOBS, device="cpu", data_dir=None) -> list:
    """A few models of ``preset`` trained again in float32: same initialisation and batches, other rounding.

    Returns, per model, its test accuracy as built (bf16 autocast on a CPU with
    native bf16) and in float32, and the float32 training time.
    """
    ms = book.modelset(preset, progress=False, data_dir=data_dir)
    f32 = preset.with_(cpu_bf16=False)

    def compute():
        data, rows = load_dataset(preset, data_dir), []
        for t, s in jobs:
            start = time.perf_counter()
            trained = train_pack(f32, data, [(t, s + preset.seed_offset)], device)[0]
            rows.append({"task_id": t, "seed": s, "test_acc_as_built": float(ms.meta.test_acc[ms.index_of(t, s)]),
                         "test_acc_float32": trained.test_acc, "float32_seconds": time.perf_counter() - start})
        return rows

    return book.cached_json("float32_check", {"jobs": [list(j) for j in jobs]}, compute, preset=preset)


CONV1_DIR = "ladder-conv1"  # beside the results file: every model's first conv layer, per set (a few hundred KB)


def save_conv1(ms, out) -> Path:
    """Keep the first conv layer of every model of ``ms`` in ``out/ladder-conv1/<set>.npz``
    (:func:`lpsbook.experiments.results_file.save_conv1`)."""
    return results_file.save_conv1(ms, Path(out) / CONV1_DIR / f"{ms.preset.name}.npz")


def conv1_movement(name: str, folder=None) -> float:
    """Set ``name``'s mean relative change of conv1 from initialisation, recomputed from its committed first
    layers (:func:`save_conv1`); the results file records the same number, measured on the whole set."""
    return results_file.conv1_movement(name, Path(folder or REPO_RESULTS.parent) / CONV1_DIR / f"{name}.npz", COMMAND)


def movement_check(results: dict, folder=None) -> dict:
    """``{set: (conv1 movement in the results file, recomputed from its committed first layers)}`` for every
    set of ``results``: the file's number, checked by anyone from a few hundred KB."""
    return {name: (entry["summary"]["movement"]["conv1"], conv1_movement(name, folder))
            for name, entry in results["sets"].items()}


REPO_RESULTS = results_file.REPO_RESULTS / RESULTS_FILE


def committed() -> dict:
    """The results file committed with the book; an LpsbookError when it is stale
    (:func:`lpsbook.experiments.results_file.stale`)."""
    results = read(REPO_RESULTS)
    problems = results_file.stale(results)
    if problems:
        raise LpsbookError(f"{REPO_RESULTS} is stale ({'; '.join(problems)}); regenerate it: {COMMAND}")
    return results


# What every results file holds, by type: the parts that :func:`run` and the tables read.
SHAPE = {"order": list, "presets": dict, "sets": dict, "tables": dict, "float32": list, "provenance": dict}


def read(path) -> dict:
    """The ladder's results file at ``path`` (a file, or the folder holding ``ladder.json``); an LpsbookError
    naming the file and the command that computes it again when it is missing, damaged or not shaped like
    one (:data:`SHAPE`)."""
    return results_file.read(path, RESULTS_FILE, SHAPE, COMMAND, "the ladder")


def _refresh_summary(name: str, entry: dict) -> bool:
    """Recompute a kept set's summary written before :func:`set_summary` recorded its pause-free
    training time, when the finished set is in the cache; True when it did."""
    if "training_seconds" in entry.get("summary", {}).get("build", {}):
        return False
    p = get_preset(name)
    folder = msets.cache_dir(p)
    if not (folder / msets.SET_FILE).is_file() or msets.pending_models(folder, p):
        return False
    entry["summary"] = sets.set_summary(msets.load(folder))
    return True


def run(out="results", names=ORDER, float32=True, progress=True, command: str | None = None,
        device: str = "auto", data_dir=None, ray=None) -> dict:
    """Build or resume every model set of ``names`` in order (training on ``device``, or on a Ray cluster
    with ``ray``, a :class:`lpsbook.training.distributed.RayOptions`; from the data at ``data_dir`` or where
    :func:`lpsbook.core.data.load_dataset` looks); rewrite ``out/ladder.json`` after each.

    A set's numbers are kept from an earlier file when its preset has not
    changed, so a later session resumes where the last one stopped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    if command is None:
        command = " ".join(["lpsbook", *sys.argv[1:]]) if sys.argv[0].endswith("lpsbook") else COMMAND
    try:
        results = read(path)
    except LpsbookError:
        results = {}
    keep = {n for n, rec in results.get("presets", {}).items() if n in ORDER and rec["hash"] == get_preset(n).hash}
    results = {"about": __doc__.split("\n\n")[0], "order": list(ORDER),
               "presets": {n: results_file.preset_record(n) for n in ORDER},
               "sets": {n: v for n, v in results.get("sets", {}).items() if n in keep},
               "tables": results.get("tables", {}) if FULL_SET in keep else {},
               "float32": results.get("float32", []) if ORDER[-1] in keep else []}
    refreshed = [n for n, entry in results["sets"].items() if _refresh_summary(n, entry)]
    started, t0 = results_file.now(), time.time()

    def save():
        results["provenance"] = results_file.provenance(command, started, time.time() - t0)
        results_file.write(path, results)

    if refreshed:
        save()
    for name in names:
        if name in results["sets"] and (name != FULL_SET or results["tables"]):
            continue
        ms = sets.ensure_set(name, progress, device, data_dir=data_dir, ray=ray)
        p = ms.preset
        save_conv1(ms, out)
        entry = {"summary": sets.set_summary(ms), "code_version": code_version(), "measured": results_file.now()}
        if name == FULL_SET:
            results["tables"] = tables(p, data_dir)
        else:
            entry["classification"] = rung_classification(p, data_dir)
        results["sets"][name] = entry
        save()
    if float32 and ORDER[-1] in names and not results["float32"]:
        results["float32"] = float32_check(get_preset(ORDER[-1]), data_dir=data_dir)
    save()
    return results


# --- what the book shows: tables, curves and verdicts, from the results file ----------------------

CURVE_METHODS = ("lps", PAPER_LPS, "weight_stats", "probing", "graph", "rebasin_fc", "fc", "random")
PAPER_STEPS = 1280  # the paper's recipe: 160 epochs of batch 128 on a two-class task (1,000 images)
PAPER_TOP1 = 79.8  # LPS, Table 1 of the paper (50 tasks)


def label(key: str) -> str:
    """A method's display name; :data:`PAPER_LPS` is LPS with the paper's second-order schedule."""
    return "LPS, paper's schedule" if key == PAPER_LPS else display_name(key)


def rungs(results: dict) -> list:
    """The ladder's sets in the file's order (the 50-task set left out), with their recipe."""
    return [(n, results["presets"][n]) for n in results["order"] if n != FULL_SET]


def curve(results: dict, methods=CURVE_METHODS) -> "pandas.DataFrame":
    """Top-1 (%) of each method on each finished rung: one row per (method, rung)."""
    import pandas as pd

    rows = []
    for name, rec in rungs(results):
        cls = results["sets"].get(name, {}).get("classification")
        for m in methods if cls else ():
            rows.append({"method": label(m), "id": m, "width": rec["width"], "epochs": rec["epochs"],
                         "steps": rec["steps"], "top1": 100 * cls[m]["top1"]["mean"],
                         "sd": 100 * cls[m]["top1"]["std"], "top5": 100 * cls[m]["top5"]["mean"]})
    return pd.DataFrame(rows, columns=["method", "id", "width", "epochs", "steps", "top1", "sd", "top5"])


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
    """Rungs by methods: ``mean ± sd`` (%) of ``metric`` in one cell; rungs not built yet are left out."""
    import pandas as pd

    rows = {}
    for name, rec in rungs(results):
        cls = results["sets"].get(name, {}).get("classification")
        if cls:
            rows[f"width {rec['width']}, {rec['epochs']} epochs"] = {
                label(m): mean_sd(cls[m][metric]) for m in methods}
    return pd.DataFrame(rows).T


def _gap(a_mean, a_sd, b_mean, b_sd) -> tuple:
    """(difference, margin): ``a - b`` and the larger of the two spreads."""
    return a_mean - b_mean, max(a_sd, b_sd)


def _row(question: str, measured: str, verdict) -> dict:
    return {"question": question, "rule": verdict.rule, "measured": measured, "verdict": verdict.outcome}


def verdicts(results: dict) -> list:
    """The section's three questions, each with its rule, the numbers and a verdict.

    A question whose model sets are not built yet gets the verdict ``"not measured yet"``. The file keeps
    means and sds over three random splits, not predictions, so each is decided by
    :func:`lpsbook.protocols.statistics.decide_by_spread`: holds, does not hold, or cannot tell when the
    difference is within the larger sd.
    """
    c = curve(results)
    rows = []
    full = results["sets"].get(FULL_SET)
    question = "LPS reaches the paper's 79.8 % top-1 at a quarter of its recipe (50 tasks, width 16)"
    if full and results.get("tables"):
        lps = results["tables"]["classification"]["lps"]["top1"]
        mean, sd = 100 * lps["mean"], 100 * lps["std"]
        paper = published(PAPER_TOP1 / 100, PAPER_TEST_MODELS).scaled(100)  # one split of 100 test models
        margin = float(np.hypot(sd, (paper.high - paper.low) / 2))
        rows.append(_row(question, f"{mean:.1f}\u00a0±\u00a0{sd:.1f}\u00a0% (paper: {paper})",
                         decide_by_spread(question, mean - PAPER_TOP1, margin,
                                          "LPS minus 79.8 (the paper's own 95 % half-width combined with the sd)")))
    else:
        rows.append({"question": question, "rule": "", "measured": "", "verdict": "not measured yet"})
    lps16 = c[(c.id == "lps") & (c.width == 16)].sort_values("steps")
    question = "LPS gains as training grows (width 16, shortest vs longest rung built)"
    if len(lps16) >= 2:
        first, last = lps16.iloc[0], lps16.iloc[-1]
        rows.append(_row(question, f"{first.top1:.1f} -> {last.top1:.1f} % ({first.steps} -> {last.steps} steps)",
                         decide_by_spread(question, *_gap(last.top1, last.sd, first.top1, first.sd), "the gain")))
    else:
        rows.append({"question": question, "rule": "", "measured": "", "verdict": "not measured yet"})
    built = c[c.id == "lps"]
    if len(built):
        top = built.sort_values(["steps", "width"]).iloc[-1]
        at = c[(c.steps == top.steps) & (c.width == top.width)].set_index("id")
        rival = at.loc[["weight_stats", "probing"]].top1.idxmax()
        question = "LPS pulls away from weight statistics and probing (longest rung built)"
        rows.append(_row(question, f"LPS {at.top1['lps']:.1f}, {label(rival)} {at.top1[rival]:.1f} % "
                                   f"(width {top.width}, {top.steps} steps)",
                         decide_by_spread(question, *_gap(at.top1["lps"], at.sd["lps"], at.top1[rival], at.sd[rival]),
                                          "LPS minus the better of the two")))
    return rows


def full_table(results: dict, book_set=None, protocol: str = "classification", metric: str = "top1"):
    """Table 1 (or 2) on the 50-task width-16 set beside the paper's and, optionally, the book's set.

    ``book_set``: the book's own result of the same protocol (a ProtocolResult of cifar100-small), or None.
    Rows are methods; cells ``mean ± sd`` (%) over the 50-task set's 3 random splits, and the book's set
    as chapter 5 shows it (:func:`lpsbook.show.tables.result_cell`: its 95 % interval from five folds);
    None when the 50-task set is not built yet.
    """
    import pandas as pd

    if not results.get("tables"):
        return None
    k = {"top1": 0, "top5": 1, "top10": 2, "rank1": 0, "rank5": 1, "rank10": 2}[metric]
    paper = PAPER[protocol]
    ours = results["tables"][protocol]
    mine = book_set["results"] if book_set is not None else {}
    rows = {}
    for m in TABLE_METHODS:
        name = label(m)
        row = {"paper": f"{paper[m][k]:.1f}" if m in paper else "—",
               "50 tasks, width 16, 40 epochs": mean_sd(ours[m][metric]) if m in ours else "—"}
        if book_set is not None:
            row[f"{book_set['preset']} (this book)"] = result_cell(book_set, m, metric) if m in mine else "—"
        rows[name] = row
    return pd.DataFrame(rows).T


FULL_TABLES = (("classification", "top1", "Table 1: task classification, top-1 % (50 tasks: mean ± sd over "
                                          "3 random splits; this book's set: estimate [95 % interval], 5 folds)"),
               ("retrieval", "rank1", "Table 2: task retrieval on unseen tasks, rank-1 % (50 tasks: mean ± sd over "
                                      "3 random splits; this book's set: estimate [95 % interval], 5 folds)"))


def full_tables(results: dict) -> tuple:
    """Tables 1 and 2 of the 50-task set (:func:`full_table`), captioned for the page; when the book runs
    on CIFAR-100, with the book's own numbers beside them (chapters 5-9's results, from the cache).
    ``(None, None)`` before the 50-task set is built."""
    if not results.get("tables"):
        return None, None
    mine = book.with_whole_network()[:2] if book.current_preset().dataset == "cifar100" else (None, None)
    return tuple(show(full_table(results, own, protocol, metric)).set_caption(caption)
                 for (protocol, metric, caption), own in zip(FULL_TABLES, mine))


FULL_RIVALS = ("weight_stats", "probing", "graph")  # the strongest rivals of chapters 7 and 9


def full_findings(results: dict) -> dict | None:
    """What the chapter's prose says of the 50-task set (% throughout), or None before it is built:
    LPS's top-1 and rank-1 beside the paper's, chance, the best of :data:`FULL_RIVALS` and whether
    LPS is above it by more than the larger sd (``lps_leads``) or below it (``lps_trails``)."""
    if not results.get("tables"):
        return None
    cls, ret = results["tables"]["classification"], results["tables"]["retrieval"]
    top1 = {m: (100 * v["top1"]["mean"], 100 * v["top1"]["std"]) for m, v in cls.items()}
    rival = max((m for m in FULL_RIVALS if m in top1), key=lambda m: top1[m][0])
    diff, margin = _gap(*top1["lps"], *top1[rival])
    return {"lps": top1["lps"][0], "lps_sd": top1["lps"][1], "paper": PAPER_TOP1,
            "lps_rank1": 100 * ret["lps"]["rank1"]["mean"], "paper_rank1": PAPER["retrieval"]["lps"][0],
            "chance": 100 / results["presets"][FULL_SET]["tasks"], "rival": label(rival),
            "rival_top1": top1[rival][0], "rival_sd": top1[rival][1],
            "lps_leads": diff > margin, "lps_trails": -diff > margin}


def full_sentence(results: dict) -> str:
    """The 50-task set in one sentence of numbers, for the chapter (glued), or what is missing."""
    f = full_findings(results)
    if f is None:
        return f"The 50-task set is not built yet: `{COMMAND}` builds it."
    standing = ("above it by more than the spread" if f["lps_leads"] else
                "below it by more than the spread" if f["lps_trails"] else "level with it within the spread")
    return (f"On the 50 tasks (chance {f['chance']:.0f} %), LPS classifies {f['lps']:.1f} ± {f['lps_sd']:.1f} % "
            f"of the held-out models, against the paper's {f['paper']:.1f} %; on tasks unseen in training, the "
            f"first model it retrieves shares the query's task for {f['lps_rank1']:.1f} % of queries "
            f"(the paper: {f['paper_rank1']:.1f} %). "
            f"The best of weight statistics, probing and the graph learner is {f['rival']}, "
            f"{f['rival_top1']:.1f} ± {f['rival_sd']:.1f} %: LPS is {standing}.")


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


def state_sentence(results: dict) -> str:
    """Where the build stands, in one sentence (glued): the sets still to build and, once the top rung
    is built, what the paper's whole ModelSet500 would take at that rung's median time per model."""
    left = [n for n in results["order"] if n not in results["sets"]]
    top = results["sets"].get(results["order"][-1])
    cost = ""
    if top:
        build = top["summary"]["build"]
        sec = build["median_model_seconds"]
        cost = (f"At the paper's recipe one model took {sec:.0f} s of training (median over the top rung, "
                f"{', '.join(build['cpus'])}, {results['provenance']['cpu_threads']} threads), so the paper's "
                f"whole ModelSet500, 500 such models, would take about {500 * sec / 3600:.0f} hours of this machine. ")
    todo = ("Not built yet: " + ", ".join(f"`{n}`" for n in left) + f"; `{COMMAND}` resumes where the file stops"
            if left else "Every set of the ladder and the 50-task set is built")
    return cost + todo + "."


def build_summary(results: dict) -> dict:
    """What the file holds and how it was made, for the chapter's prose: rungs built, hours of
    training, CPU, threads, precision, first and last dates, code version."""
    summaries = [results["sets"][n]["summary"] for n in results["order"] if n in results["sets"]]
    dates = sorted(d[:10] for s in summaries for d in (s["build"]["first_model"], s["build"]["last_model"]))
    names = [n for n, _ in rungs(results)]
    return {"built": sum(n in results["sets"] for n in names), "rungs": len(names), "sets": len(summaries),
            "hours": sum(map(training_seconds, summaries)) / 3600,
            "cpu": ", ".join(sorted({c for s in summaries for c in s["build"]["cpus"]})),
            "threads": results["provenance"]["cpu_threads"], "first_date": dates[0] if dates else "",
            "last_date": dates[-1] if dates else "",
            "precision": ", ".join(sorted({p for s in summaries for p in s["build"]["precision"]})),
            "code": ", ".join(sorted({results["sets"][n].get("code_version", results["provenance"]["code_version"])
                                      for n in results["order"] if n in results["sets"]})),
            "min_mean_test_acc": min((s["test_acc"]["mean"] for s in summaries), default=float("nan"))}


def findings(results: dict) -> dict:
    """The numbers the chapter's prose quotes: each method's top-1 and sd on the cheapest and on the
    longest rung built (``first_lps``, ``last_ws_sd``, ...), the two rungs' labels, and the verdicts."""
    c = curve(results).set_index(["id", "steps", "width"])
    order = c.reset_index().sort_values(["steps", "width"])[["steps", "width"]].drop_duplicates()
    short = {"lps": "lps", PAPER_LPS: "paper", "weight_stats": "ws", "probing": "probing", "graph": "graph",
             "fc": "fc", "random": "random"}
    out = {}
    for end, key in (("first", tuple(order.iloc[0])), ("last", tuple(order.iloc[-1]))):
        out[end] = f"width {key[1]}, {key[0]} steps"
        for m, s in short.items():
            out[f"{end}_{s}"], out[f"{end}_{s}_sd"] = c.loc[(m, *key)].top1, c.loc[(m, *key)].sd
    v = [r["verdict"] for r in verdicts(results)]
    out.update(level=v[0], gain=v[1], pull=v[2])
    return out
