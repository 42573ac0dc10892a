"""The chapter-level calls: preset selection, result cache, settings."""
import numpy as np
import pytest

from lpsbook.show import book, tables
from lpsbook.findings import claims
from lpsbook.training import packed
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import get_preset
from lpsbook.protocols import statistics as st


def test_preset_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LPSBOOK_PRESET", raising=False)
    monkeypatch.delenv("LPSBOOK_NO_CIFAR", raising=False)
    monkeypatch.setenv("LPSBOOK_DATA", str(tmp_path))  # no CIFAR-100 there: the book falls back to digits
    assert book.current_preset().name == "digits"
    assert "CIFAR-100 not found" in book.banner() and "make data" in book.banner()
    (tmp_path / "cifar100.npz").write_bytes(b"")  # found (its contents are checked when it is loaded)
    assert book.current_preset().name == "cifar100-small"
    assert "not found" not in book.banner()
    monkeypatch.setenv("LPSBOOK_NO_CIFAR", "1")  # make test's fallback build: as if the data were absent
    assert book.current_preset().name == "digits" and "LPSBOOK_NO_CIFAR is set" in book.banner()
    monkeypatch.setenv("LPSBOOK_NO_CIFAR", "0")
    assert book.current_preset().name == "cifar100-small"
    monkeypatch.setenv("LPSBOOK_PRESET", "digits")  # asked for: no excuse in the banner
    assert book.current_preset().name == "digits" and "not found" not in book.banner()
    monkeypatch.setenv("LPSBOOK_PRESET", "cifar100")
    assert book.current_preset().name == "cifar100"
    assert "cifar100" in book.banner() and "500 ResNet-20s" in book.banner()
    monkeypatch.setenv("LPSBOOK_PRESET", "imagenet")
    with pytest.raises(LpsbookError, match="unknown preset 'imagenet'"):
        book.current_preset()


