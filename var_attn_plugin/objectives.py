"""Training objectives as pure functions over a "candidate alignments" axis (METHOD.md §5).

Every function works per target token and returns ``(B, T)`` tensors; the criterion masks
target pads and sums. The last axis of the inputs enumerates candidate alignments: all ``S``
source positions for the exact objectives (pads carry ``-inf`` log-probability).

Notation (METHOD.md §3): ``ℓ_t(j) = log p(y_t | x, y_<t, z_t = j)`` is ``token_log_probs``,
``p_t`` the prior, ``q_t`` the posterior, ``b_t`` the soft-output log-probability.

Dimensions: B batch, T target length, K candidate alignments (K = S when enumerating).
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from .masking import probs_times


@dataclass
class LatentOutputs:
    """What the model computed for one batch of (source, target) pairs.

    Attributes:
        prior_log_probs: ``(B, T, S)`` log p(z_t = j | x, y_<t); ``-inf`` at source pads.
        token_log_probs: ``(B, T, S)`` ℓ_t(j) for every source position, or None when the
            mode's training objective does not enumerate (0 at source pads).
        soft_token_log_probs: ``(B, T)`` b_t, log-probability of y_t under the soft output
            ``[h_t; c_t]``, or None when not needed.
        posterior_log_probs: ``(B, T, S)`` log q(z_t = j | x, y) for variational modes, else None.
    """

    prior_log_probs: Tensor
    token_log_probs: Optional[Tensor] = None
    soft_token_log_probs: Optional[Tensor] = None
    posterior_log_probs: Optional[Tensor] = None


@dataclass
class TokenTerms:
    """Per-token terms of an objective, all ``(B, T)``, all to be minimised.

    ``loss`` is what is back-propagated (it may contain a score-function surrogate);
    ``objective`` is the true value of the objective that ``loss`` estimates, which is what
    gets logged. ``reconstruction`` and ``kl`` split ``objective`` for the variational modes
    (``objective = reconstruction + kl``); for the others ``kl`` is 0.
    """

    loss: Tensor
    objective: Tensor
    reconstruction: Tensor
    kl: Tensor


# ---------------------------------------------------------------------------- primitives


def log_marginal(prior_log_probs: Tensor, token_log_probs: Tensor) -> Tensor:
    """``log Σ_j p_t(j) exp ℓ_t(j)``: exact log-likelihood of y_t, marginalising z_t."""
    return torch.logsumexp(prior_log_probs + token_log_probs, dim=-1)


def expected_log_likelihood(log_probs: Tensor, token_log_probs: Tensor) -> Tensor:
    """``Σ_j r_t(j) ℓ_t(j)`` for a distribution r (prior or posterior) given as log-probs."""
    return probs_times(log_probs, token_log_probs)


def categorical_kl(q_log_probs: Tensor, p_log_probs: Tensor) -> Tensor:
    """``KL(q_t || p_t) = Σ_j q_t(j) (log q_t(j) - log p_t(j))`` (METHOD.md pitfall 5).

    Positions where q has no mass contribute 0 even where both are ``-inf`` (pads).
    """
    return probs_times(q_log_probs, q_log_probs - p_log_probs)


def categorical_entropy(log_probs: Tensor) -> Tensor:
    """``H(r_t) = -Σ_j r_t(j) log r_t(j)``, pads (``-inf``) contribute 0."""
    return -probs_times(log_probs, log_probs)


# ---------------------------------------------------------------------------- objectives


def _exact(value: Tensor, kl: Optional[Tensor] = None) -> TokenTerms:
    kl = torch.zeros_like(value) if kl is None else kl
    return TokenTerms(loss=value + kl, objective=value + kl, reconstruction=value, kl=kl)


def soft_objective(out: LatentOutputs) -> TokenTerms:
    """soft: ``-b_t``, ordinary attention NMT."""
    return _exact(-out.soft_token_log_probs)


def marginal_objective(out: LatentOutputs) -> TokenTerms:
    """marginal: ``-log Σ_j p_t(j) exp ℓ_t(j)``."""
    return _exact(-log_marginal(out.prior_log_probs, out.token_log_probs))


def hard_enum_objective(out: LatentOutputs) -> TokenTerms:
    """hard-enum: ``-Σ_j p_t(j) ℓ_t(j)`` (Jensen bound under the prior)."""
    return _exact(-expected_log_likelihood(out.prior_log_probs, out.token_log_probs))


def var_enum_objective(out: LatentOutputs) -> TokenTerms:
    """var-enum: ``-Σ_j q_t(j) ℓ_t(j) + KL(q_t || p_t)`` (exact negative ELBO)."""
    q = out.posterior_log_probs
    return _exact(
        -expected_log_likelihood(q, out.token_log_probs),
        categorical_kl(q, out.prior_log_probs),
    )


OBJECTIVES: Dict[str, Callable[[LatentOutputs], TokenTerms]] = {
    "soft": soft_objective,
    "marginal": marginal_objective,
    "hard-enum": hard_enum_objective,
    "var-enum": var_enum_objective,
}
