"""The attention modes: one flag value per row of the paper's Table 1 (METHOD.md §5).

Each mode says which quantities the model must compute for its training objective. The model
reads this table to decide what to compute; the criterion reads it to pick the objective.
At validation time every mode computes the exact quantities (enumeration over source
positions, and the posterior for variational modes) so that runs of different modes report
comparable numbers (METHOD.md pitfall 9).
"""

from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class ModeSpec:
    variational: bool  # trains an inference network q(z | x, y)
    enumerates: bool  # the training objective needs ℓ_t(j) for every source position j
    soft_output: bool  # the training objective needs the soft output b_t
    latent: bool  # decodes by marginalising the latent alignment (vs. soft attention)
    description: str


ATTENTION_MODES: Dict[str, ModeSpec] = {
    "soft": ModeSpec(False, False, True, False, "ordinary soft attention, -log p(y | E_p[z])"),
    "marginal": ModeSpec(False, True, False, True, "exact marginal likelihood, -log E_p[p(y | z)]"),
    "hard-enum": ModeSpec(False, True, False, True, "hard attention, -E_p[log p(y | z)] by enumeration"),
    "var-enum": ModeSpec(True, True, False, True, "variational attention, exact ELBO by enumeration"),
}

LATENT_DECODINGS = ("exact", "kmax", "soft")


def mode_spec(mode: str) -> ModeSpec:
    try:
        return ATTENTION_MODES[mode]
    except KeyError:
        raise ValueError(
            f"unknown --attention-mode {mode!r}; choose one of: {', '.join(ATTENTION_MODES)}"
        ) from None
