"""The experiment runner (varattn_experiments): steps run once, failures and interruptions are
recorded and redone, pauses stop the process and leave the reported time, reports read manifests
and fairseq's logs. Jobs here are tiny Python commands, no training."""

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Sequence

import pytest

from varattn_experiments import demo, dynamics, runner
from varattn_experiments.corpora import Corpus, uniform_entropy
from varattn_experiments.fairseq_log import read_records
from varattn_experiments.manifest import Manifest
from varattn_experiments.training import Recipe, TrainRun


@dataclass(frozen=True)
class Echo(runner.Job):
    """Appends ``word`` to ROOT/NAME/out.txt, once per step; fails while ROOT/fail exists."""

    name: str
    words: tuple = ("a", "b")
    requires: tuple = ()
    seconds: float = 0.0  # each step sleeps this long first

    def folder(self, root: Path) -> Path:
        return Path(root) / self.name

    def config(self) -> dict:
        return {"name": self.name, "words": list(self.words)}

    def needs(self) -> Sequence[runner.Job]:
        return self.requires

    def steps(self, root: Path) -> List[runner.Step]:
        out = self.folder(root) / "out.txt"
        code = (f"import pathlib, sys, time; time.sleep({self.seconds}); f = pathlib.Path(sys.argv[1]);"
                "root = pathlib.Path(sys.argv[3]);"
                "sys.exit(3) if (root / 'fail').exists() else None;"
                "f.open('a').write(sys.argv[2] + '\\n')")
        return [runner.Step(f"say-{w}", [sys.executable, "-c", code, str(out), w, str(root)], "log.txt")
                for w in self.words]


def option(command, name):
    """The value given to ``name`` on ``command``'s line."""
    return command[command.index(name) + 1]


def said(root: Path, name: str) -> List[str]:
    path = root / name / "out.txt"
    return path.read_text().split() if path.exists() else []


def test_each_step_runs_once_and_again_only_when_its_command_changes(tmp_path):
    assert runner.execute(tmp_path, [Echo("x")]) == []
    assert runner.execute(tmp_path, [Echo("x")]) == []
    assert said(tmp_path, "x") == ["a", "b"]
    manifest = Manifest(tmp_path / "x")
    assert manifest.attempts("say-a") == 1 and manifest.done("say-a")
    attempt = manifest.data["steps"]["say-a"]["attempts"][0]
    assert attempt["exit_code"] == 0 and attempt["code_version"] and attempt["ended"] >= attempt["started"]
    runner.execute(tmp_path, [Echo("x", words=("a", "c"))])  # a new step: only it runs
    assert said(tmp_path, "x") == ["a", "b", "c"]
    assert manifest.read(tmp_path / "x").data["config"]["words"] == ["a", "c"]


def test_every_step_after_one_that_runs_again_runs_again(tmp_path):
    # a training continued to a higher maximum of updates is evaluated again: the later steps
    # read what it wrote
    runner.execute(tmp_path, [Echo("x", words=("a", "b", "c"))])
    runner.execute(tmp_path, [Echo("x", words=("a", "B", "c"))])
    assert said(tmp_path, "x") == ["a", "b", "c", "B", "c"]
    assert Manifest(tmp_path / "x").attempts("say-c") == 2 and Manifest(tmp_path / "x").attempts("say-a") == 1


def test_a_failed_step_is_recorded_and_redone_and_does_not_stop_other_jobs(tmp_path):
    (tmp_path / "fail").touch()
    failures = runner.execute(tmp_path, [Echo("x"), Echo("y")], parallel=2)
    assert len(failures) == 2 and all("exited with 3" in f for f in failures)
    step = Manifest(tmp_path / "x").data["steps"]["say-a"]
    assert step["done"] is False and step["attempts"][0]["exit_code"] == 3
    (tmp_path / "fail").unlink()
    assert runner.execute(tmp_path, [Echo("x"), Echo("y")], parallel=2) == []
    assert said(tmp_path, "x") == said(tmp_path, "y") == ["a", "b"]
    assert Manifest(tmp_path / "x").attempts("say-a") == 2


def test_each_job_that_finishes_is_handed_on_at_once_and_a_failed_one_is_not(tmp_path):
    seen = []

    def on_done(job):  # what the job wrote is there when it is handed on, the next job not started
        seen.append((job.name, said(tmp_path, job.name), said(tmp_path, "second")))

    assert runner.execute(tmp_path, [Echo("first"), Echo("second")], on_done=on_done) == []
    assert seen == [("first", ["a", "b"], []), ("second", ["a", "b"], ["a", "b"])]
    (tmp_path / "fail").touch()
    seen.clear()
    assert len(runner.execute(tmp_path, [Echo("third")], on_done=on_done)) == 1 and seen == []

