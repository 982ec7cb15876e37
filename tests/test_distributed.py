"""Distributed training on CPU: one ``fairseq-train`` process per rank over gloo, as
the README's "Distributed training" describes (``--distributed-world-size 2`` alone asserts on CUDA devices).

What is compared. fairseq shuffles the list of batches with the seed and the epoch, then
gives rank r the batches r, r+W, r+2W, … (``ShardedIterator``), all-reduces the summed
gradients and divides by the total sample size of all ranks. A single process with
``--update-freq W`` accumulates the gradients of batches 0..W-1 of the same shuffled list
before its first update and divides by the same total. So with dropout 0, plain SGD and the
same seed, 2 ranks and 1 process with ``--update-freq 2`` take identical steps: same logged
metrics (the aggregate over both ranks' batches) and the same parameters.
"""

import os
import socket
import subprocess

import pytest
import torch
from helpers import BIN_DIR, PLUGIN_DIR, fairseq_cli, generation_records, log_records, train_args

WORLD_SIZE = 2
UPDATES = 2
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common_args(data, save_dir, arch):
    return train_args(data, save_dir, "var-enum", "--optimizer", "sgd", "--lr", "0.5", "--dropout", "0",
                      "--max-tokens", "300", "--max-update", UPDATES, "--log-interval", "1", "--seed", "3",
                      arch=arch)


def run_ranks(data, save_dir, arch):
    """Start one fairseq-train per rank and wait for all; returns their CompletedProcess."""
    init = f"tcp://127.0.0.1:{free_port()}"
    command = [str(BIN_DIR / "fairseq-train"), *map(str, common_args(data, save_dir, arch))]
    procs = [
        subprocess.Popen(
            [*command, "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
             "--distributed-world-size", str(WORLD_SIZE), "--distributed-rank", str(rank),
             "--distributed-init-method", init, "--distributed-no-spawn"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
        for rank in range(WORLD_SIZE)
    ]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in procs:  # a rank whose peer died would wait for it forever
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


@pytest.fixture(scope="module", params=["lstm", "transformer"])
def runs(synthetic_data, tmp_path_factory, request):
    """Two gloo ranks and one process with --update-freq 2, for each architecture."""
    root = tmp_path_factory.mktemp(f"distributed-{request.param}")
    ranks = run_ranks(synthetic_data, root / "distributed", request.param)
    single = fairseq_cli("fairseq-train", *common_args(synthetic_data, root / "single", request.param),
                         "--update-freq", WORLD_SIZE)
    return root, ranks, single


def logged_steps(log):
    """The per-update metrics that do not depend on timing."""
    keys = ("num_updates", "loss", "nll_loss", "kl", "prior_ent", "post_ent", "wpb", "bsz", "gnorm")
    return [{key: record[key] for key in keys} for record in log_records(log, "train_inner")]


@pytest.mark.slow
def test_both_ranks_finish_and_log_the_aggregate_of_both_shards(runs):
    _, ranks, single = runs
    for rank, proc in enumerate(ranks):
        assert proc.returncode == 0, f"rank {rank} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    distributed = logged_steps(ranks[0].stdout)  # rank 0 logs; the others log warnings only
    assert [step["num_updates"] for step in distributed] == list(range(1, UPDATES + 1))
    assert distributed == logged_steps(single.stdout)
    assert all(step["gnorm"] > 0 for step in distributed)  # SGD moved the parameters


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_update_freq(runs):
    root, ranks, _ = runs
    distributed = torch.load(root / "distributed" / "checkpoint_last.pt")
    single = torch.load(root / "single" / "checkpoint_last.pt")
    assert distributed["optimizer_history"][-1]["num_updates"] == UPDATES
    assert distributed["model"].keys() == single["model"].keys()
    for name, value in distributed["model"].items():
        torch.testing.assert_close(value, single["model"][name], msg=name)


@pytest.mark.slow
def test_distributed_checkpoint_generates(runs, synthetic_data):
    root, _, _ = runs
    out = fairseq_cli(
        "fairseq-generate", synthetic_data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--path", root / "distributed" / "checkpoint_last.pt", "--cpu", "--gen-subset", "test",
        "--beam", "2", "--max-len-a", "1", "--max-len-b", "2", "--batch-size", "8").stdout
    num_test = len((synthetic_data.parent / "raw" / "test.src").read_text().splitlines())
    records = generation_records(out)
    assert sorted(records) == list(range(num_test)) and all("H" in r for r in records.values())
