"""The benchmark runs end to end, and its cost model counts what the real modules compute."""

import ctypes.util
import json
import subprocess
import sys

import pytest

from var_attn_plugin.benchmark import CostModel, build_system, system_argv

COST = CostModel(E=7, He=5, Hd=9, A=4, O=8, Hq=3, V=13, S=6.0, ratio=1.5)


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
        [sys.executable, "-m", "var_attn_plugin.benchmark", str(synthetic_data), "--preset", "small",
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