def test_a_shared_prerequisite_runs_once_and_its_failure_skips_its_dependents(tmp_path):
    corpus = Echo("corpus", words=("c",))
    assert runner.execute(tmp_path, [Echo("x", requires=(corpus,)), Echo("y", requires=(corpus,))]) == []
    assert said(tmp_path, "corpus") == ["c"]
    other = Echo("other", words=("o",))
    (tmp_path / "fail").touch()
    failures = runner.execute(tmp_path, [Echo("z", requires=(other,))])
    assert len(failures) == 1 and "other" in failures[0] and not (tmp_path / "z").exists()


def test_a_run_that_others_start_from_shares_the_pool_and_its_dependents_wait_for_it(tmp_path):
    corpus = Echo("corpus", words=("c",))
    source = Echo("source", words=("s",), requires=(corpus,), seconds=1.0)
    warm, other = Echo("warm", words=("w",), requires=(source,)), Echo("other", words=("o",), requires=(corpus,))
    assert runner.execute(tmp_path, [warm, other], parallel=2) == []

    def attempt(name, word):
        return Manifest(tmp_path / name).data["steps"][f"say-{word}"]["attempts"][0]

    assert attempt("other", "o")["started"] < attempt("source", "s")["ended"]  # beside it, not after
    assert attempt("warm", "w")["started"] >= attempt("source", "s")["ended"]
    assert attempt("corpus", "c")["ended"] <= attempt("source", "s")["started"]
    (tmp_path / "fail").touch()
    failures = runner.execute(tmp_path, [Echo("warm2", requires=(Echo("source2", requires=(corpus,)),))])
    assert len(failures) == 1 and "source2" in failures[0] and not (tmp_path / "warm2").exists()


def test_a_finished_step_is_not_redone_from_another_checkout_or_root(tmp_path):
    runner.execute(tmp_path / "one", [Echo("x")])
    os.rename(tmp_path / "one", tmp_path / "two")  # the same results in another place
    runner.execute(tmp_path / "two", [Echo("x")])
    assert said(tmp_path / "two", "x") == ["a", "b"]


@dataclass(frozen=True)
class Ticker(runner.Job):
    def folder(self, root):
        return Path(root) / "ticker"

    def config(self):
        return {}

    def steps(self, root):
        code = ("import time, pathlib, sys; f = pathlib.Path(sys.argv[1]);"
                "[(f.open('a').write('t\\n'), time.sleep(0.05)) for _ in range(60)]")
        return [runner.Step("tick", [sys.executable, "-c", code, str(self.folder(root) / "ticks")], "log.txt")]


def test_pause_stops_the_running_step_and_its_time_is_left_out(tmp_path):
    import threading

    thread = threading.Thread(target=runner.execute, args=(tmp_path, [Ticker()]))
    thread.start()
    ticks = tmp_path / "ticker" / "ticks"
    deadline = time.time() + 30
    while not (ticks.exists() and ticks.read_text().count("t") >= 3):
        assert time.time() < deadline
        time.sleep(0.05)
    assert runner.pause(tmp_path) == ["ticker:tick"]
    time.sleep(0.3)
    frozen = ticks.read_text().count("t")
    time.sleep(1.2)
    assert ticks.read_text().count("t") == frozen  # stopped
    assert runner.resume(tmp_path) == ["ticker:tick"]
    thread.join(60)
    assert ticks.read_text().count("t") == 60
    manifest = Manifest(tmp_path / "ticker")
    ((start, stop),) = manifest.data["steps"]["tick"]["attempts"][0]["pauses"]
    assert stop - start >= 1.4
    attempt = manifest.data["steps"]["tick"]["attempts"][0]
    assert manifest.seconds("tick") == pytest.approx(attempt["ended"] - attempt["started"] - (stop - start))
    assert runner.pause(tmp_path) == []  # nothing running now


def test_a_step_another_runner_is_running_is_refused_and_a_dead_runners_step_is_run(tmp_path):
    import threading

    thread = threading.Thread(target=runner.execute, args=(tmp_path, [Ticker()]))
    thread.start()
    ticks = tmp_path / "ticker" / "ticks"
    deadline = time.time() + 30
    while not ticks.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    (failure,) = runner.execute(tmp_path, [Ticker()])  # a second runner, the same step
    pid = Manifest(tmp_path / "ticker").running()["tick"]
    assert "already running" in failure and f"kill -TERM -- -{pid}" in failure
    thread.join(60)
    assert ticks.read_text().count("t") == 60  # one runner wrote, once
    assert Manifest(tmp_path / "ticker").attempts("tick") == 1

    # a runner killed with its step leaves an attempt that never ended: its pid names no process
    # now (or another program), and the step runs again
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    manifest = Manifest(tmp_path / "ticker")
    with manifest._edit() as data:
        data["steps"]["tick"]["done"] = False
        data["steps"]["tick"]["attempts"][-1].update(ended=None, pid=dead.pid)
    assert runner.execute(tmp_path, [Ticker()]) == []
    assert ticks.read_text().count("t") == 120
    assert not runner.runs(os.getpid(), Ticker().steps(tmp_path)[0].command)  # alive, another program


