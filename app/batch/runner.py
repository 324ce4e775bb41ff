"""The driver: starts (or joins) Ray, runs every input's chunks on the workers, writes outputs.

Ray does the distributed work: it places one actor per worker (``num_cpus=1``), restarts an
actor whose process dies and re-runs the calls it had (``max_restarts``,
``max_task_retries``). The driver hands each worker at most ``queue_per_worker`` chunks at a
time (so a worker always has its next chunk queued, and memory is bounded by
``workers x queue_per_worker`` chunks in flight or waiting to be stitched), then writes
what comes back in order through ``Stitcher`` and ``InputParts``. Outputs are written by
the driver only: one writer, so each frame is written once and ``DIR`` need only be on the
driver's machine; the inputs must be readable by every worker at the same path.
"""
from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import ray
from ray.exceptions import RayActorError, RayError

from app.batch.inputs import InputItem, discover_inputs
from app.batch.manifest import DONE, FAILED, PARTIAL, PENDING, InputEntry, Manifest, model_info, package_versions, \
    settings_id, settings_of
from app.batch.parts import ChunkState, InputParts
from app.batch.plan import DEFAULT_CHUNK_FRAMES, DEFAULT_OVERLAP, Chunk, plan_chunks
from app.batch.probe import InputInfo, stat_input
from app.batch.progress import Progress
from app.batch.schema import parquet_schema
from app.batch.stitch import Stitcher
from app.batch.worker import ChunkResult, ChunkWorker
from app.cli.pipeline_args import pipeline_from_args
from app.sources.video import lost_frames_message

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_SAVE_INTERVAL_S = 5.0


@dataclass
class BatchConfig:
    inputs: list[str]
    out: Path
    pipeline_args: argparse.Namespace  # the options of add_pipeline_arguments
    workers: int | None = None  # None: the CPUs of this machine (or of the cluster with ``address``)
    address: str | None = None  # a running Ray cluster; None: start Ray here
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    overlap: int = DEFAULT_OVERLAP
    queue_per_worker: int = 2
    max_frames: int | None = None  # per input
    max_retries: int = 3  # worker restarts / chunk re-runs before an input fails
    command: list[str] = field(default_factory=list)
    progress: bool | None = None  # None: when stderr is a terminal


@dataclass
class BatchSummary:
    done: int = 0
    failed: int = 0
    partial: int = 0  # inputs left unfinished (a re-run finishes them)
    with_problems: int = 0  # inputs whose outputs are complete but which had problems (status partial)
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def start_ray(workers: int | None = None, address: str | None = None, temp_dir: str = "/tmp/ray") -> bool:
    """Connect to ``address`` or start Ray here; False when Ray was already running in this process."""
    if ray.is_initialized():
        return False
    # Workers import this very checkout (not another installed copy of the package).
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, _temp_dir=temp_dir,
                 runtime_env=runtime_env, log_to_driver=True, configure_logging=False)
    return True


def _finished(entry: InputEntry) -> bool:
    """Nothing more to do: done, or complete with problems (partial with its outputs written)."""
    return entry.status == DONE or (entry.status == PARTIAL and entry.csv is not None and entry.parquet is not None)


