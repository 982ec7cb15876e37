"""Shared set-up of the console scripts."""

import logging
import sys


def configure_logging() -> None:
    """INFO-level ``name | message`` lines on stderr.

    ``force=True`` because importing fairseq has already configured the root logger (at
    DEBUG), which would otherwise make this a no-op and let matplotlib's debug output through.
    """
    logging.basicConfig(format="%(name)s | %(message)s", level=logging.INFO, stream=sys.stderr, force=True)