# ---------------------------------------------------------------------- fairseq logs and reports


def log_line(category: str, record: dict) -> str:
    return f"2026-12-05 07:00:00 | INFO | {category} | " + json.dumps({k: str(v) for k, v in record.items()})


def test_validation_on_another_subset_reads_as_valid_and_a_repeated_update_keeps_the_last(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        "2026-12-05 07:00:00 | INFO | fairseq_cli.train | begin validation on \"valid1\" subset",
        log_line("valid1", {"valid1_ppl": 300, "valid1_num_updates": 50}),
        log_line("valid", {"valid_ppl": 1, "valid_num_updates": 50}),  # another subset: not read
        log_line("valid1", {"valid1_ppl": 250, "valid1_num_updates": 100}),
        "Traceback (most recent call last):",  # an interrupted attempt, then the resumed one
        log_line("valid1", {"valid1_ppl": 240, "valid1_num_updates": 100}),
    ]) + "\n")
    records = read_records(log, "valid", subset="valid1")
    assert [(r["valid_num_updates"], r["valid_ppl"]) for r in records] == [(50, 300), (100, 240)]
    assert [r["valid_ppl"] for r in read_records(log, "valid")] == [1]


def test_uniform_entropy_averages_log_candidates_over_target_tokens(tmp_path):
    (tmp_path / "s").write_text("a b\na b c d\n")
    (tmp_path / "t").write_text("x\ny z\n")
    got = uniform_entropy(tmp_path / "s", tmp_path / "t")
    # sentence 1: 2 target tokens (with EOS), 3 candidates; sentence 2: 3 tokens, 5 candidates
    assert got["with_eos"] == pytest.approx((2 * math.log(3) + 3 * math.log(5)) / 5)
    assert got["without_eos"] == pytest.approx((2 * math.log(2) + 3 * math.log(4)) / 5)


