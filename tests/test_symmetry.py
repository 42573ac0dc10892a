"""Permutation symmetries: the specs are exact symmetries and weight matching finds them."""
import math

import pytest
import torch
from torch import nn

from lpsbook.findings import demos
from lpsbook.core import symmetry as sym
from lpsbook.core.nets import ResNet20, conv_layers, init_state


def _random_resnet(seed, width=8):
    """A ResNet-20 with random BatchNorm affine parameters and running statistics.

    The running statistics are those of a random batch, jittered per channel,
    so that eval-mode outputs depend on the input about as much as in train mode.
    """
    g = torch.Generator().manual_seed(seed)
    net = ResNet20(width, in_channels=1)
    net.load_state_dict(init_state(width, 1, seed))
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0, 0.3, generator=g)
            m.momentum = None  # running stats := statistics of the batch below
        net.fc.bias.normal_(0, 0.3, generator=g)
        net.train()(torch.randn(16, 1, 16, 16, generator=g))
        for m in bns:
            m.momentum = 0.1
            m.running_mean += 0.2 * m.running_var.sqrt() * torch.randn(m.num_features, generator=g)
            m.running_var *= torch.empty(m.num_features).uniform_(0.7, 1.4, generator=g)
    return net


def _outputs(state, x, train, width=8):
    net = ResNet20(width, in_channels=1)
    net.load_state_dict(state)
    net.train(train)
    with torch.no_grad():
        return net(x)


@pytest.fixture(scope="module")
def x():
    return torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(123))


def test_resnet20_spec_covers_every_hidden_axis():
    spec = sym.resnet20_spec()
    assert len(spec.names) == 12
    state = init_state(8, 1, 0)
    assert set(spec.axes_to_perm) <= set(state)
    # every tensor except the input axis of the stem, fc's output and BN counters is permuted
    for key, val in state.items():
        axes = spec.axes_to_perm.get(key, {})
        if key.endswith("num_batches_tracked") or key == "fc.bias":
            assert not axes
        elif key == "conv1.weight":
            assert set(axes) == {0}
        elif key == "fc.weight":
            assert set(axes) == {1}
        else:
            assert set(axes) == ({0, 1} if val.dim() == 4 else {0}), key
    assert sym.perm_sizes(spec, state)["stage3"] == 32


def test_a_spec_survives_pickling():  # a fitted method holding one comes back from a worker process
    import pickle

    spec = sym.resnet20_spec()
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.axes_to_perm == spec.axes_to_perm and back.axis_blocks == spec.axis_blocks


