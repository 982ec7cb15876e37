"""The demo (``make demo``): a variational-attention model trained and evaluated on a CPU.

Steps, each skipped when it finished before (the runner's manifest in ``DEMO_DIR``):

1. the corpus: LibreOffice's help pages with its UI strings (``lohelp``, the default) or the
   Ding sentences (``ding``), split by German sentence, in sentencepiece pieces, binarised;
2. a soft-attention warm start (``soft_updates`` updates), then the latent model
   (``--attention-mode var-enum`` by default, the exact ELBO) initialised from it for
   ``latent_updates`` updates; both budgets count updates, so the result does not depend on the
   machine's speed. One training process; its torch threads are chosen when each phase starts:
   every core on a quiet machine, one while another process keeps a core busy (two threads
   sharing a core with another job run many times slower);
3. the exact test perplexity, beam search (beam 5, exact marginalisation) and detokenised
   sacreBLEU of the latent model, of the warm start alone, and of the retrieval baseline (the
   English of the most similar training German): three figures side by side;
4. example translations and a picture of one sentence's prior and posterior, chosen by a
   stated rule (:func:`choose`): the test sentences of 5 to 15 words ranked by the model's
   sentence BLEU, the best, the quartiles, the median and the worst; the picture is of the
   median one.

    python -m varattn_experiments.demo [--tiny] [--corpus ding] [--dir work/demo]
    python -m varattn_experiments.demo archive work/demo docs/runs/demo/NAME [NOTE]   # keep a finished run's record
    python -m varattn_experiments.demo report docs/runs/demo docs/demo-results.md
"""

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence

from var_attn_plugin.presets import LSTM_PRESETS, flags

from . import runner
from .corpora import Corpus
from .manifest import Manifest
from .runner import PLUGIN_DIR, Job, Step, tool


@dataclass(frozen=True)
class DemoSettings:
    corpus: str = "lohelp"
    vocab_size: int = 2000  # pieces per language: enumeration costs S x V per target token
    sizes: str = "cpu256"
    soft_updates: int = 1400
    latent_updates: int = 400
    mode: str = "var-enum"
    lr: float = 2e-3
    dropout: float = 0.2
    exclude_source_eos: bool = False  # the source EOS among the alignment's candidates or not (the paper: not)
    max_tokens: int = 1000  # target tokens per update
    valid_every: int = 250
    beam: int = 5
    valid_size: int = 1000
    test_size: int = 1000
    max_train: Optional[int] = None
    seed: int = 1


TINY = DemoSettings(vocab_size=200, sizes="tiny", soft_updates=20, latent_updates=30, max_tokens=400,
                    valid_every=10, valid_size=30, test_size=30, max_train=300)


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores other work keeps busy, measured over ``seconds`` (/proc/stat; 0 elsewhere)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    if total1 <= total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def choose_threads() -> int:
    """Every core when the machine is quiet, one thread when another job keeps a core busy."""
    cores = os.cpu_count() or 1
    return 1 if cores == 1 or busy_cores() >= 0.5 else cores


