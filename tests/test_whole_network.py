"""Chapter 9's analyses: permutation augmentation, the symmetry check, merging, challenging LPS, costs."""
import numpy as np
import pytest
import torch

from conftest import related_pairs
from lpsbook.findings import analyses, claims
from lpsbook.methods import registry
from lpsbook.protocols import paper, results, transfer
from lpsbook.core import runtime
from lpsbook.methods.baselines import FlatFC, permuted_copies
from lpsbook.core.errors import LpsbookError
from lpsbook.methods.graph import GraphLearner
from lpsbook.methods.lps import LPSConfig


def test_permuted_copies_are_the_same_networks_in_other_orders(tiny_modelset):
    ms = tiny_modelset
    models, labels = permuted_copies(ms.state, ms.task_ids, copies=2, seed=0)
    assert len(labels) == 3 * len(ms) and torch.equal(labels[len(ms):2 * len(ms)], ms.task_ids)
    original, copy = ms.state["conv1.weight"][4], models["conv1.weight"][len(ms) + 4]
    assert not torch.equal(original, copy)  # reordered ...
    key = lambda w: sorted(w.flatten(1).tolist())  # noqa: E731
    assert key(original) == key(copy)  # ... the same filters
    with pytest.raises(LpsbookError, match="whole state"):
        permuted_copies({"conv1.weight": ms.state["conv1.weight"]}, ms.task_ids, 1)
    m = FlatFC(epochs=2, batch_size=4, augment=2).fit(ms.state, ms.task_ids)
    assert m.scores(ms.state).shape == (len(ms), 3)


def test_symmetry_check_tells_invariant_from_blind(tiny_modelset):
    ms = tiny_modelset
    check = analyses.symmetry_check(ms, {"graph": GraphLearner(epochs=1, hidden=8, embed_dim=8),
                                            "fc": registry.make("fc", ms, config=LPSConfig(epochs=2, batch_size=4))})
    assert check["graph"]["spec permutations"] < 1e-4 < check["graph"]["spec-breaking permutation"]
    assert check["fc"]["spec permutations"] > 1e-4


def _result(kind, values, seeds=2):
    return results.ProtocolResult(kind, "tiny", "0", "0", 9, {"seeds": seeds}, {
        m: {k: {"mean": v[0], "std": v[1], "values": []} for k, v in per.items()} for m, per in values.items()}, 0.0)


def _predicted(kind, correct, tasks=np.repeat(np.arange(20), 2)):
    """A result on one fold from which test models each method gets right (``{method: bool per model}``)."""
    key = {"classification": ("rank", "top1"), "retrieval": ("first_hit", "rank1")}[kind]
    preds = {m: [{"rows": list(range(len(ok))), "task": tasks.tolist(), key[0]: np.where(ok, 0, 9).tolist(),
                  **({"ap": np.asarray(ok, float).tolist()} if kind == "retrieval" else {})}] for m, ok in correct.items()}
    values = {m: {key[1]: (float(np.mean(ok)), 0.0)} | ({"mAP": (float(np.mean(ok)), 0.0)} if kind == "retrieval" else {})
              for m, ok in correct.items()}
    r = _result(kind, values, seeds=1)
    r.extras["predictions"] = preds
    return r


def test_merge_and_challenge():
    tasks = np.repeat(np.arange(20), 2)
    a = _predicted("classification", {"lps": tasks < 6})
    b = _predicted("classification", {"graph": tasks < 16, "probing": tasks < 7})
    merged = results.merge(a, b)
    assert list(merged.results) == ["lps", "graph", "probing"] and set(merged["predictions"]) == set(merged.results)
    with pytest.raises(LpsbookError, match="merge"):
        results.merge(a, _result("retrieval", {}))
    table = claims.challenge({"top-1": (merged, "top1", 100)}, "graph")
    assert table["beats it"].tolist() == [claims.HOLDS] and list(table.columns[:2]) == ["graph learner (whole network)", "LPS"]
    assert table.iloc[0, 2].startswith("50.0")  # the paired difference, points
    table = claims.challenge({"top-1": (merged, "top1", 100)}, "probing")
    assert table["beats it"].tolist() == [claims.CANNOT_TELL]  # one task more: within the interval


def test_classification_records_what_each_fit_costs(tiny_modelset):
    from lpsbook.methods.lps import LPSConfig

    cls = paper.classification(tiny_modelset, methods=("random", "filter_norms"), seeds=2,
                                     config=LPSConfig(epochs=2, batch_size=4, milestones=()))
    costs = analyses.costs(cls)
    assert set(costs) == {"random", "filter_norms"} and len(cls["cost"]["random"]) == 2
    for c in costs.values():
        assert c["fit seconds"] >= 0 and c["seconds to embed 100 models"] >= 0 and c["peak memory MiB"] >= 0
        assert c["reads"] == "weights"
    merged = results.merge(cls, paper.classification(tiny_modelset, methods=("fc",), seeds=2,
                                                               config=LPSConfig(epochs=2, batch_size=4, milestones=())))
    assert set(analyses.costs(merged)) == {"random", "filter_norms", "fc"}


def test_peak_memory_sees_an_allocation():
    with runtime.PeakMemory() as peak:
        block = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB
        block += 1
    assert peak.mib > 32


