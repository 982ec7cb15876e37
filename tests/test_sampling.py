"""Samplers of the latent alignment (``var_attn_plugin.latent.distributions``), checked statistically.

Each distribution is compared with its definition: frequencies of many draws against the
probabilities, sample means against the closed-form mean, within Z_SCORE standard errors
(helpers.py) derived from the known or measured variance; the Dirichlet KL against
``torch.distributions``. Many draws come at once by repeating one row along B. All in
float64 with fixed seeds.

Dimensions: B batch, T target steps, S source length, K samples, N repeated draws.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_mean_matches, standard_errors
from torch.distributions import Dirichlet, kl_divergence

from var_attn_plugin.latent.distributions import (
    dirichlet_concentration,
    dirichlet_kl,
    dirichlet_mean,
    dirichlet_rsample,
    expand_padding_mask,
    gumbel_softmax,
    masked_log_softmax,
    sample_categorical,
)

B, T, S = 2, 3, 5
SRC_PADDING_MASK = torch.tensor([[True, True, False, False, False], [False] * S])  # B x S
NUM_DRAWS = 20_000
ROUNDING = 1e-12  # float64 rounding allowed in exact identities


def distributions(seed: int) -> torch.Tensor:
    """``(B, T, S)`` log-probabilities with pads at ``-inf`` and one position of sentence 1
    so improbable that its probability underflows to 0 (a finite log-probability)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, T, S, generator=g, dtype=torch.float64)
    scores[1, :, 2] = -1500.0
    log_probs = masked_log_softmax(scores, expand_padding_mask(SRC_PADDING_MASK, T))
    assert torch.all(log_probs[1, :, 2].exp() == 0) and torch.all(torch.isfinite(log_probs[1, :, 2]))
    return log_probs


def binomial_std(probs: torch.Tensor) -> torch.Tensor:
    """Standard deviation of one draw of the indicator of an event of probability ``probs``."""
    return (probs * (1 - probs)).sqrt()


# ---------------------------------------------------------------------------- categorical


def test_sample_categorical_frequencies_match_the_distribution_and_never_hit_pads():
    torch.manual_seed(0)
    log_probs = distributions(seed=1)
    samples = sample_categorical(log_probs, NUM_DRAWS)  # B x T x K
    assert samples.shape == (B, T, NUM_DRAWS) and samples.dtype == torch.long
    pads = expand_padding_mask(SRC_PADDING_MASK, T)
    assert not torch.any(pads.gather(-1, samples)), "a pad was drawn"
    assert not torch.any(samples[1] == 2), "a position of probability 0 was drawn"

    indicators = F.one_hot(samples, S).to(torch.float64).movedim(2, 0)  # K x B x T x S
    probs = log_probs.exp()
    assert_mean_matches(indicators, probs, std=binomial_std(probs), what="frequencies")


def test_sample_categorical_draws_independently_along_k_and_across_rows():
    """Two draws of one row (and the same row repeated along B) agree as often as two
    independent draws do, Σ_j q_j², not always."""
    torch.manual_seed(1)
    log_probs = distributions(seed=2)[:1, :1]  # 1 x 1 x S
    samples = sample_categorical(log_probs.expand(NUM_DRAWS, 1, S), 2)[:, 0]  # N x 2
    agree = (samples[:, 0] == samples[:, 1]).to(torch.float64)[:, None]  # N x 1
    collision = (log_probs.exp() ** 2).sum().reshape(1)
    assert_mean_matches(agree, collision, std=binomial_std(collision), what="agreement of two draws")


def test_sample_categorical_ignores_gradients_and_accepts_float32():
    log_probs = distributions(seed=3).float().requires_grad_(True)
    samples = sample_categorical(log_probs, 7)
    assert samples.shape == (B, T, 7) and not samples.requires_grad
    pads = expand_padding_mask(SRC_PADDING_MASK, T)
    assert not torch.any(pads.gather(-1, samples))


# ---------------------------------------------------------------------------- Gumbel-softmax


TEMPERATURES = (1.0, 0.1, 0.01, 0.001)  # decreasing


