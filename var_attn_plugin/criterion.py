"""The ``varattn_elbo`` criterion: wires the mode's objective, masks, sums and logs.

The objective itself lives in :mod:`var_attn_plugin.latent.objectives`, named by the modes
table (latent/modes.py); this class hands the target to the model, picks the objective of the
model's attention mode, excludes target pads (EOS counts, docs/METHOD.md §9.3) and logs each
term as its own metric.

Logged metrics (all in base 2 like fairseq's, per target token unless said otherwise):

- ``loss``: the mode's objective (the true value, never a surrogate), per ``sample_size``
- ``nll_loss`` / ``ppl``: the model's exact log-likelihood (docs/METHOD.md eq. (26)): the marginal under the prior
  for latent modes (enumeration), the soft output for ``soft``
- ``bound`` / ``bound_ppl``: the objective per token (for variational modes the negative
  ELBO, the paper's model-selection metric; ``var-relaxed``: its Dirichlet ELBO, in validation
  from one sample per token whose noise each sentence pair fixes)
- ``rec``, ``kl``: reconstruction term and KL(q || p) of the objective (``var-relaxed``: of the
  Dirichlets)
- ``prior_ent``, ``post_ent``: entropy of the prior and of the posterior, per token
- ``prior_eos``: the prior's mean probability on the source EOS, per token (a probability,
  not in bits): a prior that collapses onto that fixed-position summary of the sentence shows
  here (0 under ``--exclude-source-eos``)
- ``prior_max``: the prior's mean largest probability, per token (a probability): 1 for a
  deterministic prior, ``1/S`` for a uniform one
- ``prior_alpha``, ``post_alpha`` (``var-relaxed`` only): the mean Dirichlet concentration of
  the prior and of q over the real source positions, per token: near 1 the Dirichlet is flat
  (each sample a random weighting of the source), at ``--dirichlet-max-alpha`` every sample is
  close to the mean; ``alpha_spread``: the mean ratio of a row's largest prior concentration to
  its smallest, 1 when the Dirichlet's mean is the uniform
- ``align_info``: ``KL(p(z_t | x, y_≤t) ‖ p(z_t | x, y_<t))``, how much the word ``y_t`` tells
  about its alignment under the model (where the batch computed every ``ℓ_t(j)``: validation,
  and training of the enumerating modes): 0 when the next-word distribution does not depend
  on ``z_t``, the collapse in which the decoder predicts ``y_t`` without the alignment
"""

import math
from dataclasses import dataclass, field

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from .errors import UsageError
from .latent.distributions import categorical_entropy, categorical_kl, exact_posterior, log_marginal, mass_on
from .latent.modes import mode_spec
from .latent.objectives import with_soft_likelihood
from .model import is_foreign_task, task_name


def check_task(task) -> None:
    """Refuse a fairseq task other than ``varattn_translation``, which checks the model this
    criterion trains before any data is loaded (var_attn_plugin.startup_checks)."""
    if is_foreign_task(task):
        raise UsageError(
            f"--criterion varattn_elbo needs --task varattn_translation, got --task {task_name(task)}: "
            "pass --task varattn_translation with --arch varattn_lstm or varattn_transformer, "
            "or use varattn-train, which passes both")


def concentration_sums(prior_alpha, posterior_alpha, src_padding_mask, target_mask) -> dict:
    """Sums over the real target tokens of the mean prior and q concentration over the real
    source positions, and of the ratio of the largest prior concentration to the smallest."""
    prior_alpha, posterior_alpha = prior_alpha.detach(), posterior_alpha.detach()
    real = ~src_padding_mask.expand_as(prior_alpha)  # B x T x S
    count = real.sum(-1)

    def mean(alpha):
        return alpha.masked_fill(~real, 0.0).sum(-1) / count

    spread = prior_alpha.masked_fill(~real, 0.0).amax(-1) / prior_alpha.masked_fill(~real, math.inf).amin(-1)
    return {key: value.masked_fill(~target_mask, 0.0).sum().data
            for key, value in (("prior_alpha", mean(prior_alpha)), ("post_alpha", mean(posterior_alpha)),
                               ("alpha_spread", spread))}


