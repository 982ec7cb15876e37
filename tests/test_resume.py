"""Stopping, resuming and the randomness of a run: data order, dropout and sampling noise.

A run stopped at any point and restarted with the same command continues the uninterrupted
run exactly: on the CPU every parameter and every optimizer statistic are bit-identical
(``torch.equal``). "The same command" with a stop by ``--max-update`` means: the first run
has ``--max-update STOP``, the second the uninterrupted run's ``--max-update TOTAL``; a
SIGKILL'd run is restarted with its own command. The stop lies in the second epoch (the
batches of a resumed run used to be rebuilt from the epoch of the checkpoint) and between
checkpoints of ``--save-interval-updates``, with dropout and the sampling modes' noise on.

The in-process tests check the mechanisms directly: the batches of an iterator created in a
later epoch, the per-rank noise of the task's training step, and the watchdog behind
``--heartbeat-timeout``. The command-line tests are ``slow`` (about three minutes together on
one core).
"""

import os
import re
import signal
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from helpers import build_model, fairseq_cli, fairseq_start, random_batch, train_args

import var_attn_plugin.reproducibility as reproducibility
from var_attn_plugin.criterion import VarAttnCriterion
from var_attn_plugin.task import VarAttnTranslationConfig, VarAttnTranslationTask
from var_attn_plugin.watchdog import Watchdog

# single process: 8 batches an epoch at --max-tokens 500 on the synthetic corpus, so update 12
# is the middle of epoch 2 and update 18 lies in epoch 3
EVERY, STOP, TOTAL = 4, 12, 18
# two ranks: 4 updates an epoch
RANKS_EVERY, RANKS_STOP, RANKS_TOTAL = 3, 6, 10
TIMEOUT_S = 300


def train(data, save_dir, mode, max_update, *extra):
    return fairseq_cli("fairseq-train", *train_args(
        data, save_dir, mode, "--save-interval-updates", EVERY, "--max-update", max_update, *extra)).stdout


def flatten(value, prefix=""):
    """``{path: tensor}`` of every tensor in a nested checkpoint entry."""
    if torch.is_tensor(value):
        return {prefix: value}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {}
    return {k: v for key, item in items for k, v in flatten(item, f"{prefix}/{key}").items()}


def assert_identical_runs(resumed_dir, uninterrupted_dir):
    """The same update count, bit-identical parameters and optimizer state."""
    resumed = torch.load(resumed_dir / "checkpoint_last.pt")
    uninterrupted = torch.load(uninterrupted_dir / "checkpoint_last.pt")
    assert (resumed["optimizer_history"][-1]["num_updates"]
            == uninterrupted["optimizer_history"][-1]["num_updates"])
    for entry in ("model", "last_optimizer_state"):
        a, b = flatten(resumed[entry]), flatten(uninterrupted[entry])
        assert a.keys() == b.keys() and a
        differing = [key for key in a if not torch.equal(a[key], b[key])]
        assert not differing, f"{entry}: {differing}"


def stopped_mid_epoch(save_dir, epoch: int, updates: int):
    state = torch.load(save_dir / "checkpoint_last.pt")
    iterator = state["extra_state"]["train_iterator"]
    assert state["optimizer_history"][-1]["num_updates"] == updates
    assert iterator["epoch"] == epoch and iterator["iterations_in_epoch"] > 0


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data, tmp_path_factory):
    """The uninterrupted single-process run of each mode, trained on first use."""
    runs = {}

    def run(mode):
        if mode not in runs:
            save_dir = tmp_path_factory.mktemp(f"uninterrupted-{mode}")
            train(synthetic_data, save_dir, mode, TOTAL)
            runs[mode] = save_dir
        return runs[mode]

    return run


# ------------------------------------------------------------------ single process


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["var-enum", "var-sample"])
def test_a_run_stopped_mid_epoch_and_resumed_equals_the_uninterrupted_run(mode, synthetic_data, tmp_path,
                                                                           uninterrupted):
    train(synthetic_data, tmp_path, mode, STOP)
    stopped_mid_epoch(tmp_path, epoch=2, updates=STOP)
    log = train(synthetic_data, tmp_path, mode, TOTAL)
    assert f"(epoch 2 @ {STOP} updates)" in log
    assert_identical_runs(tmp_path, uninterrupted(mode))


