"""The usual mistakes end in one clear message at start-up, and nothing is silently lost.

Each test runs the real command lines (or, for refusals that happen before any data is read,
the console scripts' own functions in this process) and checks the exit code, the message
(flag and fix), and that nothing was dropped or written: every test sentence translated, no
checkpoint and no ``crash.pt``, no data loaded before the refusal.
"""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import (
    BIN_DIR,
    PLUGIN_DIR,
    TINY_FLAGS,
    build_model,
    fairseq_cli,
    generation_records,
    preprocess,
    run_aer,
    train_args,
    write_synthetic_corpus,
)

import var_attn_plugin.cli as cli
from var_attn_plugin.alignment import UsageError, resolve_distribution
from var_attn_plugin.tools import aer

SIZES = (("train", 300), ("valid", 20), ("test", 50))
LOADED = "examples from:"  # fairseq's log line for every split it loads
TINY_TRAIN = [*TINY_FLAGS, "--optimizer", "adam", "--lr", "1e-2", "--cpu", "--seed", "1",
              "--no-epoch-checkpoints", "--log-format", "simple"]


def output(proc):
    return proc.stdout + proc.stderr


def assert_refused(proc, *needles, save_dir=None):
    """Exit code 1, every needle in the message, no traceback, no checkpoint or crash.pt."""
    text = output(proc)
    assert proc.returncode == 1, text[-3000:]
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in text and "terminate called" not in text
    if save_dir is not None:
        assert not list(Path(save_dir).glob("*.pt")), list(Path(save_dir).glob("*.pt"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_errors")
    return preprocess(write_synthetic_corpus(root / "raw", sizes=SIZES), root / "data-bin")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny var-enum model trained by ``varattn-train`` from another directory, without
    --user-dir, --task, --arch or --criterion (the console script adds them)."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    fairseq_cli("varattn-train", data, "--attention-mode", "var-enum", *TINY_TRAIN, "--max-tokens", "500",
                "--max-epoch", "3", "--save-dir", elsewhere / "ckpt", cwd=elsewhere)
    return SimpleNamespace(data=data, ckpt=elsewhere / "ckpt" / "checkpoint_last.pt", cwd=elsewhere)


# ------------------------------------------------------------------ task, criterion, architecture


@pytest.mark.slow
def test_plain_translation_task_refuses_the_checkpoint(trained):
    proc = fairseq_cli("fairseq-generate", trained.data, "--user-dir", PLUGIN_DIR, "--path", trained.ckpt,
                       "--cpu", "--gen-subset", "test", "--batch-size", "16", check=False)
    assert_refused(proc, "--arch varattn_lstm needs --task varattn_translation, got --task translation",
                   "pass --task varattn_translation")
    assert "H-" not in proc.stdout


@pytest.mark.slow
def test_varattn_generate_translates_every_sentence_from_another_directory(trained):
    """A relative --user-dir that does not exist from here is replaced by the installed plugin;
    --task is added; batches of 16 keep the last, short batch (50 = 3 x 16 + 2)."""
    proc = fairseq_cli("varattn-generate", trained.data, "--user-dir", "var_attn_plugin", "--path", trained.ckpt,
                       "--cpu", "--gen-subset", "test", "--batch-size", "16", "--beam", "2", cwd=trained.cwd)
    records = generation_records(proc.stdout)
    assert sorted(records) == list(range(50))
    assert all("H" in record for record in records.values())
    assert "Translated 50 sentences" in output(proc)


@pytest.mark.slow
def test_varattn_validate_needs_no_plugin_flags(trained):
    proc = fairseq_cli("varattn-validate", trained.data, "--path", trained.ckpt, "--cpu", "--valid-subset", "test",
                       "--max-tokens", "500", cwd=trained.cwd)
    assert "valid on 'test' subset" in output(proc) and "bsz 50" in output(proc)


@pytest.mark.slow
def test_fairseq_generate_without_user_dir_is_fairseqs_keyerror(trained):
    """fairseq fails before the plugin is imported: the documented KeyError (the fix is
    --user-dir, or varattn-generate, tested above)."""
    proc = fairseq_cli("fairseq-generate", trained.data, "--path", trained.ckpt, "--cpu", "--gen-subset", "test",
                       check=False, cwd=trained.cwd)
    assert proc.returncode != 0 and "KeyError: \"'_name'\"" in proc.stderr


@pytest.mark.slow
def test_fairseq_generate_with_relative_user_dir_elsewhere_is_fairseqs_filenotfound(trained):
    proc = fairseq_cli("fairseq-generate", trained.data, "--user-dir", "var_attn_plugin", "--path", trained.ckpt,
                       "--cpu", "--gen-subset", "test", check=False, cwd=trained.cwd)
    assert proc.returncode != 0 and "FileNotFoundError" in proc.stderr and "var_attn_plugin" in proc.stderr


@pytest.mark.slow
def test_latent_mode_with_cross_entropy_is_refused_before_data(data, tmp_path):
    args = train_args(data, tmp_path, "var-enum", "--max-update", "1", "--no-save")
    args[args.index("varattn_elbo")] = "cross_entropy"
    proc = fairseq_cli("fairseq-train", *args, check=False)
    assert_refused(proc, "--attention-mode var-enum must be trained with --criterion varattn_elbo, "
                   "got --criterion cross_entropy", save_dir=tmp_path)
    assert LOADED not in output(proc)


@pytest.mark.slow
def test_our_criterion_with_fairseq_lstm_is_refused_without_crash_pt(data, tmp_path):
    proc = fairseq_cli(
        "fairseq-train", data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation", "--arch", "lstm",
        "--criterion", "varattn_elbo", "--encoder-embed-dim", "16", "--encoder-hidden-size", "16",
        "--decoder-embed-dim", "16", "--decoder-hidden-size", "16", "--decoder-out-embed-dim", "16",
        "--optimizer", "adam", "--lr", "1e-2", "--max-tokens", "500", "--max-update", "1", "--cpu",
        "--no-save", "--save-dir", tmp_path, check=False)
    assert_refused(proc, "--criterion varattn_elbo needs a model of this plugin, got --arch lstm",
                   "use --arch varattn_lstm or varattn_transformer", save_dir=tmp_path)
    assert LOADED not in output(proc) and not (tmp_path / "crash.pt").exists()


def run_in_process(monkeypatch, capsys, command, argv):
    """A console script's function on ``argv``: ``(exit code, stderr)``."""
    monkeypatch.setattr(cli, "_fairseq_logging", lambda: None)  # keep pytest's log capture
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as info:
        command([str(a) for a in argv])
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--latent-decoding", "kmax", "--kmax", "0"], "--kmax must be at least 1"),
    (["--latent-decoding", "dirichlet-mean"],
     "--latent-decoding dirichlet-mean needs a model trained with --attention-mode var-relaxed"),
    (["--task", "translation", "--arch", "lstm"], "--criterion varattn_elbo needs --task varattn_translation"),
    (["--task", "translation"], "--arch varattn_lstm needs --task varattn_translation"),
    (["--wsram-samples", "0", "--attention-mode", "var-wsram"], "--wsram-samples must be at least 1, got 0"),
], ids=["kmax-0", "dirichlet-mean", "criterion-task", "model-task", "wsram-samples"])
def test_refused_before_any_data_with_exit_code_1(monkeypatch, capsys, synthetic_data, tmp_path, extra, message):
    model_flags = [] if "lstm" in extra else ["--attention-mode", "var-enum", *TINY_FLAGS]
    code, err = run_in_process(monkeypatch, capsys, cli.train, [
        synthetic_data, *model_flags, "--optimizer", "adam", "--cpu", "--max-tokens", "500", "--max-update", "1",
        "--save-dir", tmp_path, *extra])
    assert code == 1 and f"var-attn: error: {message}" in err
    assert not list(tmp_path.glob("*.pt"))


