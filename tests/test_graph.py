"""The graph learner reads the whole network and is invariant to every permutation of its spec."""
import pytest
import torch

from lpsbook.methods.graph import GraphLearner, graph_layout
from lpsbook.core.symmetry import permute_group, permute_state, random_permutations, resnet20_spec

FAST = dict(epochs=3, batch_size=4, hidden=8, embed_dim=8)


def _stack(states):
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


@pytest.fixture(scope="module")
def fitted(tiny_modelset):
    return GraphLearner(**FAST).fit(tiny_modelset.state, tiny_modelset.task_ids)


def test_layout_covers_every_tensor_of_resnet20(tiny_modelset):
    shapes = {k: tuple(v.shape[1:]) for k, v in tiny_modelset.state.items() if v.is_floating_point()}
    lay = graph_layout(resnet20_spec(), shapes)
    assert len(lay["sizes"]) == 12  # 3 residual streams + 9 block interiors
    assert len(lay["edges"]) == 18 + 2  # every 3x3 conv but the stem, and the two projection shortcuts
    assert [k for k, _ in lay["globals"]] == ["fc.bias"]
    placed = {k for g in lay["nodes"].values() for k, _, _ in g} | {e[0] for e in lay["edges"]} | {"fc.bias"}
    assert placed == set(shapes)


def test_embedding_is_invariant_to_every_group_of_the_spec(tiny_modelset, fitted):
    spec, g = resnet20_spec(), torch.Generator().manual_seed(0)
    ms = tiny_modelset
    permuted = _stack([permute_state(ms.state_dict(i), random_permutations(spec, ms.state_dict(i), g), spec)
                       for i in range(len(ms))])
    assert not torch.equal(permuted["layer3.1.conv1.weight"], ms.state["layer3.1.conv1.weight"])
    torch.testing.assert_close(fitted.embed(permuted), fitted.embed(ms.state), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fitted.scores(permuted), fitted.scores(ms.state), rtol=1e-4, atol=1e-5)


def test_a_permutation_that_breaks_the_spec_changes_the_embedding(tiny_modelset, fitted):
    """Reorder one conv's filters but not the BatchNorm and next conv that follow: a different network."""
    spec, ms = resnet20_spec(), tiny_modelset
    broken = []
    for i in range(len(ms)):
        state = ms.state_dict(i)
        n = state["layer1.0.conv1.weight"].shape[0]
        perm = torch.roll(torch.arange(n), 1)
        broken.append(permute_group(state, spec, "layer1.0.inner", perm, keys=["layer1.0.conv1.weight"]))
    broken = _stack(broken)
    assert (fitted.embed(broken) - fitted.embed(ms.state)).abs().max() > 1e-3


def test_keys_restrict_what_it_reads(tiny_modelset):
    m = GraphLearner(keys=("layer3.",), **FAST).fit(tiny_modelset.state, tiny_modelset.task_ids)
    assert all(k.startswith("layer3.") for k in m.keys_)
    assert set(m.layout_["sizes"]) == {"stage2", "stage3", "layer3.0.inner", "layer3.1.inner", "layer3.2.inner"}
    only_stage1 = {k: v for k, v in tiny_modelset.state.items() if not k.startswith("layer3.")}
    with pytest.raises(Exception, match="lack"):
        m.embed(only_stage1)
