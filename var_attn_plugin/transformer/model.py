"""The Transformer architecture, registered as ``varattn_transformer`` (docs/METHOD.md §10).

fairseq's own ``TransformerEncoderBase`` and ``TransformerDecoderBase`` (its layers, positions,
masks, incremental state and beam reordering) compute the states; on top of the decoder:

    prior        p_t(j) = softmax_j((U h_t) · x̃_j / √D)     a single-head alignment attention
                                                           reading the final decoder state h_t
    context      c_t = Σ_j p_t(j) x̃_j                      (the soft output's input)
    output       p(y_t | x, y_<t, z_t = j) from h_t and x̃_j alone, through the shared
                 output layer (latent/output_layer.py, eqs. (6)-(8))

x̃ are the encoder's final states. The decoder's own cross-attention stays soft and
deterministic and ``z_t`` is never fed to later positions, so every objective splits into
per-token terms exactly as for the LSTM (docs/METHOD.md §10): the shared core
(var_attn_plugin.model, var_attn_plugin/latent/) trains and decodes both architectures.

Dimensions: B batch, S source length, T target steps, C model size, V vocabulary.
"""

from argparse import Namespace
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import Embedding, TransformerConfig, TransformerDecoderBase, TransformerEncoderBase
from torch import Tensor, nn

from .. import presets
from ..latent.distributions import alignment_padding_mask, expand_padding_mask, masked_log_softmax
from ..latent.inference_network import InferenceNetwork
from ..latent.output_layer import AlignmentOutputLayer
from ..latent.outputs import AlignmentStates
from ..latent.scoring import BilinearAlignmentScorer, Projection
from ..model import (
    IncrementalState,
    LatentDecoderMixin,
    LatentModelConfig,
    VarAttnModel,
    check_latent_config,
    check_positive,
    check_task,
    excludes_source_eos,
)

# --soft-cross-attention: how much of the source the decoder reads besides the latent alignment
SOFT_CROSS_ATTENTION = {
    "all": "every layer (fairseq's decoder intact; the model can predict y_t without z_t)",
    "below-top": "every layer but the top one, so that the top layer sees the source at step t only through z_t",
    "none": "no layer: the latent alignment is the decoder's only view of the source, as the LSTM's prior is",
}


def soft_cross_attention_layers(cfg, layers: int) -> int:
    """How many of the decoder's ``layers`` (the lowest) keep fairseq's soft cross-attention."""
    choice = str(getattr(cfg, "soft_cross_attention", "all"))  # checkpoints from before the option: all
    return {"all": layers, "below-top": layers - 1, "none": 0}[choice]


@dataclass
class VarAttnTransformerConfig(LatentModelConfig):
    # Defaults are fairseq's transformer_iwslt_de_en sizes.
    encoder_embed_dim: int = field(default=512, metadata={"help": "encoder embedding and model size"})
    encoder_ffn_embed_dim: int = field(default=1024, metadata={"help": "encoder feed-forward size"})
    encoder_layers: int = field(default=6, metadata={"help": "encoder layers"})
    encoder_attention_heads: int = field(default=4, metadata={"help": "encoder attention heads"})
    encoder_normalize_before: bool = field(default=False, metadata={"help": "layer norm before each encoder block"})
    decoder_embed_dim: int = field(default=512, metadata={"help": "decoder embedding and model size"})
    decoder_ffn_embed_dim: int = field(default=1024, metadata={"help": "decoder feed-forward size"})
    decoder_layers: int = field(default=6, metadata={"help": "decoder layers"})
    decoder_attention_heads: int = field(default=4, metadata={"help": "decoder attention heads"})
    decoder_normalize_before: bool = field(default=False, metadata={"help": "layer norm before each decoder block"})
    decoder_output_dim: int = field(default=512, metadata={"help": "size of the output layer o_tj"})
    activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="relu", metadata={"help": "activation of the feed-forward blocks"})
    dropout: float = field(default=0.3, metadata={"help": "dropout (embeddings, blocks, output layer)"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the feed-forward activation"})
    inference_hidden_size: int = field(
        default=256, metadata={"help": "inference network LSTM size per direction (variational modes)"})
    inference_layers: int = field(default=1, metadata={"help": "inference network LSTM layers"})
    soft_cross_attention: ChoiceEnum(list(SOFT_CROSS_ATTENTION)) = field(
        default="all",
        metadata={"help": "which decoder layers read the source through fairseq's soft cross-attention "
                  "besides the latent alignment: " + "; ".join(f"{k}: {v}" for k, v in SOFT_CROSS_ATTENTION.items())
                  + " (docs/METHOD.md §10). Saved with the model"},
    )


_SIZES = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads",
          "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_layers", "decoder_attention_heads",
          "decoder_output_dim", "inference_hidden_size", "inference_layers")
# the options fairseq's TransformerConfig reads, under the same flat names as its --arch transformer
_FAIRSEQ_OPTIONS = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads",
                    "encoder_normalize_before", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_layers",
                    "decoder_attention_heads", "decoder_normalize_before", "activation_fn", "dropout",
                    "attention_dropout", "activation_dropout", "max_source_positions", "max_target_positions")