def test_console_scripts_add_only_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # where ./var_attn_plugin does not exist
    assert cli.with_plugin_defaults(["data"], training=True) == [
        "data", "--user-dir", cli.PLUGIN_DIR, "--task", "varattn_translation", "--arch", "varattn_lstm",
        "--criterion", "varattn_elbo"]
    given = ["data", "--user-dir=/x", "--task", "t", "-a", "a", "--criterion", "c"]
    assert cli.with_plugin_defaults(given, training=True) == given
    assert cli.with_plugin_defaults(["d", "--user-dir", "var_attn_plugin"]) == [
        "d", "--user-dir", cli.PLUGIN_DIR, "--task", "varattn_translation"]


# ------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    """Training text with 3 empty source lines and 1 empty target line; a validation
    sentence pair of 601 tokens (600 words and EOS)."""
    root = tmp_path_factory.mktemp("bad_data")
    raw = write_synthetic_corpus(root / "raw", sizes=(("train", 300), ("valid", 20), ("test", 10)))
    for side, rows in (("src", (3, 50, 77)), ("tgt", (120,))):
        lines = (raw / f"train.{side}").read_text().splitlines()
        for row in rows:
            lines[row] = ""
        (raw / f"train.{side}").write_text("\n".join(lines) + "\n")
    for side, word in (("src", "w1"), ("tgt", "W1")):
        lines = (raw / f"valid.{side}").read_text().splitlines()
        lines[5] = " ".join([word] * 600)
        (raw / f"valid.{side}").write_text("\n".join(lines) + "\n")
    return preprocess(raw, root / "data-bin")


def train_bad(bad_data, save_dir, *extra, check=False):
    return fairseq_cli("varattn-train", bad_data, "--attention-mode", "var-enum", *TINY_TRAIN,
                       "--save-dir", save_dir, *extra, check=check)


@pytest.mark.slow
def test_empty_training_lines_stop_at_startup(bad_data, tmp_path):
    proc = train_bad(bad_data, tmp_path, "--max-tokens", "700", "--max-update", "1")
    assert_refused(proc, "4 of 300 sentence pairs of split 'train'", "sentence ids 3, 50, 77, 120",
                   "3 with an empty source line, 1 more with an empty target line",
                   "pass --skip-empty-lines to leave them out", save_dir=tmp_path)


@pytest.mark.slow
def test_sentence_longer_than_max_tokens_names_it(bad_data, tmp_path):
    proc = train_bad(bad_data, tmp_path, "--skip-empty-lines", "--max-tokens", "500", "--max-update", "1")
    assert_refused(proc, "sentence pair 5 of 'valid' has 601 tokens (source 601, target 601, EOS included), "
                   "more than --max-tokens 500", "raise --max-tokens to at least 601",
                   "--skip-invalid-size-inputs-valid-test", save_dir=tmp_path)
    assert "AssertionError" not in output(proc)


@pytest.mark.slow
def test_skipping_options_leave_out_counted_pairs(bad_data, tmp_path):
    proc = train_bad(bad_data, tmp_path, "--skip-empty-lines", "--skip-invalid-size-inputs-valid-test",
                     "--max-tokens", "500", "--max-update", "2", "--no-save", check=True)
    text = output(proc)
    assert "--skip-empty-lines: leaving out 4 of 300 sentence pairs of split 'train'" in text
    assert "leaving out 1 sentence pairs of 'valid' longer than --max-tokens 500 (sentence ids 5;" in text
    assert "| valid |" in text  # validation ran on the other 19 pairs


@pytest.mark.slow
def test_empty_line_in_interactive_gets_an_empty_translation(trained):
    lines = ["w1 w2 w3", "", "w4 w5"]
    proc = fairseq_cli("varattn-interactive", trained.data, "--path", trained.ckpt, "--cpu", "--beam", "2",
                       "--source-lang", "src", "--target-lang", "tgt", input="\n".join(lines) + "\n",
                       cwd=trained.cwd)
    records = generation_records(proc.stdout)
    assert sorted(records) == [0, 1, 2]
    assert records[1]["H"][1] == "" and len(records[1]["P"]) == 1  # EOS alone, scored by the model
    assert records[0]["H"][1] and records[2]["H"][1]
    assert "madeupword" not in proc.stdout
    assert "input line 2 '' is empty" in output(proc)


# ------------------------------------------------------------------ alignment tools


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def texts(tmp_path):
    """Two sentence pairs: 3 x 2 and 2 x 2 words."""
    return (write(tmp_path, "src.txt", "a b c\nd e\n"), write(tmp_path, "tgt.txt", "A B\nD E\n"))


@pytest.mark.parametrize("gold, pred, flags, message", [
    ("0-0 999-1\n0-0\n", "0-0\n0-0\n", [], "gold:1: link 999-1 (source-target) lies outside the sentence pair "
     "(3 source and 2 target tokens"),
    ("0-0\n0-0\n", "0-0\n500-700\n", [], "pred:2: link 500-700 (source-target) lies outside"),
    ("1-1 3-2\n2-2\n", "0-0\n0-0\n", [], "gold:1: link 3-2 (source-target) lies outside the sentence pair "
     "(3 source and 2 target tokens in --source/--target, so positions run from 0 to 2 and 1); a position "
     "equal to the sentence length suggests the file counts from 1: pass --one-based"),
    ("1-1\n2-3\n", "0-0\n0-0\n", ["--one-based"], "gold:2: link 2-3 (source-target) lies outside"),
    ("0-0\n", "0-0\n", [], "--source has 2 lines but"),
    ("1 1 1\n2 4 1\n", "0-0\n0-0\n", ["--one-based"], "gold: sentence 2: link 4-1 (source-target) lies outside"),
], ids=["gold-999", "pred-500-700", "looks-one-based", "one-based-too-far", "line-count", "naacl-detected"])
def test_aer_checks_positions_against_the_text(capsys, tmp_path, texts, gold, pred, flags, message):
    source, target = texts
    code, _, err = run_aer(capsys, write(tmp_path, "gold", gold), write(tmp_path, "pred", pred), *flags,
                        "--source", source, "--target", target)
    assert code == 1 and message in err


def test_aer_reads_the_gold_file_once(capsys, tmp_path, texts, monkeypatch):
    """Detecting the format, parsing and naming sentences in errors share one read of the gold file."""
    source, target = texts
    gold = write(tmp_path, "gold", "1 1 1\n2 2 2\n")
    reads = []
    real = aer.read_lines
    monkeypatch.setattr(aer, "read_lines", lambda path, *a, **k: reads.append(Path(path)) or real(path, *a, **k))
    code, out, _ = run_aer(capsys, gold, write(tmp_path, "pred", "0-0\n1-1\n"), "--one-based",
                           "--source", source, "--target", target)
    assert code == 0 and "aer: 0.0000" in out
    assert reads.count(gold) == 1


def test_aer_refuses_empty_inputs_instead_of_nan(capsys, tmp_path):
    empty = write(tmp_path, "empty", "")
    code, _, err = run_aer(capsys, empty, write(tmp_path, "empty2", ""))
    assert code == 1 and "empty2 is empty: no sentence to score" in err
    code, _, err = run_aer(capsys, write(tmp_path, "gold", "0-0\n"), write(tmp_path, "pred", "\n"))
    assert code == 1 and "has 1 lines but not one link, so precision is undefined" in err
    code, _, err = run_aer(capsys, write(tmp_path, "gold2", "0?0\n"), write(tmp_path, "pred2", "0-0\n"))
    assert code == 1 and "has no sure link in its 1 sentences, so recall and AER are undefined" in err


def test_aer_one_based_null_link_is_an_error_unless_dropped(capsys, tmp_path):
    gold = write(tmp_path, "gold", "1-1\n2-1 0-2\n")
    pred = write(tmp_path, "pred", "0-0\n1-0\n")
    code, _, err = run_aer(capsys, gold, pred, "--one-based")
    assert code == 1 and f"{gold}:2: link '0-2' has position 0" in err and "--drop-null-links" in err
    code, out, err = run_aer(capsys, gold, pred, "--one-based", "--drop-null-links")
    assert code == 0 and "left out 1 NULL links (position 0)" in err and "aer: 0.0000" in out


def test_aer_command_line_exit_code_for_empty_files(tmp_path):
    proc = fairseq_cli("varattn-aer", write(tmp_path, "g", ""), write(tmp_path, "p", ""), check=False)
    assert proc.returncode == 1 and "is empty: no sentence to score" in proc.stderr and "nan" not in proc.stdout


def test_posterior_of_a_soft_model_suggests_what_it_can_give():
    with pytest.raises(UsageError) as info:
        resolve_distribution(build_model("soft"), "posterior")
    assert "use --distribution prior" in str(info.value) and "exact-posterior (" not in str(info.value)
    with pytest.raises(UsageError, match="--distribution exact-posterior needs a latent"):
        resolve_distribution(build_model("soft"), "exact-posterior")
    with pytest.raises(UsageError, match="use --distribution exact-posterior .* or prior"):
        resolve_distribution(build_model("marginal"), "posterior")


@pytest.mark.slow
def test_varattn_align_posterior_on_a_soft_checkpoint(synthetic_data, tmp_path):
    fairseq_cli("varattn-train", synthetic_data, "--attention-mode", "soft", *TINY_TRAIN, "--max-tokens", "500",
                "--max-update", "1", "--save-dir", tmp_path, "--no-last-checkpoints")
    proc = fairseq_cli("varattn-align", synthetic_data, "--path", tmp_path / "checkpoint_best.pt", "--cpu",
                       "--distribution", "posterior", check=False)
    assert proc.returncode == 1 and "use --distribution prior" in proc.stderr
    assert "exact-posterior" not in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ nothing silent: weights, flags, exit codes


def plain_env(**extra):
    """The environment of a user's shell: no PYTHONWARNINGS=ignore (unlike helpers.fairseq_cli)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONWARNINGS", "VARATTN_VERBOSE")}
    return dict(env, OMP_NUM_THREADS="1", **extra)


