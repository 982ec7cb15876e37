"""The report of the converged comparison (varattn_experiments.comparison): results page and curves.

    python -m varattn_experiments converge report --archive docs/converge-runs \
        --corpora ding libreoffice --modes soft var-enum --seeds 1 2

Reads, for run ARCHIVE/CORPUS/MODE-seedS: manifest.json (the runner's: which steps finished, the
training's attempts, times and pauses), train.log (fairseq's JSON log lines: the validation
curve, early stopping), eval/validate.log (fairseq-validate on the test set),
eval/diagnose.json (varattn-diagnose), eval/bleu-{exact,kmax,noeos}.json (sacreBLEU),
align/DIST.aer.json (varattn-aer) and align/DIST.boundaries.json. Works on partial results: a
run that has not finished a step shows what it has and is marked as such.

Numbers are mean ± half the range over the finished seeds. fairseq logs in bits; KL and
entropies are given in nats like the paper (per target token), perplexities per subword
(EOS included). Wall time is the sum over a training's attempts of the time from the attempt's
start to its end, less the time it spent paused (the manifest's pauses); an attempt that found
no checkpoint to resume from starts the sum, and the curve, anew.

A run folder may instead hold ``transcribed.json``: the figures of a run whose files were lost,
copied from an earlier report (its ``provenance`` says from where). Such a run counts like the
others in the tables, marked †, and has no learning curve. Its keys: updates, wall_minutes,
early_stop, test (ppl, bound_ppl, kl_nats, prior_ent_nats, post_ent_nats), bleu (exact, kmax),
aer (prior, posterior, exact-posterior) and diagnosis (varattn-diagnose's keys); null or absent
where the report had no figure.
"""

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from var_attn_plugin.latent.modes import ATTENTION_MODES

from .entries import attention_mode
from .manifest import Manifest

FRESH_START = "No existing checkpoint found"  # fairseq: this attempt trains from the beginning
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
TRANSCRIBED = "transcribed.json"
# converge.sh's decodings: beam 10 with the paper's length and EOS penalties, exact or K-max
# marginalisation; and exact (soft attention: soft) without the EOS penalty
DECODINGS = ("exact", "kmax", "noeos")
DISTRIBUTIONS = (("prior", "prior (attention)"), ("posterior", "posterior q"),
                 ("exact-posterior", "exact posterior"))
SYNTHETIC_NAMES = {"monotone": "monotone", "local": "local reordering", "fertility": "fertility (one-to-many)",
                   "null": "null words"}


# ----------------------------------------------------------------------------- reading one run


@dataclass
class Curve:
    updates: List[float] = field(default_factory=list)
    wall: List[float] = field(default_factory=list)  # seconds
    ppl: List[float] = field(default_factory=list)  # exact validation perplexity


@dataclass
class TrainLog:
    updates: Optional[int] = None  # the last update logged
    wall: float = 0.0  # seconds, summed over attempts
    attempts: int = 0
    early_stop: bool = False
    curve: Curve = field(default_factory=Curve)
    last_valid: Dict[str, str] = field(default_factory=dict)  # the last validation's record, as logged
    lr: Optional[float] = None  # the last logged learning rate
    threads: int = 1  # the most torch threads an attempt that counts trained with (runner's --threads)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT)


def epoch_seconds(text: str) -> float:
    """A log line's time (the machines log in UTC) as seconds since the epoch, like the manifest's."""
    return parse_time(text).replace(tzinfo=timezone.utc).timestamp()


