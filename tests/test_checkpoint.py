"""Checkpoints: loadable with torch >= 2.6, and never paired with the wrong dictionaries."""

import argparse
import io
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from helpers import build_model, fairseq_cli, make_dictionary, train_args

from var_attn_plugin.errors import UsageError
from var_attn_plugin.lstm.model import VarAttnLSTMConfig, VarAttnLSTMModel
from var_attn_plugin.startup_checks import check_q_warmup


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


def weights(path):
    """``(generative parameters, q's parameters)`` of a checkpoint."""
    model = torch.load(path, map_location="cpu", weights_only=False)["model"]
    generative = {k: v for k, v in model.items() if not k.startswith("inference_network.")}
    return generative, {k: v for k, v in model.items() if k.startswith("inference_network.")}


def test_q_warmup_trains_q_alone_then_the_whole_model(arch, synthetic_data, tmp_path):
    """--q-warmup-updates after a warm start from marginal (no q): through its updates the
    generative model stays exactly the checkpoint's while q learns; the same command with a
    later --max-update resumes and then trains the whole model."""
    def train(save_dir, mode, max_update, *extra):
        return fairseq_cli("fairseq-train", *train_args(
            synthetic_data, save_dir, mode, "--max-update", str(max_update), "--dropout", "0.1",
            "--save-interval-updates", "1", "--keep-interval-updates", "-1", *extra, arch=arch)).stdout

    train(tmp_path / "marginal", "marginal", 3)
    start, _ = weights(tmp_path / "marginal" / "checkpoint_last.pt")
    warm = ["--finetune-from-model", str(tmp_path / "marginal" / "checkpoint_last.pt"), "--q-warmup-updates", "3"]
    log = train(tmp_path / "q", "var-enum", 3, *warm)
    assert "training the inference network q alone for the first 3 updates" in log
    first, q_first = weights(tmp_path / "q" / "checkpoint_1_1.pt")
    third, q_third = weights(tmp_path / "q" / "checkpoint_1_3.pt")
    for generative in (first, third):
        assert generative.keys() == start.keys()
        assert all(torch.equal(generative[k], start[k]) for k in start), "the generative model moved"
    assert q_first and any(not torch.equal(q_first[k], q_third[k]) for k in q_first), "q did not learn"

    train(tmp_path / "q", "var-enum", 5, *warm)  # resumes at update 3: the whole model from now on
    fifth, q_fifth = weights(tmp_path / "q" / "checkpoint_last.pt")
    assert any(not torch.equal(fifth[k], start[k]) for k in start), "the generative model did not train"
    assert any(not torch.equal(q_fifth[k], q_third[k]) for k in q_third)


def test_q_warmup_on_several_gpus_needs_unused_parameters_allowed():
    def cfg(**distributed):
        return SimpleNamespace(model=SimpleNamespace(q_warmup_updates=10), distributed_training=SimpleNamespace(
            **{"distributed_world_size": 2, "ddp_backend": "pytorch_ddp", "find_unused_parameters": False,
               **distributed}))

    with pytest.raises(UsageError, match="pass --find-unused-parameters"):
        check_q_warmup(cfg())
    check_q_warmup(cfg(find_unused_parameters=True))
    check_q_warmup(cfg(distributed_world_size=1))
    check_q_warmup(cfg(ddp_backend="legacy_ddp"))


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
