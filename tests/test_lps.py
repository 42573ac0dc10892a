"""The second-order network: exact invariances, training, input checks."""
import pytest
import torch

from lpsbook.core.errors import LpsbookError
from lpsbook.methods.lps import LPSConfig, SecondOrderNet, layer_shapes
from lpsbook.core.symmetry import permute_state, random_permutations, resnet20_spec


def _all_branches(ms, **kw):
    shapes = layer_shapes(ms.conv_weights)
    return SecondOrderNet(shapes, 3, branch_weights={n: 1.0 for n in shapes}, **kw)


def _independently_permuted(conv_weights, seed=0):
    """Each layer's filters and (from layer 2 on) input channels shuffled independently."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, w) in enumerate(conv_weights.items()):
        w = w[:, torch.randperm(w.shape[1], generator=g)]
        if i > 0:
            w = w[:, :, torch.randperm(w.shape[2], generator=g)]
        out[name] = w
    return out


def test_every_branch_is_invariant_to_filter_and_channel_order(tiny_modelset):
    ms = tiny_modelset
    net = _all_branches(ms, seed=1)
    shuffled = _independently_permuted(ms.conv_weights)
    with torch.no_grad():
        for name, branch in zip(net.names, net.branches):
            a = branch(ms.conv_weights[name])
            b = branch(shuffled[name])
            assert not torch.equal(ms.conv_weights[name], shuffled[name])
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(net.embed(ms.conv_weights), net.embed(shuffled), rtol=1e-5, atol=1e-6)


def test_invariant_to_functionally_equivalent_networks(tiny_modelset):
    """A network permuted as a whole (residual structure respected) gets the same features."""
    ms = tiny_modelset
    spec = resnet20_spec()
    states = [permute_state(ms.state_dict(i), random_permutations(spec, ms.state_dict(i),
                            torch.Generator().manual_seed(i)), spec) for i in range(len(ms))]
    permuted = {n: torch.stack([s[n] for s in states]) for n in ms.layers}
    net = _all_branches(ms)
    torch.testing.assert_close(net.embed(ms.conv_weights), net.embed(permuted), rtol=1e-5, atol=1e-6)
    plain = _all_branches(ms, align_filters=False, align_channels=False)
    assert (plain.embed(ms.conv_weights) - plain.embed(permuted)).abs().max() > 1e-3


@pytest.mark.parametrize("filters,channels", [(False, True), (True, False)])
def test_each_alignment_switch_matters(tiny_modelset, filters, channels):
    ms = tiny_modelset
    name = ms.layers[4]
    net = SecondOrderNet(layer_shapes(ms.conv_weights), 3, {name: 1.0},
                         align_filters=filters, align_channels=channels)
    shuffled = _independently_permuted(ms.conv_weights)
    assert (net.embed(ms.conv_weights) - net.embed(shuffled)).abs().max() > 1e-4


def test_default_is_first_branch_only_and_eq9_mixture(tiny_modelset):
    ms = tiny_modelset
    shapes = layer_shapes(ms.conv_weights)
    net = SecondOrderNet(shapes, 3)
    assert net.names == ["conv1.weight"]
    two = SecondOrderNet(shapes, 3, {ms.layers[0]: 1.0, ms.layers[5]: 3.0})
    w = ms.conv_weights
    with torch.no_grad():
        q = [torch.softmax(z, -1) for z in two.branch_logits(w)]
        expected = torch.log((1.0 * q[0] + 3.0 * q[1]) / 4.0)
        torch.testing.assert_close(two.log_probs(w), expected)


def test_training_separates_the_tasks(tiny_modelset):
    ms = tiny_modelset
    labels = ms.task_ids
    net = SecondOrderNet(layer_shapes(ms.conv_weights), 3)
    before = net.loss(ms.conv_weights, labels).item()
    net.fit(ms.conv_weights, labels, config=LPSConfig(epochs=60, batch_size=3, lr=0.5, milestones=()))
    after = net.loss(ms.conv_weights, labels).item()
    assert after < 0.5 * before
    emb = net.embed(ms.conv_weights)
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(ms)))


def test_bad_input_is_named(tiny_modelset):
    ms = tiny_modelset
    shapes = layer_shapes(ms.conv_weights)
    with pytest.raises(LpsbookError, match="unknown layers"):
        SecondOrderNet(shapes, 3, {"fc.weight": 1.0})
    net = SecondOrderNet(shapes, 3)
    with pytest.raises(LpsbookError, match="labels must lie"):
        net.fit(ms.conv_weights, torch.full((len(ms),), 7))
    with pytest.raises(LpsbookError, match="one per label"):
        net.fit(ms.conv_weights, torch.zeros(2, dtype=torch.long))
