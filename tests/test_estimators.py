"""The sampled estimators of docs/METHOD.md §5, checked statistically against the exact ones.

- REINFORCE (hard-sample, var-sample): the average over many samples of the gradient of the
  training loss equals the gradient of the enumerated objective (hard-enum's ``-Σ p ℓ``,
  var-enum's negative ELBO), within Z_SCORE standard errors (helpers.py) measured from the
  per-sample gradients; a biased estimator (the surrogate left out) fails the same check.
  Once on the pure objective functions, once through a tiny model and the criterion.
- The soft baseline b_t lowers the variance of that gradient (ratio printed, ``pytest -s``).
- Wake-sleep weights: the weighted samples converge to the exact posterior as K grows.
- Every sampled mode validates with its exact objective, var-relaxed with its Dirichlet ELBO
  (noise fixed per sentence, checked to sample the Dirichlet); var-relaxed's warm-up objective.

Many samples are drawn at once by repeating the same rows N times along B: each copy has
its own leaf tensors, so one backward pass gives N independent per-sample gradients.
Everything in float64 with fixed seeds.

Dimensions: B batch, T target steps, S source length, K samples, N repeated copies,
R repetitions, P parameters.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    Z_SCORE,
    assert_mean_matches,
    build_model,
    random_batch,
    standard_errors,
    var_relaxed_concentrations,
)

from var_attn_plugin.criterion import VarAttnCriterion
from var_attn_plugin.latent.distributions import (
    dirichlet_rsample_per_sentence,
    expand_padding_mask,
    log_marginal,
    masked_log_softmax,
    noise_from,
    sample_categorical,
)
from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.latent.objectives import (
    LatentOutputs,
    hard_enum_objective,
    hard_sample_objective,
    var_enum_objective,
    var_sample_objective,
    var_wsram_objective,
    wake_sleep_weights,
)
from var_attn_plugin.latent.outputs import DecodingOptions, relaxed_log_probs

B, T, S = 2, 3, 4
SRC_PADDING_MASK = torch.tensor([[True, False, False, False], [False] * S])  # B x S
NUM_COPIES = 20_000
SAMPLED_MODES = [m for m, spec in ATTENTION_MODES.items() if spec.validation is not None]
CATEGORICAL_SAMPLED_MODES = [m for m in SAMPLED_MODES if ATTENTION_MODES[m].validation in ATTENTION_MODES]
SRC_LENGTHS, TGT_LENGTHS = [4, 2, 5], [3, 5, 2]  # model batches, B = 3
WIDE_INIT = 1.0  # wider than the paper's 0.1, so that ℓ_t(j) differ across positions j


def make_criterion(model):
    return VarAttnCriterion(SimpleNamespace(target_dictionary=model.decoder.dictionary), sentence_avg=False)


def repeat_batch(batch, copies: int):
    """The same sentences ``copies`` times along B."""
    net = batch["net_input"]
    return {
        "nsentences": batch["nsentences"] * copies,
        "ntokens": batch["ntokens"] * copies,
        "net_input": {"src_tokens": net["src_tokens"].repeat(copies, 1),
                      "src_lengths": net["src_lengths"].repeat(copies),
                      "prev_output_tokens": net["prev_output_tokens"].repeat(copies, 1)},
        "target": batch["target"].repeat(copies, 1),
    }


# ---------------------------------------------------------------------------- pure objectives


def base_scores(seed: int):
    """Prior, posterior and ℓ scores ``(B, T, S)`` and a baseline ``(B, T)``."""
    g = torch.Generator().manual_seed(seed)
    scores = [torch.randn(B, T, S, generator=g, dtype=torch.float64) for _ in range(3)]
    baseline = -torch.rand(B, T, generator=g, dtype=torch.float64) - 0.5
    return scores, baseline


def latent_outputs(scores, baseline, copies: int):
    """LatentOutputs over ``copies`` copies of the rows, from leaf scores of their own.

    Returns the outputs and the leaves ``[prior_scores, posterior_scores, ell_scores]``,
    each ``(copies·B, T, S)``.
    """
    leaves = [s.repeat(copies, 1, 1).requires_grad_(True) for s in scores]
    mask = expand_padding_mask(SRC_PADDING_MASK.repeat(copies, 1), T)
    out = LatentOutputs(
        prior_log_probs=masked_log_softmax(leaves[0], mask),
        posterior_log_probs=masked_log_softmax(leaves[1], mask),
        token_log_probs=F.logsigmoid(leaves[2]).masked_fill(mask, 0.0),  # any ℓ <= 0
        soft_token_log_probs=baseline.repeat(copies, 1),
    )
    return out, leaves


def draw(out: LatentOutputs, sample_from: str, num_samples: int = 1):
    """Fill the sample fields of ``out`` with draws from the prior or the posterior."""
    sampler = out.prior_log_probs if sample_from == "prior" else out.posterior_log_probs
    out.sample_indices = sample_categorical(sampler, num_samples)  # B x T x K
    out.sample_token_log_probs = out.token_log_probs.gather(-1, out.sample_indices)
    return out


def per_sample_gradients(loss: torch.Tensor, leaves):
    """Gradient of the summed loss w.r.t. each ``(copies·B, T, S)`` leaf: copies do not
    interact, so the rows of copy n hold the gradient of copy n's own loss."""
    grads = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]