def one_error_line(proc, prefix="var-attn: error: "):
    """The one error line of a refused command (exit code 1, no traceback)."""
    text = output(proc)
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and errors[0].startswith(prefix), errors
    return errors[0]


@pytest.fixture(scope="module")
def diverged(spm_var_enum, tmp_path_factory):
    """spm_var_enum's checkpoint with a NaN in the source embeddings (a diverged training)."""
    import torch

    state = torch.load(spm_var_enum)
    state["model"]["encoder.embed_tokens.weight"][5, 0] = float("nan")
    path = tmp_path_factory.mktemp("diverged") / "checkpoint_last.pt"
    torch.save(state, path)
    return path


def test_non_finite_weights_are_refused_when_loading_and_healthy_ones_load():
    import torch

    model = build_model("var-enum")
    healthy = model.state_dict()
    build_model("var-enum", seed=1).load_state_dict(healthy)  # strict, as fairseq loads
    broken = dict(healthy)
    broken["decoder.embed_tokens.weight"] = healthy["decoder.embed_tokens.weight"].clone()
    broken["decoder.embed_tokens.weight"][2, 1] = float("inf")
    with pytest.raises(UsageError, match=r"^the checkpoint holds NaN or infinite weights \(1 of its \d+ parameters: "
                                         r"decoder\.embed_tokens\.weight\): the checkpoint's training diverged .*"
                                         r"use an earlier checkpoint .* lower --lr"):
        build_model("var-enum").load_state_dict(broken)
    assert torch.equal(model.state_dict()["dictionary_fingerprint"], healthy["dictionary_fingerprint"])


