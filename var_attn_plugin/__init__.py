"""Variational attention for fairseq (Deng et al., "Latent Alignment and Variational
Attention", NeurIPS 2018).

Use with ``--user-dir var_attn_plugin``. Importing the package registers the
``varattn_lstm`` and ``varattn_transformer`` models, the ``varattn_elbo`` criterion and the ``varattn_translation``
task, and makes fairseq checkpoints loadable with torch >= 2.6. The README's "Code map" says
which module owns what.
"""

from .checkpoint_compat import allow_fairseq_checkpoints
from .checkpoint_safety import install_checkpoint_safety
from .errors import install_excepthook
from .startup_checks import install_training_checks
from .watchdog import install_divergence_report, install_startup_watchdog

allow_fairseq_checkpoints()
install_excepthook()  # a UsageError ends fairseq's commands with its message, exit code 1
install_checkpoint_safety()  # atomic checkpoint copies, one training per --save-dir, damaged checkpoints named
install_training_checks()  # fairseq-train's options checked before it starts (--update-freq)
install_startup_watchdog()  # --heartbeat-timeout also bounds the distributed rendezvous
install_divergence_report()  # NaN/inf gradients: one line with the update and the fixes

from . import (  # noqa: E402,F401  (registers with fairseq)
    criterion,
    hub,  # noqa: E402,F401  (VarAttnModel.from_pretrained)
    model,
    task,
)
from .lstm import model as lstm_model  # noqa: E402,F401  (--arch varattn_lstm)
from .transformer import model as transformer_model  # noqa: E402,F401  (--arch varattn_transformer)

__version__ = "0.1.0"
