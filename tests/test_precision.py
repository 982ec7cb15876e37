"""Mixed precision on the CPU: every mode under autocast and with low-precision weights, and the
numerically delicate paths (Dirichlet concentrations, samples and KL) at extreme scores.

What runs where. ``--amp`` is fairseq's autocast (float16 on CUDA); ``--fp16`` and
``--memory-efficient-fp16`` convert the model's weights to float16. The CPU has both
autocast (bfloat16 and float16) and float16/bfloat16 weights, so one training step of every
mode is checked in all four settings against the same step in float32, with the same weights,
batch and sampling noise (the noise is drawn in float32 whatever the activation dtype, so the
samples are the same).

Tolerances. u is the unit roundoff of the low-precision dtype (2^-8 for bfloat16, 2^-11 for
float16). The objective is summed in float32 from log-probabilities that are float32 by
construction (logits, log-normalisers, logsumexp over candidates), so only the activations
carry rounding errors of order u, which largely average out in the sum: the objective must
agree to a relative u. Each gradient entry accumulates a few roundings through the layers:
the gradient vector must agree to a relative 2u in norm. Measured: at most 3e-5 (objective)
and 2.3e-3 (gradient) for bfloat16, 5e-6 and 2.2e-4 for float16, so both bounds leave a
margin of more than 3; a dtype error (a float16 log-normaliser, a KL overflowing to inf) is
far outside them. The Transformer's gradients go through more rounding in fairseq's own
layers (layer norms, attention, feed-forward blocks): its soft mode alone is 3.8u off in
bfloat16, and var-wsram, whose importance weights magnify differences in ℓ, 14.4u (at most
0.6u for the objective), so its gradient bound is 16u; a dtype error is still far outside.

Through the command line, ``--memory-efficient-fp16`` and ``--fp16 --fp16-no-flatten-grads``
run on the CPU (``--fp16``'s flattened fp32 copy needs a CUDA device, ``--amp``'s autocast is
CUDA's), with fairseq's loss scaler: var-relaxed, whose KL overflowed float16 (and whose Gamma
sampler does not exist in float16 on the CPU) once its hard-enum warm-up ended, trains with
finite terms and no overflowing update, and so does the Transformer's var-enum. The
Transformer's var-relaxed starts its loss scale at 16, not fairseq's 128: when q joins after
the warm-up its KL jumps from 0 to about 11 nats per token, the gradient norm from about 1 to
20-50, and at scale 128 the scaled float16 gradients overflow. (The LSTM's KL stays near 0:
its uniform ±0.1 initialisation gives prior and posterior concentrations all near
softplus(0) = 0.69; the Transformer's prior scores (U h_t)·x̃_j, Xavier U on layer-normed
states, give prior concentrations up to about 9 at initialisation against q's 0.69.) On a
GPU fairseq's scaler would skip that update and halve the scale; on the CPU fairseq's
overflow handler itself fails (it calls ``.cuda()``). At scales 16 and 1 the same updates log
the values of float32 up to float16 rounding, so the overflow is the size of the gradients,
not an infinity or NaN.
"""

import contextlib
import json
import math

import pytest
import torch
from helpers import build_model, fairseq_cli, random_batch, train_args

from var_attn_plugin.latent.distributions import (
    dirichlet_concentration,
    dirichlet_kl,
    dirichlet_mean,
    dirichlet_rsample,
    gumbel_softmax,
    noise_from,
    sample_categorical,
)
from var_attn_plugin.latent.modes import ATTENTION_MODES

ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
GRADIENT_ROUNDOFFS = {"lstm": 2, "transformer": 16}  # the gradient bound, in units u (see above)

SETTINGS = {
    # name: (context of the step, dtype of the weights, the low-precision dtype)
    "autocast-bfloat16": (lambda: torch.autocast("cpu", dtype=torch.bfloat16), torch.float32, torch.bfloat16),
    "autocast-float16": (lambda: torch.autocast("cpu", dtype=torch.float16), torch.float32, torch.float16),
    "float16-weights": (contextlib.nullcontext, torch.float16, torch.float16),
    "bfloat16-weights": (contextlib.nullcontext, torch.bfloat16, torch.bfloat16),
}


