"""``varattn-translate`` through its real command line, against ``fairseq-interactive``.

A tiny var-enum model is trained with ``fairseq-train`` on the synthetic reversal corpus in
sentencepiece pieces (``spm_corpus``); raw sentences go in, detokenised translations come
out, and they are the ``D-`` lines of ``fairseq-interactive --bpe sentencepiece`` for the
same inputs and decoding options. Inputs the model cannot read (all pieces ``<unk>``, or
empty) are warned about by both commands.
"""

import math
import os
import subprocess

import pytest
from helpers import BIN_DIR, PLUGIN_DIR, fairseq_cli, generation_records
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


def translate_bytes(corpus, ckpt, data: bytes, *args):
    """varattn-translate reading ``data`` (bytes, not necessarily UTF-8) from stdin."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([str(BIN_DIR / "varattn-translate"), str(corpus.data), "--path", str(ckpt), "--spm",
                           str(corpus.src_spm), "--cpu", *args], input=data, capture_output=True, env=env, timeout=600)


@pytest.mark.slow
def test_a_bad_line_costs_only_that_line(spm_corpus, spm_var_enum):
    """Line 3 is not UTF-8 and line 4 has 10,000 words (20,001 pieces with EOS, over the model's
    1024 source positions): each is named on stderr and answered with an empty line; lines 1,
    2 and 5 are translated as on their own. --strict refuses the input before translating."""
    good, _ = raw_test_pairs(spm_corpus, 3)
    data = b"".join([good[0].encode() + b"\n", good[1].encode() + b"\n", b"w1 \xff\xfe w2\n",
                     (" ".join(["w1"] * 10000)).encode() + b"\n", good[2].encode() + b"\n"])
    proc = translate_bytes(spm_corpus, spm_var_enum, data)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err[-3000:]
    out = proc.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) == 6  # five lines, each ended
    alone = varattn_translate(spm_corpus, spm_var_enum, input="".join(f"{line}\n" for line in good))
    assert [out[0], out[1], out[4]] == alone.stdout.splitlines() and all(alone.stdout.splitlines())
    assert out[2] == "" and out[3] == ""
    assert "WARNING: input line 3 is not UTF-8 text (byte 0xff at byte 4 of the line" in err
    assert "WARNING: input line 4 'w1 w1" in err and "is too long: 20001 pieces with EOS, more than the model's " \
        "1024 source positions" in err
    assert "it gets an empty output line" in err
    for number in (1, 2, 5):
        assert f"input line {number} " not in err
    assert "Traceback" not in err and "skip-invalid-size" not in err and "Unable to cast" not in err
    assert "translated 3 lines; 2 bad lines (named above) got an empty output line" in err

    strict = translate_bytes(spm_corpus, spm_var_enum, data, "--strict")
    err = strict.stderr.decode()
    assert strict.returncode == 1 and strict.stdout == b""
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert line.startswith("varattn-translate: error: input line 3 is not UTF-8 text")
    assert "(2 bad lines in all: 3, 4); nothing was translated (--strict)" in line
    assert "Traceback" not in err


@pytest.mark.slow
def test_lines_in_an_unknown_script_are_warned_about(spm_corpus, spm_var_enum):
    """A line of Chinese, Arabic and two known words has 10 pieces besides the EOS: ▁w 1 ▁ 你 ▁ 好 ▁ مر ▁w 2,
    6 of them <unk> here (this dictionary has no bare ▁): mostly unknown, translated with a
    warning naming it; so is a line of spaces and a tab."""
    lines = ["w1 w2 w3", "你好世界", "w1 你 好 مر w2", " \t ", "w4 w5"]
    proc = varattn_translate(spm_corpus, spm_var_enum, input="".join(f"{line}\n" for line in lines))
    assert len(proc.stdout.splitlines()) == len(lines)
    assert "WARNING: input line 2 '你好世界' has no piece the model knows (all 2 are <unk>)" in proc.stderr
    assert ("WARNING: input line 3 'w1 你 好 مر w2' is mostly unknown to the model (6 of its 10 pieces other "
            "than a bare ▁ are <unk>)") in proc.stderr
    assert "WARNING: input line 4 ' \\t ' has nothing but whitespace" in proc.stderr
    assert "input line 1 " not in proc.stderr and "input line 5 " not in proc.stderr

    out = fairseq_cli(
        "fairseq-interactive", spm_corpus.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", spm_var_enum, "--cpu", "--bpe", "sentencepiece", "--sentencepiece-model", spm_corpus.src_spm,
        input="w1 w2\nw1 你 好 مر w2\n")
    log = out.stdout + out.stderr
    assert "input line 2 'w1 你 好 مر w2' is mostly unknown to the model (6 of its 10 pieces" in log
    assert "input line 1 " not in log


def test_mostly_unknown_counts_pieces_other_than_a_bare_word_start():
    """The reported case: the dictionary knows ▁, so a line of an unknown script is ▁ plus
    <unk>, not all <unk>."""
    from fairseq.data import Dictionary

    from var_attn_plugin.input_check import input_problem

    dictionary = Dictionary()
    for piece in ("\u2581", "\u2581w", "1", "2"):
        dictionary.add_symbol(piece)

    def problem(*pieces):
        return input_problem(dictionary.encode_line(" ".join(pieces), add_if_not_exist=False), dictionary)

    assert problem("\u2581", "你好世界") == "is mostly unknown to the model (1 of its 1 pieces other than a bare ▁ " \
        "are <unk>)"
    assert problem("\u2581").startswith("has nothing but whitespace")
    assert problem("\u2581w", "x", "y").startswith("is mostly unknown to the model (2 of its 3 pieces")
    assert problem("\u2581w", "1", "\u2581", "你", "\u2581", "好") is None  # half unknown: not more than half
    assert problem("\u2581w", "1", "\u2581w", "2") is None
    assert problem("x", "y").startswith("has no piece the model knows (all 2 are <unk>)")


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(spm_corpus, spm_var_enum, tmp_path):
    lines, _ = raw_test_pairs(spm_corpus, 8)
    (tmp_path / "input.txt").write_text("".join(f"{line}\n" for line in lines * 40))
    command = (f"{BIN_DIR / 'varattn-translate'} {spm_corpus.data} --path {spm_var_enum} --spm {spm_corpus.src_spm} "
               f"--cpu --buffer-size 1 --input {tmp_path / 'input.txt'} 2> {tmp_path / 'err'} | head -1; "
               "exit ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err[-3000:]
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err and "translated" not in err


def test_command_line_mistakes_exit_1_with_one_line(capsys):
    for argv, message in (([], "the following arguments are required: --path"),
                          (["--path", "x.pt", "--beam", "many"], "argument --beam: invalid int value: 'many'")):
        with pytest.raises(SystemExit) as exit:
            translate.main(argv)
        assert exit.value.code == 1
        err = capsys.readouterr().err
        assert err == f"varattn-translate: error: {message} (see varattn-translate --help)\n"
