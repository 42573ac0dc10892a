"""Model sets on disk: build, resume after a real interruption, verify, load."""
import hashlib
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lpsbook import cli
from lpsbook.training import modelset
from lpsbook.core.data import load_dataset
from lpsbook.core.errors import LpsbookError
from lpsbook.core.presets import get_preset


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_build_verify_and_load(tiny_modelset_dir, tiny_modelset):
    preset = get_preset("tiny")
    assert modelset.verify(tiny_modelset_dir)["models"] == preset.num_models == len(tiny_modelset)
    ms = tiny_modelset
    assert list(ms.meta[["task_id", "seed"]].itertuples(index=False, name=None)) == [
        (t, s) for t in range(3) for s in range(3)]
    for name, w in ms.conv_weights.items():
        assert w.shape[0] == 9 and w.dim() == 5
    assert len(ms.conv_weights) == 19
    meta = ms.meta.iloc[0]
    assert meta["torch_version"] == torch.__version__ and meta["preset_hash"] == preset.hash
    assert meta["weights_sha256"] == hashlib.sha256(
        (tiny_modelset_dir / "models" / meta["weights_file"]).read_bytes()).hexdigest()
    assert (ms.meta["test_acc"] > 0.6).all()  # well above chance even for the tiny recipe


def test_rebuilt_model_reproduces_recorded_accuracy(tiny_modelset):
    from lpsbook.core.data import normalise

    ms = tiny_modelset
    data = load_dataset(ms.preset)
    for i in (0, 4, 8):
        row = ms.meta.iloc[i]
        a, b = row["classes"]
        idx = data.task_indices((a, b), "test")
        x = normalise(data.test_images[idx], data.mean, data.std)
        y = (data.test_labels[idx] == b).long()
        with torch.no_grad():
            acc = (ms.model(i)(x).argmax(1) == y).float().mean().item()
        assert abs(acc - row["test_acc"]) < 1e-6


def test_verify_catches_a_flipped_byte(tiny_modelset_dir, tmp_path):
    d = _copy(tiny_modelset_dir, tmp_path)
    target = d / "models" / "t001_s02.safetensors"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    target.write_bytes(bytes(blob))
    with pytest.raises(LpsbookError, match="t001_s02.safetensors is corrupt"):
        modelset.verify(d)
    assert cli.main(["modelset", "verify", str(d)]) == 2


def test_verify_catches_truncated_edited_missing_and_foreign_files(tiny_modelset_dir, tmp_path, capsys):
    d = _copy(tiny_modelset_dir, tmp_path)
    w = d / "models" / "t000_s00.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    meta = d / "models" / "t002_s01.json"
    meta.write_text(meta.read_text().replace('"seed": 1', '"seed": 2'))
    (d / "models" / "t001_s01.json").unlink()
    (d / "models" / "stray.bin").write_bytes(b"x")
    assert cli.main(["modelset", "verify", str(d)]) == 2
    err = capsys.readouterr().err
    for needle in ("t000_s00.safetensors is corrupt or truncated", "t002_s01.json is corrupt",
                   "missing model t001_s01", "foreign file", "stray.bin"):
        assert needle in err
    assert "Traceback" not in err


