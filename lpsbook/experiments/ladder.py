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



from .. import code_version
from ..training.packed import train_pack
from . import results_file, sets
from ..show import book
from ..training import modelset as msets
from ..core.data import load_dataset
from ..core.errors import LpsbookError
from ..methods.lps import LPSConfig
from ..methods.registry import display_name
from ..core.presets import get_preset
from ..protocols.paper import EXTRA_METHODS, PAPER_METHODS
from ..protocols.results import merge

RESULTS_FILE = "ladder.json"
COMMAND = "lpsbook experiment ladder --out results/"
FULL_SET = "cifar100-w16-e40"
# Build order: cheap rungs, the 50-task set (whose ten tasks are the width-16, 40-epoch rung), the paper's recipe.
ORDER = ("ladder-w8-e10", "ladder-w16-e10", "ladder-w8-e40", FULL_SET, "ladder-w16-e40", "ladder-w16-e160")
RUNG_METHODS = ("random", "fc", "frobenius", "lps", "weight_stats", "rebasin_fc", "probing", "graph")
TABLE_METHODS = PAPER_METHODS + EXTRA_METHODS + book.WHOLE_NETWORK
PAPER_LPS = "lps_paper"  # LPS with the paper's second-order schedule (LPSConfig.paper()), beside the book's
FLOAT32_JOBS = ((0, 0), (1, 0), (2, 0))  # (task, seed) of the top rung trained in float32 as well


def rung_label(key: str) -> str:
    """A method's display name; :data:`PAPER_LPS` is LPS with the paper's second-order schedule."""
    return "LPS, paper's schedule" if key == PAPER_LPS else display_name(key)


def rung_classification(preset, data_dir=None) -> dict:
    """The classification protocol of :data:`RUNG_METHODS` and of LPS with the paper's schedule
    (:data:`PAPER_LPS`) on five folds (every model tested once, :data:`lpsbook.show.book.FOLDS`):
    ``{"classification": {method: mean and sd over the folds}, "predictions": {method: per fold, every
    test model's row, task and rank}}``, the second what the verdicts are computed from."""
    cls = book.experiment("classification", preset, data_dir=data_dir, methods=list(RUNG_METHODS))
    paper = book.experiment("classification", preset, data_dir=data_dir, methods=["lps"],
                            config=LPSConfig.paper().to_dict())
    return {"classification": {**cls["results"], PAPER_LPS: paper["results"]["lps"]},
            "predictions": {**cls["predictions"], PAPER_LPS: paper["predictions"]["lps"]}}


def on_folds(entry: dict) -> bool:
    """Whether a set's entry keeps every test model's prediction (five folds), not only the means and
    sds over three random splits that files written before the folds hold."""
    return "predictions" in entry


def tables(preset, data_dir=None) -> dict:
    """Tables 1 and 2 (classification and retrieval) of :data:`TABLE_METHODS` on five folds, keyed by method
    id, and every test model's prediction under ``"predictions"`` (``{protocol: {method: per fold}}``)."""
    out = {"predictions": {}}
    for name in ("classification", "retrieval"):
        result = merge(book.experiment(name, preset, data_dir=data_dir),
                       book.experiment(name, preset, data_dir=data_dir, methods=list(book.WHOLE_NETWORK)))
        out[name], out["predictions"][name] = dict(result["results"]), result["predictions"]
    return out


def float32_check(preset, jobs=FLOAT32_JOBS, device="cpu", data_dir=None) -> list:
    """A few models of ``preset`` trained again in float32: same initialisation and batches, other rounding.

    Returns, per model, its test accuracy as built (bf16 autocast on a CPU with
    native bf16) and in float32, its checksum and the float32 training time. Only those models of the set
    need to be built (in the book's cache); the result is cached under their checksums.
    """
    f32, folder = preset.with_(cpu_bf16=False), msets.cache_dir(preset) / msets.MODELS
    files = [folder / f"{msets.model_stem(t, s)}.json" for t, s in jobs]  # only these models need to be built
    if not all(f.is_file() for f in files):
        raise LpsbookError(f"the float32 check compares models of {preset.name} that are not built yet in {folder}; "
                           f"build the set first: {COMMAND}")
    built = [msets.read_meta(f) for f in files]  # the models compared, named by their checksums

    def compute():
        data, rows = load_dataset(preset, data_dir), []
        for (t, s), model in zip(jobs, built):
            start = time.perf_counter()
            trained = train_pack(f32, data, [(t, s + preset.seed_offset)], device)[0]
            rows.append({"task_id": t, "seed": s, "test_acc_as_built": float(model["test_acc"]),
                         "weights_sha256": model["weights_sha256"],
                         "test_acc_float32": trained.test_acc, "float32_seconds": time.perf_counter() - start})
        return rows

    settings = {"jobs": [list(j) for j in jobs], "models": [m["weights_sha256"] for m in built]}
    return book.cached_json("float32_check", settings, compute, preset=preset)


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
    training time and the build workers it divides by, when the finished set is in the cache; True when it did."""
    build = entry.get("summary", {}).get("build", {})
    if "training_seconds" in build and "workers" in build:
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
        kept = results["sets"].get(name)
        if kept and on_folds(kept if name != FULL_SET else results["tables"]):
            continue
        ms = sets.ensure_set(name, progress, device, data_dir=data_dir, ray=ray)
        p = ms.preset
        save_conv1(ms, out)
        entry = {"summary": sets.set_summary(ms), "code_version": code_version(), "measured": results_file.now()}
        if name == FULL_SET:
            results["tables"] = tables(p, data_dir)
        else:
            entry.update(rung_classification(p, data_dir))
        results["sets"][name] = entry
        if name == ORDER[-1]:  # the float32 check compares this set's models: measure it again on them
            results["float32"] = []
        save()
    if float32 and ORDER[-1] in names and not results["float32"]:
        results["float32"] = float32_check(get_preset(ORDER[-1]), data_dir=data_dir)
    save()
    return results
