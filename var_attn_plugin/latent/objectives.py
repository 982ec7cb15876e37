"""Training objectives as pure functions over a "candidate alignments" axis (docs/METHOD.md §5);
the modes table (latent/modes.py) names the one each attention mode trains with.

Every function works per target token and returns ``(B, T)`` tensors; the criterion masks
target pads and sums. The last axis of the inputs enumerates candidate alignments: all ``S``
source positions for the exact objectives (pads carry ``-inf`` log-probability).

Notation (docs/METHOD.md §3): ``ℓ_t(j) = log p(y_t | x, y_<t, z_t = j)`` is ``token_log_probs``,
``p_t`` the prior, ``q_t`` the posterior, ``b_t`` the soft-output log-probability.

The sampled objectives (docs/METHOD.md §5) return a ``loss`` that carries the score-function
surrogate and an ``objective`` that is the plain (noisy) estimate of the true objective; the
reward ``ℓ - b`` of a surrogate is always detached as a whole (docs/METHOD.md §9.6).

Dimensions: B batch, T target length, S source length, K candidate alignments (K = S when
enumerating, the number of samples when sampling).
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .distributions import categorical_kl, dirichlet_kl, expected_log_likelihood, log_marginal


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
        sample_indices: ``(B, T, K)`` sampled source positions (sampling modes), else None.
        sample_token_log_probs: ``(B, T, K)`` ℓ_t at the sampled positions, else None.
        relaxed_token_log_probs: ``(B, T)`` log p(y_t | relaxed z̃_t) (gumbel, dirichlet).
        prior_alpha, posterior_alpha: ``(B, T, S)`` Dirichlet concentrations (dirichlet).
        src_padding_mask: ``(B, 1, S)`` True at source pads (dirichlet).
    """

    prior_log_probs: Tensor
    token_log_probs: Optional[Tensor] = None
    soft_token_log_probs: Optional[Tensor] = None
    posterior_log_probs: Optional[Tensor] = None
    sample_indices: Optional[Tensor] = None
    sample_token_log_probs: Optional[Tensor] = None
    relaxed_token_log_probs: Optional[Tensor] = None
    prior_alpha: Optional[Tensor] = None
    posterior_alpha: Optional[Tensor] = None
    src_padding_mask: Optional[Tensor] = None


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


# ---------------------------------------------------------------------------- objectives


def _exact(value: Tensor, kl: Optional[Tensor] = None) -> TokenTerms:
    kl = torch.zeros_like(value) if kl is None else kl
    return TokenTerms(loss=value + kl, objective=value + kl, reconstruction=value, kl=kl)


def soft_objective(out: LatentOutputs) -> TokenTerms:
    """soft: ``-b_t``, ordinary attention NMT (docs/METHOD.md eq. (13))."""
    return _exact(-out.soft_token_log_probs)


def marginal_objective(out: LatentOutputs) -> TokenTerms:
    """marginal: ``-log Σ_j p_t(j) exp ℓ_t(j)`` (docs/METHOD.md eq. (14))."""
    return _exact(-log_marginal(out.prior_log_probs, out.token_log_probs))


def hard_enum_objective(out: LatentOutputs) -> TokenTerms:
    """hard-enum: ``-Σ_j p_t(j) ℓ_t(j)``, Jensen bound under the prior (docs/METHOD.md eq. (15))."""
    return _exact(-expected_log_likelihood(out.prior_log_probs, out.token_log_probs))


def var_enum_objective(out: LatentOutputs) -> TokenTerms:
    """var-enum: ``-Σ_j q_t(j) ℓ_t(j) + KL(q_t || p_t)``, exact negative ELBO (docs/METHOD.md eq. (16))."""
    q = out.posterior_log_probs
    return _exact(
        -expected_log_likelihood(q, out.token_log_probs),
        categorical_kl(q, out.prior_log_probs),
    )


def reinforce_surrogate(reward: Tensor, sample_log_probs: Tensor) -> Tensor:
    """Score-function surrogate to *minimise*: ``-[reward]_sg · log r(ẑ)``.

    Its gradient is ``-reward · ∇ log r(ẑ)``, an unbiased estimate of ``-∇ E_r[reward]``
    when the reward does not depend on r's parameters; its value is not an objective.
    """
    return -reward.detach() * sample_log_probs


def _first_sample(out: LatentOutputs, log_probs: Tensor):
    """ℓ_t(ẑ) and log r_t(ẑ) of the first sample ẑ, each ``(B, T)``."""
    index = out.sample_indices[..., :1]
    return out.sample_token_log_probs[..., 0], log_probs.gather(-1, index).squeeze(-1)