def check_config(cfg: VarAttnTransformerConfig):
    """Raise a UsageError naming the flag for a value outside its range."""
    from ..errors import UsageError

    check_positive(cfg, _SIZES)
    check_latent_config(cfg)
    for side in ("encoder", "decoder"):
        dim, heads = getattr(cfg, f"{side}_embed_dim"), getattr(cfg, f"{side}_attention_heads")
        if dim % heads:
            raise UsageError(f"--{side}-embed-dim ({dim}) must be divisible by --{side}-attention-heads ({heads})")


def fairseq_config(cfg: VarAttnTransformerConfig) -> TransformerConfig:
    """fairseq's TransformerConfig with this model's sizes (its defaults for the rest)."""
    options = {name: getattr(cfg, name) for name in _FAIRSEQ_OPTIONS}
    options["decoder_output_dim"] = cfg.decoder_embed_dim  # fairseq's projection stays identity
    options["decoder_input_dim"] = cfg.decoder_embed_dim
    return TransformerConfig.from_namespace(Namespace(**options))


class VarAttnTransformerEncoder(TransformerEncoderBase):
    """fairseq's Transformer encoder; its output also carries ``src_embeddings`` ``(B, S, C)``,
    the input its first layer read (scaled token embeddings plus positions, after dropout: the
    same tensor, the same dropout mask), which the inference network reads as the LSTM's reads
    the embeddings its encoder read, and the latent alignment's candidates,
    ``alignment_padding_mask`` ``(B, S)`` (the decoder's own cross-attention keeps fairseq's
    ``encoder_padding_mask``)."""

    exclude_eos = False  # set by the model: --exclude-source-eos

    def forward_embedding(self, src_tokens: Tensor, token_embedding: Optional[Tensor] = None):
        x, embed = super().forward_embedding(src_tokens, token_embedding)
        self._read = x  # B x S x C: handed to the inference network by forward (below)
        return x, embed

    def forward(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None, **kwargs):
        out = super().forward(src_tokens, src_lengths)
        read, self._read = self._read, None
        out["src_embeddings"] = [read]
        out["alignment_padding_mask"] = [alignment_padding_mask(
            src_tokens, self.dictionary.pad(), self.dictionary.eos(), self.exclude_eos)]
        return out

    def reorder_encoder_out(self, encoder_out, new_order: Tensor):
        """fairseq's reordering keeps only its own keys: the alignment mask goes along."""
        out = super().reorder_encoder_out(encoder_out, new_order)
        out["alignment_padding_mask"] = [m.index_select(0, new_order)
                                         for m in encoder_out["alignment_padding_mask"]]
        return out


