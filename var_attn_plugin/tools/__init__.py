"""Alignment tools: ``varattn-align`` (export), ``varattn-aer`` (score against gold links),
``varattn-plot`` (prior and posterior of one sentence pair as a heatmap)."""
