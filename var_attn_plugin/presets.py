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
    # the earlier equal-CPU-time comparison's sizes
    "cpu256": dict(encoder_embed_dim=256, decoder_embed_dim=256, encoder_hidden_size=256, encoder_layers=1,
                   decoder_hidden_size=384, decoder_layers=1, attention_dim=256, decoder_output_dim=256,
                   inference_hidden_size=256, inference_layers=1),
}


def flags(sizes: Dict[str, int]) -> List[str]:
    """``{"encoder_embed_dim": 96, ...}`` -> ``["--encoder-embed-dim", "96", ...]``."""
    out: List[str] = []
    for name, value in sizes.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out
