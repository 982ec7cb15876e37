"""examples/converge: the synthetic alignment tasks, the reference links (diagonal, grow-diag-final-and),
the report on partial results, and the recipe end to end on tiny data, killed mid-training and
resumed with the same command."""

import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import BIN_DIR
from test_libreoffice import write_mo
from test_recipes import write_synthetic_dictionary

from var_attn_plugin.data import synthetic
from var_attn_plugin.data.synthetic import TASKS, make_lexicon, translate, write_task

REPO = Path(__file__).resolve().parent.parent
CONVERGE = REPO / "examples" / "converge"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"converge_{name}", CONVERGE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


links = load("links")
report = load("report")


# ----------------------------------------------------------------------------- synthetic tasks


def test_synthetic_tasks_have_the_advertised_alignments():
    lexicon = make_lexicon(seed=0)
    m, h = lexicon.modifiers[0], lexicon.heads[0]
    fertile = next(w for w in lexicon.heads if len(lexicon.translation[w]) == 2)
    plain = next(w for w in lexicon.heads if len(lexicon.translation[w]) == 1)
    source = [h, m, plain, fertile]
    # monotone: word i -> word i
    target, gold = translate(source, "monotone", lexicon)
    assert target == [lexicon.translation[w][0] for w in source] and gold == {(i, i) for i in range(4)}
    # local: the modifier before a head swaps with it
    target, gold = translate(source, "local", lexicon)
    assert target[1:3] == [lexicon.translation[plain][0], lexicon.translation[m][0]]
    assert gold == {(0, 0), (2, 1), (1, 2), (3, 3)}
    # fertility: the fertile head gives two target words, both linked to it
    target, gold = translate(source, "fertility", lexicon)
    assert target[3:] == lexicon.translation[fertile] and {(3, 3), (3, 4)} <= gold and len(gold) == 5
    # null: an unlinked article before every head; particles link to nothing
    source = [lexicon.particles[0], h, m, plain]
    target, gold = translate(source, "null", lexicon)
    assert target == ["the", lexicon.translation[h][0], "the", lexicon.translation[plain][0],
                      lexicon.translation[m][0]]
    assert gold == {(1, 1), (3, 3), (2, 4)}
    with pytest.raises(ValueError, match="unknown task"):
        translate(source, "swap", lexicon)


@pytest.mark.parametrize("task", TASKS)
def test_synthetic_files_are_parallel_and_deterministic(tmp_path, task):
    sizes = (("train", 50), ("valid", 5), ("test", 7))
    write_task(tmp_path / "a", task, sizes, seed=3)
    synthetic.main(["--task", task, "-o", str(tmp_path / "b"), "--train-size", "50", "--valid-size", "5",
                    "--test-size", "7", "--seed", "3"])
    for split, n in sizes:
        files = {s: (tmp_path / "a" / f"{split}.{s}").read_text().splitlines() for s in ("de", "en", "align")}
        assert all(len(lines) == n for lines in files.values())
        for de, en, gold in zip(files["de"], files["en"], files["align"]):
            for link in gold.split():
                i, j = map(int, link.split("-"))
                assert i < len(de.split()) and j < len(en.split())
        for name in (f"{split}.de", f"{split}.en", f"{split}.align"):
            assert (tmp_path / "b" / name).read_text() == (tmp_path / "a" / name).read_text()


# ----------------------------------------------------------------------------- reference links


def test_diagonal_links_every_target_word_inside_the_source():
    assert links.diagonal(4, 4) == {(0, 0), (1, 1), (2, 2), (3, 3)}
    assert links.diagonal(2, 4) == {(0, 0), (1, 1), (1, 2), (1, 3)}  # round(j * 2 / 4), half up, clamped
    assert links.diagonal(5, 2) == {(0, 0), (3, 1)}
    assert links.diagonal(0, 3) == set()


def test_grow_diag_final_and():
    forward = {(0, 0), (1, 1), (3, 3)}
    reverse = {(0, 0), (4, 3)}
    # intersection {0-0}; grow-diag adds 1-1 (a diagonal neighbour in the union, both words
    # unaligned); final-and adds 3-3 (both unaligned) but not 4-3 (target 3 is aligned by then)
    assert links.grow_diag_final_and(forward, reverse) == {(0, 0), (1, 1), (3, 3)}
    # growing follows the union through neighbours of what was added
    assert links.grow_diag_final_and({(0, 0), (1, 1), (2, 2)}, {(0, 0)}) == {(0, 0), (1, 1), (2, 2)}
    assert links.grow_diag_final_and(set(), set()) == set()


def test_links_command_line(tmp_path, capsys):
    (tmp_path / "s").write_text("a b c\nd\n")
    (tmp_path / "t").write_text("x y\ny z w\n")
    links.main(["diagonal", str(tmp_path / "s"), str(tmp_path / "t")])
    assert capsys.readouterr().out == "0-0 2-1\n0-0 0-1 0-2\n"


