import sys
from pathlib import Path

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
