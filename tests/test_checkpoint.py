"""Checkpoints: loadable with torch >= 2.6, and never paired with the wrong dictionaries."""

import argparse
import io
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from helpers import build_model, make_dictionary

from var_attn_plugin.lstm.model import VarAttnLSTMConfig, VarAttnLSTMModel


def model_with_words(prefix: str) -> VarAttnLSTMModel:
    def dictionary():
        d = Dictionary()
        for i in range(11):
            d.add_symbol(f"{prefix}{i}")
        d.finalize(padding_factor=1)
        return d

    cfg = VarAttnLSTMConfig(attention_mode="var-enum", encoder_embed_dim=6, encoder_hidden_size=5,
                            decoder_embed_dim=7, decoder_hidden_size=9, attention_dim=4,
                            decoder_output_dim=8, inference_hidden_size=3)
    return VarAttnLSTMModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary(),
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


def test_warm_start_across_modes_keeps_the_generative_model():
    """--finetune-from-model with a soft checkpoint: the generative parameters load exactly, q
    keeps its initialisation; and a variational checkpoint loads into a model without q."""
    soft, variational = build_model("soft", seed=1), build_model("var-enum", seed=2)
    fresh_q = {k: v.clone() for k, v in variational.inference_network.state_dict().items()}
    variational.load_state_dict(soft.state_dict())
    for name, value in soft.state_dict().items():
        assert torch.equal(variational.state_dict()[name], value), name
    for name, value in variational.inference_network.state_dict().items():
        assert torch.equal(value, fresh_q[name]), name

    marginal = build_model("marginal", seed=3)
    marginal.load_state_dict(variational.state_dict())
    assert all(torch.equal(v, variational.state_dict()[k]) for k, v in marginal.state_dict().items())


def test_warm_start_still_refuses_a_different_generative_model():
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_model("var-enum", decoder_hidden_size=10).load_state_dict(build_model("soft").state_dict())


def test_a_loaded_checkpoint_state_survives_the_broadcast_to_other_ranks(tmp_path):
    """Distributed resume/fine-tuning: rank 0 loads the checkpoint (its configuration becomes
    omegaconf containers) and sends it with torch.save/torch.load(weights_only=True)."""
    from fairseq import checkpoint_utils
    from fairseq.distributed import utils as distributed_utils
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"_name": "varattn_lstm", "dropout": 0.1, "layers": [1, 2]},
                            "common": {"seed": 1, "user_dir": None}})
    path = tmp_path / "checkpoint.pt"
    history = [{"criterion_name": "VarAttnCriterion", "optimizer_name": "FairseqAdam", "num_updates": 5,
                "lr_scheduler_state": {"best": 3.0}}]
    torch.save({"cfg": cfg, "model": build_model("soft").state_dict(), "extra_state": {"epoch": 2},
                "optimizer_history": history, "last_optimizer_state": {}}, path)
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    tensors = []  # what broadcast_object sends: the object with tensors replaced, then the tensors
    sent = [distributed_utils._split_tensors_from_obj(state, tensors),
            [{"size": t.size(), "dtype": t.dtype} for t in tensors]]
    received = []
    for obj in sent:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        buffer.seek(0)
        received.append(torch.load(buffer, map_location="cpu"))  # weights_only=True on torch >= 2.6
    received = distributed_utils._put_tensors_in_obj(received[0], tensors)
    assert received["cfg"].model.dropout == 0.1 and list(received["cfg"].model.layers) == [1, 2]
    assert received["extra_state"]["epoch"] == 2 and received["optimizer_history"][-1]["num_updates"] == 5
