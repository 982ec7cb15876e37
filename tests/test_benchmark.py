"""The benchmark runs end to end, and its cost model counts what the real modules compute."""

import ctypes.util
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from varattn_experiments.benchmark import (
    CostModel,
    TransformerCostModel,
    batch_lengths,
    build_system,
    parse_args,
    peak_memory_mb,
    system_argv,
)

COST = CostModel(E=7, He=5, Hd=9, A=4, O=8, Hq=3, V=13, S=6.0, ratio=1.5)
TRANSFORMER_COST = TransformerCostModel(C=8, F=10, Le=3, Ld=2, O=7, Hq=3, Lq=2, V=13, S=6.0, T=5.0, ratio=1.5)
# pairwise distinct sizes of --arch transformer (heads divide the model size)
TRANSFORMER_SIZES = dict(embed=8, ffn=10, layers=2, heads=2, output=7, inference_hidden=3, inference_layers=2)


def test_cost_model_enumeration_scales_with_candidates():
    # the enumerated output layer is S (or K) copies of the vocabulary projection
    assert COST.enum_output(COST.S) == COST.S * COST.enum_output(1)
    assert COST.decoding("exact", kmax=100) == COST.decoding("kmax", kmax=100)  # K >= S: all of them
    assert COST.decoding("kmax", kmax=2) < COST.decoding("exact", kmax=2)
    assert COST.training("var-enum") > COST.training("marginal") > COST.training("soft")


# Weights a decoder step does not multiply: lookups, per-sentence projections (the initial
# state of fairseq's lstm, the prior's keys) and the prior's v, whose S products the model
# counts separately (S = 0 below).
NOT_PER_STEP = ("embed_tokens.", "encoder_hidden_proj.", "encoder_cell_proj.", "prior_scorer.key_proj.",
                "prior_scorer.v.")


@pytest.mark.parametrize("output", [8, 9], ids=["output-size-differs", "output-size-equals-hidden"])
@pytest.mark.parametrize("system", ["fairseq-lstm", "soft"])
def test_cost_model_decoding_step_counts_the_weights_of_the_real_decoder(synthetic_data, system, output):
    """At S = 0 a decoder step multiplies each weight matrix once: the model's multiply-adds
    per step equal the number of weights of the decoder that fairseq builds (fairseq's lstm
    has an extra output projection only when the output size differs from the hidden size)."""
    sizes = dict(embed=6, encoder_hidden=5, decoder_hidden=9, attention=4, output=output, inference_hidden=3)
    task, model, _ = build_system(system_argv(str(synthetic_data), system, sizes, 1000))
    weights = sum(p.numel() for name, p in model.decoder.named_parameters()
                  if not name.rsplit(".", 1)[-1].startswith("bias") and not name.startswith(NOT_PER_STEP))
    cost = CostModel(E=6, He=5, Hd=9, A=4, O=output, Hq=3, V=len(task.target_dictionary), S=0.0, ratio=1.0)
    assert cost.decoding(system, kmax=1) == weights


def test_benchmark_runs_and_writes_json(synthetic_data, tmp_path):
    out = tmp_path / "bench.json"
    table = subprocess.run(
        [sys.executable, "-m", "varattn_experiments.benchmark", str(synthetic_data), "--preset", "small",
         "--max-tokens", "300", "--window", "1", "--windows", "1", "--gen-batch-size", "4",
         "--gen-batches", "1", "--gen-rounds", "1", "--gen-subset", "test", "--beam", "2",
         "--no-memory", "--json", str(out)],
        capture_output=True, text=True, check=True).stdout
    results = json.loads(out.read_text())
    assert set(results["training"]) == {"fairseq-lstm", "soft", "var-sample", "var-enum", "marginal"}
    assert all(r["tokens_per_s"] > 0 for r in results["training"].values())
    assert all(results["generation"][d]["sentences_per_s"] > 0
               for d in ("fairseq-lstm", "soft", "kmax", "exact"))
    generation = results["generation"]
    assert generation["sentences"] == 4 and 0 < generation["source_real_fraction"] <= 1
    assert results["cost_model"]["decoding_mean_source_length"] == generation["mean_source_length"]
    if ctypes.util.find_library("c") == "libc.so.6":  # glibc: the heap-only policy is in force
        assert results["allocator"] == "heap only"
    assert "| var-enum |" in table and "| exact |" in table


# ---------------------------------------------------------------------------- --arch transformer


def test_transformer_cost_model_enumeration_scales_with_candidates():
    cost = TRANSFORMER_COST
    assert cost.enum_output(cost.S) == cost.S * cost.enum_output(1)
    assert cost.decoding("exact", kmax=100) == cost.decoding("kmax", kmax=100)  # K >= S: all of them
    assert cost.decoding("kmax", kmax=2) < cost.decoding("exact", kmax=2)
    assert cost.training("var-enum") > cost.training("marginal") > cost.training("soft")
    # var-sample: one candidate with gradients, and the soft baseline forward only (detached)
    no_q = cost.training("var-sample") - 3 * cost.inference_network() - 3 * cost.enum_output(1)
    assert no_q == cost.training("soft") - 2 * cost.soft_output()
    # chunked enumeration recomputes its forward once in the backward pass
    chunked, whole = cost.training("marginal"), TransformerCostModel(
        **{**cost.__dict__, "recompute": False}).training("marginal")
    assert chunked - whole == cost.enum_output(cost.S)


def test_transformer_cost_model_counts_padded_target_positions_where_they_are_computed():
    """Both decoders compute every position of the padded target grid, and so does fairseq's
    output projection; our output layer scores the real tokens only."""
    cost = TRANSFORMER_COST
    padded = dataclasses.replace(cost, target_grid=cost.target_grid + 1)
    assert padded.training("fairseq-transformer") - cost.training("fairseq-transformer") == 3 * cost.fairseq_step()
    assert padded.training("soft") - cost.training("soft") == 3 * cost.ours_grid()
    assert padded.training("marginal") - cost.training("marginal") == 3 * cost.ours_grid()


