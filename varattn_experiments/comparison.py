"""The converged comparison of the attention modes, as runner jobs.

Every mode (``soft``, ``var-enum``, ... for the LSTM; ``transformer-MODE`` for the Transformer,
``transformer-none-MODE`` and ``transformer-below-top-MODE`` for its other decoder designs)
and seed trains on every corpus with the same flags and the same maximum number of updates,
validating every epoch: the learning rate is halved whenever the validation bound does not
improve (the negative ELBO for the variational modes, the exact objective otherwise) and
training stops after ``patience`` validations without improvement. Then, on
``checkpoint_best.pt``: fairseq-validate on the test set, varattn-diagnose, beam search with the
paper's settings (beam 10, --gnmt-lenpen 1, --eos-penalty 3) with exact and K-max (K=5)
marginalisation and exact without the EOS penalty, detokenised sacreBLEU; word alignments of the
test set from the prior, q and the exact posterior (varattn-align --words) scored with
varattn-aer against the reference links, and the share of links on the boundary words.

Corpora: ``ding``, ``libreoffice``, ``lohelp`` (real, German -> English; reference links from
eflomal, so AER is agreement with eflomal) and ``syn-TASK`` (synthetic tasks with known
alignments: monotone, local, fertility, null).

Run CORPUS/MODE-seedS lives in ROOT/CORPUS/MODE-seedS (manifest.json, train.log, eval/, align/).
With an archive, every finished run's small files are copied there (no checkpoints), and a run
the archive holds as finished is not trained again.
"""

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Sequence

from var_attn_plugin.errors import UsageError
from var_attn_plugin.latent.modes import ATTENTION_MODES
from var_attn_plugin.presets import LSTM_PRESETS, TRANSFORMER_PRESETS, flags

from .corpora import PREPARERS, Corpus
from .entries import (
    QFIRST,
    QLONG,
    QLONG_FACTOR,
    attention_mode,
    cool,
    design,
    is_transformer,
    joint,
    q_first,
    q_long,
    softmax_concentrations,
    suffixes,
    warm_start,
)
from .fairseq_log import iter_records, select_records
from .manifest import Manifest
from .runner import PLUGIN_DIR, Job, Step, tool

EFLOMAL_SPEC = "eflomal==2.0.0"
BEAM, GNMT_LENPEN, EOS_PENALTY, KMAX = 10, 1, 3, 5  # the paper's decoding
EVAL_MAX_TOKENS = 2000


@dataclass(frozen=True)
class Settings:
    """One comparison's recipe; ``FULL`` and ``TINY`` below."""

    max_update: int = 4000
    syn_max_update: int = 3000
    patience: int = 3  # validations without improvement before the training stops
    lr_patience: int = 0  # ... before the lr is halved (fairseq's --lr-patience; 0: after every one)
    lr: float = 1e-2  # Adam, the real corpora (LSTM)
    syn_lr: float = 2e-3
    transformer_lr: float = 2e-3
    transformer_warmup: int = 500
    dropout: float = 0.2
    clip_norm: float = 5.0
    max_tokens: int = 2000
    syn_max_tokens: int = 1000
    sizes: str = "cpu96"
    syn_sizes: str = "syn64"
    vocab_size: int = 1000
    valid_size: int = 1000
    test_size: int = 1000
    max_train: Optional[int] = None
    syn_train: int = 5000
    syn_valid: int = 300
    syn_test: int = 300
    aligner: str = "eflomal"  # or none
    save_interval_updates: int = 0
    exclude_source_eos: bool = False
    q_warmup_updates: int = 500  # MODE-qfirst entries: q alone for this many updates (-qlong: four times)
    soft_loss_weight: float = 1.0  # MODE-joint entries: the soft baseline's likelihood, with this weight
    dirichlet_warmup_updates: int = 0  # var-relaxed: this many updates of hard-enum's objective first