ESTIMATORS = [("hard-sample", hard_sample_objective, hard_enum_objective, "prior"),
              ("var-sample", var_sample_objective, var_enum_objective, "posterior")]


def sampled_and_exact_gradients(sampled, exact, sample_from, loss_of=lambda terms: terms.loss):
    """Per-sample gradients of the sampled estimator and the exact gradient, per leaf."""
    torch.manual_seed(0)
    scores, baseline = base_scores(seed=1)
    out, leaves = latent_outputs(scores, baseline, NUM_COPIES)
    loss = loss_of(sampled(draw(out, sample_from)))
    grads = [g.view(NUM_COPIES, B, T, S) for g in per_sample_gradients(loss, leaves)]
    one, one_leaves = latent_outputs(scores, baseline, 1)
    exact_grads = per_sample_gradients(exact(one).loss, one_leaves)
    return grads, exact_grads


@pytest.mark.parametrize("mode, sampled, exact, sample_from", ESTIMATORS)
def test_reinforce_gradient_is_unbiased_for_the_enumerated_objective(mode, sampled, exact, sample_from):
    """E_ẑ[∇ loss] = ∇ exact objective, for the scores of the sampled distribution (the
    score-function surrogate), the other distribution's scores (KL) and ℓ (pathwise)."""
    grads, exact_grads = sampled_and_exact_gradients(sampled, exact, sample_from)
    worst = 0.0
    for name, got, want in zip(("prior", "posterior", "ℓ"), grads, exact_grads):
        worst = max(worst, assert_mean_matches(got, want, what=f"{mode} gradient of the {name} scores"))
    print(f"\n{mode}: largest deviation of the mean sampled gradient from the exact one: "
          f"{worst:.2f} standard errors ({NUM_COPIES} samples)")


@pytest.mark.parametrize("mode, sampled, exact, sample_from", ESTIMATORS)
def test_the_unbiasedness_check_rejects_the_estimator_without_its_surrogate(mode, sampled, exact, sample_from):
    """The check has power: back-propagating only the sampled value (no score-function
    term, what the original hard-sample code did) misses ∇ of the sampling distribution."""
    grads, exact_grads = sampled_and_exact_gradients(
        sampled, exact, sample_from, loss_of=lambda terms: terms.objective)
    sampled_leaf = 0 if sample_from == "prior" else 1
    z = standard_errors(grads[sampled_leaf], exact_grads[sampled_leaf])
    assert float(z.max()) > Z_SCORE


