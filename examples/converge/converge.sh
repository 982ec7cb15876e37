#!/usr/bin/env bash
# A converged, fair comparison of the attention modes: translation quality at equal maximum
# updates with early stopping, and the quality of each model's alignments.
#
#   bash examples/converge/converge.sh              # the virtualenv's bin on PATH
#   MODES="soft var-enum" SEEDS=1 bash examples/converge/converge.sh
#   CORPORA=ding SYN_TASKS="" MODES="transformer-soft transformer-var-enum" bash examples/converge/converge.sh
#   DATA_FROM=work/demo bash examples/converge/converge.sh     # reuse the demo's Ding data
#   TINY=1 bash examples/converge/converge.sh       # the whole pipeline on a few hundred pairs
#   bash examples/converge/converge.sh run CORPUS MODE SEED    # (re)do one run only
#   bash examples/converge/converge.sh prepare        # the data of CORPORA and SYN_TASKS only
#   ARCHIVE=docs/converge-runs bash examples/converge/converge.sh   # keep the results (below)
#   ARCHIVE=docs/converge-runs bash examples/converge/converge.sh archive   # copy what ROOT has now
#   bash examples/converge/converge.sh pause          # SIGSTOP the comparison running in $ROOT
#   bash examples/converge/converge.sh resume         # and let it go on; the report's wall
#                                                     # times leave the pause out
#   python examples/converge/report.py work/converge --corpora ding libreoffice syn-null \
#       --modes soft var-enum --seeds 1 2      # the report so far, while runs are going
#
# Corpora (German -> English):
#   ding         example sentences of the Ding dictionary (varattn-prepare-ding, as in the demo;
#                DING_FILE=path uses a dictionary file you already have)
#   libreoffice  LibreOffice's German UI catalogues, Debian package libreoffice-l10n-de
#                (varattn-prepare-libreoffice; LIBREOFFICE_MO_DIR=folder uses .mo files you have)
#   syn-TASK     synthetic tasks with known word alignments, TASK in SYN_TASKS (monotone, local
#                reordering, fertility, null words; var_attn_plugin/data/synthetic.py): only
#                their alignments are scored
#
# A MODES entry is an attention mode of the paper's LSTM (soft, var-enum, ...) or transformer-MODE,
# the same mode of the Transformer (--arch varattn_transformer, 2 layers each side; its runs live
# next to the LSTM's, $ROOT/CORPUS/transformer-MODE-seedS, and report.py puts them in the same
# tables). Every entry of MODES and seed of SEEDS trains on every corpus with the same flags and the same
# maximum number of updates (MAX_UPDATES), validating every epoch: the learning rate is halved
# whenever the validation bound does not improve (the negative ELBO for the variational modes,
# the exact objective otherwise; metric `bound`, which the criterion logs for every mode) and
# training stops after PATIENCE validations without improvement. PARALLEL runs go at a time,
# OMP_NUM_THREADS=1 each. Run CORPUS/MODE-seedS lives in $ROOT/CORPUS/MODE-seedS/.
#
# Then, on checkpoint_best.pt: fairseq-validate on the test set (exact perplexity, ELBO-bound
# perplexity, KL, prior and posterior entropy), varattn-diagnose (perplexity against another
# sentence's source, KL(exact posterior || prior): is the alignment used?), beam search with the paper's settings (beam 10,
# --gnmt-lenpen 1, --eos-penalty 3) with exact and with K-max (K=5) marginalisation,
# detokenised sacreBLEU on the raw test text; word alignments of the test set from the prior
# (the attention), the inference network's posterior q and the exact posterior
# (varattn-align --words), scored with varattn-aer. No public gold-aligned German-English
# bitext installs from PyPI or Debian, so on the real corpora the reference is eflomal
# (PyPI, installed into this environment by this script; IBM1+HMM+fertility, trained on the
# train and test text, grow-diag-final-and) and the score is agreement with it; on the
# synthetic tasks the gold links are known, and eflomal and the diagonal are reference rows.
# examples/converge/report.py writes $ROOT/results.md and the learning curves ($CURVES).
#
# Resuming: every step of every run is marked done ($RUN/.done/STEP) only after it finished;
# run the same command again and finished steps are skipped, an interrupted training resumes
# from its checkpoint_last.pt (fairseq's default), an interrupted evaluation is redone.
# Raising MAX_UPDATES (SYN_MAX_UPDATES) and running the same command again continues every run
# that had reached the former maximum (not those that stopped early) from its last checkpoint,
# and redoes its evaluation: a comparison at equal updates can be taken further later.
# Training logs (fairseq's JSON lines, appended per attempt) stay in $RUN/train.log; the
# report reads learning curves and wall time from them. A resumed run goes on counting
# PATIENCE where its checkpoint left it (the plugin saves the early-stopping state).
#
# Keeping the results: $ROOT holds checkpoints and data (gigabytes) and is easily lost with the
# machine. With ARCHIVE=folder, every run that finishes and every corpus prepared copies the
# small files the report reads (train.log, the step markers, validate.log, diagnose.json, the
# BLEU and AER scores; a few hundred kilobytes per run, no checkpoints) to ARCHIVE/CORPUS/...;
# commit that folder and `python examples/converge/report.py ARCHIVE ...` gives the same tables
# and curves as on $ROOT. `converge.sh archive` copies what $ROOT has now, finished or not.
# A run that ARCHIVE holds as finished (marker .done/finished, or transcribed.json) and that $ROOT
# has not started is not trained again, so that in a new clone the same command trains only
# the runs the archive lacks; with ARCHIVE set the report is of ARCHIVE. An archived run that
# reached a lower maximum than today's, not by early stopping, has no checkpoint to continue
# from: it is trained again from the beginning in $ROOT (the same training as continuing it but for
# the validation a continued run made at the former maximum, which the plateau rule counted).
#
# Expected figures: measured: see README.
set -euo pipefail

