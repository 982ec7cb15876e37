"""The comparison's entries: which model a row of the comparison trains.

``MODE`` is the LSTM (``varattn_lstm``) in attention mode MODE; ``transformer-MODE`` the
Transformer (``varattn_transformer``) with fairseq's soft cross-attention in every decoder
layer (``--soft-cross-attention all``); ``transformer-below-top-MODE`` and
``transformer-none-MODE`` its other decoder designs (docs/METHOD.md §10), named as the IWSLT14
recipe names their checkpoints. ``ENTRY-from-OTHER`` (e.g. ``var-sample-from-var-enum``)
starts ENTRY's training from the best checkpoint of OTHER's run with the same seed (fairseq's
--finetune-from-model: weights only, a fresh optimiser; q starts fresh where OTHER has none).
``MODE-qfirst`` (a variational mode, e.g. ``var-enum-qfirst-from-marginal``) trains q alone for the
recipe's first updates, the generative model held fixed (--q-warmup-updates); ``MODE-qlong`` the same
for four times as many updates. ``MODE-joint`` (a
sampled mode with the soft baseline: ``hard-sample-joint``, ``var-sample-joint``) trains the soft
baseline's own likelihood with the sampled objective (--soft-loss-weight). ``MODE-cool`` (with a
warm start, e.g. ``var-sample-qfirst-cool-from-marginal``) trains at the learning rate OTHER's
best checkpoint was saved with, without warm-up, instead of the recipe's rate. ``var-relaxed-softmax``
takes its Dirichlet concentrations as n times the softmax of the scores (--dirichlet-transform
softmax) instead of their softplus. The suffixes may come in any order.
"""

from typing import Optional

TRANSFORMER = "transformer-"
DESIGNS = ("all", "below-top", "none")  # --soft-cross-attention


WARM = "-from-"


def warm_start(entry: str) -> Optional[str]:
    """The entry whose checkpoint starts this one's training, or None."""
    return entry.split(WARM, 1)[1] if WARM in entry else None


QFIRST = "-qfirst"
QLONG = "-qlong"
QLONG_FACTOR = 4  # -qlong: q alone for this many times the recipe's q-only updates
JOINT = "-joint"
COOL = "-cool"
SOFTMAX = "-softmax"
SUFFIXES = (QFIRST, QLONG, JOINT, COOL, SOFTMAX)


def _suffixes(entry: str) -> tuple:
    """The entry without its warm start, split into what is trained and its suffixes."""
    entry, found = entry.split(WARM, 1)[0], []
    while entry.endswith(SUFFIXES):
        suffix = next(s for s in SUFFIXES if entry.endswith(s))
        found.append(suffix)
        entry = entry[:-len(suffix)]
    return entry, found


def trained(entry: str) -> str:
    """The entry without its warm start and suffixes: what is trained (``var-sample`` of
    ``var-sample-from-var-enum``, of ``var-sample-qfirst`` and of ``var-sample-joint``)."""
    return _suffixes(entry)[0]


def q_first(entry: str) -> bool:
    """Does the entry train q alone first (``MODE-qfirst`` or ``MODE-qlong``)?"""
    return bool({QFIRST, QLONG} & set(suffixes(entry)))


def suffixes(entry: str) -> list:
    """The entry's suffixes (``-qfirst``, ``-qlong``, ``-joint``, ``-cool``, ``-softmax``), warm start excluded."""
    return _suffixes(entry)[1]


def q_long(entry: str) -> bool:
    """Does the entry train q alone for QLONG_FACTOR times the recipe's q-only updates (``MODE-qlong``)?"""
    return QLONG in suffixes(entry)


def joint(entry: str) -> bool:
    """Does the entry train the soft baseline's likelihood jointly (``MODE-joint``)?"""
    return JOINT in suffixes(entry)


def cool(entry: str) -> bool:
    """Does the entry continue its warm start at the source's learning rate (``MODE-cool``)?"""
    return COOL in suffixes(entry)


def softmax_concentrations(entry: str) -> bool:
    """Does the entry take var-relaxed's concentrations from the softmax of its scores (``MODE-softmax``)?"""
    return SOFTMAX in suffixes(entry)


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
