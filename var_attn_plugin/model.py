"""The variational-attention encoder-decoder, registered as ``varattn_lstm`` (docs/METHOD.md §3-4).

``forward`` has two uses:

- without ``target`` (generation, ``--score-reference``, fairseq's own criteria): returns
  ``((B, T, V) log-probabilities, {"attn": [prior]})`` under the decoding option;
- with ``target`` (our criterion, which hands the target tokens to the model): returns the
  :class:`~var_attn_plugin.objectives.LatentOutputs` that the objective of the attention
  mode needs: the prior, and where needed ``ℓ_t(j)`` for every source position, the soft
  output ``b_t`` and the posterior q.

Dimensions: B batch, S source length, T target length, V vocabulary.
"""

import hashlib
import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderDecoderModel, register_model, register_model_architecture
from torch import Tensor, nn

from .decoder import DecodingOptions, VarAttnDecoder
from .encoder import VarAttnEncoder
from .errors import UsageError
from .inference_network import InferenceNetwork
from .masking import expand_padding_mask, masked_log_softmax
from .modes import ATTENTION_MODES, LATENT_DECODINGS, mode_spec
from .objectives import LatentOutputs
from .sampling import dirichlet_concentration, dirichlet_rsample, gumbel_softmax, sample_categorical

logger = logging.getLogger(__name__)


@dataclass
class VarAttnLSTMConfig(FairseqDataclass):
    # Defaults are the paper's IWSLT14 De-En sizes (docs/METHOD.md §3-4).
    attention_mode: ChoiceEnum(list(ATTENTION_MODES)) = field(
        default="var-enum",
        metadata={"help": "training objective, one row of the paper's Table 1: "
                  + "; ".join(f"{k}: {v.description}" for k, v in ATTENTION_MODES.items())},
    )
    encoder_embed_dim: int = field(default=512, metadata={"help": "source embedding size"})
    encoder_hidden_size: int = field(default=512, metadata={"help": "encoder LSTM size per direction"})
    encoder_layers: int = field(default=2, metadata={"help": "bidirectional encoder LSTM layers"})
    decoder_embed_dim: int = field(default=512, metadata={"help": "target embedding size"})
    decoder_hidden_size: int = field(default=768, metadata={"help": "decoder LSTM size"})
    decoder_layers: int = field(default=2, metadata={"help": "decoder LSTM layers"})
    attention_dim: int = field(default=512, metadata={"help": "hidden size of the prior's MLP scorer"})
    decoder_output_dim: int = field(default=768, metadata={"help": "size of the output layer o_tj"})
    inference_hidden_size: int = field(
        default=512, metadata={"help": "inference network LSTM size per direction (variational modes)"})
    inference_layers: int = field(default=2, metadata={"help": "inference network LSTM layers"})
    dropout: float = field(
        default=0.3, metadata={"help": "dropout on embeddings, between LSTM layers and on the output layer"})
    init_scale: float = field(default=0.1, metadata={"help": "parameters start uniform in [-s, s]"})
    enum_chunk_mb: int = field(
        default=256,
        metadata={"help": "memory budget (MiB) for one chunk of enumerated output logits "
                  "(tokens x source positions x vocabulary; 0: one token per chunk); bounds peak "
                  "memory, never changes results"},
    )
    default_latent_decoding: ChoiceEnum(list(LATENT_DECODINGS) + ["auto"]) = field(
        default="auto",
        metadata={"help": "decoding used when the task does not say: auto = soft for the soft mode, "
                  "exact enumeration for latent modes"},
    )
    # training-time options of the sampled modes (docs/METHOD.md §5), paper defaults
    wsram_samples: int = field(default=5, metadata={"help": "var-wsram: samples from q per target token"})
    gumbel_temperature: float = field(
        default=0.1, metadata={"help": "var-gumbel: temperature τ of the Gumbel-softmax relaxation"})
    dirichlet_transform: ChoiceEnum(["softplus", "exp"]) = field(
        default="softplus", metadata={"help": "var-relaxed: positive transform of scores into concentrations"})
    dirichlet_min_alpha: float = field(default=0.01, metadata={"help": "var-relaxed: smallest concentration"})
    dirichlet_max_alpha: float = field(default=100.0, metadata={"help": "var-relaxed: largest concentration"})
    dirichlet_warmup_updates: int = field(
        default=0,
        metadata={"help": "var-relaxed: train the generative model with the hard-enum objective for "
                  "this many updates before adding q (the paper pretrains this way)"},
    )
    max_source_positions: int = field(default=1024, metadata={"help": "longest source accepted"})
    max_target_positions: int = field(default=1024, metadata={"help": "longest target accepted"})