def test_the_dynamics_report_reads_the_manifests_and_logs_of_an_archive(tmp_path):
    recipe = Recipe(lr=3e-4, batch_size=8, max_update=100, validate_every=50, valid_subset="valid1")
    run = TrainRun("dynamics", Corpus("libreoffice"), "var-enum", recipe=recipe)
    warm = TrainRun("dynamics", Corpus("libreoffice"), "var-sample", recipe=recipe, warm_start=run)
    ln2 = math.log(2)
    for cell in (run, warm):
        folder = tmp_path / "libreoffice" / cell.name
        manifest = Manifest(folder, cell.config())
        manifest.start("train", ["fairseq-train"])
        manifest.finish("train", 0, done=True)
        (folder / "train.log").write_text("\n".join(
            log_line("valid1", {"valid1_ppl": ppl, "valid1_prior_ent": ent / ln2, "valid1_post_ent": 1.0 / ln2,
                                "valid1_kl": kl / ln2, "valid1_prior_eos": eos, "valid1_prior_max": 0.5,
                                "valid1_num_updates": u})
            for u, ppl, ent, kl, eos in [(50, 300.0, 2.0, 0.01, 0.2), (75, 1.0, 9.0, 9.0, 9.0),  # 75: epoch end
                                         (100, 200.0, 1.0, 0.25, 0.1)]) + "\n")
    (tmp_path / "libreoffice" / "valid_small.uniform.json").write_text(
        json.dumps({"with_eos": 2.0, "without_eos": 1.5}))
    text = dynamics.report(tmp_path, tmp_path / "report.txt", figures=None)
    (row,) = [line for line in text.splitlines() if line.startswith("| var-enum")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["var-enum", "cpu96", "0.0003", "8 sent.", "candidate", "100"]
    assert cells[6] == "200.0"  # the last regular validation, not the epoch-end one at 75
    assert cells[7] == "1.00" and cells[10] == "0.50"  # prior entropy over the uniform's 2.0 nats
    assert cells[11] == "0.50" and cells[12] == "0.250"  # q entropy / uniform, KL in nats
    assert cells[15] == "0.50"
    (warmed,) = [line for line in text.splitlines() if line.startswith("| var-sample")]
    assert warmed.startswith("| var-sample from var-enum | cpu96 | 0.0003 |")  # told apart from a fresh start


def test_a_warm_started_run_needs_its_warm_start_and_starts_from_its_last_checkpoint(tmp_path):
    corpus = Corpus("libreoffice")
    warm = TrainRun("dynamics", corpus, "marginal", recipe=Recipe(lr=3e-4, batch_size=8))
    run = TrainRun("dynamics", corpus, "var-sample", recipe=Recipe(lr=3e-4, batch_size=8), warm_start=warm)
    assert run.needs() == (corpus, warm) and run.name == "var-sample-lr0.0003-8sent-cpu96-from-marginal-seed1"
    command = run.train_command(tmp_path)
    flag = command.index("--finetune-from-model")
    assert command[flag + 1] == str(warm.folder(tmp_path) / "checkpoints" / "checkpoint_last.pt")
    assert "--finetune-from-model" not in warm.train_command(tmp_path)


def test_grid_cells_of_the_transformer_and_of_the_joint_soft_loss_train_what_they_name(tmp_path):
    corpus = Corpus("libreoffice")
    (lstm,) = dynamics.grid(corpus, modes=["var-enum"], lrs=[1e-2], batches=["2000tok"])
    assert lstm.name == "var-enum-lr0.01-2000tok-cpu96-seed1"  # the archive's names stay
    assert "--warmup-updates" not in lstm.train_command(tmp_path)
    cells = dynamics.grid(corpus, modes=["var-sample"], lrs=[2e-3], batches=["2000tok"], arch="transformer",
                          designs=["below-top", "none"], soft_loss_weight=0.5, warm_start="var-enum")
    assert [c.name for c in cells] == [
        f"transformer-var-sample-lr0.002-2000tok-cpu96-xattn-{d}-softw0.5-from-var-enum-seed1"
        for d in ("below-top", "none")]
    command = cells[1].train_command(tmp_path)

    def value(flag):
        return command[command.index(flag) + 1]

    assert (value("--arch"), value("--soft-cross-attention"), value("--soft-loss-weight")) == \
        ("varattn_transformer", "none", "0.5")
    assert (value("--warmup-updates"), value("--adam-betas"), value("--lr-scheduler")) == ("500", "(0.9,0.98)", "fixed")
    assert "--warmup-init-lr" not in command  # fairseq's fixed schedule has none
    warm = cells[1].warm_start  # the same design and recipe, without the weight var-enum refuses
    assert warm.name == "transformer-var-enum-lr0.002-2000tok-cpu96-xattn-none-seed1"
    assert value("--finetune-from-model") == str(warm.folder(tmp_path) / "checkpoints" / "checkpoint_last.pt")


def test_the_dynamics_report_puts_the_transformer_cells_in_their_own_table(tmp_path):
    recipe = Recipe(lr=2e-3, max_update=50, validate_every=50, valid_subset="valid1")
    cells = [TrainRun("dynamics", Corpus("libreoffice"), "var-enum", recipe=recipe),
             TrainRun("dynamics", Corpus("libreoffice"), "var-enum", recipe=recipe, arch="transformer",
                      soft_cross_attention="none")]
    for cell, kl in zip(cells, (0.5, 0.25)):
        folder = tmp_path / "libreoffice" / cell.name
        Manifest(folder, cell.config())
        (folder / "train.log").write_text(log_line("valid1", {
            "valid1_ppl": 9.0, "valid1_kl": kl / math.log(2), "valid1_num_updates": 50}) + "\n")
    # the Transformer cell's last checkpoint probed: what a word tells about z, logged in bits
    probed = tmp_path / "libreoffice" / cells[1].name
    manifest = Manifest(probed, cells[1].config())
    manifest.start("probe", ["fairseq-validate"])
    manifest.finish("probe", 0, done=True)
    (probed / "probe.log").write_text(log_line("valid1", {"valid1_align_info": 0.125 / math.log(2)}) + "\n")
    lines = dynamics.report(tmp_path, tmp_path / "report.txt", figures=None).splitlines()
    heading = lines.index("### The Transformer's decoder designs")
    lstm = [line for line in lines[:heading] if line.startswith("| var-enum")]
    transformer = [line for line in lines[heading:] if line.startswith("| var-enum")]
    assert len(lstm) == 1 and "| 0.500 |" in lstm[0] and "| – | 0 |" in lstm[0]  # not probed
    assert len(transformer) == 1 and transformer[0].startswith("| var-enum | none | cpu96 | 0.002 |")
    assert "| 0.250 |" in transformer[0] and "50 (running)" in transformer[0]
    assert transformer[0].endswith("| 0.125 | 0 |")  # the probe's align_info, in nats


def test_a_cell_the_archive_holds_as_finished_is_not_trained_again_in_a_new_root(tmp_path):
    from varattn_experiments.runner import portable

    root, kept = tmp_path / "root", tmp_path / "archive"
    run = dynamics.grid(Corpus("libreoffice"), modes=["soft"], lrs=[1e-2], batches=["8sent"])[0]
    archived = kept / "libreoffice" / run.name
    manifest = Manifest(archived, run.config())
    manifest.start("train", portable(run.steps(root)[0].command, root))
    manifest.finish("train", 0, done=True)
    assert dynamics.kept_in_archive(run, root, kept)
    longer = dynamics.grid(Corpus("libreoffice"), modes=["soft"], lrs=[1e-2], batches=["8sent"], max_update=4000)[0]
    assert not dynamics.kept_in_archive(longer, root, kept)  # raised maximum: trained (from its checkpoint)
    Manifest(run.folder(root), run.config())  # started in ROOT: it goes on there
    (run.folder(root) / "manifest.json").write_text((archived / "manifest.json").read_text())
    assert not dynamics.kept_in_archive(run, root, kept)


def test_the_committed_dynamics_page_is_the_report_of_the_committed_runs(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)  # the page names its archive as the command was given it: relative
    again = dynamics.report(Path("docs/runs/dynamics"), tmp_path / "dynamics.txt", figures=tmp_path)
    assert (repo / "docs/dynamics.md").read_text(encoding="utf-8") == again, \
        "regenerate it: python -m varattn_experiments dynamics report"


def test_the_committed_demo_page_is_the_report_of_the_committed_demo_runs(monkeypatch):
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)
    assert (repo / "docs/demo-results.md").read_text(encoding="utf-8") == demo.report(Path("docs/runs/demo")), \
        "regenerate it: python -m varattn_experiments.demo report docs/runs/demo docs/demo-results.md"


