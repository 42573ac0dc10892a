"""The recipe ladder: presets made from the paper's, rungs taken from the 50-task set, a results file
that says when it is stale."""
import json

import numpy as np

import pytest
import torch

from lpsbook import cli
from lpsbook.experiments import ladder, reports, results_file, sets
from lpsbook.training import modelset as msets
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import LADDER, PRESETS, get_preset, paper_recipe

REPO_RESULTS = ladder.Path(__file__).resolve().parents[1] / "results" / ladder.RESULTS_FILE


def test_rungs_change_only_width_and_epochs():
    paper = get_preset("cifar100")
    for (width, epochs), name in LADDER.items():
        p = get_preset(name)
        assert (p.width, p.epochs) == (width, epochs)
        assert p.milestones == (epochs / 2, 3 * epochs / 4), "lr / 10 at 1/2 and 3/4 of training"
        assert p.tasks == paper.tasks[::5] and p.task_numbers == tuple(range(0, 50, 5))
        same = {k for k in ("batch_size", "lr", "momentum", "weight_decay", "crop_padding", "flip", "seeds", "dataset")
                if getattr(p, k) == getattr(paper, k)}
        assert len(same) == 8 and p.cpu_bf16
    full = get_preset(ladder.FULL_SET)
    assert (full.width, full.epochs, full.tasks, full.task_numbers) == (16, 40, paper.tasks, ())
    assert get_preset("ladder-w16-e160").with_(tasks=paper.tasks, task_numbers=(), name="cifar100") == paper
    # one function makes them: the same call gives the same hash, another width another one
    assert paper_recipe(full.name, 16, 40).hash == full.hash != paper_recipe(full.name, 8, 40).hash


def test_existing_presets_keep_their_hash():
    """task_numbers is hashed only when set: the book's model sets (and their stored outputs) stay valid."""
    d = PRESETS["cifar100-small"].to_dict()
    assert d["task_numbers"] == [] and PRESETS["cifar100-small"].with_(task_numbers=(1,)).hash != PRESETS[
        "cifar100-small"].hash
    assert msets.Preset.from_dict({k: v for k, v in d.items() if k != "task_numbers"}) == PRESETS["cifar100-small"]


def _part(full, every=2):
    numbers = tuple(range(0, len(full.tasks), every))
    return full.with_(name="part", tasks=tuple(full.tasks[i] for i in numbers), task_numbers=numbers, pack_size_cpu=2)


def test_a_rung_holds_the_larger_sets_models(tmp_path):
    """Models of a few tasks seeded as in the larger set are its models: extracting them equals training them."""
    full = get_preset("tiny").with_(epochs=1)
    part = _part(full)
    msets.build(full, tmp_path / "full", device="cpu", progress=False)
    msets.build(part, tmp_path / "trained", device="cpu", progress=False)
    msets.extract(tmp_path / "full", part, tmp_path / "extracted")
    trained, extracted = msets.load(tmp_path / "trained"), msets.load(tmp_path / "extracted")  # checksums verified
    assert list(extracted.meta.task_id) == list(trained.meta.task_id) and len(extracted) == part.num_models
    for k in trained.state:
        torch.testing.assert_close(extracted.state[k], trained.state[k], rtol=1e-4, atol=1e-5)
    assert set(extracted.meta.copied_from) == {f"{full.name}-{full.hash}"}
    msets.extract(tmp_path / "full", part, tmp_path / "extracted")  # again: nothing to do, nothing broken
    msets.verify(tmp_path / "extracted")
    # the other way: a larger set started from the part built first trains only the other tasks
    msets.extract(tmp_path / "trained", full, tmp_path / "grown")
    assert len(msets.pending_models(tmp_path / "grown", full)) == full.num_models - part.num_models
    msets.build(full, tmp_path / "grown", device="cpu", progress=False)
    grown, first = msets.load(tmp_path / "grown"), msets.load(tmp_path / "full")
    for k in first.state:
        torch.testing.assert_close(grown.state[k], first.state[k], rtol=1e-4, atol=1e-5)


def test_extract_refuses_another_recipe(tmp_path):
    full = get_preset("tiny").with_(epochs=1)
    msets.build(full, tmp_path / "full", device="cpu", progress=False)
    with pytest.raises(LpsbookError, match="not the same recipe"):
        msets.extract(tmp_path / "full", _part(full).with_(epochs=2), tmp_path / "x")
    unseeded = _part(full).with_(task_numbers=())  # the same tasks, seeded by their new positions: other models
    msets.extract(tmp_path / "full", unseeded, tmp_path / "y")
    assert len(msets.pending_models(tmp_path / "y", unseeded)) == unseeded.num_models - unseeded.seeds, \
        "only task 0 (number 0 in both) is shared"


