# var-attn for fairseq: set up, test, demo.
#
#   make install   virtual environment in $(VENV) with torch, fairseq, the plugin
#   make test      install if needed, then run the test suite
#   make test-fast the same without the tests marked slow (those that train through the command lines)
#   make demo      install if needed, then the De->En demo (its data is fetched once; see README)

PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch; override for CUDA, e.g. make install TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
# fairseq 0.12.2 does not import on Python >= 3.11; fairseq-fixed is upstream main with that fix.
FAIRSEQ_SPEC ?= fairseq-fixed==0.12.3.1
# fairseq's runtime dependencies, minus torchaudio (not needed for translation; see README).
FAIRSEQ_DEPS = cffi hydra-core==1.3.2 omegaconf==2.3.0 regex "sacrebleu>=2.0" tqdm bitarray packaging scikit-learn

# pip's resolver reports fairseq-fixed's torchaudio requirement, left out on purpose, as an ERROR
# line; it is shown as the note it is (any other conflict is shown as pip says it)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
EXPLAIN_TORCHAUDIO = sed -e '/^ERROR: pip.s dependency resolver/{N;s/^ERROR: [^\n]*\n\(fairseq-fixed [^ ]* requires torchaudio.*\)/note: \1 (left out on purpose: translation does not use it)/;}'

BIN = $(VENV)/bin
PIP = $(BIN)/python -m pip
STAMP = $(VENV)/.installed

.PHONY: install test test-fast demo lint clean-venv

install: $(STAMP)

$(STAMP): setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH_SPEC) numpy cython setuptools wheel
	$(BIN)/python -c "import fairseq" 2>/dev/null || \
		$(PIP) install --no-build-isolation --no-deps $(FAIRSEQ_SPEC)
	$(PIP) install --quiet $(FAIRSEQ_DEPS) 2>&1 | $(EXPLAIN_TORCHAUDIO)
	$(PIP) install --quiet --no-build-isolation -e ".[dev]"
	$(BIN)/python -c "import fairseq, var_attn_plugin; print('fairseq', fairseq.__version__)"
	touch $(STAMP)

# Test processes (pytest-xdist): the tests run one torch thread each, so one per core; 0: all in one process.
# Whole files go to a process (--dist loadfile), so that a module's trained models are trained once,
# in the order tests/conftest.py sorts them (--no-loadscope-reorder: the longest first);
# the ten slowest tests are listed at the end.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST = OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10

test: $(STAMP)
	$(PYTEST) tests

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" tests

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

lint: $(STAMP)
	$(BIN)/python -m ruff check var_attn_plugin tests

clean-venv:
	rm -rf $(VENV)
