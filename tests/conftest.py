"""Fixtures shared by the tests (pytest.ini puts the repository root and tests/ on the path)."""
import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run in parallel (scripts/run_tests.sh: one worker per core): one thread each, for
    # this process and the commands it starts, instead of every worker using every core.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)

from helpers import hdf5_waveforms, make_class_folders, save_checkpoint, write_tone
from utils.features import one_hot, pack_to_hdf5, scan_class_folders


@pytest.fixture(scope="session")
def features(tmp_path_factory):
    """A packed single-label HDF5: 3 classes of pitched tones, 10 clips of 1 s each."""
    root = tmp_path_factory.mktemp("tones")
    make_class_folders(root / "data", classes=("high", "low", "mid"), clips_per_class=10,
                       seconds=1.0)
    labels, found = scan_class_folders(str(root / "data"))
    items = [(name, path, one_hot(index, len(labels))) for name, path, index in found]
    path = str(root / "waveform.h5")
    pack_to_hdf5(items, labels, "single_label", path, clip_duration=1.0)
    return path


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    """30 one-second tones in 3 classes packed into an HDF5, and a checkpoint trained 'on' it."""
    root = tmp_path_factory.mktemp("single")
    labels, found = scan_class_folders(
        make_class_folders(str(root / "audio"), classes=("high", "low", "mid"), clips_per_class=10))
    features = str(root / "waveform.h5")
    pack_to_hdf5([(name, path, one_hot(index, len(labels))) for name, path, index in found],
                 labels, "single_label", features, clip_duration=1.0)
    waveforms, dataset = hdf5_waveforms(features)
    checkpoint = str(root / "ws" / "checkpoints" / "main" / "run" / "7_iterations.pth")
    model = save_checkpoint(checkpoint, labels, "single_label", waveforms,
                            args={"features": features, "holdout_fold": 1, "threshold": 0.5})
    return {"features": features, "checkpoint": checkpoint, "labels": labels, "model": model,
            "waveforms": waveforms, "dataset": dataset, "root": root}


TAGS = {"low": 220.0, "high": 1760.0}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A file,labels CSV of 100 half-second clips (low, high, both or neither) and one file
    that is not audio."""
    root = tmp_path_factory.mktemp("labelled")
    rows = []
    for clip in range(100):
        tags = [tag for bit, tag in enumerate(TAGS) if (clip >> bit) & 1 or clip % 7 == 0]
        frequency = sum(TAGS[tag] for tag in tags) or 3000.0
        write_tone(str(root / "audio" / f"clip{clip:03d}.wav"), frequency + clip, 0.5)
        rows.append(f"audio/clip{clip:03d}.wav,{';'.join(tags)}")
    (root / "audio" / "broken.wav").write_bytes(b"not audio at all")
    rows.append("audio/broken.wav,low")
    (root / "labels.csv").write_text("file,labels\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"
