"""The LSTM decoder: input-fed LSTM and the prior over source positions.

Decoder step t (docs/METHOD.md §3, eqs. (1)-(5)):

    1. input        [emb(y_{t-1}); c_{t-1}]           c_0 = 0 (input feed: prior expectation)
    2. LSTM         h_t = LSTM(input, state_{t-1})    2 layers, zero initial state
    3. prior        p_t(j) = softmax_j(v · tanh(W_c x̃_j + W_q h_t))   over real positions
    4. input feed   c_t = Σ_j p_t(j) x̃_j

The states go to the shared core as :class:`AlignmentStates`; the output distribution over
the vocabulary is computed from them after the loop, for all steps at once, in the way the
decoding option asks (var_attn_plugin/latent/outputs.py, docs/METHOD.md §6).

Dimensions: B batch, T target steps, S source length, E embedding size, D source state
size, H decoder hidden size, A attention size, O output size, V vocabulary.
"""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor, nn

from ..latent.distributions import masked_log_softmax
from ..latent.output_layer import AlignmentOutputLayer
from ..latent.outputs import AlignmentStates
from ..latent.scoring import MLPAlignmentScorer
from ..model import IncrementalState, LatentDecoderMixin


class VarAttnDecoder(LatentDecoderMixin, FairseqIncrementalDecoder):
    def __init__(self, dictionary, embed_tokens: nn.Embedding, source_dim: int, hidden_size: int,
                 num_layers: int, attention_dim: int, output_dim: int, dropout: float,
                 chunk_bytes: int):
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
        # self.decoding and self.estimator: set by the model (var_attn_plugin.model)

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
                         incremental_state: Optional[IncrementalState] = None) -> AlignmentStates:
        """Run the recurrence (steps 1-4 above) over ``prev_output_tokens`` ``(B, T)``.

        With ``incremental_state`` only the last token is new; the recurrent state is read
        from and written back to the cache.
        """
        src_states = encoder_out["encoder_out"][0]  # B x S x D
        src_padding_mask = encoder_out["alignment_padding_mask"][0]  # B x S, True where z_t may not point
        cached = self.get_incremental_state(incremental_state, "state") if incremental_state is not None else None
        if incremental_state is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
        B, T = prev_output_tokens.shape
        if cached is not None:
            state = cached
        else:  # soft decoding reads the context, not W_ox x̃: beam search need not carry it
            state = self._initial_state(encoder_out, B, output_sources=incremental_state is None
                                        or self.decoding.latent_decoding != "soft")

        embeddings = self.embed_targets(prev_output_tokens)
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
        return AlignmentStates(
            hidden=torch.stack(tops, 1),
            prior_scores=torch.stack(all_scores, 1),
            prior_log_probs=torch.stack(priors, 1),
            context=torch.stack(contexts, 1),
            output_sources=state["output_sources"],
            src_padding_mask=src_padding_mask,
        )

    def embed_targets(self, tokens: Tensor) -> Tensor:
        return F.dropout(self.embed_tokens(tokens), p=self.dropout, training=self.training)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        cached = self.get_incremental_state(incremental_state, "state")
        if cached is None:
            return
        reordered = {key: None if value is None else value.index_select(0, new_order)
                     for key, value in cached.items()}
        self.set_incremental_state(incremental_state, "state", reordered)

    def max_positions(self):
        return int(1e5)
