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
