"""Checkpoints: loadable with torch >= 2.6, and never paired with the wrong dictionaries."""

import argparse
import io
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from helpers import build_model, make_dictionary

from var_attn_plugin.model import VarAttnLSTMConfig, VarAttnModel


def model_with_words(prefix: str) -> VarAttnModel:
    def dictionary():
        d = Dictionary()
        for i in range(11):
            d.add_symbol(f"{prefix}{i}")
        d.finalize(padding_factor=1)
        return d

    cfg = VarAttnLSTMConfig(attention_mode="var-enum", encoder_embed_dim=6, encoder_hidden_size=5,
                            decoder_embed_dim=7, decoder_hidden_size=9, attention_dim=4,
                            decoder_output_dim=8, inference_hidden_size=3)
    return VarAttnModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary(),
                                                          target_dictionary=make_dictionary(13)))


def test_same_dictionaries_load():
    trained, fresh = model_with_words("w"), model_with_words("w")
    fresh.load_state_dict(trained.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))


def test_same_size_other_words_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="source dictionary is not the one.*--srcdict"):
        model_with_words("v").load_state_dict(model_with_words("w").state_dict())


def test_checkpoint_without_fingerprint_still_loads():
    state = model_with_words("w").state_dict()
    del state["dictionary_fingerprint"]
    model_with_words("w").load_state_dict(state)


def test_weights_only_load_of_a_fairseq_style_checkpoint():
    """torch >= 2.6 loads with weights_only=True: the args Namespace must be allow-listed."""
    buffer = io.BytesIO()
    torch.save({"args": argparse.Namespace(arch="varattn_lstm"), "model": build_model("soft").state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["args"].arch == "varattn_lstm"
