"""Execute chapters and keep only the outputs nbval should compare strictly.

    python scripts/store_outputs.py [--preset cifar100-small-reseeded] book/ch1_permutation_symmetry.ipynb [...]

A cell keeps its outputs (and so is compared by ``pytest --nbval``) when all
of them are plain text (streams or ``text/plain`` results) and the cell has
none of the tags ``nbval-ignore-output``, ``nbval-skip`` or ``remove-cell``.
Every other cell (figures, widgets, tables rendered as HTML, numbers that come
from trained weights, hidden glue and assertion cells) is stored without
outputs and without an execution count, so nbval runs it but does not compare
it. The book itself re-executes every chapter when it is built.

The chapters are executed on the preset given by ``--preset`` (default
``cifar100-small-reseeded``: the book's CIFAR-100 recipe with other seeds),
and the notebook's metadata records it. ``make test`` then runs nbval on the
book's own model set (``cifar100-small``, or ``digits`` where CIFAR-100 is
absent), so every CI run compares outputs stored from one model set against a
run on another: a strictly compared output that depended on trained weights
(or on the data) would fail there, on any machine.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TEXT_ONLY = {"text/plain"}
NOT_COMPARED = {"nbval-ignore-output", "nbval-skip", "remove-cell"}


def strict(cell) -> bool:
    """Whether nbval compares this cell's stored outputs."""
    if NOT_COMPARED & set(cell.get("metadata", {}).get("tags", [])):
        return False
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            continue
        if out.output_type in ("execute_result", "display_data") and set(out.get("data", {})) <= TEXT_ONLY:
            continue
        return False
    return True


def store(path: Path, preset_name: str, timeout: int = 7200):
    from lpsbook.core.presets import get_preset

    preset = get_preset(preset_name)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "NBVAL_" in cell.source:
            raise SystemExit(f"{path}: use cell tags (nbval-ignore-output), not NBVAL_ comments:\n{cell.source}")
    os.environ["LPSBOOK_PRESET"] = preset.name  # the kernel inherits it
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.outputs and strict(cell):
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out.execution_count = count
                out.pop("metadata", None) if out.output_type == "stream" else None
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nb.metadata["lpsbook"] = {"outputs_stored_with": {"preset": preset.name, "preset_hash": preset.hash}}
    nbformat.write(nb, path)
    print(f"{path}: {count} cells with strictly compared outputs (stored with preset {preset.name})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cifar100-small-reseeded")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    for nb_path in args.notebooks:
        store(nb_path, args.preset)
