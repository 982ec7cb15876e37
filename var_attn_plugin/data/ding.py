"""``varattn-prepare-ding``: German-English sentence pairs from the Ding dictionary.

Ding (Frank Richter, TU Chemnitz, GPL-2+) is a German-English dictionary whose entries
carry example sentences. Debian ships it as the package ``trans-de-en`` (file
``usr/share/trans/de-en``); the project publishes the same file as ``de-en.txt.gz``. The data
is fetched at run time and never stored in this repository.

Format, one entry per line (``#`` starts a comment line)::

    German sub-entry | German sub-entry | ... :: English sub-entry | English sub-entry | ...

Sub-entries are aligned by position. Within a sub-entry, ``; `` separates alternatives,
``{...}`` holds grammar (``{f}``, ``{vt}``, ``{+Gen.}``) and ``[...]`` usage labels
(``[Br.]``, ``[coll.]``). Example::

    Raunen {n}; Geraune {n} | Ein Raunen ging durch die Menge. :: murmur | A murmur went through the crowd.

A sub-entry pair becomes a sentence pair when, after removing the ``{}``/``[]`` annotations
and keeping the first alternative, both sides end in ``.``, ``!`` or ``?``, have at least
``MIN_WORDS`` words, and do not end in one of Ding's placeholders (``etw.``, ``jdn.``,
``sth.``, ``sb.``, ...: such entries are phrases like ``to dote on sb.``, not sentences).
Lines without exactly one `` :: `` or with different numbers of sub-entries on the two
sides are malformed and skipped.

The split is grouped by German sentence, so no German sentence occurs in two splits, and
it depends only on the sentences and the seed (not on the order of the file).
"""

import argparse
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..console import ArgumentParser, configure_logging
from ..errors import UsageError
from ..textio import read_lines

logger = logging.getLogger("varattn-prepare-ding")

DEBIAN_PACKAGE = "trans-de-en"
PACKAGE_FILE = "usr/share/trans/de-en"  # inside the .deb
UPSTREAM_URL = "https://ftp.tu-chemnitz.de/pub/Local/urz/ding/de-en/de-en.txt.gz"
FETCHED_NAME = "de-en"  # the dictionary file, as stored in --download-dir

LANGUAGE_SEPARATOR = " :: "
SUBENTRY_SEPARATOR = "|"
ALTERNATIVE_SEPARATOR = "; "
COMMENT = "#"
SENTENCE_END = (".", "!", "?")
MIN_WORDS = 3
# Ding's placeholders for "somebody"/"something" (German and English): a side ending in one
# of them is a dictionary phrase ("Hoffnungen knüpfen an etw."), not a sentence.
PLACEHOLDERS = frozenset({"jd.", "jdm.", "jdn.", "jds.", "etw.", "sb.", "sth."})
_ANNOTATION = re.compile(r"\s*(?:\{[^{}]*\}|\[[^\[\]]*\])")  # innermost {...} or [...], with the space before it

Pair = Tuple[str, str]  # (German, English)
SPLITS = ("train", "valid", "test")



# ----------------------------------------------------------------------------- extraction


def strip_annotations(text: str) -> str:
    """Remove ``{...}`` and ``[...]`` with the spaces before them (innermost first, so nested
    ones go too): ``"Geist [Dt.]!"`` -> ``"Geist!"``."""
    while True:
        stripped = _ANNOTATION.sub("", text)
        if stripped == text:
            return text
        text = stripped


def clean_side(subentry: str) -> str:
    """One side of a sub-entry -> its first alternative without annotations, with single
    spaces. Annotations go first: they may contain ``; `` themselves (``{sought; sought}``)."""
    first = strip_annotations(subentry).split(ALTERNATIVE_SEPARATOR)[0]
    return " ".join(first.split())


def is_sentence(text: str) -> bool:
    """Ends in . ! ?, has at least ``MIN_WORDS`` words, no placeholder at the end and no
    unbalanced annotation bracket left."""
    words = text.split()
    if len(words) < MIN_WORDS or not text.endswith(SENTENCE_END):
        return False
    if words[-1].split("/")[-1] in PLACEHOLDERS:  # also "sb./sth."
        return False
    return not any(bracket in text for bracket in "{}[]")


def parse_line(line: str) -> Optional[List[Pair]]:
    """The sentence pairs of one dictionary line; ``None`` for a malformed line.
    Comment and blank lines give ``[]``."""
    line = line.rstrip("\r\n")
    if not line.strip() or line.startswith(COMMENT):
        return []
    sides = line.split(LANGUAGE_SEPARATOR)
    if len(sides) != 2:
        return None
    german, english = (side.split(SUBENTRY_SEPARATOR) for side in sides)
    if len(german) != len(english):
        return None
    pairs = []
    for de, en in zip(german, english):
        de, en = clean_side(de), clean_side(en)
        if is_sentence(de) and is_sentence(en):
            pairs.append((de, en))
    return pairs