FULL = Settings()
# As near the paper's recipe (docs/METHOD.md §7) as two CPU cores allow, after the early-dynamics
# grid (docs/dynamics.md): its dropout, its alignment candidates (no source EOS) and a learning
# rate at which no prior locks in during the first 1,000 updates (1e-3, the paper's 3e-4 learns
# nothing in 2,000); the earlier comparison's 256-unit one-layer models (the paper's are 512-768
# units, two layers), with which var-enum and var-sample leave the uniform alignment within the
# grid's 1,000 updates and the 96-unit models do not; batches of 2,000 tokens, with a higher
# maximum of updates for the lower rate. The paper halves the lr when a validation does not
# improve, once per epoch of 160k sentences; a corpus of 7k sentences validates 23 times as
# often, and halving after every validation without improvement (the first comparison's rule)
# cut soft attention short (docs/findings.md): the lr is halved after four in a row, and the
# training stops after ten. var-relaxed starts, as in the paper, with about one epoch of the hard
# objective (the paper's 26k updates of 6 sentences; about 100 updates of 2,000 tokens here).
NEAR_PAPER = Settings(lr=1e-3, dropout=0.3, exclude_source_eos=True, max_update=30000, lr_patience=3, patience=10,
                      sizes="cpu256", dirichlet_warmup_updates=100)
# its first runs at the 96-unit sizes, kept runnable (docs/near-paper-cpu96-results.md)
NEAR_PAPER_CPU96 = replace(NEAR_PAPER, sizes="cpu96")
RECIPES = {"cpu": FULL, "near-paper": NEAR_PAPER, "near-paper-cpu96": NEAR_PAPER_CPU96}
# The comparison redone with it (docs/near-paper-results.md, archive docs/runs/near-paper): every
# LSTM mode of the paper's Table 1, and var-sample's two remedies: warm-started from var-enum's checkpoint,
# and its soft baseline trained on its own likelihood too
NEAR_PAPER_CORPORA = ("libreoffice", "ding")
NEAR_PAPER_MODES = tuple(ATTENTION_MODES) + ("var-sample-from-var-enum", "var-sample-joint")
# and beside them the Transformer (docs/METHOD.md §10): no decoder layer with its own soft
# cross-attention (the latent alignment its only view of the source), var-enum warm-started from
# marginal, and fairseq's decoder intact as the reference rows (trained when named: --modes)
NEAR_PAPER_TRANSFORMER_MODES = ("transformer-none-soft", "transformer-none-marginal",
                                "transformer-none-var-enum-from-transformer-none-marginal",
                                "transformer-none-var-sample", "transformer-soft", "transformer-marginal",
                                "transformer-var-enum", "transformer-var-sample")
# The committed reports, each the report of its archive: (archive, report, corpora, modes, curves).
# `converge refresh` regenerates them all and the README's results table after runs are archived.
FIRST_COMPARISON_MODES = ("soft", "marginal", "hard-enum", "var-enum", "var-sample", "transformer-soft",
                          "transformer-marginal", "transformer-var-enum", "transformer-var-sample")
COMMITTED_REPORTS = (
    # the first comparison, at lr 1e-2
    ("docs/converge-runs", "docs/converge-results.md", ("ding", "libreoffice"), FIRST_COMPARISON_MODES,
     "docs/converge-curves.png"),
    ("docs/converge-runs-long", "docs/converge-long-results.md", ("ding", "libreoffice"), FIRST_COMPARISON_MODES,
     "docs/converge-long-curves.png"),
    ("docs/runs/near-paper", "docs/near-paper-results.md", NEAR_PAPER_CORPORA,
     NEAR_PAPER_MODES + NEAR_PAPER_TRANSFORMER_MODES, "docs/near-paper-results-curves.png"),
    # its first runs, at the 96-unit sizes, and the Transformer's
    ("docs/runs/near-paper-cpu96", "docs/near-paper-cpu96-results.md", NEAR_PAPER_CORPORA,
     ("soft", "var-sample", "transformer-none-soft", "transformer-soft", "transformer-none-marginal",
      "transformer-none-var-enum-from-transformer-none-marginal",
      "transformer-none-var-sample-qfirst-from-transformer-none-marginal",
      "transformer-none-var-enum-qfirst-from-transformer-none-marginal"), "docs/near-paper-cpu96-results-curves.png"),
    # the Transformer's warm start from marginal (3,000 updates), q trained alone first or not
    ("docs/runs/qfirst-probe", "docs/qfirst-probe-results.md", ("libreoffice",),
     ("transformer-none-marginal", "transformer-none-var-enum-from-transformer-none-marginal",
      "transformer-none-var-enum-qfirst-from-transformer-none-marginal",
      "transformer-none-var-sample-qfirst-from-transformer-none-marginal"), "docs/qfirst-probe-results-curves.png"),
    # near the paper's recipe, the lr halved after every validation without improvement
    ("docs/runs/near-paper-eager", "docs/near-paper-eager-results.md", ("libreoffice",),
     ("soft", "hard-enum", "var-enum"), "docs/near-paper-eager-results-curves.png"),
)


