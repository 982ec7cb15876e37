"""``varattn-prepare-iwslt14``: IWSLT14 German-English as in the paper.

The steps of fairseq's ``examples/translation/prepare-iwslt14.sh`` in Python, with Moses
tokenisation from ``sacremoses`` and sentencepiece instead of subword-nmt:

1. train (``train.tags.de-en.{de,en}``): drop the lines holding ``<url>``, ``<talkid>`` or
   ``<keywords>``, remove the ``<title>``/``<description>`` tags, Moses-tokenise (escaping
   like ``tokenizer.perl``), keep pairs of 1 to 175 words whose length ratio is at most 1.5
   (``clean-corpus-n.perl -ratio 1.5 ... 1 175``), lowercase;
2. valid/test (``IWSLT14.TED*.{de,en}.xml``): the ``<seg id>`` lines without their tags,
   ``’`` -> ``'``, tokenise, lowercase;
3. valid = every 23rd line of the cleaned training data, train = the other lines; test =
   dev2010 + dev2012 + tst2010 + tst2011 + tst2012 (6,750 pairs);
4. one joint BPE model (sentencepiece, ``--vocab-size`` pieces; the paper used 14k joint
   BPE merges) on train.de + train.en, applied to every split;
5. train and valid pairs with more than ``--max-pieces`` (125) pieces on either side are
   dropped, as in the paper's preprocessing; test is kept whole.

ORIG is the unpacked ``de-en.tgz``. Output: ``{train,valid,test}.{de,en}`` (pieces, for
fairseq-preprocess), ``spm.model``, ``tok/test.{de,en}`` (tokenised and lowercased: the
reference of the paper's tokenised BLEU) and ``raw/test.{de,en}`` (untokenised: the reference
of detokenised sacreBLEU).
"""

import argparse
import json
import logging
import re
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..console import ArgumentParser, configure_logging
from ..errors import UsageError
from ..textio import read_lines
from . import subwords

logger = logging.getLogger("varattn-prepare-iwslt14")

SOURCE, TARGET = "de", "en"
PAIR = f"{SOURCE}-{TARGET}"
TRAIN_FILE = "train.tags.{pair}.{lang}"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")  # concatenated in this order
XML_FILE = "{name}.{pair}.{lang}.xml"
METADATA_TAGS = ("<url>", "<talkid>", "<keywords>")  # lines holding these are dropped
INLINE_TAGS = ("<title>", "</title>", "<description>", "</description>")  # removed, text kept
VALID_EVERY = 23  # valid = lines 23, 46, ... of the cleaned training data
MIN_WORDS, MAX_WORDS, MAX_RATIO = 1, 175, 1.5  # clean-corpus-n.perl -ratio 1.5 ... 1 175
MAX_PIECES = 125
VOCAB_SIZE = 14000
# what to fix when a file of --orig is missing
ORIG_HINT = (f"; --orig must be the unpacked de-en.tgz (with {TRAIN_FILE.format(pair=PAIR, lang=SOURCE)} "
             "and the IWSLT14.TED*.xml files)")
_SEGMENT = re.compile(r'<seg id="[0-9]*">\s*(.*?)\s*</seg>\s*$')



def clean_train_tags(lines: Sequence[str]) -> List[str]:
    """``train.tags.*`` lines -> the text lines, tags removed."""
    kept = []
    for line in lines:
        if any(tag in line for tag in METADATA_TAGS):
            continue
        for tag in INLINE_TAGS:
            line = line.replace(tag, "")
        kept.append(line)
    return kept


def xml_segments(lines: Sequence[str]) -> List[str]:
    """The text of the ``<seg id="N">`` lines of an IWSLT XML file, with ’ as '."""
    segments = []
    for line in lines:
        if "<seg id" not in line:
            continue
        match = _SEGMENT.search(line)
        text = match.group(1) if match else re.sub(r"</?seg[^>]*>", "", line).strip()
        segments.append(text.replace("’", "'"))
    return segments


def _tokenize_chunk(lines: Sequence[str], lang: str) -> List[str]:
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(line, return_str=True, escape=True) for line in lines]