@pytest.mark.parametrize("train", [False, True])
def test_permuted_resnet_is_the_same_function(x, train):
    state = _random_resnet(0).state_dict()
    spec = sym.resnet20_spec()
    perms = sym.random_permutations(spec, state, torch.Generator().manual_seed(1))
    assert all(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    permuted = sym.permute_state(state, perms, spec)
    assert any(not torch.equal(state[k], permuted[k]) for k in conv_layers())
    out, out_p = _outputs(state, x, train), _outputs(permuted, x, train)
    assert (out - out_p).abs().max() < 1e-5


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("pairs", [
    [("layer1.0.conv1.weight", 0)],  # next layer's input axis and the BN forgotten
    [("layer1.0.conv1.weight", 0), ("layer1.0.conv2.weight", 1)],  # only the BN forgotten
], ids=["conv-only", "no-bn"])
def test_mismatched_permutation_changes_the_function(x, train, pairs):
    state = _random_resnet(0).state_dict()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    bad = sym.permute_state(state, {"bad": perm}, sym.PermutationSpec({"bad": pairs}))
    out, out_bad = _outputs(state, x, train), _outputs(bad, x, train)
    assert (out - out_bad).abs().max() > 0.1 * out.abs().max()


def test_permute_then_inverse_is_exact():
    state = _random_resnet(3).state_dict()
    spec = sym.resnet20_spec()
    perms = sym.random_permutations(spec, state, torch.Generator().manual_seed(4))
    back = sym.permute_state(sym.permute_state(state, perms, spec), sym.invert(perms), spec)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_permute_state_leaves_input_alone_and_checks_names():
    state = init_state(8, 1, 0)
    before = {k: v.clone() for k, v in state.items()}
    spec = sym.resnet20_spec()
    sym.permute_state(state, sym.random_permutations(spec, state), spec)
    assert all(torch.equal(before[k], state[k]) for k in state)
    with pytest.raises(KeyError):
        sym.permute_state(state, {"nope": torch.arange(8)}, spec)
    with pytest.raises(ValueError):
        sym.PermutationSpec({"a": [("conv1.weight", 0)], "b": [("conv1.weight", 0)]})


def test_weight_matching_recovers_a_known_permutation():
    state_a = _random_resnet(5).state_dict()
    spec = sym.resnet20_spec()
    perms = sym.random_permutations(spec, state_a, torch.Generator().manual_seed(6))
    state_b = sym.permute_state(state_a, perms, spec)
    found = sym.weight_matching(state_a, state_b, spec)
    aligned = sym.permute_state(state_b, found, spec)
    assert all(torch.allclose(aligned[k].float(), state_a[k].float()) for k in state_a)
    assert all(torch.equal(found[n], sym.invert(perms)[n]) for n in perms)


def test_weight_matching_aligns_two_different_models(x):
    state_a, state_b = _random_resnet(7).state_dict(), _random_resnet(8).state_dict()
    spec = sym.resnet20_spec()
    aligned = sym.permute_state(state_b, sym.weight_matching(state_a, state_b, spec), spec)

    def similarity(s):
        return sum(sym.filter_similarity(state_a, s, k) for k in conv_layers())

    def distance(s):
        return sum((state_a[k] - s[k]).pow(2).sum().item() for k in spec.axes_to_perm)

    assert similarity(aligned) > similarity(state_b) + 0.1
    assert distance(aligned) < distance(state_b)
    for train in (False, True):
        assert (_outputs(state_b, x, train) - _outputs(aligned, x, train)).abs().max() < 1e-5


def _chain(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 3 * 3, 3),
    ).eval()


@pytest.mark.parametrize("fc", [None, "7.weight"])
def test_chain_spec_is_a_symmetry(fc):
    net = _chain(0)
    state = net.state_dict()
    spec = sym.chain_spec(["0.weight", "2.weight", "4.weight"], fc_name=fc)
    assert spec.names == (["P0", "P1"] if fc is None else ["P0", "P1", "P2"])
    perms = sym.random_permutations(spec, state, torch.Generator().manual_seed(0))
    permuted = sym.permute_state(state, perms, spec)
    other = _chain(1)
    other.load_state_dict(permuted)
    x = torch.randn(5, 2, 10, 10)
    with torch.no_grad():
        assert (net(x) - other(x)).abs().max() < 1e-5
    # a flattened [C, H, W] input of the linear layer is permuted in blocks of H*W
    found = sym.weight_matching(state, permuted, spec)
    assert all(torch.allclose(state[k], v) for k, v in sym.permute_state(permuted, found, spec).items())
    sizes = [4, 6] + ([5] if fc else [])
    assert sym.count_symmetries(spec, state) == pytest.approx(
        sum(math.log10(math.factorial(n)) for n in sizes))


def test_count_symmetries_resnet20():
    sizes = [16, 32, 64] + [16] * 3 + [32] * 3 + [64] * 3
    expected = sum(math.lgamma(n + 1) for n in sizes) / math.log(10)
    got = sym.count_symmetries(sym.resnet20_spec(), init_state(16, 3, 0))
    assert got == pytest.approx(expected, rel=1e-12)
    assert got > 300  # far more symmetries than atoms in the universe


# --- chapter helpers: accuracy, align, shuffle_table, matching_study ---------------------------


