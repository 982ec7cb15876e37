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
line whose pieces are all ``<unk>``, mostly ``<unk>`` (more than half of its pieces other
than a bare ▁: a script the model has never seen), of whitespace only, or empty is still
translated, with a warning on stderr naming the line.

A bad line costs only itself: a line that is not UTF-8 text, or that has more pieces than
the model's source positions (``--max-source-positions`` of the checkpoint, EOS included),
is reported on stderr with its line number and answered with an empty output line, so
output line N is still the translation of input line N; the other lines are translated.
``--strict`` makes any bad line a user error instead, before anything is translated.
User errors exit with status 1 and one line naming the flag (or the line). Output ends
quietly when its reader stops reading (``varattn-translate … | head -1``).

Models trained on whitespace-separated tokens (no sentencepiece) read the lines as they
are; leave out ``--spm`` for them.
"""

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple

from ..console import (
    ArgumentParser,
    closed_pipe_ends_quietly,
    configure_logging,
    description_from_docstring,
    quiet_library_warnings,
)
from ..decoding import DECODING_CHOICES, DecodingRequest, resolve_decoding_options
from ..errors import UsageError
from ..input_check import TRANSLATE_FIX, quote, unreadable_inputs
from .words import detect_scheme

logger = logging.getLogger("varattn-translate")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    decoding.add_argument("--latent-decoding", choices=DECODING_CHOICES, default="auto",
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
    parser.add_argument("--strict", action="store_true",
                        help="a bad input line (not UTF-8, longer than the model's source positions) is an "
                             "error before anything is translated (default: it gets an empty output line and "
                             "a warning naming it)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    return parser


def check_args(args) -> None:
    for flag, value, smallest in (("--beam", args.beam, 1), ("--batch-size", args.batch_size, 1),
                                  ("--buffer-size", args.buffer_size, 1)):
        if value is not None and value < smallest:
            raise UsageError(f"{flag} must be at least {smallest}, got {value}")
    # the decoding options, before the checkpoint is loaded (checked against it when it decodes)
    resolve_decoding_options(DecodingRequest.of(args, lenpen=args.lenpen))
    for flag, path in (("--path", args.path), ("--spm", args.spm), ("--target-spm", args.target_spm),
                       ("--input", args.input)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")


def load(args):
    """The hub interface for ``args``'s checkpoint, data, sentencepiece models and decoding
    (:func:`~var_attn_plugin.hub.load_hub`, user errors naming this command's flags)."""
    import torch

    from ..hub import load_hub
    from ..loading import COMMAND

    overrides = {"latent_decoding": args.latent_decoding, "kmax": args.kmax, "gnmt_lenpen": args.gnmt_lenpen,
                 "eos_penalty": args.eos_penalty}
    for name in ("source_lang", "target_lang"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.spm is not None:
        overrides.update(bpe="sentencepiece", sentencepiece_model=str(args.spm))
    try:
        hub = load_hub([str(args.path)], args.data, args.target_spm and str(args.target_spm), overrides, COMMAND)
    except UsageError:
        raise
    except ValueError as e:  # fairseq's own checks of the options: one line too
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


@dataclass
class InputLine:
    """One line of input: its number (from 1), its text (None when it is not UTF-8), why it
    cannot be translated (None when it can) and, once encoded, its ``(L,)`` token ids."""

    number: int
    text: Optional[str]
    problem: Optional[str] = None
    tokens: Optional[object] = None


def decoded_lines(source: BinaryIO) -> Iterator[InputLine]:
    """The lines of ``source`` (bytes), decoded one by one: a line that is not UTF-8 is
    reported as such and does not stop the lines after it."""
    for number, raw in enumerate(source, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            yield InputLine(number, raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            yield InputLine(number, None, f"is not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {e.start + 1} "
                                          f"of the line cannot be decoded: {e.reason})")


def max_source_tokens(hub) -> Optional[int]:
    """The most tokens (EOS included) a source may have: the task's and the model's
    ``--max-source-positions``, whichever is smaller (None: no limit)."""
    limit = hub.max_positions
    return limit[0] if isinstance(limit, (tuple, list)) else limit


def encode(hub, lines: Sequence[InputLine]) -> None:
    """Encode the decodable lines that are not encoded yet; mark those longer than the model's
    source positions."""
    limit = max_source_tokens(hub)
    for line in lines:
        if line.problem is not None or line.tokens is not None:
            continue
        line.tokens = hub.encode(line.text)
        if limit is not None and line.tokens.numel() > limit:
            line.problem = (f"{quote(line.text)} is too long: {line.tokens.numel()} pieces with EOS, more than the "
                            f"model's {limit} source positions (--max-source-positions of the checkpoint); split "
                            "it into shorter sentences")


def refuse_bad_lines(hub, lines: List[InputLine]) -> List[InputLine]:
    """``--strict``: every line encoded, and a user error naming the first bad line (and how
    many there are) before anything is translated."""
    encode(hub, lines)
    bad = [line for line in lines if line.problem is not None]
    if bad:
        more = "" if len(bad) == 1 else (
            f" ({len(bad)} bad lines in all: {', '.join(str(line.number) for line in bad[:10])}"
            f"{', …' if len(bad) > 10 else ''})")
        raise UsageError(f"input line {bad[0].number} {bad[0].problem}{more}; nothing was translated (--strict); "
                         "without --strict each bad line gets an empty output line")
    return lines


def buffers(lines: Iterable, size: int) -> Iterator[List]:
    """Consecutive groups of ``size`` lines (the last may be shorter)."""
    buffer: List = []
    for line in lines:
        buffer.append(line)
        if len(buffer) == size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def translate(hub, args, lines: Iterable[InputLine], out: TextIO) -> Tuple[int, int]:
    """Translate ``lines`` to ``out`` buffer by buffer, one output line per input line (an
    empty one for a bad line); returns the number of lines and of bad lines."""
    generation = dict(beam=args.beam, lenpen=args.lenpen, max_len_a=args.max_len_a, max_len_b=args.max_len_b)
    count = bad = 0
    for buffer in buffers(lines, args.buffer_size):
        encode(hub, buffer)
        good = []
        for line in buffer:
            if line.problem is not None:
                logger.warning("WARNING: input line %d %s: it gets an empty output line", line.number, line.problem)
                bad += 1
                continue
            good.append(line)
            for message in unreadable_inputs([line.tokens], hub.src_dict, line.number, TRANSLATE_FIX, [line.text]):
                logger.warning("WARNING: %s", message)
        translations = iter(hub.generate([line.tokens for line in good], **generation) if good else [])
        for line in buffer:
            out.write(("" if line.problem is not None else hub.decode(next(translations)[0]["tokens"])) + "\n")
        out.flush()
        count += len(buffer)
    return count, bad


def main(argv: Optional[Sequence[str]] = None) -> None:
    quiet_library_warnings()
    configure_logging()
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # not its per-batch INFO lines
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        hub = load(args)
        source = sys.stdin.buffer if args.input is None else open(args.input, "rb")
        if args.buffer_size is None:
            args.buffer_size = 1 if source.isatty() else args.batch_size
        with source, closed_pipe_ends_quietly():
            lines: Iterable[InputLine] = decoded_lines(source)
            if args.strict:
                lines = refuse_bad_lines(hub, list(lines))
            count, bad = translate(hub, args, lines, sys.stdout)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if bad:
        logger.info("translated %d lines; %d bad lines (named above) got an empty output line", count - bad, bad)
    else:
        logger.info("translated %d lines", count)


if __name__ == "__main__":
    main()
