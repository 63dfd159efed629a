#!/usr/bin/env bash
# IAB content labels from AudioSet, end to end: pack -> zero-shot baseline -> fine-tune -> plot.
#
#   AUDIO_DIR=/data/audioset/audio SEGMENTS_CSV="balanced_train_segments.csv eval_segments.csv" \
#   WORKSPACE=/data/ws_iab PRETRAINED_CHECKPOINT_PATH=Cnn14_mAP=0.431.pth IAB_LABELS=5 \
#   HOLDOUT_FOLD=1 scripts/iab.sh
#
# The same NAME=value pairs may be given as arguments instead: scripts/iab.sh WORKSPACE=... ...
#
# Required
#   AUDIO_DIR      folder of the downloaded clips (named by FILENAME_PATTERN)
#   SEGMENTS_CSV   one or more AudioSet segment CSVs, separated by spaces
#   WORKSPACE      where features, checkpoints, statistics, results and figures go
# Optional
#   PRETRAINED_CHECKPOINT_PATH  official PANNs Cnn14 checkpoint: the zero-shot baseline runs and
#                  fine-tuning starts from it (without it: no baseline, training from scratch)
#   IAB_LABELS     5 or 20 (default 5)             HOLDOUT_FOLD  1..10 or all (default 1)
#   CUDA           1: use the GPU (default 1; falls back to the CPU when there is none)
#   FILENAME_PATTERN  default Y{ytid}.wav; e.g. {ytid}_{start}.wav (see utils/iab_sources.py)
#   EPOCHS         default 100: passes over the training folds (validated after each one, the
#                  best checkpoint kept); STOP_ITERATION overrides the iteration count
#   BATCH_SIZE     default 32                      NUM_WORKERS  packing processes
#   REPACK         1: pack again even when the HDF5 already exists
set -euo pipefail

VARIABLES=" AUDIO_DIR SEGMENTS_CSV WORKSPACE PRETRAINED_CHECKPOINT_PATH IAB_LABELS HOLDOUT_FOLD"
VARIABLES+=" CUDA FILENAME_PATTERN EPOCHS STOP_ITERATION BATCH_SIZE NUM_WORKERS REPACK "

for assignment in "$@"; do
    name="${assignment%%=*}"
    if [[ "$assignment" != *=* || "$VARIABLES" != *" $name "* ]]; then
        echo "error: unknown argument '$assignment'; pass NAME=value, NAME one of:$VARIABLES" >&2
        exit 2
    fi
    printf -v "$name" '%s' "${assignment#*=}"
done

missing=""
for name in AUDIO_DIR SEGMENTS_CSV WORKSPACE; do
    [ -n "${!name:-}" ] || missing="$missing $name"
done
if [ -n "$missing" ]; then
    echo "error: set$missing (environment variables or NAME=value arguments); see the top of $0" >&2
    exit 2
fi

IAB_LABELS="${IAB_LABELS:-5}"
HOLDOUT_FOLD="${HOLDOUT_FOLD:-1}"
CUDA="${CUDA:-1}"
DEFAULT_PATTERN='Y{ytid}.wav'
FILENAME_PATTERN="${FILENAME_PATTERN:-$DEFAULT_PATTERN}"
EPOCHS="${EPOCHS:-100}"
BATCH_SIZE="${BATCH_SIZE:-32}"
PRETRAINED_CHECKPOINT_PATH="${PRETRAINED_CHECKPOINT_PATH:-}"

case "$IAB_LABELS" in 5|20) ;; *)
    echo "error: IAB_LABELS=$IAB_LABELS: use 5 or 20" >&2; exit 2 ;;
esac
case "$HOLDOUT_FOLD" in 1|2|3|4|5|6|7|8|9|10|all) ;; *)
    echo "error: HOLDOUT_FOLD=$HOLDOUT_FOLD: use 1..10 or all" >&2; exit 2 ;;
