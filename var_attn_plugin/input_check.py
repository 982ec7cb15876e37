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

A line in a script the model has never seen (Chinese or Arabic for a German model) is read
with the right model but still means nothing to it: sentencepiece makes it ``▁`` plus unknown
pieces, and when the dictionary knows ``▁`` not every piece is ``<unk>``. Such a line is
"mostly unknown": more than half (:data:`MAX_UNKNOWN_SHARE`) of its pieces other than a bare
``▁`` are ``<unk>`` (a bare ``▁`` is the space before a word that has no piece of its own, it
carries nothing of the line). A line of whitespace only (spaces, a tab) is reported as such.
Each entry point warns about these lines too, naming them; they are still translated.

Dimensions: L tokens of one encoded sentence (EOS included).
"""

import logging
from typing import List, Optional, Sequence

import torch
from torch import Tensor

# How to fix an unreadable input, per entry point.
INTERACTIVE_FIX = (
    "encode the input like the training data: pass --bpe sentencepiece --sentencepiece-model "
    "SOURCE.model (the source language's sentencepiece model)")
TRANSLATE_FIX = (
    "--spm must be the source language's sentencepiece model, the one that encoded the source "
    "side of the data-bin")
ALIGN_FIX = (
    "pass --spm SOURCE.model and --target-spm TARGET.model, the sentencepiece models that encoded the "
    "data-bin")
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


MAX_UNKNOWN_SHARE = 0.5  # more than this share of a line's pieces (bare ▁ left out) unknown: warn
WORD_START = "\u2581"  # sentencepiece's word-start marker ▁
QUOTE_CHARS = 60  # a warning quotes at most this many characters of its line

NO_PIECE = "has no piece the model knows"
MOSTLY_UNKNOWN = "is mostly unknown to the model"
WHITESPACE = "has nothing but whitespace"
EMPTY = "is empty"


def input_problem(tokens: Tensor, dictionary) -> Optional[str]:
    """What is wrong with one encoded source sentence, or None.

    In order: no token (empty), every token ``<unk>``, nothing but bare ``▁`` tokens
    (whitespace), more than :data:`MAX_UNKNOWN_SHARE` of the tokens other than a bare ``▁``
    ``<unk>`` (mostly unknown). A bare ``▁`` that the dictionary does not know is an
    ``<unk>`` like any other unknown piece (the ids do not say which piece it was).

    Args:
        tokens: ``(L,)`` token ids as the dictionary encodes a line (EOS last).
        dictionary: the model's source dictionary.
    """
    pieces = tokens[tokens.ne(dictionary.eos())]
    if pieces.numel() == 0:
        return EMPTY
    unk = dictionary[dictionary.unk()]
    unknown = pieces.eq(dictionary.unk())
    if bool(unknown.all()):
        return f"{NO_PIECE} (all {pieces.numel()} are {unk})"
    content = pieces.ne(dictionary.indices[WORD_START]) if WORD_START in dictionary.indices \
        else torch.ones_like(unknown)
    total = int(content.sum())
    if total == 0:
        return f"{WHITESPACE} (its only piece is the word start {WORD_START})"
    count = int((unknown & content).sum())
    if count > MAX_UNKNOWN_SHARE * total:
        return f"{MOSTLY_UNKNOWN} ({count} of its {total} pieces other than a bare {WORD_START} are {unk})"
    return None


def quote(line: str) -> str:
    """``repr`` of ``line``, cut to :data:`QUOTE_CHARS` characters (a 10,000-word line is
    named, not printed)."""
    if len(line) <= QUOTE_CHARS:
        return repr(line)
    return f"{line[:QUOTE_CHARS]!r}… ({len(line)} characters)"


def describe(problem: str, fix: str) -> str:
    """The rest of a warning after the line's name: the problem, what it means, the fix."""
    if problem == EMPTY or problem.startswith(WHITESPACE):
        return f"{problem}, so the model has nothing to read"
    if problem.startswith(MOSTLY_UNKNOWN):
        return (f"{problem}, so the model cannot read most of it (a script or words it was not trained on, "
                "or another language): what the model makes of it is unreliable")
    return (f"{problem}, so the model cannot read it: a script or words it was not trained on, or, if every "
            f"line says so, text encoded without the right sentencepiece model: {fix}")


def unreadable_inputs(tokens: Sequence[Tensor], dictionary, first_line: int, fix: str,
                      lines: Optional[Sequence[str]] = None, label: str = "input line") -> List[str]:
    """One warning per unreadable sentence, naming it (``label`` and its number;
    ``first_line`` is the number of ``tokens[0]``), quoting it from ``lines`` when given, and
    saying ``fix`` where the sentencepiece model may be the cause; empty lines and lines of
    whitespace get no fix (there is nothing to encode)."""
    warnings = []
    for k, sentence in enumerate(tokens):
        problem = input_problem(sentence, dictionary)
        if lines is not None and lines[k] and not lines[k].strip():
            problem = f"{WHITESPACE} (spaces or tabs only)"  # whatever pieces sentencepiece made of them
        if problem is None:
            continue
        quoted = f" {quote(lines[k])}" if lines is not None else ""
        warnings.append(f"{label} {first_line + k}{quoted} {describe(problem, fix)}")
    return warnings


def warn_unreadable_inputs(logger: logging.Logger, tokens: Sequence[Tensor], dictionary, first_line: int,
                           fix: str, lines: Optional[Sequence[str]] = None, label: str = "input line") -> int:
    """Log :func:`unreadable_inputs` as warnings; returns how many there were."""
    warnings = unreadable_inputs(tokens, dictionary, first_line, fix, lines, label)
    for message in warnings:
        logger.warning(message)
    return len(warnings)
