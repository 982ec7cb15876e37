"""``varattn-aer GOLD PRED``: precision, recall and alignment error rate against gold links.

Och & Ney (2003), with sure links S ⊆ possible links P and predicted links A, counted over
the whole corpus:

    precision = |A ∩ P| / |A|
    recall    = |A ∩ S| / |S|
    AER       = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

A link is ``(i, j)``: source position i, target position j, 0-based.

Gold formats:

- ``pharaoh``: one line per sentence, links separated by spaces: ``i-j`` (sure), ``i?j``
  (possible), or ``i-j-S`` / ``i-j-P``; an empty line is a sentence without links;
- ``naacl`` (the NAACL 2003 / WPT shared-task format): one link per line,
  ``sentence i j [S|P] [confidence]``; S when the label is missing. Sentence ids count from
  ``--first-sentence-id`` and name the lines of PRED.

PRED is Pharaoh (what ``varattn-align`` writes), 0-based; every link in it counts as
predicted whatever its label.

Checks: empty files, files without a link, and sentence counts that differ are errors;
with ``--source`` and ``--target`` (the text the positions index: words for ``varattn-align
--words``, else the pieces of the data-bin) every position must lie inside its sentence, and
a 0-based file whose largest position on a line equals the sentence length is reported as
1-based. With ``--one-based``, a position 0 (a NULL link) is an error unless
``--drop-null-links`` leaves such links out (their count is printed on stderr). Errors name
the file and line and end with exit code 1 (command-line mistakes too).

Without ``--source`` and ``--target`` the sentence lengths are unknown: neither gold format
carries them. What is known is a lower bound, the largest source and target position of the
gold links of each sentence. A predicted link beyond it (``55-1`` where the gold links reach
position 3) is named on stderr with its file and line, in a warning that asks for
``--source``/``--target``, and still scored: it is not an error, because a gold alignment
may leave the last words of a sentence unlinked (a reference made by an aligner such as
eflomal, or a partial gold set), and then a correct prediction lies beyond it too; with
``--source``/``--target`` the same link is checked against the real lengths and an error.
A gold sentence without links bounds nothing.
"""

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from ..console import ArgumentParser, closed_pipe_ends_quietly
from ..errors import UsageError
from ..textio import Link, read_lines

GOLD_FORMATS = ("auto", "pharaoh", "naacl")

_PHARAOH = re.compile(r"^(\d+)([-?])(\d+)(?:-([SP]))?$")
_PHARAOH_EXPECTED = ("expected i-j (sure), i?j (possible), i-j-S or i-j-P, "
                     "with non-negative integer positions")
_NAACL_EXPECTED = "expected 'sentence i j [S|P] [confidence]' with non-negative integers"



@dataclass(frozen=True)
class GoldAlignment:
    """Gold links of one sentence; ``possible`` contains ``sure`` (S ⊆ P)."""

    sure: FrozenSet[Link]
    possible: FrozenSet[Link]

    @classmethod
    def from_links(cls, sure: Set[Link], possible_only: Set[Link]) -> "GoldAlignment":
        return cls(frozenset(sure), frozenset(sure | possible_only))


