"""Nothing lost, nothing silent: faults during training and the mistakes that used to end in a
traceback, each through the real command lines.

- a SIGKILL while fairseq copies a new checkpoint onto ``checkpoint_last.pt`` (the copy is
  paused halfway with ``VARATTN_TEST_PAUSE_IN_COPY`` and the process killed there) leaves the
  old ``checkpoint_last.pt`` intact, and the same command resumes from it;
- a damaged ``checkpoint_last.pt`` is resumed past, from the newest intact checkpoint, saying so;
- a second training in the same ``--save-dir`` is refused, naming the first; a lock left by a
  killed run does not block;
- a rank that never starts ends the others within ``--heartbeat-timeout``;
- NaN/inf gradients end the run with one line naming the update and the fixes;
- ``--max-tokens`` that leaves out most training pairs is refused;
- damaged, empty and foreign checkpoints given to ``--path``, ``--restore-file`` and
  ``--finetune-from-model`` are named, with the newest intact checkpoint beside them;
- flags in the wrong place: ``--path`` a folder, ``-s``/``-t`` reversed, ``--update-freq 0``,
  ``--beam`` below 1, a misspelt ``--valid-subset``, ``--save-dir`` a file.

The tests that train are ``slow``; the others refuse at start-up, before any update.
"""

import json
import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
from helpers import PLUGIN_DIR, fairseq_cli, fairseq_start, train_args

from var_attn_plugin import checkpoint_safety
from var_attn_plugin.checkpoint_safety import PAUSE_IN_COPY, atomic_copy, damage, lock_save_dir
from var_attn_plugin.errors import UsageError

TIMEOUT_S = 300


def output(proc):
    return proc.stdout + proc.stderr


def assert_one_line_error(proc, *needles):
    """Exit status 1, one ``var-attn: error:`` line holding every needle, no traceback."""
    text = output(proc)
    assert proc.returncode == 1, text[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("var-attn: error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in:\n{errors[0]}"
    assert "Traceback" not in text and "weights_only" not in errors[0]
    return errors[0]


def num_updates(path: Path) -> int:
    return torch.load(path)["optimizer_history"][-1]["num_updates"]


def run_until(args, log: Path, marker: str, env=None, timeout=TIMEOUT_S):
    """fairseq-train with ``args`` in the background (helpers.fairseq_start), its output to
    ``log``, once ``marker`` is logged."""
    proc = fairseq_start("fairseq-train", *args, log=log, env=env)
    deadline = time.monotonic() + timeout
    while marker not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{marker!r} never logged:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def kill(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def saved(synthetic_data, tmp_path_factory):
    """A save-dir after 8 updates: checkpoint_1_4.pt and checkpoint_last.pt (update 8)."""
    save_dir = tmp_path_factory.mktemp("faults") / "ckpt"
    fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--save-interval-updates", 4,
                                             "--max-update", 8, "--disable-validation"))
    assert num_updates(save_dir / "checkpoint_last.pt") == 8
    return save_dir


def copy_of(save_dir: Path, where: Path) -> Path:
    """A copy of a save-dir (modification times kept, the lock file left out)."""
    shutil.copytree(save_dir, where, ignore=shutil.ignore_patterns("*.lock"))
    return where


# ------------------------------------------------------------------ a kill while checkpoint_last.pt is written


@pytest.mark.slow
def test_a_kill_during_the_copy_onto_checkpoint_last_keeps_it_intact_and_the_same_command_resumes(
        synthetic_data, tmp_path):
    """fairseq saves the checkpoint of update 12 as checkpoint_2_12.pt and then copies it onto
    checkpoint_last.pt (update 8): SIGKILL halfway through that copy. checkpoint_last.pt must still
    be the complete checkpoint of update 8 (fairseq's in-place copy left it truncated, and the
    restart failed on "PytorchStreamReader failed reading zip archive")."""
    save_dir = tmp_path / "ckpt"
    args = train_args(synthetic_data, save_dir, "var-enum", "--save-interval-updates", 4, "--max-update", 16,
                      "--disable-validation")
    proc = run_until(args, tmp_path / "killed.log", f"{PAUSE_IN_COPY}: pausing", env={PAUSE_IN_COPY: "120"})
    kill(proc)
    log = (tmp_path / "killed.log").read_text()
    assert f"copying {save_dir}/checkpoint_2_12.pt to {save_dir}/checkpoint_last.pt" in log, log[-2000:]
    assert list(save_dir.glob(".checkpoint_last.pt.*.tmp")), "the kill did not come during the copy"
    assert damage(str(save_dir / "checkpoint_last.pt")) is None
    assert num_updates(save_dir / "checkpoint_last.pt") == 8

    resumed = fairseq_cli("fairseq-train", *args).stdout
    assert "removed 1 temporary file(s) of an interrupted checkpoint save" in resumed
    assert re.search(r"Loaded checkpoint \S*checkpoint_last\.pt \(epoch 2 @ 8 updates\)", resumed), resumed[-3000:]
    assert num_updates(save_dir / "checkpoint_last.pt") == 16
    assert not list(save_dir.glob("*.tmp")) and not list(save_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_a_damaged_checkpoint_last_resumes_from_the_newest_intact_checkpoint_and_says_so(
        synthetic_data, saved, tmp_path):
    save_dir = copy_of(saved, tmp_path / "ckpt")
    last = save_dir / "checkpoint_last.pt"
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size // 2)
    proc = fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--save-interval-updates", 4,
                                                    "--max-update", 12, "--disable-validation"))
    text = output(proc)
    assert (f"{last} cannot be resumed from: it is damaged (truncated or corrupt" in text
            and f"Resuming from the newest intact checkpoint in --save-dir instead: {save_dir}/checkpoint_1_4.pt"
            in text), text[-3000:]
    assert re.search(r"Loaded checkpoint \S*checkpoint_1_4\.pt \(epoch 1 @ 4 updates\)", text)
    assert damage(str(last)) is None and num_updates(last) == 12


