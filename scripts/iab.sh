#!/usr/bin/env bash
# IAB content labels from AudioSet, end to end: pack -> zero-shot baseline -> fine-tune -> plot.
#
#   AUDIO_DIR=/data/audioset/audio SEGMENTS_CSV="balanced_train_segments.csv eval_segments.csv" \
#   WORKSPACE=/data/ws_iab PRETRAINED_CHECKPOINT_PATH=Cnn14_mAP=0.431.pth IAB_LABELS=5 \
#   HOLDOUT_FOLD=1 scripts/iab.sh
#
#   AUDIO_DIR=/data/iab/wavs SEED_CSVS="train.csv validate.csv test.csv" RECIPE=seed \
#   WORKSPACE=/data/ws_seed PRETRAINED_CHECKPOINT_PATH=Cnn14_mAP=0.431.pth scripts/iab.sh
#       The original IAB projects' data (ID, IAB Vector CSVs) in their setting: trained on the
#       train CSV, the checkpoint chosen on the validate CSV, the test CSV scored once at the end.
#
# The same NAME=value pairs may be given as arguments instead: scripts/iab.sh WORKSPACE=... ...
# Arguments starting with -- go to training as they are (--model_type=Transfer_Cnn6,
# --sampler=balanced, --precision=bf16, --run_name=NAME, ...); PACK_FLAGS="--keep_unlabelled ..."
# goes to packing. Running the same command again continues the run where it stopped (a
# finished run is left as it is).
#
# Required
#   AUDIO_DIR      folder of the clips (named by FILENAME_PATTERN; for SEED_CSVS, by their ID)
#   SEGMENTS_CSV   one or more AudioSet segment CSVs, separated by spaces; or
#   SEED_CSVS      the original projects' train, validate and test CSVs, in that order
#   WORKSPACE      where features, checkpoints, statistics, results and figures go
# Optional
#   RECIPE         default: mixup, batch 32, lr 1e-4, validated every epoch, best by mAP;
#                  seed: the original IAB projects' setting: no mixup, lr 1e-4, batch 32,
#                  validated every 5 epochs, best by macro-F1, 100 epochs (5 labels) or 50
#                  (20 labels; the label set is the one the packed vectors have)
#   MAX_CLIPS_PER_LABEL  packing SEGMENTS_CSV keeps at most this many clips per label (e.g.
#                  200 for a seed-like 5-label set; the packing log gives the counts)
#   PRETRAINED_CHECKPOINT_PATH  official PANNs checkpoint: the zero-shot baseline runs and
#                  fine-tuning starts from it (without it: no baseline, training from scratch)
#   IAB_LABELS     5 or 20 (default 5)             HOLDOUT_FOLD  1..10 or all (default 1)
#   CUDA           1: use the GPU (default 1; falls back to the CPU when there is none)
#   FILENAME_PATTERN  default: Y{ytid}.wav or {ytid}_{start:.3f}.wav, whichever exists
#                  (PANNs' and audioset-processing's namings; see utils/iab_sources.py)
#   EPOCHS         passes over the training clips (default: the recipe's);
#                  STOP_ITERATION overrides the iteration count
#   BATCH_SIZE     default: the recipe's           NUM_WORKERS  packing processes
#   REPACK         1: pack again even when the HDF5 already exists
set -euo pipefail

VARIABLES=" AUDIO_DIR SEGMENTS_CSV SEED_CSVS WORKSPACE PRETRAINED_CHECKPOINT_PATH IAB_LABELS"
VARIABLES+=" HOLDOUT_FOLD CUDA FILENAME_PATTERN EPOCHS STOP_ITERATION BATCH_SIZE NUM_WORKERS"
VARIABLES+=" REPACK RECIPE MAX_CLIPS_PER_LABEL PACK_FLAGS "

EXTRA_TRAIN_FLAGS=()
for assignment in "$@"; do
    if [[ "$assignment" == --* ]]; then  # a training flag, passed on as it is
        EXTRA_TRAIN_FLAGS+=("$assignment")
        continue
    fi
    name="${assignment%%=*}"
    if [[ "$assignment" != *=* || "$VARIABLES" != *" $name "* ]]; then
        echo "error: unknown argument '$assignment'; pass NAME=value, NAME one of:$VARIABLES" >&2
        exit 2
    fi
    printf -v "$name" '%s' "${assignment#*=}"
done

missing=""
for name in AUDIO_DIR WORKSPACE; do
    [ -n "${!name:-}" ] || missing="$missing $name"
