"""Issue 31: no output is ever an input or another output; the refusal names both paths, exits 2,
and comes before anything is written."""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.output_paths import OutputCollision, check_output_folder, check_outputs


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture
def video(tmp_path, talking_clip):
    copy = tmp_path / "X.mp4"
    shutil.copyfile(talking_clip, copy)
    return copy


def _alias(kind, target, folder):
    """A second name for ``target``: the same path written differently, a symlink or a hard link."""
    if kind == "dot":
        return str(folder / "." / target.name)
    if kind == "dotdot":
        return str(folder / "sub" / ".." / target.name)
    if kind == "symlink":
        link = folder / f"link_{target.stem}{target.suffix}"
        link.symlink_to(target)
        return str(link)
    if kind == "hardlink":
        link = folder / f"hard_{target.stem}{target.suffix}"
        os.link(target, link)
        return str(link)
    return str(target)


@pytest.mark.parametrize("kind", ["plain", "dot", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("option", ["--landmarks", "--out"])
def test_track_refuses_an_output_that_is_its_input(tmp_path, video, kind, option, capsys):
    (tmp_path / "sub").mkdir()
    before, files = _digest(video), _listing(tmp_path)
    alias = _alias(kind, video, tmp_path)
    files = _listing(tmp_path)
    assert main(["track", str(video), option, alias]) == 2
    err = capsys.readouterr().err
    assert alias in err and str(video) in err
    assert _digest(video) == before and _listing(tmp_path) == files


@pytest.mark.parametrize("name", ["o.mkv", "o.avi"])
def test_track_refuses_one_file_for_both_outputs(tmp_path, video, name, capsys):
    out = tmp_path / name
    assert main(["track", str(video), "--out", str(out), "--landmarks", str(tmp_path / "." / name)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--landmarks" in err and str(out) in err
    assert not out.exists()


def test_track_refuses_an_existing_folder_as_out(tmp_path, video, capsys):
    folder = tmp_path / "already"
    folder.mkdir()
    assert main(["track", str(video), "--out", str(folder)]) == 2
    assert "existing folder" in capsys.readouterr().err


def test_batch_refuses_an_input_as_its_output_folder(video, capsys):
    before = _digest(video)
    assert main(["batch", str(video), "--out", str(video)]) == 2
    assert str(video) in capsys.readouterr().err and _digest(video) == before


def test_an_image_inside_an_input_folder_is_an_input(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000001.png").write_bytes(b"x")
    with pytest.raises(OutputCollision, match="000001.png"):
        check_outputs([frames], {"--landmarks": frames / "000001.png"})
    check_outputs([frames], {"--landmarks": frames / "new.csv"})  # a new file beside them is fine
    check_output_folder([frames], tmp_path / "out")


KINDS = ["plain", "dot", "dotdot", "symlink", "hardlink"]
# An output is (target, alias kind): target 0 is the input, 1..3 fresh names (3 of them exist already).
OUTPUT = st.tuples(st.integers(0, 3), st.sampled_from(KINDS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=st.none() | OUTPUT, landmarks=st.none() | OUTPUT)
def test_no_combination_opens_an_input_for_writing_or_shares_an_output(talking_clip, out, landmarks):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "sub").mkdir()
        video = folder / "X.mp4"
        shutil.copyfile(talking_clip, video)
        (folder / "t3.csv").write_text("kept\n")
        targets = [video, folder / "t1.mkv", folder / "t2.csv", folder / "t3.csv"]
        used = {}

        def make(spec, suffix):
            if spec is None:
                return None
            target, kind = spec
            path = targets[target]
            if kind in ("symlink", "hardlink") and not path.exists():
                kind = "plain"  # a link needs an existing file
            if kind in ("symlink", "hardlink") and kind in used:
                kind = "dot"
            used[kind] = True
            return target, _alias(kind, path, folder)

        made = {"--out": make(out, ".mkv"), "--landmarks": make(landmarks, ".csv")}
        paths = {option: None if m is None else m[1] for option, m in made.items()}
        chosen = [m for m in made.values() if m is not None]
        collides = any(t == 0 for t, _ in chosen) or (len(chosen) == 2 and chosen[0][0] == chosen[1][0])
        before, listing = _digest(video), _listing(folder)
        if collides:
            args = ["track", str(video)] + [a for o, p in paths.items() if p for a in (o, p)]
            assert main(args) == 2
            assert _digest(video) == before and _listing(folder) == listing
            assert (folder / "t3.csv").read_text() == "kept\n"
            with pytest.raises(OutputCollision) as refusal:
                check_outputs([video], paths)
            message = str(refusal.value)
            if any(t == 0 for t, _ in chosen):
                assert str(video) in message
            for path in paths.values():
                if path is not None and (any(t == 0 for t, _ in chosen) is False):
                    assert path in message
        else:
            check_outputs([video], paths)  # allowed: nothing is an input, no file is shared
