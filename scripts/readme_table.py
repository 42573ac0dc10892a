"""The README's Table 1 on cifar100-small, written from the book's results.

    python scripts/readme_table.py export [--cache DIR]   # the book's cached result -> results/table1-cifar100-small.json
    python scripts/readme_table.py write                   # results/table1-cifar100-small.json -> README.md
    python scripts/readme_table.py check                   # exit 1 if README.md's table differs from the file

``export`` reads the classification result that chapter 5 of the book cached
(``$LPSBOOK_CACHE/results/cifar100-small-classification-*.json``, written by
``make book`` on CIFAR-100) and keeps what the README shows in a small
committed file, with where it came from: the preset and its hash, the book's
settings of the protocol, the code version that computed it. The cache itself
is not committed (and its file names change with every code version), so the
README and its test read the committed file only; ``tests/test_readme_table.py``
checks that the README agrees with it and that it is not stale (same preset
hash and the same protocol settings as the book uses now).

``write`` replaces what lies between the two marker comments in README.md; once
``results/ladder.json`` (chapter 10) holds the 50-task width-16 set's tables, their
top-1 stands in a column beside the paper's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "results" / "table1-cifar100-small.json"
LADDER = REPO / "results" / "ladder.json"  # chapter 10's results: the 50-task width-16 set's Table 1
WIDE = "top-1 %, width 16 × 40 epochs"
PRESET = "cifar100-small"
METRICS = {"top1": "top-1 %", "top5": "top-5 %"}
BEGIN = "<!-- table1-cifar100-small: begin (written by scripts/readme_table.py; do not edit by hand) -->"
END = "<!-- table1-cifar100-small: end -->"
COMMAND = "python scripts/readme_table.py export && python scripts/readme_table.py write"


def book_settings() -> dict:
    """The classification protocol's settings as the book runs it on cifar100-small (no model set needed)."""
    from lpsbook.show import book
    from lpsbook.core.presets import get_preset

    return book.experiment_settings("classification", get_preset(PRESET))


def paper_numbers() -> dict:
    """The paper's Table 1 (top-1, top-5, top-10 by method id) as the package records it."""
    from lpsbook.findings.claims import PAPER

    return PAPER["classification"]


def display_name(key: str) -> str:
    """A method's name as the book's tables show it (results and PAPER are keyed by method id)."""
    from lpsbook.protocols.results import label

    return label(key)


def export(cache: Path | None = None) -> Path:
    """Copy the newest cached book result that matches the preset and the book's settings into RESULTS."""
    import platform

    import torch

    from lpsbook.core.data import default_cache_dir
    from lpsbook.core.presets import get_preset
    from lpsbook.core.runtime import cpu_model
    from lpsbook.core.store import recall
    from lpsbook.protocols import statistics as st

    preset, settings = get_preset(PRESET), book_settings()
    folder = Path(cache or default_cache_dir()) / "results"
    found = []
    for path in folder.glob(f"{PRESET}-classification-*.json"):
        result = recall(path)  # the result cache's sealed file ({"key", "result", checksum}); None if damaged
        if result is None:
            continue
        result = result["result"]
        same = (result.get("preset_hash") == preset.hash
                and len(result["settings"]["methods"]) == len(settings["methods"])
                and result["settings"].get("folds") == settings["folds"] and "predictions" in result
                and "LPS" in map(display_name, result["results"]))
        if same:
            found.append((path.stat().st_mtime, path, result))
    if not found:
        raise SystemExit(f"no cached {PRESET} classification result with the book's settings in {folder}: "
                         "build the book on CIFAR-100 first (make book), or pass --cache")
    _, path, result = max(found, key=lambda f: f[0])
    paper = paper_numbers()
    out = {
        "what": "Table 1 (task classification) on cifar100-small, as chapter 5 of the book computes it",
        "preset": PRESET, "preset_hash": preset.hash, "book_settings": settings,
        "source": path.name, "code_version": result.get("code_version"), "models": result.get("models"),
        "exported": datetime.date.today().isoformat(),
        "provenance": {
            "command": "python scripts/readme_table.py export" + (f" --cache {cache}" if cache else ""),
            "code_version": result.get("code_version"), "preset_hashes": {PRESET: preset.hash},
            "computed": datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run_seconds": result.get("seconds"),
            # the machine that ran the export; the book's cache it reads is built on the same machine by make book
            "cpu": cpu_model(), "host": platform.node(), "torch": torch.__version__,
            "python": platform.python_version()},
        # in the book's order of methods (the sealed cache file stores its keys sorted): the estimate and its
        # 95 % interval over resampled tasks, from every test model's prediction (kept below)
        "results": {display_name(m): {k: st.result_interval(st.view(c=result), "c", m, k).to_dict() for k in METRICS}
                    for m in settings["methods"]},
        "predictions": {m: result["predictions"][m] for m in settings["methods"]},
        "paper": {display_name(m): dict(zip(("top1", "top5", "top10"), v)) for m, v in paper.items()},
    }
    RESULTS.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return RESULTS


