"""The early-dynamics grid: what the prior does in the first updates, by learning rate and batch.

Every cell trains one attention mode at a fixed learning rate (no halving: the first updates
are the subject) and validates on the first 300 validation pairs every 50 updates. Its curves
are fairseq's validation records: exact perplexity, prior and q entropy, KL, the prior's mass
on the source EOS and its largest probability (the criterion's metrics, var_attn_plugin/criterion.py).

    python -m varattn_experiments dynamics run      # trains the grid (resumable), then archives
    python -m varattn_experiments dynamics report   # docs/dynamics.md, a figure per corpus beside it
"""

import json
import math
import shutil
from dataclasses import dataclass, field, replace
from datetime import timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .corpora import Corpus
from .fairseq_log import iter_records, select_records
from .manifest import Manifest
from .runner import portable
from .training import Recipe, TrainRun

EXPERIMENT = "dynamics"
MODES = ("soft", "hard-enum", "var-enum", "var-sample")
LRS = (1e-2, 3e-4, 1e-3)  # the two ends first
# about 2,000 target tokens per update (the converged comparison's), or 8 sentences (the paper: 6)
BATCHES = {"8sent": dict(batch_size=8, max_tokens=4000), "2000tok": dict(max_tokens=2000)}
CHECKPOINTS = (50, 150, 500, 1000, 2000)  # updates the table reports
DESIGNS = ("all", "below-top", "none")  # the Transformer's --soft-cross-attention
LN2 = math.log(2)


def grid(corpus: Corpus, modes: Sequence[str] = MODES, lrs: Sequence[float] = LRS,
         batches: Sequence[str] = tuple(BATCHES), sizes: str = "cpu96", max_update: int = 2000,
         seeds: Sequence[int] = (1,), exclude_source_eos: bool = False,
         warm_start: Optional[str] = None, soft_loss_weight: float = 0.0, arch: str = "lstm",
         designs: Sequence[str] = ("all",)) -> List[TrainRun]:
    """The cells in the order they run: batch, then learning rate, then mode (then the
    Transformer's decoder design); with ``warm_start`` (a mode), each cell starts from the last
    checkpoint of that mode's cell of the same recipe. The Transformer's cells warm the learning
    rate up over 500 updates with Adam's betas (0.9, 0.98), as its converged comparison does."""
    transformer = dict(warmup_updates=500, adam_betas="(0.9,0.98)") if arch == "transformer" else {}
    runs = []
    for batch in batches:
        for lr in lrs:
            for mode in modes:
                for design in (designs if arch == "transformer" else ("all",)):
                    for seed in seeds:
                        recipe = Recipe(lr=lr, max_update=max_update, validate_every=50, valid_subset="valid1",
                                        exclude_source_eos=exclude_source_eos, soft_loss_weight=soft_loss_weight,
                                        **transformer, **BATCHES[batch])
                        model = dict(sizes=sizes, arch=arch, soft_cross_attention=design)
                        warm = TrainRun(EXPERIMENT, corpus, warm_start, seed,
                                        recipe=replace(recipe, soft_loss_weight=0.0), **model) if warm_start else None
                        runs.append(TrainRun(EXPERIMENT, corpus, mode, seed, recipe=recipe, warm_start=warm, **model))
    return runs


# ---------------------------------------------------------------------- archive


def kept_in_archive(run: TrainRun, root: Path, archive_dir: Path) -> bool:
    """Does the archive hold this cell's training as finished with the same command, while ROOT
    has not started it (a new clone)? Then it is not trained again."""
    if (run.folder(root) / "manifest.json").is_file():
        return False
    manifest = Manifest.read(Path(archive_dir) / run.corpus.name / run.name)
    return manifest is not None and manifest.done("train", portable(run.steps(root)[0].command, root))


ARCHIVED = ("manifest.json", "train.log", "probe.log")


def archive(root: Path, destination: Path) -> List[Path]:
    """Copy the small files the report reads (manifests, fairseq logs, the corpora's statistics)."""
    copied = []
    base = Path(root) / EXPERIMENT
    for folder in sorted(p.parent for p in base.rglob("manifest.json")):
        target = Path(destination) / folder.relative_to(base)
        target.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, target / name)
        copied.append(target)
    for stats in list(Path(root).glob("*/spm/valid_small.uniform.json")) + list(Path(root).glob("*/data/stats.json")):
        target = Path(destination) / stats.parent.parent.name / stats.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stats, target)
    return copied


