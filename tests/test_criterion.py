"""The varattn_elbo criterion: identities, not magic numbers.

- the soft mode is plain attention NMT: same loss and gradients as fairseq's cross_entropy;
- summed == unsummed (``reduce=False`` sums to the reduced loss);
- padded == unpadded and batched == one-by-one, for every attention mode (eval mode, where
  every mode computes its exact validation objective);
- left-padded source == right-padded source;
- the logged terms fit together: objective = rec + KL, negative ELBO >= exact NLL, KL >= 0,
  NLL = the exact decoding's score of the reference.

Dimensions: B batch, T target length, V vocabulary.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from fairseq.criterions.cross_entropy import CrossEntropyCriterion
from fairseq.logging import metrics
from helpers import build_model, random_batch, var_relaxed_concentrations

from var_attn_plugin.criterion import VarAttnCriterion
from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.latent.outputs import DecodingOptions

SRC_LENGTHS, TGT_LENGTHS = [4, 6, 2], [5, 3, 7]  # B = 3, pairwise-distinct lengths
SUMMED_KEYS = ("loss", "bound", "rec", "kl", "nll_loss", "prior_ent", "post_ent", "prior_eos", "prior_max",
               "align_info", "prior_alpha", "post_alpha", "alpha_spread",
               "ntokens", "nsentences", "sample_size")


def make_criterion(model, criterion_cls=VarAttnCriterion, sentence_avg: bool = False):
    task = SimpleNamespace(target_dictionary=model.decoder.dictionary)
    return criterion_cls(task, sentence_avg=sentence_avg)


def eval_model(mode: str, arch: str = "lstm"):
    return build_model(mode, arch=arch).double().eval()


def sentence(batch, b: int, pad: int):
    """Sentence ``b`` of a left-padded batch as a batch of one, without any pad."""
    net = batch["net_input"]
    n_src, n_tgt = int(net["src_lengths"][b]), int(batch["target"][b].ne(pad).sum())
    return {
        "nsentences": 1,
        "ntokens": n_tgt,
        "net_input": {"src_tokens": net["src_tokens"][b, net["src_tokens"].size(1) - n_src:][None],
                      "src_lengths": net["src_lengths"][b:b + 1],
                      "prev_output_tokens": net["prev_output_tokens"][b, :n_tgt][None]},
        "target": batch["target"][b, :n_tgt][None],
    }


def as_float(value):
    return float(value) if not torch.is_tensor(value) else value.item()


# ---------------------------------------------------------------------------- soft == cross-entropy


@pytest.mark.parametrize("training", [False, True])
def test_soft_mode_is_fairseq_cross_entropy(arch, training):
    model = build_model("soft", arch=arch).double().train(training)  # dropout 0: deterministic
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    results = []
    for criterion_cls in (VarAttnCriterion, CrossEntropyCriterion):
        model.zero_grad()
        loss, sample_size, logging_output = make_criterion(model, criterion_cls)(model, batch)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), sample_size, logging_output, grads))
    (ours, ours_size, ours_log, ours_grads), (ce, ce_size, ce_log, ce_grads) = results
    torch.testing.assert_close(ours, ce)
    assert ours_size == ce_size == sum(TGT_LENGTHS)
    assert as_float(ours_log["nll_loss"]) == pytest.approx(as_float(ce_log["loss"]), rel=1e-12)
    assert ours_grads.keys() == ce_grads.keys()
    for name in ce_grads:
        torch.testing.assert_close(ours_grads[name], ce_grads[name], msg=name)


# ---------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("mode", list(ATTENTION_MODES))
def test_summed_padded_and_batched_equal_unsummed_unpadded_one_by_one(arch, mode):
    model = eval_model(mode, arch=arch)
    criterion = make_criterion(model)
    pad = model.decoder.dictionary.pad()
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=3)
    B, T = batch["target"].shape

    loss, sample_size, logging_output = criterion(model, batch)
    unsummed, _, _ = criterion(model, batch, reduce=False)
    unsummed = unsummed.view(B, T)
    # summed == unsummed, pads contribute exactly 0
    torch.testing.assert_close(unsummed.sum(), loss)
    assert torch.all(unsummed[batch["target"].eq(pad)] == 0)
    assert as_float(logging_output["loss"]) == pytest.approx(loss.item(), rel=1e-12)
    assert sample_size == sum(TGT_LENGTHS)

    # padded == unpadded, batched == one-by-one
    one_by_one = {key: 0.0 for key in logging_output}
    for b, n_tgt in enumerate(TGT_LENGTHS):
        alone, _, alone_log = criterion(model, sentence(batch, b, pad), reduce=False)
        torch.testing.assert_close(unsummed[b, :n_tgt], alone)
        for key in logging_output:
            one_by_one[key] += as_float(alone_log[key])
    assert set(logging_output) <= set(SUMMED_KEYS)
    for key, value in logging_output.items():
        assert as_float(value) == pytest.approx(one_by_one[key], rel=1e-10, abs=1e-12), key


@pytest.mark.parametrize("mode", ["soft", "marginal", "var-enum", "var-relaxed"])
def test_left_and_right_padded_sources_give_the_same_loss(arch, mode):
    model = eval_model(mode, arch=arch)
    criterion = make_criterion(model)
    left = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=2, left_pad_source=True)
    right = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=2, left_pad_source=False)
    assert not torch.equal(left["net_input"]["src_tokens"], right["net_input"]["src_tokens"])
    left_loss, _, left_log = criterion(model, left, reduce=False)
    right_loss, _, right_log = criterion(model, right, reduce=False)
    torch.testing.assert_close(left_loss, right_loss)
    for key in left_log:
        assert as_float(left_log[key]) == pytest.approx(as_float(right_log[key]), rel=1e-10), key


# ---------------------------------------------------------------------------- logged terms


@pytest.mark.parametrize("mode", ["marginal", "hard-enum", "var-enum", "var-sample"])
def test_logged_terms_fit_together(arch, mode):
    model = eval_model(mode, arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=4)
    _, _, log = make_criterion(model)(model, batch)
    loss, rec, kl, nll = (as_float(log[key]) for key in ("loss", "rec", "kl", "nll_loss"))
    assert loss == pytest.approx(rec + kl, rel=1e-12)
    assert kl >= 0
    assert loss >= nll  # every latent objective is a bound on the exact NLL (marginal: equal)
    if mode == "marginal":
        assert loss == pytest.approx(nll, rel=1e-12)
    assert ("post_ent" in log) == ATTENTION_MODES[mode].variational
    # the exact NLL is what exact decoding assigns to the reference
    model.decoder.decoding = DecodingOptions("exact")
    log_probs, _ = model(**batch["net_input"])
    scored = log_probs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    real = batch["target"].ne(model.decoder.dictionary.pad())
    assert nll == pytest.approx(-scored[real].sum().item(), rel=1e-10)


def test_reduce_metrics_reports_base_2_per_token_and_perplexities(arch):
    model = eval_model("var-enum", arch=arch)
    criterion = make_criterion(model)
    logs = [criterion(model, random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=s))[2] for s in (5, 6)]
    ntokens = sum(log["ntokens"] for log in logs)
    nll_bits = sum(as_float(log["nll_loss"]) for log in logs) / ntokens / math.log(2)
    bound_bits = sum(as_float(log["bound"]) for log in logs) / ntokens / math.log(2)
    with metrics.aggregate(new_root=True) as meters:
        VarAttnCriterion.reduce_metrics(logs)
        assert meters["nll_loss"].avg == pytest.approx(nll_bits, rel=1e-9)
        assert meters["bound"].avg == pytest.approx(bound_bits, rel=1e-9)
        assert meters.get_smoothed_value("ppl") == pytest.approx(2**nll_bits, abs=0.01)
        assert meters.get_smoothed_value("bound_ppl") == pytest.approx(2**bound_bits, abs=0.01)
        assert meters.get_smoothed_value("bound_ppl") >= meters.get_smoothed_value("ppl")


def test_sentence_average_divides_by_sentences(arch):
    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    loss, sample_size, _ = make_criterion(model, sentence_avg=True)(model, batch)
    token_loss, token_size, _ = make_criterion(model)(model, batch)
    assert sample_size == len(SRC_LENGTHS) and token_size == sum(TGT_LENGTHS)
    torch.testing.assert_close(loss, token_loss)  # the summed loss is the same, only the divisor differs


# ---------------------------------------------------------------------------- user errors


def test_criterion_names_the_flag_for_a_foreign_model():
    model = eval_model("var-enum")
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    with pytest.raises(TypeError, match="--arch varattn_lstm or varattn_transformer"):
        make_criterion(model)(torch.nn.Linear(2, 3), batch)


def test_training_a_latent_mode_without_the_criterion_names_the_flag(arch):
    model = build_model("var-enum", arch=arch).train()
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    with pytest.raises(RuntimeError, match="--criterion varattn_elbo"):
        make_criterion(model, CrossEntropyCriterion)(model, batch)


def test_sampling_modes_log_no_likelihood_in_training(arch):
    """In training, hard-sample and var-sample compute b_t only as a baseline: it is not the
    model's likelihood, so no nll_loss is logged (validation logs the exact one)."""
    from types import SimpleNamespace

    from helpers import build_model, random_batch

    from var_attn_plugin.criterion import VarAttnCriterion

    for mode in ("hard-sample", "var-sample"):
        model = build_model(mode, arch=arch)
        batch = random_batch(model, [5, 3, 4], [4, 6, 2])
        criterion = VarAttnCriterion(SimpleNamespace(target_dictionary=model.decoder.dictionary), False)
        _, _, train_log = criterion(model.train(), batch)
        _, _, valid_log = criterion(model.eval(), batch)
        assert "nll_loss" not in train_log
        assert "nll_loss" in valid_log


