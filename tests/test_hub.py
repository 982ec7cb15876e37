"""The hub interface (``VarAttnModel.from_pretrained``): translation and alignment from Python.

Checkpoints come from the real ``fairseq-train`` on the synthetic reversal corpus in
sentencepiece pieces (``spm_corpus``). ``translate`` must give ``varattn-translate``'s
output (itself tested against ``fairseq-interactive``); ``align`` must give distributions
over source words that are the model's own teacher-forced prior, posterior q and exact
posterior ``p(z_t = j | x, y_<=t) ∝ p(z_t = j | x, y_<t) p(y_t | x, y_<t, z_t = j)``.
"""

import logging
import shutil

import pytest
import torch
from helpers import PLUGIN_DIR, fairseq_cli
from sentencepiece_corpus import raw_test_pairs, train_model

from var_attn_plugin.hub import PLUGIN_DIR as HUB_PLUGIN_DIR
from var_attn_plugin.hub import UsageError, VarAttnHubInterface
from var_attn_plugin.model import VarAttnModel
from var_attn_plugin.tools import align, translate

SENTENCES = 6


def load(corpus, ckpt, **kwargs) -> VarAttnHubInterface:
    """The hub interface the README shows: checkpoint directory, file, data-bin, sentencepiece."""
    kwargs = {"sentencepiece_model": str(corpus.src_spm), "target_sentencepiece_model": str(corpus.tgt_spm),
              **kwargs}
    return VarAttnModel.from_pretrained(str(ckpt.parent), checkpoint_file=ckpt.name,
                                        data_name_or_path=str(corpus.data), bpe="sentencepiece", **kwargs)


@pytest.fixture(scope="module")
def hub(spm_corpus, spm_var_enum):
    return load(spm_corpus, spm_var_enum)


@pytest.fixture(scope="module")
def transformer_hub(spm_corpus, tmp_path_factory):
    """The hub interface of a tiny var-enum varattn_transformer."""
    ckpt = train_model(spm_corpus, tmp_path_factory.mktemp("spm_transformer"), "var-enum", 40, arch="transformer")
    return load(spm_corpus, ckpt)


@pytest.fixture(scope="module")
def marginal_ckpt(spm_corpus, tmp_path_factory):
    """A latent but not variational model: no inference network, no q."""
    return train_model(spm_corpus, tmp_path_factory.mktemp("spm_marginal"), "marginal", 2)


def lines_in(lines):
    return "".join(f"{line}\n" for line in lines)


# ------------------------------------------------------------------ translation


@pytest.mark.slow
def test_translate_is_varattn_translate(spm_corpus, spm_var_enum, hub, capsys, tmp_path):
    assert isinstance(hub, VarAttnHubInterface)
    lines, _ = raw_test_pairs(spm_corpus, SENTENCES)
    command = fairseq_cli("varattn-translate", spm_corpus.data, "--path", spm_var_enum, "--spm", spm_corpus.src_spm,
                          "--cpu", input=lines_in(lines)).stdout.splitlines()
    assert hub.translate(lines) == command
    assert hub.translate(lines[0]) == command[0]

    # decoding options are per call, as the command's flags
    options = dict(beam=3, latent_decoding="kmax", kmax=2, gnmt_lenpen=1.0, eos_penalty=1.0)
    (tmp_path / "input.txt").write_text(lines_in(lines))
    translate.main([str(spm_corpus.data), "--path", str(spm_var_enum), "--spm", str(spm_corpus.src_spm), "--cpu",
                    "--input", str(tmp_path / "input.txt"), "--beam", "3", "--latent-decoding", "kmax",
                    "--kmax", "2", "--gnmt-lenpen", "1", "--eos-penalty", "1"])
    assert hub.translate(lines, **options) == capsys.readouterr().out.splitlines()
    assert (hub.task.cfg.latent_decoding, hub.task.cfg.kmax, hub.task.cfg.gnmt_lenpen) == ("auto", 5, None)