def test_cached_json_computes_once_per_settings(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    tiny = get_preset("tiny")
    first = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    again = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    other = book.cached_json("thing", {"a": 2}, compute, preset=tiny, root=tmp_path)
    assert first == again == {"value": 1} and other == {"value": 2} and len(calls) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_cached_results_are_not_served_to_another_code_version(tmp_path, monkeypatch):
    import lpsbook

    calls = []
    tiny = get_preset("tiny")
    compute = lambda: calls.append(1) or {"n": len(calls)}  # noqa: E731
    assert len(lpsbook.code_version()) == 12
    book.cached_json("thing", {}, compute, preset=tiny, root=tmp_path)
    monkeypatch.setattr(lpsbook, "code_version", lambda: "another")
    assert book.cached_json("thing", {}, compute, preset=tiny, root=tmp_path) == {"n": 2}


def test_cifar100_runs_the_papers_protocol():
    p = get_preset("cifar100")
    assert (p.epochs, p.batch_size, p.lr, p.milestones, p.weight_decay, p.momentum) == (160, 128, 0.1, (80, 120), 1e-4, 0.9)
    assert p.tasks[:2] == ((0, 1), (2, 3)) and len(p.tasks) == 50 and p.seeds == 10
    branches = book.experiment_settings("branches", p)
    assert branches["config"]["epochs"] == 300 and branches["config"]["milestones"] == [150, 225]
    assert "layers" not in branches  # all 19 branches
    assert book.experiment_settings("classification", p)["folds"] == 5  # the paper's 8/2, every model tested once
    assert book.experiment_settings("transferability", p)["seeds"] == 3


def test_only_the_papers_recipe_gets_the_papers_protocol():
    paper = get_preset("cifar100")
    assert paper.follows_paper and paper.with_(seed_offset=7, pack_size_cpu=2).follows_paper
    assert not paper.with_(epochs=5).follows_paper
    for name in ("cifar100-small", "cifar100-small-reseeded", "digits", "tiny"):
        p = get_preset(name)
        assert not p.follows_paper
        assert "layers" in book.experiment_settings("branches", p)  # the CPU subset of branches
        assert book.experiment_settings("branches", p)["config"]["epochs"] < 300


def test_cifar100_small_reseeded_is_a_twin():
    a, b = get_preset("cifar100-small"), get_preset("cifar100-small-reseeded")
    assert a.hash != b.hash and a.seed_offset != b.seed_offset
    assert a.with_(name=b.name, seed_offset=b.seed_offset) == b


def test_preset_hash_covers_weights_not_speed():
    digits = get_preset("digits")
    assert digits.with_(pack_size_cpu=3).hash == digits.hash
    assert digits.with_(seed_offset=1).hash != digits.hash
    assert digits.with_(cpu_bf16=True).hash != digits.hash  # bf16 rounds the weights differently
    assert get_preset("digits-reseeded").hash != digits.hash


def test_seed_offset_gives_other_weights_of_the_same_kind(tmp_path):
    from lpsbook.training import modelset

    tiny = get_preset("tiny").with_(tasks=((0, 1),), seeds=1, epochs=1)
    a = modelset.load(modelset.build(tiny, tmp_path / "a", device="cpu", progress=False))
    b = modelset.load(modelset.build(tiny.with_(seed_offset=7), tmp_path / "b", device="cpu", progress=False))
    assert b.meta.loc[0, "train_seed"] == a.meta.loc[0, "train_seed"] + 7
    wa, wb = a.conv_weights["conv1.weight"], b.conv_weights["conv1.weight"]
    assert wa.shape == wb.shape and not (wa - wb).abs().max() < 1e-3


def test_show_writes_a_dash_for_missing_values():
    import pandas as pd

    html = tables.show(pd.DataFrame({"top1 paper": [79.8, float("nan")], "top1 ours": [1.234, 2.0]},
                                  index=["LPS", "weight statistics"])).to_html()
    assert "—" in html and "nan" not in html.lower() and "1.2" in html


def test_steps_per_model_follows_the_recipe():
    cifar = get_preset("cifar100")
    assert packed.steps_per_model(cifar) == cifar.epochs * 8  # 1000 images of a task, batches of 128
    tiny = get_preset("tiny")
    assert packed.steps_per_model(tiny.with_(epochs=2 * tiny.epochs)) == 2 * packed.steps_per_model(tiny)


def test_banner_fits_a_narrow_page():
    for name in ("digits", "cifar100", "tiny"):
        assert max(len(line) for line in book.banner(get_preset(name)).splitlines()) <= 72


def test_glue_hands_plain_text_to_the_prose():
    text = book._PlainText("8 vs 9")
    assert repr(text) == "8 vs 9"
    from IPython.lib.pretty import pretty

    assert pretty(text) == "8 vs 9"


def test_glue_hands_prose_over_as_markdown(monkeypatch):
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update({name: value}))
    book.glue(words="LPS is `level`", number=3.5)
    book.glue(sentence=book.Prose("LPS is `level`"))
    assert not hasattr(seen["words"], "_repr_markdown_") and repr(seen["words"]) == "LPS is `level`"
    assert seen["sentence"]._repr_markdown_() == "LPS is `level`" and seen["number"] == 3.5


def test_means_and_measure_families_read_a_result():
    result = {"results": {"rsa": {"rho": {"mean": 0.5, "std": 0.1}},
                          "lps": {"rho": {"mean": 0.1, "std": 0.0}, "top1": {"mean": 0.2, "std": 0.0}}}}
    assert claims.means(result, "rho") == {"rsa": 0.5, "lps": 0.1}
    assert claims.means(result, "top1", 100) == {"lps": 20.0}
    assert claims.measure_families(result) == (["rsa"], ["lps"])


def _result(values: dict) -> dict:
    """A protocol result with the given {method: {metric: (mean, sd)}}."""
    return {"results": {m: {k: {"mean": v[0], "std": v[1]} for k, v in per.items()} for m, per in values.items()}}


def _predicted(kind: str, correct: dict, tasks=np.repeat(np.arange(50), 2)) -> dict:
    """A classification or retrieval result run on one fold, from which test models each method gets
    right (``correct = {method: bool per test model}``): what the claims read."""
    preds, res = {}, {}
    for m, ok in correct.items():
        ok = np.asarray(ok, dtype=bool)
        rows = list(range(len(ok)))
        if kind == "classification":
            preds[m] = [{"rows": rows, "task": tasks.tolist(), "rank": np.where(ok, 0, 20).tolist()}]
            res[m] = {"top1": {"mean": ok.mean(), "std": 0.0, "values": [ok.mean()]}}
        else:
            preds[m] = [{"rows": rows, "task": tasks.tolist(), "first_hit": np.where(ok, 0, 20).tolist(),
                         "ap": ok.astype(float).tolist()}]
            res[m] = {"rank1": {"mean": ok.mean(), "std": 0.0, "values": [ok.mean()]}}
    return {"experiment": kind, "results": res, "predictions": preds}


