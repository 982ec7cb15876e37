"""The Transformer's decoder designs (--soft-cross-attention, docs/METHOD.md §10): the same
brute-force oracles as tests/test_model.py (likelihood and ELBO against every alignment
sequence, incremental decoding against teacher forcing) for each design, and what each design
promises: which layers read the source, and that without soft cross-attention the decoder state
does not depend on the source at all. Also: the inference network reads what the encoder read."""


import pytest
import torch
from helpers import random_batch
from test_model import (
    DECODINGS,
    SRC_LENGTHS,
    TGT_LENGTHS,
    assert_enumeration_oracle,
    decode_full,
    decode_incremental,
    encode,
    eval_model,
    real_steps,
)

from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.transformer.model import SOFT_CROSS_ATTENTION

DESIGNS = list(SOFT_CROSS_ATTENTION)


def model_of(design: str, mode: str = "var-enum", seed: int = 0):
    return eval_model(mode, seed=seed, arch="transformer", soft_cross_attention=design)


@pytest.mark.parametrize("design", DESIGNS)
def test_the_design_decides_which_decoder_layers_read_the_source(design):
    model = model_of(design)
    reads = [layer.encoder_attn is not None for layer in model.decoder.layers]
    assert reads == {"all": [True, True], "below-top": [True, False], "none": [False, False]}[design]


def test_without_soft_cross_attention_the_decoder_state_ignores_the_source():
    """With --soft-cross-attention none, h_t is a function of y_<t alone: the latent alignment
    is the only way the source reaches the output (as the LSTM's prior, less its input feed)."""
    model = model_of("none")
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=2)
    other = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=7)  # other source words, same lengths
    other["net_input"]["prev_output_tokens"] = batch["net_input"]["prev_output_tokens"]
    prev = batch["net_input"]["prev_output_tokens"]
    hidden = model.decoder.extract_features(prev, encode(model, batch)).hidden
    hidden_other = model.decoder.extract_features(prev, encode(model, other)).hidden
    torch.testing.assert_close(hidden, hidden_other, rtol=0, atol=0)
    # ... while with soft cross-attention it does depend on it
    model = model_of("below-top")
    assert not torch.equal(model.decoder.extract_features(prev, encode(model, batch)).hidden,
                           model.decoder.extract_features(prev, encode(model, other)).hidden)


@pytest.mark.parametrize("design", DESIGNS)
def test_likelihood_and_elbo_equal_enumeration_of_all_alignment_sequences(design):
    model = model_of(design)
    batch = random_batch(model, [4, 3, 2], [3, 5, 4], seed=1)
    out = model(**batch["net_input"], target=batch["target"])
    per_token_elbo = -ATTENTION_MODES["var-enum"].objective(out).objective  # B x T
    assert_enumeration_oracle(model, batch, out, per_token_elbo)


@pytest.mark.parametrize("options", DECODINGS[:4], ids=lambda o: f"{o.latent_decoding}{o.kmax}")
@pytest.mark.parametrize("design", DESIGNS)
def test_incremental_decoding_equals_teacher_forced_decoding(design, options):
    model = model_of(design)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    full, _ = decode_full(model, batch, options)
    stepwise, _ = decode_incremental(model, encode(model, batch), batch["net_input"]["prev_output_tokens"])
    real = real_steps(model, batch)
    torch.testing.assert_close(stepwise[real], full[real])


def test_the_inference_network_reads_the_input_of_the_encoders_first_layer():
    """One source representation for q in both architectures: the tensor the encoder read (for the
    Transformer: scaled embeddings plus positions, after dropout; the same dropout mask)."""
    model = model_of("all")
    model.train()  # dropout on: the same mask must reach both
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=3)
    seen = {}
    first = model.encoder.layers[0]
    handle = first.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    try:
        torch.manual_seed(5)
        out = encode(model, batch)
    finally:
        handle.remove()
    torch.testing.assert_close(out["src_embeddings"][0], seen["x"].transpose(0, 1), rtol=0, atol=0)
