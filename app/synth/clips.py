"""Synthetic 300-VW-style clips made from annotated stills, with exact ground truth on every frame.

``python -m app synth-clips`` turns 68-point annotated stills (default: the HELEN
test set) into clips in the 300-VW layout: ``ID/vid.avi`` + ``ID/annot/000001.pts`` ...
(one ``.pts`` per frame, numbered from 1 like 300-VW) + ``ID/synth.json`` (how the
clip was made, and per frame the share of occluded points, the blur and the gain).

Moving clips (``synth_NNN``): the still is pasted, with feathered edges, on a
procedural, face-free background and filmed by a smooth random camera: translation, zoom and
in-plane rotation follow sums of slow random sinusoids (0.08-0.6 Hz); the
background follows with parallax. On top: a brightness and colour ramp, motion blur
along the face's motion (a line kernel centred on the exposure midpoint, so the
ground truth stays exact), one partial occluder (a hand or a bar) passing over the
face, and sensor noise. Faces are webcam-sized: a landmark box 100-180 px wide at rest,
80-225 px with the zoom, always inside the frame. Static clips (``static_NNN``): the still at a fixed
placement, with independent sensor noise on every frame and nothing else; any
movement of the landmarks on them is an error (jitter).

Frames are 640x480 and stored as Motion-JPEG, the way most USB webcams deliver
video: every frame is JPEG-compressed on its own (OpenCV's built-in MJPEG writer at
quality 40: ~45 KB a frame, a mean absolute error of ~2.9 grey levels against the
uncompressed frame, about what libjpeg gives at quality 70). MJPEG keeps the sensor
noise of every frame; an inter-frame codec (mp4v/XVID) would smooth it away on static clips.

Ground truth: the still's points (0-based pixel centres) through the same affine
matrix that warps the still, so it is exact up to the 3 decimals of the ``.pts`` file.

Turning clips (``turn_NNN``, ``--motion turn``): the head turns in yaw from frontal to
+``yaw_deg``, back, to -``yaw_deg`` and back (one sine period per clip), with a slow pitch
nod of up to ``pitch_deg``; every frame's still is the face re-rendered at that pose by
``models.tools.face_profiling`` (Face Mesh fitted once per still, a piecewise-affine warp), filmed by
the same moving camera with lighting, blur and noise but no occluder. Only near-frontal
stills (Face Mesh yaw within ``max_source_yaw``) are used, so both directions turn away
from what the photo saw by at most ``yaw_deg`` plus that. Ground truth: the view's points
(``models.tools.face_profiling``'s rule: rotated 3D points, jaw on the visible outline) through the
frame's matrix. ``synth.json`` adds per frame the still's yaw and pitch change and the
resulting yaw.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

from app.cli.argtypes import int_at_least, non_negative_int, positive_int
from app.output_paths import check_output_folder, check_outputs, check_replaced_folders
from engines.base import BackendUnavailable
from engines.files import atomic_write
from models.datasets import TEST_SET, data_root, list_annotated
from models.pts import read_pts, write_pts

from app.synth.render import (  # noqa: F401 (also the names tests and tools take from here)
    FRAME_WIDTH,
    FRAME_HEIGHT,
    DEFAULT_FPS,
    MJPEG_QUALITY,
    DEFAULT_COUNT,
    DEFAULT_FRAMES,
    DEFAULT_OUT,
    META_NAME,
    GENERATOR_VERSION,
    MOVING_PREFIX,
    STATIC_PREFIX,
    TURN_PREFIX,
    SynthSettings,
    TurnSettings,
    SensorNoise,
    Occluder,
    ClipPlan,
    Scene,
    smooth_signal,
    similarity,
    make_background,
    feather_alpha,
    load_scene,
    _face_radius,
    plan_clip,
    sample_occluder,
    _SUB,
    _ONE,
    occluder_mask,
    motion_kernel,
    face_points,
    turn_schedule,
    TurningScene,
    render_frame,
)


def open_writer(path: Path, fps: float, quality: int) -> cv2.VideoWriter:
    """OpenCV's own Motion-JPEG AVI writer (no FFmpeg needed), at ``quality``."""
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_WIDTH, FRAME_HEIGHT)
    )
    if not writer.isOpened():
        raise RuntimeError(f"{path}: could not open an MJPEG video writer")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    return writer


def clip_name(index: int, static: bool, turn: bool = False) -> str:
    prefix = TURN_PREFIX if turn else STATIC_PREFIX if static else MOVING_PREFIX
    return f"{prefix}_{index:03d}"