@dataclass(frozen=True)
class Demo(Job):
    corpus: Corpus
    settings: DemoSettings = DemoSettings()

    def folder(self, root: Path) -> Path:
        return Path(root)

    def config(self) -> dict:
        return {"kind": "demo", **asdict(self.settings)}

    def needs(self) -> Sequence[Job]:
        return (self.corpus,)

    def train(self, root: Path, name: str, save_dir: Path, updates: int, *extra: str) -> Step:
        s = self.settings
        command = [tool("fairseq-train"), str(self.corpus.data_bin(root)), "--user-dir", str(PLUGIN_DIR),
                   "--task", "varattn_translation", "--arch", "varattn_lstm", "--criterion", "varattn_elbo",
                   *flags(LSTM_PRESETS[s.sizes]), "--dropout", str(s.dropout), "--optimizer", "adam",
                   "--lr", str(s.lr), "--clip-norm", "5", "--max-tokens", str(s.max_tokens), "--seed", str(s.seed),
                   "--max-update", str(updates), "--max-epoch", "100000", "--save-dir", str(save_dir),
                   "--no-epoch-checkpoints", "--cpu", "--num-workers", "0", "--ignore-unused-valid-subsets",
                   "--validate-interval-updates", str(s.valid_every), "--log-format", "simple",
                   "--log-interval", "10", *(["--exclude-source-eos"] if s.exclude_source_eos else []), *extra]

        def show():
            from var_attn_plugin.tools.progress import Progress

            return Progress(updates, label=name).feed

        return Step(f"train-{name}", command, f"train-{name}.log", show=show, threads=choose_threads)

    def steps(self, root: Path) -> List[Step]:
        s, d, data = self.settings, Path(root), self.corpus.folder(root) / "data"
        bin_ = str(self.corpus.data_bin(root))
        warm, latent, evaluation = d / "checkpoints-soft", d / "checkpoints", d / "eval"
        evaluate = ["--user-dir", str(PLUGIN_DIR), "--task", "varattn_translation", "--max-tokens", "2000",
                    "--cpu", "--num-workers", "0"]
        here = [sys.executable, "-m", "varattn_experiments.demo"]
        steps_cmd = [sys.executable, "-m", "varattn_experiments.steps"]

        def bleu(name: str, checkpoint: Path) -> Step:
            generate = [tool("fairseq-generate"), bin_, *evaluate, "--path", str(checkpoint), "--gen-subset", "test",
                        "--beam", str(s.beam), "--remove-bpe", "sentencepiece"]
            return Step(f"bleu-{name}", [*steps_cmd, "bleu", str(evaluation), name, str(data / "test.en"), "--",
                                         *generate], f"eval/generate-{name}.log")

        return [
            self.train(root, "soft", warm, s.soft_updates, "--attention-mode", "soft"),
            self.train(root, s.mode, latent, s.latent_updates, "--attention-mode", s.mode,
                       "--finetune-from-model", str(warm / "checkpoint_last.pt")),
            Step("validate", [tool("fairseq-validate"), bin_, *evaluate, "--path", str(latent / "checkpoint_best.pt"),
                              "--valid-subset", "test"], "eval/validate.log"),
            bleu("latent", latent / "checkpoint_best.pt"),
            bleu("soft", warm / "checkpoint_last.pt"),
            Step("retrieval", [*steps_cmd, "capture", str(evaluation / "bleu-retrieval.json"), "--",
                               sys.executable, "-m", "varattn_experiments.retrieval",
                               "--train-src", str(data / "train.de"), "--train-tgt", str(data / "train.en"),
                               "--test-src", str(data / "test.de"), "--test-ref", str(data / "test.en"),
                               "--output", str(evaluation / "hyp-retrieval.txt")], "eval/retrieval.log"),
            Step("plot", [*here, "plot", str(root), str(data), bin_, str(latent / "checkpoint_best.pt")],
                 "eval/plot.log"),
        ]


# ---------------------------------------------------------------------- choosing and reporting


def sentence_bleus(hypotheses: Sequence[str], references: Sequence[str]) -> List[float]:
    import sacrebleu

    return [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hypotheses, references)]


def choose(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
           shown: int = 5, shortest: int = 5, longest: int = 15) -> List[int]:
    """Test sentences to show: those of ``shortest``-``longest`` source words ranked by sentence
    BLEU (ties by position), at ``shown`` evenly spaced ranks from the best to the worst."""
    scores = sentence_bleus(hypotheses, references)
    eligible = [i for i, s in enumerate(sources) if shortest <= len(s.split()) <= longest] or list(range(len(sources)))
    ranked = sorted(eligible, key=lambda i: (-scores[i], i))
    if shown <= 1 or len(ranked) <= shown:
        return ranked[:shown]
    return [ranked[round(k * (len(ranked) - 1) / (shown - 1))] for k in range(shown)]


def read_lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines()


