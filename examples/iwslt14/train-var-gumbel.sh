#!/usr/bin/env bash
# Variational attention, Gumbel-softmax relaxation of q (temperature 0.1).
# Paper: PPL 6.51, BLEU 33.08.
#
#   bash examples/iwslt14/train-var-gumbel.sh [fairseq-train arguments]    (after prepare.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
GUMBEL_TEMPERATURE=0.1  # the paper's τ
train var-gumbel --gumbel-temperature $GUMBEL_TEMPERATURE "$@"