def _first_tasks(n: int, tasks=np.repeat(np.arange(50), 2)):
    """Right on every test model of the first ``n`` of the 50 tasks."""
    return tasks < n


def test_paper_claims_follow_their_rules():
    p = get_preset("cifar100-small")  # 50 tasks: chance 2 %
    cls = _predicted("classification", {"lps": _first_tasks(30), "fc": _first_tasks(0), "frobenius": _first_tasks(0)})
    ret = _predicted("retrieval", {"lps": _first_tasks(25), "random": _first_tasks(5)})
    table = claims.paper_claims(cls, ret, len(p.tasks))
    assert table["outcome"].tolist() == [claims.HOLDS] * 4 + [claims.FAILS]  # 60 % is well below 79.8 %
    assert claims.follow_their_rules(table)
    assert table.attrs["verdicts"][1].interval.estimate == pytest.approx(60.0)  # LPS minus FC, paired
    # LPS at chance: not far above it, and no better than FC at this size
    cls = _predicted("classification", {"lps": _first_tasks(0), "fc": _first_tasks(0), "frobenius": _first_tasks(0)})
    out = claims.paper_claims(cls, ret, len(p.tasks))["outcome"].tolist()
    assert out[:2] == [claims.FAILS, claims.CANNOT_TELL]
    # 80 % on 50 tasks against the paper's 79.8 % on 100 test models: cannot tell
    cls = _predicted("classification", {"lps": _first_tasks(40), "fc": _first_tasks(0), "frobenius": _first_tasks(0)})
    assert claims.paper_claims(cls, ret, len(p.tasks))["outcome"].tolist()[4] == claims.CANNOT_TELL


def _per_branch(correct: dict, tasks=np.repeat(np.arange(50), 2)) -> dict:
    """A branches or ablation result run on one fold: ``correct = {row: {layer: bool per test model}}``."""
    res, preds = {}, {}
    for row, per in correct.items():
        res[row] = {n: {"mean": float(np.mean(ok)), "std": 0.0} for n, ok in per.items()}
        preds[row] = [{"layer": n, "fold": 0, "rows": list(range(len(tasks))), "task": tasks.tolist(),
                       "rank": np.where(ok, 0, 20).tolist()} for n, ok in per.items()]
    return {"results": res, "predictions": preds}


def test_figure3_claims_follow_their_rules():
    p = get_preset("cifar100-small")  # 50 tasks: chance 2 %
    per_target = [{"task": list(range(20)), "spearman": [0.5] * 10 + [0.4] * 10}]
    tr = {"per_target": {"lps": per_target}, "results": {}}
    layers = ["conv1.weight", "layer1.0.conv1.weight", "layer3.0.conv1.weight", "layer3.2.conv2.weight"]
    branch = dict(zip(layers, (_first_tasks(30), _first_tasks(5), _first_tasks(0), _first_tasks(0))))
    on = _first_tasks(30)
    ablated = {"both_on": {layers[0]: on, layers[1]: _first_tasks(2)}, "no_filter_alignment": {layers[0]: _first_tasks(10)},
               "no_channel_alignment": {layers[0]: on}}  # the same predictions as with both on: a drop of exactly 0
    for v in ("no_filter_alignment", "no_channel_alignment"):
        ablated[v][layers[1]] = _first_tasks(2)
    table = claims.figure3_claims(tr, _per_branch({"lps": branch}), _per_branch(ablated), len(p.tasks))
    assert table["outcome"].tolist() == [claims.HOLDS] * 4 + [claims.FAILS], table  # channel: 0 - 1 point < 0
    assert claims.follow_their_rules(table) and all("interval" in v.rule for v in table.attrs["verdicts"])
    assert table.attrs["verdicts"][1].interval.estimate == pytest.approx(50.0), "branch 1 minus branch 2, paired"
    per_target[0]["spearman"] = [0.3, -0.2] * 10  # mean 0.05, spread wide
    branch[layers[1]] = _first_tasks(40)  # a deeper branch beats the first
    table = claims.figure3_claims(tr, _per_branch({"lps": branch}), _per_branch(ablated), len(p.tasks))
    assert table["outcome"].tolist()[:2] == [claims.CANNOT_TELL, claims.FAILS]
    flipped = on.copy()
    flipped[[0, 1]], flipped[[60, 61]] = False, True  # two models lost, two gained: a drop of 0 within the noise
    ablated["no_channel_alignment"][layers[0]] = flipped
    branch[layers[2]] = branch[layers[3]] = _first_tasks(10)  # 20 % on the deepest branches: not at chance
    table = claims.figure3_claims(tr, _per_branch({"lps": branch}), _per_branch(ablated), len(p.tasks))
    assert table["outcome"].tolist()[2:] == [claims.FAILS, claims.HOLDS, claims.CANNOT_TELL], table