# ---------------------------------------------------------------------- report


@dataclass
class Curve:
    """One cell's validation curve (entropies and KL in nats)."""

    config: dict
    updates: List[float] = field(default_factory=list)
    metrics: Dict[str, List[Optional[float]]] = field(default_factory=dict)
    seconds: float = 0.0
    done: bool = False
    probe: Dict[str, float] = field(default_factory=dict)  # fairseq-validate of the last checkpoint
    code_versions: List[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return self.config["mode"]

    @property
    def recipe(self) -> dict:
        return self.config["recipe"]

    @property
    def arch(self) -> str:
        return self.config.get("arch", "lstm")  # cells archived before the Transformer's: the LSTM

    @property
    def design(self) -> str:
        return self.config.get("soft_cross_attention", "all")

    @property
    def label(self) -> str:
        """The mode with what sets the cell apart: a joint soft likelihood, a warm start."""
        joint = self.recipe.get("soft_loss_weight") or 0
        return self.mode + (f" + soft loss x{joint:g}" if joint else "") \
            + (f" from {warm_start(self)}" if warm_start(self) else "")

    def at(self, metric: str, updates: float) -> Optional[float]:
        for u, value in zip(self.updates, self.metrics.get(metric, [])):
            if u == updates:
                return value
        return None

    def last(self, metric: str) -> Optional[float]:
        values = self.metrics.get(metric, [])
        return values[-1] if values else None


VALID_METRICS = {  # report name: (fairseq key, scale)
    "ppl": ("valid_ppl", 1.0), "prior_ent": ("valid_prior_ent", LN2), "post_ent": ("valid_post_ent", LN2),
    "kl": ("valid_kl", LN2), "prior_eos": ("valid_prior_eos", 1.0), "prior_max": ("valid_prior_max", 1.0),
    "align_info": ("valid_align_info", LN2),
}


def read_curve(folder: Path) -> Optional[Curve]:
    manifest = Manifest.read(folder)
    if manifest is None or manifest.data.get("config") is None:
        return None
    # a running cell's time counts to its log's last line, so that the page is the same whenever made
    parsed = list(iter_records(folder / "train.log"))
    last = parsed[-1][0].replace(tzinfo=timezone.utc).timestamp() if parsed else None
    curve = Curve(manifest.data["config"], seconds=manifest.seconds("train", until=last),
                  done=manifest.done("train"), code_versions=manifest.code_versions("train"))
    every = curve.recipe.get("validate_every") or 1
    for record in select_records(parsed, "valid", curve.recipe.get("valid_subset")):
        updates = record["valid_num_updates"]
        if updates % every:  # an end-of-epoch validation between the regular ones
            continue
        curve.updates.append(updates)
        for name, (key, scale) in VALID_METRICS.items():
            value = record.get(key)
            curve.metrics.setdefault(name, []).append(None if value is None else float(value) * scale)
    subset = curve.recipe.get("valid_subset") or "valid"
    for _, category, record in iter_records(folder / "probe.log"):
        if category == subset and manifest.done("probe"):
            curve.probe = {name: float(record[subset + key[len("valid"):]]) * scale
                           for name, (key, scale) in VALID_METRICS.items() if subset + key[len("valid"):] in record}
    return curve


def read_curves(archive_dir: Path) -> Dict[str, List[Curve]]:
    """``{corpus: [curve, ...]}`` of every archived cell."""
    out: Dict[str, List[Curve]] = {}
    for path in sorted(Path(archive_dir).rglob("manifest.json")):
        curve = read_curve(path.parent)
        if curve is not None and curve.config.get("kind") == "train":
            out.setdefault(curve.config["corpus"]["name"], []).append(curve)
    return out


def uniform(archive_dir: Path, corpus: str, exclude_eos: bool) -> Optional[float]:
    path = Path(archive_dir) / corpus / "valid_small.uniform.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())["without_eos" if exclude_eos else "with_eos"]


def fmt(value: Optional[float], digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def batch_label(recipe: dict) -> str:
    return f"{recipe['batch_size']} sent." if recipe.get("batch_size") else f"{recipe['max_tokens']} tok."


def warm_start(curve: Curve) -> str:
    """The mode whose checkpoint the cell started from, or ''."""
    return (curve.config.get("warm_start") or {}).get("mode", "")


def sort_key(curve: Curve):
    r = curve.recipe
    return (MODES.index(curve.mode) if curve.mode in MODES else 99, curve.config["sizes"],
            bool(r.get("batch_size")), -r["lr"], r.get("exclude_source_eos", False), r.get("soft_loss_weight") or 0,
            warm_start(curve), DESIGNS.index(curve.design), curve.config["seed"])


def _updates(c: Curve) -> str:
    return f"{int(c.updates[-1]) if c.updates else 0}" + ("" if c.done else " (running)")


# a column: its heading and its cell, from the curve and ``rel`` (an entropy over the uniform's)
Column = Tuple[str, Callable[[Curve, Callable[[Optional[float]], Optional[float]]], str]]
COMMON_HEAD: List[Column] = [
    ("sizes", lambda c, rel: c.config["sizes"]), ("lr", lambda c, rel: f"{c.recipe['lr']:g}"),
    ("batch", lambda c, rel: batch_label(c.recipe))]
COMMON_TAIL: List[Column] = [
    ("updates", lambda c, rel: _updates(c)), ("valid PPL", lambda c, rel: fmt(c.last("ppl"), 1))]
# the last columns of both tables: where the prior and q ended, what a word tells about z, the time
PRIOR_END: List[Column] = [
    ("last", lambda c, rel: fmt(rel(c.last("prior_ent")))),
    ("q H/uniform, last", lambda c, rel: fmt(rel(c.last("post_ent")))),
    ("KL nats, last", lambda c, rel: fmt(c.last("kl"), 3)),
    ("max prob, last", lambda c, rel: fmt(c.last("prior_max"))),
    ("word's info on z, nats", lambda c, rel: fmt(c.probe.get("align_info"), 3)),
    ("minutes", lambda c, rel: f"{c.seconds / 60:.0f}")]
LSTM_COLUMNS: List[Column] = [
    ("mode", lambda c, rel: c.label), *COMMON_HEAD,
    ("source EOS", lambda c, rel: "excluded" if c.recipe.get("exclude_source_eos") else "candidate"), *COMMON_TAIL,
    ("prior H/uniform at 50", lambda c, rel: fmt(rel(c.at("prior_ent", 50)))),
    ("at 150", lambda c, rel: fmt(rel(c.at("prior_ent", 150)))),
    ("at 500", lambda c, rel: fmt(rel(c.at("prior_ent", 500)))),
    *PRIOR_END[:3],
    ("EOS mass at 150", lambda c, rel: fmt(c.at("prior_eos", 150))), ("last", lambda c, rel: fmt(c.last("prior_eos"))),
    *PRIOR_END[3:]]
DESIGN_COLUMNS: List[Column] = [
    ("mode", lambda c, rel: c.label), ("soft cross-attention", lambda c, rel: c.design), *COMMON_HEAD,
    *COMMON_TAIL,
    ("prior H/uniform at 150", lambda c, rel: fmt(rel(c.at("prior_ent", 150)))),
    ("at 500", lambda c, rel: fmt(rel(c.at("prior_ent", 500)))), *PRIOR_END]


def table(curves: List[Curve], archive_dir: Path, corpus: str, columns: Sequence[Column] = LSTM_COLUMNS) -> List[str]:
    """One row per cell (DESIGN_COLUMNS: the Transformer's, by decoder design)."""
    rows = ["| " + " | ".join(head for head, _ in columns) + " |", "|" + "---|" * len(columns)]
    for c in sorted(curves, key=sort_key):
        u = uniform(archive_dir, corpus, c.recipe.get("exclude_source_eos", False))

        def rel(value):
            return None if value is None or not u else value / u

        rows.append("| " + " | ".join(cell(c, rel) for _, cell in columns) + " |")
    return rows


def plot(curves: List[Curve], archive_dir: Path, corpus: str, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ppl", "valid PPL (exact)"), ("prior_ent", "prior H / uniform"), ("kl", "KL(q||p), nats"),
              ("prior_eos", "prior mass on source EOS")]
    modes = [m for m in MODES if any(c.mode == m for c in curves)]
    fig, axes = plt.subplots(len(panels), len(modes), figsize=(3.3 * len(modes), 2.4 * len(panels)),
                             squeeze=False, sharex=True)
    by_lr = {1e-2: "tab:red", 1e-3: "tab:blue", 3e-4: "tab:green"}
    by_design = {"all": "black", "below-top": "tab:orange", "none": "tab:purple"}  # the Transformer's
    for col, mode in enumerate(modes):
        for c in sorted((c for c in curves if c.mode == mode), key=sort_key):
            r = c.recipe
            u = uniform(archive_dir, corpus, r.get("exclude_source_eos", False)) or 1.0
            style = "-" if r.get("batch_size") else "--"
            label = f"lr {r['lr']:g}, {batch_label(r)}" + (", no EOS" if r.get("exclude_source_eos") else "") \
                + ("" if c.config["sizes"] == "cpu96" else f", {c.config['sizes']}") \
                + (f", from {warm_start(c)}" if warm_start(c) else "") \
                + (f", soft loss x{r['soft_loss_weight']:g}" if r.get("soft_loss_weight") else "")
            colour = by_lr.get(r["lr"], "black")
            if c.arch == "transformer":
                label, colour = f"{label}, cross-attention {c.design}", by_design[c.design]
            for row, (metric, _) in enumerate(panels):
                values = c.metrics.get(metric, [])
                if metric == "prior_ent":
                    values = [None if v is None else v / u for v in values]
                points = [(x, v) for x, v in zip(c.updates, values) if v is not None]
                if points:
                    axes[row][col].plot(*zip(*points), style, color=colour,
                                        lw=1.6 if c.config["sizes"] == "cpu96" else 0.8, label=label)
        axes[0][col].set_title(mode)
        axes[0][col].set_yscale("log")
        axes[1][col].set_ylim(0, 1.05)  # entropy over the uniform's: 1 is uniform, 0 deterministic
    for row, (_, title) in enumerate(panels):
        axes[row][0].set_ylabel(title)
    for col in range(len(modes)):
        axes[-1][col].set_xlabel("updates")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)


def report(archive_dir: Path, output: Path, figures: Optional[Path]) -> str:
    """The markdown page (tables per corpus) and, with ``figures`` (a folder), the curves of each
    corpus in FIGURES/dynamics-CORPUS.png (the Transformer's in dynamics-CORPUS-transformer.png)."""
    lines = ["# Early dynamics of the prior", "",
             "Generated by `python -m varattn_experiments dynamics report` from the run manifests and fairseq "
             f"logs in `{archive_dir}`; do not edit by hand.", "",
             "Each cell trains one attention mode of the LSTM at a fixed learning rate (Adam, no halving), validating "
             "on the first 300 validation pairs every 50 updates. Entropies are relative to a uniform alignment "
             "over the same candidates (1.00 = uniform); KL and entropies in nats, EOS mass and max prob are "
             "probabilities averaged over target tokens. A word's information on z is "
             "KL(p(z_t | x, y≤t) ‖ p(z_t | x, y<t)) per token, in nats, measured by fairseq-validate on the same "
             "pairs with the cell's last checkpoint: 0 when the next word does not depend on the alignment. "
             "Code versions and wall times are in each run's `manifest.json`.", ""]
    for corpus, curves in sorted(read_curves(archive_dir).items()):
        lines += [f"## {corpus}", ""]
        lstm = [c for c in curves if c.arch == "lstm"]
        transformer = [c for c in curves if c.arch == "transformer"]
        if figures is not None:
            path = Path(figures) / f"dynamics-{corpus}.png"
            plot(lstm, archive_dir, corpus, path)
            lines += [f"![early dynamics on {corpus}]({path.name})", ""]
        lines += table(lstm, archive_dir, corpus) + [""]
        if transformer:
            lines += ["### The Transformer's decoder designs", "",
                      "`--soft-cross-attention`: `all` keeps fairseq's soft cross-attention in every decoder layer, "
                      "`below-top` removes it from the top layer, `none` from every layer (the latent alignment is "
                      "then the decoder's only view of the source); docs/METHOD.md §10. Adam (0.9, 0.98), the "
                      "learning rate warmed up over 500 updates, then fixed.", ""]
            if figures is not None:
                path = Path(figures) / f"dynamics-{corpus}-transformer.png"
                plot(transformer, archive_dir, corpus, path)
                lines += [f"![the Transformer's early dynamics on {corpus}]({path.name})", ""]
            lines += table(transformer, archive_dir, corpus, DESIGN_COLUMNS) + [""]
        versions = sorted({v for c in curves for v in c.code_versions})
        lines += [f"Code versions: {', '.join(versions)}.", ""]
    text = "\n".join(lines)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return text