def test_accuracy_counts_argmax_hits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, -1.0], [0.5, 0.6]])
    assert demos.accuracy(logits, torch.tensor([0, 1, 1, 0])) == pytest.approx(0.5)
    assert demos.accuracy(logits, logits.argmax(1)) == pytest.approx(1.0)


def test_align_undoes_a_scramble_and_keeps_the_function(x):
    state = _random_resnet(3).state_dict()
    spec = sym.resnet20_spec()
    scrambled = sym.permute_state(state, sym.random_permutations(spec, state, torch.Generator().manual_seed(4)), spec)
    aligned = demos.align(state, scrambled, spec)
    for key in conv_layers():
        torch.testing.assert_close(aligned[key], state[key])
    assert (_outputs(aligned, x, False) - _outputs(scrambled, x, False)).abs().max() < 1e-5


def test_shuffle_table_rows_and_columns(x):
    net = _random_resnet(5).eval()
    state, spec = net.state_dict(), sym.resnet20_spec()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    results = {
        "consistent": demos.compare_outputs(net, state, sym.permute_group(state, spec, "layer1.0.inner", perm), x),
        "filters only": demos.compare_outputs(net, state, sym.permute_group(
            state, spec, "layer1.0.inner", perm, keys=["layer1.0.conv1.weight"]), x),
    }
    labels = torch.arange(len(x)) % 2
    table = demos.shuffle_table(results, labels)
    assert list(table.index) == ["consistent", "filters only"]
    assert list(table.columns) == ["max |Δ logit|", "predictions changed", "accuracy"]
    assert table.loc["consistent", "max |Δ logit|"] < 1e-5
    assert table.loc["consistent", "predictions changed"] == 0
    assert table.loc["filters only", "max |Δ logit|"] == pytest.approx(results["filters only"]["max_abs_diff"])
    for name, out in results.items():
        assert table.loc[name, "accuracy"] == pytest.approx(demos.accuracy(out["logits_b"], labels))
        assert 0 <= table.loc[name, "predictions changed"] <= 1
    assert "accuracy" not in demos.shuffle_table(results).columns


def test_matching_study_on_the_tiny_set(tiny_modelset):
    ms, spec = tiny_modelset, sym.resnet20_spec()
    study = demos.matching_study(ms, spec, task=0)
    assert study.other_task == len(ms.preset.tasks) - 1
    ref_row = ms.index_of(0, 0)
    for key, value in study.reference.items():
        torch.testing.assert_close(value, ms.state[key][ref_row])
    assert study.same_rows == [ms.index_of(0, s) for s in range(1, ms.preset.seeds)]
    assert study.other_rows == [ms.index_of(study.other_task, s) for s in range(1, ms.preset.seeds)]
    sim = study.similarity
    assert list(sim.columns) == list(demos.SIMILARITY_COLUMNS)
    assert list(sim.index) == [k.removesuffix(".weight") for k in ms.layers]
    assert ((sim.abs() <= 1 + 1e-9).all()).all()
    # the scrambled copy of the reference is matched back exactly
    assert (sim[demos.SIMILARITY_COLUMNS[-1]] - 1).abs().max() < 1e-5
    n_models, n_layers = ms.preset.seeds - 1, len(ms.layers)
    for name, values in study.per_model.items():
        assert values.shape == (n_models, n_layers)
        assert sim[name].to_numpy() == pytest.approx(values.mean(0))
    # matched columns agree with matched_similarities of one model
    stored, matched = demos.matched_similarities(study.reference, ms.state_of(study.same_rows[:1]), spec, ms.layers)
    assert study.per_model["same task, matched"][0] == pytest.approx(matched[0])
    assert study.per_model["same task, stored order"][0] == pytest.approx(stored[0])
    assert set(study.errors) == {"same task, matched", "other task, matched"}
    assert all(e.shape == (n_layers,) and (e >= 0).all() for e in study.errors.values())
    text = study.summary()
    assert f"{n_layers} layers, {n_models} models each" in text and "conv1: same task" in text
    with pytest.raises(ValueError):
        demos.matching_study(ms, spec, task=1, other_task=1)
