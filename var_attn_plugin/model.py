"""The latent-alignment model, whatever network computes its states: :class:`VarAttnModel`.

An architecture (``varattn_lstm`` in var_attn_plugin/lstm/, ``varattn_transformer`` in
var_attn_plugin/transformer/) subclasses :class:`VarAttnModel` and supplies

- an encoder whose output dict has ``encoder_out`` ``(B, S, D)`` source states x̃,
  ``encoder_padding_mask`` ``(B, S)``, ``alignment_padding_mask`` ``(B, S)`` (True where ``z_t``
  may not point: pads, and the source EOS under ``--exclude-source-eos``;
  :func:`~var_attn_plugin.latent.distributions.alignment_padding_mask`) and ``src_embeddings``
  ``(B, S, E)`` (after dropout; the inference network reads them);
- a decoder mixing in :class:`LatentDecoderMixin`: ``extract_features`` returns
  :class:`~var_attn_plugin.latent.outputs.AlignmentStates`, ``embed_targets`` embeds target
  tokens for the inference network, ``alignment_output`` is the output layer;
- an :class:`~var_attn_plugin.latent.inference_network.InferenceNetwork` for variational modes.

Everything else is here or in the shared core (var_attn_plugin/latent/): the attention mode, the
objective that applies now, decoding options, checkpoint loading checks and ``forward``, which
has two uses:

- without ``target`` (generation, ``--score-reference``, fairseq's own criteria): returns
  ``((B, T, V) log-probabilities, {"attn": [prior]})`` under the decoding option;
- with ``target`` (our criterion, which hands the target tokens to the model): returns the
  :class:`~var_attn_plugin.latent.objectives.LatentOutputs` that the objective of the attention
  mode needs (docs/METHOD.md §5).

Dimensions: B batch, S source length, T target length, V vocabulary.
"""

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderDecoderModel
from torch import Tensor, nn

from .decoding import default_decoding_options, resolve_decoding_options
from .errors import UsageError
from .latent.modes import ATTENTION_MODES, LATENT_DECODINGS, mode_spec
from .latent.objectives import LatentOutputs
from .latent.outputs import (
    AlignmentStates,
    DecodingOptions,
    EstimatorSettings,
    latent_outputs,
    penalise_eos,
    word_log_probs,
)

logger = logging.getLogger(__name__)

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]