@pytest.mark.slow
def test_a_run_killed_after_a_mid_epoch_checkpoint_resumes_with_the_same_command(synthetic_data, tmp_path,
                                                                                  uninterrupted):
    """SIGKILL as soon as the checkpoint of update 12 is written (fairseq logs "Saved
    checkpoint" once checkpoint_last.pt is complete); the next checkpoint would come 4 updates
    later, so the restart begins at update 12 whatever the process did in between."""
    args = train_args(synthetic_data, tmp_path, "var-sample", "--save-interval-updates", EVERY,
                      "--max-update", TOTAL)
    log = tmp_path / "killed.log"
    proc = fairseq_start("fairseq-train", *args, log=log)
    saved = re.compile(rf"Saved checkpoint .*@ {STOP} updates")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not saved.search(log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_mid_epoch(tmp_path, epoch=2, updates=STOP)
    log = fairseq_cli("fairseq-train", *args).stdout
    assert f"(epoch 2 @ {STOP} updates)" in log
    assert_identical_runs(tmp_path, uninterrupted("var-sample"))


# ------------------------------------------------------------------ two ranks over gloo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args, logs_dir, world_size: int = 2):
    """One fairseq-train per rank (as the README's "Distributed training"), output to files."""
    init = f"tcp://127.0.0.1:{free_port()}"
    return [fairseq_start("fairseq-train", *args, "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
                          "--distributed-world-size", world_size, "--distributed-rank", rank,
                          "--distributed-init-method", init, "--distributed-no-spawn",
                          log=logs_dir / f"rank{rank}.log")
            for rank in range(world_size)]


def wait_ranks(procs, logs_dir, timeout=TIMEOUT_S):
    try:
        for proc in procs:
            proc.wait(timeout=timeout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, proc in enumerate(procs):
        log = (logs_dir / f"rank{rank}.log").read_text()
        assert proc.returncode == 0, f"rank {rank} failed:\n{log[-3000:]}"
    return (logs_dir / "rank0.log").read_text()


def train_ranks(data, save_dir, max_update, logs_dir):
    args = train_args(data, save_dir, "var-sample", "--save-interval-updates", RANKS_EVERY,
                      "--max-update", max_update)
    return wait_ranks(start_ranks(args, logs_dir), logs_dir)


def epochs_and_early_stop(log: str):
    """The epochs validated in a fairseq-train log and whether it ended by early stopping."""
    epochs = [int(e) for e in re.findall(r'\| valid \| \{"epoch": (\d+)', log)]
    return epochs, "early stop since valid performance hasn't improved" in log


@pytest.mark.slow
def test_a_resumed_run_goes_on_counting_patience_and_stops_early_when_the_uninterrupted_run_does(
        synthetic_data, tmp_path):
    """With a learning rate of 0 the validation loss never improves after epoch 1, so
    --patience 2 stops the run after epoch 3; stopped after epoch 2 and resumed, it must stop
    after epoch 3 too (fairseq alone started counting anew and stopped after epoch 5)."""
    def command(save_dir, max_epoch):
        return train_args(synthetic_data, save_dir, "var-enum", "--optimizer", "sgd", "--lr", "0",
                          "--patience", "2", "--max-epoch", str(max_epoch), "--dropout", "0")

    whole = fairseq_cli("fairseq-train", *command(tmp_path / "whole", 10)).stdout
    assert epochs_and_early_stop(whole) == ([1, 2, 3], True)
    first = fairseq_cli("fairseq-train", *command(tmp_path / "resumed", 2)).stdout
    assert epochs_and_early_stop(first) == ([1, 2], False)
    resumed = fairseq_cli("fairseq-train", *command(tmp_path / "resumed", 10)).stdout
    assert epochs_and_early_stop(resumed) == ([3], True)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-epoch", "end-of-epoch"])
def test_a_resumed_run_halves_the_lr_after_the_validations_the_uninterrupted_run_halves_after(
        where, synthetic_data, tmp_path):
    """With a learning rate of 0 no validation improves after epoch 1, and reduce_lr_on_plateau
    counts them. Stopped in the middle of epoch 3 or at the end of epoch 2 and resumed, the run
    must hold the uninterrupted run's count at the end of epoch 4. fairseq saved only torch's
    best value (the count started anew), and it steps the scheduler with an epoch's validation
    after saving that epoch's checkpoint (a run resumed from it never counted that validation)."""
    def command(save_dir, *stop):
        return train_args(synthetic_data, save_dir, "var-enum", "--optimizer", "sgd", "--lr", "0", "--dropout", "0",
                          "--lr-scheduler", "reduce_lr_on_plateau", "--lr-patience", "5", "--max-epoch", "4",
                          "--save-interval-updates", EVERY, *stop)

    def scheduler(save_dir):
        return torch.load(save_dir / "checkpoint_last.pt")["optimizer_history"][-1]["lr_scheduler_state"]

    fairseq_cli("fairseq-train", *command(tmp_path / "whole"))
    if where == "mid-epoch":
        fairseq_cli("fairseq-train", *command(tmp_path / "resumed", "--max-update", 20))
        stopped_mid_epoch(tmp_path / "resumed", epoch=3, updates=20)
    else:
        fairseq_cli("fairseq-train", *command(tmp_path / "resumed", "--max-epoch", 2))
        iterator = torch.load(tmp_path / "resumed" / "checkpoint_last.pt")["extra_state"]["train_iterator"]
        assert (iterator["epoch"], iterator["iterations_in_epoch"]) == (3, 0)
    fairseq_cli("fairseq-train", *command(tmp_path / "resumed"))
    whole = scheduler(tmp_path / "whole")
    assert whole["num_bad_epochs"] == 2  # epochs 2 and 3; epoch 4's is counted after its checkpoint
    resumed = scheduler(tmp_path / "resumed")
    for key in ("best", *reproducibility.PLATEAU_COUNTERS):
        assert resumed[key] == whole[key], key


@pytest.mark.slow
def test_a_two_rank_run_stopped_mid_epoch_and_resumed_equals_the_uninterrupted_run(synthetic_data, tmp_path):
    for name in ("full", "resumed", "logs-full", "logs-stop", "logs-resume"):
        (tmp_path / name).mkdir()
    train_ranks(synthetic_data, tmp_path / "full", RANKS_TOTAL, tmp_path / "logs-full")
    train_ranks(synthetic_data, tmp_path / "resumed", RANKS_STOP, tmp_path / "logs-stop")
    stopped_mid_epoch(tmp_path / "resumed", epoch=2, updates=RANKS_STOP)
    log = train_ranks(synthetic_data, tmp_path / "resumed", RANKS_TOTAL, tmp_path / "logs-resume")
    assert f"(epoch 2 @ {RANKS_STOP} updates)" in log
    assert_identical_runs(tmp_path / "resumed", tmp_path / "full")


HEARTBEAT_S = 8


@pytest.mark.slow
def test_a_stopped_rank_ends_the_others_within_the_heartbeat_timeout(synthetic_data, tmp_path):
    """SIGSTOP rank 1 once training runs: rank 0, blocked in the gradient all-reduce, must end
    with a non-zero status and a message naming --heartbeat-timeout within the timeout (plus
    slack for a loaded machine), instead of waiting forever."""
    args = train_args(synthetic_data, tmp_path / "ckpt", "var-enum", "--max-update", 100000, "--no-save",
                      "--disable-validation", "--log-interval", 1, "--heartbeat-timeout", HEARTBEAT_S)
    procs = start_ranks(args, tmp_path)
    rank0_log = tmp_path / "rank0.log"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "train_inner" not in rank0_log.read_text():
            assert procs[0].poll() is None and time.monotonic() < deadline, rank0_log.read_text()[-3000:]
            time.sleep(0.5)
        os.kill(procs[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        status = procs[0].wait(timeout=HEARTBEAT_S + 40)
        waited = time.monotonic() - stopped
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = rank0_log.read_text()
    assert status != 0
    assert f"no training or validation step for {HEARTBEAT_S} s (--heartbeat-timeout)" in log, log[-3000:]
    assert waited <= HEARTBEAT_S + 40


# ------------------------------------------------------------------ in process: the mechanisms


def task_config(data=None, seed: int = 1):
    return VarAttnTranslationConfig(
        data=None if data is None else str(data), source_lang="src" if data else None,
        target_lang="tgt" if data else None, train_subset="train", dataset_impl=None,
        required_seq_len_multiple=1, seed=seed, heartbeat_timeout=-1)


def epoch_batches(itr):
    return [batch["id"].tolist() for batch in itr]


def test_an_iterator_created_in_a_later_epoch_has_the_batches_of_the_uninterrupted_run(synthetic_data):
    """The iterator of a run resumed in epoch 2 at batch 3 yields exactly what the iterator
    created in epoch 1 and reused (the uninterrupted run) yields from there on."""
    options = dict(max_tokens=500, seed=1, ignore_invalid_inputs=True)

    def iterator(epoch, **extra):
        task = VarAttnTranslationTask.setup_task(task_config(synthetic_data))
        task.load_dataset("train")
        return task, task.get_batch_iterator(task.dataset("train"), epoch=epoch, **options, **extra)

    task, itr = iterator(1)
    uninterrupted = {}
    for epoch in (1, 2, 3):
        uninterrupted[epoch] = epoch_batches(itr.next_epoch_itr(shuffle=True))
        assert task.get_batch_iterator(task.dataset("train"), epoch=itr.next_epoch_idx, **options) is itr

    _, resumed = iterator(2)
    resumed.load_state_dict({"epoch": 2, "iterations_in_epoch": 3, "shuffle": True})
    assert epoch_batches(resumed.next_epoch_itr(shuffle=True)) == uninterrupted[2][3:]
    assert epoch_batches(resumed.next_epoch_itr(shuffle=True)) == uninterrupted[3]

    # fairseq's own construction in epoch 2 (what an uncached iterator gets) has other batches
    _, rebuilt = iterator(2, disable_iterator_cache=True)
    rebuilt.load_state_dict({"epoch": 2, "iterations_in_epoch": 0, "shuffle": True})
    assert sorted(map(sorted, epoch_batches(rebuilt.next_epoch_itr(shuffle=True)))) != sorted(
        map(sorted, uninterrupted[2]))


class PlainOptimizer:
    def backward(self, loss):
        loss.backward()


def sampled_positions(monkeypatch, rank: int, update: int, mode: str = "var-sample", seed: int = 3):
    """The latent samples of one training step through the task, as rank ``rank``."""
    monkeypatch.setattr(reproducibility, "data_parallel_rank", lambda: rank)
    task = VarAttnTranslationTask(task_config(seed=seed), None, None)
    model = build_model(mode, seed=0)
    batch = random_batch(model, [5, 2, 4], [3, 6, 4])
    seen = []
    model.register_forward_hook(lambda module, inputs, out: seen.append(out))
    torch.manual_seed(0)  # the global generator is the same for every call
    criterion = VarAttnCriterion(SimpleNamespace(target_dictionary=model.decoder.dictionary), False)
    task.train_step(batch, model, criterion, PlainOptimizer(), update)
    (out,) = seen
    return out.sample_indices if mode != "var-relaxed" else out.relaxed_token_log_probs


@pytest.mark.parametrize("mode", ["var-sample", "var-relaxed"])
def test_each_rank_draws_its_own_noise_and_the_same_noise_on_a_rerun(mode, monkeypatch):
    rank0 = sampled_positions(monkeypatch, 0, 7, mode)
    assert torch.equal(rank0, sampled_positions(monkeypatch, 0, 7, mode))  # reproducible
    assert not torch.equal(rank0, sampled_positions(monkeypatch, 1, 7, mode))  # per rank
    assert not torch.equal(rank0, sampled_positions(monkeypatch, 0, 8, mode))  # per update
    assert not torch.equal(rank0, sampled_positions(monkeypatch, 0, 7, mode, seed=4))  # per --seed


def test_noise_seeds_differ_for_every_seed_rank_and_update():
    seeds = {reproducibility.noise_seed(s, r, u) for s in range(3) for r in range(4) for u in range(50)}
    assert len(seeds) == 3 * 4 * 50 and all(0 <= s < 2**63 for s in seeds)


def test_watchdog_ends_the_process_after_the_timeout_without_steps_and_not_before(caplog):
    exited = threading.Event()
    statuses = []

    def fake_exit(status):
        statuses.append(status)
        exited.set()

    watchdog = Watchdog(0.5, rank=1, exit=fake_exit)
    for _ in range(6):  # steps every 0.2 s: alive
        watchdog.pulse()
        time.sleep(0.2)
    assert not exited.is_set()
    assert exited.wait(5)  # no more steps: ends
    assert statuses == [1]
    assert "rank 1: no training or validation step for 0.5 s (--heartbeat-timeout)" in caplog.text


def test_watchdog_is_armed_only_for_distributed_runs_with_a_timeout():
    from var_attn_plugin.watchdog import watchdog_for

    assert watchdog_for(-1) is None and watchdog_for(30) is None  # not distributed here


def test_watchdog_ends_the_process_even_when_a_log_handler_writes_to_a_closed_stream():
    """A handler left on a closed stream (another library's, a finished capture) must not keep
    the watchdog from ending the process: flushing it raises."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    stream.close()
    exited = threading.Event()
    try:
        Watchdog(0.3, rank=1, exit=lambda status: exited.set()).pulse()
        assert exited.wait(5)
    finally:
        logging.getLogger().removeHandler(handler)