# ---------------------------------------------------------------- settings
TINY=${TINY:-0}
MODES=${MODES:-"soft marginal hard-enum var-enum var-sample"}
SEEDS=${SEEDS:-"1 2"}                 # model seeds; the data split is the same for all (SPLIT_SEED)
PARALLEL=${PARALLEL:-2}               # runs at a time, one thread each
ALIGNER=${ALIGNER:-eflomal}           # reference aligner for the real corpora: eflomal or none
EFLOMAL_SPEC=${EFLOMAL_SPEC:-eflomal==2.0.0}
DATA_FROM=${DATA_FROM:-}              # a demo folder (work/demo) whose data/, spm/, data-bin/ serve as Ding's
ARCHIVE=${ARCHIVE:-}                  # a folder to keep every finished run's logs and scores in (see above)
PYTHON=${PYTHON:-python}
SPLIT_SEED=1
BEAM=10; GNMT_LENPEN=1; EOS_PENALTY=3; KMAX=5   # the paper's decoding
# and once more without the paper's EOS penalty (decoding "noeos": exact, or soft for soft attention):
# on these short sentences it made every model's translations 25-73% longer than the references
if [[ "$TINY" == 1 ]]; then
    ROOT=${ROOT:-work/converge-tiny}
    CORPORA=${CORPORA-"ding libreoffice"}
    SYN_TASKS=${SYN_TASKS-"null"}
    CURVES=${CURVES:-$ROOT/curves.png}
    VALID_SIZE=30; TEST_SIZE=30; MAX_TRAIN=300      # sentence pairs
    VOCAB_SIZE=200                                   # sentencepiece pieces per language (fewer if the text is small)
    EMBED=16; HIDDEN=16; DECODER=24; OUTPUT=24; ATTENTION=16; INFERENCE=16
    MAX_UPDATES=${MAX_UPDATES:-30}; PATIENCE=${PATIENCE:-5}
    SYN_TRAIN=300; SYN_VALID=30; SYN_TEST=30
    SYN_EMBED=16; SYN_HIDDEN=16; SYN_DECODER=24
    SYN_MAX_UPDATES=${SYN_MAX_UPDATES:-30}
    SAVE_EXTRA=(--save-interval-updates 5 --keep-interval-updates 1)   # a checkpoint to resume from early
