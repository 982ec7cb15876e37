"""The converged comparison (varattn_experiments.comparison and converge_report): the report on
partial results from manifests and fairseq logs, the archive, runs kept there, the reference
links, wall time without pauses, and the whole pipeline on tiny data, killed and resumed."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import BIN_DIR, write_synthetic_dictionary

from varattn_experiments import comparison, steps
from varattn_experiments import converge_report as report
from varattn_experiments.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent
NATS = 0.6931471805599453


def at(clock: str) -> float:
    """2026-01-01 CLOCK (UTC) in seconds since the epoch, as manifests keep times."""
    return datetime.strptime(f"2026-01-01 {clock}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def write_manifest(run: Path, train_attempts, done_steps=(), config=None) -> None:
    """A manifest with these training attempts (``(start, end, pauses)`` clocks) and finished steps."""
    def attempt(start, end, pauses=()):
        return {"started": at(start), "ended": None if end is None else at(end), "exit_code": 0,
                "code_version": "test", "host": "test", "pid": None,
                "pauses": [[at(a), None if b is None else at(b)] for a, b in pauses]}

    data = {"config": config or {"kind": "comparison"}, "steps": {}}
    data["steps"]["train"] = {"done": "train" in done_steps, "command": None,
                              "attempts": [attempt(*a) for a in train_attempts]}
    for name in done_steps:
        if name != "train":
            data["steps"][name] = {"done": True, "command": None, "attempts": [attempt("12:00:00", "12:00:01")]}
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(data))


def valid(clock, updates, ppl):
    return f'2026-01-01 {clock} | INFO | valid | {{"epoch": 1, "valid_ppl": "{ppl}", "valid_num_updates": "{updates}"}}'


def fresh_start(clock):
    """fairseq's line for a training that starts from scratch (no checkpoint to resume)."""
    return f"2026-01-01 {clock} | INFO | fairseq.trainer | No existing checkpoint found /x/checkpoint_last.pt"


def fake_run(root: Path, corpus: str, mode: str, seed: int, ppl: float, bleu: float, done=True):
    run = root / corpus / f"{mode}-seed{seed}"
    (run / "eval").mkdir(parents=True)
    (run / "align").mkdir()
    lines = [valid("10:01:00", 10, ppl * 2), "2026-01-01 10:02:00 | INFO | x | killed here"]
    if seed == 2:
        lines.append("2026-01-01 10:02:00 | INFO | fairseq_cli.train | early stop since valid performance "
                     "hasn't improved for last 3 runs")
    attempts = [("10:00:00", "10:02:00")]
    finished = []
    if done:  # a second attempt of 3 minutes: wall time 2 + 3 minutes
        attempts.append(("11:00:00", "11:03:00"))
        lines += [valid("11:01:00", 20, ppl),
                  '2026-01-01 11:03:00 | INFO | train | {"epoch": 2, "train_num_updates": "20"}']
        (run / "eval" / "validate.log").write_text(
            f"x | valid on 'test' subset | loss 4.5 | nll_loss 4.4 | ppl {ppl} | bound_ppl {ppl + 1} | "
            "kl 0.5 | prior_ent 1 | post_ent 0.5 | wps 100\n")
        (run / "eval" / "bleu-exact.json").write_text(json.dumps(
            {"name": "BLEU", "score": bleu, "verbose_score": "50.0/30.0/20.0/10.0 (BP = 1.000 ratio = 1.500 "
             "hyp_len = 15 ref_len = 10)"}))
        (run / "eval" / "bleu-kmax.json").write_text(json.dumps({"name": "BLEU", "score": bleu - 1}))
        (run / "eval" / "bleu-noeos.json").write_text(json.dumps(
            {"name": "BLEU", "score": bleu + 2, "verbose_score": f"BP = 1.000 ratio = {1 + seed / 10:.3f} hyp_len"}))
        (run / "align" / "prior.aer.json").write_text(json.dumps({"aer": 0.5}))
        (run / "eval" / "diagnose.json").write_text(json.dumps(
            {"mode": mode, "tokens": 100, "ppl": ppl, "ppl_other_source": 3 * ppl, "kl_posterior_prior": seed / 10,
             "position_spread": 1.0, "prior_entropy": 2.0, "uniform_entropy": 2.5}))
        (run / "align" / "prior.boundaries.json").write_text(
            json.dumps({"links": 10, "first": seed / 10, "last": 0.5, "busiest": 0.2 + seed / 10}))
        finished = ["train", "validate", "diagnose", "bleu-exact", "bleu-kmax", "bleu-noeos", "align", "aer",
                    "boundaries"]
    (run / "train.log").write_text("\n".join(lines) + "\n")
    write_manifest(run, attempts, finished)