@pytest.mark.slow
def test_validate_refuses_nan_weights_instead_of_loss_nan(spm_corpus, diverged):
    proc = fairseq_cli("fairseq-validate", spm_corpus.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
                       "--path", diverged, "--cpu", "--max-tokens", "500", check=False)
    line = one_error_line(proc)
    assert "NaN or infinite weights (1 of its" in line and "encoder.embed_tokens.weight" in line
    assert "use an earlier checkpoint" in line and "loss nan" not in output(proc)


@pytest.mark.slow
def test_resuming_from_a_diverged_checkpoint_is_one_line(spm_corpus, diverged, tmp_path):
    """fairseq's trainer re-raises every loading error as "Cannot load model parameters"; the
    console script still ends with the plugin's message."""
    proc = fairseq_cli("varattn-train", spm_corpus.data, "--attention-mode", "var-enum", *TINY_TRAIN,
                       "--max-tokens", "500", "--max-update", "45", "--save-dir", tmp_path, "--restore-file", diverged,
                       check=False)
    line = one_error_line(proc)
    assert "NaN or infinite weights" in line and "Cannot load model parameters" not in proc.stderr


@pytest.mark.slow
def test_varattn_generate_with_another_data_bin_is_one_line(spm_var_enum, synthetic_data):
    proc = fairseq_cli("varattn-generate", synthetic_data, "--path", spm_var_enum, "--cpu", "--gen-subset", "test",
                       check=False)
    line = one_error_line(proc)
    assert "the checkpoint was trained with a source dictionary of" in line
    assert "fairseq-preprocess --srcdict/--tgtdict" in line


