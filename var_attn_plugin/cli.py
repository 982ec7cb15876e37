"""``varattn-train``, ``varattn-generate``, ``varattn-interactive``, ``varattn-validate``.

fairseq's own commands, with the options that every use of this plugin needs added unless
given on the command line:

- ``--user-dir`` with the installed plugin's absolute path (fairseq resolves a relative
  ``--user-dir`` against the current directory; without it, the plugin's task, model and
  criterion are unknown and fairseq fails before it could say why). A given ``--user-dir``
  naming a ``var_attn_plugin`` folder that does not exist from here is replaced by the
  installed one;
- ``--task varattn_translation``;
- for training, ``--arch varattn_lstm`` (pass ``--arch varattn_transformer`` for the
  Transformer) and ``--criterion varattn_elbo``.

Every other option is fairseq's, passed through unchanged, and the command then runs
fairseq's own ``cli_main``. A :class:`~var_attn_plugin.errors.UsageError` ends it with its
message and exit code 1, also when fairseq re-raised it as another exception (resuming
training wraps every loading error in "Cannot load model parameters"); so does a mistake on
the command line (argparse's usage block and exit code 2 otherwise). The libraries'
start-up warnings (hydra's deprecations, torch's pin_memory) are hidden unless
``VARATTN_VERBOSE=1``; fairseq's own log lines are kept.
"""

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from .console import quiet_library_warnings
from .errors import format_usage_error, usage_error_in

logger = logging.getLogger("var_attn_plugin.cli")

PLUGIN_DIR = str(Path(__file__).resolve().parent)


def _value_of(argv: Sequence[str], *flags: str) -> Tuple[Optional[int], Optional[str]]:
    """``(index, value)`` of the last occurrence of one of ``flags`` (``--flag V`` or
    ``--flag=V``), or ``(None, None)``."""
    found: Tuple[Optional[int], Optional[str]] = (None, None)
    for k, arg in enumerate(argv):
        for flag in flags:
            if arg == flag:
                found = (k, argv[k + 1] if k + 1 < len(argv) else None)
            elif arg.startswith(flag + "="):
                found = (k, arg[len(flag) + 1:])
    return found


def with_plugin_defaults(argv: Sequence[str], training: bool = False) -> List[str]:
    """``argv`` with ``--user-dir``, ``--task`` (and for training ``--arch``, ``--criterion``)
    added where absent; a ``--user-dir`` naming a missing ``var_attn_plugin`` folder replaced."""
    argv = list(argv)
    index, user_dir = _value_of(argv, "--user-dir")
    if index is None:
        argv += ["--user-dir", PLUGIN_DIR]
    elif user_dir is not None and not os.path.exists(user_dir) \
            and Path(user_dir).name == Path(PLUGIN_DIR).name:
        logger.info("--user-dir %s does not exist from %s: using the installed plugin %s",
                    user_dir, os.getcwd(), PLUGIN_DIR)
        if argv[index] == "--user-dir":
            argv[index + 1] = PLUGIN_DIR
        else:
            argv[index] = "--user-dir=" + PLUGIN_DIR
    defaults = [(("--task",), "varattn_translation")]
    if training:
        defaults += [(("--arch", "-a"), "varattn_lstm"), (("--criterion",), "varattn_elbo")]
    for flags, value in defaults:
        if _value_of(argv, *flags)[0] is None:
            argv += [flags[0], value]
    return argv


def _fairseq_logging() -> None:
    """Let fairseq's command configure logging as it does when run directly: importing the
    plugin (which imports fairseq) has already given the root logger a handler, which would
    make fairseq's ``logging.basicConfig`` a no-op."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


@contextlib.contextmanager
def _one_line_argument_errors() -> Iterator[None]:
    """fairseq's argparse errors as ``PROG: error: MESSAGE`` on one line with exit code 1 (the
    plugin's convention for user errors) instead of its usage block and exit code 2."""
    original = argparse.ArgumentParser.error

    def error(parser, message):
        parser.exit(1, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def run_fairseq(prog: str, cli_main: Callable[[], None], argv: Optional[Sequence[str]], training: bool) -> None:
    """Run fairseq's ``cli_main`` on ``argv`` (default: the command line) with the defaults."""
    quiet_library_warnings()
    args = sys.argv[1:] if argv is None else list(argv)
    sys.argv = [prog] + with_plugin_defaults(args, training)
    try:
        with _one_line_argument_errors():
            cli_main()
    except Exception as e:
        usage_error = usage_error_in(e)
        if usage_error is None or os.environ.get("VARATTN_TRACEBACK"):
            raise
        sys.stderr.write(format_usage_error(usage_error))
        sys.exit(1)


def train(argv: Optional[Sequence[str]] = None) -> None:
    _fairseq_logging()
    from fairseq_cli.train import cli_main

    run_fairseq("varattn-train", cli_main, argv, training=True)


def generate(argv: Optional[Sequence[str]] = None) -> None:
    _fairseq_logging()
    from fairseq_cli.generate import cli_main

    run_fairseq("varattn-generate", cli_main, argv, training=False)


def interactive(argv: Optional[Sequence[str]] = None) -> None:
    _fairseq_logging()
    from fairseq_cli.interactive import cli_main

    run_fairseq("varattn-interactive", cli_main, argv, training=False)


def validate(argv: Optional[Sequence[str]] = None) -> None:
    _fairseq_logging()
    from fairseq_cli.validate import cli_main

    run_fairseq("varattn-validate", cli_main, argv, training=False)
