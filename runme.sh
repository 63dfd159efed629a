#!/usr/bin/env bash
# The whole pipeline: data -> HDF5 -> training one holdout fold -> plots -> evaluation.
#
#   ./runme.sh
#       The embedded demo on any machine (CPU is fine, about 3 minutes on 2 cores): generates the
#       synthetic-music demo set, packs it, fine-tunes the backbone the project ships
#       (metadata/pretrained/MobileNetV2_sounds.pth, pretrained by scripts/pretrain_backbone.sh
#       to tag what sounds in a clip), plots, evaluates.
#   ./runme.sh --from_scratch
#       The same demo and budget from random weights, for comparison.
#
#   DATASET_DIR=/data/GTZAN/genres PRETRAINED_CHECKPOINT_PATH=/models/Cnn14_mAP=0.431.pth ./runme.sh
#       The real GTZAN recipe: 30-s clips, Transfer_Cnn14, batch 32, learning rate 1e-4, mixup,
#       2000 iterations on CUDA (the CPU is used, with a warning, when there is no GPU).
#
# Every setting can also be given as a flag: ./runme.sh --dataset_dir=... --workspace=...
#   --pretrained_checkpoint_path=... --holdout_fold=N --stop_iteration=N --seed=N
set -euo pipefail
cd "$(dirname "$0")"

for argument in "$@"; do
    case "$argument" in
        --dataset_dir=*) DATASET_DIR="${argument#*=}" ;;
        --workspace=*) WORKSPACE="${argument#*=}" ;;
        --pretrained_checkpoint_path=*) PRETRAINED_CHECKPOINT_PATH="${argument#*=}" ;;
        --holdout_fold=*) HOLDOUT_FOLD="${argument#*=}" ;;
        --stop_iteration=*) STOP_ITERATION="${argument#*=}" ;;
        --seed=*) SEED="${argument#*=}" ;;
        --from_scratch) PRETRAINED_CHECKPOINT_PATH="" ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $argument (see ./runme.sh --help)" >&2; exit 2 ;;
    esac
done

# The documented times are on an idle CPU; say so up front when other work shares it.
read -r LOAD _ < /proc/loadavg 2>/dev/null || LOAD=0
CORES=$(nproc 2>/dev/null || echo 1)
if awk -v load="$LOAD" -v cores="$CORES" 'BEGIN { exit !(load > cores / 2) }'; then
    echo "note: the CPU is busy (load average $LOAD on $CORES cores): this run shares it, and" \
         "takes longer than the times docs/benchmarks.md measured on an idle CPU" >&2
fi
source scripts/setup_env.sh
DATASET_DIR="${DATASET_DIR:-}"
HOLDOUT_FOLD="${HOLDOUT_FOLD:-1}"
SEED="${SEED:-1234}"
echo "   (Python environment ready: $SECONDS s)"
stage_started=none
stage() {  # the time each step took, so a slow one shows
    [ "$stage_started" = "none" ] || echo "   ($((SECONDS - stage_started)) s)"
    stage_started=$SECONDS
    echo "== $*"
}

if [ -z "$DATASET_DIR" ]; then
    # The embedded demo, sized for a 2-core CPU: 10 genres x 20 synthetic 5-s clips;
    # Transfer_MobileNetV2 fine-tuned from the shipped backbone (unset or empty:
    # --from_scratch), batch 16, no mixup, no SpecAugment, Adam at 5e-4 warmed up over 5
    # iterations and decayed by cosine to 0 at the 100th, in fp32 (bf16 is emulated, and
    # slower, on CPUs without AVX-512 BF16) with channels-last convolutions (MobileNetV2's
    # training step 1.6-2.2x faster on the CPU; docs/benchmarks.md). Ten folds:
    # docs/fine_tuning.md.
    PRETRAINED_CHECKPOINT_PATH="${PRETRAINED_CHECKPOINT_PATH-metadata/pretrained/MobileNetV2_sounds.pth}"
    WORKSPACE="${WORKSPACE:-workspaces/demo}"
    DATASET_DIR="$WORKSPACE/dataset"
    STOP_ITERATION="${STOP_ITERATION:-100}"
    if [ ! -f "$DATASET_DIR/.complete-5s" ]; then  # (a set of 10-s clips, made before, is remade)
        stage "0/4 generating the demo set in $DATASET_DIR"
        "$PYTHON" scripts/make_demo_dataset.py --output_dir="$DATASET_DIR" --genres=10 \
            --clips_per_genre=20 --clip_duration=5 --seed="$SEED"
        touch "$DATASET_DIR/.complete-5s"
    fi
    CLIP_DURATION=5
    TRAIN_FLAGS=(--model_type=Transfer_MobileNetV2 --loss_type=clip_nll --augmentation=none
                 --no_spec_augment --learning_rate=5e-4 --lr_schedule=cosine
                 --warmup_iterations=5 --batch_size=16 --eval_every=10
                 --save_every="$STOP_ITERATION" --num_workers=1 --precision=fp32
                 --channels_last)
    PLOT_FILTER=(--model_type=Transfer_MobileNetV2)
