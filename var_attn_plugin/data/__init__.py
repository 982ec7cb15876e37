"""Corpus preparation for the demo and the recipes (not imported by the fairseq plugin).

- ``ding``: German-English example sentences from the Ding dictionary, split into
  train/valid/test (``varattn-prepare-ding``);
- ``iwslt14``: the IWSLT14 De-En preprocessing of fairseq's ``prepare-iwslt14.sh`` in Python
  (``varattn-prepare-iwslt14``).
"""
