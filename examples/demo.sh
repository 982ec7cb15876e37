#!/usr/bin/env bash
# The demo (varattn_experiments/demo.py): a soft-attention warm start, then variational attention
# (--attention-mode var-enum, the exact ELBO), trained and evaluated on the CPU on LibreOffice's
# German-English help pages and UI strings; its sacreBLEU beside the warm start's and a
# retrieval baseline's, example translations and a picture of the attention. Every finished
# step is skipped when the same command runs again; an interrupted training resumes.
#
#   make demo                        # or: bash examples/demo.sh, with the virtualenv's bin on PATH
#   DEMO_TINY=1 make demo            # the whole pipeline on a few hundred pairs in minutes
#   DEMO_CORPUS=ding make demo       # the Ding dictionary's example sentences instead
#   DEMO_MODE=marginal make demo     # another latent --attention-mode (DEMO_DIR=work/demo-marginal keeps both)
#   DING_FILE=path/to/de-en make demo    # the Ding corpus from a copy you already have
#   bash examples/demo.sh --exclude-source-eos   # its own arguments: python -m varattn_experiments.demo --help
#
# Expected figures (docs/demo.md): the README's.
set -euo pipefail

PYTHON=${PYTHON:-python}
args=()
if [[ ${DEMO_TINY:-0} == 1 ]]; then args+=(--tiny); fi
if [[ -n ${DEMO_DIR:-} ]]; then args+=(--dir "$DEMO_DIR"); fi
if [[ -n ${DEMO_MODE:-} ]]; then args+=(--mode "$DEMO_MODE"); fi
CORPUS=${DEMO_CORPUS:-$([[ -n ${DING_FILE:-} ]] && echo ding || echo lohelp)}
args+=(--corpus "$CORPUS")
if [[ $CORPUS == ding && -n ${DING_FILE:-} ]]; then args+=(--source "$DING_FILE"); fi

exec "$PYTHON" -m varattn_experiments.demo "${args[@]}" "$@"
