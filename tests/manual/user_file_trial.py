"""The user-file trial of issue 31 as a script: what a careful new user might do to the command line.

A plain script, not a test (pytest collects only ``test_*.py``): it runs the real CLI of a tree
(``--repo``, default this checkout) as subprocesses, one per case, with a timeout, over inputs it
builds in a temporary folder from copies of the shared data (the shared folder is only read), and
writes a Markdown table (``OUT/results.md``) and the raw results (``OUT/results.json``)::

    .venv/bin/python tests/manual/user_file_trial.py --out /tmp/trial
    # an older tree, e.g. before issue 31's fixes:
    git worktree add /tmp/wt_before31 de2cf41
    cd /tmp/wt_before31 && FACETRACK_DATA=/work/shared/data /work/main/.venv/bin/python \\
        /work/main/tests/manual/user_file_trial.py --repo /tmp/wt_before31 --out /tmp/trial_before
    # both in one table:
    .venv/bin/python tests/manual/user_file_trial.py --merge /tmp/trial_before /tmp/trial --out merged.md

Each case records the exit status, the last line of stderr (the message), whether every file in
the inputs folder is byte-identical afterwards (sha256 of each, before and after; a file added
there counts as a change too) and a verdict: the behaviour the README promises (exit status,
a message rather than a traceback, the inputs untouched, plus the case's own check such as
"the recording still plays"). ``--only REGEX`` runs some cases. As root, the read-only folder and
the full disk are tmpfs mounts (unmounted at the end); otherwise a read-only folder is a chmod
(no use for root) and the full disk only the file-size limit (``RLIMIT_FSIZE``). The cases, their inputs
and checks are in ``user_file_cases.py`` beside this file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from user_file_cases import Case, build_inputs, cases

HERE_REPO = Path(__file__).resolve().parents[2]
NOISE = re.compile(r"Token authentication is enabled|ray-security|^\s*$|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+INFO"
                   r"|Started a local Ray instance|View the dashboard|RAY_ACCEL|FutureWarning|warnings\.warn"
                   r"|\d+%\|.*\|"            # a tqdm progress bar
                   r"|^\s*\(\w+ pid=\d+\)")  # a line a Ray worker printed (the driver's own come after)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Row:
    case: str
    group: str
    command: str
    expected: str
    exit: str = ""
    message: str = ""
    inputs_unchanged: str = ""
    verdict: str = ""
    note: str = ""
    seconds: float = 0.0


@dataclass
class Result:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    extra: dict = field(default_factory=dict)


class Trial:
    def __init__(self, repo: Path, data: Path, work: Path, python: str, timeout: float) -> None:
        self.repo, self.data, self.work, self.python, self.timeout = repo, data, work, python, timeout
        self.inp = work / "in"
        self.outs = work / "out"
        self.mnt = work / "mnt"
        self.mounted: list[Path] = []
        self.root = os.geteuid() == 0
        self._help: dict[str, str] = {}
        for folder in (self.inp, self.outs, self.mnt):
            folder.mkdir(parents=True, exist_ok=True)
        new_tools = (repo / "models" / "tools" / "train.py").exists()
        self.train_module = "models.tools.train" if new_tools else "models.train"
        self.export_module = "models.tools.export" if new_tools else "models.export"

    # ---- environment and processes -------------------------------------------------------------
    def env(self, tag: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["FACETRACK_DATA"] = str(self.data)
        env["QT_QPA_PLATFORM"] = "offscreen"
        env["FACETRACK_TRIAL_TAG"] = tag  # every process a case starts carries it: cleaned up by it
        env.pop("FACETRACK_FULL_STACK", None)
        return env

    @staticmethod
    def kill_tagged(tag: str) -> int:
        """SIGKILL every process left over from a case (Ray's, a killed driver's workers), by pid."""
        killed = 0
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"FACETRACK_TRIAL_TAG={tag}".encode() in environ.split(b"\0"):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        return killed

    def run(self, argv: list[str], *, timeout: float | None = None,
            during: Callable[[subprocess.Popen], dict] | None = None,
            preexec: Callable[[], None] | None = None, cwd: Path | None = None) -> Result:
        tag = uuid.uuid4().hex
        start = time.monotonic()
        out_f = tempfile.TemporaryFile()
        err_f = tempfile.TemporaryFile()
        proc = subprocess.Popen([self.python, *argv], cwd=cwd or self.inp, env=self.env(tag), stdout=out_f,
                                stderr=err_f, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=preexec)
        extra: dict = {}
        timed_out = False
        try:
            if during is not None:
                extra = during(proc) or {}
            proc.wait(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        seconds = time.monotonic() - start
        time.sleep(0.3)
        extra["leftover_processes"] = self.kill_tagged(tag)
        out_f.seek(0)
        err_f.seek(0)
        return Result(proc.returncode, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace"),
                      seconds, timed_out, extra)

    def app(self, *args: str, **kw) -> Result:
        return self.run(["-m", "app", *args], **kw)

    def help_text(self, command: str) -> str:
        if command not in self._help:
            self._help[command] = self.app(command, "--help", timeout=60).stdout
        return self._help[command]

    # ---- mounts ----------------------------------------------------------------------------
    def mount_tmpfs(self, name: str, options: str) -> Path | None:
        point = self.mnt / name
        point.mkdir(exist_ok=True)
        if not self.root:
            return None
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            return None
        self.mounted.append(point)
        return point

    def unmount_all(self) -> None:
        for point in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.mounted.clear()


def snapshot(folder: Path) -> dict[str, str]:
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                state[key] = "link:" + os.readlink(path)
            elif path.is_file():
                state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                state[key] = "dir"
    return state


def diff(before: dict[str, str], after: dict[str, str]) -> str:
    changed = [k for k in before if k in after and before[k] != after[k]]
    removed = [k for k in before if k not in after]
    added = [k for k in after if k not in before]
    parts = [f"changed {', '.join(changed[:3])}" if changed else "", f"removed {', '.join(removed[:3])}" if removed else "",
             f"new {', '.join(added[:3])}" if added else ""]
    return "; ".join(p for p in parts if p)


def message_of(res: Result) -> str:
    err = [l for l in re.split(r"[\r\n]+", ANSI.sub("", res.stderr)) if l.strip()]
    if TRACEBACK in res.stderr:
        return "TRACEBACK: " + (err[-1] if err else "")
    useful = [l for l in err if not NOISE.search(l)]
    if useful:
        return useful[-1]
    out = [l for l in res.stdout.splitlines() if l.strip()]
    return out[-1] if out else ""


def short(text: str, work: Path, n: int = 170) -> str:
    text = text.replace(str(work / "in") + "/", "").replace(str(work / "out") + "/", "OUT/")
    text = text.replace(str(work / "mnt") + "/", "MNT/").replace(str(work), "W").strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def run_case(t: Trial, case: Case) -> Row:
    out = t.outs / re.sub(r"[^a-z0-9]+", "_", case.name.lower()).strip("_")
    out.mkdir(parents=True, exist_ok=True)
    expected = case.expect if isinstance(case.expect, str) else " or ".join(str(e) for e in sorted(case.expect))
    row = Row(case.name, case.group, "", expected)
    if case.needs_root and not t.mounted:
        row.command = " ".join(case.argv)
        row.exit = row.verdict = "n/a"
        row.message = "needs root (a tmpfs mount)"
        return row
    before = snapshot(t.inp)
    if case.custom is not None:
        res, argv = case.custom(t, out)
    else:
        argv = ["-m", case.module, *[a.replace("OUTDIR", str(out)) for a in case.argv]]
        res = t.run(argv, timeout=case.timeout, preexec=case.preexec)
    after = snapshot(t.inp)
    changes = diff(before, after)
    row.command = short(("python " + " ".join(a if " " not in a else repr(a) for a in argv)).replace(str(out), "OUT"),
                        t.work, 400)
    row.seconds = round(res.seconds, 1)
    row.exit = "timeout" if res.timed_out else str(res.rc)
    row.message = short(message_of(res).replace(str(out), "OUT"), t.work)
    row.inputs_unchanged = "yes" if not changes else "NO: " + short(changes, t.work, 120)
    reasons = []
    rc_ok = (res.rc not in (0, None) and not res.timed_out) if case.expect == "nonzero" else res.rc in case.expect
    if not rc_ok:
        reasons.append(f"exit {row.exit}, expected {expected}")
    if TRACEBACK in res.stderr:
        reasons.append("a traceback")
    if changes:
        reasons.append("an input changed")
    if case.check is not None and not res.timed_out:
        good, note = case.check(t, res, out)
        row.note = short(note.replace(str(out), "OUT"), t.work, 240)
        if not good:
            reasons.append(note or "its check failed")
    # n/a: an option this tree does not have yet (argparse refuses it)
    if case.needs and case.needs[1] not in t.help_text(case.needs[0]):
        row.verdict = "n/a"
    else:
        row.verdict = "yes" if not reasons else "no: " + "; ".join(reasons)
    row.verdict = short(row.verdict.replace(str(out), "OUT"), t.work, 240)
    return row


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_table(rows: list[Row], path: Path, header: list[str]) -> None:
    lines = header + ["", "| # | case | command | exit (expected) | message (short) | inputs unchanged | verdict |",
                      "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        msg = r.message + (f" — {r.note}" if r.note else "")
        lines.append(f"| {i} | {md_cell(r.case)} | `{md_cell(r.command)}` | {r.exit} ({r.expected}) | {md_cell(msg)} "
                     f"| {md_cell(r.inputs_unchanged)} | {md_cell(r.verdict)} |")
    good = sum(r.verdict == "yes" for r in rows)
    na = sum(r.verdict == "n/a" for r in rows)
    lines += ["", f"{good} of {len(rows)} cases as expected ({na} n/a, {len(rows) - good - na} not)."]
    path.write_text("\n".join(lines) + "\n")


def machine() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs"


def git_head(repo: Path) -> str:
    done = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    text = done.stdout.strip()
    return (text if len(text) <= 70 else text[:67] + "...") or "?"


def merge(before_dir: Path, after_dir: Path, out: Path) -> None:
    b, a = (json.loads((d / "results.json").read_text()) for d in (before_dir, after_dir))
    before = {r["case"]: r for r in b["rows"]}

    def cell(r: dict | None) -> str:
        if r is None:
            return "n/a (not run)"
        msg = r["message"] + (f" — {r['note']}" if r["note"] else "")
        ins = "" if r["inputs_unchanged"] in ("yes", "") else f" **inputs: {r['inputs_unchanged']}**"
        verdict = r["verdict"] if r["verdict"] in ("yes", "n/a") else f"**{r['verdict']}**"
        return md_cell(f"exit {r['exit']}: {msg}{ins}. Expected: {verdict}")

    lines = [f"# Issue 31: the user-file trial, before / after ({len(a['rows'])} cases)", "",
             f"- before: {b['repo']} ({b['head']}), run {b['date']}", f"- after: {a['repo']} ({a['head']}), run {a['date']}",
             f"- machine: {a['machine']}", f"- before: `{b['command']}`", f"- after: `{a['command']}`", "",
             "Each cell: exit status, the last stderr line (shortened; paths relative to the inputs folder, OUT = the "
             "case's output folder), the case's own check, and whether that is the expected behaviour. Every "
             "input's sha256 is compared before and after each case.", "",
             "| # | case | command | before | after |", "|---|---|---|---|---|"]
    for i, r in enumerate(a["rows"], 1):
        lines.append(f"| {i} | {md_cell(r['case'])} | `{md_cell(r['command'])}` | {cell(before.get(r['case']))} | {cell(r)} |")
    def count(rows):
        return sum(r["verdict"] == "yes" for r in rows), sum(r["verdict"] == "n/a" for r in rows), len(rows)
    gb, nb, tb = count(b["rows"])
    ga, na, ta = count(a["rows"])
    lines += ["", f"Before: {gb} of {tb} as expected ({nb} n/a). After: {ga} of {ta} as expected ({na} n/a)."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=HERE_REPO, help="the tree whose python -m app runs")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md and results.json")
    parser.add_argument("--data", type=Path, default=None, help="the shared data (default $FACETRACK_DATA)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run (default 180)")
    parser.add_argument("--only", default=None, help="run the cases whose name matches this regex")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--merge", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="merge two runs' results.json into one table (written to --out, a file)")
    args = parser.parse_args(argv)
    if args.merge:
        merge(*args.merge, args.out)
        return 0
    repo = args.repo.resolve()
    data = (args.data or Path(os.environ.get("FACETRACK_DATA", repo.parent / "shared" / "data"))).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="user_file_trial_"))
    t = Trial(repo, data, work, args.python, args.timeout)
    rows: list[Row] = []
    started = dt.datetime.now(dt.timezone.utc)
    try:
        build_inputs(t)
        shared_before = snapshot(data / "300vw_sample")
        where = t.run(["-c", "import app; print(app.__file__)"]).stdout.strip()
        if not where.startswith(str(repo)):
            print(f"app imports from {where}, not from {repo}", file=sys.stderr)
            return 2
        t.mount_tmpfs("ro", "ro,size=1m")
        t.mount_tmpfs("full", "size=200k")
        if not t.root:
            os.chmod(t.mnt / "ro", 0o555)
        selected = [c for c in cases(t) if not args.only or re.search(args.only, c.name)]
        for i, case in enumerate(selected, 1):
            for leftover in (t.mnt / "full").glob("*") if t.mounted else []:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            row = run_case(t, case)
            rows.append(row)
            print(f"[{i}/{len(selected)}] {row.case}: exit {row.exit} ({row.seconds} s) {row.verdict}", flush=True)
        if snapshot(data / "300vw_sample") != shared_before:
            print("warning: the shared data changed", file=sys.stderr)
    finally:
        t.unmount_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    command = " ".join([Path(args.python).name, *sys.argv])
    header = [f"# User-file trial (issue 31): {len(rows)} cases", "",
              f"- date: {started:%Y-%m-%d %H:%M} UTC", f"- tree: {repo} ({git_head(repo)})", f"- machine: {machine()}",
              f"- command: `{command}`", f"- as root: {t.root} (tmpfs mounts for the read-only folder and the full disk)"]
    write_table(rows, args.out / "results.md", header)
    (args.out / "results.json").write_text(json.dumps(
        {"repo": str(repo), "head": git_head(repo), "date": f"{started:%Y-%m-%d %H:%M} UTC", "machine": machine(),
         "command": command, "rows": [asdict(r) for r in rows]}, indent=1))
    print(f"wrote {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
