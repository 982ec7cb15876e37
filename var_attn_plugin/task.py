"""The ``varattn_translation`` task: fairseq's translation task plus decoding options.

The options are task options so that they work at generation time
(``fairseq-generate`` / ``-interactive`` / ``--eval-bleu``); the attention mode itself is a
model option stored in the checkpoint.
"""

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from .decoding import DECODING_CHOICES, DecodingRequest, resolve_decoding_options
from .errors import UsageError
from .generator import GnmtSequenceGenerator, GnmtSequenceGeneratorWithAlignment
from .input_check import INTERACTIVE_FIX, warn_unreadable_inputs
from .latent.distributions import noise_from
from .latent.outputs import DecodingOptions
from .reproducibility import (
    UpdateNoise,
    batch_iterator_of_first_epoch,
    early_stopping_state,
    exact_plateau_schedule,
    restore_early_stopping,
)
from .startup_checks import SKIP_EMPTY_LINES_HELP, StartupChecks
from .watchdog import watchdog_for

logger = logging.getLogger(__name__)

REMOVE_BPE_FLAGS = ("--remove-bpe", "--post-process")


@contextlib.contextmanager
def q_alone(model, update_num: int):
    """Within it, during --q-warmup-updates, only the inference network's parameters take gradients:
    the generative model's are set not to require them (so that autograd skips them, and the
    optimiser, which skips parameters without a gradient, leaves them as they are); restored after."""
    inner = model
    while hasattr(inner, "module"):  # fairseq's data-parallel wrappers
        inner = inner.module
    trains = getattr(inner, "trains_q_alone", None)
    if trains is None or not trains(update_num):
        yield
        return
    if update_num == 0:
        logger.info("training the inference network q alone for the first %d updates (--q-warmup-updates); "
                    "the generative model is held fixed", inner.cfg.q_warmup_updates)
    frozen = [p for p in inner.generative_parameters() if p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)


def refuse_remove_bpe_with_sentencepiece(bpe_cfg, argv: Sequence[str]) -> None:
    """A UsageError when ``--bpe sentencepiece`` (``bpe_cfg``) comes with ``--remove-bpe`` or
    ``--post-process`` in ``argv`` (the command line; fairseq hands the task only the --bpe
    options)."""
    if bpe_cfg is None or getattr(bpe_cfg, "_name", None) != "sentencepiece":
        return
    given = [arg.split("=", 1)[0] for arg in argv if arg.split("=", 1)[0] in REMOVE_BPE_FLAGS]
    if given:
        raise UsageError(
            f"--bpe sentencepiece and {given[-1]} together garble every line: --bpe sentencepiece already joins the "
            f"pieces into words, and {given[-1]} would join them once more, glueing the words together; drop "
            f"{given[-1]}")


@dataclass
class VarAttnTranslationConfig(TranslationConfig):
    skip_empty_lines: bool = field(default=False, metadata={"help": SKIP_EMPTY_LINES_HELP})
    latent_decoding: ChoiceEnum(list(DECODING_CHOICES)) = field(
        default="auto",
        metadata={"help": "exact: marginalise the latent alignment under the prior (docs/METHOD.md §6); "
                  "kmax: the same over the --kmax most probable source positions, renormalised; "
                  "soft: soft attention; auto: the model's --default-latent-decoding, which defaults to exact for "
                  "latent modes and soft for --attention-mode soft"},
    )
    kmax: int = field(default=5, metadata={"help": "source positions kept by --latent-decoding kmax"})
    gnmt_lenpen: Optional[float] = field(
        default=None,
        metadata={"help": "rank finished hypotheses by score / ((5+|Y|)/6)^ALPHA (the paper: 1.0) "
                  "instead of fairseq's --lenpen"},
    )
    eos_penalty: float = field(
        default=0.0,
        metadata={"help": "subtract BETA * |src| / (n+1) from the EOS log-probability at every "
                  "beam-search step, n = tokens so far counting BOS (the paper: 3.0)"},
    )
    seed: int = II("common.seed")  # seeds the latent samples' noise (with the rank and the update)
    heartbeat_timeout: int = II("distributed_training.heartbeat_timeout")  # see var_attn_plugin.watchdog


