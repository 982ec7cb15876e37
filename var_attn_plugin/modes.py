"""The attention modes: one flag value per row of the paper's Table 1 (docs/METHOD.md §5).

Each mode says which quantities the model must compute for its training objective. The model
reads this table to decide what to compute; the criterion reads it to pick the objective.
At validation time every mode computes the exact quantities (enumeration over source
positions, and the posterior for variational modes) and reports the exact objective of its
``validation`` row, so that runs of different modes are comparable (docs/METHOD.md §9.9).
"""

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class ModeSpec:
    description: str
    variational: bool = False  # trains an inference network q(z | x, y)
    latent: bool = True  # decodes by marginalising the latent alignment (vs. soft attention)
    enumerates: bool = False  # training needs ℓ_t(j) for every source position j
    soft_output: bool = False  # training needs the soft output b_t (objective or baseline)
    sample_from: Optional[str] = None  # "prior" or "posterior": training samples alignments
    relaxation: Optional[str] = None  # "gumbel" or "dirichlet": a relaxed sample feeds the output
    validation: Optional[str] = None  # exact mode whose objective validation reports (None: itself)


ATTENTION_MODES: Dict[str, ModeSpec] = {
    "soft": ModeSpec("ordinary soft attention, -log p(y | E_p[z])", latent=False, soft_output=True),
    "marginal": ModeSpec("exact marginal likelihood, -log E_p[p(y | z)]", enumerates=True),
    "hard-enum": ModeSpec("hard attention, -E_p[log p(y | z)] by enumeration", enumerates=True),
    "hard-sample": ModeSpec(
        "hard attention, one sample from the prior, REINFORCE with the soft baseline",
        soft_output=True, sample_from="prior", validation="hard-enum"),
    "var-enum": ModeSpec("variational attention, exact ELBO by enumeration", variational=True,
                         enumerates=True),
    "var-sample": ModeSpec(
        "variational attention, one sample from q, REINFORCE with the soft baseline, analytic KL",
        variational=True, soft_output=True, sample_from="posterior", validation="var-enum"),
    "var-gumbel": ModeSpec(
        "variational attention, Gumbel-softmax relaxed sample from q (--gumbel-temperature)",
        variational=True, relaxation="gumbel", validation="var-enum"),
    "var-wsram": ModeSpec(
        "variational attention, reweighted wake-sleep with --wsram-samples samples from q",
        variational=True, sample_from="posterior", validation="var-enum"),
    "var-relaxed": ModeSpec(
        "Dirichlet prior and posterior, reparameterised samples (--dirichlet-warmup-updates of "
        "hard-enum first)", variational=True, relaxation="dirichlet", validation="var-enum"),
}

LATENT_DECODINGS = ("exact", "kmax", "soft", "dirichlet-mean")


def mode_spec(mode: str) -> ModeSpec:
    try:
        return ATTENTION_MODES[mode]
    except KeyError:
        raise ValueError(
            f"unknown --attention-mode {mode!r}; choose one of: {', '.join(ATTENTION_MODES)}"
        ) from None
