"""Distributions over source positions: masking, categorical and Dirichlet helpers, sampling.

Everything the latent machinery computes about one alignment distribution lives here, so
that the objectives, the output layer and every architecture share one implementation:

- masking and log-space normalisation: pads get exactly zero mass everywhere, one helper
  normalises every distribution over source positions (prior, posterior, K-max)
  (docs/METHOD.md §9.1-9.2);
- categorical quantities: the marginal, expectations, KL and entropy;
- samples, exact and relaxed (docs/METHOD.md §5), and the Dirichlet's concentrations, mean
  and KL.

Where the noise comes from: inside ``with noise_from(generator):`` every sampling function
here draws from that generator; outside it, from torch's global generator. In training the
``varattn_translation`` task opens that block around each update with a generator seeded from
``(--seed, data-parallel rank, update number)`` (:func:`noise_seed`), so each rank draws its own
noise, and a run resumed from a checkpoint draws the same noise as the uninterrupted run.
Validation draws noise only for ``var-relaxed``'s Dirichlet ELBO, and that noise is fixed by
each sentence pair (:func:`dirichlet_rsample_per_sentence`), never by a generator's state.

Numerics: sampling and the Dirichlet compute in float32 (or float64 for float64 inputs)
whatever the activation dtype (``--fp16``, ``--amp``, autocast): Gumbel noise,
concentrations, Gamma samples and the Dirichlet KL, whose ``lgamma`` terms overflow float16
beyond 65504 and lose all precision in their differences long before.

Dimensions: B batch, T target length, S source length, K candidate alignments or samples.
"""

import contextlib
import math
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

# ---------------------------------------------------------------------------- masking


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


def alignment_padding_mask(src_tokens: Tensor, pad: int, eos: int, exclude_eos: bool) -> Tensor:
    """``(B, S)`` source tokens -> ``(B, S)`` bool mask, True where ``z_t`` may not point.

    Pads are never alignment candidates. With ``exclude_eos`` neither is the source EOS
    (the paper's sources have none, docs/METHOD.md §3); a source that is nothing but EOS keeps
    it, so that no row is all masked (docs/METHOD.md §9.2).
    """
    mask = src_tokens.eq(pad)  # B x S
    if exclude_eos:
        eos_mask = src_tokens.eq(eos)  # B x S
        nothing_else = (mask | eos_mask).all(dim=1, keepdim=True)  # B x 1
        mask = mask | (eos_mask & ~nothing_else)
    return mask


def mass_on(log_probs: Tensor, positions: Tensor) -> Tensor:
    """``(..., S)`` log-probabilities, bool ``positions`` broadcastable to them -> ``(...)``:
    the probability the distribution puts on the marked positions."""
    return log_probs.exp().masked_fill(~positions, 0.0).sum(dim=-1)


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


# ---------------------------------------------------------------------------- categorical


def log_marginal(prior_log_probs: Tensor, token_log_probs: Tensor) -> Tensor:
    """``log Σ_j p_t(j) exp ℓ_t(j)``: exact log-likelihood of y_t, marginalising z_t."""
    return torch.logsumexp(prior_log_probs + token_log_probs, dim=-1)


def exact_posterior(prior_log_probs: Tensor, token_log_probs: Tensor) -> Tensor:
    """``log p(z_t = j | x, y_≤t) = log p_t(j) + ℓ_t(j) - log Σ_k p_t(k) exp ℓ_t(k)``: the model's
    own posterior over the alignment once y_t is seen (pads stay ``-inf`` through the prior)."""
    return torch.log_softmax(prior_log_probs + token_log_probs, dim=-1)


def expected_log_likelihood(log_probs: Tensor, token_log_probs: Tensor) -> Tensor:
    """``Σ_j r_t(j) ℓ_t(j)`` for a distribution r (prior or posterior) given as log-probs."""
    return probs_times(log_probs, token_log_probs)


def categorical_kl(q_log_probs: Tensor, p_log_probs: Tensor) -> Tensor:
    """``KL(q_t || p_t) = Σ_j q_t(j) (log q_t(j) - log p_t(j))`` (docs/METHOD.md eq. (17), §9.5).

    Positions where q has no mass contribute 0 even where both are ``-inf`` (pads).
    """
    return probs_times(q_log_probs, q_log_probs - p_log_probs)


