#!/usr/bin/env bash
# Variational attention, reweighted wake-sleep with 5 samples from q.
# Paper: PPL 6.41, BLEU 32.96.
#
#   bash examples/iwslt14/train-var-wsram.sh [fairseq-train arguments]    (after prepare.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WSRAM_SAMPLES=5  # the paper's K
train var-wsram --wsram-samples $WSRAM_SAMPLES "$@"
