"""The hub interface: translate and align raw sentences from Python.

``VarAttnModel.from_pretrained`` (or :func:`from_pretrained` here) loads a checkpoint the
way fairseq's own models load from the hub and returns a :class:`VarAttnHubInterface`,
fairseq's ``GeneratorHubInterface`` with two additions:

- ``translate(sentences, beam=5, latent_decoding=..., kmax=..., gnmt_lenpen=...,
  eos_penalty=...)`` accepts the task's decoding options (docs/METHOD.md §6) next to
  fairseq's generation options, and warns about inputs the model cannot read (all pieces
  ``<unk>``: the wrong or a missing sentencepiece model; mostly ``<unk>``: a script the
  model has never seen; whitespace only), naming each (``var_attn_plugin.hub`` logger);
- ``align(source, target)`` gives, for every target word of a sentence pair, the prior, the
  inference network's posterior q (variational models) and the model's exact posterior
  ``p(z_t | x, y_<=t) ∝ p(z_t | x, y_<t) · p(y_t | x, y_<t, z_t)`` (latent models) over the
  source words, teacher-forced on the given target like ``varattn-align``.

A keyword that none of these take (``translate(..., beem=10)``) is refused with a
:class:`~var_attn_plugin.errors.UsageError` naming it, the closest valid keyword and the
valid ones, instead of being silently ignored.

::

    from var_attn_plugin.model import VarAttnModel

    model = VarAttnModel.from_pretrained(
        "checkpoints", checkpoint_file="checkpoint_best.pt", data_name_or_path="data-bin",
        bpe="sentencepiece", sentencepiece_model="spm.de.model",
        target_sentencepiece_model="spm.en.model")
    model.translate("Guten Morgen.", beam=5)
    model.align("Guten Morgen.", "Good morning.").exact_posterior  # I x J

The source sentencepiece model encodes the input; the target one (optional for
``translate``, needed by ``align``) encodes reference translations and decodes outputs
(without it, outputs are decoded by the sentencepiece convention: pieces joined, ``▁``
read as a space). Decoding options start from the task's defaults, as in
``fairseq-generate``, not from what training used for ``--eval-bleu``.

Dimensions: I target words (or pieces), J source words (or pieces), T target pieces and S
source pieces, EOS included.
"""

import difflib
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional, Union

import torch
from fairseq.hub_utils import GeneratorHubInterface
from torch import Tensor

from .alignment import alignment_log_probs, merged_matrix, real_positions
from .decoding import DECODING_OPTIONS
from .errors import UsageError
from .input_check import HUB_FIX, sentencepiece_mismatch, warn_unreadable_inputs
from .loading import (
    PLUGIN_DIR,
    PYTHON,
    ArgumentNames,
    DictionaryNotFoundError,  # noqa: F401  (hub.DictionaryNotFoundError, as before)
    load_for_inference,
)
from .model import VarAttnModel
from .task import VarAttnTranslationConfig
from .tools.words import detect_scheme

logger = logging.getLogger(__name__)


def decoding_defaults() -> dict:
    """The task's default decoding options, by name."""
    defaults = {f.name: f.default for f in fields(VarAttnTranslationConfig) if f.name in DECODING_OPTIONS}
    return {name: getattr(value, "value", value) for name, value in defaults.items()}


@dataclass
class Alignment:
    """Alignment distributions of one sentence pair, teacher-forced on the target.

    Rows are target words (pieces with ``words=False``), columns source words; the last
    row and column are EOS (``</s>``). A word's row is the mean over its pieces of the
    probability summed over each source word's pieces, so every row sums to 1.
    """

    source: List[str]  # J source words (or pieces), EOS last
    target: List[str]  # I target words (or pieces), EOS last
    prior: Tensor  # I x J  p(z_t | x, y_<t), the attention
    posterior: Optional[Tensor]  # I x J  q(z_t | x, y), the inference network; None unless variational
    exact_posterior: Optional[Tensor]  # I x J  p(z_t | x, y_<=t); None for a soft-attention model
    source_pieces: List[str]  # S pieces, EOS last
    target_pieces: List[str]  # T pieces, EOS last



