"""Objectives (var_attn_plugin.latent.objectives) against brute-force loops over alignments.

Every exact objective is a sum over the candidate alignments j of one target token; the
oracles here recompute it with explicit Python loops over j in float64 (``math``), on
random priors, posteriors and ``ℓ_t(j)`` with random source padding. Properties: the ELBO
and the hard (Jensen) bound lie below the log marginal, with equality for the true
posterior; KL >= 0 with equality at q == p; pads get exactly zero mass; nothing becomes
nan or inf when the prior underflows.

Dimensions: B batch, T target steps, S source positions.
"""

import math
from typing import List

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from var_attn_plugin.latent.distributions import (
    categorical_entropy,
    categorical_kl,
    expand_padding_mask,
    log_marginal,
    masked_log_softmax,
    probs_times,
)
from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.latent.objectives import (
    LatentOutputs,
    hard_enum_objective,
    hard_sample_objective,
    marginal_objective,
    var_enum_objective,
    var_sample_objective,
)

PROPERTY = settings(max_examples=25, deadline=None)


def random_case(B: int, T: int, S: int, seed: int, score_scale: float = 3.0):
    """Random ``(B, T, S)`` prior, posterior and ℓ, with a random number of left pads per row.

    Returns (prior_log_probs, posterior_log_probs, token_log_probs, src_padding_mask ``(B, S)``).
    ℓ is 0 at source pads, as the model makes it.
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, S + 1, (B,), generator=g)  # at least one real position
    positions = torch.arange(S)
    src_padding_mask = positions.unsqueeze(0) < (S - lengths).unsqueeze(1)  # left pads
    mask = expand_padding_mask(src_padding_mask, T)
    prior = masked_log_softmax(score_scale * torch.randn(B, T, S, generator=g, dtype=torch.float64), mask)
    posterior = masked_log_softmax(score_scale * torch.randn(B, T, S, generator=g, dtype=torch.float64), mask)
    token_log_probs = (-5.0 * torch.rand(B, T, S, generator=g, dtype=torch.float64)).masked_fill(mask, 0.0)
    return prior, posterior, token_log_probs, src_padding_mask


def real_positions(src_padding_mask: torch.Tensor, b: int) -> List[int]:
    return [j for j, pad in enumerate(src_padding_mask[b].tolist()) if not pad]


def loop_terms(prior, posterior, token_log_probs, src_padding_mask):
    """Per-token log marginal, E_p[ℓ], E_q[ℓ] and KL(q||p) by explicit loops over j."""
    B, T, _ = prior.shape
    out = {key: torch.zeros(B, T, dtype=torch.float64) for key in ("log_marginal", "prior_rec", "post_rec", "kl")}
    for b in range(B):
        for t in range(T):
            p = {j: math.exp(prior[b, t, j].item()) for j in real_positions(src_padding_mask, b)}
            q = {j: math.exp(posterior[b, t, j].item()) for j in p}
            ell = {j: token_log_probs[b, t, j].item() for j in p}
            out["log_marginal"][b, t] = math.log(sum(p[j] * math.exp(ell[j]) for j in p))
            out["prior_rec"][b, t] = sum(p[j] * ell[j] for j in p)
            out["post_rec"][b, t] = sum(q[j] * ell[j] for j in p)
            out["kl"][b, t] = sum(q[j] * (math.log(q[j]) - math.log(p[j])) for j in p)
    return out


sizes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------- oracles


@PROPERTY
@given(sizes)
def test_exact_objectives_match_loops_over_alignments(case):
    B, T, S, seed = case
    prior, posterior, ell, src_padding_mask = random_case(B, T, S, seed)
    oracle = loop_terms(prior, posterior, ell, src_padding_mask)
    out = LatentOutputs(prior_log_probs=prior, token_log_probs=ell, posterior_log_probs=posterior)

    torch.testing.assert_close(log_marginal(prior, ell), oracle["log_marginal"])
    marginal = marginal_objective(out)
    torch.testing.assert_close(marginal.objective, -oracle["log_marginal"])
    torch.testing.assert_close(marginal.loss, -oracle["log_marginal"])
    assert torch.all(marginal.kl == 0)

    hard = hard_enum_objective(out)
    torch.testing.assert_close(hard.objective, -oracle["prior_rec"])
    torch.testing.assert_close(hard.loss, -oracle["prior_rec"])

    elbo = var_enum_objective(out)
    torch.testing.assert_close(elbo.reconstruction, -oracle["post_rec"])
    torch.testing.assert_close(elbo.kl, oracle["kl"])
    torch.testing.assert_close(elbo.objective, oracle["kl"] - oracle["post_rec"])
    torch.testing.assert_close(elbo.loss, elbo.objective)


@PROPERTY
@given(sizes)
def test_bounds_lie_below_the_log_marginal_with_equality_at_the_true_posterior(case):
    B, T, S, seed = case
    prior, posterior, ell, src_padding_mask = random_case(B, T, S, seed)
    mask = expand_padding_mask(src_padding_mask, T)
    exact = log_marginal(prior, ell)
    out = LatentOutputs(prior_log_probs=prior, token_log_probs=ell, posterior_log_probs=posterior)
    slack = 1e-12

    # any q: ELBO <= log p(y_t); q = p gives the hard (Jensen) bound, also <= log p(y_t)
    assert torch.all(-var_enum_objective(out).objective <= exact + slack)
    assert torch.all(-hard_enum_objective(out).objective <= exact + slack)
    out.posterior_log_probs = prior
    torch.testing.assert_close(var_enum_objective(out).objective, hard_enum_objective(out).objective)

    # true posterior p(z_t = j | y_t, ...) ∝ p_t(j) exp ℓ_t(j): the ELBO is tight
    out.posterior_log_probs = masked_log_softmax(prior + ell, mask)
    torch.testing.assert_close(-var_enum_objective(out).objective, exact, rtol=0, atol=1e-12)


@PROPERTY
@given(sizes)
def test_kl_and_entropy_ranges(case):
    B, T, S, seed = case
    prior, posterior, _, src_padding_mask = random_case(B, T, S, seed)
    kl = categorical_kl(posterior, prior)
    assert torch.all(kl >= -1e-12)
    assert torch.all(categorical_kl(prior, prior) == 0)
    assert torch.all(categorical_kl(posterior, posterior) == 0)

    num_real = (~src_padding_mask).sum(dim=1, keepdim=True).to(torch.float64)  # B x 1
    entropy = categorical_entropy(prior)
    assert torch.all(entropy >= -1e-12)
    assert torch.all(entropy <= torch.log(num_real) + 1e-12)
    for b in range(B):
        for t in range(T):
            real = real_positions(src_padding_mask, b)
            expected = -sum(math.exp(prior[b, t, j].item()) * prior[b, t, j].item() for j in real)
            assert entropy[b, t].item() == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------- masking


@PROPERTY
@given(sizes)
def test_masked_log_softmax_puts_zero_mass_on_pads(case):
    B, T, S, seed = case
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, T, S, generator=g, dtype=torch.float64)
    _, _, _, src_padding_mask = random_case(B, T, S, seed)
    mask = expand_padding_mask(src_padding_mask, T)
    log_probs = masked_log_softmax(scores, mask)
    assert log_probs.dtype == torch.float64
    assert torch.all(log_probs[mask] == float("-inf"))
    assert torch.all(torch.isfinite(log_probs[~mask]))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(B, T, dtype=torch.float64))
    for b in range(B):
        real = real_positions(src_padding_mask, b)
        torch.testing.assert_close(log_probs[b][:, real], torch.log_softmax(scores[b][:, real], dim=-1))


def test_masked_log_softmax_upcasts_half_precision_only():
    mask = torch.tensor([[True, False, False]])
    for dtype, expected in ((torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                            (torch.float32, torch.float32), (torch.float64, torch.float64)):
        assert masked_log_softmax(torch.zeros(1, 3, dtype=dtype), mask).dtype == expected


def test_probs_times_ignores_zero_mass_entries():
    log_probs = torch.tensor([[float("-inf"), math.log(0.25), math.log(0.75)]], dtype=torch.float64)
    values = torch.tensor([[float("nan"), 2.0, -4.0]], dtype=torch.float64)
    assert probs_times(log_probs, values).item() == pytest.approx(0.25 * 2.0 - 0.75 * 4.0)
    values = torch.tensor([[float("-inf"), 2.0, -4.0]], dtype=torch.float64)
    assert probs_times(log_probs, values).item() == pytest.approx(0.25 * 2.0 - 0.75 * 4.0)


def test_objectives_stay_finite_with_pads_and_underflowing_prior():
    """Pads at ``-inf`` and prior mass that underflows to exactly 0 (log-prob -1500 in
    float64) give finite values and finite gradients for every exact objective."""
    B, T, S = 2, 3, 5
    src_padding_mask = torch.tensor([[True, True, False, False, False], [False] * S])
    mask = expand_padding_mask(src_padding_mask, T)
    g = torch.Generator().manual_seed(7)
    prior_scores = torch.randn(B, T, S, generator=g, dtype=torch.float64)
    prior_scores[:, :, -1] = -1500.0  # exp underflows, log-prob stays finite
    prior_scores.requires_grad_(True)
    posterior_scores = torch.randn(B, T, S, generator=g, dtype=torch.float64, requires_grad=True)
    ell_scores = torch.randn(B, T, S, generator=g, dtype=torch.float64, requires_grad=True)

    prior = masked_log_softmax(prior_scores, mask)
    assert torch.all(prior[..., -1].exp() == 0) and torch.all(torch.isfinite(prior[..., -1]))
    posterior = masked_log_softmax(posterior_scores, mask)
    ell = F.logsigmoid(ell_scores).masked_fill(mask, 0.0)  # any values <= 0, one per position
    out = LatentOutputs(prior_log_probs=prior, token_log_probs=ell, posterior_log_probs=posterior)
    total = 0.0
    for name in ("marginal", "hard-enum", "var-enum"):
        terms = ATTENTION_MODES[name].objective(out)
        for value in (terms.loss, terms.objective, terms.reconstruction, terms.kl):
            assert torch.all(torch.isfinite(value)), name
        total = total + terms.loss.sum()
    # the posterior has mass where the prior underflowed: KL is large but finite
    kl = categorical_kl(posterior, prior)
    assert torch.all(torch.isfinite(kl)) and torch.all(kl > 0)
    entropy = categorical_entropy(prior) + categorical_entropy(posterior)
    assert torch.all(torch.isfinite(entropy))
    (total + entropy.sum()).backward()
    for tensor in (prior_scores, posterior_scores, ell_scores):
        assert torch.all(torch.isfinite(tensor.grad))
        # scores at pads receive no gradient
        assert torch.all(tensor.grad[mask] == 0)


# ---------------------------------------------------------------------------- sampled estimators


def _expected_over_samples(objective, out: LatentOutputs, sampler_log_probs, leaves):
    """E_{ẑ ~ r}[objective] and E_{ẑ ~ r}[∇ loss] by enumerating every ẑ of every token.

    Tokens are independent, so each ẑ_t = j is enumerated at once for all tokens and
    weighted by r_t(j) (treated as a constant weight: the estimator's own score-function
    term carries the gradient of the sampling distribution).
    """
    B, T, S = out.prior_log_probs.shape
    expected_value = torch.zeros(B, T, dtype=torch.float64)
    expected_grads = [torch.zeros_like(leaf) for leaf in leaves]
    for j in range(S):
        weight = sampler_log_probs.detach()[..., j].exp()  # B x T
        if torch.all(weight == 0):
            continue
        out.sample_indices = torch.full((B, T, 1), j)
        out.sample_token_log_probs = out.token_log_probs[..., j:j + 1]
        terms = objective(out)
        expected_value += weight * terms.objective.detach()
        grads = torch.autograd.grad((weight * terms.loss).sum(), leaves, retain_graph=True,
                                    allow_unused=True)
        expected_grads = [e if g is None else e + g for e, g in zip(expected_grads, grads)]
    return expected_value, expected_grads


@pytest.mark.parametrize("sampled, exact", [(hard_sample_objective, hard_enum_objective),
                                            (var_sample_objective, var_enum_objective)])
def test_single_sample_estimators_are_unbiased(sampled, exact):
    """Averaged over the sample by enumeration, the REINFORCE estimators give the exact
    objective and the exact gradient; the soft baseline b_t only enters the detached reward,
    so it gets no gradient."""
    B, T, S = 2, 3, 4
    g = torch.Generator().manual_seed(11)
    src_padding_mask = torch.tensor([[True, False, False, False], [False] * S])
    mask = expand_padding_mask(src_padding_mask, T)
    leaves = [torch.randn(B, T, S, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    baseline = torch.randn(B, T, generator=g, dtype=torch.float64, requires_grad=True)
    prior = masked_log_softmax(leaves[0], mask)
    posterior = masked_log_softmax(leaves[1], mask)
    ell = F.logsigmoid(leaves[2]).masked_fill(mask, 0.0)
    out = LatentOutputs(prior_log_probs=prior, token_log_probs=ell, posterior_log_probs=posterior,
                        soft_token_log_probs=-baseline.exp())
    sampler = posterior if sampled is var_sample_objective else prior

    value, grads = _expected_over_samples(sampled, out, sampler, leaves + [baseline])
    reference = exact(out)
    torch.testing.assert_close(value, reference.objective)
    exact_grads = torch.autograd.grad(reference.loss.sum(), leaves + [baseline], allow_unused=True)
    for got, want in zip(grads, exact_grads):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)
