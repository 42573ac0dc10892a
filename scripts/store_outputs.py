"""Execute chapters and keep only the outputs nbval should compare strictly.

    python scripts/store_outputs.py book/ch1_permutation_symmetry.ipynb [...]

A cell keeps its outputs (and so is compared by ``pytest --nbval``) when all
of them are plain text (streams or ``text/plain`` results) and the cell is
not marked ``# NBVAL_IGNORE_OUTPUT``.  Every other cell (figures, widgets,
tables rendered as HTML, timings) is stored without outputs and without an
execution count, so nbval runs it but does not compare it.  The book itself
re-executes every chapter when it is built.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TEXT_ONLY = {"text/plain"}


def _strict(cell) -> bool:
    if "NBVAL_IGNORE_OUTPUT" in cell.source or "NBVAL_SKIP" in cell.source:
        return False
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            continue
        if out.output_type in ("execute_result", "display_data") and set(out.get("data", {})) <= TEXT_ONLY:
            continue
        return False
    return True


def store(path: Path, timeout: int = 1800):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.outputs and _strict(cell):
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
    nbformat.write(nb, path)
    print(f"{path}: {count} cells with strictly compared outputs")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        store(Path(arg))