@pytest.mark.parametrize("entry, arch, design, mode", [
    ("var-enum", "varattn_lstm", None, "var-enum"),
    ("transformer-var-enum", "varattn_transformer", "all", "var-enum"),
    ("transformer-below-top-var-sample", "varattn_transformer", "below-top", "var-sample"),
    ("transformer-none-hard-enum", "varattn_transformer", "none", "hard-enum"),
])
def test_a_comparison_entry_names_the_architecture_design_and_mode_it_trains(tmp_path, entry, arch, design, mode):
    from varattn_experiments import comparison, entries

    assert (entries.design(entry), entries.attention_mode(entry)) == (design, mode)
    (run,) = comparison.runs(["ding"], [entry], [1])
    command = run.train_command(tmp_path)
    assert option(command, "--arch") == arch
    assert option(command, "--attention-mode") == mode
    # today's design trains the command the archive holds; the others name theirs
    given = option(command, "--soft-cross-attention") if "--soft-cross-attention" in command else "all"
    assert given == (design or "all")


def test_an_unknown_comparison_mode_is_refused_before_anything_runs():
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison

    with pytest.raises(UsageError, match="unknown mode 'transformer-nne-var-enum'.*transformer-none-MODE"):
        comparison.runs(["ding"], ["soft", "transformer-nne-var-enum"], [1])


def test_every_finished_cell_of_the_committed_archive_is_kept_in_a_new_clone(tmp_path):
    """The grid's commands are the ones the archive's cells were trained with: a new clone does
    not train them again (a reordered flag would)."""
    archive = Path(__file__).resolve().parent.parent / "docs" / "runs" / "dynamics"
    corpus = Corpus("libreoffice")
    cells = {}
    for batch, updates in (("2000tok", 1000), ("8sent", 2000)):
        for options in (dict(), dict(exclude_source_eos=True), dict(modes=["var-sample"], warm_start="var-enum"),
                        dict(modes=["var-enum"], warm_start="var-enum"), dict(sizes="cpu256"),
                        dict(modes=["var-sample"], soft_loss_weight=1.0),
                        dict(arch="transformer", designs=list(dynamics.DESIGNS),
                             modes=["soft", "marginal", "var-enum", "var-sample"], lrs=[2e-3])):
            options = {"lrs": dynamics.LRS, "max_update": updates, **options}
            for run in dynamics.grid(corpus, batches=[batch], **options):
                cells[run.name] = run
    finished = [path.parent for path in sorted((archive / "libreoffice").glob("*/manifest.json"))
                if Manifest.read(path.parent).done("train")]
    assert len(finished) >= 20
    for folder in finished:
        assert folder.name in cells, f"{folder.name}: no grid cell of that name"
        assert dynamics.kept_in_archive(cells[folder.name], tmp_path, archive), \
            f"{folder.name}: the grid's command is not the one the archive holds"