def test_entropies_are_logged_unless_no_entropy_is_passed(arch):
    """A boolean criterion option is a flag that switches on what its name says (fairseq makes
    a True-default boolean a flag that switches it off)."""
    import argparse

    from fairseq.dataclass.utils import gen_parser_from_dataclass

    from var_attn_plugin.criterion import VarAttnCriterionConfig

    parser = argparse.ArgumentParser()
    gen_parser_from_dataclass(parser, VarAttnCriterionConfig())
    assert parser.parse_args([]).no_entropy is False and parser.parse_args(["--no-entropy"]).no_entropy is True

    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, [5, 3], [4, 2])
    task = SimpleNamespace(target_dictionary=model.decoder.dictionary)
    _, _, logged = VarAttnCriterion(task, sentence_avg=False)(model, batch)
    _, _, quiet = VarAttnCriterion(task, sentence_avg=False, no_entropy=True)(model, batch)
    assert {"prior_ent", "post_ent"} <= logged.keys() and not {"prior_ent", "post_ent"} & quiet.keys()
    assert torch.equal(logged["loss"], quiet["loss"])


# ---------------------------------------------------------------------------- collapse diagnostics


def test_alignment_candidates_leave_out_pads_and_under_the_option_the_eos_but_never_a_whole_row():
    from var_attn_plugin.latent.distributions import alignment_padding_mask

    pad, eos = 1, 2
    src = torch.tensor([[1, 1, 7, 8, 2],    # left-padded: EOS last
                        [7, 2, 1, 1, 1],    # right-padded: EOS before the pads
                        [1, 1, 1, 1, 2]])   # an empty sentence: EOS alone
    assert alignment_padding_mask(src, pad, eos, exclude_eos=False).tolist() == src.eq(pad).tolist()
    assert alignment_padding_mask(src, pad, eos, exclude_eos=True).tolist() == [
        [True, True, False, False, True],
        [False, True, True, True, True],
        [True, True, True, True, False]]