def test_var_sample_gradient_through_the_model_is_unbiased_for_the_exact_elbo():
    """Through the real model and criterion (dropout 0): the average over training passes of
    the var-sample gradient of every parameter equals the gradient of the exact negative
    ELBO (the model in eval mode, which validates with var-enum), same parameters.

    Each pass trains on the batch repeated ``copies`` times and divides by ``copies``; the
    passes are independent draws of that average, whose spread gives the standard errors.
    """
    passes, copies = 300, 50
    torch.manual_seed(0)
    model = build_model("var-sample", init_scale=WIDE_INIT).double()
    criterion = make_criterion(model)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    params = [p for p in model.parameters() if p.requires_grad]

    def flat_gradient(loss):
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])

    model.eval()
    assert model.objective_name() == "var-enum"
    exact = flat_gradient(criterion(model, batch)[0])  # P

    model.train()
    assert model.objective_name() == "var-sample"
    repeated = repeat_batch(batch, copies)
    sampled = torch.stack([flat_gradient(criterion(model, repeated)[0] / copies) for _ in range(passes)])
    worst = assert_mean_matches(sampled, exact, what="var-sample gradient of the model's parameters")
    inference = torch.cat([torch.full((p.numel(),), name.startswith("inference_network."))
                           for name, p in model.named_parameters() if p.requires_grad])  # P
    assert torch.any(sampled[:, inference].std(0) > 0), "the inference network got no score-function gradient"
    print(f"\nvar-sample through the model: {exact.numel()} parameters, largest deviation "
          f"{worst:.2f} standard errors ({passes} passes x {copies} copies)")


# ---------------------------------------------------------------------------- baseline


def model_setting(mode: str):
    """Exact quantities and the soft baseline b_t of a tiny model, the same parameters in
    eval mode (enumerated ℓ, p, q) and training mode (b_t); dropout 0. Returns the exact
    LatentOutputs, b_t ``(B, T)`` and the target mask ``(B, T)``."""
    model = build_model(mode, init_scale=WIDE_INIT).double()
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    net, target = batch["net_input"], batch["target"]
    with torch.no_grad():
        exact_out = model.eval()(**net, target=target)
        baseline = model.train()(**net, target=target).soft_token_log_probs
    return exact_out, baseline, target.ne(model.decoder.dictionary.pad())


def synthetic_setting(mode: str):
    """ℓ_t(j) log-probabilities of the target word under softmaxes over V words with a
    realistic spread across j; b_t = E_r[ℓ_t] + ε_t with ε_t ~ N(0, sd_r(ℓ_t)²) drawn once
    per token: a baseline that is informative but off by as much as ℓ itself varies."""
    g = torch.Generator().manual_seed(5)
    vocabulary = 13
    scores, _ = base_scores(seed=6)
    mask = expand_padding_mask(SRC_PADDING_MASK, T)
    logits = 2.0 * torch.randn(B, T, S, vocabulary, generator=g, dtype=torch.float64)
    ell = torch.log_softmax(logits, dim=-1)[..., 0].masked_fill(mask, 0.0)
    out = LatentOutputs(prior_log_probs=masked_log_softmax(scores[0], mask),
                        posterior_log_probs=masked_log_softmax(scores[1], mask), token_log_probs=ell)
    sampler = out.prior_log_probs if ATTENTION_MODES[mode].sample_from == "prior" else out.posterior_log_probs
    mean = (sampler.exp() * ell).sum(-1)
    spread = ((sampler.exp() * (ell - mean.unsqueeze(-1)) ** 2).sum(-1)).sqrt()
    baseline = mean + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    return out, baseline, torch.ones(B, T, dtype=torch.bool)