def fake_comparison(root: Path) -> None:
    """Ding with two finished var-enum runs, an unfinished soft run and reference links."""
    fake_run(root, "ding", "var-enum", 1, ppl=20.0, bleu=10.0)
    fake_run(root, "ding", "var-enum", 2, ppl=22.0, bleu=12.0)
    fake_run(root, "ding", "soft", 1, ppl=30.0, bleu=5.0, done=False)
    (root / "ding" / "ref").mkdir()
    (root / "ding" / "ref" / "gold.align").write_text("0-0\n")
    (root / "ding" / "ref" / "diagonal.aer.json").write_text(json.dumps({"aer": 0.25}))
    (root / "ding" / "ref" / "gold.boundaries.json").write_text(json.dumps({"links": 1, "first": 1.0, "last": 0.0}))


def report_text(root: Path, corpora=("ding",), modes=("soft", "var-enum"), seeds=("1", "2"), out=None) -> str:
    """The report of ROOT without its first line (which names ROOT) and its last (the curves)."""
    out = out or root.parent
    output = out / (root.name + ".results.txt")
    report.main([str(root), "--corpora", *corpora, "--modes", *modes, "--seeds", *seeds,
                 "--curves", str(out / f"{root.name}-curves.png"), "--output", str(output)])
    return "\n".join(output.read_text().splitlines()[1:-1])


def rows_of(text: str):
    return {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines() if line.startswith("| ")}


def test_report_reads_manifests_and_logs_and_marks_unfinished_runs(tmp_path):
    fake_comparison(tmp_path)
    run = tmp_path / "ding" / "var-enum-seed1"
    log = report.read_train_log(run / "train.log", Manifest(run))
    assert log.attempts == 2 and log.updates == 20 and log.wall == 5 * 60
    assert log.curve.updates == [10, 20] and log.curve.ppl == [40.0, 20.0]
    assert log.curve.wall == [60, 2 * 60 + 60]  # the first attempt's 2 minutes, then 1 into the second
    curves = tmp_path / "curves.png"
    report.main([str(tmp_path), "--corpora", "ding", "--modes", "soft", "var-enum", "marginal",
                 "--seeds", "1", "2", "--curves", str(curves)])
    text = (tmp_path / "results.md").read_text()
    for table in re.findall(r"(?:^\|.*\n)+", text, re.M):  # every row of a table has its header's columns
        assert len({line.count("|") for line in table.splitlines()}) == 1, table
    translation, alignment = text.split("Agreement with eflomal")
    translation, diagnosis = translation.split("Does the model use its alignment?")
    rows, diagnosed = rows_of(translation), rows_of(diagnosis)
    assert [c.strip() for c in diagnosed["var-enum"]] == ["21.00 ± 1.00", "63.00 ± 3.00", "0.150 ± 0.050",
                                                          "1.000 ± 0.000", "2.000 ± 0.000", "2.500 ± 0.000"]
    cells = [c.strip() for c in rows["var-enum"]]
    assert cells[0] == "21.00 ± 1.00" and cells[2] == f"{0.5 * NATS:.3f} ± 0.000"  # exact PPL, KL in nats
    # BLEU exact, K-max, without the EOS penalty, length ratios, updates, wall time (minutes), early stops
    assert cells[5:] == ["11.00 ± 1.00", "10.00 ± 1.00", "13.00 ± 1.00", "1.50 ± 0.00; 1.15 ± 0.05", "20 ± 0",
                         "5.0 ± 0.0", "1/2"]
    assert "soft (0/2 seeds; seed 2 not started; seed 1 training)" in rows
    assert "marginal (0/2 seeds; seeds 1, 2 not started)" in rows
    alignment, boundaries = alignment.split("Where the links go")
    aer = rows_of(alignment)
    assert [c.strip() for c in aer["var-enum"]] == ["0.500 ± 0.000", "—", "—"]
    assert [c.strip() for c in aer["diagonal baseline"]] == ["0.250"] * 3
    shares = rows_of(boundaries)
    assert [c.strip() for c in shares["var-enum"]] == ["0.15 ± 0.05 / 0.50 ± 0.00; 0.35 ± 0.05", "—", "—"]
    # the reference was written before the busiest word was measured
    assert [c.strip() for c in shares["eflomal (the reference links)"]] == ["1.00 / 0.00; —"] * 3
    assert not any(name.startswith("soft") for name in shares), "no row for a mode with no links yet"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_still_training_is_reported_at_its_last_validation_and_its_last_log_line(tmp_path):
    fake_comparison(tmp_path)
    run = tmp_path / "ding" / "soft-seed1"
    write_manifest(run, [("10:00:00", None)])  # still running: its time ends at its log's last line
    with open(run / "train.log", "a") as log:
        log.write('2026-01-01 10:04:00 | INFO | train_inner | {"epoch": 1, "num_updates": "15", "lr": "0.0005"}\n')
    assert report.read_train_log(run / "train.log", Manifest(run)).wall == 4 * 60
    text = report_text(tmp_path, modes=("soft", "var-enum"))
    assert report_text(tmp_path, modes=("soft", "var-enum")) == text  # the same whenever made
    progress = rows_of(text.split("Runs still training")[1].split("Does the model")[0])
    assert list(progress) == ["run", "soft seed 1"]  # finished runs are in the main table only
    assert [c.strip() for c in progress["soft seed 1"]] == ["15", "0.0005", "60.00", "—", "—", "—", "—", "—", "—",
                                                            "4.0"]