def categorical_entropy(log_probs: Tensor) -> Tensor:
    """``H(r_t) = -Σ_j r_t(j) log r_t(j)``, pads (``-inf``) contribute 0."""
    return -probs_times(log_probs, log_probs)


# ---------------------------------------------------------------------------- sampling

_generator: Optional[torch.Generator] = None


@contextlib.contextmanager
def noise_from(generator: Optional[torch.Generator]) -> Iterator[None]:
    """Draw all sampling noise of this module from ``generator`` inside the block (None:
    torch's global generator)."""
    global _generator
    previous, _generator = _generator, generator
    try:
        yield
    finally:
        _generator = previous


def seed_from(entropy) -> int:
    """A 63-bit seed, well mixed (numpy's ``SeedSequence``), distinct for every list of
    non-negative integers ``entropy``."""
    state = np.random.SeedSequence(list(entropy)).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def noise_seed(seed: int, rank: int, num_updates: int) -> int:
    """The seed of the sampling noise of one update on one data-parallel rank."""
    return seed_from([seed, rank, num_updates])


def gumbel_noise(shape, like: Tensor) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)``, U uniform in (0, 1)."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    uniform = torch.rand(shape, dtype=dtype, device=like.device, generator=_generator)
    tiny = torch.finfo(dtype).tiny
    exponential = -torch.log(uniform.clamp(min=tiny))  # Exp(1), > 0
    return -torch.log(exponential.clamp(min=tiny))


def sample_categorical(log_probs: Tensor, num_samples: int) -> Tensor:
    """``num_samples`` independent draws per row by the Gumbel-max trick.

    Args:
        log_probs: ``(B, T, S)`` log-probabilities, ``-inf`` at positions never to be drawn.

    Returns:
        ``(B, T, K)`` source positions; a ``-inf`` position is never drawn.
    """
    B, T, S = log_probs.shape
    noise = gumbel_noise((B, T, num_samples, S), log_probs)
    return (at_least_float32(log_probs.detach()).unsqueeze(2) + noise).argmax(dim=-1)


def gumbel_softmax(log_probs: Tensor, temperature: float) -> Tensor:
    """Relaxed one-hot sample ``softmax((log q + g) / τ)``, reparameterised (docs/METHOD.md eq. (21)).

    ``(B, T, S)`` log-probabilities (``-inf`` at pads) -> ``(B, T, S)`` weights summing to 1,
    exactly 0 at pads.
    """
    log_probs = at_least_float32(log_probs)
    return torch.softmax((log_probs + gumbel_noise(log_probs.shape, log_probs)) / temperature, dim=-1)


def dirichlet_rsample(alpha: Tensor, src_padding_mask: Tensor) -> Tensor:
    """Reparameterised sample of ``Dir(α)`` over the real positions of each row.

    Args:
        alpha: ``(B, T, S)`` positive concentrations (values at pads are ignored).
        src_padding_mask: broadcastable to ``alpha``, True at pads.

    Returns:
        ``(B, T, S)`` a point of the simplex over real positions, exactly 0 at pads.
    """
    alpha = at_least_float32(alpha)
    mask = src_padding_mask.expand_as(alpha)
    gamma = torch._standard_gamma(alpha.masked_fill(mask, 1.0), generator=_generator).masked_fill(mask, 0.0)
    return gamma / gamma.sum(dim=-1, keepdim=True)


VALIDATION_STREAM = 0x5A11D  # keeps validation's seeds apart from training's (seed, rank, update)


def sentence_noise_seed(target_tokens: Tensor, num_sources: int) -> int:
    """A seed that depends only on one sentence pair: its real target tokens and its number of
    real source positions (validation's fixed Dirichlet noise)."""
    return seed_from([VALIDATION_STREAM, int(num_sources)] + [int(token) for token in target_tokens.tolist()])


