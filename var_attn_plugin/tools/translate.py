"""``varattn-translate``: translate raw sentences with a trained checkpoint.

Reads one sentence per line (stdin, or ``--input FILE``), encodes each with the source
language's sentencepiece model (``--spm``), translates it with fairseq's beam search and the
task's decoding options (``--latent-decoding``, ``--kmax``, ``--gnmt-lenpen``,
``--eos-penalty``), and prints one translation per line, in input order. Translations are
decoded with ``--target-spm`` when given, else by the sentencepiece convention (pieces
joined, ``▁`` read as a space). The translations are fairseq-interactive's (its ``D-`` lines
with ``--bpe sentencepiece --sentencepiece-model SOURCE.model``); the command needs no
``--user-dir``.

A sentencepiece model of the wrong language (``--spm`` or ``--target-spm``) is refused at
start-up: nearly every piece of the data-bin's dictionary is a piece of its own model. A
line whose pieces are all ``<unk>``, or that is empty, is still translated, with a warning
on stderr naming the line. User errors exit with status 1 and a message naming the flag.

Models trained on whitespace-separated tokens (no sentencepiece) read the lines as they
are; leave out ``--spm`` for them.
"""

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, TextIO

from ..console import configure_logging, description_from_docstring
from ..errors import UsageError
from ..input_check import TRANSLATE_FIX, unreadable_inputs
from ..latent.modes import LATENT_DECODINGS
from .words import detect_scheme

