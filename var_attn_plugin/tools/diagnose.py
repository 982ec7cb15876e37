"""``varattn-diagnose``: does a trained model use its latent alignment, and the source at all?

A latent-alignment model can learn to predict each target word without the source position
it aligns to: when the output ``p(y_t | x, y_<t, z_t = j)`` is the same for every ``j``,
the prior and the inference network lose every reason to commit, end uniform and the KL of
the ELBO is zero (posterior collapse). The source can still reach the decoder through another
path (the LSTM's input feed, the prior's expectation of the encoder states, which under a
uniform prior is their mean; the Transformer's own cross-attention). This tool measures both,
teacher-forced on a binarised split, per target token (EOS included, pads excluded):

- ``ppl``: the exact perplexity, ``exp`` of the mean of ``-log p(y_t | x, y_<t)`` with
  ``z_t`` marginalised under the prior (a soft-attention model: its ordinary perplexity),
  what ``fairseq-validate`` reports;
- ``ppl_other_source``: the same with each batch's source sentences rotated by one, so
  every target is scored against another sentence of about its length (batches are length
  bucketed): the gap to ``ppl`` is how much the predictions depend on the source at all;
- ``kl_posterior_prior``: ``KL(p(z_t | x, y_<=t) ‖ p(z_t | x, y_<t))`` in nats, how far
  seeing the word moves the alignment; it equals ``E_posterior[ℓ_t] - log p(y_t)`` with
  ``ℓ_t(j) = log p(y_t | x, y_<t, z_t = j)``, and is zero exactly when ``ℓ_t(j)`` is the
  same at every source position the prior allows;
- ``position_spread``: the standard deviation of ``ℓ_t(j)`` over the real source positions
  ``j`` (nats), how much the aligned position matters to the word;
- ``prior_entropy`` and ``uniform_entropy``: the prior's entropy and ``log S`` (nats),
  equal for a uniform prior.

The KL and the spread need a latent model (every mode but ``soft``); a soft-attention model's
prior entropy is its attention's.
"""

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..alignment import UsageError, iterate_batches, split_dataset
from ..console import (
    ArgumentParser,
    closed_pipe_ends_quietly,
    configure_logging,
    description_from_docstring,
    quiet_library_warnings,
)
from ..loading import COMMAND, load_for_inference

logger = logging.getLogger("varattn-diagnose")

ENTROPY_FIELDS = ("prior_entropy", "uniform_entropy")
LATENT_FIELDS = ("kl_posterior_prior", "position_spread", *ENTROPY_FIELDS)


@dataclass
class Diagnosis:
    mode: str
    tokens: int
    ppl: float
    ppl_other_source: Optional[float]  # None when no batch had two sentences
    kl_posterior_prior: Optional[float] = None  # nats per token; latent models only
    position_spread: Optional[float] = None
    prior_entropy: Optional[float] = None  # a soft model's: its attention's
    uniform_entropy: Optional[float] = None


def alignment_statistics(prior_log_probs: Tensor, token_log_probs: Tensor, tokens: Tensor) -> Dict[str, Tensor]:
    """Per-token sums over the real target tokens (``tokens``, ``(B, T)`` bool) of a batch.

    ``prior_log_probs`` ``(B, T, S)``: log p(z_t = j), ``-inf`` at source pads;
    ``token_log_probs`` ``(B, T, S)``: ℓ_t(j) (any value at pads). Returns the sums of
    ``log p(y_t)``, ``KL(posterior ‖ prior)``, the spread of ℓ_t over source positions, the
    prior's entropy and ``log S``.
    """
    prior = prior_log_probs.double()
    real = torch.isfinite(prior)
    ell = token_log_probs.double().masked_fill(~real, 0.0)
    joint = (prior + ell).masked_fill(~real, -math.inf)
    log_marginal = torch.logsumexp(joint, dim=-1)  # log p(y_t)
    posterior = torch.softmax(joint, dim=-1)
    kl = (posterior * ell).sum(-1) - log_marginal  # E_post[ℓ_t] - log p(y_t) = KL(post ‖ prior)
    count = real.sum(-1).clamp(min=1)
    mean = ell.sum(-1) / count
    spread = (((ell - mean.unsqueeze(-1)) ** 2).masked_fill(~real, 0.0).sum(-1) / count).sqrt()
    entropy = -(prior.exp() * prior.masked_fill(~real, 0.0)).sum(-1)
    values = {"log_marginal": log_marginal, "kl_posterior_prior": kl.clamp(min=0.0), "position_spread": spread,
              "prior_entropy": entropy, "uniform_entropy": count.double().log()}
    return {name: value[tokens].sum() for name, value in values.items()}