def refresh_reports(repo: Path = Path(".")) -> List[str]:
    """Regenerate every committed report and its curves from its archive (paths relative to
    ``repo``, as the reports name them), and the README's results table; returns what it wrote."""
    import os

    from . import converge_report

    written = []
    here = Path.cwd()
    os.chdir(repo)
    try:
        for archive, output, corpora, modes, curves in COMMITTED_REPORTS:
            converge_report.main([archive, "--corpora", *corpora, "--modes", *modes, "--seeds", "1", "2",
                                  "--curves", curves, "--output", output])
            written += [output, curves]
        converge_report.write_readme_table(Path("README.md"), Path("."))
        written.append("README.md")
    finally:
        os.chdir(here)
    return written


TINY = Settings(max_update=30, syn_max_update=30, patience=5, sizes="tiny", syn_sizes="tiny", vocab_size=200,
                valid_size=30, test_size=30, max_train=300, syn_train=300, syn_valid=30, syn_test=30,
                max_tokens=1000, transformer_warmup=10, save_interval_updates=5, q_warmup_updates=5)


def synthetic(corpus: str) -> bool:
    return corpus.startswith("syn-")


def distributions(entry: str) -> List[str]:
    mode = attention_mode(entry)
    if mode.startswith("var-"):
        return ["prior", "posterior", "exact-posterior"]
    return ["prior", "exact-posterior"] if mode != "soft" else ["prior"]