@dataclass
class ExtractionStats:
    lines: int = 0  # every line read
    comments: int = 0  # comment and blank lines
    malformed: int = 0  # no single " :: ", or unequal numbers of sub-entries
    pairs: int = 0  # sentence pairs extracted (duplicates included)


def extract_pairs(lines: Iterable[str]) -> Tuple[List[Pair], ExtractionStats]:
    """All sentence pairs of a dictionary file, in file order."""
    stats = ExtractionStats()
    pairs: List[Pair] = []
    for line in lines:
        stats.lines += 1
        found = parse_line(line)
        if found is None:
            stats.malformed += 1
        elif not found and (not line.strip() or line.startswith(COMMENT)):
            stats.comments += 1
        else:
            pairs.extend(found)
    stats.pairs = len(pairs)
    return pairs, stats


# ----------------------------------------------------------------------------- split


def group_key(german: str) -> str:
    """Sentences that differ only in case or spacing share a group (and so a split)."""
    return " ".join(german.casefold().split())


def split_rank(key: str, seed: int) -> str:
    """Seeded hash that orders the groups: stable across runs, platforms and Python versions."""
    return hashlib.sha256(f"{seed}\t{key}".encode("utf-8")).hexdigest()


def split_pairs(pairs: Sequence[Pair], valid_size: int, test_size: int, seed: int) -> Dict[str, List[Pair]]:
    """Deduplicate ``pairs`` and split them by German sentence.

    Groups (all pairs of one German sentence, see ``group_key``) are visited in the order of
    their seeded hash; a group goes to test while it fits in ``test_size`` pairs, else to
    valid while it fits in ``valid_size``, else to train. Within a split the pairs keep
    their input order.
    """
    if valid_size < 0 or test_size < 0:
        raise ValueError("--valid-size and --test-size must be non-negative")
    unique = list(dict.fromkeys(pairs))  # exact duplicates dropped, first occurrence kept
    groups: Dict[str, List[int]] = defaultdict(list)
    for index, (german, _) in enumerate(unique):
        groups[group_key(german)].append(index)
    if valid_size + test_size >= len(unique):
        raise ValueError(f"--valid-size {valid_size} + --test-size {test_size} leave no training data "
                         f"from {len(unique)} distinct pairs; choose smaller held-out sets")

    split_of = assign_groups(groups, len(unique), valid_size, test_size, seed)
    return {split: [pair for pair, s in zip(unique, split_of) if s == split] for split in SPLITS}


def assign_groups(groups: Dict[str, List[int]], count: int, valid_size: int, test_size: int,
                  seed: int) -> List[str]:
    """The split of each of ``count`` items grouped by key: whole groups, in the order of their
    seeded hash (:func:`split_rank`), go to test while it fits ``test_size`` items, else to valid
    while it fits ``valid_size``, else to train."""
    split_of = ["train"] * count
    sizes = {"test": 0, "valid": 0}
    limits = {"test": test_size, "valid": valid_size}
    for key in sorted(groups, key=lambda k: split_rank(k, seed)):
        members = groups[key]
        split = next((s for s in ("test", "valid") if sizes[s] + len(members) <= limits[s]), "train")
        if split != "train":
            sizes[split] += len(members)
            for index in members:
                split_of[index] = split
    return split_of


def write_splits(splits: Dict[str, List[Pair]], output_dir: Path, source: str = "de", target: str = "en") -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for column, lang in ((0, source), (1, target)):
            with open(output_dir / f"{split}.{lang}", "w", encoding="utf-8") as f:
                f.writelines(pair[column] + "\n" for pair in pairs)


# ----------------------------------------------------------------------------- fetching


def _run(command: List[str], cwd: Path) -> bool:
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        return False
    if proc.returncode != 0:
        logger.info("%s failed: %s", " ".join(command), proc.stderr.strip().splitlines()[-1:] or "")
    return proc.returncode == 0


def fetch_from_debian(workdir: Path) -> Optional[Path]:
    """``apt-get download trans-de-en`` and unpack it; ``None`` when apt cannot provide it."""
    if not _run(["apt-get", "download", DEBIAN_PACKAGE], workdir):
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if not (is_root and _run(["apt-get", "update", "-qq"], workdir)
                and _run(["apt-get", "download", DEBIAN_PACKAGE], workdir)):
            return None
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs or not _run(["dpkg-deb", "-x", debs[-1].name, "unpacked"], workdir):
        return None
    found = workdir / "unpacked" / PACKAGE_FILE
    return found if found.is_file() else None


