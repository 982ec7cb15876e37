"""Word alignments from a trained checkpoint, teacher-forced on the reference: the library
behind ``varattn-align`` (:mod:`.tools.align`), ``varattn-plot`` and the hub's ``align``.

For every sentence pair the model reads the reference target (``model(**net_input,
target=target)`` in evaluation mode) and gives, at each target step t, a distribution over
source positions j (:func:`alignment_log_probs`):

- ``prior``: p(z_t = j | x, y_<t), the attention distribution (soft attention for a
  soft-trained model);
- ``posterior``: the inference network's q(z_t = j | x, y) (variational models);
- ``exact-posterior``: the model's own posterior p(z_t = j | x, y_<=t)
  ∝ p(z_t = j | x, y_<t) · p(y_t | x, y_<t, z_t = j) (every latent model).

Links (:func:`batch_alignments`; source position first, 0-based, EOS and pads excluded;
positions count real tokens, whatever the padding layout):

- argmax (``threshold=None``): every target token is linked to its most probable source
  token (EOS is not a candidate, as in fairseq's ``--print-alignment``);
- ``threshold=P``: every pair with probability >= P.

:func:`to_words` turns piece links into word links (:mod:`.tools.words`). User errors
(:class:`UsageError`) name the command-line flag to fix.

Dimensions: B batch, T target length, S source length.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import UsageError
from .input_check import ALIGN_FIX, sentencepiece_mismatch, warn_unreadable_inputs
from .latent.distributions import exact_posterior
from .textio import Link
from .tools.words import merge_pieces, word_ids, word_links, word_probs

DISTRIBUTIONS = ("auto", "posterior", "prior", "exact-posterior")

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ data (the checkpoint: var_attn_plugin.loading)


def load_sentencepiece(path, flag: str):
    """A sentencepiece processor, or a user error naming ``flag``."""
    import sentencepiece

    if not Path(path).is_file():
        raise UsageError(f"{flag} {path}: no such sentencepiece model file")
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def encode_lines(lines: Sequence[str], dictionary, spm_model: Optional[str] = None) -> List[Tensor]:
    """Raw lines -> token ids with EOS (pieces from ``spm_model`` when given)."""
    if spm_model is not None:
        processor = load_sentencepiece(spm_model, "--spm")
        lines = [" ".join(processor.encode(line, out_type=str)) for line in lines]
    return [dictionary.encode_line(line, add_if_not_exist=False, append_eos=True).long() for line in lines]


def raw_dataset(task, src_lines: Sequence[str], tgt_lines: Sequence[str], spm: Optional[str] = None,
                target_spm: Optional[str] = None, label: str = "source line"):
    """A ``LanguagePairDataset`` over raw text, padded like the task pads its splits; a
    warning names each source line the model cannot read, or mostly not (``label`` and its
    number: :mod:`.input_check`)."""
    from fairseq.data import LanguagePairDataset

    if spm is not None and target_spm is None:
        raise UsageError(
            "--spm encodes the source text only, and would turn the target text into the wrong pieces: pass "
            "--target-spm with the target language's sentencepiece model (the same file as --spm when one joint "
            "model encoded both languages)")
    if len(src_lines) != len(tgt_lines):
        raise UsageError(
            f"--source-file has {len(src_lines)} lines but --target-file has {len(tgt_lines)}: "
            "they must be parallel, one sentence per line")
    for flag, model, dictionary, side in (("--spm", spm, task.source_dictionary, "source"),
                                          ("--target-spm", target_spm, task.target_dictionary, "target")):
        problem = model is not None and sentencepiece_mismatch(dictionary, load_sentencepiece(model, flag), side)
        if problem:
            raise UsageError(f"{flag} {model}: {problem}; pass the {side} language's model")
    src = encode_lines(src_lines, task.source_dictionary, spm)
    tgt = encode_lines(tgt_lines, task.target_dictionary, target_spm)
    warn_unreadable_inputs(logger, src, task.source_dictionary, 1, ALIGN_FIX, src_lines, label)
    return LanguagePairDataset(
        src, np.array([len(s) for s in src]), task.source_dictionary,
        tgt, np.array([len(t) for t in tgt]), task.target_dictionary,
        left_pad_source=task.cfg.left_pad_source, left_pad_target=task.cfg.left_pad_target,
        shuffle=False,
    )


def split_dataset(task, subset: str):
    """A binarised split (``--gen-subset``) of the task's data directory."""
    try:
        task.load_dataset(subset)
    except FileNotFoundError as e:
        raise UsageError(f"--gen-subset {subset}: {e}") from None
    return task.dataset(subset)