def test_boundary_shares_count_links_on_the_first_and_last_source_word(tmp_path):
    batch = load("batch")
    # sentence 1: 3 words, links to 0, 2, 2, 1; sentence 2: one word (first and last), one link; sentence 3: none
    lengths, lines = [3, 1, 4], ["0-0 2-1 2-2 1-3", "0?0", ""]
    brute = [(i, n) for n, line in zip(lengths, lines) for i in (int(x[0]) for x in line.split())]
    expected = {"links": len(brute), "first": sum(i == 0 for i, _ in brute) / len(brute),
                "last": sum(i == n - 1 for i, n in brute) / len(brute)}
    assert batch.boundary_shares(lengths, lines) == expected == {"links": 5, "first": 0.4, "last": 0.6}
    assert batch.boundary_shares([2], [""]) == {"links": 0, "first": None, "last": None}
    (tmp_path / "src").write_text("a b c\nd\ne f g h\n")
    (tmp_path / "p.align").write_text("\n".join(lines) + "\n")
    batch.main(["boundaries", str(tmp_path / "src"), str(tmp_path / "p.align")])
    assert json.loads((tmp_path / "p.boundaries.json").read_text()) == expected
    with pytest.raises(SystemExit, match="2 lines of links for 3 source sentences"):
        batch.boundary_shares(lengths, lines[:2])


def test_a_truncated_checkpoint_last_is_replaced_by_the_newest_that_loads(tmp_path, capsys):
    import torch

    batch = load("batch")
    torch.save({"updates": 5}, tmp_path / "checkpoint_1_5.pt")
    torch.save({"updates": 3}, tmp_path / "checkpoint_best.pt")
    os.utime(tmp_path / "checkpoint_best.pt", (1, 1))  # older
    (tmp_path / "checkpoint_last.pt").write_bytes((tmp_path / "checkpoint_1_5.pt").read_bytes()[:100])
    batch.main(["resume-point", str(tmp_path)])
    assert torch.load(tmp_path / "checkpoint_last.pt") == {"updates": 5}
    assert (tmp_path / "checkpoint_last.pt.broken").is_file() and "checkpoint_1_5.pt" in capsys.readouterr().out
    batch.main(["resume-point", str(tmp_path)])  # a checkpoint that loads stays
    assert torch.load(tmp_path / "checkpoint_last.pt") == {"updates": 5}


# ----------------------------------------------------------------------------- report on partial results


def fake_run(root: Path, corpus: str, mode: str, seed: int, ppl: float, bleu: float, done=True):
    run = root / corpus / f"{mode}-seed{seed}"
    (run / "eval").mkdir(parents=True)
    (run / "align").mkdir()
    (run / ".done").mkdir()
    def valid(clock, updates, p):
        return (f'2026-01-01 {clock} | INFO | valid | {{"epoch": 1, "valid_ppl": "{p}", '
                f'"valid_num_updates": "{updates}"}}')

    lines = ["=== attempt 2026-01-01 10:00:00", valid("10:01:00", 10, ppl * 2),
             "2026-01-01 10:02:00 | INFO | x | killed here"]
    if seed == 2:
        lines.append("2026-01-01 10:02:00 | INFO | fairseq_cli.train | early stop since valid performance "
                     "hasn't improved for last 3 runs")
    if done:  # a second attempt of 3 minutes: wall time 2 + 3 minutes
        lines += ["=== attempt 2026-01-01 11:00:00", valid("11:01:00", 20, ppl),
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
        (run / "align" / "prior.boundaries.json").write_text(json.dumps(
            {"links": 10, "first": seed / 10, "last": 0.5}))
        for step in ("train", "validate", "diagnose", "bleu-exact", "bleu-kmax", "bleu-noeos", "aer-prior",
                     "boundaries"):
            (run / ".done" / step).write_text("")
    (run / "train.log").write_text("\n".join(lines) + "\n")


def fake_comparison(root: Path) -> None:
    """Ding with two finished var-enum runs, an unfinished soft run and reference links."""
    fake_run(root, "ding", "var-enum", 1, ppl=20.0, bleu=10.0)
    fake_run(root, "ding", "var-enum", 2, ppl=22.0, bleu=12.0)
    fake_run(root, "ding", "soft", 1, ppl=30.0, bleu=5.0, done=False)
    (root / "ding" / "ref").mkdir()
    (root / "ding" / "ref" / "gold.align").write_text("0-0\n")
    (root / "ding" / "ref" / "diagonal.aer.json").write_text(json.dumps({"aer": 0.25}))
    (root / "ding" / "ref" / "gold.boundaries.json").write_text(json.dumps({"links": 1, "first": 1.0, "last": 0.0}))


def test_report_reads_runs_and_marks_unfinished_ones(tmp_path):
    fake_comparison(tmp_path)
    log = report.read_train_log(tmp_path / "ding" / "var-enum-seed1" / "train.log")
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
    rows = {line.split("|")[1].strip(): line for line in translation.splitlines() if line.startswith("| ")}
    diagnosed = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in diagnosis.splitlines()
                 if line.startswith("| ")}
    assert [c.strip() for c in diagnosed["var-enum"]] == ["21.00 ± 1.00", "63.00 ± 3.00", "0.150 ± 0.050",
                                                          "1.000 ± 0.000", "2.000 ± 0.000", "2.500 ± 0.000"]
    assert diagnosed["soft (0/2 seeds; not started, training)"][0].strip() == "—"
    assert rows["var-enum"].split("|")[2].strip() == "21.00 ± 1.00"  # exact PPL: mean ± half range
    # BLEU exact, K-max, without the EOS penalty, length ratios (exact; no EOS penalty), updates, wall time (minutes)
    assert "| 11.00 ± 1.00 | 10.00 ± 1.00 | 13.00 ± 1.00 | 1.50 ± 0.00; 1.15 ± 0.05 | 20 ± 0 | 5.0 ± 0.0 | 1/2 |" \
        in rows["var-enum"]
    assert rows["var-enum"].split("|")[4].strip() == f"{0.5 * 0.6931471805599453:.3f} ± 0.000"  # KL in nats
    assert "soft (0/2 seeds; not started, training)" in rows
    assert "marginal (0/2 seeds; not started)" in rows
    alignment, boundaries = alignment.split("Where the links go")
    aer_rows = {line.split("|")[1].strip(): line for line in alignment.splitlines() if line.startswith("| ")}
    assert aer_rows["var-enum"].split("|")[2:5] == [" 0.500 ± 0.000 ", " — ", " — "]
    assert aer_rows["diagonal baseline"].split("|")[2:5] == [" 0.250 "] * 3
    shares = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in boundaries.splitlines()
              if line.startswith("| ")}
    assert [c.strip() for c in shares["var-enum"]] == ["0.15 ± 0.05 / 0.50 ± 0.00", "—", "—"]  # seeds 1, 2
    assert [c.strip() for c in shares["eflomal (the reference links)"]] == ["1.00 / 0.00"] * 3
    assert not any(name.startswith("soft") for name in shares), "no row for a mode with no links yet"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def report_text(root: Path, corpora=("ding",), modes=("soft", "var-enum"), seeds=("1", "2"), out=None) -> str:
    """report.py's results.md for ROOT, without its first line (which names ROOT) and its last (the
    curves); the report and the curves are written beside ROOT or in ``out``."""
    out = out or root.parent
    output = out / (root.name + ".results.txt")
    report.main([str(root), "--corpora", *corpora, "--modes", *modes, "--seeds", *seeds,
                 "--curves", str(out / f"{root.name}-curves.png"), "--output", str(output)])
    return "\n".join(output.read_text().splitlines()[1:-1])


