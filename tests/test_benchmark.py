"""The benchmark runs end to end and its cost model is consistent with its definition."""

import json

from var_attn_plugin.benchmark import CostModel, main

COST = CostModel(E=7, He=5, Hd=9, A=4, O=8, Hq=3, V=13, S=6.0, ratio=1.5)


def test_cost_model_enumeration_scales_with_candidates():
    # the enumerated output layer is S (or K) copies of the vocabulary projection
    assert COST.enum_output(COST.S) == COST.S * COST.enum_output(1)
    assert COST.decoding("exact", kmax=100) == COST.decoding("kmax", kmax=100)  # K >= S: all of them
    assert COST.decoding("kmax", kmax=2) < COST.decoding("exact", kmax=2)
    assert COST.training("var-enum") > COST.training("marginal") > COST.training("soft")


def test_benchmark_runs_and_writes_json(synthetic_data, tmp_path, capsys):
    out = tmp_path / "bench.json"
    main([str(synthetic_data), "--preset", "small", "--max-tokens", "300", "--window", "1",
          "--windows", "1", "--gen-batch-size", "4", "--gen-batches", "1", "--gen-rounds", "1",
          "--gen-subset", "test", "--beam", "2", "--no-memory", "--json", str(out)])
    results = json.loads(out.read_text())
    assert set(results["training"]) == {"fairseq-lstm", "soft", "var-sample", "var-enum", "marginal"}
    assert all(r["tokens_per_s"] > 0 for r in results["training"].values())
    assert all(results["generation"][d]["sentences_per_s"] > 0
               for d in ("fairseq-lstm", "soft", "kmax", "exact"))
    table = capsys.readouterr().out
    assert "| var-enum |" in table and "| exact |" in table