def test_wall_time_leaves_out_pauses_and_attempts_before_a_fresh_start(tmp_path):
    (tmp_path / "train.log").write_text("\n".join([
        fresh_start("10:00:05"),
        valid("10:01:00", 10, 50),
        fresh_start("11:00:30"),
        valid("11:01:30", 10, 40),
        valid("11:33:30", 20, 35),  # after a pause of 30 minutes
        "2026-01-01 12:00:10 | INFO | fairseq.trainer | Loaded checkpoint /x/checkpoint_last.pt (epoch 1 @ 20 updates)",
        valid("12:01:00", 30, 30),
    ]) + "\n")
    write_manifest(tmp_path, [("10:00:00", "10:02:00"),  # discarded: the next attempt started from scratch
                              ("11:00:00", "11:34:30", [("11:02:00", "11:32:00")]),
                              ("12:00:00", "12:02:00", [("12:01:30", None)])])  # ended while paused
    log = report.read_train_log(tmp_path / "train.log", Manifest(tmp_path))
    assert log.attempts == 3 and log.updates == 30
    assert log.wall == (34.5 - 30) * 60 + 90
    assert log.curve.updates == [10, 20, 30] and log.curve.ppl == [40.0, 35.0, 30.0]
    assert log.curve.wall == [90, 3.5 * 60, 4.5 * 60 + 60]


def set_threads(run: Path, threads) -> None:
    """Give the manifest's training attempts these thread counts (as the runner's --threads records them)."""
    data = json.loads((run / "manifest.json").read_text())
    for attempt, count in zip(data["steps"]["train"]["attempts"], threads):
        attempt["threads"] = count
    (run / "manifest.json").write_text(json.dumps(data))


def test_wall_time_is_marked_when_a_run_trained_with_more_than_one_thread(tmp_path):
    fake_comparison(tmp_path)
    def translation_rows():
        return rows_of(report_text(tmp_path).split("Does the model use its alignment?")[0])

    assert translation_rows()["var-enum"][10].strip() == "5.0 ± 0.0"  # the attempts record 1 thread or none
    set_threads(tmp_path / "ding" / "var-enum-seed2", [1, 2])  # the second attempt took two threads
    rows = translation_rows()
    assert rows["var-enum"][10].strip() == "5.0 ± 0.0 ‡"
    assert report.read_train_log(tmp_path / "ding" / "var-enum-seed2" / "train.log",
                                 Manifest(tmp_path / "ding" / "var-enum-seed2")).threads == 2