done
if [ -z "${SEGMENTS_CSV:-}" ] && [ -z "${SEED_CSVS:-}" ]; then
    missing="$missing SEGMENTS_CSV(or SEED_CSVS)"
fi
if [ -n "$missing" ]; then
    echo "error: set$missing (environment variables or NAME=value arguments); see the top of $0" >&2
    exit 2
fi

IAB_LABELS="${IAB_LABELS:-5}"
HOLDOUT_FOLD="${HOLDOUT_FOLD:-1}"
CUDA="${CUDA:-1}"
FILENAME_PATTERN="${FILENAME_PATTERN:-}"
read -r -a PACK_EXTRA <<< "${PACK_FLAGS:-}"
RECIPE="${RECIPE:-default}"
SEED_CSVS="${SEED_CSVS:-}"
PRETRAINED_CHECKPOINT_PATH="${PRETRAINED_CHECKPOINT_PATH:-}"

case "$IAB_LABELS" in 5|20) ;; *)
    echo "error: IAB_LABELS=$IAB_LABELS: use 5 or 20" >&2; exit 2 ;;
esac
case "$HOLDOUT_FOLD" in 1|2|3|4|5|6|7|8|9|10|all) ;; *)
    echo "error: HOLDOUT_FOLD=$HOLDOUT_FOLD: use 1..10 or all" >&2; exit 2 ;;
esac
case "$RECIPE" in
    default) AUGMENTATION=mixup; EVAL_EPOCHS=1; SELECT_BY=mAP; DEFAULT_BATCH=32; DEFAULT_EPOCHS=100 ;;
    # The seeds' DataLoader hard-codes batch 32 for both label sets (their 20-label batch 16
    # only named folders); their epochs: 100 for 5 labels, 50 for 20 (set after packing).
    seed) AUGMENTATION=none; EVAL_EPOCHS=5; SELECT_BY=macro_f1; DEFAULT_BATCH=32 ;;
    *) echo "error: RECIPE=$RECIPE: use default or seed" >&2; exit 2 ;;
esac
BATCH_SIZE="${BATCH_SIZE:-$DEFAULT_BATCH}"
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ] && [ ! -f "$PRETRAINED_CHECKPOINT_PATH" ]; then
    echo "error: PRETRAINED_CHECKPOINT_PATH=$PRETRAINED_CHECKPOINT_PATH: file not found" >&2
    exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"  # sets PYTHON and REPO_DIR
