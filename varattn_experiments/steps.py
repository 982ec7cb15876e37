"""Steps of the comparison that are Python functions: ``python -m varattn_experiments.steps NAME ...``.

Importing the package (torch, fairseq) takes seconds per process; these run the console
scripts' ``main`` functions in one process, and write every output to a temporary name first,
renamed when complete:

    align OUT_DIR DIST [DIST ...] -- VARATTN-ALIGN ARGS
        varattn-align ARGS --distribution DIST -o OUT_DIR/DIST.align for each DIST
    score GOLD PRED [PRED ...]
        varattn-aer GOLD PRED --json > PRED without .align + .aer.json, for each PRED
    boundaries SRC PRED [PRED ...]
        the share of PRED's links that end on the first and on the last word of their source
        sentence (SRC, the text the positions index), and on the word of its sentence with the
        most links > PRED without .align + .boundaries.json:
        a bidirectional encoder's boundary states summarise the whole sentence, so a model whose
        alignment carries no information drifts there
    capture OUT -- COMMAND ...
        run COMMAND and keep its standard output in OUT (e.g. varattn-diagnose --json)
    bleu EVAL_DIR NAME REFERENCE -- FAIRSEQ-GENERATE ARGS
        fairseq-generate, its hypotheses in order (EVAL_DIR/hyp-NAME.txt) and detokenised sacreBLEU
        against REFERENCE (EVAL_DIR/bleu-NAME.json, sacreBLEU's JSON)
    reference CORPUS_DIR [--eflomal] [--kept KEPT_REF_DIR]
        the reference links of a corpus's test set (CORPUS_DIR/ref): the gold links of a synthetic
        task, eflomal's and the diagonal's, their AER and boundary shares
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import List, Sequence, Union


def replace(path: Path, data: Union[str, bytes]) -> None:
    """Write ``data`` (text: UTF-8) to a temporary name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


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
    """How many links (Pharaoh ``i-j`` lines, source position first) there are, the share of them
    whose source position is the first or the last of its sentence, and ``busiest``: the share
    on the position of its sentence that holds the most links (pooled over sentences; a prior
    that always picks one position has 1, a diagonal alignment about one over the source length)."""
    if len(alignments) != len(source_lengths):
        sys.exit(f"boundaries: {len(alignments)} lines of links for {len(source_lengths)} source sentences")
    links = first = last = busiest = 0
    for length, line in zip(source_lengths, alignments):
        positions = Counter(int(link.replace("?", "-").split("-")[0]) for link in line.split())
        links += sum(positions.values())
        first += positions[0]
        last += positions[length - 1]
        busiest += max(positions.values(), default=0)
    share = (lambda n: n / links) if links else (lambda n: None)
    return {"links": links, "first": share(first), "last": share(last), "busiest": share(busiest)}


def boundaries(source: Path, predictions: Sequence[str]) -> None:
    from var_attn_plugin.textio import read_lines

    lengths = [len(line.split()) for line in read_lines(source, "source file")]
    for prediction in predictions:
        shares = boundary_shares(lengths, read_lines(Path(prediction), "links file"))
        replace(Path(prediction[: -len(".align")] + ".boundaries.json"), json.dumps(shares) + "\n")


def capture(output: Path, command: List[str]) -> None:
    result = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if result.returncode:
        sys.exit(result.returncode)
    replace(output, result.stdout)