def read_train_log(path: Path, manifest: Optional[Manifest]) -> TrainLog:
    """Updates, wall time and the validation curve of one run: attempts, times and pauses from the
    manifest, the curve and early stopping from fairseq's log lines."""
    log = TrainLog()
    attempts = manifest.data["steps"].get("train", {}).get("attempts", []) if manifest else []
    log.attempts = len(attempts)

    def active(attempt, until: float) -> float:
        """Seconds of ``attempt`` from its start to ``until``, pauses left out."""
        paused = sum(min(stop if stop is not None else until, until) - start
                     for start, stop in attempt["pauses"] if start < until)
        return until - attempt["started"] - paused

    def attempt_of(when: float) -> int:
        index = 0
        for k, attempt in enumerate(attempts):
            if attempt["started"] <= when:
                index = k
        return index

    points: Dict[float, Tuple[float, float]] = {}  # updates -> (wall, ppl); a resumed attempt may repeat one
    logged: Dict[int, float] = {}  # attempt -> its last log line's time: where a running attempt's time ends
    first = 0  # the first attempt that counts: an attempt that started from scratch discards the earlier ones
    if path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    else:
        lines = []
    for line in lines:
        stamp = _TIMESTAMP.match(line)
        if stamp is None:
            continue
        when = epoch_seconds(stamp.group(1))
        k = attempt_of(when)
        logged[k] = when
        if FRESH_START in line and attempts:
            first = k
            points.clear()
            log.early_stop = False
        if "early stop" in line:
            log.early_stop = True
        head, brace, rest = line.partition("{")
        if not brace or not (" | valid | " in head or " | train | " in head or " | train_inner | " in head):
            continue
        try:
            record = json.loads(brace + rest)
        except ValueError:
            continue
        for key in ("num_updates", "train_num_updates", "valid_num_updates"):
            if key in record:
                log.updates = int(float(record[key]))
        for key in ("lr", "train_lr"):
            if key in record:
                log.lr = float(record[key])
        if " | valid | " in head:
            log.last_valid = record
            if "valid_ppl" in record and attempts:
                before = sum(active(a, a["ended"]) for a in attempts[first:k] if a["ended"] is not None)
                points[float(record["valid_num_updates"])] = (before + active(attempts[k], when),
                                                              float(record["valid_ppl"]))
    # a running attempt counts to its log's last line, so that the report is the same whenever made
    log.wall = sum(active(a, a["ended"] if a["ended"] is not None else max(logged.get(k, 0.0), a["started"]))
                   for k, a in enumerate(attempts) if k >= first)
    log.threads = max([int(a.get("threads") or 1) for a in attempts[first:]], default=1)
    for updates in sorted(points):
        log.curve.updates.append(updates)
        log.curve.wall.append(points[updates][0])
        log.curve.ppl.append(points[updates][1])
    return log


def read_validate(path: Path) -> Dict[str, float]:
    """The metrics of ``fairseq-validate --valid-subset test`` (simple log format): of its last
    attempt, since a step's log is appended to when the step runs again (a run evaluated again
    after it trained on)."""
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if "valid on 'test' subset" in line]
    return {key: float(value) for key, value in re.findall(r"\| (\w+) ([-+0-9.eE]+|inf|nan)", lines[-1])} \
        if lines else {}


def read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class Run:
    corpus: str
    mode: str
    seed: str
    path: Path
    steps: Dict[str, bool]
    train: TrainLog
    metrics: Dict[str, float]
    bleu: Dict[str, Optional[float]]
    aer: Dict[str, Optional[float]]
    diagnosis: Dict[str, Optional[float]] = field(default_factory=dict)  # varattn-diagnose --json
    transcribed: Optional[str] = None  # where the figures of a lost run were copied from
    # per distribution, the share of its links on the first and on the last source word and on each
    # sentence's busiest word (steps.py boundaries; busiest None where not measured)
    boundaries: Dict[str, Tuple[float, float, Optional[float]]] = field(default_factory=dict)
    # per decoding, the translations' length over the references' (sacreBLEU's ratio)
    length_ratio: Dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.steps.get("train", False)

    @property
    def status(self) -> str:
        if self.transcribed:
            return "transcribed"
        if not self.path.is_dir() or not (self.path / "train.log").is_file():
            return "not started"
        if not self.trained:
            return "training"
        return "evaluated" if self.metrics or self.corpus.startswith("syn-") else "evaluating"


