"""varattn-plot: colours, word merging, and real images from a (briefly) trained checkpoint."""

import numpy as np
import pytest
from helpers import PLUGIN_DIR, TINY_FLAGS, fairseq_cli

from var_attn_plugin.alignment import merged_matrix
from var_attn_plugin.tools.plot import build_parser, overlay_colors, plot


def test_overlay_colours_at_the_corners():
    prior = np.array([[0.0, 1.0], [0.0, 1.0]])
    posterior = np.array([[0.0, 0.0], [1.0, 1.0]])
    colors = overlay_colors(prior, posterior)  # 2 x 2 x 3
    np.testing.assert_allclose(colors[0, 0], [1, 1, 1])  # neither: white
    np.testing.assert_allclose(colors[0, 1], [1, 0, 0])  # prior only: red
    np.testing.assert_allclose(colors[1, 0], [0, 0, 1])  # posterior only: blue
    np.testing.assert_allclose(colors[1, 1], [0.5, 0, 0.5])  # both: purple
    # swapping the two distributions swaps red and blue
    rng = np.random.default_rng(0)
    p, q = rng.random((3, 5)), rng.random((3, 5))
    np.testing.assert_allclose(overlay_colors(p, q)[..., ::-1], overlay_colors(q, p))
    assert overlay_colors(p, q).min() >= 0 and overlay_colors(p, q).max() <= 1


def test_merged_matrix_keeps_row_sums_and_eos():
    src = ["▁die", "▁Haus", "auf", "gaben", "</s>"]  # 3 words + EOS
    tgt = ["▁home", "work", "▁is", "</s>"]  # 2 words + EOS
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(len(src)), size=len(tgt))  # 4 x 5
    matrix, src_labels, tgt_labels = merged_matrix(probs, src, tgt, "sentencepiece", "sentencepiece", "</s>")
    assert src_labels == ["die", "Hausaufgaben", "</s>"] and tgt_labels == ["homework", "is", "</s>"]
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    # "homework" is the mean of its two pieces' rows; "Hausaufgaben" sums three columns
    np.testing.assert_allclose(matrix[0, 1], probs[:2, 1:4].sum(axis=1).mean())
    np.testing.assert_allclose(matrix[2], [probs[3, 0], probs[3, 1:4].sum(), probs[3, 4]])


@pytest.fixture(scope="module")
def checkpoint(synthetic_data, tmp_path_factory):
    """A var-enum model after two epochs: enough to have a prior and a posterior to draw."""
    save_dir = tmp_path_factory.mktemp("plot") / "ckpt"
    fairseq_cli(
        "fairseq-train", synthetic_data, "--user-dir", PLUGIN_DIR, "--task", "varattn_translation",
        "--arch", "varattn_lstm", "--criterion", "varattn_elbo", "--attention-mode", "var-enum", *TINY_FLAGS,
        "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", "500", "--max-epoch", "2", "--cpu",
        "--save-dir", save_dir, "--no-epoch-checkpoints", "--no-last-checkpoints", "--log-format", "none",
    )
    return save_dir / "checkpoint_best.pt"


@pytest.mark.slow
def test_png_from_a_binarised_split(synthetic_data, checkpoint, tmp_path):
    import matplotlib.image

    out = tmp_path / "figure.png"
    fairseq_cli("varattn-plot", synthetic_data, "--path", checkpoint, "--id", "3", "--cpu", "-o", out)
    image = matplotlib.image.imread(out)  # H x W x channels, floats in [0, 1]
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0 and image.shape[2] in (3, 4)
    assert image[..., :3].min() < 0.5  # not a blank page: labels and coloured cells


@pytest.mark.slow
def test_panels_as_pdf(synthetic_data, checkpoint, tmp_path):
    out = tmp_path / "panels.pdf"
    fairseq_cli("varattn-plot", synthetic_data, "--path", checkpoint, "--id", "0", "--panels", "--cpu", "-o", out)
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_raw_sentence_matrices(synthetic_data, checkpoint):
    args = build_parser().parse_args([
        str(synthetic_data), "--path", str(checkpoint), "--cpu", "-o", "unused.png",
        "--source-text", "w1 w2 w3", "--target-text", "W3 W2 W1"])
    fig, src_labels, tgt_labels, prior, posterior = plot(args)
    assert src_labels == ["w1", "w2", "w3", "</s>"] and tgt_labels == ["W3", "W2", "W1", "</s>"]
    assert prior.shape == posterior.shape == (4, 4)
    np.testing.assert_allclose(prior.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, atol=1e-5)
    args.no_eos = True
    _, src_labels, tgt_labels, prior_no_eos, _ = plot(args)
    assert src_labels == ["w1", "w2", "w3"] and tgt_labels == ["W3", "W2", "W1"]
    np.testing.assert_allclose(prior_no_eos, prior[:3, :3])
    assert fig.axes


@pytest.mark.slow
def test_needs_a_sentence(synthetic_data, checkpoint, tmp_path):
    proc = fairseq_cli("varattn-plot", synthetic_data, "--path", checkpoint, "-o", tmp_path / "x.png", check=False)
    assert proc.returncode == 1 and "--id N, or --source-text and --target-text" in proc.stderr
    proc = fairseq_cli("varattn-plot", synthetic_data, "--path", checkpoint, "--id", "999", "-o",
                       tmp_path / "x.png", check=False)
    assert proc.returncode == 1 and "--id 999 is outside --gen-subset test" in proc.stderr
