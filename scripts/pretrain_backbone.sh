#!/usr/bin/env bash
# Pretrain the backbone the project ships: MobileNetV2 (a published PANNs architecture) trained
# with the project's own trainer to tag what sounds in synthetic clips (instruments, drum pieces,
# effects, tempo bands; no genre), exported in the official PANNs layout.
#
#   scripts/pretrain_backbone.sh [WORKSPACE] [OUTPUT]
#       WORKSPACE (default workspaces/pretrain) holds the source clips, their HDF5 and the run;
#       OUTPUT (default metadata/pretrained/MobileNetV2_sounds.pth) gets the backbone and, beside
#       it, its card (.json: SHA-256, source labels, holdout mAP, the run's config and command).
#   Settings by environment: CLIPS (6000), ITERATIONS (1000), SEED (2027, the clips),
#   TRAIN_SEED (1234). A second call continues a killed run where it stopped (same settings).
#
# Seeded end to end; on a 2-core CPU (2026-12-06): 5.4 minutes of clips, 13 s of packing, 28.8
# minutes of training (evaluations included), 27 s of export: 35 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
WORKSPACE="${1:-workspaces/pretrain}"
OUTPUT="${2:-metadata/pretrained/MobileNetV2_sounds.pth}"
CLIPS="${CLIPS:-6000}"
ITERATIONS="${ITERATIONS:-1000}"
SEED="${SEED:-2027}"
TRAIN_SEED="${TRAIN_SEED:-1234}"
SOURCE_DIR="$WORKSPACE/sounds"
FEATURES="$WORKSPACE/features/sounds.h5"

if [ ! -f "$SOURCE_DIR/.complete-$CLIPS-$SEED" ]; then
    echo "== 1/4 synthesising $CLIPS source clips in $SOURCE_DIR ($SECONDS s)"
    "$PYTHON" scripts/make_sound_tagging_dataset.py --output_dir="$SOURCE_DIR" --clips="$CLIPS" \
        --clip_duration=3 --seed="$SEED"
    touch "$SOURCE_DIR/.complete-$CLIPS-$SEED"
fi
echo "== 2/4 packing them into $FEATURES ($SECONDS s)"
"$PYTHON" utils/features.py pack_csv_to_hdf5 --csv="$SOURCE_DIR/labels.csv" \
    --workspace="$WORKSPACE" --output="$FEATURES" --clip_duration=3

echo "== 3/4 training Transfer_MobileNetV2 on the source task, fold 1 held out ($SECONDS s)"
# Multi-label BCE, batch 32, Adam at 1e-3 warmed up over the first 5% of the iterations (50 of
# 1000) and decayed by cosine;
# fp32 (bf16 is emulated on CPUs without AVX-512 BF16, and slower there).
"$PYTHON" pytorch/main.py train --workspace="$WORKSPACE" --features="$FEATURES" --holdout_fold=1 \
    --model_type=Transfer_MobileNetV2 --loss_type=clip_bce --augmentation=none \
    --learning_rate=1e-3 --lr_schedule=cosine --warmup_iterations=$((ITERATIONS / 20)) \
    --decay_iterations="$ITERATIONS" --batch_size=32 --stop_iteration="$ITERATIONS" \
    --eval_every=$(( (ITERATIONS + 3) / 4 )) --save_every=$(( (ITERATIONS + 3) / 4 )) --num_workers=1 --precision=fp32 --no-channels_last \
    --seed="$TRAIN_SEED" --resume_iteration=last

echo "== 4/4 exporting the backbone to $OUTPUT ($SECONDS s)"
CHECKPOINT=$("$PYTHON" pytorch/main.py runs --workspace="$WORKSPACE" --holdout_fold=1 \
    --model_type=Transfer_MobileNetV2 --latest_checkpoint)
"$PYTHON" pytorch/main.py export --checkpoint_path="$CHECKPOINT" --output="$OUTPUT" \
    --recipe="CLIPS=$CLIPS ITERATIONS=$ITERATIONS SEED=$SEED TRAIN_SEED=$TRAIN_SEED scripts/pretrain_backbone.sh $WORKSPACE $OUTPUT"
echo "Wall time: $SECONDS s"
