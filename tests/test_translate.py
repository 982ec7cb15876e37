"""``varattn-translate`` through its real command line, against ``fairseq-interactive``.

A tiny var-enum model is trained with ``fairseq-train`` on the synthetic reversal corpus in
sentencepiece pieces (``spm_corpus``); raw sentences go in, detokenised translations come
out, and they are the ``D-`` lines of ``fairseq-interactive --bpe sentencepiece`` for the
same inputs and decoding options. Inputs the model cannot read (all pieces ``<unk>``, or
empty) are warned about by both commands.
"""

import math

import pytest
from helpers import PLUGIN_DIR, fairseq_cli, generation_records
from sentencepiece_corpus import raw_test_pairs

from var_attn_plugin.tools import translate

SENTENCES = 8


def interactive(corpus, ckpt, lines, *args):
    """fairseq-interactive on raw ``lines``, one batch, with the source sentencepiece model."""
    return fairseq_cli(
        "fairseq-interactive", corpus.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", ckpt, "--cpu", "--bpe", "sentencepiece", "--sentencepiece-model", corpus.src_spm,
        "--buffer-size", "32", "--batch-size", "32", *args, input="".join(line + "\n" for line in lines))


def detokenised(stdout, count):
    """The D- lines (detokenised hypotheses) of fairseq-interactive, in input order."""
    records = {}
    for line in stdout.splitlines():
        head, _, rest = line.partition("\t")
        if head.startswith("D-"):
            records[int(head[2:])] = rest.partition("\t")[2]
    assert sorted(records) == list(range(count))
    return [records[i] for i in range(count)]


def varattn_translate(corpus, ckpt, *args, input=None, check=True):
    return fairseq_cli("varattn-translate", corpus.data, "--path", ckpt, "--spm", corpus.src_spm, "--cpu", *args,
                       input=input, check=check)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    [],
    ["--beam", "3", "--latent-decoding", "kmax", "--kmax", "2", "--gnmt-lenpen", "1", "--eos-penalty", "1"],
], ids=["defaults", "decoding-options"])
def test_translations_are_fairseq_interactive_ones(spm_corpus, spm_var_enum, tmp_path, options):
    lines, _ = raw_test_pairs(spm_corpus, SENTENCES)
    interactive_out = interactive(spm_corpus, spm_var_enum, lines, *options)
    expected = detokenised(interactive_out.stdout, len(lines))
    assert all(expected)

    from_stdin = varattn_translate(spm_corpus, spm_var_enum, *options, input="".join(f"{line}\n" for line in lines))
    assert from_stdin.stdout.splitlines() == expected
    assert "WARNING" not in from_stdin.stderr

    if options:
        return
    # the tiny model's translations hardly depend on the source, its scores do: the command's
    # machinery (the hub interface) reads the same pieces and scores them as fairseq-interactive
    records = generation_records(interactive_out.stdout)
    hub = translate.load(translate.build_parser().parse_args(
        [str(spm_corpus.data), "--path", str(spm_var_enum), "--spm", str(spm_corpus.src_spm), "--cpu"]))
    tokens = [hub.encode(line) for line in lines]
    for k, hypos in enumerate(hub.generate(tokens, beam=5)):
        assert hub.src_dict.string(tokens[k]) == records[k]["S"]
        assert hypos[0]["score"].item() / math.log(2) == pytest.approx(records[k]["H"][0], abs=1e-5)
    # the same from a file, decoded with the target sentencepiece model
    (tmp_path / "input.txt").write_text("".join(f"{line}\n" for line in lines))
    from_file = varattn_translate(spm_corpus, spm_var_enum, *options, "--input", tmp_path / "input.txt",
                                  "--target-spm", spm_corpus.tgt_spm)
    assert from_file.stdout.splitlines() == expected


@pytest.mark.slow
def test_unreadable_lines_are_warned_about_by_both_commands(spm_corpus, spm_var_enum):
    lines = ["w1 w2 w3", "hello", "", "w4 w5"]
    proc = varattn_translate(spm_corpus, spm_var_enum, input="".join(f"{line}\n" for line in lines))
    assert len(proc.stdout.splitlines()) == len(lines)  # every line still gets its line of output
    assert "WARNING: input line 2 'hello' has no piece the model knows (all 2 are <unk>)" in proc.stderr
    assert "--spm must be the source language's sentencepiece model" in proc.stderr
    assert "WARNING: input line 3 '' is empty" in proc.stderr
    assert "input line 1 " not in proc.stderr and "input line 4 " not in proc.stderr

    # the reported mistake: fairseq-interactive without --bpe sentencepiece reads raw words,
    # which are all <unk> to a sentencepiece dictionary
    out = fairseq_cli(
        "fairseq-interactive", spm_corpus.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", spm_var_enum, "--cpu", "--remove-bpe", "sentencepiece", input="w1 w2 w3\nw4 w5\n")
    log = out.stdout + out.stderr
    assert generation_records(out.stdout)[0]["S"] == "<unk><unk><unk>"  # what was reported
    for number, line in ((1, "w1 w2 w3"), (2, "w4 w5")):
        assert f"input line {number} '{line}' has no piece the model knows" in log
    assert "pass --bpe sentencepiece --sentencepiece-model SOURCE.model" in log


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--no-spm"], "the model's source dictionary holds sentencepiece pieces: pass --spm SOURCE.model"),
    (["--spm", "missing.model"], "--spm missing.model: no such file"),
    (["--data", "."], "cannot load the checkpoint's dictionaries (no dict.*.txt in"),
    (["--spm", "OTHER"], "of the model's source dictionary are pieces of it (the source language's own model has"),
    (["--target-spm", "OTHER"], "of the model's target dictionary are pieces of it"),
    (["--gnmt-lenpen", "1", "--lenpen", "2"], "--gnmt-lenpen and --lenpen are two length penalties"),
    (["--beam", "0"], "--beam must be at least 1, got 0"),
])
def test_user_errors_name_the_flag(spm_corpus, spm_var_enum, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    data = str(spm_corpus.data)
    if args[0] == "--data":
        data, args = args[1], []
    spm = [] if args == ["--no-spm"] else ["--spm", str(spm_corpus.src_spm)]
    args = [str(spm_corpus.other_spm) if a == "OTHER" else a for a in args if a != "--no-spm"]
    argv = [data, "--path", str(spm_var_enum), *spm, *args]
    with pytest.raises(SystemExit) as exit:
        translate.main(argv)
    assert exit.value.code == 1
    assert message in capsys.readouterr().err
