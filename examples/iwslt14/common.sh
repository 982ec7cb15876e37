# Shared by the train-*.sh scripts: the paper's IWSLT14 De->En training recipe (docs/METHOD.md §7).
#
# Every script trains one --attention-mode of --arch varattn_lstm_iwslt_de_en (the paper's sizes,
# var_attn_plugin/presets.py), Adam lr 3e-4, clip 5, batches of 6 sentences with the loss divided
# by sentences, the lr halved when the validation bound does not improve, 30 epochs, seed 3435;
# the source EOS is not an alignment candidate (--exclude-source-eos), as in the paper, whose
# sources have no EOS (docs/dynamics.md measures it both ways).
#
# Settings (environment variables):
#   DATA        binarised data from prepare.sh (default work/iwslt14/data-bin)
#   SAVE_ROOT   checkpoints go to SAVE_ROOT/MODE (default work/iwslt14/checkpoints)
#   BATCH       sentences per batch (default 6, the paper's); with TOKENS set, batches hold
#               up to TOKENS target tokens instead (e.g. TOKENS=4096 on a large GPU: faster,
#               not the paper's recipe; the enumeration is chunked to --enum-chunk-mb)
# Extra arguments of a train-*.sh script go to fairseq-train (e.g. --cpu, --max-epoch 1,
# --distributed-world-size 2).

DATA=${DATA:-work/iwslt14/data-bin}
SAVE_ROOT=${SAVE_ROOT:-work/iwslt14/checkpoints}
BATCH=${BATCH:-6}
TOKENS=${TOKENS:-}
PLUGIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/var_attn_plugin

LR=3e-4; CLIP_NORM=5; MAX_EPOCH=30; SEED=3435

# train_transformer MODE [fairseq-train arguments...]: the Transformer rows with fairseq's own
# IWSLT14 Transformer recipe (varattn_transformer_iwslt_de_en, Adam (0.9, 0.98), lr 5e-4, 4,000
# warm-up updates, inverse square root, weight decay 1e-4, 4,096 tokens a batch, 50,000 updates).
train_transformer() {  # SOFT_CROSS_ATTENTION=none (default)|below-top|all (docs/METHOD.md §10)
    local mode=$1 design=${SOFT_CROSS_ATTENTION:-none}; shift
    local save=$SAVE_ROOT/transformer-$mode
    if [[ $design != all ]]; then save=$SAVE_ROOT/transformer-$design-$mode; fi
    mkdir -p "$save"
    fairseq-train "$DATA" --user-dir "$PLUGIN" --task varattn_translation \
        --arch varattn_transformer_iwslt_de_en --criterion varattn_elbo --attention-mode "$mode" \
        --soft-cross-attention "$design" --exclude-source-eos --optimizer adam --adam-betas '(0.9, 0.98)' --lr 5e-4 --lr-scheduler inverse_sqrt \
        --warmup-updates 4000 --warmup-init-lr 1e-7 --clip-norm 0 --weight-decay 0.0001 --dropout 0.3 \
        --max-tokens "${TOKENS:-4096}" --max-update 50000 --best-checkpoint-metric bound --seed $SEED \
        --save-dir "$save" --no-epoch-checkpoints \
        --log-format simple --log-interval 500 "$@" 2>&1 | tee -a "$save/train.log"
}

# train MODE [fairseq-train arguments...]
train() {
    local mode=$1; shift
    local batching=(--batch-size "$BATCH" --sentence-avg)
    if [[ -n "$TOKENS" ]]; then
        batching=(--max-tokens "$TOKENS")
    fi
    mkdir -p "$SAVE_ROOT/$mode"
    fairseq-train "$DATA" --user-dir "$PLUGIN" --task varattn_translation \
        --arch varattn_lstm_iwslt_de_en --criterion varattn_elbo --attention-mode "$mode" \
        --exclude-source-eos --optimizer adam --adam-betas '(0.9, 0.999)' --adam-eps 1e-8 --lr $LR --clip-norm $CLIP_NORM \
        --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5 --lr-patience 0 \
        --best-checkpoint-metric bound --max-epoch $MAX_EPOCH --seed $SEED "${batching[@]}" \
        --save-dir "$SAVE_ROOT/$mode" --no-epoch-checkpoints \
        --log-format simple --log-interval 500 "$@" 2>&1 | tee -a "$SAVE_ROOT/$mode/train.log"
}