def test_gumbel_softmax_is_a_point_of_the_simplex_with_zeros_at_pads_and_gradients():
    torch.manual_seed(2)
    scores = torch.randn(B, T, S, dtype=torch.float64, requires_grad=True)
    log_probs = masked_log_softmax(scores, expand_padding_mask(SRC_PADDING_MASK, T))
    weights = gumbel_softmax(log_probs, temperature=0.1)
    assert weights.shape == (B, T, S)
    assert torch.all(weights[0, :, :2] == 0), "pads must get exactly 0"
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T, dtype=torch.float64))
    # reparameterised: a loss of the sample reaches the scores of real positions only
    (weights * torch.arange(S, dtype=torch.float64)).sum().backward()
    assert torch.all(torch.isfinite(scores.grad))
    assert torch.all(scores.grad[0, :, :2] == 0) and torch.any(scores.grad[0, :, 2:] != 0)


def test_gumbel_softmax_sharpens_to_the_one_hot_of_its_argmax_as_the_temperature_goes_to_zero():
    """For one draw of the noise g, ``z̃_τ = softmax((log q + g) / τ)``: the log-ratio of two
    weights is ``(x_i - x_j) / τ`` with ``x = log q + g``, so ``τ · log(z̃_j / max z̃)`` does
    not depend on τ, the argmax never changes, and ``1 - max z̃ <= (n - 1) exp(-gap / τ)``
    with n real positions and gap the margin of the largest x: it goes to 0 with τ."""
    log_probs = distributions(seed=4)
    mask = expand_padding_mask(SRC_PADDING_MASK, T)
    real = (~mask).sum(-1)  # B x T
    relaxed = []
    for temperature in TEMPERATURES:
        torch.manual_seed(3)  # the same noise at every temperature
        relaxed.append(gumbel_softmax(log_probs, temperature))
    # margins of x from the warmest sample, where no weight underflows
    warm_log = relaxed[0].log().masked_fill(mask, float("-inf")) * TEMPERATURES[0]  # x - logsumexp
    top2 = warm_log.topk(2, dim=-1).values
    gap = top2[..., 0] - top2[..., 1]  # B x T
    argmax = relaxed[0].argmax(-1)
    one_hot = F.one_hot(argmax, S).to(torch.float64)
    max_weights = []
    for temperature, weights in zip(TEMPERATURES, relaxed):
        assert torch.equal(weights.argmax(-1), argmax)
        positive = weights > 0
        scaled = temperature * (weights.log() - weights.max(-1, keepdim=True).values.log())
        reference = (warm_log - warm_log.max(-1, keepdim=True).values).expand_as(scaled)
        torch.testing.assert_close(scaled[positive], reference[positive])
        max_weight = weights.max(-1).values
        bound = (real - 1) * torch.exp(-gap / temperature)  # B x T
        assert torch.all(1 - max_weight <= bound + ROUNDING)
        assert torch.all((weights - one_hot).abs().max(-1).values <= bound + ROUNDING)
        max_weights.append(max_weight)
    for warmer, colder in zip(max_weights, max_weights[1:]):
        assert torch.all(colder >= warmer)
    print(f"\nGumbel-softmax: mean 1 - max weight at τ = {TEMPERATURES}: "
          f"{[f'{float((1 - m).mean()):.2g}' for m in max_weights]}")


def test_gumbel_softmax_argmax_is_distributed_as_q():
    """The argmax of ``(log q + g) / τ`` is the Gumbel-max sample: distributed as q."""
    torch.manual_seed(4)
    log_probs = distributions(seed=5)
    repeated = log_probs.repeat(NUM_DRAWS, 1, 1)  # (N·B) x T x S
    argmax = gumbel_softmax(repeated, temperature=0.1).argmax(-1).view(NUM_DRAWS, B, T)
    indicators = F.one_hot(argmax, S).to(torch.float64)  # N x B x T x S
    probs = log_probs.exp()
    assert_mean_matches(indicators, probs, std=binomial_std(probs), what="argmax frequencies")


# ---------------------------------------------------------------------------- Dirichlet


def concentrations(seed: int, garbage_at_pads: float = float("nan")) -> torch.Tensor:
    """``(B, T, S)`` positive concentrations, small and large, with garbage at pads."""
    g = torch.Generator().manual_seed(seed)
    alpha = torch.exp(1.5 * torch.randn(B, T, S, generator=g, dtype=torch.float64))
    return alpha.masked_fill(expand_padding_mask(SRC_PADDING_MASK, T), garbage_at_pads)


