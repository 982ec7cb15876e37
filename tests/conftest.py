import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Binarised synthetic reversal corpus, shared by the command-line tests."""
    from helpers import preprocess, write_synthetic_corpus

    root = tmp_path_factory.mktemp("synthetic")
    return preprocess(write_synthetic_corpus(root / "raw"), root / "data-bin")


@pytest.fixture(scope="session")
def spm_corpus(tmp_path_factory):
    """The synthetic corpus in sentencepiece pieces with its two sentencepiece models."""
    from sentencepiece_corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("spm_corpus"))


@pytest.fixture(scope="session")
def spm_var_enum(spm_corpus, tmp_path_factory):
    """checkpoint_last.pt of a tiny var-enum model trained on ``spm_corpus`` (40 updates)."""
    from sentencepiece_corpus import train_model

    return train_model(spm_corpus, tmp_path_factory.mktemp("spm_var_enum"), "var-enum", 40)


@pytest.fixture(params=["lstm", "transformer"])
def arch(request):
    """Each architecture in turn (helpers.ARCHITECTURES): the oracles shared by both."""
    return request.param


@pytest.fixture(scope="session", params=["lstm", "transformer"])
def trained(request, synthetic_data, tmp_path_factory):
    """A tiny var-enum model of each architecture after 10 epochs (80 updates) on
    ``synthetic_data``: enough that beam search stops (both still translate badly: hypotheses
    of 1-3 words, BLEU 0; the Transformer's are the shorter, about a third of the references'
    length)."""
    from helpers import fairseq_cli, train_args

    root = tmp_path_factory.mktemp(f"trained-{request.param}")
    log = fairseq_cli("fairseq-train", *train_args(synthetic_data, root / "ckpt", "var-enum", "--max-epoch", "10",
                                                   "--dropout", "0", arch=request.param)).stdout
    return SimpleNamespace(data=synthetic_data, ckpt=root / "ckpt" / "checkpoint_last.pt", log=log, root=root,
                           arch=request.param)
