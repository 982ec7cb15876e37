"""The README's commands run as written.

Every ```bash block of README.md is split into commands (backslash continuations joined,
compound commands such as ``for ... done`` kept whole) and every ```python block is one
command. Each command either runs, or is in SKIP with the reason it cannot run in a test.
The commands run in a directory laid out like a clone (the repository's folders linked in)
whose ``work/demo`` is a copy of the tiny demo build (``DEMO_TINY=1 examples/demo.sh`` on the
synthetic Ding-format dictionary of the helpers, built once per session), with the virtualenv's
bin first on PATH. The bash commands of one block run in one shell, in order, so a block may set
a variable that the next command reads; a python block runs as a script with the virtualenv's
python.

A command added to the README is therefore run by this test, unless it is added to SKIP.
"""

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest
from helpers import BIN_DIR

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# Commands that cannot run here, by the start of their text (whitespace collapsed): the reason.
SKIP = {
    "git clone": "clones the repository this test runs in",
    "make install": "builds the virtualenv this test runs in",
    "source .venv/bin/activate": "the virtualenv's bin is first on PATH already",
    "make demo": "the 17-minute demo; its tiny mode builds this test's work/demo instead",
    "make test": "runs the test suite this test belongs to",
    "fairseq-preprocess --source-lang de --target-lang en --trainpref train ":
        "a placeholder corpus (train/valid/test files named only in the prose)",
    "fairseq-train data-bin ": "the placeholder corpus; a paper-sized model with no stopping criterion",
    "fairseq-generate data-bin ": "needs the checkpoint of the placeholder training above",
}

# Files the README's commands read that only its prose describes: name -> how the test makes them.
PROVIDED = {}

TIMEOUT = 600  # seconds for all the README's commands together (the demo build not included)


@dataclass
class Command:
    language: str  # "bash" or "python"
    block: int  # index of the README block
    text: str  # as written: continuation lines joined, comment lines dropped

    @property
    def key(self) -> str:
        return " ".join(self.text.split())

    def skip_reason(self):
        for prefix, reason in SKIP.items():
            if self.key.startswith(prefix) or self.key == prefix.strip():
                return prefix, reason
        return None


def _depth(tokens: List[str]) -> int:
    """Open compound commands after ``tokens``: do/done, if/fi, case/esac, {/}."""
    opening = {"do": 1, "if": 1, "case": 1, "{": 1, "done": -1, "fi": -1, "esac": -1, "}": -1}
    return sum(opening.get(token, 0) for token in tokens)


def split_bash(block: str) -> List[str]:
    """The commands of a bash block, each a string that bash runs as one command."""
    commands, pending = [], []
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        if line.endswith("\\"):
            continue
        text = "\n".join(pending)
        try:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError:  # an open quote: the command goes on
            continue
        if _depth(tokens) > 0:
            continue
        commands.append(text)
        pending = []
    assert not pending, f"unterminated command in a README bash block: {pending}"
    return commands


def readme_commands(text: str) -> List[Command]:
    commands = []
    for i, match in enumerate(re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)):
        language, body = match.group(1), match.group(2)
        if language == "bash":
            commands += [Command("bash", i, command) for command in split_bash(body)]
        elif language == "python":
            commands.append(Command("python", i, body))
    return commands


# ------------------------------------------------------------------ fast checks of the harness


def test_commands_are_split_as_bash_reads_them():
    block = ("# a comment\nmake install   # inline comment\n\nfoo --a 1 \\\n    --b 2 > out.txt\n"
             "for R in 0 1; do\n  echo $R &\ndone; wait\npython -c \"print(1); \\\nprint(2)\"\n"
             "echo 'two\nlines'\n")
    assert split_bash(block) == [
        "make install   # inline comment", "foo --a 1 \\\n    --b 2 > out.txt",
        "for R in 0 1; do\n  echo $R &\ndone; wait", "python -c \"print(1); \\\nprint(2)\"", "echo 'two\nlines'",
    ]


def test_every_skip_entry_matches_a_readme_command():
    """A skip entry whose command left the README must leave SKIP too; a new command that
    matches none runs (test_readme_commands_run)."""
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert commands, "no commands found in README.md"
    used = {c.skip_reason()[0] for c in commands if c.skip_reason()}
    assert set(SKIP) <= used, f"SKIP entries that match no README command: {sorted(set(SKIP) - used)}"
    text = "\n".join(c.text for c in commands if not c.skip_reason())
    for name in PROVIDED:
        assert name in text, f"PROVIDED {name} is read by no README command that runs"


# ------------------------------------------------------------------ running them


def build_clone(root: Path, tiny_demo) -> Path:
    """A directory laid out like a clone: the repository's folders and files linked in, and a
    copy of the tiny demo build in work/demo."""
    clone = root / "clone"
    clone.mkdir()
    for entry in REPO.iterdir():
        if entry.name.startswith(".") or entry.name == "work":
            continue
        (clone / entry.name).symlink_to(entry)
    shutil.copytree(tiny_demo.dir, clone / "work" / "demo")
    return clone


def environment(**extra) -> dict:
    return dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
                PYTHONWARNINGS="ignore", MPLBACKEND="Agg", **extra)


def provide_files(clone: Path):
    sentences = len((clone / "work" / "demo" / "corpus" / "data" / "test.de").read_text(encoding="utf-8").splitlines())
    (clone / "gold.align").write_text("0-0\n" * sentences, encoding="utf-8")


def bash_script(commands: List[Command]) -> str:
    """One script for the block's commands, announcing each one on stderr."""
    lines = ["set -euo pipefail"]
    for i, command in enumerate(commands):
        lines.append(f"printf '\\n>>> README command %s\\n' {shlex.quote(str(i + 1))} >&2")
        lines.append(command.text)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_readme_commands_run(tmp_path, tiny_demo):
    commands = readme_commands(README.read_text(encoding="utf-8"))
    clone = build_clone(tmp_path, tiny_demo)
    provide_files(clone)
    env = environment()
    python = shutil.which("python", path=env["PATH"])
    ran, failures = [], []
    for block in sorted({c.block for c in commands}):
        runnable = [c for c in commands if c.block == block and not c.skip_reason()]
        if not runnable:
            continue
        if runnable[0].language == "python":
            script = clone / f"readme_block_{block}.py"
            script.write_text(runnable[0].text, encoding="utf-8")
            argv = [python, script.name]
        else:
            argv = ["bash", "-c", bash_script(runnable)]
        proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        ran += runnable
        if proc.returncode != 0:
            listing = "\n".join(f"  {i + 1}. {c.key[:150]}" for i, c in enumerate(runnable))
            failures.append(f"README block {block} failed ({proc.returncode}); its commands:\n{listing}\n"
                            f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}")
    assert not failures, "\n\n".join(failures)
    assert ran, "no README command ran"
    # what the commands wrote is there
    for name in ("test.posterior.align", "test.raw.align", "figure.png"):
        if any(name in c.text for c in ran):
            assert (clone / name).stat().st_size > 0, f"{name} is empty"
