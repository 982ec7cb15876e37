"""The manifest of a run: ``RUN/manifest.json``, the only record of what happened to it.

It holds the run's config, and per step the attempts (start, end, exit code, code version, machine,
torch threads, pauses) and whether the step finished. The runner writes it atomically (temporary file and
rename), so an interrupted write never leaves half a manifest; reports read it and fairseq's own
logs, never markers written into them.
"""

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

NAME = "manifest.json"


def now() -> float:
    return round(time.time(), 1)


def code_version(repo: Optional[Path] = None) -> str:
    """``git describe``-like: the commit of this checkout, with ``-dirty`` when it has changes."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine() -> str:
    """The processor and core count, e.g. ``AMD EPYC 7B13 x 2`` (``/proc/cpuinfo``; the platform elsewhere)."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} x {os.cpu_count() or 1}"


class Manifest:
    """A run folder's manifest. Every change re-reads the file under a lock, applies itself and
    saves at once, so the runner and a ``pause`` from another process never undo each other."""

    def __init__(self, run_dir: Path, config: Optional[dict] = None):
        self.path = Path(run_dir) / NAME
        self.data = self._load()
        if config is not None and self.data.get("config") != config:
            with self._edit() as data:
                if data.get("config") is not None:
                    data.setdefault("config_history", []).append(data["config"])
                data["config"] = config

    def _load(self) -> dict:
        if self.path.is_file():
            return json.loads(self.path.read_text(encoding="utf-8"))
        return {"config": None, "steps": {}}

    @classmethod
    def read(cls, run_dir: Path) -> Optional["Manifest"]:
        return cls(run_dir) if (Path(run_dir) / NAME).is_file() else None

    @contextlib.contextmanager
    def _edit(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(NAME + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.data = self._load()
            yield self.data
            tmp = self.path.with_name(NAME + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)

    # ------------------------------------------------------------------ steps

    def done(self, name: str, command: Optional[List[str]] = None) -> bool:
        """Did step ``name`` finish (with this ``command``, when given)?"""
        step = self.data["steps"].get(name)
        return bool(step and step["done"] and (command is None or step.get("command") == command))

    def start(self, name: str, command: List[str], threads: Optional[int] = None) -> None:
        with self._edit() as data:
            step = data["steps"].setdefault(name, {"done": False, "attempts": []})
            step.update(done=False, command=command)
            attempt = {"started": now(), "ended": None, "exit_code": None, "code_version": code_version(),
                       "host": socket.gethostname(), "machine": machine(), "pid": None, "pauses": []}
            if threads is not None:
                attempt["threads"] = threads
            step["attempts"].append(attempt)

    def set_pid(self, name: str, pid: int) -> None:
        with self._edit() as data:
            data["steps"][name]["attempts"][-1]["pid"] = pid

    def finish(self, name: str, exit_code: int, done: bool) -> None:
        with self._edit() as data:
            step = data["steps"][name]
            attempt = step["attempts"][-1]
            attempt.update(ended=now(), exit_code=exit_code, pid=None)
            if attempt["pauses"] and attempt["pauses"][-1][1] is None:
                attempt["pauses"][-1][1] = attempt["ended"]
            step["done"] = done

    # ------------------------------------------------------------------ pauses

    def running(self) -> Dict[str, int]:
        """``{step: pid}`` of every attempt that started a process and has not ended."""
        return {name: step["attempts"][-1]["pid"] for name, step in self.data["steps"].items()
                if step["attempts"] and step["attempts"][-1]["ended"] is None and step["attempts"][-1]["pid"]}

    def pause(self, name: str, paused: bool) -> None:
        """Record that the running attempt of ``name`` was paused (True) or resumed (False)."""
        with self._edit() as data:
            pauses = data["steps"][name]["attempts"][-1]["pauses"]
            is_open = bool(pauses) and pauses[-1][1] is None
            if paused and not is_open:
                pauses.append([now(), None])
            elif not paused and is_open:
                pauses[-1][1] = now()

    # ------------------------------------------------------------------ reading

    def seconds(self, name: str, until: Optional[float] = None) -> float:
        """Wall time of a step over its attempts, pauses left out (a running attempt counts to
        ``until``, a time stamp, or to now)."""
        total = 0.0
        for attempt in self.data["steps"].get(name, {}).get("attempts", []):
            end = attempt["ended"] if attempt["ended"] is not None else until or now()
            paused = sum((stop if stop is not None else end) - start for start, stop in attempt["pauses"])
            total += end - attempt["started"] - paused
        return total

    def attempts(self, name: str) -> int:
        return len(self.data["steps"].get(name, {}).get("attempts", []))

    def code_versions(self, name: str) -> List[str]:
        return sorted({a["code_version"] for a in self.data["steps"].get(name, {}).get("attempts", [])})
