"""Synthetic translation tasks with known word alignments: ``python -m var_attn_plugin.data.synthetic``.

Every task translates sentences of a made-up source language (``*.de``) word by word into a
made-up target language (``*.en``) through a fixed random lexicon, and writes the true
alignment of every sentence pair (``*.align``: Pharaoh ``i-j`` sure links, source word i,
target word j, 0-based, one line per pair). The tasks grow harder, each adding one
phenomenon to the previous one:

``monotone``
    target word i translates source word i.
``local``
    plus local reordering: source words come in two classes, modifiers and heads; a
    modifier right before a head swaps places with it in the target (``M H`` -> ``h m``).
``fertility``
    plus one-to-many links: a quarter of the heads translate into two target words
    (both linked to the source word).
``null``
    plus unaligned words on both sides: source particles that produce nothing, and a
    target article before every translated head that has no source word (no link).

The translation is a deterministic function of the source, so a model can learn it
exactly, and the gold links are the generating process's own. Sentence lengths, word
choices and particle positions are drawn from ``random.Random(seed)``; the lexicon depends
on ``--lexicon-seed`` only, so the splits of one task share it.
"""

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

from ..console import ArgumentParser
from ..textio import Link

TASKS = ("monotone", "local", "fertility", "null")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Lexicon:
    modifiers: Tuple[str, ...]  # source words of the modifier class
    heads: Tuple[str, ...]  # source words of the head class
    particles: Tuple[str, ...]  # source words without a translation (task "null")
    translation: dict  # source word -> target words (one, or two for fertile heads)
    article: str  # the target word without a source word (task "null")


def make_lexicon(modifiers: int = 8, heads: int = 16, particles: int = 3, seed: int = 0) -> Lexicon:
    """Source words ``m0.., h0.., p0..``; each translates into target words named after a
    random permutation, so a word's spelling says nothing about its translation."""
    rng = random.Random(seed)
    source_mods = tuple(f"m{k}" for k in range(modifiers))
    source_heads = tuple(f"h{k}" for k in range(heads))
    names = list(range(modifiers + heads))
    rng.shuffle(names)
    translation = {word: [f"W{names[k]}"] for k, word in enumerate(source_mods + source_heads)}
    fertile = rng.sample(source_heads, max(1, heads // 4))
    for word in fertile:
        translation[word] = translation[word] + [translation[word][0].replace("W", "X")]
    return Lexicon(source_mods, source_heads, tuple(f"p{k}" for k in range(particles)),
                   translation, "the")


def translate(source: Sequence[str], task: str, lexicon: Lexicon) -> Tuple[List[str], Set[Link]]:
    """The target words of ``source`` under ``task`` and their true links."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    level = TASKS.index(task)
    # the order in which source words are translated: modifier-head pairs swap from "local" on
    order: List[int] = []
    content = [i for i, word in enumerate(source) if not word.startswith("p")]
    k = 0
    while k < len(content):
        i = content[k]
        nxt = content[k + 1] if k + 1 < len(content) else None
        if level >= 1 and nxt is not None and source[i] in lexicon.modifiers and source[nxt] in lexicon.heads:
            order += [nxt, i]
            k += 2
        else:
            order.append(i)
            k += 1
    target: List[str] = []
    links: Set[Link] = set()
    for i in order:
        word = source[i]
        if level >= 3 and word in lexicon.heads:
            target.append(lexicon.article)  # unaligned
        outputs = lexicon.translation[word] if level >= 2 else lexicon.translation[word][:1]
        for out in outputs:
            links.add((i, len(target)))
            target.append(out)
    return target, links


def sample_source(rng: random.Random, task: str, lexicon: Lexicon, min_len: int, max_len: int) -> List[str]:
    words = [rng.choice(lexicon.modifiers + lexicon.heads) for _ in range(rng.randint(min_len, max_len))]
    if TASKS.index(task) >= 3:  # particles between the content words, about one in four
        for _ in range(rng.randint(0, max(1, len(words) // 4))):
            words.insert(rng.randint(0, len(words)), rng.choice(lexicon.particles))
    return words


def format_links(links: Set[Link]) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def write_task(output_dir: Path, task: str, sizes: Sequence[Tuple[str, int]], seed: int = 1,
               lexicon_seed: int = 0, min_len: int = 3, max_len: int = 10) -> dict:
    """Write ``SPLIT.de``, ``SPLIT.en`` and ``SPLIT.align`` for each ``(split, pairs)``;
    returns the number of pairs per split."""
    lexicon = make_lexicon(seed=lexicon_seed)
    rng = random.Random(f"{task}-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, n in sizes:
        source_lines, target_lines, link_lines = [], [], []
        for _ in range(n):
            source = sample_source(rng, task, lexicon, min_len, max_len)
            target, links = translate(source, task, lexicon)
            source_lines.append(" ".join(source))
            target_lines.append(" ".join(target))
            link_lines.append(format_links(links))
        for suffix, lines in (("de", source_lines), ("en", target_lines), ("align", link_lines)):
            (output_dir / f"{split}.{suffix}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        counts[split] = n
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m var_attn_plugin.data.synthetic",
        description="Write a synthetic translation task with its true word alignment "
                    "(train/valid/test .de, .en and .align).")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--output-dir", "-o", type=Path, required=True)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--valid-size", type=int, default=300)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--min-len", type=int, default=3, help="content words per source sentence, at least")
    parser.add_argument("--max-len", type=int, default=10, help="content words per source sentence, at most")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sentences")
    parser.add_argument("--lexicon-seed", type=int, default=0, help="seed of the lexicon")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    sizes = (("train", args.train_size), ("valid", args.valid_size), ("test", args.test_size))
    counts = write_task(args.output_dir, args.task, sizes, args.seed, args.lexicon_seed, args.min_len, args.max_len)
    # the sizes, as the real corpora's preparers write them
    (args.output_dir / "stats.json").write_text(json.dumps({f"{split}_pairs": n for split, n in counts.items()}) + "\n")
    print(f"{args.task}: " + ", ".join(f"{n} {split}" for split, n in counts.items()) + f" -> {args.output_dir}")


if __name__ == "__main__":
    main()
