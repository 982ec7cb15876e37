"""``varattn-prepare-libreoffice-help``: German-English pairs from LibreOffice's help and UI strings.

LibreOffice's help pages (MPL-2.0) ship in the Debian packages ``libreoffice-help-de`` and
``libreoffice-help-en-us`` as HTML generated from the ``.xhp`` sources, one page per help
file and language: ``usr/share/libreoffice/help/de/text/shared/01/01010000.html`` and
``usr/share/libreoffice/help/en-US/text/shared/01/01010000.html``. Every translatable
paragraph keeps the ``.xhp`` paragraph id in both languages::

    <p id="par_id3145669" class="paragraph" dir="auto"><span class="avis">Erstellt ein neues ...</span></p>
    <h2 id="hd_id3154788" dir="auto">Neu</h2>

A German paragraph is paired with the English paragraph of the same page (its path below
``de/`` and ``en-US/``) and the same id; an id that occurs several times on one page (help
text embedded twice) is matched by occurrence. Only ``<p>`` and ``<h1>``-``<h6>`` elements
with an id count; code paragraphs (classes ``code``, ``codeintable``, ``smathcode``) do not.
The packages are fetched at run time (``apt-get download`` + ``dpkg-deb -x``) and never
stored in this repository; ``--help-dir`` reads pages you already have. The UI-string pairs
of ``varattn-prepare-libreoffice`` (:mod:`.libreoffice`, package ``libreoffice-l10n-de``,
``--mo-dir``) are added with that module's own extraction and cleaning;
``--no-ui-strings`` leaves them out. The word limits below apply to them too.

Cleaning of a help paragraph, on both sides alike: the text of the element without its
markup (entities decoded); of an inline platform switch (``<span class="switchinline">``)
only the default variant is kept, the hidden ones (``MAC``, ``WRITER``, ...) go; ``<br>``
and images become a space; ``$[officename]`` and ``%PRODUCTNAME`` become ``LibreOffice``;
soft hyphens and zero-width characters go; whitespace is collapsed. (The UI strings'
accelerator and placeholder removal is not applied: help text holds cell references like
``$A$1`` and identifiers like ``SQL_VARCHAR``.)

Sentences: both sides of a distinct paragraph pair are split into sentences
(:func:`split_sentences`: after ``.``, ``!`` or ``?`` before an upper-case letter, a digit
or an opening quote, not after an abbreviation such as ``z. B.``, ``bzw.``, ``e.g.``). When
both sides give the same number of sentences they are paired in order; otherwise the
paragraph stays one pair. A pair is kept when both sides have ``--min-words`` to
``--max-words`` words and differ (:func:`.libreoffice.keep_pair`). Exact duplicates go.

Split, by German sentence, without leaks into training:

- the *near-duplicate key* of a German sentence (:func:`near_duplicate_key`) is its casefolded
  text with digits and punctuation removed and whitespace collapsed; sentences with one key
  form a group, and a group goes to one split (visited in the order of a seeded hash, to
  test while it fits ``--test-size``, then to valid, else to train, as in
  :func:`.ding.split_pairs`);
- a training sentence whose key's word set has a Jaccard similarity of at least
  ``--near-duplicate-jaccard`` (default 0.8) with that of a valid or test sentence is a
  near-duplicate of it and is dropped from training (:func:`find_near_duplicates`).

Translation direction is German -> English: ``*.de`` is the source. ``stats.json`` holds the
counts of every step. With Debian 12's packages (LibreOffice 7.4) and the defaults: 2561 pages
a language, 64968 matched paragraphs, 39153 distinct, 35893 help pairs of 3-30 words (35284
distinct) plus 9894 UI pairs; 41578 distinct pairs, 454 training pairs dropped as
near-duplicates, 39124/1000/1000 for train/valid/test. Sentences paired in order can be
misaligned where a translator reordered them within a paragraph (rare).
"""

import argparse
import json
import logging
import math
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..console import ArgumentParser
from ..errors import UsageError
from . import libreoffice
from .ding import SPLITS, assign_groups, group_key, run_preparer, write_splits

logger = logging.getLogger("varattn-prepare-libreoffice-help")

