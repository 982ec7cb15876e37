"""The ``varattn_translation`` task's checks of options and data, before any update is made.

fairseq builds the task (``setup_task``), the model (``build_model``) and the criterion
(``build_criterion``) before it loads the validation and training data, and it loads the data
and forms batches before the first update. :class:`StartupChecks` hooks into these steps so
that a combination of options that cannot work, or data that would be silently lost or
learnt from, stops the run there with a :class:`~var_attn_plugin.errors.UsageError` naming
the flag (or the split and sentence) and the fix:

- ``setup_task``: decoding options that no model can use (``--kmax 0``, a negative
  ``--eos-penalty``), by :func:`~var_attn_plugin.decoding.resolve_decoding_options` with the
  task's options alone;
- ``build_model``: a decoding that the model cannot give (``--latent-decoding dirichlet-mean``
  for a model that is not ``var-relaxed``), by the same function with the model; the model
  itself refuses any other task (``var_attn_plugin.model.check_task``);
- ``build_criterion``: ``--criterion varattn_elbo`` with a model of another architecture, and
  a latent ``--attention-mode`` trained with one of fairseq's criteria (which read the soft
  attention's output only);
- ``load_dataset``: sentence pairs with an empty source or target line (``--skip-empty-lines``
  leaves them out, with their count logged);
- ``load_dataset``: a split that the data-bin does not have (a misspelt ``--valid-subset``,
  ``--gen-subset`` or ``--train-subset``), named with the splits it has;
- batching: a sentence pair longer than ``--max-tokens`` (no batch can hold it);
  ``--skip-invalid-size-inputs-valid-test`` leaves such pairs out, with their count logged.
  fairseq-train always leaves them out of the training data (fairseq's own warning blamed
  ``max_positions``); more than :data:`MAX_DROPPED_SHARE` of the training pairs left out stops
  the run;
- ``build_generator``: ``--beam`` below 1;
- before anything else (:func:`install_training_checks`, fairseq-train's ``call_main``):
  ``--update-freq`` below 1.

At inference, a source sentence without any word (an empty line in ``fairseq-interactive``)
gets the empty translation, scored by the model, instead of beam search's forced words.
"""

import difflib
import functools
import logging
import os
import sys
from typing import List, Optional

import numpy as np
import torch

from .decoding import DecodingRequest, resolve_decoding_options
from .errors import UsageError

logger = logging.getLogger(__name__)

# the share of the training pairs that may be left out for not fitting --max-tokens (with a
# warning); more stops the run
MAX_DROPPED_SHARE = 0.1

SKIP_EMPTY_LINES_HELP = (
    "leave out sentence pairs whose source or target line is empty (their count is logged); "
    "without it such data stops at start-up")


