"""The README's Table 1 agrees with the committed results, and those are the book's current protocol.

``results/table1-cifar100-small.json`` is taken from the book's cached results by
``scripts/readme_table.py export``; the README's table is written from it by
``scripts/readme_table.py write``. No model set is needed here.
"""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_table", REPO / "scripts" / "readme_table.py")
readme_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_table)


@pytest.fixture(scope="module")
def results():
    return json.loads(readme_table.RESULTS.read_text())


def test_readme_table_is_the_one_the_script_writes(results):
    text = readme_table.README.read_text()
    assert readme_table.replace_block(text, readme_table.render(results, readme_table.wide_column())) == text, (
        "README.md's Table 1 differs from results/table1-cifar100-small.json: "
        "run python scripts/readme_table.py write")
    assert readme_table.main(["check"]) == 0


def test_results_file_is_not_stale(results):
    """Same preset (by hash) and the same protocol settings as the book runs now, else re-export."""
    from lpsbook.core.presets import get_preset

    preset = get_preset(readme_table.PRESET)
    assert results["preset_hash"] == preset.hash, (
        f"{readme_table.RESULTS.name} was computed on {readme_table.PRESET} {results['preset_hash']}, "
        f"the code's preset is {preset.hash}: rebuild the book and run {readme_table.COMMAND}")
    assert results["book_settings"] == readme_table.book_settings(), (
        f"the book's classification settings changed since {readme_table.RESULTS.name} was exported: "
        f"rebuild the book and run {readme_table.COMMAND}")
    assert results["models"] == len(preset.tasks) * preset.seeds
    assert "LPS" in results["results"] and all(set(r) == set(readme_table.METRICS) for r in results["results"].values())


def test_table_shows_every_method_with_its_interval_and_the_paper(results):
    block = readme_table.render(results)
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == list(results["results"])
    lps = next(r for r in rows if r.startswith("| LPS |")).strip("| ").split(" | ")
    top1 = results["results"]["LPS"]["top1"]
    assert lps[1] == f"{top1['estimate']:.1f} [{top1['low']:.1f}, {top1['high']:.1f}]"
    assert lps[2] == f"{results['paper']['LPS']['top1']:.1f}"


def test_check_fails_when_the_readme_disagrees(results, tmp_path, monkeypatch):
    text = readme_table.README.read_text()
    lps = results["results"]["LPS"]["top1"]["estimate"]
    edited = text.replace(f"| LPS | {lps:.1f} [", f"| LPS | {lps + 10:.1f} [")
    assert edited != text
    fake = tmp_path / "README.md"
    fake.write_text(edited)
    monkeypatch.setattr(readme_table, "README", fake)
    assert readme_table.main(["check"]) == 1
    fake.write_text(text.replace(readme_table.END, ""))
    with pytest.raises(SystemExit, match="markers"):
        readme_table.main(["check"])


def test_the_intervals_are_recomputed_from_the_kept_predictions(results):
    """Every test model once, and each cell of the file follows from its predictions (same seeded bootstrap)."""
    from lpsbook.protocols import statistics as st

    ids = {readme_table.display_name(m): m for m in results["predictions"]}
    for name, per in results["results"].items():
        folds = results["predictions"][ids[name]]
        rows = sorted(r for f in folds for r in f["rows"])
        assert rows == list(range(results["models"]))  # every model tested exactly once
        for metric, iv in per.items():
            again = st.result_interval({"protocols": {"c": {"predictions": results["predictions"]}}}, "c", ids[name], metric)
            assert again.to_dict() == pytest.approx(iv)


def test_results_file_carries_its_provenance(results):
    """Where the numbers come from: the command, code version, preset hashes, machine and dates."""
    prov = results["provenance"]
    assert prov["preset_hashes"] == {readme_table.PRESET: results["preset_hash"]}
    assert prov["command"].startswith("python scripts/readme_table.py export")
    assert all(prov[k] for k in ("code_version", "computed", "exported", "cpu", "torch", "python"))
    assert prov["run_seconds"] > 0


def test_the_50_task_column_comes_from_chapter_10s_file(results, tmp_path):
    """No column while the ladder file lacks the tables; with them, LPS's top-1 beside the paper's."""
    assert readme_table.wide_column(tmp_path / "missing.json") is None
    ladder_file = tmp_path / "ladder.json"
    ladder_file.write_text(json.dumps({"tables": {}}))
    assert readme_table.wide_column(ladder_file) is None
    ladder_file.write_text(json.dumps({"tables": {"classification": {
        "lps": {"top1": {"mean": 0.612, "std": 0.031}}}}}))
    wide = readme_table.wide_column(ladder_file)
    assert set(wide) == {"LPS"}
    block = readme_table.render(results, wide)
    head = next(line for line in block.splitlines() if line.startswith("| method"))
    assert head.split(" | ")[3] == readme_table.WIDE
    lps = next(line for line in block.splitlines() if line.startswith("| LPS |")).strip("| ").split(" | ")
    assert lps[3] == "61.2 ± 3.1"
    others = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith(("| LPS", "| method"))]
    assert others and all(line.strip("| ").split(" | ")[3] == "—" for line in others)