@pytest.mark.slow
def test_loading_uses_the_plugin_here_whatever_user_dir_was_saved_or_given(spm_corpus, spm_var_enum, hub, tmp_path):
    """A checkpoint trained elsewhere saves that machine's --user-dir; fairseq imports a
    user_dir given to from_pretrained by path, and refuses a second copy of the package."""
    state = torch.load(spm_var_enum)
    state["cfg"]["common"]["user_dir"] = "/nonexistent/machine/var_attn_plugin"
    moved = tmp_path / "checkpoint_moved.pt"
    torch.save(state, moved)
    other_copy = shutil.copytree(PLUGIN_DIR, tmp_path / "elsewhere" / "var_attn_plugin")

    from fairseq import hub_utils

    with pytest.raises(ImportError, match="not globally unique"):  # fairseq's loader on its own
        hub_utils.from_pretrained(str(tmp_path), "checkpoint_moved.pt", str(spm_corpus.data), user_dir=str(other_copy))

    lines, _ = raw_test_pairs(spm_corpus, 3)
    for user_dir in (None, str(other_copy), "/nonexistent/var_attn_plugin"):
        kwargs = {} if user_dir is None else {"user_dir": user_dir}
        loaded = load(spm_corpus, moved, **kwargs)
        assert loaded.cfg.common.user_dir == HUB_PLUGIN_DIR
        assert loaded.translate(lines) == hub.translate(lines)


@pytest.mark.slow
def test_unreadable_input_is_warned_about(spm_corpus, spm_var_enum, caplog):
    raw_words = VarAttnModel.from_pretrained(spm_var_enum, data_name_or_path=str(spm_corpus.data))  # no bpe
    with caplog.at_level(logging.WARNING, logger="var_attn_plugin.hub"):
        raw_words.translate(["w1 w2", ""])
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("sentence 1 'w1 w2' has no piece the model knows") and "sentencepiece_model=" in m
               for m in messages), messages
    assert any(m.startswith("sentence 2 '' is empty") for m in messages), messages


