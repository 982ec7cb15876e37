"""Named model sizes of the LSTM (``varattn_lstm``), one table for the architecture presets,
the experiment runner, the benchmark and the tests.

Keys are the model's option names (``--encoder-embed-dim`` ...). ``paper`` is the paper's
IWSLT14 De-En model (docs/METHOD.md §3-4); the others are CPU sizes for the experiments.
"""

from typing import Dict, List

LSTM_PRESETS: Dict[str, Dict[str, int]] = {
    # the paper's model: embeddings 512, encoder 2 x 512 per direction, decoder 2 x 768
    "paper": dict(encoder_embed_dim=512, decoder_embed_dim=512, encoder_hidden_size=512, encoder_layers=2,
                  decoder_hidden_size=768, decoder_layers=2, attention_dim=512, decoder_output_dim=768,
                  inference_hidden_size=512, inference_layers=2),
    # the converged comparison's CPU sizes (one layer each; enumeration costs S output layers
    # of O x V per token, so the output layer is small)
    "cpu96": dict(encoder_embed_dim=96, decoder_embed_dim=96, encoder_hidden_size=96, encoder_layers=1,
                  decoder_hidden_size=128, decoder_layers=1, attention_dim=96, decoder_output_dim=64,
                  inference_hidden_size=96, inference_layers=1),
    # the comparison's synthetic tasks (word-level, small vocabularies)
    "syn64": dict(encoder_embed_dim=64, decoder_embed_dim=64, encoder_hidden_size=64, encoder_layers=1,
                  decoder_hidden_size=96, decoder_layers=1, attention_dim=64, decoder_output_dim=96,
                  inference_hidden_size=64, inference_layers=1),
    # the benchmark's quick check
    "small": dict(encoder_embed_dim=64, decoder_embed_dim=64, encoder_hidden_size=64, encoder_layers=2,
                  decoder_hidden_size=96, decoder_layers=2, attention_dim=64, decoder_output_dim=96,
                  inference_hidden_size=64, inference_layers=2),
    # tiny sizes: the whole pipeline in minutes (smoke runs)
    "tiny": dict(encoder_embed_dim=16, decoder_embed_dim=16, encoder_hidden_size=16, encoder_layers=1,
                 decoder_hidden_size=24, decoder_layers=1, attention_dim=16, decoder_output_dim=24,
                 inference_hidden_size=16, inference_layers=1),
    # the tests' command-line runs (the rest at varattn_lstm's defaults: two layers each side)
    "test": dict(encoder_embed_dim=16, encoder_hidden_size=16, decoder_embed_dim=16, decoder_hidden_size=24,
                 attention_dim=16, decoder_output_dim=24, inference_hidden_size=16),
    # the earlier equal-CPU-time comparison's sizes
    "cpu256": dict(encoder_embed_dim=256, decoder_embed_dim=256, encoder_hidden_size=256, encoder_layers=1,
                   decoder_hidden_size=384, decoder_layers=1, attention_dim=256, decoder_output_dim=256,
                   inference_hidden_size=256, inference_layers=1),
}


def _transformer(model: int, output: int, inference: int, layers: int = 2, ffn: int = 0) -> Dict[str, int]:
    """``layers`` each side (2), 4 heads, feed-forward ``ffn`` (twice the model size), one inference
    LSTM layer."""
    sizes = {}
    for side in ("encoder", "decoder"):
        sizes.update({f"{side}_layers": layers, f"{side}_attention_heads": 4, f"{side}_embed_dim": model,
                      f"{side}_ffn_embed_dim": ffn or 2 * model})
    return dict(sizes, decoder_output_dim=output, inference_hidden_size=inference, inference_layers=1)


TRANSFORMER_PRESETS: Dict[str, Dict[str, int]] = {
    # the registered architectures: varattn_transformer_iwslt_de_en (fairseq's
    # transformer_iwslt_de_en sizes), varattn_transformer_small and varattn_transformer_tiny
    "iwslt": _transformer(512, 512, 256, layers=6, ffn=1024),
    "small": _transformer(256, 256, 128, layers=3),
    "tiny": _transformer(128, 128, 64),
    # the converged comparison's sizes (real corpora, synthetic tasks, smoke runs)
    "cpu96": _transformer(96, 64, 96),
    "cpu256": _transformer(256, 256, 256),  # the near-paper comparison's, beside the LSTM's cpu256
    "syn64": _transformer(64, 96, 64),
    "smoke": _transformer(16, 24, 16),
    # the tests' command-line runs: 2 heads, one inference layer left at the default
    "test": {**{f"{side}_{k}": v for side in ("encoder", "decoder")
                for k, v in (("embed_dim", 16), ("ffn_embed_dim", 32), ("layers", 2), ("attention_heads", 2))},
             "decoder_output_dim": 24, "inference_hidden_size": 16},
}


def flags(sizes: Dict[str, int]) -> List[str]:
    """``{"encoder_embed_dim": 96, ...}`` -> ``["--encoder-embed-dim", "96", ...]``."""
    out: List[str] = []
    for name, value in sizes.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


def apply(args, sizes: Dict[str, int]) -> None:
    """Set every size of ``sizes`` on fairseq's ``args`` that the command line did not set
    (what a ``register_model_architecture`` function does)."""
    for name, value in sizes.items():
        setattr(args, name, getattr(args, name, value))