class _InputJob:
    """One input being annotated: its chunks, what is written, what is still to come."""

    def __init__(self, item: InputItem, entry: InputEntry, parts: InputParts, chunks: list[Chunk],
                 done: list[ChunkState], overlap: int) -> None:
        self.item, self.entry, self.parts, self.chunks = item, entry, parts, chunks
        self.n_chunks = len(chunks)
        self.stitcher = Stitcher(overlap, len(done), parts.tail(done, overlap))
        self.next_submit = len(done)
        self.failed = False
        self.ends_at: int | None = None  # frames the input really holds, once a chunk met its end
        self.lost: set[int] = set()  # a video's frames lost to damage, over every chunk written
        self.lost_problem: str | None = None  # the one problem that names them
        for state in done:
            self._count(state)

    def _count(self, state: ChunkState) -> None:
        entry = self.entry
        entry.frames += state.frames
        entry.rows += state.rows
        entry.faces = state.next_face_id - 1
        entry.chunks_done = state.index + 1
        entry.status = PARTIAL
        entry.workers[state.worker] = entry.workers.get(state.worker, 0) + 1
        entry.problems += [p for p in state.problems if p not in entry.problems]
        if state.skipped:
            entry.skipped_frames = sorted(set(entry.skipped_frames).union(state.skipped))
        if state.lost:
            self.lost.update(state.lost)
            message = lost_frames_message(self.item.path, sorted(self.lost))
            if self.lost_problem in entry.problems:
                entry.problems[entry.problems.index(self.lost_problem)] = message
            else:
                entry.problems.append(message)
            self.lost_problem = message

    def next_chunk(self) -> Chunk | None:
        if self.failed or self.next_submit >= self.n_chunks:
            return None
        self.next_submit += 1
        return self.chunks[self.next_submit - 1]

    def remaining_frames(self) -> int:
        return sum(c.planned_frames for c in self.chunks[self.stitcher.next_index : self.n_chunks])

    def input_ends_at(self, frames: int) -> int:
        """The input holds ``frames`` frames: drop the chunks past it; returns the planned frames lost."""
        if self.ends_at is not None:
            return 0
        self.ends_at = frames
        keep = max(1, sum(1 for c in self.chunks[: self.n_chunks] if c.start < frames))
        lost = sum(c.planned_frames for c in self.chunks[keep : self.n_chunks])
        last = self.chunks[keep - 1]
        lost += max(0, last.planned_frames - max(0, frames - last.start)) if last.stop is not None else 0
        self.n_chunks = keep
        self.stitcher.discard(keep)
        return lost

    @property
    def complete(self) -> bool:
        return not self.failed and self.stitcher.next_index >= self.n_chunks


