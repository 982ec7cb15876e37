#!/usr/bin/env bash
# The demo: variational attention (var-enum) on real German->English sentences, on a CPU.
#
#   make demo                      # or: bash examples/demo.sh (with the virtualenv's bin on PATH)
#   DEMO_MINUTES=30 make demo      # a longer training budget (default 12 minutes)
#   DEMO_TINY=1 make demo          # the whole pipeline on a few hundred pairs in about a minute
#   DEMO_MODE=marginal make demo   # another --attention-mode (DEMO_DIR=work/demo-marginal to keep both)
#
# Data: example sentences of the Ding German-English dictionary (GPL-2+), fetched at run
# time with `apt-get download trans-de-en` (or from the Ding project site) and split by
# German sentence into train / 1000 valid / 1000 test (var_attn_plugin/data/ding.py).
# DING_FILE=path/to/de-en uses a dictionary file you already have.
#
# Every step writes into $DEMO_DIR and is skipped when its output is there, so a second run
# reuses the work of the first (an interrupted training resumes from its last checkpoint).
# Delete $DEMO_DIR, or one of its sub-folders, to redo that part.
#
# Measured with the defaults on 2 CPU cores (torch 2.13, about 15 minutes in all):
#   19,554 pairs (19,544 distinct) -> 17,544 train / 1,000 valid / 1,000 test;
#   training 12 minutes = 3 epochs (967 updates, about 1,100 target pieces per second);
#   test: exact perplexity 30.7 per piece (ELBO bound 32.6, KL 0.40 bits per piece),
#   detokenised sacreBLEU 4.4, chrF 20.5. The posterior already aligns content words
#   ("Abend" -> "dinner") more sharply than the prior; BLEU keeps rising with DEMO_MINUTES.
set -euo pipefail

# ---------------------------------------------------------------- settings
DEMO_TINY=${DEMO_TINY:-0}
if [[ "$DEMO_TINY" == 1 ]]; then
    DEMO_DIR=${DEMO_DIR:-work/demo-tiny}
    DEMO_MINUTES=${DEMO_MINUTES:-1}
    VALID_SIZE=30; TEST_SIZE=30; MAX_TRAIN=300     # sentence pairs
    VOCAB_SIZE=200                                 # pieces per language (fewer if the text is small)
    EMBED=32; HIDDEN=32; DECODER=48; OUTPUT=48      # model sizes
    MAX_EPOCH=40
else
    DEMO_DIR=${DEMO_DIR:-work/demo}
    DEMO_MINUTES=${DEMO_MINUTES:-12}
    VALID_SIZE=1000; TEST_SIZE=1000; MAX_TRAIN=""
    VOCAB_SIZE=2000     # enumeration costs S x V per target token: a small vocabulary pays off on a CPU
    EMBED=256; HIDDEN=256; DECODER=384; OUTPUT=256
    MAX_EPOCH=100       # the time budget stops training first
fi
MODE=${DEMO_MODE:-var-enum}
LR=${DEMO_LR:-2e-3}
MAX_TOKENS=1000         # target tokens per batch; smaller batches were faster per token on a CPU
DROPOUT=0.1
BEAM=5
EXAMPLES=5              # translations shown at the end
SEED=1
THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 2)}
PYTHON=${PYTHON:-python}

DATA=$DEMO_DIR/data          # raw train/valid/test .de/.en
SPM=$DEMO_DIR/spm            # sentencepiece models and encoded text
BIN=$DEMO_DIR/data-bin       # fairseq-preprocess output
CKPT=$DEMO_DIR/checkpoints
EVAL=$DEMO_DIR/eval
PLUGIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/var_attn_plugin
export OMP_NUM_THREADS=$THREADS PYTHONWARNINGS=ignore

step() { printf '\n=== %s\n' "$*"; }
skip() { echo "(done already: $1)"; }
mkdir -p "$DEMO_DIR"

