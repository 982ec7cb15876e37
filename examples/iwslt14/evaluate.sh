#!/usr/bin/env bash
# Evaluate an IWSLT14 De->En model the way the paper does (docs/METHOD.md §6, §8).
#
#   bash examples/iwslt14/evaluate.sh MODE [CHECKPOINT]      (default SAVE_ROOT/MODE/checkpoint_best.pt)
#   bash examples/iwslt14/evaluate.sh transformer-var-enum   # a train-transformer.sh run
#   LATENT_DECODING=kmax bash examples/iwslt14/evaluate.sh var-enum     # K-max (K=5) decoding
#
# 1. exact test perplexity (fairseq-validate): ppl = the marginal under the prior, per BPE
#    piece with EOS; bound_ppl = exp of the negative ELBO per piece; kl = KL(q || p) per piece.
#    Pieces differ from the paper's subword-nmt BPE, so PPL compares only roughly with docs/METHOD.md §8.
# 2. fairseq-generate: beam 10, GNMT length penalty 1, EOS penalty 3, exact enumeration of
#    the alignment (the paper's decoding).
# 3. tokenised, lowercased BLEU against the Moses-tokenised, lowercased reference (the
#    paper's multi-bleu number; sacrebleu -tok none -lc; fairseq's own score is in generate.log).
# 4. detokenised sacreBLEU: hypotheses detokenised with sacremoses, against the raw
#    reference, lowercased (-lc: the model writes lowercase). Compare BLEU within one metric.
#
# Paper (test, beam 10 + length penalty), PPL / tokenised BLEU:
#   soft 7.17 / 32.77   marginal 6.34 / 33.29   hard-enum 7.37 / 31.40   hard-sample 7.38 / 31.00
#   var-relaxed 7.58 / 30.05   var-enum 6.08 / 33.68   var-sample 6.17 / 33.30
#   var-wsram 6.41 / 32.96   var-gumbel 6.51 / 33.08
#   K-max (K=5): marginal 6.90 / 33.31   var-enum 6.42 / 33.69   var-sample 6.51 / 33.27
set -euo pipefail

MODE=${1:?usage: evaluate.sh MODE [CHECKPOINT]}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CHECKPOINT=${2:-$SAVE_ROOT/$MODE/checkpoint_best.pt}
PREP=${PREP:-$(dirname "$DATA")/prep}      # prepare.sh's text: tok/ and raw/ references
BEAM=10
GNMT_LENPEN=1
EOS_PENALTY=3
LATENT_DECODING=${LATENT_DECODING:-auto}  # auto = exact for latent modes, soft for soft; or kmax
KMAX=5
MAX_TOKENS=${EVAL_MAX_TOKENS:-4000}
EVAL_ARGS=${EVAL_ARGS:-}                  # more fairseq-validate/-generate arguments, e.g. --cpu
OUT=${EVAL_DIR:-$SAVE_ROOT/$MODE/eval-$LATENT_DECODING}
mkdir -p "$OUT"

echo "=== 1. exact perplexity of the test set"
fairseq-validate "$DATA" --user-dir "$PLUGIN" --task varattn_translation --path "$CHECKPOINT" \
    --valid-subset test --max-tokens "$MAX_TOKENS" $EVAL_ARGS > "$OUT/validate.log" 2>&1 \
    || { cat "$OUT/validate.log"; exit 1; }
grep "valid on 'test' subset" "$OUT/validate.log" | sed 's/.*subset | //'

echo "=== 2. beam $BEAM, --gnmt-lenpen $GNMT_LENPEN, --eos-penalty $EOS_PENALTY, --latent-decoding $LATENT_DECODING"
fairseq-generate "$DATA" --user-dir "$PLUGIN" --task varattn_translation --path "$CHECKPOINT" \
    --gen-subset test --beam $BEAM --gnmt-lenpen $GNMT_LENPEN --eos-penalty $EOS_PENALTY \
    --latent-decoding "$LATENT_DECODING" --kmax $KMAX --remove-bpe sentencepiece \
    --max-tokens "$MAX_TOKENS" $EVAL_ARGS > "$OUT/generate.out" 2> "$OUT/generate.log" \
    || { cat "$OUT/generate.log"; exit 1; }
grep '^H-' "$OUT/generate.out" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 > "$OUT/hyp.tok.en"
tail -n 1 "$OUT/generate.out"

echo "=== 3. tokenised, lowercased BLEU (the paper's)"
sacrebleu "$PREP/tok/test.en" -i "$OUT/hyp.tok.en" -tok none -lc -w 2 | tee "$OUT/bleu.tok.json"

echo "=== 4. detokenised sacreBLEU (lowercased)"
sacremoses -l en detokenize < "$OUT/hyp.tok.en" > "$OUT/hyp.detok.en"
sacrebleu "$PREP/raw/test.en" -i "$OUT/hyp.detok.en" -lc -w 2 | tee "$OUT/bleu.detok.json"