@pytest.mark.parametrize("setting", [model_setting, synthetic_setting], ids=["model", "synthetic"])
@pytest.mark.parametrize("mode", ["hard-sample", "var-sample"])
def test_soft_baseline_reduces_the_variance_of_the_score_function_gradient(mode, setting):
    """Variance of the REINFORCE gradient w.r.t. the logits of the sampled distribution
    (summed over coordinates), with the baseline b_t and with none (b_t = 0).

    The reward ``ℓ_t(ẑ)`` is a log-probability, far from 0 (about -log V at the start of
    training), while the soft output b_t scores y_t with the same output layer at the
    prior-expected context and lands among the ℓ_t(j): ``ℓ - b`` is small where ``ℓ`` is
    not. Settings: a tiny model's own b_t, and b_t = E[ℓ_t] plus noise as large as ℓ's
    spread (see the setting functions). Both estimators stay unbiased: the baseline's term
    has expectation 0.
    """
    sample_from = ATTENTION_MODES[mode].sample_from
    exact_out, baseline, target_mask = setting(mode)
    sampler = exact_out.prior_log_probs if sample_from == "prior" else exact_out.posterior_log_probs
    shape = sampler.shape

    def outputs(log_probs, copies):
        """LatentOutputs over ``copies`` copies with ``log_probs`` as the sampled distribution."""
        return LatentOutputs(
            prior_log_probs=log_probs if sample_from == "prior" else exact_out.prior_log_probs.repeat(copies, 1, 1),
            posterior_log_probs=log_probs if sample_from == "posterior" else None,
            token_log_probs=exact_out.token_log_probs.repeat(copies, 1, 1))

    exact_logits = sampler.clone().requires_grad_(True)
    exact_objective = ATTENTION_MODES[ATTENTION_MODES[mode].validation].objective
    exact_terms = exact_objective(outputs(torch.log_softmax(exact_logits, -1), 1))
    exact = torch.autograd.grad(exact_terms.loss.masked_fill(~target_mask, 0.0).sum(), exact_logits)[0]

    torch.manual_seed(1)
    variances = {}
    for name, b in (("baseline", baseline), ("no baseline", torch.zeros_like(baseline))):
        logits = sampler.repeat(NUM_COPIES, 1, 1).requires_grad_(True)  # (N·B) x T x S
        out = outputs(torch.log_softmax(logits, dim=-1), NUM_COPIES)
        out.soft_token_log_probs = b.repeat(NUM_COPIES, 1)
        terms = ATTENTION_MODES[mode].objective(draw(out, sample_from))
        loss = terms.loss.masked_fill(~target_mask.repeat(NUM_COPIES, 1), 0.0)
        grads = torch.autograd.grad(loss.sum(), logits)[0].view(NUM_COPIES, *shape)
        assert_mean_matches(grads, exact, what=f"{mode} gradient with {name}")
        variances[name] = float(grads.var(dim=0).sum())
    ratio = variances["baseline"] / variances["no baseline"]
    print(f"\n{mode}, {setting.__name__}: gradient variance with / without the baseline = "
          f"{variances['baseline']:.4g} / {variances['no baseline']:.4g} = {ratio:.3g}")
    assert ratio < 1


# ---------------------------------------------------------------------------- wake-sleep


def true_posterior(out: LatentOutputs) -> torch.Tensor:
    """``(B, T, S)`` log p(z_t | x, y) ∝ log p_t(z) + ℓ_t(z), -inf at pads."""
    joint = out.prior_log_probs + out.token_log_probs
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


def test_wake_sleep_weights_are_uniform_and_the_bound_exact_when_q_is_the_posterior():
    """With q = p(z | y) every ratio p(z) exp ℓ(z) / q(z) is the marginal p(y_t | …): the
    weights are 1/K and the logged estimate is exactly -log p(y_t | …) whatever the samples."""
    torch.manual_seed(2)
    scores, baseline = base_scores(seed=3)
    out, _ = latent_outputs(scores, baseline, 1)
    out.posterior_log_probs = true_posterior(out)
    draw(out, "posterior", num_samples=7)
    weights = wake_sleep_weights(out.prior_log_probs, out.posterior_log_probs,
                                 out.sample_indices, out.sample_token_log_probs)
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 7))
    torch.testing.assert_close(var_wsram_objective(out).objective,
                               -log_marginal(out.prior_log_probs, out.token_log_probs).detach())