def read_transcribed(path: Path, corpus: str, mode: str, seed: str) -> Run:
    """A lost run's figures as an earlier report gave them (``transcribed.json``)."""
    record = read_json(path / TRANSCRIBED)
    if record is None or not record.get("provenance"):
        raise SystemExit(f"{path / TRANSCRIBED}: not a JSON object with a provenance (where its figures were "
                         "copied from); add one, or remove the file")
    bits = math.log(2)  # the metrics are kept as fairseq logs them, in bits
    metrics = {}
    for key, value in (record.get("test") or {}).items():
        if value is not None:
            if key.endswith("_nats"):
                key, value = key[: -len("_nats")], value / bits
            metrics[key] = value
    bleu = {decoding: (record.get("bleu") or {}).get(decoding) for decoding in DECODINGS}
    aer = {distribution: (record.get("aer") or {}).get(distribution) for distribution, _ in DISTRIBUTIONS}
    train = TrainLog(updates=record.get("updates"), wall=60.0 * (record.get("wall_minutes") or 0.0), attempts=1,
                     early_stop=bool(record.get("early_stop")))
    diagnosis = {k: v for k, v in (record.get("diagnosis") or {}).items() if v is not None}
    return Run(corpus, mode, seed, path, {"train": True}, train, metrics, bleu, aer, diagnosis,
               transcribed=str(record["provenance"]))


def read_run(root: Path, corpus: str, mode: str, seed: str) -> Run:
    path = root / corpus / f"{mode}-seed{seed}"
    if (path / TRANSCRIBED).is_file() and not (path / "train.log").is_file():
        return read_transcribed(path, corpus, mode, seed)
    manifest = Manifest.read(path)
    steps = {name: bool(step["done"]) for name, step in manifest.data["steps"].items()} if manifest else {}
    bleu = {}
    length_ratio = {}
    for decoding in DECODINGS:
        report = read_json(path / "eval" / f"bleu-{decoding}.json") if steps.get(f"bleu-{decoding}") else None
        bleu[decoding] = float(report["score"]) if report else None
        ratio = re.search(r"ratio = ([0-9.]+)", str((report or {}).get("verbose_score", "")))
        length_ratio[decoding] = float(ratio.group(1)) if ratio else None
    aer = {}
    for distribution, _ in DISTRIBUTIONS:
        report = read_json(path / "align" / f"{distribution}.aer.json") if steps.get("aer") else None
        aer[distribution] = report.get("aer") if report else None
    metrics = read_validate(path / "eval" / "validate.log") if steps.get("validate") else {}
    diagnosis = (read_json(path / "eval" / "diagnose.json") if steps.get("diagnose") else None) or {}
    boundaries = {}
    for distribution, _ in DISTRIBUTIONS:
        shares = read_boundaries(path / "align" / f"{distribution}.boundaries.json") if steps.get("boundaries") \
            else None
        if shares:
            boundaries[distribution] = shares
    return Run(corpus, mode, seed, path, steps, read_train_log(path / "train.log", manifest), metrics, bleu, aer,
               diagnosis,
               boundaries=boundaries, length_ratio=length_ratio)


def read_boundaries(path: Path) -> Optional[Tuple[float, float, Optional[float]]]:
    """(first, last, busiest) shares; busiest is None in files written before it was measured."""
    shares = read_json(path)
    if not shares or shares.get("first") is None:
        return None
    return shares["first"], shares["last"], shares.get("busiest")


# ----------------------------------------------------------------------------- tables


