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
    # tiny sizes: the whole pipeline in minutes (smoke runs)
    "tiny": dict(encoder_embed_dim=16, decoder_embed_dim=16, encoder_hidden_size=16, encoder_layers=1,
                 decoder_hidden_size=24, decoder_layers=1, attention_dim=16, decoder_output_dim=24,
                 inference_hidden_size=16, inference_layers=1),
    # the earlier equal-CPU-time comparison's sizes
    "cpu256": dict(encoder_embed_dim=256, decoder_embed_dim=256, encoder_hidden_size=256, encoder_layers=1,
                   decoder_hidden_size=384, decoder_layers=1, attention_dim=256, decoder_output_dim=256,
                   inference_hidden_size=256, inference_layers=1),
}


def _transformer(model: int, output: int, inference: int) -> Dict[str, int]:
    """2 layers each side, 4 heads, feed-forward twice the model size, one inference LSTM layer."""
    sizes = {}
    for side in ("encoder", "decoder"):
        sizes.update({f"{side}_layers": 2, f"{side}_attention_heads": 4, f"{side}_embed_dim": model,
                      f"{side}_ffn_embed_dim": 2 * model})
    return dict(sizes, decoder_output_dim=output, inference_hidden_size=inference, inference_layers=1)


TRANSFORMER_PRESETS: Dict[str, Dict[str, int]] = {
    "cpu96": _transformer(96, 64, 96),
    "syn64": _transformer(64, 96, 64),
    "tiny": _transformer(16, 24, 16),
}


def flags(sizes: Dict[str, int]) -> List[str]:
    """``{"encoder_embed_dim": 96, ...}`` -> ``["--encoder-embed-dim", "96", ...]``."""
    out: List[str] = []
    for name, value in sizes.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out