def test_a_warm_started_comparison_entry_trains_from_the_best_checkpoint_of_its_seed(tmp_path):
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    assert (entries.attention_mode("var-sample-from-var-enum"), entries.warm_start("var-sample-from-var-enum")) == \
        ("var-sample", "var-enum")
    assert entries.design("transformer-none-var-sample-from-transformer-none-marginal") == "none"
    (run,) = comparison.runs(["ding"], ["var-sample-from-var-enum"], [2], comparison.NEAR_PAPER)
    warm = run.warm_start()
    assert (warm.entry, warm.seed, warm.settings) == ("var-enum", 2, comparison.NEAR_PAPER)
    assert run.needs() == (run.corpus, warm)
    command = run.train_command(tmp_path)
    assert option(command, "--finetune-from-model") == \
        str(tmp_path / "ding" / "var-enum-seed2" / "checkpoints" / "checkpoint_best.pt")
    assert option(command, "--attention-mode") == "var-sample"
    # the near-paper recipe: its learning rate, dropout and alignment candidates
    assert (option(command, "--lr"), option(command, "--dropout")) == ("0.001", "0.3")
    assert "--exclude-source-eos" in command
    # ... at the 256-unit sizes (its first runs, near-paper-cpu96, at the 96-unit ones), the Transformer's too
    assert option(command, "--decoder-hidden-size") == "384"
    (first,) = comparison.runs(["ding"], ["var-enum"], [1], comparison.RECIPES["near-paper-cpu96"])
    first_command = first.train_command(tmp_path)
    assert option(first_command, "--decoder-hidden-size") == "128"
    assert option(first_command, "--lr") == "0.001"
    (transformer,) = comparison.runs(["ding"], ["transformer-none-var-enum"], [1], comparison.NEAR_PAPER)
    transformer_command = transformer.train_command(tmp_path)
    assert option(transformer_command, "--decoder-embed-dim") == "256"
    with pytest.raises(UsageError, match="one architecture from the other's checkpoint"):
        comparison.runs(["ding"], ["transformer-var-sample-from-var-enum"], [1])
    with pytest.raises(UsageError, match="unknown mode 'var-smple'"):
        comparison.runs(["ding"], ["var-enum-from-var-smple"], [1])


def test_a_qfirst_entry_trains_q_alone_first_and_only_for_a_variational_mode(tmp_path):
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    entry = "transformer-none-var-enum-qfirst-from-transformer-none-marginal"
    assert (entries.attention_mode(entry), entries.design(entry), entries.q_first(entry)) == ("var-enum", "none", True)
    assert entries.warm_start(entry) == "transformer-none-marginal" and not entries.q_first("var-enum-from-marginal")
    (run,) = comparison.runs(["ding"], [entry], [1], comparison.NEAR_PAPER)
    command = run.train_command(tmp_path)
    assert option(command, "--q-warmup-updates") == str(comparison.NEAR_PAPER.q_warmup_updates)
    assert option(command, "--attention-mode") == "var-enum" and run.warm_start().entry == "transformer-none-marginal"
    (plain,) = comparison.runs(["ding"], ["var-enum-from-marginal"], [1], comparison.NEAR_PAPER)
    assert "--q-warmup-updates" not in plain.train_command(tmp_path)
    with pytest.raises(UsageError, match="'marginal-qfirst': -qfirst and -qlong train the inference network q"):
        comparison.runs(["ding"], ["marginal-qfirst"], [1])


def test_var_relaxed_starts_with_the_hard_objective_in_the_near_paper_recipe_only(tmp_path):
    """The paper starts var-relaxed with about one epoch of hard-enum's objective; the near-paper
    recipe does (about one epoch of its corpora), the first comparison's recipe did not, and no
    other mode takes the option; a -qfirst entry trains q alone first instead (the model
    refuses both at once)."""
    from varattn_experiments import comparison

    relaxed = comparison.NEAR_PAPER.dirichlet_warmup_updates
    assert relaxed == 100 and comparison.FULL.dirichlet_warmup_updates == 0
    for entry, recipe, expected in (("var-relaxed", comparison.NEAR_PAPER, str(relaxed)),
                                    ("var-relaxed", comparison.RECIPES["near-paper-cpu96"], str(relaxed)),
                                    ("transformer-none-var-relaxed", comparison.NEAR_PAPER, str(relaxed)),
                                    ("var-relaxed", comparison.FULL, None),
                                    ("var-relaxed-softmax-qfirst-from-hard-enum", comparison.NEAR_PAPER, None),
                                    ("var-enum", comparison.NEAR_PAPER, None),
                                    ("hard-enum", comparison.NEAR_PAPER, None)):
        (run,) = comparison.runs(["ding"], [entry], [1], recipe)
        command = run.train_command(tmp_path)
        got = option(command, "--dirichlet-warmup-updates") if "--dirichlet-warmup-updates" in command else None
        assert got == expected, (entry, recipe)
        if "qfirst" in entry:
            assert option(command, "--q-warmup-updates") == str(recipe.q_warmup_updates)


