"""The symmetry spec derived from a network's graph: exact on lpsbook's ResNet-20 and on torchvision's
architectures, caught when broken, usable by re-basin, and clear about what it cannot follow."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lpsbook.core._torchvision import import_torchvision
from lpsbook.core.derived_spec import check_spec, derive_spec
from lpsbook.core.errors import LpsbookError
from lpsbook.core.nets import ResNet20
from lpsbook.core.symmetry import (PermutationSpec, permute_state, random_permutations, resnet20_spec,
                                   weight_matching)

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _canonical(spec):
    """The spec without its names: the set of its permutations' pair sets."""
    return {frozenset(pairs) for pairs in spec.perm_to_axes.values()}


def test_resnet20_spec_is_derived_up_to_names():
    net = ResNet20(8, 3)
    spec = derive_spec(net, X)
    assert _canonical(spec) == _canonical(resnet20_spec())
    assert check_spec(net, spec, X, dtype=torch.float64) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("arch,groups", [("resnet18", 12), ("vgg11_bn", 10), ("mobilenet_v2", 25),
                                         ("densenet121", 120)])
def test_torchvision_architectures_pass_the_invariance_check(arch, groups):
    net = getattr(import_torchvision().models, arch)(num_classes=10)  # random weights, nothing downloaded
    spec = derive_spec(net, X)
    assert len(spec.names) == groups
    assert check_spec(net, spec, X) < 1e-4


def test_a_spec_broken_on_purpose_fails_the_check_and_names_the_permutation():
    net = import_torchvision().models.resnet18(num_classes=10)
    spec = derive_spec(net, X)
    pairs = {n: list(p) for n, p in spec.perm_to_axes.items()}
    pairs["layer1.0.conv1"] = [p for p in pairs["layer1.0.conv1"] if p[0] != "layer1.0.bn1.running_var"]
    with pytest.raises(LpsbookError, match="not a symmetry.*first culprit: layer1.0.conv1"):
        check_spec(net, PermutationSpec(pairs), X)


def test_rebasin_recovers_a_permutation_planted_in_a_torchvision_network():
    net = import_torchvision().models.resnet18(num_classes=10)
    spec = derive_spec(net, X)
    state = {k: v.double() for k, v in net.state_dict().items()}
    planted = permute_state(state, random_permutations(spec, state, torch.Generator().manual_seed(1)), spec)
    dist = lambda a: sum((a[k] - state[k]).square().sum().item() for k in spec.keys) ** 0.5  # noqa: E731
    assert dist(planted) > 1.0
    back = permute_state(planted, weight_matching(state, planted, spec), spec)
    assert dist(back) < 1e-9 * dist(planted)


class _Concat(nn.Module):
    """Two branches concatenated along the channels, then BatchNorm and a conv that read the blocks."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 6, 1)
        self.bn, self.c = nn.BatchNorm2d(10), nn.Conv2d(10, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 7)

    def forward(self, x):
        h = F.relu(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))
        return self.fc(F.adaptive_avg_pool2d(self.c(h), 4).flatten(1))


def test_a_concatenation_gives_one_block_per_input_and_the_check_passes():
    net = _Concat()
    spec = derive_spec(net, X)
    assert ("bn.weight", 0, 0, 4) in spec.perm_to_axes["a"] and ("c.weight", 1, 4, 10) in spec.perm_to_axes["b"]
    assert ("fc.weight", 1) in spec.perm_to_axes["c"]  # 5 channels, each a block of 16 flattened entries
    assert check_spec(net, spec, X, dtype=torch.float64) < 1e-9


class _Shared(nn.Module):
    """One conv applied twice (weight sharing): its input and output must move alike both times."""

    def __init__(self):
        super().__init__()
        self.stem, self.body, self.head = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 2)

    def forward(self, x):
        h = self.body(F.relu(self.body(F.relu(self.stem(x)))))
        return self.head(h.mean((2, 3)))


def test_a_module_called_twice_ties_its_input_to_its_output():
    net = _Shared()
    spec = derive_spec(net, X)
    assert len(spec.names) == 1
    assert check_spec(net, spec, X, dtype=torch.float64) < 1e-9


class _WithGroupNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm, self.mid = nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.mid(self.norm(self.conv(x))).mean((2, 3)))


def test_an_unknown_module_is_named_or_held_fixed_with_a_warning():
    net = _WithGroupNorm()
    with pytest.raises(LpsbookError, match=r"module 'norm' \(GroupNorm\).*unknown='fix'"):
        derive_spec(net, X)
    with pytest.warns(UserWarning, match="norm.*held fixed"):
        spec = derive_spec(net, X, unknown="fix")
    assert spec.names == ["mid"]  # conv's output meets GroupNorm: fixed; mid's output is still free
    assert check_spec(net, spec, X, dtype=torch.float64) < 1e-9


def test_a_grouped_convolution_is_held_fixed_and_a_depthwise_one_passes_channels_on():
    grouped = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 4, 1))
    with pytest.warns(UserWarning, match="grouped convolution"):
        assert derive_spec(grouped, X, unknown="fix").names == []
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, groups=8),
                        nn.Conv2d(16, 4, 1))
    spec = derive_spec(net, X)
    assert ("3.weight", 0) in spec.perm_to_axes["0"]  # depthwise x2: each channel's two filters move with it
    assert check_spec(net, spec, X, dtype=torch.float64) < 1e-9


def test_an_untraceable_network_gets_one_clear_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(LpsbookError, match="torch.fx cannot trace Branchy"):
        derive_spec(Branchy(), X)


def test_blocks_of_one_axis_permute_only_their_entries_and_may_not_overlap():
    spec = PermutationSpec({"p": [("w", 0, 0, 2)], "q": [("w", 0, 2, 5)]})
    w = torch.arange(5.0)
    out = permute_state({"w": w}, {"p": torch.tensor([1, 0]), "q": torch.tensor([2, 0, 1])}, spec)["w"]
    assert out.tolist() == [1.0, 0.0, 4.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="overlap"):
        PermutationSpec({"p": [("w", 0, 0, 3)], "q": [("w", 0, 2, 5)]})
    with pytest.raises(ValueError, match="claimed whole"):
        PermutationSpec({"p": [("w", 0)], "q": [("w", 0, 2, 5)]})
