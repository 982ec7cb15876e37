"""A training run as a job: corpus, architecture and preset, attention mode, seed and recipe.

Its steps: ``fairseq-train`` with the plugin (``RUN/train.log``, fairseq's JSON lines;
checkpoints in ``RUN/checkpoints``; running it again resumes from ``checkpoint_last.pt``), then
``fairseq-validate`` of the last checkpoint (``RUN/probe.log``).
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from var_attn_plugin.presets import LSTM_PRESETS, TRANSFORMER_PRESETS, flags

from .corpora import Corpus
from .runner import PLUGIN_DIR, Job, Step, tool


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Defaults: the converged comparison's CPU recipe, except the lr."""

    lr: float = 3e-4
    max_tokens: int = 2000  # target tokens per batch (a cap only, when batch_size is set)
    batch_size: Optional[int] = None  # sentences per batch (the paper: 6)
    max_update: int = 2000
    dropout: float = 0.2
    clip_norm: float = 5.0
    lr_scheduler: str = "fixed"  # or reduce_lr_on_plateau (halving, as in the paper)
    validate_every: int = 0  # updates between validations (0: every epoch)
    valid_subset: str = "valid"
    exclude_source_eos: bool = False
    soft_loss_weight: float = 0.0  # --soft-loss-weight: the soft likelihood trained jointly (sampled modes)
    warmup_updates: int = 0  # linear warm-up of the learning rate (the Transformer's recipe: 500)
    adam_betas: str = "(0.9,0.999)"  # the Transformer's recipe: (0.9,0.98)
    log_interval: int = 50
    save_interval_updates: int = 250  # a checkpoint to resume from

    def batch_label(self) -> str:
        return f"{self.batch_size}sent" if self.batch_size else f"{self.max_tokens}tok"


@dataclass(frozen=True)
class TrainRun(Job):
    experiment: str  # folder under the root
    corpus: Corpus
    mode: str
    seed: int = 1
    sizes: str = "cpu96"  # a key of var_attn_plugin.presets.LSTM_PRESETS (TRANSFORMER_PRESETS)
    recipe: Recipe = Recipe()
    # a warm start: the run (of the same experiment and corpus) whose last checkpoint initialises
    # this one (--finetune-from-model; q starts fresh when that run has none), e.g. var-sample
    # from a trained marginal or var-enum model
    warm_start: Optional["TrainRun"] = None
    arch: str = "lstm"  # or transformer
    # the Transformer's --soft-cross-attention: all (fairseq's cross-attention in every layer),
    # below-top or none (the latent alignment is the decoder's only view of the source)
    soft_cross_attention: str = "all"

    @property
    def name(self) -> str:
        r = self.recipe
        arch = "" if self.arch == "lstm" else f"{self.arch}-"
        xattn = f"-xattn-{self.soft_cross_attention}" if self.arch == "transformer" else ""
        eos = "-noeos" if r.exclude_source_eos else ""
        joint = f"-softw{r.soft_loss_weight:g}" if r.soft_loss_weight else ""
        warm = f"-from-{self.warm_start.mode}" if self.warm_start else ""
        return f"{arch}{self.mode}-lr{r.lr:g}-{r.batch_label()}-{self.sizes}{xattn}{eos}{joint}{warm}-seed{self.seed}"

    def folder(self, root: Path) -> Path:
        return Path(root) / self.experiment / self.corpus.name / self.name

    def config(self) -> dict:
        return {"kind": "train", **asdict(self)}

    def needs(self) -> Sequence[Job]:
        return (self.corpus,) + ((self.warm_start,) if self.warm_start else ())

    def train_command(self, root: Path) -> List[str]:
        r = self.recipe
        run = self.folder(root)
        batch = ["--max-tokens", str(r.max_tokens)] + (["--batch-size", str(r.batch_size)] if r.batch_size else [])
        command = [
            tool("fairseq-train"), str(self.corpus.data_bin(root)), "--user-dir", str(PLUGIN_DIR),
            "--task", "varattn_translation", *self.architecture(), "--dropout", str(r.dropout),
            "--optimizer", "adam", "--adam-betas", r.adam_betas, "--lr", str(r.lr), "--clip-norm", str(r.clip_norm),
            "--lr-scheduler", r.lr_scheduler, *batch, "--max-update", str(r.max_update), "--max-epoch", "100000",
            "--seed", str(self.seed), "--valid-subset", r.valid_subset, "--ignore-unused-valid-subsets",
            "--save-dir", str(run / "checkpoints"), "--no-epoch-checkpoints",
            "--save-interval-updates", str(r.save_interval_updates), "--keep-interval-updates", "1",
            "--log-format", "json", "--log-interval", str(r.log_interval), "--cpu", "--num-workers", "0",
        ]
        if r.lr_scheduler == "reduce_lr_on_plateau":
            command += ["--lr-shrink", "0.5", "--lr-patience", "0"]
        if r.validate_every:
            command += ["--validate-interval-updates", str(r.validate_every)]
        if r.exclude_source_eos:
            command += ["--exclude-source-eos"]
        if r.soft_loss_weight:
            command += ["--soft-loss-weight", str(r.soft_loss_weight)]
        if r.warmup_updates:
            command += ["--warmup-updates", str(r.warmup_updates)]
            if r.lr_scheduler == "reduce_lr_on_plateau":  # the fixed schedule warms up from lr / warmup
                command += ["--warmup-init-lr", "1e-7"]
        if self.warm_start:
            command += ["--finetune-from-model",
                        str(self.warm_start.folder(root) / "checkpoints" / "checkpoint_last.pt")]
        return command

    def architecture(self) -> List[str]:
        """--arch, --criterion, --attention-mode and the sizes (in the order the archived cells
        were trained with: a changed command would train them again)."""
        common = ["--criterion", "varattn_elbo", "--attention-mode", self.mode]
        if self.arch == "lstm":
            return ["--arch", "varattn_lstm", *common, *flags(LSTM_PRESETS[self.sizes])]
        if self.arch == "transformer":
            return ["--arch", "varattn_transformer", *common, *flags(TRANSFORMER_PRESETS[self.sizes]),
                    "--soft-cross-attention", self.soft_cross_attention]
        raise ValueError(f"unknown architecture {self.arch!r}: lstm or transformer")

    def probe_command(self, root: Path) -> List[str]:
        """fairseq-validate of the last checkpoint on the validation subset: the criterion's
        metrics of the model as training left it (align_info included, which cells trained
        before it existed do not log)."""
        return [tool("fairseq-validate"), str(self.corpus.data_bin(root)), "--user-dir", str(PLUGIN_DIR),
                "--task", "varattn_translation",
                "--path", str(self.folder(root) / "checkpoints" / "checkpoint_last.pt"),
                "--valid-subset", self.recipe.valid_subset, "--max-tokens", str(self.recipe.max_tokens),
                "--cpu", "--num-workers", "0", "--log-format", "json"]

    def steps(self, root: Path) -> List[Step]:
        def incomplete(run: Path) -> Optional[str]:
            if not (run / "checkpoints" / "checkpoint_last.pt").is_file():
                return "fairseq-train exited 0 without checkpoint_last.pt"
            return None

        return [Step("train", self.train_command(root), "train.log", incomplete),
                Step("probe", self.probe_command(root), "probe.log")]
