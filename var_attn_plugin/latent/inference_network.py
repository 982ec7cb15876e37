"""The inference network q(z_t | x, y) (docs/METHOD.md §4, eqs. (11)-(12)); used in training and
validation, never in decoding. Every architecture uses this one: it reads only the model's
embeddings of the source and the target.

It reads the generative model's embedded source and target (its only shared parameters),
runs its own bidirectional LSTMs over both, and scores every (target step, source position)
pair bilinearly. Position t of the target LSTM reads the target sequence ``y_1 … y_T`` (the
words being predicted, ending in EOS), so its state ``g_t`` belongs to the decoder step that
predicts ``y_t``.

Dimensions: B batch, S source length, T target length, E embedding size, D = 2 · hidden.
"""

from torch import Tensor, nn

from .packed_lstm import PackedBiLSTM
from .scoring import BilinearAlignmentScorer


class InferenceNetwork(nn.Module):
    def __init__(self, src_embed_dim: int, tgt_embed_dim: int, hidden_size: int, num_layers: int,
                 dropout_between: float):
        super().__init__()
        self.source_rnn = PackedBiLSTM(src_embed_dim, hidden_size, num_layers, dropout_between)
        self.target_rnn = PackedBiLSTM(tgt_embed_dim, hidden_size, num_layers, dropout_between)
        self.scorer = BilinearAlignmentScorer(self.target_rnn.output_size, self.source_rnn.output_size)

    def forward(self, src_embeddings: Tensor, src_padding_mask: Tensor,
                tgt_embeddings: Tensor, tgt_padding_mask: Tensor) -> Tensor:
        """Unnormalised posterior scores ``s_tj`` (eq. (12)); the shared output code
        (latent/outputs.py) normalises them over the real source positions.

        Args:
            src_embeddings: ``(B, S, E)`` embedded source (after dropout).
            src_padding_mask: ``(B, S)`` True at source pads.
            tgt_embeddings: ``(B, T, E)`` embedded target ``y_1 … y_T`` (after dropout).
            tgt_padding_mask: ``(B, T)`` True at target pads.

        Returns:
            ``(B, T, S)`` scores (finite everywhere; pads are masked by the caller).
        """
        f = self.source_rnn(src_embeddings, src_padding_mask)  # B x S x D
        g = self.target_rnn(tgt_embeddings, tgt_padding_mask)  # B x T x D
        return self.scorer(g, f)  # B x T x S