def bleu(eval_dir: Path, name: str, reference: Path, generate: List[str]) -> None:
    result = subprocess.run(generate, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        sys.exit(result.returncode)
    hypotheses = {}
    for line in result.stdout.splitlines():
        if line.startswith("H-"):
            index, _, text = line[2:].split("\t", 2)
            hypotheses[int(index)] = text
    (eval_dir / f"generate-{name}.out").write_text(result.stdout, encoding="utf-8")
    hyp = eval_dir / f"hyp-{name}.txt"
    replace(hyp, "".join(hypotheses[i] + "\n" for i in sorted(hypotheses)))
    scored = subprocess.run([str(Path(sys.executable).parent / "sacrebleu"), str(reference), "-i", str(hyp),
                             "-m", "bleu", "-w", "2", "-f", "json"], stdout=subprocess.PIPE, text=True, check=True)
    replace(eval_dir / f"bleu-{name}.json", scored.stdout)


def sha256_of(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def reference(corpus_dir: Path, eflomal: bool, kept: Path = None) -> None:
    """Reference links of the test set in CORPUS_DIR/ref, scored against the gold links: the gold
    (a synthetic task's true links; on a real corpus eflomal's, or the archive's eflomal links of the
    same test set, since eflomal samples), eflomal's forward direction and the diagonal. With the
    archive's links come the archive's scores of eflomal's own rows, where it has them; where it
    has all of them, eflomal does not run."""
    from . import links

    data, ref = corpus_dir / "data", corpus_dir / "ref"
    ref.mkdir(parents=True, exist_ok=True)
    for stale in ref.glob("*.aer.json"):
        stale.unlink()
    synthetic = (data / "test.align").is_file()
    if synthetic:
        shutil.copyfile(data / "test.align", ref / "gold.align")
    diagonal = io.StringIO()
    with contextlib.redirect_stdout(diagonal):
        links.main(["diagonal", str(data / "test.de"), str(data / "test.en")])
    replace(ref / "diagonal.align", diagonal.getvalue())
    checksum = sha256_of(data / "test.de", data / "test.en")
    replace(ref / "test.sha256", checksum + "\n")
    scored = [ref / "diagonal.align"]
    same_test = eflomal and not synthetic and kept is not None and (kept / "gold.align").is_file() \
        and (kept / "test.sha256").is_file() and (kept / "test.sha256").read_text().strip() == checksum
    archived = [kept / f"{name}.{kind}.json" for name in ("eflomal-forward", "eflomal")
                for kind in ("aer", "boundaries")] if same_test else []
    if archived and all(path.is_file() for path in archived):
        # the archive has the reference and every score of eflomal's own rows for this test set:
        # a new eflomal sample would be scored only to be replaced by them
        for stale in ("eflomal.align", "eflomal-forward.align"):
            (ref / stale).unlink(missing_ok=True)
        shutil.copyfile(kept / "gold.align", ref / "gold.align")
    elif eflomal:
        forward = [] if synthetic else ["--forward-output", str(ref / "eflomal-forward.align")]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            links.main(["eflomal", "--train-src", str(data / "train.de"), "--train-tgt", str(data / "train.en"),
                        *forward, str(data / "test.de"), str(data / "test.en")])
        replace(ref / "eflomal.align", out.getvalue())
        if not synthetic:
            # eflomal samples: the archive's links of the same test set stay the reference
            shutil.copyfile(kept / "gold.align" if same_test else ref / "eflomal.align", ref / "gold.align")
            scored.append(ref / "eflomal-forward.align")
        if (ref / "eflomal.align").read_bytes() != (ref / "gold.align").read_bytes():
            scored.append(ref / "eflomal.align")
    names = [str(p) for p in scored]
    if (ref / "gold.align").is_file():
        score(str(ref / "gold.align"), names)
        names.append(str(ref / "gold.align"))
    boundaries(data / "test.de", names)
    if same_test:
        # and so do the archive's scores of eflomal's own rows, so that the report's reference rows
        # do not change with each preparation of the same data
        for path in archived:
            if path.is_file():
                shutil.copyfile(path, ref / path.name)


def main(argv: Sequence[str]) -> None:
    command, *rest = argv
    if command == "align":
        split = rest.index("--")
        align(Path(rest[0]), rest[1:split], rest[split + 1:])
    elif command == "score":
        score(rest[0], rest[1:])
    elif command == "boundaries":
        boundaries(Path(rest[0]), rest[1:])
    elif command == "capture":
        capture(Path(rest[0]), rest[2:])
    elif command == "bleu":
        bleu(Path(rest[0]), rest[1], Path(rest[2]), rest[4:])
    elif command == "reference":
        kept = Path(rest[rest.index("--kept") + 1]) if "--kept" in rest else None
        reference(Path(rest[0]), "--eflomal" in rest, kept)
    else:
        sys.exit(f"unknown step {command!r}: align, score, boundaries, capture, bleu or reference")


if __name__ == "__main__":
    main(sys.argv[1:])
