"""``varattn-align``: word alignments from a trained checkpoint, teacher-forced on the reference.

For every sentence pair the model reads the reference target (``model(**net_input,
target=target)`` in evaluation mode) and gives, at each target step t, a distribution over
source positions j:

- ``prior``: p(z_t = j | x, y_<t), the attention distribution (soft attention for a
  soft-trained model);
- ``posterior``: the inference network's q(z_t = j | x, y) (variational models);
- ``exact-posterior``: the model's own posterior p(z_t = j | x, y_<=t)
  ∝ p(z_t = j | x, y_<t) · p(y_t | x, y_<t, z_t = j) (every latent model).

Links (one line per sentence pair, Pharaoh ``i-j``, source position first, 0-based, EOS and
pads excluded; positions count real tokens, whatever the padding layout):

- argmax (default): every target token is linked to its most probable source token (EOS
  is not a candidate, as in fairseq's ``--print-alignment``);
- ``--threshold P``: every pair with probability >= P.

Raw source lines that the model cannot read (every piece ``<unk>``), or mostly not (more
than half of the pieces other than a bare ▁: a script it has never seen), are named in a
warning on stderr; they are still aligned. User errors exit with status 1 and one line.

Dimensions: B batch, T target length, S source length.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..alignment import (
    DISTRIBUTIONS,
    UsageError,
    batch_alignments,
    format_links,
    iterate_batches,
    raw_dataset,
    resolve_distribution,
    split_dataset,
    to_words,
)
from ..console import (
    ArgumentParser,
    closed_pipe_ends_quietly,
    configure_logging,
    description_from_docstring,
    quiet_library_warnings,
)
from ..loading import COMMAND, load_for_inference
from ..textio import read_lines
from .words import SCHEMES, WORD_RULES, detect_scheme

logger = logging.getLogger("varattn-align")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoint and data options shared with ``varattn-plot``."""
    parser.add_argument("data", nargs="?", type=Path, metavar="DATA",
                        help="binarised data directory (fairseq-preprocess output); with raw text only "
                             "its dictionaries are read; default: the directory the checkpoint was trained on")
    parser.add_argument("--path", type=Path, required=True, metavar="CKPT", help="trained checkpoint (.pt)")
    parser.add_argument("--gen-subset", default="test", help="binarised split to align (default: test)")
    parser.add_argument("--source-lang", "-s", default=None, help="source language (default: the checkpoint's)")
    parser.add_argument("--target-lang", "-t", default=None, help="target language (default: the checkpoint's)")
    parser.add_argument("--spm", default=None, metavar="MODEL",
                        help="the source language's sentencepiece model, encodes raw source text into the "
                             "model's pieces (needs --target-spm)")
    parser.add_argument("--target-spm", default=None, metavar="MODEL",
                        help="the target language's sentencepiece model, encodes raw target text; required "
                             "with --spm (the same file as --spm when one joint model encoded both languages)")
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="auto",
                        help="posterior: the inference network q(z|x,y) (variational models); prior: "
                             "p(z|x,y_<t), i.e. the attention; exact-posterior: p(z_t|x,y_<=t) ∝ prior · "
                             "p(y_t|z_t) (latent models); auto: posterior, else exact-posterior, else prior")
    parser.add_argument("--subword-scheme", choices=("auto",) + SCHEMES, default="auto",
                        help="how pieces form words: auto = sentencepiece with --spm, else read from the "
                             "dictionaries (▁ word starts or @@ continuations; neither: tokens are words)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")


def load_model(args):
    """``(model, task)`` of ``--path`` with ``DATA``'s dictionaries (the one loader,
    :func:`~var_attn_plugin.loading.load_for_inference`), shared with ``varattn-plot``."""
    languages = {name: value for name, value in (("source_lang", args.source_lang), ("target_lang", args.target_lang))
                 if value is not None}
    models, _cfg, task = load_for_inference(args.path, args.data, languages, cpu=args.cpu, names=COMMAND)
    return models[0], task


def subword_schemes(args, task) -> Tuple[str, str]:
    if args.subword_scheme != "auto":
        return args.subword_scheme, args.subword_scheme
    if args.spm is not None:
        return "sentencepiece", "sentencepiece"
    return (detect_scheme(task.source_dictionary.symbols), detect_scheme(task.target_dictionary.symbols))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-align",
        description=description_from_docstring(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument("--source-file", type=Path, default=None,
                        help="raw source text, one sentence per line (instead of a binarised split)")
    parser.add_argument("--target-file", type=Path, default=None, help="raw target text, parallel to --source-file")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="link every pair with probability >= P (default: argmax, one link per target token)")
    parser.add_argument("--words", action="store_true",
                        help="word positions instead of subword positions (see --word-rule)")
    parser.add_argument("--word-rule", choices=WORD_RULES, default="any",
                        help="with --words: any = a word pair is linked when any of their pieces are linked "
                             "(argmax/threshold on pieces); sum = per target word, the mean over its pieces "
                             "of the probability summed over each source word's pieces, then argmax/threshold")
    parser.add_argument("--max-tokens", type=int, default=None, help="batch by tokens (default: --batch-size 32)")
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    parser.add_argument("--output", "-o", type=Path, default=None, help="write here instead of stdout")
    return parser


def align(args) -> List[str]:
    """The output lines, one per sentence pair in corpus order."""
    if (args.source_file is None) != (args.target_file is None):
        raise UsageError("raw text needs both --source-file and --target-file")
    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise UsageError(f"--threshold is a probability in (0, 1], got {args.threshold}")
    model, task = load_model(args)
    distribution = resolve_distribution(model, args.distribution)
    if args.source_file is not None:
        dataset = raw_dataset(task, read_lines(args.source_file, "--source-file", UsageError),
                              read_lines(args.target_file, "--target-file", UsageError),
                              args.spm, args.target_spm, label="--source-file line")
    else:
        if args.spm is not None:
            raise UsageError("--spm encodes raw text: pass --source-file and --target-file with it")
        dataset = split_dataset(task, args.gen_subset)
    batch_size = args.batch_size if args.batch_size or args.max_tokens else 32
    src_scheme, tgt_scheme = subword_schemes(args, task)
    eos = task.target_dictionary[task.target_dictionary.eos()]

    lines: Dict[int, str] = {}
    for sample in iterate_batches(task, model, dataset, args.max_tokens, batch_size):
        for sentence in batch_alignments(model, task, sample, distribution, args.threshold):
            links = sentence.links
            if args.words:
                links = to_words(sentence, src_scheme, tgt_scheme, args.word_rule, args.threshold, eos)
            lines[sentence.id] = format_links(links)
    logger.info("aligned %d sentence pairs with the %s", len(lines), distribution)
    return [lines[i] for i in range(len(dataset))]


def main(argv: Optional[Sequence[str]] = None) -> None:
    quiet_library_warnings()
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        lines = align(args)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    text = "".join(line + "\n" for line in lines)
    if args.output is None:
        with closed_pipe_ends_quietly():
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