@dataclass
class VarAttnCriterionConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")
    # a boolean option that defaults to False: fairseq turns a True default into a flag that
    # switches the option off, so "--report-entropy" used to stop the entropies being logged
    no_entropy: bool = field(
        default=False, metadata={"help": "do not log the prior and posterior entropies (logged by default)"})


@register_criterion("varattn_elbo", dataclass=VarAttnCriterionConfig)
class VarAttnCriterion(FairseqCriterion):
    def __init__(self, task, sentence_avg: bool, no_entropy: bool = False):
        check_task(task)
        super().__init__(task)
        self.sentence_avg = sentence_avg
        self.report_entropy = not no_entropy

    def forward(self, model, sample, reduce: bool = True):
        mode = getattr(model, "attention_mode", None)
        if mode is None:
            raise TypeError(
                "--criterion varattn_elbo needs a model from this plugin: use --arch varattn_lstm or "
                f"varattn_transformer (or one of their presets), not {type(model).__name__}")
        target = sample["target"]
        out = model(**sample["net_input"], target=target)
        terms = mode_spec(model.objective_name()).objective(out)
        joint = model.decoder.estimator.soft_loss_weight
        if model.training and joint > 0 and out.soft_token_log_probs is not None:  # --soft-loss-weight
            terms = with_soft_likelihood(terms, out.soft_token_log_probs, joint)
        target_mask = target.ne(self.padding_idx)  # B x T

        def total(per_token):
            return per_token.masked_fill(~target_mask, 0.0).sum()

        loss = terms.loss.masked_fill(~target_mask, 0.0)
        ntokens = sample["ntokens"]
        sample_size = target.size(0) if self.sentence_avg else ntokens
        logging_output = {
            "loss": total(terms.objective).data,
            "bound": total(terms.objective).data,
            "rec": total(terms.reconstruction).data,
            "kl": total(terms.kl).data,
            "ntokens": ntokens,
            "nsentences": target.size(0),
            "sample_size": sample_size,
        }
        # the model's exact likelihood, where this batch computed it (not a sampling mode's
        # training batch, whose soft output is only the REINFORCE baseline)
        if out.token_log_probs is not None:
            logging_output["nll_loss"] = -total(log_marginal(out.prior_log_probs, out.token_log_probs)).data
            seen = exact_posterior(out.prior_log_probs, out.token_log_probs)
            logging_output["align_info"] = total(categorical_kl(seen, out.prior_log_probs)).data
        elif not model.spec.latent:  # soft attention: the soft output is the model
            logging_output["nll_loss"] = -total(out.soft_token_log_probs).data
        # collapse diagnostics: the prior's mass on the source EOS and its largest probability
        src_eos = sample["net_input"]["src_tokens"].eq(model.encoder.dictionary.eos())  # B x S
        logging_output["prior_eos"] = total(mass_on(out.prior_log_probs, src_eos.unsqueeze(1))).data
        logging_output["prior_max"] = total(out.prior_log_probs.max(dim=-1).values.exp()).data
        if out.prior_alpha is not None:  # var-relaxed: the Dirichlet's concentrations
            logging_output.update(concentration_sums(out.prior_alpha, out.posterior_alpha,
                                                     out.src_padding_mask, target_mask))
        if self.report_entropy:
            logging_output["prior_ent"] = total(categorical_entropy(out.prior_log_probs)).data
            if out.posterior_log_probs is not None:
                logging_output["post_ent"] = total(categorical_entropy(out.posterior_log_probs)).data
        return (loss.sum() if reduce else loss.view(-1)), sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def summed(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        ntokens = summed("ntokens")
        sample_size = summed("sample_size")
        metrics.log_scalar("loss", summed("loss") / sample_size / math.log(2), sample_size, round=3)
        for key in ("bound", "rec", "kl", "nll_loss", "prior_ent", "post_ent", "align_info"):
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, summed(key) / ntokens / math.log(2), ntokens, round=3)
        for key in ("prior_eos", "prior_max", "prior_alpha", "post_alpha", "alpha_spread"):  # not in bits
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, summed(key) / ntokens, ntokens, round=4)
        metrics.log_derived("bound_ppl", lambda meters: utils.get_perplexity(meters["bound"].avg))
        if any("nll_loss" in log for log in logging_outputs):
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
