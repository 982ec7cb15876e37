"""``varattn-plot``: the prior and the posterior of one sentence pair in one heatmap.

Source words run along the top, target words down the side. One picture (default) shows
the prior in red and the posterior in blue on white, their overlap in purple: a cell's
colour is ``(1 - q + pq/2, 1 - max(p, q), 1 - p + pq/2)`` for prior probability p and
posterior probability q. ``--panels`` draws two side-by-side heatmaps instead.

Pieces are merged into words like ``varattn-align --words --word-rule sum``: the row of a
target word is the mean over its pieces of the probability summed over each source word's
pieces. EOS is its own word, ``</s>`` (``--no-eos`` leaves it out).

Dimensions: I target words, J source words.
"""

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..alignment import (
    UsageError,
    alignment_log_probs,
    merged_matrix,
    raw_dataset,
    real_positions,
    resolve_distribution,
    split_dataset,
)
from ..console import ArgumentParser, configure_logging, description_from_docstring, quiet_library_warnings
from .align import add_data_arguments, load_model, subword_schemes

logger = logging.getLogger("varattn-plot")

PRIOR_COLOR = (1.0, 0.0, 0.0)
POSTERIOR_COLOR = (0.0, 0.0, 1.0)
BOTH_COLOR = (0.5, 0.0, 0.5)
CELL_INCHES = 0.45  # size of one heatmap cell
MARGIN_INCHES = 1.6  # room for the word labels


def overlay_colors(prior: np.ndarray, posterior: np.ndarray) -> np.ndarray:
    """``(I, J)`` prior p and posterior q -> ``(I, J, 3)`` RGB in [0, 1]:
    white where both are 0, red where only p is 1, blue where only q is 1, purple for both."""
    p, q = np.clip(prior, 0, 1), np.clip(posterior, 0, 1)
    both = p * q / 2
    return np.stack([1 - q + both, 1 - np.maximum(p, q), 1 - p + both], axis=-1)


def draw(prior: np.ndarray, posterior: np.ndarray, src_labels: Sequence[str], tgt_labels: Sequence[str],
         posterior_name: str = "posterior", panels: bool = False, title: Optional[str] = None):
    """A matplotlib figure of ``(I, J)`` prior and posterior probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows, cols = prior.shape
    width = MARGIN_INCHES + CELL_INCHES * cols * (2 if panels else 1) + (1.5 if panels else 0)
    height = MARGIN_INCHES + CELL_INCHES * rows
    fig, axes = plt.subplots(1, 2 if panels else 1, figsize=(max(width, 4), max(height, 3)), squeeze=False)

    def label_axes(ax):
        ax.set_xticks(range(cols))
        ax.set_xticklabels(src_labels, rotation=90)
        ax.set_yticks(range(rows))
        ax.set_yticklabels(tgt_labels)
        ax.xaxis.tick_top()
        ax.set_xlabel("source")
        ax.set_ylabel("target")

    if panels:
        for ax, matrix, cmap, name in ((axes[0, 0], prior, "Reds", "prior"),
                                       (axes[0, 1], posterior, "Blues", posterior_name)):
            image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal")
            label_axes(ax)
            ax.set_title(name, pad=12)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    else:
        ax = axes[0, 0]
        ax.imshow(overlay_colors(prior, posterior), aspect="equal")
        label_axes(ax)
        ax.legend(handles=[Patch(color=PRIOR_COLOR, label="prior"),
                           Patch(color=POSTERIOR_COLOR, label=posterior_name),
                           Patch(color=BOTH_COLOR, label="both")],
                  loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="varattn-plot",
        description=description_from_docstring(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument("--id", type=int, default=None, metavar="N",
                        help="sentence N (0-based, fairseq's sample id) of --gen-subset")
    parser.add_argument("--source-text", default=None, help="a raw source sentence (instead of --id)")
    parser.add_argument("--target-text", default=None, help="its raw reference translation")
    parser.add_argument("--panels", action="store_true", help="prior and posterior in two side-by-side panels")
    parser.add_argument("--subwords", action="store_true", help="plot pieces, do not merge them into words")
    parser.add_argument("--no-eos", action="store_true", help="leave out the EOS row and column")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of a PNG (default 150)")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="image file; the format follows the suffix (.png, .pdf, .svg)")
    return parser


def plot(args):
    """The figure for ``args``; also returns the word labels and matrices."""
    if (args.id is None) == (args.source_text is None):
        raise UsageError("choose the sentence pair: --id N, or --source-text and --target-text")
    if (args.source_text is None) != (args.target_text is None):
        raise UsageError("raw text needs both --source-text and --target-text")
    model, task = load_model(args)
    if args.distribution == "prior":
        raise UsageError("the prior is always drawn: --distribution picks the posterior to "
                                 "draw next to it (posterior or exact-posterior)")
    posterior_name = resolve_distribution(model, args.distribution)
    if posterior_name == "prior":
        raise UsageError(
            f"this checkpoint was trained with --attention-mode {model.attention_mode}, which has no "
            "posterior to compare with the prior; plot a latent or variational model")
    if args.id is None:
        dataset = raw_dataset(task, [args.source_text], [args.target_text], args.spm, args.target_spm,
                              label="--source-text")
        index = 0
    else:
        dataset = split_dataset(task, args.gen_subset)
        if not 0 <= args.id < len(dataset):
            raise UsageError(f"--id {args.id} is outside --gen-subset {args.gen_subset} "
                                     f"(sentences 0 to {len(dataset) - 1})")
        index = args.id
    sample = dataset.collater([dataset[index]])
    device = next(model.parameters()).device
    if device.type == "cuda":
        from fairseq import utils

        sample = utils.move_to_cuda(sample, device)

    log_probs = alignment_log_probs(model, sample, ["prior", posterior_name])
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    src_kept = real_positions(sample["net_input"]["src_tokens"], src_dict)[0][0]
    tgt_kept = real_positions(sample["target"], tgt_dict)[0][0]
    src_pieces = [src_dict[k] for k in sample["net_input"]["src_tokens"][0][src_kept].tolist()]
    tgt_pieces = [tgt_dict[k] for k in sample["target"][0][tgt_kept].tolist()]
    eos = tgt_dict[tgt_dict.eos()]

    src_scheme, tgt_scheme = ("none", "none") if args.subwords else subword_schemes(args, task)
    matrices = []
    for name in ("prior", posterior_name):
        probs = log_probs[name][0].exp()[tgt_kept][:, src_kept].cpu().numpy()  # T' x S'
        matrix, src_labels, tgt_labels = merged_matrix(probs, src_pieces, tgt_pieces, src_scheme, tgt_scheme, eos)
        matrices.append(matrix)
    if args.no_eos:  # EOS is the last word of each side
        rows = len(tgt_labels) - (tgt_pieces[-1] == eos)
        cols = len(src_labels) - (src_pieces[-1] == eos)
        matrices = [m[:rows, :cols] for m in matrices]
        src_labels, tgt_labels = src_labels[:cols], tgt_labels[:rows]
    prior, posterior = matrices
    fig = draw(prior, posterior, src_labels, tgt_labels, posterior_name, args.panels, args.title)
    return fig, src_labels, tgt_labels, prior, posterior


def main(argv: Optional[Sequence[str]] = None) -> None:
    quiet_library_warnings()
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fig, *_ = plot(args)
    except UsageError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=args.dpi, bbox_inches="tight")
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
