"""The comparison's entries: which model a row of the comparison trains.

``MODE`` is the LSTM (``varattn_lstm``) in attention mode MODE; ``transformer-MODE`` the
Transformer (``varattn_transformer``) with fairseq's soft cross-attention in every decoder
layer (``--soft-cross-attention all``); ``transformer-below-top-MODE`` and
``transformer-none-MODE`` its other decoder designs (docs/METHOD.md §10), named as the IWSLT14
recipe names their checkpoints.
"""

from typing import Optional

TRANSFORMER = "transformer-"
DESIGNS = ("all", "below-top", "none")  # --soft-cross-attention


def _transformer_rest(entry: str) -> Optional[str]:
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
    """``var-enum`` of ``var-enum``, ``transformer-var-enum`` and ``transformer-none-var-enum``."""
    rest = _transformer_rest(entry)
    if rest is None:
        return entry
    chosen = design(entry)
    return rest if chosen == "all" else rest[len(chosen) + 1:]
