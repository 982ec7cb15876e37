"""Sentencepiece subwords for the demo and the recipes: ``python -m var_attn_plugin.data.subwords``.

``train``  learns one model from one or more text files (several files: a joint model);
``encode`` writes each input line as space-separated pieces, the format fairseq-preprocess
reads; ``fairseq-generate --remove-bpe sentencepiece`` undoes it.

Models use the ``identity`` normalisation and cover every character of the training text,
so decoding the pieces of a training-domain sentence gives the sentence back exactly and
references need no normalisation of their own.
"""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..console import ArgumentParser

MODEL_TYPES = ("unigram", "bpe")


def train(inputs: Sequence[Path], model_prefix: Path, vocab_size: int, model_type: str = "unigram",
          hard_vocab_limit: bool = True) -> Path:
    """Learn a sentencepiece model; returns ``MODEL_PREFIX.model``. With
    ``hard_vocab_limit=False`` the vocabulary may come out smaller on a tiny corpus."""
    import sentencepiece as spm

    missing = [str(p) for p in inputs if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such training text: {', '.join(missing)}")
    Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, inputs)), model_prefix=str(model_prefix), vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, normalization_rule_name="identity",
        hard_vocab_limit=hard_vocab_limit, minloglevel=2,
    )
    return Path(f"{model_prefix}.model")


def encode(model: Path, source: Path, destination: Path) -> int:
    """Encode ``source`` line by line into pieces; returns the number of lines."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model))
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    pieces = processor.encode(lines, out_type=str)
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    with open(destination, "w", encoding="utf-8") as f:
        f.writelines(" ".join(p) + "\n" for p in pieces)
    return len(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m var_attn_plugin.data.subwords",
                                     description="Train sentencepiece models and encode text for fairseq.")
    commands = parser.add_subparsers(dest="command", required=True)
    learn = commands.add_parser("train", help="learn a model from text files (several: a joint model)")
    learn.add_argument("inputs", nargs="+", type=Path, help="training text, one sentence per line")
    learn.add_argument("--model-prefix", type=Path, required=True, help="writes PREFIX.model and PREFIX.vocab")
    learn.add_argument("--vocab-size", type=int, required=True, help="number of pieces")
    learn.add_argument("--model-type", choices=MODEL_TYPES, default="unigram", help="default: unigram")
    learn.add_argument("--soft-vocab-limit", action="store_true",
                       help="allow a smaller vocabulary when the text is too small for --vocab-size")
    apply = commands.add_parser("encode", help="encode text files into space-separated pieces")
    apply.add_argument("--model", type=Path, required=True, help="a .model file from 'train'")
    apply.add_argument("pairs", nargs="+", metavar="INPUT:OUTPUT", help="files to encode, INPUT:OUTPUT each")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            train(args.inputs, args.model_prefix, args.vocab_size, args.model_type, not args.soft_vocab_limit)
        else:
            for pair in args.pairs:
                source, sep, destination = pair.partition(":")
                if not sep or not destination:
                    parser.error(f"expected INPUT:OUTPUT, got {pair!r}")
                encode(args.model, Path(source), Path(destination))
    except (FileNotFoundError, RuntimeError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