# the committed reports (which the README quotes) and the archives they are report.py of:
# (archive, report, curves, corpora, modes)
REPORTED_MODES = ("soft", "marginal", "hard-enum", "var-enum", "var-sample", "transformer-soft",
                  "transformer-marginal", "transformer-var-enum", "transformer-var-sample")
COMMITTED_REPORTS = [
    ("docs/converge-runs", "docs/converge-results.md", "docs/converge-curves.png", ("ding", "libreoffice"),
     REPORTED_MODES),
    ("docs/converge-runs-long", "docs/converge-long-results.md", "docs/converge-long-curves.png", ("ding", "libreoffice"),
     REPORTED_MODES),
]


@pytest.mark.parametrize("archive, kept, curves, corpora, modes", COMMITTED_REPORTS)
def test_the_committed_report_is_the_report_of_the_committed_runs(tmp_path, archive, kept, curves, corpora, modes):
    """A committed report is report.py on its archive: a run archived without regenerating the
    report (or the reverse) fails here."""
    again = report_text(REPO / archive, corpora, modes, ("1", "2"), out=tmp_path)
    assert "\n".join((REPO / kept).read_text(encoding="utf-8").splitlines()[1:-1]) == again, \
        f"regenerate it: python examples/converge/report.py {archive} --corpora {' '.join(corpora)} " \
        f"--modes {' '.join(modes)} --seeds 1 2 --curves {curves} --output {kept}"


