"""Several of the package's command lines in one Python process, for examples/converge/converge.sh.

Importing the package (torch, fairseq) takes seconds per process; these commands run the
same console scripts' ``main`` functions with the same arguments, one after the other:

    python examples/converge/batch.py subwords DATA SPM VOCAB_SIZE
        sentencepiece for de and en (python -m var_attn_plugin.data.subwords train / encode)
    python examples/converge/batch.py align OUT_DIR DIST [DIST ...] -- VARATTN-ALIGN ARGS
        varattn-align ARGS --distribution DIST -o OUT_DIR/DIST.align for each DIST
    python examples/converge/batch.py score GOLD PRED [PRED ...]
        varattn-aer GOLD PRED --json > PRED without .align + .aer.json, for each PRED
    python examples/converge/batch.py boundaries SRC PRED [PRED ...]
        the share of PRED's links that end on the first and on the last word of their source
        sentence (SRC, the text the positions index) > PRED without .align + .boundaries.json:
        a bidirectional encoder's boundary states summarise the whole sentence, so a model whose
        alignment carries no information drifts there
    python examples/converge/batch.py resume-point SAVE_DIR
        make sure SAVE_DIR/checkpoint_last.pt, where fairseq-train resumes, loads: fairseq copies
        it non-atomically, so a run killed during the copy leaves it truncated; it is then set
        aside (.broken) and replaced by the newest checkpoint of SAVE_DIR that loads
    python examples/converge/batch.py archive ROOT ARCHIVE CORPUS [RUN ...]
        copy the small files report.py reads (logs, scores, step markers; no checkpoints, no
        data) of CORPUS and of its runs (MODE-seedS; all of them if none is named, none with
        --corpus-only) from ROOT to ARCHIVE, which report.py reads like ROOT

Every output is written to a temporary name first and renamed when complete.
"""

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Union