else
    ROOT=${ROOT:-work/converge}
    CORPORA=${CORPORA-"libreoffice ding"}
    SYN_TASKS=${SYN_TASKS-"monotone local fertility null"}
    CURVES=${CURVES:-docs/converge-curves.png}
    VALID_SIZE=1000; TEST_SIZE=1000; MAX_TRAIN=""
    # Sized so that the whole table fits a few hours of 2 CPU cores: enumeration costs S output
    # layers of O x V per target token, so the vocabulary and the output layer are small.
    # Measured on LibreOffice (one thread, var-enum): 1,535 target tokens/s at these sizes
    # with 1,500 pieces, against 696 at the former 128/192 sizes, output 128 and batches of
    # 1,000 tokens (soft there had not stopped by 5,000 updates).
    VOCAB_SIZE=1000
    EMBED=96; HIDDEN=96; DECODER=128; OUTPUT=64; ATTENTION=96; INFERENCE=96
    MAX_UPDATES=${MAX_UPDATES:-4000}; PATIENCE=${PATIENCE:-3}
    SYN_TRAIN=5000; SYN_VALID=300; SYN_TEST=300
    SYN_EMBED=64; SYN_HIDDEN=64; SYN_DECODER=96
    SYN_MAX_UPDATES=${SYN_MAX_UPDATES:-3000}
    SAVE_EXTRA=()
fi
# Adam at 1e-2 for the LSTM on the real corpora: measured on LibreOffice (soft, seed 1), validation
# perplexity 43 after 6 epochs against 89 at 2e-3, which had not converged by the 3,000-update cap
# (marginal: 83 against 162 after 3 epochs); the plateau halving brings it down as training
# converges. The synthetic tasks converge (stop early) at 2e-3.
LR=1e-2; SYN_LR=2e-3; CLIP_NORM=5; DROPOUT=0.2
TRANSFORMER_WARMUP=${TRANSFORMER_WARMUP:-$([[ $TINY == 1 ]] && echo 10 || echo 500)}  # linear lr warm-up (Transformer)
MAX_TOKENS=${MAX_TOKENS:-$([[ $TINY == 1 ]] && echo 1000 || echo 2000)}   # target tokens per batch, real corpora
SYN_MAX_TOKENS=1000                   # and synthetic tasks
EVAL_MAX_TOKENS=2000
LOG_INTERVAL=50

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
PLUGIN=$(cd "$HERE/../.." && pwd)/var_attn_plugin
export ROOT ARCHIVE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONWARNINGS=ignore

# flags every training run shares; the model's sizes come per architecture and corpus kind
COMMON=(--user-dir "$PLUGIN" --task varattn_translation --criterion varattn_elbo
        --inference-layers 1 --dropout $DROPOUT
        --optimizer adam --clip-norm $CLIP_NORM
        --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5 --lr-patience 0
        --best-checkpoint-metric bound --patience "$PATIENCE" --max-epoch 100000
        --no-epoch-checkpoints --cpu --num-workers 0 --log-format json --log-interval $LOG_INTERVAL
        "${SAVE_EXTRA[@]}")
sizes() {  # sizes EMBED HIDDEN DECODER OUTPUT ATTENTION INFERENCE
    echo --encoder-embed-dim "$1" --decoder-embed-dim "$1" --encoder-hidden-size "$2" \
        --decoder-hidden-size "$3" --decoder-output-dim "$4" --attention-dim "$5" --inference-hidden-size "$6"
}
REAL_SIZES=(--arch varattn_lstm --lr $LR --encoder-layers 1 --decoder-layers 1 --max-tokens $MAX_TOKENS
            $(sizes $EMBED $HIDDEN $DECODER $OUTPUT $ATTENTION $INFERENCE))
SYN_SIZES=(--arch varattn_lstm --lr $SYN_LR --encoder-layers 1 --decoder-layers 1 --max-tokens $SYN_MAX_TOKENS
           $(sizes $SYN_EMBED $SYN_HIDDEN $SYN_DECODER $SYN_DECODER $SYN_HIDDEN $SYN_HIDDEN))
# The Transformer (MODES entries transformer-MODE, docs/METHOD.md §10): 2 layers each side, 4
# heads, feed-forward twice the model size, the same output and inference sizes as the LSTM;
# Adam (0.9, 0.98) at 2e-3 after a linear warm-up, then the same plateau halving and stopping
# (measured on Ding, soft, seed 1: validation perplexity 57 after 5 epochs, against 70 at 1e-3).
TRANSFORMER_LR=2e-3
transformer_sizes() {  # transformer_sizes MODEL OUTPUT INFERENCE
    echo --arch varattn_transformer --encoder-layers 2 --decoder-layers 2 \
        --encoder-attention-heads 4 --decoder-attention-heads 4 \
        --encoder-embed-dim "$1" --decoder-embed-dim "$1" --encoder-ffn-embed-dim $(( 2 * $1 )) \
        --decoder-ffn-embed-dim $(( 2 * $1 )) --decoder-output-dim "$2" --inference-hidden-size "$3" \
        --adam-betas "(0.9,0.98)" --lr $TRANSFORMER_LR --warmup-updates "$TRANSFORMER_WARMUP" --warmup-init-lr 1e-7
}
REAL_TRANSFORMER_SIZES=(--max-tokens $MAX_TOKENS $(transformer_sizes $EMBED $OUTPUT $INFERENCE))
SYN_TRANSFORMER_SIZES=(--max-tokens $SYN_MAX_TOKENS $(transformer_sizes $SYN_EMBED $SYN_DECODER $SYN_HIDDEN))
EVAL=(--user-dir "$PLUGIN" --task varattn_translation --max-tokens $EVAL_MAX_TOKENS --cpu --num-workers 0)