def test_batch_lengths():
    pad = 1
    batch = {"target": torch.tensor([[5, 6, 2], [7, 2, pad]]), "net_input": {"src_tokens": torch.ones(2, 4)}}
    assert batch_lengths([batch, batch], pad) == dict(
        sentences=4, target_tokens=10, target_positions=12, target_pairs=36, source_positions=16)


def real_weights(module, skip=()):
    """Weights that multiply (no biases, layer norms or lookups) of ``module``'s parameters
    whose names start with none of ``skip``."""
    return sum(p.numel() for name, p in module.named_parameters()
               if not name.rsplit(".", 1)[-1].startswith("bias") and "layer_norm" not in name
               and not name.startswith(("embed_tokens.",) + tuple(skip)))


def transformer_cost(task, S=0.0, T=0.0, ratio=1.0):
    z = TRANSFORMER_SIZES
    return TransformerCostModel(C=z["embed"], F=z["ffn"], Le=z["layers"], Ld=z["layers"], O=z["output"],
                                Hq=z["inference_hidden"], Lq=z["inference_layers"],
                                V=len(task.target_dictionary), S=S, T=T, ratio=ratio)


# per source token (the cross-attention's keys and values), not per step
CROSS_KEYS = tuple(f"layers.{i}.encoder_attn.{k}_proj." for i in range(TRANSFORMER_SIZES["layers"]) for k in "kv")


@pytest.mark.parametrize("system", ["fairseq-transformer", "soft"])
def test_transformer_cost_model_counts_the_weights_of_the_real_model(synthetic_data, system):
    """With no positions to attend to (S = T = 0), a decoder step multiplies each weight
    matrix of the decoder once (its cross-attention's keys and values aside: they are per
    source token), and a source token each weight of the encoder and those keys and values:
    the cost model's counts equal the weights of the models fairseq builds (fairseq's output
    projection C -> V; our prior U, W_oh, W_ox (on c_t) and W_g)."""
    task, model, _ = build_system(system_argv(str(synthetic_data), system, TRANSFORMER_SIZES, 1000, "transformer"))
    cost = transformer_cost(task)
    assert cost.decoding(system, kmax=1) == real_weights(model.decoder, CROSS_KEYS)
    cross_keys = real_weights(model.decoder) - real_weights(model.decoder, CROSS_KEYS)
    assert cost.encoder() + cost.cross_keys() == real_weights(model.encoder) + cross_keys


def test_transformer_cost_model_counts_the_weights_of_the_inference_network(synthetic_data):
    """q's LSTMs read one source and one target token per token at ratio 1; its scorer's U once."""
    task, model, _ = build_system(system_argv(str(synthetic_data), "var-enum", TRANSFORMER_SIZES, 1000,
                                              "transformer"))
    assert transformer_cost(task).inference_network() == real_weights(model.inference_network)


def test_benchmark_arch_options():
    assert parse_args(["data"]).preset == "paper"  # the LSTM stays the default
    args = parse_args(["data", "--arch", "transformer"])
    assert args.preset == "iwslt"
    assert args.train_systems == ["fairseq-transformer", "soft", "var-sample", "var-enum", "marginal"]
    assert args.decodings == ["fairseq-transformer", "soft", "kmax", "exact"]
    for wrong in (["--preset", "paper"], ["--train-systems", "fairseq-lstm"], ["--decodings", "fairseq-lstm"]):
        with pytest.raises(SystemExit):
            parse_args(["data", "--arch", "transformer", *wrong])
    with pytest.raises(SystemExit):
        parse_args(["data", "--preset", "iwslt"])


def test_transformer_peak_memory_process(synthetic_data):
    """The per-system memory process builds the --arch of its parent."""
    args = parse_args([str(synthetic_data), "--arch", "transformer", "--preset", "tiny", "--max-tokens", "300",
                       "--window", "1", "--cpu"])
    assert peak_memory_mb(args, "fairseq-transformer") > 0


def test_transformer_benchmark_runs_and_writes_json(synthetic_data, tmp_path):
    out = tmp_path / "bench.json"
    table = subprocess.run(
        [sys.executable, "-m", "varattn_experiments.benchmark", str(synthetic_data), "--arch", "transformer",
         "--preset", "tiny", "--max-tokens", "300", "--window", "1", "--windows", "1", "--gen-batch-size", "4",
         "--gen-batches", "1", "--gen-rounds", "1", "--gen-subset", "test", "--beam", "2",
         "--no-memory", "--json", str(out)],
        capture_output=True, text=True, check=True).stdout
    results = json.loads(out.read_text())
    assert results["arch"] == "transformer" and results["sizes"]["layers"] == 2
    assert set(results["training"]) == {"fairseq-transformer", "soft", "var-sample", "var-enum", "marginal"}
    assert all(r["tokens_per_s"] > 0 for r in results["training"].values())
    assert all(results["generation"][d]["sentences_per_s"] > 0
               for d in ("fairseq-transformer", "soft", "kmax", "exact"))
    cost, lengths = results["cost_model"], results["training_batches"]
    assert cost["decoding_steps"] == results["generation"]["length"] + 1
    assert cost["target_positions_per_token"] == lengths["target_positions"] / lengths["target_tokens"] >= 1
    assert set(cost["training_macs_per_token"]) == set(results["training"])
    assert "`--arch transformer`" in table and "| vs fairseq transformer |" in table
    assert "| fairseq-transformer |" in table and "| var-enum |" in table and "| exact |" in table