class SentencepieceMismatchError(UsageError):
    """A sentencepiece model that did not make the ``side`` dictionary's pieces; ``named`` is
    how its user gave it (``sentencepiece_model='x.model'``, ``--spm x.model``)."""

    def __init__(self, named: str, path: str, side: str, reason: str):
        super().__init__(f"{named}: {reason}; pass the {side} language's sentencepiece model")
        self.path, self.side, self.reason = path, side, reason


class VarAttnHubInterface(GeneratorHubInterface):
    """fairseq's ``GeneratorHubInterface`` with decoding options and :meth:`align`."""

    def __init__(self, cfg, task, models, target_sentencepiece_model: Optional[str] = None):
        super().__init__(cfg, task, models)
        self.target_spm = None
        if target_sentencepiece_model is not None:
            import sentencepiece

            self.target_spm = sentencepiece.SentencePieceProcessor(model_file=str(target_sentencepiece_model))

    # ------------------------------------------------------------------ keywords

    # generate()'s own keywords besides beam and verbose (fairseq's GeneratorHubInterface)
    GENERATE_KEYWORDS = ("skip_invalid_size_inputs", "inference_step_args", "prefix_allowed_tokens_fn")

    def generation_keywords(self) -> List[str]:
        """Every keyword ``translate``/``sample``/``generate`` take: beam, verbose, the task's
        decoding options, fairseq's generation options (``cfg.generation``) and generate's own."""
        generation = [name for name in self.cfg.generation.keys() if not str(name).startswith("_")]
        return sorted({"beam", "verbose", *DECODING_OPTIONS, *generation, *self.GENERATE_KEYWORDS})

    def check_keywords(self, method: str, kwargs: dict, valid: Optional[List[str]] = None) -> None:
        """Refuse a keyword that ``method`` does not take (fairseq would set it on a copy of
        its generation options and ignore it): a UsageError naming it, the closest valid one
        and the valid ones."""
        valid = self.generation_keywords() if valid is None else valid
        unknown = [name for name in kwargs if name not in valid]
        if not unknown:
            return
        name = unknown[0]
        close = difflib.get_close_matches(name, valid, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{method}() got an unknown keyword {name!r}{suggestion}; valid keywords: "
                         f"{', '.join(valid)}")

    # ------------------------------------------------------------------ translation

    def translate(self, sentences: Union[str, List[str]], beam: int = 5, verbose: bool = False, **kwargs):
        self.check_keywords("translate", kwargs)
        return super().translate(sentences, beam, verbose, **kwargs)

    def sample(self, sentences: Union[str, List[str]], beam: int = 1, verbose: bool = False, **kwargs):
        self.check_keywords("sample", kwargs)
        if isinstance(sentences, str):
            return self.sample([sentences], beam=beam, verbose=verbose, **kwargs)[0]
        tokens = [self.encode(sentence) for sentence in sentences]
        warn_unreadable_inputs(logger, tokens, self.src_dict, 1, HUB_FIX, sentences, label="sentence")
        return [self.decode(hypos[0]["tokens"]) for hypos in self.generate(tokens, beam, verbose, **kwargs)]

    def generate(self, tokenized_sentences, beam: int = 5, verbose: bool = False, **kwargs):
        """fairseq's ``generate``; the task's decoding options (``latent_decoding``, ``kmax``,
        ``gnmt_lenpen``, ``eos_penalty``) apply to this call only; an unknown keyword is a
        UsageError (:meth:`check_keywords`)."""
        self.check_keywords("generate", kwargs)
        options = {name: kwargs.pop(name) for name in DECODING_OPTIONS if name in kwargs}
        saved = {name: getattr(self.task.cfg, name) for name in options}
        try:
            for name, value in options.items():
                setattr(self.task.cfg, name, value)
            return super().generate(tokenized_sentences, beam, verbose, **kwargs)
        finally:
            for name, value in saved.items():
                setattr(self.task.cfg, name, value)

    def remove_bpe(self, sentence: str) -> str:
        if self.target_spm is not None:
            return self.target_spm.decode(sentence.split())
        return super().remove_bpe(sentence)

    # ------------------------------------------------------------------ alignment

    def encode_target(self, sentence: str) -> torch.LongTensor:
        """A reference translation -> target token ids with EOS (target sentencepiece model)."""
        sentence = self.tokenize(sentence)
        if self.target_spm is not None:
            sentence = " ".join(self.target_spm.encode(sentence, out_type=str))
        elif self.bpe is not None:
            raise UsageError(
                "align() encodes the target sentence too, and the source sentencepiece model would "
                "turn it into the wrong pieces: pass target_sentencepiece_model='TARGET.model' to "
                "from_pretrained (the same file as sentencepiece_model when one joint model encoded "
                "both languages)")
        return self.tgt_dict.encode_line(sentence, add_if_not_exist=False).long()

    def subword_schemes(self):
        """How pieces form words on each side: sentencepiece with a sentencepiece model, else
        read from the dictionaries."""
        spm = getattr(self.cfg.bpe, "_name", None) == "sentencepiece" if self.cfg.bpe else False
        source = "sentencepiece" if spm else detect_scheme(self.src_dict.symbols)
        target = "sentencepiece" if spm or self.target_spm is not None else detect_scheme(self.tgt_dict.symbols)
        return source, target

    @torch.no_grad()
    def align(self, source: str, target: str, words: bool = True, **kwargs) -> Alignment:
        """The alignment distributions of one sentence pair (see :class:`Alignment`).

        ``source`` and ``target`` are raw text, encoded with the source and target
        sentencepiece models; ``words=False`` keeps pieces. Uses the first model of an
        ensemble. Any other keyword is a UsageError naming it.
        """
        from fairseq.data import LanguagePairDataset

        self.check_keywords("align", kwargs, valid=["source", "target", "words"])
        model = self.models[0]
        src_tokens, tgt_tokens = self.encode(source), self.encode_target(target)
        warn_unreadable_inputs(logger, [src_tokens], self.src_dict, 1, HUB_FIX, [source], label="source sentence")
        dataset = LanguagePairDataset(
            [src_tokens], [src_tokens.numel()], self.src_dict, [tgt_tokens], [tgt_tokens.numel()], self.tgt_dict,
            left_pad_source=self.task.cfg.left_pad_source, left_pad_target=self.task.cfg.left_pad_target)
        sample = dataset.collater([dataset[0]])
        sample = {**sample, "net_input": {k: v.to(self.device) for k, v in sample["net_input"].items()},
                  "target": sample["target"].to(self.device)}

        names = ["prior"]
        names += ["posterior"] if model.spec.variational else []
        names += ["exact-posterior"] if model.spec.latent else []
        log_probs = alignment_log_probs(model, sample, names)
        src_kept = real_positions(sample["net_input"]["src_tokens"], self.src_dict)[0][0]  # S
        tgt_kept = real_positions(sample["target"], self.tgt_dict)[0][0]  # T
        src_pieces = [self.src_dict[k] for k in sample["net_input"]["src_tokens"][0][src_kept].tolist()]
        tgt_pieces = [self.tgt_dict[k] for k in sample["target"][0][tgt_kept].tolist()]

        src_scheme, tgt_scheme = self.subword_schemes() if words else ("none", "none")
        eos = self.tgt_dict[self.tgt_dict.eos()]
        matrices = {}
        for name in names:
            probs = log_probs[name][0].exp()[tgt_kept][:, src_kept].cpu().double().numpy()  # T x S
            matrix, src_labels, tgt_labels = merged_matrix(probs, src_pieces, tgt_pieces, src_scheme, tgt_scheme, eos)
            matrices[name] = torch.from_numpy(matrix).float()  # I x J
        return Alignment(
            source=src_labels, target=tgt_labels, prior=matrices["prior"],
            posterior=matrices.get("posterior"), exact_posterior=matrices.get("exact-posterior"),
            source_pieces=src_pieces, target_pieces=tgt_pieces,
        )


