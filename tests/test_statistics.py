"""The statistics behind every verdict: folds, task-resampled intervals, paired differences, three outcomes."""
import numpy as np
import pytest

from conftest import related_pairs
from lpsbook.core.errors import LpsbookError
from lpsbook.protocols import statistics as st


def test_classification_folds_test_every_model_once_with_two_seeds_of_every_task():
    tasks = np.repeat(np.arange(50), 10)
    fold = st.classification_folds(tasks, k=5, seed=3)
    assert fold.shape == tasks.shape and set(fold) == set(range(5))  # one fold per model: tested exactly once
    for f in range(5):
        held = tasks[fold == f]
        assert np.array_equal(np.bincount(held, minlength=50), np.full(50, 2))  # the paper's 8/2 in every fold
    assert not np.array_equal(fold, st.classification_folds(tasks, k=5, seed=4))  # seeded
    assert np.array_equal(fold, st.classification_folds(tasks, k=5, seed=3))


def test_task_folds_leave_every_task_out_exactly_once():
    tasks = np.repeat(np.arange(50), 10)
    fold = st.task_folds(tasks, k=5, seed=0)
    for t in range(50):
        assert len(set(fold[tasks == t])) == 1  # all models of a task in one fold
    per_fold = [len(set(tasks[fold == f])) for f in range(5)]
    assert sorted(per_fold) == [10] * 5 and sum(per_fold) == 50


def test_folds_refuse_what_cannot_be_split():
    with pytest.raises(LpsbookError, match="two models of every task"):
        st.classification_folds([0, 0, 1])
    with pytest.raises(LpsbookError, match="two tasks"):
        st.task_folds([0, 0, 0])


def _draw(rng, p=0.7, tasks=50, per_task=10, spread=0.15):
    """Correct/wrong per test model, tasks of varying difficulty around a mean accuracy ``p``."""
    p_task = np.clip(rng.normal(p, spread, tasks), 0, 1)
    return (rng.random((tasks, per_task)) < p_task[:, None]).ravel().astype(float), np.repeat(np.arange(tasks), per_task)


def test_the_interval_covers_a_known_accuracy_about_95_percent_of_the_time():
    rng, p, hits = np.random.default_rng(0), 0.7, 0
    for draw in range(200):
        correct, tasks = _draw(rng, p)
        iv = st.interval(correct, tasks, seed=draw)
        assert iv.low <= iv.estimate <= iv.high and iv.tasks == 50
        hits += iv.low <= p <= iv.high
    assert 0.90 <= hits / 200 <= 0.99, hits / 200


def test_the_interval_is_reproducible_and_degenerate_when_every_task_agrees():
    correct, tasks = _draw(np.random.default_rng(1))
    assert st.interval(correct, tasks, seed=5) == st.interval(correct, tasks, seed=5)
    perfect = st.interval(np.ones(20), np.repeat(np.arange(10), 2))
    assert (perfect.low, perfect.estimate, perfect.high) == (1.0, 1.0, 1.0)


def test_a_paired_interval_is_narrower_when_the_methods_err_on_the_same_models():
    rng = np.random.default_rng(2)
    a, tasks = _draw(rng, 0.7, spread=0.25)
    b = a.copy()
    flip = rng.random(len(b)) < 0.1  # b agrees with a on 90 % of the models
    b[flip] = 1 - b[flip]
    paired, unpaired = st.paired_difference(a, b, tasks), st.unpaired_difference(a, b, tasks)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.high - paired.low < 0.6 * (unpaired.high - unpaired.low)


def test_each_of_the_three_outcomes_from_constructed_predictions():
    tasks = np.repeat(np.arange(20), 5)
    good = np.ones(100)
    bad = np.zeros(100)
    coin = np.tile([1.0, 0.0], 50)
    assert st.decide("a beats b", st.paired_difference(good, bad, tasks)).outcome == st.HOLDS
    assert st.decide("b beats a", st.paired_difference(bad, good, tasks)).outcome == st.FAILS
    rng = np.random.default_rng(0)
    noisy = (rng.random(100) < 0.5).astype(float)
    tell = st.decide("coin beats noise", st.paired_difference(coin, noisy, tasks))
    assert tell.outcome == st.CANNOT_TELL and tell.interval.low < 0 < tell.interval.high
    assert "interval" in tell.rule and "cannot tell" in tell.rule
    # against a line other than zero: 100 % correct is above 0.9, nothing correct below it
    assert st.decide("reaches 90 %", st.interval(good, tasks), line=0.9).outcome == st.HOLDS
    assert st.decide("reaches 90 %", st.interval(bad, tasks), line=0.9).outcome == st.FAILS


def test_no_verdict_from_too_few_tasks():
    tasks = np.repeat(np.arange(st.MIN_TASKS - 1), 4)
    diff = st.paired_difference(np.ones(len(tasks)), np.zeros(len(tasks)), tasks)
    assert diff.low == diff.high == 1.0  # every task agrees: a zero-width interval ...
    assert st.decide("a beats b", diff).outcome == st.CANNOT_TELL  # ... from too few tasks to judge


