"""The LSTM architecture, registered as ``varattn_lstm`` (docs/METHOD.md §3-4): the paper's model.

A bidirectional LSTM encoder (lstm/encoder.py), an input-fed LSTM decoder whose MLP attention is
the prior (lstm/decoder.py), and the shared inference network; the latent machinery is the
shared core's (var_attn_plugin.model, var_attn_plugin/latent/).
"""

from dataclasses import dataclass, field

import torch
from fairseq.models import register_model, register_model_architecture
from torch import nn

from .. import presets
from ..latent.inference_network import InferenceNetwork
from ..model import (
    LatentModelConfig,
    VarAttnModel,
    check_latent_config,
    check_positive,
    check_task,
    excludes_source_eos,
)
from .decoder import VarAttnDecoder
from .encoder import VarAttnEncoder


@dataclass
class VarAttnLSTMConfig(LatentModelConfig):
    # Defaults are the paper's IWSLT14 De-En sizes (docs/METHOD.md §3-4).
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


_SIZES = ("encoder_embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_embed_dim",
          "decoder_hidden_size", "decoder_layers", "attention_dim", "decoder_output_dim",
          "inference_hidden_size", "inference_layers")


def check_config(cfg: VarAttnLSTMConfig):
    """Raise a UsageError naming the flag for a value outside its range."""
    check_positive(cfg, _SIZES)
    check_latent_config(cfg)


def build_embedding(dictionary, dim: int) -> nn.Embedding:
    return nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())


@register_model("varattn_lstm", dataclass=VarAttnLSTMConfig)
class VarAttnLSTMModel(VarAttnModel):
    ARCH = "varattn_lstm"

    @classmethod
    def build_model(cls, cfg: VarAttnLSTMConfig, task):
        check_config(cfg)
        check_task(task, cls.ARCH)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        encoder = VarAttnEncoder(
            src_dict, build_embedding(src_dict, cfg.encoder_embed_dim), cfg.encoder_hidden_size,
            cfg.encoder_layers, cfg.dropout, cfg.dropout, exclude_eos=excludes_source_eos(cfg),
        )
        decoder = VarAttnDecoder(
            tgt_dict, build_embedding(tgt_dict, cfg.decoder_embed_dim), encoder.output_dim,
            cfg.decoder_hidden_size, cfg.decoder_layers, cfg.attention_dim, cfg.decoder_output_dim,
            cfg.dropout, cfg.enum_chunk_mb * 2**20,
        )
        inference_network = None
        if VarAttnModel.spec_of(cfg).variational:
            inference_network = InferenceNetwork(
                cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.inference_hidden_size,
                cfg.inference_layers, cfg.dropout,
            )
        model = cls(cfg, encoder, decoder, inference_network)
        model.reset_parameters(cfg.init_scale)
        return model

    def reset_parameters(self, scale: float):
        """Every parameter uniform in [-scale, scale] (docs/METHOD.md §3); padding embeddings 0."""
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)
        with torch.no_grad():
            for embedding in (self.encoder.embed_tokens, self.decoder.embed_tokens):
                embedding.weight[embedding.padding_idx].zero_()


@register_model_architecture("varattn_lstm", "varattn_lstm_iwslt_de_en")
def varattn_lstm_iwslt_de_en(args):
    """The paper's IWSLT14 De-En model (docs/METHOD.md §3-4); identical to ``varattn_lstm``'s defaults."""
    presets.apply(args, presets.LSTM_PRESETS["paper"])
    args.dropout = getattr(args, "dropout", 0.3)
