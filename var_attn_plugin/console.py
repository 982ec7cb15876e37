"""Shared set-up of the console scripts."""

import logging
import sys


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
