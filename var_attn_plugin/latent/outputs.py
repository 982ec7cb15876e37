"""From an architecture's states to word distributions: the one owner of the output distribution.

An architecture (the LSTM in var_attn_plugin/lstm/, the Transformer in
var_attn_plugin/transformer/) computes, for every target step, a query state ``h_t``, the prior
``p_t`` over source positions and the soft context ``c_t``, and hands them over as
:class:`AlignmentStates`. Everything after that is shared and lives here:

- :func:`word_log_probs`: ``(B, T, V)`` log p(y_t | x, y_<t) for generation, under the decoding
  option (docs/METHOD.md §6, eqs. (27)-(28)): exact or K-max marginalisation of the alignment,
  the soft output, or the Dirichlet prior's mean;
- :func:`latent_outputs`: the :class:`~var_attn_plugin.latent.objectives.LatentOutputs` a
  training objective needs (the modes table, latent/modes.py, says which): ``ℓ_t(j)`` for every
  source position, the soft output ``b_t``, the posterior q, samples and relaxed samples.

The output for alignment ``j`` reads the query state and source state ``j`` alone (eqs. (6)-(8)),
through :class:`~var_attn_plugin.latent.output_layer.AlignmentOutputLayer`; the soft output is the
same layer applied to ``c_t``.

Dimensions: B batch, T target steps, S source length, H query size, D source state size,
O output size, V vocabulary, N real target tokens, K candidates.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .distributions import (
    dirichlet_concentration,
    dirichlet_mean,
    dirichlet_rsample,
    dirichlet_rsample_per_sentence,
    expand_padding_mask,
    gumbel_softmax,
    masked_log_softmax,
    sample_categorical,
)
from .modes import ModeSpec
from .objectives import LatentOutputs
from .output_layer import AlignmentOutputLayer


@dataclass
class AlignmentStates:
    """Per-step quantities of the generative model for a batch of target prefixes."""

    hidden: Tensor  # B x T x H    h_t, the query state the output layer reads
    prior_scores: Tensor  # B x T x S    e_tj, unnormalised (-inf at source pads)
    prior_log_probs: Tensor  # B x T x S    log p_t(j), -inf at source pads
    context: Tensor  # B x T x D    c_t = Σ_j p_t(j) x̃_j
    output_sources: Optional[Tensor]  # B x S x O    W_ox x̃_j, the source half of the output layer
    #                                   (None in incremental soft decoding, which does not read it)
    src_padding_mask: Tensor  # B x S    True at source pads


@dataclass
class DecodingOptions:
    """How :func:`word_log_probs` turns states into word distributions (the task's options)."""

    latent_decoding: str = "exact"  # one of LATENT_DECODINGS
    kmax: int = 5  # candidates kept by "kmax"
    eos_penalty: float = 0.0  # β: subtract β·|src|/(n+1) from EOS during incremental decoding
    # checked (and auto resolved) by var_attn_plugin.decoding.resolve_decoding_options, the one
    # place the options are validated; VarAttnModel.configure_decoding goes through it


@dataclass(frozen=True)
class EstimatorSettings:
    """The model options of the sampled and relaxed estimators (docs/METHOD.md §5)."""

    wsram_samples: int = 5
    gumbel_temperature: float = 0.1
    dirichlet_transform: str = "softplus"
    dirichlet_min_alpha: float = 0.01
    dirichlet_max_alpha: float = 100.0
    soft_loss_weight: float = 0.0  # the sampled modes: train the soft baseline's likelihood too

    @classmethod
    def from_config(cls, cfg) -> "EstimatorSettings":
        return cls(int(cfg.wsram_samples), float(cfg.gumbel_temperature), str(cfg.dirichlet_transform),
                   float(cfg.dirichlet_min_alpha), float(cfg.dirichlet_max_alpha),
                   float(getattr(cfg, "soft_loss_weight", 0.0)))

    def num_samples(self, spec: ModeSpec) -> int:
        return int(getattr(self, spec.samples_option)) if spec.samples_option else 1

    def concentration(self, scores: Tensor, src_padding_mask: Tensor) -> Tensor:
        """Dirichlet concentrations from prior or posterior scores ``(B, T, S)`` (var-relaxed);
        ``src_padding_mask`` broadcastable to them, True at source pads."""
        return dirichlet_concentration(scores, self.dirichlet_transform, self.dirichlet_min_alpha,
                                       self.dirichlet_max_alpha, src_padding_mask)


# ---------------------------------------------------------------------------- generation


def soft_log_probs(layer: AlignmentOutputLayer, hidden: Tensor, context: Tensor) -> Tensor:
    """``(..., H)`` h_t and ``(..., D)`` c_t -> ``(..., V)`` soft-output log-probabilities."""
    return layer.soft_log_probs(layer.query_proj(hidden), layer.source_proj(context))


def relaxed_log_probs(layer: AlignmentOutputLayer, states: AlignmentStates, weights: Tensor) -> Tensor:
    """``(B, T, V)`` output for a point ``weights`` ``(B, T, S)`` of the simplex: the output
    layer reads ``Σ_j weights_j x̃_j``."""
    context = layer.mix_sources(weights, states.output_sources)  # B x T x O
    return layer.soft_log_probs(layer.query_proj(states.hidden), context)


def word_log_probs(layer: AlignmentOutputLayer, states: AlignmentStates, decoding: DecodingOptions,
                   estimator: EstimatorSettings) -> Tensor:
    """``(B, T, V)`` log p(y_t | x, y_<t) under ``decoding.latent_decoding``."""
    if decoding.latent_decoding == "soft":
        return soft_log_probs(layer, states.hidden, states.context)
    if decoding.latent_decoding == "dirichlet-mean":
        mask = states.src_padding_mask.unsqueeze(1)
        alpha = estimator.concentration(states.prior_scores, mask)
        return relaxed_log_probs(layer, states, dirichlet_mean(alpha, mask))
    B, T, S = states.prior_log_probs.shape
    queries = layer.query_proj(states.hidden).view(B * T, -1)  # N x O
    row_batch = torch.arange(B, device=queries.device).repeat_interleave(T)  # N
    prior = states.prior_log_probs.reshape(B * T, S)  # N x S
    candidates = None
    if decoding.latent_decoding == "kmax" and decoding.kmax < S:
        top_scores, candidates = prior.topk(decoding.kmax, dim=-1)  # N x K
        prior = torch.log_softmax(top_scores, dim=-1)  # renormalised over the K kept
    log_probs = layer.marginal_log_probs(queries, states.output_sources, row_batch, prior, candidates)
    return log_probs.view(B, T, -1)


def penalise_eos(log_probs: Tensor, src_padding_mask: Tensor, eos: int, beta: float, num_tokens: int) -> Tensor:
    """Subtract ``β · |src| / (n + 1)`` from EOS, n = tokens so far counting BOS
    (docs/METHOD.md eq. (30)); ``log_probs`` ``(B, 1, V)`` of one incremental step."""
    src_lengths = (~src_padding_mask).sum(dim=1)  # B
    penalty = beta * src_lengths.to(log_probs.dtype) / (num_tokens + 1)
    log_probs = log_probs.clone()
    log_probs[:, :, eos] -= penalty.unsqueeze(-1)
    return log_probs


# ---------------------------------------------------------------------------- training


def latent_outputs(layer: AlignmentOutputLayer, states: AlignmentStates, target: Tensor, pad: int,
                   spec: ModeSpec, estimator: EstimatorSettings,
                   posterior_scores: Optional[Callable[[], Tensor]] = None) -> LatentOutputs:
    """Compute what the objective of ``spec`` needs for ``target`` ``(B, T)``.

    ``posterior_scores()`` returns the inference network's unnormalised scores ``s_tj``,
    ``(B, T, S)`` (variational modes only). It is called after the enumeration: autograd runs
    the backward pass of later operations first, so q's activations are freed before the
    enumeration's chunks are recomputed, which keeps the peak memory of training lower
    (measured: 2.04 instead of 2.32 GiB for var-enum at the paper's sizes, 4,096 tokens).
    """
    src_padding_mask = states.src_padding_mask  # B x S
    B, T, S = states.prior_log_probs.shape

    # only real target tokens are scored: N rows of the flattened B x T grid
    row_batch, row_step = target.ne(pad).nonzero(as_tuple=True)  # N, N
    queries = layer.query_proj(states.hidden[row_batch, row_step])  # N x O
    row_target = target[row_batch, row_step]  # N

    def to_grid(rows: Tensor) -> Tensor:
        """``(N, ...)`` per-token values -> ``(B, T, ...)``, 0 at target pads."""
        grid = rows.new_zeros((B, T) + rows.shape[1:])
        grid[row_batch, row_step] = rows
        return grid

    def target_log_probs(context: Tensor) -> Tensor:
        """log p(y_t | h_t, context) for ``(B, T, O)`` projected contexts, ``(B, T)``."""
        log_probs = layer.soft_log_probs(queries, context[row_batch, row_step])  # N x V
        return to_grid(log_probs.gather(-1, row_target[:, None]).squeeze(-1))

    out = LatentOutputs(prior_log_probs=states.prior_log_probs)
    if spec.enumerates:  # ℓ_t(j) for every source position
        rows = layer.candidate_token_log_probs(queries, states.output_sources, row_batch, row_target)
        out.token_log_probs = to_grid(rows).masked_fill(src_padding_mask.unsqueeze(1), 0.0)
    if spec.soft_output:  # b_t: the objective (soft), or a baseline (sampling modes), detached unless
        # --soft-loss-weight trains it too
        trained = spec.sample_from is None or estimator.soft_loss_weight > 0
        with torch.set_grad_enabled(torch.is_grad_enabled() and trained):
            out.soft_token_log_probs = target_log_probs(layer.source_proj(states.context))

    scores = None
    if spec.variational:
        scores = posterior_scores()
        out.posterior_log_probs = masked_log_softmax(scores, expand_padding_mask(src_padding_mask, T))  # B x T x S

    if spec.sample_from is not None:  # ℓ_t at K sampled positions
        sampled = out.prior_log_probs if spec.sample_from == "prior" else out.posterior_log_probs
        out.sample_indices = sample_categorical(sampled, estimator.num_samples(spec))  # B x T x K
        rows = layer.candidate_token_log_probs(
            queries, states.output_sources, row_batch, row_target,
            candidates=out.sample_indices[row_batch, row_step])  # N x K
        out.sample_token_log_probs = to_grid(rows)

    if spec.relaxation == "gumbel":
        weights = gumbel_softmax(out.posterior_log_probs, estimator.gumbel_temperature)
        out.relaxed_token_log_probs = target_log_probs(layer.mix_sources(weights, states.output_sources))
    elif spec.relaxation == "dirichlet":
        mask = src_padding_mask.unsqueeze(1)  # B x 1 x S
        out.src_padding_mask = mask
        out.prior_alpha = estimator.concentration(states.prior_scores, mask)
        out.posterior_alpha = estimator.concentration(scores, mask)
        if spec.fixed_noise:  # validation: the same noise for a sentence in any batch
            weights = dirichlet_rsample_per_sentence(out.posterior_alpha, mask, target.ne(pad), target)
        else:
            weights = dirichlet_rsample(out.posterior_alpha, mask)
        out.relaxed_token_log_probs = target_log_probs(layer.mix_sources(weights, states.output_sources))
    return out