@dataclass(frozen=True)
class AlignmentScores:
    precision: float
    recall: float
    aer: float
    predicted: int  # |A|
    sure: int  # |S|
    possible: int  # |P|
    predicted_and_sure: int  # |A ∩ S|
    predicted_and_possible: int  # |A ∩ P|


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def score(gold: Sequence[GoldAlignment], predicted: Sequence[Set[Link]]) -> AlignmentScores:
    """Corpus-level precision, recall and AER (counts summed over sentences, then divided).

    A ratio whose denominator is 0 (no predicted links, no sure links) is ``nan``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted sentences")
    a = s = p = a_s = a_p = 0
    for g, links in zip(gold, predicted):
        links = set(links)
        a += len(links)
        s += len(g.sure)
        p += len(g.possible)
        a_s += len(links & g.sure)
        a_p += len(links & g.possible)
    return AlignmentScores(
        precision=_ratio(a_p, a),
        recall=_ratio(a_s, s),
        aer=1.0 - _ratio(a_s + a_p, a + s),
        predicted=a, sure=s, possible=p, predicted_and_sure=a_s, predicted_and_possible=a_p,
    )


# ------------------------------------------------------------------ reading


class NullLinks:
    """What ``--one-based`` reading does with position 0 (a NULL link): an error naming the
    file and line, or (``drop=True``) leave the link out and count it."""

    def __init__(self, drop: bool = False):
        self.drop = drop
        self.dropped = 0


def _position(value: int, one_based: bool, where: str = "", token: str = "",
              null_links: Optional[NullLinks] = None) -> Optional[int]:
    """A 0-based position, or None for a dropped 1-based 0 (a NULL link)."""
    if not one_based:
        return value
    if value > 0:
        return value - 1
    if null_links is None or not null_links.drop:
        raise UsageError(
            f"{where}: link {token!r} has position 0, which --one-based reads as a NULL link: pass "
            "--drop-null-links to leave NULL links out, or drop --one-based if the file counts from 0")
    null_links.dropped += 1
    return None


def parse_pharaoh_line(line: str, where: str, one_based: bool = False,
                       null_links: Optional[NullLinks] = None) -> Tuple[Set[Link], Set[Link]]:
    """``(sure, possible_only)`` links of one Pharaoh line. ``where`` is ``file:line``."""
    sure: Set[Link] = set()
    possible: Set[Link] = set()
    for token in line.split():
        match = _PHARAOH.match(token)
        if match is None:
            hint = ""
            if re.fullmatch(r"-?\d+", token):
                hint = "; this looks like the 'sentence i j' format: pass --gold-format naacl"
            raise UsageError(f"{where}: bad link {token!r}: {_PHARAOH_EXPECTED}{hint}")
        i, sep, j, label = match.groups()
        i, j = (_position(int(i), one_based, where, token, null_links),
                _position(int(j), one_based, where, token, null_links))
        if i is None or j is None:
            continue
        is_sure = label == "S" if label else sep == "-"
        if label and sep == "?":
            raise UsageError(
                f"{where}: bad link {token!r}: '?' already marks a possible link, drop the -{label}")
        (sure if is_sure else possible).add((i, j))
    return sure, possible - sure


def detect_format(lines: Sequence[str], path: Path) -> str:
    """``pharaoh`` or ``naacl`` from the first non-empty line."""
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if "-" in fields[0] or "?" in fields[0]:
            return "pharaoh"
        if 3 <= len(fields) <= 5 and all(f.isdigit() for f in fields[:3]):
            return "naacl"
        raise UsageError(
            f"{path}:{number}: cannot tell the gold format from {line.strip()!r}: pass "
            "--gold-format pharaoh (lines of i-j / i?j links) or --gold-format naacl "
            "('sentence i j [S|P]' per line)")
    return "pharaoh"


def read_pharaoh(path: Path, lines: Sequence[str], one_based: bool = False,
                 null_links: Optional[NullLinks] = None) -> List[GoldAlignment]:
    """Gold links from the lines of ``path`` in the Pharaoh format (``path`` names them in errors)."""
    return [GoldAlignment.from_links(*parse_pharaoh_line(line, f"{path}:{n}", one_based, null_links))
            for n, line in enumerate(lines, 1)]


def read_naacl(path: Path, lines: Sequence[str], num_sentences: int, one_based: bool = False,
               first_sentence_id: int = 1, null_links: Optional[NullLinks] = None) -> List[GoldAlignment]:
    """Gold links of ``num_sentences`` sentences from the ``sentence i j [S|P]`` format."""
    sure: Dict[int, Set[Link]] = {}
    possible: Dict[int, Set[Link]] = {}
    last_id = first_sentence_id - 1
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if not 3 <= len(fields) <= 5:
            raise UsageError(f"{where}: {len(fields)} fields in {line.strip()!r}: {_NAACL_EXPECTED}")
        for name, value in zip(("sentence", "i", "j"), fields):
            if not value.isdigit():
                raise UsageError(f"{where}: bad {name} {value!r}: {_NAACL_EXPECTED}")
        label = fields[3] if len(fields) > 3 else "S"
        if label not in ("S", "P"):
            raise UsageError(f"{where}: bad label {label!r}: expected S (sure) or P (possible)")
        if len(fields) == 5:
            try:
                float(fields[4])
            except ValueError:
                raise UsageError(f"{where}: bad confidence {fields[4]!r}: expected a number") from None
        sentence = int(fields[0])
        if sentence < first_sentence_id:
            raise UsageError(
                f"{where}: sentence id {sentence} is below --first-sentence-id {first_sentence_id}")
        last_id = max(last_id, sentence)
        token = line.strip()
        i, j = (_position(int(fields[1]), one_based, where, token, null_links),
                _position(int(fields[2]), one_based, where, token, null_links))
        if i is None or j is None:
            continue
        (sure if label == "S" else possible).setdefault(sentence, set()).add((i, j))
    count = last_id - first_sentence_id + 1
    if count != num_sentences:
        raise UsageError(
            f"{path}: sentence ids run from {first_sentence_id} to {last_id} ({count} sentences) but "
            f"the prediction has {num_sentences} lines; check --first-sentence-id and that both "
            "files cover the same sentences")
    ids = range(first_sentence_id, last_id + 1)
    return [GoldAlignment.from_links(sure.get(k, set()), possible.get(k, set()) - sure.get(k, set()))
            for k in ids]


def read_prediction(path: Path, reverse: bool = False) -> List[Set[Link]]:
    """Predicted links per line (Pharaoh, 0-based); ``reverse`` swaps i and j."""
    links = []
    for n, line in enumerate(read_lines(path, "prediction file", UsageError), 1):
        sure, possible = parse_pharaoh_line(line, f"{path}:{n}")
        both = sure | possible
        links.append({(j, i) for i, j in both} if reverse else both)
    return links


def read_gold_with_format(path: Path, num_sentences: int, gold_format: str = "auto", one_based: bool = False,
                          first_sentence_id: int = 1, null_links: Optional[NullLinks] = None
                          ) -> Tuple[List[GoldAlignment], str]:
    """Gold links of ``num_sentences`` sentences and the format they were read in (the file is read once)."""
    if gold_format not in GOLD_FORMATS:
        raise ValueError(f"--gold-format must be one of {', '.join(GOLD_FORMATS)}, got {gold_format!r}")
    lines = read_lines(path, "gold file", UsageError)
    if gold_format == "auto":
        gold_format = detect_format(lines, path)
    if gold_format == "naacl":
        return read_naacl(path, lines, num_sentences, one_based, first_sentence_id, null_links), gold_format
    gold = read_pharaoh(path, lines, one_based, null_links)
    if len(gold) != num_sentences:
        raise UsageError(
            f"{path} has {len(gold)} lines (sentences) but the prediction has {num_sentences}: "
            "both must have one line per sentence pair, in the same order")
    return gold, gold_format


def read_gold(path: Path, num_sentences: int, gold_format: str = "auto", one_based: bool = False,
              first_sentence_id: int = 1, null_links: Optional[NullLinks] = None) -> List[GoldAlignment]:
    """Gold links of ``num_sentences`` sentences (the prediction's line count)."""
    return read_gold_with_format(path, num_sentences, gold_format, one_based, first_sentence_id, null_links)[0]


# ------------------------------------------------------------------ checks


def read_lengths(path: Path, flag: str) -> List[int]:
    """Whitespace-separated tokens per line of the text that the positions index."""
    return [len(line.split()) for line in read_lines(path, flag, UsageError)]


def check_positions(links: Sequence[Set[Link]], src_lengths: Sequence[int], tgt_lengths: Sequence[int],
                    where: Callable[[int], str], one_based: bool, one_based_flag: bool) -> None:
    """Every link ``(i, j)`` (0-based) of sentence k inside ``src_lengths[k]`` x ``tgt_lengths[k]``.

    ``where(k)`` names sentence k's place in its file; ``one_based`` says how the file was
    read, ``one_based_flag`` whether ``--one-based`` applies to it (the gold file).
    """
    for k, (sentence, m, n) in enumerate(zip(links, src_lengths, tgt_lengths)):
        bad = sorted((i, j) for i, j in sentence if i >= m or j >= n)
        if not bad:
            continue
        i, j = bad[0]
        shift = 1 if one_based else 0
        message = (f"{where(k)}: link {i + shift}-{j + shift} (source-target) lies outside the sentence pair "
                   f"({m} source and {n} target tokens in --source/--target, so positions run from "
                   f"{shift} to {m - 1 + shift} and {n - 1 + shift})")
        at_the_end = all(i <= m and j <= n for i, j in bad) and any(i == m or j == n for i, j in bad)
        if at_the_end and not one_based and one_based_flag:
            message += "; a position equal to the sentence length suggests the file counts from 1: pass --one-based"
        elif at_the_end and not one_based:
            message += "; this file must count from 0, as varattn-align writes it"
        else:
            message += ("; check that --source and --target are the text the links index (words for "
                        "varattn-align --words, else the pieces of the data-bin) and that --reverse is right")
        raise UsageError(message)


MAX_NAMED = 5  # beyond-the-gold warnings name this many lines, then count the rest


def links_beyond_gold(gold: Sequence[GoldAlignment], predicted: Sequence[Set[Link]]
                      ) -> List[Tuple[int, Link, Tuple[int, int], int]]:
    """Without the sentence lengths: per sentence k whose prediction has links beyond every gold
    link of it (a source position above the gold's largest source position, or a target
    position above its largest target position), ``(k, first such link, (largest gold source
    position, largest gold target position), how many such links)``. Sentences without gold
    links bound nothing and are left out."""
    found = []
    for k, (sentence, links) in enumerate(zip(gold, predicted)):
        if not sentence.possible:
            continue
        last_i = max(i for i, _ in sentence.possible)
        last_j = max(j for _, j in sentence.possible)
        beyond = sorted((i, j) for i, j in links if i > last_i or j > last_j)
        if beyond:
            found.append((k, beyond[0], (last_i, last_j), len(beyond)))
    return found


def warn_links_beyond_gold(gold: Sequence[GoldAlignment], predicted: Sequence[Set[Link]], pred_path: Path,
                           prog: str) -> int:
    """Warn on stderr (file:line) about :func:`links_beyond_gold`; returns how many sentences."""
    found = links_beyond_gold(gold, predicted)
    for k, (i, j), (last_i, last_j), count in found[:MAX_NAMED]:
        others = f" (and {count - 1} more on the line)" if count > 1 else ""
        print(f"{prog}: warning: {pred_path}:{k + 1}: link {i}-{j} (source-target){others} lies beyond every gold "
              f"link of its sentence (they reach source position {last_i} and target position {last_j})",
              file=sys.stderr)
    if found:
        more = f" ({len(found) - MAX_NAMED} more lines not named)" if len(found) > MAX_NAMED else ""
        lines = "1 line" if len(found) == 1 else f"{len(found)} lines"
        print(f"{prog}: warning: {lines} of {pred_path} link positions beyond the gold's{more}; the "
              "sentence lengths are unknown, so they are scored as predicted: pass --source and --target (the text "
              "the positions index) to check every link against its sentence", file=sys.stderr)
    return len(found)


def check_not_empty(gold: Sequence[GoldAlignment], predicted: Sequence[Set[Link]], gold_path: Path,
                    pred_path: Path) -> None:
    """The ratios are defined: some predicted links, some sure gold links."""
    if not predicted:
        raise UsageError(
            f"{pred_path} is empty: no sentence to score (varattn-align writes one line per sentence pair)")
    if not any(predicted):
        raise UsageError(
            f"{pred_path} has {len(predicted)} lines but not one link, so precision is undefined: check that "
            "it is varattn-align's output for these sentences")
    if not any(g.sure for g in gold):
        raise UsageError(
            f"{gold_path} has no sure link in its {len(gold)} sentences, so recall and AER are undefined: "
            "check the file and --gold-format (possible links are i?j or i-j-P; sure links i-j or i-j-S)")


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-aer",
        description=__doc__.replace("``", "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("gold", type=Path, metavar="GOLD", help="gold alignment file")
    parser.add_argument("pred", type=Path, metavar="PRED",
                        help="predicted alignment, Pharaoh i-j per line, 0-based (varattn-align's output)")
    parser.add_argument("--gold-format", choices=GOLD_FORMATS, default="auto",
                        help="gold format; auto detects it from the first non-empty line (default)")
    parser.add_argument("--one-based", action="store_true",
                        help="gold positions count from 1 (a position 0, a NULL link, is an error unless "
                             "--drop-null-links); PRED stays 0-based")
    parser.add_argument("--drop-null-links", action="store_true",
                        help="with --one-based: leave gold links with a position 0 (NULL links) out, "
                             "printing their count on stderr")
    parser.add_argument("--source", type=Path, default=None, metavar="FILE",
                        help="the source text the positions index, one sentence per line (words for "
                             "varattn-align --words, else the data-bin's pieces): every link is checked "
                             "against the sentence lengths (needs --target)")
    parser.add_argument("--target", type=Path, default=None, metavar="FILE",
                        help="the target text the positions index, parallel to --source")
    parser.add_argument("--first-sentence-id", type=int, default=1,
                        help="naacl format: the sentence id of PRED's first line (default 1)")
    parser.add_argument("--reverse", action="store_true",
                        help="swap i and j in PRED (when it is target-source)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the scores and counts")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.source is None) != (args.target is None):
        parser.error("--source and --target go together: the lengths of both sides bound the positions")
    if args.drop_null_links and not args.one_based:
        parser.error("--drop-null-links applies to --one-based gold files (NULL links are position 0)")
    null_links = NullLinks(drop=args.drop_null_links)
    try:
        predicted = read_prediction(args.pred, args.reverse)
        gold, gold_format = read_gold_with_format(args.gold, len(predicted), args.gold_format, args.one_based,
                                                  args.first_sentence_id, null_links)
        check_not_empty(gold, predicted, args.gold, args.pred)
        if args.source is not None:
            src_lengths = read_lengths(args.source, "--source")
            tgt_lengths = read_lengths(args.target, "--target")
            for flag, lengths in (("--source", src_lengths), ("--target", tgt_lengths)):
                if len(lengths) != len(predicted):
                    raise UsageError(
                        f"{flag} has {len(lengths)} lines but {args.pred} has {len(predicted)}: the text must "
                        "have one line per sentence pair, in the same order")
            naacl = gold_format == "naacl"
            check_positions([g.possible for g in gold], src_lengths, tgt_lengths,
                            (lambda k: f"{args.gold}: sentence {args.first_sentence_id + k}") if naacl
                            else (lambda k: f"{args.gold}:{k + 1}"), args.one_based, True)
            check_positions(predicted, src_lengths, tgt_lengths, lambda k: f"{args.pred}:{k + 1}", False, False)
        else:
            warn_links_beyond_gold(gold, predicted, args.pred, parser.prog)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if null_links.dropped:
        print(f"{parser.prog}: left out {null_links.dropped} NULL links (position 0) of {args.gold} "
              "(--drop-null-links)", file=sys.stderr)
    scores = score(gold, predicted)
    with closed_pipe_ends_quietly():
        if args.json:
            values = {k: (None if v != v else v) for k, v in asdict(scores).items()}  # nan -> null
            print(json.dumps(values))
        else:
            for name in ("precision", "recall", "aer"):
                print(f"{name}: {getattr(scores, name):.4f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
