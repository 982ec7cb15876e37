"""The decoder: input-fed LSTM, the prior over source positions, and the output distribution.

Decoder step t (docs/METHOD.md §3, eqs. (1)-(5)):

    1. input        [emb(y_{t-1}); c_{t-1}]           c_0 = 0 (input feed: prior expectation)
    2. LSTM         h_t = LSTM(input, state_{t-1})    2 layers, zero initial state
    3. prior        p_t(j) = softmax_j(v · tanh(W_c x̃_j + W_q h_t))   over real positions
    4. input feed   c_t = Σ_j p_t(j) x̃_j

The output distribution over the vocabulary is computed after the loop, for all steps at
once, in the way the decoding option asks (docs/METHOD.md §6, eqs. (27)-(28)):

    exact   log p(y_t | …) = logsumexp_j (log p_t(j) + log p(y_t | …, z_t = j))
    kmax    the same over the K most probable positions of the prior, renormalised
    soft    log p(y_t | [h_t; c_t]), ordinary soft attention

Dimensions: B batch, T target steps, S source length, E embedding size, D source state
size, H decoder hidden size, A attention size, O output size, V vocabulary.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor, nn

from .masking import masked_log_softmax
from .modes import LATENT_DECODINGS
from .output_layer import AlignmentOutputLayer
from .sampling import dirichlet_mean
from .scoring import MLPAlignmentScorer

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]


@dataclass
class DecodingOptions:
    """How :meth:`VarAttnDecoder.forward` turns decoder states into word distributions."""

    latent_decoding: str = "exact"  # one of LATENT_DECODINGS
    kmax: int = 5  # candidates kept by "kmax"
    eos_penalty: float = 0.0  # β: subtract β·|src|/(n+1) from EOS during incremental decoding

    def __post_init__(self):
        if self.latent_decoding not in LATENT_DECODINGS:
            raise ValueError(
                f"--latent-decoding {self.latent_decoding!r} is not one of {', '.join(LATENT_DECODINGS)}"
            )
        if self.kmax < 1:
            raise ValueError(f"--kmax must be a positive number of source positions, got {self.kmax}")
        if self.eos_penalty < 0:
            raise ValueError(f"--eos-penalty must be >= 0, got {self.eos_penalty}")


@dataclass
class DecoderStates:
    """Per-step quantities of the generative model for a batch of target prefixes."""

    hidden: Tensor  # B x T x H    h_t, the top LSTM output
    prior_scores: Tensor  # B x T x S    e_tj, unnormalised (-inf at source pads)
    prior_log_probs: Tensor  # B x T x S    log p_t(j), -inf at source pads
    context: Tensor  # B x T x D    c_t = Σ_j p_t(j) x̃_j
    output_sources: Optional[Tensor]  # B x S x O    W_ox x̃_j, the source half of the output layer
    #                                   (None in incremental soft decoding, which does not read it)


class VarAttnDecoder(FairseqIncrementalDecoder):
    def __init__(self, dictionary, embed_tokens: nn.Embedding, source_dim: int, hidden_size: int,
                 num_layers: int, attention_dim: int, output_dim: int, dropout: float,
                 chunk_bytes: int, decoding: DecodingOptions):
        super().__init__(dictionary)
        self.embed_tokens = embed_tokens
        self.dropout = dropout
        self.source_dim = source_dim
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            nn.LSTMCell(embed_tokens.embedding_dim + source_dim if i == 0 else hidden_size, hidden_size)
            for i in range(num_layers)
        )
        self.prior_scorer = MLPAlignmentScorer(hidden_size, source_dim, attention_dim)
        self.alignment_output = AlignmentOutputLayer(
            hidden_size, source_dim, output_dim, len(dictionary), dropout, chunk_bytes
        )
        self.decoding = decoding
        # scores -> Dirichlet concentrations, set for var-relaxed models ("dirichlet-mean")
        self.prior_concentration: Optional[Callable[[Tensor], Tensor]] = None

    # ------------------------------------------------------------------ recurrence

    def _initial_state(self, encoder_out, batch_size: int, output_sources: bool) -> Dict[str, Optional[Tensor]]:
        src_states = encoder_out["encoder_out"][0]  # B x S x D
        zeros = src_states.new_zeros(batch_size, len(self.layers), self.hidden_size)
        return {
            "hidden": zeros,  # B x L x H
            "cell": zeros,  # B x L x H
            "input_feed": src_states.new_zeros(batch_size, self.source_dim),  # B x D
            # step-independent projections of the source, computed once per sentence
            "prior_keys": self.prior_scorer.project_keys(src_states),  # B x S x A
            "output_sources": self.alignment_output.source_proj(src_states) if output_sources else None,  # B x S x O
        }

    def extract_features(self, prev_output_tokens: Tensor, encoder_out,
                         incremental_state: Optional[IncrementalState] = None) -> DecoderStates:
        """Run the recurrence (steps 1-4 above) over ``prev_output_tokens`` ``(B, T)``.

        With ``incremental_state`` only the last token is new; the recurrent state is read
        from and written back to the cache.
        """
        src_states = encoder_out["encoder_out"][0]  # B x S x D
        src_padding_mask = encoder_out["encoder_padding_mask"][0]  # B x S
        cached = self.get_incremental_state(incremental_state, "state") if incremental_state is not None else None
        if incremental_state is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
        B, T = prev_output_tokens.shape
        if cached is not None:
            state = cached
        else:  # soft decoding reads the context, not W_ox x̃: beam search need not carry it
            state = self._initial_state(encoder_out, B, output_sources=incremental_state is None
                                        or self.decoding.latent_decoding != "soft")

        embeddings = F.dropout(self.embed_tokens(prev_output_tokens), p=self.dropout, training=self.training)
        hidden = list(state["hidden"].unbind(1))
        cell = list(state["cell"].unbind(1))
        input_feed = state["input_feed"]
        tops, all_scores, priors, contexts = [], [], [], []
        for t in range(T):
            # 1. input: [emb(y_{t-1}); c_{t-1}]
            x = torch.cat([embeddings[:, t], input_feed], dim=-1)
            # 2. LSTM layers, dropout between them
            for i, layer in enumerate(self.layers):
                hidden[i], cell[i] = layer(x, (hidden[i], cell[i]))
                x = hidden[i]
                if i + 1 < len(self.layers):
                    x = F.dropout(x, p=self.dropout, training=self.training)
            # 3. prior over real source positions
            scores = self.prior_scorer(x, state["prior_keys"]).masked_fill(src_padding_mask, float("-inf"))
            prior = masked_log_softmax(scores, src_padding_mask)  # B x S
            # 4. input feed: the prior's expected source state
            input_feed = torch.bmm(prior.exp().unsqueeze(1).to(src_states.dtype), src_states).squeeze(1)
            tops.append(x)
            all_scores.append(scores)
            priors.append(prior)
            contexts.append(input_feed)

        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "state", {
                "hidden": torch.stack(hidden, 1),
                "cell": torch.stack(cell, 1),
                "input_feed": input_feed,
                "prior_keys": state["prior_keys"],
                "output_sources": state["output_sources"],
            })
        return DecoderStates(
            hidden=torch.stack(tops, 1),
            prior_scores=torch.stack(all_scores, 1),
            prior_log_probs=torch.stack(priors, 1),
            context=torch.stack(contexts, 1),
            output_sources=state["output_sources"],
        )

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        cached = self.get_incremental_state(incremental_state, "state")
        if cached is None:
            return
        reordered = {key: None if value is None else value.index_select(0, new_order)
                     for key, value in cached.items()}
        self.set_incremental_state(incremental_state, "state", reordered)

    # ------------------------------------------------------------------ output

    def soft_log_probs(self, hidden: Tensor, context: Tensor) -> Tensor:
        """``(..., H)`` h_t and ``(..., D)`` c_t -> ``(..., V)`` soft-output log-probabilities."""
        layer = self.alignment_output
        return layer.soft_log_probs(layer.query_proj(hidden), layer.source_proj(context))

    def relaxed_log_probs(self, states: DecoderStates, weights: Tensor) -> Tensor:
        """``(B, T, V)`` output for a point ``weights`` ``(B, T, S)`` of the simplex: the output
        layer reads ``Σ_j weights_j x̃_j``."""
        layer = self.alignment_output
        context = layer.mix_sources(weights, states.output_sources)  # B x T x O
        return layer.soft_log_probs(layer.query_proj(states.hidden), context)

    def dirichlet_mean_weights(self, states: DecoderStates) -> Tensor:
        """Mean of the Dirichlet prior of a var-relaxed model, ``(B, T, S)``."""
        alpha = self.prior_concentration(states.prior_scores)
        return dirichlet_mean(alpha, torch.isinf(states.prior_scores))

    def word_log_probs(self, states: DecoderStates) -> Tensor:
        """``(B, T, V)`` log p(y_t | x, y_<t) under ``self.decoding.latent_decoding``."""
        if self.decoding.latent_decoding == "soft":
            return self.soft_log_probs(states.hidden, states.context)
        if self.decoding.latent_decoding == "dirichlet-mean":
            return self.relaxed_log_probs(states, self.dirichlet_mean_weights(states))
        B, T, S = states.prior_log_probs.shape
        queries = self.alignment_output.query_proj(states.hidden).view(B * T, -1)  # N x O
        row_batch = torch.arange(B, device=queries.device).repeat_interleave(T)  # N
        prior = states.prior_log_probs.reshape(B * T, S)  # N x S
        candidates = None
        if self.decoding.latent_decoding == "kmax" and self.decoding.kmax < S:
            top_scores, candidates = prior.topk(self.decoding.kmax, dim=-1)  # N x K
            prior = torch.log_softmax(top_scores, dim=-1)  # renormalised over the K kept
        log_probs = self.alignment_output.marginal_log_probs(
            queries, states.output_sources, row_batch, prior, candidates
        )
        return log_probs.view(B, T, -1)

    def forward(self, prev_output_tokens: Tensor, encoder_out=None,
                incremental_state: Optional[IncrementalState] = None, **kwargs):
        """Returns ``((B, T, V) log-probabilities, {"attn": [(B, T, S) prior]})``."""
        states = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        log_probs = self.word_log_probs(states)
        if incremental_state is not None and self.decoding.eos_penalty > 0:
            log_probs = self._penalise_eos(log_probs, encoder_out, prev_output_tokens.size(1))
        return log_probs, {"attn": [states.prior_log_probs.exp()]}

    def _penalise_eos(self, log_probs: Tensor, encoder_out, num_tokens: int) -> Tensor:
        """Subtract ``β · |src| / (n + 1)`` from EOS, n = tokens so far counting BOS
        (docs/METHOD.md eq. (30))."""
        src_lengths = (~encoder_out["encoder_padding_mask"][0]).sum(dim=1)  # B
        penalty = self.decoding.eos_penalty * src_lengths.to(log_probs.dtype) / (num_tokens + 1)
        log_probs = log_probs.clone()
        log_probs[:, :, self.dictionary.eos()] -= penalty.unsqueeze(-1)
        return log_probs

    def max_positions(self):
        return int(1e5)
