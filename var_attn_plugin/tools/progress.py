"""Progress of a fairseq-train run with an estimate of the time left.

Reads fairseq's ``--log-format simple`` output on stdin and prints one short line at most
every ``--every`` seconds: updates done out of ``--total-updates``, the training loss and
perplexity, the speed, and the time left at the speed measured so far (the first update is
excluded, it includes start-up). Validation lines and fairseq's errors pass through.
``--then N`` adds N more updates' worth of work that follows this run (e.g. a second
training phase, in units of this run's updates) to the estimate.

    fairseq-train ... --log-format simple --log-interval 10 2>&1 \\
        | python -m var_attn_plugin.tools.progress --total-updates 2000 --label soft
"""

import argparse
import re
import sys
import time
from typing import Dict, Optional, Sequence, TextIO

from ..console import description_from_docstring

_FIELDS = re.compile(r"(\w+)=([-+0-9.eE]+|inf|nan)")
_PASS_THROUGH = re.compile(r"\| valid on|\| (?:ERROR|WARNING|CRITICAL) \||Traceback|Error|error:")


def parse_fields(line: str) -> Dict[str, float]:
    """``key=value`` numbers of a fairseq log line."""
    return {k: float(v) for k, v in _FIELDS.findall(line)}


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Turns fairseq log lines into progress lines (pure: the clock is passed in)."""

    def __init__(self, total_updates: int, label: str = "", then: float = 0.0, every: float = 30.0):
        self.total_updates, self.label, self.then, self.every = total_updates, label, then, every
        self.first: Optional[tuple] = None  # (time, updates) at the first update seen
        self.last_print = float("-inf")

    def estimate(self, now: float, updates: float) -> Optional[float]:
        """Seconds left at the speed since the first update seen, or None before a speed is known."""
        if self.first is None or updates <= self.first[1] or now <= self.first[0]:
            return None
        rate = (updates - self.first[1]) / (now - self.first[0])
        return (max(self.total_updates - updates, 0) + self.then) / rate

    def feed(self, line: str, now: float) -> Optional[str]:
        """The line to print for one line of fairseq's output, or None."""
        if _PASS_THROUGH.search(line):
            return line.rstrip("\n")
        if "train_inner" not in line:
            return None
        fields = parse_fields(line)
        updates = fields.get("num_updates")
        if updates is None:
            return None
        if self.first is None:
            self.first = (now, updates)
            return None
        if now - self.last_print < self.every and updates < self.total_updates:
            return None
        self.last_print = now
        left = self.estimate(now, updates)
        speed = (updates - self.first[1]) / (now - self.first[0]) if now > self.first[0] else 0.0
        parts = [f"{self.label + ': ' if self.label else ''}update {int(updates)}/{self.total_updates}"
                 f" ({100 * updates / self.total_updates:.0f}%)"]
        if "loss" in fields:
            parts.append(f"loss {fields['loss']:.3f}")
        if "ppl" in fields:
            parts.append(f"ppl {fields['ppl']:.1f}")
        parts.append(f"{speed:.2f} updates/s")
        if left is not None:
            parts.append(f"about {format_duration(left)} left")
        return " | ".join(parts)


def follow(stream: TextIO, out: TextIO, progress: Progress, clock=time.monotonic) -> None:
    for line in stream:
        shown = progress.feed(line, clock())
        if shown is not None:
            print(shown, file=out, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m var_attn_plugin.tools.progress", description=description_from_docstring(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-updates", type=int, required=True, help="the run's --max-update")
    parser.add_argument("--label", default="", help="prefix of every progress line")
    parser.add_argument("--then", type=float, default=0.0, metavar="N",
                        help="work that follows this run, in units of this run's updates (default 0)")
    parser.add_argument("--every", type=float, default=30.0, metavar="SECONDS",
                        help="print at most this often (default 30)")
    args = parser.parse_args(argv)
    if args.total_updates < 1:
        parser.error(f"--total-updates must be at least 1, got {args.total_updates}")
    follow(sys.stdin, sys.stdout, Progress(args.total_updates, args.label, args.then, args.every))


if __name__ == "__main__":
    main()