def test_a_cool_entry_trains_its_warm_start_at_the_rate_its_source_was_saved_with(tmp_path):
    """-cool reads the learning rate from the source's best checkpoint (a fairseq checkpoint's
    optimiser state) and drops the Transformer's warm-up; before the source exists the command
    names it, and without a warm start the entry is refused."""
    import torch

    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    entry = "transformer-none-var-sample-qfirst-cool-from-transformer-none-marginal"
    assert entries.cool(entry) and entries.q_first(entry) and entries.attention_mode(entry) == "var-sample"
    assert not entries.cool("transformer-none-var-sample-qfirst-from-transformer-none-marginal")
    (run,) = comparison.runs(["ding"], [entry], [1], comparison.NEAR_PAPER)
    best = run.warm_start().folder(tmp_path) / "checkpoints" / "checkpoint_best.pt"
    assert option(run.train_command(tmp_path), "--lr") == f"LR-OF-{best}"
    best.parent.mkdir(parents=True)
    torch.save({"last_optimizer_state": {"param_groups": [{"lr": 1.25e-4}]}}, best)
    command = run.train_command(tmp_path)
    assert option(command, "--lr") == "0.000125" and "--warmup-updates" not in command
    assert option(command, "--q-warmup-updates") == "500"
    (recipe_rate,) = comparison.runs(["ding"], ["transformer-none-var-sample-qfirst-from-transformer-none-marginal"],
                                     [1], comparison.NEAR_PAPER)
    command = recipe_rate.train_command(tmp_path)
    assert option(command, "--lr") == str(comparison.NEAR_PAPER.transformer_lr) and "--warmup-updates" in command
    (lstm,) = comparison.runs(["ding"], ["var-sample-cool-from-var-enum"], [1], comparison.NEAR_PAPER)
    best = lstm.warm_start().folder(tmp_path) / "checkpoints" / "checkpoint_best.pt"
    best.parent.mkdir(parents=True)
    torch.save({"last_optimizer_state": {"param_groups": [{"lr": 2.5e-4}]}}, best)
    assert option(lstm.train_command(tmp_path), "--lr") == "0.00025"
    with pytest.raises(UsageError, match="'var-sample-cool': -cool trains a warm start.*var-sample-cool-from-OTHER"):
        comparison.runs(["ding"], ["var-sample-cool"], [1])


def test_a_joint_entry_trains_the_soft_baseline_too_and_only_for_a_sampled_mode(tmp_path):
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    for entry in ("var-sample-joint-qfirst-from-var-enum", "var-sample-qfirst-joint-from-var-enum"):
        assert entries.trained(entry) == "var-sample" and entries.joint(entry) and entries.q_first(entry)
    (run,) = comparison.runs(["ding"], ["var-sample-joint"], [1], comparison.NEAR_PAPER)
    command = run.train_command(tmp_path)
    assert option(command, "--soft-loss-weight") == str(comparison.NEAR_PAPER.soft_loss_weight) == "1.0"
    assert option(command, "--attention-mode") == "var-sample" and "--q-warmup-updates" not in command
    (plain,) = comparison.runs(["ding"], ["var-sample"], [1], comparison.NEAR_PAPER)
    assert "--soft-loss-weight" not in plain.train_command(tmp_path) and not entries.joint("var-sample")
    for entry in ("var-enum-joint", "transformer-none-soft-joint", "var-sample-from-var-enum-joint"):
        with pytest.raises(UsageError, match="-joint trains the soft baseline of a sampled mode|unknown mode"):
            comparison.runs(["ding"], [entry], [1])


def test_the_demo_excludes_the_source_eos_from_both_phases_when_asked(tmp_path):
    """--exclude-source-eos (a model option saved in the checkpoint) must reach the warm start and
    the latent phase alike: the latent phase loads the warm start's weights."""
    from varattn_experiments.corpora import Corpus

    corpus = Corpus("lohelp", vocab_size=100, valid_size=10, test_size=10, folder_name="corpus")
    for exclude in (False, True):
        args = demo.build_parser().parse_args(["--exclude-source-eos"] if exclude else [])
        assert args.exclude_source_eos is exclude
        job = demo.Demo(corpus, replace(demo.DemoSettings(), exclude_source_eos=args.exclude_source_eos))
        trains = [step.command for step in job.steps(tmp_path) if step.name.startswith("train-")]
        assert len(trains) == 2
        assert all(("--exclude-source-eos" in command) is exclude for command in trains)
        assert job.config()["exclude_source_eos"] is exclude
    assert demo.build_parser().parse_args(["--no-exclude-source-eos"]).exclude_source_eos is False