def test_wake_sleep_weights_converge_to_the_exact_posterior_as_k_grows():
    """The weighted samples Σ_k w_k δ(z_k), z_k ~ q, estimate p(z | y) ∝ p(z) exp ℓ(z)
    (self-normalised importance sampling). Over R independent repetitions: the total
    variation distance falls as K grows, and at the largest K the mean estimate equals the
    posterior within Z_SCORE standard errors. The importance-weighted bound converges to
    the exact -log p(y_t | …) from above on average."""
    repetitions, sample_sizes = 100, (4, 40, 400, 2000)
    torch.manual_seed(3)
    scores, baseline = base_scores(seed=4)
    out, _ = latent_outputs(scores, baseline, repetitions)
    out = LatentOutputs(**{k: (v.detach() if torch.is_tensor(v) else v) for k, v in vars(out).items()})
    posterior = true_posterior(out)[:B].exp()  # B x T x S
    exact_nll = -log_marginal(out.prior_log_probs, out.token_log_probs)[:B]  # B x T
    distances, bounds = [], []
    for K in sample_sizes:
        draw(out, "posterior", num_samples=K)
        weights = wake_sleep_weights(out.prior_log_probs, out.posterior_log_probs,
                                     out.sample_indices, out.sample_token_log_probs)  # (R·B) x T x K
        torch.testing.assert_close(weights.sum(-1), torch.ones(repetitions * B, T, dtype=torch.float64))
        estimate = torch.zeros_like(out.prior_log_probs).scatter_add_(-1, out.sample_indices, weights)
        estimate = estimate.view(repetitions, B, T, S)
        assert torch.all(estimate[:, 0, :, 0] == 0), "a pad got weight"
        distances.append(float(0.5 * (estimate - posterior).abs().sum(-1).mean()))
        bounds.append(var_wsram_objective(out).objective.view(repetitions, B, T))
    print(f"\nwake-sleep: mean total variation to the exact posterior at K = {sample_sizes}: "
          f"{[round(d, 4) for d in distances]}")
    for fewer, more in zip(distances, distances[1:]):
        assert more < fewer
    assert_mean_matches(estimate, posterior, what=f"wake-sleep posterior estimate at K = {sample_sizes[-1]}")
    # E[-log mean_k ratio_k] >= -log p(y_t | …) (Jensen); the gap closes as K grows
    gaps = [(bound - exact_nll).mean(dim=(1, 2)) for bound in bounds]  # R each
    for K, gap in zip(sample_sizes, gaps):
        assert float(gap.mean()) >= -Z_SCORE * float(gap.std()) / repetitions ** 0.5, K
    assert abs(float(gaps[-1].mean())) < float(gaps[0].mean())


# ---------------------------------------------------------------------------- model wiring


@pytest.mark.parametrize("mode", CATEGORICAL_SAMPLED_MODES)
def test_sampled_modes_validate_with_the_exact_objective_of_the_same_parameters(arch, mode):
    """In eval mode a sampled-mode model reports exactly what a model of its exact mode with
    the same parameters reports: no sampling noise, loss and every logged term."""
    exact_mode = ATTENTION_MODES[mode].validation
    model = build_model(mode, arch=arch).double().eval()
    exact_model = build_model(exact_mode, seed=1, arch=arch).double().eval()
    exact_model.load_state_dict(model.state_dict())  # strict: the same parameters
    assert model.objective_name() == exact_mode
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    loss, size, log = make_criterion(model)(model, batch)
    again, _, log_again = make_criterion(model)(model, batch)
    exact_loss, exact_size, exact_log = make_criterion(exact_model)(exact_model, batch)
    assert size == exact_size and torch.equal(loss, again)
    torch.testing.assert_close(loss, exact_loss)
    assert set(log) == set(exact_log) and "nll_loss" in log
    for key in log:
        torch.testing.assert_close(torch.as_tensor(log[key]), torch.as_tensor(exact_log[key]))
        assert torch.equal(torch.as_tensor(log[key]), torch.as_tensor(log_again[key]))