def test_the_archive_keeps_what_the_report_reads_and_no_checkpoint(tmp_path):
    root, kept = tmp_path / "root", tmp_path / "archive"
    fake_comparison(root)
    (root / "ding" / "data").mkdir()
    stats = {"train_pairs": 5, "valid_pairs": 1, "test_pairs": 1}
    (root / "ding" / "data" / "stats.json").write_text(json.dumps(stats))
    (root / "ding" / "data" / "train.de").write_text("Hallo\n")
    for run in ("var-enum-seed1", "soft-seed1"):
        (root / "ding" / run / "checkpoints").mkdir()
        (root / "ding" / run / "checkpoints" / "checkpoint_last.pt").write_bytes(b"weights")
        (root / "ding" / run / "eval" / "hyp-exact.txt").write_text("hello\n")
    batch = load("batch")
    batch.main(["archive", str(root), str(kept), "ding"])
    assert not list(kept.rglob("*.pt")) and not list(kept.rglob("train.de")) and not list(kept.rglob("hyp-*"))
    assert (kept / "ding" / "soft-seed1" / "train.log").is_file()  # an unfinished run is kept as it stands
    assert report_text(kept) == report_text(root)
    assert "21.00 ± 1.00" in report_text(kept) and "Data: 5 train" in report_text(kept)

    # a step redone (its marker gone while it reruns) goes from the archive too; unchanged files stay as they are
    (root / "ding" / "var-enum-seed2" / ".done" / "bleu-kmax").unlink()
    before = (kept / "ding" / "var-enum-seed1" / "train.log").stat().st_mtime_ns
    batch.main(["archive", str(root), str(kept), "ding", "var-enum-seed2"])
    assert not (kept / "ding" / "var-enum-seed2" / ".done" / "bleu-kmax").exists()
    assert (kept / "ding" / "var-enum-seed1" / "train.log").stat().st_mtime_ns == before
    assert report_text(kept) == report_text(root)
    batch.main(["archive", str(root), str(tmp_path / "corpus-only"), "ding", "--corpus-only"])
    assert sorted(p.name for p in (tmp_path / "corpus-only" / "ding").iterdir()) == ["data", "ref"]


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
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.split("Does the model")[0].splitlines()
            if line.startswith("| ")}
    cells = [c.strip() for c in rows["var-enum †"]]
    nats = 0.5 * 0.6931471805599453  # the real run's KL: 0.5 bits
    assert cells[:3] == ["21.00 ± 1.00", "22.00 ± 1.00", f"{(nats + 0.1) / 2:.3f} ± {(nats - 0.1) / 2:.3f}"]
    assert cells[4] == "0.347"  # the transcribed run has no posterior entropy: the real run's alone
    # the transcribed run has no BLEU without the EOS penalty, nor length ratios: the real run's alone
    assert cells[5:] == ["11.00 ± 1.00", "10.00 ± 1.00", "12.00", "1.50; 1.10", "25 ± 5", "6.0 ± 1.0", "1/2"]
    assert "- ding var-enum seed 2: an earlier report" in text
    assert report.read_run(tmp_path, "ding", "var-enum", "2").train.curve.updates == []
    (lost / "transcribed.json").write_text(json.dumps({"updates": 30}))
    with pytest.raises(SystemExit, match="provenance"):
        report_text(tmp_path)


