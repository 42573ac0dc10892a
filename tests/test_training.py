"""Packed training gives every model exactly what it would get alone."""
import pytest
import torch

from lpsbook.core.data import load_digits
from lpsbook.core.nets import PackedResNet20, ResNet20, conv_layers, init_state
from lpsbook.core.presets import get_preset
from lpsbook.training.packed import (Recipe, SampleStream, augment_batch, model_rng_seed, pad_images, train_alone,
                              train_pack)

JOBS = [(0, 0), (1, 1), (2, 2), (0, 5)]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_resnet20_has_19_branch_convs():
    net = ResNet20(width=8, in_channels=1)
    names = conv_layers()
    assert len(names) == 19 and len(set(names)) == 19
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    assert all(shapes[n][-2:] == (3, 3) for n in names)
    assert shapes["conv1.weight"] == (8, 1, 3, 3) and shapes["layer3.2.conv2.weight"] == (32, 32, 3, 3)
    assert {n for n, s in shapes.items() if len(s) == 4 and s[-1] == 1} == {
        "layer2.0.shortcut.0.weight", "layer3.0.shortcut.0.weight"}


def test_pack_roundtrip_and_forward_match():
    states = [init_state(4, 1, s) for s in range(3)]
    packed = PackedResNet20.from_state_dicts(states, 4, 1)
    for s, back in zip(states, packed.state_dicts()):
        assert _max_diff(s, back) == 0
    x = torch.randn(5, 3, 1, 8, 8)  # [batch, model, channel, H, W]
    out = packed.eval()(x.reshape(5, 3, 8, 8))
    for m, s in enumerate(states):
        net = ResNet20(4, 1).eval()
        net.load_state_dict(s)
        torch.testing.assert_close(out[:, m], net(x[:, m]), rtol=1e-5, atol=1e-5)


def test_packed_equals_alone_float64(digits):
    """In float64 the packed and the plain loop agree to round-off."""
    preset = get_preset("tiny")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        recipe = Recipe(preset, digits, torch.device("cpu"))
        packed = train_pack(preset, digits, JOBS, steps=6, recipe=recipe)
        for (t, s), res in zip(JOBS, packed):
            alone = train_alone(preset, digits, t, s, steps=6, recipe=recipe).state_dict()
            assert _max_diff(alone, res.state) < 1e-9, (t, s)
            # and training really moved the weights
            assert _max_diff(alone, init_state(preset.width, 1, model_rng_seed(t, s))) > 1e-3
    finally:
        torch.set_default_dtype(old)


def test_packed_equals_alone_float32_first_steps(digits):
    preset = get_preset("tiny")
    recipe = Recipe(preset, digits, torch.device("cpu"))
    packed = train_pack(preset, digits, JOBS, steps=2, recipe=recipe)
    for (t, s), res in zip(JOBS, packed):
        alone = train_alone(preset, digits, t, s, steps=2, recipe=recipe).state_dict()
        assert _max_diff(alone, res.state) < 1e-4


def test_model_does_not_depend_on_its_pack_mates(digits):
    preset = get_preset("tiny")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        a = train_pack(preset, digits, [(0, 5), (1, 1)], steps=4)[0]
        b = train_pack(preset, digits, [(2, 3), (1, 7), (0, 5)], steps=4)[2]
        assert _max_diff(a.state, b.state) < 1e-9
        assert a.test_acc == b.test_acc
    finally:
        torch.set_default_dtype(old)


def test_augmentation_crops_and_flips():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    padded = pad_images(images, 1)
    idx = torch.tensor([0, 1, 1])
    dy, dx = torch.tensor([1, 0, 1]), torch.tensor([1, 0, 1])
    flip = torch.tensor([False, False, True])
    out = augment_batch(padded, idx, dy, dx, flip, 4)
    assert torch.equal(out[0], images[0])  # centred crop, no flip
    assert torch.equal(out[1, 0, 1:, 1:], images[1, 0, :3, :3]) and out[1, 0, 0].sum() == 0
    assert torch.equal(out[2], images[1].flip(-1))


def test_sample_stream_is_reproducible_and_covers_each_epoch():
    idx = torch.arange(10, 20)
    a, b = SampleStream(idx, 3, 1, True), SampleStream(idx, 3, 1, True)
    first = a.take(10)
    assert torch.equal(first[0], b.take(10)[0])
    assert sorted(first[0].tolist()) == list(range(10, 20))
    assert not SampleStream(idx, 4, 1, True).take(10)[0].equal(first[0])


def test_mixed_precision_only_where_asked_and_native():
    from lpsbook.core.runtime import cpu_has_native_bf16, mixed_precision

    tiny = get_preset("tiny")
    assert not mixed_precision(tiny, "cpu")  # float32 unless the preset asks
    assert mixed_precision(tiny.with_(cpu_bf16=True), "cpu") == cpu_has_native_bf16()
    assert mixed_precision(tiny, "cuda")  # always on a GPU


@pytest.mark.skipif(not __import__("lpsbook.core.runtime").core.runtime.cpu_has_native_bf16(),
                    reason="this CPU has no native bf16")
def test_bf16_path_learns_as_well_as_float32(digits):
    """bf16 autocast + channels_last rounds differently (the weights differ), but the models
    learn their tasks as well as in float32, and the weights stay float32."""
    preset = get_preset("tiny").with_(cpu_bf16=True, epochs=6, milestones=(4,))
    jobs = [(t, s) for t in range(3) for s in range(2)]
    fast = train_pack(preset, digits, jobs)
    exact = train_pack(preset.with_(cpu_bf16=False), digits, jobs)
    assert all(v.dtype == torch.float32 for v in fast[0].state.values() if v.is_floating_point())
    assert not torch.equal(fast[0].state["conv1.weight"], exact[0].state["conv1.weight"])
    acc = lambda runs: sum(r.test_acc for r in runs) / len(runs)
    assert acc(fast) > 0.8 and abs(acc(fast) - acc(exact)) < 0.05


def test_a_diverged_model_is_retrained_with_the_next_seed(monkeypatch):
    from lpsbook.training import packed
    from lpsbook.training.packed import SEED_STRIDE, TrainedModel, train_with_retries

    calls = []

    def fake_pack(preset, dataset, jobs, device, progress=None, recipe=None):
        calls.append(list(jobs))
        return [TrainedModel(t, s, {}, 1.0, 1.0, len(calls) == 1 and t == 1) for t, s in jobs]

    monkeypatch.setattr(packed, "train_pack", fake_pack)
    preset = get_preset("tiny").with_(seed_offset=100)
    done = {(r.task_id, r.seed): train_seed for r, train_seed, _ in train_with_retries(preset, None, [(0, 2), (1, 3)])}
    assert calls == [[(0, 102), (1, 103)], [(1, 103 + SEED_STRIDE)]]
    assert done == {(0, 2): 102, (1, 3): 103 + SEED_STRIDE}  # the set's seed is kept, the training seed recorded