@pytest.mark.slow
def test_a_damaged_checkpoint_last_without_an_intact_one_is_refused(synthetic_data, tmp_path):
    save_dir = tmp_path / "ckpt"
    save_dir.mkdir()
    (save_dir / "checkpoint_last.pt").write_bytes(b"")
    proc = fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--max-update", 1),
                       check=False)
    assert_one_line_error(proc, f"{save_dir}/checkpoint_last.pt cannot be resumed from: it is empty (0 bytes)",
                          "holds no intact checkpoint", "move the damaged file away")


# ------------------------------------------------------------------ one training per --save-dir


@pytest.mark.slow
def test_a_second_training_in_the_same_save_dir_is_refused_naming_the_first(synthetic_data, tmp_path):
    save_dir = tmp_path / "ckpt"
    first = run_until(train_args(synthetic_data, save_dir, "var-enum", "--max-update", 100000, "--disable-validation"),
                      tmp_path / "first.log", "locked --save-dir")
    try:
        second = fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--max-update", 2),
                             check=False)
        assert_one_line_error(second, f"--save-dir {save_dir} is in use by another training: pid {first.pid} on host "
                              f"{socket.gethostname()}, started ", "give this one another --save-dir")
        assert first.poll() is None  # the first goes on
    finally:
        kill(first)
    # the lock of the killed run does not block: the same command runs (and resumes)
    third = fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--max-update", 1))
    assert "locked --save-dir" in output(third)
    assert json.loads((save_dir / "varattn-train.lock").read_text())["pid"] != first.pid


def test_the_lock_names_its_holder_and_a_dead_holders_lock_does_not_block(tmp_path):
    """The holder is a fork of this process (a lock is a process's own: the child takes it anew)."""
    ready, locked = os.pipe()
    holder = os.fork()
    if holder == 0:  # the child: take the lock, say so, wait to be killed
        try:
            os.close(ready)
            lock_save_dir(str(tmp_path))
            os.write(locked, b"locked\n")
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(locked)
    try:
        assert os.read(ready, 100) == b"locked\n"
        with pytest.raises(UsageError, match=f"is in use by another training: pid {holder} on host"):
            lock_save_dir(str(tmp_path))
    finally:
        os.close(ready)
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert lock_save_dir(str(tmp_path)) == str(tmp_path / "varattn-train.lock")  # held by this process now
    assert json.loads((tmp_path / "varattn-train.lock").read_text())["pid"] == os.getpid()