def test_cli_build_verify_info(tmp_path, capsys):
    out = tmp_path / "ms"
    assert cli.main(["modelset", "build", "--preset", "tiny", "--out", str(out), "--device", "cpu",
                     "--shard", "0/3"]) == 0
    assert len(list((out / "models").glob("*.json"))) == 3
    assert cli.main(["modelset", "verify", str(out)]) == 2  # incomplete
    for k in (1, 2):
        assert cli.main(["modelset", "build", "--preset", "tiny", "--out", str(out), "--shard", f"{k}/3"]) == 0
    assert cli.main(["modelset", "verify", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["modelset", "info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "9 models in 3 tasks" in table and "(3, 4)" in table


def test_errors_for_user_mistakes(tmp_path, capsys):
    assert cli.main(["modelset", "build", "--preset", "resnet9000", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'resnet9000'" in capsys.readouterr().err
    assert cli.main(["modelset", "build", "--preset", "tiny", "--out", str(tmp_path / "y"), "--shard", "3/3"]) == 2
    assert "--shard must be K/N" in capsys.readouterr().err
    assert cli.main(["modelset", "verify", str(tmp_path)]) == 2
    assert "is not a model set" in capsys.readouterr().err


def test_foreign_preset_in_output_folder(tiny_modelset_dir, tmp_path):
    d = _copy(tiny_modelset_dir, tmp_path)
    with pytest.raises(LpsbookError, match="holds a model set of preset 'tiny'"):
        modelset.build(get_preset("tiny").with_(seeds=2), d, progress=False)


def test_wrong_architecture_is_refused(tiny_modelset_dir, tmp_path):
    from safetensors.torch import save

    d = _copy(tiny_modelset_dir, tmp_path)
    target = d / "models" / "t000_s01.safetensors"
    blob = save({"conv1.weight": torch.zeros(3, 3, 3, 3)})
    target.write_bytes(blob)
    meta_path = d / "models" / "t000_s01.json"
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    meta_path.write_bytes(modelset.sealed_meta(meta))
    with pytest.raises(LpsbookError, match="wrong architecture"):
        modelset.load(d)


def test_diverging_training_stops_with_a_clear_message(tmp_path):
    preset = get_preset("tiny").with_(lr=1e12, tasks=((0, 1),), seeds=1, epochs=1)
    with pytest.raises(LpsbookError, match="diverged.*task 0 seed 0.*learning rate"):
        modelset.build(preset, tmp_path / "nan", progress=False)
    assert not list((tmp_path / "nan" / "models").glob("*.json"))


@pytest.mark.slow
def test_resume_after_killing_the_build(tmp_path):
    """Kill a real build process mid-way; the rerun completes it and keeps what was saved."""
    out = tmp_path / "ms"
    cmd = [sys.executable, "-m", "lpsbook.cli", "modelset", "build", "--preset", "tiny",
           "--out", str(out), "--device", "cpu", "--pack-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "models").glob("*.json"))) < 2 if out.exists() else True:
        if time.time() > deadline:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.json")}
    assert 2 <= len(saved) < 9, "the build should have been killed part-way"
    with pytest.raises(LpsbookError, match="missing model"):
        modelset.verify(out)
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert modelset.verify(out)["models"] == 9
    after = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.json")}
    assert all(after[name] == t for name, t in saved.items()), "saved models were trained again"
    assert not list((out / "models").glob(".*.tmp"))


# --- CIFAR-100, on small files in the real format, written here ------------------------------

def _write_fake_cifar(root: Path, per_class: int = 6, classes: int = 4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        labels = np.repeat(np.arange(classes), per_class).tolist()
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        data[:, :1024] //= np.array(labels, dtype=np.uint8)[:, None] + 1  # classes differ in red
        entry = {"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels),
                 "filenames": [f"{i}.png" for i in range(len(labels))], "batch_label": split}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    names = {"fine_label_names": [f"class{c}" for c in range(100)], "coarse_label_names": ["all"]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(names, f, protocol=2)
    return folder


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    from lpsbook.core._torchvision import import_torchvision

    tv = import_torchvision()
    folder = _write_fake_cifar(tmp_path / "data")
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in ("train", "test", "meta")}
    cls = tv.datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(cls, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(cls, "meta", dict(cls.meta, md5=md5["meta"]))
    return tmp_path / "data"


def test_cifar100_loads_through_torchvision(fake_cifar):
    data = load_dataset(get_preset("cifar100"), fake_cifar)
    assert data.train_images.shape == (24, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.class_names[:2] == ["class0", "class1"]
    assert sorted(data.task_indices((0, 1), "test").tolist()) == list(range(12))


def test_cifar100_model_set_on_small_files(fake_cifar, tmp_path):
    preset = get_preset("cifar100").with_(name="cifar100-small", tasks=((0, 1), (2, 3)), seeds=1, width=4,
                                           epochs=1, batch_size=8, milestones=(), pack_size_cpu=2)
    out = modelset.build(preset, tmp_path / "ms", data_dir=fake_cifar, progress=False)
    ms = modelset.load(out)
    assert ms.conv_weights["conv1.weight"].shape == (2, 4, 3, 3, 3)
    assert ms.meta["class_names"].iloc[1] == ["class2", "class3"]


def test_corrupt_cifar_files_give_a_clear_error(tmp_path):
    _write_fake_cifar(tmp_path)  # checksums do not match torchvision's
    with pytest.raises(LpsbookError, match="could not be read"):
        load_dataset(get_preset("cifar100"), tmp_path)


def test_missing_cifar_says_where_and_how(tmp_path, capsys):
    code = cli.main(["modelset", "build", "--preset", "cifar100", "--out", str(tmp_path / "ms"),
                     "--data-dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path / "nowhere" / "cifar-100-python") in err and "--download" in err


def test_resume_in_another_precision_is_refused(tiny_modelset_dir, tmp_path, monkeypatch):
    """A set half built in float32 is not finished in bf16 (or the reverse) under one preset hash."""
    out = _copy(tiny_modelset_dir, tmp_path)
    (out / "models" / "t002_s02.json").unlink()
    meta = json.loads((out / "models" / "t000_s00.json").read_text())
    assert meta["precision"] == "float32" and meta["code_version"] and meta["cpu"]
    monkeypatch.setattr(modelset, "mixed_precision", lambda preset, device: True)
    with pytest.raises(LpsbookError, match="trained in float32.*would train the rest in bf16.*another --out"):
        modelset.build("tiny", out, device="cpu", progress=False)
    assert not (out / "models" / "t002_s02.json").exists()  # nothing trained