def write_clip(
    folder: Path,
    scene: Scene,
    plan: ClipPlan,
    settings: SynthSettings,
    noise_rng: np.random.Generator,
    meta: dict,
    turning: TurningScene | None = None,
) -> Path:
    """Render and write one clip (vid.avi, annot/NNNNNN.pts, synth.json). synth.json is written last.

    With ``turning``, frame t shows ``turning.at(t)`` instead of ``scene``."""
    if folder.exists():
        shutil.rmtree(folder)
    annot = folder / "annot"
    annot.mkdir(parents=True)
    writer = open_writer(folder / "vid.avi", settings.fps, settings.quality)
    occluded = []
    try:
        for t in range(plan.frames):
            shown = turning.at(t) if turning else scene
            frame, share = render_frame(shown, plan, t, noise_rng)
            writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
            write_pts(annot / f"{t + 1:06d}.pts", face_points(shown, plan, t))
            occluded.append(round(share, 3))
    finally:
        writer.release()
    info = dict(meta)
    info.update(
        generator=f"facetrack68 synth-clips v{GENERATOR_VERSION}",
        still=scene.name,
        frames=plan.frames,
        settings=asdict(settings),
        noise=asdict(plan.noise),
        occluder=asdict(plan.occluder) if plan.occluder else None,
        per_frame={
            "occluded_share": occluded,
            "blur_px": [round(float(np.hypot(*b)), 3) for b in plan.blur],
            "gain": [round(float(g.mean()), 3) for g in plan.gains],
        },
    )
    if turning:
        info["source_yaw"] = round(turning.fit.yaw, 2)
        info["source_pitch"] = round(turning.fit.pitch, 2)
        info["per_frame"]["yaw_delta"] = [round(float(v), 3) for v in turning.yaw]
        info["per_frame"]["pitch_delta"] = [round(float(v), 3) for v in turning.pitch]
        info["per_frame"]["yaw"] = [round(float(v) + turning.fit.yaw, 3) for v in turning.yaw]
    atomic_write(folder / META_NAME, json.dumps(info, indent=1))
    return folder


def is_complete(folder: Path, meta: dict) -> bool:
    """A clip folder that was fully written with the same still, seed and settings."""
    try:
        info = json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return False
    return all(info.get(k) == v for k, v in meta.items())


