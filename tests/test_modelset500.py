"""ModelSet500's pipeline, rehearsed on the tiny preset: build, measure step by step into a results file
with every model's provenance and every test model's prediction; resume; staleness; the CLI."""

import numpy as np
import pytest

from lpsbook import cli
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import get_preset
from lpsbook.experiments import modelset500, results_file
from lpsbook.protocols import paper, statistics

CHEAP = ("random", "filter_norms", "weight_stats")


def test_run_writes_provenance_and_predictions_and_resumes(tiny_modelset_dir, tmp_path, monkeypatch):
    out = tmp_path / "results"
    res = modelset500.run(out, modelset=tiny_modelset_dir, preset="tiny", device="cpu",
                          steps=("classification", "retrieval"), methods=CHEAP, progress=False)
    saved = modelset500.read(out)
    assert saved["protocols"].keys() == {"classification", "retrieval"} == res["protocols"].keys()
    models = saved["models"]
    assert len(models["task_id"]) == 9 and set(models["precision"]) == {"float32"}
    assert all(models[k][0] for k in ("cpu", "torch_version", "code_version", "created", "weights_sha256"))
    assert saved["provenance"]["command"] and saved["presets"]["tiny"]["hash"]
    assert (out / modelset500.CONV1_FILE).is_file()
    cls = saved["protocols"]["classification"]
    assert cls["settings"]["folds"] == modelset500.FOLDS
    for m in CHEAP:  # every model tested once, its prediction kept: an interval from the file alone
        rows = np.concatenate([f["rows"] for f in cls["predictions"][m]])
        assert sorted(rows) == list(range(9))
        correct = np.concatenate([np.asarray(f["rank"]) == 0 for f in cls["predictions"][m]]).astype(float)
        iv = statistics.interval(correct, np.asarray(models["task_id"])[rows])
        assert iv.low <= iv.estimate <= iv.high
    # a rerun measures nothing again
    calls = []
    monkeypatch.setattr(paper, "PROTOCOLS", {k: (lambda *a, **k: calls.append(1)) for k in paper.PROTOCOLS})
    again = modelset500.run(out, modelset=tiny_modelset_dir, preset="tiny", device="cpu",
                            steps=("classification", "retrieval"), methods=CHEAP, progress=False)
    assert not calls and again["protocols"] == saved["protocols"]


def test_a_stale_or_damaged_file_says_how_to_regenerate(tmp_path):
    results = {"presets": {"cifar100": results_file.preset_record("cifar100")}, "models": {}, "summary": {},
               "protocols": {}, "provenance": {}}
    results_file.write(tmp_path / modelset500.RESULTS_FILE, results)
    assert modelset500.committed(tmp_path)["presets"]["cifar100"]["hash"]
    results["presets"]["cifar100"]["hash"] = "0" * 16
    results_file.write(tmp_path / modelset500.RESULTS_FILE, results)
    with pytest.raises(LpsbookError, match="stale.*lpsbook experiment modelset500"):
        modelset500.committed(tmp_path)
    (tmp_path / modelset500.RESULTS_FILE).write_text("{not json")
    with pytest.raises(LpsbookError, match="damaged"):
        modelset500.read(tmp_path)
    assert modelset500.committed(tmp_path / "nothing") is None


def test_the_committed_file_is_not_stale():
    """results/modelset500.json, once committed, still describes the cifar100 preset in the code."""
    results = modelset500.committed()
    if results is None:
        pytest.skip("results/modelset500.json is not built yet")
    assert len(results["models"]["task_id"]) == results["presets"]["cifar100"]["models"]


def test_unknown_steps_are_refused(tmp_path):
    with pytest.raises(LpsbookError, match="unknown step"):
        modelset500.run(tmp_path, preset="tiny", steps=("nope",))


def test_cli_modelset500(tiny_modelset_dir, tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(modelset500, "run", lambda out, **kw: seen.update(out=out, **kw))
    assert cli.main(["experiment", "modelset500", "--out", str(tmp_path), "--modelset", "somewhere",
                     "--device", "cpu"]) in (0, None)
    assert seen["modelset"] == "somewhere" and seen["device"] == "cpu"
    assert cli.main(["experiment", "modelset500", "--out", str(tmp_path), "--only", "x"]) == 2
    assert "--only is for the ladder" in capsys.readouterr().err


def test_the_book_schedule_step_trains_lps_with_that_schedule(tiny_modelset):
    settings = modelset500._settings("classification_lps_book", modelset500.TABLE_METHODS)
    kwargs = paper.arguments("classification", tiny_modelset, settings, "cpu")
    assert kwargs["config"] == modelset500.BOOK_LPS and kwargs["methods"] == ("lps",) and kwargs["folds"] == 5


def test_transfer_steps_keep_every_target_and_the_references(tiny_modelset_dir, tmp_path):
    """Transferability runs on every task fold (each task a target once) with the references (LEEP, LogME)
    on the same folds; the transfer scores are kept in the file, so a resumed run does not recompute them."""
    out = modelset500.run(tmp_path, modelset=tiny_modelset_dir, preset="tiny", device="cpu",
                          steps=("transferability", "references"), methods=CHEAP, progress=False)
    tasks = len(get_preset("tiny").tasks)
    assert set(out["transfer_scores"]) == {"ari", "leep", "logme"}
    for step, rows in (("transferability", "lps"), ("references", "leep")):
        folds = out["protocols"][step]["per_target"][rows]
        assert len(folds) == out["protocols"][step]["settings"]["seeds"] == min(modelset500.FOLDS, tasks)
        assert sorted(t for f in folds for t in f["task"]) == list(range(tasks))  # every task a target once
    pairs = out["protocols"]["transferability"]["related_pairs"]["lps"]  # every held-out ordered pair, per fold
    per_target = out["protocols"]["transferability"]["per_target"]["lps"]
    assert [len(p["source"]) for p in pairs] == [len(f["task"]) * (len(f["task"]) - 1) for f in per_target]
    assert all(s != t for p in pairs for s, t in zip(p["source"], p["target"]))
