"""The protocols: splits, and every experiment through the CLI on the tiny preset."""
import json

import numpy as np
import pytest
import torch

from lpsbook.findings import analyses
from lpsbook import cli
from lpsbook.protocols import paper, results, transfer


def test_classification_split_is_per_task(tiny_modelset):
    ms = tiny_modelset
    train, test = results.classification_split(ms, seed=0, train_per_task=2)
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(ms)
    tasks = ms.meta["task_id"].to_numpy()
    assert all((tasks[train] == t).sum() == 2 and (tasks[test] == t).sum() == 1 for t in range(3))
    again, _ = results.classification_split(ms, seed=0, train_per_task=2)
    assert np.array_equal(train, again)


def test_retrieval_split_holds_out_whole_tasks(tiny_modelset):
    ms = tiny_modelset
    train, query, gallery = results.retrieval_split(ms, seed=1, test_fraction=0.34, queries_per_task=1)
    tasks = ms.meta["task_id"].to_numpy()
    held = set(tasks[query])
    assert held == set(tasks[gallery]) and held.isdisjoint(tasks[train])
    assert len(query) == len(held) and len(train) + len(query) + len(gallery) == len(ms)


def test_task_similarity_of_mean_embeddings():
    from lpsbook.methods.estimator import task_means

    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    tasks, means = task_means(emb, torch.tensor([0, 0, 1, 1, 2]))
    sim = means @ means.T
    assert tasks.tolist() == [0, 1, 2]
    torch.testing.assert_close(sim[0, 1], torch.tensor(0.0, dtype=sim.dtype))
    torch.testing.assert_close(sim[0, 2], torch.tensor(2 ** -0.5, dtype=sim.dtype))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["classification", "retrieval", "transferability", "branches",
                                  "ablation", "similarity", "stages", "probe_counts"])
