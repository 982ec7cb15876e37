"""Masking and log-space normalisation over source positions.

One helper normalises every distribution over source positions in this package (prior,
posterior, K-max), so that pads get exactly zero mass everywhere (docs/METHOD.md §9.1-9.2).

Dimensions: B batch, T target length, S source length, K candidate alignments.
"""

import torch
from torch import Tensor


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` upcast to float32 when it is less precise (fp16, bf16); float32/64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def masked_log_softmax(scores: Tensor, src_padding_mask: Tensor) -> Tensor:
    """``log softmax_j`` over the last axis, with masked positions at exactly ``-inf``.

    Args:
        scores: ``(..., S)`` unnormalised scores.
        src_padding_mask: bool, broadcastable to ``scores``, True at positions that must get
            zero probability (source pads). Every row needs at least one unmasked position.

    Returns:
        ``(..., S)`` log-probabilities; ``exp`` sums to 1 over the unmasked positions.
    """
    scores = at_least_float32(scores).masked_fill(src_padding_mask, float("-inf"))
    return torch.log_softmax(scores, dim=-1)


def expand_padding_mask(src_padding_mask: Tensor, num_steps: int) -> Tensor:
    """``(B, S)`` source padding mask -> ``(B, T, S)`` view for per-step distributions."""
    return src_padding_mask.unsqueeze(1).expand(-1, num_steps, -1)


def probs_times(log_probs: Tensor, values: Tensor) -> Tensor:
    """``Σ_j exp(log_probs_j) · values_j`` over the last axis, ignoring zero-mass entries.

    Positions with ``log_probs == -inf`` contribute exactly 0 even where ``values`` is not
    finite there (e.g. a padded candidate), so no ``0 · inf = nan`` can appear.
    """
    probs = log_probs.exp()
    return (probs * values.masked_fill(probs == 0, 0.0)).sum(dim=-1)
