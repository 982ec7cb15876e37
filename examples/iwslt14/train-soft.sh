#!/usr/bin/env bash
# Soft attention, the usual attentional NMT baseline.
# Paper (IWSLT14 De-En test, beam 10 + length penalty): PPL 7.17, BLEU 32.77, prior entropy 1.24 nats.
#
#   bash examples/iwslt14/train-soft.sh [fairseq-train arguments]    (after prepare.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train soft "$@"
