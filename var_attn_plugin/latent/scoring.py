"""Alignment scorers: unnormalised scores over source positions.

Dimensions: B batch, T target steps, S source length, D source state size,
H decoder (or target-encoder) state size, A attention size.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def tanh_of_sum(a: Tensor, b: Tensor) -> Tensor:
    """``tanh(a + b)`` (broadcasting), in place on the sum: one ``(..., S, A)`` or
    ``(..., S, O)`` tensor instead of two. Autograd allows it: the sum's backward saves
    nothing, and tanh's backward reads tanh's output."""
    return (a + b).tanh_()


class Projection(nn.Module):
    """``y = W x`` without a bias.

    Unlike ``nn.Linear(bias=False)`` it registers no ``None`` bias, which fairseq's trainer
    would otherwise report as a parameter shared between all such layers.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class MLPAlignmentScorer(nn.Module):
    """The prior's scorer (docs/METHOD.md eq. (3)): ``e_tj = v · tanh(W_c x̃_j + W_q h_t)``, no biases.

    ``W_c x̃`` does not depend on the step, so :meth:`project_keys` computes it once per
    sentence and :meth:`forward` reuses it at every decoder step.
    """

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int):
        super().__init__()
        self.key_proj = Projection(key_dim, attention_dim)  # W_c
        self.query_proj = Projection(query_dim, attention_dim)  # W_q
        self.v = Projection(attention_dim, 1)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``(B, S, D)`` source states -> ``(B, S, A)`` projected keys ``W_c x̃``."""
        return self.key_proj(keys)

    def forward(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        """``(B, H)`` decoder state, ``(B, S, A)`` projected keys -> ``(B, S)`` scores."""
        hidden = tanh_of_sum(projected_keys, self.query_proj(query).unsqueeze(1))  # B x S x A
        return self.v(hidden).squeeze(-1)


class BilinearAlignmentScorer(nn.Module):
    """The posterior's scorer (docs/METHOD.md eq. (12)): ``s_tj = (U g_t) · f_j``, no bias."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.U = Projection(query_dim, key_dim)

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        """``(B, T, H)`` target states g, ``(B, S, D)`` source states f -> ``(B, T, S)``."""
        return torch.bmm(self.U(queries), keys.transpose(1, 2))