@dataclass
class LatentModelConfig(FairseqDataclass):
    """Options of every architecture: the estimator and how the latent output is computed."""

    attention_mode: ChoiceEnum(list(ATTENTION_MODES)) = field(
        default="var-enum",
        metadata={"help": "training objective, one row of the paper's Table 1: "
                  + "; ".join(f"{k}: {v.description}" for k, v in ATTENTION_MODES.items())},
    )
    enum_chunk_mb: int = field(
        default=256,
        metadata={"help": "memory budget (MiB) for one chunk of enumerated output logits "
                  "(tokens x source positions x vocabulary; 0: one token per chunk); bounds peak "
                  "memory, never changes results"},
    )
    default_latent_decoding: ChoiceEnum(list(LATENT_DECODINGS) + ["auto"]) = field(
        default="auto",
        metadata={"help": "decoding saved with the model, used when the task's --latent-decoding is auto: "
                  "auto = soft for the soft mode, exact enumeration for latent modes"},
    )
    # training-time options of the sampled modes (docs/METHOD.md §5), paper defaults
    wsram_samples: int = field(default=5, metadata={"help": "var-wsram: samples from q per target token"})
    gumbel_temperature: float = field(
        default=0.1, metadata={"help": "var-gumbel: temperature τ of the Gumbel-softmax relaxation"})
    dirichlet_transform: ChoiceEnum(["softplus", "exp", "softmax"]) = field(
        default="softplus", metadata={"help": "var-relaxed: positive transform of scores into concentrations "
                                      "(softmax: n times the softmax over the n source positions, a Dirichlet "
                                      "whose mean is the categorical distribution of the same scores)"})
    dirichlet_min_alpha: float = field(default=0.01, metadata={"help": "var-relaxed: smallest concentration"})
    dirichlet_max_alpha: float = field(default=100.0, metadata={"help": "var-relaxed: largest concentration"})
    dirichlet_warmup_updates: int = field(
        default=0,
        metadata={"help": "var-relaxed: train the generative model with the hard-enum objective for "
                  "this many updates before adding q (the paper pretrains this way)"},
    )
    q_warmup_updates: int = field(
        default=0,
        metadata={"help": "variational modes: train only the inference network q(z | x, y) for this many "
                  "updates, the generative model held fixed (q's optimum is then the model's exact "
                  "posterior); for a warm start (--finetune-from-model) from a model without q, whose "
                  "first joint updates against an untrained q would otherwise pull the model onto it"},
    )
    soft_loss_weight: float = field(
        default=0.0,
        metadata={"help": "hard-sample, var-sample: also train the soft baseline's likelihood, weighted by "
                  "this (the soft-attention model trained jointly with the latent one, as the paper's "
                  "original code could); 0: the baseline is only a baseline"},
    )
    exclude_source_eos: bool = field(
        default=False,
        metadata={"help": "the source EOS is not an alignment candidate (as in the paper, whose sources have "
                  "no EOS): z_t, the prior, q and the input feed range over the source words only; the "
                  "encoder still reads the EOS. Saved with the model"},
    )
    max_source_positions: int = field(default=1024, metadata={"help": "longest source accepted"})
    max_target_positions: int = field(default=1024, metadata={"help": "longest target accepted"})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_positive(cfg, names) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag(name)} must be a positive size, got {getattr(cfg, name)}")


def check_latent_config(cfg: LatentModelConfig) -> None:
    """Raise a UsageError naming the flag for a value outside its range."""
    check_positive(cfg, ("max_source_positions", "max_target_positions"))
    if not 0 <= cfg.dropout < 1:
        raise UsageError(f"--dropout is a probability in [0, 1), got {cfg.dropout}")
    if cfg.enum_chunk_mb < 0:
        raise UsageError(f"--enum-chunk-mb must be >= 0 (0: one target token per chunk), got {cfg.enum_chunk_mb}")
    if cfg.wsram_samples < 1:
        raise UsageError(f"--wsram-samples must be at least 1, got {cfg.wsram_samples}")
    if cfg.gumbel_temperature <= 0:
        raise UsageError(f"--gumbel-temperature must be > 0 (the paper uses 0.1), got {cfg.gumbel_temperature}")
    if not 0 < cfg.dirichlet_min_alpha <= cfg.dirichlet_max_alpha:
        raise UsageError(
            "--dirichlet-min-alpha and --dirichlet-max-alpha must satisfy 0 < min <= max, got "
            f"{cfg.dirichlet_min_alpha} and {cfg.dirichlet_max_alpha}")
    if cfg.soft_loss_weight < 0:
        raise UsageError(f"--soft-loss-weight must be >= 0, got {cfg.soft_loss_weight}")
    spec = mode_spec(str(cfg.attention_mode))
    if cfg.soft_loss_weight > 0 and not (spec.soft_output and spec.sample_from):
        raise UsageError(
            f"--soft-loss-weight trains the soft baseline of the sampled modes (hard-sample, var-sample); "
            f"--attention-mode {cfg.attention_mode} has none: drop --soft-loss-weight")
    if cfg.dirichlet_warmup_updates < 0:
        raise UsageError(f"--dirichlet-warmup-updates must be >= 0, got {cfg.dirichlet_warmup_updates}")
    warmup = getattr(cfg, "q_warmup_updates", 0)
    if warmup < 0:
        raise UsageError(f"--q-warmup-updates must be >= 0, got {warmup}")
    if warmup > 0 and not spec.variational:
        raise UsageError(
            f"--q-warmup-updates trains the inference network q(z | x, y) of the variational modes (var-*); "
            f"--attention-mode {cfg.attention_mode} has none: drop --q-warmup-updates")
    if warmup > 0 and cfg.dirichlet_warmup_updates > 0:
        raise UsageError(
            "--q-warmup-updates and --dirichlet-warmup-updates both start at the first update, and q is "
            "not used while the Dirichlet warm-up trains the model without it: pass one of them")


