"""Checkpoints: tensors and plain data only (``torch.load(weights_only=True)``), a crafted pickle refused
before anything in it runs, a missing, damaged or foreign file named with its real reason, and the
random generators restored on resume."""
import numpy as np
import pytest
from tests.peers import require_peers  # noqa: E402

require_peers("torch")  # the train extra: the core stack (no torch) skips this file
pytestmark = pytest.mark.peers("torch")

import torch  # noqa: E402


class _Payload:
    """A pickled object that runs a shell command when it is loaded (a crafted checkpoint)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    from models.training.checkpoint import load_checkpoint

    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": {}, "config": _Payload(marker)}, crafted)
    with pytest.raises(SystemExit, match="crafted.pt: refused.*pickled object"):
        load_checkpoint(crafted)
    assert not marker.exists()
    import pickle  # a bare pickle file (not torch's zip format) is refused the same way

    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))
    with pytest.raises(SystemExit, match="bare.pt: refused"):
        load_checkpoint(bare)
    assert not marker.exists()


def test_a_missing_damaged_or_foreign_checkpoint_is_named_with_its_real_reason(tmp_path):
    """Issue 31: no FileNotFoundError, OSError (a truncated zip) or IndexError traceback, and the
    'pickled object' reason only for a well-formed pickle that names other globals."""
    from models.training.checkpoint import CheckpointError, load_checkpoint

    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(64, 64)}, "epoch": 3}, whole)
    raw = whole.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "pickled.pt").write_bytes(b"\x80\x02" + bytes(np.random.default_rng(1).integers(0, 256, 5000,
                                                                                          dtype=np.uint8)))
    torch.save([1, 2], tmp_path / "list.pt")
    expected = {"nosuch.pt": "nosuch.pt: no such checkpoint file",
                "cut.pt": "cut.pt: a damaged checkpoint: it looks truncated",
                "garbage.pt": "garbage.pt: not a PyTorch checkpoint",
                "notes.pt": "notes.pt: not a PyTorch checkpoint",
                "empty.pt": "empty.pt: is empty",
                "pickled.pt": "pickled.pt: a damaged checkpoint",
                "list.pt": "list.pt: not a checkpoint of this project's training"}
    for name, start in expected.items():
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(tmp_path / name)
        assert str(refused.value).startswith(str(tmp_path / start)), str(refused.value)
        assert "pickled object" not in str(refused.value)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    for seed in range(40):  # random bytes, some behind a zip or pickle header: one message, never a traceback
        noise = bytes(np.random.default_rng(seed).integers(0, 256, 3000, dtype=np.uint8))
        (tmp_path / "noise.pt").write_bytes([b"", b"\x80\x02", b"PK\x03\x04"][seed % 3] + noise)
        with pytest.raises(CheckpointError, match="noise.pt: "):
            load_checkpoint(tmp_path / "noise.pt")
    import pickle  # pickles naming os.system in protocols torch's weights-only reader stops at earlier

    for protocol in (0, 4):
        (tmp_path / "other.pt").write_bytes(pickle.dumps({"model": _Payload(tmp_path / "ran")}, protocol=protocol))
        with pytest.raises(CheckpointError, match=r"other.pt: refused.*pickled object.*it names \w+\.system"):
            load_checkpoint(tmp_path / "other.pt")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("tool", ["train", "export"])
def test_train_evaluate_and_export_name_a_bad_checkpoint_and_exit_2(tool, tmp_path, capsys):
    from models.tools import export, train

    cut = tmp_path / "cut.pt"
    torch.save({"model": {"w": torch.zeros(64, 64)}, "epoch": 3}, tmp_path / "whole.pt")
    cut.write_bytes((tmp_path / "whole.pt").read_bytes()[:2000])
    for path, reason in [(tmp_path / "nosuch.pt", "no such checkpoint file"), (cut, "looks truncated"),
                         (tmp_path / "whole.pt", "no run configuration")]:
        argv = (["--model", "r18_ffld", "--evaluate", str(path)] if tool == "train" else
                ["--model", "r18_ffld", "--checkpoint", str(path), "--out", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as exit_info:
            (train.main if tool == "train" else export.main)(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: ") and reason in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_is_tensors_and_plain_data_and_restores_the_rngs(tmp_path):
    import random

    from models.training.checkpoint import load_checkpoint, restore, rng_state, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, optimizer, scheduler, 1, 5, np.float64(0.05), {"train": {"lr": 1e-3}},
                    {"val": {"dark": {"nme": np.float32(0.04)}}, "points": np.arange(3)})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    expected = (torch.rand(2), np.random.rand(2), random.random())
    state = load_checkpoint(path)
    assert type(state["best"]) is float and state["metrics"]["points"] == [0, 1, 2]
    assert type(state["metrics"]["val"]["dark"]["nme"]) is float
    torch.rand(5), np.random.rand(5), random.random()
    restore(state, model, optimizer, scheduler)
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    # a checkpoint written before the RNG states were plain data (numpy's state as a tuple
    # holding an array) still loads with weights_only and restores
    legacy = dict(state, rng=dict(rng_state(), numpy=np.random.get_state()))
    torch.save(legacy, tmp_path / "legacy.pt")
    expected = np.random.rand(3)
    np.random.rand(7)
    restore(load_checkpoint(tmp_path / "legacy.pt"), model)
    assert np.array_equal(np.random.rand(3), expected)
