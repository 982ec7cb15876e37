"""Collect the demo runs of examples/ding/compare.sh into one markdown table.

    python examples/ding/summarize.py ROOT MODE [MODE ...]

Reads, for each mode, ROOT/MODE/eval/validate.log (fairseq-validate on the test set),
ROOT/MODE/eval/sacrebleu.txt and ROOT/MODE/checkpoints/train.done.
"""

import math
import re
import sys
from pathlib import Path


def metrics(validate_log: Path) -> dict:
    line = next(l for l in validate_log.read_text().splitlines() if "valid on 'test' subset" in l)
    return {key: float(value) for key, value in re.findall(r"\| (\w+) ([-0-9.]+)", line)}


def main(root: str, modes):
    rows = ["| mode | exact PPL | ELBO-bound PPL | KL (nats/token) | prior entropy (nats) | sacreBLEU | "
            "training time (s) | updates |", "|---|---|---|---|---|---|---|---|"]
    for mode in modes:
        run = Path(root) / mode
        m = metrics(run / "eval" / "validate.log")
        bleu = re.search(r"BLEU[^=]*= ([0-9.]+)", (run / "eval" / "sacrebleu.txt").read_text()).group(1)
        seconds = re.search(r"(\d+) s", (run / "checkpoints" / "train.done").read_text()).group(1)
        updates = re.findall(r"num_updates (\d+)", (run / "train.log").read_text())
        # fairseq logs in bits; the paper's KL and entropies are in nats
        kl = m.get("kl", 0.0) * math.log(2)
        rows.append(f"| {mode} | {m['ppl']:.2f} | {m['bound_ppl']:.2f} | {kl:.3f} | "
                    f"{m['prior_ent'] * math.log(2):.3f} | {bleu} | {seconds} | {updates[-1] if updates else '?'} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