@dataclass(frozen=True)
class ComparisonCorpus(Corpus):
    """A corpus of the comparison: its data, pieces (real corpora), data-bin and reference links."""

    settings: Settings = FULL
    archive: Optional[str] = None  # reuse the archive's eflomal links of the same test set

    def config(self) -> dict:
        return {"name": self.name, "settings": asdict(self.settings)}

    def steps(self, root: Path) -> List[Step]:
        s, d = self.settings, self.folder(root)
        kept = ["--kept", str(Path(self.archive) / self.name / "ref")] if self.archive else []
        aligner = ["--eflomal"] if s.aligner == "eflomal" else []
        if not synthetic(self.name):
            steps = Corpus.steps(replace(self, vocab_size=s.vocab_size, valid_size=s.valid_size,
                                         test_size=s.test_size, max_train=s.max_train), root)
        else:
            data = d / "data"
            steps = [
                Step("data", [sys.executable, "-m", "var_attn_plugin.data.synthetic", "--task", self.name[4:],
                              "--output-dir", str(data), "--train-size", str(s.syn_train), "--valid-size",
                              str(s.syn_valid), "--test-size", str(s.syn_test), "--seed", str(self.split_seed)],
                     "prepare.log"),
                Step("binarise", [tool("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
                                  "--trainpref", str(data / "train"), "--validpref", str(data / "valid"),
                                  "--testpref", str(data / "test"), "--destdir", str(d / "data-bin"),
                                  "--workers", "1"], "prepare.log"),
            ]
        if s.aligner == "eflomal":
            steps.append(Step("aligner", [sys.executable, "-c", "import importlib, subprocess, sys\n"
                                          "try: importlib.import_module('eflomal')\n"
                                          "except ImportError: subprocess.check_call([sys.executable, '-m', 'pip', "
                                          f"'install', '--quiet', '--no-build-isolation', '{EFLOMAL_SPEC}'])"],
                              "prepare.log"))
        steps.append(Step("reference", [sys.executable, "-m", "varattn_experiments.steps", "reference", str(d),
                                        *aligner, *kept], "prepare.log"))
        return steps


@dataclass(frozen=True)
class ComparisonRun(Job):
    corpus: ComparisonCorpus
    entry: str  # attention mode, transformer-MODE, ... (varattn_experiments/entries.py)
    seed: int
    settings: Settings = FULL

    @property
    def name(self) -> str:
        return f"{self.entry}-seed{self.seed}"

    def folder(self, root: Path) -> Path:
        return Path(root) / self.corpus.name / self.name

    def config(self) -> dict:
        return {"kind": "comparison", "corpus": self.corpus.name, "entry": self.entry, "seed": self.seed,
                "settings": asdict(self.settings)}

    def warm_start(self) -> Optional["ComparisonRun"]:
        """The run whose best checkpoint starts this one's training (same corpus, seed, settings)."""
        other = warm_start(self.entry)
        return ComparisonRun(self.corpus, other, self.seed, self.settings) if other else None

    def needs(self) -> Sequence[Job]:
        warm = self.warm_start()
        return (self.corpus,) + ((warm,) if warm else ())

    def train_command(self, root: Path) -> List[str]:
        s, run = self.settings, self.folder(root)
        syn = synthetic(self.corpus.name)
        transformer = is_transformer(self.entry)
        command = [
            tool("fairseq-train"), str(self.corpus.data_bin(root)), "--user-dir", str(PLUGIN_DIR),
            "--task", "varattn_translation", "--criterion", "varattn_elbo",
            "--attention-mode", attention_mode(self.entry), "--dropout", str(s.dropout),
            "--optimizer", "adam", "--clip-norm", str(s.clip_norm),
            "--lr-scheduler", "reduce_lr_on_plateau", "--lr-shrink", "0.5", "--lr-patience", str(s.lr_patience),
            "--best-checkpoint-metric", "bound", "--patience", str(s.patience), "--max-epoch", "100000",
            "--no-epoch-checkpoints", "--cpu", "--num-workers", "0", "--log-format", "json", "--log-interval", "50",
            "--ignore-unused-valid-subsets",
            "--max-tokens", str(s.syn_max_tokens if syn else s.max_tokens), "--seed", str(self.seed),
            "--max-update", str(s.syn_max_update if syn else s.max_update), "--save-dir", str(run / "checkpoints"),
        ]
        if s.save_interval_updates:
            command += ["--save-interval-updates", str(s.save_interval_updates), "--keep-interval-updates", "1"]
        if s.exclude_source_eos:
            command += ["--exclude-source-eos"]
        warm = self.warm_start()
        source = warm.folder(root) / "checkpoints" / "checkpoint_best.pt" if warm else None
        if source:
            command += ["--finetune-from-model", str(source)]
        recipe_lr = s.transformer_lr if transformer else s.syn_lr if syn else s.lr
        lr = saved_lr(source) if cool(self.entry) else str(recipe_lr)
        if q_first(self.entry):
            command += ["--q-warmup-updates", str(s.q_warmup_updates * (QLONG_FACTOR if q_long(self.entry) else 1))]
        if joint(self.entry):
            command += ["--soft-loss-weight", str(s.soft_loss_weight)]
        if attention_mode(self.entry) == "var-relaxed" and s.dirichlet_warmup_updates and not q_first(self.entry):
            # (-qfirst: q alone first instead; both at once would train θ without q while q waits)
            command += ["--dirichlet-warmup-updates", str(s.dirichlet_warmup_updates)]
        if softmax_concentrations(self.entry):
            command += ["--dirichlet-transform", "softmax"]
        sizes = s.syn_sizes if syn else s.sizes
        if transformer:
            sizes = "smoke" if sizes == "tiny" else sizes  # the LSTM's tiny sizes are the Transformer's smoke sizes
            command += ["--arch", "varattn_transformer", *flags(TRANSFORMER_PRESETS[sizes]),
                        *([] if design(self.entry) == "all" else ["--soft-cross-attention", design(self.entry)]),
                        "--adam-betas", "(0.9,0.98)", "--lr", lr]
            if not cool(self.entry):  # a -cool warm start goes on at its source's rate
                command += ["--warmup-updates", str(s.transformer_warmup), "--warmup-init-lr", "1e-7"]
        else:
            command += ["--arch", "varattn_lstm", *flags(LSTM_PRESETS[sizes]), "--lr", lr]
        return command

    def steps(self, root: Path) -> List[Step]:
        d, run = self.corpus.folder(root), self.folder(root)
        bin_, ckpt = str(self.corpus.data_bin(root)), str(run / "checkpoints" / "checkpoint_best.pt")
        evaluation = ["--user-dir", str(PLUGIN_DIR), "--task", "varattn_translation",
                      "--max-tokens", str(EVAL_MAX_TOKENS), "--cpu", "--num-workers", "0"]
        steps_cmd = [sys.executable, "-m", "varattn_experiments.steps"]
        steps = [Step("train", self.train_command(root), "train.log", settled=stopped_early)]
        mode = attention_mode(self.entry)
        if not synthetic(self.corpus.name):
            steps.append(Step("validate", [tool("fairseq-validate"), bin_, *evaluation, "--path", ckpt,
                                            "--valid-subset", "test"], "eval/validate.log"))
            steps.append(Step("diagnose", [*steps_cmd, "capture", str(run / "eval" / "diagnose.json"), "--",
                                           tool("varattn-diagnose"), bin_, "--path", ckpt, "--gen-subset", "test",
                                           "--max-tokens", str(EVAL_MAX_TOKENS), "--cpu", "--json"],
                              "eval/diagnose.log"))
            for decoding in (["exact", "kmax", "noeos"] if mode != "soft" else ["exact", "noeos"]):
                latent = "exact" if decoding == "noeos" else decoding
                if mode == "soft":
                    latent = "auto"  # soft attention decodes softly
                generate = [tool("fairseq-generate"), bin_, *evaluation, "--path", ckpt, "--gen-subset", "test",
                            "--beam", str(BEAM), "--gnmt-lenpen", str(GNMT_LENPEN),
                            "--eos-penalty", str(0 if decoding == "noeos" else EOS_PENALTY),
                            "--latent-decoding", latent, "--kmax", str(KMAX), "--remove-bpe", "sentencepiece"]
                steps.append(Step(f"bleu-{decoding}", [*steps_cmd, "bleu", str(run / "eval"), decoding,
                                                       str(d / "data" / "test.en"), "--", *generate],
                                  f"eval/generate-{decoding}.log"))
            source = ["--source-file", str(d / "data" / "test.de"), "--target-file", str(d / "data" / "test.en"),
                      "--spm", str(d / "spm" / "spm.de.model"), "--target-spm", str(d / "spm" / "spm.en.model")]
        else:
            source = ["--gen-subset", "test"]
        dists = distributions(self.entry)
        steps.append(Step("align", [*steps_cmd, "align", str(run / "align"), *dists, "--", bin_, "--path", ckpt,
                                    *source, "--words", "--cpu", "--max-tokens", str(EVAL_MAX_TOKENS)],
                          "align/align.log"))
        predictions = [str(run / "align" / f"{dist}.align") for dist in dists]
        if self.settings.aligner == "eflomal" or synthetic(self.corpus.name):
            steps.append(Step("aer", [*steps_cmd, "score", str(d / "ref" / "gold.align"), *predictions],
                              "align/align.log"))
        steps.append(Step("boundaries", [*steps_cmd, "boundaries", str(d / "data" / "test.de"), *predictions],
                          "align/align.log"))
        return steps


def stopped_early(run_dir: Path) -> bool:
    """Did the run's training stop early (fairseq's "early stop" line)? Then raising the maximum
    of updates does not continue it."""
    log = run_dir / "train.log"
    return log.is_file() and "early stop" in log.read_text(encoding="utf-8", errors="replace")


def saved_lr(checkpoint: Path) -> str:
    """The learning rate a fairseq checkpoint's optimiser held when it was saved, for ``--lr``
    (``-cool`` entries). Before the source has trained, a placeholder that names it: the runner
    builds the command again, from the checkpoint, when the source has finished."""
    if not checkpoint.is_file():
        return f"LR-OF-{checkpoint}"
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return repr(float(state["last_optimizer_state"]["param_groups"][0]["lr"]))


def runs(corpora: Sequence[str], entries: Sequence[str], seeds: Sequence[int], settings: Settings = FULL,
         archive: Optional[Path] = None, sources: Optional[dict] = None) -> List[ComparisonRun]:
    """Seed by seed on each corpus, synthetic tasks first (the cheapest, with gold links)."""
    ordered = sorted(corpora, key=lambda c: not synthetic(c))
    for corpus in ordered:
        if not synthetic(corpus) and corpus not in PREPARERS:
            raise UsageError(f"unknown corpus {corpus!r}: {', '.join(PREPARERS)} or syn-TASK")
    for entry in entries:
        for part in filter(None, (entry, warm_start(entry))):
            if attention_mode(part) not in ATTENTION_MODES:
                raise UsageError(f"unknown mode {part!r}: MODE, transformer-MODE, transformer-below-top-MODE or "
                                 f"transformer-none-MODE (ENTRY-from-ENTRY: a warm start), MODE one of "
                                 f"{', '.join(ATTENTION_MODES)}")
            spec = ATTENTION_MODES[attention_mode(part)]
            if q_first(part) and not spec.variational:
                raise UsageError(f"{part!r}: -qfirst and -qlong train the inference network q of a variational "
                                 f"mode (var-*) first; {attention_mode(part)} has none")
            if {QFIRST, QLONG} <= set(suffixes(part)):
                raise UsageError(f"{part!r}: pass one of -qfirst (q alone for the recipe's q-only updates) "
                                 "and -qlong (four times as many)")
            if joint(part) and not (spec.soft_output and spec.sample_from):
                raise UsageError(f"{part!r}: -joint trains the soft baseline of a sampled mode (hard-sample, "
                                 f"var-sample) on its own likelihood; {attention_mode(part)} has none")
            if softmax_concentrations(part) and spec.relaxation != "dirichlet":
                raise UsageError(f"{part!r}: -softmax sets the Dirichlet concentrations of var-relaxed; "
                                 f"{attention_mode(part)} has none: drop -softmax, or use var-relaxed-softmax")
            if cool(part) and not warm_start(part):
                raise UsageError(f"{part!r}: -cool trains a warm start at the learning rate its source ended "
                                 f"with; name the source: {part}-from-OTHER")
        if warm_start(entry) and is_transformer(entry) != is_transformer(warm_start(entry)):
            raise UsageError(f"{entry!r} starts one architecture from the other's checkpoint: warm-start the "
                             "LSTM from an LSTM entry and the Transformer from a Transformer entry")
    out = []
    for corpus in ordered:
        c = ComparisonCorpus(corpus, settings=settings, archive=str(archive) if archive else None,
                             source=(sources or {}).get(corpus))
        for seed in seeds:
            for entry in entries:
                out.append(ComparisonRun(c, entry, seed, settings))
    return out


# ---------------------------------------------------------------------- archive

CORPUS_FILES = ("data/stats.json", "ref/*.aer.json", "ref/*.boundaries.json", "ref/gold.align", "ref/test.sha256")
RUN_FILES = ("manifest.json", "train.log", "eval/validate.log", "eval/diagnose.json", "eval/bleu-*.json",
             "align/*.aer.json", "align/*.boundaries.json")


def copy_files(source: Path, target: Path, patterns: Sequence[str]) -> int:
    """Copy ``source``'s files matching ``patterns`` to the same places under ``target`` and remove
    those of ``target`` that ``source`` no longer has (a step redone); returns how many changed."""
    changed = 0
    for pattern in patterns:
        for stale in sorted(target.glob(pattern)):
            if stale.is_file() and not (source / stale.relative_to(target)).is_file():
                stale.unlink()
                changed += 1
        for path in sorted(source.glob(pattern)):
            if not path.is_file() or path.name.endswith(".tmp") or ".tmp" in path.suffixes:
                continue
            destination = target / path.relative_to(source)
            data = path.read_bytes()
            if destination.is_file() and destination.read_bytes() == data:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            tmp = destination.with_name(destination.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(destination)
            changed += 1
    return changed


def last_update(run_dir: Path) -> int:
    """The last update a run's train.log reached (0 without one)."""
    parsed = list(iter_records(Path(run_dir) / "train.log"))  # read once, for both categories
    updates = [int(r["num_updates"]) for r in select_records(parsed, "train_inner")]
    updates += [int(r["valid_num_updates"]) for r in select_records(parsed, "valid")]
    return max(updates, default=0)


def behind_its_record(run: Path, kept: Path) -> Optional[str]:
    """Why ROOT's ``run`` stays out of the archive, or None: unfinished and behind the archive's
    copy ``kept`` (ROOT lost and the run started again), whose longer record then stays until the
    new run passes it."""
    manifest = Manifest.read(run)
    if manifest is None or manifest.done("train") or not (kept / "train.log").is_file():
        return None
    ours, theirs = last_update(run), last_update(kept)
    return f"update {theirs} against {ours}" if ours < theirs else None


def other_reference(source: Path, target: Path) -> bool:
    """Do two corpus folders hold different reference links of the same test set (two eflomal
    samples)? Then AER scored under one does not belong beside AER scored under the other."""
    a, b = source / "ref", target / "ref"
    return all((d / name).is_file() for d in (a, b) for name in ("test.sha256", "gold.align")) \
        and (a / "test.sha256").read_text() == (b / "test.sha256").read_text() \
        and (a / "gold.align").read_bytes() != (b / "gold.align").read_bytes()


def archive(root: Path, destination: Path, corpora: Sequence[str]) -> int:
    """Copy what the report reads (no checkpoints, no data) of every corpus and run under ROOT."""
    changed = 0
    for corpus in corpora:
        source = Path(root) / corpus
        if not source.is_dir():
            continue
        if other_reference(source, Path(destination) / corpus):
            print(f"archive: {corpus} not archived: {source / 'ref'} holds other reference links than "
                  f"{Path(destination) / corpus / 'ref'} for the same test set (another eflomal sample), so its "
                  f"runs' AER would not compare with the archive's. Run `converge run` with --archive "
                  f"{destination}: the corpus's reference step then takes the archive's links; then score the "
                  f"runs again (delete their align/*.aer.json and rerun)")
            continue
        changed += copy_files(source, Path(destination) / corpus, CORPUS_FILES)
        for run in sorted(p for p in source.iterdir() if (p / "manifest.json").is_file()):
            kept = Path(destination) / corpus / run.name
            behind = behind_its_record(run, kept)
            if behind:
                print(f"archive: kept {kept}, which got further than {run} ({behind}), until the new run passes it")
                continue
            changed += copy_files(run, kept, RUN_FILES)
    return changed


def finished_in(archive_dir: Path, run: ComparisonRun, root: Path) -> bool:
    """Does the archive hold this run as finished (every step done, or its figures transcribed), while
    ROOT has not started it? Then it is not trained again."""
    if (run.folder(root) / "manifest.json").is_file():
        return False
    kept = Path(archive_dir) / run.corpus.name / run.name
    if (kept / "transcribed.json").is_file():
        return True
    manifest = Manifest.read(kept)
    if manifest is None:
        return False
    names = [step.name for step in run.steps(root)]
    return all(manifest.done(name) for name in names)


@dataclass
class Plan:
    todo: List[ComparisonRun] = field(default_factory=list)
    kept: List[ComparisonRun] = field(default_factory=list)


def plan(all_runs: Sequence[ComparisonRun], root: Path, archive_dir: Optional[Path]) -> Plan:
    out = Plan()
    for run in all_runs:
        (out.kept if archive_dir and finished_in(archive_dir, run, root) else out.todo).append(run)
    return out