@pytest.mark.slow
@pytest.mark.parametrize("call, message", [
    (lambda c, ckpt: VarAttnModel.from_pretrained(ckpt.parent, checkpoint_file="missing.pt"), "no checkpoint file"),
    (lambda c, ckpt: VarAttnModel.from_pretrained(ckpt, data_name_or_path=str(ckpt.parent)),
     "pass data_name_or_path="),
    (lambda c, ckpt: VarAttnModel.from_pretrained(ckpt, data_name_or_path=str(c.data), sentencepiece_model="x.model"),
     "sentencepiece_model='x.model': no such sentencepiece model file"),
    (lambda c, ckpt: load(c, ckpt, target_sentencepiece_model=None).align("w1", "W1"),
     "pass target_sentencepiece_model="),
    (lambda c, ckpt: load(c, ckpt, sentencepiece_model=str(c.other_spm)),
     "of the model's source dictionary are pieces of it .* pass the source language's sentencepiece model"),
    (lambda c, ckpt: load(c, ckpt, target_sentencepiece_model=str(c.other_spm)),
     "target_sentencepiece_model='.*': only 0% of the model's target dictionary"),
    (lambda c, ckpt: VarAttnModel.from_pretrained(ckpt, data_name_or_path=str(c.data), bpe="sentencepiece"),
     "bpe='sentencepiece' needs sentencepiece_model="),
], ids=["checkpoint", "data", "spm", "target-spm", "other-spm", "other-target-spm", "no-spm"])
def test_user_errors_name_the_argument(spm_corpus, spm_var_enum, call, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(spm_corpus, spm_var_enum)


# ------------------------------------------------------------------ alignment


def teacher_forced(hub, source, target):
    """The model's own quantities for one pair: ``(T, S)`` prior and posterior log-probs,
    ``(T, S)`` log p(y_t | z_t = j) and ``(T,)`` log p(y_t | x, y_<t) of exact decoding."""
    model = hub.models[0]
    src = hub.encode(source)[None]  # 1 x S
    tgt = hub.encode_target(target)[None]  # 1 x T
    prev = torch.cat([tgt.new_full((1, 1), hub.tgt_dict.eos()), tgt[:, :-1]], dim=1)
    with torch.no_grad():
        out = model(src, torch.tensor([src.size(1)]), prev, target=tgt)
        decoded, _ = model(src, torch.tensor([src.size(1)]), prev)  # B x T x V, the decoding path
    marginal = decoded[0].gather(-1, tgt[0][:, None]).squeeze(-1)
    posterior = out.posterior_log_probs[0] if out.posterior_log_probs is not None else None
    return out.prior_log_probs[0], posterior, out.token_log_probs[0], marginal


def word_of_pieces(pieces):
    """Word index of each piece (``▁`` starts a word; EOS is a word of its own)."""
    ids, word = [], -1
    for k, piece in enumerate(pieces):
        word += k == 0 or piece.startswith("\u2581") or piece == "</s>"
        ids.append(word)
    return ids


def by_words(probs, tgt_pieces, src_pieces):
    """``(T, S)`` -> ``(I, J)``: mean over a target word's pieces of the sum over a source word's."""
    tgt_ids, src_ids = word_of_pieces(tgt_pieces), word_of_pieces(src_pieces)
    result = torch.zeros(tgt_ids[-1] + 1, src_ids[-1] + 1, dtype=probs.dtype)
    counts = torch.zeros(tgt_ids[-1] + 1, 1, dtype=probs.dtype)
    for t, i in enumerate(tgt_ids):
        counts[i] += 1
        for s, j in enumerate(src_ids):
            result[i, j] += probs[t, s]
    return result / counts


@pytest.mark.slow
@pytest.mark.parametrize("interface", ["hub", "transformer_hub"])
def test_align_gives_the_models_teacher_forced_distributions(spm_corpus, interface, request):
    hub = request.getfixturevalue(interface)
    sources, targets = raw_test_pairs(spm_corpus, 3)
    for source, target in zip(sources, targets):
        words = hub.align(source, target)
        pieces = hub.align(source, target, words=False)
        assert words.source == source.split() + ["</s>"] and words.target == target.split() + ["</s>"]
        assert pieces.source == pieces.source_pieces and pieces.source_pieces[0] == "\u2581w"

        prior, posterior, token, marginal = teacher_forced(hub, source, target)
        exact = torch.log_softmax(prior + token, dim=-1)  # ∝ prior · likelihood
        # its normaliser is the likelihood that decoding assigns to the target
        torch.testing.assert_close(torch.logsumexp(prior + token, dim=-1), marginal, atol=1e-5, rtol=0)
        for name, expected in (("prior", prior), ("posterior", posterior), ("exact_posterior", exact)):
            torch.testing.assert_close(getattr(pieces, name), expected.exp(), atol=1e-6, rtol=0)
            word_level = getattr(words, name)
            assert word_level.shape == (len(words.target), len(words.source))
            torch.testing.assert_close(word_level.sum(-1), torch.ones(len(words.target)), atol=1e-5, rtol=0)
            torch.testing.assert_close(
                word_level, by_words(expected.exp(), pieces.target_pieces, pieces.source_pieces), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_align_has_no_posterior_without_an_inference_network(spm_corpus, marginal_ckpt):
    hub = load(spm_corpus, marginal_ckpt)
    assert hub.models[0].inference_network is None
    (source,), (target,) = raw_test_pairs(spm_corpus, 1)
    alignment = hub.align(source, target)
    assert alignment.posterior is None
    prior, _, token, _ = teacher_forced(hub, source, target)
    pieces = hub.align(source, target, words=False)
    torch.testing.assert_close(pieces.exact_posterior, torch.softmax(prior + token, dim=-1), atol=1e-6, rtol=0)
    for matrix in (alignment.prior, alignment.exact_posterior):
        torch.testing.assert_close(matrix.sum(-1), torch.ones(len(alignment.target)), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_translate_and_align_on_the_gpu_match_the_cpu(spm_corpus, spm_var_enum, hub):
    gpu = load(spm_corpus, spm_var_enum).cuda()
    assert gpu.device.type == "cuda"
    lines, targets = raw_test_pairs(spm_corpus, SENTENCES)
    assert gpu.translate(lines) == hub.translate(lines)
    on_gpu, on_cpu = gpu.align(lines[0], targets[0]), hub.align(lines[0], targets[0])
    for name in ("prior", "posterior", "exact_posterior"):
        assert getattr(on_gpu, name).device.type == "cpu"
        torch.testing.assert_close(getattr(on_gpu, name), getattr(on_cpu, name), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_varattn_align_on_raw_text_links_the_argmax_of_align(spm_corpus, spm_var_enum, hub, tmp_path, capsys):
    sources, targets = raw_test_pairs(spm_corpus, 3)
    (tmp_path / "src").write_text(lines_in(sources))
    (tmp_path / "tgt").write_text(lines_in(targets))
    argv = [str(spm_corpus.data), "--path", str(spm_var_enum), "--source-file", str(tmp_path / "src"),
            "--target-file", str(tmp_path / "tgt"), "--distribution", "exact-posterior", "--cpu"]
    align.main(argv + ["--spm", str(spm_corpus.src_spm), "--target-spm", str(spm_corpus.tgt_spm)])
    lines = capsys.readouterr().out.splitlines()
    for source, target, line in zip(sources, targets, lines):
        exact = hub.align(source, target, words=False).exact_posterior[:-1, :-1]  # EOS is never linked
        links = sorted((j, i) for i, j in enumerate(exact.argmax(-1).tolist()))  # (source, target) pieces
        assert line == " ".join(f"{j}-{i}" for j, i in links)

    for extra, message in ((["--spm", str(spm_corpus.src_spm)], "--spm encodes the source text only"),
                           (["--spm", str(spm_corpus.other_spm), "--target-spm", str(spm_corpus.tgt_spm)],
                            "of the model's source dictionary are pieces of it")):
        with pytest.raises(SystemExit):
            align.main(argv + extra)
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_transformer_translates_through_the_hub(spm_corpus, transformer_hub):
    sources, _ = raw_test_pairs(spm_corpus, 4)
    translations = transformer_hub.translate(sources, beam=3, latent_decoding="kmax", kmax=2)
    assert len(translations) == len(sources) and all(isinstance(t, str) for t in translations)
    assert translations == [transformer_hub.translate(s, beam=3, latent_decoding="kmax", kmax=2) for s in sources]


@pytest.mark.slow
def test_misspelt_keywords_are_refused(hub):
    with pytest.raises(UsageError, match=r"translate\(\) got an unknown keyword 'beem' \(did you mean 'beam'\?\); "
                                         r"valid keywords: .*gnmt_lenpen.*latent_decoding.*lenpen"):
        hub.translate("w1 w2", beem=10)
    with pytest.raises(UsageError, match=r"align\(\) got an unknown keyword 'typo'; valid keywords: source, target, "
                                         r"words$"):
        hub.align("w1 w2", "W2 W1", typo=True)
    with pytest.raises(UsageError, match=r"generate\(\) got an unknown keyword 'lenpn' \(did you mean 'lenpen'\?\)"):
        hub.generate([hub.encode("w1 w2")], lenpn=2.0)
    with pytest.raises(UsageError, match=r"'kmx' \(did you mean 'kmax'\?\)"):
        hub.sample(["w1 w2"], kmx=2)
    # the valid ones still work: fairseq's generation options, the task's decoding options
    assert isinstance(hub.translate("w1 w2", beam=2, lenpen=1.0, max_len_b=5, latent_decoding="kmax", kmax=2), str)


@pytest.mark.slow
def test_sentences_in_an_unknown_script_are_warned_about(hub, caplog):
    with caplog.at_level(logging.WARNING, logger="var_attn_plugin.hub"):
        translations = hub.translate(["w1 w2", "w1 你 好 مر w2"])
        hub.align("w1 你 好 مر w2", "W2 W1")
    assert len(translations) == 2
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("sentence 2 'w1 你 好 مر w2' is mostly unknown to the model (6 of its 10 pieces")
               for m in messages), messages
    assert any(m.startswith("source sentence 1 'w1 你 好 مر w2' is mostly unknown") for m in messages), messages
    assert not any(m.startswith("sentence 1 ") for m in messages), messages
