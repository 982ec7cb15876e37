"""The runner: jobs as data, steps executed once each, several jobs at a time.

A *job* (a corpus to prepare, a training run) is a frozen dataclass with a folder and a list
of :class:`Step` s. A step is a command line and the log file its output is appended to. The
runner executes a job's steps in order and records each attempt in the job's manifest
(:mod:`.manifest`); a step that finished with the same command is skipped, so running the
same command again after any interruption does only what is left. A training step resumes from
fairseq's ``checkpoint_last.pt``; raising its ``--max-update`` changes its command, and it
goes on from there. A step whose last attempt another runner still runs on this machine is
refused, so two runners never train the same run into the same checkpoints.

Jobs run through a pool of ``parallel`` workers, each step a process group of its own with
``threads`` torch threads (``OMP_NUM_THREADS``). :func:`pause` / :func:`resume` stop and
continue every running step under a root (``SIGSTOP`` / ``SIGCONT`` to the process group the
manifest names), and the manifest records the pause, so that reported times leave it out.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence

from .manifest import Manifest

logger = logging.getLogger("varattn_experiments")

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "var_attn_plugin"
BIN_DIR = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script of this environment (fairseq-train, varattn-prepare-libreoffice, ...)."""
    path = BIN_DIR / name
    return str(path) if path.exists() else name


@dataclass(frozen=True)
class Step:
    name: str
    command: List[str]
    log: str  # file name in the job's folder; output is appended
    # a check of the step's outputs after a zero exit: None = the step finished
    incomplete: Optional[Callable[[Path], Optional[str]]] = None
    # a step that finished stays finished, whatever its command now, while this holds (e.g. a
    # training that stopped early is not continued when the maximum of updates is raised)
    settled: Optional[Callable[[Path], bool]] = None
    # what to show on the screen while the step runs: a factory of a function that maps each line
    # of its output (and the time) to a line to print, or None (e.g. training progress)
    show: Optional[Callable[[], Callable[[str, float], Optional[str]]]] = None
    threads: Optional[Callable[[], int]] = None  # torch threads, chosen when the step starts


class Job:
    """What the runner runs: ``folder`` (its manifest lives there), ``config()`` (a dict saved in the
    manifest) and ``steps()``; ``needs()`` lists jobs that must finish first (a shared corpus)."""

    def folder(self, root: Path) -> Path:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    def steps(self, root: Path) -> List[Step]:
        raise NotImplementedError

    def needs(self) -> Sequence["Job"]:
        return ()