def test_threads_of_attempts_before_a_fresh_start_do_not_count(tmp_path):
    (tmp_path / "train.log").write_text("\n".join([
        fresh_start("10:00:05"),
        valid("10:01:00", 10, 50),
        fresh_start("11:00:30"),
        valid("11:01:30", 10, 40),
    ]) + "\n")
    write_manifest(tmp_path, [("10:00:00", "10:02:00"), ("11:00:00", "11:02:00")])
    set_threads(tmp_path, [2, 1])
    assert report.read_train_log(tmp_path / "train.log", Manifest(tmp_path)).threads == 1
    set_threads(tmp_path, [1, 2])
    assert report.read_train_log(tmp_path / "train.log", Manifest(tmp_path)).threads == 2


def test_the_committed_reports_and_readme_table_are_those_of_the_committed_runs(tmp_path):
    """A committed report is the report of its archive, curves path included, and the README's
    table the summary of the archives: a run archived without `converge refresh` (or the
    reverse) fails here."""
    import shutil

    for archive, output, _, _, _ in comparison.COMMITTED_REPORTS:
        shutil.copytree(REPO / archive, tmp_path / archive, dirs_exist_ok=True)
        (tmp_path / output).write_text("stale\n")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    written = comparison.refresh_reports(tmp_path)
    assert set(written) == {path for entry in comparison.COMMITTED_REPORTS for path in entry[1::3]} | {"README.md"}
    for _, output, _, _, curves in comparison.COMMITTED_REPORTS:
        # the first line names the archive and the time it was made
        again = (tmp_path / output).read_text(encoding="utf-8").splitlines()[1:]
        assert (REPO / output).read_text(encoding="utf-8").splitlines()[1:] == again, \
            f"{output} is not the report of its archive: python -m varattn_experiments converge refresh"
        assert again[-1] == f"Learning curves: {curves}" and (REPO / curves).is_file()
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == (REPO / "README.md").read_text(encoding="utf-8"), \
        "the README's results table is not the summary of the archives: python -m varattn_experiments converge refresh"


def test_the_archive_keeps_what_the_report_reads_and_no_checkpoint(tmp_path):
    root, kept = tmp_path / "root", tmp_path / "archive"
    fake_comparison(root)
    (root / "ding" / "data").mkdir()
    (root / "ding" / "data" / "stats.json").write_text(json.dumps({"train_pairs": 5, "valid_pairs": 1,
                                                                    "test_pairs": 1}))
    (root / "ding" / "data" / "train.de").write_text("Hallo\n")
    for run in ("var-enum-seed1", "soft-seed1"):
        (root / "ding" / run / "checkpoints").mkdir()
        (root / "ding" / run / "checkpoints" / "checkpoint_last.pt").write_bytes(b"weights")
        (root / "ding" / run / "eval" / "hyp-exact.txt").write_text("hello\n")
    comparison.archive(root, kept, ["ding"])
    assert not list(kept.rglob("*.pt")) and not list(kept.rglob("train.de")) and not list(kept.rglob("hyp-*"))
    assert (kept / "ding" / "soft-seed1" / "train.log").is_file()  # an unfinished run is kept as it stands
    assert report_text(kept) == report_text(root) and "Data: 5 train" in report_text(kept)
    # a score gone (its step redone) goes from the archive too; unchanged files stay as they are
    (root / "ding" / "var-enum-seed2" / "eval" / "bleu-kmax.json").unlink()
    before = (kept / "ding" / "var-enum-seed1" / "train.log").stat().st_mtime_ns
    assert comparison.archive(root, kept, ["ding"]) == 1
    assert not (kept / "ding" / "var-enum-seed2" / "eval" / "bleu-kmax.json").exists()
    assert (kept / "ding" / "var-enum-seed1" / "train.log").stat().st_mtime_ns == before


def test_a_root_scored_against_other_reference_links_is_not_archived(tmp_path, capsys):
    root, kept = tmp_path / "root", tmp_path / "archive"
    fake_comparison(root)
    for folder in (root, kept):
        (folder / "ding" / "ref").mkdir(parents=True, exist_ok=True)
        (folder / "ding" / "ref" / "test.sha256").write_text("the same test set\n")
    (kept / "ding" / "ref" / "gold.align").write_text("0-1\n")  # another eflomal sample
    assert comparison.archive(root, kept, ["ding"]) == 0
    assert (kept / "ding" / "ref" / "gold.align").read_text() == "0-1\n" and not (kept / "ding" / "soft-seed1").exists()
    assert "other reference links" in capsys.readouterr().out
    (kept / "ding" / "ref" / "gold.align").write_text("0-0\n")  # the same links: archived
    assert comparison.archive(root, kept, ["ding"]) > 0 and (kept / "ding" / "soft-seed1" / "train.log").is_file()

