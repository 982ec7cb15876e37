"""The attention modes: one flag value per row of the paper's Table 1 (docs/METHOD.md §5).

This table is the one place an estimator is declared: its objective (a function of
latent/objectives.py) and what the model must compute for it. The shared output code
(latent/outputs.py) reads a row to decide what to compute; the criterion calls its
objective. At validation time every mode computes the exact quantities (enumeration over
source positions, and the posterior for variational modes) and reports the exact objective of
its ``validation`` row, so that runs of different modes are comparable (docs/METHOD.md §9.9).
``var-relaxed`` is not a categorical model: it validates with its own Dirichlet ELBO, a row of
VALIDATION_ROWS, and reports the categorical prior's exact perplexity beside it.

Adding an estimator: one row here and its objective function (and, only when it needs a
quantity no row computes yet, that computation in latent/outputs.py).
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from . import objectives
from .objectives import LatentOutputs, TokenTerms


@dataclass(frozen=True)
class ModeSpec:
    description: str
    objective: Callable[[LatentOutputs], TokenTerms]  # per-token terms to minimise
    variational: bool = False  # trains an inference network q(z | x, y)
    latent: bool = True  # decodes by marginalising the latent alignment (vs. soft attention)
    enumerates: bool = False  # training needs ℓ_t(j) for every source position j
    soft_output: bool = False  # training needs the soft output b_t (objective or baseline)
    sample_from: Optional[str] = None  # "prior" or "posterior": training samples alignments
    samples_option: Optional[str] = None  # the model option giving the samples per token (else 1)
    relaxation: Optional[str] = None  # "gumbel" or "dirichlet": a relaxed sample feeds the output
    validation: Optional[str] = None  # exact mode whose objective validation reports (None: itself)
    warmup: Optional[str] = None  # mode trained during --dirichlet-warmup-updates (var-relaxed)
    fixed_noise: bool = False  # the relaxed sample's noise is fixed by each sentence pair (validation)


ATTENTION_MODES: Dict[str, ModeSpec] = {
    "soft": ModeSpec("ordinary soft attention, -log p(y | E_p[z])", objectives.soft_objective,
                     latent=False, soft_output=True),
    "marginal": ModeSpec("exact marginal likelihood, -log E_p[p(y | z)]", objectives.marginal_objective,
                         enumerates=True),
    "hard-enum": ModeSpec("hard attention, -E_p[log p(y | z)] by enumeration", objectives.hard_enum_objective,
                          enumerates=True),
    "hard-sample": ModeSpec(
        "hard attention, one sample from the prior, REINFORCE with the soft baseline",
        objectives.hard_sample_objective, soft_output=True, sample_from="prior", validation="hard-enum"),
    "var-enum": ModeSpec("variational attention, exact ELBO by enumeration", objectives.var_enum_objective,
                         variational=True, enumerates=True),
    "var-sample": ModeSpec(
        "variational attention, one sample from q, REINFORCE with the soft baseline, analytic KL",
        objectives.var_sample_objective, variational=True, soft_output=True, sample_from="posterior",
        validation="var-enum"),
    "var-gumbel": ModeSpec(
        "variational attention, Gumbel-softmax relaxed sample from q (--gumbel-temperature)",
        objectives.var_gumbel_objective, variational=True, relaxation="gumbel", validation="var-enum"),
    "var-wsram": ModeSpec(
        "variational attention, reweighted wake-sleep with --wsram-samples samples from q",
        objectives.var_wsram_objective, variational=True, sample_from="posterior",
        samples_option="wsram_samples", validation="var-enum"),
    "var-relaxed": ModeSpec(
        "Dirichlet prior and posterior, reparameterised samples (--dirichlet-warmup-updates of "
        "hard-enum first)", objectives.var_relaxed_objective, variational=True, relaxation="dirichlet",
        validation="dirichlet-elbo", warmup="hard-enum"),
}

# Rows that only validate: an exact objective that no --attention-mode trains with.
VALIDATION_ROWS: Dict[str, ModeSpec] = {
    # var-relaxed's own objective, the Dirichlet ELBO (24), with one sample per token whose
    # noise each sentence pair fixes (so validation is a function of parameters and data),
    # beside the exact quantities of the categorical prior and q of the same scores
    "dirichlet-elbo": ModeSpec(
        "var-relaxed's validation: its Dirichlet ELBO, one sample per token with noise fixed per "
        "sentence", objectives.var_relaxed_objective, variational=True, enumerates=True,
        relaxation="dirichlet", fixed_noise=True),
}

LATENT_DECODINGS = ("exact", "kmax", "soft", "dirichlet-mean")


def mode_spec(mode: str) -> ModeSpec:
    """The row of an attention mode, or of a validation-only objective (VALIDATION_ROWS)."""
    try:
        return ATTENTION_MODES[mode] if mode in ATTENTION_MODES else VALIDATION_ROWS[mode]
    except KeyError:
        raise ValueError(
            f"unknown --attention-mode {mode!r}; choose one of: {', '.join(ATTENTION_MODES)}"
        ) from None

