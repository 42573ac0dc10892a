"""Baselines: interface, permutation (in)variance, chance level on uninformative labels."""
import pytest
import torch
from scipy.stats import binom

from lpsbook.methods import baselines
from lpsbook.methods.baselines import (FlatFC, RandomPrediction, ReBasinFlat, WeightStatistics, flatten_layers,
                               parameter_keys)
from lpsbook.core.errors import LpsbookError
from lpsbook.core.metrics import topk_accuracy
from lpsbook.core.nets import init_state
from lpsbook.core.symmetry import permute_state, random_permutations, resnet20_spec

FAST_FC = dict(epochs=30, batch_size=4)


def _methods():
    return [RandomPrediction(seed=1), FlatFC(**FAST_FC), WeightStatistics(),
            WeightStatistics(classifier="boosting", max_iter=5), ReBasinFlat(progress=False, **FAST_FC)]


def _stack(states):
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def _rows(state, rows):
    rows = torch.as_tensor(rows)
    return {k: v[rows] for k, v in state.items()}


@pytest.fixture(scope="module")
def permuted(tiny_modelset):
    """Every tiny model permuted as a whole network (functionally identical)."""
    spec, g = resnet20_spec(), torch.Generator().manual_seed(0)
    ms = tiny_modelset
    return _stack([permute_state(ms.state_dict(i), random_permutations(spec, ms.state_dict(i), g), spec)
                   for i in range(len(ms))])


def test_flatten_layers(tiny_modelset):
    st = tiny_modelset.state
    x = flatten_layers(st, ["conv1.weight", "bn1.bias"])
    assert x.shape == (9, 4 * 1 * 9 + 4)
    torch.testing.assert_close(x[2, :36], st["conv1.weight"][2].flatten().float())
    torch.testing.assert_close(x[2, 36:], st["bn1.bias"][2].float())


