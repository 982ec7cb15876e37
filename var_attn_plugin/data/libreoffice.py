"""``varattn-prepare-libreoffice``: German-English pairs from LibreOffice's German UI catalogues.

LibreOffice's user-interface strings and their German translations (MPL-2.0) ship in the
Debian package ``libreoffice-l10n-de`` as gettext catalogues
(``usr/lib/libreoffice/program/resource/de/LC_MESSAGES/*.mo``): each message's ``msgid`` is
the English string, its ``msgstr`` the German one. The package is fetched at run time
(``apt-get download``) and never stored in this repository; ``--mo-dir`` reads catalogues
you already have (every ``*.mo`` below that folder).

Cleaning, on both sides alike:

- accelerator markers go: ``~`` (``~File``), ``&`` before a letter (``&Save``) and the GTK
  mnemonic ``_`` (``Fo_rm``, ``_New sheet``); a literal `` & `` between spaces stays;
- ``%PRODUCTNAME`` becomes ``LibreOffice``; other placeholders go: ``%1``, ``%s``, ``%NAME%``,
  ``%NAME``, ``$1``, ``$(ARG1)``, ``$name$``, ``$ERR``, ``{0}``;
- markup goes: ``<ahelp hid="...">``, ``</ahelp>``, ``<font ...>``, any ``<tag ...>``;
- line breaks and tabs become spaces, spaces are collapsed.

A pair is kept when, after cleaning, both sides have at least ``MIN_WORDS`` and at most
``--max-words`` words, and the two sides differ (an untranslated string is no translation).
Pairs are deduplicated and split train/valid/test by German sentence with a seeded hash
exactly like ``varattn-prepare-ding`` (:func:`var_attn_plugin.data.ding.split_pairs`), so no
German sentence occurs in two splits and the split does not depend on the catalogues' order.
Translation direction is German -> English: ``*.de`` is the source.
"""

import argparse
import gettext
import io
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..console import ArgumentParser
from ..errors import UsageError
from .ding import run_preparer, split_and_write

logger = logging.getLogger("varattn-prepare-libreoffice")

DEBIAN_PACKAGE = "libreoffice-l10n-de"
CATALOGUE_DIR = "usr/lib/libreoffice/program/resource/de/LC_MESSAGES"  # inside the .deb
FETCHED_DIR = "mo"  # the catalogues, as kept in --download-dir
MIN_WORDS = 3
MAX_WORDS = 50
PRODUCT_NAME = "LibreOffice"
CONTEXT_SEPARATOR = "\x04"  # gettext's msgctxt EOT msgid

Pair = Tuple[str, str]  # (German, English)

_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")
_PLACEHOLDERS = re.compile(
    r"\$\([A-Za-z0-9_]+\)"           # $(ARG1)
    r"|\$[A-Za-z0-9_]+\$"             # $name$, $1$
    r"|\$[A-Za-z0-9_]+"               # $1, $ERR
    r"|%[A-Z][A-Z0-9_ ]*[A-Z0-9_]%"   # %SAVE IN SELECTION%
    r"|%[0-9]+\$?[a-z]?"              # %1, %1$s
    r"|%[a-z]\b"                      # %s, %d, %n
    r"|%[A-Z][A-Z0-9_]*"              # %NAME, %MOD1
    r"|\{[0-9]+\}")                   # {0}
_TILDE = re.compile(r"~")
_AMPERSAND = re.compile(r"&(?=\w)")  # "&Save"; "Drag & Drop" keeps its ampersand
_MNEMONIC = re.compile(r"_(?=[^\W_])")  # "Fo_rm", "_New sheet"



# ----------------------------------------------------------------------------- cleaning


def clean(text: str) -> str:
    """One UI string -> plain text (see the module docstring)."""
    text = _MARKUP.sub(" ", text)
    text = text.replace("%PRODUCTNAME", PRODUCT_NAME)
    text = _PLACEHOLDERS.sub(" ", text)
    text = _TILDE.sub("", text)
    text = _AMPERSAND.sub("", text)
    text = _MNEMONIC.sub("", text)
    return " ".join(text.split())