def wide_column(path: Path | None = None) -> dict | None:
    """Top-1 (mean, std as fractions) by method name on the 50-task width-16 set of chapter 10, from
    ``results/ladder.json``; None while that set's tables are not in the file."""
    path = path or LADDER
    tables = json.loads(path.read_text()).get("tables") if path.is_file() else None
    if not tables:
        return None
    return {display_name(m): r["top1"] for m, r in tables["classification"].items()}


def pct(summary: dict) -> str:
    """``mean ± sd`` in % of a summary of fractions, or ``estimate [low, high]`` of an interval in %."""
    if "estimate" in summary:
        return f"{summary['estimate']:.1f} [{summary['low']:.1f}, {summary['high']:.1f}]"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def render(results: dict, wide: dict | None = None) -> str:
    """The README's block (markers included) for the contents of RESULTS and, when given, the 50-task
    width-16 set's top-1 (:func:`wide_column`) beside them."""
    head = ["method"] + [col for m, name in METRICS.items() for col in (name, f"{name}, paper")]
    if wide:
        head.insert(3, WIDE)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, r in results["results"].items():
        cells = [method]
        for m in METRICS:
            cells.append(pct(r[m]))
            paper = results["paper"].get(method, {}).get(m)
            cells.append("—" if paper is None else f"{paper:.1f}")
        if wide:
            w = wide.get(method)
            cells.insert(3, "—" if w is None else pct(w))
        lines.append("| " + " | ".join(cells) + " |")
    folds = results["book_settings"]["folds"]
    note = (f"Held-out models, {folds} folds (every model tested once), the estimate and its 95 % interval "
            f"over resampled tasks; preset `{results['preset']}` "
            f"({results['preset_hash']}, {results['models']} models), from "
            f"[`results/{RESULTS.name}`](results/{RESULTS.name}). The paper trained its models "
            "for 160 epochs at width 16 (chapter 10 follows the gap).")
    if wide:
        note += (f" The column {WIDE!r} is task classification on the same 50 tasks, its models trained "
                 "with the paper's recipe for a quarter of its length (width 16, 40 epochs), mean ± sd over "
                 "3 random splits (the protocol before folds), from "
                 f"[`results/{LADDER.name}`](results/{LADDER.name}).")
    return "\n".join([BEGIN, "", *lines, "", note, "", END])


def replace_block(text: str, block: str) -> str:
    """``text`` with the part from BEGIN to END replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} ... {END!r}")
    return text[:start] + block + text[end + len(END):]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["export", "write", "check"])
    parser.add_argument("--cache", type=Path, help="the book's cache folder (default: $LPSBOOK_CACHE or data/)")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(f"wrote {export(args.cache)}")
        return 0
    text = README.read_text()
    wanted = replace_block(text, render(json.loads(RESULTS.read_text()), wide_column()))
    if args.command == "write":
        README.write_text(wanted)
        print(f"wrote the table into {README}")
        return 0
    if wanted != text:
        print(f"README.md's table differs from {RESULTS.relative_to(REPO)}: run python scripts/readme_table.py write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