def training_step(mode: str, context=contextlib.nullcontext, dtype=torch.float32, arch: str = "lstm"):
    """One forward and backward of the mode's training loss on a mixed-length batch; returns
    (the objective summed over tokens, the model)."""
    model = build_model(mode, seed=0, arch=arch).to(dtype).train()
    batch = random_batch(model, [5, 2, 4], [3, 6, 4])
    target = batch["target"]
    pads = target.eq(model.decoder.dictionary.pad())
    with noise_from(torch.Generator().manual_seed(1)), context():
        out = model(**batch["net_input"], target=target)
        terms = ATTENTION_MODES[model.objective_name()].objective(out)
        loss = terms.loss.masked_fill(pads, 0.0).sum()
        objective = terms.objective.masked_fill(pads, 0.0).sum()
    loss.backward()
    return objective.detach(), model


def flat_gradient(model) -> torch.Tensor:
    return torch.cat([p.grad.double().flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("mode", list(ATTENTION_MODES))
def test_a_training_step_in_low_precision_is_finite_and_close_to_float32(arch, mode, setting):
    context, weights, low = SETTINGS[setting]
    u = ROUNDOFF[low]
    ref_objective, ref_model = training_step(mode, arch=arch)
    objective, model = training_step(mode, context, weights, arch=arch)

    assert objective.dtype == torch.float32 and torch.isfinite(objective)
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert p.grad.dtype == p.dtype, name  # every gradient in its parameter's dtype
            assert torch.isfinite(p.grad).all(), name
    assert abs(float(objective) - float(ref_objective)) <= u * abs(float(ref_objective))
    gradient, reference = flat_gradient(model), flat_gradient(ref_model)
    assert gradient.shape == reference.shape
    assert float((gradient - reference).norm()) <= GRADIENT_ROUNDOFFS[arch] * u * float(reference.norm())


# ---------------------------------------------------------------------------- extreme scores

EXTREMES = [1e4, -1e4]


def extreme_scores(value: float, dtype: torch.dtype) -> torch.Tensor:
    """``(B=2, T=3, S=5)`` scores around ``value``: a constant row, rows of both signs, and
    ordinary scores, so both clamps and the interior are reached."""
    g = torch.Generator().manual_seed(0)
    scores = value * torch.rand(2, 3, 5, generator=g)
    scores[0, 0] = value
    scores[1, 0] = value * torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0])
    scores[1, 2] = torch.randn(5, generator=g)
    return scores.to(dtype).requires_grad_()


def padding_mask():
    mask = torch.zeros(2, 1, 5, dtype=torch.bool)
    mask[0, 0, :2] = True  # sentence 0 has 3 real positions
    return mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("transform", ["softplus", "exp", "softmax"])
def test_dirichlet_paths_stay_finite_in_value_and_gradient_for_extreme_scores(transform, value, dtype):
    prior_scores, posterior_scores = extreme_scores(value, dtype), extreme_scores(-value / 2, dtype)
    mask = padding_mask()
    alpha_p = dirichlet_concentration(prior_scores, transform, 0.01, 100.0, mask)
    alpha_q = dirichlet_concentration(posterior_scores, transform, 0.01, 100.0, mask)
    for alpha in (alpha_p, alpha_q):
        assert alpha.dtype == torch.float32  # concentrations are float32 whatever the scores
        assert alpha.min() >= 0.01 and alpha.max() <= 100.0
    with noise_from(torch.Generator().manual_seed(0)):
        z = dirichlet_rsample(alpha_q, mask)
    kl = dirichlet_kl(alpha_q, alpha_p, mask)
    mean = dirichlet_mean(alpha_p, mask)
    assert torch.isfinite(z).all() and torch.isfinite(kl).all() and torch.isfinite(mean).all()
    assert (kl >= -1e-3).all()
    torch.testing.assert_close(z.sum(-1), torch.ones(2, 3))
    assert (z.masked_select(mask.expand_as(z)) == 0).all()
    weights = torch.linspace(-1.0, 1.0, 5)
    (kl.sum() + (z * weights).sum() + (mean * weights).sum()).backward()
    for scores in (prior_scores, posterior_scores):
        assert scores.grad.dtype == dtype and torch.isfinite(scores.grad).all()