def iterate_batches(task, model, dataset, max_tokens: Optional[int], batch_size: Optional[int]) -> Iterator[Dict]:
    """The task's batches (length-bucketed like fairseq-generate), on the model's device."""
    from fairseq import utils

    if max_tokens is None and batch_size is None:
        raise UsageError("pass --max-tokens or --batch-size")
    itr = task.get_batch_iterator(
        dataset=dataset, max_tokens=max_tokens, max_sentences=batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=False, required_batch_size_multiple=1,
    ).next_epoch_itr(shuffle=False)
    device = next(model.parameters()).device
    for sample in itr:
        if sample:
            yield utils.move_to_cuda(sample, device) if device.type == "cuda" else sample


# ------------------------------------------------------------------ distributions


def resolve_distribution(model, distribution: str) -> str:
    """``auto`` -> posterior (variational), exact-posterior (latent), prior (soft); checks."""
    spec = model.spec
    if distribution == "auto":
        return "posterior" if spec.variational else "exact-posterior" if spec.latent else "prior"
    if distribution == "posterior" and not spec.variational:
        can_give = ("--distribution exact-posterior (the model's own posterior) or prior" if spec.latent else
                    "--distribution prior, the attention (a soft-attention model has no latent alignment, so no "
                    "posterior of either kind)")
        raise UsageError(
            f"--distribution posterior needs a variational model; this checkpoint was trained with "
            f"--attention-mode {model.attention_mode}: use {can_give}")
    if distribution == "exact-posterior" and not spec.latent:
        raise UsageError(
            f"--distribution exact-posterior needs a latent-alignment model; this checkpoint was "
            f"trained with --attention-mode {model.attention_mode}: use --distribution prior")
    if distribution not in DISTRIBUTIONS:
        raise UsageError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}")
    return distribution


@torch.no_grad()
def alignment_log_probs(model, sample: Dict, distributions: Sequence[str]) -> Dict[str, Tensor]:
    """``(B, T, S)`` log-probabilities over source positions for each named distribution,
    from one teacher-forced pass over ``sample`` (``-inf`` at source pads)."""
    out = model(**sample["net_input"], target=sample["target"])
    result = {}
    for name in distributions:
        if name == "prior":
            result[name] = out.prior_log_probs
        elif name == "posterior":
            result[name] = out.posterior_log_probs
        elif name == "exact-posterior":
            result[name] = exact_posterior(out.prior_log_probs, out.token_log_probs)
        else:
            raise ValueError(f"unknown distribution {name!r}")
    return {name: value.float() for name, value in result.items()}


# ------------------------------------------------------------------ links


def real_positions(tokens: Tensor, dictionary) -> Tuple[Tensor, Tensor, Tensor]:
    """For ``(B, L)`` tokens: ``(kept, real, index)``, all ``(B, L)``.

    ``kept``: not a pad; ``real``: neither pad nor EOS; ``index``: the position counted over
    kept tokens (the caller's position once padding is removed), -1 at pads.
    """
    kept = tokens.ne(dictionary.pad())
    real = kept & tokens.ne(dictionary.eos())
    index = (kept.long().cumsum(dim=1) - 1).masked_fill(~kept, -1)
    return kept, real, index


def link_mask(probs: Tensor, src_real: Tensor, tgt_real: Tensor, threshold: Optional[float]) -> Tensor:
    """``(B, T, S)`` True at linked (target step, source position) pairs.

    Args:
        probs: ``(B, T, S)`` alignment probabilities.
        src_real, tgt_real: ``(B, S)`` / ``(B, T)`` True at real tokens (not pad, not EOS).
        threshold: None for argmax over real source tokens, else links with prob >= threshold.
    """
    candidates = tgt_real.unsqueeze(2) & src_real.unsqueeze(1)  # B x T x S
    if threshold is None:
        best = probs.masked_fill(~src_real.unsqueeze(1), -1.0).argmax(dim=-1, keepdim=True)  # B x T x 1
        linked = torch.zeros_like(candidates).scatter_(-1, best, True)
    else:
        linked = probs >= threshold
    return linked & candidates