def test_transfer_scores_and_their_reference_protocol(tiny_modelset):
    scores = transfer.transfer_scores(tiny_modelset, progress=False)
    assert set(scores) == {"ari", "leep", "logme"} and all(v.shape == (3, 3) for v in scores.values())
    assert (scores["leep"] <= 0).all() and (scores["ari"] <= 1).all()
    refs = paper.reference_transfer(tiny_modelset, scores, seeds=1)
    assert set(refs.results) == {"leep", "logme"} and refs.experiment == "reference_transfer"


def test_a_protocol_result_reads_like_the_dict_it_came_from():
    r = results.ProtocolResult.from_dict({"experiment": "x", "preset": "tiny", "preset_hash": "0",
                                              "code_version": "0", "models": 1, "settings": {}, "results": {},
                                              "seconds": 0.0, "related": "share a class"})
    assert r.get("related") == r["related"] == "share a class" and "related" in r
    assert r.get("nothing", "default") == "default" and r.get("experiment") == "x"


def test_whole_network_findings_read_the_results():
    n, tasks = "graph", np.repeat(np.arange(20), 2)
    cls = _predicted("classification", {"lps": tasks < 4, n: tasks < 10})
    ret = _predicted("retrieval", {"lps": tasks < 10, n: tasks < 10})
    tr = _result("transferability", {m: {"spearman_per_target": (0.1, 0.05), "related_auc": (0.5, 0.05)} for m in ("lps", n)})
    tr.extras["per_target"] = {m: [{"task": list(range(20)), "spearman": [0.1, 0.2] * 10}] for m in ("lps", n)}
    verdicts = claims.challenges(cls, ret, tr, ["graph"])
    assert verdicts.loc[n]["beats it"].tolist() == [claims.HOLDS] + [claims.CANNOT_TELL] * 4
    stages = _result("stages", {"stem": {"top1": (0.1, 0)}, "stage 1": {"top1": (0.3, 0)}})
    refs = _result("reference_transfer", {"leep": {"spearman_per_target": (0.6, 0)}, "logme": {"spearman_per_target": (0.5, 0)}})
    probes = _result("probe_counts", {"1": {"top1": (0.1, 0)}, "2": {"top1": (0.2, 0)}})
    f = claims.whole_network_findings(cls, tr, verdicts, stages, refs, probes, n_tasks=50)
    assert f["best_id"] == n and f["best"] == "graph learner (whole network)" and f["best_top1"] == pytest.approx(50) and f["chance"] == 2
    assert f["verdict"] == "does not beat LPS on every protocol" and f["some"] == "graph learner (whole network)"
    assert f["best_part"] == "stage 1" and f["leep"] == 0.6 and f["probe_counts"] == "1: 10.0 %, 2: 20.0 %"


def test_challenge_on_the_related_task_auc_is_paired_on_the_held_out_pairs():
    folds = [tuple(range(i, i + 10)) for i in range(0, 40, 10)]
    related = lambda s, t: (s + t) % 3 == 0  # noqa: E731

    def kept(score):
        return related_pairs(score, folds, related)

    noise = np.random.default_rng(2).random((40, 40))
    tr = {"results": {m: {"related_auc": {"mean": 0.5, "std": 0.1}} for m in ("lps", "graph", "probing")},
          "related_pairs": {"lps": kept(lambda s, t: noise[s, t]), "graph": kept(lambda s, t: related(s, t) + noise[s, t]),
                            "probing": kept(lambda s, t: noise[s, t] + 0.01 * noise[t, s])}}
    table = claims.challenge({"AUC": (tr, "related_auc", 1)}, "graph")
    assert table["beats it"].tolist() == [claims.HOLDS] and "[" in table.iloc[0, 0]
    table = claims.challenge({"AUC": (tr, "related_auc", 1)}, "probing")
    assert table["beats it"].tolist() == [claims.CANNOT_TELL], "nearly the same scores: the interval holds 0"
    del tr["related_pairs"]  # a result run before the pairs were kept: the spread rule, and it says so
    assert claims.challenge({"AUC": (tr, "related_auc", 1)}, "graph")["beats it"].tolist() == [claims.CANNOT_TELL]


def test_pairwise_comparisons_of_chapter_7_each_with_a_paired_verdict():
    tasks = np.repeat(np.arange(20), 2)
    cls = _predicted("classification", {"lps": tasks < 12, "weight_stats": tasks < 11, "rebasin_fc": tasks < 3,
                                        "fc": tasks < 3})
    ret = _predicted("retrieval", {"lps": tasks < 12, "weight_stats": tasks < 2, "rebasin_fc": tasks < 3, "fc": tasks < 8})
    table = claims.pairwise(cls, ret)
    assert len(table) == 2 * len(claims.SYMMETRY_PAIRS) and claims.follow_their_rules(table)
    out = table["beats it"]
    assert out[("weight statistics vs only one FC layer", "classification top-1 %")] == claims.HOLDS
    assert out[("re-basin + FC vs only one FC layer", "classification top-1 %")] == claims.CANNOT_TELL  # the same models
    assert out[("re-basin + FC vs only one FC layer", "retrieval rank-1 %")] == claims.FAILS
    assert out[("LPS vs weight statistics", "classification top-1 %")] == claims.CANNOT_TELL  # one task apart
    lines = claims.pairwise_lines(table).split("\n")
    assert len(lines) == len(claims.SYMMETRY_PAIRS) and lines[0].startswith("* weight statistics beats only one FC layer?")
    assert "**holds**" in lines[0] and "points" in lines[0]