def dirichlet_rsample_per_sentence(alpha: Tensor, src_padding_mask: Tensor, target_mask: Tensor,
                                   target: Tensor) -> Tensor:
    """A sample of ``Dir(α)`` whose noise is fixed by each sentence pair, not by the batch.

    Each sentence draws from a generator of its own seeded by :func:`sentence_noise_seed`,
    over its real target tokens and real source positions only, so its sample is the same
    whatever the batch, its padding (left or right), the data-parallel rank or the global
    generator: validation of ``var-relaxed`` is a function of the parameters and the data.

    Args:
        alpha: ``(B, T, S)`` positive concentrations.
        src_padding_mask: ``(B, 1, S)`` True at source pads.
        target_mask: ``(B, T)`` True at real target tokens.
        target: ``(B, T)`` target tokens (their values seed the noise).

    Returns:
        ``(B, T, S)`` points of the simplex over the real source positions, 0 at pads and at
        target pads.
    """
    alpha = at_least_float32(alpha)
    weights = torch.zeros_like(alpha)
    for b in range(alpha.size(0)):
        steps = target_mask[b].nonzero().squeeze(1)
        sources = (~src_padding_mask[b, 0]).nonzero().squeeze(1)
        generator = torch.Generator(device=alpha.device)
        generator.manual_seed(sentence_noise_seed(target[b, steps], sources.numel()))
        gamma = torch._standard_gamma(alpha[b][steps][:, sources], generator=generator)  # T_b x S_b
        weights[b, steps.unsqueeze(1), sources.unsqueeze(0)] = gamma / gamma.sum(dim=-1, keepdim=True)
    return weights


def dirichlet_kl(alpha_q: Tensor, alpha_p: Tensor, src_padding_mask: Tensor) -> Tensor:
    """``KL(Dir(α_q) || Dir(α_p))`` over the real positions of each row, ``(B, T)`` (docs/METHOD.md eq. (25)).

    ``log Γ(a0) - Σ log Γ(a_j) - log Γ(b0) + Σ log Γ(b_j) + Σ (a_j - b_j)(ψ(a_j) - ψ(a0))``
    with ``a0 = Σ a_j``, ``b0 = Σ b_j`` summed over real positions only.
    """
    alpha_q, alpha_p = at_least_float32(alpha_q), at_least_float32(alpha_p)
    mask = src_padding_mask.expand_as(alpha_q)
    a = alpha_q.masked_fill(mask, 1.0)
    b = alpha_p.masked_fill(mask, 1.0)

    def total(x):
        return x.masked_fill(mask, 0.0).sum(dim=-1)

    a0, b0 = total(a), total(b)
    return (
        torch.lgamma(a0) - total(torch.lgamma(a)) - torch.lgamma(b0) + total(torch.lgamma(b))
        + total((a - b) * (torch.digamma(a) - torch.digamma(a0).unsqueeze(-1)))
    )


def dirichlet_concentration(scores: Tensor, transform: str, min_alpha: float, max_alpha: float,
                            src_padding_mask: Optional[Tensor] = None) -> Tensor:
    """Positive concentrations ``α = clamp(f(scores))`` (docs/METHOD.md eq. (24)), in at least
    float32. ``f``:

    - ``softplus`` (the default) or ``exp`` of each score: for ``exp`` the scores are clamped at
      ``log max`` first (the same values, but a large score no longer overflows to ``inf``,
      whose gradient ``inf · 0`` was NaN);
    - ``softmax``: ``n · softmax(scores)`` over the row's ``n`` real positions
      (``src_padding_mask``, broadcastable to ``scores``, True at pads, is then required): the
      Dirichlet's mean is the softmax of the scores, the categorical distribution of the same
      scores, and its total concentration is ``n`` (the flat Dirichlet when that softmax is
      uniform). It does not change when a constant is added to a row's scores, so the scores of
      a warm start (``hard-enum``'s, far above the clamp) keep their meaning.
    """
    scores = at_least_float32(scores)
    if transform == "softplus":
        alpha = torch.nn.functional.softplus(scores)
    elif transform == "exp":
        alpha = scores.clamp(max=math.log(max_alpha)).exp()
    elif transform == "softmax":
        if src_padding_mask is None:
            raise ValueError("--dirichlet-transform softmax needs the source padding mask")
        mask = src_padding_mask.expand_as(scores)
        real = (~mask).sum(dim=-1, keepdim=True).to(scores.dtype)
        alpha = real * torch.softmax(scores.masked_fill(mask, -math.inf), dim=-1)
    else:
        raise ValueError(f"--dirichlet-transform must be softplus, exp or softmax, got {transform!r}")
    return alpha.clamp(min=min_alpha, max=max_alpha)


def dirichlet_mean(alpha: Tensor, src_padding_mask: Tensor) -> Tensor:
    """``E[z] = α / Σ_j α_j`` over real positions, 0 at pads."""
    alpha = at_least_float32(alpha).masked_fill(src_padding_mask.expand_as(alpha), 0.0)
    return alpha / alpha.sum(dim=-1, keepdim=True)
