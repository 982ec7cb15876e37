"""Console scripts run in a fresh fork of a process that has imported torch and fairseq.

Every command-line test pays for ``import torch`` and ``import fairseq`` again (3-4 seconds of
CPU on the slower 2-core machine, more than many tiny trainings take). The server started here
imports the two once per test process and forks a child per command: the child sets the
command's working directory, environment, stdin, stdout and stderr, then loads and calls the
console script's entry point (``fairseq-train`` -> ``fairseq_cli.train:cli_main``) as the
script would. The server also imports ``torch._dynamo``, which every torch optimizer imports
when it is built (more than half the CPU of a tiny training). Nothing else is imported in
advance: the plugin, ``fairseq_cli`` (whose modules configure logging when imported) and the
tools load in the child, as in a fresh process, and the server never runs a command itself,
so no command sees another's state.

A command whose environment differs from the server's in what was read while the server
started (``PYTHONWARNINGS``, the thread counts) runs as a real subprocess, as does any command
given ``fresh=True``; the rest of its environment is the child's.

``run`` waits for the command; ``start`` leaves it running, like ``subprocess.Popen`` (for the
tests that kill, stop or lock against a running training). A server runs one command at a
time, so another server starts when two commands must run at once (the ranks of a distributed
run).
"""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

SERVER = r"""
import atexit, io, json, os, sys
from importlib.metadata import entry_points

import logging

import torch  # noqa: F401  (the imports every command would repeat)
import fairseq  # noqa: F401
# what building any torch optimizer imports (torch.optim.Optimizer disables TorchDynamo on its
# methods): 2-3 of the 4-5 seconds of CPU a tiny training takes in a child that imports it itself
import torch._dynamo  # noqa: F401

# what importing fairseq did to the root logger (a module of it calls logging.basicConfig); a
# command's module that configures logging before it imports fairseq keeps its own
loaded_handlers, loaded_level = list(logging.root.handlers), logging.root.level

scripts = {e.name: e for e in entry_points(group="console_scripts")}
replies = os.fdopen(os.dup(1), "w", buffering=1)
requests = os.fdopen(os.dup(0), "r")
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
for line in requests:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.dup2(os.open(request["stdin"] or os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            if request["stderr"] == request["stdout"]:  # one file for both, as 2>&1
                os.dup2(1, 2)
            else:
                os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False))
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [request["tool"], *request["args"]]
            for handler in list(logging.root.handlers):
                logging.root.removeHandler(handler)
            logging.root.setLevel(logging.WARNING)
            main = scripts[request["tool"]].load()
            if not logging.root.handlers:
                for handler in loaded_handlers:
                    logging.root.addHandler(handler)
                logging.root.setLevel(loaded_level)
            result = main()
            code = result if isinstance(result, int) else 0 if result is None else 1
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            sys.excepthook(*sys.exc_info())  # as the interpreter reports an uncaught exception
            code = 1
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code & 0xFF)
    replies.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
"""

# The child gets the command's whole environment; what it cannot get is what was read while the
# server started: Python's own variables (PYTHONWARNINGS sets the warning filters) and those of
# torch and its libraries. A command whose environment differs from the server's in one of these
# runs as a real subprocess. (Libraries set KMP_* flags for themselves when they load.)
READ_AT_START = ("PYTHON", "OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH", "CUDA", "LD_", "LOGLEVEL")
# (torch._dynamo sets TORCHINDUCTOR_CACHE_DIR when it loads: the server has it imported, and a
# test process that builds an optimizer gets it too)
SET_BY_LIBRARIES = {"KMP_INIT_AT_FORK", "KMP_DUPLICATE_LIB_OK", "TORCHINDUCTOR_CACHE_DIR"}


