"""ModelSet500 at the paper's own recipe: 50 tasks x 10 seeds, ResNet-20 of width 16, 160 epochs.

:func:`run` builds the set (or resumes it; models of the ladder's top rung, the same recipe on ten of
the tasks, are copied rather than trained again), then measures it step by step: Table 1
(classification by folds, every model tested once), Table 2 (retrieval by folds over tasks), LPS with
the book's shorter second-order schedule beside the paper's, and Figure 3 (transferability, branches,
alignment ablation). After the build and after each step it rewrites ``modelset500.json``: every
model's provenance (machine, precision, torch and code version, time), every test model's prediction
per method, and the file's own provenance; the first conv layers go beside it. An interrupted run
loses at most the step in flight (whose fits are checkpointed too), and the file always says how far it
got. The models stay where they were built; the file is what the book reads.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from . import results_file, sets
from ..core.data import load_dataset
from ..core.errors import LpsbookError
from ..core.presets import get_preset
from ..core.runtime import resolve_device
from ..core.store import output_problem
from ..methods.lps import LPSConfig
from ..protocols import paper, transfer

PRESET = "cifar100"
RESULTS_FILE = "modelset500.json"
CONV1_FILE = "modelset500-conv1.npz"
COMMAND = "lpsbook experiment modelset500 --out results/"
FOLDS = 5
TABLE_METHODS = paper.PAPER_METHODS + paper.EXTRA_METHODS + ("probing", "graph")
BOOK_LPS = LPSConfig(epochs=60, batch_size=8, lr=0.05, milestones=(30, 45))  # the book's shorter schedule
# step -> (protocol, its settings); classification and retrieval first: they are the headline
STEPS = {
    "classification": ("classification", {"folds": FOLDS}),
    "retrieval": ("retrieval", {"folds": FOLDS}),
    "classification_lps_book": ("classification", {"folds": FOLDS, "methods": ["lps"], "config": BOOK_LPS.to_dict()}),
    "transferability": ("transferability", {"folds": FOLDS, "seeds": FOLDS}),  # every task a target once
    "references": ("reference_transfer", {"folds": FOLDS, "seeds": FOLDS}),  # LEEP and LogME: the data-based yardstick
    "branches": ("branches", {"folds": FOLDS}),  # the first fold (the paper's one split), its predictions kept
    "ablation": ("ablation", {"folds": FOLDS}),
}
SHAPE = {"presets": dict, "models": dict, "summary": dict, "protocols": dict, "provenance": dict}


def models_digest(ms) -> str:
    """sha256 (16 hex digits) of every model's weights checksum, in order: the numbers of a file are kept
    on a rerun only while the models they were measured on are the same."""
    return hashlib.sha256("".join(ms.meta.weights_sha256).encode()).hexdigest()[:16]


def read(path) -> dict:
    """ModelSet500's results file at ``path`` (a file, or the folder holding it); an LpsbookError naming
    the file and the command when it is missing or damaged."""
    return results_file.read(path, RESULTS_FILE, SHAPE, COMMAND, "ModelSet500")


def _settings(step: str, methods) -> dict:
    name, settings = STEPS[step]
    settings = dict(settings)
    if name in ("classification", "retrieval") and "methods" not in settings:
        settings["methods"] = list(methods)
    return settings


def measure(ms, step: str, device, methods=TABLE_METHODS, dataset=None, checkpoint=None, scores=None) -> dict:
    """One step of :data:`STEPS` on the loaded set ``ms``: its protocol's result as a dict (with every test
    model's prediction where the protocol keeps them). ``scores``: measured transfer and the LEEP and
    LogME references (:func:`lpsbook.protocols.transfer.transfer_scores`), which transferability and the
    references step read."""
    name, settings = STEPS[step]
    if name == "reference_transfer":
        return paper.reference_transfer(ms, scores, **settings).to_dict()
    kwargs = paper.arguments(name, ms, _settings(step, methods), device)  # a step's "config": a whole schedule
    if dataset is not None and name in ("classification", "retrieval", "transferability", "similarity"):
        kwargs["dataset"] = dataset
    if name == "transferability" and scores is not None:
        kwargs["ari"] = scores["ari"]
    result = paper.PROTOCOLS[name](ms, checkpoint=checkpoint, **kwargs)
    return result.to_dict()


def run(out="results", modelset=None, preset=PRESET, device="auto", steps=tuple(STEPS), methods=TABLE_METHODS,
        data_dir=None, progress=True, command: str | None = None, ray=None) -> dict:
    """Build (or resume) the set of ``preset`` at ``modelset`` (default: the book's cache) on ``device``,
    then measure each of ``steps`` not yet in ``out/modelset500.json``, rewriting the file after each.

    A step already in the file is kept when the file was measured on the same preset and the same models
    (:func:`models_digest`); anything else starts the file afresh.
    """
    out = Path(out)
    problem = output_problem(out, folder=True)
    if problem:
        raise LpsbookError(f"--out {problem}; give a folder for {RESULTS_FILE}.")
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise LpsbookError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    out.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = " ".join(["lpsbook", *sys.argv[1:]]) if sys.argv[0].endswith("lpsbook") else COMMAND
    p = get_preset(preset)
    dev = resolve_device(device)
    started, t0 = results_file.now(), time.time()
    ms = sets.ensure_set(p, progress, str(dev), path=modelset, data_dir=data_dir, ray=ray)
    build_seconds = time.time() - t0
    results_file.save_conv1(ms, out / CONV1_FILE)
    try:
        old = read(out)
    except LpsbookError:
        old = {}
    digest = models_digest(ms)
    same = old.get("models_digest") == digest and old.get("presets", {}).get(p.name, {}).get("hash") == p.hash
    results = {"about": __doc__.split("\n\n")[0], "preset": p.name, "presets": {p.name: results_file.preset_record(p)},
               "models_digest": digest, "models": sets.model_records(ms), "summary": sets.set_summary(ms),
               "folds": FOLDS, "protocols": dict(old.get("protocols", {})) if same else {},
               "steps_seconds": dict(old.get("steps_seconds", {})) if same else {}}
    results["steps_seconds"]["build"] = round(build_seconds, 1)

    def save():
        results["provenance"] = results_file.provenance(command, started, time.time() - t0)
        results["provenance"]["device"] = str(dev)
        results_file.write(out / RESULTS_FILE, results)

    save()
    dataset = load_dataset(p, data_dir) if data_dir is not None else None
    if same and "transfer_scores" in old:
        results["transfer_scores"] = old["transfer_scores"]
    for step in steps:
        if step in results["protocols"]:
            continue
        start = time.time()
        if STEPS[step][0] in ("transferability", "reference_transfer") and "transfer_scores" not in results:
            scores = transfer.transfer_scores(ms, dataset, progress=progress)  # once: ARI, LEEP, LogME per task pair
            results["transfer_scores"] = {k: np.asarray(v).tolist() for k, v in scores.items()}
            save()
        results["protocols"][step] = measure(ms, step, dev, methods, dataset, out / f".{RESULTS_FILE}.{step}.partial",
                                             results.get("transfer_scores"))
        results["steps_seconds"][step] = round(time.time() - start, 1)
        save()
    return results


def committed(folder=None) -> dict | None:
    """The committed results file (``results/modelset500.json``), or None before it exists; an
    LpsbookError when it is stale (its preset no longer the one in the code)."""
    path = Path(folder or results_file.REPO_RESULTS) / RESULTS_FILE
    if not path.is_file():
        return None
    results = read(path)
    problems = results_file.stale(results)
    if problems:
        raise LpsbookError(f"{path} is stale ({'; '.join(problems)}); regenerate it: {COMMAND}")
    return results