@pytest.mark.parametrize("exclude_eos", [False, True], ids=["eos-candidate", "exclude-source-eos"])
@pytest.mark.parametrize("mode", ["soft", "hard-enum", "var-sample"])
def test_logs_the_priors_mass_on_the_source_eos_and_its_largest_probability(arch, mode, exclude_eos):
    """prior_eos and prior_max against a loop over the real target tokens of the prior."""
    model = build_model(mode, arch=arch, exclude_source_eos=exclude_eos).double().eval()
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=3)
    _, _, log = make_criterion(model)(model, batch)
    model.decoder.decoding = DecodingOptions("soft")
    _, extra = model(**batch["net_input"])
    prior = extra["attn"][0]  # B x T x S
    src, target = batch["net_input"]["src_tokens"], batch["target"]
    eos_mass, largest, n = 0.0, 0.0, 0
    for b in range(target.size(0)):
        eos_at = src[b].tolist().index(model.encoder.dictionary.eos())
        for t in range(target.size(1)):
            if target[b, t] != model.decoder.dictionary.pad():
                eos_mass += prior[b, t, eos_at].item()
                largest += max(prior[b, t].tolist())
                n += 1
    assert as_float(log["prior_eos"]) == pytest.approx(eos_mass, rel=1e-9, abs=1e-12)
    assert as_float(log["prior_max"]) == pytest.approx(largest, rel=1e-9)
    if exclude_eos:
        assert as_float(log["prior_eos"]) == 0
    with metrics.aggregate(new_root=True) as meters:
        VarAttnCriterion.reduce_metrics([log])
        assert meters["prior_eos"].avg == pytest.approx(eos_mass / n, abs=1e-4)  # a probability, not bits
        assert meters["prior_max"].avg == pytest.approx(largest / n, abs=1e-4)


