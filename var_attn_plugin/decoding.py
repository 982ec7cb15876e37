"""The decoding options, resolved and checked in one place: :func:`resolve_decoding_options`.

How generation turns a model's states into word distributions is chosen by the task's options
``--latent-decoding`` (``auto`` by default), ``--kmax`` and ``--eos-penalty``
(docs/METHOD.md §6), and finished hypotheses are ranked by one of two length penalties, ``--gnmt-lenpen`` or
fairseq's ``--lenpen``. Every way in reaches them through :func:`resolve_decoding_options`:

- start-up (:class:`~var_attn_plugin.startup_checks.StartupChecks`): ``setup_task`` with the
  task's options alone (what no model can use), ``build_model`` with the model, before any
  data is loaded;
- the task's ``build_generator`` (``fairseq-generate``, ``fairseq-interactive``,
  ``--eval-bleu``, the hub's ``translate``), with fairseq's ``--lenpen``, through
  :meth:`VarAttnModel.configure_decoding <var_attn_plugin.model.VarAttnModel.configure_decoding>`;
- ``varattn-translate``'s arguments, before the checkpoint is loaded.

A combination that cannot work is a :class:`~var_attn_plugin.errors.UsageError` naming the
flag; one that works but is usually a mistake (soft attention for a latent model, enumeration
for a soft-attention one) a warning.
"""

import logging
from dataclasses import dataclass, replace
from typing import Optional

from .errors import UsageError
from .latent.modes import LATENT_DECODINGS
from .latent.outputs import DecodingOptions

logger = logging.getLogger(__name__)

# the task options that choose how a model decodes (VarAttnTranslationConfig), by name
DECODING_OPTIONS = ("latent_decoding", "kmax", "gnmt_lenpen", "eos_penalty")

# the values of --latent-decoding (auto: the model's --default-latent-decoding, then the mode's)
DECODING_CHOICES = ("auto",) + tuple(LATENT_DECODINGS)


@dataclass(frozen=True)
class DecodingRequest:
    """The decoding options as the user gave them (``auto`` not yet resolved)."""

    latent_decoding: str = "auto"  # one of DECODING_CHOICES
    kmax: Optional[int] = 5  # candidates kept by "kmax"
    eos_penalty: float = 0.0  # β of the EOS penalty
    gnmt_lenpen: Optional[float] = None  # α of the GNMT length penalty (None: fairseq's --lenpen ranks)
    lenpen: Optional[float] = None  # fairseq's --lenpen, where known (generation); None before

    @classmethod
    def of(cls, options, lenpen: Optional[float] = None) -> "DecodingRequest":
        """The request that ``options`` holds by name (the task's config, varattn-translate's
        arguments, a :class:`~var_attn_plugin.latent.outputs.DecodingOptions`; the defaults for
        what it lacks), with fairseq's ``--lenpen`` where it is known."""
        if isinstance(options, cls):
            return options if lenpen is None else replace(options, lenpen=lenpen)
        default = cls()
        return cls(latent_decoding=str(getattr(options, "latent_decoding", default.latent_decoding)),
                   kmax=getattr(options, "kmax", default.kmax),
                   eos_penalty=getattr(options, "eos_penalty", default.eos_penalty),
                   gnmt_lenpen=getattr(options, "gnmt_lenpen", default.gnmt_lenpen),
                   lenpen=lenpen)


def auto_decoding(requested: str, model) -> str:
    """The one resolution of ``auto`` (docs/METHOD.md §6): the task's ``--latent-decoding``
    unless it is ``auto``, then the model's ``--default-latent-decoding`` unless it is
    ``auto``, then exact enumeration for latent modes and soft attention for ``soft``."""
    for choice in (requested, str(getattr(model.cfg, "default_latent_decoding", "auto"))):
        if choice != "auto":
            return choice
    return "exact" if model.spec.latent else "soft"


def default_decoding_options(model) -> DecodingOptions:
    """What a model decodes with before a task configures it: ``auto`` resolved. It is
    checked when the task configures decoding (:func:`resolve_decoding_options`), so that a
    checkpoint still loads for scoring and alignment whatever its saved default."""
    return DecodingOptions(latent_decoding=auto_decoding("auto", model))


def resolve_decoding_options(requested, model=None, *, warn: bool = True) -> Optional[DecodingOptions]:
    """Check the decoding ``requested`` and resolve it for ``model``.

    ``requested``: a :class:`DecodingRequest`, or anything holding the options by name
    (:meth:`DecodingRequest.of`). Without ``model`` (or with a model that is not of this
    plugin, which has no attention mode) only what no model can use is checked, and the
    answer is None; with one, ``auto`` is resolved, the decoding checked against the model's
    attention mode and, with ``warn``, a decoding that is usually a mistake for it warned
    about. Raises a :class:`~var_attn_plugin.errors.UsageError` naming the flag.
    """
    request = DecodingRequest.of(requested)
    if request.latent_decoding not in DECODING_CHOICES:
        raise UsageError(f"--latent-decoding {request.latent_decoding!r} is not one of {', '.join(DECODING_CHOICES)}")
    if request.kmax is not None and request.kmax < 1:
        raise UsageError(
            f"--kmax must be at least 1 (the source positions --latent-decoding kmax keeps), got {request.kmax}")
    if request.eos_penalty is not None and request.eos_penalty < 0:
        raise UsageError(f"--eos-penalty must be >= 0, got {request.eos_penalty}")
    if request.gnmt_lenpen is not None and request.lenpen is not None and request.lenpen != 1:
        raise UsageError(
            "--gnmt-lenpen and --lenpen are two length penalties: pass only one "
            f"(got --lenpen {request.lenpen}, --gnmt-lenpen {request.gnmt_lenpen})")
    spec = getattr(model, "spec", None)
    if spec is None:
        return None
    decoding = auto_decoding(request.latent_decoding, model)
    if decoding == "dirichlet-mean" and spec.relaxation != "dirichlet":
        raise UsageError(
            "--latent-decoding dirichlet-mean needs a model trained with --attention-mode var-relaxed; "
            f"this one is --attention-mode {model.attention_mode}: use --latent-decoding exact, kmax or soft")
    if warn and decoding != "soft" and not spec.latent:
        logger.warning("decoding a %s-trained model with %s enumeration: its output layer was trained on "
                       "the soft context only", model.attention_mode, decoding)
    if warn and decoding == "soft" and spec.latent:
        logger.warning("decoding a %s-trained model with soft attention (usually much worse, "
                       "docs/METHOD.md §6)", model.attention_mode)
    default = DecodingOptions()
    return DecodingOptions(decoding, default.kmax if request.kmax is None else request.kmax,
                           default.eos_penalty if request.eos_penalty is None else request.eos_penalty)