# ------------------------------------------------------------------ a rank that never starts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HEARTBEAT_S = 5


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_that_never_starts_ends_the_started_one_within_the_heartbeat_timeout(synthetic_data, tmp_path, rank):
    """Only one rank of two is started: it used to wait at "distributed init" forever, whatever
    --heartbeat-timeout."""
    init = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = fairseq_cli("fairseq-train", *train_args(
        synthetic_data, tmp_path / "ckpt", "var-enum", "--max-update", 2, "--heartbeat-timeout", HEARTBEAT_S,
        "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp", "--distributed-world-size", 2,
        "--distributed-rank", rank, "--distributed-init-method", init, "--distributed-no-spawn"),
        check=False, timeout=HEARTBEAT_S + 120)
    waited = time.monotonic() - started
    text = output(proc)
    assert proc.returncode == 1, text[-3000:]
    assert (f"rank {rank}: not all 2 ranks of the distributed run joined within {HEARTBEAT_S} s (--heartbeat-timeout) "
            f"at --distributed-init-method {init}") in text, text[-3000:]
    assert waited < HEARTBEAT_S + 90


# ------------------------------------------------------------------ divergence


@pytest.mark.slow
def test_divergence_is_named_with_the_update_and_the_fixes(synthetic_data, tmp_path):
    """SGD with --lr 1e6 makes the tiny Transformer's gradients NaN within a few updates (it
    ended in fairseq's NanDetector crashing with StopIteration)."""
    def diverge(save_dir, *extra):
        return fairseq_cli("fairseq-train", *train_args(
            synthetic_data, save_dir, "var-enum", "--optimizer", "sgd", "--lr", "1e6", "--max-update", 50,
            "--disable-validation", *extra, arch="transformer"), check=False)

    proc = diverge(tmp_path / "none")
    line = assert_one_line_error(proc, "training diverged at update ", "its gradients are NaN or inf",
                                 "Lower --lr (this run: 1e+06)", "--clip-norm", "train again")
    assert "StopIteration" not in output(proc)
    update = int(re.search(r"at update (\d+)", line).group(1))

    save_dir = tmp_path / "saved"
    proc = diverge(save_dir, "--save-interval-updates", 1)
    line = assert_one_line_error(proc, f"training diverged at update {update}", "--restore-file")
    restore = Path(re.search(r"--restore-file (\S+)", line).group(1))
    assert restore.parent == save_dir and num_updates(restore) == update - 1


# ------------------------------------------------------------------ data that does not fit --max-tokens


@pytest.mark.slow
def test_max_tokens_that_leaves_out_most_training_pairs_is_refused(synthetic_data, tmp_path):
    """Sentences of 2-8 words (3-9 tokens with EOS): --max-tokens 6 cannot hold 258 of the 600
    training pairs; fairseq dropped them silently (exit 0, a warning blaming max_positions)."""
    proc = fairseq_cli("fairseq-train", *train_args(synthetic_data, tmp_path, "var-enum", "--max-tokens", 6,
                                                    "--max-update", 2, "--disable-validation"), check=False)
    assert_one_line_error(proc, "--max-tokens 6 would leave out 258 of 600 sentence pairs of 'train' (43%",
                          "Raise --max-tokens to at least 9")
    assert not list(tmp_path.glob("*.pt"))


# ------------------------------------------------------------------ damaged checkpoints