def hard_sample_objective(out: LatentOutputs) -> TokenTerms:
    """hard-sample: ``-ℓ_t(ẑ)``, ẑ ~ p_t, REINFORCE on the prior with the soft baseline b_t
    (docs/METHOD.md eq. (19))."""
    sampled, log_prior = _first_sample(out, out.prior_log_probs)
    value = -sampled
    loss = value + reinforce_surrogate(sampled - out.soft_token_log_probs, log_prior)
    return TokenTerms(loss=loss, objective=value, reconstruction=value, kl=torch.zeros_like(value))


def var_sample_objective(out: LatentOutputs) -> TokenTerms:
    """var-sample: ``-ℓ_t(ẑ) + KL(q_t || p_t)``, ẑ ~ q_t, REINFORCE for q with baseline b_t
    (docs/METHOD.md eq. (20)).

    θ gets the pathwise gradient of ℓ_t(ẑ) and of the analytic KL.
    """
    q = out.posterior_log_probs
    sampled, log_q = _first_sample(out, q)
    kl = categorical_kl(q, out.prior_log_probs)
    value = -sampled
    loss = value + kl + reinforce_surrogate(sampled - out.soft_token_log_probs, log_q)
    return TokenTerms(loss=loss, objective=value + kl, reconstruction=value, kl=kl)


def var_gumbel_objective(out: LatentOutputs) -> TokenTerms:
    """var-gumbel: ``-log p(y_t | z̃_t) + KL(q_t || p_t)``, z̃_t a Gumbel-softmax sample of q
    (docs/METHOD.md eq. (21))."""
    kl = categorical_kl(out.posterior_log_probs, out.prior_log_probs)
    return _exact(-out.relaxed_token_log_probs, kl)


def wake_sleep_weights(prior_log_probs: Tensor, posterior_log_probs: Tensor,
                       sample_indices: Tensor, sample_token_log_probs: Tensor) -> Tensor:
    """Self-normalised importance weights ``w_k ∝ p_t(z_k) exp ℓ_t(z_k) / q_t(z_k)``.

    Computed in log space and detached; ``(B, T, K)``, summing to 1 over K.
    """
    log_p = prior_log_probs.gather(-1, sample_indices)
    log_q = posterior_log_probs.gather(-1, sample_indices)
    return torch.softmax((log_p + sample_token_log_probs - log_q).detach(), dim=-1)


def var_wsram_objective(out: LatentOutputs) -> TokenTerms:
    """var-wsram: ``-Σ_k w_k [ℓ_t(z_k) + log p_t(z_k) + log q_t(z_k)]``, z_k ~ q_t (docs/METHOD.md eq. (22)).

    The logged objective is the importance-weighted estimate of ``-log p(y_t | …)``:
    ``-log (1/K) Σ_k p_t(z_k) exp ℓ_t(z_k) / q_t(z_k)`` (docs/METHOD.md eq. (23)).
    """
    index, sampled = out.sample_indices, out.sample_token_log_probs
    log_p = out.prior_log_probs.gather(-1, index)
    log_q = out.posterior_log_probs.gather(-1, index)
    weights = wake_sleep_weights(out.prior_log_probs, out.posterior_log_probs, index, sampled)
    loss = -(weights * (sampled + log_p + log_q)).sum(dim=-1)
    log_ratio = (log_p + sampled - log_q).detach()
    value = -(torch.logsumexp(log_ratio, dim=-1) - math.log(index.size(-1)))
    return TokenTerms(loss=loss, objective=value, reconstruction=value, kl=torch.zeros_like(value))


def var_relaxed_objective(out: LatentOutputs) -> TokenTerms:
    """var-relaxed: ``-log p(y_t | z_t) + KL(Dir(α_q) || Dir(α_p))``, z_t ~ Dir(α_q)
    (docs/METHOD.md eq. (24))."""
    kl = dirichlet_kl(out.posterior_alpha, out.prior_alpha, out.src_padding_mask)
    return _exact(-out.relaxed_token_log_probs, kl)


def with_soft_likelihood(terms: TokenTerms, soft_token_log_probs: Tensor, weight: float) -> TokenTerms:
    """``terms`` whose ``loss`` also trains the soft output's likelihood, ``weight · -b_t``: the
    sampled modes' baseline becomes a soft-attention model trained jointly with the latent one,
    as in the original code. The logged objective is unchanged (a training aid, not the
    objective)."""
    return TokenTerms(loss=terms.loss - weight * soft_token_log_probs, objective=terms.objective,
                      reconstruction=terms.reconstruction, kl=terms.kl)