def excludes_source_eos(cfg) -> bool:
    """``--exclude-source-eos`` (False for checkpoints saved before the option existed)."""
    return bool(getattr(cfg, "exclude_source_eos", False))


def task_name(task) -> str:
    """The name a fairseq task is registered under (its class name when unregistered)."""
    from fairseq.tasks import TASK_REGISTRY

    return next((name for name, cls in TASK_REGISTRY.items() if cls is type(task)), type(task).__name__)


PLUGIN_TASK = "varattn_translation"


def is_foreign_task(task) -> bool:
    """Is ``task`` a fairseq task other than this plugin's ``varattn_translation``? (Looked up in
    fairseq's registry, so that the model does not import the task module, which imports it.)"""
    from fairseq.tasks import TASK_REGISTRY, FairseqTask

    plugin_task = TASK_REGISTRY.get(PLUGIN_TASK)
    return isinstance(task, FairseqTask) and not (plugin_task is not None and isinstance(task, plugin_task))


def check_task(task, arch: str) -> None:
    """Refuse a fairseq task other than ``varattn_translation`` (training or loading)."""
    if is_foreign_task(task):
        raise UsageError(
            f"--arch {arch} needs --task varattn_translation, got --task {task_name(task)}: that "
            "task drops the last batch of a split when its size is not a multiple of "
            "--required-batch-size-multiple (sentences silently left out of generation and scoring) and "
            "has no --latent-decoding options; pass --task varattn_translation, or use varattn-train / "
            "varattn-generate / varattn-interactive / varattn-validate, which pass it")


