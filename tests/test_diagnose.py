"""varattn-diagnose: the alignment statistics against brute force, and the command line against
fairseq-validate's perplexity on tiny trained models of both architectures and of soft attention."""

import json
import math

import pytest
import torch
from helpers import PLUGIN_DIR, fairseq_cli, log_records, train_args

from var_attn_plugin.tools.diagnose import alignment_statistics


def random_case(seed: int):
    """(prior log-probs with source pads, ℓ, real-token mask) for a batch of 3, T = 4, S = 5."""
    g = torch.Generator().manual_seed(seed)
    B, T, S = 3, 4, 5
    source_lengths = [5, 3, 1]
    scores = torch.randn(B, T, S, generator=g, dtype=torch.float64) * 2
    pads = torch.arange(S).unsqueeze(0) >= torch.tensor(source_lengths).unsqueeze(1)  # right pads, (B, S)
    prior = torch.log_softmax(scores.masked_fill(pads.unsqueeze(1), -math.inf), dim=-1)
    ell = -torch.rand(B, T, S, generator=g, dtype=torch.float64) * 6
    tokens = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    return prior, ell, tokens, source_lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_match_a_position_by_position_computation(seed):
    prior, ell, tokens, source_lengths = random_case(seed)
    got = alignment_statistics(prior, ell, tokens)
    expected = dict.fromkeys(got, 0.0)
    for b, t in tokens.nonzero().tolist():
        S = source_lengths[b]
        p = [math.exp(prior[b, t, j].item()) for j in range(S)]
        lik = [math.exp(ell[b, t, j].item()) for j in range(S)]
        marginal = sum(pj * lj for pj, lj in zip(p, lik))
        post = [pj * lj / marginal for pj, lj in zip(p, lik)]
        mean = sum(ell[b, t, :S].tolist()) / S
        expected["log_marginal"] += math.log(marginal)
        expected["kl_posterior_prior"] += sum(q * math.log(q / pj) for q, pj in zip(post, p) if q > 0)
        expected["position_spread"] += math.sqrt(sum((x - mean) ** 2 for x in ell[b, t, :S].tolist()) / S)
        expected["prior_entropy"] += -sum(pj * math.log(pj) for pj in p if pj > 0)
        expected["uniform_entropy"] += math.log(S)
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_an_output_that_ignores_the_aligned_position_carries_no_alignment_information():
    prior, ell, tokens, _ = random_case(3)
    constant = ell[..., :1].expand_as(ell).clone()  # ℓ_t(j) the same for every j
    got = alignment_statistics(prior, constant, tokens)
    assert got["kl_posterior_prior"].item() == pytest.approx(0.0, abs=1e-12)
    assert got["position_spread"].item() == pytest.approx(0.0, abs=1e-12)
    assert got["log_marginal"].item() == pytest.approx(constant[..., 0][tokens].sum().item(), abs=1e-12)
    # and the posterior moves away from the prior as soon as one position predicts better
    sharper = constant.clone()
    sharper[..., 0] += 1.0
    assert alignment_statistics(prior, sharper, tokens)["kl_posterior_prior"].item() > 0.01


def diagnose_and_validate(data, checkpoint):
    rows = [json.loads(line) for line in fairseq_cli(
        "varattn-diagnose", data, "--path", checkpoint, "--gen-subset", "test", "--max-tokens", "500", "--cpu",
        "--json").stdout.splitlines()]
    validated = log_records(fairseq_cli(
        "fairseq-validate", data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation", "--path", checkpoint,
        "--cpu", "--criterion", "varattn_elbo", "--max-tokens", "500", "--valid-subset", "test",
        "--log-format", "json").stdout, "test")
    (row,) = rows
    return row, validated[-1]


@pytest.mark.slow
def test_command_line_perplexity_is_fairseq_validates(trained):
    row, validated = diagnose_and_validate(trained.data, trained.ckpt)
    assert row["mode"] == "var-enum" and row["tokens"] > 0
    assert row["ppl"] == pytest.approx(validated["test_ppl"], abs=0.006)  # fairseq rounds to 2 decimals
    assert row["prior_entropy"] == pytest.approx(validated["test_prior_ent"] * math.log(2), abs=0.002)
    # the reversal task needs the source: another sentence's source costs perplexity
    assert row["ppl_other_source"] > row["ppl"]
    assert 0 < row["prior_entropy"] <= row["uniform_entropy"] + 1e-9
    assert row["kl_posterior_prior"] > 0 and row["position_spread"] > 0


@pytest.mark.slow
def test_a_soft_attention_model_gets_perplexities_and_its_attentions_entropy(synthetic_data, tmp_path):
    fairseq_cli("fairseq-train", *train_args(synthetic_data, tmp_path, "soft", "--max-epoch", "4", "--dropout", "0"))
    row, validated = diagnose_and_validate(synthetic_data, tmp_path / "checkpoint_last.pt")
    assert row["mode"] == "soft" and row["ppl"] == pytest.approx(validated["test_ppl"], abs=0.006)
    assert row["ppl_other_source"] > 0 and 0 < row["prior_entropy"] <= row["uniform_entropy"] + 1e-9
    assert row["kl_posterior_prior"] is None and row["position_spread"] is None