logger = logging.getLogger("varattn-translate")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varattn-translate",
        description=description_from_docstring(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", nargs="?", type=Path, metavar="DATA",
                        help="binarised data directory the model was trained with (its dict.*.txt are read); "
                             "default: the directory saved in the checkpoint")
    parser.add_argument("--path", type=Path, required=True, metavar="CKPT", help="trained checkpoint (.pt)")
    parser.add_argument("--spm", type=Path, default=None, metavar="MODEL",
                        help="the source language's sentencepiece model (the one that encoded the data-bin's "
                             "source side); required when the dictionary holds sentencepiece pieces")
    parser.add_argument("--target-spm", type=Path, default=None, metavar="MODEL",
                        help="the target language's sentencepiece model, to decode translations (default: "
                             "join the pieces and read ▁ as a space)")
    parser.add_argument("--input", "-i", type=Path, default=None, metavar="FILE",
                        help="sentences to translate, one per line (default: stdin)")
    parser.add_argument("--source-lang", "-s", default=None, help="source language (default: the checkpoint's)")
    parser.add_argument("--target-lang", "-t", default=None, help="target language (default: the checkpoint's)")
    decoding = parser.add_argument_group("decoding (as in fairseq-generate and fairseq-interactive)")
    decoding.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    decoding.add_argument("--lenpen", type=float, default=1.0,
                          help="fairseq's length penalty: rank by score / |Y|^LENPEN (default 1)")
    decoding.add_argument("--max-len-a", type=float, default=0.0, help="longest output: a·|src| + b (default a=0)")
    decoding.add_argument("--max-len-b", type=int, default=200, help="longest output: a·|src| + b (default b=200)")
    decoding.add_argument("--latent-decoding", choices=("auto",) + tuple(LATENT_DECODINGS), default="auto",
                          help="exact: marginalise the alignment under the prior; kmax: over the --kmax most "
                               "probable source positions; soft: soft attention; auto (default): exact for "
                               "latent modes, soft for --attention-mode soft")
    decoding.add_argument("--kmax", type=int, default=5, help="source positions kept by --latent-decoding kmax")
    decoding.add_argument("--gnmt-lenpen", type=float, default=None, metavar="ALPHA",
                          help="rank by score / ((5+|Y|)/6)^ALPHA instead of --lenpen (the paper: 1.0)")
    decoding.add_argument("--eos-penalty", type=float, default=0.0, metavar="BETA",
                          help="subtract BETA·|src|/(n+1) from EOS at step n (the paper: 3.0)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default 32)")
    parser.add_argument("--buffer-size", type=int, default=None, metavar="N",
                        help="translate every N lines read (default: every line when typing at a terminal, "
                             "else --batch-size)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    return parser


def check_args(args) -> None:
    for flag, value, smallest in (("--beam", args.beam, 1), ("--kmax", args.kmax, 1),
                                  ("--batch-size", args.batch_size, 1), ("--buffer-size", args.buffer_size, 1)):
        if value is not None and value < smallest:
            raise UsageError(f"{flag} must be at least {smallest}, got {value}")
    if args.gnmt_lenpen is not None and args.lenpen != 1.0:
        raise UsageError(
            f"--gnmt-lenpen and --lenpen are two length penalties: pass only one (got --lenpen {args.lenpen}, "
            f"--gnmt-lenpen {args.gnmt_lenpen})")
    for flag, path in (("--path", args.path), ("--spm", args.spm), ("--target-spm", args.target_spm),
                       ("--input", args.input)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")


def load(args):
    """The hub interface for ``args``'s checkpoint, data, sentencepiece models and decoding."""
    import torch

    from ..hub import DictionaryNotFoundError, SentencepieceMismatchError, from_pretrained

    overrides = {"latent_decoding": args.latent_decoding, "kmax": args.kmax, "gnmt_lenpen": args.gnmt_lenpen,
                 "eos_penalty": args.eos_penalty}
    for name in ("source_lang", "target_lang"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.spm is not None:
        overrides.update(bpe="sentencepiece", sentencepiece_model=str(args.spm))
    try:
        hub = from_pretrained(args.path, data_name_or_path=args.data and str(args.data),
                              target_sentencepiece_model=args.target_spm and str(args.target_spm), **overrides)
    except DictionaryNotFoundError as e:
        raise UsageError(
            f"cannot load the checkpoint's dictionaries ({e.reason}): pass DATA, the binarised data directory "
            "the model was trained with (its dict.SRC.txt and dict.TGT.txt)") from None
    except SentencepieceMismatchError as e:
        flag = "--spm" if e.side == "source" else "--target-spm"
        raise UsageError(f"{flag} {e.path}: {e.reason}; pass the {e.side} language's model") from None
    except ValueError as e:  # UsageError, and the model's own checks (another data-bin's dictionaries)
        raise UsageError(str(e)) from None
    if args.spm is None and detect_scheme(hub.src_dict.symbols) == "sentencepiece":
        raise UsageError(
            "the model's source dictionary holds sentencepiece pieces: pass --spm SOURCE.model, the source "
            "language's sentencepiece model that encoded the training data")
    hub.cfg.dataset.batch_size = args.batch_size
    hub.cfg.dataset.max_tokens = None
    hub.eval()
    if not args.cpu and torch.cuda.is_available():
        hub.cuda()
    return hub


def buffers(lines: Iterable[str], size: int) -> Iterator[List[str]]:
    """Consecutive groups of ``size`` lines (the last may be shorter), newlines removed."""
    buffer: List[str] = []
    for line in lines:
        buffer.append(line.rstrip("\r\n"))
        if len(buffer) == size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def translate(hub, args, lines: Iterable[str], out: TextIO) -> int:
    """Translate ``lines`` to ``out`` buffer by buffer; returns the number of lines."""
    generation = dict(beam=args.beam, lenpen=args.lenpen, max_len_a=args.max_len_a, max_len_b=args.max_len_b)
    count = 0
    for buffer in buffers(lines, args.buffer_size):
        tokens = [hub.encode(line) for line in buffer]
        for message in unreadable_inputs(tokens, hub.src_dict, count + 1, TRANSLATE_FIX, buffer):
            logger.warning("WARNING: %s", message)
        for hypos in hub.generate(tokens, **generation):
            out.write(hub.decode(hypos[0]["tokens"]) + "\n")
        out.flush()
        count += len(buffer)
    return count


def main(argv: Optional[Sequence[str]] = None) -> None:
    configure_logging()
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # not its per-batch INFO lines
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # torch, on machines without a GPU
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        hub = load(args)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    source = sys.stdin if args.input is None else open(args.input, encoding="utf-8")
    if args.buffer_size is None:
        args.buffer_size = 1 if source.isatty() else args.batch_size
    with source:
        count = translate(hub, args, source, sys.stdout)
    logger.info("translated %d lines", count)


if __name__ == "__main__":
    main()
