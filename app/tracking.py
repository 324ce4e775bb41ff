"""Face tracks: which faces exist, when the detector must run, and where each crop comes from.

A track is aligned from its own previous landmarks (their five derived keypoints), so
the detector only runs on the first frame, every ``redetect_interval`` frames (to pick
up new faces) and whenever a track is lost. Tracks keep their id across frames;
detections are matched to tracks by box overlap. A face whose track was lost in the last
``reuse_frames`` frames gets its old id back when a new track starts where it was (a face
turned away or blurred for a moment is the same person, not a newcomer), and with it the
face's geometry (``Track.geometry``: the blink baseline and the pose filter carry on; a
blink often loses a track for a frame or two).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from models.boxes import box_iou, match_face
from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
from models.types import Detection, Landmarks


@dataclass
class TrackerOptions:
    redetect_interval: int = 30  # frames between detector runs while tracking (0: only when lost)
    detect_every_frame: bool = False  # align every frame from a fresh detection (no tracking)
    max_faces: int = 16  # a crowd (the street clip shows up to 9); crops of all faces go to the network in one batch
    min_confidence: float = 0.25  # mean landmark confidence under which a track is lost (over the
    # points the model sees, for models that say which are hidden)
    min_visible_fraction: float = 0.25  # models that say which points are hidden: fewer seen loses a track
    max_outside_fraction: float = 0.4  # share of landmarks outside the frame that loses a track
    min_face_size: float = 8.0  # px: landmarks spanning less than this (a collapsed fit) lose a track
    match_iou: float = 0.3  # box overlap that matches a detection to a track
    drift_tolerance: float = 0.25  # re-align from a matching detection when the track's keypoints
    # are further than this from the detector's (mean distance, in eye distances)
    duplicate_iou: float = 0.6  # two tracks overlapping this much are the same face
    reuse_frames: int = 15  # a track lost this recently gives its id to a new track at its place
    reuse_iou: float = 0.2  # box overlap (new track, lost track's last box) that counts as its place


@dataclass
class Track:
    track_id: int
    landmarks: Landmarks  # last raw (unsmoothed) landmarks, the source of the next alignment
    frames: int = 1
    detection: Detection | None = None  # the detection that fed this frame's crop, if any
    smoother: object | None = field(default=None, repr=False)  # owned by the pipeline
    geometry: object | None = field(default=None, repr=False)  # owned by the pipeline (app.geometry)

    @property
    def box(self) -> np.ndarray:
        return self.landmarks.box()


@dataclass(eq=False)  # holds an array: compared by identity
class _LostTrack:
    track_id: int
    box: np.ndarray  # its last landmark box
    geometry: object | None  # the lost track's geometry, handed to the track that takes its id
    age: int = 0  # frames since it was lost


@dataclass(frozen=True)
class AlignmentJob:
    """One crop to make on this frame: for an existing track or a new one, from these keypoints."""

    track: Track | None
    keypoints: np.ndarray  # (6, 2)
    mask: np.ndarray  # (6,)
    detection: Detection | None


class FaceTracker:
    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        self.model_min_confidence = 0.0  # the landmark model's own floor (LandmarkModel.min_confidence)
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self._frames_since_detection = 0
        self._lost: list[_LostTrack] = []

    def reset(self) -> None:
        """Forget every track (new source, seek). Ids keep increasing."""
        self.tracks = []
        self._lost = []
        self._frames_since_detection = 0

    def needs_detection(self) -> bool:
        opts = self.options
        if opts.detect_every_frame or not self.tracks:
            return True
        return opts.redetect_interval > 0 and self._frames_since_detection >= opts.redetect_interval

    def plan(self, detections: list[Detection] | None, full_frame: bool = True) -> list[AlignmentJob]:
        """The crops for this frame: one per live track, plus new tracks from unmatched detections.

        ``full_frame=False``: the detections come from a search around lost faces only, which
        does not count as the periodic re-detection (newcomers elsewhere were not looked for).
        """
        for track in self.tracks:
            track.detection = None
        self._lost = [lost for lost in self._lost if lost.age < self.options.reuse_frames]
        for lost in self._lost:
            lost.age += 1
        if detections is None:
            self._frames_since_detection += 1
            return [self._from_track(t) for t in self.tracks]
        if full_frame:
            self._frames_since_detection = 1
        jobs: list[AlignmentJob] = []
        unmatched = list(detections)
        for track in self.tracks:
            best = max(unmatched, key=lambda d: box_iou(d.box, track.box), default=None)
            if best is not None and box_iou(best.box, track.box) >= self.options.match_iou:
                unmatched = [d for d in unmatched if d is not best]
                if self.options.detect_every_frame or self.drifted(track, best):
                    jobs.append(AlignmentJob(track, best.keypoints, best.keypoint_mask, best))
                else:
                    jobs.append(AlignmentJob(track, *self._track_keypoints(track), best))
            else:
                jobs.append(self._from_track(track))
        room = self.options.max_faces - len(self.tracks)
        for det in unmatched[: max(room, 0)]:
            jobs.append(AlignmentJob(None, det.keypoints, det.keypoint_mask, det))
        return jobs

    def update(self, jobs: list[AlignmentJob], landmarks: list[Landmarks], frame_shape: tuple[int, ...]) -> None:
        """Store each job's new landmarks, start new tracks, drop lost and duplicate ones.

        Tracks that had no job in this batch are kept as they are, so a second batch on
        the same frame (new faces after a lost track) adds to the first.
        """
        planned = {id(job.track) for job in jobs if job.track is not None}
        tracks = [t for t in self.tracks if id(t) not in planned]
        for job, lm in zip(jobs, landmarks):
            if self.is_lost(lm, frame_shape):
                if job.track is not None:
                    self._lost.append(_LostTrack(job.track.track_id, job.track.box, job.track.geometry))
                continue
            if job.track is None:
                track = self._new_track(lm, tracks)
            else:
                track = job.track
                track.landmarks = lm
                track.frames += 1
            track.detection = job.detection
            tracks.append(track)
        self.tracks = self._drop_duplicates(tracks)

    def just_lost(self) -> list[np.ndarray]:
        """The last boxes of the tracks lost by the latest ``update``."""
        return [lost.box for lost in self._lost if lost.age == 0]

    def forget_owned_state(self) -> None:
        """Drop what the pipeline keeps on tracks (smoothers, geometry), live and lost: new
        options make it stale. The tracks and ids carry on."""
        for track in self.tracks:
            track.smoother = track.geometry = None
        for lost in self._lost:
            lost.geometry = None

    def _new_track(self, landmarks: Landmarks, live: list[Track]) -> Track:
        """A track for a new face: the id and geometry of the recently lost track at its box (the
        best overlap), else a fresh id."""
        box = landmarks.box()
        in_use = {t.track_id for t in live} | {t.track_id for t in self.tracks}
        candidates = [lost for lost in self._lost if lost.track_id not in in_use]
        best = max(candidates, key=lambda lost: box_iou(box, lost.box), default=None)
        if best is not None and box_iou(box, best.box) >= self.options.reuse_iou:
            self._lost.remove(best)
            return Track(best.track_id, landmarks, geometry=best.geometry)
        return Track(next(self._ids), landmarks)

    def drifted(self, track: Track, detection: Detection) -> bool:
        """Whether a track's keypoints have wandered from the detector's on the same face.

        Models whose confidence stays high on a poor fit (dlib's) would otherwise never
        be corrected: a re-detection only confirms a track that still overlaps it.
        """
        keypoints, _ = self._track_keypoints(track)
        eye_distance = float(np.linalg.norm(keypoints[1] - keypoints[0]))
        mask = detection.keypoint_mask
        error = np.linalg.norm(keypoints[mask] - detection.keypoints[mask], axis=1).mean()
        return eye_distance <= 0 or error > self.options.drift_tolerance * eye_distance

    def is_lost(self, lm: Landmarks, frame_shape: tuple[int, ...]) -> bool:
        floor = max(self.options.min_confidence, self.model_min_confidence)
        if not np.all(np.isfinite(lm.points)):
            return True
        confidence = lm.confidence
        if lm.visible is not None:  # hidden points have a low confidence by design: judge the seen ones
            if np.mean(lm.visible) < self.options.min_visible_fraction:
                return True
            confidence = lm.confidence[lm.visible]
        if float(np.mean(confidence)) < floor:
            return True
        if float(np.ptp(lm.points, axis=0).max()) < self.options.min_face_size:
            return True
        h, w = frame_shape[:2]
        x, y = lm.points[:, 0], lm.points[:, 1]
        outside = (x < 0) | (y < 0) | (x > w - 1) | (y > h - 1)
        return float(outside.mean()) > self.options.max_outside_fraction

    def _drop_duplicates(self, tracks: list[Track]) -> list[Track]:
        kept: list[Track] = []
        for track in sorted(tracks, key=lambda t: -t.frames):  # older tracks win
            if all(box_iou(track.box, k.box) < self.options.duplicate_iou for k in kept):
                kept.append(track)
        return sorted(kept, key=lambda t: t.track_id)

    @staticmethod
    def _track_keypoints(track: Track) -> tuple[np.ndarray, np.ndarray]:
        return keypoints_from_landmarks(track.landmarks.points), FIVE_POINT_MASK

    def _from_track(self, track: Track) -> AlignmentJob:
        return AlignmentJob(track, *self._track_keypoints(track), None)


def pick_face(faces, gt: np.ndarray):
    """The tracked face (``FaceResult``) that belongs to the annotated face, by its raw landmark box
    (``models.boxes.match_face``, the rule every scorer uses); None for a miss."""
    index = match_face([face.raw_landmarks.box() for face in faces], gt)
    return None if index is None else faces[index]
