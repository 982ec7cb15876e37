#!/usr/bin/env bash
# Variational relaxed attention: Dirichlet prior and posterior, reparameterised samples.
# The paper first trains the generative model with the hard-enum objective, then adds q;
# here for about one epoch of 6-sentence batches (about 26k updates).
# Paper: PPL 7.58, BLEU 30.05, prior entropy 2.02 nats.
#
#   bash examples/iwslt14/train-var-relaxed.sh [fairseq-train arguments]    (after prepare.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DIRICHLET_WARMUP_UPDATES=${DIRICHLET_WARMUP_UPDATES:-26000}
train var-relaxed --dirichlet-warmup-updates $DIRICHLET_WARMUP_UPDATES "$@"
