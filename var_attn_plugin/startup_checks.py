"""The ``varattn_translation`` task's checks of options and data, before any update is made.

fairseq builds the task (``setup_task``), the model (``build_model``) and the criterion
(``build_criterion``) before it loads the validation and training data, and it loads the data
and forms batches before the first update. :class:`StartupChecks` hooks into these steps so
that a combination of options that cannot work, or data that would be silently lost or
learnt from, stops the run there with a :class:`~var_attn_plugin.errors.UsageError` naming
the flag (or the split and sentence) and the fix:

- ``setup_task``: decoding options out of range (``--kmax``);
- ``build_model``: a decoding that the model cannot give (``--latent-decoding dirichlet-mean``
  for a model that is not ``var-relaxed``); the model itself refuses any other task
  (``var_attn_plugin.model.check_task``);
- ``build_criterion``: ``--criterion varattn_elbo`` with a model of another architecture, and
  a latent ``--attention-mode`` trained with one of fairseq's criteria (which read the soft
  attention's output only);
- ``load_dataset``: sentence pairs with an empty source or target line (``--skip-empty-lines``
  leaves them out, with their count logged);
- batching: a sentence pair longer than ``--max-tokens`` (no batch can hold it);
  ``--skip-invalid-size-inputs-valid-test`` leaves such pairs out, with their count logged.

At inference, a source sentence without any word (an empty line in ``fairseq-interactive``)
gets the empty translation, scored by the model, instead of beam search's forced words.
"""

import logging
from typing import Optional

import numpy as np
import torch

from .errors import UsageError

logger = logging.getLogger(__name__)

SKIP_EMPTY_LINES_HELP = (
    "leave out sentence pairs whose source or target line is empty (their count is logged); "
    "without it such data stops at start-up")


def _ids(ids: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def check_decoding_config(cfg) -> None:
    """The decoding options of the task that no model can use."""
    kmax = getattr(cfg, "kmax", 1)
    if kmax is not None and kmax < 1:
        raise UsageError(
            f"--kmax must be at least 1 (the source positions --latent-decoding kmax keeps), got {kmax}")


def check_model_decoding(model, cfg) -> None:
    """The task's ``--latent-decoding`` against the model's attention mode."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return
    if str(getattr(cfg, "latent_decoding", "auto")) == "dirichlet-mean" and spec.relaxation != "dirichlet":
        raise UsageError(
            "--latent-decoding dirichlet-mean needs a model trained with --attention-mode var-relaxed; "
            f"this one is --attention-mode {model.attention_mode}: use --latent-decoding exact, kmax or soft")


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
        check_decoding_config(cfg)
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
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
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
        indices = super().filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)
        max_tokens = getattr(dataset, "varattn_max_tokens", None)
        if max_tokens is None or len(indices) == 0:
            return indices
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
        logger.warning("leaving out %d sentence pairs of %r longer than --max-tokens %d (sentence ids %s; "
                       "the longest has %d tokens)", len(too_long), split, max_tokens,
                       _ids(np.sort(too_long)), longest)
        return indices[sizes <= max_tokens]

    # ------------------------------------------------------------------ inference

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