def choose_stills(source_dir: Path, count: int, seed: int) -> list:
    """``count`` annotated stills, drawn without replacement by ``seed`` (all of them if fewer)."""
    items = list_annotated(source_dir)
    if not items:
        raise FileNotFoundError(f"no annotated images (image + .pts) in {source_dir}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(items), size=min(count, len(items)), replace=False))
    return [items[i] for i in pick]


def make_clips(
    source_dir: Path,
    out_dir: Path,
    count: int = DEFAULT_COUNT,
    settings: SynthSettings | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    turn: TurnSettings | None = None,
) -> list[Path]:
    """Make (or finish) a set of clips; complete clips with the same recipe are kept unless ``overwrite``.

    The stills are the same for a moving and a static set with the same seed and
    count, so ``synth_007`` and ``static_007`` show the same face. With ``turn``, turning
    clips (``turn_NNN``) from the first ``count`` near-frontal stills in the seed's order.
    """
    from tqdm import tqdm

    settings = settings or SynthSettings()
    if turn is not None:
        return make_turning_clips(source_dir, out_dir, count, settings, turn, seed, overwrite, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    stills = choose_stills(source_dir, count, seed)
    for i, item in enumerate(tqdm(stills, desc=f"clips -> {out_dir}", unit="clip", disable=not progress)):
        folder = out_dir / clip_name(i, settings.static)
        meta = {"seed": seed, "index": i, "source": str(item.image_path.name), "recipe": asdict(settings)}
        meta = json.loads(json.dumps(meta))  # tuples -> lists, as they come back from the file
        folders.append(folder)
        if not overwrite and is_complete(folder, meta):
            continue
        rng = np.random.default_rng([seed, i, int(settings.static)])
        try:
            scene = load_scene(item.image_path, item.pts_path, rng)
        except ValueError as exc:  # unreadable image or malformed .pts: named in the message
            print(f"synth-clips: skipping {folder.name}: {exc}")
            folders.pop()
            continue
        plan = plan_clip(rng, scene, settings)
        write_clip(folder, scene, plan, settings, rng, meta)
    return folders


def make_turning_clips(
    source_dir: Path,
    out_dir: Path,
    count: int,
    settings: SynthSettings,
    turn: TurnSettings,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Turning clips (see the module docstring); stills Face Mesh cannot fit, or not near-frontal, are passed over."""
    from tqdm import tqdm

    from models.tools.face_profiling import FaceMesh3D, FitError

    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    items = list_annotated(source_dir)
    if not items:
        raise FileNotFoundError(f"no annotated images (image + .pts) in {source_dir}")
    order = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    yaw, pitch = turn_schedule(turn, settings.frames)
    bar = tqdm(total=count, desc=f"turning clips -> {out_dir}", unit="clip", disable=not progress)
    with FaceMesh3D() as mesh:
        for item in order:
            if len(folders) == count:
                break
            i = len(folders)
            folder = out_dir / clip_name(i, False, turn=True)
            meta = {"seed": seed, "index": i, "source": str(item.image_path.name), "recipe": asdict(settings),
                    "turn": asdict(turn)}
            meta = json.loads(json.dumps(meta))
            if not overwrite and is_complete(folder, meta):
                folders.append(folder)
                bar.update()
                continue
            rng = np.random.default_rng([seed, i, 2])
            try:
                scene = load_scene(item.image_path, item.pts_path, rng)
                fit = mesh.fit(np.clip(np.rint(scene.still), 0, 255).astype(np.uint8), scene.points)
            except (ValueError, FitError) as exc:  # unreadable, or Face Mesh found no matching face
                print(f"synth-clips: passing over {item.image_path.name}: {exc}")
                continue
            if abs(fit.yaw) > turn.max_source_yaw:
                continue
            plan = replace(plan_clip(rng, scene, settings), occluder=None)
            write_clip(folder, scene, plan, settings, rng, meta, TurningScene(scene, fit, yaw, pitch))
            folders.append(folder)
            bar.update()
    bar.close()
    if len(folders) < count:
        print(f"synth-clips: only {len(folders)} of {source_dir}'s stills are near-frontal and fitted")
    return folders


def read_video_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    wanted, frames = set(indices), {}
    cap = cv2.VideoCapture(str(path))
    try:
        t = 0
        while wanted - frames.keys():
            ok, image = cap.read()
            if not ok:
                break
            if t in wanted:
                frames[t] = image
            t += 1
    finally:
        cap.release()
    return frames


def contact_sheet(
    folders: list[Path], path: Path, per_clip: int = 5, scale: float = 1 / 3, points: bool = True
) -> Path:
    """A JPEG grid: one row per clip, ``per_clip`` evenly spaced frames, ground truth drawn as dots."""
    rows = []
    for folder in folders:
        annots = sorted((folder / "annot").glob("*.pts"))
        n = len(annots)
        indices = sorted({int(round(i)) for i in np.linspace(0, n - 1, per_clip)})
        frames = read_video_frames(folder / "vid.avi", indices)
        tiles = []
        for t in indices:
            image = frames.get(t, np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)).copy()
            if points:
                for x, y in read_pts(annots[t]):
                    centre = (int(round(x * _ONE)), int(round(y * _ONE)))
                    cv2.circle(image, centre, 2 * _ONE, (0, 255, 0), -1, cv2.LINE_AA, _SUB)
            tile = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            label = f"{folder.name} #{t + 1}"
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-dir", type=Path, default=None, help=f"annotated stills (default: <data>/{TEST_SET}, test-only faces)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT}/moving or /static)"
    )
    parser.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, help="number of clips (default %(default)s)")
    parser.add_argument("--frames", type=int_at_least(2), default=DEFAULT_FRAMES, help="frames per clip (default %(default)s)")
    parser.add_argument("--static", action="store_true", help="static-face clips: fixed placement, sensor noise only")
    parser.add_argument(
        "--motion",
        choices=("camera", "turn"),
        default="camera",
        help="camera: a moving camera (default); turn: the head also turns to +-60 degrees yaw and back",
    )
    parser.add_argument("--turn-yaw", type=float, default=TurnSettings.yaw_deg, help="peak yaw change of --motion turn")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="remake clips that are already complete")
    parser.add_argument("--no-sheet", dest="sheet", action="store_false", help="skip the contact sheet")


def _mediapipe_installed() -> bool:
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    source = args.source_dir or data_root() / TEST_SET
    turning = getattr(args, "motion", "camera") == "turn"
    if turning and args.static:
        print("synth-clips: --static and --motion turn exclude each other")
        return 2
    if turning and not 0 < args.turn_yaw <= 90:
        print(f"synth-clips: --turn-yaw must be in (0, 90] degrees, got {args.turn_yaw}")
        return 2
    if turning and not _mediapipe_installed():
        print("synth-clips: --motion turn fits each still with MediaPipe Face Mesh, which is not installed; "
              "install it with: pip install -e '.[peers]'")
        return 2
    out = args.out or DEFAULT_OUT / ("turn" if turning else "static" if args.static else "moving")
    settings = SynthSettings(frames=args.frames, static=args.static)
    turn = TurnSettings(yaw_deg=args.turn_yaw) if turning else None
    # Before anything is written: each clip folder is removed and written again, the sheet replaced.
    check_output_folder([source], out)
    check_replaced_folders([source], [("--out", out / clip_name(i, args.static, turning)) for i in range(args.count)])
    check_outputs([source], {"--out": out / "contact_sheet.jpg" if args.sheet else None})
    start = time.perf_counter()
    try:
        folders = make_clips(source, out, args.count, settings, seed=args.seed, overwrite=args.overwrite, turn=turn)
    except (FileNotFoundError, BackendUnavailable) as exc:
        print(f"synth-clips: {exc}")
        return 1
    elapsed = time.perf_counter() - start
    print(f"{len(folders)} clips of {args.frames} frames in {out} ({elapsed:.1f} s)")
    if args.sheet:
        sheet = contact_sheet(folders[:8], out / "contact_sheet.jpg")
        print(f"contact sheet: {sheet}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.synth.clips", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