def fetch_from_upstream(workdir: Path, url: str = UPSTREAM_URL) -> Path:
    target = workdir / FETCHED_NAME
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(workdir / "de-en.txt.gz", "wb") as f:
            shutil.copyfileobj(response, f)
        with gzip.open(workdir / "de-en.txt.gz", "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except OSError as e:
        raise UsageError(
            f"could not fetch the Ding dictionary: apt-get download {DEBIAN_PACKAGE} failed and {url} "
            f"is unreachable ({e}). Download de-en.txt.gz from the Ding project yourself, gunzip it and "
            "pass it with --ding-file") from None
    return target


def fetch_ding(download_dir: Path, url: str = UPSTREAM_URL) -> Path:
    """The dictionary file in ``download_dir`` (fetched once: Debian first, then ``url``)."""
    download_dir = download_dir.resolve()
    target = download_dir / FETCHED_NAME
    if target.is_file():
        return target
    download_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        found = fetch_from_debian(Path(tmp))
        if found is None:
            logger.info("apt-get cannot provide %s; using the upstream file", DEBIAN_PACKAGE)
            found = fetch_from_upstream(Path(tmp), url)
        shutil.move(str(found), str(target))
    return target


def read_dictionary(path: Path) -> List[str]:
    lines = read_lines(path, "--ding-file", UsageError,
                       "; pass the uncompressed dictionary (gunzip de-en.txt.gz first)")
    if not any(LANGUAGE_SEPARATOR in line for line in lines):
        raise UsageError(f"--ding-file {path} has no 'German :: English' line; is it Ding's de-en file?")
    return lines


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-prepare-ding",
        description="Extract German-English sentence pairs from the Ding dictionary and write "
                    "train/valid/test .de/.en files (no German sentence in two splits).")
    parser.add_argument("--output-dir", "-o", type=Path, required=True, help="where train.de, train.en, ... go")
    parser.add_argument("--ding-file", type=Path, default=None,
                        help="an uncompressed Ding de-en file; default: fetch it into --download-dir")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="where the fetched dictionary is kept (default: OUTPUT_DIR/download)")
    parser.add_argument("--upstream-url", default=UPSTREAM_URL,
                        help="where to fetch de-en.txt.gz when apt cannot provide trans-de-en (default: the Ding site)")
    parser.add_argument("--valid-size", type=int, default=1000, help="validation pairs (default 1000)")
    parser.add_argument("--test-size", type=int, default=1000, help="test pairs (default 1000)")
    parser.add_argument("--max-train", type=int, default=None, metavar="N",
                        help="keep only the first N training pairs (a quick run)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split's hash (default 1)")
    return parser


def split_and_write(pairs: Sequence[Pair], stats, args, source) -> Dict[str, object]:
    """Split ``pairs`` by source sentence (``--valid-size``, ``--test-size``, ``--seed``), keep
    ``--max-train`` training pairs, write the splits and ``stats.json`` (the extraction's
    ``stats`` dataclass, the split sizes and ``source``) into ``--output-dir``; returns the
    summary. Shared by the corpus preparers."""
    splits = split_pairs(pairs, args.valid_size, args.test_size, args.seed)
    distinct = sum(map(len, splits.values()))
    if args.max_train is not None:
        splits["train"] = splits["train"][: args.max_train]
    write_splits(splits, args.output_dir)
    summary = {**asdict(stats), "distinct_pairs": distinct,
               **{f"{split}_pairs": len(splits[split]) for split in SPLITS}, "source": str(source)}
    (args.output_dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def prepare(args) -> Dict[str, object]:
    path = args.ding_file or fetch_ding(args.download_dir or args.output_dir / "download", args.upstream_url)
    pairs, stats = extract_pairs(read_dictionary(path))
    return split_and_write(pairs, stats, args, path)


def run_preparer(parser: argparse.ArgumentParser, prepare_fn, errors, log: logging.Logger,
                 argv: Optional[Sequence[str]] = None) -> None:
    """A corpus preparer's command line: parse, ``prepare_fn(args)``, log its summary; the
    ``errors`` it raises end the command with their message and exit code 1."""
    configure_logging()
    args = parser.parse_args(argv)
    try:
        summary = prepare_fn(args)
    except errors as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    log.info("%s", ", ".join(f"{k} {v}" for k, v in summary.items()))


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_preparer(build_parser(), prepare, (UsageError, ValueError), logger, argv)


if __name__ == "__main__":
    main()
