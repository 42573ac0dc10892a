"""The pages' numbers from a results file's kept predictions: intervals, paired comparisons, verdicts."""
import numpy as np
import pytest

from lpsbook.experiments import modelset500, reports
from lpsbook.protocols import statistics as st

TASKS, PER_TASK = 20, 5


def _file(ranks: dict, book_lps=None) -> dict:
    """A results file whose classification predictions give each method the ranks ``ranks[m]`` (one per
    model), over two folds; retrieval by the same rule (first hit = rank)."""
    task = np.repeat(np.arange(TASKS), PER_TASK)
    folds = np.arange(len(task)) % 2

    def per_fold(values, key, other):
        return [{"rows": np.flatnonzero(folds == f).tolist(), key: np.asarray(values)[folds == f].tolist(),
                 other: np.zeros((folds == f).sum()).tolist()} for f in (0, 1)]

    protocols = {"classification": {"predictions": {m: per_fold(r, "rank", "top1") for m, r in ranks.items()}},
                 "retrieval": {"predictions": {m: per_fold(r, "first_hit", "ap") for m, r in ranks.items()}}}
    if book_lps is not None:
        protocols[reports.BOOK_LPS_STEP] = {"predictions": {"lps": per_fold(book_lps, "rank", "top1")}}
    return {"models": {"task_id": task.tolist(), "cpu": ["a CPU"] * len(task), "gpu": [None] * len(task),
                       "precision": ["bf16"] * len(task)}, "protocols": protocols}


def test_tables_and_verdicts_from_kept_predictions():
    n = TASKS * PER_TASK
    rng = np.random.default_rng(0)
    lps = np.zeros(n, dtype=int)  # always right
    ws = np.ones(n, dtype=int)  # always second
    probing = np.where(rng.random(n) < 0.5, 0, 3)  # right half the time
    noisy_lps = np.where(rng.random(n) < 0.5, 0, 2)
    res = _file({"lps": lps, "weight_stats": ws, "probing": probing}, book_lps=noisy_lps)
    assert reports.interval(res, "classification", "lps", "top1") == st.Interval(100.0, 100.0, 100.0, tasks=TASKS)
    assert reports.interval(res, "classification", "weight_stats", "top5").estimate == 100.0  # rank 1 < 5
    t = reports.table(res)
    assert t.loc["LPS", "paper, top1"] == "79.8" and "\u00a0[" in t.loc["LPS", "top1"]
    beats = {v.claim: v.outcome for v in reports.rivals(res)}
    assert beats == {"LPS beats weight statistics": st.HOLDS, "LPS beats probing (learned inputs)": st.HOLDS}
    # LPS at 100 % against the paper's 79.8 % on 100 test models: above it, both intervals counted
    h = reports.headline(res)
    assert h.outcome == st.HOLDS and h.interval.low > 0
    # the same verdict for a method at 50 % is "does not hold"; one near the paper's number cannot tell
    assert reports.headline(_file({"lps": probing})).outcome == st.FAILS
    near = np.where(np.arange(n) % 5 == 0, 3, 0)  # 80 % right, spread over every task
    assert reports.headline(_file({"lps": near})).outcome == st.CANNOT_TELL
    sch = reports.schedules(res)
    assert sch.low > 0 and sch.estimate == pytest.approx(100 * np.mean(noisy_lps != 0))
    assert list(reports.verdict_table([h]).columns) == ["difference [95 % interval]", "outcome"]
    r = reports.table(res, "retrieval", ("rank1", "mAP"))
    assert r.loc["LPS", "paper, rank1"] == "80.7"


def test_state_sentence():
    assert "not built yet" in reports.state_sentence(None, modelset500.COMMAND)
    res = _file({"lps": np.zeros(TASKS * PER_TASK, dtype=int)})
    s = reports.state_sentence(res, modelset500.COMMAND)
    assert f"{TASKS * PER_TASK} models (bf16; trained on a CPU)" in s and "classification, retrieval" in s


