"""varattn-align: subword-to-word mapping, batched link extraction, and the exporter on a model
trained on the synthetic reversal task (target position i aligns to source position n-1-i)."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary
from helpers import PLUGIN_DIR, TINY_FLAGS, build_model, fairseq_cli, random_batch

from var_attn_plugin.alignment import (
    SentenceAlignment,
    UsageError,
    alignment_log_probs,
    batch_alignments,
    encode_lines,
    resolve_distribution,
    to_words,
)
from var_attn_plugin.tools.aer import GoldAlignment, read_prediction, score
from var_attn_plugin.tools.words import detect_scheme, merge_pieces, word_ids, word_links, word_probs

# ------------------------------------------------------------------ pieces to words

SPM_PIECES = ["▁Haus", "aufgabe", "n", "▁sind", "▁", "toll", "."]
BPE_PIECES = ["Haus@@", "aufgab@@", "en", "sind", "toll@@", "."]


def test_sentencepiece_word_ids_and_words():
    assert word_ids(SPM_PIECES, "sentencepiece") == [0, 0, 0, 1, 2, 2, 2]
    assert merge_pieces(SPM_PIECES, "sentencepiece") == ["Hausaufgaben", "sind", "toll."]
    # a sentence whose first piece has no marker still starts a word there
    assert word_ids(["Ha", "us", "▁x"], "sentencepiece") == [0, 0, 1]
    # an unknown piece inside a word continues it
    assert word_ids(["▁a", "<unk>", "▁b"], "sentencepiece") == [0, 0, 1]


def test_bpe_and_plain_word_ids():
    assert word_ids(BPE_PIECES, "bpe") == [0, 0, 0, 1, 2, 2]
    assert merge_pieces(BPE_PIECES, "bpe") == ["Hausaufgaben", "sind", "toll."]
    assert word_ids(["a", "b@@", "c"], "none") == [0, 1, 2]
    assert word_ids([], "sentencepiece") == []


def test_detect_scheme():
    assert detect_scheme(["<s>", "</s>", "▁die", "▁Haus", "en", "."]) == "sentencepiece"
    assert detect_scheme(["<s>", "die", "Haus@@", "en"]) == "bpe"
    assert detect_scheme(["<s>", "die", "Haus"]) == "none"


def test_any_rule_links_words_touched_by_piece_links():
    # source pieces 0,1 | 2 form words 0 | 1; target pieces 0 | 1,2 form words 0 | 1
    src_words, tgt_words = [0, 0, 1], [0, 1, 1]
    links = {(1, 0), (2, 1), (2, 2), (0, 2)}
    assert word_links(links, src_words, tgt_words) == {(0, 0), (1, 1), (0, 1)}


def test_sum_rule_by_hand():
    probs = np.array([[0.5, 0.2, 0.3],
                      [0.1, 0.1, 0.8],
                      [0.3, 0.3, 0.4]])  # 3 target x 3 source pieces
    # target words: {0, 1} and {2}; source words: {0} and {1, 2}
    expected = np.array([[(0.5 + 0.1) / 2, (0.2 + 0.3 + 0.1 + 0.8) / 2],
                         [0.3, 0.3 + 0.4]])
    merged = word_probs(probs, [0, 0, 1], [0, 1, 1])
    np.testing.assert_allclose(merged, expected)
    np.testing.assert_allclose(merged.sum(axis=1), 1.0)


def test_to_words_both_rules():
    # pieces: source "▁a b ▁c </s>", target "▁X ▁Y z </s>"
    probs = np.array([[0.1, 0.2, 0.6, 0.1],
                      [0.4, 0.0, 0.5, 0.1],
                      [0.3, 0.5, 0.2, 0.0],
                      [0.2, 0.2, 0.2, 0.4]])
    sentence = SentenceAlignment(0, ["▁a", "b", "▁c", "</s>"], ["▁X", "▁Y", "z", "</s>"], probs,
                                 links={(2, 0), (2, 1), (1, 2)})  # the argmax links
    any_rule = to_words(sentence, "sentencepiece", "sentencepiece", "any", None, "</s>")
    assert any_rule == {(1, 0), (1, 1), (0, 1)}
    # sum: target word Y = pieces 1, 2 -> source word a: (0.4 + 0.0 + 0.3 + 0.5) / 2 = 0.6,
    # c: (0.5 + 0.2) / 2 = 0.35; X -> a: 0.3, c: 0.6
    assert to_words(sentence, "sentencepiece", "sentencepiece", "sum", None, "</s>") == {(1, 0), (0, 1)}
    assert to_words(sentence, "sentencepiece", "sentencepiece", "sum", 0.34, "</s>") == {(1, 0), (0, 1), (1, 1)}


def test_encode_lines_with_sentencepiece_round_trips_words(tmp_path):
    import sentencepiece

    lines = ["die Hausaufgaben sind schon fertig .", "das Haus ist gross und alt .",
             "wir sind fertig mit den Aufgaben ."]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(lines * 20), model_writer=model,
                                             vocab_size=40, hard_vocab_limit=False, minloglevel=2)
    path = tmp_path / "spm.model"
    path.write_bytes(model.getvalue())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    dictionary = Dictionary()
    for i in range(processor.get_piece_size()):
        dictionary.add_symbol(processor.id_to_piece(i))
    raw = ["die Aufgaben sind alt .", "Haus und Haus"]
    for line, ids in zip(raw, encode_lines(raw, dictionary, str(path))):
        assert ids[-1] == dictionary.eos()
        pieces = [dictionary[i] for i in ids[:-1].tolist()]
        assert len(pieces) > len(line.split())  # really split into subwords
        assert merge_pieces(pieces, detect_scheme(dictionary.symbols)) == line.split()


# ------------------------------------------------------------------ links from a batch

SRC_LENGTHS, TGT_LENGTHS = [4, 7, 2, 5], [6, 3, 5, 2]  # source lengths include EOS


def sentence_batch(model, b, batch):
    """Sentence ``b`` of ``batch`` alone, without padding."""
    src = batch["net_input"]["src_tokens"][b]
    src = src[src.ne(model.encoder.dictionary.pad())].unsqueeze(0)
    steps = batch["target"][b].ne(model.decoder.dictionary.pad())
    return {
        "id": batch["id"][b:b + 1],
        "net_input": {"src_tokens": src, "src_lengths": torch.tensor([src.size(1)]),
                      "prev_output_tokens": batch["net_input"]["prev_output_tokens"][b, steps].unsqueeze(0)},
        "target": batch["target"][b, steps].unsqueeze(0),
    }


@pytest.mark.parametrize("distribution", ["posterior", "prior", "exact-posterior"])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_batched_links_equal_one_by_one_brute_force(arch, distribution, threshold):
    model = build_model("var-enum", seed=3, arch=arch).eval()
    task = SimpleNamespace(source_dictionary=model.encoder.dictionary, target_dictionary=model.decoder.dictionary)
    left = batch_alignments(model, task, random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=4),
                            distribution, threshold)
    right_batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=4, left_pad_source=False)
    right = batch_alignments(model, task, right_batch, distribution, threshold)
    for b, (sentence, other) in enumerate(zip(left, right)):
        alone, = batch_alignments(model, task, sentence_batch(model, b, right_batch), distribution, threshold)
        assert sentence.probs.shape == (TGT_LENGTHS[b], SRC_LENGTHS[b])
        for candidate in (other, alone):
            assert candidate.links == sentence.links
            assert candidate.src_pieces == sentence.src_pieces and candidate.tgt_pieces == sentence.tgt_pieces
            np.testing.assert_allclose(candidate.probs, sentence.probs, atol=1e-5)
        # brute force on the sentence's own matrix: rows and columns without EOS
        real = sentence.probs[:-1, :-1]
        if threshold is None:
            expected = {(int(real[t].argmax()), t) for t in range(real.shape[0])}
        else:
            expected = {(j, t) for t in range(real.shape[0]) for j in range(real.shape[1]) if real[t, j] >= threshold}
        assert sentence.links == expected
        np.testing.assert_allclose(sentence.probs.sum(axis=1), 1.0, atol=1e-5)


def test_exact_posterior_is_bayes_rule_and_masks_pads(arch):
    model = build_model("marginal", seed=5, arch=arch).eval()
    batch = random_batch(model, SRC_LENGTHS, TGT_LENGTHS, seed=6)
    log_probs = alignment_log_probs(model, batch, ["prior", "exact-posterior"])
    with torch.no_grad():
        out = model(**batch["net_input"], target=batch["target"])
    pads = batch["net_input"]["src_tokens"].eq(model.encoder.dictionary.pad()).unsqueeze(1)  # B x 1 x S
    posterior = log_probs["exact-posterior"].exp()  # B x T x S
    assert torch.all(posterior.masked_select(pads) == 0)
    # p(z=j | y_t) / p(z=k | y_t) = p(z=j) p(y_t | j) / (p(z=k) p(y_t | k)), against position 0...
    joint = out.prior_log_probs + out.token_log_probs
    ratio = log_probs["exact-posterior"] - log_probs["exact-posterior"][..., -1:]  # ...the EOS, never a pad
    expected = joint - joint[..., -1:]
    real = ~pads.expand_as(joint)
    torch.testing.assert_close(ratio[real], expected[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(posterior.sum(-1), torch.ones_like(posterior.sum(-1)))


def test_resolve_distribution_names_the_flag():
    assert resolve_distribution(build_model("var-enum"), "auto") == "posterior"
    assert resolve_distribution(build_model("marginal"), "auto") == "exact-posterior"
    assert resolve_distribution(build_model("soft"), "auto") == "prior"
    with pytest.raises(UsageError, match="--distribution posterior needs a variational model"):
        resolve_distribution(build_model("hard-enum"), "posterior")
    with pytest.raises(UsageError, match="--distribution exact-posterior .* --distribution prior"):
        resolve_distribution(build_model("soft"), "exact-posterior")


# ------------------------------------------------------------------ a trained model

TRAIN_EPOCHS = 80  # ~640 updates: the reversal alignment is learnt by epoch ~60 (about 15 s on one core)


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A tiny var-enum model trained on the synthetic reversal task, and its test gold."""
    root = tmp_path_factory.mktemp("align")
    fairseq_cli(
        "fairseq-train", synthetic_data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--arch", "varattn_lstm", "--criterion", "varattn_elbo", "--attention-mode", "var-enum",
        *TINY_FLAGS, "--dropout", "0", "--optimizer", "adam", "--lr", "1e-2", "--clip-norm", "5",
        "--max-tokens", "500", "--max-epoch", TRAIN_EPOCHS, "--cpu", "--seed", "1",
        "--save-dir", root / "ckpt", "--no-epoch-checkpoints", "--no-last-checkpoints", "--log-format", "none",
    )
    raw = synthetic_data.parent / "raw"
    gold = []
    for line in (raw / "test.src").read_text().splitlines():
        n = len(line.split())
        reversal = {(n - 1 - i, i) for i in range(n)}  # target i <- source n-1-i
        gold.append(GoldAlignment(frozenset(reversal), frozenset(reversal)))
    return SimpleNamespace(data=synthetic_data, raw=raw, ckpt=root / "ckpt" / "checkpoint_best.pt",
                           gold=gold, root=root)


