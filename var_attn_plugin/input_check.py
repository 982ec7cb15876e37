"""Checks that raw text reaches the model as the pieces it was trained on.

A model trained on sentencepiece pieces sees raw text as unknown words: without the source
language's sentencepiece model (``fairseq-interactive`` without ``--bpe sentencepiece
--sentencepiece-model``, ``varattn-translate`` with another language's ``--spm``) every
input becomes ``<unk> <unk> …`` and beam search still prints a fluent-looking
"translation" of nothing. These helpers find such inputs (every piece unknown, or no piece
at all) so that each entry point can say which line it was and how to fix it.

Another language's sentencepiece model rarely gives all-unknown input (short pieces are
shared), so the model itself is checked too: the dictionary of a data-bin lists the pieces
its sentencepiece model made, so nearly all of them are pieces of that model, and far fewer
are pieces of another language's model.

Dimensions: L tokens of one encoded sentence (EOS included).
"""

import logging
from typing import List, Optional, Sequence

from torch import Tensor

# How to fix an unreadable input, per entry point.
INTERACTIVE_FIX = (
    "encode the input like the training data: pass --bpe sentencepiece --sentencepiece-model "
    "SOURCE.model (the source language's sentencepiece model)")
TRANSLATE_FIX = (
    "--spm must be the source language's sentencepiece model, the one that encoded the source "
    "side of the data-bin")
HUB_FIX = (
    "load the model with bpe='sentencepiece', sentencepiece_model='SOURCE.model' (the source "
    "language's sentencepiece model)")


MIN_PIECE_COVERAGE = 0.5  # the right model covers ~100% of the dictionary, another language's ~10%


def dictionary_pieces(dictionary) -> List[str]:
    """The dictionary's own symbols: fairseq's special symbols and padding words left out."""
    return [symbol for i, symbol in enumerate(dictionary.symbols)
            if i >= dictionary.nspecial and not symbol.startswith("madeupword")]


def piece_coverage(dictionary, processor) -> float:
    """The share of the dictionary's pieces that the sentencepiece ``processor`` has (1.0
    for an empty dictionary)."""
    pieces = dictionary_pieces(dictionary)
    if not pieces:
        return 1.0
    known = {processor.id_to_piece(i) for i in range(processor.get_piece_size())}
    return sum(piece in known for piece in pieces) / len(pieces)


def sentencepiece_mismatch(dictionary, processor, side: str) -> Optional[str]:
    """Why ``processor`` is not the sentencepiece model of the ``side`` ("source" or
    "target") dictionary, or None when it may well be."""
    coverage = piece_coverage(dictionary, processor)
    if coverage >= MIN_PIECE_COVERAGE:
        return None
    return (f"only {coverage:.0%} of the model's {side} dictionary are pieces of it (the {side} language's "
            f"own model has nearly all): it is another language's sentencepiece model")


def input_problem(tokens: Tensor, dictionary) -> Optional[str]:
    """What is wrong with one encoded source sentence, or None.

    Args:
        tokens: ``(L,)`` token ids as the dictionary encodes a line (EOS last).
        dictionary: the model's source dictionary.
    """
    pieces = tokens[tokens.ne(dictionary.eos())]
    if pieces.numel() == 0:
        return "is empty"
    if bool(pieces.eq(dictionary.unk()).all()):
        unk = dictionary[dictionary.unk()]
        return f"has no piece the model knows (all {pieces.numel()} are {unk})"
    return None


def unreadable_inputs(tokens: Sequence[Tensor], dictionary, first_line: int, fix: str,
                      lines: Optional[Sequence[str]] = None, label: str = "input line") -> List[str]:
    """One warning per unreadable sentence, naming it (``label`` and its number;
    ``first_line`` is the number of ``tokens[0]``), quoting it from ``lines`` when given, and
    saying ``fix``; empty lines get no fix (there is nothing to encode)."""
    warnings = []
    for k, sentence in enumerate(tokens):
        problem = input_problem(sentence, dictionary)
        if problem is None:
            continue
        quoted = f" {lines[k]!r}" if lines is not None else ""
        message = f"{label} {first_line + k}{quoted} {problem}, so the model cannot read it"
        if problem != "is empty":
            message += f"; {fix}"
        warnings.append(message)
    return warnings


def warn_unreadable_inputs(logger: logging.Logger, tokens: Sequence[Tensor], dictionary, first_line: int,
                           fix: str, lines: Optional[Sequence[str]] = None, label: str = "input line") -> int:
    """Log :func:`unreadable_inputs` as warnings; returns how many there were."""
    warnings = unreadable_inputs(tokens, dictionary, first_line, fix, lines, label)
    for message in warnings:
        logger.warning(message)
    return len(warnings)
