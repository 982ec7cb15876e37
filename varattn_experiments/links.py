"""Reference word alignments for examples/converge/converge.sh.

    python examples/converge/links.py diagonal SRC TGT > diagonal.align
    python examples/converge/links.py eflomal --train-src A --train-tgt B SRC TGT > eflomal.align

``diagonal``: the baseline that links target word j to source word round(j·|src|/|tgt|).

``eflomal``: eflomal (IBM1 + HMM + fertility, Gibbs sampling; the ``eflomal`` package from
PyPI) aligns the training text together with SRC/TGT in both directions, on lowercased
words; the two directions are symmetrised with grow-diag-final-and (``--symmetrise
intersection`` for the intersection), and the links of the SRC/TGT lines are printed.
``--forward-output FILE`` writes the links of the forward direction alone, of the same
sample, to FILE: at most one source word per target word, the form of a model's argmax
alignment (how much of a model's AER against the symmetrised links is owed to that form).

Words are whitespace-separated tokens, as ``varattn-align --words`` counts them for
sentencepiece models; links are Pharaoh ``i-j``, source word first, 0-based.
"""

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Iterable, List, Sequence, Set, Tuple

from var_attn_plugin.textio import Link, read_lines

NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def diagonal(source_len: int, target_len: int) -> Set[Link]:
    """Target word j -> source word round(j * |src| / |tgt|), kept inside the sentence."""
    if source_len == 0:
        return set()
    return {(min(source_len - 1, int(j * source_len / target_len + 0.5)), j) for j in range(target_len)}


def grow_diag_final_and(forward: Set[Link], reverse: Set[Link]) -> Set[Link]:
    """Koehn's grow-diag-final-and: start from the intersection, add neighbouring links of
    the union (diagonals too) that align a yet unaligned word, then links of either
    direction whose both words are still unaligned."""
    union = forward | reverse
    alignment = set(forward & reverse)
    source_aligned = {i for i, _ in alignment}
    target_aligned = {j for _, j in alignment}

    def add(link: Link) -> None:
        alignment.add(link)
        source_aligned.add(link[0])
        target_aligned.add(link[1])

    grown = True
    while grown:
        grown = False
        for i, j in sorted(alignment):
            for di, dj in NEIGHBOURS:
                link = (i + di, j + dj)
                if link in union and link not in alignment and \
                        (link[0] not in source_aligned or link[1] not in target_aligned):
                    add(link)
                    grown = True
    for direction in (forward, reverse):
        for link in sorted(direction):
            if link[0] not in source_aligned and link[1] not in target_aligned:
                add(link)
    return alignment


def parse_links(line: str) -> Set[Link]:
    return {tuple(int(k) for k in token.split("-")) for token in line.split()}


def format_links(links: Iterable[Link]) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def eflomal_directions(source: Sequence[str], target: Sequence[str]) -> Tuple[List[Set[Link]], List[Set[Link]]]:
    """eflomal's links of every line pair (lowercased words) in the forward direction (at most
    one source word per target word) and in the reverse direction, from one sample."""
    import eflomal

    with tempfile.TemporaryDirectory() as tmp:
        forward, reverse = Path(tmp) / "fwd", Path(tmp) / "rev"
        eflomal.Aligner().align(io.StringIO("".join(s.lower() + "\n" for s in source)),
                                io.StringIO("".join(t.lower() + "\n" for t in target)),
                                links_filename_fwd=str(forward), links_filename_rev=str(reverse), quiet=True)
        return ([parse_links(line) for line in read_lines(forward, "eflomal output")],
                [parse_links(line) for line in read_lines(reverse, "eflomal output")])


def symmetrised(forward: Sequence[Set[Link]], reverse: Sequence[Set[Link]],
                symmetrise: str = "grow-diag-final-and") -> List[Set[Link]]:
    if symmetrise == "intersection":
        return [f & r for f, r in zip(forward, reverse)]
    return [grow_diag_final_and(f, r) for f, r in zip(forward, reverse)]


def write_links(path: Path, links: Iterable[Set[Link]]) -> None:
    path.write_text("".join(format_links(x) + "\n" for x in links))


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    diag = commands.add_parser("diagonal", help="the diagonal baseline")
    align = commands.add_parser("eflomal", help="eflomal, symmetrised")
    for sub in (diag, align):
        sub.add_argument("source", type=Path, help="source text, one sentence per line")
        sub.add_argument("target", type=Path, help="target text, parallel")
    align.add_argument("--train-src", type=Path, action="append", default=[],
                       help="more source text to learn from (repeatable)")
    align.add_argument("--train-tgt", type=Path, action="append", default=[], help="its target side (repeatable)")
    align.add_argument("--symmetrise", choices=("grow-diag-final-and", "intersection"),
                       default="grow-diag-final-and")
    align.add_argument("--forward-output", type=Path, default=None,
                       help="also write the forward direction's links (one source word per target word at most)")
    args = parser.parse_args(argv)
    source, target = read_lines(args.source, "source file"), read_lines(args.target, "target file")
    if len(source) != len(target):
        parser.error(f"{args.source} has {len(source)} lines, {args.target} {len(target)}")
    if args.command == "diagonal":
        links = [diagonal(len(s.split()), len(t.split())) for s, t in zip(source, target)]
    else:
        extra_src = [line for path in args.train_src for line in read_lines(path, "--train-src")]
        extra_tgt = [line for path in args.train_tgt for line in read_lines(path, "--train-tgt")]
        if len(extra_src) != len(extra_tgt):
            parser.error("--train-src and --train-tgt must have as many lines")
        forward, reverse = eflomal_directions(extra_src + source, extra_tgt + target)
        forward, reverse = forward[len(extra_src):], reverse[len(extra_src):]
        links = symmetrised(forward, reverse, args.symmetrise)
        if args.forward_output:
            write_links(args.forward_output, forward)
    sys.stdout.write("".join(format_links(x) + "\n" for x in links))


if __name__ == "__main__":
    main()
