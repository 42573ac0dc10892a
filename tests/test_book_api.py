"""The chapter-level calls: preset selection, result cache, settings."""
import pytest

from lpsbook import book
from lpsbook.errors import LpsbookError
from lpsbook.presets import get_preset


def test_preset_from_environment(monkeypatch):
    monkeypatch.delenv("LPSBOOK_PRESET", raising=False)
    assert book.current_preset().name == "digits"
    monkeypatch.setenv("LPSBOOK_PRESET", "cifar100")
    assert book.current_preset().name == "cifar100"
    assert "cifar100" in book.banner() and "500 ResNet-20 models" in book.banner()
    monkeypatch.setenv("LPSBOOK_PRESET", "imagenet")
    with pytest.raises(LpsbookError, match="unknown preset 'imagenet'"):
        book.current_preset()


def test_cached_json_computes_once_per_settings(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    tiny = get_preset("tiny")
    first = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    again = book.cached_json("thing", {"a": 1}, compute, preset=tiny, root=tmp_path)
    other = book.cached_json("thing", {"a": 2}, compute, preset=tiny, root=tmp_path)
    assert first == again == {"value": 1} and other == {"value": 2} and len(calls) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_cifar100_runs_the_papers_protocol():
    p = get_preset("cifar100")
    assert (p.epochs, p.batch_size, p.lr, p.milestones, p.weight_decay, p.momentum) == (160, 128, 0.1, (80, 120), 1e-4, 0.9)
    assert p.tasks[:2] == ((0, 1), (2, 3)) and len(p.tasks) == 50 and p.seeds == 10
    branches = book.experiment_settings("branches", p)
    assert branches["config"]["epochs"] == 300 and branches["config"]["milestones"] == [150, 225]
    assert "layers" not in branches  # all 19 branches
    assert book.experiment_settings("classification", p)["seeds"] == 3
