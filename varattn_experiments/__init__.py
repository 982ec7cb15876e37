"""Experiments on the plugin, as data: runs, an idempotent runner with a manifest per run, reports.

- :mod:`.manifest`: what a run folder records (attempts, times, code version, finished steps);
- :mod:`.runner`: a run is a small frozen config; its steps are commands, executed once each,
  several runs at a time, pausable and resumable;
- :mod:`.fairseq_log`: fairseq's JSON log lines as records;
- :mod:`.corpora`: a corpus's raw text, sentencepiece model and data-bin;
- :mod:`.dynamics`: the early-dynamics grid (how the prior behaves in the first updates).

``python -m varattn_experiments --help`` lists the commands.
"""