else
    PRETRAINED_CHECKPOINT_PATH="${PRETRAINED_CHECKPOINT_PATH:-}"
    # The published GTZAN transfer recipe.
    WORKSPACE="${WORKSPACE:-workspaces/gtzan}"
    STOP_ITERATION="${STOP_ITERATION:-2000}"
    CLIP_DURATION=30
    TRAIN_FLAGS=(--model_type=Transfer_Cnn14 --loss_type=clip_nll --augmentation=mixup
                 --learning_rate=1e-4 --batch_size=32 --eval_every=200 --save_every=500
                 --num_workers=4 --keep_best --cuda)
    [ -n "$PRETRAINED_CHECKPOINT_PATH" ] || \
        echo "warning: no PRETRAINED_CHECKPOINT_PATH: training Transfer_Cnn14 from scratch" >&2
    PLOT_FILTER=(--model_type=Transfer_Cnn14)
fi
if [ -n "$PRETRAINED_CHECKPOINT_PATH" ]; then
    TRAIN_FLAGS+=(--pretrained_checkpoint_path="$PRETRAINED_CHECKPOINT_PATH")
    PLOT_FILTER+=(--filter pretrain=True)
    FIGURE_NAME="holdout_fold=$HOLDOUT_FOLD"
else
    PLOT_FILTER+=(--filter pretrain=False)
    FIGURE_NAME="holdout_fold=${HOLDOUT_FOLD}_from_scratch"
fi

stage "1/4 packing $DATASET_DIR into $WORKSPACE/features/waveform.h5"
"$PYTHON" utils/features.py pack_audio_files_to_hdf5 --dataset_dir="$DATASET_DIR" \
    --workspace="$WORKSPACE" --clip_duration="$CLIP_DURATION"

stage "2/4 training holdout fold $HOLDOUT_FOLD for $STOP_ITERATION iterations"
"$PYTHON" pytorch/main.py train --dataset_dir="$DATASET_DIR" --workspace="$WORKSPACE" \
    --holdout_fold="$HOLDOUT_FOLD" --stop_iteration="$STOP_ITERATION" --seed="$SEED" \
    "${TRAIN_FLAGS[@]}"

stage "3/4 plotting"
FIGURE="$WORKSPACE/figures/$FIGURE_NAME"
"$PYTHON" utils/plot_statistics.py --workspace="$WORKSPACE" --holdout_fold="$HOLDOUT_FOLD" \
    "${PLOT_FILTER[@]}" --output="$FIGURE"

stage "4/4 evaluating the final checkpoint on the holdout fold"
# The run just trained, found by its run.json (main.py runs), not by its folder names.
CHECKPOINT=$("$PYTHON" pytorch/main.py runs --workspace="$WORKSPACE" \
    --holdout_fold="$HOLDOUT_FOLD" "${PLOT_FILTER[@]}" --latest_checkpoint)
"$PYTHON" pytorch/main.py evaluate --checkpoint_path="$CHECKPOINT"

STATISTICS=$("$PYTHON" - "$WORKSPACE" "$CHECKPOINT" <<'EOF'
import os, sys
from pytorch.checkpoints import describe_pretrained, read_training_checkpoint
from utils.runs import STATISTICS_FILE, run_dirs
from utils.statistics_files import load_statistics
_, run = read_training_checkpoint(sys.argv[2])
path = os.path.join(run_dirs(sys.argv[1], run)["statistics"], STATISTICS_FILE)
final = load_statistics(path)["validate"][-1]
print(f"\nFinal validation {run.primary_metric}: {final[run.primary_metric]:.3f} at iteration "
      f"{final['iteration']} (chance {1 / len(run.labels):.3f})", file=sys.stderr)
print(f"Fine-tuned from: {describe_pretrained(run.pretrained_checkpoint_path)}", file=sys.stderr)
print(path)
EOF
)
echo "Statistics: $STATISTICS"
echo "Checkpoint: $CHECKPOINT"
echo "Figure:     $FIGURE.png (and .pdf)"
echo "   ($((SECONDS - stage_started)) s)"
echo "Wall time:  $SECONDS s (environment set-up included)"
