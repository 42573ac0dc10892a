import pytest
import torch

torch.set_num_threads(1)  # tiny workloads: one thread is faster than two on 2 cores


@pytest.fixture(scope="session")
def tiny_modelset_dir(tmp_path_factory):
    """The tiny preset's model set, built once per test session."""
    from lpsbook.training import modelset

    out = tmp_path_factory.mktemp("ms") / "tiny"
    modelset.build("tiny", out, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_modelset(tiny_modelset_dir):
    from lpsbook.training import modelset

    return modelset.load(tiny_modelset_dir)


def related_pairs(score_of, folds, related_of):
    """Held-out task pairs per fold, as transferability keeps them (``related_pairs``): every ordered pair
    of a fold's tasks, its score and whether the two tasks are related. A helper of the tests
    (``from conftest import related_pairs``), not a fixture."""
    out = []
    for tasks in folds:
        pairs = [(s, t) for t in tasks for s in tasks if s != t]
        out.append({"source": [s for s, _ in pairs], "target": [t for _, t in pairs],
                    "score": [score_of(s, t) for s, t in pairs], "related": [related_of(s, t) for s, t in pairs]})
    return out