def export(trained, *args):
    return fairseq_cli("varattn-align", "--path", trained.ckpt, "--cpu", *args).stdout


@pytest.fixture(scope="module")
def posterior_links(trained):
    return export(trained, trained.data, "--gen-subset", "test", "--distribution", "posterior")


def as_links(text):
    return [{tuple(map(int, link.split("-"))) for link in line.split()} for line in text.splitlines()]


@pytest.mark.slow
def test_posterior_recovers_the_known_alignment(trained, posterior_links, tmp_path):
    prior_file = tmp_path / "prior.txt"
    export(trained, trained.data, "--distribution", "prior", "--output", prior_file)
    posterior = score(trained.gold, as_links(posterior_links))
    prior = score(trained.gold, read_prediction(prior_file))
    assert posterior.predicted == sum(len(g.sure) for g in trained.gold)  # one link per target word
    assert posterior.aer < 0.15
    assert posterior.aer <= prior.aer


@pytest.mark.slow
def test_raw_text_one_by_one_equals_binarised_batches(trained, posterior_links):
    raw = export(trained, "--source-file", trained.raw / "test.src", "--target-file", trained.raw / "test.tgt",
                 "--batch-size", "1")
    assert raw == posterior_links
    # words == tokens in this corpus, so either word rule gives back the token links
    words = export(trained, trained.data, "--words", "--word-rule", "sum", "--max-tokens", "60")
    assert words == posterior_links