@pytest.mark.slow
@pytest.mark.parametrize("command", ["fairseq-interactive", "varattn-interactive"])
def test_bpe_sentencepiece_with_remove_bpe_is_refused(spm_corpus, spm_var_enum, command):
    plugin = ["--user-dir", PLUGIN_DIR, "--task", "varattn_translation"] if command.startswith("fairseq") else []
    proc = fairseq_cli(command, spm_corpus.data, *plugin, "--path", spm_var_enum, "--cpu", "--bpe", "sentencepiece",
                       "--sentencepiece-model", spm_corpus.src_spm, "--remove-bpe", "sentencepiece",
                       input="w1 w2\n", check=False)
    line = one_error_line(proc)
    assert "--bpe sentencepiece and --remove-bpe together garble every line" in line and "drop --remove-bpe" in line
    assert "H-0" not in proc.stdout


def test_remove_bpe_is_refused_only_with_sentencepiece():
    from types import SimpleNamespace

    from var_attn_plugin.task import refuse_remove_bpe_with_sentencepiece

    sentencepiece = SimpleNamespace(_name="sentencepiece")
    for argv in (["--remove-bpe"], ["--post-process", "sentencepiece"], ["--remove-bpe=sentencepiece"]):
        with pytest.raises(UsageError, match=f"--bpe sentencepiece and {argv[0].split('=')[0]} together"):
            refuse_remove_bpe_with_sentencepiece(sentencepiece, ["data", *argv])
    refuse_remove_bpe_with_sentencepiece(sentencepiece, ["data", "--beam", "5"])
    refuse_remove_bpe_with_sentencepiece(None, ["data", "--remove-bpe", "sentencepiece"])  # raw pieces in, fine
    refuse_remove_bpe_with_sentencepiece(SimpleNamespace(_name="subword_nmt"), ["--remove-bpe"])


