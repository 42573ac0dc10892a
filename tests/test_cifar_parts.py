"""scripts/cifar_parts.py: the data in parts for a machine that takes one part per transfer, and back."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cifar_parts", REPO / "scripts" / "cifar_parts.py")
cifar_parts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar_parts)


def test_split_and_join_round_trip_and_refuse_a_damaged_part(tmp_path):
    blob = bytes(range(256)) * 9000  # 2.2 MiB
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cifar100.npz").write_bytes(blob)
    parts = cifar_parts.split(tmp_path / "src", tmp_path / "parts", max_mib=1)
    assert len(parts) == 3 and all(p["bytes"] <= 2 ** 20 for p in parts)
    joined = cifar_parts.join(tmp_path / "parts", tmp_path / "dest")
    assert joined.read_bytes() == blob
    assert (tmp_path / "dest" / "SHA256SUMS").read_text().split()[0] == cifar_parts.sha256(blob)
    damaged = bytearray((tmp_path / "parts" / "part-001").read_bytes())
    damaged[10] ^= 1
    (tmp_path / "parts" / "part-001").write_bytes(bytes(damaged))
    with pytest.raises(SystemExit, match="part-001 is damaged"):
        cifar_parts.join(tmp_path / "parts", tmp_path / "dest2")
    (tmp_path / "parts" / "part-002").unlink()
    with pytest.raises(SystemExit, match="part-001 is damaged|part-002 is missing"):
        cifar_parts.join(tmp_path / "parts", tmp_path / "dest2")
    assert not (tmp_path / "dest2" / "cifar100.npz").exists()
