"""Small generated audio for the tests: tones and class-per-folder datasets."""
import os
import pickle
import subprocess
import sys

import numpy as np
import soundfile

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_can_run_the_project():
    """Whether an unprivileged user (65534) can run this interpreter on this checkout: root,
    and neither lies in a folder private to root (a clone under a 0700 mktemp folder does)."""
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(AS_NOBODY + [sys.executable, "-c", "import utils.config"],
                           cwd=REPO_DIR, capture_output=True)
    return probe.returncode == 0


def tone(frequency, seconds, sample_rate, amplitude=0.5, channels=1):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = amplitude * np.sin(2 * np.pi * frequency * t)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def write_tone(path, frequency=440.0, seconds=1.0, sample_rate=32000, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, tone(frequency, seconds, sample_rate, **kwargs), sample_rate)
    return path


def make_class_folders(root, classes=("high", "low"), clips_per_class=10, seconds=1.0,
                       sample_rate=32000):
    """A GTZAN-layout folder whose classes differ by pitch (learnable in a few steps)."""
    for class_index, label in enumerate(classes):
        for clip in range(clips_per_class):
            frequency = 200.0 * (1 + 3 * class_index) * (1 + 0.05 * clip)
            write_tone(os.path.join(root, label, f"{label}.{clip:05d}.wav"), frequency, seconds,
                       sample_rate)
    return root


def run_script(script, *args):
    """Run a repository script as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO_DIR, script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_DIR)


def run_dir(workspace, kind, model="Transfer_Cnn6", augmentation="mixup", batch_size=4,
            freeze_base=False, pretrain=False, fold=1):
    return os.path.join(workspace, kind, "main", f"holdout_fold={fold}", model,
                        f"pretrain={pretrain}", "loss_type=clip_nll",
                        f"augmentation={augmentation}", f"batch_size={batch_size}",
                        f"freeze_base={freeze_base}")


def load_statistics(workspace, **kwargs):
    with open(os.path.join(run_dir(workspace, "statistics", **kwargs), "statistics.pickle"), "rb") as f:
        return pickle.load(f)


def visible_files(folder):
    """A folder's files but the hidden ones (the run lock, temporaries)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))
