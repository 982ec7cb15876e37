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
"""

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

Link = Tuple[int, int]  # (source position, target position)
GOLD_FORMATS = ("auto", "pharaoh", "naacl")

_PHARAOH = re.compile(r"^(\d+)([-?])(\d+)(?:-([SP]))?$")
_PHARAOH_EXPECTED = ("expected i-j (sure), i?j (possible), i-j-S or i-j-P, "
                     "with non-negative integer positions")
_NAACL_EXPECTED = "expected 'sentence i j [S|P] [confidence]' with non-negative integers"


class AlignmentFormatError(ValueError):
    """Malformed alignment input; the message names the file, the line and the fix."""


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


def _position(value: int, one_based: bool) -> Optional[int]:
    """A 0-based position, or None for a 1-based 0 (a NULL link)."""
    if not one_based:
        return value
    return value - 1 if value > 0 else None


def parse_pharaoh_line(line: str, where: str, one_based: bool = False) -> Tuple[Set[Link], Set[Link]]:
    """``(sure, possible_only)`` links of one Pharaoh line. ``where`` is ``file:line``."""
    sure: Set[Link] = set()
    possible: Set[Link] = set()
    for token in line.split():
        match = _PHARAOH.match(token)
        if match is None:
            hint = ""
            if re.fullmatch(r"-?\d+", token):
                hint = "; this looks like the 'sentence i j' format: pass --gold-format naacl"
            raise AlignmentFormatError(f"{where}: bad link {token!r}: {_PHARAOH_EXPECTED}{hint}")
        i, sep, j, label = match.groups()
        i, j = _position(int(i), one_based), _position(int(j), one_based)
        if i is None or j is None:
            continue
        is_sure = label == "S" if label else sep == "-"
        if label and sep == "?":
            raise AlignmentFormatError(
                f"{where}: bad link {token!r}: '?' already marks a possible link, drop the -{label}")
        (sure if is_sure else possible).add((i, j))
    return sure, possible - sure


def _read_lines(path: Path, role: str) -> List[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AlignmentFormatError(f"{role} file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise AlignmentFormatError(f"{role} file {path} is not UTF-8 text ({e})") from None


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
        raise AlignmentFormatError(
            f"{path}:{number}: cannot tell the gold format from {line.strip()!r}: pass "
            "--gold-format pharaoh (lines of i-j / i?j links) or --gold-format naacl "
            "('sentence i j [S|P]' per line)")
    return "pharaoh"


def read_pharaoh(path: Path, one_based: bool = False, role: str = "gold") -> List[GoldAlignment]:
    lines = _read_lines(path, role)
    return [GoldAlignment.from_links(*parse_pharaoh_line(line, f"{path}:{n}", one_based))
            for n, line in enumerate(lines, 1)]


def read_naacl(path: Path, num_sentences: int, one_based: bool = False,
               first_sentence_id: int = 1) -> List[GoldAlignment]:
    """Gold links of ``num_sentences`` sentences from the ``sentence i j [S|P]`` format."""
    sure: Dict[int, Set[Link]] = {}
    possible: Dict[int, Set[Link]] = {}
    last_id = first_sentence_id - 1
    for number, line in enumerate(_read_lines(path, "gold"), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if not 3 <= len(fields) <= 5:
            raise AlignmentFormatError(f"{where}: {len(fields)} fields in {line.strip()!r}: {_NAACL_EXPECTED}")
        for name, value in zip(("sentence", "i", "j"), fields):
            if not value.isdigit():
                raise AlignmentFormatError(f"{where}: bad {name} {value!r}: {_NAACL_EXPECTED}")
        label = fields[3] if len(fields) > 3 else "S"
        if label not in ("S", "P"):
            raise AlignmentFormatError(f"{where}: bad label {label!r}: expected S (sure) or P (possible)")
        if len(fields) == 5:
            try:
                float(fields[4])
            except ValueError:
                raise AlignmentFormatError(f"{where}: bad confidence {fields[4]!r}: expected a number") from None
        sentence = int(fields[0])
        if sentence < first_sentence_id:
            raise AlignmentFormatError(
                f"{where}: sentence id {sentence} is below --first-sentence-id {first_sentence_id}")
        last_id = max(last_id, sentence)
        i, j = _position(int(fields[1]), one_based), _position(int(fields[2]), one_based)
        if i is None or j is None:
            continue
        (sure if label == "S" else possible).setdefault(sentence, set()).add((i, j))
    count = last_id - first_sentence_id + 1
    if count != num_sentences:
        raise AlignmentFormatError(
            f"{path}: sentence ids run from {first_sentence_id} to {last_id} ({count} sentences) but "
            f"the prediction has {num_sentences} lines; check --first-sentence-id and that both "
            "files cover the same sentences")
    ids = range(first_sentence_id, last_id + 1)
    return [GoldAlignment.from_links(sure.get(k, set()), possible.get(k, set()) - sure.get(k, set()))
            for k in ids]


def read_prediction(path: Path, reverse: bool = False) -> List[Set[Link]]:
    """Predicted links per line (Pharaoh, 0-based); ``reverse`` swaps i and j."""
    links = []
    for n, line in enumerate(_read_lines(path, "prediction"), 1):
        sure, possible = parse_pharaoh_line(line, f"{path}:{n}")
        both = sure | possible
        links.append({(j, i) for i, j in both} if reverse else both)
    return links


def read_gold(path: Path, num_sentences: int, gold_format: str = "auto", one_based: bool = False,
              first_sentence_id: int = 1) -> List[GoldAlignment]:
    """Gold links of ``num_sentences`` sentences (the prediction's line count)."""
    if gold_format not in GOLD_FORMATS:
        raise ValueError(f"--gold-format must be one of {', '.join(GOLD_FORMATS)}, got {gold_format!r}")
    if gold_format == "auto":
        gold_format = detect_format(_read_lines(path, "gold"), path)
    if gold_format == "naacl":
        return read_naacl(path, num_sentences, one_based, first_sentence_id)
    gold = read_pharaoh(path, one_based)
    if len(gold) != num_sentences:
        raise AlignmentFormatError(
            f"{path} has {len(gold)} lines (sentences) but the prediction has {num_sentences}: "
            "both must have one line per sentence pair, in the same order")
    return gold


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
                        help="gold positions count from 1 (position 0 is a NULL link and is ignored); "
                             "PRED stays 0-based")
    parser.add_argument("--first-sentence-id", type=int, default=1,
                        help="naacl format: the sentence id of PRED's first line (default 1)")
    parser.add_argument("--reverse", action="store_true",
                        help="swap i and j in PRED (when it is target-source)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the scores and counts")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        predicted = read_prediction(args.pred, args.reverse)
        gold = read_gold(args.gold, len(predicted), args.gold_format, args.one_based, args.first_sentence_id)
    except AlignmentFormatError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    scores = score(gold, predicted)
    if args.json:
        values = {k: (None if v != v else v) for k, v in asdict(scores).items()}  # nan -> null
        print(json.dumps(values))
    else:
        for name in ("precision", "recall", "aer"):
            print(f"{name}: {getattr(scores, name):.4f}")


if __name__ == "__main__":
    main()