def test_an_unfinished_run_started_again_does_not_replace_a_longer_archived_record(tmp_path):
    """ROOT lost and the run started again: its shorter log waits until it passes the archive's;
    a finished run replaces the record whatever its length."""
    root, kept = tmp_path / "root", tmp_path / "archive"
    fake_run(kept, "ding", "soft", 1, ppl=30.0, bleu=5.0, done=False)
    with open(kept / "ding" / "soft-seed1" / "train.log", "a") as log:
        log.write(valid("10:03:00", 40, 25.0) + "\n")
    record = (kept / "ding" / "soft-seed1" / "train.log").read_text()
    fake_run(root, "ding", "soft", 1, ppl=30.0, bleu=5.0, done=False)  # update 10
    assert comparison.last_update(kept / "ding" / "soft-seed1") == 40
    assert comparison.last_update(root / "ding" / "soft-seed1") == 10
    assert comparison.archive(root, kept, ["ding"]) == 0
    assert (kept / "ding" / "soft-seed1" / "train.log").read_text() == record
    with open(root / "ding" / "soft-seed1" / "train.log", "a") as log:  # it passes the record
        log.write(valid("10:05:00", 41, 24.0) + "\n")
    assert comparison.archive(root, kept, ["ding"]) == 1  # its log (the fake manifests are alike)
    assert (kept / "ding" / "soft-seed1" / "train.log").read_text() == \
        (root / "ding" / "soft-seed1" / "train.log").read_text()
    fake_run(kept, "ding", "var-enum", 1, ppl=20.0, bleu=10.0)
    with open(kept / "ding" / "var-enum-seed1" / "train.log", "a") as log:
        log.write(valid("11:05:00", 90, 19.0) + "\n")
    fake_run(root, "ding", "var-enum", 1, ppl=21.0, bleu=9.0)  # finished at update 20
    comparison.archive(root, kept, ["ding"])
    assert comparison.last_update(kept / "ding" / "var-enum-seed1") == 20

def test_transcribed_runs_count_in_the_tables_and_are_marked(tmp_path):
    fake_run(tmp_path, "ding", "var-enum", 1, ppl=20.0, bleu=10.0)
    lost = tmp_path / "ding" / "var-enum-seed2"
    lost.mkdir(parents=True)
    (lost / "transcribed.json").write_text(json.dumps({
        "provenance": "an earlier report", "updates": 30, "wall_minutes": 7.0, "early_stop": True,
        "test": {"ppl": 22.0, "bound_ppl": 23.0, "kl_nats": 0.1, "prior_ent_nats": 1.0, "post_ent_nats": None},
        "bleu": {"exact": 12.0, "kmax": 11.0}, "aer": {"prior": 0.7, "posterior": None},
        "diagnosis": {"ppl": 22.0, "ppl_other_source": 66.0}}))
    text = report_text(tmp_path)
    cells = [c.strip() for c in rows_of(text.split("Does the model")[0])["var-enum †"]]
    nats = 0.5 * NATS  # the real run's KL: 0.5 bits
    assert cells[:3] == ["21.00 ± 1.00", "22.00 ± 1.00", f"{(nats + 0.1) / 2:.3f} ± {(nats - 0.1) / 2:.3f}"]
    assert cells[5:] == ["11.00 ± 1.00", "10.00 ± 1.00", "12.00", "1.50; 1.10", "25 ± 5", "6.0 ± 1.0", "1/2"]
    assert "- ding var-enum seed 2: an earlier report" in text
    (lost / "transcribed.json").write_text(json.dumps({"updates": 30}))
    with pytest.raises(SystemExit, match="provenance"):
        report_text(tmp_path)


