#!/usr/bin/env bash
# IWSLT14 German->English, prepared as in the paper (docs/METHOD.md §7) and binarised for fairseq.
#
#   bash examples/iwslt14/prepare.sh          # downloads de-en.tgz (about 19 MB)
#   IWSLT14_TGZ=/path/to/de-en.tgz bash examples/iwslt14/prepare.sh
#
# fairseq's examples/translation/prepare-iwslt14.sh, in Python (varattn-prepare-iwslt14):
# Moses tokenisation (sacremoses), clean-corpus-n 1-175 words / ratio 1.5, lowercasing,
# valid = every 23rd training line, test = dev2010 + dev2012 + tst2010-2012, one joint
# sentencepiece BPE model of 14k pieces, train/valid pairs longer than 125 pieces dropped.
# Needs `pip install sacremoses`. Expected: about 160k train, 7.3k valid, 6,750 test pairs.
set -euo pipefail

URL=${IWSLT14_URL:-http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz}
IWSLT14_TGZ=${IWSLT14_TGZ:-}      # a local copy of de-en.tgz: no download
WORK=${IWSLT14_WORK:-work/iwslt14}
VOCAB_SIZE=${IWSLT14_VOCAB_SIZE:-14000}   # joint BPE pieces (fewer only if the text cannot fill them)
MAX_PIECES=125
WORKERS=${WORKERS:-$(nproc 2>/dev/null || echo 4)}

ORIG=$WORK/orig          # the unpacked archive: $ORIG/de-en/train.tags.de-en.de, ...
PREP=$WORK/prep          # pieces, spm.model, tok/ and raw/ references
BIN=$WORK/data-bin       # fairseq-preprocess output: the DATA of the training scripts

step() { printf '\n=== %s\n' "$*"; }

step "1. IWSLT14 de-en.tgz -> $ORIG"
if [[ -f $ORIG/de-en/train.tags.de-en.de ]]; then
    echo "(done already)"
else
    mkdir -p "$ORIG"
    if [[ -z "$IWSLT14_TGZ" ]]; then
        IWSLT14_TGZ=$ORIG/de-en.tgz
        python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$URL" "$IWSLT14_TGZ"
    fi
    tar -xzf "$IWSLT14_TGZ" -C "$ORIG"
fi

step "2. tokenise, clean, split, BPE -> $PREP"
if [[ -f $PREP/stats.json ]]; then
    echo "(done already)"
else
    varattn-prepare-iwslt14 --orig "$ORIG/de-en" --output-dir "$PREP" --vocab-size $VOCAB_SIZE \
        --max-pieces $MAX_PIECES --workers "$WORKERS" --soft-vocab-limit
fi
cat "$PREP/stats.json"

step "3. fairseq-preprocess (separate source and target dictionaries) -> $BIN"
if [[ -f $BIN/test.de-en.en.bin ]]; then
    echo "(done already)"
else
    fairseq-preprocess --source-lang de --target-lang en --trainpref "$PREP/train" --validpref "$PREP/valid" \
        --testpref "$PREP/test" --destdir "$BIN" --workers "$WORKERS"
fi
wc -l "$BIN"/dict.*.txt
