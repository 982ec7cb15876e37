"""User errors: a combination of options or an input that cannot work, found at start-up.

:class:`UsageError` carries a message that names the flag (or the file and line) and the
fix. Importing the plugin installs :func:`excepthook`, so that fairseq's own commands
(``fairseq-train``, ``-generate``, ...) end such an error with that one message on stderr
and exit code 1 instead of a traceback; ``VARATTN_TRACEBACK=1`` shows the traceback as
well. Any other exception keeps Python's usual report.
"""

import os
import sys

PREFIX = "var-attn: error: "


class UsageError(ValueError):
    """A user error: the message names the flag (or file and line) and the fix."""


def format_usage_error(error: BaseException) -> str:
    return f"{PREFIX}{error}\n"


class _UsageErrorHook:
    """``sys.excepthook`` that reports :class:`UsageError` as one line and hands every other
    exception to the hook it replaced."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, exc_type, value, traceback):
        usage = usage_error_in(value)
        if usage is not None and not os.environ.get("VARATTN_TRACEBACK"):
            sys.stderr.write(format_usage_error(usage))
            sys.stderr.flush()
            return
        self.previous(exc_type, value, traceback)


def usage_error_in(error: BaseException):
    """``error`` if it is a :class:`UsageError`, else the first one it was raised from or while
    handling (fairseq wraps errors of loading a checkpoint in its own), else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UsageError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_excepthook() -> None:
    """Report an uncaught :class:`UsageError` as one line (the interpreter then exits with 1)."""
    if not isinstance(sys.excepthook, _UsageErrorHook):
        sys.excepthook = _UsageErrorHook(sys.excepthook)