def test_a_run_the_archive_holds_as_finished_is_not_trained_again(tmp_path):
    kept, root = tmp_path / "archive", tmp_path / "root"
    runs = {run.name: run for run in comparison.runs(["ding"], ["soft", "var-enum"], [1, 2], comparison.TINY)}
    every = [s.name for s in runs["soft-seed1"].steps(root)]
    write_manifest(kept / "ding" / "soft-seed1", [("10:00:00", "10:01:00")], every)
    write_manifest(kept / "ding" / "var-enum-seed1", [("10:00:00", "10:01:00")], ["train", "validate"])
    (kept / "ding" / "soft-seed2").mkdir(parents=True)
    (kept / "ding" / "soft-seed2" / "transcribed.json").write_text(json.dumps({"provenance": "x"}))
    plan = comparison.plan(list(runs.values()), root, kept)
    assert sorted(r.name for r in plan.kept) == ["soft-seed1", "soft-seed2"]
    assert sorted(r.name for r in plan.todo) == ["var-enum-seed1", "var-enum-seed2"]
    write_manifest(root / "ding" / "soft-seed1", [("10:00:00", None)])  # started here: it goes on here
    assert "soft-seed1" in [r.name for r in comparison.plan(list(runs.values()), root, kept).todo]


def test_a_training_that_stopped_early_is_not_continued_when_the_maximum_rises(tmp_path):
    run = comparison.runs(["syn-null"], ["soft"], [1], comparison.TINY)[0]
    step = run.steps(tmp_path)[0]
    folder = run.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "train.log").write_text("x | early stop since valid performance hasn't improved\n")
    assert step.settled(folder)
    (folder / "train.log").write_text("x | done training\n")
    assert not step.settled(folder)


def test_boundary_shares_count_links_on_the_first_last_and_busiest_source_word(tmp_path):
    # sentence 1: 3 words, links to 0, 2, 2, 1; sentence 2: one word (first and last), one link; sentence 3: none
    lengths, lines = [3, 1, 4], ["0-0 2-1 2-2 1-3", "0?0", ""]
    brute = [(s, i, n) for s, (n, line) in enumerate(zip(lengths, lines)) for i in (int(x[0]) for x in line.split())]
    busiest = sum(max(sum(1 for t, j, _ in brute if t == s and j == i) for i in range(n))
                  for s, n in enumerate(lengths))
    expected = {"links": len(brute), "first": sum(i == 0 for _, i, _ in brute) / len(brute),
                "last": sum(i == n - 1 for _, i, n in brute) / len(brute), "busiest": busiest / len(brute)}
    assert steps.boundary_shares(lengths, lines) == expected == {"links": 5, "first": 0.4, "last": 0.6,
                                                                 "busiest": 0.6}
    assert steps.boundary_shares([2], [""]) == {"links": 0, "first": None, "last": None, "busiest": None}
    # one position taking every link of every sentence
    assert steps.boundary_shares([3, 2], ["1-0 1-1 1-2", "0-0 0-1"])["busiest"] == 1.0
    (tmp_path / "src").write_text("a b c\nd\ne f g h\n")
    (tmp_path / "p.align").write_text("\n".join(lines) + "\n")
    steps.main(["boundaries", str(tmp_path / "src"), str(tmp_path / "p.align")])
    assert json.loads((tmp_path / "p.boundaries.json").read_text()) == expected
    with pytest.raises(SystemExit, match="2 lines of links for 3 source sentences"):
        steps.boundary_shares(lengths, lines[:2])