def test_stale_names_the_changed_preset(monkeypatch):
    results = {"presets": {n: results_file.preset_record(n) for n in ladder.ORDER}}
    assert results_file.stale(results) == []
    monkeypatch.setitem(PRESETS, "ladder-w8-e10", get_preset("ladder-w8-e10").with_(lr=0.05))
    problems = results_file.stale(results)
    assert len(problems) == 1 and "ladder-w8-e10" in problems[0] and "changed" in problems[0]
    monkeypatch.delitem(PRESETS, "ladder-w8-e10")
    assert "no longer in the code" in results_file.stale(results)[0]


def test_damaged_results_file_is_a_clear_error(tmp_path):
    (tmp_path / ladder.RESULTS_FILE).write_text('{"presets": {"trunc')
    with pytest.raises(LpsbookError, match="damaged"):
        ladder.read(tmp_path)
    with pytest.raises(LpsbookError, match="lpsbook experiment ladder"):
        ladder.read(tmp_path / "nothing.json")


def test_committed_results_match_the_presets():
    """results/ladder.json is computed from the presets in the code; a changed preset makes it stale."""
    results = ladder.read(REPO_RESULTS)
    problems = results_file.stale(results)
    assert not problems, f"{REPO_RESULTS} is stale: {'; '.join(problems)}. Regenerate it: {ladder.COMMAND}"
    prov = results["provenance"]
    assert prov["code_version"] and prov["cpu"] and prov["torch"] and prov["command"].startswith("lpsbook experiment")
    assert results["sets"], "the file holds at least one finished model set"
    summary, found = reports.build_summary(results), reports.ladder_findings(results)
    assert summary["sets"] == len(results["sets"]) and summary["hours"] > 0 and summary["first_date"] <= summary["last_date"]
    assert found["first"].startswith("width") and found["level"] in ("holds", "does not hold", "cannot tell", "not measured yet")
    for name, entry in results["sets"].items():
        assert entry["summary"]["models"] == get_preset(name).num_models
        if name != ladder.FULL_SET:
            assert {"lps", ladder.PAPER_LPS, "random", "weight_stats"} <= set(entry["classification"])
        if ladder.on_folds(entry):  # every model tested once, every mean recomputable from the kept predictions
            for m, folds in entry["predictions"].items():
                rows = np.concatenate([f["rows"] for f in folds])
                assert sorted(rows.tolist()) == list(range(get_preset(name).num_models)), (name, m)
                acc = [np.mean(np.asarray(f["rank"]) == 0) for f in folds]
                assert abs(np.mean(acc) - entry["classification"][m]["top1"]["mean"]) < 1e-6, (name, m)