def test_a_published_number_carries_its_own_uncertainty():
    paper = st.published(0.798, 100)  # one split of 100 test models
    assert paper.low < 0.75 and paper.high > 0.85
    ours = st.Interval(0.75, 0.70, 0.80)
    d = st.versus_published(ours, paper)
    assert d.estimate == pytest.approx(-0.048) and d.low < -0.048 - 0.05 and d.high > 0
    assert st.decide("reaches the paper", d).outcome == st.CANNOT_TELL


def test_mismatched_inputs_are_refused():
    with pytest.raises(LpsbookError, match="same test models"):
        st.paired_difference([1, 0], [1], [0, 1])
    with pytest.raises(LpsbookError, match="3 values for 2 task ids"):
        st.interval([1, 0, 1], [0, 1])


def test_decide_by_spread_has_three_outcomes():
    assert st.decide_by_spread("x", 5.0, 2.0).outcome == st.HOLDS
    assert st.decide_by_spread("x", -5.0, 2.0).outcome == st.FAILS
    v = st.decide_by_spread("x", -3.3, 10.4)  # 75.0 against 78.3 ± 10.4: within the spread
    assert v.outcome == st.CANNOT_TELL and "over 3 runs" in v.rule


def test_follows_rule_checks_an_outcome_against_its_interval():
    from dataclasses import replace

    v = st.decide("x beats y", st.Interval(2.0, 1.0, 3.0, tasks=20))
    assert v.outcome == st.HOLDS and st.follows_rule(v)
    assert not st.follows_rule(replace(v, outcome=st.CANNOT_TELL))


def test_intervals_read_from_kept_predictions_and_refuse_other_test_models():
    """A protocol result's kept predictions (two folds) give the pooled accuracy over every test model, and a
    paired comparison of two methods tested on different models is refused."""
    tasks = np.repeat(np.arange(12), 2)
    fold = [{"rows": list(range(0, 24, 2)), "task": tasks[::2].tolist(), "rank": [0] * 12},
            {"rows": list(range(1, 24, 2)), "task": tasks[1::2].tolist(), "rank": [0] * 6 + [3] * 6}]
    other = [{"rows": list(range(12)), "task": tasks[:12].tolist(), "rank": [0] * 12}]
    view = st.view(c={"predictions": {"a": fold, "b": other}})
    assert st.result_outcomes(view, "c", "a")["rows"].tolist() == list(range(24))
    assert st.result_interval(view, "c", "a", "top1").estimate == pytest.approx(75.0)
    assert st.result_interval(view, "c", "a", "top5").estimate == pytest.approx(100.0)
    with pytest.raises(LpsbookError, match="same models"):
        st.result_paired(view, "c", "a", "b", "top1")


def _pairs(score_of, folds=((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)), related_of=lambda s, t: (s + t) % 3 == 0):
    return related_pairs(score_of, folds, related_of)


def test_pair_auc_is_sklearns_auc_per_fold_with_an_interval_over_tasks():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    noise = {(s, t): rng.random() for s in range(40) for t in range(40)}
    folds = [tuple(range(i, i + 10)) for i in range(0, 40, 10)]
    kept = _pairs(lambda s, t: noise[s, t] + 0.3 * ((s + t) % 3 == 0), folds)
    iv = st.pair_auc(kept)
    by_fold = [roc_auc_score(f["related"], f["score"]) for f in kept]
    assert iv.estimate == pytest.approx(np.mean(by_fold)) and iv.low < iv.estimate < iv.high and iv.tasks == 40
    assert iv == st.pair_auc(kept), "seeded: a rerun gives the same interval"
    perfect = st.pair_auc(_pairs(lambda s, t: float((s + t) % 3 == 0), folds))
    assert perfect.estimate == perfect.low == perfect.high == 1.0
    # two methods on the same pairs: the paired difference of a method with itself is exactly 0; a better one holds
    assert st.pair_auc(kept, kept).estimate == st.pair_auc(kept, kept).high == 0.0
    blind = _pairs(lambda s, t: noise[t, s], folds)
    assert st.decide("better", st.pair_auc(kept, blind)).outcome == st.HOLDS
    assert st.decide("better", st.pair_auc(blind, kept)).outcome == st.FAILS


def test_pair_auc_with_few_related_pairs_is_wide_or_undefined_never_a_point():
    """Few related pairs (as among the held-out tasks of two folds): a resample that loses them all has no
    AUC and is left out; the interval is wide, or undefined when most resamples have none, never a point."""
    rng = np.random.default_rng(1)
    noise = rng.random((20, 20))
    folds = (tuple(range(10)), tuple(range(10, 20)))
    few = ({0, 1}, {2, 3}, {10, 11}, {12, 13})
    iv = st.pair_auc(related_pairs(lambda s, t: noise[s, t] + 0.2 * ({s, t} in few), folds, lambda s, t: {s, t} in few))
    assert np.isfinite(iv.low) and iv.low < iv.estimate < iv.high and iv.high - iv.low > 0.1
    one = st.pair_auc(related_pairs(lambda s, t: noise[s, t], folds, lambda s, t: {s, t} == {0, 1}))
    assert np.isfinite(one.estimate) and np.isnan(one.low) and np.isnan(one.high)
    assert st.decide("x", one).outcome == st.CANNOT_TELL and st.decide("x", one - 0.5).outcome == st.CANNOT_TELL
