"""engines.gpu_carry: a real file split into parts under 60 MiB, joined back and verified by sha256."""

import json

import pytest

from engines import gpu_carry

REAL_FILE = "assets/r18_ffld.onnx"  # 16 MB, a stand-in for the 256 MB wheel only in size


def test_split_join_round_trip(tmp_path):
    parts = gpu_carry.split(REAL_FILE, tmp_path / "parts", part_size=3 * gpu_carry.MiB)
    assert len(parts) > 3 and all(p.stat().st_size <= 3 * gpu_carry.MiB for p in parts)
    stage = tmp_path / "stage"
    for part in parts:  # one part per device call
        gpu_carry.stash([part], stage)
    gpu_carry.stash([tmp_path / "parts" / gpu_carry.MANIFEST], stage)
    joined = gpu_carry.join(stage, tmp_path / "joined.onnx")
    assert gpu_carry.sha256(joined) == gpu_carry.sha256(REAL_FILE)


def test_join_names_missing_and_damaged_parts(tmp_path):
    parts = gpu_carry.split(REAL_FILE, tmp_path, part_size=4 * gpu_carry.MiB)
    parts[1].unlink()
    with pytest.raises(ValueError, match=parts[1].name):
        gpu_carry.join(tmp_path, tmp_path / "x")
    gpu_carry.split(REAL_FILE, tmp_path, part_size=4 * gpu_carry.MiB)
    data = bytearray(parts[2].read_bytes())
    data[100] ^= 1
    parts[2].write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        gpu_carry.join(tmp_path, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert json.loads((tmp_path / gpu_carry.MANIFEST).read_text())["name"] == "r18_ffld.onnx"


def test_parts_must_stay_under_the_carry_limit(tmp_path):
    with pytest.raises(ValueError, match="60 MiB"):
        gpu_carry.split(REAL_FILE, tmp_path, part_size=64 * gpu_carry.MiB)