# ------------------------------------------------------------------ loading


def checkpoint_paths(model_name_or_path: Union[str, Path], checkpoint_file: str) -> List[str]:
    """The checkpoint files: ``model_name_or_path`` itself when it is a file, else
    ``checkpoint_file`` in that directory (several joined by ``os.pathsep``: an ensemble)."""
    path = Path(model_name_or_path)
    paths = [path] if path.is_file() else [path / name for name in checkpoint_file.split(os.pathsep)]
    for p in paths:
        if not p.is_file():
            raise UsageError(f"no checkpoint file {p}: pass the checkpoint directory and checkpoint_file=, "
                           "or the path of the .pt file")
    return [str(p) for p in paths]


def data_directory(model_dir: Path, data_name_or_path: Optional[str]) -> Optional[str]:
    """The data directory: relative to the checkpoint's directory when it starts with ``.``,
    as fairseq's hub has it."""
    if data_name_or_path is None:
        return None
    data = str(data_name_or_path)
    return os.path.join(model_dir, data) if data.startswith(".") else data


def from_pretrained(model_name_or_path: Union[str, Path], checkpoint_file: str = "checkpoint_best.pt",
                    data_name_or_path: Optional[str] = None, target_sentencepiece_model: Optional[str] = None,
                    **kwargs) -> VarAttnHubInterface:
    """Load a checkpoint for translation and alignment from Python.

    Args:
        model_name_or_path: the checkpoint directory, or the ``.pt`` file itself.
        checkpoint_file: the file in that directory (default ``checkpoint_best.pt``).
        data_name_or_path: the binarised data directory whose ``dict.*.txt`` the model was
            trained with; default: the directory saved in the checkpoint.
        target_sentencepiece_model: the target language's sentencepiece model (needed by
            ``align``; decodes translations).
        **kwargs: fairseq options overriding the checkpoint's, e.g. ``bpe="sentencepiece"``,
            ``sentencepiece_model=SOURCE.model`` (implies ``bpe``), ``source_lang``,
            ``latent_decoding``, ``beam`` is given to ``translate``.
    """
    paths = checkpoint_paths(model_name_or_path, checkpoint_file)
    return load_hub(paths, data_directory(Path(paths[0]).parent, data_name_or_path), target_sentencepiece_model,
                    kwargs, PYTHON)