@register_task("varattn_translation", dataclass=VarAttnTranslationConfig)
class VarAttnTranslationTask(StartupChecks, TranslationTask):
    # StartupChecks: options and data checked before the first update (startup_checks.py)
    cfg: VarAttnTranslationConfig

    def decoding_options(self, model) -> DecodingOptions:
        """The task's decoding options resolved and checked for ``model`` (var_attn_plugin.decoding)."""
        return resolve_decoding_options(DecodingRequest.of(self.cfg), model)

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, **kwargs):
        # fairseq's batch_by_size (upstream main, also in fairseq-fixed) drops the last batch
        # when its size is not a multiple of --required-batch-size-multiple, and batches are
        # built from length-sorted indices, so the longest sentences silently vanished from
        # validation, generation and every training epoch. Batch sizes stay free here.
        # The batches are those of epoch 1 also when a resumed run creates the iterator in a
        # later epoch, as the uninterrupted run does (var_attn_plugin.reproducibility).
        return batch_iterator_of_first_epoch(
            lambda data, **options: super(VarAttnTranslationTask, self).get_batch_iterator(
                data, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                required_batch_size_multiple=1, **options),
            self, dataset, **kwargs)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # the latent samples draw from a generator seeded from (seed, rank, update)
        if getattr(self, "_update_noise", None) is None:
            self._update_noise = UpdateNoise(getattr(self.cfg, "seed", 1))
        device = next(model.parameters()).device
        self._pulse()
        with noise_from(self._update_noise.generator(device, update_num)), q_alone(model, update_num):
            result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        self._pulse()
        return result

    def get_checkpoint_dict(self):
        # saved by fairseq with every checkpoint (extra_state[task class name]); see set_checkpoint_dict
        return {self.__class__.__name__: {"early_stopping": early_stopping_state()}}

    def set_checkpoint_dict(self, state):
        # a resumed run goes on counting --patience where the checkpoint stopped (reproducibility.py)
        restore_early_stopping(state.get("early_stopping", {}))

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        # and reduce_lr_on_plateau resumes as it would have gone on (reproducibility.py)
        exact_plateau_schedule()
        return super().setup_task(cfg, **kwargs)

    def valid_step(self, sample, model, criterion):
        self._pulse()
        return super().valid_step(sample, model, criterion)

    def _pulse(self):
        # --heartbeat-timeout that also ends a rank blocked in a collective (watchdog.py)
        if not hasattr(self, "_watchdog"):
            self._watchdog = watchdog_for(getattr(self.cfg, "heartbeat_timeout", -1))
        if self._watchdog is not None:
            self._watchdog.pulse()

    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        # fairseq-interactive's encoding of each input buffer: warn about inputs the model
        # cannot read (raw text without --bpe sentencepiece becomes all <unk>), numbering
        # lines over the whole input
        tokens, lengths = super().get_interactive_tokens_and_lengths(lines, encode_fn)
        first_line = getattr(self, "_interactive_lines_read", 0) + 1
        self._interactive_lines_read = first_line - 1 + len(lines)
        warn_unreadable_inputs(logger, tokens, self.source_dictionary, first_line, INTERACTIVE_FIX, lines)
        return tokens, lengths

    def build_bpe(self, args):
        # fairseq-interactive and -generate build --bpe here (the hub builds its own): with
        # --bpe sentencepiece the output is already joined, and --remove-bpe (--post-process)
        # would join it first, glueing every line's words together
        refuse_remove_bpe_with_sentencepiece(args, sys.argv[1:])
        return super().build_bpe(args)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        # fairseq-generate, -interactive, --eval-bleu and the hub: the task's decoding options
        # with the generation's --lenpen, checked (also for fairseq's own models) and resolved
        # for each model of this plugin in var_attn_plugin.decoding
        request = DecodingRequest.of(self.cfg, lenpen=getattr(args, "lenpen", None))
        resolve_decoding_options(request)
        for model in models:
            if hasattr(model, "configure_decoding"):
                model.configure_decoding(request)
        if self.cfg.gnmt_lenpen is not None:
            if seq_gen_cls is not None:
                raise UsageError(f"--gnmt-lenpen cannot be combined with {seq_gen_cls.__name__}")
            extra_gen_cls_kwargs = dict(extra_gen_cls_kwargs or {}, gnmt_lenpen=self.cfg.gnmt_lenpen)
            if getattr(args, "print_alignment", False):
                seq_gen_cls = GnmtSequenceGeneratorWithAlignment
                extra_gen_cls_kwargs["print_alignment"] = args.print_alignment
            else:
                seq_gen_cls = GnmtSequenceGenerator
        return super().build_generator(
            models, args, seq_gen_cls=seq_gen_cls, extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