def _ids(ids: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def check_model_decoding(model, cfg) -> None:
    """The task's ``--latent-decoding``, when it names one, against the model's attention mode
    (no warning: generation warns when it configures the decoding). ``auto`` is resolved and
    checked when generation configures the decoding, so that a checkpoint whose saved
    ``--default-latent-decoding`` it cannot give still loads for scoring and alignment."""
    request = DecodingRequest.of(cfg)
    if request.latent_decoding != "auto":
        resolve_decoding_options(request, model, warn=False)


def check_criterion(criterion, name: Optional[str], model, arch: Optional[str], training: bool) -> None:
    """The criterion against the model it trains or validates."""
    from .criterion import VarAttnCriterion
    from .model import VarAttnModel

    if model is None:
        return
    if isinstance(criterion, VarAttnCriterion) and not isinstance(model, VarAttnModel):
        raise UsageError(
            f"--criterion varattn_elbo needs a model of this plugin, got --arch {arch or type(model).__name__} "
            f"({type(model).__name__}): use --arch varattn_lstm or varattn_transformer (or one of their presets, "
            "e.g. varattn_lstm_iwslt_de_en, varattn_transformer_iwslt_de_en), or train "
            "fairseq's own models with --criterion cross_entropy")
    if (training and isinstance(model, VarAttnModel) and model.spec.latent
            and not isinstance(criterion, VarAttnCriterion)):
        raise UsageError(
            f"--attention-mode {model.attention_mode} must be trained with --criterion varattn_elbo, got "
            f"--criterion {name or type(criterion).__name__}: fairseq's criteria read the output of soft "
            "attention only; pass --criterion varattn_elbo (or --attention-mode soft for ordinary attention)")


def check_training_config(cfg) -> None:
    """Options of fairseq-train that fail later with an unrelated error (``--update-freq 0``:
    ZeroDivisionError after the first epoch's batches are built)."""
    optimization = getattr(cfg, "optimization", None)
    update_freq = list(getattr(optimization, "update_freq", None) or [])
    if any(int(value) < 1 for value in update_freq):
        given = ",".join(str(int(value)) for value in update_freq)
        raise UsageError(
            f"--update-freq must be at least 1 (the number of batches whose gradients make one update), got "
            f"{given}: pass --update-freq 1 for an update after every batch, or more to accumulate batches")


def check_q_warmup(cfg) -> None:
    """--q-warmup-updates leaves the generative model without gradients: PyTorch's data-parallel
    wrapper then waits for them forever unless told some parameters may go unused."""
    model = getattr(cfg, "model", None)
    distributed = getattr(cfg, "distributed_training", None)
    if (getattr(model, "q_warmup_updates", 0) or 0) > 0 and distributed is not None \
            and int(getattr(distributed, "distributed_world_size", 1) or 1) > 1 \
            and str(getattr(distributed, "ddp_backend", "")) in ("c10d", "pytorch_ddp") \
            and not getattr(distributed, "find_unused_parameters", False):
        raise UsageError(
            "--q-warmup-updates trains q alone, so the generative model's parameters get no gradient, which "
            f"--ddp-backend {distributed.ddp_backend} on {distributed.distributed_world_size} GPUs waits for: "
            "pass --find-unused-parameters (or --ddp-backend legacy_ddp)")


def check_search_options(args) -> None:
    """Beam search options that no search can use."""
    beam = getattr(args, "beam", None)
    if beam is not None and int(beam) < 1:
        raise UsageError(f"--beam must be at least 1 (the hypotheses kept at each step; 1 is greedy search), "
                         f"got {beam}: pass e.g. --beam 5")


def _checked_call_main(original):
    @functools.wraps(original)
    def call_main(cfg, main, **kwargs):
        if str(getattr(main, "__module__", "")).startswith(("fairseq_cli.train", "fairseq_cli.hydra_train")):
            check_training_config(cfg)
            check_q_warmup(cfg)
        return original(cfg, main, **kwargs)

    call_main.varattn_checked = True
    return call_main


def install_training_checks() -> None:
    """Check fairseq-train's options before it starts (``distributed_utils.call_main``; idempotent)."""
    from fairseq.distributed import utils as distributed_utils

    if not getattr(distributed_utils.call_main, "varattn_checked", False):
        distributed_utils.call_main = _checked_call_main(distributed_utils.call_main)


def splits_in(data_path: str, src: str, tgt: str) -> List[str]:
    """The splits of the language pair src-tgt (either order) binarised in ``data_path``."""
    try:
        names = os.listdir(data_path)
    except OSError:
        return []
    found = set()
    for name in names:
        for pair in (f"{src}-{tgt}", f"{tgt}-{src}"):
            for ending in (f".{pair}.{src}.idx", f".{pair}.{src}"):
                if name.endswith(ending) and len(name) > len(ending):
                    found.add(name[:-len(ending)])
    return sorted(found)


def _subset_flag(split: str, train_subset: Optional[str]) -> str:
    """The flag that named ``split`` on the command line."""
    if split == train_subset:
        return "--train-subset"
    argv = sys.argv[1:]
    for k, arg in enumerate(argv):
        for flag in ("--valid-subset", "--gen-subset"):
            value = argv[k + 1] if arg == flag and k + 1 < len(argv) else (
                arg[len(flag) + 1:] if arg.startswith(flag + "=") else None)
            if value is not None and split in value.split(","):
                return flag
    program = os.path.basename(sys.argv[0] if sys.argv else "")
    return "--gen-subset" if ("generate" in program or "interactive" in program) else "--valid-subset"


def missing_split_error(split: str, data: str, src: str, tgt: str, train_subset: Optional[str]) -> UsageError:
    flag = _subset_flag(split, train_subset)
    data_path = (data or "").split(os.pathsep)[0]
    splits = splits_in(data_path, src, tgt)
    if not splits:
        return UsageError(f"{flag} {split}: the data-bin {data_path} has no split of the language pair "
                          f"{src}-{tgt} at all: check the data-bin and -s/-t")
    close = difflib.get_close_matches(split, splits, n=1)
    fix = f"pass {flag} {close[0]}" if close else f"pass {flag} with one of them"
    return UsageError(f"{flag} {split}: the data-bin {data_path} has no split {split!r} for {src}-{tgt} (it has "
                      f"{', '.join(splits)}): {fix}")


def empty_pairs(dataset) -> np.ndarray:
    """Ids of the pairs whose source or target is EOS alone (an empty line)."""
    empty = np.asarray(dataset.src_sizes) <= 1
    if getattr(dataset, "tgt_sizes", None) is not None:
        empty |= np.asarray(dataset.tgt_sizes) <= 1
    return np.flatnonzero(empty)


class StartupChecks:
    """Mixed into the ``varattn_translation`` task, before fairseq's ``TranslationTask``."""

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        resolve_decoding_options(DecodingRequest.of(cfg))  # what no model can use
        return super().setup_task(cfg, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        check_model_decoding(model, self.cfg)
        arch = getattr(cfg, "_name", None) or getattr(cfg, "arch", None)
        self._built_model = (model, arch, not from_checkpoint)
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        criterion = super().build_criterion(cfg, from_checkpoint=from_checkpoint)
        model, arch, training = getattr(self, "_built_model", (None, None, False))
        check_criterion(criterion, getattr(cfg, "_name", None), model, arch, training)
        return criterion

    # ------------------------------------------------------------------ data

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        try:
            super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        except FileNotFoundError as e:
            if not str(e).startswith("Dataset not found"):
                raise
            raise missing_split_error(split, self.cfg.data, self.cfg.source_lang, self.cfg.target_lang,
                                      getattr(self.cfg, "train_subset", None)) from e
        dataset = self.datasets[split]
        dataset.varattn_split = split
        empty = empty_pairs(dataset)
        if len(empty) == 0:
            return
        src, tgt = self.cfg.source_lang, self.cfg.target_lang
        num_src = int((np.asarray(dataset.src_sizes)[empty] <= 1).sum())
        where = (f"split {split!r} ({self.cfg.data}/{split}.{src}-{tgt}.*: sentence ids {_ids(empty)}, "
                 "i.e. line id + 1 of the text given to fairseq-preprocess)")
        counts = f"{num_src} with an empty source line, {len(empty) - num_src} more with an empty target line"
        if not getattr(self.cfg, "skip_empty_lines", False):
            raise UsageError(
                f"{len(empty)} of {len(dataset)} sentence pairs of {where} are empty on one side "
                f"({counts}): they would be {'learnt' if split.startswith('train') else 'scored'} as "
                "pairs of EOS alone. Remove the empty lines from both sides of the text and run "
                "fairseq-preprocess again, or pass --skip-empty-lines to leave them out")
        logger.warning("--skip-empty-lines: leaving out %d of %d sentence pairs of %s (%s)",
                       len(empty), len(dataset), where, counts)
        dataset.varattn_skip = empty

    def get_batch_iterator(self, dataset, max_tokens=None, *args, **kwargs):
        if max_tokens is not None:
            dataset.varattn_max_tokens = max_tokens  # read by filter_indices_by_size
        return super().get_batch_iterator(dataset, max_tokens, *args, **kwargs)

    def filter_indices_by_size(self, indices, dataset, max_positions=None, ignore_invalid_inputs=False):
        skip = getattr(dataset, "varattn_skip", None)
        if skip is not None and len(skip):
            indices = indices[~np.isin(indices, skip)]
        # the pairs that do not fit --max-tokens first: fairseq-train's max_positions includes
        # --max-tokens, so fairseq's own filter would drop them blaming max_positions
        max_tokens = getattr(dataset, "varattn_max_tokens", None)
        if max_tokens is not None and len(indices):
            indices = self._filter_by_max_tokens(indices, dataset, max_tokens, ignore_invalid_inputs)
        return super().filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)

    def _filter_by_max_tokens(self, indices, dataset, max_tokens, ignore_invalid_inputs):
        sizes = dataset.num_tokens_vec(indices)
        too_long = indices[sizes > max_tokens]
        if len(too_long) == 0:
            return indices
        split = getattr(dataset, "varattn_split", "the data")
        longest = int(sizes.max())
        if not ignore_invalid_inputs:
            first = int(too_long[0])
            src_len, tgt_len = dataset.size(first)
            raise UsageError(
                f"sentence pair {first} of {split!r} has {dataset.num_tokens(first)} tokens (source "
                f"{src_len}, target {tgt_len}, EOS included), more than --max-tokens {max_tokens}, so no "
                f"batch can hold it ({len(too_long)} such pairs, the longest {longest} tokens): raise "
                f"--max-tokens to at least {longest} (--max-tokens-valid for validation only), or pass "
                "--skip-invalid-size-inputs-valid-test to leave them out")
        if split == getattr(self.cfg, "train_subset", "train") and len(too_long) > MAX_DROPPED_SHARE * len(indices):
            raise UsageError(
                f"--max-tokens {max_tokens} would leave out {len(too_long)} of {len(indices)} sentence pairs of "
                f"{split!r} ({100 * len(too_long) / len(indices):.0f}%, more than {MAX_DROPPED_SHARE:.0%}): they have "
                f"more tokens than one batch may hold (sentence ids {_ids(np.sort(too_long))}; the longest has "
                f"{longest} tokens, EOS included). Raise --max-tokens to at least {longest}")
        logger.warning("leaving out %d sentence pairs of %r longer than --max-tokens %d (sentence ids %s; "
                       "the longest has %d tokens)", len(too_long), split, max_tokens,
                       _ids(np.sort(too_long)), longest)
        return indices[sizes <= max_tokens]

    # ------------------------------------------------------------------ inference

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        check_search_options(args)
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                       constraints=constraints)
        if not hasattr(generator, "beam_size"):  # --score-reference scores the given targets
            return hypos
        src_tokens = sample["net_input"]["src_tokens"]
        d = self.source_dictionary
        empty = (src_tokens.ne(d.pad()) & src_tokens.ne(d.eos())).sum(dim=1).eq(0).nonzero().view(-1).tolist()
        for row in empty:
            hypos[row] = [self._empty_hypothesis(models, sample, row)]
        if empty:
            logger.info("%d empty source sentence(s): translated as the empty sentence", len(empty))
        return hypos

    @torch.no_grad()
    def _empty_hypothesis(self, models, sample, row: int):
        """The hypothesis of EOS alone, scored like beam search scores (the ensemble's mean
        probability of EOS after BOS, in nats)."""
        eos = self.target_dictionary.eos()
        net_input = sample["net_input"]
        src = net_input["src_tokens"][row:row + 1]
        prev = src.new_full((1, 1), eos)
        scores = []
        for model in models:
            net_output = model(src, net_input["src_lengths"][row:row + 1], prev)
            scores.append(model.get_normalized_probs(net_output, log_probs=True)[0, -1, eos].float())
        score = torch.logsumexp(torch.stack(scores), 0) - float(np.log(len(scores)))
        return {"tokens": prev.new_tensor([eos]), "score": score, "attention": None,
                "alignment": torch.empty(0), "positional_scores": score.view(1)}