@pytest.mark.parametrize("mode", ["hard-enum", "var-sample"])
def test_logs_what_each_word_tells_about_its_alignment_and_zero_when_the_output_ignores_it(arch, mode):
    """align_info = Σ_t KL(p(z_t | y_≤t) ‖ p(z_t | y_<t)) against a loop with Bayes' rule over the
    real target tokens; 0 when every alignment predicts the same next-word distribution."""
    model = build_model(mode, arch=arch).double().eval()
    with torch.no_grad():  # weights far from the initial ones: outputs that differ by alignment
        for parameter in model.parameters():
            parameter.mul_(5)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=4)
    out = model(**batch["net_input"], target=batch["target"])
    _, _, log = make_criterion(model)(model, batch)
    src_pad = batch["net_input"]["src_tokens"].eq(model.encoder.dictionary.pad())
    expected = 0.0
    for b, t in (batch["target"] != model.decoder.dictionary.pad()).nonzero().tolist():
        real = ~src_pad[b]
        log_prior = out.prior_log_probs[b, t][real].tolist()
        log_joint = [p + w for p, w in zip(log_prior, out.token_log_probs[b, t][real].tolist())]
        log_evidence = max(log_joint) + math.log(sum(math.exp(j - max(log_joint)) for j in log_joint))
        expected += sum(math.exp(j - log_evidence) * (j - log_evidence - p) for j, p in zip(log_joint, log_prior))
    assert expected > 1e-5  # these words tell something (far above float64 rounding)
    assert as_float(log["align_info"]) == pytest.approx(expected, rel=1e-7)

    # an output that ignores z_t: the word tells nothing about the alignment
    ignored = out.token_log_probs[..., :1].expand_as(out.token_log_probs)
    from var_attn_plugin.latent.distributions import categorical_kl, exact_posterior

    assert categorical_kl(exact_posterior(out.prior_log_probs, ignored), out.prior_log_probs).abs().max() < 1e-12


# ---------------------------------------------------------------------------- --soft-loss-weight


@pytest.mark.parametrize("mode", ["hard-sample", "var-sample"])
def test_soft_loss_weight_adds_the_soft_baselines_likelihood_to_the_training_loss_only(arch, mode):
    """With --soft-loss-weight w the training loss is the mode's loss plus w · Σ -b_t over real
    tokens (the same noise, the same sample), the logged objective is unchanged, and the soft
    output, a detached baseline otherwise, now gets that gradient."""
    from var_attn_plugin.latent.distributions import noise_from

    weight = 0.7
    batch = random_batch(build_model(mode, arch=arch), SRC_LENGTHS, TGT_LENGTHS, seed=4)
    results = {}
    for w in (0.0, weight):
        model = build_model(mode, arch=arch, soft_loss_weight=w).double().train()
        with noise_from(torch.Generator().manual_seed(11)):
            loss, _, log = make_criterion(model)(model, batch)
        out = model(**batch["net_input"], target=batch["target"])
        results[w] = (loss, log, out.soft_token_log_probs)
    (loss0, log0, soft0), (loss1, log1, soft1) = results[0.0], results[weight]
    real = batch["target"].ne(1)
    torch.testing.assert_close(soft0, soft1)  # the same parameters (same seed): the same b_t
    assert not soft0.requires_grad and soft1.requires_grad
    expected = loss0 - weight * soft1[real].sum()
    torch.testing.assert_close(loss1, expected)
    assert as_float(log0["loss"]) == pytest.approx(as_float(log1["loss"]), rel=1e-12)


def test_soft_loss_weight_is_refused_for_modes_without_a_soft_baseline():
    from var_attn_plugin.errors import UsageError

    with pytest.raises(UsageError, match="--soft-loss-weight trains the soft baseline .* drop --soft-loss-weight"):
        build_model("var-enum", soft_loss_weight=0.5)
    with pytest.raises(UsageError, match="--soft-loss-weight must be >= 0"):
        build_model("var-sample", soft_loss_weight=-1.0)


@pytest.mark.parametrize("transform", ["softplus", "softmax"])
@pytest.mark.parametrize("training", [False, True], ids=["validation", "training"])
def test_logs_var_relaxeds_dirichlet_concentrations(arch, training, transform):
    """prior_alpha / post_alpha / alpha_spread against a loop over the real target tokens and
    real source positions of the concentrations recomputed from the prior's and q's scores; in
    validation (scored by its Dirichlet ELBO) as in training. No other mode logs them."""
    model = build_model("var-relaxed", arch=arch, dirichlet_transform=transform).double().eval()
    with torch.no_grad():  # scores away from 0 (the LSTM's start tiny): concentrations that differ
        for parameter in model.parameters():
            parameter.mul_(8 if arch == "lstm" else 1)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=5)
    prior_alpha, q_alpha, states = var_relaxed_concentrations(model, batch)
    target, pad = batch["target"], model.decoder.dictionary.pad()
    expected = {"prior_alpha": 0.0, "post_alpha": 0.0, "alpha_spread": 0.0}
    n = 0
    for b in range(target.size(0)):
        real = [j for j in range(prior_alpha.size(2)) if not states.src_padding_mask[b, j]]
        for t in range(target.size(1)):
            if target[b, t] != pad:
                p = [prior_alpha[b, t, j].item() for j in real]
                expected["prior_alpha"] += sum(p) / len(p)
                expected["post_alpha"] += sum(q_alpha[b, t, j].item() for j in real) / len(real)
                expected["alpha_spread"] += max(p) / min(p)
                n += 1
    assert expected["alpha_spread"] > 1.01 * n  # the check can tell a spread from none
    model.train(training)
    if training:
        model.cfg.dropout = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    _, _, log = make_criterion(model)(model, batch)
    for key, value in expected.items():
        assert as_float(log[key]) == pytest.approx(value, rel=1e-9), key
    with metrics.aggregate(new_root=True) as meters:
        VarAttnCriterion.reduce_metrics([log])
        assert meters["prior_alpha"].avg == pytest.approx(expected["prior_alpha"] / n, abs=1e-4)  # not in bits
    other = build_model("var-enum", arch=arch).double().eval()
    _, _, log = make_criterion(other)(other, random_batch(other, SRC_LENGTHS, TGT_LENGTHS, seed=5))
    assert not {"prior_alpha", "post_alpha", "alpha_spread"} & set(log)
