"""Loading a trained checkpoint for inference: :func:`load_for_inference`, the one loader.

The hub (:func:`var_attn_plugin.hub.from_pretrained`), ``varattn-translate``,
``varattn-align``, ``varattn-plot`` and ``varattn-diagnose`` (and the tests) load checkpoints
through it, the way ``fairseq-generate`` loads them (fairseq's
``checkpoint_utils.load_model_ensemble_and_task``, which only this module calls: the task with
its start-up checks, the models, the checks of their weights and dictionaries), with

- this plugin's directory as ``--user-dir``, whatever path the training machine saved (fairseq
  imports a ``--user-dir`` by path);
- a :class:`~var_attn_plugin.errors.UsageError` for a checkpoint file that does not exist, a
  data directory without the checkpoint's dictionaries (:class:`DictionaryNotFoundError`) and a
  checkpoint of a model that is not of this plugin, naming what to pass the way the caller's
  user names it (:class:`ArgumentNames`: a command's flags, or the hub's keywords);
- the models in evaluation mode, on the GPU unless ``cpu``.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from .errors import UsageError
from .model import VarAttnModel

# the plugin's own directory: the --user-dir every checkpoint is loaded with
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class ArgumentNames:
    """How a caller's user names what the loader is given, for its messages: a command's flags
    (``--path``, ``DATA``, ``--spm``) or the hub's keywords (``data_name_or_path=``)."""

    checkpoint: str  # "" names the checkpoint by its path alone
    data: str
    sentencepiece_model: str
    target_sentencepiece_model: str

    def naming(self, argument: str, value) -> str:
        """``argument`` (a field of this class) given ``value``, as its user writes it:
        ``--spm x.model``, ``sentencepiece_model='x.model'``."""
        name = getattr(self, argument)
        if name.endswith("="):
            return f"{name}{str(value)!r}"
        return f"{name} {value}" if name else str(value)


COMMAND = ArgumentNames(checkpoint="--path", data="DATA", sentencepiece_model="--spm",
                        target_sentencepiece_model="--target-spm")
PYTHON = ArgumentNames(checkpoint="", data="data_name_or_path=", sentencepiece_model="sentencepiece_model=",
                       target_sentencepiece_model="target_sentencepiece_model=")


class DictionaryNotFoundError(UsageError):
    """The data directory lacks the checkpoint's dictionaries; ``reason`` is what was missing."""

    def __init__(self, reason: str, names: ArgumentNames = PYTHON):
        super().__init__(
            f"cannot load the checkpoint's dictionaries ({reason}): pass {names.data}, the binarised data "
            "directory the model was trained with (its dict.SRC.txt and dict.TGT.txt)")
        self.reason = reason


def load_for_inference(paths: Union[PathLike, Sequence[PathLike]], data: Optional[PathLike] = None,
                       overrides: Optional[dict] = None, cpu: bool = True,
                       names: ArgumentNames = PYTHON) -> Tuple[List[VarAttnModel], object, object]:
    """``(models, cfg, task)`` of the checkpoint file(s) ``paths`` (several: an ensemble).

    Args:
        paths: the ``.pt`` file, or a list of them.
        data: the binarised data directory whose ``dict.*.txt`` the model was trained with
            (relative to the working directory); default: the directory saved in the checkpoint.
        overrides: fairseq options overriding the checkpoint's (``source_lang``, the task's
            decoding options, ``bpe``, ...).
        cpu: keep the models on the CPU even when a GPU is available.
        names: how the caller's user names the checkpoint and the data, for the messages.
    """
    from fairseq import checkpoint_utils

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"{names.naming('checkpoint', path)}: no such checkpoint file")
    overrides = {**(overrides or {}), "user_dir": PLUGIN_DIR}
    if data is not None:
        overrides["data"] = os.path.abspath(os.fspath(data))
        if not list(Path(overrides["data"]).glob("dict.*.txt")):
            raise DictionaryNotFoundError(f"no dict.*.txt in {overrides['data']}", names)
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [os.fspath(path) for path in paths], arg_overrides=overrides)
    except FileNotFoundError as e:
        raise DictionaryNotFoundError(str(e), names) from None
    for path, model in zip(paths, models):
        if not isinstance(model, VarAttnModel):
            raise UsageError(f"{names.naming('checkpoint', path)} holds a {type(model).__name__}, not a model of "
                             "this plugin (--arch varattn_lstm or varattn_transformer)")
    for model in models:
        model.eval()
        if not cpu and torch.cuda.is_available():
            model.cuda()
    return models, cfg, task
