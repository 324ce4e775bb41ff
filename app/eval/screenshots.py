"""``python -m app.eval.screenshots --out docs/``: screenshots of the running window.

Runs the real window offscreen (or on the display when one is set) and writes
``OUT/screenshots/``:

* ``no_camera.png``: the start without a camera or a remembered source;
* ``talking_clip.png``: a shared talking clip being tracked, stats panel, pose axes and geometry
  readout on, the face geometry panel filled;
* ``recording.png``: the same while recording (indicator and elapsed time);
* ``clip_300vw.png``: a 300-VW style clip (made here from a HELEN test still with
  ``app.synth.clips``) with ground truth, running NME and the per-frame error plot.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from app.gui.bench_display import wait_until

WINDOW_SIZE = (1360, 860)


def settle(seconds: float = 0.3) -> None:
    wait_until(lambda: False, seconds)


class Shooter:
    def __init__(self, out_dir: Path, tmp: Path, model: str | None) -> None:
        self.out_dir = out_dir
        self.tmp = tmp
        self.model = model
        self.count = 0

    def window(self, name: str, **kwargs):
        from app.gui.settings import open_qsettings
        from app.gui.window import MainWindow

        window = MainWindow(open_qsettings(str(self.tmp / f"{name}.ini")), model=self.model, **kwargs)
        window.resize(*WINDOW_SIZE)
        window.show()
        return window

    def save(self, window, name: str) -> Path:
        settle()
        path = self.out_dir / f"{name}.png"
        if not window.grab().save(str(path)):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path}")
        self.count += 1
        return path

    def play_until(self, window, frame_index: int, timeout: float = 120.0) -> None:
        reached = wait_until(lambda: window.last_packet is not None and window.last_packet.index >= frame_index
                             and window.last_packet.tracked, timeout)
        if not reached:
            raise SystemExit(f"the window did not reach frame {frame_index}: {window.messages[-3:]}")
        window.worker.pause()
        wait_until(lambda: not window.playing, 10.0)


def make_demo_clip(folder: Path, frames: int) -> Path:
    """One 300-VW style clip with exact ground truth, from a HELEN test still."""
    from app.synth.clips import SynthSettings, make_clips
    from models.datasets import TEST_SET, data_root

    return make_clips(data_root() / TEST_SET, folder, count=1, settings=SynthSettings(frames=frames), seed=3,
                      progress=False)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.eval.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="folder whose screenshots/ subfolder gets the PNGs")
    parser.add_argument("--video", help="talking clip to show (default: the shared talking_d12.mp4)")
    parser.add_argument("--model", help="landmark model (default: the first installed network, else mediapipe68)")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from app.overlay import OverlayOptions
    from models.datasets import data_root

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setStyle("Fusion")
    out_dir = Path(args.out) / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else data_root() / "videos" / "talking_d12.mp4"

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shooter = Shooter(out_dir, tmp, args.model)

        window = shooter.window("no_camera", open_picker_when_idle=False)
        wait_until(lambda: window.environment is not None, 60.0)
        settle(0.5)
        shooter.save(window, "no_camera")
        window.close()

        window = shooter.window("talking", open_picker_when_idle=False)
        window.overlay_panel.set_overlay(OverlayOptions(box=True, keypoints=True, face_ids=True, geometry_readout=True))
        window.worker.set_overlay(window.overlay_panel.overlay())
        window.open_video(video)
        shooter.play_until(window, 60)
        shooter.save(window, "talking_clip")
        window.set_record_dir(str(tmp / "recordings"))
        window.toggle_recording()
        window.worker.play()
        wait_until(lambda: window.recording is not None and window.recording.frames >= 40, 60.0)
        wait_until(lambda: False, 1.2)
        window.worker.pause()
        wait_until(lambda: not window.playing, 10.0)
        shooter.save(window, "recording")
        window.toggle_recording()
        wait_until(lambda: window.recording is None, 10.0)
        window.close()

        clip = make_demo_clip(tmp / "clips", frames=120)
        window = shooter.window("clip", open_picker_when_idle=False)
        window.open_clip(clip)
        shooter.play_until(window, 110)
        shooter.save(window, "clip_300vw")
        window.close()
    print(f"{shooter.count} screenshots in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
