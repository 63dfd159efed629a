"""Defaults shared by packing, training and inference.

Only defaults live here: a packed HDF5 records its own sample rate, clip length, labels and task,
and training reads those from the file.
"""
import os

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METADATA_DIR = os.path.join(REPO_DIR, "metadata")

SAMPLE_RATE = 32000
GTZAN_CLIP_DURATION = 30.0   # seconds
AUDIOSET_CLIP_DURATION = 10.0
FOLDS_NUM = 10

# The PANNs Cnn14 front end: the published checkpoints were trained with exactly these.
WINDOW_SIZE = 1024
HOP_SIZE = 320
MEL_BINS = 64
FMIN = 50
FMAX = 14000

AUDIOSET_CLASSES_NUM = 527
AUDIOSET_LABELS_CSV = os.path.join(METADATA_DIR, "audioset_class_labels_indices.csv")

SINGLE_LABEL = "single_label"
MULTI_LABEL = "multi_label"
TASKS = (SINGLE_LABEL, MULTI_LABEL)

AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus")


def read_label_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


GTZAN_LABELS = read_label_list(os.path.join(METADATA_DIR, "gtzan_labels.txt"))