@pytest.mark.slow
def test_threshold_links_above_one_half_are_argmax_links(trained, posterior_links):
    above_half = as_links(export(trained, trained.data, "--threshold", "0.5"))
    argmax = as_links(posterior_links)
    assert len(above_half) == len(argmax)
    assert all(a <= b for a, b in zip(above_half, argmax))
    assert sum(map(len, above_half)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--source-file", "SRC", "--target-file", "TGT1"], "--source-file has 3 lines but --target-file has 1"),
    (["--spm", "x.model"], "--spm encodes raw text"),
    (["--source-file", "SRC", "--target-file", "SRC", "--spm", "x.model"], "pass --target-spm with the target"),
    (["--threshold", "1.5"], "--threshold is a probability"),
])
def test_user_errors(trained, tmp_path, args, message):
    (tmp_path / "SRC").write_text("w1 w2\nw3\nw4\n")
    (tmp_path / "TGT1").write_text("W2 W1\n")
    args = [str(tmp_path / a) if a in ("SRC", "TGT1") else a for a in args]
    proc = fairseq_cli("varattn-align", trained.data, "--path", trained.ckpt, *args, check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ the Transformer


@pytest.mark.slow
def test_alignment_tools_read_a_transformer_checkpoint(synthetic_data, tmp_path):
    """varattn-align (every distribution a variational model has) and varattn-plot on a
    briefly trained varattn_transformer: one link per target word, inside the sentence pair
    (the distributions themselves are checked for both architectures above)."""
    from helpers import train_args

    fairseq_cli("fairseq-train", *train_args(synthetic_data, tmp_path, "var-enum", "--max-update", "20",
                                             "--dropout", "0", arch="transformer"))
    checkpoint = tmp_path / "checkpoint_last.pt"
    sources = (synthetic_data.parent / "raw" / "test.src").read_text().splitlines()
    for distribution in ("prior", "posterior", "exact-posterior"):
        links = as_links(fairseq_cli("varattn-align", synthetic_data, "--path", checkpoint, "--cpu",
                                     "--gen-subset", "test", "--distribution", distribution).stdout)
        assert len(links) == len(sources)
        for sentence, sentence_links in zip(sources, links):
            n = len(sentence.split())
            assert all(0 <= s <= n and 0 <= t for s, t in sentence_links)  # EOS included
            assert sorted(t for _, t in sentence_links) == list(range(len(sentence_links)))  # one per word
    figure = tmp_path / "figure.png"
    fairseq_cli("varattn-plot", synthetic_data, "--path", checkpoint, "--id", "0", "--cpu", "-o", figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ raw text: warnings, pipes, mistakes


@pytest.mark.slow
def test_raw_text_warnings_closed_pipe_and_nan_weights(spm_corpus, spm_var_enum, tmp_path, capsys, monkeypatch):
    """A source line in a script the model has never seen is named in a warning and still
    aligned; a reader that stops reading ends the command quietly; a checkpoint with NaN
    weights is refused (its links would all point to position 0)."""
    import sys

    from var_attn_plugin.tools import align

    (tmp_path / "src").write_text("w1 w2 w3\nw1 你 好 مر w2\n")
    (tmp_path / "tgt").write_text("W3 W2 W1\nW2 W1\n")
    argv = [str(spm_corpus.data), "--path", str(spm_var_enum), "--source-file", str(tmp_path / "src"),
            "--target-file", str(tmp_path / "tgt"), "--spm", str(spm_corpus.src_spm), "--target-spm",
            str(spm_corpus.tgt_spm), "--cpu"]
    align.main(argv)
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and all(captured.out.splitlines())
    assert "--source-file line 2 'w1 你 好 مر w2' is mostly unknown to the model (6 of its 10 pieces" in captured.err
    assert "--source-file line 1 " not in captured.err

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(SystemExit) as exit:
        align.main(argv)
    assert exit.value.code == 0 and "Traceback" not in capsys.readouterr().err
    monkeypatch.undo()

    state = torch.load(spm_var_enum)
    state["model"]["encoder.embed_tokens.weight"][4, 0] = float("nan")
    state["model"]["decoder.embed_tokens.weight"][:] = float("inf")
    torch.save(state, tmp_path / "diverged.pt")
    proc = fairseq_cli("varattn-align", spm_corpus.data, "--path", tmp_path / "diverged.pt", "--cpu",
                       "--gen-subset", "valid", check=False)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "error" in line]
    assert line.startswith("varattn-align: error: the checkpoint holds NaN or infinite weights (2 of its ")
    assert "encoder.embed_tokens.weight, decoder.embed_tokens.weight" in line or \
        "decoder.embed_tokens.weight, encoder.embed_tokens.weight" in line
    assert "diverged" in line and "use an earlier checkpoint" in line and "lower --lr" in line


def test_command_line_mistakes_exit_1_with_one_line(capsys):
    from var_attn_plugin.tools import align

    with pytest.raises(SystemExit) as exit:
        align.main(["--path", "x.pt", "--threshold", "high"])
    assert exit.value.code == 1
    assert capsys.readouterr().err == ("varattn-align: error: argument --threshold: invalid float value: 'high' "
                                       "(see varattn-align --help)\n")
