"""The Transformer architecture (``--arch varattn_transformer``): fairseq's encoder and decoder
layers, a single-head alignment attention on top of the decoder as the prior."""
