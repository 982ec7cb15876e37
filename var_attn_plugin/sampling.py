"""Samples of the latent alignment, exact and relaxed (docs/METHOD.md §5).

All randomness comes from torch's generator, which fairseq seeds per rank, so distributed
training samples differently on each worker and reproducibly across runs.

Dimensions: B batch, T target steps, S source length, K samples.
"""

import torch
from torch import Tensor


def gumbel_noise(shape, like: Tensor) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)``, U uniform in (0, 1)."""
    uniform = torch.rand(shape, dtype=like.dtype, device=like.device)
    tiny = torch.finfo(like.dtype).tiny
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
    return (log_probs.detach().unsqueeze(2) + noise).argmax(dim=-1)


def gumbel_softmax(log_probs: Tensor, temperature: float) -> Tensor:
    """Relaxed one-hot sample ``softmax((log q + g) / τ)``, reparameterised (docs/METHOD.md eq. (21)).

    ``(B, T, S)`` log-probabilities (``-inf`` at pads) -> ``(B, T, S)`` weights summing to 1,
    exactly 0 at pads.
    """
    return torch.softmax((log_probs + gumbel_noise(log_probs.shape, log_probs)) / temperature, dim=-1)


def dirichlet_rsample(alpha: Tensor, src_padding_mask: Tensor) -> Tensor:
    """Reparameterised sample of ``Dir(α)`` over the real positions of each row.

    Args:
        alpha: ``(B, T, S)`` positive concentrations (values at pads are ignored).
        src_padding_mask: broadcastable to ``alpha``, True at pads.

    Returns:
        ``(B, T, S)`` a point of the simplex over real positions, exactly 0 at pads.
    """
    mask = src_padding_mask.expand_as(alpha)
    gamma = torch._standard_gamma(alpha.masked_fill(mask, 1.0)).masked_fill(mask, 0.0)
    return gamma / gamma.sum(dim=-1, keepdim=True)


def dirichlet_kl(alpha_q: Tensor, alpha_p: Tensor, src_padding_mask: Tensor) -> Tensor:
    """``KL(Dir(α_q) || Dir(α_p))`` over the real positions of each row, ``(B, T)`` (docs/METHOD.md eq. (25)).

    ``log Γ(a0) - Σ log Γ(a_j) - log Γ(b0) + Σ log Γ(b_j) + Σ (a_j - b_j)(ψ(a_j) - ψ(a0))``
    with ``a0 = Σ a_j``, ``b0 = Σ b_j`` summed over real positions only.
    """
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


def dirichlet_concentration(scores: Tensor, transform: str, min_alpha: float, max_alpha: float) -> Tensor:
    """Positive concentrations ``α = clamp(f(scores))`` with f = softplus or exp (docs/METHOD.md eq. (24))."""
    if transform == "softplus":
        alpha = torch.nn.functional.softplus(scores)
    elif transform == "exp":
        alpha = scores.exp()
    else:
        raise ValueError(f"--dirichlet-transform must be softplus or exp, got {transform!r}")
    return alpha.clamp(min=min_alpha, max=max_alpha)


def dirichlet_mean(alpha: Tensor, src_padding_mask: Tensor) -> Tensor:
    """``E[z] = α / Σ_j α_j`` over real positions, 0 at pads."""
    alpha = alpha.masked_fill(src_padding_mask.expand_as(alpha), 0.0)
    return alpha / alpha.sum(dim=-1, keepdim=True)