def test_var_relaxed_validates_with_its_dirichlet_elbo_and_the_exact_categorical_terms(arch):
    """var-relaxed's validation: loss = reconstruction + the Dirichlet KL (a loop over real tokens
    with torch.distributions as the oracle); the exact terms (perplexity, entropies, what each
    word tells, the prior's EOS mass and maximum) are var-enum's for the same parameters; the
    value is the same on every call, whatever torch's global generator or an open noise block."""
    model = build_model("var-relaxed", arch=arch).double().eval()
    with torch.no_grad():  # concentrations away from 1: a KL clearly above 0
        for parameter in model.parameters():
            parameter.mul_(8 if arch == "lstm" else 1)
    var_enum = build_model("var-enum", seed=1, arch=arch).double().eval()
    var_enum.load_state_dict(model.state_dict())
    assert model.objective_name() == "dirichlet-elbo"
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=6)
    criterion = make_criterion(model)
    torch.manual_seed(0)
    loss, _, log = criterion(model, batch)
    torch.manual_seed(1)
    with noise_from(torch.Generator().manual_seed(7)):
        again, _, log_again = criterion(model, batch)
    assert torch.equal(loss, again)
    assert all(torch.equal(torch.as_tensor(log[k]), torch.as_tensor(log_again[k])) for k in log)
    _, _, exact_log = criterion(var_enum, batch)
    for key in ("nll_loss", "prior_ent", "post_ent", "align_info", "prior_eos", "prior_max"):
        torch.testing.assert_close(torch.as_tensor(log[key]), torch.as_tensor(exact_log[key]), msg=key)
    assert float(log["kl"]) != pytest.approx(float(exact_log["kl"]), rel=1e-3)  # not the categorical KL

    prior_alpha, q_alpha, states = var_relaxed_concentrations(model, batch)
    src_pads = states.src_padding_mask
    target, pad = batch["target"], model.decoder.dictionary.pad()
    expected_kl = 0.0
    for b in range(target.size(0)):
        real = ~src_pads[b]
        for t in range(target.size(1)):
            if target[b, t] != pad:
                expected_kl += float(torch.distributions.kl_divergence(
                    torch.distributions.Dirichlet(q_alpha[b, t, real]),
                    torch.distributions.Dirichlet(prior_alpha[b, t, real])))
    assert expected_kl > 0.01
    assert float(log["kl"]) == pytest.approx(expected_kl, rel=1e-9)
    assert float(log["loss"]) == pytest.approx(float(log["rec"]) + float(log["kl"]), rel=1e-12)
    assert float(loss) == pytest.approx(float(log["loss"]), rel=1e-12)
    # the reconstruction reads the output at a sample of q's Dirichlet, drawn per sentence
    weights = dirichlet_rsample_per_sentence(q_alpha, src_pads.unsqueeze(1), target.ne(pad), target)
    with torch.no_grad():
        word = relaxed_log_probs(model.decoder.alignment_output, states, weights)  # B x T x V
    token = word.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    assert float(log["rec"]) == pytest.approx(-float(token[target.ne(pad)].sum()), rel=1e-9)


