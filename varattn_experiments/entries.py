"""The comparison's entries: which model a row of the comparison trains.

``MODE`` is the LSTM (``varattn_lstm``) in attention mode MODE; ``transformer-MODE`` the
Transformer (``varattn_transformer``) with fairseq's soft cross-attention in every decoder
layer (``--soft-cross-attention all``); ``transformer-below-top-MODE`` and
``transformer-none-MODE`` its other decoder designs (docs/METHOD.md §10), named as the IWSLT14
recipe names their checkpoints. ``ENTRY-from-OTHER`` (e.g. ``var-sample-from-var-enum``)
starts ENTRY's training from the best checkpoint of OTHER's run with the same seed (fairseq's
--finetune-from-model: weights only, a fresh optimiser; q starts fresh where OTHER has none).
``MODE-qfirst`` (a variational mode, e.g. ``var-enum-qfirst-from-marginal``) trains q alone for the
recipe's first updates, the generative model held fixed (--q-warmup-updates).
"""

from typing import Optional

TRANSFORMER = "transformer-"
DESIGNS = ("all", "below-top", "none")  # --soft-cross-attention


WARM = "-from-"


def warm_start(entry: str) -> Optional[str]:
    """The entry whose checkpoint starts this one's training, or None."""
    return entry.split(WARM, 1)[1] if WARM in entry else None


QFIRST = "-qfirst"


def trained(entry: str) -> str:
    """The entry without its warm start and q warm-up: what is trained (``var-sample`` of
    ``var-sample-from-var-enum`` and of ``var-sample-qfirst``)."""
    entry = entry.split(WARM, 1)[0]
    return entry[:-len(QFIRST)] if entry.endswith(QFIRST) else entry


def q_first(entry: str) -> bool:
    """Does the entry train q alone first (``MODE-qfirst``)?"""
    return entry.split(WARM, 1)[0].endswith(QFIRST)


def _transformer_rest(entry: str) -> Optional[str]:
    entry = trained(entry)
    return entry[len(TRANSFORMER):] if entry.startswith(TRANSFORMER) else None


def is_transformer(entry: str) -> bool:
    return _transformer_rest(entry) is not None


def design(entry: str) -> Optional[str]:
    """The Transformer's --soft-cross-attention of an entry (None for the LSTM)."""
    rest = _transformer_rest(entry)
    if rest is None:
        return None
    for name in DESIGNS[1:]:
        if rest.startswith(name + "-"):
            return name
    return "all"


def attention_mode(entry: str) -> str:
    """``var-enum`` of ``var-enum``, ``transformer-var-enum``, ``transformer-none-var-enum`` and
    ``var-enum-from-marginal``."""
    rest = _transformer_rest(entry)
    if rest is None:
        return trained(entry)
    chosen = design(entry)
    return rest if chosen == "all" else rest[len(chosen) + 1:]
