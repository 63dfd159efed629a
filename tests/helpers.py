"""What the tests share: small generated audio (tones, class-per-folder datasets), checkpoints
as training writes them, and the training and packing commands as the tests call them."""
import os
import pickle
import subprocess
import sys

import numpy as np
import soundfile
import torch

from pytorch import main as main_script
from pytorch.models import create_model
from utils.config import AudioConfig, RunConfig
from utils.data_generator import WaveformDataset

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


SR = 32000
AUDIO_SETTINGS = {"sample_rate": SR, "clip_samples": SR, "window_size": 1024, "hop_size": 320,
                  "mel_bins": 64, "fmin": 50, "fmax": 14000}


def spread_head(model, waveforms, seed=0):
    """Give an untrained model's head random directions scaled to the embeddings of `waveforms`.

    An untrained head predicts one class for every clip; this one predicts varied classes with
    varied confidence, so confusion matrices and averages have something to check.
    """
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        embedding = model(torch.as_tensor(waveforms, dtype=torch.float32))["embedding"]
        mean = embedding.mean(dim=0)
        weight = torch.randn(model.fc_transfer.out_features, embedding.shape[1], generator=generator)
        weight *= 3 / ((embedding - mean) @ weight.T).std()
        model.fc_transfer.weight.copy_(weight)
        model.fc_transfer.bias.copy_(-weight @ mean)
    return model


def save_checkpoint(path, labels, task, waveforms, args=None, iteration=7, legacy=False):
    """A checkpoint as training writes it, of a Transfer_Cnn6 on 1-s clips; `args` sets RunConfig
    fields. legacy: in the format written before RunConfig (flags in 'args')."""
    torch.manual_seed(0)
    model = create_model("Transfer_Cnn6", **{k: v for k, v in AUDIO_SETTINGS.items()
                                             if k != "clip_samples"},
                         classes_num=len(labels), task=task)
    spread_head(model, waveforms)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if legacy:
        torch.save({"iteration": iteration, "model": model.state_dict(), "labels": list(labels),
                    "task": task, "audio_settings": dict(AUDIO_SETTINGS),
                    "model_type": "Transfer_Cnn6", "args": args or {}}, path)
        return model
    fields = {"features": "", "holdout_fold": None, **(args or {})}
    run = RunConfig(model_type="Transfer_Cnn6", task=task, labels=list(labels),
                    audio=AudioConfig(**AUDIO_SETTINGS),
                    loss_type="clip_nll" if task == "single_label" else "clip_bce", **fields)
    torch.save({"iteration": iteration, "model": model.state_dict(), "config": run.to_dict()},
               path)
    return model


def hdf5_waveforms(hdf5_path):
    dataset = WaveformDataset(hdf5_path)
    return np.stack([dataset[index]["waveform"] for index in range(len(dataset))]), dataset


def melody(seconds, sample_rate=SR):
    """A tone whose pitch changes every 5 s, so windows of one file give different outputs."""
    pieces = [tone(150.0 * (1 + step % 7), 5.0, sample_rate) for step in range(int(seconds // 5))]
    remainder = tone(3000.0, seconds % 5, sample_rate)
    return np.concatenate(pieces + [remainder]).astype(np.float32)


def train(workspace, features, *extra, model="Transfer_Cnn6"):
    main_script.main(["train", f"--workspace={workspace}", f"--features={features}",
                      f"--model_type={model}", "--batch_size=4", "--num_workers=0",
                      "--learning_rate=1e-3", *map(str, extra)])


def parsed_run(workspace, features, *flags):
    """The RunConfig main.py builds for a train command line (no training)."""
    from pytorch.configure import train_run_config
    args = main_script.build_parser().parse_args(
        ["train", f"--workspace={workspace}", f"--features={features}", *flags])
    return train_run_config(main_script.train_flags(args))


def pack_csv(csv, workspace, *extra):
    result = run_script("utils/features.py", "pack_csv_to_hdf5", f"--csv={csv}",
                        f"--workspace={workspace}", "--clip_duration=0.5", "--num_workers=0",
                        "--keep_unlabelled", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