HELP_PACKAGES = {"de": "libreoffice-help-de", "en-US": "libreoffice-help-en-us"}  # language folder -> package
SOURCE_LANGUAGE, TARGET_LANGUAGE = "de", "en-US"
HELP_ROOT = "usr/share/libreoffice/help"  # inside the .debs
FETCHED_DIR = "help"  # the two language folders, as kept in --download-dir
PAGE_GLOB = "*.html"
MIN_WORDS = 3
MAX_WORDS = 30
NEAR_DUPLICATE_JACCARD = 0.8
PRODUCT_NAME = libreoffice.PRODUCT_NAME

PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
SKIPPED_CLASSES = frozenset({"code", "codeintable", "smathcode"})  # program code, formulas
# end tags that close an open paragraph (HTML closes an unterminated <p> there)
ENCLOSING_TAGS = frozenset({"div", "td", "th", "tr", "table", "li", "ul", "ol", "body", "html"})
SPACING_TAGS = frozenset({"br", "img", "td", "th", "li", "div"})  # become a space inside a paragraph
DEFAULT_VARIANT = "default"  # id prefix of a switch's default variant

Pair = Tuple[str, str]  # (German, English)

_PRODUCT = re.compile(r"\$\[officename\]|%PRODUCTNAME")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
# a candidate sentence end: . ! ? (closing quotes/brackets) whitespace, before an upper-case
# letter, a digit or an opening quote/bracket
_BOUNDARY = re.compile(r"[.!?][\"'»«“”’)\]]*\s+(?=[\"'„“‚»«(\[]?(\w))")
ABBREVIATIONS = frozenset("""
    z.b. d.h. u.a. o.ä. u.u. v.a. s.o. s.u. z.t. i.d.r. bzw. ca. usw. ggf. evtl. inkl. exkl. vgl. bspw.
    nr. abb. max. min. sog. zzgl. mind. bzgl. etc. ff. jh. allg. std. tel. hrsg. dt. engl.
    e.g. i.e. vs. approx. no. fig. mr. mrs. dr. prof. cf. resp. incl. excl. ref. vol. ver. sec.
    """.split())
_INITIAL = re.compile(r"^(?:\w\.)+$|^[\d.]+$")  # "B.", "z.B.", "e.g.", "12." (German ordinal), "7.4."


# ----------------------------------------------------------------------------- help pages


class _HelpPageParser(HTMLParser):
    """The ``(id, text)`` of every paragraph with an id of one help page, in page order.

    A paragraph is the text between ``<p id=...>`` (or ``<hN id=...>``) and its end tag (or
    the next paragraph, or the end of the enclosing block). Inside it, a hidden ``<span>``
    whose id does not start with ``default`` (a non-default variant of a switch) is skipped
    with everything in it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: List[Tuple[str, str]] = []
        self._id: Optional[str] = None  # id of the open paragraph
        self._tag = ""
        self._parts: List[str] = []
        self._hidden_spans = 0  # nesting depth of <span> inside a skipped variant

    def _finish(self) -> None:
        if self._id is not None:
            self.paragraphs.append((self._id, "".join(self._parts)))
        self._id, self._tag, self._parts, self._hidden_spans = None, "", [], 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in PARAGRAPH_TAGS:
            self._finish()
            classes = set((attributes.get("class") or "").split())
            if attributes.get("id") and not classes & SKIPPED_CLASSES:
                self._id, self._tag = attributes["id"], tag
            return
        if self._id is None:
            return
        if self._hidden_spans:
            if tag == "span":
                self._hidden_spans += 1
        elif tag == "span" and "hidden" in attributes and not (attributes.get("id") or "").startswith(DEFAULT_VARIANT):
            self._hidden_spans = 1
        elif tag in SPACING_TAGS:
            self._parts.append(" ")

    def handle_endtag(self, tag):
        if self._id is None:
            return
        if tag == self._tag or tag in ENCLOSING_TAGS:
            self._finish()
        elif self._hidden_spans:
            if tag == "span":
                self._hidden_spans -= 1
        elif tag in SPACING_TAGS:
            self._parts.append(" ")

    def handle_data(self, data):
        if self._id is not None and not self._hidden_spans:
            self._parts.append(data)

    def close(self):
        super().close()
        self._finish()


def read_help_page(path: Path) -> List[Tuple[str, str]]:
    """``(paragraph id, raw text)`` of one help page (UTF-8 HTML), in page order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read the help page {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"the help page {path} is not UTF-8 ({e}); pass the packages' HTML help") from None
    parser = _HelpPageParser()
    parser.feed(text)
    parser.close()
    return parser.paragraphs