class BatchRunner:
    def __init__(self, config: BatchConfig, on_event: Callable[..., None] | None = None) -> None:
        """``on_event(name, **details)`` is called after each chunk is written ("chunk") and input finished."""
        self.config = config
        self.on_event = on_event or (lambda name, **details: None)
        self.worker_pids: list[int] = []
        self._actors: list = []

    # -- set-up --------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[InputItem], Manifest, str]:
        cfg = self.config
        cfg.out.mkdir(parents=True, exist_ok=True)
        items = discover_inputs(cfg.inputs, cfg.out)
        if not items:
            named = ", ".join(map(str, cfg.inputs))
            raise ValueError(f"no inputs found in {named} (videos, 300-VW clips, image folders)")
        model = model_info(cfg.pipeline_args.model)
        settings = settings_of(cfg.pipeline_args, chunk_frames=cfg.chunk_frames, overlap=cfg.overlap,
                               max_frames=cfg.max_frames)
        sid = settings_id(settings, model)
        manifest = Manifest(cfg.out)
        manifest.header.update(model=model, settings=settings, settings_id=sid, versions=package_versions(),
                               command=cfg.command or None)
        return items, manifest, sid

    def _start_workers(self, count: int) -> None:
        retries = self.config.max_retries
        actor = ray.remote(num_cpus=1, max_restarts=retries, max_task_retries=retries)(ChunkWorker)
        driver = (socket.gethostname(), os.getpid())  # workers beside the driver exit when it has ended
        self._actors = [actor.remote(self.config.pipeline_args, driver) for _ in range(count)]
        try:
            self.worker_pids = ray.get([a.pid.remote() for a in self._actors])
        except RayActorError as error:
            raise RuntimeError(f"the workers could not load the pipeline: {error}") from None

    # -- the run -------------------------------------------------------------------------
    def run(self) -> BatchSummary:
        cfg = self.config
        started = time.perf_counter()
        items, manifest, sid = self._prepare()
        summary = BatchSummary()
        todo: list[tuple[InputItem, InputEntry]] = []
        for item in items:
            entry = manifest.entry(item)
            try:
                stat = stat_input(item)
            except OSError as error:
                self._fail(entry, summary, item.key, str(error))
                continue
            unchanged = (entry.size, entry.mtime_ns) == (stat.size, stat.mtime_ns)
            if _finished(entry) and entry.settings_id == sid and unchanged:
                summary.skipped += 1
                summary.with_problems += entry.status == PARTIAL
                continue
            todo.append((item, entry))
        manifest.save()
        if not todo:
            summary.seconds = time.perf_counter() - started
            return summary
        # Load the pipeline here once: a bad option fails with track's own message, not in every worker.
        pipeline_from_args(cfg.pipeline_args).close()
        own_ray = start_ray(cfg.workers, cfg.address)
        progress = None
        jobs: list[_InputJob] = []
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            workers = cfg.workers or cpus
            if not 1 <= workers <= cpus:  # each worker takes one CPU: more would wait forever
                raise ValueError(f"{workers} workers need {workers} CPUs; the Ray cluster has {cpus}")
            self._start_workers(workers)
            infos = self._probe([item for item, _ in todo])
            for (item, entry), info in zip(todo, infos):
                job = self._job(item, entry, info, sid, manifest, summary)
                if job is not None:
                    jobs.append(job)
            manifest.save()
            progress = Progress(sum(job.remaining_frames() for job in jobs), cfg.progress)
            for job in jobs:
                if job.entry.problems:
                    progress.say(f"warning: {job.item.key}: {job.entry.problems[0]}")
            self._run_chunks(jobs, manifest, summary, progress)
        finally:
            manifest.save()
            if progress is not None:
                progress.close()
            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
            if own_ray:
                ray.shutdown()
        summary.partial = sum(1 for e in manifest.inputs.values() if e.status == PARTIAL and not _finished(e))
        summary.seconds = time.perf_counter() - started
        return summary

    def _probe(self, items: list[InputItem]) -> list[InputInfo]:
        refs = [self._actors[i % len(self._actors)].probe.remote(item) for i, item in enumerate(items)]
        return ray.get(refs)

    def _job(self, item: InputItem, entry: InputEntry, info: InputInfo, sid: str, manifest: Manifest,
             summary: BatchSummary) -> _InputJob | None:
        cfg = self.config
        parts = InputParts(cfg.out, item.key, parquet_schema(
            {"source": str(item.path), "model": manifest.header["model"], "settings_id": sid}))
        if info.error is not None:
            parts.clear()
            self._fail(entry, summary, item.key, info.error, info)
            return None
        same = entry.settings_id == sid and entry.sha256 == info.sha256
        if _finished(entry) and same:  # touched but unchanged
            entry.size, entry.mtime_ns = info.stat.size, info.stat.mtime_ns
            summary.skipped += 1
            summary.with_problems += entry.status == PARTIAL
            return None
        done = parts.done_chunks() if same else []
        if not done:
            parts.clear()
            parts.remove_outputs()
        frames = info.frames if cfg.max_frames is None else min(info.frames or cfg.max_frames, cfg.max_frames)
        chunks = plan_chunks(item.key, frames, cfg.chunk_frames, cfg.overlap)
        fresh = InputEntry(str(item.path), item.kind, PENDING, sid, info.stat.size, info.stat.mtime_ns,
                           info.sha256, frames_declared=info.frames, chunks=len(chunks))
        manifest.inputs[item.key] = fresh
        return _InputJob(item, fresh, parts, chunks, done[: len(chunks)], cfg.overlap)

    def _fail(self, entry: InputEntry, summary: BatchSummary, key: str, reason: str,
              info: InputInfo | None = None) -> None:
        entry.status, entry.reason = FAILED, reason
        if info is not None and info.stat is not None:
            entry.size, entry.mtime_ns = info.stat.size, info.stat.mtime_ns
        summary.failed += 1
        summary.failures.append((key, reason))

    def _chunks_to_submit(self, jobs: list[_InputJob]) -> Iterator[tuple[_InputJob, Chunk]]:
        for job in jobs:
            while (chunk := job.next_chunk()) is not None:
                yield job, chunk

    def _run_chunks(self, jobs: list[_InputJob], manifest: Manifest, summary: BatchSummary,
                    progress: Progress) -> None:
        cfg = self.config
        queue = self._chunks_to_submit(jobs)
        window = len(self._actors) * cfg.queue_per_worker
        in_flight: dict = {}  # ref -> (job, chunk, actor index)
        load = [0] * len(self._actors)
        last_save, last_finished = time.monotonic(), (summary.done + summary.failed + summary.with_problems,
                                                      sum(job.entry.chunks_done for job in jobs))
        exhausted = False
        while True:
            waiting = sum(job.stitcher.waiting for job in jobs)
            while not exhausted and len(in_flight) + waiting < window and min(load) < cfg.queue_per_worker:
                pair = next(queue, None)
                if pair is None:
                    exhausted = True
                    break
                job, chunk = pair
                if job.failed:
                    continue
                worker = load.index(min(load))
                ref = self._actors[worker].run_chunk.remote(job.item, chunk)
                in_flight[ref] = (job, chunk, worker)
                load[worker] += 1
            if not in_flight:
                if exhausted:
                    break
                # Results wait only for an earlier chunk of theirs that is still running.
                raise RuntimeError("internal error: chunks are waiting for a chunk that is not running")
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                job, chunk, worker = in_flight.pop(ref)
                load[worker] -= 1
                try:
                    result: ChunkResult = ray.get(ref)
                except RayError as error:
                    if isinstance(error, RayActorError):  # restarted max_retries times: out of rotation
                        load[worker] = float("inf")
                        if all(n == float("inf") for n in load):
                            raise RuntimeError(f"every worker died (last: {error})") from None
                    reason = f"chunk {chunk.index} (frames {chunk.start}-{chunk.stop}) failed: {error}"
                    self._abandon(job, reason, summary, progress)
                    continue
                self._take(job, result, summary, progress)
            # Saved as each chunk lands, so a driver killed outright leaves a manifest that says
            # which chunks are on disk (a re-run would find them anyway; the manifest now tells a reader).
            finished = (summary.done + summary.failed + summary.with_problems,
                        sum(job.entry.chunks_done for job in jobs))
            if finished != last_finished or time.monotonic() - last_save > MANIFEST_SAVE_INTERVAL_S:
                manifest.save()
                last_save, last_finished = time.monotonic(), finished

    def _abandon(self, job: _InputJob, reason: str, summary: BatchSummary, progress: Progress) -> None:
        if job.failed:
            return
        job.failed = True
        job.stitcher.discard()
        progress.add_to_total(-job.remaining_frames())
        self._fail(job.entry, summary, job.item.key, reason)
        progress.say(f"failed: {job.item.key}: {reason}")

    def _take(self, job: _InputJob, result: ChunkResult, summary: BatchSummary, progress: Progress) -> None:
        if job.failed or result.chunk.index >= job.n_chunks:
            return
        if result.error is not None:
            self._abandon(job, result.error, summary, progress)
            return
        for problem in result.problems:
            if problem not in job.entry.problems:
                job.entry.problems.append(problem)
                progress.say(f"warning: {job.item.key}: {problem}")
        if result.end_of_input is not None:
            lost = job.input_ends_at(result.end_of_input)
            if result.chunk.stop is None:
                lost -= len(result.frames)
            progress.add_to_total(-lost)
        job.stitcher.add(result)
        for done, mapping in job.stitcher.ready():
            if done.chunk.index >= job.n_chunks:
                continue
            frames = done.frames
            state = ChunkState(
                index=done.chunk.index, frames=len(frames), rows=len(done.boxes),
                last_frame=int(frames[-1]) if len(frames) else None, next_face_id=job.stitcher.tail.next_id,
                end_of_input=done.end_of_input, problems=done.problems, worker=done.worker,
                skipped=done.skipped, lost=done.lost,
            )
            writing = time.perf_counter()
            job.parts.write_chunk(state, done.rows.renamed(mapping))
            job.entry.write_seconds += time.perf_counter() - writing
            job._count(state)
            job.entry.seconds += done.seconds
            summary.frames += len(frames)
            progress.advance(len(frames))
            self.on_event("chunk", key=job.item.key, index=done.chunk.index, worker=done.worker)
        if job.complete:
            writing = time.perf_counter()
            job.parts.finalize(job.n_chunks)
            job.entry.write_seconds += time.perf_counter() - writing
            entry = job.entry
            # One policy with track's exit 3: outputs complete, but frames were lost or skipped.
            entry.status = PARTIAL if entry.problems or entry.skipped_frames else DONE
            entry.csv = job.parts.csv_path.relative_to(self.config.out).as_posix()
            entry.parquet = job.parts.parquet_path.relative_to(self.config.out).as_posix()
            if entry.status == DONE:
                summary.done += 1
            else:
                summary.with_problems += 1
            self.on_event("input", key=job.item.key, status=entry.status)