def test_cli_ladder_errors(tmp_path, capsys):
    assert cli.main(["experiment", "ladder", "--out", str(tmp_path), "--only", "ladder-w8-e10,nonsense"]) == 2
    assert "unknown set(s) nonsense" in capsys.readouterr().err
    assert cli.main(["experiment", "classification", "--out", str(tmp_path / "x.json")]) == 2
    assert "needs --modelset" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert cli.main(["experiment", "ladder", "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_run_keeps_finished_sets_and_writes_provenance(tmp_path, monkeypatch):
    """A second run does not recompute a set the file already holds for the same preset."""
    calls = []
    devices = []
    monkeypatch.setattr(sets, "ensure_set", lambda name, progress=True, device="auto", data_dir=None, ray=None:
                        devices.append(device) or calls.append(name) or _FakeSet(name))
    monkeypatch.setattr(sets, "set_summary", lambda ms: {"models": ms.preset.num_models})
    monkeypatch.setattr(ladder, "rung_classification", lambda p, data_dir=None: {
        "classification": {"lps": {"top1": {"mean": 0.5}}}, "predictions": {"lps": []}})
    monkeypatch.setattr(ladder, "save_conv1", lambda ms, out: calls.append(f"conv1 {ms.preset.name}"))
    ladder.run(tmp_path, ["ladder-w8-e10"], command="test")
    first = json.loads((tmp_path / ladder.RESULTS_FILE).read_text())
    assert calls == ["ladder-w8-e10", "conv1 ladder-w8-e10"] and first["sets"]["ladder-w8-e10"]["classification"]["lps"]
    assert first["presets"]["ladder-w8-e10"]["hash"] == get_preset("ladder-w8-e10").hash
    assert first["provenance"]["command"] == "test"
    ladder.run(tmp_path, ["ladder-w8-e10", "ladder-w16-e10"], command="test")
    assert calls[2:] == ["ladder-w16-e10", "conv1 ladder-w16-e10"], "the finished set was kept, only the new one ran"
    assert devices == ["auto", "auto"]
    ladder.run(tmp_path / "again", ["ladder-w8-e10"], command="test", device="cuda")
    assert devices[-1] == "cuda", "the device reaches the build"
    # a rung measured before the folds (no predictions) is measured again, the others kept
    kept = json.loads((tmp_path / ladder.RESULTS_FILE).read_text())
    del kept["sets"]["ladder-w16-e10"]["predictions"]
    (tmp_path / ladder.RESULTS_FILE).write_text(json.dumps(kept))
    ladder.run(tmp_path, ["ladder-w8-e10", "ladder-w16-e10"], command="test")
    assert calls[-2:] == ["ladder-w16-e10", "conv1 ladder-w16-e10"] and calls.count("ladder-w8-e10") == 2
    assert ladder.on_folds(json.loads((tmp_path / ladder.RESULTS_FILE).read_text())["sets"]["ladder-w16-e10"])


def test_the_float32_check_is_measured_again_with_the_top_rung(tmp_path, monkeypatch):
    """The check compares the top rung's models: kept while the rung is kept, measured again when it is."""
    checks = []
    monkeypatch.setattr(sets, "ensure_set", lambda name, progress=True, device="auto", data_dir=None, ray=None:
                        _FakeSet(name))
    monkeypatch.setattr(sets, "set_summary", lambda ms: {"models": ms.preset.num_models})
    monkeypatch.setattr(ladder, "rung_classification", lambda p, data_dir=None: {
        "classification": {"lps": {"top1": {"mean": 0.5}}}, "predictions": {"lps": []}})
    monkeypatch.setattr(ladder, "save_conv1", lambda ms, out: None)
    monkeypatch.setattr(ladder, "float32_check", lambda p, data_dir=None: checks.append(p.name) or [{"run": len(checks)}])
    top, path = ladder.ORDER[-1], tmp_path / ladder.RESULTS_FILE
    ladder.run(tmp_path, [top], command="test")
    ladder.run(tmp_path, [top], command="test")
    assert checks == [top] and json.loads(path.read_text())["float32"] == [{"run": 1}], "kept with the rung"
    kept = json.loads(path.read_text())
    del kept["sets"][top]["predictions"]  # the rung measured again (as when it is rebuilt on folds)
    path.write_text(json.dumps(kept))
    ladder.run(tmp_path, [top], command="test")
    assert checks == [top, top] and json.loads(path.read_text())["float32"] == [{"run": 2}]


def test_float32_check_needs_only_its_models_and_names_them(tiny_modelset_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LPSBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(msets, "cache_dir", lambda p: tiny_modelset_dir)
    trained = []
    real = ladder.train_pack
    monkeypatch.setattr(ladder, "train_pack", lambda *a, **k: trained.append(a[2]) or real(*a, **k))
    rows = ladder.float32_check(get_preset("tiny"), jobs=((1, 0),))
    meta = json.loads((tiny_modelset_dir / "models" / "t001_s00.json").read_text())
    assert len(rows) == 1 and rows[0]["weights_sha256"] == meta["weights_sha256"]
    assert rows[0]["test_acc_as_built"] == pytest.approx(meta["test_acc"]) and 0 <= rows[0]["test_acc_float32"] <= 1
    assert ladder.float32_check(get_preset("tiny"), jobs=((1, 0),)) == rows and len(trained) == 1, "served from the cache"
    with pytest.raises(LpsbookError, match="not built yet"):
        ladder.float32_check(get_preset("tiny"), jobs=((99, 0),))


def test_cli_ladder_passes_the_device_and_ray(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(ladder, "run", lambda out, names, device="auto", data_dir=None, ray=None:
                        seen.update(names=names, device=device, ray=ray))
    assert cli.main(["experiment", "ladder", "--out", str(tmp_path), "--only", "ladder-w8-e10", "--device", "cpu"]) == 0
    assert seen == {"names": ["ladder-w8-e10"], "device": "cpu", "ray": None}
    argv = ["experiment", "ladder", "--out", str(tmp_path), "--only", "ladder-w8-e10", "--ray", "auto", "--ray-cpus", "2"]
    assert cli.main(argv) == 0
    assert (seen["ray"].address, seen["ray"].cpus, seen["ray"].gpus) == ("auto", 2, 0.0)
    assert cli.main(argv[:-4] + ["--ray"]) == 0 and seen["ray"].address is None  # alone: a local instance
    assert cli.main(["experiment", "classification", "--modelset", str(tmp_path), "--out", "x.json", "--ray"]) == 2


class _FakeSet:
    def __init__(self, name):
        self.preset = get_preset(name)


def _result(ids, value):
    return {"results": {m: {"top1": {"mean": value, "std": 0.01}} for m in ids}, "preset": "cifar100-small"}


def test_full_table_beside_the_paper_and_the_book():
    results = {"tables": {}}
    assert reports.full_table(results) is None, "nothing to show before the 50-task set is built"
    results["tables"] = {"classification": {m: {"top1": {"mean": 0.5, "std": 0.02}} for m in ladder.TABLE_METHODS}}
    table = reports.full_table(results, book_set=_result(ladder.TABLE_METHODS[:4], 0.25))
    assert list(table.columns) == ["paper", "50 tasks, width 16, 40 epochs", "cifar100-small (this book)"]
    assert table.loc["LPS", "paper"] == "79.8" and table.loc["LPS", "50 tasks, width 16, 40 epochs"] == "50.0\u00a0±\u00a02.0"
    assert table.loc["weight statistics", "paper"] == "—" and table.loc["LPS", "cifar100-small (this book)"] == "25.0\u00a0±\u00a01.0"
    assert len(table) == len(ladder.TABLE_METHODS)


def _spread_rung(lps, ws, probing, sd=0.02):
    """A rung as files written before the folds keep it: means and sds over three random splits."""
    cls = {m: {"top1": {"mean": 0.1, "std": sd}, "top5": {"mean": 0.5, "std": sd}} for m in reports.CURVE_METHODS}
    cls["lps"]["top1"]["mean"], cls["weight_stats"]["top1"]["mean"] = lps, ws
    cls["probing"]["top1"]["mean"] = probing
    return {"classification": cls}


def _fold_rung(accuracy: dict, tasks=10, seeds=10, folds=5):
    """A rung measured on folds: every model tested once; ``accuracy[method]`` of them classified right
    (each method misses its hardest models first, in an order of its own, the same on every rung)."""
    rows = np.arange(tasks * seeds)
    cls, predictions = {}, {}
    for i, m in enumerate(reports.CURVE_METHODS):
        hard = np.random.default_rng(i).permutation(len(rows))
        right = hard >= len(rows) * (1 - accuracy.get(m, 0.1))
        rank = np.where(right, 0, 3)
        predictions[m] = [{"rows": rows[rows % seeds // 2 == f].tolist(), "task": (rows[rows % seeds // 2 == f] // seeds).tolist(),
                           "rank": rank[rows % seeds // 2 == f].tolist()} for f in range(folds)]
        cls[m] = {"top1": {"mean": float(right.mean()), "std": 0.0}, "top5": {"mean": 1.0, "std": 0.0}}
    return {"classification": cls, "predictions": predictions}


def _verdicts(results):
    return {r["key"]: r for r in reports.ladder_verdicts(results)}


def test_verdicts_from_spreads_in_older_files():
    presets = {n: results_file.preset_record(n) for n in ladder.ORDER}
    results = {"order": list(ladder.ORDER), "presets": presets, "tables": {},
               "sets": {"ladder-w16-e10": _spread_rung(0.4, 0.3, 0.3)}}
    v = {k: r["verdict"] for k, r in _verdicts(results).items()}
    assert v == {"level": "not measured yet", "gain": "not measured yet", "pull": "holds"}
    results["sets"]["ladder-w16-e40"] = _spread_rung(0.45, 0.5, 0.3)  # +5 points > sd 2: gains; weight stats lead
    v = _verdicts(results)
    assert v["gain"]["verdict"] == "holds" and v["pull"]["verdict"] == "does not hold" and "sd" in v["pull"]["rule"]
    results["sets"]["ladder-w16-e40"] = _spread_rung(0.41, 0.3, 0.3)  # +1 point < sd 2: within the spread
    assert _verdicts(results)["gain"]["verdict"] == "cannot tell"
    results["sets"]["ladder-w16-e40"] = _spread_rung(0.35, 0.3, 0.3)  # -5 points: training lost more than the spread
    assert _verdicts(results)["gain"]["verdict"] == "does not hold"
    results["tables"] = {"classification": {"lps": {"top1": {"mean": 0.78, "std": 0.03}}}}
    results["sets"][ladder.FULL_SET] = {"summary": {}}
    assert _verdicts(results)["level"]["verdict"] == "cannot tell", "78 - 79.8 is within the sd of 3"
    results["tables"]["classification"]["lps"]["top1"] = {"mean": 0.70, "std": 0.03}
    first = _verdicts(results)["level"]
    assert first["verdict"] == "does not hold" and "sd" in first["rule"], "70 + 3 < 79.8"


def test_verdicts_on_folds_are_paired_and_say_which_protocol():
    presets = {n: results_file.preset_record(n) for n in ladder.ORDER}
    results = {"order": list(ladder.ORDER), "presets": presets, "tables": {},
               "sets": {"ladder-w16-e10": _fold_rung({"lps": 0.5, "weight_stats": 0.3, "probing": 0.2}),
                        "ladder-w16-e40": _fold_rung({"lps": 0.9, "weight_stats": 0.3, "probing": 0.85})}}
    v = _verdicts(results)
    assert v["gain"]["verdict"] == "holds" and "paired" in v["gain"]["rule"] and "10 -> 40 epochs" in v["gain"]["question"]
    assert v["pull"]["verdict"] == "cannot tell", "LPS 90 against probing 85 on 100 models: the interval straddles 0"
    assert "interval" in v["pull"]["rule"] and "pull_top" not in v
    results["sets"]["ladder-w16-e40"] = _fold_rung({"lps": 0.5, "weight_stats": 0.3, "probing": 0.2})
    assert _verdicts(results)["gain"]["verdict"] == "cannot tell", "the same predictions: a difference of exactly 0"
    results["sets"]["ladder-w16-e40"] = _fold_rung({"lps": 0.2, "weight_stats": 0.6, "probing": 0.2})
    v = _verdicts(results)
    assert v["gain"]["verdict"] == "does not hold" and v["pull"]["verdict"] == "does not hold"
    # a longer rung measured on random splits only: judged apart, by the spread rule, and labelled
    results["sets"]["ladder-w16-e160"] = _spread_rung(0.8, 0.5, 0.4)
    v = _verdicts(results)
    assert v["pull_top"]["verdict"] == "holds" and "sd" in v["pull_top"]["rule"] and "160 epochs" in v["pull_top"]["question"]
    assert v["gain"]["question"].endswith("10 -> 40 epochs)"), "the gain compares rungs on folds only"
    # rungs of width 8 on folds, of width 16 on random splits: a gain of each kind, never one across protocols
    mixed = {**results, "sets": {"ladder-w8-e10": _fold_rung({"lps": 0.5}), "ladder-w8-e40": _fold_rung({"lps": 0.7}),
                                 "ladder-w16-e10": _spread_rung(0.4, 0.3, 0.3), "ladder-w16-e160": _spread_rung(0.8, 0.3, 0.3)}}
    v = _verdicts(mixed)
    assert "width 8, 10 -> 40 epochs" in v["gain"]["question"] and "interval" in v["gain"]["rule"]
    assert "width 16, 10 -> 160 epochs" in v["gain_top"]["question"] and "sd" in v["gain_top"]["rule"]
    curve = reports.curve(results)
    assert set(curve.protocol) == {reports.FOLDS_NOTE, reports.SPLITS_NOTE}
    on_folds = curve[curve.protocol == reports.FOLDS_NOTE]
    assert ((on_folds.low <= on_folds.top1) & (on_folds.top1 <= on_folds.high)).all()
    table = reports.methods_table(results)
    assert table.loc["protocol"].tolist() == [reports.FOLDS_NOTE, reports.FOLDS_NOTE, reports.SPLITS_NOTE]
    assert "[" in table.loc["LPS", "width 16, 10 epochs"] and "±" in table.loc["LPS", "width 16, 160 epochs"]
    lines = reports.verdict_lines(results).split("\n")
    assert len(lines) == len(reports.ladder_verdicts(results)) and all(line.startswith("* ") for line in lines)
    assert "(paired 95 % interval, 5 folds)" in lines[1] and lines[-1].endswith("(spread rule, 3 random splits).")
    found = reports.ladder_findings(results)
    assert "5 folds" in found["first_lps_cell"] and "3 random splits" in found["last_lps_cell"]
    assert found["first_lps_low"] < found["first_lps"] < found["first_lps_high"] and abs(found["first_lps"] - 50) < 1e-9


def test_rungs_on_other_models_are_not_paired():
    a = _fold_rung({"lps": 0.5})
    b = _fold_rung({"lps": 0.5}, tasks=11)
    with pytest.raises(LpsbookError, match="same tasks and seeds"):
        reports.across_rungs(a, b)


def test_committed_first_layers_give_the_files_movement():
    """Every set in the committed file has its first conv layers committed beside it, and conv1's movement
    recomputed from them (initialisations re-created from the recorded seeds) is the file's number."""
    check = ladder.movement_check(ladder.committed())
    assert set(check) == set(ladder.committed()["sets"]) and check
    for name, (recorded, recomputed) in check.items():
        assert recomputed == pytest.approx(recorded, rel=1e-6), name


def test_conv1_file_round_trip_and_damage(tiny_modelset, tmp_path):
    from lpsbook.findings.analyses import weight_movement

    path = ladder.save_conv1(tiny_modelset, tmp_path)
    recorded = weight_movement(tiny_modelset)["mean"][tiny_modelset.layers[0]]
    assert ladder.conv1_movement("tiny", tmp_path) == pytest.approx(recorded, rel=1e-9)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(LpsbookError, match="damaged"):
        ladder.conv1_movement("tiny", tmp_path)


def test_full_findings_name_the_best_rival_and_apply_the_margin():
    presets = {n: results_file.preset_record(n) for n in ladder.ORDER}
    results = {"presets": presets, "tables": {}}
    assert reports.full_findings(results) is None
    assert "not built yet" in reports.full_sentence(results) and ladder.COMMAND in reports.full_sentence(results)

    def tables(lps, ws, probing, graph, sd=0.02):
        cls = {m: {"top1": {"mean": v, "std": sd}} for m, v in
               (("lps", lps), ("weight_stats", ws), ("probing", probing), ("graph", graph))}
        return {"classification": cls, "retrieval": {"lps": {"rank1": {"mean": 0.6, "std": sd}}}}

    results["tables"] = tables(0.40, 0.50, 0.30, 0.20)
    f = reports.full_findings(results)
    assert f["chance"] == pytest.approx(2.0) and f["lps"] == pytest.approx(40) and f["lps_rank1"] == pytest.approx(60)
    assert f["rival"] == "weight_stats" and f["lps_trails"] and not f["lps_leads"] and f["difference"] is None
    assert "below it by more than the spread" in reports.full_sentence(results)
    results["tables"] = tables(0.40, 0.30, 0.39, 0.20)  # 1 point ahead of probing, sd 2: level
    f = reports.full_findings(results)
    assert f["rival"] == "probing" and "three random splits" in reports.full_protocol(results)
    assert not f["lps_leads"] and not f["lps_trails"] and "level with it" in reports.full_sentence(results)
    results["tables"] = tables(0.60, 0.30, 0.39, 0.45)
    assert reports.full_findings(results)["lps_leads"] and "above it by more" in reports.full_sentence(results)
    assert "79.8" in reports.full_sentence(results) and "80.7" in reports.full_sentence(results)


def test_full_tables_caption_both_and_add_the_books_column_on_cifar(monkeypatch):
    assert reports.full_tables({"tables": {}}) == (None, None)
    per = {"top1": {"mean": 0.5, "std": 0.02}, "rank1": {"mean": 0.6, "std": 0.02}}
    results = {"tables": {p: {m: per for m in ladder.TABLE_METHODS} for p in ("classification", "retrieval")}}
    book_tables = (_result(["lps"], 0.25), {"results": {"lps": {"rank1": {"mean": 0.3, "std": 0.01}}},
                                            "preset": "cifar100-small"})
    monkeypatch.setattr(ladder.book, "with_whole_network", lambda: book_tables + ("transfer",))
    for dataset, columns in (("digits", 2), ("cifar100", 3)):
        monkeypatch.setattr(ladder.book, "current_preset", lambda: type("P", (), {"dataset": dataset})())
        t1, t2 = reports.full_tables(results)
        assert "Table 1" in t1.caption and "Table 2" in t2.caption
        assert t1.data.shape == (len(ladder.TABLE_METHODS), columns) and t2.data.shape == t1.data.shape
    assert t2.data.loc["LPS"].tolist() == ["80.7", "60.0\u00a0±\u00a02.0", "30.0\u00a0±\u00a01.0"], "rank-1 beside the paper's"


def test_float32_check_table_and_sentence():
    results = {"float32": [], "sets": {}}
    assert reports.float32_table(results) is None
    assert "Not measured yet" in reports.float32_sentence(results) and ladder.COMMAND in reports.float32_sentence(results)
    results["float32"] = [{"task_id": 0, "seed": 0, "test_acc_as_built": 0.90, "test_acc_float32": 0.92,
                           "float32_seconds": 300.0},
                          {"task_id": 1, "seed": 0, "test_acc_as_built": 0.85, "test_acc_float32": 0.80,
                           "float32_seconds": 310.0}]
    results["sets"][ladder.ORDER[-1]] = {"summary": {"build": {"precision": ["bf16"]}}}
    t = reports.float32_table(results)
    assert list(t.index) == ["task 0, seed 0", "task 1, seed 0"]
    assert t["difference (points)"].tolist() == pytest.approx([2.0, -5.0])
    sentence = reports.float32_sentence(results)
    assert "2 models" in sentence and "bf16" in sentence and "3.5 points" in sentence and "at most 5.0" in sentence


def test_training_time_leaves_out_pauses_and_copied_models(tiny_modelset):
    import copy

    build = sets.set_summary(tiny_modelset)["build"]
    n = len(tiny_modelset.meta)
    assert build["copied"] == 0 and build["training_seconds"] == pytest.approx(n * build["median_model_seconds"])
    paused = copy.copy(tiny_modelset)
    paused.meta = tiny_modelset.meta.copy()
    paused.meta.loc[paused.meta.index[0], "train_seconds"] += 3600.0  # a model in flight while the build was stopped
    paused.meta["copied_from"] = [None] * (n - 1) + ["another-set"]
    b = sets.set_summary(paused)["build"]
    assert b["train_seconds"] == pytest.approx(build["train_seconds"] + 3600)
    assert b["copied"] == 1 and b["training_seconds"] < build["train_seconds"] + 60, "the pause is not training"
    assert reports.training_seconds({"build": b}) == b["training_seconds"]
    assert reports.training_seconds({"build": {"train_seconds": 7.0}}) == 7.0, "files that predate the field"


def test_training_time_divides_by_the_packs_trained_side_by_side(tiny_modelset):
    import copy

    assert "workers" in tiny_modelset.meta and (tiny_modelset.meta.workers >= 1).all(), "a build records its workers"
    alone = copy.copy(tiny_modelset)
    alone.meta = tiny_modelset.meta.assign(workers=1)
    two = copy.copy(tiny_modelset)
    two.meta = tiny_modelset.meta.assign(workers=2)
    a, b = (sets.set_summary(s)["build"] for s in (alone, two))
    assert b["median_model_seconds"] == pytest.approx(a["median_model_seconds"] / 2)
    assert b["training_seconds"] == pytest.approx(a["training_seconds"] / 2) and b["workers"] == ["2"]
    old = copy.copy(tiny_modelset)
    old.meta = tiny_modelset.meta.drop(columns="workers")
    assert sets.set_summary(old)["build"]["median_model_seconds"] == pytest.approx(a["median_model_seconds"]), (
        "models that predate the field trained one pack at a time")


def test_a_ray_build_counts_the_packs_its_cluster_runs_at_once():
    from lpsbook.training.distributed import side_by_side

    assert side_by_side({"CPU": 8.0}, packs=50, cpus=2, gpus=0) == 4, "eight CPUs, two per pack"
    assert side_by_side({"CPU": 8.0}, packs=3, cpus=1, gpus=0) == 3, "never more than there are packs"
    assert side_by_side({"CPU": 16.0, "GPU": 1.0}, packs=50, cpus=1, gpus=0.25) == 4, "four packs share the GPU"
    assert side_by_side({"CPU": 1.0}, packs=5, cpus=2, gpus=0) == 1, "at least one"


def test_run_refreshes_an_old_summary_from_the_cached_set(tiny_modelset_dir, monkeypatch):
    monkeypatch.setattr(sets.msets, "cache_dir", lambda p: tiny_modelset_dir)
    entry = {"summary": {"models": 1, "build": {"train_seconds": 1.0}}}
    assert ladder._refresh_summary("tiny", entry)
    assert "training_seconds" in entry["summary"]["build"] and entry["summary"]["models"] > 1
    assert not ladder._refresh_summary("tiny", entry), "a summary that has the field is kept"
    monkeypatch.setattr(sets.msets, "cache_dir", lambda p: tiny_modelset_dir.parent / "not-built")
    assert not ladder._refresh_summary("tiny", {"summary": {"build": {"train_seconds": 1.0}}})


def test_state_sentence_names_what_is_left_and_the_modelset500_estimate():
    results = ladder.committed()
    done = reports.ladder_state_sentence(results)
    assert "Every set" in done and "ModelSet500" in done
    sec = results["sets"][ladder.ORDER[-1]]["summary"]["build"]["median_model_seconds"]
    assert f"about {500 * sec / 3600:.0f} hours" in done
    partial = {**results, "sets": {n: v for n, v in results["sets"].items() if n != ladder.ORDER[-1]}}
    left = reports.ladder_state_sentence(partial)
    assert f"`{ladder.ORDER[-1]}`" in left and "ModelSet500" not in left


def test_cli_ladder_passes_the_data_folder_down(tmp_path, monkeypatch):
    """--data-dir reaches the build as an argument; the environment is left as it was."""
    import os

    seen = {}
    monkeypatch.setattr(ladder, "run", lambda out, names, device="auto", data_dir=None, ray=None: seen.update(data_dir=data_dir))
    before = os.environ.get("LPSBOOK_DATA")
    assert cli.main(["experiment", "ladder", "--out", str(tmp_path), "--only", "ladder-w8-e10",
                     "--data-dir", str(tmp_path)]) in (0, None)
    assert seen["data_dir"] == str(tmp_path) and os.environ.get("LPSBOOK_DATA") == before


def test_a_50_task_set_measured_on_folds_shows_intervals_and_is_judged_on_them():
    presets = {n: results_file.preset_record(n) for n in ladder.ORDER}
    kept = _fold_rung({"lps": 0.6, "weight_stats": 0.3}, tasks=50)
    results = {"order": list(ladder.ORDER), "presets": presets, "sets": {ladder.FULL_SET: {"summary": {}}},
               "tables": {"classification": kept["classification"], "predictions": {"classification": kept["predictions"]}}}
    table = reports.full_table(results)
    assert "[" in table.loc["LPS", "50 tasks, width 16, 40 epochs"] and reports.full_note(results).endswith("5 folds")
    level = _verdicts(results)["level"]
    assert level["verdict"] == "does not hold" and "interval" in level["rule"], "60 % against 79.8 %: below"


def _retrieval(hits: dict, tasks=50, seeds=10, folds=5):
    """Retrieval on folds over tasks: every model a query once; ``hits[method]`` of them find their task first."""
    rows = np.arange(tasks * seeds)
    out = {}
    for m, share in hits.items():
        first = np.where(np.random.default_rng(7).random(len(rows)) < share, 0, 4)
        pick = [rows // seeds % folds == f for f in range(folds)]
        out[m] = [{"rows": rows[k].tolist(), "task": (rows[k] // seeds).tolist(), "first_hit": first[k].tolist(),
                   "ap": [0.5] * int(k.sum())} for k in pick]
    return out


@pytest.mark.parametrize("ws, outcome", [(0.3, "ahead of it"), (0.58, "not told apart"), (0.9, "behind it")])
def test_the_50_task_findings_on_folds_compare_lps_with_its_best_rival_paired(ws, outcome):
    kept = _fold_rung({"lps": 0.6, "weight_stats": ws, "probing": 0.2, "graph": 0.1}, tasks=50)
    results = {"presets": {n: results_file.preset_record(n) for n in ladder.ORDER},
               "tables": {"classification": kept["classification"], "retrieval": {"lps": {}},
                          "predictions": {"classification": kept["predictions"],
                                          "retrieval": _retrieval({"lps": 0.7})}}}
    f = reports.full_findings(results)
    assert f["rival"] == "weight_stats" and f["lps"] == pytest.approx(60)
    assert f["lps_low"] < 60 and 60 < f["lps_rank1"] < 80, "LPS's interval and rank-1 from the kept predictions"
    assert "[" in f["rank1_cell"] and "[" in f["difference"] and "interval" in f["rule"]
    sentence = reports.full_sentence(results)
    assert f"is {outcome}" in sentence and "weight statistics" in sentence and "79.8" in sentence
    assert "five folds" in reports.full_protocol(results) and "79.8" in reports.full_protocol(results)
