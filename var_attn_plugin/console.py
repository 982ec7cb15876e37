"""Shared set-up of the console scripts.

- :func:`configure_logging`: ``name | message`` lines on stderr;
- :func:`quiet_library_warnings`: no start-up noise from hydra, omegaconf and torch
  (``VARATTN_VERBOSE=1`` shows it);
- :class:`ArgumentParser`: a command-line mistake ends in one line and exit code 1, like every
  other user error of the plugin's tools (argparse's own is a usage block and exit code 2);
- :func:`closed_pipe_ends_quietly`: ``varattn-translate … | head -1`` stops when ``head`` has
  read enough, without a ``BrokenPipeError`` traceback.
"""

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator, NoReturn

VERBOSE_VARIABLE = "VARATTN_VERBOSE"


def configure_logging() -> None:
    """INFO-level ``name | message`` lines on stderr.

    ``force=True`` because importing fairseq has already configured the root logger (at
    DEBUG), which would otherwise make this a no-op and let matplotlib's debug output through.
    """
    logging.basicConfig(format="%(name)s | %(message)s", level=logging.INFO, stream=sys.stderr, force=True)


def description_from_docstring(doc: str) -> str:
    """A module docstring's body (without its first paragraph and its dimension glossary),
    as the ``--help`` description of its console script."""
    return doc.replace("``", "").split("\n\n", 1)[1].rsplit("\n\nDimensions", 1)[0]


def verbose() -> bool:
    """``VARATTN_VERBOSE`` is set to something other than empty or ``0``."""
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


# Warnings that every command printed before anything useful (hydra's deprecations as fairseq
# 0.12 calls it, torch's pin_memory on a machine without a GPU, ...): they concern the
# libraries, never the user's options or data. Some are attributed to the caller's frame (a
# plugin module), so they are matched by their text as well as by the module that warns.
_LIBRARY_MODULES = r"(hydra|omegaconf|torch|fairseq|fairseq_cli|sacrebleu|numpy)(\..*)?$"
_LIBRARY_MESSAGES = (
    r"[\s\S]*hydra", r"[\s\S]*version_base", r"[\s\S]*ConfigStore schema", r"[\s\S]*strict flag",
    r"[\s\S]*# @package", r"[\s\S]*pin_memory", r"[\s\S]*weights_only", r"[\s\S]*torch\.", r"[\s\S]*omegaconf",
)


def quiet_library_warnings() -> None:
    """Hide the libraries' deprecation and user warnings in this process (not in the plugin's
    own messages, which are log lines), unless ``VARATTN_VERBOSE=1``."""
    if verbose():
        return
    for category in (UserWarning, DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_LIBRARY_MODULES)
        for message in _LIBRARY_MESSAGES:
            warnings.filterwarnings("ignore", category=category, message=message)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the plugin's convention for user errors: ``PROG: error: MESSAGE (see
    PROG --help)`` on one line and exit code 1 (argparse prints the usage and exits with 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@contextlib.contextmanager
def closed_pipe_ends_quietly() -> Iterator[None]:
    """Stop writing, quietly and with exit code 0, when the reader of stdout has gone
    (``… | head -1``): what was asked for has been read.

    stdout is pointed at ``/dev/null`` first, so that the interpreter's final flush of what is
    still buffered does not raise the same error again at exit.
    """
    try:
        yield
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (AttributeError, OSError, ValueError):  # stdout is no file (a test's capture)
            pass
        raise SystemExit(0) from None