def spoil(path: Path, how: str, intact: Path) -> Path:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(intact.read_bytes()[: intact.stat().st_size // 3])
    else:
        path.write_bytes(os.urandom(4096).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    return path


REASONS = {"empty": "it is empty (0 bytes)", "truncated": "it is damaged (truncated or corrupt",
           "random": "it is not a checkpoint"}


def generate(data, *args):
    return fairseq_cli("fairseq-generate", data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation", "--cpu",
                       "--gen-subset", "test", "--batch-size", "8", "--beam", "2", *args, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
def test_a_damaged_checkpoint_given_to_path_is_named_with_the_intact_one_beside_it(synthetic_data, saved, tmp_path,
                                                                                    how):
    save_dir = copy_of(saved, tmp_path / "ckpt")
    bad = spoil(save_dir / "checkpoint_bad.pt", how, saved / "checkpoint_last.pt")
    assert_one_line_error(generate(synthetic_data, "--path", bad), f"--path {bad} cannot be loaded: {REASONS[how]}",
                          f"the newest intact checkpoint beside it is {save_dir}/checkpoint_last.pt",
                          f"pass --path {save_dir}/checkpoint_last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("flag, how", [("--restore-file", "truncated"), ("--finetune-from-model", "random")])
def test_a_damaged_checkpoint_to_start_training_from_is_named(synthetic_data, saved, tmp_path, flag, how):
    bad = spoil(tmp_path / "model.pt", how, saved / "checkpoint_last.pt")  # alone in its folder
    proc = fairseq_cli("fairseq-train", *train_args(synthetic_data, tmp_path / "ckpt", "var-enum", "--max-update", 1,
                                                    flag, bad), check=False)
    assert_one_line_error(proc, f"{flag} {bad} cannot be loaded: {REASONS[how]}",
                          f"there is no intact checkpoint beside it in {tmp_path}")


def test_damage_tells_complete_checkpoints_from_cut_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, good)
    assert damage(str(good)) is None
    for how in REASONS:
        assert damage(str(spoil(tmp_path / f"{how}.pt", how, good))).startswith(REASONS[how])


def test_an_interrupted_atomic_copy_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    old, new = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_2_12.pt"
    old.write_bytes(b"old" * 1000)
    new.write_bytes(b"new" * 2000)

    def cut(source, out, *args):
        out.write(source.read(100))
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_safety.shutil, "copyfileobj", cut)
    with pytest.raises(OSError, match="disk full"):
        atomic_copy(str(new), str(old))
    assert old.read_bytes() == b"old" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_2_12.pt", "checkpoint_last.pt"]
    monkeypatch.undo()
    atomic_copy(str(new), str(old))
    assert old.read_bytes() == new.read_bytes() and oct(old.stat().st_mode & 0o777) == oct(new.stat().st_mode & 0o777)


# ------------------------------------------------------------------ flags in the wrong place


@pytest.mark.slow
def test_path_given_a_folder_names_the_checkpoints_in_it(synthetic_data, saved):
    assert_one_line_error(generate(synthetic_data, "--path", saved),
                          f"--path {saved} is a folder, not a checkpoint file (it holds checkpoint_1_4.pt, "
                          f"checkpoint_last.pt)", f"e.g. --path {saved}/checkpoint_last.pt")


@pytest.mark.slow
def test_reversed_source_and_target_languages_are_named(synthetic_data, saved):
    """The synthetic dictionaries have the same size, so fairseq blamed the dictionary."""
    assert_one_line_error(generate(synthetic_data, "--path", saved / "checkpoint_last.pt", "-s", "tgt", "-t", "src"),
                          "-s tgt -t src is the reverse of the direction --path", "pass -s src -t tgt")


@pytest.mark.slow
@pytest.mark.parametrize("beam", [0, -1])
def test_beam_below_one_is_refused(synthetic_data, saved, beam):
    assert_one_line_error(generate(synthetic_data, "--path", saved / "checkpoint_last.pt", "--beam", beam),
                          f"--beam must be at least 1 (the hypotheses kept at each step; 1 is greedy search), "
                          f"got {beam}")


@pytest.mark.parametrize("extra, message", [
    (["--update-freq", "0"], "--update-freq must be at least 1 (the number of batches whose gradients make one "
                             "update), got 0: pass --update-freq 1"),
    (["--valid-subset", "valdi"], "--valid-subset valdi: the data-bin {data} has no split 'valdi' for src-tgt (it has "
                                  "test, train, valid): pass --valid-subset valid"),
    (["--save-dir", "{file}"], "--save-dir {file} is a file, not a folder"),
], ids=["update-freq-0", "valid-subset", "save-dir-file"])
def test_training_flags_in_the_wrong_place_are_refused_at_start_up(synthetic_data, tmp_path, extra, message):
    file = tmp_path / "not-a-folder"
    file.write_text("")
    save_dir = tmp_path / "ckpt"
    values = {"data": synthetic_data, "file": file}
    proc = fairseq_cli("fairseq-train", *train_args(synthetic_data, save_dir, "var-enum", "--max-update", 1,
                                                    *[e.format(**values) for e in extra]), check=False)
    assert_one_line_error(proc, message.format(**values))
    assert not list(save_dir.glob("*.pt")) and "Start iterating over samples" not in output(proc)