def replace(path: Path, data: Union[str, bytes]) -> None:
    """Write ``data`` (text: UTF-8) to a temporary name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def subwords(data: Path, spm: Path, vocab_size: str) -> None:
    from var_attn_plugin.data import subwords as sw

    for lang in ("de", "en"):
        sw.main(["train", str(data / f"train.{lang}"), "--model-prefix", str(spm / f"spm.{lang}"),
                 "--vocab-size", vocab_size, "--soft-vocab-limit"])
        sw.main(["encode", "--model", str(spm / f"spm.{lang}.model")]
                + [f"{data / f'{split}.{lang}'}:{spm / f'{split}.{lang}'}" for split in ("train", "valid", "test")])


def align(out_dir: Path, distributions: Sequence[str], arguments: List[str]) -> None:
    from var_attn_plugin.tools import align as varattn_align

    for distribution in distributions:
        target = out_dir / f"{distribution}.align"
        tmp = target.with_name(target.name + ".tmp")
        varattn_align.main([*arguments, "--distribution", distribution, "-o", str(tmp)])
        os.replace(tmp, target)


def score(gold: str, predictions: Sequence[str]) -> None:
    from var_attn_plugin.tools import aer

    for prediction in predictions:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            aer.main([gold, prediction, "--json"])
        replace(Path(prediction[: -len(".align")] + ".aer.json"), out.getvalue())


def boundary_shares(source_lengths: Sequence[int], alignments: Sequence[str]) -> dict:
    """How many links (Pharaoh ``i-j`` lines, source position first) there are, and the share of
    them whose source position is the first or the last of its sentence."""
    if len(alignments) != len(source_lengths):
        sys.exit(f"boundaries: {len(alignments)} lines of links for {len(source_lengths)} source sentences")
    links = first = last = 0
    for length, line in zip(source_lengths, alignments):
        for link in line.split():
            i = int(link.replace("?", "-").split("-")[0])
            links += 1
            first += i == 0
            last += i == length - 1
    return {"links": links, "first": first / links if links else None, "last": last / links if links else None}


def boundaries(source: Path, predictions: Sequence[str]) -> None:
    from var_attn_plugin.textio import read_lines

    lengths = [len(line.split()) for line in read_lines(source, "source file")]
    for prediction in predictions:
        shares = boundary_shares(lengths, read_lines(Path(prediction), "links file"))
        replace(Path(prediction[: -len(".align")] + ".boundaries.json"), json.dumps(shares) + "\n")


def loads(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=False)
        return True
    except Exception:  # truncated or otherwise unreadable
        return False


def resume_point(save_dir: Path) -> None:
    last = save_dir / "checkpoint_last.pt"
    if not last.is_file() or loads(last):
        return
    os.replace(last, last.with_name(last.name + ".broken"))
    candidates = sorted((p for p in save_dir.glob("checkpoint*.pt")), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if loads(candidate):
            shutil.copyfile(candidate, last)
            print(f"{last} did not load; resuming from {candidate.name}")
            return
    print(f"{last} did not load and no other checkpoint does; training starts anew")


# what report.py reads: of a corpus, and of each of its runs (patterns relative to the folder)
CORPUS_FILES = ("data/stats.json", "ref/*.aer.json", "ref/*.boundaries.json", "ref/gold.align", "ref/test.sha256")
RUN_FILES = ("train.log", ".done/*", "eval/validate.log", "eval/diagnose.json", "eval/bleu-*.json",
             "align/*.aer.json", "align/*.boundaries.json")


def copy_files(source: Path, target: Path, patterns: Sequence[str]) -> int:
    """Copy the files of ``source`` that match ``patterns`` to the same places under ``target``,
    and remove those of ``target`` that ``source`` no longer has (a step redone, a run continued
    with a higher maximum); returns how many changed."""
    changed = 0
    for pattern in patterns:
        for stale in sorted(target.glob(pattern)):
            if stale.is_file() and not (source / stale.relative_to(target)).is_file():
                stale.unlink()
                changed += 1
        for path in sorted(source.glob(pattern)):
            if not path.is_file() or path.name.endswith(".tmp"):
                continue
            destination = target / path.relative_to(source)
            data = path.read_bytes()
            if destination.is_file() and destination.read_bytes() == data:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            replace(destination, data)
            changed += 1
    return changed


def archive(root: Path, target: Path, corpus: str, runs: Optional[Sequence[str]] = None) -> None:
    """The corpus's files and those of ``runs`` (None: every run of the corpus)."""
    source = root / corpus
    if not source.is_dir():
        sys.exit(f"archive: {source} does not exist: ROOT must be the comparison's folder (converge.sh's ROOT) "
                 f"and {corpus} a corpus prepared in it")
    if runs is None:
        runs = sorted(p.name for p in source.iterdir() if p.is_dir() and (p / "train.log").is_file())
    changed = copy_files(source, target / corpus, CORPUS_FILES)
    for run in runs:
        changed += copy_files(source / run, target / corpus / run, RUN_FILES)
    print(f"archived {corpus} ({len(runs)} runs) to {target / corpus}: {changed} files changed")


def main(argv: Sequence[str]) -> None:
    command, *rest = argv
    if command == "subwords":
        data, spm, vocab_size = rest
        subwords(Path(data), Path(spm), vocab_size)
    elif command == "align":
        split = rest.index("--")
        align(Path(rest[0]), rest[1:split], rest[split + 1:])
    elif command == "score":
        score(rest[0], rest[1:])
    elif command == "boundaries":
        boundaries(Path(rest[0]), rest[1:])
    elif command == "resume-point":
        resume_point(Path(rest[0]))
    elif command == "archive":
        runs = rest[3:]
        archive(Path(rest[0]), Path(rest[1]), rest[2], [] if runs == ["--corpus-only"] else runs or None)
    else:
        sys.exit(f"unknown command {command!r}: subwords, align, score, boundaries, resume-point or archive")


if __name__ == "__main__":
    main(sys.argv[1:])
