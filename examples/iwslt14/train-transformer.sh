#!/usr/bin/env bash
# The Transformer with a latent alignment (docs/METHOD.md §10) on the paper's IWSLT14 De->En
# data, one --attention-mode per run, with fairseq's own IWSLT14 Transformer recipe (common.sh,
# train_transformer). The paper has no Transformer rows: these are new. The decoder reads the
# source only through the latent alignment (--soft-cross-attention none, the design in which the
# alignment carries the source; checkpoints in transformer-none-MODE). Evaluate with the paper's
# decoding like the LSTM rows:
#
#   bash examples/iwslt14/train-transformer.sh marginal [fairseq-train arguments]    (after prepare.sh)
#   bash examples/iwslt14/evaluate.sh transformer-none-marginal
#   LATENT_DECODING=kmax bash examples/iwslt14/evaluate.sh transformer-none-marginal
#   SOFT_CROSS_ATTENTION=all bash examples/iwslt14/train-transformer.sh soft   # fairseq's decoder
#       intact, every layer with its soft cross-attention (also below-top): checkpoints in transformer-soft
# Warm-started from marginal, the variational modes keep its alignment in q only when q is trained
# alone first (docs/findings.md), here through the rate's warm-up (--q-warmup-updates):
#   bash examples/iwslt14/train-transformer.sh var-enum --q-warmup-updates 4000 \
#       --finetune-from-model work/iwslt14/checkpoints/transformer-none-marginal/checkpoint_best.pt
set -euo pipefail
MODE=${1:?usage: train-transformer.sh MODE [fairseq-train arguments]  (MODE: soft, marginal, var-enum, ...)}
shift
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_transformer "$MODE" "$@"