def numbered(paragraphs: Iterable[Tuple[str, str]]) -> Dict[Tuple[str, int], str]:
    """``(id, occurrence) -> text``: the n-th paragraph with one id on a page gets occurrence n."""
    seen: Counter = Counter()
    keyed = {}
    for ident, text in paragraphs:
        keyed[ident, seen[ident]] = text
        seen[ident] += 1
    return keyed


def resolve_help_dir(directory: Path) -> Path:
    """The folder that holds ``de/`` and ``en-US/``: ``directory`` itself, or its
    ``usr/share/libreoffice/help`` when it is the folder the packages were extracted into."""
    below = Path(directory) / HELP_ROOT
    return below if below.is_dir() else Path(directory)


def find_help_pages(help_dir: Path, language: str) -> Dict[str, Path]:
    """``page path below the language folder (posix) -> file`` of one language."""
    folder = Path(help_dir) / language
    pages = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob(PAGE_GLOB))}
    if not pages:
        raise UsageError(
            f"--help-dir {help_dir}: no {PAGE_GLOB} help page below {folder}; pass the folder that holds "
            f"de/ and en-US/ ({HELP_ROOT} of the extracted {' and '.join(HELP_PACKAGES.values())} packages), "
            "or leave --help-dir out to download them")
    return pages


# ----------------------------------------------------------------------------- cleaning


def clean_paragraph(text: str) -> str:
    """One help paragraph's raw text -> plain text (see the module docstring)."""
    text = _PRODUCT.sub(PRODUCT_NAME, text)
    text = _INVISIBLE.sub("", text)
    return " ".join(text.split())


def _ends_in_abbreviation(text: str) -> bool:
    words = text.split()
    last = words[-1].casefold().lstrip("(\"'„“") if words else ""
    if last in ABBREVIATIONS or last.endswith("..") or _INITIAL.match(last):
        return True
    # two-word abbreviations with a space: "z. B.", "d. h.", "u. a."
    return len(words) >= 2 and f"{words[-2]}{words[-1]}".casefold() in ABBREVIATIONS


def split_sentences(text: str) -> List[str]:
    """A cleaned paragraph -> its sentences (rule-based, German and English alike)."""
    sentences, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        end = boundary.end()
        following = boundary.group(1)
        if not (following.isupper() or following.isdigit()):
            continue
        piece = text[start:end].strip()
        if piece and not _ends_in_abbreviation(text[start:boundary.start() + 1]):
            sentences.append(piece)
            start = end
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def sentence_pairs(german: str, english: str) -> List[Pair]:
    """The sentence pairs of a cleaned paragraph pair: sentence by sentence when both sides
    have as many sentences, else the whole paragraph."""
    de, en = split_sentences(german), split_sentences(english)
    return list(zip(de, en)) if len(de) == len(en) else [(german, english)]


# ----------------------------------------------------------------------------- extraction


@dataclass
class HelpStats:
    help_pages_de: int = 0  # German pages (*.html)
    help_pages_en: int = 0  # English pages
    help_pages_paired: int = 0  # pages present in both languages
    paragraphs_de: int = 0  # German paragraphs with an id on the paired pages
    paragraphs_en: int = 0
    paragraphs_matched: int = 0  # same page, id and occurrence in both, both sides non-empty
    paragraphs_distinct: int = 0  # distinct (German, English) matched paragraphs after cleaning
    paragraphs_split: int = 0  # distinct paragraphs split into 2+ sentences on both sides alike
    paragraphs_unequal: int = 0  # distinct paragraphs kept whole: unequal numbers of sentences
    candidates: int = 0  # sentence (or paragraph) pairs before the filters
    too_short_or_long: int = 0  # a side outside the word limits
    untranslated: int = 0  # both sides the same
    help_pairs: int = 0  # help pairs kept (duplicates across paragraphs included)
    ui_catalogues: int = 0  # UI strings (varattn-prepare-libreoffice): .mo files read
    ui_messages: int = 0
    ui_pairs: int = 0  # UI pairs kept (duplicates included)
    pairs: int = 0  # help_pairs + ui_pairs


