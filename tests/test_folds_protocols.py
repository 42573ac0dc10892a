"""Classification and retrieval by folds: every model tested once, every prediction kept, every number
recomputable from the kept predictions."""
import numpy as np

from lpsbook.protocols import paper, results, statistics


def _concat(per_fold, key):
    return np.concatenate([np.asarray(f[key]) for f in per_fold])


def test_classification_by_folds_tests_every_model_once_and_keeps_its_prediction(tiny_modelset):
    ms = tiny_modelset
    res = paper.classification(ms, methods=("random", "filter_norms"), folds=5)
    assert res["settings"]["folds"] == 5 and res["settings"]["seeds"] == 3  # three models a task: three folds
    for method in ("random", "filter_norms"):
        per_fold = res["predictions"][method]
        rows = _concat(per_fold, "rows")
        assert sorted(rows.tolist()) == list(range(len(ms)))  # every model exactly once
        rank, top1 = _concat(per_fold, "rank"), _concat(per_fold, "top1")
        truth = ms.task_ids.numpy()[rows]
        assert np.array_equal(rank == 0, top1 == truth) or method == "random"  # ties only break the random one
        # the reported mean over folds is the mean of the folds' accuracies from the kept ranks
        fold_acc = [np.mean(np.asarray(f["rank"]) == 0) for f in per_fold]
        assert np.isclose(res.mean(method, "top1"), np.mean(fold_acc))
        top5 = [np.mean(np.asarray(f["rank"]) < 5) for f in per_fold]
        assert np.isclose(res.mean(method, "top5"), np.mean(top5))
    # a paired interval straight from the kept predictions
    a = (_concat(res["predictions"]["filter_norms"], "rank") == 0).astype(float)
    b = (_concat(res["predictions"]["random"], "rank") == 0).astype(float)
    rows = _concat(res["predictions"]["filter_norms"], "rows")
    assert np.array_equal(rows, _concat(res["predictions"]["random"], "rows"))  # paired: same models, same order
    d = statistics.paired_difference(a, b, ms.task_ids.numpy()[rows])
    assert d.low <= d.estimate <= d.high


def test_retrieval_by_folds_queries_every_model_of_every_task_once(tiny_modelset):
    ms = tiny_modelset
    res = paper.retrieval(ms, methods=("filter_norms",), folds=3)
    per_fold = res["predictions"]["filter_norms"]
    rows = _concat(per_fold, "rows")
    assert sorted(rows.tolist()) == list(range(len(ms)))
    tasks = ms.task_ids.numpy()
    for f in per_fold:  # a fold's queries are all the models of its tasks, none seen in training
        held = set(tasks[f["rows"]])
        assert len(f["rows"]) == sum(np.isin(tasks, list(held)))
    hit = _concat(per_fold, "first_hit")
    assert np.isclose(res.mean("filter_norms", "rank1"), np.mean([np.mean(np.asarray(f["first_hit"]) == 0)
                                                                  for f in per_fold]))
    assert (hit >= 0).all()


def test_random_splits_stay_the_default(tiny_modelset):
    res = paper.classification(tiny_modelset, methods=("random",), seeds=2)
    assert "folds" not in res["settings"] and "predictions" not in res
    assert len(res["results"]["random"]["top1"]["values"]) == 2
    assert isinstance(results.ProtocolResult.from_dict(res.to_dict()), results.ProtocolResult)


def test_cli_folds(tiny_modelset_dir, tmp_path, capsys):
    import json

    from lpsbook import cli

    out = tmp_path / "r.json"
    assert cli.main(["experiment", "classification", "--modelset", str(tiny_modelset_dir), "--out", str(out),
                     "--folds", "3", "--device", "cpu"]) in (0, None)
    saved = json.loads(out.read_text())
    assert saved["settings"]["folds"] == 3 and set(saved["predictions"]) == set(saved["settings"]["methods"])
    assert cli.main(["experiment", "transferability", "--modelset", str(tiny_modelset_dir), "--out", str(out),
                     "--folds", "3"]) == 2
    assert "--folds applies to classification, retrieval, branches, ablation" in capsys.readouterr().err
    assert cli.main(["experiment", "branches", "--modelset", str(tiny_modelset_dir), "--out", str(out), "--folds", "3",
                     "--seeds", "1", "--layers", "1", "--epochs", "1", "--second-order-filters", "2", "--device", "cpu"]) in (0, None)
    saved = json.loads(out.read_text())
    assert saved["settings"]["folds"] == 3 and [f["fold"] for f in saved["predictions"]["lps"]] == [0]


def test_branches_by_folds_keep_every_branch_prediction_and_test_no_model_twice(tiny_modelset):
    ms = tiny_modelset
    layers = ms.layers[:2]
    cfg = results.default_config(ms).__class__(epochs=2, batch_size=4, lr=0.05, milestones=(1,))
    res = paper.branches(ms, layers=layers, seeds=2, config=cfg, second_order_filters=2, folds=5)
    assert res["settings"]["folds"] == 5 and res["settings"]["seeds"] == 2  # the first two of three folds
    kept = res["predictions"]["lps"]
    assert [(f["layer"], f["fold"]) for f in kept] == [(n, s) for n in layers for s in range(2)]
    view = statistics.view(branches=res)
    for layer in layers:
        o = statistics.result_outcomes(view, "branches", "lps", layer)
        assert len(set(o["rows"].tolist())) == len(o["rows"]) > 0, "no model tested twice"
        assert np.array_equal(ms.task_ids.numpy()[o["rows"]], o["task"])
        fold_acc = [np.mean(np.asarray(f["rank"]) == 0) for f in kept if f["layer"] == layer]
        assert np.isclose(res.mean("lps", layer), np.mean(fold_acc)), "the summary is the kept predictions' accuracy"
    # two branches compared on the same test models
    d = statistics.result_paired(view, "branches", "lps", "lps", "top1", tuple(layers))
    assert d.low <= d.estimate <= d.high
    same = statistics.result_paired(view, "branches", "lps", "lps", "top1", (layers[0], layers[0]))
    assert same.estimate == same.low == same.high == 0
