"""Subword pieces to words, and subword alignments to word alignments.

Three segmentations are understood:

- ``sentencepiece``: a piece starting with ``▁`` (U+2581) starts a new word
  (``▁Haus aufgabe n`` is one word, ``Hausaufgaben``);
- ``bpe``: subword-nmt's continuation marker, a piece ending in ``@@`` is continued by the
  next piece (``Haus@@ aufgab@@ en``);
- ``none``: every token is a word.

The first piece of a sentence always starts a word. Special symbols (``<unk>``) carry no
marker; under ``sentencepiece`` they continue the current word (``▁`` is its own piece when
a whole word is unknown), under ``bpe`` they end one like any piece without ``@@``.

Word alignments from piece alignments, two rules:

- ``any``: source word J and target word I are linked when any piece of J is linked to any
  piece of I (the piece links come from the argmax or threshold rule);
- ``sum``: each target word gets a distribution over source words, the mean over its
  pieces t of ``Σ_{j ∈ J} p_t(j)``; argmax or threshold then apply to that distribution.

Dimensions: T target pieces, S source pieces, I target words, J source words.
"""

from typing import Iterable, List, Sequence, Set

import numpy as np

from ..textio import Link

WORD_START = "\u2581"  # sentencepiece's word-start marker ▁
BPE_CONTINUATION = "@@"
SCHEMES = ("sentencepiece", "bpe", "none")
WORD_RULES = ("any", "sum")


def detect_scheme(symbols: Iterable[str]) -> str:
    """The segmentation of a vocabulary: whichever marker its symbols carry more often."""
    word_starts = continuations = 0
    for symbol in symbols:
        word_starts += symbol.startswith(WORD_START)
        continuations += symbol.endswith(BPE_CONTINUATION)
    if word_starts == continuations == 0:
        return "none"
    return "sentencepiece" if word_starts >= continuations else "bpe"


def word_ids(pieces: Sequence[str], scheme: str) -> List[int]:
    """The index of the word each piece belongs to (0, 0, 1, 2, 2, ...)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown subword scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    ids: List[int] = []
    word = -1
    for k, piece in enumerate(pieces):
        if scheme == "none" or k == 0:
            starts = True
        elif scheme == "sentencepiece":
            starts = piece.startswith(WORD_START)
        else:
            starts = not pieces[k - 1].endswith(BPE_CONTINUATION)
        word += starts
        ids.append(word)
    return ids


def merge_pieces(pieces: Sequence[str], scheme: str) -> List[str]:
    """The words that ``pieces`` spell, markers removed."""
    words: List[str] = []
    for piece, word in zip(pieces, word_ids(pieces, scheme)):
        if scheme == "sentencepiece":
            piece = piece.replace(WORD_START, "")
        elif scheme == "bpe" and piece.endswith(BPE_CONTINUATION):
            piece = piece[: -len(BPE_CONTINUATION)]
        if word == len(words):
            words.append(piece)
        else:
            words[word] += piece
    return words


def assignment_matrix(ids: Sequence[int]) -> np.ndarray:
    """``(pieces, words)`` one-hot matrix: entry (k, w) is 1 when piece k is in word w."""
    ids = np.asarray(ids, dtype=np.int64)
    matrix = np.zeros((len(ids), int(ids.max()) + 1 if len(ids) else 0))
    matrix[np.arange(len(ids)), ids] = 1.0
    return matrix


def word_probs(probs: np.ndarray, tgt_word_ids: Sequence[int], src_word_ids: Sequence[int]) -> np.ndarray:
    """The ``sum`` rule: ``(T, S)`` piece probabilities -> ``(I, J)`` word probabilities.

    Entry (I, J) is the mean over the pieces t of target word I of ``Σ_{j ∈ J} p_t(j)``, so
    a row of the result sums to what the rows of its pieces sum to.
    """
    tgt = assignment_matrix(tgt_word_ids)  # T x I
    src = assignment_matrix(src_word_ids)  # S x J
    summed = tgt.T @ probs @ src  # I x J
    return summed / tgt.sum(axis=0)[:, None]


def word_links(links: Iterable[Link], src_word_ids: Sequence[int], tgt_word_ids: Sequence[int]) -> Set[Link]:
    """The ``any`` rule: piece links -> the word links they touch."""
    return {(src_word_ids[j], tgt_word_ids[i]) for j, i in links}
