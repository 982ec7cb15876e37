"""End to end through the real command lines (``fairseq-train``, ``-generate``,
``-interactive``, ``-validate``) with ``--user-dir``, on the synthetic reversal corpus.

Each run is tiny (``TINY_FLAGS`` or ``TINY_TRANSFORMER_FLAGS``, a few updates, ``--cpu``); what
is checked is that the plugin's pieces work inside fairseq's own loops: the logged metrics,
checkpoints, beam search with every decoding option, reference scoring against an in-process
oracle, ``--eval-bleu`` and TensorBoard (resuming is tests/test_resume.py's, the usual mistakes
tests/test_user_errors.py's and tests/test_faults.py's).
Training every mode and everything done with a trained model (generation, interactive,
validation, reference scoring) run for both architectures (``--arch varattn_lstm`` and
``varattn_transformer``); the training features and mistakes are the architecture-independent
code paths of the task and criterion, checked once with the LSTM.
"""

import math
import re
import struct
from pathlib import Path

import pytest
import torch
from helpers import (
    ARCH_FLAGS,
    PLUGIN_DIR,
    fairseq_cli,
    generation_records,
    load_checkpoint,
    log_records,
    split_batches,
    train_args,
)

from var_attn_plugin.generator import gnmt_length_penalty
from var_attn_plugin.latent.distributions import log_marginal
from var_attn_plugin.latent.modes import ATTENTION_MODES

ROUNDING = 2e-3  # fairseq logs metrics rounded to 3 decimals; a sum of two rounded terms is off by < 2e-3
SCORE_ROUNDING = 1e-4  # fairseq-generate prints per-token scores with 4 decimals
LOG2 = math.log(2)


def source_lines(data: Path):
    return (data.parent / "raw" / "test.src").read_text().splitlines()


