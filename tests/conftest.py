import fcntl
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_num_threads(1)


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)``'s result, built once per test session: the test processes of
    pytest-xdist share one temporary root, and the first to need ``name`` builds it under a
    lock while the others wait and then read its pickled result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # .../pytest-N/popen-gwK -> .../pytest-N, the same for every worker
    folder, result = root / f"shared-{name}", root / f"shared-{name}.pickle"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            folder.mkdir(exist_ok=True)
            value = build(folder)
            result.write_bytes(pickle.dumps(value))
        return pickle.loads(result.read_bytes())


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Binarised synthetic reversal corpus, shared by the command-line tests."""
    from helpers import preprocess, write_synthetic_corpus

    return built_once(tmp_path_factory, "synthetic",
                      lambda root: preprocess(write_synthetic_corpus(root / "raw"), root / "data-bin"))


@pytest.fixture(scope="session")
def spm_corpus(tmp_path_factory):
    """The synthetic corpus in sentencepiece pieces with its two sentencepiece models."""
    from sentencepiece_corpus import build_corpus

    return built_once(tmp_path_factory, "spm_corpus", build_corpus)


@pytest.fixture(scope="session")
def spm_var_enum(spm_corpus, tmp_path_factory):
    """checkpoint_last.pt of a tiny var-enum model trained on ``spm_corpus`` (40 updates)."""
    from sentencepiece_corpus import train_model

    return built_once(tmp_path_factory, "spm_var_enum", lambda root: train_model(spm_corpus, root, "var-enum", 40))


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

    def build(root):
        log = fairseq_cli("fairseq-train", *train_args(synthetic_data, root / "ckpt", "var-enum", "--max-epoch", "10",
                                                       "--dropout", "0", arch=request.param)).stdout
        return SimpleNamespace(data=synthetic_data, ckpt=root / "ckpt" / "checkpoint_last.pt", log=log, root=root,
                               arch=request.param)

    return built_once(tmp_path_factory, f"trained-{request.param}", build)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The demo's whole pipeline, tiny (``DEMO_TINY=1 examples/demo.sh`` on the synthetic
    Ding-format dictionary), built once: ``dir`` (its DEMO_DIR), ``stdout``, ``pairs`` (the
    dictionary's sentence pairs) and ``env`` (the environment it ran with)."""
    import subprocess

    from helpers import BIN_DIR, write_synthetic_dictionary

    def build(root):
        pairs = write_synthetic_dictionary(root / "de-en")
        env = {"DEMO_TINY": "1", "DING_FILE": str(root / "de-en"), "DEMO_DIR": str(root / "demo")}
        full = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
                    PYTHONWARNINGS="ignore", MPLBACKEND="Agg", **env)
        repo = Path(__file__).resolve().parent.parent
        proc = subprocess.run(["bash", "examples/demo.sh"], cwd=repo, env=full, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"tiny demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return SimpleNamespace(dir=root / "demo", stdout=proc.stdout, pairs=pairs, env=env)

    return built_once(tmp_path_factory, "tiny_demo", build)


# The files whose tests take longest, in the order the test processes should start them: pytest-xdist
# hands whole files out in collection order (--dist loadfile), so a long file collected last runs
# alone at the end. test_readme.py copies the tiny demo that test_recipes.py builds, so it comes
# last, when the demo is there, instead of waiting for it beside the build.
LONG_FIRST = ["test_recipes.py", "test_comparison.py", "test_learning.py", "test_resume.py", "test_align.py",
              "test_distributed.py", "test_faults.py"]
LAST = ["test_readme.py"]


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = Path(str(item.fspath)).name
        if name in LONG_FIRST:
            return LONG_FIRST.index(name)
        return len(LONG_FIRST) + 1 if name in LAST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays
