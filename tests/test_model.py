"""The model: brute-force oracles over alignment sequences, decoding options, incremental
decoding, beam reordering, chunked enumeration and the padding layout of alignments.

All models are tiny (sizes from helpers.TINY_SIZES), in float64 and eval mode unless a test
says otherwise, on batches with pairwise-distinct source and target lengths.

Dimensions: B batch, S source length, T target length, V vocabulary, D source state size.
"""

import itertools
import logging
import math
import re
from types import SimpleNamespace
from typing import Dict, List

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator
from helpers import build_model, random_batch

import var_attn_plugin.latent.output_layer as output_layer
from var_attn_plugin.decoding import DecodingRequest, resolve_decoding_options
from var_attn_plugin.errors import UsageError
from var_attn_plugin.latent.distributions import log_marginal
from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.latent.outputs import DecodingOptions
from var_attn_plugin.lstm.model import VarAttnLSTMConfig, check_config
from var_attn_plugin.startup_checks import check_model_decoding
from varattn_experiments.benchmark import peak_cpu_bytes

SRC_LENGTHS, TGT_LENGTHS = [5, 2, 4], [3, 6, 4]  # a mixed-length batch, B = 3
UNBOUNDED = 2**50  # a chunk budget no test batch reaches: one chunk


def eval_model(mode: str, seed: int = 0, arch: str = "lstm", **overrides):
    return build_model(mode, seed=seed, arch=arch, **overrides).double().eval()


def encode(model, batch):
    net = batch["net_input"]
    return model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])


def decode_full(model, batch, options: DecodingOptions):
    model.decoder.decoding = options
    return model.decoder(batch["net_input"]["prev_output_tokens"], encoder_out=encode(model, batch))


def sentence(model, batch, b: int) -> Dict:
    """Sentence ``b`` of a left-padded batch as a batch of one, without any pad."""
    src = batch["net_input"]["src_tokens"][b]
    n_src = int(batch["net_input"]["src_lengths"][b])
    n_tgt = int(batch["target"][b].ne(model.decoder.dictionary.pad()).sum())
    return {
        "nsentences": 1,
        "ntokens": n_tgt,
        "net_input": {"src_tokens": src[src.numel() - n_src:][None], "src_lengths": torch.tensor([n_src]),
                      "prev_output_tokens": batch["net_input"]["prev_output_tokens"][b, :n_tgt][None]},
        "target": batch["target"][b, :n_tgt][None],
    }


# ---------------------------------------------------------------------------- brute force


def candidate_count(model, one) -> int:
    """How many source positions of a batch of one without pads ``z_t`` ranges over: all, or
    all but the last (the EOS) under --exclude-source-eos."""
    S = one["net_input"]["src_tokens"].size(1)
    return S - 1 if model.cfg.exclude_source_eos and S > 1 else S


def reference_lstm_steps(model, one):
    """x̃ ``(S, D)``, h_t and log p_t(j) of the LSTM for a batch of one without pads, by an explicit
    step-by-step loop over the formulas of docs/METHOD.md §3 (one source position at a time;
    ``S`` counts the alignment candidates, so the EOS is left out under --exclude-source-eos)."""
    decoder = model.decoder
    scorer = decoder.prior_scorer
    S = candidate_count(model, one)
    states = encode(model, one)["encoder_out"][0][0][:S]  # S x D
    prev = one["net_input"]["prev_output_tokens"][0]
    hidden = [states.new_zeros(1, decoder.hidden_size) for _ in decoder.layers]
    cell = [states.new_zeros(1, decoder.hidden_size) for _ in decoder.layers]
    input_feed = states.new_zeros(states.size(1))
    queries, log_prior = [], []
    for t in range(prev.numel()):
        x = torch.cat([decoder.embed_tokens.weight[prev[t]], input_feed])[None]
        for i, lstm_cell in enumerate(decoder.layers):
            hidden[i], cell[i] = lstm_cell(x, (hidden[i], cell[i]))
            x = hidden[i]
        h = x[0]
        # e_tj = v · tanh(W_c x̃_j + W_q h_t)
        scores = torch.stack([
            scorer.v.weight[0] @ torch.tanh(scorer.key_proj.weight @ states[j] + scorer.query_proj.weight @ h)
            for j in range(S)])
        log_p = torch.log_softmax(scores, dim=0)
        input_feed = sum(log_p[j].exp() * states[j] for j in range(S))  # c_t = Σ_j p_t(j) x̃_j
        queries.append(h)
        log_prior.append(log_p)
    return states, queries, log_prior