def test_a_run_the_archive_holds_as_finished_is_not_trained_again(tmp_path):
    """``converge.sh run`` in a new ROOT with ARCHIVE: a run kept there as finished at this maximum
    (or stopped early, or transcribed) is reported finished and nothing is trained; one kept at a
    lower maximum, which has no checkpoint to go on from, is trained from the beginning."""
    kept = tmp_path / "archive"
    for mode, seed in (("soft", 1), ("var-enum", 2), ("var-enum", 1)):  # seed 2 stopped early (fake_run)
        fake_run(kept, "ding", mode, seed, ppl=20.0, bleu=10.0)
    for seed in (1, 2):
        (kept / "ding" / f"soft-seed{seed}" / ".done").mkdir(parents=True, exist_ok=True)
    (kept / "ding" / "soft-seed1" / ".done" / "finished").write_text("2026-01-01 11:03:00\n")
    (kept / "ding" / "var-enum-seed2" / ".done" / "finished").write_text("2026-01-01 11:03:00\n")
    (kept / "ding" / "var-enum-seed1" / ".done" / "finished").unlink(missing_ok=True)  # evaluation unfinished
    (kept / "ding" / "soft-seed2" / "transcribed.json").write_text(json.dumps(
        {"provenance": "an earlier report", "updates": 20, "early_stop": False}))
    before = {p: p.read_bytes() for p in kept.rglob("*") if p.is_file()}
    env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
               ROOT=str(tmp_path / "root"), ARCHIVE=str(kept), TINY="1")

    def run(mode: str, seed: int, max_updates: int) -> subprocess.CompletedProcess:
        return subprocess.run([*RECIPE_COMMAND, "run", "ding", mode, str(seed)], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=dict(env, MAX_UPDATES=str(max_updates)))

    for mode, seed in (("soft", 1), ("soft", 2), ("var-enum", 2)):
        for max_updates in (20, 15):  # the fake runs reached 20 updates
            proc = run(mode, seed, max_updates)
            assert proc.returncode == 0 and f"finished: ding {mode} seed {seed} (kept in {kept}" in proc.stdout, \
                proc.stdout + proc.stderr
            assert not (tmp_path / "root" / "ding" / f"{mode}-seed{seed}" / "train.log").exists()
    early = run("var-enum", 2, 30)  # stopped early: a higher maximum changes nothing
    assert early.returncode == 0 and "finished: ding var-enum seed 2 (kept in" in early.stdout
    for mode, seed, max_updates in (("soft", 1, 30), ("soft", 2, 30), ("var-enum", 1, 20)):
        proc = run(mode, seed, max_updates)  # trained here: it fails for want of data, after saying why
        assert "finished: " not in proc.stdout and proc.returncode != 0, proc.stdout
        assert (tmp_path / "root" / "ding" / f"{mode}-seed{seed}" / "train.log").is_file()
        if max_updates == 30:
            assert "stopped short of 30 updates, and the archive keeps no checkpoint" in proc.stdout
    assert {p: p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before, "the archive is left as it was"


def log_line(clock: str, text: str) -> str:
    return f"2026-01-01 {clock} | INFO | {text}"


def read_log(tmp_path: Path, lines) -> "report.TrainLog":
    """report.read_train_log of a train.log made of these lines."""
    log_file = tmp_path / "train.log"
    log_file.write_text("\n".join(lines) + "\n")
    return report.read_train_log(log_file)


def test_an_attempt_that_starts_from_scratch_discards_the_earlier_ones(tmp_path):
    line = log_line
    log = read_log(tmp_path, [
        "=== attempt 2026-01-01 10:00:00",
        line("10:00:05", "fairseq.trainer | No existing checkpoint found /x/checkpoint_last.pt"),
        line("10:01:00", 'valid | {"valid_ppl": "50", "valid_num_updates": "10"}'),
        line("10:02:00", "x | killed before a checkpoint was saved"),
        "=== attempt 2026-01-01 11:00:00",
        line("11:00:30", "fairseq.trainer | No existing checkpoint found /x/checkpoint_last.pt"),
        line("11:01:30", 'valid | {"valid_ppl": "40", "valid_num_updates": "10"}'),
        line("11:02:30", "x | killed after epoch 1"),
        "=== attempt 2026-01-01 12:00:00",
        line("12:00:10", "fairseq.trainer | Loaded checkpoint /x/checkpoint_last.pt (epoch 1 @ 10 updates)"),
        line("12:01:00", 'valid | {"valid_ppl": "30", "valid_num_updates": "20"}'),
    ])
    # the first attempt's 2 minutes are gone; the second (2.5 min) started over, the third resumed it
    assert log.attempts == 3 and log.updates == 20
    assert log.wall == 150 + 60
    assert log.curve.updates == [10, 20] and log.curve.ppl == [40.0, 30.0]
    assert log.curve.wall == [90, 150 + 60]


def test_time_spent_paused_is_not_wall_time(tmp_path):
    line = log_line
    log = read_log(tmp_path, [
        "=== attempt 2026-01-01 10:00:00",
        line("10:01:00", 'valid | {"valid_ppl": "50", "valid_num_updates": "10"}'),
        "=== paused 2026-01-01 10:02:00",
        "=== resumed 2026-01-01 10:32:00",
        line("10:33:00", 'valid | {"valid_ppl": "40", "valid_num_updates": "20"}'),
        "=== paused 2026-01-01 10:34:00 (a comment after the time is allowed)",
        "=== paused 2026-01-01 10:40:00",  # a second pause while paused changes nothing
        # killed while paused: the attempt ended at its pause
        "=== attempt 2026-01-01 12:00:00",
        line("12:00:10", "fairseq.trainer | Loaded checkpoint /x/checkpoint_last.pt (epoch 2 @ 20 updates)"),
        "=== resumed 2026-01-01 12:00:20",  # a resume without a pause in this attempt counts nothing
        line("12:01:00", 'valid | {"valid_ppl": "30", "valid_num_updates": "30"}'),
    ])
    assert log.attempts == 2 and log.updates == 30
    assert log.wall == 4 * 60 + 60
    assert log.curve.wall == [60, 3 * 60, 4 * 60 + 60]
    assert log.curve.ppl == [50.0, 40.0, 30.0]


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_pause_and_resume_stop_the_comparisons_processes_and_mark_its_trainings(tmp_path):
    """converge.sh pause SIGSTOPs every process whose ROOT is this comparison's (relative ROOTs
    resolved against the process's directory) and writes a marker into each training's train.log;
    resume continues them. Another comparison's processes are left alone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_train = bin_dir / "fairseq-train"  # stands in for a training: sleeps with the recipe's arguments
    fake_train.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(120)\n")
    fake_train.chmod(0o755)
    run = tmp_path / "root" / "ding" / "soft-seed1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "train.log").write_text("=== attempt 2026-01-01 10:00:00\n")

    def start(root: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(fake_train), *args], cwd=tmp_path, env=dict(os.environ, ROOT=root))

    training = start("root", "data-bin", "--save-dir", "root/ding/soft-seed1/checkpoints", "--seed", "1")
    helper = start(str(tmp_path / "root"))  # a step that is not a training (an evaluation, a shell)
    other = start(str(tmp_path / "elsewhere"), "--save-dir", str(tmp_path / "elsewhere"))
    command = ["bash", str(CONVERGE / "converge.sh")]
    env = dict(os.environ, ROOT=str(tmp_path / "root"))
    try:
        time.sleep(0.5)
        for _ in range(2):  # pausing twice stops once and marks once
            proc = subprocess.run([*command, "pause"], env=env, capture_output=True, text=True, check=True)
            assert proc.stderr == ""  # processes it may not read (other users', ended ones) are skipped quietly
        out = proc.stdout
        assert process_state(training.pid) == "T" and process_state(helper.pid) == "T"
        assert process_state(other.pid) != "T"
        assert "paused 0 processes" in out
        subprocess.run([*command, "resume"], env=env, capture_output=True, text=True, check=True)
        assert process_state(training.pid) != "T" and process_state(helper.pid) != "T"
        lines = (run / "train.log").read_text().splitlines()
        assert [line.split(" 20")[0] for line in lines] == ["=== attempt", "=== paused", "=== resumed"]
        assert report.read_train_log(run / "train.log").attempts == 1
        assert not (tmp_path / "train.log").exists()
    finally:
        for process in (training, helper, other):
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------- the recipe, tiny


LO_NOUNS = [("Datei", "file"), ("Tabelle", "table"), ("Zelle", "cell"), ("Seite", "page"), ("Vorlage", "template"),
            ("Spalte", "column"), ("Zeile", "row"), ("Grafik", "image")]
LO_VERBS = [("öffnen", "open"), ("speichern", "save"), ("löschen", "delete"), ("drucken", "print"),
            ("kopieren", "copy"), ("einfügen", "insert")]
LO_ADJECTIVES = [("neue", "new"), ("ausgewählte", "selected"), ("aktuelle", "current"), ("leere", "empty")]


def write_ui_catalogue(path: Path) -> int:
    """A LibreOffice-like catalogue with accelerators and placeholders: 384 messages."""
    messages = {}
    for (n, ne), (v, ve), (a, ae) in itertools.product(LO_NOUNS, LO_VERBS, LO_ADJECTIVES):
        messages[f"~{ve.capitalize()} the {ae} {ne}"] = f"Die {a} {n} {v}"
        messages[("dialog", f"The {ae} {ne} cannot %1 be {ve}ed")] = f"Die {a} {n} kann nicht %1 {v} werden"
    write_mo(path, messages)
    return len(messages)


def recipe_env(tmp_path: Path, aligner: str) -> dict:
    write_synthetic_dictionary(tmp_path / "de-en")
    write_ui_catalogue(tmp_path / "mo" / "de" / "LC_MESSAGES" / "ui.mo")
    return dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
                PYTHONWARNINGS="ignore", PYTHON=sys.executable, TINY="1", ROOT=str(tmp_path / "root"),
                DING_FILE=str(tmp_path / "de-en"), LIBREOFFICE_MO_DIR=str(tmp_path / "mo"),
                MODES="soft var-enum transformer-var-enum", SEEDS="1", PARALLEL="1", SYN_TASKS="null", ALIGNER=aligner,
                MAX_UPDATES="40", CURVES=str(tmp_path / "curves.png"), ARCHIVE=str(tmp_path / "archive"))


RECIPE_COMMAND = ["bash", str(CONVERGE / "converge.sh")]


def run_recipe(env: dict, *arguments: str, timeout: int = 600) -> str:
    """converge.sh with ``arguments`` (none: the whole comparison); its output, once it succeeded."""
    proc = subprocess.run([*RECIPE_COMMAND, *arguments], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"converge.sh failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def kill_during_training(env: dict, run: Path, timeout: float = 1800) -> None:
    """Start the recipe and kill it (and all it started) once ``run`` has saved a checkpoint to
    resume from (fairseq logs "Saved checkpoint" after checkpoint_last.pt is written) but has
    not finished training. The recipe prepares three corpora and finishes a run before that:
    minutes on a slow or busy machine, hence the generous timeout."""
    proc = subprocess.Popen(["bash", str(CONVERGE / "converge.sh")], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    start = time.time()
    saved = False
    try:
        while time.time() < start + timeout and proc.poll() is None:
            log = run / "train.log"
            if log.is_file() and "Saved checkpoint" in log.read_text(errors="replace"):
                saved = True
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the recipe ended ({proc.returncode}) before the run trained"
    assert saved, f"{run} saved no checkpoint within {timeout:.0f} s"
    assert (run / "checkpoints" / "checkpoint_last.pt").is_file()
    assert not (run / ".done" / "train").exists(), "training finished before it could be killed"


def attempts(train_log: Path):
    return train_log.read_text().split("=== attempt ")[1:]


def update_counts(text: str):
    return [int(float(u)) for u in re.findall(r'"(?:train_|valid_)?num_updates": "([0-9.]+)"', text)]


def eflomal_available() -> bool:
    return subprocess.run([sys.executable, "-c", "import eflomal"], capture_output=True).returncode == 0


FAKE_EFLOMAL = """
import os
from pathlib import Path


class Aligner:  # links source word 0 to target word 0, and in reverse source word 1 too; counts its calls
    def align(self, src, trg, links_filename_fwd=None, links_filename_rev=None, quiet=True, **_):
        lines = src.read().splitlines()
        for name, links in ((links_filename_fwd, "0-0"), (links_filename_rev, "0-0 1-0")):
            Path(name).write_text("".join(links + "\\n" for _ in lines))
        with open(os.environ["FAKE_EFLOMAL_CALLS"], "a") as calls:
            calls.write("called\\n")
"""


@pytest.mark.slow
def test_prepare_reuses_the_archived_reference_links_of_the_same_test_set(tmp_path):
    """eflomal samples, so its links differ from one preparation to the next; ``prepare`` with an
    ARCHIVE that holds eflomal's links of the same test set (by checksum) keeps those as the
    reference, so AER of runs made on different days compares, and scores the new sample against
    them; a different test set gets the new sample as its reference. eflomal's forward direction
    alone is a reference row."""
    fake = tmp_path / "fake"
    (fake / "eflomal-2.0.0.dist-info").mkdir(parents=True)
    (fake / "eflomal-2.0.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: eflomal\nVersion: 2.0.0\n")
    (fake / "eflomal.py").write_text(FAKE_EFLOMAL)
    calls = tmp_path / "calls"
    env = dict(recipe_env(tmp_path, "eflomal"), CORPORA="ding", SYN_TASKS="", ARCHIVE=str(tmp_path / "archive"),
               PYTHONPATH=f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", FAKE_EFLOMAL_CALLS=str(calls))

    ding = tmp_path / "root" / "ding"

    def prepare() -> str:  # the reference links anew (the data and subwords once: the same test set)
        shutil.rmtree(ding / "ref", ignore_errors=True)
        (ding / ".done" / "reference").unlink(missing_ok=True)
        return run_recipe(env, "prepare", timeout=300)

    kept = tmp_path / "archive" / "ding" / "ref"

    def aer(name: str) -> float:
        return json.loads((kept / f"{name}.aer.json").read_text())["aer"]

    prepare()
    assert calls.read_text().count("called") == 1
    lines = (kept / "gold.align").read_text().splitlines()
    assert lines and set(lines) == {"0-0 1-0"}, "grow-diag-final-and of the two directions"
    assert (kept / "gold.align").read_text() == (ding / "ref" / "gold.align").read_text()
    assert aer("eflomal-forward") == pytest.approx(1 / 3, abs=1e-4)  # precision 1, recall 1/2 on every line
    assert not (kept / "eflomal.aer.json").exists(), "the reference's own sample is not scored against itself"
    assert not list(ding.glob("*-seed*")), "prepare trains nothing"
    (kept / "gold.align").write_text("\n".join(["0-0"] + lines[1:]) + "\n")  # another sample's links, on line 1
    out = prepare()
    assert "(eflomal's links of this test set from" in out and calls.read_text().count("called") == 2
    assert (ding / "ref" / "gold.align").read_text() == (kept / "gold.align").read_text()
    assert 0 < aer("eflomal") < 0.1  # the new sample against the kept one: line 1 differs
    (kept / "test.sha256").write_text("another test set\n")
    out = prepare()
    assert "eflomal's links of this test set" not in out and calls.read_text().count("called") == 3
    assert set((kept / "gold.align").read_text().splitlines()) == {"0-0 1-0"}
    assert not (kept / "eflomal.aer.json").exists()


@pytest.mark.slow
def test_converge_tiny_end_to_end_killed_and_resumed(tmp_path):
    aligner = "eflomal" if eflomal_available() else "none"  # the recipe would install it; the test does not
    # the LSTM's modes on every corpus; the Transformer (same steps, its own sizes) on the Ding sentences
    # only, by the recipe's ``run`` command after the rest (each run costs a minute on a slow machine)
    modes = ("soft", "var-enum")
    env = dict(recipe_env(tmp_path, aligner), MODES=" ".join(modes))
    root = tmp_path / "root"
    first, killed = root / "ding" / "soft-seed1", root / "ding" / "var-enum-seed1"

    # 1. killed while the second run trains: the first is complete, the second is not marked done
    kill_during_training(env, killed)
    finished_steps = sorted(p.name for p in (first / ".done").iterdir())
    assert finished_steps == ["aer-prior", "align-prior", "bleu-exact", "bleu-noeos", "boundaries", "diagnose",
                              "finished", "train", "validate"] if aligner != "none" else \
        finished_steps == ["align-prior", "bleu-exact", "bleu-noeos", "boundaries", "diagnose", "finished", "train",
                           "validate"]
    first_log = (first / "train.log").read_text()

    # 2. the same command: the killed run resumes from checkpoint_last, the finished one is not redone
    out = run_recipe(env)
    assert (first / "train.log").read_text() == first_log
    assert "(done already: " + str(root / "ding" / "data") in out
    resumed = attempts(killed / "train.log")
    assert len(resumed) == 2
    loaded = re.search(r"Loaded checkpoint \S*checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", resumed[1])
    assert loaded and int(loaded.group(1)) > 0
    before, after = update_counts(resumed[0]), update_counts(resumed[1])
    assert min(after) > int(loaded.group(1)) >= max(before) - 5 >= 0  # at most one save interval is lost
    assert max(after) <= 40
    assert "finished: ding transformer-var-enum seed 1" in run_recipe(env, "run", "ding", "transformer-var-enum", "1")

    # every step of every run ran
    corpora = ["ding", "libreoffice", "syn-null"]
    runs = [(corpus, mode) for corpus in corpora for mode in modes] + [("ding", "transformer-var-enum")]
    for corpus, mode in runs:
        steps = {p.name for p in (root / corpus / f"{mode}-seed1" / ".done").iterdir()}
        expected = {"train", "finished", "boundaries"} | {f"align-{d}" for d in (["prior"] if mode == "soft" else
                                                         ["prior", "posterior", "exact-posterior"])}
        if not corpus.startswith("syn-"):
            expected |= {"validate", "diagnose", "bleu-exact", "bleu-noeos"}
            expected |= {"bleu-kmax"} if mode != "soft" else set()
        if corpus.startswith("syn-") or aligner != "none":
            expected |= {s.replace("align-", "aer-") for s in expected if s.startswith("align-")}
        assert steps == expected, (corpus, mode)
    assert "'_name': 'varattn_transformer'" in (root / "ding" / "transformer-var-enum-seed1" / "train.log").read_text()
    libreoffice_stats = json.loads((root / "libreoffice" / "data" / "stats.json").read_text())
    assert libreoffice_stats["train_pairs"] == 300 and libreoffice_stats["test_pairs"] == 30

    # the report: a table per real corpus with a row per mode, AER tables, the curves; report.py
    # once more with the Transformer's run (on the Ding sentences: a row there, "not started" elsewhere)
    all_modes = (*modes, "transformer-var-enum")
    recipe_results = "\n".join((root / "results.md").read_text().splitlines()[1:-1])
    assert recipe_results == report_text(root, corpora, modes, ("1",))
    sections = report_text(root, corpora, all_modes, ("1",)).split("\n## ")[1:]
    assert len(sections) == 3
    for section in sections:  # where the links go, for every mode and the reference links
        shares = [line for line in section.split("Where the links go")[1].splitlines() if line.startswith("| ")]
        synthetic_task = section.startswith("synthetic")
        # the true links and the diagonal (synthetic); the diagonal, and eflomal's links and forward direction
        references = 2 if synthetic_task else 1 + (0 if aligner == "none" else 2)
        assert len(shares) == 1 + references + (len(all_modes) if section.startswith("Ding") else len(modes)), section
    for section in sections[:2]:
        table = [line for line in section.splitlines() if line.startswith("| ")]
        assert table[0].startswith("| mode | exact PPL | bound PPL | KL (nats) | prior ent")
        rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table[1:4]}
        finished = {mode: cells for mode, cells in rows.items() if "not started" not in mode}
        assert list(finished) == (list(all_modes) if section.startswith("Ding") else list(modes)), section
        for cells in finished.values():
            ppl, bound = float(cells[0]), float(cells[1])
            assert 1 < ppl <= bound + 0.01  # the bound is never better than the exact perplexity
            assert 0 <= float(cells[5]) <= 100 and 0 <= float(cells[7]) <= 100  # BLEU, with and without EOS penalty
            assert all(float(ratio) >= 0 for ratio in cells[8].split(";"))  # length over the references' (a tiny
            # model may translate every test sentence as the empty one)
            assert int(cells[9]) > 0 and float(cells[10]) >= 0  # updates, wall time
        assert rows["soft"][6].strip() == "—" and 0 <= float(rows["var-enum"][6]) <= 100  # K-max
        if section.startswith("Ding"):
            assert 0 <= float(rows["transformer-var-enum"][6]) <= 100
    synthetic_aer = sections[2].split("Where the links go")[0]
    synthetic_rows = {line.split("|")[1].strip(): line for line in synthetic_aer.splitlines() if line.startswith("| ")}
    assert "diagonal baseline" in synthetic_rows and "soft" in synthetic_rows and "var-enum" in synthetic_rows
    for cell in synthetic_rows["var-enum"].split("|")[2:-1]:
        assert 0 <= float(cell) <= 1
    if aligner == "eflomal":
        assert float(synthetic_rows["eflomal (grow-diag-final-and)"].split("|")[2]) < 0.5
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every finished run went to the archive (ARCHIVE), and the report of the archive is the same
    archive = tmp_path / "archive"
    assert not list(archive.rglob("*.pt")) and (archive / "ding" / "var-enum-seed1" / "train.log").is_file()
    assert report_text(archive, corpora, all_modes, ("1",)) == report_text(root, corpora, all_modes, ("1",))

    # 3. once more: nothing is redone
    markers = {p: p.read_text() for p in root.rglob(".done/*")}
    again = run_recipe(env)
    assert {p: p.read_text() for p in root.rglob(".done/*")} == markers
    assert again.count("finished: ") == len(corpora) * len(modes) and len(attempts(killed / "train.log")) == 2
    # in a new ROOT (a new clone) with the same ARCHIVE, the data is prepared and nothing is trained;
    # the report is of the archive (whose "another eflomal sample" row is now this preparation's)
    fresh = run_recipe(dict(env, ROOT=str(tmp_path / "root2")))
    assert fresh.count(f"(kept in {archive}") == len(corpora) * len(modes)
    assert not list((tmp_path / "root2").rglob("train.log"))
    assert "\n".join((tmp_path / "root2" / "results.md").read_text().splitlines()[1:-1]) == \
        report_text(archive, corpora, modes, ("1",))

    # 4. a higher maximum: a run that reached the former one goes on from its last checkpoint and
    # its evaluation is redone; run again with the same maximum, nothing is redone
    soft_log = (first / "train.log").read_text()
    assert "early stop" not in soft_log and max(update_counts(soft_log)) == 40, "the run must have reached the cap"
    soft_steps = {p.name: p.stat().st_mtime_ns for p in (first / ".done").iterdir()}
    for _ in range(2):
        out = run_recipe(dict(env, MAX_UPDATES="50"), "run", "ding", "soft", "1", timeout=300)
    continued = attempts(first / "train.log")
    assert len(continued) == 2 and "done already" in out and "continuing" not in out
    assert re.search(r"Loaded checkpoint \S*checkpoint_last\.pt \(epoch \d+ @ 40 updates\)", continued[1])
    assert min(update_counts(continued[1])) > 40 and max(update_counts(continued[1])) == 50
    redone = {p.name: p.stat().st_mtime_ns for p in (first / ".done").iterdir()}
    assert redone.keys() == soft_steps.keys() and all(redone[k] > soft_steps[k] for k in redone)