def match_paragraphs(help_dir: Path, stats: HelpStats) -> List[Pair]:
    """The cleaned (German, English) paragraphs matched by page and id, distinct, in page
    order; fills the page and paragraph counts of ``stats``."""
    german_pages = find_help_pages(help_dir, SOURCE_LANGUAGE)
    english_pages = find_help_pages(help_dir, TARGET_LANGUAGE)
    stats.help_pages_de, stats.help_pages_en = len(german_pages), len(english_pages)
    distinct: Dict[Pair, None] = {}
    for page, german_path in german_pages.items():
        if page not in english_pages:
            continue
        stats.help_pages_paired += 1
        german = numbered(read_help_page(german_path))
        english = numbered(read_help_page(english_pages[page]))
        stats.paragraphs_de += len(german)
        stats.paragraphs_en += len(english)
        for key, text in german.items():
            pair = (clean_paragraph(text), clean_paragraph(english.get(key, "")))
            if all(pair):
                stats.paragraphs_matched += 1
                distinct[pair] = None
    stats.paragraphs_distinct = len(distinct)
    return list(distinct)


def extract_help_pairs(help_dir: Path, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS,
                       stats: Optional[HelpStats] = None) -> Tuple[List[Pair], HelpStats]:
    """The help's sentence pairs within the word limits, in page order (a sentence pair that
    occurs in several paragraphs is repeated)."""
    stats = stats or HelpStats()
    pairs: List[Pair] = []
    for german, english in match_paragraphs(help_dir, stats):
        found = sentence_pairs(german, english)
        if len(found) > 1:
            stats.paragraphs_split += 1
        elif len(split_sentences(german)) != len(split_sentences(english)):
            stats.paragraphs_unequal += 1
        for de, en in found:
            stats.candidates += 1
            if not all(min_words <= len(side.split()) <= max_words for side in (de, en)):
                stats.too_short_or_long += 1
            elif not libreoffice.keep_pair(de, en, min_words, max_words):
                stats.untranslated += 1
            else:
                pairs.append((de, en))
    stats.help_pairs = len(pairs)
    return pairs, stats


def add_ui_pairs(pairs: List[Pair], stats: HelpStats, mo_dir: Path, min_words: int, max_words: int) -> List[Pair]:
    """``pairs`` followed by the UI strings' pairs of the catalogues below ``mo_dir``."""
    ui, ui_stats = libreoffice.extract_pairs(libreoffice.find_catalogues(mo_dir), min_words, max_words)
    stats.ui_catalogues, stats.ui_messages, stats.ui_pairs = ui_stats.catalogues, ui_stats.messages, ui_stats.pairs
    return pairs + ui


# ----------------------------------------------------------------------------- split


_NOT_A_LETTER = re.compile(r"[\W\d_]+")


def near_duplicate_key(german: str) -> str:
    """Casefolded, digits and punctuation removed, whitespace collapsed:
    ``"Wählen Sie Format - Zeile 2."`` -> ``"wählen sie format zeile"``. A sentence without
    letters keeps its :func:`.ding.group_key`, so such sentences do not all form one group."""
    key = " ".join(_NOT_A_LETTER.sub(" ", german.casefold()).split())
    return key or group_key(german)