def test_the_pipeline_file_reads_back_into_tables(tiny_modelset_dir, tmp_path):
    res = modelset500.run(tmp_path, modelset=tiny_modelset_dir, preset="tiny", device="cpu",
                          steps=("classification",), methods=("random", "lps", "weight_stats"), progress=False)
    t = reports.table(res)
    assert set(t.index) == {"random prediction", "LPS", "weight statistics"}
    assert all(v.outcome == st.CANNOT_TELL for v in reports.rivals(res))  # three tasks decide nothing


def test_figure3_tables_from_the_file():
    s = lambda m, sd: {"mean": m, "std": sd, "values": [m]}  # noqa: E731
    res = {"protocols": {
        "transferability": {"results": {"lps": {"spearman": s(0.5, 0.1), "related_auc": s(0.8, 0.05)}}},
        "branches": {"results": {"lps": {"conv1.weight": s(0.6, 0.0), "layer3.2.conv2.weight": s(0.9, 0.0)}}},
        "ablation": {"results": {"both_on": {"conv1.weight": s(0.6, 0.0)}, "both_off": {"conv1.weight": s(0.2, 0.0)}}}}}
    f = reports.figure3(res)
    assert f["transfer"].loc["LPS", "spearman"] == "0.50\u00a0±\u00a00.10"
    assert f["branches"].loc["conv1", "LPS"] == "60.0\u00a0±\u00a00.0" and "layer3.2.conv2" in f["branches"].index
    assert list(f["ablation"].columns) == ["both on", "both off"]
    assert reports.figure3({"protocols": {}}) == {}
    # measured on folds: every branch's predictions kept, an interval per branch
    tasks = np.repeat(np.arange(20), 2)
    kept = [{"layer": "conv1.weight", "fold": 0, "rows": list(range(40)), "task": tasks.tolist(),
             "rank": np.where(tasks < 12, 0, 5).tolist()}]
    res["protocols"]["branches"]["predictions"] = {"lps": kept}
    res["protocols"]["branches"]["results"] = {"lps": {"conv1.weight": s(0.6, 0.0)}}
    cell = reports.figure3(res)["branches"].loc["conv1", "LPS"]
    assert cell.startswith("60.0\u00a0[") and "±" not in cell


def test_chapter_values_and_protocol_facts():
    from lpsbook.core.presets import get_preset

    p = get_preset("cifar100")
    v = reports.chapter_values(None, p, 5, modelset500.COMMAND)
    assert (v["tasks"], v["seeds"], v["models"], v["steps"]) == (50, 10, 500, 1280)
    assert v["paper_low"] < v["paper"] < v["paper_high"] and "not built yet" in str(v["state"])
    f = reports.protocol_facts(p, 5)
    assert f["even_folds"] and f["task_unseen_once"] and 0 < f["paired_width_ratio"] < 0.6


def test_above_chance_best_method_and_a_table_without_the_paper():
    n = TASKS * PER_TASK
    rng = np.random.default_rng(1)
    right = np.zeros(n, dtype=int)
    coin = np.where(rng.random(n) < 0.5, 0, 1)  # about 50 % top-1
    res = _file({"lps": coin, "weight_stats": right, "random": np.ones(n, dtype=int)})
    assert reports.above_chance(res, "lps", 10.0).outcome == st.HOLDS  # 50 % against 10 %
    assert reports.above_chance(res, "lps", 50.0).outcome == st.CANNOT_TELL  # at chance
    assert reports.above_chance(res, "random", 10.0).outcome == st.FAILS  # never right
    top, iv = reports.best(res)
    assert top == "weight_stats" and iv.estimate == 100.0
    assert "paper, top1" not in reports.table(res, beside_paper=False).columns


def test_figure3_puts_the_references_under_the_methods_with_intervals():
    per_target = [{"task": list(range(12)), "spearman": [0.5, 0.3] * 6}]
    summary = {"spearman_per_target": {"mean": 0.4, "std": 0.0, "values": [0.4]}}
    res = {"protocols": {"transferability": {"results": {"lps": summary}, "per_target": {"lps": per_target}},
                         "references": {"results": {"leep": summary}, "per_target": {"leep": per_target}}}}
    t = reports.figure3(res)["transfer"]
    assert list(t.index) == ["LPS", "LEEP (reads the target data)"]
    assert t.iloc[1, 0].startswith("0.40\u00a0[0.3")  # an interval over the target tasks
