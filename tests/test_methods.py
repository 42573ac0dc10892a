"""The one interface: every registered similarity method, built by id, behaves the same way."""
import pytest
import torch

from lpsbook.methods import registry
from lpsbook.core.errors import LpsbookError
from lpsbook.methods.estimator import SimilarityMethod
from lpsbook.methods.lps import LPSConfig

FAST = LPSConfig(epochs=20, batch_size=4, lr=0.05, milestones=())


def _rows(state, rows):
    rows = torch.as_tensor(rows)
    return {k: v[rows] for k, v in state.items()}


@pytest.mark.parametrize("key", list(registry.REGISTRY))
def test_every_registered_method_has_the_interface(tiny_modelset, key):
    ms = tiny_modelset
    m = registry.make(key, ms, seed=0, config=FAST)
    assert isinstance(m, SimilarityMethod) and m.reads in ("weights", "activations")
    test = _rows(ms.state, [0, 4, 8, 5])
    with pytest.raises(LpsbookError, match="fit"):
        m.scores(test)
    with pytest.raises(LpsbookError, match="fit"):
        m.embed(test)
    labels = ms.task_ids * 10 + 1  # arbitrary class values: 1, 11, 21
    assert m.fit(ms.state, labels) is m
    assert m.classes_.tolist() == [1, 11, 21]
    s, e, p = m.scores(test), m.embed(test), m.predict(test)
    assert s.shape == (4, 3) and torch.isfinite(s).all()
    assert set(p.tolist()) <= {1, 11, 21} and p.shape == (4,)
    assert e.ndim == 2 and e.shape[0] == 4
    torch.testing.assert_close(e.norm(dim=1), torch.ones(4, dtype=e.dtype))
    tasks, sim = m.task_similarity(test, labels[[0, 4, 8, 5]])
    assert sim.shape == (len(tasks), len(tasks)) and torch.isfinite(sim).all()
    torch.testing.assert_close(sim, sim.T)
    with pytest.raises(LpsbookError, match="labels"):
        registry.make(key, ms, config=FAST).fit(ms.state, labels[:5])


def test_ids_and_display_names():
    names = [e.name for e in registry.REGISTRY.values()]
    assert len(set(names)) == len(names)  # results are keyed by display name: no two alike
    for key, entry in registry.REGISTRY.items():
        assert registry.method_id(key) == key == registry.method_id(entry.name)
        assert registry.display_name(key) == entry.name
    assert registry.display_name("lps") == "LPS"
    with pytest.raises(LpsbookError, match="unknown method 'nope'"):
        registry.make("nope", None)


def test_lps_is_a_registered_member_that_learns(tiny_modelset):
    """LPS through the registry learns the tiny set's tasks (its training models are separable)."""
    ms = tiny_modelset
    m = registry.make("lps", ms, config=LPSConfig(epochs=60, batch_size=3, lr=0.5, milestones=()))
    m.fit(ms.conv_weights, ms.task_ids)
    assert (m.predict(ms.conv_weights) == ms.task_ids).float().mean() > 0.5
    off = registry.make("frobenius", ms)
    assert not off.align_filters and not off.align_channels