def target_log_probs(model, src_tokens: Tensor, src_lengths: Tensor, sample: Dict):
    """``(log p(y_t), LatentOutputs)`` for every target position of ``sample`` given these sources."""
    out = model(src_tokens, src_lengths, sample["net_input"]["prev_output_tokens"], target=sample["target"])
    if model.spec.latent:
        prior = out.prior_log_probs.double()
        joint = (prior + out.token_log_probs.double().masked_fill(~torch.isfinite(prior), 0.0))
        return torch.logsumexp(joint, dim=-1), out
    return out.soft_token_log_probs.double(), out


@torch.no_grad()
def diagnose(model, task, dataset, max_tokens: Optional[int], batch_size: Optional[int]) -> Diagnosis:
    pad = task.target_dictionary.pad()
    sums = {name: 0.0 for name in ("nll", "nll_other", *LATENT_FIELDS)}
    tokens = other_tokens = 0
    for sample in iterate_batches(task, model, dataset, max_tokens, batch_size):
        real = sample["target"].ne(pad)
        src, lengths = sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"]
        log_probs, out = target_log_probs(model, src, lengths, sample)
        sums["nll"] -= log_probs[real].sum().item()
        tokens += int(real.sum())
        # a soft model's prior is its attention: only its entropy is meaningful (ℓ_t is not defined)
        token_log_probs = out.token_log_probs if model.spec.latent else torch.zeros_like(out.prior_log_probs)
        for name, value in alignment_statistics(out.prior_log_probs, token_log_probs, real).items():
            if name in sums:
                sums[name] += value.item()
        if src.size(0) > 1:
            other = torch.roll(torch.arange(src.size(0), device=src.device), 1)
            other_log_probs, _ = target_log_probs(model, src[other], lengths[other], sample)
            sums["nll_other"] -= other_log_probs[real].sum().item()
            other_tokens += int(real.sum())
    if tokens == 0:
        raise UsageError("the split has no target tokens")
    result = Diagnosis(mode=model.attention_mode, tokens=tokens, ppl=math.exp(sums["nll"] / tokens),
                       ppl_other_source=math.exp(sums["nll_other"] / other_tokens) if other_tokens else None)
    for name in LATENT_FIELDS if model.spec.latent else ENTROPY_FIELDS:
        setattr(result, name, sums[name] / tokens)
    return result


def format_table(rows: Sequence[Diagnosis], names: Sequence[str]) -> List[str]:
    def cell(value, digits):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = ["| checkpoint | mode | PPL | PPL, another sentence's source | KL(posterior ‖ prior) (nats) "
             "| spread of ℓ_t over positions (nats) | prior entropy (nats) | uniform (nats) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in zip(names, rows):
        lines.append(f"| {name} | {row.mode} | {cell(row.ppl, 2)} | {cell(row.ppl_other_source, 2)} | "
                     f"{cell(row.kl_posterior_prior, 3)} | {cell(row.position_spread, 3)} | "
                     f"{cell(row.prior_entropy, 3)} | {cell(row.uniform_entropy, 3)} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="varattn-diagnose", description=description_from_docstring(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", type=Path, metavar="DATA",
                        help="binarised data directory (default: the directory the checkpoint was trained on)")
    parser.add_argument("--path", type=Path, required=True, nargs="+", metavar="CKPT",
                        help="trained checkpoints (.pt); one row each")
    parser.add_argument("--gen-subset", default="test", help="binarised split (default: test)")
    parser.add_argument("--max-tokens", type=int, default=None, help="batch by tokens (default: --batch-size 32)")
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    parser.add_argument("--json", action="store_true", help="one JSON object per checkpoint instead of a table")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    quiet_library_warnings()
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    batch_size = args.batch_size if args.batch_size or args.max_tokens else 32
    rows = []
    try:
        for path in args.path:
            (model,), _cfg, task = load_for_inference(path, args.data, cpu=args.cpu, names=COMMAND)
            rows.append(diagnose(model, task, split_dataset(task, args.gen_subset), args.max_tokens, batch_size))
            logger.info("%s: %s", path, rows[-1])
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    with closed_pipe_ends_quietly():
        if args.json:
            for path, row in zip(args.path, rows):
                sys.stdout.write(json.dumps({"checkpoint": str(path), **asdict(row)}) + "\n")
        else:
            sys.stdout.write("\n".join(format_table(rows, [str(p) for p in args.path])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