# ---------------------------------------------------------------- 1. data
step "1. Ding German-English sentence pairs -> $DATA"
if [[ -f $DATA/stats.json ]]; then
    skip "$DATA"
else
    args=(--output-dir "$DATA" --valid-size "$VALID_SIZE" --test-size "$TEST_SIZE" --seed "$SEED")
    if [[ -n "${DING_FILE:-}" ]]; then args+=(--ding-file "$DING_FILE"); fi
    if [[ -n "$MAX_TRAIN" ]]; then args+=(--max-train "$MAX_TRAIN"); fi
    varattn-prepare-ding "${args[@]}"
fi
cat "$DATA/stats.json"

# ---------------------------------------------------------------- 2. subwords
step "2. sentencepiece (unigram, $VOCAB_SIZE pieces per language) -> $SPM"
if [[ -f $SPM/test.en ]]; then
    skip "$SPM"
else
    for lang in de en; do
        $PYTHON -m var_attn_plugin.data.subwords train "$DATA/train.$lang" --model-prefix "$SPM/spm.$lang" \
            --vocab-size "$VOCAB_SIZE" --soft-vocab-limit
        $PYTHON -m var_attn_plugin.data.subwords encode --model "$SPM/spm.$lang.model" \
            "$DATA/train.$lang:$SPM/train.$lang" "$DATA/valid.$lang:$SPM/valid.$lang" "$DATA/test.$lang:$SPM/test.$lang"
    done
fi
head -n 2 "$SPM/train.de" "$SPM/train.en"

# ---------------------------------------------------------------- 3. binarise
step "3. fairseq-preprocess (separate dictionaries) -> $BIN"
if [[ -f $BIN/test.de-en.en.bin ]]; then
    skip "$BIN"
else
    fairseq-preprocess --source-lang de --target-lang en --trainpref "$SPM/train" --validpref "$SPM/valid" \
        --testpref "$SPM/test" --destdir "$BIN" --workers 1 > "$DEMO_DIR/preprocess.log" 2>&1 \
        || { cat "$DEMO_DIR/preprocess.log"; exit 1; }
fi
wc -l "$BIN"/dict.*.txt

# ---------------------------------------------------------------- 4. train
step "4. fairseq-train --attention-mode $MODE for $DEMO_MINUTES minutes -> $CKPT"
if [[ -f $CKPT/train.done ]]; then
    skip "$CKPT"
else
    start=$(date +%s)
    fairseq-train "$BIN" --user-dir "$PLUGIN" --task varattn_translation --arch varattn_lstm \
        --criterion varattn_elbo --attention-mode "$MODE" \
        --encoder-embed-dim $EMBED --decoder-embed-dim $EMBED --encoder-hidden-size $HIDDEN \
        --encoder-layers 1 --decoder-layers 1 --decoder-hidden-size $DECODER --attention-dim $HIDDEN \
        --decoder-output-dim $OUTPUT --inference-hidden-size $HIDDEN --inference-layers 1 --dropout $DROPOUT \
        --optimizer adam --lr "$LR" --clip-norm 5 --max-tokens $MAX_TOKENS --seed $SEED \
        --stop-time-hours "$($PYTHON -c "print($DEMO_MINUTES / 60)")" --max-epoch $MAX_EPOCH \
        --save-dir "$CKPT" --no-epoch-checkpoints --cpu --num-workers 0 \
        --log-format simple --log-interval 100 2>&1 | tee -a "$DEMO_DIR/train.log" \
        | { grep -E "train_inner|\| (train|valid) \||Stopping" || true; }
    echo "training took $(( $(date +%s) - start )) s" > "$CKPT/train.done"
fi
cat "$CKPT/train.done"

# ---------------------------------------------------------------- 5. evaluate
step "5. exact perplexity of the test set (marginal under the prior, per subword, EOS included)"
mkdir -p "$EVAL"
if [[ -f $EVAL/validate.log ]]; then
    skip "$EVAL/validate.log"
