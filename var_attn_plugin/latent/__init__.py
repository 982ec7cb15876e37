"""The shared latent-alignment core: everything about the alignment z_t that does not depend on
the network computing the prior and the states (plain torch; no fairseq, no architecture).

- ``modes``: the attention modes table, one row per estimator with its objective;
- ``objectives``: the per-token objectives (docs/METHOD.md §5);
- ``distributions``: masking, categorical and Dirichlet helpers, sampling and its noise;
- ``output_layer``: the output for one alignment and its chunked enumeration;
- ``outputs``: from an architecture's :class:`~var_attn_plugin.latent.outputs.AlignmentStates`
  to word distributions (decoding) and to what an objective needs (training);
- ``inference_network``: q(z | x, y) over the model's embeddings;
- ``scoring``, ``packed_lstm``: building blocks (alignment scorers, a padding-aware BiLSTM).
"""