@pytest.mark.parametrize("command, argv, message", [
    (cli.validate, ["DATA", "--max-tokens", "many"], "varattn-validate: error: argument --max-tokens: invalid int"),
    (cli.generate, ["DATA", "--beam", "wide"], "varattn-generate: error: argument --beam: invalid int value: 'wide'"),
    (cli.train, ["DATA", "--attention-mode", "nonsense"], "varattn-train: error: argument --attention-mode: invalid "
                                                         "choice: 'nonsense'"),
], ids=["validate", "generate", "train"])
def test_command_line_mistakes_of_the_wrappers_exit_1_with_one_line(monkeypatch, capsys, synthetic_data, command,
                                                                    argv, message):
    code, err = run_in_process(monkeypatch, capsys, command, [synthetic_data if a == "DATA" else a for a in argv])
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith(message), err


@pytest.mark.parametrize("tool", ["diagnose", "plot"])
def test_command_line_mistakes_of_the_tools_exit_1_with_one_line(capsys, tool):
    import importlib

    module = importlib.import_module(f"var_attn_plugin.tools.{tool}")
    with pytest.raises(SystemExit) as info:
        module.main(["--batch-size", "x"] if tool == "diagnose" else ["--id", "x"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"varattn-{tool}: error: ") and err.endswith(f"(see varattn-{tool} --help)\n")


@pytest.mark.slow
def test_start_up_prints_no_library_warnings_unless_asked(spm_corpus, spm_var_enum):
    args = [str(BIN_DIR / "varattn-validate"), str(spm_corpus.data), "--path", str(spm_var_enum), "--cpu",
            "--max-tokens", "500"]
    quiet = subprocess.run(args, capture_output=True, text=True, env=plain_env(), timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "Warning" not in output(quiet) and "hydra" not in output(quiet), output(quiet)[:3000]
    assert "| valid | valid on 'valid' subset" in output(quiet)  # fairseq's own log lines stay
    verbose = subprocess.run(args, capture_output=True, text=True, env=plain_env(VARATTN_VERBOSE="1"), timeout=600)
    assert verbose.returncode == 0 and "UserWarning" in verbose.stderr and "hydra" in verbose.stderr


# raises the user error of sys.argv[1] (direct, or wrapped by fairseq) uncaught in a fork of an
# interpreter that imported the plugin once: the interpreter's own report and exit status, per case
UNCAUGHT = """
import os, sys
import var_attn_plugin
from var_attn_plugin.errors import UsageError

def direct():
    raise UsageError("--lr 1e6 diverged: lower --lr")

def wrapped():
    try:
        direct()
    except UsageError as e:
        raise Exception("Cannot load model parameters") from e

for case in sys.argv[1:]:
    raising, traced = case.split("-")
    stderr = os.path.join(os.environ["OUT"], case)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        if traced == "traced":
            os.environ["VARATTN_TRACEBACK"] = "1"
        {"direct": direct, "wrapped": wrapped}[raising]()
    print(case, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_an_uncaught_user_error_is_one_line_and_exit_code_1_also_when_fairseq_wraps_it(tmp_path):
    """fairseq wraps errors raised while loading a checkpoint in its own exception: the plugin's
    hook still reports the user error inside as one line (VARATTN_TRACEBACK=1 shows the rest)."""
    cases = [f"{raising}-{traced}" for raising in ("direct", "wrapped") for traced in ("plain", "traced")]
    proc = subprocess.run([sys.executable, "-c", UNCAUGHT, *cases], capture_output=True, text=True,
                          env=dict(os.environ, OUT=str(tmp_path)))
    assert proc.returncode == 0 and proc.stdout.splitlines() == [f"{case} 1" for case in cases], output(proc)
    for case in cases:
        stderr = (tmp_path / case).read_text()
        if case.endswith("plain"):
            assert stderr == "var-attn: error: --lr 1e6 diverged: lower --lr\n", (case, stderr)
        else:
            assert "Traceback" in stderr, (case, stderr)