def test_layer_numbers_follow_the_forward_order():
    from lpsbook.core.nets import ResNet20, layer_number

    convs = [n for n in ResNet20(width=4).state_dict() if n.endswith("weight") and "conv" in n]
    assert [layer_number(n) for n in convs] == list(range(1, 20))


def test_results_table_reads_like_a_paper():
    """mean ± sd in one cell, column names a reader writes, the paper's number beside ours."""
    cls = {"experiment": "classification", "results": {
        "lps": {"top1": {"mean": 0.291, "std": 0.056}, "top5": {"mean": 0.7, "std": 0.03}},
        "weight_stats": {"top1": {"mean": 0.263, "std": 0.021}, "top5": {"mean": 0.6, "std": 0.03}}}}
    t = tables.results_table(cls)
    assert list(t.columns) == ["top-1 %", "top-1 %, paper", "top-5 %", "top-5 %, paper"]
    assert t.loc["LPS", "top-1 %"] == "29.1\u00a0±\u00a05.6" and t.loc["LPS", "top-1 %, paper"] == "79.8"
    assert t.loc["weight statistics", "top-1 %, paper"] == "—"
    tr = {"experiment": "transferability", "results": {"lps": {"spearman_per_target": {"mean": 0.1234, "std": 0.01}}}}
    t = tables.results_table(tr)
    assert list(t.columns) == ["Spearman ρ per target"] and t.iloc[0, 0] == "0.123\u00a0±\u00a00.010"
    assert not any("_" in c for c in t.columns)


def test_results_table_shows_the_interval_of_a_result_run_on_folds():
    cls = _predicted("classification", {"lps": _first_tasks(30), "fc": _first_tasks(0)})
    cell = tables.results_table(cls).loc["LPS", "top-1 %"]
    estimate, low, high = (float(x) for x in cell.replace("[", " ").replace("]", " ").replace(",", " ").split())
    assert estimate == pytest.approx(60.0) and low < 60 < high and "\u00a0" in cell  # one line in the page
    assert tables.results_table(cls).loc["only one FC layer", "top-1 %"].startswith("0.0")
    tr = {"experiment": "transferability", "results": {"lps": {"spearman_per_target": {"mean": 0.45, "std": 0.1}}},
          "per_target": {"lps": [{"task": list(range(20)), "spearman": [0.5] * 10 + [0.4] * 10}]}}
    assert tables.results_table(tr).iloc[0, 0].startswith("0.450\u00a0[0.4")


def test_settings_read_as_a_sentence():
    r = {"settings": {"seeds": 2, "lps": {"epochs": 20, "batch_size": 8, "lr": 0.05, "milestones": [10, 15]},
                      "layers": ["conv1.weight", "layer1.0.conv1.weight", "layer3.2.conv2.weight"],
                      "second_order_filters": 8, "device": "cpu"}}
    text = tables.settings_text(r)
    assert "branches 1, 2, 19 (of 19)" in text and "2 random splits" in text and "{" not in text
    r["settings"]["folds"] = 5
    assert "the first 2 of 5 folds" in tables.settings_text(r) and "random" not in tables.settings_text(r)


def test_ablation_reading_takes_the_first_branch_and_the_best_deeper_one():
    layers = ["conv1.weight", "layer1.0.conv1.weight", "layer3.2.conv2.weight"]
    ab = {"settings": {"layers": layers}, "results": {
        "both_on": {n: {"mean": m} for n, m in zip(layers, (0.30, 0.04, 0.02))},
        "no_filter_alignment": {n: {"mean": m} for n, m in zip(layers, (0.05, 0.06, 0.02))}}}
    on_first, deeper = claims.ablation_reading(ab)
    assert on_first == pytest.approx({"both_on": 30.0, "no_filter_alignment": 5.0}) and deeper == pytest.approx(6.0)