else
    fairseq-validate "$BIN" --user-dir "$PLUGIN" --task varattn_translation --path "$CKPT/checkpoint_best.pt" \
        --valid-subset test --max-tokens 2000 --cpu --num-workers 0 > "$EVAL/validate.log" 2>&1 \
        || { cat "$EVAL/validate.log"; exit 1; }
fi
grep "valid on 'test' subset" "$EVAL/validate.log" | sed 's/.*subset | //'

step "6. fairseq-generate the test set (beam $BEAM; latent modes marginalise the alignment exactly)"
if [[ -f $EVAL/hyp.txt ]]; then
    skip "$EVAL/hyp.txt"
else
    fairseq-generate "$BIN" --user-dir "$PLUGIN" --task varattn_translation --path "$CKPT/checkpoint_best.pt" \
        --gen-subset test --beam $BEAM --remove-bpe sentencepiece \
        --max-tokens 2000 --cpu --num-workers 0 > "$EVAL/generate.out" 2> "$EVAL/generate.log" \
        || { cat "$EVAL/generate.log"; exit 1; }
    grep '^H-' "$EVAL/generate.out" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 > "$EVAL/hyp.txt"
fi
echo "detokenized sacreBLEU against $DATA/test.en:"
sacrebleu "$DATA/test.en" -i "$EVAL/hyp.txt" -m bleu chrf -w 2 --format text | tee "$EVAL/sacrebleu.txt"

step "7. $EXAMPLES example translations"
# (awk reads all lines: "head" would end the pipe early, which "set -o pipefail" reports as a failure)
paste "$DATA/test.de" "$DATA/test.en" "$EVAL/hyp.txt" \
    | awk -F'\t' -v n=$EXAMPLES 'NR <= n { printf "DE : %s\nREF: %s\nOUT: %s\n\n", $1, $2, $3 }'

step "8. prior vs posterior attention of one test sentence -> $EVAL/attention.png"
# the first test sentence with 6 to 12 words: long enough to show an alignment, short enough to read
PLOT_ID=$(awk 'NF >= 6 && NF <= 12 { print NR - 1; exit }' "$DATA/test.de")
PLOT_ID=${PLOT_ID:-0}
if [[ "$MODE" == soft ]]; then
    echo "(soft attention has no posterior to draw)"
elif [[ -f $EVAL/attention.png ]]; then
    skip "$EVAL/attention.png"
else
    varattn-plot "$BIN" --path "$CKPT/checkpoint_best.pt" --gen-subset test --id "$PLOT_ID" --cpu \
        --title "test sentence $PLOT_ID" -o "$EVAL/attention.png" > "$EVAL/plot.log" 2>&1 \
        || { cat "$EVAL/plot.log"; exit 1; }
fi
if [[ -f $EVAL/attention.png ]]; then
    echo "$(sed -n "$((PLOT_ID + 1))p" "$DATA/test.de"): prior in red, posterior in blue"
fi

step "Summary -> $DEMO_DIR/summary.txt"
{
    $PYTHON -c 'import json, sys; print("data: {pairs} sentence pairs ({distinct_pairs} distinct): {train_pairs} \
train, {valid_pairs} valid, {test_pairs} test".format(**json.load(open(sys.argv[1]))))' "$DATA/stats.json"
    echo "model: --attention-mode $MODE, $(cat "$CKPT/train.done")"
    echo "test perplexity (exact, per piece): $(sed -nE "s/.*valid on 'test' subset.*\| ppl ([0-9.]+).*/\1/p" "$EVAL/validate.log")"
    echo "test sacreBLEU (detokenised): $(sed -nE 's/^ *BLEU\|[^=]* = ([0-9.]+) .*/\1/p' "$EVAL/sacrebleu.txt")"
    if [[ -f $EVAL/attention.png ]]; then echo "attention picture: $EVAL/attention.png"; fi
    echo "checkpoint: $CKPT/checkpoint_best.pt"
} | tee "$DEMO_DIR/summary.txt"
