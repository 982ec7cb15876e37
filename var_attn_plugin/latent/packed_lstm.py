"""A bidirectional LSTM over padded sequences that keeps the caller's padding layout.

fairseq batches sources left-padded and targets right-padded. This module packs each
sequence by its true length whatever side the pads are on, runs the LSTM without pads
leaking into either direction, and returns states at the same positions as the input, so
position ``j`` of the output is position ``j`` of the tokens the caller holds (which keeps
attention matrices aligned with ``src_tokens`` for ``--print-alignment``).

Dimensions: B batch, L sequence length, E input size, H hidden size per direction.
"""

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PackedBiLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.output_size = 2 * hidden_size
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        """``(B, L, E)`` inputs, ``(B, L)`` bool mask (True at pads) -> ``(B, L, 2H)``.

        Outputs at pad positions are 0. Every sequence needs at least one real position.
        """
        B, L, _ = inputs.shape
        lengths = (~padding_mask).sum(dim=1)  # B
        # 1. move the real positions of every row to the front, keeping their order
        order = torch.argsort(padding_mask.to(torch.int8), dim=1, stable=True)  # B x L
        compact = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        # 2. run the LSTM on the packed (pad-free) sequences
        packed = pack_padded_sequence(compact, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=L)  # B x L x 2H
        # 3. put every state back where its token came from
        restored = torch.zeros_like(states).scatter(
            1, order.unsqueeze(-1).expand_as(states), states
        )
        return restored.masked_fill(padding_mask.unsqueeze(-1), 0.0)