def _comparable(env: Dict[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(READ_AT_START) and k not in SET_BY_LIBRARIES}


# the environment the server starts with: the one a command gets when no test changed it
BASE_ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


class _Server:
    """A server process and the replies it has written, read from its pipe unbuffered (a reply
    may wait for as long as its command runs)."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=BASE_ENV, text=True, bufsize=1)
        self.pending = b""
        self.busy = False  # a command of it has not been waited for
        atexit.register(_stop, self.process)

    def reply(self, timeout: Optional[float] = None) -> Optional[dict]:
        """The next reply, or None if none comes within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("the command server of tests/forked.py ended")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


# one server per command running at once (a server runs one command at a time), started on demand
_servers: List[_Server] = []


def _free_server() -> _Server:
    _servers[:] = [server for server in _servers if server.process.poll() is None]
    for server in _servers:
        if not server.busy:
            return server
    _servers.append(_Server())
    return _servers[-1]


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.stdin.close()
        server.wait(timeout=30)


class Started:
    """A command forked from a server and running, like a ``subprocess.Popen`` of it: ``pid``
    (its process group too), ``returncode``, ``poll()``, ``wait(timeout)``, ``send_signal()``,
    ``kill()`` (the whole group)."""

    def __init__(self, argv: List[str], server: _Server, pid: int):
        self.args, self._server, self.pid, self.returncode = argv, server, pid, None

    def poll(self) -> Optional[int]:
        return self.returncode if self.returncode is not None else self._ended(timeout=0)

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None and self._ended(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _ended(self, timeout: Optional[float]) -> Optional[int]:
        """The exit status once the server reports it within ``timeout`` seconds, else None."""
        reply = self._server.reply(timeout)
        if reply is not None:
            self.returncode = reply["returncode"]
            self._server.busy = False
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start(executable: str, args: List[str], env: Dict[str, str], stdout: Path, stderr: Optional[Path] = None,
          cwd: Optional[Path] = None, stdin: Optional[Path] = None) -> Started:
    """A console script of this environment forked from a server and left running, its output
    written to ``stdout`` and ``stderr`` (``stdout`` too if None); ``env`` must be the
    server's in what is read at start (see ``run``)."""
    argv = [executable, *map(str, args)]
    if _comparable(env) != _comparable(BASE_ENV):
        raise ValueError("this environment differs from the command server's in what is read at start-up: "
                         f"{sorted(set(_comparable(env).items()) ^ set(_comparable(BASE_ENV).items()))}")
    for path in {Path(stdout), Path(stderr or stdout)}:  # there once start returns, as with Popen
        path.write_bytes(b"")
    server = _free_server()
    server.process.stdin.write(json.dumps({
        "tool": Path(executable).name, "args": argv[1:], "cwd": str(cwd or os.getcwd()), "env": env,
        "stdin": None if stdin is None else str(stdin), "stdout": str(stdout),
        "stderr": str(stderr or stdout)}) + "\n")
    server.busy = True
    return Started(argv, server, server.reply()["pid"])


def run(executable: str, args: List[str], env: Dict[str, str], cwd: Optional[Path] = None,
        input: Optional[str] = None, timeout: int = 600, fresh: bool = False) -> subprocess.CompletedProcess:
    """Like ``subprocess.run([executable, *args], capture_output=True, text=True)`` for a console
    script of this environment: forked from a server, unless ``fresh`` or ``env`` is not
    the server's."""
    argv = [executable, *map(str, args)]
    if fresh or _comparable(env) != _comparable(BASE_ENV):
        return subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="forked-") as tmp:
        files = {name: Path(tmp) / name for name in ("stdin", "stdout", "stderr")}
        if input is not None:
            files["stdin"].write_text(input, encoding="utf-8")
        command = start(executable, args, env, files["stdout"], files["stderr"], cwd=cwd,
                        stdin=files["stdin"] if input is not None else None)
        try:
            returncode = command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()
            raise
        out = files["stdout"].read_text(encoding="utf-8", errors="replace")
        err = files["stderr"].read_text(encoding="utf-8", errors="replace")
    return subprocess.CompletedProcess(argv, returncode, out, err)