_SIZES = ("encoder_embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_embed_dim",
          "decoder_hidden_size", "decoder_layers", "attention_dim", "decoder_output_dim",
          "inference_hidden_size", "inference_layers", "max_source_positions", "max_target_positions")


def check_config(cfg: VarAttnLSTMConfig):
    """Raise a UsageError naming the flag for a value outside its range."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    for name in _SIZES:
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag(name)} must be a positive size, got {getattr(cfg, name)}")
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
    if cfg.dirichlet_warmup_updates < 0:
        raise UsageError(f"--dirichlet-warmup-updates must be >= 0, got {cfg.dirichlet_warmup_updates}")


def task_name(task) -> str:
    """The name a fairseq task is registered under (its class name when unregistered)."""
    from fairseq.tasks import TASK_REGISTRY

    return next((name for name, cls in TASK_REGISTRY.items() if cls is type(task)), type(task).__name__)


def check_task(task) -> None:
    """Refuse a fairseq task other than ``varattn_translation`` (training or loading)."""
    from fairseq.tasks import FairseqTask

    from .task import VarAttnTranslationTask

    if isinstance(task, FairseqTask) and not isinstance(task, VarAttnTranslationTask):
        raise UsageError(
            f"--arch varattn_lstm needs --task varattn_translation, got --task {task_name(task)}: that "
            "task drops the last batch of a split when its size is not a multiple of "
            "--required-batch-size-multiple (sentences silently left out of generation and scoring) and "
            "has no --latent-decoding options; pass --task varattn_translation, or use varattn-train / "
            "varattn-generate / varattn-interactive / varattn-validate, which pass it")


def dictionary_fingerprint(dictionary) -> int:
    """A 63-bit hash of the dictionary's symbols in order."""
    digest = hashlib.sha1("\n".join(dictionary.symbols).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def build_embedding(dictionary, dim: int) -> nn.Embedding:
    return nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())