# The training flags are checked now, not after packing and the zero-shot baseline: a bad one
# is the same one-line error (exit 2) that training would give.
if [ ${#EXTRA_TRAIN_FLAGS[@]} -gt 0 ]; then
    (cd "$REPO_DIR" && "$PYTHON" -c 'import sys; from pytorch.main import build_parser
from utils.utilities import run_cli
run_cli(lambda: build_parser().parse_args(["train", "--workspace=."] + sys.argv[1:]))' \
        "${EXTRA_TRAIN_FLAGS[@]}") || exit 2
fi

read -r -a SEGMENTS_CSVS <<< "${SEGMENTS_CSV:-}"
read -r -a SEED_FILES <<< "$SEED_CSVS"
if [ -n "$SEED_CSVS" ]; then
    if [ "${#SEED_FILES[@]}" != 3 ]; then
        echo "error: SEED_CSVS: give the train, validate and test CSVs, in that order" >&2
        exit 2
    fi
    FEATURES="$WORKSPACE/features/iab_seed_waveform.h5"
    HOLDOUT_FOLD=subsets  # train / validate / test as the CSVs say
    SPLIT_FLAGS=(--split=subsets)
else
    FEATURES="$WORKSPACE/features/iab${IAB_LABELS}_waveform.h5"
    SPLIT_FLAGS=(--holdout_fold="$HOLDOUT_FOLD")
fi
CUDA_FLAG=""
if [ "$CUDA" = 1 ]; then CUDA_FLAG="--cuda"; fi
PRETRAINED_FLAG=""
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ]; then
    PRETRAINED_FLAG="--pretrained_checkpoint_path=$PRETRAINED_CHECKPOINT_PATH"
fi

echo "== 1/4 pack -> $FEATURES"
if [ -f "$FEATURES" ] && [ "${REPACK:-0}" != 1 ]; then
    echo "   $FEATURES exists; reusing it (REPACK=1 packs again)"
elif [ -n "$SEED_CSVS" ]; then
    "$PYTHON" "$REPO_DIR/utils/features.py" pack_iab_seed_to_hdf5 \
        --train_csv="${SEED_FILES[0]}" --validate_csv="${SEED_FILES[1]}" \
        --test_csv="${SEED_FILES[2]}" --audio_dir="$AUDIO_DIR" --workspace="$WORKSPACE" \
        --output="$FEATURES" ${NUM_WORKERS:+--num_workers="$NUM_WORKERS"} "${PACK_EXTRA[@]}"
else
    "$PYTHON" "$REPO_DIR/utils/features.py" pack_audioset_to_hdf5 \
        --segments_csv "${SEGMENTS_CSVS[@]}" --audio_dir="$AUDIO_DIR" --workspace="$WORKSPACE" \
        --iab_labels="$IAB_LABELS" ${FILENAME_PATTERN:+--filename_pattern="$FILENAME_PATTERN"} \
        --output="$FEATURES" ${NUM_WORKERS:+--num_workers="$NUM_WORKERS"} \
        ${MAX_CLIPS_PER_LABEL:+--max_clips_per_label="$MAX_CLIPS_PER_LABEL"} "${PACK_EXTRA[@]}"
fi

echo "== 2/4 zero-shot baseline (the pretrained tagger, AudioSet classes mapped to IAB labels)"
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ]; then
    # On the holdout fold, or the seed data's test set (holdout subsets), as training scores it.
    "$PYTHON" "$REPO_DIR/pytorch/main.py" zero_shot --workspace="$WORKSPACE" \
        --features="$FEATURES" "$PRETRAINED_FLAG" --holdout_fold="$HOLDOUT_FOLD" \
        --batch_size="$BATCH_SIZE" ${CUDA_FLAG:+"$CUDA_FLAG"}
else
    echo "   skipped: no PRETRAINED_CHECKPOINT_PATH"
fi

# One epoch = one pass over the training clips; mixup draws 2 x BATCH_SIZE clips per iteration.
EPOCH_INFO=$("$PYTHON" - "$FEATURES" "$HOLDOUT_FOLD" "${EPOCHS:-}" "$BATCH_SIZE" "$AUGMENTATION" \
    "$EVAL_EPOCHS" <<'PYTHON_END'
import math, sys
import h5py
path, holdout_fold, epochs, batch_size, augmentation, eval_epochs = sys.argv[1:]
with h5py.File(path, "r") as hf:
    folds = hf["fold"][:]
    subsets = [value.decode() for value in hf["subset"][:]] if "subset" in hf else []
    labels = len(hf.attrs["labels"])
# The recipes' epochs unless EPOCHS says: 100, or 50 for the 20-label set as the seeds ran it.
epochs = int(epochs) if epochs else (50 if labels == 20 else 100)
if holdout_fold == "subsets":
    train_clips = subsets.count("train")
elif holdout_fold == "all":
    train_clips = len(folds) * 0.9
else:
    train_clips = (folds != int(holdout_fold)).sum()
drawn = int(batch_size) * (2 if augmentation == "mixup" else 1)
epoch = max(1, math.ceil(train_clips / drawn))
print(epoch * int(eval_epochs), epoch * epochs, epochs, labels)
PYTHON_END
)
read -r EVAL_ITERATIONS STOP_DEFAULT EPOCHS_USED LABELS_PACKED <<< "$EPOCH_INFO"
STOP_ITERATION="${STOP_ITERATION:-$STOP_DEFAULT}"

echo "== 3/4 fine-tune (recipe $RECIPE, $LABELS_PACKED labels, batch $BATCH_SIZE), $HOLDOUT_FOLD," \
     "$STOP_ITERATION iterations ($EPOCHS_USED epochs are $STOP_DEFAULT; validated every" \
     "$EVAL_ITERATIONS, the best by $SELECT_BY kept)"
"$PYTHON" "$REPO_DIR/pytorch/main.py" train --workspace="$WORKSPACE" --features="$FEATURES" \
    "${SPLIT_FLAGS[@]}" ${PRETRAINED_FLAG:+"$PRETRAINED_FLAG"} --loss_type=clip_bce \
    --augmentation="$AUGMENTATION" --learning_rate=1e-4 --batch_size="$BATCH_SIZE" \
    --stop_iteration="$STOP_ITERATION" --eval_every="$EVAL_ITERATIONS" \
    --save_every="$STOP_ITERATION" --keep_best --select_by="$SELECT_BY" ${CUDA_FLAG:+"$CUDA_FLAG"} \
    --resume_iteration=last "${EXTRA_TRAIN_FLAGS[@]}"

echo "== 4/4 plot"
"$PYTHON" "$REPO_DIR/utils/plot_statistics.py" --workspace="$WORKSPACE"