def plot(root: Path, data: Path, data_bin: str, checkpoint: str) -> None:
    """The attention picture of the median example of :func:`choose`."""
    from var_attn_plugin.tools import plot as varattn_plot

    evaluation = root / "eval"
    picks = choose(read_lines(data / "test.de"), read_lines(evaluation / "hyp-latent.txt"),
                   read_lines(data / "test.en"))
    median = picks[len(picks) // 2]
    (evaluation / "choice.json").write_text(json.dumps({"examples": picks, "picture": median}) + "\n")
    varattn_plot.main([data_bin, "--path", checkpoint, "--gen-subset", "test", "--id", str(median), "--cpu",
                       "--title", f"test sentence {median}", "-o", str(evaluation / "attention.png")])


def validate_figures(path: Path) -> dict:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "valid on 'test' subset" in line:
            fields = dict(part.strip().split(" ", 1) for part in line.split("|")[3:] if " " in part.strip())
            return {k: float(v) for k, v in fields.items() if k in ("ppl", "bound_ppl", "kl", "prior_ent")}
    return {}


def summary(root: Path, corpus: Corpus, settings: DemoSettings) -> str:
    evaluation, data = Path(root) / "eval", corpus.folder(root) / "data"
    f = run_figures(Path(root))
    stats, picks = f["stats"], json.loads((evaluation / "choice.json").read_text())
    lines = [
        f"data: {corpus.name}, {stats['train_pairs']} train / {stats['valid_pairs']} valid / "
        f"{stats['test_pairs']} test pairs",
        f"training: soft warm start {settings.soft_updates} updates in {f['training_minutes'][0]:.1f} min, then "
        f"--attention-mode {settings.mode} {settings.latent_updates} updates in {f['training_minutes'][1]:.1f} min "
        f"(torch threads {f['threads'][0]} and {f['threads'][1]})",
        f"all steps: {f['all_minutes']:.1f} min on {f['machine']}, started "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(f['started']))}, code {f['code']}",
        f"test perplexity (exact, per piece): {f['ppl']:.2f}",
        f"test sacreBLEU (detokenised): {settings.mode} {f['bleu']['latent']:.2f} | soft warm start "
        f"{f['bleu']['soft']:.2f} | retrieval baseline {f['retrieval']:.2f}",
        f"attention picture: {evaluation / 'attention.png'} (test sentence {picks['picture']})",
        f"checkpoint: {Path(root) / 'checkpoints' / 'checkpoint_best.pt'}",
        "",
        "examples (test sentences of 5-15 words by sentence BLEU: best, quartiles, median, worst):",
    ]
    sources, references = read_lines(data / "test.de"), read_lines(data / "test.en")
    hypotheses = read_lines(evaluation / "hyp-latent.txt")
    for i in picks["examples"]:
        lines += ["", f"DE : {sources[i]}", f"REF: {references[i]}", f"OUT: {hypotheses[i]}"]
    text = "\n".join(lines) + "\n"
    (Path(root) / "summary.txt").write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------------- the record of demo runs

# what a demo run keeps in the committed record (docs/runs/demo/NAME): no checkpoint, no data
KEPT = ("manifest.json", "summary.txt", "train-*.log", "corpus/manifest.json", "corpus/data/stats.json",
        "eval/bleu-*.json", "eval/choice.json", "eval/validate.log", "eval/attention.png")


def archive(root: Path, destination: Path, note: str = "") -> None:
    """Copy what :func:`report` reads of the demo run in ``root`` to ``destination``, with a
    ``note`` on the conditions it ran in (what else the machine ran, for example)."""
    import shutil

    if not (Path(root) / "summary.txt").is_file():
        raise SystemExit(f"{root} holds no finished demo (no summary.txt): run it first")
    for pattern in KEPT:
        for path in sorted(Path(root).glob(pattern)):
            target = destination / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    if note:
        (destination / "note.txt").write_text(note.strip() + "\n", encoding="utf-8")


def run_figures(run: Path) -> dict:
    """One archived demo run's settings, provenance, times and scores."""
    manifest, corpus = Manifest(run), Manifest(run / "corpus")
    config = manifest.data["config"]
    trainings = [f"train-{name}" for name in ("soft", config["mode"])]
    attempts = [manifest.data["steps"][name]["attempts"][-1] for name in trainings]
    every = [(m, name) for m in (corpus, manifest) for name in m.data["steps"]]
    bleu = {name: json.loads((run / "eval" / f"bleu-{name}.json").read_text())["score"] for name in ("latent", "soft")}
    return {
        "config": config,
        "machine": attempts[0].get("machine", "?"),
        "threads": [a.get("threads", "?") for a in attempts],
        "started": min(m.data["steps"][name]["attempts"][-1]["started"] for m, name in every),
        "code": attempts[0]["code_version"],
        "training_minutes": [manifest.seconds(name) / 60 for name in trainings],
        "all_minutes": sum(m.seconds(name) for m, name in every) / 60,
        "ppl": validate_figures(run / "eval" / "validate.log").get("ppl", float("nan")),
        "bleu": bleu,
        "retrieval": json.loads((run / "eval" / "bleu-retrieval.json").read_text())["bleu"],
        "stats": json.loads((run / "corpus" / "data" / "stats.json").read_text()),
        "note": (run / "note.txt").read_text(encoding="utf-8").strip() if (run / "note.txt").is_file() else "",
    }