@dataclass
class SentenceAlignment:
    """One sentence pair with its alignment distribution over kept (non-pad) tokens."""

    id: int
    src_pieces: List[str]  # S' tokens including the final EOS
    tgt_pieces: List[str]  # T' tokens including the final EOS
    probs: np.ndarray  # T' x S'
    links: Set[Link]  # (source, target) piece positions, EOS excluded


def batch_alignments(model, task, sample: Dict, distribution: str,
                     threshold: Optional[float] = None) -> List[SentenceAlignment]:
    """Alignments of every sentence in a batch (the model runs once, links are found batched)."""
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    src_tokens, target = sample["net_input"]["src_tokens"], sample["target"]
    probs = alignment_log_probs(model, sample, [distribution])[distribution].exp()  # B x T x S
    src_kept, src_real, src_index = real_positions(src_tokens, src_dict)  # B x S
    tgt_kept, tgt_real, tgt_index = real_positions(target, tgt_dict)  # B x T
    b, t, j = link_mask(probs, src_real, tgt_real, threshold).nonzero(as_tuple=True)  # N each
    link_rows = torch.stack([b, src_index[b, j], tgt_index[b, t]], dim=1).tolist()  # N x 3

    # one transfer per batch; per sentence only slicing and the token strings
    probs, src_tokens, target = probs.cpu().numpy(), src_tokens.cpu().numpy(), target.cpu().numpy()
    src_kept, tgt_kept = src_kept.cpu().numpy(), tgt_kept.cpu().numpy()
    sentences = []
    for row, sentence_id in enumerate(sample["id"].tolist()):
        sentences.append(SentenceAlignment(
            id=sentence_id,
            src_pieces=[src_dict[k] for k in src_tokens[row][src_kept[row]].tolist()],
            tgt_pieces=[tgt_dict[k] for k in target[row][tgt_kept[row]].tolist()],
            probs=probs[row][tgt_kept[row]][:, src_kept[row]],  # T' x S'
            links=set(),
        ))
    for row, src_position, tgt_position in link_rows:
        sentences[row].links.add((src_position, tgt_position))
    return sentences


def real_tokens(pieces: Sequence[str], eos: str) -> List[str]:
    """The pieces without the final EOS."""
    return list(pieces[:-1]) if pieces and pieces[-1] == eos else list(pieces)


def merged_matrix(probs: np.ndarray, src_pieces: Sequence[str], tgt_pieces: Sequence[str],
                  src_scheme: str, tgt_scheme: str, eos: str) -> Tuple[np.ndarray, List[str], List[str]]:
    """``(T', S')`` piece probabilities (EOS last on both axes) -> ``(I, J)`` word
    probabilities with their labels; EOS stays a word of its own."""

    def words(pieces: Sequence[str], scheme: str) -> Tuple[List[int], List[str]]:
        real = real_tokens(pieces, eos)
        ids = word_ids(real, scheme)
        labels = merge_pieces(real, scheme)
        if len(real) < len(pieces):
            ids.append(len(labels))
            labels.append(eos)
        return ids, labels

    src_ids, src_labels = words(src_pieces, src_scheme)
    tgt_ids, tgt_labels = words(tgt_pieces, tgt_scheme)
    return word_probs(probs, tgt_ids, src_ids), src_labels, tgt_labels


def to_words(sentence: SentenceAlignment, src_scheme: str, tgt_scheme: str, rule: str,
             threshold: Optional[float], eos: str) -> Set[Link]:
    """Word links of one sentence under ``rule`` (``any`` or ``sum``, see :mod:`.words`)."""
    src = real_tokens(sentence.src_pieces, eos)
    tgt = real_tokens(sentence.tgt_pieces, eos)
    src_words, tgt_words = word_ids(src, src_scheme), word_ids(tgt, tgt_scheme)
    if rule == "any":
        return word_links(sentence.links, src_words, tgt_words)
    if not src or not tgt:
        return set()
    probs = word_probs(sentence.probs[: len(tgt), : len(src)], tgt_words, src_words)  # I x J
    if threshold is None:
        return {(int(j), i) for i, j in enumerate(probs.argmax(axis=1))}
    return {(int(j), int(i)) for i, j in zip(*np.nonzero(probs >= threshold))}


def format_links(links: Set[Link]) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(links))
