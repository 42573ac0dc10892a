"""Probing reads the function: invariant to every weight symmetry, and it learns from the outputs."""
import torch

from lpsbook.methods.probing import Probing, model_outputs
from lpsbook.core.symmetry import permute_group, permute_state, random_permutations, resnet20_spec

FAST = dict(n_probes=2, epochs=3, batch_size=4, hidden=8, embed_dim=8)


def _stack(states):
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def test_outputs_match_each_model_run_alone(tiny_modelset):
    ms = tiny_modelset
    x = torch.randn(3, 1, 8, 8)
    out = model_outputs(ms.state, x)
    for i in (0, 4):
        net = ms.model(i)
        with torch.no_grad():
            torch.testing.assert_close(out[i, :, -2:], net(x), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out[i, :, :-2], net.features(x), rtol=1e-4, atol=1e-5)


def test_probing_is_invariant_to_permutations_and_sees_broken_ones(tiny_modelset):
    ms, spec, g = tiny_modelset, resnet20_spec(), torch.Generator().manual_seed(0)
    m = Probing(image_shape=(1, 8, 8), **FAST).fit(ms.state, ms.task_ids)
    assert m.probes_.shape == (2, 1, 8, 8)
    permuted = _stack([permute_state(ms.state_dict(i), random_permutations(spec, ms.state_dict(i), g), spec)
                       for i in range(len(ms))])
    torch.testing.assert_close(m.embed(permuted), m.embed(ms.state), rtol=1e-4, atol=1e-4)
    n = ms.state["layer1.0.conv1.weight"].shape[1]
    broken = _stack([permute_group(ms.state_dict(i), spec, "layer1.0.inner", torch.roll(torch.arange(n), 1),
                                   keys=["layer1.0.conv1.weight"]) for i in range(len(ms))])
    assert (m.embed(broken) - m.embed(ms.state)).abs().max() > 1e-3
