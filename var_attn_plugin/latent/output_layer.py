"""The output layer for one alignment, and its enumeration in memory-bounded chunks.

For target step t and candidate alignment j (docs/METHOD.md §3, eqs. (6)-(8)):

    o_tj = tanh(W_o [h_t; x̃_j] + b_o)                     (then dropout)
    log p(y | x, y_<t, z_t = j) = log softmax(W_g o_tj + b_g)

``W_o [h; x̃] = W_oh h + W_ox x̃`` is split so that the source half is projected once per
sentence. The soft output is the same layers applied to the context ``c_t``, and since
``W_ox`` is linear, ``W_ox c_t = Σ_j p_t(j) W_ox x̃_j``.

Enumerating all candidates materialises ``N · K · V`` logits (N target tokens, K candidates,
V vocabulary). They are computed in chunks of rows whose logits fit ``chunk_bytes``; when
gradients are needed and there is more than one chunk, each chunk is recomputed in the
backward pass (activation checkpointing), so peak memory stays bounded by the budget
whatever the batch size. The result is the same as the unchunked computation.

Dimensions: N target tokens (flattened B·T rows), K candidates, O output size, V vocabulary.
"""

from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from .distributions import at_least_float32
from .scoring import Projection, tanh_of_sum


class TargetLogSoftmax(torch.autograd.Function):
    """``log softmax(hidden W^T + b)[target]`` for each row, with a fused backward.

    Autograd would keep the ``(M, V)`` logits for logsumexp's backward and fill a second
    ``(M, V)`` tensor with zeros for gather's. Here the backward turns the saved logits into
    the gradient in place, ``∂ℓ/∂logits = onehot(target) - softmax(logits)``, and nothing else
    of that size is allocated. Not twice differentiable; one backward per forward.

    Mixed precision: the matrix products run in the autocast dtype when autocast is on for
    the inputs' device (``--amp``; both operands cast, as autocast casts ``addmm``), else in
    the inputs' own dtype; the logits, their log-normaliser and the gradient with respect to
    the logits are float32 (or float64); each gradient is returned in its input's dtype.

    Shapes: hidden ``(M, O)``, weight ``(V, O)``, bias ``(V,)``, target ``(M,)`` -> ``(M,)``.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor, target: Tensor) -> Tensor:
        device_type = hidden.device.type
        ctx.input_dtypes = hidden.dtype, weight.dtype, bias.dtype
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            hidden, weight, bias = hidden.to(dtype), weight.to(dtype), bias.to(dtype)
        with torch.autocast(device_type, enabled=False):
            logits = at_least_float32(torch.addmm(bias, hidden, weight.t()))  # M x V
            log_normaliser = torch.logsumexp(logits, dim=-1)  # M
            ctx.save_for_backward(hidden, weight, target, logits, log_normaliser)
            return logits.gather(1, target.unsqueeze(1)).squeeze(1) - log_normaliser

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        hidden, weight, target, logits, log_normaliser = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.input_dtypes
        with torch.autocast(hidden.device.type, enabled=False):
            g = grad.to(logits.dtype).unsqueeze(1)  # M x 1
            grad_logits = logits.sub_(log_normaliser.unsqueeze(1)).exp_().mul_(-g)  # -g · softmax
            grad_logits.scatter_add_(1, target.unsqueeze(1), g)  # + g at the target
            grad_bias = grad_logits.sum(0).to(bias_dtype) if ctx.needs_input_grad[2] else None
            grad_logits = grad_logits.to(hidden.dtype)
            grad_hidden = (grad_logits @ weight).to(hidden_dtype) if ctx.needs_input_grad[0] else None
            grad_weight = (grad_logits.t() @ hidden).to(weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, grad_bias, None


class AlignmentOutputLayer(nn.Module):
    def __init__(
        self,
        query_dim: int,
        source_dim: int,
        output_dim: int,
        vocab_size: int,
        dropout: float,
        chunk_bytes: int,
    ):
        super().__init__()
        self.query_proj = nn.Linear(query_dim, output_dim)  # W_oh, b_o
        self.source_proj = Projection(source_dim, output_dim)  # W_ox
        self.generator = nn.Linear(output_dim, vocab_size)  # W_g, b_g
        self.dropout = dropout
        self.chunk_bytes = chunk_bytes

    def hidden(self, projected_queries: Tensor, projected_sources: Tensor) -> Tensor:
        """``o = dropout(tanh(W_oh h + b_o + W_ox x̃))``, broadcasting the two inputs."""
        hidden = tanh_of_sum(projected_queries, projected_sources)
        return F.dropout(hidden, p=self.dropout, training=self.training)

    def logits(self, projected_queries: Tensor, projected_sources: Tensor) -> Tensor:
        """``W_g o + b_g``."""
        return at_least_float32(self.generator(self.hidden(projected_queries, projected_sources)))

    @staticmethod
    def mix_sources(weights: Tensor, projected_sources: Tensor) -> Tensor:
        """``W_ox Σ_j w_tj x̃_j = Σ_j w_tj W_ox x̃_j`` (``W_ox`` is linear): ``(B, T, S)`` points of
        the simplex and ``(B, S, O)`` projected sources -> ``(B, T, O)`` projected contexts."""
        return torch.bmm(weights.to(projected_sources.dtype), projected_sources)

    def soft_log_probs(self, projected_queries: Tensor, projected_context: Tensor) -> Tensor:
        """``(..., O)`` projected h, projected context -> ``(..., V)`` log-probabilities."""
        return torch.log_softmax(self.logits(projected_queries, projected_context), dim=-1)

    # ------------------------------------------------------------------ enumeration

    def rows_per_chunk(self, num_candidates: int) -> int:
        logit_bytes = torch.promote_types(self.generator.weight.dtype, torch.float32).itemsize
        per_row = num_candidates * self.generator.out_features * logit_bytes
        return max(1, self.chunk_bytes // per_row)

    def _candidate_sources(self, projected_sources, row_batch, candidates, rows):
        """``(n, K, O)`` projected sources of the candidates of ``rows``."""
        sources = projected_sources[row_batch[rows]]  # n x S x O
        if candidates is None:
            return sources
        index = candidates[rows].unsqueeze(-1).expand(-1, -1, sources.size(-1))
        return sources.gather(1, index)

    def _chunked(self, fn: Callable, num_rows: int, num_candidates: int, *row_tensors) -> Tensor:
        """Apply ``fn(rows, *tensors[rows])`` chunk by chunk and concatenate along rows."""
        step = self.rows_per_chunk(num_candidates)
        recompute = torch.is_grad_enabled() and num_rows > step
        outputs: List[Tensor] = []
        for start in range(0, num_rows, step):
            rows = torch.arange(start, min(start + step, num_rows), device=row_tensors[0].device)
            if recompute:
                outputs.append(checkpoint(fn, rows, *row_tensors, use_reentrant=False))
            else:
                outputs.append(fn(rows, *row_tensors))
        return torch.cat(outputs, dim=0)

    def candidate_token_log_probs(
        self,
        projected_queries: Tensor,
        projected_sources: Tensor,
        row_batch: Tensor,
        target: Tensor,
        candidates: Optional[Tensor] = None,
    ) -> Tensor:
        """``ℓ(j) = log p(y | ..., z = j)`` of the target token for every candidate j.

        Args:
            projected_queries: ``(N, O)`` ``W_oh h + b_o`` of each target token.
            projected_sources: ``(B, S, O)`` ``W_ox x̃`` of each sentence.
            row_batch: ``(N,)`` sentence index of each row.
            target: ``(N,)`` the token to score at each row.
            candidates: ``(N, K)`` source positions to score, or None for all ``S``.

        Returns:
            ``(N, K)`` log-probabilities (``K = S`` for None).
        """

        def chunk(rows, queries, sources, tgt):
            hidden = self.hidden(
                queries[rows].unsqueeze(1),
                self._candidate_sources(sources, row_batch, candidates, rows),
            )  # n x K x O
            n, K, O = hidden.shape  # noqa: E741  (O: the output size, as in the glossary)
            targets = tgt[rows].unsqueeze(1).expand(n, K).reshape(-1)  # nK
            return TargetLogSoftmax.apply(
                hidden.reshape(n * K, O), self.generator.weight, self.generator.bias, targets
            ).view(n, K)

        K = projected_sources.size(1) if candidates is None else candidates.size(1)
        return self._chunked(chunk, row_batch.numel(), K, projected_queries, projected_sources, target)

    def marginal_log_probs(
        self,
        projected_queries: Tensor,
        projected_sources: Tensor,
        row_batch: Tensor,
        candidate_log_probs: Tensor,
        candidates: Optional[Tensor] = None,
    ) -> Tensor:
        """``log Σ_j r(j) p(y | ..., z = j)`` for every y in the vocabulary (docs/METHOD.md eqs. (27)-(28)).

        Args:
            candidate_log_probs: ``(N, K)`` log r(j) of each candidate (the prior, or the
                renormalised K-max prior); ``-inf`` for candidates to ignore.
            others: as for :meth:`candidate_token_log_probs`.

        Returns:
            ``(N, V)`` log-probabilities.
        """

        def chunk(rows, queries, sources, weights):
            hidden = self.hidden(
                queries[rows].unsqueeze(1),
                self._candidate_sources(sources, row_batch, candidates, rows),
            )  # n x K x O
            return self.mixture_log_probs(hidden, weights[rows])

        K = candidate_log_probs.size(1)
        return self._chunked(
            chunk, row_batch.numel(), K, projected_queries, projected_sources, candidate_log_probs
        )

    def mixture_log_probs(self, hidden: Tensor, log_weights: Tensor) -> Tensor:
        """``log Σ_j r(j) softmax(W_g o_j + b_g)`` over the vocabulary, for ``(n, K, O)`` hidden
        states o and ``(n, K)`` log-weights log r (``-inf``: weight 0) -> ``(n, V)``.

        The mixture is taken in probability space: one softmax over the vocabulary (in place
        on the logits when no gradient is needed) and the sum over candidates as one batched
        matrix product, instead of log-space passes over the ``n · K · V`` scores. A mixture
        below ``finfo.tiny / finfo.eps`` (about 1e-31 in float32) may have lost precision to
        subnormal numbers: those entries alone are recomputed in log space from their
        logits, so every entry equals ``logsumexp_j (log r(j) + log_softmax(logits_j))``.
        """
        logits = at_least_float32(self.generator(hidden))  # n x K x V
        if torch.is_grad_enabled():
            probs = torch.softmax(logits, dim=-1)
        else:
            probs = torch.softmax(logits, dim=-1, out=logits)  # decoding: in place
        weights = log_weights.to(probs.dtype).exp().unsqueeze(1)  # n x 1 x K
        mixture = torch.bmm(weights, probs).squeeze(1)  # n x V
        info = torch.finfo(mixture.dtype)
        floor = info.tiny / info.eps
        log_probs = mixture.clamp_min(floor).log()
        low = (mixture < floor).nonzero(as_tuple=True)
        if low[0].numel() == 0:
            return log_probs
        return log_probs.index_put(low, self._log_space_entries(hidden, log_weights, probs, *low))

    def _log_space_entries(self, hidden: Tensor, log_weights: Tensor, probs: Tensor,
                           rows: Tensor, words: Tensor) -> Tensor:
        """``logsumexp_j (log r(j) + log p(v | j))`` at the entries ``(rows[i], words[i])``.

        ``log p(v | j) = logits_jv - logits_ja + log P_ja`` with ``a = argmax_v P_jv``, whose
        probability is at least ``1 / V``, a normal number. The logits of the few entries
        needed are recomputed as dot products, in blocks that fit the chunk budget.
        """
        K, O = hidden.shape[1:]  # noqa: E741
        dtype = probs.dtype
        weight, bias = self.generator.weight.to(dtype), self.generator.bias.to(dtype)
        row_ids, rows = rows.unique(return_inverse=True)
        top_probs, top_words = probs[row_ids].max(dim=-1)  # R x K
        states = hidden[row_ids].to(dtype)  # R x K x O
        top_logits = (states * weight[top_words]).sum(-1) + bias[top_words]
        base = log_weights[row_ids].to(dtype) - top_logits + top_probs.log()  # R x K
        step = max(1, self.chunk_bytes // (K * O * dtype.itemsize))
        values = []
        for start in range(0, rows.numel(), step):
            r, v = rows[start:start + step], words[start:start + step]
            logits = torch.einsum("pko,po->pk", states[r], weight[v]) + bias[v].unsqueeze(1)
            values.append(torch.logsumexp(logits + base[r], dim=1))
        return torch.cat(values)
