"""Retrieval baseline: translate a sentence with the English of its most similar training sentence.

Every training source sentence and every test sentence becomes a TF-IDF vector (fitted on the
training sources, L2-normalised, sublinear term frequency); a test sentence's translation is
the target side of the training sentence with the highest cosine similarity (the first of
them on a tie; an empty line when no feature is shared). Features (``--features``):

- ``char`` (default): character 2- to 4-grams inside word boundaries (``char_wb``), robust
  to German compounds and inflection;
- ``word``: lower-cased word unigrams and bigrams.

A test sentence that occurs in training therefore gets its training translation exactly.
The baseline measures how much of a test set is answered by copying from training: on a
corpus of templated sentences (software help and UI strings) it is a strong reference point
for a neural model.

Command line::

    python -m varattn_experiments.retrieval --train-src train.de --train-tgt train.en \\
        --test-src test.de [--test-ref test.en] [--output hyp.en]

The translations go to ``--output`` (one per line), else to stdout when there is no
``--test-ref``; with ``--test-ref`` it prints the detokenised corpus BLEU (sacreBLEU's
defaults, 13a tokenisation) as one JSON line ``{"bleu": 12.3, "sentences": 1000}``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from var_attn_plugin.errors import UsageError
from var_attn_plugin.textio import read_lines

FEATURES = {  # --features -> TfidfVectorizer arguments
    "char": dict(analyzer="char_wb", ngram_range=(2, 4), lowercase=True),
    "word": dict(analyzer="word", ngram_range=(1, 2), lowercase=True, token_pattern=r"(?u)\b\w+\b"),
}
BATCH = 256  # test sentences scored at a time (a BATCH x training-size similarity block)


class NearestNeighbourTranslator:
    """The training pairs as a TF-IDF index over their source sides.

    ``sources`` and ``targets``: the training sentences, one string each, aligned by position."""

    def __init__(self, sources: Sequence[str], targets: Sequence[str], features: str = "char"):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(sources) != len(targets):
            raise UsageError(f"--train-src has {len(sources)} lines but --train-tgt {len(targets)}; "
                             "pass the two sides of one parallel corpus")
        if not sources:
            raise UsageError("--train-src is empty; pass a training corpus with at least one sentence")
        if features not in FEATURES:
            raise UsageError(f"--features {features}: choose one of {', '.join(FEATURES)}")
        self.targets = list(targets)
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, **FEATURES[features])
        self.index = self.vectorizer.fit_transform(sources)  # (train, features), rows L2-normalised

    def nearest(self, sentences: Sequence[str]) -> List[int]:
        """For each sentence: the index of the most similar training source, or -1 when it
        shares no feature with any."""
        found: List[int] = []
        for start in range(0, len(sentences), BATCH):
            queries = self.vectorizer.transform(sentences[start:start + BATCH])  # (batch, features)
            scores = (queries @ self.index.T).toarray()  # (batch, train) cosine similarities
            best = scores.argmax(axis=1)
            best[scores[np.arange(len(best)), best] <= 0] = -1
            found.extend(int(i) for i in best)
        return found

    def translate(self, sentences: Sequence[str]) -> List[str]:
        """The target side of each sentence's nearest training source ("" without one)."""
        return [self.targets[i] if i >= 0 else "" for i in self.nearest(sentences)]


def retrieve(train_src: Sequence[str], train_tgt: Sequence[str], test_src: Sequence[str],
             features: str = "char") -> List[str]:
    """One translation per ``test_src`` sentence, copied from the training pairs."""
    return NearestNeighbourTranslator(train_src, train_tgt, features).translate(test_src)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """Detokenised corpus BLEU (sacreBLEU defaults): ``{"bleu": score, "sentences": n}``."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise UsageError(f"--test-ref has {len(references)} lines but --test-src {len(hypotheses)}; "
                         "pass the references of the test sentences")
    score = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    return {"bleu": round(score, 2), "sentences": len(hypotheses)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m varattn_experiments.retrieval",
        description="Translate each test sentence with the target side of its most similar training "
                    "sentence (TF-IDF cosine) and score it with sacreBLEU.")
    parser.add_argument("--train-src", type=Path, required=True, help="training source sentences (train.de)")
    parser.add_argument("--train-tgt", type=Path, required=True, help="their translations (train.en)")
    parser.add_argument("--test-src", type=Path, required=True, help="sentences to translate (test.de)")
    parser.add_argument("--test-ref", type=Path, default=None, help="their references: print BLEU as JSON")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the translations go (default: stdout, unless --test-ref is given)")
    parser.add_argument("--features", choices=sorted(FEATURES), default="char",
                        help="char: character 2-4-grams (default); word: word uni- and bigrams")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sources = read_lines(args.train_src, "--train-src", UsageError)
        targets = read_lines(args.train_tgt, "--train-tgt", UsageError)
        tests = read_lines(args.test_src, "--test-src", UsageError)
        references = read_lines(args.test_ref, "--test-ref", UsageError) if args.test_ref else None
        hypotheses = retrieve(sources, targets, tests, args.features)
        score = bleu(hypotheses, references) if references is not None else None
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    elif score is None:
        sys.stdout.writelines(h + "\n" for h in hypotheses)
    if score is not None:
        print(json.dumps(score))
    return 0


if __name__ == "__main__":
    sys.exit(main())
