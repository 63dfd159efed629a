"""`main.py explain`: occlusion relevance is the probability drop it says, the gradient is the
network's, deleting the top regions lowers the label more than deleting random ones, and the
command writes its picture and array or refuses in one line."""
import os

import numpy as np
import pytest
import soundfile
import torch

from helpers import SR, melody, run_script
from pytorch.explain import (OCCLUSION_PATCH, Explainer, delete_patches, patch_grid,
                             patch_scores)
from pytorch.main import main
from pytorch.predictor import load_predictor
from scripts.explain_deletion import deletion_test


@pytest.fixture(scope="module")
def explainer(single_label):
    return Explainer(load_predictor(single_label["checkpoint"]))


def clip():
    return melody(1.0)[:SR].astype(np.float32)


def test_occlusion_relevance_is_the_drop_of_silencing_the_patch(explainer):
    waveform = clip()
    label = 1
    relevance, logmel = explainer.explain(waveform, label, "occlusion")
    assert relevance.shape == logmel.shape == (101, 64)
    full = explainer.logmel(waveform)
    frame, mel = patch_grid(101, 64)[10]
    silenced = full.clone()
    silenced[:, :, frame:frame + OCCLUSION_PATCH[0], mel:mel + OCCLUSION_PATCH[1]] = full.min()
    before, after = explainer.probabilities(waveform, torch.cat([full, silenced]), label)
    assert relevance[frame, mel] == pytest.approx(before - after, abs=1e-5)
    # the unedited log-mel through given_logmel is the model's own forward pass
    assert before == pytest.approx(explainer.predictor(waveform[None])["probabilities"][0][label],
                                   abs=1e-5)


def test_the_gradient_is_the_networks(explainer):
    waveform = clip()
    relevance, _ = explainer.explain(waveform, 0, "gradient")
    logmel = explainer.logmel(waveform)
    frame, mel = np.unravel_index(np.argmax(np.abs(relevance)), relevance.shape)
    step = 0.5  # dB: large enough for float32, small beside the log-mel's range
    nudged = [logmel.clone(), logmel.clone()]
    nudged[0][0, 0, frame, mel] += step
    nudged[1][0, 0, frame, mel] -= step
    with torch.no_grad():
        up, down = explainer.label_log_probability(waveform, torch.cat(nudged), 0)
    gradient = relevance[frame, mel] / float(logmel[0, 0, frame, mel] - logmel.min())
    assert float(up - down) / (2 * step) == pytest.approx(gradient, rel=0.1)


@pytest.mark.slow
def test_deleting_the_top_regions_lowers_the_label_more_than_random_ones(explainer):
    waveforms = [clip(), (0.5 * melody(2.0)[SR // 3:SR // 3 + SR]).astype(np.float32)]
    found = deletion_test(explainer, waveforms, [0.1, 0.2], random_orders=4)
    assert (found["occlusion"] < found["random"]).all()
    # and deleting nothing leaves the probability as it was
    order = np.argsort(-patch_scores(explainer.explain(waveforms[0], 0, "occlusion")[0]))
    left = delete_patches(explainer, waveforms[0], 0, order, [0.0])
    assert left[1] == pytest.approx(left[0])


@pytest.mark.slow
def test_the_command_writes_the_picture_and_the_array(single_label, tmp_path):
    audio = str(tmp_path / "song.wav")
    soundfile.write(audio, melody(2.5), SR)
    main(["explain", f"--checkpoint_path={single_label['checkpoint']}", f"--audio_path={audio}",
          f"--output={tmp_path / 'out'}", "--label=low", "--start=1"])
    assert sorted(os.listdir(tmp_path / "out")) == ["song_low_gradient.npy",
                                                   "song_low_gradient.png"]
    assert np.load(tmp_path / "out" / "song_low_gradient.npy").shape == (101, 64)
    result = run_script("pytorch/main.py", "explain",
                        f"--checkpoint_path={single_label['checkpoint']}",
                        f"--audio_path={audio}", f"--output={tmp_path / 'out'}",
                        "--label=trumpet")
    assert result.returncode == 2 and "--label=trumpet: not one of the model's labels" in \
        result.stderr and "Traceback" not in result.stderr