def add_screen_handler() -> None:
    """Print the runner's progress (which step of which job starts, failures) on stdout."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s | %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


class StepFailed(RuntimeError):
    pass


_live = set()  # process groups of the steps running now (ended on SIGTERM/SIGINT)
_live_lock = threading.Lock()


def portable(command: List[str], root: Path) -> List[str]:
    """``command`` with this machine's folders as names (ROOT, PLUGIN, BIN): what decides
    whether a step already ran, so that a moved or fresh checkout does not redo it."""
    places = [(str(Path(root).resolve()), "ROOT"), (str(PLUGIN_DIR), "PLUGIN"), (str(BIN_DIR) + "/", ""),
              (str(Path(root)), "ROOT")]
    out = []
    for arg in command:
        if arg == sys.executable:
            arg = "python"
        for place, name in places:
            arg = arg.replace(place, name)
        out.append(arg)
    return out


def is_done(root: Path, job_dir: Path, manifest: Manifest, step: Step) -> bool:
    if manifest.done(step.name, portable(step.command, root)):
        return True
    return manifest.done(step.name) and step.settled is not None and step.settled(job_dir)


def runs(pid: int, command: List[str]) -> bool:
    """Is process ``pid`` alive and running ``command``? (An ended runner's pid may be reused; a
    script's interpreter may stand before its name, so the arguments after the program decide.)"""
    if not Path("/proc/self").exists():  # no /proc: alive is all that can be told
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    except OSError:
        return False
    return bool(argv) and (len(command) < 2 or argv[-(len(command) - 1):] == list(command[1:]))


def running_elsewhere(job_dir: Path, step: Step) -> Optional[int]:
    """The process group of another runner's attempt at ``step`` that still runs on this machine."""
    manifest = Manifest.read(job_dir)
    pid = manifest.running().get(step.name) if manifest else None
    if pid is None or manifest.data["steps"][step.name]["attempts"][-1].get("host") != socket.gethostname():
        return None
    return pid if runs(pid, step.command) else None


def run_step(root: Path, job_dir: Path, manifest: Manifest, step: Step, threads: int) -> None:
    """Execute one step and record it in the manifest; refuse a step another runner is running."""
    other = running_elsewhere(job_dir, step)
    if other is not None:
        raise StepFailed(f"{job_dir.name}: step {step.name} is already running (process group {other}, "
                         f"another runner's): wait for it to end, or stop it first (kill -TERM -- -{other})")
    key = portable(step.command, root)
    (job_dir / step.log).parent.mkdir(parents=True, exist_ok=True)
    if step.threads is not None:
        threads = step.threads()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    manifest.start(step.name, key, threads)
    chosen = f" ({threads} thread{'s' * (threads != 1)})" if step.threads else ""
    logger.info("%s: %s%s", job_dir.name, step.name, chosen)
    with open(job_dir / step.log, "a", encoding="utf-8") as log:
        process = subprocess.Popen(step.command, stdout=subprocess.PIPE if step.show else log,
                                   stderr=subprocess.STDOUT, env=env, text=True,
                                   start_new_session=True)  # its own process group, for pause
        with _live_lock:
            _live.add(process.pid)
        try:
            manifest.set_pid(step.name, process.pid)
            if step.show:
                show = step.show()
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    shown = show(line, time.monotonic())
                    if shown is not None:
                        print(shown, flush=True)
            code = process.wait()
        finally:
            with _live_lock:
                _live.discard(process.pid)
    problem = step.incomplete(job_dir) if code == 0 and step.incomplete else None
    manifest.finish(step.name, code, done=code == 0 and problem is None)
    if code != 0 or problem:
        raise StepFailed(f"{job_dir.name}: step {step.name} "
                         + (f"exited with {code}" if code else problem) + f" (log: {job_dir / step.log})")


def run_job(root: Path, job: Job, threads: int = 1) -> None:
    """A job's steps in order; once one step runs, every later step runs again too (it reads
    what the earlier ones wrote)."""
    folder = job.folder(root)
    manifest = Manifest(folder, job.config())
    ran = False
    for step in job.steps(root):
        if ran or not is_done(root, folder, manifest, step):
            run_step(root, folder, manifest, step, threads)
            ran = True


def _stop_children(signum, frame):
    with _live_lock:
        for pgid in list(_live):
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    raise SystemExit(128 + signum)


def execute(root: Path, jobs: Iterable[Job], parallel: int = 1, threads: int = 1,
            on_done: Optional[Callable[[Job], None]] = None) -> List[str]:
    """Run every job (their ``needs()`` first, once each), ``parallel`` at a time; ``on_done(job)``
    is called, in this thread, as each job finishes without failing (e.g. to archive it at once).

    A need that needs nothing itself (a shared corpus) runs first, alone, with every thread the
    pool has. A need that is itself a run (a warm start's source) takes a place in the pool like
    any job, and what needs it starts as soon as it has finished, while independent jobs go on.
    Returns the failures' messages (a failed job does not stop the others; what needs it is
    not run)."""
    root = Path(root)
    jobs = list(jobs)
    if threading.current_thread() is threading.main_thread():  # signal handlers live there
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop_children)
    failures: List[str] = []
    queue: List[Job] = []

    def enqueue(job: Job) -> None:
        for need in job.needs():
            if need.needs() and need not in queue:
                enqueue(need)
        if job not in queue:
            queue.append(job)

    for job in jobs:
        enqueue(job)
    done, failed = set(), set()
    for need in dict.fromkeys(n for job in queue for n in job.needs() if not n.needs()):
        try:
            run_job(root, need, threads=max(threads, parallel))
            done.add(need)
        except StepFailed as error:
            failures.append(str(error))
            failed.add(need)

    def work(job: Job) -> bool:
        try:
            run_job(root, job, threads)
            return True
        except StepFailed as error:
            logger.error("%s", error)
            failures.append(str(error))
            return False

    running = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        while queue or running:
            for job in list(queue):
                needs = set(job.needs())
                if needs & failed:  # never runs: what it needs failed
                    queue.remove(job)
                    failed.add(job)
                elif needs <= done and len(running) < max(1, parallel):
                    queue.remove(job)
                    running[pool.submit(work, job)] = job
            if not running:
                break  # only jobs whose needs cannot finish are left
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, succeeded = running.pop(future), future.result()
                (done if succeeded else failed).add(job)
                if succeeded and on_done is not None:
                    on_done(job)
    return failures


# ---------------------------------------------------------------------- pause and resume


def manifests(root: Path) -> List[Path]:
    return sorted(path.parent for path in Path(root).rglob("manifest.json"))


def signal_running(root: Path, paused: bool) -> List[str]:
    """SIGSTOP (``paused``) or SIGCONT every running step under ``root``; returns their names."""
    touched = []
    for folder in manifests(root):
        manifest = Manifest(folder)
        for name, pid in manifest.running().items():
            try:
                os.killpg(pid, signal.SIGSTOP if paused else signal.SIGCONT)
            except ProcessLookupError:  # ended meanwhile
                continue
            manifest.pause(name, paused)
            touched.append(f"{folder.relative_to(root)}:{name}")
    return touched


def pause(root: Path) -> List[str]:
    return signal_running(root, True)


def resume(root: Path) -> List[str]:
    return signal_running(root, False)