class VarAttnTransformerDecoder(LatentDecoderMixin, TransformerDecoderBase):
    """fairseq's Transformer decoder without its output projection, and the alignment prior."""

    def __init__(self, cfg: TransformerConfig, dictionary, embed_tokens: nn.Embedding, output_dim: int,
                 dropout: float, chunk_bytes: int, soft_layers: Optional[int] = None):
        # fairseq builds the layers inside its __init__ (build_decoder_layer, below): the lowest
        # soft_layers of them keep their soft cross-attention (all of them by default)
        object.__setattr__(self, "_soft_layers", cfg.decoder.layers if soft_layers is None else soft_layers)
        object.__setattr__(self, "_layers_built", 0)
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=False)
        source_dim = cfg.encoder.embed_dim
        self.prior_scorer = BilinearAlignmentScorer(cfg.decoder.embed_dim, source_dim)  # U
        # scaled like dot-product attention: scores of order 1 at initialisation, so the prior
        # (and var-relaxed's Dirichlet concentrations) start near uniform, as q's do
        self.prior_scale = source_dim ** -0.5
        self.alignment_output = AlignmentOutputLayer(
            cfg.decoder.embed_dim, source_dim, output_dim, len(dictionary), dropout, chunk_bytes)
        # self.decoding and self.estimator: set by the model (var_attn_plugin.model)

    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        index = self._layers_built
        object.__setattr__(self, "_layers_built", index + 1)
        return super().build_decoder_layer(cfg, no_encoder_attn or index >= self._soft_layers)

    def build_output_projection(self, cfg, dictionary, embed_tokens):
        self.output_projection = None  # the latent output layer (alignment_output) replaces it

    def embed_targets(self, tokens: Tensor) -> Tensor:
        return self.dropout_module(self.embed_tokens(tokens))

    def extract_features(self, prev_output_tokens: Tensor, encoder_out,
                         incremental_state: Optional[IncrementalState] = None, **kwargs) -> AlignmentStates:
        hidden, _ = TransformerDecoderBase.extract_features(
            self, prev_output_tokens, encoder_out, incremental_state)  # B x T x C
        sources = encoder_out["encoder_out"][0].transpose(0, 1)  # B x S x C, x̃
        src_padding_mask = encoder_out["alignment_padding_mask"][0]  # B x S, True where z_t may not point
        T = hidden.size(1)
        scores = self.prior_scorer(hidden, sources) * self.prior_scale
        scores = scores.masked_fill(src_padding_mask.unsqueeze(1), float("-inf"))
        prior = masked_log_softmax(scores, expand_padding_mask(src_padding_mask, T))  # B x T x S
        context = torch.bmm(prior.exp().to(sources.dtype), sources)  # B x T x C
        # soft decoding does not read W_ox x̃; every other use does (recomputed at each step:
        # beam search reorders encoder_out, and the projection is small next to the output)
        soft_step = incremental_state is not None and self.decoding.latent_decoding == "soft"
        return AlignmentStates(
            hidden=hidden, prior_scores=scores, prior_log_probs=prior, context=context,
            output_sources=None if soft_step else self.alignment_output.source_proj(sources),
            src_padding_mask=src_padding_mask)

    def output_layer(self, features):
        raise NotImplementedError("the latent output layer replaces fairseq's (LatentDecoderMixin.forward)")


def init_latent_modules(*modules: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for this plugin's own layers (fairseq initialises
    its Transformer layers itself); LSTMs keep torch's initialisation."""
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, (nn.Linear, Projection)):
                nn.init.xavier_uniform_(sub.weight)
                if getattr(sub, "bias", None) is not None:
                    nn.init.zeros_(sub.bias)


@register_model("varattn_transformer", dataclass=VarAttnTransformerConfig)
class VarAttnTransformerModel(VarAttnModel):
    ARCH = "varattn_transformer"

    @classmethod
    def build_model(cls, cfg: VarAttnTransformerConfig, task):
        check_config(cfg)
        check_task(task, cls.ARCH)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        tcfg = fairseq_config(cfg)
        encoder = VarAttnTransformerEncoder(
            tcfg, src_dict, Embedding(len(src_dict), cfg.encoder_embed_dim, src_dict.pad()))
        encoder.exclude_eos = excludes_source_eos(cfg)
        decoder = VarAttnTransformerDecoder(
            tcfg, tgt_dict, Embedding(len(tgt_dict), cfg.decoder_embed_dim, tgt_dict.pad()),
            cfg.decoder_output_dim, cfg.dropout, cfg.enum_chunk_mb * 2**20,
            soft_layers=soft_cross_attention_layers(cfg, cfg.decoder_layers))
        inference_network = None
        if VarAttnModel.spec_of(cfg).variational:
            inference_network = InferenceNetwork(
                cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.inference_hidden_size,
                cfg.inference_layers, cfg.dropout)
        init_latent_modules(decoder.prior_scorer, decoder.alignment_output,
                            *([inference_network] if inference_network is not None else []))
        return cls(cfg, encoder, decoder, inference_network)


@register_model_architecture("varattn_transformer", "varattn_transformer_iwslt_de_en")
def varattn_transformer_iwslt_de_en(args):
    """fairseq's transformer_iwslt_de_en sizes (identical to ``varattn_transformer``'s defaults)."""
    presets.apply(args, presets.TRANSFORMER_PRESETS["iwslt"])


@register_model_architecture("varattn_transformer", "varattn_transformer_small")
def varattn_transformer_small(args):
    """A small model for CPU runs: 256 dimensions, 3 layers each side, 4 heads."""
    presets.apply(args, presets.TRANSFORMER_PRESETS["small"])


@register_model_architecture("varattn_transformer", "varattn_transformer_tiny")
def varattn_transformer_tiny(args):
    """A tiny model for CPU tests: 128 dimensions, 2 layers, 4 heads."""
    presets.apply(args, presets.TRANSFORMER_PRESETS["tiny"])