def dictionary_fingerprint(dictionary) -> int:
    """A 63-bit hash of the dictionary's symbols in order."""
    digest = hashlib.sha1("\n".join(dictionary.symbols).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class LatentDecoderMixin:
    """``forward`` of a fairseq incremental decoder whose ``extract_features`` returns
    :class:`AlignmentStates`: word distributions under the decoding option (latent/outputs.py),
    the EOS penalty of beam search, and the prior as fairseq's ``attn``."""

    alignment_output: nn.Module
    decoding: DecodingOptions
    estimator: EstimatorSettings

    def extract_features(self, prev_output_tokens: Tensor, encoder_out,
                         incremental_state: Optional[IncrementalState] = None) -> AlignmentStates:
        raise NotImplementedError

    def embed_targets(self, tokens: Tensor) -> Tensor:
        """``(B, T)`` target tokens -> ``(B, T, E)`` embeddings after dropout (the inference network's input)."""
        raise NotImplementedError

    def forward(self, prev_output_tokens: Tensor, encoder_out=None,
                incremental_state: Optional[IncrementalState] = None, **kwargs):
        """Returns ``((B, T, V) log-probabilities, {"attn": [(B, T, S) prior]})``."""
        states = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        log_probs = word_log_probs(self.alignment_output, states, self.decoding, self.estimator)
        if incremental_state is not None and self.decoding.eos_penalty > 0:
            log_probs = penalise_eos(log_probs, states.src_padding_mask, self.dictionary.eos(),
                                     self.decoding.eos_penalty, prev_output_tokens.size(1))
        return log_probs, {"attn": [states.prior_log_probs.exp()]}


class VarAttnModel(FairseqEncoderDecoderModel):
    """A translation model whose alignment is a latent variable; see the module docstring."""

    ARCH = "varattn_lstm"  # the registered architecture name, in messages

    def __init__(self, cfg: LatentModelConfig, encoder, decoder, inference_network: Optional[nn.Module]):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.attention_mode = str(cfg.attention_mode)
        self.spec = mode_spec(self.attention_mode)
        self.inference_network = inference_network
        self.num_updates = 0
        # which words the embeddings belong to, so a checkpoint is never silently paired
        # with another data directory's dictionaries of the same size
        self.register_buffer("dictionary_fingerprint", torch.tensor(
            [dictionary_fingerprint(encoder.dictionary), dictionary_fingerprint(decoder.dictionary)]))
        decoder.estimator = EstimatorSettings.from_config(cfg)
        decoder.decoding = default_decoding_options(self)  # until a task configures decoding

    # the hub's loader: var_attn_plugin.hub (imported with the package) sets it, so that this
    # module, which the hub imports, does not import the hub
    hub_loader = None

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="checkpoint_best.pt", data_name_or_path=None,
                        **kwargs):
        """A hub interface for translating and aligning raw sentences from Python (see
        :mod:`var_attn_plugin.hub`): ``model.translate(...)``, ``model.align(...)``."""
        return VarAttnModel.hub_loader(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)

    @staticmethod
    def spec_of(cfg: LatentModelConfig):
        """The modes-table row of ``cfg.attention_mode`` (an unknown mode is a ValueError)."""
        return mode_spec(str(cfg.attention_mode))

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates
        super().set_num_updates(num_updates)

    def trains_q_alone(self, num_updates: int) -> bool:
        """Is update ``num_updates`` one of --q-warmup-updates, in which only q learns?"""
        return self.inference_network is not None and num_updates < getattr(self.cfg, "q_warmup_updates", 0)

    def generative_parameters(self):
        """Every parameter but the inference network's."""
        q = {id(p) for p in self.inference_network.parameters()} if self.inference_network is not None else set()
        return [p for p in self.parameters() if id(p) not in q]

    def objective_name(self) -> str:
        """The row of the modes table whose objective applies now.

        Training: the attention mode (its ``warmup`` row during --dirichlet-warmup-updates).
        Evaluation: the objective the mode is validated with (exact; var-relaxed's Dirichlet
        ELBO with noise fixed per sentence).
        """
        if not self.training:
            return self.spec.validation or self.attention_mode
        if self.spec.warmup is not None and self.num_updates < self.cfg.dirichlet_warmup_updates:
            return self.spec.warmup
        return self.attention_mode

    def configure_decoding(self, options):
        """Choose how generation turns states into word distributions: ``options`` are the
        task's (a :class:`~var_attn_plugin.decoding.DecodingRequest`, ``auto`` allowed) or a
        :class:`DecodingOptions`, resolved and checked against this model by
        :func:`~var_attn_plugin.decoding.resolve_decoding_options` (a UsageError naming the flag)."""
        self.decoder.decoding = resolve_decoding_options(options, self)

    _DICTIONARY_FIX = (
        "pass the data-bin the model was trained on (its dict.*.txt files), binarising new text "
        "with fairseq-preprocess --srcdict/--tgtdict from it")

    _DIVERGED_FIX = (
        "the checkpoint's training diverged before it was saved: use an earlier checkpoint (checkpoint_best.pt "
        "or an epoch checkpoint), or train again with a lower --lr (or --clip-norm)")

    @staticmethod
    def non_finite_parameters(state_dict) -> list:
        """The names of the floating-point tensors of ``state_dict`` that hold a NaN or an
        infinity. One float64 sum per tensor (a NaN or an infinity makes it non-finite, and
        float64 does not overflow on weights): about 2 ms per million weights on one CPU core,
        cheap next to reading them from disk."""
        return [name for name, value in state_dict.items()
                if torch.is_tensor(value) and value.is_floating_point()
                and not math.isfinite(float(value.sum(dtype=torch.float64)))]

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading (every tool's and every resumed training's), with a clear user
        error when the data's dictionaries differ from the ones the checkpoint was trained
        with (otherwise a bare tensor size mismatch), and when a weight is NaN or infinite (a
        diverged training: every translation and alignment would be nonsense)."""
        bad = self.non_finite_parameters(state_dict)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise UsageError(f"the checkpoint holds NaN or infinite weights ({len(bad)} of its {len(state_dict)} "
                             f"parameters: {shown}): {self._DIVERGED_FIX}")
        for side, dictionary, key in (
            ("source", self.encoder.dictionary, "encoder.embed_tokens.weight"),
            ("target", self.decoder.dictionary, "decoder.embed_tokens.weight"),
        ):
            if key in state_dict and state_dict[key].size(0) != len(dictionary):
                raise UsageError(
                    f"the checkpoint was trained with a {side} dictionary of "
                    f"{state_dict[key].size(0)} entries, but the data directory's {side} dictionary "
                    f"has {len(dictionary)}: {self._DICTIONARY_FIX}")
        saved = state_dict.get("dictionary_fingerprint")
        if saved is None:  # a checkpoint from before fingerprints: nothing to compare
            state_dict = dict(state_dict, dictionary_fingerprint=self.dictionary_fingerprint)
        else:
            for i, side in enumerate(("source", "target")):
                if int(saved[i]) != int(self.dictionary_fingerprint[i]):
                    raise UsageError(
                        f"the data directory's {side} dictionary is not the one the checkpoint was "
                        f"trained with (same size, different words): {self._DICTIONARY_FIX}")
        state_dict = self._match_inference_network(state_dict)
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    _INFERENCE_PREFIX = "inference_network."

    def _match_inference_network(self, state_dict):
        """Warm starts across modes (``--finetune-from-model``): a checkpoint of a model without
        an inference network (soft, marginal, hard-*) gives a variational model its generative
        part, and q starts from its fresh initialisation; a variational checkpoint loaded into a
        model without q drops q. Every other parameter must still match exactly."""
        saved_q = [k for k in state_dict if k.startswith(self._INFERENCE_PREFIX)]
        if self.inference_network is not None and not saved_q:
            logger.info("the checkpoint has no inference network (a non-variational model): "
                        "q(z | x, y) starts from its initialisation")
            fresh = {self._INFERENCE_PREFIX + k: v for k, v in self.inference_network.state_dict().items()}
            return {**state_dict, **fresh}
        if self.inference_network is None and saved_q:
            logger.info("the checkpoint's inference network is not used by --attention-mode %s: dropped",
                        self.attention_mode)
            return {k: v for k, v in state_dict.items() if not k.startswith(self._INFERENCE_PREFIX)}
        return state_dict

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None):
        # The decoder already returns normalised log-probabilities.
        lprobs = net_output[0]
        return lprobs if log_probs else lprobs.exp()

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor,
                target: Tensor = None, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        if target is None:
            if self.training and self.spec.latent:
                raise RuntimeError(
                    f"--attention-mode {self.attention_mode} must be trained with "
                    "--criterion varattn_elbo (it hands the target to the model)")
            return self.decoder(prev_output_tokens, encoder_out=encoder_out)
        states = self.decoder.extract_features(prev_output_tokens, encoder_out)
        return self.latent_outputs(states, encoder_out, target)

    def latent_outputs(self, states: AlignmentStates, encoder_out, target: Tensor) -> LatentOutputs:
        """Compute what the current objective needs (see :meth:`objective_name`)."""
        spec = mode_spec(self.objective_name())
        pad = self.decoder.dictionary.pad()

        def posterior_scores() -> Tensor:  # s_tj of q(z | x, y), (B, T, S); variational modes
            return self.inference_network(encoder_out["src_embeddings"][0], states.src_padding_mask,
                                          self.decoder.embed_targets(target), target.eq(pad))

        return latent_outputs(self.decoder.alignment_output, states, target, pad, spec,
                              self.decoder.estimator, posterior_scores)