@register_model("varattn_lstm", dataclass=VarAttnLSTMConfig)
class VarAttnModel(FairseqEncoderDecoderModel):
    def __init__(self, cfg: VarAttnLSTMConfig, encoder, decoder, inference_network):
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
        if self.spec.relaxation == "dirichlet":
            decoder.prior_concentration = self.concentration

    @classmethod
    def build_model(cls, cfg: VarAttnLSTMConfig, task):
        check_config(cfg)
        check_task(task)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        spec = mode_spec(str(cfg.attention_mode))
        encoder = VarAttnEncoder(
            src_dict, build_embedding(src_dict, cfg.encoder_embed_dim), cfg.encoder_hidden_size,
            cfg.encoder_layers, cfg.dropout, cfg.dropout,
        )
        decoding = str(cfg.default_latent_decoding)
        if decoding == "auto":
            decoding = "exact" if spec.latent else "soft"
        decoder = VarAttnDecoder(
            tgt_dict, build_embedding(tgt_dict, cfg.decoder_embed_dim), encoder.output_dim,
            cfg.decoder_hidden_size, cfg.decoder_layers, cfg.attention_dim, cfg.decoder_output_dim,
            cfg.dropout, cfg.enum_chunk_mb * 2**20, DecodingOptions(latent_decoding=decoding),
        )
        inference_network = None
        if spec.variational:
            inference_network = InferenceNetwork(
                cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.inference_hidden_size,
                cfg.inference_layers, cfg.dropout,
            )
        model = cls(cfg, encoder, decoder, inference_network)
        model.reset_parameters(cfg.init_scale)
        return model

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="checkpoint_best.pt", data_name_or_path=None,
                        **kwargs):
        """A hub interface for translating and aligning raw sentences from Python (see
        :mod:`var_attn_plugin.hub`): ``model.translate(...)``, ``model.align(...)``."""
        from .hub import from_pretrained

        return from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)

    def reset_parameters(self, scale: float):
        """Every parameter uniform in [-scale, scale] (docs/METHOD.md §3); padding embeddings 0."""
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)
        with torch.no_grad():
            for embedding in (self.encoder.embed_tokens, self.decoder.embed_tokens):
                embedding.weight[embedding.padding_idx].zero_()

    def set_num_updates(self, num_updates):
        self.num_updates = num_updates
        super().set_num_updates(num_updates)

    def objective_name(self) -> str:
        """The row of ATTENTION_MODES whose objective applies now.

        Training: the attention mode (hard-enum during var-relaxed warm-up). Evaluation: the
        exact objective the mode is validated with.
        """
        if not self.training:
            return self.spec.validation or self.attention_mode
        if self.spec.relaxation == "dirichlet" and self.num_updates < self.cfg.dirichlet_warmup_updates:
            return "hard-enum"
        return self.attention_mode

    def concentration(self, scores: Tensor) -> Tensor:
        """Dirichlet concentrations from prior or posterior scores (var-relaxed)."""
        cfg = self.cfg
        return dirichlet_concentration(
            scores, str(cfg.dirichlet_transform), cfg.dirichlet_min_alpha, cfg.dirichlet_max_alpha)

    def configure_decoding(self, options: DecodingOptions):
        """Choose how generation turns states into word distributions (task options)."""
        if options.latent_decoding == "dirichlet-mean" and self.spec.relaxation != "dirichlet":
            raise UsageError(
                "--latent-decoding dirichlet-mean needs a model trained with --attention-mode "
                f"var-relaxed; this one is {self.attention_mode}: use exact, kmax or soft")
        if options.latent_decoding != "soft" and not self.spec.latent:
            logger.warning(
                "decoding a %s-trained model with %s enumeration: its output layer was trained on "
                "the soft context only", self.attention_mode, options.latent_decoding)
        if options.latent_decoding == "soft" and self.spec.latent:
            logger.warning("decoding a %s-trained model with soft attention (usually much worse, "
                           "docs/METHOD.md §6)", self.attention_mode)
        self.decoder.decoding = options

    _DICTIONARY_FIX = (
        "pass the data-bin the model was trained on (its dict.*.txt files), binarising new text "
        "with fairseq-preprocess --srcdict/--tgtdict from it")

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, with a clear error when the data's dictionaries differ from the
        ones the checkpoint was trained with (otherwise a bare tensor size mismatch)."""
        for side, dictionary, key in (
            ("source", self.encoder.dictionary, "encoder.embed_tokens.weight"),
            ("target", self.decoder.dictionary, "decoder.embed_tokens.weight"),
        ):
            if key in state_dict and state_dict[key].size(0) != len(dictionary):
                raise ValueError(
                    f"the checkpoint was trained with a {side} dictionary of "
                    f"{state_dict[key].size(0)} entries, but the data directory's {side} dictionary "
                    f"has {len(dictionary)}: {self._DICTIONARY_FIX}")
        saved = state_dict.get("dictionary_fingerprint")
        if saved is None:  # a checkpoint from before fingerprints: nothing to compare
            state_dict = dict(state_dict, dictionary_fingerprint=self.dictionary_fingerprint)
        else:
            for i, side in enumerate(("source", "target")):
                if int(saved[i]) != int(self.dictionary_fingerprint[i]):
                    raise ValueError(
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

    def latent_outputs(self, states, encoder_out, target: Tensor) -> LatentOutputs:
        """Compute what the current objective needs (see :meth:`objective_name`)."""
        spec = mode_spec(self.objective_name())
        pad = self.decoder.dictionary.pad()
        src_padding_mask = encoder_out["encoder_padding_mask"][0]  # B x S
        tgt_padding_mask = target.eq(pad)  # B x T
        B, T, S = states.prior_log_probs.shape
        layer = self.decoder.alignment_output

        # only real target tokens are scored: N rows of the flattened B x T grid
        row_batch, row_step = (~tgt_padding_mask).nonzero(as_tuple=True)  # N, N
        queries = layer.query_proj(states.hidden[row_batch, row_step])  # N x O
        row_target = target[row_batch, row_step]  # N

        def to_grid(rows: Tensor) -> Tensor:
            """``(N, ...)`` per-token values -> ``(B, T, ...)``, 0 at target pads."""
            grid = rows.new_zeros((B, T) + rows.shape[1:])
            grid[row_batch, row_step] = rows
            return grid

        def output_at(weights: Tensor) -> Tensor:
            """log p(y_t | Σ_j weights_tj x̃_j) for a ``(B, T, S)`` point of the simplex."""
            context = layer.mix_sources(weights, states.output_sources)[row_batch, row_step]  # N x O
            return to_grid(layer.soft_log_probs(queries, context).gather(-1, row_target[:, None]).squeeze(-1))

        out = LatentOutputs(prior_log_probs=states.prior_log_probs)
        if spec.enumerates:  # ℓ_t(j) for every source position
            rows = layer.candidate_token_log_probs(queries, states.output_sources, row_batch, row_target)
            out.token_log_probs = to_grid(rows).masked_fill(src_padding_mask.unsqueeze(1), 0.0)
        if spec.soft_output:  # b_t: the objective (soft), or a detached baseline (sampling modes)
            with torch.set_grad_enabled(torch.is_grad_enabled() and spec.sample_from is None):
                out.soft_token_log_probs = output_at(states.prior_log_probs.exp())

        posterior_scores = None
        if spec.variational:
            tgt_embeddings = F.dropout(self.decoder.embed_tokens(target), p=self.cfg.dropout, training=self.training)
            posterior_scores = self.inference_network.scores(
                encoder_out["src_embeddings"][0], src_padding_mask, tgt_embeddings, tgt_padding_mask)
            out.posterior_log_probs = masked_log_softmax(
                posterior_scores, expand_padding_mask(src_padding_mask, T))  # B x T x S

        if spec.sample_from is not None:  # ℓ_t at K sampled positions
            sampled = out.prior_log_probs if spec.sample_from == "prior" else out.posterior_log_probs
            num_samples = self.cfg.wsram_samples if self.attention_mode == "var-wsram" else 1
            out.sample_indices = sample_categorical(sampled, num_samples)  # B x T x K
            rows = layer.candidate_token_log_probs(
                queries, states.output_sources, row_batch, row_target,
                candidates=out.sample_indices[row_batch, row_step])  # N x K
            out.sample_token_log_probs = to_grid(rows)

        if spec.relaxation == "gumbel":
            weights = gumbel_softmax(out.posterior_log_probs, self.cfg.gumbel_temperature)
            out.relaxed_token_log_probs = output_at(weights)
        elif spec.relaxation == "dirichlet":
            mask = src_padding_mask.unsqueeze(1)  # B x 1 x S
            out.src_padding_mask = mask
            out.prior_alpha = self.concentration(states.prior_scores)
            out.posterior_alpha = self.concentration(posterior_scores)
            out.relaxed_token_log_probs = output_at(dirichlet_rsample(out.posterior_alpha, mask))
        return out


@register_model_architecture("varattn_lstm", "varattn_lstm_iwslt_de_en")
def varattn_lstm_iwslt_de_en(args):
    """The paper's IWSLT14 De-En model (docs/METHOD.md §3-4); identical to ``varattn_lstm``'s defaults."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_hidden_size = getattr(args, "encoder_hidden_size", 512)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", 768)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.attention_dim = getattr(args, "attention_dim", 512)
    args.decoder_output_dim = getattr(args, "decoder_output_dim", 768)
    args.inference_hidden_size = getattr(args, "inference_hidden_size", 512)
    args.inference_layers = getattr(args, "inference_layers", 2)
    args.dropout = getattr(args, "dropout", 0.3)