def report(record: Path) -> str:
    """docs/demo-results.md: the archived demo runs in ``record`` (one folder each), side by side."""
    runs = [(p, run_figures(p)) for p in sorted(Path(record).iterdir()) if (p / "manifest.json").is_file()]
    lines = [
        "# The demo's measured runs",
        "",
        f"Generated by `python -m varattn_experiments.demo report {record}` from the runs archived there "
        "(their manifests, logs and scores); docs/demo.md describes the demo.",
        "",
        "| run | machine | started (UTC) | code | torch threads | updates | training (min) | all steps (min) "
        "| test PPL | sacreBLEU latent | soft warm start | retrieval |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, f in runs:
        c = f["config"]
        lines.append(
            f"| {run.name} | {f['machine']} | {time.strftime('%Y-%m-%d %H:%M', time.gmtime(f['started']))} "
            f"| {f['code']} | {f['threads'][0]}, {f['threads'][1]} "
            f"| {c['soft_updates']} soft + {c['latent_updates']} {c['mode']} "
            f"| {f['training_minutes'][0]:.1f} + {f['training_minutes'][1]:.1f} | {f['all_minutes']:.1f} "
            f"| {f['ppl']:.2f} | {f['bleu']['latent']:.2f} | {f['bleu']['soft']:.2f} | {f['retrieval']:.2f} |")
    lines += ["", "Conditions, settings and data of each run:", ""]
    for run, f in runs:
        settings = ", ".join(f"{k} {v}" for k, v in sorted(f["config"].items()) if k != "kind")
        st = f["stats"]
        lines.append(f"- {run.name}: {f['note'] + ' ' if f['note'] else ''}Settings: {settings}; "
                     f"{st['train_pairs']} train / {st['valid_pairs']} valid / {st['test_pairs']} test pairs.")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m varattn_experiments.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where everything goes (default work/demo, "
                        "work/demo-tiny with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the whole pipeline on a few hundred pairs")
    parser.add_argument("--corpus", choices=["lohelp", "ding"], default="lohelp")
    parser.add_argument("--source", default=None, help="a copy of the corpus's raw data you already have "
                        "(ding: the dictionary file)")
    parser.add_argument("--mode", default="var-enum", help="the latent phase's --attention-mode")
    parser.add_argument("--exclude-source-eos", action=argparse.BooleanOptionalAction,
                        default=DemoSettings.exclude_source_eos,
                        help="train both phases with the source EOS out of the alignment's candidates, as in the paper")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plot"]:
        plot(Path(argv[1]), Path(argv[2]), argv[3], argv[4])
        return 0
    if argv[:1] == ["archive"]:  # archive ROOT DESTINATION [NOTE]
        archive(Path(argv[1]), Path(argv[2]), " ".join(argv[3:]))
        return 0
    if argv[:1] == ["report"]:  # report RECORD [OUTPUT]
        text = report(Path(argv[1]))
        if len(argv) > 2:
            Path(argv[2]).write_text(text, encoding="utf-8")
        else:
            print(text, end="")
        return 0
    args = build_parser().parse_args(argv)
    settings = replace(TINY if args.tiny else DemoSettings(), corpus=args.corpus, mode=args.mode,
                       exclude_source_eos=args.exclude_source_eos)
    root = args.dir or Path("work/demo-tiny" if args.tiny else "work/demo")
    corpus = Corpus(settings.corpus, vocab_size=settings.vocab_size, valid_size=settings.valid_size,
                    test_size=settings.test_size, source=args.source, max_train=settings.max_train,
                    folder_name="corpus")
    runner.add_screen_handler()
    failures = runner.execute(root, [Demo(corpus, settings)], parallel=1)
    if failures:
        for failure in failures:
            print("FAILED:", failure)
        return 1
    print(summary(root, corpus, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
