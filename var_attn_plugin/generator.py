"""Beam search with the GNMT length penalty (docs/METHOD.md §6, eq. (29)).

fairseq's ``--lenpen α`` ranks finished hypotheses by ``score / |Y|^α``; the paper ranks
them by ``score / ((5 + |Y|) / 6)^α`` (|Y| counts EOS, like fairseq). fairseq applies its
normalisation only when ranking finished hypotheses, so the same search with unnormalised
scores followed by re-ranking under the GNMT penalty is exactly the paper's search.
"""

import torch
from fairseq.sequence_generator import SequenceGenerator, SequenceGeneratorWithAlignment


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """``((5 + |Y|) / 6) ** α``."""
    return ((5.0 + length) / 6.0) ** alpha


class GnmtRerankingMixin:
    def __init__(self, *args, gnmt_lenpen: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.gnmt_lenpen = gnmt_lenpen
        self.normalize_scores = False

    @torch.no_grad()
    def generate(self, models, sample, **kwargs):
        finalized = super().generate(models, sample, **kwargs)
        for hypos in finalized:
            for hypo in hypos:
                length = hypo["tokens"].numel()
                hypo["score"] = hypo["positional_scores"].sum() / gnmt_length_penalty(length, self.gnmt_lenpen)
            hypos.sort(key=lambda hypo: hypo["score"].item(), reverse=True)
        return finalized


class GnmtSequenceGenerator(GnmtRerankingMixin, SequenceGenerator):
    pass


class GnmtSequenceGeneratorWithAlignment(GnmtRerankingMixin, SequenceGeneratorWithAlignment):
    pass
