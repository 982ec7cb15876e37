#!/usr/bin/env bash
# soft vs marginal vs var-enum vs var-sample on the Ding German-English sentences, each
# trained for the same wall-clock budget, then evaluated like the demo (exact perplexity,
# ELBO bound, detokenised sacreBLEU, prior entropy). Writes $ROOT/results.md.
#
#   bash examples/ding/compare.sh                  # the virtualenv's bin on PATH (make demo does that)
#   MINUTES=30 PARALLEL=1 bash examples/ding/compare.sh
#   MODES="soft var-enum" DEMO_TINY=1 bash examples/ding/compare.sh   # a quick check
#
# Each run is examples/demo.sh with DEMO_MODE set; the data, sentencepiece models and
# binarised files of the first run (or of DATA_FROM, e.g. DATA_FROM=work/demo after `make
# demo`) are shared by the others (symbolic links), so every mode sees the same data.
# PARALLEL runs train side by side with OMP_NUM_THREADS=THREADS each; the modes that run
# together share the machine alike, so a budget in minutes stays equal between them.
# The table measured on 2 CPU cores is in README.md (section "Results").
set -euo pipefail

MODES=${MODES:-"soft marginal var-enum var-sample"}
MINUTES=${MINUTES:-12}
PARALLEL=${PARALLEL:-2}
THREADS=${THREADS:-1}
ROOT=${ROOT:-work/ding$([[ "${DEMO_TINY:-0}" == 1 ]] && echo -tiny)}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEMO=$HERE/../demo.sh
export DEMO_MINUTES=$MINUTES OMP_NUM_THREADS=$THREADS

read -r -a modes <<< "$MODES"
first=${modes[0]}
mkdir -p "$ROOT"

run_mode() {  # run_mode MODE: the demo for one attention mode, output in $ROOT/MODE.log
    DEMO_DIR=$ROOT/$1 DEMO_MODE=$1 bash "$DEMO" > "$ROOT/$1.log" 2>&1 \
        || { echo "--attention-mode $1 failed:"; tail -n 30 "$ROOT/$1.log"; return 1; }
    echo "$1: $(grep -h 'training took' "$ROOT/$1/checkpoints/train.done")"
}

share_data() {  # share_data MODE SOURCE_DIR: link the prepared data of SOURCE_DIR
    mkdir -p "$ROOT/$1"
    for part in data spm data-bin; do
        [[ -e $ROOT/$1/$part ]] || ln -s "$(cd "$2" && pwd)/$part" "$ROOT/$1/$part"
    done
}

if [[ -n "${DATA_FROM:-}" ]]; then
    rest=("${modes[@]}")
else
    echo "=== $first (prepares the shared data)"
    run_mode "$first"
    DATA_FROM=$ROOT/$first
    rest=("${modes[@]:1}")
fi
pids=()
for mode in "${rest[@]}"; do
    share_data "$mode" "$DATA_FROM"
    echo "=== $mode"
    run_mode "$mode" &
    pids+=($!)
    if (( ${#pids[@]} >= PARALLEL )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

python "$HERE/summarize.py" "$ROOT" "${modes[@]}" | tee "$ROOT/results.md"
