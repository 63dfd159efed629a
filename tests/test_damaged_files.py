"""Files the project reads back, damaged for real: NaN weights, integer tensors, edited caches,
a swapped resume checkpoint. Each gets one line (exit 2) or the right result, never a confident
wrong answer."""
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from helpers import run_dir, run_script, write_tone
from pytorch import main
from pytorch.models import Cnn6, create_model
from utils.utilities import UsageError

AUDIO = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000)


def official_cnn6(path, edit=None):
    torch.manual_seed(0)
    state = Cnn6(**AUDIO).state_dict()
    if edit:
        edit(state)
    torch.save({"model": state}, path)
    return path


@pytest.mark.slow
def test_nan_in_an_official_checkpoint_is_refused_by_inference(tmp_path):
    def poison(state):
        state["fc1.weight"][3, 5] = float("nan")
    checkpoint = official_cnn6(tmp_path / "Cnn6_mAP=0.343.pth", poison)
    write_tone(str(tmp_path / "clip.wav"), seconds=2.0)
    result = run_script("pytorch/main.py", "inference", f"--checkpoint_path={checkpoint}",
                        f"--audio_path={tmp_path}/clip.wav")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {checkpoint}: 1 tensor(s) hold NaN or inf (fc1.weight); the file is damaged or "
        "its training diverged: use an earlier checkpoint"]


def test_integer_and_half_precision_pretrained_tensors(tmp_path):
    def to_int(state):
        state["fc1.weight"] = state["fc1.weight"].long()
    bad = official_cnn6(tmp_path / "int.pth", to_int)
    with pytest.raises(UsageError, match=r"dtype mismatches: fc1.weight: torch.int64 vs torch.float32"):
        create_model("Transfer_Cnn6", **AUDIO, classes_num=3, pretrained_checkpoint_path=str(bad))

    def to_half(state):
        for key, value in state.items():
            if value.is_floating_point():
                state[key] = value.half()
    half = official_cnn6(tmp_path / "half.pth", to_half)
    model = create_model("Transfer_Cnn6", **AUDIO, classes_num=3, pretrained_checkpoint_path=str(half))
    expected = torch.load(half, weights_only=True)["model"]["fc1.weight"].float()
    assert model.base.fc1.weight.dtype == torch.float32
    assert torch.equal(model.base.fc1.weight.detach(), expected)  # cast, not refused


def trained(workspace, features, *extra):
    main.main(["train", f"--workspace={workspace}", f"--features={features}",
               "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
               "--holdout_fold=1", "--stop_iteration=2", "--eval_every=2", "--save_every=2",
               "--augmentation=none", "--no_spec_augment", *extra])
    return os.path.join(run_dir(workspace, "checkpoints", augmentation="none"), "2_iterations.pth")


@pytest.mark.slow
def test_nan_in_a_trained_head_is_refused_by_evaluate(tmp_path, features):
    path = trained(tmp_path, features)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["model"]["fc_transfer.weight"][0, 0] = float("nan")
    torch.save(checkpoint, path)
    result = run_script("pytorch/main.py", "evaluate", f"--checkpoint_path={path}")
    assert result.returncode == 2
    assert "fc_transfer.weight" in result.stderr and "NaN or inf" in result.stderr
    assert "accuracy" not in result.stdout


class _WritesMarker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_trust_names_the_pretrained_file_not_the_run_folder(tmp_path, features):
    """--trust_checkpoint trusts the file the user names; a resume file swapped for a code
    pickle is still refused."""
    path = trained(tmp_path, features)
    marker = tmp_path / "marker"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["payload"] = _WritesMarker(str(marker))
    torch.save(checkpoint, path)
    with pytest.raises(UsageError, match="this project's checkpoints never hold") as refused:
        trained(tmp_path, features, "--resume_iteration=2", "--stop_iteration=4",
                "--trust_checkpoint")
    assert "add --trust_checkpoint" not in str(refused.value)  # it was given: no advice to
    assert "\x1b[" not in str(refused.value)  # torch's terminal colours are left out
    assert not marker.exists()


@pytest.mark.slow
def test_an_edited_embedding_cache_is_recomputed(tmp_path, features):
    torch.manual_seed(0)
    torch.save({"model": Cnn6(**AUDIO).state_dict()}, tmp_path / "backbone.pth")
    os.makedirs(tmp_path / "features")
    shutil.copy(features, tmp_path / "features" / "waveform.h5")

    def probe(name):
        main.main(["train", "--linear_probe", f"--workspace={tmp_path}", f"--run_name={name}",
                   f"--pretrained_checkpoint_path={tmp_path}/backbone.pth", "--batch_size=8",
                   "--num_workers=0", "--stop_iteration=20", "--eval_every=20"])
    probe("first")
    [cache] = (tmp_path / "features" / "embeddings").iterdir()
    with h5py.File(cache, "r") as hf:
        original = hf["embedding"][:]
    for damage in ("reorder", "nan", "fewer"):
        with h5py.File(cache, "a") as hf:
            rows = hf["embedding"][:]
            del hf["embedding"]
            if damage == "reorder":
                rows = rows[::-1]
            elif damage == "nan":
                rows[4, 7] = np.nan
            else:
                rows = rows[:-3]
            hf.create_dataset("embedding", data=rows)
        probe(damage)
        with h5py.File(cache, "r") as hf:
            np.testing.assert_array_equal(hf["embedding"][:], original)  # recomputed, as it was


@pytest.mark.parametrize("values", [[0.5, 0.5], ["a", "b", "c"], [0.5, float("nan"), 0.5],
                                    [0.5, -0.1, 0.5], [0.5, 1.0, 0.5], 0.5])
def test_stored_thresholds_of_the_wrong_length_or_value_are_refused(values):
    from pytorch.checkpoints import stored_thresholds
    from utils.config import AudioConfig, RunConfig
    run = RunConfig(model_type="Transfer_Cnn6", task="multi_label", labels=["a", "b", "c"],
                    audio=AudioConfig(), features="", holdout_fold=1, loss_type="clip_bce")
    with pytest.raises(UsageError, match=r"best.pth: its stored thresholds .* for each of its 3 labels"):
        stored_thresholds({"thresholds": values}, run, "best.pth")
    np.testing.assert_array_equal(stored_thresholds({"thresholds": [0.2, 0.5, 0.9]}, run, "x"),
                                  [0.2, 0.5, 0.9])
    assert stored_thresholds({}, run, "x") is None