def reference_transformer_steps(model, one):
    """x̃ ``(S, C)``, h_t and log p_t(j) of the Transformer for a batch of one without pads: h_t
    from fairseq's own decoder layers (not the plugin's code), the prior by an explicit loop over
    source positions, ``p_t(j) ∝ exp((U h_t) · x̃_j / √D)`` (docs/METHOD.md §10)."""
    from fairseq.models.transformer import TransformerDecoderBase

    encoder_out = encode(model, one)
    states = encoder_out["encoder_out"][0][:candidate_count(model, one), 0]  # S x C (candidates)
    hidden, _ = TransformerDecoderBase.extract_features(
        model.decoder, one["net_input"]["prev_output_tokens"], encoder_out)
    U = model.decoder.prior_scorer.U.weight
    scale = math.sqrt(states.size(1))  # √D
    queries, log_prior = [], []
    for h in hidden[0]:
        scores = torch.stack([(U @ h) @ states[j] / scale for j in range(states.size(0))])
        queries.append(h)
        log_prior.append(torch.log_softmax(scores, dim=0))
    return states, queries, log_prior


def reference_step_terms(model, one):
    """log p_t(j) and ℓ_t(j), ``(T, S)`` lists, for a batch of one without pads, one source
    position at a time (no enumeration code of the plugin)."""
    steps = reference_transformer_steps if model.ARCH == "varattn_transformer" else reference_lstm_steps
    states, queries, log_prior = steps(model, one)
    layer, target = model.decoder.alignment_output, one["target"][0]
    ell = []
    for t, h in enumerate(queries):
        row = []
        for j in range(states.size(0)):
            # o_tj = tanh(W_o [h_t; x̃_j] + b_o), log softmax(W_g o_tj + b_g)
            o = torch.tanh(layer.query_proj.weight @ h + layer.query_proj.bias + layer.source_proj.weight @ states[j])
            logits = layer.generator.weight @ o + layer.generator.bias
            row.append(torch.log_softmax(logits, dim=0)[target[t]].item())
        ell.append(row)
    return [log_p.tolist() for log_p in log_prior], ell