def test_per_sentence_dirichlet_samples_follow_the_dirichlet_and_ignore_the_batch():
    """dirichlet_rsample_per_sentence: over many sentence pairs with the same concentrations the
    samples have the Dirichlet's mean and variance (Z_SCORE standard errors); a sentence's
    sample is the same alone or in a batch, padded on either side; pads get 0."""
    alpha = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    n = 4000
    targets = torch.arange(n).unsqueeze(1) + 10  # n one-token sentences, distinct tokens
    weights = dirichlet_rsample_per_sentence(
        alpha.expand(n, 1, 3), torch.zeros(n, 1, 3, dtype=torch.bool), torch.ones(n, 1, dtype=torch.bool),
        targets)[:, 0]  # n x 3
    total = alpha.sum()
    mean = alpha / total
    variance = alpha * (total - alpha) / (total ** 2 * (total + 1))
    assert_mean_matches(weights, mean, variance.sqrt(), "per-sentence Dirichlet sample")
    assert_mean_matches((weights - mean) ** 2, variance, what="its squared deviation")

    alpha = torch.rand(2, 3, 4, dtype=torch.float64) * 3 + 0.2
    target = torch.tensor([[5, 6, 2], [7, 2, 1]])  # the second sentence: 2 tokens and a pad (1)
    target_mask = target.ne(1)
    right = torch.tensor([[[False, False, False, True]], [[False, False, True, True]]])  # B x 1 x S
    batched = dirichlet_rsample_per_sentence(alpha, right, target_mask, target)
    assert torch.all(batched[right.expand_as(batched)] == 0) and torch.all(batched[1, 2] == 0)
    torch.testing.assert_close(batched.sum(-1)[target_mask], torch.ones(5, dtype=torch.float64))
    for b, (n_src, n_tgt) in enumerate(((3, 3), (2, 2))):
        alone = dirichlet_rsample_per_sentence(
            alpha[b:b + 1, :n_tgt, :n_src], torch.zeros(1, 1, n_src, dtype=torch.bool),
            torch.ones(1, n_tgt, dtype=torch.bool), target[b:b + 1, :n_tgt])
        torch.testing.assert_close(batched[b, :n_tgt, :n_src], alone[0])
        left = torch.cat([torch.ones(1, 3, 4 - n_src, dtype=torch.float64), alpha[b:b + 1, :, :n_src]], dim=-1)
        left_mask = torch.arange(4).lt(4 - n_src).view(1, 1, 4)
        shifted = dirichlet_rsample_per_sentence(left, left_mask, target_mask[b:b + 1], target[b:b + 1])
        torch.testing.assert_close(shifted[0, :n_tgt, 4 - n_src:], alone[0])


@pytest.mark.parametrize("mode", SAMPLED_MODES)
def test_sampled_modes_train_with_their_own_objective(arch, mode):
    model = build_model(mode, arch=arch).train()
    assert model.objective_name() == mode


def test_var_relaxed_trains_hard_enum_during_warmup_then_var_relaxed_and_validates_its_elbo(arch):
    warmup = 3
    model = build_model("var-relaxed", dirichlet_warmup_updates=warmup, arch=arch).double()
    hard_enum = build_model("hard-enum", seed=1, arch=arch).double()
    hard_enum.load_state_dict({k: v for k, v in model.state_dict().items()
                               if not k.startswith("inference_network.")})
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    criterion = make_criterion(model)
    hard_enum_loss = criterion(hard_enum.eval(), batch)[0]
    model.train()
    for updates in range(warmup):
        model.set_num_updates(updates)
        assert model.objective_name() == "hard-enum"
        out = model(**batch["net_input"], target=batch["target"])
        assert out.token_log_probs is not None and out.posterior_alpha is None
        torch.testing.assert_close(criterion(model, batch)[0], hard_enum_loss)
    model.set_num_updates(warmup)
    assert model.objective_name() == "var-relaxed"
    out = model(**batch["net_input"], target=batch["target"])
    assert out.posterior_alpha is not None and out.relaxed_token_log_probs is not None
    model.eval()
    assert model.objective_name() == "dirichlet-elbo"
    model.set_num_updates(0)
    assert model.objective_name() == "dirichlet-elbo"


@pytest.mark.parametrize("mode", [m for m in ATTENTION_MODES if m != "var-relaxed"])
def test_dirichlet_mean_decoding_needs_a_var_relaxed_model(arch, mode):
    model = build_model(mode, arch=arch)
    with pytest.raises(ValueError, match="--latent-decoding dirichlet-mean.*var-relaxed"):
        model.configure_decoding(DecodingOptions("dirichlet-mean"))


def test_dirichlet_mean_decoding_is_accepted_by_a_var_relaxed_model(arch):
    model = build_model("var-relaxed", arch=arch).double().eval()
    model.configure_decoding(DecodingOptions("dirichlet-mean"))
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    log_probs, _ = model(**batch["net_input"])
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2], dtype=torch.float64))
    assert math.isfinite(float(log_probs.sum()))