step() { printf '\n=== %s\n' "$*"; }
is_done() { [[ -f $1/.done/$2 ]]; }                       # is_done DIR STEP
mark_done() { mkdir -p "$1/.done"; date '+%F %T' > "$1/.done/$2"; }
fail() { echo "FAILED: $1 (log: $2)"; tail -n 25 "$2"; return 1; }
synthetic() { [[ $1 == syn-* ]]; }
# a MODES entry is an attention mode (the LSTM) or transformer-MODE (the Transformer)
attention_mode() { echo "${1#transformer-}"; }
transformer() { [[ $1 == transformer-* ]]; }
latent() { [[ $(attention_mode "$1") != soft ]]; }
trained_updates() {  # trained_updates RUN: the last number of updates RUN/train.log reports (0 if none)
    local updates
    updates=$({ grep -o '"\(train_\|valid_\)\?num_updates": "[0-9]*' "$1/train.log" 2>/dev/null || true; } \
        | tail -n 1 | sed 's/.*"//')
    echo "${updates:-0}"
}
early_stopped() { grep -q "early stop" "$1/train.log" 2>/dev/null; }
archived_finished() {  # archived_finished KEPT MAX_UPDATES: is the archived run KEPT finished at this maximum?
    local kept=$1 updates
    if [[ -f $kept/train.log && -f $kept/.done/finished ]]; then
        early_stopped "$kept" || (( $(trained_updates "$kept") >= $2 ))
    elif [[ -f $kept/transcribed.json ]]; then
        updates=$($PYTHON -c 'import json, sys; r = json.load(open(sys.argv[1])); print(1 if r.get("early_stop") else r.get("updates") or 0)' \
            "$kept/transcribed.json")
        [[ $updates == 1 ]] || (( updates >= $2 ))
    else
        return 1
    fi
}
variational() { [[ $(attention_mode "$1") == var-* ]]; }
distributions() {  # the alignment distributions a mode has
    if variational "$1"; then echo prior posterior exact-posterior
    elif latent "$1"; then echo prior exact-posterior
    else echo prior; fi
}