def test_exp_concentrations_of_huge_scores_have_zero_not_nan_gradients():
    """The clamp at ``log max`` comes before ``exp``: above it the gradient is 0 (it was
    ``inf · 0 = nan``), and the values are those of ``clamp(exp(s))`` everywhere."""
    scores = torch.tensor([-1e4, -10.0, 0.0, 3.0, 10.0, 100.0, 1e4], requires_grad=True)
    alpha = dirichlet_concentration(scores, "exp", 0.01, 100.0)
    torch.testing.assert_close(alpha, scores.detach().double().exp().clamp(0.01, 100.0).float())
    alpha.sum().backward()
    torch.testing.assert_close(scores.grad, torch.tensor([0.0, 0.0, 1.0, float(alpha[3]), 0.0, 0.0, 0.0]))


def test_dirichlet_kl_of_float16_concentrations_does_not_overflow():
    """``lgamma`` of a total concentration of 300 · 100 is about 2.8e5, beyond float16's 65504:
    computed in float16 the KL was inf (the var-relaxed failure under --fp16)."""
    S = 300
    alpha_q = torch.full((1, 1, S), 100.0, dtype=torch.float16)
    alpha_p = torch.full((1, 1, S), 50.0, dtype=torch.float16)
    mask = torch.zeros(1, 1, S, dtype=torch.bool)
    kl = dirichlet_kl(alpha_q, alpha_p, mask)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(alpha_q.double()), torch.distributions.Dirichlet(alpha_p.double()))
    assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
    torch.testing.assert_close(kl.double(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_categorical_and_gumbel_samples_are_drawn_in_float32(dtype):
    """Low-precision log-probabilities get float32 noise: the same draws as their float32 copy."""
    log_probs = torch.log_softmax(torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)), -1)
    low = log_probs.to(dtype)
    draws = {}
    for name, x in (("float32", low.float()), ("low", low)):
        with noise_from(torch.Generator().manual_seed(5)):
            draws[name] = (sample_categorical(x, 4), gumbel_softmax(x, 0.5))
    assert torch.equal(draws["float32"][0], draws["low"][0])
    assert draws["low"][1].dtype == torch.float32
    torch.testing.assert_close(draws["float32"][1], draws["low"][1])


# ---------------------------------------------------------------------------- fairseq-train


def train_inner_records(log: str):
    marker = " | train_inner | "
    return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]


FLOAT16_FLAGS = {"memory-efficient-fp16": ["--memory-efficient-fp16"],
                 "fp16": ["--fp16", "--fp16-no-flatten-grads"]}
FLOAT16_RUNS = [  # (arch, mode, flags, initial loss scale: fairseq's 128 but where explained above)
    ("lstm", "var-relaxed", "memory-efficient-fp16", 128),
    ("lstm", "var-relaxed", "fp16", 128),
    ("transformer", "var-relaxed", "memory-efficient-fp16", 16),
    ("transformer", "var-relaxed", "fp16", 16),
    ("transformer", "var-enum", "memory-efficient-fp16", 128),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch, mode, flags, scale", FLOAT16_RUNS, ids=["-".join(run[:3]) for run in FLOAT16_RUNS])
def test_training_in_float16_past_the_warm_up_has_finite_terms_and_no_overflow(arch, mode, flags, scale,
                                                                                synthetic_data, tmp_path):
    warmup, updates = 3, 8  # var-relaxed: the hard-enum warm-up, then 5 updates with q (var-enum ignores it)
    log = fairseq_cli("fairseq-train", *train_args(
        synthetic_data, tmp_path, mode, "--dirichlet-warmup-updates", warmup, "--max-update", updates,
        "--log-interval", 1, "--no-save", "--disable-validation", *FLOAT16_FLAGS[flags],
        "--fp16-init-scale", scale, arch=arch)).stdout
    records = train_inner_records(log)
    assert [int(r["num_updates"]) for r in records] == list(range(1, updates + 1))
    for record in records:
        for key in ("loss", "kl", "rec", "gnorm"):
            assert math.isfinite(float(record[key])), (key, record)
    # fairseq halves the loss scale at every update whose gradients overflow
    assert {float(r["loss_scale"]) for r in records} == {float(scale)}