def logsumexp(values: List[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@pytest.mark.parametrize("exclude_eos", [False, True], ids=["eos-candidate", "exclude-source-eos"])
def test_sentence_likelihood_and_elbo_equal_enumeration_of_all_alignment_sequences(arch, exclude_eos):
    """log p(y | x) = log Σ_z Π_t p_t(z_t) p(y_t | z_t) over all S^T sequences z, and the
    ELBO = Σ_z q(z) [log p(y, z) - log q(z)] with q(z) = Π_t q_t(z_t), against the model's
    per-step enumeration, for every sentence of a padded batch; with --exclude-source-eos z
    ranges over the source words only (and the prior and q give the EOS no mass)."""
    model = eval_model("var-enum", arch=arch, exclude_source_eos=exclude_eos)
    batch = random_batch(model, [4, 3, 2], [3, 5, 4], seed=1)
    out = model(**batch["net_input"], target=batch["target"])
    per_token_elbo = -ATTENTION_MODES["var-enum"].objective(out).objective  # B x T
    model.decoder.decoding = DecodingOptions("exact")
    word_log_probs, _ = model(**batch["net_input"])  # B x T x V
    decoded = word_log_probs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)  # B x T

    assert_enumeration_oracle(model, batch, out, per_token_elbo, decoded, exclude_eos)


def assert_enumeration_oracle(model, batch, out, per_token_elbo, decoded=None, exclude_eos=False):
    """For every sentence of ``batch``: the model's likelihood (and exact decoding's score, when
    ``decoded`` is given) equals log Σ_z Π_t p_t(z_t) p(y_t | z_t) over all S^T sequences z, and
    its per-token ELBO the ELBO of the factorised q, by brute force (reference_step_terms)."""
    for b in range(batch["nsentences"]):
        one = sentence(model, batch, b)
        log_prior, ell = reference_step_terms(model, one)
        T, S = len(ell), len(ell[0])
        n_src = int(batch["net_input"]["src_lengths"][b])
        real = slice(out.prior_log_probs.size(-1) - n_src, None)
        log_q = out.posterior_log_probs[b, :T, real].tolist()
        if exclude_eos:  # the EOS, last of the source, has no mass under the prior or q
            assert out.prior_log_probs[b, :T, -1].exp().max() == 0
            assert out.posterior_log_probs[b, :T, -1].exp().max() == 0
        joint, elbo = [], 0.0
        for z in itertools.product(range(S), repeat=T):
            log_joint = sum(log_prior[t][z[t]] + ell[t][z[t]] for t in range(T))
            log_qz = sum(log_q[t][z[t]] for t in range(T))
            joint.append(log_joint)
            elbo += math.exp(log_qz) * (log_joint - log_qz)
        brute_force = logsumexp(joint)

        model_log_likelihood = log_marginal(out.prior_log_probs[b, :T], out.token_log_probs[b, :T]).sum()
        assert model_log_likelihood.item() == pytest.approx(brute_force, rel=1e-10)
        if decoded is not None:
            assert decoded[b, :T].sum().item() == pytest.approx(brute_force, rel=1e-10)
        assert per_token_elbo[b, :T].sum().item() == pytest.approx(elbo, rel=1e-10)
        if S > 1:
            assert elbo < brute_force
        else:  # one candidate: q is exact, the ELBO is the likelihood
            assert elbo == pytest.approx(brute_force, rel=1e-10)


# ---------------------------------------------------------------------------- decoding options


def test_exact_decoding_is_normalised_and_scores_the_marginal(arch):
    model = eval_model("marginal", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    log_probs, _ = decode_full(model, batch, DecodingOptions("exact"))
    B, T, V = log_probs.shape
    assert V == len(model.decoder.dictionary)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(B, T, dtype=torch.float64))
    out = model(**batch["net_input"], target=batch["target"])
    scored = log_probs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    real = batch["target"].ne(model.decoder.dictionary.pad())
    torch.testing.assert_close(scored[real], log_marginal(out.prior_log_probs, out.token_log_probs)[real])


def test_kmax_matches_brute_force_top_k_and_equals_exact_when_k_covers_the_sentence(arch):
    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    S = max(SRC_LENGTHS)
    exact, extra = decode_full(model, batch, DecodingOptions("exact"))
    prior = extra["attn"][0]  # B x T x S
    states = model.decoder.extract_features(batch["net_input"]["prev_output_tokens"], encode(model, batch))
    layer = model.decoder.alignment_output
    queries = layer.query_proj(states.hidden)  # B x T x O
    for k in (1, 2, 3):
        kmax, _ = decode_full(model, batch, DecodingOptions("kmax", kmax=k))
        torch.testing.assert_close(kmax.logsumexp(-1), torch.zeros(kmax.shape[:2], dtype=torch.float64))
        for b, n_src in enumerate(SRC_LENGTHS):
            for t in range(kmax.size(1)):
                kept = prior[b, t].topk(min(k, n_src)).indices.tolist()
                renormalised = torch.log(prior[b, t, kept] / prior[b, t, kept].sum())
                candidates = torch.stack([
                    layer.soft_log_probs(queries[b, t], states.output_sources[b, j]) for j in kept])  # k x V
                oracle = torch.logsumexp(renormalised.unsqueeze(-1) + candidates, dim=0)
                torch.testing.assert_close(kmax[b, t], oracle)
                if k >= n_src:  # every real position kept: pads get no mass, exact enumeration
                    torch.testing.assert_close(kmax[b, t], exact[b, t])
    for k in (S, S + 4):
        kmax, _ = decode_full(model, batch, DecodingOptions("kmax", kmax=k))
        torch.testing.assert_close(kmax, exact, rtol=0, atol=0)


# ---------------------------------------------------------------------------- incremental decoding


DECODINGS = [DecodingOptions("exact"), DecodingOptions("kmax", kmax=2), DecodingOptions("kmax", kmax=9),
             DecodingOptions("soft"), DecodingOptions("dirichlet-mean")]


def decoding_model(options: DecodingOptions, arch: str = "lstm", **overrides):
    """A latent model that accepts ``options`` (dirichlet-mean needs a var-relaxed model)."""
    return eval_model("var-relaxed" if options.latent_decoding == "dirichlet-mean" else "var-enum", arch=arch,
                      **overrides)


EXCLUDE_EOS = pytest.mark.parametrize("exclude_eos", [False, True], ids=["eos-candidate", "exclude-source-eos"])


def real_steps(model, batch) -> torch.Tensor:
    """``(B, T)`` True at the steps that predict a real target token (not a pad)."""
    return batch["target"].ne(model.decoder.dictionary.pad())


def decode_incremental(model, src_batch_encoder_out, prev: torch.Tensor, state=None, start: int = 0):
    """Step-by-step decoding as fairseq's SequenceGenerator does: at step t the decoder gets
    the whole prefix ``prev[:, :t+1]`` and the cache. Returns ``(B, T - start, V)``."""
    state = {} if state is None else state
    steps = []
    for t in range(start, prev.size(1)):
        log_probs, _ = model.decoder(prev[:, : t + 1], encoder_out=src_batch_encoder_out, incremental_state=state)
        assert log_probs.size(1) == 1
        steps.append(log_probs[:, 0])
    return torch.stack(steps, 1), state


@EXCLUDE_EOS
@pytest.mark.parametrize("options", DECODINGS, ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_incremental_decoding_equals_teacher_forced_decoding(arch, options, exclude_eos):
    model = decoding_model(options, arch=arch, exclude_source_eos=exclude_eos)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    full, _ = decode_full(model, batch, options)
    stepwise, _ = decode_incremental(model, encode(model, batch), batch["net_input"]["prev_output_tokens"])
    real = real_steps(model, batch)  # beyond a target's end a Transformer masks the pads it reads
    torch.testing.assert_close(stepwise[real], full[real])


@EXCLUDE_EOS
@pytest.mark.parametrize("options", DECODINGS, ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_beam_reordering_equals_decoding_the_reordered_batch_from_scratch(arch, options, exclude_eos):
    model = decoding_model(options, arch=arch, exclude_source_eos=exclude_eos)
    model.decoder.decoding = options
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    prev = batch["net_input"]["prev_output_tokens"]
    split = 2
    new_order = torch.tensor([2, 0, 0, 1])  # a permutation with a duplicated hypothesis
    # continue the reordered hypotheses with new tokens (the duplicates diverge)
    g = torch.Generator().manual_seed(4)
    reordered_prev = prev[new_order].clone()
    reordered_prev[:, split:] = torch.randint(4, len(model.decoder.dictionary), reordered_prev[:, split:].shape,
                                              generator=g)

    encoder_out = encode(model, batch)
    _, state = decode_incremental(model, encoder_out, prev[:, :split])
    encoder_out = model.encoder.reorder_encoder_out(encoder_out, new_order)
    model.decoder.reorder_incremental_state_scripting(state, new_order)
    continued, _ = decode_incremental(model, encoder_out, reordered_prev, state=state, start=split)

    net = batch["net_input"]
    scratch = {"net_input": {"src_tokens": net["src_tokens"][new_order], "src_lengths": net["src_lengths"][new_order],
                             "prev_output_tokens": reordered_prev}}
    full, _ = decode_full(model, scratch, options)
    torch.testing.assert_close(continued, full[:, split:])


@pytest.mark.parametrize("options", DECODINGS[:3], ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_beam_search_scores_equal_teacher_forced_scores_of_its_hypotheses(arch, options):
    """fairseq's own SequenceGenerator (incremental, with beam reordering): the positional
    scores of every returned hypothesis equal the teacher-forced log-probs of its tokens."""
    model = decoding_model(options, arch=arch)
    model.decoder.decoding = options
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    dictionary = model.decoder.dictionary
    generator = SequenceGenerator([model], dictionary, beam_size=3, max_len_b=6, normalize_scores=False)
    hypotheses = generator.generate([model], batch)
    for b, sentence_hypotheses in enumerate(hypotheses):
        one = sentence(model, batch, b)
        for hypothesis in sentence_hypotheses:
            tokens = hypothesis["tokens"]  # T, ending in EOS
            prev = torch.cat([tokens.new_tensor([dictionary.eos()]), tokens[:-1]])
            one["net_input"]["prev_output_tokens"] = prev[None]
            with torch.no_grad():
                log_probs, _ = decode_full(model, one, options)
            scored = log_probs[0].gather(-1, tokens[:, None]).squeeze(-1)
            torch.testing.assert_close(hypothesis["positional_scores"], scored)


def test_eos_penalty_lowers_only_eos_by_beta_src_length_over_prefix_length(arch):
    beta = 2.5
    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    prev = batch["net_input"]["prev_output_tokens"]
    eos = model.decoder.dictionary.eos()
    encoder_out = encode(model, batch)
    model.decoder.decoding = DecodingOptions("exact")
    plain, _ = decode_incremental(model, encoder_out, prev)
    model.decoder.decoding = DecodingOptions("exact", eos_penalty=beta)
    penalised, _ = decode_incremental(model, encoder_out, prev)

    src_lengths = torch.tensor(SRC_LENGTHS, dtype=torch.float64)
    for t in range(prev.size(1)):
        n = t + 1  # prefix length, counting BOS
        expected = plain[:, t].clone()
        expected[:, eos] -= beta * src_lengths / (n + 1)
        torch.testing.assert_close(penalised[:, t], expected)
    # teacher-forced scoring (training, validation, --score-reference) is not penalised
    full, _ = decode_full(model, batch, DecodingOptions("exact", eos_penalty=beta))
    real = real_steps(model, batch)
    torch.testing.assert_close(full[real], plain[real])


# ---------------------------------------------------------------------------- alignment layout


def test_alignments_of_a_left_padded_batch_equal_each_sentence_alone(arch):
    """The prior ("attn") and the posterior sit at the source positions of ``src_tokens``,
    with exactly zero mass at the left pads; word distributions do not depend on padding."""
    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    S = max(SRC_LENGTHS)
    log_probs, extra = decode_full(model, batch, DecodingOptions("exact"))
    attn = extra["attn"][0]  # B x T x S
    posterior = model(**batch["net_input"], target=batch["target"]).posterior_log_probs.exp()
    assert attn.shape == (len(SRC_LENGTHS), max(TGT_LENGTHS), S)
    for b, (n_src, n_tgt) in enumerate(zip(SRC_LENGTHS, TGT_LENGTHS)):
        one = sentence(model, batch, b)
        alone_log_probs, alone_extra = decode_full(model, one, DecodingOptions("exact"))
        alone_posterior = model(**one["net_input"], target=one["target"]).posterior_log_probs.exp()
        torch.testing.assert_close(attn[b, :n_tgt, S - n_src:], alone_extra["attn"][0][0])
        torch.testing.assert_close(posterior[b, :n_tgt, S - n_src:], alone_posterior[0])
        torch.testing.assert_close(log_probs[b, :n_tgt], alone_log_probs[0])
        assert torch.all(attn[b, :, : S - n_src] == 0)
        assert torch.all(posterior[b, :, : S - n_src] == 0)


# ---------------------------------------------------------------------------- chunked enumeration


def loss_and_grads(model, batch, chunk_bytes: int, seed: int = 0):
    """Training-mode loss of the model's objective and the gradients of every parameter."""
    model.decoder.alignment_output.chunk_bytes = chunk_bytes
    model.zero_grad()
    torch.manual_seed(seed)  # the same samples in the sampled modes
    out = model(**batch["net_input"], target=batch["target"])
    terms = ATTENTION_MODES[model.objective_name()].objective(out)
    loss = terms.loss.masked_fill(batch["target"].eq(model.decoder.dictionary.pad()), 0.0).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("mode", ["marginal", "var-enum", "hard-sample", "var-wsram"])
def test_chunked_enumeration_equals_unchunked_values_and_gradients(arch, mode):
    model = build_model(mode, arch=arch).double().train()  # dropout 0: training is deterministic
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    layer = model.decoder.alignment_output
    assert layer.rows_per_chunk(max(SRC_LENGTHS)) >= sum(TGT_LENGTHS)  # default: one chunk
    loss, grads = loss_and_grads(model, batch, UNBOUNDED)
    chunked_loss, chunked_grads = loss_and_grads(model, batch, 1)
    assert layer.rows_per_chunk(max(SRC_LENGTHS)) == 1  # one chunk per target token
    torch.testing.assert_close(chunked_loss, loss)
    assert chunked_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(chunked_grads[name], grads[name], msg=name)


def test_chunk_recomputation_replays_the_dropout_masks(arch, monkeypatch):
    """With dropout, the checkpointed backward pass recomputes each chunk with the same
    dropout masks as its forward pass: gradients equal those of the same chunks kept in
    memory (``checkpoint`` replaced by a plain call)."""
    model = build_model("var-enum", arch=arch).double().train()
    model.decoder.alignment_output.dropout = 0.3  # the dropout on o_tj, inside each chunk
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    loss, grads = loss_and_grads(model, batch, 1, seed=5)
    monkeypatch.setattr(output_layer, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
    kept_loss, kept_grads = loss_and_grads(model, batch, 1, seed=5)
    torch.testing.assert_close(loss, kept_loss)
    for name in grads:
        torch.testing.assert_close(grads[name], kept_grads[name], msg=name)


@pytest.mark.parametrize("options", DECODINGS[:3], ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_chunked_decoding_equals_unchunked(arch, options):
    model = eval_model("marginal", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    model.decoder.alignment_output.chunk_bytes = UNBOUNDED
    full, _ = decode_full(model, batch, options)
    model.decoder.alignment_output.chunk_bytes = 1
    chunked, _ = decode_full(model, batch, options)
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-12)


def test_chunked_enumeration_bounds_peak_memory():
    vocab = 3000
    model = build_model("marginal", tgt_words=vocab).train()  # float32
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    layer = model.decoder.alignment_output
    V, S, N = len(model.decoder.dictionary), max(SRC_LENGTHS), sum(TGT_LENGTHS)
    logits_bytes = N * S * V * 4  # the unchunked enumeration's logits

    def step(chunk_bytes):
        return lambda: loss_and_grads(model, batch, chunk_bytes)

    unchunked = peak_cpu_bytes(step(UNBOUNDED))
    chunked = peak_cpu_bytes(step(S * V * 4))  # one token's logits per chunk
    assert layer.rows_per_chunk(S) == 1
    assert unchunked >= logits_bytes  # the profiler sees the enumeration
    assert chunked < unchunked / 2


def test_fused_target_log_softmax_matches_autograd():
    """The fused backward equals autograd's log_softmax + gather, values and gradients."""
    from var_attn_plugin.latent.output_layer import TargetLogSoftmax

    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randint(0, 11, (7,), generator=g)
    upstream = torch.randn(7, dtype=torch.float64, generator=g)
    reference = torch.log_softmax(hidden @ weight.t() + bias, dim=-1).gather(1, target[:, None]).squeeze(1)
    fused = TargetLogSoftmax.apply(hidden, weight, bias, target)
    torch.testing.assert_close(fused, reference)
    for a, b in zip(torch.autograd.grad(fused, (hidden, weight, bias), upstream, retain_graph=True),
                    torch.autograd.grad(reference, (hidden, weight, bias), upstream)):
        torch.testing.assert_close(a, b)
    # its backward reuses the saved logits: a second backward must fail, never be wrong
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(fused, (hidden,), upstream)


# ---------------------------------------------------------------------------- the mixture over candidates


def log_space_mixture(logits, log_weights):
    """The reference: ``logsumexp_j (log r(j) + log_softmax(logits_j))`` in float64."""
    return torch.logsumexp(log_weights.double().unsqueeze(-1) + torch.log_softmax(logits.double(), dim=-1), dim=1)


@pytest.mark.parametrize("scale", [1.0, 400.0], ids=["moderate-logits", "underflowing-probabilities"])
def test_mixture_in_probability_space_equals_the_log_space_reference(scale):
    """In float32, with and without gradients (in place), for moderate logits and for logits
    spread over thousands of nats, where most probabilities underflow float32: every entry
    equals the log-space reference (float64 from the same float32 logits), the gradients too.
    The tolerance is float32 rounding of the logits themselves (the fallback recomputes some
    of them as dot products, summed in another order)."""
    torch.manual_seed(0)
    layer = output_layer.AlignmentOutputLayer(6, 6, 16, 40, 0.0, 2**30).eval()  # float32
    layer.chunk_bytes = 5 * 16 * 4 * 3  # the log-space fallback in blocks of 3 entries
    with torch.no_grad():
        layer.generator.weight.mul_(scale)
    hidden = torch.randn(7, 5, 16).tanh()
    log_weights = torch.log_softmax(torch.randn(7, 5), dim=-1)
    log_weights[0, 1] = log_weights[3, 4] = float("-inf")  # pads / candidates not kept
    leaf = hidden.clone().requires_grad_()
    logits = layer.generator(leaf)
    reference = log_space_mixture(logits, log_weights)
    floor = math.log(torch.finfo(torch.float32).tiny / torch.finfo(torch.float32).eps)
    underflowing = int((reference < floor).sum())
    assert (underflowing > 100) == (scale > 1), underflowing  # the fallback runs, or does not
    tolerance = dict(rtol=2e-6, atol=8 * torch.finfo(torch.float32).eps * float(logits.abs().max()))

    with torch.no_grad():
        in_place = layer.mixture_log_probs(hidden.clone(), log_weights)
    torch.testing.assert_close(in_place.double(), reference.detach(), **tolerance)

    with_grad = layer.mixture_log_probs(leaf, log_weights)
    assert torch.equal(with_grad, in_place)
    upstream = torch.randn(with_grad.shape)
    (grad,) = torch.autograd.grad(with_grad, leaf, upstream)
    (reference_grad,) = torch.autograd.grad(reference, leaf, upstream.double())
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("options", DECODINGS, ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_decoding_without_gradients_in_place_equals_decoding_with_gradients(arch, options):
    model = decoding_model(options, arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    for chunk_bytes in (UNBOUNDED, 1):
        model.decoder.alignment_output.chunk_bytes = chunk_bytes
        with_grad, _ = decode_full(model, batch, options)
        with torch.no_grad():
            in_place, _ = decode_full(model, batch, options)
        torch.testing.assert_close(in_place, with_grad.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("options", DECODINGS[:3], ids=lambda o: f"{o.latent_decoding}{o.kmax}")
def test_beam_search_translations_are_identical_for_every_chunk_size(arch, options):
    model = eval_model("var-enum", arch=arch)
    model.decoder.decoding = options
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    layer = model.decoder.alignment_output
    results = []
    for chunk_bytes in (UNBOUNDED, 1, 3 * layer.generator.out_features * 8):  # one chunk, 1 row, 3 rows
        layer.chunk_bytes = chunk_bytes
        generator = SequenceGenerator([model], model.decoder.dictionary, beam_size=4, max_len_b=7)
        results.append([[(h["tokens"].tolist(), float(h["score"])) for h in sentence_hypotheses]
                        for sentence_hypotheses in generator.generate([model], batch)])
    for other in results[1:]:  # the same hypotheses; scores equal up to float64 rounding of the sums
        assert [[tokens for tokens, _ in hypotheses] for hypotheses in other] == \
            [[tokens for tokens, _ in hypotheses] for hypotheses in results[0]]
        assert [score for hypotheses in other for _, score in hypotheses] == pytest.approx(
            [score for hypotheses in results[0] for _, score in hypotheses], rel=1e-12)


# ---------------------------------------------------------------------------- option ranges


@pytest.mark.parametrize("override, flag", [
    (dict(decoder_hidden_size=0), "--decoder-hidden-size must be a positive size"),
    (dict(inference_layers=0), "--inference-layers must be a positive size"),
    (dict(dropout=1.0), "--dropout is a probability in [0, 1)"),
    (dict(enum_chunk_mb=-1), "--enum-chunk-mb must be >= 0"),
    (dict(wsram_samples=0), "--wsram-samples must be at least 1"),
    (dict(gumbel_temperature=0.0), "--gumbel-temperature must be > 0"),
    (dict(dirichlet_min_alpha=2.0, dirichlet_max_alpha=1.0), "--dirichlet-min-alpha and --dirichlet-max-alpha"),
    (dict(dirichlet_min_alpha=0.0), "--dirichlet-min-alpha and --dirichlet-max-alpha"),
    (dict(dirichlet_warmup_updates=-5), "--dirichlet-warmup-updates must be >= 0"),
    (dict(q_warmup_updates=-1), "--q-warmup-updates must be >= 0"),
    (dict(q_warmup_updates=5, attention_mode="marginal"), "--attention-mode marginal has none: drop --q-warmup"),
    (dict(q_warmup_updates=5, dirichlet_warmup_updates=5, attention_mode="var-relaxed"), "pass one of them"),
])
def test_out_of_range_options_are_refused_with_the_flag(override, flag):
    check_config(VarAttnLSTMConfig(attention_mode="var-enum"))  # the defaults pass
    with pytest.raises(ValueError, match=re.escape(flag)):
        check_config(VarAttnLSTMConfig(**{"attention_mode": "var-enum", **override}))


def test_zero_chunk_budget_enumerates_one_row_at_a_time_with_the_same_result(arch):
    model = eval_model("var-enum", arch=arch)
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS)
    with torch.no_grad():
        whole, _ = decode_full(model, batch, DecodingOptions("exact"))
    one_row = eval_model("var-enum", enum_chunk_mb=0, arch=arch)
    assert one_row.decoder.alignment_output.rows_per_chunk(max(SRC_LENGTHS)) == 1
    with torch.no_grad():
        chunked, _ = decode_full(one_row, batch, DecodingOptions("exact"))
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- "auto" decoding


@pytest.mark.parametrize("mode, model_default, task_choice, expected", [
    ("var-enum", "auto", "auto", "exact"),  # latent modes marginalise exactly
    ("soft", "auto", "auto", "soft"),  # soft attention decodes softly
    ("var-enum", "kmax", "auto", "kmax"),  # the model's saved default answers the task's auto
    ("soft", "exact", "auto", "exact"),
    ("var-enum", "kmax", "soft", "soft"),  # an explicit task choice wins
    ("marginal", "auto", "kmax", "kmax"),
])
def test_auto_decoding_is_the_task_choice_then_the_model_default_then_the_mode(
        arch, mode, model_default, task_choice, expected):
    from types import SimpleNamespace

    from var_attn_plugin.task import VarAttnTranslationTask

    model = build_model(mode, default_latent_decoding=model_default, arch=arch)
    task = SimpleNamespace(cfg=SimpleNamespace(latent_decoding=task_choice, kmax=3, eos_penalty=0.0))
    options = VarAttnTranslationTask.decoding_options(task, model)
    assert options.latent_decoding == expected
    if task_choice == "auto":  # a model used without the task decodes with the same resolution
        assert model.decoder.decoding.latent_decoding == expected


# ---------------------------------------------------------------------------- the one check of decoding options


@pytest.mark.parametrize("requested, message", [
    (DecodingRequest(latent_decoding="kmax", kmax=0), "--kmax must be at least 1 (the source positions"),
    (DecodingRequest(eos_penalty=-1.0), "--eos-penalty must be >= 0, got -1.0"),
    (DecodingRequest(gnmt_lenpen=1.0, lenpen=2.0),
     "--gnmt-lenpen and --lenpen are two length penalties: pass only one (got --lenpen 2.0, --gnmt-lenpen 1.0)"),
    (DecodingRequest(latent_decoding="beam"), "--latent-decoding 'beam' is not one of auto, exact, kmax, soft"),
], ids=["kmax", "eos-penalty", "two-lenpens", "unknown"])
def test_decoding_options_no_model_can_use_are_refused_with_or_without_a_model(requested, message):
    for model in (None, build_model("var-enum")):
        with pytest.raises(UsageError, match=re.escape(message)):
            resolve_decoding_options(requested, model)


def test_decoding_options_without_a_model_are_checked_and_not_resolved():
    assert resolve_decoding_options(DecodingRequest(gnmt_lenpen=1.0, lenpen=1.0)) is None
    assert resolve_decoding_options(DecodingRequest(gnmt_lenpen=1.0)) is None  # --lenpen not known yet


def test_decoding_options_resolve_for_the_model_from_any_holder_of_them():
    model = build_model("var-enum")
    expected = DecodingOptions("kmax", 3, 2.0)
    task_cfg = SimpleNamespace(latent_decoding="kmax", kmax=3, eos_penalty=2.0, gnmt_lenpen=None)
    assert resolve_decoding_options(task_cfg, model) == expected
    assert resolve_decoding_options(DecodingRequest("kmax", 3, 2.0), model) == expected
    assert resolve_decoding_options(expected, model) == expected
    model.configure_decoding(DecodingRequest("auto", 3, 2.0))
    assert model.decoder.decoding == DecodingOptions("exact", 3, 2.0)


def test_the_saved_default_decoding_is_checked_when_decoding_is_configured():
    """A var-enum model saved with --default-latent-decoding dirichlet-mean builds (its
    checkpoint still loads for scoring and alignment, and start-up checks only a decoding the
    task names); configuring the task's auto decoding refuses it."""
    model = build_model("var-enum", default_latent_decoding="dirichlet-mean")
    check_model_decoding(model, DecodingRequest())
    with pytest.raises(UsageError, match="--latent-decoding dirichlet-mean needs a model trained with "
                                         "--attention-mode var-relaxed; this one is --attention-mode var-enum"):
        model.configure_decoding(DecodingRequest())
    with pytest.raises(UsageError, match="--latent-decoding dirichlet-mean needs"):
        check_model_decoding(build_model("var-enum"), DecodingRequest("dirichlet-mean"))


@pytest.mark.parametrize("mode, decoding, warning", [
    ("var-enum", "soft", "decoding a var-enum-trained model with soft attention (usually much worse"),
    ("soft", "kmax", "decoding a soft-trained model with kmax enumeration: its output layer was trained on"),
])
def test_a_decoding_that_is_usually_a_mistake_warns_when_configured_not_at_start_up(caplog, mode, decoding, warning):
    model = build_model(mode)
    with caplog.at_level(logging.WARNING, logger="var_attn_plugin.decoding"):
        check_model_decoding(model, DecodingRequest(decoding))
        assert not caplog.records
        model.configure_decoding(DecodingRequest(decoding))
    assert warning in caplog.text
    assert model.decoder.decoding.latent_decoding == decoding
