"""Warnings for source sentences the model cannot read.

A model trained on sentencepiece pieces sees raw text as unknown words: without the source
language's sentencepiece model (``fairseq-interactive`` without ``--bpe sentencepiece
--sentencepiece-model``, ``varattn-translate`` with another language's ``--spm``) every
input becomes ``<unk> <unk> …`` and beam search still prints a fluent-looking
"translation" of nothing. These helpers find such inputs (every piece unknown, or no piece
at all) so that each entry point can say which line it was and how to fix it.

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
