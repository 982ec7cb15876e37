"""The training progress filter: speed and time left from fairseq's own log lines."""

import io

from var_attn_plugin.tools.progress import Progress, follow, format_duration, parse_fields


def inner(updates: int, loss: float = 5.0) -> str:
    return (f"2026-01-01 00:00:00 | INFO | train_inner | epoch 001:  {updates} / 325 loss={loss}, "
            f"ppl=32.0, wps=1000, ups=2.0, num_updates={updates}, lr=0.002\n")


def test_time_left_is_measured_from_the_first_update_seen():
    progress = Progress(total_updates=100, label="soft", every=0)
    assert progress.feed(inner(10), now=50.0) is None  # start-up time is not a speed
    line = progress.feed(inner(30), now=60.0)  # 20 updates in 10 s: 70 left take 35 s
    assert line == "soft: update 30/100 (30%) | loss 5.000 | ppl 32.0 | 2.00 updates/s | about 35s left"
    assert progress.estimate(now=60.0, updates=30) == 35.0


def test_work_after_this_run_counts_in_the_estimate():
    progress = Progress(total_updates=100, then=200, every=0)
    progress.feed(inner(10), now=0.0)
    progress.feed(inner(20), now=10.0)  # 1 update/s: 80 + 200 left
    assert progress.estimate(now=10.0, updates=20) == 280.0
    assert format_duration(280) == "4m40s" and format_duration(3720) == "1h02m"


def test_lines_are_throttled_but_the_last_update_and_validation_always_show():
    out = io.StringIO()
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0])
    lines = [inner(10), inner(20), "x | INFO | valid | epoch 001 | valid on 'valid' subset | loss 4.2\n",
             inner(30), inner(100)]
    follow(io.StringIO("".join(lines)), out, Progress(100, every=30.0), clock=lambda: next(clock))
    shown = out.getvalue().splitlines()
    assert len(shown) == 3  # update 20 (first speed), the validation line, update 100 (the end)
    assert shown[0].startswith("update 20/100") and "valid on 'valid'" in shown[1]
    assert shown[2].startswith("update 100/100 (100%)") and "about 0s left" in shown[2]


def test_parse_fields_reads_numbers_only():
    assert parse_fields("loss=1.5, ppl=inf, lr=2e-03, epoch 001") == {"loss": 1.5, "ppl": float("inf"), "lr": 0.002}