def test_weight_statistics_are_permutation_invariant(tiny_modelset, permuted):
    ms = tiny_modelset
    m = WeightStatistics().fit(ms.state, ms.task_ids)
    assert not torch.equal(ms.state["layer2.0.conv1.weight"], permuted["layer2.0.conv1.weight"])
    torch.testing.assert_close(m.embed(permuted), m.embed(ms.state), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(m.scores(permuted), m.scores(ms.state), rtol=1e-6, atol=1e-8)


def test_rebasin_alignment_is_permutation_invariant(tiny_modelset, permuted):
    ms = tiny_modelset
    m = ReBasinFlat(progress=False, **FAST_FC).fit(ms.state, ms.task_ids)
    a, b = m.align(ms.state), m.align(permuted)
    torch.testing.assert_close(b["conv1.weight"], a["conv1.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(m.scores(permuted), m.scores(ms.state), rtol=1e-5, atol=1e-5)
    # the reference model is aligned to (its canonical form of) itself: same multiset of filters
    ref = a["conv1.weight"][0].flatten(1)
    orig = ms.state["conv1.weight"][0].flatten(1)
    assert torch.equal(ref[torch.argsort(ref[:, 0])], orig[torch.argsort(orig[:, 0])])


def test_flat_fc_is_not_permutation_invariant(tiny_modelset, permuted):
    ms = tiny_modelset
    m = FlatFC(**FAST_FC).fit(ms.state, ms.task_ids)
    assert (m.scores(permuted) - m.scores(ms.state)).abs().max() > 1e-3


def test_input_checks(tiny_modelset):
    st, y = tiny_modelset.state, tiny_modelset.task_ids
    with pytest.raises(LpsbookError, match="layers"):
        FlatFC(layers=("no.such.weight",)).fit(st, y)
    with pytest.raises(LpsbookError, match="layers"):
        flatten_layers(st, ["conv1.weight", "nope"])
    with pytest.raises(LpsbookError, match="layers"):
        WeightStatistics(layers=["nope"]).fit(st, y)
    for m in _methods():
        with pytest.raises(LpsbookError, match="labels"):
            m.fit(st, y[:5])
        with pytest.raises(LpsbookError, match="fit"):
            m.scores(st)
        with pytest.raises(LpsbookError, match="fit"):
            m.embed(st)
    with pytest.raises(LpsbookError, match="labels"):
        FlatFC().fit(st, y.float())  # labels must be integers
    with pytest.raises(LpsbookError, match="labels"):
        FlatFC().fit(st, y - 1)  # and non-negative
    with pytest.raises(LpsbookError, match="reference"):
        ReBasinFlat(reference=20, progress=False).fit(st, y)
    with pytest.raises(LpsbookError, match="state"):
        ReBasinFlat(progress=False).fit({"conv1.weight": st["conv1.weight"]}, y)
    with pytest.raises(LpsbookError, match="classifier"):
        WeightStatistics(classifier="svm")


def test_default_statistics_cover_every_learnable_tensor(tiny_modelset):
    keys = parameter_keys(tiny_modelset.state)
    assert set(tiny_modelset.layers) <= set(keys)
    assert "bn1.weight" in keys and "bn1.bias" in keys and "fc.weight" in keys
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in keys)
    m = WeightStatistics().fit(tiny_modelset.state, tiny_modelset.task_ids)
    assert m.embed(tiny_modelset.state).shape[1] == len(baselines.QUANTILES + ("mean", "var")) * len(keys)


def test_score_columns_follow_the_classes_seen_in_fit(tiny_modelset):
    ms = tiny_modelset
    labels = ms.task_ids * 2 + 3  # classes 3, 5, 7: the columns are these, not 0..7
    m = WeightStatistics().fit(ms.state, labels)
    assert m.classes_.tolist() == [3, 5, 7]
    s = m.scores(ms.state)
    assert s.shape == (9, 3)
    torch.testing.assert_close(s.sum(1), torch.ones(9, dtype=s.dtype))
    assert set(m.predict(ms.state).tolist()) <= {3, 5, 7}


# --- a synthetic population: chance level and a positive control -----------------------------

CLASSES, PER_CLASS, TRAIN_PER_CLASS = 10, 12, 8


@pytest.fixture(scope="module")
def population():
    """120 freshly initialised ResNet-20s (width 4, 1 input channel) with random, balanced labels."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)[torch.randperm(CLASSES * PER_CLASS, generator=g)]
    state = _stack([init_state(4, 1, seed=1000 + i) for i in range(len(labels))])
    train, test = [], []
    for c in range(CLASSES):
        rows = torch.nonzero(labels == c).flatten().tolist()
        train += rows[:TRAIN_PER_CLASS]
        test += rows[TRAIN_PER_CLASS:]
    return state, labels, torch.tensor(train), torch.tensor(test)


def _chance_bound(n, p, alpha=1e-3):
    """Smallest count of hits that chance (Binomial(n, p)) reaches with probability <= alpha."""
    return int(binom.isf(alpha, n, p)) + 1


def _top1(method, state, labels, train, test):
    method.fit(_rows(state, train), labels[train])
    return topk_accuracy(method.scores(_rows(state, test)), labels[test], ks=(1,))["top1"]


@pytest.mark.parametrize("method", [RandomPrediction(), FlatFC(), WeightStatistics(),
                                    ReBasinFlat(progress=False)], ids=lambda m: type(m).__name__)
def test_chance_level_when_labels_carry_no_information(population, method):
    state, labels, train, test = population
    n = len(test)
    bound = _chance_bound(n, 1 / CLASSES)  # 11 of 40 for 10 classes: P(X >= 11) < 1e-3
    hits = round(_top1(method, state, labels, train, test) * n)
    assert hits < bound, f"{method.name}: {hits}/{n} correct is above chance (bound {bound})"


@pytest.mark.parametrize("method", [FlatFC(), WeightStatistics()], ids=lambda m: type(m).__name__)
def test_positive_control_labels_with_signal(population, method):
    """Each task's models scatter around a task-specific point: both baselines find it."""
    state, labels, train, test = population
    g = torch.Generator().manual_seed(1)
    keys = set(parameter_keys(state))
    signal = {k: v + 0.5 * v.float().std() * torch.randn((CLASSES,) + v.shape[1:], generator=g)[labels]
              if k in keys else v for k, v in state.items()}
    acc = _top1(method, signal, labels, train, test)
    assert round(acc * len(test)) >= _chance_bound(len(test), 1 / CLASSES)
    assert acc >= 0.5


def test_filter_norms_are_permutation_invariant(tiny_modelset, permuted):
    from lpsbook.methods.baselines import FilterNorms

    ms = tiny_modelset
    m = FilterNorms().fit(ms.state, ms.task_ids)
    torch.testing.assert_close(m.embed(permuted), m.embed(ms.state), rtol=1e-6, atol=1e-8)
    # and it is not blind: two different models get different embeddings
    e = m.embed(ms.state)
    assert (e[0] - e[1]).abs().max() > 1e-3