def test_the_reference_keeps_the_archived_eflomal_links_of_the_same_test_set(tmp_path, monkeypatch):
    """eflomal samples, so its links differ from one preparation to the next: the archive's links of
    the same test set (by checksum) stay the reference, and the new sample is scored against them."""
    from varattn_experiments import links

    calls = []

    def fake_directions(source, target):  # forward links source word 0, reverse source words 0 and 1
        calls.append(len(source))
        return [{(0, 0)} for _ in source], [{(0, 0), (1, 0)} for _ in source]

    monkeypatch.setattr(links, "eflomal_directions", fake_directions)
    corpus = tmp_path / "ding"
    (corpus / "data").mkdir(parents=True)
    for split in ("train", "test"):
        (corpus / "data" / f"{split}.de").write_text("a b\nc d e\n")
        (corpus / "data" / f"{split}.en").write_text("x\ny z\n")
    steps.reference(corpus, eflomal=True)
    ref, kept = corpus / "ref", tmp_path / "kept"
    assert set((ref / "gold.align").read_text().splitlines()) == {"0-0 1-0"}  # grow-diag-final-and
    assert json.loads((ref / "eflomal-forward.aer.json").read_text())["aer"] == pytest.approx(1 / 3, abs=1e-4)
    assert not (ref / "eflomal.aer.json").exists(), "the reference's own sample is not scored against itself"
    kept.mkdir()
    (kept / "gold.align").write_text("0-0\n0-0 1-0\n")  # another sample of the same test set
    (kept / "test.sha256").write_text((ref / "test.sha256").read_text())
    steps.reference(corpus, eflomal=True, kept=kept)
    assert (ref / "gold.align").read_text() == "0-0\n0-0 1-0\n"
    assert 0 < json.loads((ref / "eflomal.aer.json").read_text())["aer"] < 0.5
    # once archived, eflomal's own rows stay as they were too; the diagonal is scored again
    archived = {f"{name}.{kind}.json": json.dumps({"from": "the archive", "file": f"{name}.{kind}"})
                for name in ("eflomal-forward", "eflomal") for kind in ("aer", "boundaries")}
    for name, text in archived.items():
        (kept / name).write_text(text)
    (ref / "diagonal.aer.json").unlink()
    steps.reference(corpus, eflomal=True, kept=kept)
    assert {name: (ref / name).read_text() for name in archived} == archived
    assert len(calls) == 2, "with every score archived, eflomal does not run again"
    assert (ref / "gold.align").read_text() == "0-0\n0-0 1-0\n" and not (ref / "eflomal.align").exists()
    assert "aer" in json.loads((ref / "diagonal.aer.json").read_text())
    (kept / "test.sha256").write_text("another test set\n")
    steps.reference(corpus, eflomal=True, kept=kept)
    assert set((ref / "gold.align").read_text().splitlines()) == {"0-0 1-0"} and len(calls) == 3
    assert json.loads((ref / "eflomal-forward.aer.json").read_text())["aer"] == pytest.approx(1 / 3, abs=1e-4)


# ----------------------------------------------------------------------------- the pipeline, tiny


def converge(tmp_path: Path, *extra: str, check: bool = True, popen: bool = False):
    command = [sys.executable, "-m", "varattn_experiments", "converge", "run", "--tiny", "--root",
               str(tmp_path / "root"), "--archive", str(tmp_path / "archive"), "--corpora", "ding",
               "--modes", "var-enum", "--seeds", "1", "--parallel", "1", "--aligner", "none",
               "--source", f"ding={tmp_path / 'de-en'}", "--output", str(tmp_path / "results.md"), *extra]
    env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert not check or proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_the_comparison_on_tiny_data_killed_resumed_and_not_redone(tmp_path):
    write_synthetic_dictionary(tmp_path / "de-en")
    root = tmp_path / "root"
    run = root / "ding" / "var-enum-seed1"

    # 1. killed while the run trains, once it has saved a checkpoint: the runner and its training
    # step (its own process group) both, as when the machine stops
    proc = converge(tmp_path, popen=True)
    deadline = time.time() + 1200
    try:
        while time.time() < deadline and proc.poll() is None:
            log = run / "train.log"
            if log.is_file() and "Saved checkpoint" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            for pgid in Manifest(run).running().values():
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the comparison ended before the run trained"
    assert not Manifest(run).done("train") and Manifest(root / "ding").done("binarise")

    # 2. the same command: the run resumes from its checkpoint and is evaluated; the corpus is not
    # prepared again
    prepared = Manifest(root / "ding").data["steps"]
    out = converge(tmp_path).stdout
    assert Manifest(root / "ding").data["steps"] == prepared
    steps = Manifest(run).data["steps"]
    assert all(step["done"] for step in steps.values()) and set(steps) == {
        "train", "validate", "diagnose", "bleu-exact", "bleu-kmax", "bleu-noeos", "align", "boundaries"}
    assert Manifest(run).attempts("train") == 2
    loaded = re.search(r"Loaded checkpoint \S*checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)",
                       (run / "train.log").read_text())
    assert loaded and int(loaded.group(1)) > 0
    text = (tmp_path / "results.md").read_text()
    ding = rows_of(text.split("## ")[1].split("Does the model")[0])
    ppl, bound = float(ding["var-enum"][0]), float(ding["var-enum"][1])
    assert 1 < ppl <= bound + 0.01 and 0 <= float(ding["var-enum"][6]) <= 100  # K-max BLEU
    assert not list((tmp_path / "archive").rglob("*.pt"))
    assert "finished: " not in out

    # 3. once more: nothing is redone; in a new root with the same archive nothing is trained
    before = {p: p.read_text() for p in root.rglob("manifest.json")}
    converge(tmp_path)
    assert {p: p.read_text() for p in root.rglob("manifest.json")} == before
    fresh = converge(tmp_path, "--root", str(tmp_path / "root2")).stdout
    assert fresh.count("finished: ") == 1 and not list((tmp_path / "root2").rglob("train.log"))


