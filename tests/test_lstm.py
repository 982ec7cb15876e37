"""PackedBiLSTM: no pad leakage in either direction, whatever side the pads are on.

Oracle: ``nn.LSTM`` run on each sequence alone (no pads at all). The batched module must
give the same states at the same positions for a left-padded batch and for a right-padded
batch, zeros at pads, and no gradient may flow into the inputs at pad positions.

Dimensions: B batch, L padded length, E input size, H hidden size per direction.
"""

from typing import List

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_attn_plugin.latent.packed_lstm import PackedBiLSTM

E, H, LAYERS = 3, 4, 2


def build_lstm(seed: int) -> PackedBiLSTM:
    torch.manual_seed(seed)
    return PackedBiLSTM(E, H, LAYERS, dropout=0.0).double().eval()


def padded(sequences: List[torch.Tensor], left: bool, filler: torch.Tensor):
    """``(B, L, E)`` batch whose pads hold ``filler`` values (not zeros) and its pad mask."""
    L = max(len(s) for s in sequences)
    inputs = filler[: len(sequences), :L].clone()
    mask = torch.ones(len(sequences), L, dtype=torch.bool)
    for b, seq in enumerate(sequences):
        span = slice(L - len(seq), L) if left else slice(0, len(seq))
        inputs[b, span] = seq
        mask[b, span] = False
    return inputs, mask


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_left_padded_equals_right_padded_equals_alone(lengths, seed):
    lstm = build_lstm(seed)
    g = torch.Generator().manual_seed(seed)
    sequences = [torch.randn(n, E, generator=g, dtype=torch.float64) for n in lengths]
    filler = 100 * torch.randn(len(lengths), max(lengths), E, generator=g, dtype=torch.float64)
    L = max(lengths)

    left_inputs, left_mask = padded(sequences, left=True, filler=filler)
    right_inputs, right_mask = padded(sequences, left=False, filler=filler)
    left = lstm(left_inputs, left_mask)
    right = lstm(right_inputs, right_mask)
    assert left.shape == (len(lengths), L, 2 * H)
    assert torch.all(left[left_mask] == 0) and torch.all(right[right_mask] == 0)
    for b, seq in enumerate(sequences):
        alone, _ = lstm.lstm(seq.unsqueeze(0))  # the oracle: no pads at all
        n = len(seq)
        torch.testing.assert_close(left[b, L - n:], alone[0])
        torch.testing.assert_close(right[b, :n], alone[0])


def test_no_gradient_reaches_pad_inputs():
    lstm = build_lstm(3)
    g = torch.Generator().manual_seed(3)
    lengths = [2, 5, 3]
    sequences = [torch.randn(n, E, generator=g, dtype=torch.float64) for n in lengths]
    filler = torch.randn(3, 5, E, generator=g, dtype=torch.float64)
    for left in (True, False):
        inputs, mask = padded(sequences, left=left, filler=filler)
        inputs.requires_grad_(True)
        outputs = lstm(inputs, mask)
        (outputs * torch.randn(outputs.shape, generator=g, dtype=torch.float64)).sum().backward()
        assert torch.all(inputs.grad[mask] == 0)
        assert torch.all(inputs.grad[~mask].abs().sum(-1) > 0)


def test_both_directions_see_the_whole_sequence():
    """Changing the first real input changes the last position's state and vice versa
    (the backward direction runs from the last real position, not from a pad)."""
    lstm = build_lstm(5)
    g = torch.Generator().manual_seed(5)
    seq = torch.randn(4, E, generator=g, dtype=torch.float64)
    filler = torch.randn(2, 6, E, generator=g, dtype=torch.float64)
    inputs, mask = padded([seq, torch.randn(6, E, generator=g, dtype=torch.float64)], left=True, filler=filler)
    base = lstm(inputs, mask)
    first, last = 2, 5  # real positions of row 0 are 2..5
    for changed, observed, half in ((first, last, slice(0, H)), (last, first, slice(H, 2 * H))):
        perturbed = inputs.clone()
        perturbed[0, changed] += 1.0
        out = lstm(perturbed, mask)
        assert not torch.allclose(out[0, observed, half], base[0, observed, half])
        torch.testing.assert_close(out[1], base[1])  # other rows are untouched
