"""``python -m varattn_experiments``: run, pause, resume and report experiments."""

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import dynamics, runner
from .corpora import Corpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m varattn_experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("--output", type=Path, default=Path("docs/dynamics.md"))
    p.add_argument("--figure", type=Path, default=Path("docs/dynamics.png"))

    for name in ("pause", "resume"):
        q = sub.add_parser(name, help=f"{name} every step running under ROOT")
        q.add_argument("root", type=Path)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(message)s", "%H:%M:%S"))
    runner.logger.addHandler(handler)
    runner.logger.setLevel(logging.INFO)
    runner.logger.propagate = False
    args = build_parser().parse_args(argv)
    if args.command in ("pause", "resume"):
        touched = getattr(runner, args.command)(args.root)
        print(f"{args.command}d: {', '.join(touched) if touched else 'nothing was running'}")
        return 0
    if args.action == "run":
        runs = [run for corpus in args.corpora for run in dynamics.grid(
            Corpus(corpus), args.modes, args.lrs, args.batches, args.sizes, args.max_update, args.seeds,
            args.exclude_source_eos)]
        failures = runner.execute(args.root, runs, parallel=args.parallel)
        dynamics.archive(args.root, args.archive)
        for failure in failures:
            print("FAILED:", failure)
        return 1 if failures else 0
    if args.action == "archive":
        dynamics.archive(args.root, args.archive)
        return 0
    print(dynamics.report(args.archive, args.output, args.figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