def test_every_experiment_runs_from_the_cli(tiny_modelset_dir, tmp_path, name, capsys):
    out = tmp_path / f"{name}.json"
    code = cli.main(["experiment", name, "--modelset", str(tiny_modelset_dir), "--out", str(out),
                     "--seeds", "1", "--epochs", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["experiment"] == name and result["preset"] == "tiny" and result["seconds"] > 0
    assert result["results"], "no results"
    from lpsbook import code_version

    typed = results.ProtocolResult.from_dict(result)  # the JSON reads back as the typed result
    assert typed.code_version == code_version() and json.dumps(typed.to_dict()) == json.dumps(result)
    row = next(iter(typed.results))
    metric = next(iter(typed.results[row]))
    assert typed.mean(row, metric) == pytest.approx(result["results"][row][metric]["mean"], nan_ok=True)
    assert len(result["results"][row][metric]["values"]) == 1  # one split (--seeds 1)
    if name in ("transferability", "similarity"):
        assert {"lps", "weight_stats"} <= set(result["results"])
    if name == "similarity":
        assert {"rsa", "cka_linear"} <= set(result["results"]) and set(result["cost_seconds_per_100_pairs"]) == set(result["results"])
    if name == "classification":
        lps = result["results"]["lps"]
        assert set(lps) == {"top1", "top5", "top10"} and 0 <= lps["top1"]["mean"] <= 1
    if name == "branches":
        assert len(result["results"]["lps"]) == 19
    if name == "ablation":
        assert set(result["results"]) == set(results.ABLATION_VARIANTS)
        assert len(result["results"]["both_on"]) == 18


def test_unknown_experiment_is_refused(tiny_modelset_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["experiment", "telepathy", "--modelset", str(tiny_modelset_dir), "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err


def test_layer_selection_for_branches(tiny_modelset_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["experiment", "branches", "--modelset", str(tiny_modelset_dir), "--out", str(out), "--seeds", "1",
            "--epochs", "1"]
    assert cli.main(args + ["--layers", "1,3", "--second-order-filters", "2"]) == 0
    result = json.loads(out.read_text())
    assert list(result["results"]["lps"]) == ["conv1.weight", "layer1.0.conv2.weight"]
    assert result["settings"]["second_order_filters"] == 2
    assert cli.main(args + ["--layers", "0,40"]) == 2
    assert "--layers must list conv layers 1..19" in capsys.readouterr().err


def test_interrupted_experiment_resumes_without_redoing_fits(tiny_modelset, tmp_path, monkeypatch):
    from lpsbook.methods.lps import LPSConfig

    calls = []
    real = paper.make

    def counting(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3 and not getattr(counting, "resumed", False):
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(paper, "make", counting)
    ckpt = tmp_path / "run.partial"
    kwargs = dict(methods=("random", "fc"), seeds=2,
                  config=LPSConfig(epochs=2, batch_size=4, lr=0.01, milestones=()), checkpoint=ckpt)
    with pytest.raises(KeyboardInterrupt):
        paper.classification(tiny_modelset, **kwargs)
    assert ckpt.exists() and len(json.loads(ckpt.read_text())["done"]) == 2
    counting.resumed = True
    result = paper.classification(tiny_modelset, **kwargs)
    assert len(calls) == 3 + 2, "the two finished fits were run again"
    assert [len(r["top1"]["values"]) for r in result["results"].values()] == [2, 2]
    assert not ckpt.exists()
    fresh = paper.classification(tiny_modelset, **{**kwargs, "checkpoint": None})
    assert fresh["results"] == result["results"]


def test_weight_movement_is_measured_from_the_recorded_initialisation(tiny_modelset, tmp_path):
    from lpsbook.training import modelset
    from lpsbook.core.presets import get_preset

    moved = analyses.weight_movement(tiny_modelset)
    assert list(moved.index) == tiny_modelset.layers
    assert (moved["min"] > 0).all() and (moved["min"] <= moved["mean"]).all()
    # with a zero learning rate nothing moves: the initialisation is re-created exactly
    frozen = get_preset("tiny").with_(tasks=((0, 1),), seeds=1, lr=0.0)
    still = analyses.weight_movement(modelset.load(modelset.build(frozen, tmp_path / "frozen", device="cpu",
                                                                      progress=False)))
    assert still["max"].max() < 1e-6


def test_related_tasks_share_a_class_or_a_superclass():
    from lpsbook.core.data import CIFAR100_COARSE_OF_FINE, Dataset, load_digits

    digits = load_digits()
    groups, relation = transfer.related_groups([(0, 1), (1, 2), (3, 4)], digits)
    assert relation == "share a class" and groups == [{0, 1}, {1, 2}, {3, 4}]
    # a CIFAR-like dataset: fine labels with their superclasses (the real taxonomy)
    fine = torch.arange(100).repeat(2)
    coarse = torch.tensor(CIFAR100_COARSE_OF_FINE)[fine]
    images = torch.zeros(len(fine), 3, 4, 4, dtype=torch.uint8)
    data = Dataset("fake", images, fine, images, fine, [str(i) for i in range(100)],
                   coarse_train_labels=coarse, coarse_test_labels=coarse, coarse_names=[str(i) for i in range(20)])
    tasks = [(2 * t, 2 * t + 1) for t in range(50)]
    groups, relation = transfer.related_groups(tasks, data)
    assert relation == "share a superclass"
    assert groups[0] == {CIFAR100_COARSE_OF_FINE[0], CIFAR100_COARSE_OF_FINE[1]}
    related = [(a, b) for a in range(50) for b in range(a + 1, 50) if groups[a] & groups[b]]
    assert transfer.related_pairs(groups) == len(related)
    assert 0 < len(related) < 50 * 49 / 2  # disjoint classes, yet some tasks are related and most are not
    assert all(not set(tasks[a]) & set(tasks[b]) for a, b in related)


def test_cli_reports_a_repaired_file_in_one_line(tiny_modelset_dir, tmp_path, capsys):
    """A damaged checkpoint is removed and the run starts afresh; the command says so in one line."""
    out = tmp_path / "r.json"
    (tmp_path / "r.json.partial").write_text("{ not json")
    args = ["experiment", "classification", "--modelset", str(tiny_modelset_dir), "--out", str(out),
            "--seeds", "1", "--epochs", "1", "--device", "cpu"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("lpsbook: warning: ")]
    assert len(warned) == 1 and "r.json.partial" in warned[0], err
    assert "DamagedFileWarning" not in err and "Traceback" not in err
    assert json.loads(out.read_text())["experiment"] == "classification"