def tokenize(lines: Sequence[str], lang: str, workers: int = 1) -> List[str]:
    """Moses tokenisation (``tokenizer.perl -l LANG``, with its escaping of & | < > ' " [ ])."""
    if workers <= 1 or len(lines) < 1000:
        return _tokenize_chunk(lines, lang)
    size = -(-len(lines) // workers)
    chunks = [lines[i:i + size] for i in range(0, len(lines), size)]
    with Pool(workers) as pool:
        return [line for chunk in pool.map(partial(_tokenize_chunk, lang=lang), chunks) for line in chunk]


def lowercase(lines: Sequence[str]) -> List[str]:
    return [line.lower() for line in lines]


def clean_corpus(source: Sequence[str], target: Sequence[str], min_words: int = MIN_WORDS,
                 max_words: int = MAX_WORDS, max_ratio: float = MAX_RATIO) -> Tuple[List[str], List[str]]:
    """``clean-corpus-n.perl``: normalise spaces, remove ``|``, keep pairs whose sides have
    ``min_words``..``max_words`` words and a length ratio of at most ``max_ratio``."""
    if len(source) != len(target):
        raise UsageError(f"the two sides have {len(source)} and {len(target)} lines")
    kept_source, kept_target = [], []
    for f, e in zip(source, target):
        f = " ".join(f.replace("|", "").split())
        e = " ".join(e.replace("|", "").split())
        fc, ec = len(f.split()), len(e.split())
        if not (min_words <= fc <= max_words and min_words <= ec <= max_words):
            continue
        if fc / ec > max_ratio or ec / fc > max_ratio:
            continue
        kept_source.append(f)
        kept_target.append(e)
    return kept_source, kept_target


def split_valid(lines: Sequence[str], every: int = VALID_EVERY) -> Tuple[List[str], List[str]]:
    """(train, valid): valid holds lines every, 2*every, ... (1-based, like awk's NR)."""
    train = [line for n, line in enumerate(lines, start=1) if n % every != 0]
    valid = [line for n, line in enumerate(lines, start=1) if n % every == 0]
    return train, valid


def filter_pieces(source: Sequence[str], target: Sequence[str], max_pieces: int = MAX_PIECES
                  ) -> Tuple[List[str], List[str]]:
    """Keep pairs with at most ``max_pieces`` pieces on both sides."""
    kept = [(f, e) for f, e in zip(source, target) if len(f.split()) <= max_pieces and len(e.split()) <= max_pieces]
    return [f for f, _ in kept], [e for _, e in kept]


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def prepare(orig: Path, output: Path, vocab_size: int = VOCAB_SIZE, max_pieces: int = MAX_PIECES,
            workers: int = 1, soft_vocab_limit: bool = False) -> dict:
    """Run steps 1-5; returns the number of pairs per split and step."""
    counts = {}
    # 1. training data
    train = {lang: clean_train_tags(read_lines(orig / TRAIN_FILE.format(pair=PAIR, lang=lang), "--orig file",
                                               UsageError, ORIG_HINT))
             for lang in (SOURCE, TARGET)}
    if len(train[SOURCE]) != len(train[TARGET]):
        raise UsageError(f"after removing the tag lines, {orig} has {len(train[SOURCE])} German and "
                             f"{len(train[TARGET])} English training lines; the files do not match")
    counts["train_tags"] = len(train[SOURCE])
    logger.info("tokenising %d training pairs", counts["train_tags"])
    tokens = {lang: tokenize(train[lang], lang, workers) for lang in (SOURCE, TARGET)}
    cleaned = dict(zip((SOURCE, TARGET), clean_corpus(tokens[SOURCE], tokens[TARGET])))
    counts["train_clean"] = len(cleaned[SOURCE])

    # 2. + 3. splits of tokenised, lowercased text
    tok = {}
    for lang in (SOURCE, TARGET):
        tok["train", lang], tok["valid", lang] = split_valid(lowercase(cleaned[lang]))
        raw_test = [segment for name in TEST_SETS
                    for segment in xml_segments(read_lines(orig / XML_FILE.format(name=name, pair=PAIR, lang=lang),
                                                           "--orig file", UsageError, ORIG_HINT))]
        write_lines(output / "raw" / f"test.{lang}", raw_test)
        tok["test", lang] = lowercase(tokenize(raw_test, lang, workers))
        if lang == TARGET and len(tok["test", SOURCE]) != len(raw_test):
            raise UsageError(f"the test XML files of {orig} have {len(tok['test', SOURCE])} German and "
                                 f"{len(raw_test)} English segments")
    for (split, lang), lines in tok.items():
        write_lines(output / "tok" / f"{split}.{lang}", lines)

    # 4. joint subwords
    model = subwords.train([output / "tok" / f"train.{lang}" for lang in (SOURCE, TARGET)], output / "spm",
                           vocab_size, model_type="bpe", hard_vocab_limit=not soft_vocab_limit)
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model))
    pieces = {key: [" ".join(p) for p in processor.encode(lines, out_type=str)] for key, lines in tok.items()}

    # 5. length filter on train and valid
    for split in ("train", "valid", "test"):
        source, target = pieces[split, SOURCE], pieces[split, TARGET]
        if split != "test":
            source, target = filter_pieces(source, target, max_pieces)
        write_lines(output / f"{split}.{SOURCE}", source)
        write_lines(output / f"{split}.{TARGET}", target)
        counts[split] = len(source)
    (output / "stats.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="varattn-prepare-iwslt14", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orig", type=Path, required=True, help="the unpacked de-en.tgz (a folder)")
    parser.add_argument("--output-dir", "-o", type=Path, required=True, help="where the prepared text goes")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help=f"joint BPE pieces (default {VOCAB_SIZE})")
    parser.add_argument("--max-pieces", type=int, default=MAX_PIECES,
                        help=f"drop train/valid pairs longer than this many pieces (default {MAX_PIECES})")
    parser.add_argument("--workers", type=int, default=1, help="processes for tokenisation (default 1)")
    parser.add_argument("--soft-vocab-limit", action="store_true",
                        help="allow a smaller vocabulary when the text is too small (tests)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import sacremoses  # noqa: F401
    except ImportError:
        parser.exit(1, f"{parser.prog}: error: Moses tokenisation needs sacremoses: pip install sacremoses\n")
    try:
        counts = prepare(args.orig, args.output_dir, args.vocab_size, args.max_pieces, args.workers,
                         args.soft_vocab_limit)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    logger.info("%s", ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
