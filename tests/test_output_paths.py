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


@pytest.mark.parametrize("inside", ["b", "b/c"])
def test_batch_names_an_out_folder_it_cannot_write_as_track_does(tmp_path, video, inside, capsys):
    """Issue 31: not a bare ``[Errno 30] Read-only file system: '.../b'``. Root ignores permission
    bits, so as root the unwritable folder is /sys (sysfs refuses new files to everyone)."""
    if os.geteuid() == 0:
        unwritable = Path("/sys")
    else:
        unwritable = tmp_path / "read_only"
        unwritable.mkdir()
        unwritable.chmod(0o555)
    out = unwritable / inside
    try:
        assert main(["batch", str(video), "--out", str(out), "--max-frames", "2", "--workers", "1"]) == 2
    finally:
        if unwritable != Path("/sys"):
            unwritable.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write --out {out}: folder {unwritable} is not writable ("), err
    assert not out.exists()


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


# -- every other command that writes files (issue 31) ------------------------------------------

def _state(folder):
    """Every file under ``folder`` with its sha256 (links by their target's bytes), and every folder."""
    return {str(p.relative_to(folder)): _digest(p) if p.is_file() else "folder" for p in sorted(Path(folder).rglob("*"))}


def _still(helen_test_dir, folder, name, suffix=".jpg"):
    """A HELEN test face as ``folder/name`` + ``.pts`` (re-encoded when ``suffix`` is not .jpg)."""
    import cv2

    source = sorted(helen_test_dir.glob("*.jpg"))[0]
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{name}{suffix}"
    if suffix == ".jpg":
        shutil.copyfile(source, image)
    else:
        assert cv2.imwrite(str(image), cv2.imread(str(source)))
    shutil.copyfile(source.with_suffix(".pts"), folder / f"{name}.pts")
    return image


def _folder_alias(kind, folder, tmp):
    """``folder`` written differently: as given, with ./ or sub/.., or through a symlink."""
    if kind == "dot":
        return str(folder.parent / "." / folder.name)
    if kind == "dotdot":
        (folder.parent / "sub").mkdir(exist_ok=True)
        return str(folder.parent / "sub" / ".." / folder.name)
    if kind == "symlink":
        link = tmp / f"link_{folder.name}"
        if not link.exists():
            link.symlink_to(folder, target_is_directory=True)
        return str(link)
    return str(folder)


def _collision(command, tmp, helen_test_dir, alias):
    """(arguments, the input file that the output would overwrite) for ``command`` with its output
    folder written as ``alias`` of a folder that holds an input file of the output's name."""
    data = tmp / "data"
    if command == "evaluate":  # the CED plot over an annotated still of the set
        victim = _still(helen_test_dir, data, "data_gt5_ced", ".png")
        args = ["evaluate", "--model", "dlib68", "--dataset", str(data)]
    elif command == "eval-occlusions":  # the summary over a file of the set
        _still(helen_test_dir, data, "face")
        (data / "visibility.json").write_text('{"faces": {"face.jpg": {"occluder": "hand", "hidden": [1]}}}')
        victim = data / "data_occlusions.json"
        victim.write_text("[]\n")
        args = ["eval-occlusions", "--model", "dlib68", "--dataset", str(data)]
    elif command == "synth-occlusions":  # an occluded face over its own source image
        victim = _still(helen_test_dir, data, "face")
        args = ["synth-occlusions", "--source", str(data), "--limit", "1"]
    elif command == "synth-clips":  # the contact sheet over an annotated still
        victim = _still(helen_test_dir, data, "contact_sheet")
        args = ["synth-clips", "--source-dir", str(data), "--count", "1", "--frames", "2"]
    elif command == "eval300vw":  # the report over the --unreliable list
        data.mkdir()
        victim = data / "report.md"
        victim.write_text("001 1-3\n")
        args = ["eval300vw", str(Path(helen_test_dir).parents[1] / "300vw_sample"), "--unreliable", str(victim),
                "--model", "dlib68", "--no-progress"]
    else:
        raise AssertionError(command)
    return args + ["--out", _folder_alias(alias, data, tmp)], victim


WRITERS = ["evaluate", "eval-occlusions", "synth-occlusions", "synth-clips", "eval300vw"]


@pytest.mark.parametrize("command", WRITERS)
def test_a_command_refuses_an_output_over_its_input(tmp_path, helen_test_dir, command, capsys):
    args, victim = _collision(command, tmp_path, helen_test_dir, "symlink")
    before = _state(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and str(tmp_path / "link_data" / victim.name) in err, err
    assert _state(tmp_path) == before


def test_an_output_folder_that_is_an_input_file_is_refused(tmp_path, helen_test_dir, capsys):
    listing = tmp_path / "unreliable.txt"
    listing.write_text("001 1-3\n")
    before = _state(tmp_path)
    root = Path(helen_test_dir).parents[1] / "300vw_sample"
    assert main(["eval300vw", str(root), "--unreliable", str(listing), "--out", str(listing), "--model", "dlib68"]) == 2
    assert f"--out {listing} is the input {listing}" in capsys.readouterr().err
    assert _state(tmp_path) == before


def test_synth_clips_never_removes_a_clip_folder_that_holds_its_source(tmp_path, helen_test_dir, capsys):
    source = tmp_path / "out" / "synth_000"  # the first clip folder synth-clips would replace
    _still(helen_test_dir, source, "face")
    before = _state(tmp_path)
    assert main(["synth-clips", "--source-dir", str(source), "--out", str(tmp_path / "out"), "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert "would be replaced" in err and str(source) in err
    assert _state(tmp_path) == before


def test_synth_occlusions_refuses_two_sources_that_would_share_one_output(tmp_path, helen_test_dir, capsys):
    source = tmp_path / "stills"
    _still(helen_test_dir, source, "face")
    _still(helen_test_dir, source, "face", ".png")  # face.jpg and face.png: both would become OUT/face.jpg
    out = tmp_path / "occluded"
    assert main(["synth-occlusions", "--source", str(source), "--out", str(out)]) == 2
    assert "are the same file" in capsys.readouterr().err and not out.exists()


def test_eval300vw_evaluate_refuses_before_making_its_folder(tmp_path, data_dir):
    from app.eval.vw300.run import evaluate as evaluate_300vw

    listing = tmp_path / "out" / "frames.csv"
    listing.parent.mkdir()
    listing.write_text("001 1\n")
    with pytest.raises(OutputCollision, match="frames.csv"):
        evaluate_300vw(data_dir / "300vw_sample", out_dir=tmp_path / "out", unreliable_file=listing)
    assert not (tmp_path / "out" / "clips").exists() and listing.read_text() == "001 1\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(WRITERS), alias=st.sampled_from(["plain", "dot", "dotdot", "symlink"]))
def test_no_writing_command_opens_an_input_for_writing(helen_test_dir, command, alias):
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        args, victim = _collision(command, tmp, helen_test_dir, alias)
        before = _state(tmp)
        assert main(args) == 2
        assert _state(tmp) == before, f"{command} changed its input {victim}"
