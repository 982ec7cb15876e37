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
"""

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
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

_server: Optional[subprocess.Popen] = None
# The child gets the command's whole environment; what it cannot get is what was read while the
# server started: Python's own variables (PYTHONWARNINGS sets the warning filters) and those of
# torch and its libraries. A command whose environment differs from the server's in one of these
# runs as a real subprocess. (Libraries set KMP_* flags for themselves when they load.)
READ_AT_START = ("PYTHON", "OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH", "CUDA", "LD_", "LOGLEVEL")
SET_BY_LIBRARIES = {"KMP_INIT_AT_FORK", "KMP_DUPLICATE_LIB_OK"}


def _comparable(env: Dict[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(READ_AT_START) and k not in SET_BY_LIBRARIES}


# the environment the server starts with: the one a command gets when no test changed it
BASE_ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def _running_server() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=BASE_ENV, text=True, bufsize=1)
        atexit.register(_stop, _server)
    return _server


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.stdin.close()
        server.wait(timeout=30)


def run(executable: str, args: List[str], env: Dict[str, str], cwd: Optional[Path] = None,
        input: Optional[str] = None, timeout: int = 600, fresh: bool = False) -> subprocess.CompletedProcess:
    """Like ``subprocess.run([executable, *args], capture_output=True, text=True)`` for a console
    script of this environment: forked from the server, unless ``fresh`` or ``env`` is not
    the server's."""
    argv = [executable, *map(str, args)]
    if fresh or _comparable(env) != _comparable(BASE_ENV):
        return subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    server = _running_server()
    with tempfile.TemporaryDirectory(prefix="forked-") as tmp:
        files = {name: os.path.join(tmp, name) for name in ("stdin", "stdout", "stderr")}
        if input is not None:
            Path(files["stdin"]).write_text(input, encoding="utf-8")
        server.stdin.write(json.dumps({
            "tool": Path(executable).name, "args": argv[1:], "cwd": str(cwd or os.getcwd()), "env": env,
            "stdin": files["stdin"] if input is not None else None,
            "stdout": files["stdout"], "stderr": files["stderr"]}) + "\n")
        pid = json.loads(server.stdout.readline())["pid"]
        killed = []

        def kill():
            killed.append(True)
            os.killpg(pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            returncode = json.loads(server.stdout.readline())["returncode"]
        finally:
            timer.cancel()
        if killed:
            raise subprocess.TimeoutExpired(argv, timeout)
        out = Path(files["stdout"]).read_text(encoding="utf-8", errors="replace")
        err = Path(files["stderr"]).read_text(encoding="utf-8", errors="replace")
    return subprocess.CompletedProcess(argv, returncode, out, err)
