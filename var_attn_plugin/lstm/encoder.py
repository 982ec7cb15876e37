"""The source encoder: embeddings and a bidirectional LSTM (docs/METHOD.md §3).

Dimensions: B batch, S source length, E embedding size, D = 2 · hidden source state size.
"""

from typing import Dict, List

import torch.nn.functional as F
from fairseq.models import FairseqEncoder
from torch import Tensor, nn

from ..latent.distributions import alignment_padding_mask
from ..latent.packed_lstm import PackedBiLSTM

EncoderOut = Dict[str, List[Tensor]]


class VarAttnEncoder(FairseqEncoder):
    """Embeds the source and runs a 2-layer bidirectional LSTM over it.

    The output keeps the caller's padding layout (fairseq left-pads sources): position j of
    ``encoder_out`` is position j of ``src_tokens``.
    """

    def __init__(self, dictionary, embed_tokens: nn.Embedding, hidden_size: int, num_layers: int,
                 dropout_in: float, dropout_between: float, exclude_eos: bool = False):
        super().__init__(dictionary)
        self.exclude_eos = exclude_eos
        self.embed_tokens = embed_tokens
        self.dropout_in = dropout_in
        self.rnn = PackedBiLSTM(embed_tokens.embedding_dim, hidden_size, num_layers, dropout_between)
        self.output_dim = self.rnn.output_size

    def forward(self, src_tokens: Tensor, src_lengths: Tensor = None, **kwargs) -> EncoderOut:
        """``(B, S)`` tokens -> dict of lists (fairseq's convention) with

        - ``encoder_out``: ``(B, S, D)`` source states x̃ (0 at pads, no dropout on them),
        - ``encoder_padding_mask``: ``(B, S)`` True at pads,
        - ``alignment_padding_mask``: ``(B, S)`` True where ``z_t`` may not point (pads, and the
          EOS when ``exclude_eos``),
        - ``src_embeddings``: ``(B, S, E)`` embeddings after dropout (for the inference network).
        """
        src_padding_mask = src_tokens.eq(self.dictionary.pad())  # B x S
        embeddings = F.dropout(self.embed_tokens(src_tokens), p=self.dropout_in, training=self.training)
        states = self.rnn(embeddings, src_padding_mask)  # B x S x D
        return {
            "encoder_out": [states],
            "encoder_padding_mask": [src_padding_mask],
            "alignment_padding_mask": [alignment_padding_mask(
                src_tokens, self.dictionary.pad(), self.dictionary.eos(), self.exclude_eos)],
            "src_embeddings": [embeddings],
        }

    def reorder_encoder_out(self, encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
        """Beam search's reordering (every step). ``src_embeddings`` are dropped: only the
        inference network reads them, in training and validation, never while decoding."""
        return {key: [] if key == "src_embeddings" else [t.index_select(0, new_order) for t in value]
                for key, value in encoder_out.items()}

    def max_positions(self):
        return int(1e5)