# ---------------------------------------------------------------- data of one corpus
prepare_corpus() {  # prepare_corpus CORPUS: data/ (raw text), spm/, data-bin/, ref/ (reference links)
    local corpus=$1 dir=$ROOT/$1
    mkdir -p "$dir"
    step "$corpus: data -> $dir"
    if [[ $corpus == ding && -n "$DATA_FROM" ]]; then
        for part in data spm data-bin; do
            [[ -e $dir/$part ]] || ln -s "$(cd "$DATA_FROM" && pwd)/$part" "$dir/$part"
        done
        [[ -f $dir/data-bin/test.de-en.en.bin ]] || { echo "DATA_FROM=$DATA_FROM has no data-bin/"; return 1; }
        mark_done "$dir" data; mark_done "$dir" binarise
    fi
    if is_done "$dir" data; then
        echo "(done already: $dir/data)"
    else
        rm -rf "$dir/data"
        local args=(--output-dir "$dir/data" --valid-size $VALID_SIZE --test-size $TEST_SIZE --seed $SPLIT_SEED)
        if [[ -n "$MAX_TRAIN" ]]; then args+=(--max-train "$MAX_TRAIN"); fi
        case $corpus in
            ding)
                if [[ -n "${DING_FILE:-}" ]]; then args+=(--ding-file "$DING_FILE"); fi
                varattn-prepare-ding "${args[@]}" ;;
            libreoffice)
                if [[ -n "${LIBREOFFICE_MO_DIR:-}" ]]; then args+=(--mo-dir "$LIBREOFFICE_MO_DIR"); fi
                varattn-prepare-libreoffice "${args[@]}" ;;
            syn-*) $PYTHON -m var_attn_plugin.data.synthetic --task "${corpus#syn-}" --output-dir "$dir/data" \
                       --train-size $SYN_TRAIN --valid-size $SYN_VALID --test-size $SYN_TEST --seed $SPLIT_SEED
                   # the sizes, as the real corpora's preparation writes them (the report's Data line)
                   printf '{"train_pairs": %d, "valid_pairs": %d, "test_pairs": %d}\n' "$(wc -l < "$dir/data/train.de")" \
                       "$(wc -l < "$dir/data/valid.de")" "$(wc -l < "$dir/data/test.de")" > "$dir/data/stats.json" ;;
            *) echo "unknown corpus $corpus (ding, libreoffice or syn-TASK)"; return 1 ;;
        esac
        mark_done "$dir" data
    fi

    if is_done "$dir" binarise; then
        echo "(done already: $dir/data-bin)"
    else
        rm -rf "$dir/spm" "$dir/data-bin"
        local text=$dir/data
        if ! synthetic "$corpus"; then  # synthetic tasks are word-level: no subwords
            text=$dir/spm   # unigram sentencepiece per language, as in the demo
            $PYTHON "$HERE/batch.py" subwords "$dir/data" "$text" $VOCAB_SIZE
        fi
        fairseq-preprocess --source-lang de --target-lang en --trainpref "$text/train" --validpref "$text/valid" \
            --testpref "$text/test" --destdir "$dir/data-bin" --workers 1 > "$dir/preprocess.log" 2>&1 \
            || fail "fairseq-preprocess $corpus" "$dir/preprocess.log"
        mark_done "$dir" binarise
    fi

    # reference links of the test set: gold (synthetic), eflomal, the diagonal
    local ref=$dir/ref
    mkdir -p "$ref"
    if ! is_done "$dir" reference; then
        rm -f "$ref"/*.aer.json "$ref/eflomal-forward.align"
        if synthetic "$corpus"; then cp "$dir/data/test.align" "$ref/gold.align"; fi
        $PYTHON "$HERE/links.py" diagonal "$dir/data/test.de" "$dir/data/test.en" > "$ref/diagonal.align"
        cat "$dir/data/test.de" "$dir/data/test.en" | sha256sum | cut -d' ' -f1 > "$ref/test.sha256"
        local kept=${ARCHIVE:+$ARCHIVE/$corpus/ref}
        if [[ $ALIGNER == eflomal ]]; then
            # on a real corpus also the forward direction alone: a model's argmax links have that form
            local forward=()
            if ! synthetic "$corpus"; then forward=(--forward-output "$ref/eflomal-forward.align"); fi
            $PYTHON "$HERE/links.py" eflomal --train-src "$dir/data/train.de" --train-tgt "$dir/data/train.en" \
                "${forward[@]}" "$dir/data/test.de" "$dir/data/test.en" > "$ref/eflomal.align.tmp"
            mv "$ref/eflomal.align.tmp" "$ref/eflomal.align"
            if ! synthetic "$corpus"; then
                if [[ -n $kept && -f $kept/gold.align ]] && cmp -s "$kept/test.sha256" "$ref/test.sha256"; then
                    # eflomal samples: its links differ from one alignment to the next, so AER against a new
                    # sample would not compare with the archived runs'; the archive's links of the same test
                    # set stay the reference, and the new sample is scored against them (a reference row)
                    echo "(eflomal's links of this test set from $kept/gold.align)"
                    cp "$kept/gold.align" "$ref/gold.align"
                else
                    cp "$ref/eflomal.align" "$ref/gold.align"
                fi
            fi
        fi
        # reference rows (varattn-aer) against the gold or eflomal's links: the diagonal, eflomal's forward
        # direction, eflomal (synthetic tasks; on a real corpus a sample other than the reference's)
        local scored=("$ref/diagonal.align")
        if [[ -f $ref/eflomal-forward.align ]]; then scored+=("$ref/eflomal-forward.align"); fi
        if [[ -f $ref/eflomal.align ]] && ! cmp -s "$ref/eflomal.align" "$ref/gold.align"; then
            scored+=("$ref/eflomal.align")
        fi
        if [[ -f $ref/gold.align ]]; then
            $PYTHON "$HERE/batch.py" score "$ref/gold.align" "${scored[@]}"
            scored+=("$ref/gold.align")
        fi
        # where the reference links go: the share on the first and the last source word (batch.py boundaries)
        $PYTHON "$HERE/batch.py" boundaries "$dir/data/test.de" "${scored[@]}"
        mark_done "$dir" reference
    fi
    cat "$dir/data/stats.json" 2>/dev/null || wc -l "$dir/data/train.de"
    archive "$corpus" --corpus-only
}

archive() {  # archive CORPUS [RUN ... | --corpus-only]: copy the small files report.py reads to $ARCHIVE
    if [[ -n $ARCHIVE ]]; then $PYTHON "$HERE/batch.py" archive "$ROOT" "$ARCHIVE" "$@"; fi
}

# ---------------------------------------------------------------- one run
run_one() {  # run_one CORPUS MODE SEED: train, evaluate, align; output in $ROOT/CORPUS/MODE-seedSEED
    local corpus=$1 mode=$2 seed=$3
    local dir=$ROOT/$corpus run=$ROOT/$corpus/$mode-seed$seed
    local bin=$dir/data-bin ckpt=$run/checkpoints/checkpoint_best.pt
    mkdir -p "$run/eval" "$run/align"
    local model_sizes=("${REAL_SIZES[@]}") max_updates=$MAX_UPDATES
    if synthetic "$corpus"; then model_sizes=("${SYN_SIZES[@]}"); max_updates=$SYN_MAX_UPDATES; fi
    if transformer "$mode"; then
        model_sizes=("${REAL_TRANSFORMER_SIZES[@]}")
        if synthetic "$corpus"; then model_sizes=("${SYN_TRANSFORMER_SIZES[@]}"); fi
    fi

    # a run the archive holds as finished is not trained again (unless $ROOT has it too: $ROOT's goes on)
    local kept=${ARCHIVE:+$ARCHIVE/$corpus/$mode-seed$seed}
    if [[ -n $kept && ! -f $run/train.log ]]; then
        if archived_finished "$kept" "$max_updates"; then
            echo "finished: $corpus $mode seed $seed (kept in $kept; remove that folder to train it again)"
            return 0
        elif [[ -f $kept/train.log || -f $kept/transcribed.json ]]; then
            echo "($kept stopped short of $max_updates updates, and the archive keeps no checkpoint: training it from the beginning)"
        fi
    fi

    # a training that ended at a lower maximum than today's, not by early stopping, goes on from
    # its last checkpoint; its evaluation and alignments are redone on the new best checkpoint
    local trained
    trained=$(trained_updates "$run")
    if is_done "$run" train && ! early_stopped "$run" && (( trained < max_updates )); then
        echo "(continuing $run: it reached the former maximum, $trained updates, the maximum is now $max_updates)"
        rm -f "$run/.done/"*
    fi

    if is_done "$run" train; then
        echo "(done already: $run training)"
    else
        # one marker line per attempt: report.py adds up the attempts' wall time
        echo "=== attempt $(date '+%F %T')" >> "$run/train.log"
        if [[ -f $run/checkpoints/checkpoint_last.pt ]]; then   # resuming: from a checkpoint that loads
            $PYTHON "$HERE/batch.py" resume-point "$run/checkpoints" >> "$run/train.log" 2>&1
        fi
        fairseq-train "$bin" "${COMMON[@]}" "${model_sizes[@]}" --attention-mode "$(attention_mode "$mode")" --seed "$seed" \
            --max-update "$max_updates" --save-dir "$run/checkpoints" >> "$run/train.log" 2>&1 \
            || fail "training $corpus $mode seed $seed" "$run/train.log"
        mark_done "$run" train
    fi

    if ! synthetic "$corpus"; then
        if ! is_done "$run" validate; then
            fairseq-validate "$bin" "${EVAL[@]}" --path "$ckpt" --valid-subset test > "$run/eval/validate.log" 2>&1 \
                || fail "fairseq-validate $run" "$run/eval/validate.log"
            mark_done "$run" validate
        fi
        if ! is_done "$run" diagnose; then   # does the model use its alignment, and the source? (varattn-diagnose)
            varattn-diagnose "$bin" --path "$ckpt" --gen-subset test --max-tokens $EVAL_MAX_TOKENS --cpu --json \
                > "$run/eval/diagnose.json.tmp" 2> "$run/eval/diagnose.log" \
                || fail "varattn-diagnose $run" "$run/eval/diagnose.log"
            mv "$run/eval/diagnose.json.tmp" "$run/eval/diagnose.json"
            mark_done "$run" diagnose
        fi
        local decodings="exact noeos"
        if latent "$mode"; then decodings="exact kmax noeos"; fi
        for decoding in $decodings; do
            if is_done "$run" "bleu-$decoding"; then continue; fi
            local latent_decoding=$decoding eos_penalty=$EOS_PENALTY
            if [[ $decoding == noeos ]]; then latent_decoding=exact; eos_penalty=0; fi
            if ! latent "$mode"; then latent_decoding=auto; fi   # soft attention decodes softly
            fairseq-generate "$bin" "${EVAL[@]}" --path "$ckpt" --gen-subset test --beam $BEAM \
                --gnmt-lenpen $GNMT_LENPEN --eos-penalty $eos_penalty --latent-decoding $latent_decoding \
                --kmax $KMAX --remove-bpe sentencepiece > "$run/eval/generate-$decoding.out" \
                2> "$run/eval/generate-$decoding.log" || fail "fairseq-generate $run" "$run/eval/generate-$decoding.log"
            grep '^H-' "$run/eval/generate-$decoding.out" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 \
                > "$run/eval/hyp-$decoding.txt"
            sacrebleu "$dir/data/test.en" -i "$run/eval/hyp-$decoding.txt" -m bleu -w 2 -f json \
                > "$run/eval/bleu-$decoding.json"
            mark_done "$run" "bleu-$decoding"
        done
    fi

    local source=(--gen-subset test)
    if ! synthetic "$corpus"; then
        source=(--source-file "$dir/data/test.de" --target-file "$dir/data/test.en"
                --spm "$dir/spm/spm.de.model" --target-spm "$dir/spm/spm.en.model")
    fi
    # varattn-align --words and varattn-aer for every distribution, in one process (batch.py)
    local todo=() scored=()
    for distribution in $(distributions "$mode"); do
        if ! is_done "$run" "align-$distribution"; then todo+=("$distribution"); fi
    done
    if (( ${#todo[@]} )); then
        $PYTHON "$HERE/batch.py" align "$run/align" "${todo[@]}" -- "$bin" --path "$ckpt" "${source[@]}" --words \
            --cpu --max-tokens $EVAL_MAX_TOKENS > "$run/align/align.log" 2>&1 || fail "varattn-align $run" "$run/align/align.log"
        for distribution in "${todo[@]}"; do mark_done "$run" "align-$distribution"; done
    fi
    if [[ -f $dir/ref/gold.align ]]; then
        todo=()
        for distribution in $(distributions "$mode"); do
            if ! is_done "$run" "aer-$distribution"; then todo+=("$distribution"); scored+=("$run/align/$distribution.align"); fi
        done
        if (( ${#todo[@]} )); then
            $PYTHON "$HERE/batch.py" score "$dir/ref/gold.align" "${scored[@]}"
            for distribution in "${todo[@]}"; do mark_done "$run" "aer-$distribution"; done
        fi
    fi
    if ! is_done "$run" boundaries; then   # how many links end on the sentence's first and last word
        scored=()
        for distribution in $(distributions "$mode"); do scored+=("$run/align/$distribution.align"); done
        $PYTHON "$HERE/batch.py" boundaries "$dir/data/test.de" "${scored[@]}"
        mark_done "$run" boundaries
    fi
    is_done "$run" finished || mark_done "$run" finished   # once: a pass that redoes nothing leaves it
    archive "$corpus" "$mode-seed$seed"
    echo "finished: $corpus $mode seed $seed"
}

# ---------------------------------------------------------------- pause / resume
process_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true; }   # R, S, T, Z, ...
pause_or_resume() {  # pause_or_resume pause|resume: every process of this comparison (ROOT)
    local signal=STOP marker=paused
    if [[ $1 == resume ]]; then signal=CONT; marker=resumed; fi
    local root proc pid value cwd state save_dir now found=0 trainings=0
    root=$(realpath -m "$ROOT")
    local pids=()
    for proc in /proc/[0-9]*; do   # the recipe exports ROOT: its shells, xargs, fairseq and python steps have it
        pid=${proc#/proc/}
        [[ $pid == "$$" ]] && continue
        value=$({ tr '\0' '\n' < "$proc/environ"; } 2>/dev/null | sed -n 's/^ROOT=//p' | head -n 1) || continue
        [[ -n $value ]] || continue
        if [[ $value != /* ]]; then cwd=$(readlink "$proc/cwd" 2>/dev/null) || continue; value=$cwd/$value; fi
        if [[ $(realpath -m "$value") == "$root" ]]; then pids+=("$pid"); fi
    done
    now=$(date '+%F %T')
    for pid in "${pids[@]}"; do
        state=$(process_state "$pid")
        case $state in Z|X|"") continue ;; esac
        if [[ $signal == STOP && $state == T ]] || [[ $signal == CONT && $state != T ]]; then continue; fi
        # a training gets the marker in its train.log (next to --save-dir), so report.py leaves the pause out
        save_dir=$({ tr '\0' '\n' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -A 1 -x -- '--save-dir' | tail -n +2 | head -n 1 || true)
        if [[ -n $save_dir ]] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q fairseq-train; then
            [[ $save_dir == /* ]] || save_dir=$(readlink "/proc/$pid/cwd")/$save_dir
            echo "=== $marker $now" >> "$(dirname "$save_dir")/train.log"
            trainings=$((trainings + 1))
        fi
        if kill -s "$signal" "$pid" 2>/dev/null; then found=$((found + 1)); fi
    done
    echo "$marker $found processes of the comparison in $ROOT ($trainings trainings)"
}

install_aligner() {
    mkdir -p "$ROOT"
    if [[ $ALIGNER == eflomal ]]; then
        step "0. eflomal (reference alignments)"
        if ! $PYTHON -c "import eflomal" 2>/dev/null; then
            $PYTHON -m pip install --quiet --no-build-isolation "$EFLOMAL_SPEC"
        fi
        $PYTHON -c "import importlib.metadata as m; print('eflomal', m.version('eflomal'))"
    elif [[ $ALIGNER != none ]]; then
        echo "ALIGNER must be eflomal or none, not $ALIGNER"; exit 2
    fi
}

corpora=()   # the synthetic tasks first: they are the cheapest and have gold links
for task in $SYN_TASKS; do corpora+=("syn-$task"); done
corpora+=($CORPORA)

case "${1:-}" in
    run) shift; run_one "$@"; exit ;;
    pause|resume) pause_or_resume "$1"; exit ;;
    prepare) install_aligner; for corpus in "${corpora[@]}"; do prepare_corpus "$corpus"; done; exit ;;
    archive)
        [[ -n $ARCHIVE ]] || { echo "archive: set ARCHIVE to the folder to copy the results of $ROOT to"; exit 2; }
        for corpus in "${corpora[@]}"; do
            if [[ -d $ROOT/$corpus ]]; then archive "$corpus"; fi
        done
        exit ;;
    "") ;;
    *) echo "unknown command $1: run CORPUS MODE SEED, prepare, pause, resume or archive (none: the whole comparison)"
       exit 2 ;;
esac

# ---------------------------------------------------------------- 0. the reference aligner
install_aligner

# ---------------------------------------------------------------- 1. data
for corpus in "${corpora[@]}"; do prepare_corpus "$corpus"; done

# ---------------------------------------------------------------- 2.-4. runs
step "2.-4. train, evaluate and align: ${#corpora[@]} corpora x modes ($MODES) x seeds ($SEEDS), $PARALLEL at a time"
status=0
for corpus in "${corpora[@]}"; do   # seed by seed: every mode of a corpus has one seed early
    for seed in $SEEDS; do
        for mode in $MODES; do
            mkdir -p "$ROOT/$corpus/$mode-seed$seed"
            echo "$corpus $mode $seed"
        done
    done
done | xargs -P "$PARALLEL" -L 1 sh -c 'bash "$0" run "$@" > "$ROOT/$1/$2-seed$3/run.log" 2>&1 \
    && tail -n 1 "$ROOT/$1/$2-seed$3/run.log" || { echo "FAILED: $1 $2 seed $3, see $ROOT/$1/$2-seed$3/run.log"; exit 1; }' "$SELF" \
    || status=$?

# ---------------------------------------------------------------- 5. report
reported=${ARCHIVE:-$ROOT}   # the archive holds every finished run, those of earlier machines too
step "5. report of $reported -> $ROOT/results.md, $CURVES"
report_corpora=($CORPORA)   # the report: the real corpora first, then the synthetic tasks
for task in $SYN_TASKS; do report_corpora+=("syn-$task"); done
$PYTHON "$HERE/report.py" "$reported" --corpora "${report_corpora[@]}" --modes $MODES --seeds $SEEDS --curves "$CURVES" \
    --output "$ROOT/results.md"
cat "$ROOT/results.md"
exit $status
