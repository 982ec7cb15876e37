"""fairseq checkpoints that load with torch >= 2.6.

Loading. torch 2.6 made ``torch.load(weights_only=True)`` the default. fairseq checkpoints
store their configuration as an ``argparse.Namespace``, so every load from a file (generate,
interactive, validate, resuming training) failed with ``Unsupported global: GLOBAL
argparse.Namespace``. A loaded checkpoint holds its configuration as omegaconf containers, and
distributed training sends the loaded state from rank 0 to the other ranks with
``torch.save``/``torch.load`` (``fairseq.distributed.utils.broadcast_object``, tensors replaced
by index placeholders), so resuming or fine-tuning with more than one process failed on
``omegaconf.dictconfig.DictConfig``. The classes allowed here are plain data containers (the
configuration's nodes and their metadata, fairseq's tensor placeholder); nothing else is
unpickled beyond what ``weights_only`` already accepts.
"""

import argparse
import collections
import typing

import torch


def _config_classes() -> list:
    """omegaconf's containers, node types and metadata (None without omegaconf)."""
    try:
        from omegaconf import base, dictconfig, listconfig, nodes
    except ImportError:  # pragma: no cover (fairseq depends on omegaconf)
        return []
    node_types = [cls for cls in vars(nodes).values()
                  if isinstance(cls, type) and issubclass(cls, base.Node) and cls.__module__ == nodes.__name__]
    return [dictconfig.DictConfig, listconfig.ListConfig, base.ContainerMetadata, base.Metadata, *node_types]


def _broadcast_classes() -> list:
    try:
        from fairseq.distributed.utils import _TensorPlaceholder
    except ImportError:  # pragma: no cover (another fairseq version)
        return []
    return [_TensorPlaceholder]


def allow_fairseq_checkpoints() -> None:
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 loads everything anyway
        add_safe_globals([argparse.Namespace, typing.Any, dict, list, int, collections.defaultdict,
                          *_config_classes(), *_broadcast_classes()])
