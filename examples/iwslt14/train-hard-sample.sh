#!/usr/bin/env bash
# Hard attention, one sample from the prior, REINFORCE with the soft baseline.
# Paper: PPL 7.38, BLEU 31.00, prior entropy 0.07 nats.
#
#   bash examples/iwslt14/train-hard-sample.sh [fairseq-train arguments]    (after prepare.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train hard-sample "$@"
