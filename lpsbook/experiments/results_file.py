"""Results files committed with the book: what every long run writes and every chapter reads.

A committed results file is JSON with the numbers, the presets they were measured on (their hashes),
and its provenance (command, code version, machine, precision, dates, wall time). :func:`read` checks
its shape and names the command that computes it again; :func:`stale` says when a preset in the code no
longer matches the one the file measured, so a test fails on a stale file. The first conv layer of every
model travels beside it (:func:`save_conv1`): a few hundred KB from which anyone can recompute how far
training moved the weights without the models.
"""
from __future__ import annotations

import datetime
import io
import json
import platform
import zipfile
from pathlib import Path

import numpy as np
import torch

from .. import __version__, code_version
from ..core.errors import LpsbookError
from ..core.presets import get_preset
from ..core.runtime import cpu_model
from ..core.store import write_atomic
from ..findings.analyses import relative_movement
from ..training.packed import steps_per_model

REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(command: str, started: str, seconds: float) -> dict:
    """Who computed a results file, where, with what and when."""
    return {"command": command, "code_version": code_version(), "lpsbook_version": __version__,
            "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
            "cpu_threads": torch.get_num_threads(), "host": platform.node(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "run_started": started,
            "run_seconds": round(seconds, 1), "written": now()}


def preset_record(name) -> dict:
    """What a results file keeps of a preset: its hash (for :func:`stale`) and its recipe in brief."""
    p = get_preset(name)
    return {"hash": p.hash, "width": p.width, "epochs": p.epochs, "steps": steps_per_model(p),
            "tasks": len(p.tasks), "seeds": p.seeds, "models": p.num_models, "cpu_bf16": p.cpu_bf16}


def stale(results: dict) -> list:
    """Why ``results`` no longer describes the presets in the code (an empty list if it still does)."""
    problems = []
    for name, rec in results.get("presets", {}).items():
        try:
            current = get_preset(name).hash
        except LpsbookError:
            problems.append(f"preset {name!r} is no longer in the code")
            continue
        if rec["hash"] != current:
            problems.append(f"preset {name!r} changed (hash {rec['hash']} in the file, {current} in the code)")
    return problems


def read(path, filename: str, shape: dict, command: str, what: str) -> dict:
    """The results file at ``path`` (a file, or the folder holding ``filename``).

    An LpsbookError naming the file and ``command`` (which computes it again) when it is missing, not
    JSON (truncated, emptied, overwritten) or not shaped like ``what`` (``shape``: key -> type, and a
    hash for each preset).
    """
    path = Path(path)
    path = path / filename if path.is_dir() else path
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise LpsbookError(f"{path} does not exist; run `{command}` to compute it.") from None
    except OSError as exc:
        raise LpsbookError(f"{path} could not be read ({exc.strerror or exc}); run `{command}` to compute it "
                           "again.") from None
    except ValueError:  # not UTF-8 or not JSON
        raise LpsbookError(f"{path} is damaged (not JSON); run `{command}` to compute it again.") from None
    shaped = (isinstance(results, dict) and all(isinstance(results.get(k), t) for k, t in shape.items())
              and all(isinstance(rec, dict) and isinstance(rec.get("hash"), str)
                      for rec in results.get("presets", {}).values()))
    if not shaped:
        raise LpsbookError(f"{path} is damaged (not a results file of {what}); run `{command}` to compute "
                           "it again.")
    return results


def write(path, results: dict):
    """``results`` as indented JSON at ``path``, atomically (a reader never sees half a file)."""
    write_atomic(Path(path), json.dumps(results, indent=1, default=float).encode())


def save_conv1(ms, path) -> Path:
    """Keep the first conv layer of every model of ``ms`` (with its task and training seed) at ``path``
    (``.npz``): small enough to commit, enough to recompute conv1's movement."""
    buf = io.BytesIO()
    np.savez_compressed(buf, conv1=ms.conv_weights[ms.layers[0]].numpy(), task_id=ms.meta.task_id.to_numpy(),
                        train_seed=ms.meta.train_seed.to_numpy())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path


def conv1_movement(preset, path, command: str) -> float:
    """The mean relative change of conv1 from initialisation of the models of ``preset`` whose first
    layers :func:`save_conv1` kept at ``path``."""
    try:
        with np.load(path) as z:
            conv1, tasks, seeds = torch.from_numpy(z["conv1"]), z["task_id"], z["train_seed"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise LpsbookError(f"{path} is missing or damaged ({exc}); run `{command}` to write it again.") from None
    return float(np.mean(relative_movement(get_preset(preset), tasks, seeds, {"conv1.weight": conv1})["conv1.weight"]))
