"""``python -m varattn_experiments``: run, pause, resume and report experiments.

    python -m varattn_experiments converge run --corpora libreoffice --modes soft var-enum --seeds 1 2
    python -m varattn_experiments converge report --archive docs/converge-runs-long
    python -m varattn_experiments converge refresh     # every committed report and the README's table
    python -m varattn_experiments dynamics run --parallel 2
    python -m varattn_experiments dynamics report
    python -m varattn_experiments pause work/converge      # and resume: every step running there
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import comparison, converge_report, dynamics, runner
from .corpora import Corpus

SYNTHETIC = ["syn-monotone", "syn-local", "syn-fertility", "syn-null"]


def add_converge(sub) -> None:
    p = sub.add_parser("converge", help="the converged comparison of the modes (docs/results.md)")
    p.add_argument("action", choices=["run", "prepare", "archive", "report", "refresh"],
                   help="refresh: regenerate every committed report and the README's results table from the "
                   "archives (after archiving runs)")
    p.add_argument("--root", type=Path, default=None, help="checkpoints and data (default work/converge-RECIPE, "
                   "work/converge with --recipe cpu, work/converge-tiny with --tiny)")
    p.add_argument("--archive", type=Path, default=None,
                   help="keep every finished run's small files here (committed); runs it holds are not redone")
    p.add_argument("--corpora", nargs="+", default=None,
                   help=f"real corpora (libreoffice, ding, lohelp) and synthetic tasks ({', '.join(SYNTHETIC)})")
    p.add_argument("--modes", nargs="+", default=list(comparison.NEAR_PAPER_MODES),
                   help="attention modes of the LSTM, transformer-MODE (transformer-none-MODE, "
                   "transformer-below-top-MODE) for the Transformer; MODE-from-OTHER starts from OTHER's checkpoint, "
                   "MODE-qfirst trains q alone first (MODE-qlong four times as long), MODE-joint the soft "
                   "baseline's likelihood too, MODE-cool "
                   "a warm start at the rate OTHER's best checkpoint was saved with, var-relaxed-softmax "
                   "concentrations from the softmax of the scores (docs/recipes.md)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--parallel", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of each run (e.g. --parallel 1 --threads 2: one long run on two cores)")
    p.add_argument("--tiny", action="store_true", help="the whole pipeline on a few hundred pairs (minutes)")
    p.add_argument("--recipe", choices=list(comparison.RECIPES), default="near-paper",
                   help="near-paper: 256-unit models, Adam 1e-3, dropout 0.3, no source EOS, up to 30,000 updates "
                   "(near-paper-cpu96: its first runs, at 96 units); cpu: 96 units, Adam "
                   "1e-2, dropout 0.2, the source EOS a candidate (the first comparison, docs/converge-runs*: "
                   "its high rate locks hard-enum's prior in, docs/dynamics.md)")
    p.add_argument("--max-update", type=int, default=None, help="the maximum of updates on the real corpora")
    p.add_argument("--exclude-source-eos", action="store_true", help="train with --exclude-source-eos")
    p.add_argument("--aligner", choices=["eflomal", "none"], default="eflomal")
    p.add_argument("--source", action="append", default=[], metavar="CORPUS=PATH",
                   help="a copy of a corpus's raw data you already have (ding: the dictionary file, "
                   "libreoffice: a folder of .mo catalogues); nothing is then downloaded for it")
    p.add_argument("--output", type=Path, default=None, help="the report (default ROOT/results.md)")
    p.add_argument("--curves", type=Path, default=None, help="learning curves (default beside the report)")


def add_dynamics(sub) -> None:
    p = sub.add_parser("dynamics", help="the early-dynamics grid (docs/dynamics.md)")
    p.add_argument("action", choices=["run", "report", "archive"])
    p.add_argument("--root", type=Path, default=Path("work/experiments"), help="checkpoints and data (large)")
    p.add_argument("--archive", type=Path, default=Path("docs/runs/dynamics"),
                   help="where the manifests and logs are kept (committed)")
    p.add_argument("--corpora", nargs="+", default=["libreoffice"])
    p.add_argument("--modes", nargs="+", default=list(dynamics.MODES))
    p.add_argument("--lrs", nargs="+", type=float, default=list(dynamics.LRS))
    p.add_argument("--batches", nargs="+", default=list(dynamics.BATCHES), choices=list(dynamics.BATCHES))
    p.add_argument("--sizes", default="cpu96")
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--max-update", type=int, default=2000)
    p.add_argument("--exclude-source-eos", action="store_true")
    p.add_argument("--warm-start", default=None, metavar="MODE",
                   help="start each cell from the last checkpoint of MODE's cell of the same recipe")
    p.add_argument("--soft-loss-weight", type=float, default=0.0,
                   help="train the sampled modes' soft likelihood jointly, with this weight")
    p.add_argument("--arch", choices=["lstm", "transformer"], default="lstm")
    p.add_argument("--designs", nargs="+", default=["all"], choices=list(dynamics.DESIGNS),
                   help="the Transformer's --soft-cross-attention values, one cell each")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("--output", type=Path, default=Path("docs/dynamics.md"))
    p.add_argument("--figures", type=Path, default=Path("docs"), help="folder of the curves, one PNG per corpus")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m varattn_experiments",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_converge(sub)
    add_dynamics(sub)
    for name in ("pause", "resume"):
        q = sub.add_parser(name, help=f"{name} every step running under ROOT")
        q.add_argument("root", type=Path)
    return parser


def check_threads(parser: argparse.ArgumentParser, parallel: int, threads: int) -> None:
    """Refuse thread counts that cannot run, or would oversubscribe the cores: torch's threads that
    share a core with other busy threads run many times slower than one thread alone."""
    cores = os.cpu_count() or 1
    if parallel < 1 or threads < 1:
        parser.error(f"--parallel {parallel} --threads {threads}: both must be at least 1")
    if threads > 1 and parallel * threads > cores:
        fix = (f"use at most --parallel {cores // threads} with --threads {threads}" if threads <= cores
               else f"use at most --threads {cores}")
        parser.error(f"--parallel {parallel} --threads {threads} asks for {parallel * threads} torch threads on "
                     f"{cores} cores, which runs many times slower than fewer threads; {fix}, or --threads 1")


def converge(args) -> int:
    if args.action == "refresh":
        for path in comparison.refresh_reports():
            print("written:", path)
        return 0
    settings = comparison.TINY if args.tiny else comparison.RECIPES[args.recipe]
    changes = {"aligner": args.aligner, "exclude_source_eos": args.exclude_source_eos or settings.exclude_source_eos}
    if args.max_update:
        changes["max_update"] = args.max_update
    settings = dataclasses.replace(settings, **changes)
    root = args.root or Path("work/converge-tiny" if args.tiny else "work/converge" if args.recipe == "cpu"
                             else f"work/converge-{args.recipe}")
    corpora = args.corpora or (["ding", "libreoffice", "syn-null"] if args.tiny else
                               ["libreoffice", "ding"] + SYNTHETIC)
    sources = dict(item.split("=", 1) for item in args.source)
    runs = comparison.runs(corpora, args.modes, args.seeds, settings, args.archive, sources)
    if args.action in ("run", "prepare"):
        if args.action == "prepare":
            jobs = list(dict.fromkeys(run.corpus for run in runs))
            failures = runner.execute(root, jobs, parallel=1)
        else:
            plan = comparison.plan(runs, root, args.archive)
            for run in plan.kept:
                print(f"finished: {run.corpus.name} {run.name} (kept in {args.archive})")
            # each finished run goes to the archive at once, not only when the whole queue has run
            keep = (lambda job: comparison.archive(root, args.archive, corpora)) if args.archive else None
            failures = runner.execute(root, plan.todo, parallel=args.parallel, threads=args.threads,
                                      on_done=keep)
        for failure in failures:
            print("FAILED:", failure)
        if args.archive:
            comparison.archive(root, args.archive, corpora)
        if args.action == "prepare" or failures:
            return 1 if failures else 0
    if args.action == "archive":
        if not args.archive:
            print("converge archive: pass --archive FOLDER to copy the results of", root)
            return 1
        print(f"archived: {comparison.archive(root, args.archive, corpora)} files changed")
        return 0
    reported = args.archive or root
    output = args.output or root / "results.md"
    curves = args.curves or output.with_name(output.stem + "-curves.png")
    report_corpora = sorted(corpora, key=comparison.synthetic)  # the real corpora first
    converge_report.main([str(reported), "--corpora", *report_corpora, "--modes", *args.modes,
                          "--seeds", *map(str, args.seeds), "--curves", str(curves), "--output", str(output)])
    print(output.read_text(encoding="utf-8"))
    return 0


def run_dynamics(args) -> int:
    if args.action == "run":
        runs = [run for corpus in args.corpora for run in dynamics.grid(
            Corpus(corpus), args.modes, args.lrs, args.batches, args.sizes, args.max_update, args.seeds,
            args.exclude_source_eos, args.warm_start, args.soft_loss_weight, args.arch, args.designs)]
        kept = [run for run in runs if dynamics.kept_in_archive(run, args.root, args.archive)]
        for run in kept:
            print(f"finished: {run.name} (kept in {args.archive})")
        runs = [run for run in runs if run not in kept]
        failures = runner.execute(args.root, runs, parallel=args.parallel)
        dynamics.archive(args.root, args.archive)
        for failure in failures:
            print("FAILED:", failure)
        return 1 if failures else 0
    if args.action == "archive":
        dynamics.archive(args.root, args.archive)
        return 0
    print(dynamics.report(args.archive, args.output, args.figures))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    runner.add_screen_handler()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "converge":
        check_threads(parser, args.parallel, args.threads)
    if args.command in ("pause", "resume"):
        touched = getattr(runner, args.command)(args.root)
        print(f"{args.command}d: {', '.join(touched) if touched else 'nothing was running'}")
        return 0
    return converge(args) if args.command == "converge" else run_dynamics(args)


if __name__ == "__main__":
    sys.exit(main())