def spread(values: Sequence[Optional[float]], digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± half-range`` of the values that exist; ``—`` when none does."""
    values = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def minutes(logs: Sequence[TrainLog]) -> str:
    """The runs' wall time in minutes, marked ``‡`` when one trained with more than one thread."""
    mark = " ‡" if any(log.threads > 1 for log in logs) else ""
    return spread([log.wall / 60 for log in logs], digits=1) + mark


def seeds_note(runs: Sequence[Run], finished: Sequence[Run]) -> str:
    """`` †`` when a finished run's figures are transcribed; if not all seeds are finished, how many
    are and what each of the others is doing."""
    mark = " †" if any(r.transcribed for r in finished) else ""
    if len(finished) == len(runs):
        return mark
    waiting = [r for r in runs if r not in finished]
    states = []
    for state in sorted({r.status for r in waiting}):
        seeds = [r.seed for r in waiting if r.status == state]
        states.append(f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(seeds)} {state}")
    return f"{mark} ({len(finished)}/{len(runs)} seeds; {'; '.join(states)})"


def translation_table(runs_by_mode: Dict[str, List[Run]]) -> List[str]:
    rows = ["| mode | exact PPL | bound PPL | KL (nats) | prior ent (nats) | post ent (nats) | BLEU exact | "
            "BLEU K-max | BLEU, no EOS penalty | length / reference (exact; no EOS penalty) | updates | "
            "wall time (min) | early stops |",
            "|---" * 13 + "|"]
    nats = math.log(2)
    for mode, runs in runs_by_mode.items():
        finished = [r for r in runs if r.metrics]
        trained = [r for r in runs if r.trained]
        note = seeds_note(runs, finished)
        if not finished:
            rows.append(f"| {mode}{note} | — | — | — | — | — | — | — | — | — | "
                        f"{spread([r.train.updates for r in runs if r.train.updates is not None], 0)} | "
                        f"{minutes([r.train for r in runs if r.train.attempts])} | — |")
            continue
        m = [r.metrics for r in finished]
        kmax = "—" if attention_mode(mode) == "soft" else spread([r.bleu["kmax"] for r in finished])
        rows.append(
            f"| {mode}{note} | {spread([x.get('ppl') for x in m])} | {spread([x.get('bound_ppl') for x in m])} | "
            f"{spread([x.get('kl', 0.0) for x in m], 3, nats)} | {spread([x.get('prior_ent') for x in m], 3, nats)} | "
            f"{spread([x.get('post_ent') for x in m], 3, nats)} | {spread([r.bleu['exact'] for r in finished])} | "
            f"{kmax} | {spread([r.bleu.get('noeos') for r in finished])} | "
            f"{spread([r.length_ratio.get('exact') for r in finished])}; "
            f"{spread([r.length_ratio.get('noeos') for r in finished])} | "
            f"{spread([r.train.updates for r in finished], 0)} | "
            f"{minutes([r.train for r in finished])} | {sum(r.train.early_stop for r in trained)}/{len(runs)} |")
    return rows


def progress_table(runs_by_mode: Dict[str, List[Run]]) -> List[str]:
    """Where each run still training stands: its last validation (on the validation set)."""
    rows = ["| run | updates | lr | valid PPL | bound PPL | KL (nats) | prior ent (nats) | post ent (nats) | "
            "prior's largest prob. | prior on source EOS | wall time (min) |", "|---" * 11 + "|"]
    nats = math.log(2)

    def value(record, key, digits, scale=1.0):
        v = record.get("valid_" + key)
        return spread([None if v is None else float(v)], digits, scale)

    for mode, runs in runs_by_mode.items():
        for r in runs:
            if r.status != "training" or not r.train.last_valid:
                continue
            v = r.train.last_valid
            lr = "—" if r.train.lr is None else f"{r.train.lr:.3g}"
            rows.append(f"| {mode} seed {r.seed} | {r.train.updates} | {lr} | {value(v, 'ppl', 2)} | "
                        f"{value(v, 'bound_ppl', 2)} | {value(v, 'kl', 3, nats)} | {value(v, 'prior_ent', 3, nats)} | "
                        f"{value(v, 'post_ent', 3, nats)} | {value(v, 'prior_max', 2)} | {value(v, 'prior_eos', 2)} | "
                        f"{minutes([r.train])} |")
    return rows if len(rows) > 2 else []


DIAGNOSIS_COLUMNS = (("ppl", "exact PPL", 2), ("ppl_other_source", "PPL, another sentence's source", 2),
                     ("kl_posterior_prior", "KL(exact posterior ‖ prior) (nats)", 3),
                     ("position_spread", "spread of ℓ_t(j) over j (nats)", 3),
                     ("prior_entropy", "prior ent (nats)", 3), ("uniform_entropy", "uniform (nats)", 3))


def diagnosis_table(runs_by_mode: Dict[str, List[Run]]) -> List[str]:
    """varattn-diagnose's figures: does each model use its alignment, and the source?"""
    rows = ["| mode | " + " | ".join(title for _, title, _ in DIAGNOSIS_COLUMNS) + " |",
            "|---" * (len(DIAGNOSIS_COLUMNS) + 1) + "|"]
    for mode, runs in runs_by_mode.items():
        finished = [r for r in runs if r.diagnosis]
        cells = [spread([r.diagnosis.get(key) for r in finished], digits) for key, _, digits in DIAGNOSIS_COLUMNS]
        rows.append(f"| {mode}{seeds_note(runs, finished)} | " + " | ".join(cells) + " |")
    return rows


def alignment_table(runs_by_mode: Dict[str, List[Run]], references: Dict[str, Optional[float]]) -> List[str]:
    rows = ["| alignments | " + " | ".join(title for _, title in DISTRIBUTIONS) + " |",
            "|---" * (len(DISTRIBUTIONS) + 1) + "|"]
    for name, value in references.items():
        rows.append(f"| {name} | " + " | ".join([spread([value], 3)] * len(DISTRIBUTIONS)) + " |")
    for mode, runs in runs_by_mode.items():
        finished = [r for r in runs if any(v is not None for v in r.aer.values())]
        cells = [spread([r.aer[d] for r in finished], 3) for d, _ in DISTRIBUTIONS]
        rows.append(f"| {mode}{seeds_note(runs, finished)} | " + " | ".join(cells) + " |")
    return rows


def boundary_table(runs_by_mode: Dict[str, List[Run]],
                   references: Dict[str, Tuple[float, float, Optional[float]]]) -> List[str]:
    """Share of the links on the first / the last source word, and on each sentence's busiest
    source word, per distribution."""
    rows = ["| links on the first / last source word; on the sentence's busiest word | "
            + " | ".join(title for _, title in DISTRIBUTIONS) + " |",
            "|---" * (len(DISTRIBUTIONS) + 1) + "|"]
    for name, (first, last, busiest) in references.items():
        cell = f"{first:.2f} / {last:.2f}; " + (f"{busiest:.2f}" if busiest is not None else "—")
        rows.append(f"| {name} | " + " | ".join([cell] * len(DISTRIBUTIONS)) + " |")
    for mode, runs in runs_by_mode.items():
        finished = [r for r in runs if r.boundaries]
        if not finished:
            continue
        cells = []
        for distribution, _ in DISTRIBUTIONS:
            shares = [r.boundaries[distribution] for r in finished if distribution in r.boundaries]
            firsts, lasts, busiest = ([share[k] for share in shares] for k in range(3))
            cells.append(f"{spread(firsts)} / {spread(lasts)}; {spread(busiest)}" if shares else "—")
        rows.append(f"| {mode}{seeds_note(runs, finished)} | " + " | ".join(cells) + " |")
    return rows


def reference_boundaries(root: Path, corpus: str) -> Dict[str, Tuple[float, float, Optional[float]]]:
    found = {}
    gold = "true links" if corpus.startswith("syn-") else "eflomal (the reference links)"
    for name, title in (("gold", gold), ("eflomal-forward", "eflomal, forward direction alone"),
                        ("diagonal", "diagonal baseline")):
        shares = read_boundaries(root / corpus / "ref" / f"{name}.boundaries.json")
        if shares:
            found[title] = shares
    return found


def reference_scores(root: Path, corpus: str) -> Dict[str, Optional[float]]:
    """The reference rows of converge.sh's ref/ folder. On a real corpus, where eflomal's links are
    the reference, its forward direction alone (at most one source word per target word, like a
    model's argmax links) and another eflomal sample show what the reference itself allows."""
    scores = {}
    eflomal = "eflomal (grow-diag-final-and)" if corpus.startswith("syn-") else \
        "eflomal, another sample (grow-diag-final-and)"
    for name, title in (("diagonal", "diagonal baseline"),
                        ("eflomal-forward", "eflomal, forward direction alone (one source word per target word)"),
                        ("eflomal", eflomal)):
        report = read_json(root / corpus / "ref" / f"{name}.aer.json")
        if report is not None:
            scores[title] = report.get("aer")
    return scores


def corpus_title(corpus: str) -> str:
    if corpus.startswith("syn-"):
        task = corpus[len("syn-"):]
        return f"synthetic task: {SYNTHETIC_NAMES.get(task, task)}"
    return {"ding": "Ding (German-English dictionary sentences)",
            "libreoffice": "LibreOffice UI strings (German-English)"}.get(corpus, corpus)


def data_line(root: Path, corpus: str) -> str:
    stats = read_json(root / corpus / "data" / "stats.json")
    if stats:
        return (f"Data: {stats.get('train_pairs')} train / {stats.get('valid_pairs')} valid / "
                f"{stats.get('test_pairs')} test pairs.")
    test = root / corpus / "data" / "test.de"
    if test.is_file():
        return f"Data: {len(test.read_text(encoding='utf-8').splitlines())} test pairs."
    return "Data: not prepared yet."


def report(root: Path, corpora: Sequence[str], modes: Sequence[str], seeds: Sequence[str]) -> Tuple[str, dict]:
    """The markdown text and, per corpus and mode, the runs (for the curves)."""
    lines = [f"# Converged comparison ({root})", "",
             f"Modes: {', '.join(modes)}; seeds: {', '.join(seeds)}. Mean ± half the range over the "
             "finished seeds; a row says how many seeds it has when runs are missing. Perplexities per "
             "subword on the test set from checkpoint_best.pt (the best validation bound); KL and entropies "
             "in nats per target token (var-relaxed's bound and KL: those of its Dirichlets, for the runs "
             "that validate it by its own ELBO, docs/METHOD.md §5); BLEU: detokenised sacreBLEU, beam 10, "
             "--gnmt-lenpen 1, "
             "--eos-penalty 3 (the paper's), exact or K-max (K=5) marginalisation (soft attention decodes "
             "softly), and exact without the EOS penalty; length / reference: the translations' length over "
             "the references' (sacreBLEU's ratio); updates and wall time until the training stopped (early stop "
             "or the maximum), one torch thread per run unless marked ‡ (more threads for some or all of its "
             "attempts, the runner's --threads: not comparable with the others).", ""]
    all_runs = {}
    for corpus in corpora:
        runs_by_mode = {mode: [read_run(root, corpus, mode, seed) for seed in seeds] for mode in modes}
        all_runs[corpus] = runs_by_mode
        lines += [f"## {corpus_title(corpus)}", "", data_line(root, corpus), ""]
        if not corpus.startswith("syn-"):
            lines += translation_table(runs_by_mode) + [""]
            progress = progress_table(runs_by_mode)
            if progress:
                lines += ["Runs still training, at their last validation (validation set; KL and entropies in nats "
                          "per target token):", ""] + progress + [""]
            if any(r.diagnosis for runs in runs_by_mode.values() for r in runs):
                lines += ["Does the model use its alignment? (varattn-diagnose on the test set: the perplexity "
                          "when each target is scored against another sentence's source, and how far seeing "
                          "the word moves the alignment; zero KL and spread: the aligned position does not "
                          "matter to the word; ℓ_t(j) = log p(y_t | z_t = j))", ""]
                lines += diagnosis_table(runs_by_mode) + [""]
        gold = (root / corpus / "ref" / "gold.align").is_file()
        if corpus.startswith("syn-"):
            lines.append("Alignment error rate (AER, word level) against the true alignment of the test set:")
        elif gold:
            lines.append("Agreement with eflomal (AER against its grow-diag-final-and links of the test set, "
                         "word level; not gold links):")
        else:
            lines.append("No reference alignment (ALIGNER=none): alignments are written but not scored.")
        lines += [""] + alignment_table(runs_by_mode, reference_scores(root, corpus)) + [""]
        if any(r.boundaries for runs in runs_by_mode.values() for r in runs):
            lines += ["Where the links go: the share of each distribution's links on the first and on the last "
                      "source word of the sentence (the boundary states of the bidirectional encoder summarise "
                      "the whole sentence; a model whose alignment carries little drifts there), and on the word "
                      "of each sentence that holds the most of its links (1 when one position takes them all; "
                      "— where not measured):", ""]
            lines += boundary_table(runs_by_mode, reference_boundaries(root, corpus)) + [""]
    transcribed: Dict[str, List[str]] = {}  # provenance -> runs
    for runs_by_mode in all_runs.values():
        for runs in runs_by_mode.values():
            for r in runs:
                if r.transcribed:
                    transcribed.setdefault(r.transcribed, []).append(f"{r.corpus} {r.mode} seed {r.seed}")
    if transcribed:
        lines += ["† The row includes runs whose own files were lost; their figures are copied from an earlier "
                  "report, and they have no learning curve:", ""]
        lines += [f"- {', '.join(names)}: {provenance}" for provenance, names in transcribed.items()] + [""]
    return "\n".join(lines), all_runs


# The README's results table: per model, its label, its archive, the prefix its mode names drop
# in the table, and its modes. The LSTM near the paper's recipe, its modes in the order of the
# paper's Table 1 and then the remedies of var-sample's collapse; then, at the same 96-unit
# sizes, the LSTM, the latent Transformer whose decoder reads the source only through the
# latent alignment, and the Transformer that keeps fairseq's soft cross-attention in every layer.
# A row or a corpus appears once one of its runs is evaluated, so that the table grows as the
# comparison finishes.
README_CORPORA = ("libreoffice", "ding")
README_MODELS = (
    ("LSTM 256", "docs/runs/near-paper", "",
     ("soft", "marginal", "hard-enum", "hard-sample", "var-enum", "var-sample", "var-gumbel", "var-wsram",
      "var-relaxed", "var-sample-joint", "var-sample-from-var-enum")),
    ("LSTM 96", "docs/runs/near-paper-cpu96", "", ("soft", "var-sample")),
    ("Transformer 96", "docs/runs/near-paper-cpu96", "transformer-none-",
     ("transformer-none-soft", "transformer-none-marginal",
      "transformer-none-var-enum-qfirst-from-transformer-none-marginal",
      "transformer-none-var-sample-qfirst-from-transformer-none-marginal")),
    ("Transformer 96 + cross-attn", "docs/runs/near-paper-cpu96", "transformer-", ("transformer-soft",)),
)


def summary_table(models: Sequence[Tuple[str, Path, str, Sequence[str]]], corpora: Sequence[str],
                  seeds: Sequence[str] = ("1", "2")) -> str:
    """One row per model (a label, its archive, the prefix its mode names drop in the table, its
    modes) and mode with an evaluated run; per corpus with one: the test perplexity (exact), the
    KL, the prior's entropy (and its share of the uniform's), BLEU (exact decoding, the paper's
    settings) and the AER against eflomal of the prior and of q, mean ± half the range over the
    evaluated seeds, whose number ends the row."""
    nats = math.log(2)
    runs = {(label, corpus, mode): [r for r in (read_run(root, corpus, mode, seed) for seed in seeds) if r.metrics]
            for label, root, _, modes in models for corpus in corpora for mode in modes}
    corpora = [c for c in corpora if any(runs[key] for key in runs if key[1] == c)]
    header = "| model | mode | " + " | ".join(
        f"{corpus_title(c).split(' (')[0]} PPL | KL (nats) | prior ent (nats; share of uniform) | BLEU | "
        "AER prior / q" for c in corpora) + " | seeds |"
    rows = [header, "|---" * (3 + 5 * len(corpora)) + "|"]
    for label, _, prefix, modes in models:
        for mode in modes:
            if not any(runs[label, c, mode] for c in corpora):
                continue
            cells = []
            for corpus in corpora:
                finished = runs[label, corpus, mode]
                shares = [r.diagnosis["prior_entropy"] / r.diagnosis["uniform_entropy"] for r in finished
                          if r.diagnosis.get("prior_entropy") is not None and r.diagnosis.get("uniform_entropy")]
                entropy = spread([r.metrics.get("prior_ent") for r in finished], 2, nats)
                if shares and entropy != "—":
                    entropy += f" ({100 * sum(shares) / len(shares):.0f}%)"
                aer = [spread([r.aer.get(d) for r in finished], 3) for d in ("prior", "posterior")]
                cells += [spread([r.metrics.get("ppl") for r in finished]),
                          spread([r.metrics.get("kl", 0.0) for r in finished], 3, nats)
                          if ATTENTION_MODES[attention_mode(mode)].variational else "—", entropy,
                          spread([r.bleu["exact"] for r in finished]),
                          aer[0] if aer[1] == "—" else " / ".join(aer)]
            count = " / ".join(str(len(runs[label, c, mode])) for c in corpora)
            rows.append(f"| {label} | `{mode.replace(prefix, '')}` | " + " | ".join(cells)
                        + f" | {count} |")
    return "\n".join(rows)


def readme_table(repo: Path = Path(".")) -> str:
    """The README's results table (README_MODELS), from the archives."""
    return summary_table([(label, repo / root, prefix, modes) for label, root, prefix, modes in README_MODELS],
                         README_CORPORA)


README_MARKERS = ("<!-- results:begin -->\n", "\n<!-- results:end -->")


def write_readme_table(readme: Path, repo: Path = Path(".")) -> None:
    """Replace the README's results table (between README_MARKERS) with readme_table(repo)."""
    text = readme.read_text(encoding="utf-8")
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        raise SystemExit(f"{readme}: no results table between {begin.strip()} and {end.strip()}; put the two "
                         "markers, each on a line of its own, where the table goes, and run this again")
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + readme_table(repo) + end + rest.split(end, 1)[1], encoding="utf-8")


