"""A corpus as a job: raw text (the plugin's preparers), sentencepiece pieces, a data-bin.

``CORPUS/data`` holds the raw ``{train,valid,test}.{de,en}`` and ``stats.json``;
``CORPUS/spm`` the sentencepiece models and pieces, plus ``valid_small``, the first
``valid_small`` pairs of valid (a cheap validation set for frequent curves); ``CORPUS/data-bin``
the binarised splits ``train``, ``valid``, ``valid1`` (= valid_small) and ``test``.
"""

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from .runner import Job, Step, tool

PREPARERS = {"libreoffice": "varattn-prepare-libreoffice", "ding": "varattn-prepare-ding",
             "lohelp": "varattn-prepare-libreoffice-help"}
# the flag of each preparer that reads a copy you already have instead of fetching the package
SOURCE_FLAGS = {"libreoffice": "--mo-dir", "ding": "--ding-file"}


@dataclass(frozen=True)
class Corpus(Job):
    name: str  # a key of PREPARERS
    vocab_size: int = 1000  # sentencepiece pieces per language
    valid_size: int = 1000
    test_size: int = 1000
    valid_small: int = 300
    split_seed: int = 1
    source: Optional[str] = None  # a local copy of the raw data (SOURCE_FLAGS); None: fetched
    max_train: Optional[int] = None  # keep at most this many training pairs
    folder_name: Optional[str] = None  # the folder under the root (default: the corpus's name)

    def folder(self, root: Path) -> Path:
        return Path(root) / (self.folder_name or self.name)

    def data_bin(self, root: Path) -> Path:
        return self.folder(root) / "data-bin"

    def config(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("source", "folder_name")}

    def steps(self, root: Path) -> List[Step]:
        if self.name not in PREPARERS:
            raise ValueError(f"unknown corpus {self.name!r}: one of {', '.join(PREPARERS)}")
        d = self.folder(root)
        spm = d / "spm"
        return [
            Step("data", [tool(PREPARERS[self.name]), "--output-dir", str(d / "data"),
                          "--valid-size", str(self.valid_size), "--test-size", str(self.test_size),
                          "--seed", str(self.split_seed),
                          *([SOURCE_FLAGS[self.name], self.source] if self.source else []),
                          *(["--max-train", str(self.max_train)] if self.max_train else [])], "prepare.log"),
            Step("subwords", [sys.executable, "-m", "varattn_experiments.corpora", "subwords", str(d / "data"),
                              str(spm), str(self.vocab_size), str(self.valid_small)], "prepare.log"),
            Step("binarise", [tool("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
                              "--trainpref", str(spm / "train"),
                              "--validpref", f"{spm / 'valid'},{spm / 'valid_small'}",
                              "--testpref", str(spm / "test"), "--destdir", str(d / "data-bin"), "--workers", "1"],
                 "prepare.log"),
        ]


def subwords(data: Path, spm: Path, vocab_size: int, valid_small: int) -> None:
    """A unigram sentencepiece model per language, trained on train; every split in pieces."""
    from var_attn_plugin.data import subwords as sw

    spm.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        model = sw.train([data / f"train.{lang}"], spm / f"spm.{lang}", vocab_size, hard_vocab_limit=False)
        for split in ("train", "valid", "test"):
            sw.encode(model, data / f"{split}.{lang}", spm / f"{split}.{lang}")
        lines = (spm / f"valid.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
        (spm / f"valid_small.{lang}").write_text("".join(lines[:valid_small]), encoding="utf-8")
    write_uniform_entropy(spm / "valid_small.de", spm / "valid_small.en", spm / "valid_small.uniform.json")


def uniform_entropy(source: Path, target: Path) -> dict:
    """The entropy (nats) of a uniform alignment, averaged over target tokens (EOS included) as the
    criterion averages the prior's: over every source piece and the EOS, and over the pieces only."""
    total = {"with_eos": 0.0, "without_eos": 0.0}
    tokens = 0
    for src, tgt in zip(source.read_text(encoding="utf-8").splitlines(),
                        target.read_text(encoding="utf-8").splitlines()):
        n_src, n_tgt = len(src.split()), len(tgt.split()) + 1  # + EOS
        total["with_eos"] += n_tgt * math.log(n_src + 1)
        total["without_eos"] += n_tgt * math.log(max(n_src, 1))
        tokens += n_tgt
    return {key: value / tokens for key, value in total.items()}


def write_uniform_entropy(source: Path, target: Path, output: Path) -> None:
    output.write_text(json.dumps(uniform_entropy(source, target), indent=1) + "\n", encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="corpus steps run by the experiment runner")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("subwords")
    p.add_argument("data", type=Path)
    p.add_argument("spm", type=Path)
    p.add_argument("vocab_size", type=int)
    p.add_argument("valid_small", type=int)
    args = parser.parse_args(argv)
    subwords(args.data, args.spm, args.vocab_size, args.valid_small)


if __name__ == "__main__":
    main()