def load_hub(paths: List[str], data: Optional[str] = None, target_sentencepiece_model: Optional[str] = None,
             options: Optional[dict] = None, names: ArgumentNames = PYTHON) -> VarAttnHubInterface:
    """The hub interface of the checkpoint files ``paths`` (several: an ensemble), loaded by
    :func:`~var_attn_plugin.loading.load_for_inference` with the task's default decoding
    options (not what training used for ``--eval-bleu``) and fairseq ``options`` overriding the
    checkpoint's; the sentencepiece models must be those of the dictionaries. User errors
    name the arguments as ``names`` has them (``from_pretrained``'s keywords, or
    ``varattn-translate``'s flags)."""
    options = dict(options or {})
    if options.get("user_dir") not in (None, PLUGIN_DIR):
        logger.info("user_dir=%s ignored: the plugin is already imported from %s", options["user_dir"], PLUGIN_DIR)
    if options.get("bpe") == "sentencepiece" and options.get("sentencepiece_model") is None:
        raise UsageError("bpe='sentencepiece' needs sentencepiece_model='SOURCE.model', the source language's "
                         "sentencepiece model")
    spm_paths = {"sentencepiece_model": options.get("sentencepiece_model"),
                 "target_sentencepiece_model": target_sentencepiece_model}
    for name, value in spm_paths.items():
        if value is not None and not Path(value).is_file():
            raise UsageError(f"{names.naming(name, value)}: no such sentencepiece model file")
    overrides = {**decoding_defaults(), **options}
    if overrides.get("sentencepiece_model") is not None and "bpe" not in overrides:
        overrides["bpe"] = "sentencepiece"
    models, cfg, task = load_for_inference(paths, data, overrides, cpu=True, names=names)
    hub = VarAttnHubInterface(cfg, task, models, target_sentencepiece_model)
    for argument, processor, dictionary, side in (
        ("sentencepiece_model", getattr(hub.bpe, "sp", None), hub.src_dict, "source"),
        ("target_sentencepiece_model", hub.target_spm, hub.tgt_dict, "target"),
    ):
        problem = processor is not None and sentencepiece_mismatch(dictionary, processor, side)
        if problem:
            path = str(spm_paths[argument])
            raise SentencepieceMismatchError(names.naming(argument, path), path, side, problem)
    return hub


VarAttnModel.hub_loader = staticmethod(from_pretrained)  # VarAttnModel.from_pretrained
