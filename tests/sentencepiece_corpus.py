"""The synthetic reversal corpus in sentencepiece pieces, and tiny models trained on it, for
the tests of raw-text translation and alignment (``varattn-translate``, the hub interface).

One sentencepiece model per language (``spm.src.model``, ``spm.tgt.model``), learnt on the
training text the way the demo learns its models (``var_attn_plugin.data.subwords``), and
one of another language's text (``spm.other.model``), the wrong model to pass.
"""

from pathlib import Path
from types import SimpleNamespace

from helpers import fairseq_cli, train_args, write_synthetic_corpus

from var_attn_plugin.data.subwords import encode, train

SPM_VOCAB = 40  # an upper bound: the corpus has fewer distinct pieces (soft vocabulary limit)


def build_corpus(root: Path) -> SimpleNamespace:
    """Raw text, sentencepiece models, pieces and a data-bin (train and valid) under ``root``."""
    raw = write_synthetic_corpus(root / "raw")
    models = {}
    for side in ("src", "tgt"):
        models[side] = train([raw / f"train.{side}"], root / "spm" / f"spm.{side}", SPM_VOCAB,
                             hard_vocab_limit=False)
        for split in ("train", "valid", "test"):
            encode(models[side], raw / f"{split}.{side}", root / "pieces" / f"{split}.{side}")
    other = root / "other-language.txt"  # a sentencepiece model of some other language's text
    other.write_text("der Hund und die Katze\nein Haus ist nicht ein Garten\nwir sehen das Meer\n")
    models["other"] = train([other], root / "spm" / "spm.other", SPM_VOCAB, hard_vocab_limit=False)
    fairseq_cli("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
                "--trainpref", root / "pieces" / "train", "--validpref", root / "pieces" / "valid",
                "--destdir", root / "data-bin", "--workers", "1")
    return SimpleNamespace(root=root, raw=raw, data=root / "data-bin", src_spm=models["src"], tgt_spm=models["tgt"],
                           other_spm=models["other"])


def train_model(corpus: SimpleNamespace, save_dir: Path, mode: str, updates: int, arch: str = "lstm") -> Path:
    """A tiny model of ``mode`` and architecture ``arch`` trained through ``fairseq-train``;
    returns checkpoint_last.pt."""
    fairseq_cli("fairseq-train", *train_args(corpus.data, save_dir, mode, "--max-update", updates, "--dropout", "0",
                                             arch=arch))
    return save_dir / "checkpoint_last.pt"


def raw_test_pairs(corpus: SimpleNamespace, count: int):
    """The first ``count`` raw test sentence pairs (source, target)."""
    sources = (corpus.raw / "test.src").read_text().splitlines()[:count]
    targets = (corpus.raw / "test.tgt").read_text().splitlines()[:count]
    return sources, targets