def keep_pair(german: str, english: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """Both sides within the word limits, and a translation (the sides differ)."""
    for side in (german, english):
        if not min_words <= len(side.split()) <= max_words:
            return False
    return german.casefold() != english.casefold()


# ----------------------------------------------------------------------------- catalogues


def read_catalogue(path: Path) -> List[Tuple[str, str]]:
    """``(msgid, msgstr)`` of one ``.mo`` file without the header entry; a message with a
    context (``msgctxt``) gives its msgid without the context, a plural message its
    singular forms."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read the catalogue {path}: {e}") from None
    try:
        catalogue = gettext.GNUTranslations(io.BytesIO(data))._catalog
    except Exception as e:  # OSError (bad magic), struct.error (truncated), UnicodeDecodeError
        raise UsageError(f"{path} is not a gettext .mo catalogue ({e})") from None
    messages = []
    for key, value in catalogue.items():
        if isinstance(key, tuple):  # plural: (msgid, n); keep the singular form only
            if key[1] != 0:
                continue
            key = key[0]
        msgid = key.split(CONTEXT_SEPARATOR, 1)[-1]
        if msgid and value:
            messages.append((msgid, value))
    return messages


@dataclass
class ExtractionStats:
    catalogues: int = 0  # .mo files read
    messages: int = 0  # translated messages in them
    too_short_or_long: int = 0  # a side outside the word limits after cleaning
    untranslated: int = 0  # both sides the same
    pairs: int = 0  # pairs kept (duplicates included)


def extract_pairs(catalogues: Iterable[Path], min_words: int = MIN_WORDS,
                  max_words: int = MAX_WORDS) -> Tuple[List[Pair], ExtractionStats]:
    """All (German, English) pairs of the catalogues, in file and message order."""
    stats = ExtractionStats()
    pairs: List[Pair] = []
    for path in catalogues:
        stats.catalogues += 1
        for english, german in read_catalogue(path):
            stats.messages += 1
            german, english = clean(german), clean(english)
            if not all(min_words <= len(side.split()) <= max_words for side in (german, english)):
                stats.too_short_or_long += 1
            elif not keep_pair(german, english, min_words, max_words):
                stats.untranslated += 1
            else:
                pairs.append((german, english))
    stats.pairs = len(pairs)
    return pairs, stats


def find_catalogues(directory: Path) -> List[Path]:
    found = sorted(Path(directory).rglob("*.mo"))
    if not found:
        raise UsageError(f"no .mo catalogue below {directory}; pass the folder that holds "
                                   f"{DEBIAN_PACKAGE}'s {CATALOGUE_DIR}")
    return found


# ----------------------------------------------------------------------------- fetching


def _run(command: List[str], cwd: Path) -> bool:
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        return False
    if proc.returncode != 0:
        logger.info("%s failed: %s", " ".join(command), proc.stderr.strip().splitlines()[-1:] or "")
    return proc.returncode == 0


def fetch_catalogues(download_dir: Path) -> Path:
    """The catalogues' folder in ``download_dir`` (``apt-get download`` once, then kept)."""
    download_dir = download_dir.resolve()
    target = download_dir / FETCHED_DIR
    if target.is_dir() and any(target.glob("*.mo")):
        return target
    download_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        work = Path(tmp)
        if not _run(["apt-get", "download", DEBIAN_PACKAGE], work):
            _run(["apt-get", "update", "-qq"], work)
            if not _run(["apt-get", "download", DEBIAN_PACKAGE], work):
                raise UsageError(
                    f"apt-get download {DEBIAN_PACKAGE} failed (is apt Debian's or Ubuntu's, and the "
                    "package list updated?); extract the package's .mo files yourself and pass "
                    "their folder with --mo-dir")
        debs = sorted(work.glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if not debs or not _run(["dpkg-deb", "-x", debs[-1].name, "unpacked"], work):
            raise UsageError(f"could not unpack {DEBIAN_PACKAGE} with dpkg-deb; pass --mo-dir")
        source = work / "unpacked" / CATALOGUE_DIR
        if not source.is_dir():
            raise UsageError(f"{DEBIAN_PACKAGE} has no {CATALOGUE_DIR}; pass --mo-dir")
        shutil.move(str(source), str(target))
    return target


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-prepare-libreoffice",
        description="Extract German-English pairs from LibreOffice's German UI catalogues and write "
                    "train/valid/test .de/.en files (no German sentence in two splits).")
    parser.add_argument("--output-dir", "-o", type=Path, required=True, help="where train.de, train.en, ... go")
    parser.add_argument("--mo-dir", type=Path, default=None,
                        help="a folder with the .mo catalogues (searched recursively); default: "
                             f"apt-get download {DEBIAN_PACKAGE} into --download-dir")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="where the fetched catalogues are kept (default: OUTPUT_DIR/download)")
    parser.add_argument("--valid-size", type=int, default=1000, help="validation pairs (default 1000)")
    parser.add_argument("--test-size", type=int, default=1000, help="test pairs (default 1000)")
    parser.add_argument("--min-words", type=int, default=MIN_WORDS, help=f"default {MIN_WORDS}")
    parser.add_argument("--max-words", type=int, default=MAX_WORDS,
                        help=f"drop pairs with a longer side (long help texts; default {MAX_WORDS})")
    parser.add_argument("--max-train", type=int, default=None, metavar="N",
                        help="keep only the first N training pairs (a quick run)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split's hash (default 1)")
    return parser


def prepare(args) -> Dict[str, object]:
    directory = args.mo_dir or fetch_catalogues(args.download_dir or args.output_dir / "download")
    pairs, stats = extract_pairs(find_catalogues(directory), args.min_words, args.max_words)
    return split_and_write(pairs, stats, args, directory)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_preparer(build_parser(), prepare, (UsageError, ValueError), logger, argv)


if __name__ == "__main__":
    main()