esac
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ] && [ ! -f "$PRETRAINED_CHECKPOINT_PATH" ]; then
    echo "error: PRETRAINED_CHECKPOINT_PATH=$PRETRAINED_CHECKPOINT_PATH: file not found" >&2
    exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"  # sets PYTHON and REPO_DIR

read -r -a SEGMENTS_CSVS <<< "$SEGMENTS_CSV"
FEATURES="$WORKSPACE/features/iab${IAB_LABELS}_waveform.h5"
CUDA_FLAG=""
if [ "$CUDA" = 1 ]; then CUDA_FLAG="--cuda"; fi
PRETRAINED_FLAG=""
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ]; then
    PRETRAINED_FLAG="--pretrained_checkpoint_path=$PRETRAINED_CHECKPOINT_PATH"
fi

echo "== 1/4 pack AudioSet segments -> $FEATURES ($IAB_LABELS IAB labels)"
if [ -f "$FEATURES" ] && [ "${REPACK:-0}" != 1 ]; then
    echo "   $FEATURES exists; reusing it (REPACK=1 packs again)"
else
    "$PYTHON" "$REPO_DIR/utils/features.py" pack_audioset_to_hdf5 \
        --segments_csv "${SEGMENTS_CSVS[@]}" --audio_dir="$AUDIO_DIR" --workspace="$WORKSPACE" \
        --iab_labels="$IAB_LABELS" --filename_pattern="$FILENAME_PATTERN" \
        --output="$FEATURES" ${NUM_WORKERS:+--num_workers="$NUM_WORKERS"}
fi

echo "== 2/4 zero-shot baseline (pretrained Cnn14, AudioSet classes mapped to IAB labels)"
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ]; then
    "$PYTHON" "$REPO_DIR/pytorch/main.py" zero_shot --workspace="$WORKSPACE" \
        --features="$FEATURES" "$PRETRAINED_FLAG" --holdout_fold="$HOLDOUT_FOLD" \
        --iab_labels="$IAB_LABELS" --batch_size="$BATCH_SIZE" ${CUDA_FLAG:+"$CUDA_FLAG"}
else
    echo "   skipped: no PRETRAINED_CHECKPOINT_PATH"
fi

# One epoch = one pass over the training folds; mixup draws 2 x BATCH_SIZE clips per iteration.
EPOCH_INFO=$("$PYTHON" - "$FEATURES" "$HOLDOUT_FOLD" "$EPOCHS" "$BATCH_SIZE" <<'EOF'
import math, sys
import h5py
path, holdout_fold, epochs, batch_size = sys.argv[1:]
with h5py.File(path, "r") as hf:
    folds = hf["fold"][:]
train_clips = len(folds) * 0.9 if holdout_fold == "all" else (folds != int(holdout_fold)).sum()
epoch = max(1, math.ceil(train_clips / (2 * int(batch_size))))
print(epoch, epoch * int(epochs))
EOF
)
read -r EPOCH_ITERATIONS STOP_DEFAULT <<< "$EPOCH_INFO"
STOP_ITERATION="${STOP_ITERATION:-$STOP_DEFAULT}"

echo "== 3/4 fine-tune Transfer_Cnn14, holdout fold $HOLDOUT_FOLD, $STOP_ITERATION iterations" \
     "(validated every $EPOCH_ITERATIONS)"
"$PYTHON" "$REPO_DIR/pytorch/main.py" train --workspace="$WORKSPACE" --features="$FEATURES" \
    --holdout_fold="$HOLDOUT_FOLD" --model_type=Transfer_Cnn14 \
    ${PRETRAINED_FLAG:+"$PRETRAINED_FLAG"} --loss_type=clip_bce --augmentation=mixup \
    --learning_rate=1e-4 --batch_size="$BATCH_SIZE" \
    --stop_iteration="$STOP_ITERATION" --eval_every="$EPOCH_ITERATIONS" \
    --save_every="$STOP_ITERATION" --keep_best ${CUDA_FLAG:+"$CUDA_FLAG"}

echo "== 4/4 plot"
"$PYTHON" "$REPO_DIR/utils/plot_statistics.py" --workspace="$WORKSPACE"