def test_a_qlong_entry_trains_q_alone_four_times_as_long(tmp_path):
    """-qlong: q alone for four times the recipe's q-only updates (the probe in docs/findings.md
    ran 2,000 at the near-paper recipe); refused for a non-variational mode and beside -qfirst."""
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    entry = "transformer-none-var-sample-qlong-from-transformer-none-marginal"
    assert entries.q_first(entry) and entries.q_long(entry) and entries.attention_mode(entry) == "var-sample"
    assert not entries.q_long("transformer-none-var-sample-qfirst-from-transformer-none-marginal")
    for recipe in (comparison.NEAR_PAPER, comparison.TINY):
        (run,) = comparison.runs(["ding"], [entry], [1], recipe)
        assert option(run.train_command(tmp_path), "--q-warmup-updates") == str(4 * recipe.q_warmup_updates)
    assert comparison.NEAR_PAPER.q_warmup_updates * 4 == 2000
    with pytest.raises(UsageError, match="'marginal-qlong': -qfirst and -qlong train the inference network"):
        comparison.runs(["ding"], ["marginal-qlong"], [1])
    with pytest.raises(UsageError, match="pass one of -qfirst .* and -qlong"):
        comparison.runs(["ding"], ["var-enum-qfirst-qlong-from-marginal"], [1])


def test_a_softmax_entry_takes_var_relaxeds_concentrations_from_the_softmax(tmp_path):
    """-softmax: --dirichlet-transform softmax in var-relaxed's command (with its warm start),
    absent otherwise; refused for a mode without a Dirichlet."""
    from var_attn_plugin.errors import UsageError
    from varattn_experiments import comparison, entries

    entry = "var-relaxed-softmax-from-hard-enum"
    assert entries.softmax_concentrations(entry) and entries.attention_mode(entry) == "var-relaxed"
    assert entries.warm_start(entry) == "hard-enum"
    (run,) = comparison.runs(["ding"], [entry], [1], comparison.NEAR_PAPER)
    command = run.train_command(tmp_path)
    assert option(command, "--dirichlet-transform") == "softmax" and "--finetune-from-model" in command
    (plain,) = comparison.runs(["ding"], ["var-relaxed"], [1], comparison.NEAR_PAPER)
    assert "--dirichlet-transform" not in plain.train_command(tmp_path)
    with pytest.raises(UsageError, match="'var-enum-softmax': -softmax sets the Dirichlet concentrations"):
        comparison.runs(["ding"], ["var-enum-softmax"], [1])


@dataclass(frozen=True)
class Threads(runner.Job):
    """Writes the torch threads its step was given (OMP_NUM_THREADS) to ROOT/NAME/threads.txt."""

    name: str

    def folder(self, root: Path) -> Path:
        return Path(root) / self.name

    def config(self) -> dict:
        return {"name": self.name}

    def steps(self, root: Path) -> List[runner.Step]:
        code = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(os.environ['OMP_NUM_THREADS'])"
        return [runner.Step("threads", [sys.executable, "-c", code, str(self.folder(root) / "threads.txt")], "log.txt")]


def test_each_run_gets_the_threads_asked_for_and_its_manifest_records_them(tmp_path):
    assert runner.execute(tmp_path, [Threads("a"), Threads("b")], parallel=1, threads=2) == []
    for name in ("a", "b"):
        assert (tmp_path / name / "threads.txt").read_text() == "2"
        assert Manifest(tmp_path / name).data["steps"]["threads"]["attempts"][0]["threads"] == 2


def test_converge_hands_its_threads_to_the_runner_and_refuses_oversubscribed_cores(tmp_path, monkeypatch, capsys):
    from varattn_experiments import __main__ as cli

    class Called(Exception):
        pass

    def execute(root, jobs, **kwargs):
        raise Called(kwargs)

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cli.runner, "execute", execute)
    command = ["converge", "run", "--tiny", "--root", str(tmp_path), "--corpora", "syn-null", "--modes", "soft",
               "--seeds", "1", "--parallel", "1"]
    with pytest.raises(Called) as called:
        cli.main(command + ["--threads", "2"])
    assert called.value.args[0]["threads"] == 2 and called.value.args[0]["parallel"] == 1
    for bad, says in ((["--threads", "0"], "both must be at least 1"),
                      (["--parallel", "2", "--threads", "2"],
                       "4 torch threads on 2 cores.*--parallel 1 with --threads 2"),
                      (["--threads", "3"], "3 torch threads on 2 cores.*at most --threads 2, or --threads 1")):
        with pytest.raises(SystemExit):
            cli.main(command + bad)
        assert re.search(says, capsys.readouterr().err)