def test_the_readme_table_is_written_between_its_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\nafter\n")
    report.write_readme_table(readme, REPO)
    assert readme.read_text() == ("# title\n\n<!-- results:begin -->\n" + report.readme_table(REPO)
                                  + "\n<!-- results:end -->\n\nafter\n")
    readme.write_text("no table\n")
    with pytest.raises(SystemExit, match="no results table"):
        report.write_readme_table(readme, REPO)


def test_the_readme_results_prose_leaves_the_figures_to_its_table():
    """The results section's figures are in its table, generated from the archived runs; the prose
    around it states no figure of its own, so that it cannot drift from the runs."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Results\n")[1].split("\n## ")[0]
    prose = "\n".join(line for line in section.splitlines() if not line.startswith("|"))
    assert re.findall(r"\d+\.\d+", section), "the results table has the figures"
    assert not re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", prose), "figures belong in the table, not the prose"


def test_the_summary_table_grows_with_the_evaluated_runs(tmp_path):
    """Modes and corpora without an evaluated run stay out; the KL is a variational mode's only."""
    import shutil

    source = REPO / "docs/runs/near-paper/libreoffice"
    for name in ("var-enum-seed1", "soft-seed1"):
        if (source / name).is_dir():
            shutil.copytree(source / name, tmp_path / "libreoffice" / name)
    table = report.summary_table([("LSTM", tmp_path, "", ["soft", "marginal", "var-enum"]),
                                  ("other", tmp_path / "none", "", ["soft"]),
                                  ("named", tmp_path, "var-", ["var-enum"])], ["libreoffice", "ding"])
    lines = table.splitlines()
    assert "Ding" not in lines[0] and "LibreOffice" in lines[0]
    assert [line.split(" | ")[:2] for line in lines[2:]] == [
        ["| LSTM", f"`{m}`"] for m in ("soft", "var-enum") if report.read_run(tmp_path, "libreoffice", m, "1").metrics
    ] + [["| named", "`enum`"]]  # the prefix dropped
    var_enum = next(line for line in lines if "`var-enum`" in line).split(" | ")[1:]
    run = report.read_run(tmp_path, "libreoffice", "var-enum", "1")
    assert var_enum[1] == f"{run.metrics['ppl']:.2f}" and var_enum[-1] == "1 |"
    assert var_enum[2] == f"{run.metrics['kl'] * math.log(2):.3f}"
    share = run.diagnosis["prior_entropy"] / run.diagnosis["uniform_entropy"]
    assert var_enum[3].endswith(f"({100 * share:.0f}%)")
    assert var_enum[5] == f"{run.aer['prior']:.3f} / {run.aer['posterior']:.3f}"


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_a_run_evaluated_again_reports_its_last_evaluation(tmp_path):
    """A step's log is appended to when the step runs again (a run that trained on after it was
    evaluated): the report reads the last fairseq-validate result, not the first."""
    line = "2026-12-06 09:59:18 | INFO | test | valid on 'test' subset | loss {0} | bound {0} | ppl {1} | wpb 19286"
    log = tmp_path / "validate.log"
    log.write_text("loading model(s)\n" + line.format(3.814, 14.06) + "\nloading model(s)\n"
                   + line.format(3.095, 8.55) + "\n")
    assert report.read_validate(log) == {"loss": 3.095, "bound": 3.095, "ppl": 8.55, "wpb": 19286.0}
    log.write_text("loading model(s)\n")
    assert report.read_validate(log) == {}