def jaccard(a: Set[str], b: Set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _prefix_length(size: int, threshold: float) -> int:
    """How many of a set's rarest tokens two sets with Jaccard >= ``threshold`` must share
    one of (prefix filtering)."""
    return size - math.ceil(threshold * size - 1e-9) + 1


def find_near_duplicates(held_out: Sequence[str], candidates: Sequence[str],
                         threshold: float = NEAR_DUPLICATE_JACCARD) -> List[bool]:
    """For each of ``candidates``: is the word set of its :func:`near_duplicate_key` at least
    ``threshold`` Jaccard-similar to that of one of ``held_out``?

    Exact, and fast through prefix filtering: with the words of every set ordered rarest
    first, two sets of Jaccard >= t share a word among the first ``n - ceil(t n) + 1`` words
    of each (n the set's size), so only held-out sets found through a candidate's prefix
    words are compared, and only when their sizes allow it (``t |A| <= |B| <= |A| / t``).
    """
    if not 0 < threshold <= 1:
        raise UsageError(f"--near-duplicate-jaccard {threshold}: choose a similarity in (0, 1]")
    held_sets = [set(near_duplicate_key(s).split()) for s in held_out]
    candidate_sets = [set(near_duplicate_key(s).split()) for s in candidates]
    frequency = Counter(word for words in held_sets + candidate_sets for word in words)

    def prefix(words: Set[str]) -> List[str]:
        ordered = sorted(words, key=lambda w: (frequency[w], w))
        return ordered[: _prefix_length(len(ordered), threshold)]

    index: Dict[str, List[int]] = defaultdict(list)
    for number, words in enumerate(held_sets):
        for word in prefix(words):
            index[word].append(number)
    found = []
    for words in candidate_sets:
        size = len(words)
        seen: Set[int] = set()
        hit = False
        for word in prefix(words):
            for number in index.get(word, ()):
                if number in seen:
                    continue
                seen.add(number)
                other = held_sets[number]
                if threshold * size <= len(other) * (1 + 1e-9) and threshold * len(other) <= size * (1 + 1e-9) \
                        and jaccard(words, other) >= threshold - 1e-12:
                    hit = True
                    break
            if hit:
                break
        found.append(hit)
    return found


@dataclass
class SplitStats:
    distinct_pairs: int = 0  # after removing exact duplicates
    near_duplicate_groups: int = 0  # keys shared by two or more distinct German sentences
    train_dropped_near_duplicates: int = 0  # training pairs near-duplicate to a valid/test sentence
    train_pairs: int = 0
    valid_pairs: int = 0
    test_pairs: int = 0


def split_pairs(pairs: Sequence[Pair], valid_size: int, test_size: int, seed: int,
                threshold: float = NEAR_DUPLICATE_JACCARD) -> Tuple[Dict[str, List[Pair]], SplitStats]:
    """Deduplicate ``pairs`` and split them by German sentence without near-duplicate leaks.

    Groups (all pairs whose German shares a :func:`near_duplicate_key`) are visited in the
    order of their seeded hash (:func:`.ding.split_rank`); a group goes to test while it fits
    in ``test_size`` pairs, else to valid while it fits in ``valid_size``, else to train.
    Training pairs whose German is a near-duplicate of a valid or test German sentence
    (:func:`find_near_duplicates`) are then dropped. Within a split the pairs keep their
    input order."""
    if valid_size < 0 or test_size < 0:
        raise UsageError("--valid-size and --test-size must be non-negative")
    unique = list(dict.fromkeys(pairs))
    if valid_size + test_size >= len(unique):
        raise UsageError(f"--valid-size {valid_size} + --test-size {test_size} leave no training data "
                         f"from {len(unique)} distinct pairs; choose smaller held-out sets")
    groups: Dict[str, List[int]] = defaultdict(list)
    for index, (german, _) in enumerate(unique):
        groups[near_duplicate_key(german)].append(index)
    stats = SplitStats(distinct_pairs=len(unique))
    stats.near_duplicate_groups = sum(len({unique[i][0] for i in members}) > 1 for members in groups.values())

    split_of = assign_groups(groups, len(unique), valid_size, test_size, seed)
    splits = {split: [pair for pair, s in zip(unique, split_of) if s == split] for split in SPLITS}

    held_out = [german for split in ("valid", "test") for german, _ in splits[split]]
    leaks = find_near_duplicates(held_out, [german for german, _ in splits["train"]], threshold)
    stats.train_dropped_near_duplicates = sum(leaks)
    splits["train"] = [pair for pair, leak in zip(splits["train"], leaks) if not leak]
    for split in SPLITS:
        setattr(stats, f"{split}_pairs", len(splits[split]))
    return splits, stats


# ----------------------------------------------------------------------------- fetching


def fetch_help(download_dir: Path) -> Path:
    """The folder with ``de/`` and ``en-US/`` in ``download_dir`` (both packages fetched with
    ``apt-get download`` and unpacked once, then kept)."""
    download_dir = Path(download_dir).resolve()
    target = download_dir / FETCHED_DIR
    if all(any((target / language).rglob(PAGE_GLOB)) for language in HELP_PACKAGES):
        return target
    download_dir.mkdir(parents=True, exist_ok=True)
    run = libreoffice._run  # the shared apt-get/dpkg-deb runner
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        work = Path(tmp)
        packages = list(HELP_PACKAGES.values())
        if not run(["apt-get", "download", *packages], work):
            run(["apt-get", "update", "-qq"], work)
            if not run(["apt-get", "download", *packages], work):
                raise UsageError(
                    f"apt-get download {' '.join(packages)} failed (is apt Debian's or Ubuntu's, and the "
                    "package list updated?); extract the packages yourself (dpkg-deb -x) and pass "
                    f"their {HELP_ROOT} with --help-dir")
        for language, package in HELP_PACKAGES.items():
            debs = sorted(work.glob(f"{package}_*.deb"))
            if not debs or not run(["dpkg-deb", "-x", debs[-1].name, "unpacked"], work):
                raise UsageError(f"could not unpack {package} with dpkg-deb; pass --help-dir")
            if not (work / "unpacked" / HELP_ROOT / language).is_dir():
                raise UsageError(f"{package} has no {HELP_ROOT}/{language}; pass --help-dir")
        target.mkdir(exist_ok=True)
        for language in HELP_PACKAGES:
            if (target / language).exists():
                shutil.rmtree(target / language)
            shutil.move(str(work / "unpacked" / HELP_ROOT / language), str(target / language))
    return target


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-prepare-libreoffice-help",
        description="Extract German-English pairs from LibreOffice's help pages and UI strings and write "
                    "train/valid/test .de/.en files (no valid/test German sentence, nor a near-duplicate "
                    "of one, in training).")
    parser.add_argument("--output-dir", "-o", type=Path, required=True, help="where train.de, train.en, ... go")
    parser.add_argument("--help-dir", type=Path, default=None,
                        help=f"a folder with the help's de/ and en-US/ (or the folder the packages were "
                             f"extracted into, holding {HELP_ROOT}); default: apt-get download "
                             f"{' '.join(HELP_PACKAGES.values())} into --download-dir")
    parser.add_argument("--mo-dir", type=Path, default=None,
                        help="a folder with the German UI .mo catalogues (searched recursively); default: "
                             f"apt-get download {libreoffice.DEBIAN_PACKAGE} into --download-dir")
    parser.add_argument("--no-ui-strings", action="store_true", help="the help pages only, no UI strings")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="where the fetched packages are kept (default: OUTPUT_DIR/download)")
    parser.add_argument("--valid-size", type=int, default=1000, help="validation pairs (default 1000)")
    parser.add_argument("--test-size", type=int, default=1000, help="test pairs (default 1000)")
    parser.add_argument("--min-words", type=int, default=MIN_WORDS, help=f"default {MIN_WORDS}")
    parser.add_argument("--max-words", type=int, default=MAX_WORDS,
                        help=f"drop pairs with a longer side (default {MAX_WORDS})")
    parser.add_argument("--near-duplicate-jaccard", type=float, default=NEAR_DUPLICATE_JACCARD,
                        help="drop a training pair whose German word set is at least this Jaccard-similar to a "
                             f"valid or test German sentence's (default {NEAR_DUPLICATE_JACCARD}; 1 drops only "
                             "equal word sets)")
    parser.add_argument("--max-train", type=int, default=None, metavar="N",
                        help="keep only the first N training pairs (a quick run)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split's hash (default 1)")
    return parser


def prepare(args) -> Dict[str, object]:
    download_dir = args.download_dir or args.output_dir / "download"
    help_dir = resolve_help_dir(args.help_dir) if args.help_dir else fetch_help(download_dir)
    pairs, stats = extract_help_pairs(help_dir, args.min_words, args.max_words)
    sources = [str(help_dir)]
    if not args.no_ui_strings:
        mo_dir = args.mo_dir or libreoffice.fetch_catalogues(download_dir)
        pairs = add_ui_pairs(pairs, stats, mo_dir, args.min_words, args.max_words)
        sources.append(str(mo_dir))
    stats.pairs = len(pairs)
    splits, split_stats = split_pairs(pairs, args.valid_size, args.test_size, args.seed, args.near_duplicate_jaccard)
    if args.max_train is not None:
        splits["train"] = splits["train"][: args.max_train]
        split_stats.train_pairs = len(splits["train"])
    write_splits(splits, args.output_dir)
    summary = {**asdict(stats), **asdict(split_stats), "source": " + ".join(sources)}
    (args.output_dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_preparer(build_parser(), prepare, (UsageError, ValueError), logger, argv)


if __name__ == "__main__":
    main()
