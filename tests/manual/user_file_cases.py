"""The cases of the user-file trial (tests/manual/user_file_trial.py, which runs them): the inputs it builds
from copies of the shared data, each case's command, expected exit status and own check.

Not a test module (pytest collects only ``test_*.py``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from user_file_trial import Result, Trial


# ---- inputs ---------------------------------------------------------------------------------
def build_inputs(t: Trial) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    inp, data = t.inp, t.data
    videos = data / "videos"
    shutil.copyfile(videos / "talking_d12.mp4", inp / "v.mp4")         # 183 frames, 512x512
    shutil.copyfile(videos / "talking_d6.mp4", inp / "long.mp4")       # 1008 frames (signals)
    shutil.copyfile(videos / "talking_d18.mp4", inp / "short.mp4")     # 216 frames, 480x480
    (inp / "empty.mp4").write_bytes(b"")
    (inp / "notes.mp4").write_text("These are my notes, not a video.\n" * 20)
    (inp / "notes.txt").write_text("plain text\n")
    (inp / "notes.onnx").write_text("not an ONNX file\n")
    (inp / "blob.bin").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    helen = sorted((data / "300w" / "helen_test").glob("*.jpg"))[:3]
    shutil.copyfile(helen[0], inp / "face.jpg")
    (inp / "emptydir").mkdir()
    (inp / "existing_dir").mkdir()
    (inp / "existing_dir" / "keep.txt").write_text("a file of mine\n")
    raw = (videos / "talking_d12.mp4").read_bytes()
    (inp / "trunc.mp4").write_bytes(raw[: len(raw) // 2])                # moov atom at the end: unreadable
    # An MJPG AVI of the same clip (header first, index last), cut in half: readable up to the cut.
    cap = cv2.VideoCapture(str(videos / "talking_d12.mp4"))
    writer = cv2.VideoWriter(str(t.work / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (512, 512))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame)
    cap.release()
    writer.release()
    avi = (t.work / "full.avi").read_bytes()
    (inp / "trunc.avi").write_bytes(avi[: len(avi) // 2])
    # Damaged in mid-file: random bytes (seed 0) over 40-50% of its length.
    mid = bytearray(raw)
    a, b = int(0.4 * len(mid)), int(0.5 * len(mid))
    mid[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    (inp / "mid_d12.mp4").write_bytes(bytes(mid))
    (inp / "coll").mkdir()
    shutil.copyfile(inp / "mid_d12.mp4", inp / "coll" / "mid_d12.mp4")
    (inp / "coll_bad").mkdir()
    shutil.copyfile(inp / "notes.mp4", inp / "coll_bad" / "notes.mp4")
    shutil.copyfile(inp / "short.mp4", inp / "coll_bad" / "short.mp4")
    # An image folder with one bad image; one with only bad images.
    sample = data / "300vw_sample" / "001"
    (inp / "stills").mkdir()
    for i, image in enumerate(sorted((sample / "imgs").glob("*.jpg"))):
        shutil.copyfile(image, inp / "stills" / f"frame{i}.jpg")
    (inp / "stills" / "frame2.jpg").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (inp / "badstills").mkdir()
    for i in range(2):
        (inp / "badstills" / f"img{i}.jpg").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    # A 300-VW clip whose first image is random bytes.
    shutil.copytree(sample, inp / "clips" / "001")
    (inp / "clips" / "001" / "imgs" / "000006.jpg").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    # Annotated stills, one image without its .pts.
    (inp / "stillpts").mkdir()
    for image in helen[:2]:
        shutil.copyfile(image, inp / "stillpts" / image.name)
        shutil.copyfile(image.with_suffix(".pts"), inp / "stillpts" / image.with_suffix(".pts").name)
    shutil.copyfile(helen[2], inp / "stillpts" / "zz_lonely.jpg")
    # Aliases of v.mp4.
    os.symlink("v.mp4", inp / "link.mp4")
    os.link(inp / "v.mp4", inp / "hard.mp4")
    # Checkpoints: a pickle whose loading runs a command, and random bytes.
    marker = t.work / "PAYLOAD_RAN"
    script = (
        "import os, sys, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ({'touch ' + str(marker)!r},))\n"
        "torch.save({'model': Evil(), 'epoch': 3}, sys.argv[1])\n"
    )
    subprocess.run([t.python, "-c", script, str(inp / "evil.pt")], check=True, cwd=t.work)
    if marker.exists():
        marker.unlink()
    (inp / "garbage.pt").write_bytes(rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    (inp / "notes.pt").write_text("not a checkpoint\n")
    script = "import sys, torch\ntorch.save({'model': {'w': torch.zeros(64, 64)}, 'epoch': 3}, sys.argv[1])\n"
    subprocess.run([t.python, "-c", script, str(t.work / "plain.pt")], check=True, cwd=t.work)
    whole = (t.work / "plain.pt").read_bytes()
    (inp / "cut.pt").write_bytes(whole[: len(whole) // 2])
    (inp / "list.txt").write_text("short.mp4\nno_such_video.mp4\n")


def count_frames(path: Path) -> int:
    import cv2

    if not path.exists() or path.stat().st_size == 0:
        return 0
    cap = cv2.VideoCapture(str(path))
    n = 0
    while n < 20000:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def csv_frames(path: Path) -> int:
    if not path.exists():
        return 0
    frames = set()
    with path.open() as handle:
        next(handle, None)
        for line in handle:
            frames.add(line.split(",", 1)[0])
    return len(frames)


def manifest_entry(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        return next(iter(manifest["inputs"].values()))
    except Exception:
        return None


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, limit: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            return None
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


# ---- cases ----------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    group: str
    argv: list[str]                       # after the module (app by default)
    expect: set[int] | str                # exit statuses, or "nonzero"
    check: Callable[[Trial, Result, Path], tuple[bool, str]] | None = None
    module: str = "app"
    needs: tuple[str, str] | None = None  # (command, option) that must be in the tree's --help
    timeout: float | None = None
    custom: Callable[[Trial, Path], tuple[Result, list[str]]] | None = None  # runs the case itself
    preexec: Callable[[], None] | None = None
    needs_root: bool = False


def has(res: Result, *words: str) -> bool:
    text = (res.stderr + res.stdout).lower()
    return all(w.lower() in text for w in words)


def check_message(*words: str):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        ok = has(res, *words)
        return ok, "" if ok else f"message lacks {words}"
    return check


def check_recording(name: str, csv: str | None = None, at_least: int = 1):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        n = count_frames(out / name)
        note = f"{name}: {n} frames decode"
        if csv:
            note += f", CSV {csv_frames(out / csv)} frames"
        if (out / name).exists() and n < at_least:
            return False, note + " (does not play)"
        return True, note
    return check


def all_of(*checks):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        ok, notes = True, []
        for c in checks:
            good, note = c(t, res, out)
            ok &= good
            if note:
                notes.append(note)
        return ok, "; ".join(notes)
    return check


def signal_case(sig: int, suffix: str):
    def custom(t: Trial, out: Path) -> tuple[Result, list[str]]:
        rec, csv = out / f"rec.{suffix}", out / "rec.csv"
        argv = ["-m", "app", "track", "long.mp4", "--out", str(rec), "--landmarks", str(csv)]

        def during(proc: subprocess.Popen) -> dict:
            waited = wait_for(lambda: rec.exists() and rec.stat().st_size > 150_000, proc, 90)
            if waited is None:
                return {"sent": False}
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, sig)
            return {"sent": True, "after_s": round(waited, 1)}

        res = t.run(argv, during=during)
        return res, argv
    return custom


def check_signal(suffix: str):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        if not res.extra.get("sent"):
            return False, "the run ended before the signal was sent"
        n = count_frames(out / f"rec.{suffix}")
        m = csv_frames(out / "rec.csv")
        return n > 0, f"signal after {res.extra['after_s']} s; rec.{suffix}: {n} frames decode, CSV {m} frames"
    return check


BATCH_ARGS = ["--workers", "2", "--chunk-frames", "30", "--max-frames", "150"]


def batch_kill_resume(t: Trial, out: Path) -> tuple[Result, list[str]]:
    ref, res_dir = out / "ref", out / "res"
    ref_res = t.app("batch", "long.mp4", "--out", str(ref), *BATCH_ARGS, timeout=300)
    argv = ["-m", "app", "batch", "long.mp4", "--out", str(res_dir), *BATCH_ARGS]

    def chunks_on_disk() -> int:
        return len(list((res_dir / ".parts").glob("*/*.json"))) if (res_dir / ".parts").exists() else 0

    def during(proc: subprocess.Popen) -> dict:
        waited = wait_for(lambda: chunks_on_disk() >= 1, proc, 200)
        if waited is None:
            return {"sent": False}
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a crash would
        return {"sent": True, "chunks": chunks_on_disk()}

    killed = t.run(argv, during=during, timeout=300)
    entry = manifest_entry(res_dir) or {}
    rerun = t.run(argv, timeout=300)
    rerun.extra.update(ref_rc=ref_res.rc, killed_rc=killed.rc, sent=killed.extra.get("sent"),
                       chunks=killed.extra.get("chunks"), left=killed.extra.get("leftover_processes"),
                       after_kill=f"{entry.get('status')} {entry.get('chunks_done')}/{entry.get('chunks')}")
    return rerun, argv


def check_resume(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
    e = res.extra
    if not e.get("sent"):
        return False, "the run ended before the kill"
    ref, got = out / "ref" / "long.csv", out / "res" / "long.csv"
    same_csv = ref.exists() and got.exists() and ref.read_bytes() == got.read_bytes()
    same_pq = False
    try:
        import pyarrow.parquet as pq
        same_pq = pq.read_table(out / "ref" / "long.parquet").equals(pq.read_table(out / "res" / "long.parquet"))
    except Exception:
        pass
    entry = manifest_entry(out / "res") or {}
    note = (f"killed with {e.get('chunks')} chunk(s) on disk (exit {e.get('killed_rc')}); manifest then: "
            f"{e.get('after_kill')}; re-run: {entry.get('status')}, {entry.get('frames')} frames; "
            f"CSV identical to an uninterrupted run: {'yes' if same_csv else 'no'}, Parquet: {'yes' if same_pq else 'no'}")
    return same_csv and same_pq and e.get("ref_rc") == 0 and entry.get("status") == "done", note


def batch_sigint(t: Trial, out: Path) -> tuple[Result, list[str]]:
    argv = ["-m", "app", "batch", "long.mp4", "--out", str(out / "b"), *BATCH_ARGS]

    def during(proc: subprocess.Popen) -> dict:
        waited = wait_for(lambda: len(list((out / "b" / ".parts").glob("*/*.json"))) >= 1
                          if (out / "b" / ".parts").exists() else False, proc, 200)
        if waited is None:
            return {"sent": False}
        os.kill(proc.pid, signal.SIGINT)
        return {"sent": True}

    return t.run(argv, during=during, timeout=300), argv


def check_batch_sigint(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
    if not res.extra.get("sent"):
        return False, "the run ended before the signal"
    entry = manifest_entry(out / "b")
    if entry is None:
        return False, "manifest missing or unreadable"
    return entry.get("status") != "done", f"manifest: {entry.get('status')} {entry.get('chunks_done')}/{entry.get('chunks')}"


def manifest_case(content: str):
    def custom(t: Trial, out: Path) -> tuple[Result, list[str]]:
        (out / "b").mkdir(parents=True, exist_ok=True)
        (out / "b" / "manifest.json").write_text(content)
        argv = ["-m", "app", "batch", "stills", "--out", str(out / "b"), "--workers", "1"]
        res = t.run(argv, timeout=240)
        res.extra["manifest_kept"] = (out / "b" / "manifest.json").read_text() == content
        return res, argv
    return custom


def check_manifest_kept(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
    kept = res.extra.get("manifest_kept")
    return bool(kept), "" if kept else "the existing manifest.json was replaced"


def checkpoint_case(module_attr: str, extra_args: list[str], pt: str):
    def custom(t: Trial, out: Path) -> tuple[Result, list[str]]:
        marker = t.work / "PAYLOAD_RAN"
        if marker.exists():
            marker.unlink()
        module = getattr(t, module_attr)
        argv = ["-m", module, "--model", "r18_ffld", *[a.replace("OUTDIR", str(out / "export")) for a in extra_args], pt]
        res = t.run(argv, timeout=300)
        res.extra["payload_ran"] = marker.exists()
        return res, argv
    return custom


def check_no_payload(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
    if res.extra.get("payload_ran"):
        return False, "PAYLOAD RAN"
    return True, "payload did not run"


def check_reason(name: str, *words: str):
    """The message names the file and its real problem (``words``), and says "a pickled object"
    only of a file that is one."""
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        if "pickled object" in res.stderr:
            return False, "the reason given (a pickled object) is not what is wrong with this file"
        ok = has(res, name, *words)
        return ok, "" if ok else f"message lacks {(name, *words)}"
    return check


def check_batch_entry(status: str, min_frames: int = 0):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        entry = manifest_entry(out / "b")
        if entry is None:
            return False, "no manifest"
        ok = entry.get("status") == status and (entry.get("frames") or 0) >= min_frames
        return ok, (f"manifest: {entry.get('status')}, {entry.get('frames')} frames, "
                    f"skipped {len(entry.get('skipped_frames') or [])}, problems {len(entry.get('problems') or [])}")
    return check


def check_batch_collection(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
    try:
        manifest = json.loads((out / "b" / "manifest.json").read_text())["inputs"]
    except Exception:
        return False, "no manifest"
    states = {k: v.get("status") for k, v in manifest.items()}
    ok = any(s == "failed" for s in states.values()) and any(s == "done" for s in states.values())
    return ok, "manifest: " + ", ".join(f"{k} {s}" for k, s in states.items())


def check_csv_frames(name: str, more_than: int):
    def check(t: Trial, res: Result, out: Path) -> tuple[bool, str]:
        n = csv_frames(out / name)
        return n > more_than, f"{n} frames in the CSV"
    return check


def fsize_limit(limit: int):
    def preexec() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def cases(t: Trial) -> list[Case]:
    O = "OUTDIR"  # replaced by the case's output folder
    short_run = ["--max-frames", "10"]
    ro = str(t.mnt / "ro")
    full = str(t.mnt / "full")
    return [
        # -- bad inputs --
        Case("missing file", "input", ["track", "nosuch.mp4"], {2}),
        Case("empty file (0 bytes)", "input", ["track", "empty.mp4"], {2}),
        Case("text file named .mp4", "input", ["track", "notes.mp4"], {2}),
        Case("random bytes, no video extension", "input", ["track", "blob.bin"], {2}),
        Case("a single photo (not a video)", "input", ["track", "face.jpg", "--landmarks", f"{O}/o.csv"], {0, 2}),
        Case("empty folder", "input", ["track", "emptydir"], {2}),
        Case("truncated mp4 (first half; moov at the end)", "input", ["track", "trunc.mp4"], {2}),
        Case("truncated MJPG avi (first half)", "input", ["track", "trunc.avi", "--landmarks", f"{O}/o.csv"], {3},
             all_of(check_message("truncated"), check_csv_frames("o.csv", 50))),
        Case("video damaged mid-file", "input", ["track", "mid_d12.mp4", "--landmarks", f"{O}/o.csv"], {3},
             all_of(check_message("could not be decoded"), check_csv_frames("o.csv", 100))),
        Case("image folder with a corrupt image", "input", ["track", "stills", "--landmarks", f"{O}/o.csv"], {3},
             check_message("frame2.jpg")),
        Case("image folder, every image corrupt", "input", ["track", "badstills"], {2, 3}),
        Case("300-VW clip, first image corrupt", "input", ["track", "clips/001", "--landmarks", f"{O}/o.csv"], {3},
             all_of(check_message("000006.jpg"), check_csv_frames("o.csv", 0))),
        Case("evaluate: an image without its .pts", "input",
             ["evaluate", "--model", "r18_ffld", "--dataset", "stillpts", "--mode", "gt5", "--out", O], {3},
             check_message("zz_lonely")),
        Case("evaluate: dataset folder missing", "input",
             ["evaluate", "--model", "r18_ffld", "--dataset", "nosuch_dir", "--mode", "gt5", "--out", O], {2}),
        Case("eval300vw: a clip with a corrupt image", "input", ["eval300vw", "clips", "--out", O], {3},
             check_message("000006.jpg")),
        Case("eval300vw: empty folder", "input", ["eval300vw", "emptydir", "--out", O], {2}),
        Case("batch: image folder with a corrupt image", "input",
             ["batch", "stills", "--out", f"{O}/b", "--workers", "1"], {3}, check_batch_entry("partial")),
        Case("batch: video damaged mid-file", "input", ["batch", "coll", "--out", f"{O}/b", "--workers", "2"], {3},
             check_batch_entry("partial", 100), timeout=400),
        Case("batch: a text file named .mp4 beside a good clip", "input",
             ["batch", "coll_bad", "--out", f"{O}/b", "--workers", "2", "--max-frames", "30"], {1},
             check_batch_collection, timeout=300),
        Case("batch: input path missing", "input", ["batch", "nosuch.mp4", "--out", f"{O}/b"], {1, 2}),
        # -- bad options --
        Case("unknown model", "option", ["track", "v.mp4", "--model", "nosuch", *short_run], {2}),
        Case("bad --resize without --vs-mediapipe (640by480)", "option", ["bench", "v.mp4", "--resize", "640by480", "--max-frames", "5"], {2},
             check_message("--resize", "640x480", "640by480")),
        Case("negative --resize without --vs-mediapipe", "option", ["bench", "v.mp4", "--resize=-640x480", "--max-frames", "5"], {2},
             check_message("--resize", "16x16", "-640x480")),
        Case("zero --resize without --vs-mediapipe (0x480)", "option", ["bench", "v.mp4", "--resize", "0x480", "--max-frames", "5"], {2},
             check_message("--resize", "16x16", "0x480")),
        Case("bad --resize with --vs-mediapipe (640by480)", "option",
             ["bench", "v.mp4", "--vs-mediapipe", "--resize", "640by480", "--max-frames", "5", "--rounds", "1"], {2},
             check_message("--resize", "640x480", "640by480")),
        Case("negative --resize with --vs-mediapipe", "option",
             ["bench", "v.mp4", "--vs-mediapipe", "--resize=-640x480", "--max-frames", "5", "--rounds", "1"], {2},
             check_message("--resize", "16x16", "-640x480")),
        Case("negative --max-frames", "option", ["track", "v.mp4", "--max-frames=-5"], {2}),
        Case("--max-frames not a number", "option", ["track", "v.mp4", "--max-frames", "ten"], {2}),
        Case("--max-faces 0", "option", ["track", "v.mp4", "--max-faces", "0", *short_run], {2}),
        Case("negative --redetect-interval", "option", ["track", "v.mp4", "--redetect-interval=-1", *short_run], {2}),
        Case("negative --min-cutoff", "option", ["track", "v.mp4", "--min-cutoff=-1", *short_run], {2}),
        Case("--beta nan", "option", ["track", "v.mp4", "--beta", "nan", *short_run], {2}),
        Case("--fov 0", "option", ["track", "v.mp4", "--fov", "0", *short_run], {2}),
        Case("--fov 400", "option", ["track", "v.mp4", "--fov", "400", *short_run], {2}),
        Case("unknown --backend", "option", ["track", "v.mp4", "--backend", "cuda9", *short_run], {2}),
        Case("unknown --precision", "option", ["track", "v.mp4", "--precision", "int4", *short_run], {2}),
        Case("unknown --detector", "option", ["track", "v.mp4", "--detector", "nosuch", *short_run], {2}),
        Case("--detector-model missing file", "option",
             ["track", "v.mp4", "--detector", "retinaface", "--detector-model", "nosuch.onnx", *short_run], {2}),
        Case("--detector-model a text file", "option",
             ["track", "v.mp4", "--detector", "retinaface", "--detector-model", "notes.onnx", *short_run], {2}),
        Case("batch --workers 0", "option", ["batch", "short.mp4", "--out", f"{O}/b", "--workers", "0"], {2}),
        Case("batch --chunk-frames 0", "option", ["batch", "short.mp4", "--out", f"{O}/b", "--chunk-frames", "0"], {2}),
        # -- outputs --
        Case("--out names an existing directory", "output", ["track", "v.mp4", "--out", "existing_dir", *short_run], {2}),
        Case("--landmarks names an existing directory", "output",
             ["track", "v.mp4", "--landmarks", "existing_dir", *short_run], {2}),
        Case("--out is the input", "output", ["track", "v.mp4", "--out", "v.mp4", *short_run], {2}),
        Case("--out is a symlink to the input", "output", ["track", "v.mp4", "--out", "link.mp4", *short_run], {2}),
        Case("--out is a hard link of the input", "output", ["track", "v.mp4", "--out", "hard.mp4", *short_run], {2}),
        Case("--landmarks ./v.mp4 (the input)", "output", ["track", "v.mp4", "--landmarks", "./v.mp4", *short_run], {2}),
        Case("--out and --landmarks one file", "output",
             ["track", "v.mp4", "--out", f"{O}/o.avi", "--landmarks", f"{O}/o.avi", *short_run], {2}),
        Case("--out with an unknown extension (.xyz)", "output", ["track", "v.mp4", "--out", f"{O}/o.xyz", *short_run],
             {0, 2}, check_recording("o.xyz")),
        Case("--out in a folder that does not exist", "output",
             ["track", "v.mp4", "--out", f"{O}/no/such/o.avi", *short_run], {0, 2}),
        Case("batch --out is a file", "output", ["batch", "short.mp4", "--out", "notes.txt", "--max-frames", "10"], {2}),
        # -- disks --
        Case("read-only folder: --out", "disk", ["track", "v.mp4", "--out", f"{ro}/o.avi", *short_run], {2}),
        Case("read-only folder: --landmarks", "disk", ["track", "v.mp4", "--landmarks", f"{ro}/o.csv", *short_run], {2}),
        Case("read-only folder: batch --out", "disk", ["batch", "short.mp4", "--out", f"{ro}/b", "--max-frames", "10",
                                                          "--workers", "1"], {2},
             check_message("cannot write", f"{ro}/b", "not writable")),
        Case("full disk (200 KB tmpfs): --out", "disk", ["track", "v.mp4", "--out", f"{full}/o.avi"], {2},
             all_of(check_message("frames"), lambda t, r, o: check_recording("o.avi")(t, r, Path(full))),
             needs_root=True),
        Case("full disk (200 KB tmpfs): --landmarks", "disk", ["track", "v.mp4", "--landmarks", f"{full}/o.csv"], {2},
             needs_root=True),
        Case("file-size limit (ulimit -f 200 KB): --out", "disk", ["track", "v.mp4", "--out", f"{O}/o.avi"], {2},
             all_of(check_message("frames"), check_recording("o.avi")), preexec=fsize_limit(200_000)),
        Case("file-size limit (ulimit -f 100 KB): --landmarks", "disk", ["track", "v.mp4", "--landmarks", f"{O}/o.csv"],
             {2}, preexec=fsize_limit(100_000)),
        # -- signals --
        Case("SIGINT during track --out rec.avi", "signal", ["track", "long.mp4", "--out", "rec.avi"], {130},
             check_signal("avi"), custom=signal_case(signal.SIGINT, "avi")),
        Case("SIGTERM during track --out rec.avi", "signal", ["track", "long.mp4", "--out", "rec.avi"], {143},
             check_signal("avi"), custom=signal_case(signal.SIGTERM, "avi")),
        Case("SIGKILL during track --out rec.avi", "signal", ["track", "long.mp4", "--out", "rec.avi"], {-9},
             check_signal("avi"), custom=signal_case(signal.SIGKILL, "avi")),
        Case("SIGKILL during track --out rec.mkv", "signal", ["track", "long.mp4", "--out", "rec.mkv"], {-9},
             check_signal("mkv"), custom=signal_case(signal.SIGKILL, "mkv")),
        Case("SIGINT during batch", "signal", ["batch"], {130}, check_batch_sigint, custom=batch_sigint),
        # -- batch state --
        Case("batch driver SIGKILLed, then the same command again", "batch", ["batch"], {0}, check_resume,
             custom=batch_kill_resume),
        Case("batch: manifest.json is a list ([1, 2])", "batch", ["batch"], {2}, check_manifest_kept,
             custom=manifest_case("[1, 2]")),
        Case("batch: manifest.json not JSON", "batch", ["batch"], {2}, check_manifest_kept,
             custom=manifest_case("{not json")),
        # -- checkpoints --
        # exit 2: bad input, as python -m app (models.tools.train and export print "error: FILE: reason")
        Case("train --evaluate a pickle that runs a command", "checkpoint", [], {2},
             all_of(check_no_payload, check_message("evil.pt", "pickled object")),
             custom=checkpoint_case("train_module", ["--evaluate"], "evil.pt")),
        Case("export --checkpoint a pickle that runs a command", "checkpoint", [], {2},
             all_of(check_no_payload, check_message("evil.pt", "pickled object")),
             custom=checkpoint_case("export_module", ["--out", "OUTDIR", "--checkpoint"], "evil.pt")),
        Case("train --evaluate random bytes (.pt)", "checkpoint", [], {2},
             check_reason("garbage.pt", "not a PyTorch checkpoint"),
             custom=checkpoint_case("train_module", ["--evaluate"], "garbage.pt")),
        Case("train --evaluate a text file (.pt)", "checkpoint", [], {2},
             check_reason("notes.pt", "not a PyTorch checkpoint"),
             custom=checkpoint_case("train_module", ["--evaluate"], "notes.pt")),
        Case("train --evaluate a truncated checkpoint", "checkpoint", [], {2},
             check_reason("cut.pt", "damaged", "truncated"),
             custom=checkpoint_case("train_module", ["--evaluate"], "cut.pt")),
        Case("train --evaluate a missing file", "checkpoint", [], {2}, check_reason("nosuch.pt", "no such"),
             custom=checkpoint_case("train_module", ["--evaluate"], "nosuch.pt")),
        Case("export --checkpoint a missing file", "checkpoint", [], {2}, check_reason("nosuch.pt", "no such"),
             custom=checkpoint_case("export_module", ["--out", "OUTDIR", "--checkpoint"], "nosuch.pt")),
    ]