# ----------------------------------------------------------------------------- curves


def plot_curves(all_runs: dict, corpora: Sequence[str], output: Path) -> None:
    """Validation exact perplexity against updates and against wall time, one colour per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = [c for c in corpora if not c.startswith("syn-")] or list(corpora)
    fig, axes = plt.subplots(len(corpora), 2, figsize=(11, 3.6 * len(corpora)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, corpus in enumerate(corpora):
        for k, (mode, runs) in enumerate(all_runs[corpus].items()):
            colour = colours[k % len(colours)]
            labelled = False
            for run, style in zip(runs, ("-", "--", ":", "-.") * 10):
                curve = run.train.curve
                if not curve.updates:
                    continue
                label = None if labelled else mode
                labelled = True
                axes[row][0].plot(curve.updates, curve.ppl, style, color=colour, label=label, marker=".")
                axes[row][1].plot([w / 60 for w in curve.wall], curve.ppl, style, color=colour, label=label,
                                  marker=".")
        for col, xlabel in enumerate(("updates", "wall time (minutes; threads per run: its manifest)")):
            ax = axes[row][col]
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation perplexity (exact)")
            ax.set_title(corpus_title(corpus), fontsize=10)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.set_yscale("log")
                ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--corpora", nargs="+", required=True)
    parser.add_argument("--modes", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", required=True)
    parser.add_argument("--curves", type=Path, default=None, help="learning curves (PNG); default ROOT/curves.png")
    parser.add_argument("--output", type=Path, default=None, help="default ROOT/results.md")
    args = parser.parse_args(argv)
    text, all_runs = report(args.root, args.corpora, args.modes, args.seeds)
    curves = args.curves or args.root / "curves.png"
    plot_curves(all_runs, args.corpora, curves)
    text += f"\nLearning curves: {curves}\n"
    output = args.output or args.root / "results.md"
    output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