def torch_kl_on_real_positions(alpha_q, alpha_p):
    """``(B, T)`` KL(Dir(α_q) || Dir(α_p)) by torch.distributions, one row at a time, on the
    real positions of the row only."""
    rows = []
    for b in range(B):
        real = ~SRC_PADDING_MASK[b]
        rows.append(torch.stack([
            kl_divergence(Dirichlet(alpha_q[b, t, real]), Dirichlet(alpha_p[b, t, real])) for t in range(T)]))
    return torch.stack(rows)


def test_dirichlet_kl_equals_torch_distributions_on_the_real_positions():
    """Unpadded rows (sentence 1) and padded rows (sentence 0, whatever sits at its pads)
    both equal torch's closed form on the real positions, values and gradients."""
    alpha_q = concentrations(seed=6).requires_grad_(True)
    alpha_p = concentrations(seed=7).requires_grad_(True)
    mask = SRC_PADDING_MASK.unsqueeze(1)  # B x 1 x S
    kl = dirichlet_kl(alpha_q, alpha_p, mask)
    assert kl.shape == (B, T)
    reference = torch_kl_on_real_positions(alpha_q, alpha_p)
    torch.testing.assert_close(kl, reference)
    assert torch.all(kl > 0)

    weights = torch.randn(B, T, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    grads = torch.autograd.grad((weights * kl).sum(), (alpha_q, alpha_p))
    reference_grads = torch.autograd.grad((weights * reference).sum(), (alpha_q, alpha_p))
    for got, want in zip(grads, reference_grads):
        pads = expand_padding_mask(SRC_PADDING_MASK, T)
        assert torch.all(got[pads] == 0), "pads must get no gradient"
        torch.testing.assert_close(got[~pads], want[~pads])


def test_dirichlet_kl_is_zero_between_equal_distributions():
    alpha = concentrations(seed=9)
    kl = dirichlet_kl(alpha, alpha.clone(), SRC_PADDING_MASK.unsqueeze(1))
    torch.testing.assert_close(kl, torch.zeros(B, T, dtype=torch.float64))


def test_dirichlet_rsample_lies_on_the_simplex_of_real_positions():
    torch.manual_seed(5)
    alpha = concentrations(seed=10)
    z = dirichlet_rsample(alpha, SRC_PADDING_MASK.unsqueeze(1))
    assert z.shape == (B, T, S)
    assert torch.all(z[0, :, :2] == 0), "pads must get exactly 0"
    assert torch.all(z[0, :, 2:] > 0) and torch.all(z[1] > 0)
    torch.testing.assert_close(z.sum(-1), torch.ones(B, T, dtype=torch.float64))


def test_dirichlet_rsample_mean_is_alpha_over_its_total():
    """E[z_j] = α_j / α_0 with Var z_j = α_j (α_0 - α_j) / (α_0² (α_0 + 1)), real positions."""
    torch.manual_seed(6)
    alpha = concentrations(seed=11)
    mask = SRC_PADDING_MASK.unsqueeze(1)
    z = dirichlet_rsample(alpha.repeat(NUM_DRAWS, 1, 1), mask.repeat(NUM_DRAWS, 1, 1))
    z = z.view(NUM_DRAWS, B, T, S)
    mean = dirichlet_mean(alpha, mask)
    alpha0 = alpha.masked_fill(expand_padding_mask(SRC_PADDING_MASK, T), 0.0).sum(-1, keepdim=True)
    std = (mean * (1 - mean) / (alpha0 + 1)).sqrt()
    assert_mean_matches(z, mean, std=std, what="Dirichlet sample mean")


def test_dirichlet_rsample_pathwise_gradient_is_the_gradient_of_the_mean():
    """Reparameterised: for a linear loss ``Σ_j c_j z_j`` the average over draws of the
    gradient of each draw w.r.t. α equals ``∇_α Σ_j c_j α_j / α_0`` (exact), within the
    standard errors of the per-draw gradients (each draw has its own copy of α)."""
    torch.manual_seed(7)
    alpha = concentrations(seed=12, garbage_at_pads=1.0)
    mask = SRC_PADDING_MASK.unsqueeze(1)
    c = torch.randn(S, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    copies = alpha.repeat(NUM_DRAWS, 1, 1).requires_grad_(True)  # (N·B) x T x S
    z = dirichlet_rsample(copies, mask.repeat(NUM_DRAWS, 1, 1))
    (z * c).sum().backward()
    per_draw = copies.grad.view(NUM_DRAWS, B, T, S)
    assert torch.all(torch.isfinite(per_draw))
    exact_alpha = alpha.clone().requires_grad_(True)
    (dirichlet_mean(exact_alpha, mask) * c).sum().backward()
    pads = expand_padding_mask(SRC_PADDING_MASK, T)
    assert torch.all(per_draw[:, pads] == 0) and torch.all(exact_alpha.grad[pads] == 0)
    assert_mean_matches(per_draw, exact_alpha.grad, what="pathwise Dirichlet gradient")


def test_dirichlet_mean_is_zero_at_pads_and_normalised():
    alpha = concentrations(seed=14)
    mean = dirichlet_mean(alpha, SRC_PADDING_MASK.unsqueeze(1))
    assert torch.all(mean[0, :, :2] == 0)
    torch.testing.assert_close(mean.sum(-1), torch.ones(B, T, dtype=torch.float64))
    torch.testing.assert_close(mean[1], alpha[1] / alpha[1].sum(-1, keepdim=True))


@pytest.mark.parametrize("transform, f", [("softplus", F.softplus), ("exp", torch.exp)])
def test_dirichlet_concentration_is_the_clamped_transform(transform, f):
    scores = torch.linspace(-150.0, 150.0, 31, dtype=torch.float64)  # both clamps reached
    alpha = dirichlet_concentration(scores, transform, min_alpha=0.01, max_alpha=100.0)
    torch.testing.assert_close(alpha, f(scores).clamp(0.01, 100.0))
    assert alpha.min() == 0.01 and alpha.max() == 100.0


def test_softmax_concentrations_are_n_times_the_softmax_over_real_positions_whatever_the_offset():
    """--dirichlet-transform softmax: over a row's n real positions ``α = n · softmax(scores)``,
    so the Dirichlet's mean is the categorical distribution of the same scores and its total is
    n; a constant added to a row (a warm start's large scores) changes nothing, where softplus
    puts every concentration at the clamp; pads are ignored, whatever their score."""
    torch.manual_seed(3)
    scores = torch.randn(B, T, S, dtype=torch.float64)
    mask = SRC_PADDING_MASK.unsqueeze(1)  # B x 1 x S
    alpha = dirichlet_concentration(scores, "softmax", 1e-6, 1e6, mask)
    for b in range(B):
        real = ~SRC_PADDING_MASK[b]
        n = int(real.sum())
        expected = n * torch.softmax(scores[b][:, real], dim=-1)
        torch.testing.assert_close(alpha[b][:, real], expected)
        torch.testing.assert_close(dirichlet_mean(alpha, mask)[b][:, real], torch.softmax(scores[b][:, real], -1))
    shifted = scores + 500.0
    shifted[0, :, :2] = -1e9  # pads' scores do not count
    torch.testing.assert_close(dirichlet_concentration(shifted, "softmax", 1e-6, 1e6, mask)[~mask.expand_as(alpha)],
                               alpha[~mask.expand_as(alpha)])
    assert torch.all(dirichlet_concentration(shifted, "softplus", 0.01, 100.0)[~mask.expand_as(alpha)] == 100.0)
    clamped = dirichlet_concentration(scores * 50, "softmax", 0.01, 100.0, mask)
    assert clamped.min() == 0.01
    with pytest.raises(ValueError, match="softmax needs the source padding mask"):
        dirichlet_concentration(scores, "softmax", 0.01, 100.0)


def test_dirichlet_concentration_names_the_flag_for_an_unknown_transform():
    with pytest.raises(ValueError, match="--dirichlet-transform"):
        dirichlet_concentration(torch.zeros(3), "square", 0.01, 100.0)


def test_standard_errors_flag_a_shifted_mean():
    """The statistical check itself can fail: a mean shifted by 10 standard errors is caught,
    and a constant estimator equal to its expectation passes."""
    torch.manual_seed(8)
    samples = torch.randn(NUM_DRAWS, 3, dtype=torch.float64)
    shift = 10.0 / NUM_DRAWS ** 0.5
    z = standard_errors(samples + shift, torch.zeros(3, dtype=torch.float64), std=torch.ones(3, dtype=torch.float64))
    assert torch.all(z > 5)
    constant = torch.full((NUM_DRAWS, 2), 0.25, dtype=torch.float64)
    assert torch.all(standard_errors(constant, torch.full((2,), 0.25, dtype=torch.float64)) == 0)