def generate(trained, *args, check=True):
    return fairseq_cli(
        "fairseq-generate", trained.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", trained.ckpt, "--cpu", "--gen-subset", "test", "--batch-size", "7", *args, check=check)


# ------------------------------------------------------------------ training, every mode


def assert_finite(record, keys):
    for key in keys:
        assert key in record, f"{key} not logged: {sorted(record)}"
        assert math.isfinite(record[key]), f"{key} = {record[key]}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(ATTENTION_MODES))
def test_train_logs_every_term_and_writes_checkpoints(arch, mode, synthetic_data, tmp_path):
    spec = ATTENTION_MODES[mode]
    updates = 3
    log = fairseq_cli("fairseq-train", *train_args(synthetic_data, tmp_path, mode, "--max-update", updates,
                                                   "--log-interval", "1", arch=arch)).stdout

    # every update logs the mode's terms; the exact likelihood where training enumerates
    train_keys = ["loss", "bound", "bound_ppl", "rec", "kl", "prior_ent", "prior_eos", "prior_max"]
    train_keys += ["post_ent"] if spec.variational else []
    train_keys += ["nll_loss", "ppl"] if spec.enumerates or not spec.latent else []
    inner = log_records(log, "train_inner")
    assert [r["num_updates"] for r in inner] == list(range(1, updates + 1))
    for record in inner:
        assert_finite(record, train_keys)

    # validation is exact for every mode (docs/METHOD.md §9.9)
    (valid,) = log_records(log, "valid")
    valid_keys = ["valid_" + k for k in ("loss", "nll_loss", "ppl", "bound", "bound_ppl", "rec", "kl", "prior_ent",
                                         "prior_eos", "prior_max")]
    valid_keys += ["valid_align_info"] if spec.latent else []
    assert_finite(valid, valid_keys + (["valid_post_ent"] if spec.variational else []))
    assert valid["valid_bound"] >= valid["valid_nll_loss"] - ROUNDING  # the objective bounds -log p(y|x)
    assert valid["valid_bound"] == pytest.approx(valid["valid_rec"] + valid["valid_kl"], abs=ROUNDING)
    assert valid["valid_kl"] >= 0 and valid["valid_prior_ent"] >= 0
    assert 0 <= valid["valid_prior_eos"] <= valid["valid_prior_max"] <= 1
    assert valid.get("valid_align_info", 0) >= 0
    if not spec.variational:
        assert valid["valid_kl"] == 0
    if mode in ("marginal", "soft"):  # the objective is the likelihood itself
        assert valid["valid_bound"] == pytest.approx(valid["valid_nll_loss"], abs=ROUNDING)

    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        state = torch.load(tmp_path / name)  # weights_only: loads with the plugin's allow-list
        assert state["cfg"]["model"]["_name"] == ARCH_FLAGS[arch][0]
        assert state["cfg"]["model"]["attention_mode"] == mode
        assert state["optimizer_history"][-1]["num_updates"] == updates


# ------------------------------------------------------------------ generation


def check_hypotheses(trained, out, expected_score):
    """One hypothesis per test sentence, for the right source, with H = f(P)."""
    sources = source_lines(trained.data)
    records = generation_records(out)
    assert sorted(records) == list(range(len(sources)))
    for sentence_id, record in records.items():
        assert record["S"] == sources[sentence_id]
        score, words = record["H"]
        positional = record["P"]
        assert len(positional) == len(words.split()) + 1  # the words and EOS
        # each printed P is rounded to 4 decimals; both rankings are linear in P, so the
        # rounding of H - f(P) is at most f applied to the per-token rounding
        assert score == pytest.approx(expected_score(positional),
                                      abs=abs(expected_score([SCORE_ROUNDING / 2] * len(positional))) + 1e-9)
    return records


def mean_score(positional):
    """fairseq's default ranking: --lenpen 1 divides the summed score by |Y|."""
    return sum(positional) / len(positional)


def gnmt_score(positional):
    return sum(positional) / gnmt_length_penalty(len(positional), 1.0)


@pytest.mark.slow
def test_generate_gives_every_sentence_a_hypothesis_with_valid_alignments(trained):
    records = check_hypotheses(trained, generate(trained, "--beam", "5", "--print-alignment").stdout, mean_score)
    for record in records.values():
        num_source, num_target = len(record["S"].split()), len(record["H"][1].split())
        assert num_target <= 2 * num_source, record  # beam search stops (its limit is 200 words)
        links = record["A"]
        assert all(0 <= s < num_source and 0 <= t < num_target for s, t in links)
        assert sorted(t for _, t in links) == list(range(num_target))  # one link per target word


@pytest.mark.slow
@pytest.mark.parametrize("options, expected_score", [
    (["--latent-decoding", "kmax", "--kmax", "2"], mean_score),
    (["--latent-decoding", "soft"], mean_score),
    (["--gnmt-lenpen", "1", "--eos-penalty", "3"], gnmt_score),
    (["--gnmt-lenpen", "1", "--print-alignment"], gnmt_score),
])
def test_generate_with_decoding_options(trained, options, expected_score):
    check_hypotheses(trained, generate(trained, "--beam", "5", *options).stdout, expected_score)


@pytest.mark.slow
@pytest.mark.parametrize("decoding", [[], ["--latent-decoding", "kmax", "--kmax", "2"]], ids=["exact", "kmax"])
def test_translations_are_identical_for_every_enumeration_chunk_size(trained, decoding):
    """The default budget holds a whole batch; 0 enumerates one hypothesis step per chunk.
    Translations and alignments are identical; scores agree to float32 rounding (a matrix
    product of other row counts may sum in another order)."""
    default = generation_records(generate(trained, "--beam", "4", "--print-alignment", *decoding).stdout)
    one_row = generation_records(generate(trained, "--beam", "4", "--print-alignment", *decoding,
                                          "--model-overrides", "{'enum_chunk_mb': 0}").stdout)
    assert sorted(one_row) == sorted(default) == list(range(len(source_lines(trained.data))))
    for sentence_id, record in default.items():
        chunked = one_row[sentence_id]
        assert chunked["H"][1] == record["H"][1] and chunked["A"] == record["A"], sentence_id
        assert chunked["H"][0] == pytest.approx(record["H"][0], abs=1e-5)
        assert chunked["P"] == pytest.approx(record["P"], abs=SCORE_ROUNDING)


@pytest.mark.slow
def test_two_length_penalties_are_refused(trained):
    proc = generate(trained, "--beam", "5", "--gnmt-lenpen", "1", "--lenpen", "2", check=False)
    assert proc.returncode != 0
    assert "--gnmt-lenpen and --lenpen are two length penalties: pass only one" in proc.stderr


@pytest.mark.slow
def test_score_reference_equals_in_process_marginal_likelihood(trained):
    """--score-reference scores each reference with the decoder's exact decoding; the oracle is
    the criterion's path: Σ_t log Σ_j p_t(j) exp ℓ_t(j) from the enumerated ℓ_t(j)."""
    records = generation_records(generate(trained, "--score-reference").stdout)
    model, task = load_checkpoint(trained.ckpt, trained.data)
    expected = {}
    with torch.no_grad():
        for batch in split_batches(task, "test"):
            out = model(**batch["net_input"], target=batch["target"])
            per_token = log_marginal(out.prior_log_probs, out.token_log_probs)  # B x T
            per_token = per_token.masked_fill(batch["target"].eq(task.target_dictionary.pad()), 0.0)
            expected.update(zip(batch["id"].tolist(), (per_token.sum(-1) / LOG2).tolist()))
    assert sorted(records) == sorted(expected) == list(range(len(source_lines(trained.data))))
    for sentence_id, record in records.items():
        assert record["H"][1] == record["T"]  # the hypothesis is the reference
        positional = record["P"]
        assert sum(positional) == pytest.approx(expected[sentence_id], abs=SCORE_ROUNDING * len(positional))
        assert record["H"][0] == pytest.approx(expected[sentence_id] / len(positional), abs=1e-5)  # unrounded


@pytest.mark.slow
def test_interactive_translates_each_input_line(trained):
    lines = source_lines(trained.data)[:5]
    out = fairseq_cli(
        "fairseq-interactive", trained.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", trained.ckpt, "--cpu", "--source-lang", "src", "--target-lang", "tgt", "--beam", "3",
        "--buffer-size", "3", "--batch-size", "2", input="\n".join(lines) + "\n").stdout
    records = generation_records(out)
    assert sorted(records) == list(range(len(lines)))
    assert [records[i]["S"] for i in range(len(lines))] == lines
    assert all("H" in record for record in records.values())


@pytest.mark.slow
def test_validate_reproduces_the_last_validation_of_training(trained):
    out = fairseq_cli(
        "fairseq-validate", trained.data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", trained.ckpt, "--cpu", "--criterion", "varattn_elbo", "--max-tokens", "500",
        "--log-format", "json").stdout
    (validated,) = log_records(out, "valid")
    during_training = log_records(trained.log, "valid")[-1]  # the validation of checkpoint_last
    for key in ("loss", "nll_loss", "ppl", "bound_ppl", "kl", "prior_ent", "post_ent"):
        assert validated["valid_" + key] == during_training["valid_" + key], key


# ------------------------------------------------------------------ training features


@pytest.mark.slow
def test_eval_bleu_selects_the_best_checkpoint_by_bleu(synthetic_data, tmp_path):
    """--eval-bleu builds the task's generator, so the decoding options apply there too."""
    log = fairseq_cli("fairseq-train", *train_args(
        synthetic_data, tmp_path, "var-enum", "--max-update", "8", "--eval-bleu",
        "--eval-bleu-args", '{"beam": 2, "max_len_a": 1, "max_len_b": 2}', "--gnmt-lenpen", "1",
        "--latent-decoding", "kmax", "--kmax", "3", "--best-checkpoint-metric", "bleu",
        "--maximize-best-checkpoint-metric")).stdout
    (valid,) = log_records(log, "valid")
    assert 0 <= valid["valid_bleu"] <= 100
    saved = re.search(r"Saved checkpoint \S*checkpoint_best\.pt \(epoch \d+ @ 8 updates, score ([-\d.]+)\)", log)
    assert saved and float(saved.group(1)) == pytest.approx(valid["valid_bleu"], abs=0.01)


def tensorboard_scalars(event_file: Path):
    """``{tag: [values]}`` from a TensorBoard event file (TFRecord framing: 8-byte length,
    4-byte CRC, the serialised ``Event``, 4-byte CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    data, position, scalars = event_file.read_bytes(), 0, {}
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position:position + 8])
        event = Event.FromString(data[position + 12:position + 12 + length])
        position += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


@pytest.mark.slow
def test_tensorboard_logdir_gets_the_metrics(synthetic_data, tmp_path):
    updates = 2
    log = fairseq_cli("fairseq-train", *train_args(
        synthetic_data, tmp_path / "ckpt", "var-enum", "--max-update", updates, "--log-interval", "1",
        "--tensorboard-logdir", tmp_path / "tb")).stdout
    tags = ("loss", "nll_loss", "ppl", "bound_ppl", "kl", "prior_ent", "post_ent")
    for split, prefix, records in (("train_inner", "", log_records(log, "train_inner")),
                                   ("valid", "valid_", log_records(log, "valid"))):
        (event_file,) = (tmp_path / "tb" / split).glob("events.out.tfevents.*")
        scalars = tensorboard_scalars(event_file)
        assert len(records) == (updates if split == "train_inner" else 1)
        for tag in tags:  # the same values as the text log, one per logging step
            assert scalars[tag] == pytest.approx([r[prefix + tag] for r in records], rel=1e-6), (split, tag)
