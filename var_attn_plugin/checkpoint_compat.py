"""Make fairseq checkpoints loadable with torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default, and fairseq checkpoints store
their configuration as an ``argparse.Namespace``, so every load (generate, interactive,
validate, resuming training) failed with ``Unsupported global: GLOBAL argparse.Namespace``.
Allow-listing that one class is enough for the checkpoints this plugin writes; nothing else
is unpickled beyond what ``weights_only`` already accepts.
"""

import argparse

import torch


def allow_fairseq_checkpoints() -> None:
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 loads everything anyway
        add_safe_globals([argparse.Namespace])
