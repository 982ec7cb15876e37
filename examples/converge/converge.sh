#!/usr/bin/env bash
# The converged comparison of the attention modes (varattn_experiments/comparison.py): every mode
# and seed trains on every corpus to early stopping, then is evaluated (exact and bound perplexity,
# KL, entropies, BLEU with the paper's decoding) and aligned (AER against eflomal's links, or the
# true links of the synthetic tasks). Run the same command again after any interruption: finished
# steps are skipped, a training resumes from its last checkpoint.
#
#   bash examples/converge/converge.sh                         # the whole comparison, 2 runs at a time
#   MODES="soft var-enum" SEEDS=1 CORPORA=libreoffice bash examples/converge/converge.sh
#   MODES="transformer-soft transformer-var-enum" bash examples/converge/converge.sh
#   TINY=1 bash examples/converge/converge.sh                  # the pipeline on a few hundred pairs
#   ARCHIVE=docs/runs/near-paper bash examples/converge/converge.sh   # keep what finishes (committed)
#   python -m varattn_experiments pause work/converge-near-paper   # ... resume: lend the machine a while
#
# Settings (environment): RECIPE (near-paper, the default, or cpu: docs/recipes.md), MODES,
# SEEDS, CORPORA (libreoffice ding lohelp syn-monotone syn-local syn-fertility syn-null), PARALLEL, MAX_UPDATES, ROOT (checkpoints, data: large), ARCHIVE (a
# folder to keep each finished run's logs and scores in; runs it holds are not trained again),
# DING_FILE / LIBREOFFICE_MO_DIR (copies you already have), ALIGNER (eflomal or none).
# Expected figures: docs/near-paper-results.md (RECIPE=cpu: docs/converge-long-results.md).
set -euo pipefail

MODES=${MODES:-"soft marginal hard-enum hard-sample var-enum var-sample var-gumbel var-wsram var-relaxed
    var-sample-from-var-enum"}
SEEDS=${SEEDS:-"1 2"}
PARALLEL=${PARALLEL:-2}
ALIGNER=${ALIGNER:-eflomal}
PYTHON=${PYTHON:-python}
ACTION=${1:-run}   # run, prepare, archive or report

args=(converge "$ACTION" --recipe "${RECIPE:-near-paper}" --modes $MODES --seeds $SEEDS --parallel "$PARALLEL"
      --aligner "$ALIGNER")
if [[ -n ${CORPORA:-} ]]; then args+=(--corpora $CORPORA); fi
if [[ -n ${ROOT:-} ]]; then args+=(--root "$ROOT"); fi
if [[ -n ${ARCHIVE:-} ]]; then args+=(--archive "$ARCHIVE"); fi
if [[ -n ${MAX_UPDATES:-} ]]; then args+=(--max-update "$MAX_UPDATES"); fi
if [[ ${TINY:-0} == 1 ]]; then args+=(--tiny); fi
if [[ -n ${DING_FILE:-} ]]; then args+=(--source "ding=$DING_FILE"); fi
if [[ -n ${LIBREOFFICE_MO_DIR:-} ]]; then args+=(--source "libreoffice=$LIBREOFFICE_MO_DIR"); fi

exec "$PYTHON" -m varattn_experiments "${args[@]}"
