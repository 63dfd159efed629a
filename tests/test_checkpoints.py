"""The one checkpoint loader: weights-only by default, pickles only when trusted; RunConfig round
trips and old checkpoints keep working."""
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from helpers import run_script
from pytorch.checkpoints import load_checkpoint_file, read_training_checkpoint
from pytorch.evaluate import evaluate_checkpoint
from pytorch.models import create_model
from pytorch.restore import load_trained_model
from helpers import AUDIO_SETTINGS, save_checkpoint
from utils.config import AudioConfig, RunConfig
from utils.utilities import UsageError, safe_pickle_load


class _WritesMarker:
    """Unpickling this calls open(marker, 'w'): code named by the file runs on a full unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_code_pickle(path, marker):
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _WritesMarker(str(marker))}, path)


def test_a_pickle_that_runs_code_is_refused_unless_trusted(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "marker"
    write_code_pickle(path, marker)
    with pytest.raises(UsageError, match="--trust_checkpoint") as error:
        load_checkpoint_file(str(path), "--checkpoint_path")
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()
    load_checkpoint_file(str(path), "--checkpoint_path", trusted=True)
    assert marker.exists()  # the trusted load did run it: the policy is what kept it out


@pytest.mark.slow
def test_cli_refuses_the_code_pickle_in_one_line(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "marker"
    write_code_pickle(path, marker)
    result = run_script("pytorch/main.py", "evaluate", f"--checkpoint_path={path}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--trust_checkpoint" in result.stderr and not marker.exists()


def test_official_format_with_numpy_sampler_state_loads_weights_only(tmp_path):
    """The published checkpoints pickle their sampler's NumPy state beside the weights."""
    model = create_model("Cnn6", **{k: v for k, v in AUDIO_SETTINGS.items() if k != "clip_samples"},
                         classes_num=527)
    state = np.random.RandomState(3)
    path = tmp_path / "file.pth"
    torch.save({"iteration": 10, "model": model.state_dict(),
                "sampler": {"indexes_per_class": [np.arange(5, dtype=np.int64)],
                            "random_state": state.get_state(), "pointer": np.int64(4),
                            "weights": np.ones(3, dtype=np.float32)}}, path)
    checkpoint = load_checkpoint_file(str(path))
    restored = np.random.RandomState()
    restored.set_state(checkpoint["sampler"]["random_state"])
    assert restored.randint(1 << 30) == state.randint(1 << 30)
    loaded = create_model("Cnn6", **{k: v for k, v in AUDIO_SETTINGS.items() if k != "clip_samples"},
                          classes_num=527, pretrained_checkpoint_path=str(path))
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_truncated_checkpoint_is_a_one_line_error(single_label, tmp_path):  # noqa: F811
    path = tmp_path / "cut.pth"
    data = open(single_label["checkpoint"], "rb").read()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(UsageError, match="not a readable PyTorch checkpoint") as error:
        load_checkpoint_file(str(path))
    assert "\n" not in str(error.value)


def test_run_config_round_trips_through_a_checkpoint(tmp_path):
    run = RunConfig(model_type="Transfer_Cnn6", task="multi_label", labels=["a", "b"],
                    audio=AudioConfig(sample_rate=16000, clip_samples=16000, fmax=8000),
                    features="/data/x.h5", holdout_fold=3, loss_type="clip_bce",
                    learning_rate=3e-4, run_name="sweep")
    path = tmp_path / "c.pth"
    torch.save({"model": {}, "config": run.to_dict()}, path)
    assert read_training_checkpoint(str(path))[1] == run


def test_a_checkpoint_missing_newer_fields_loads_with_defaults(tmp_path, caplog):
    run = RunConfig(model_type="Transfer_Cnn6", task="single_label", labels=["a", "b"],
                    audio=AudioConfig(), features="x.h5", holdout_fold=2, loss_type="clip_nll",
                    threshold=0.3)
    stored = run.to_dict()
    del stored["run_name"], stored["threshold"], stored["audio"]["fmax"]
    stored["a_flag_since_renamed"] = 1
    path = tmp_path / "c.pth"
    torch.save({"model": {}, "config": stored}, path)
    with caplog.at_level(logging.INFO):
        _, loaded = read_training_checkpoint(str(path))
    assert loaded.threshold == 0.5 and loaded.run_name == "" and loaded.audio.fmax == 14000
    assert loaded.holdout_fold == 2 and loaded.learning_rate == run.learning_rate
    text = caplog.text
    assert "run_name" in text and "threshold" in text and "fmax" in text
    assert "a_flag_since_renamed" in text


@pytest.mark.slow
def test_a_checkpoint_written_before_run_configs_still_evaluates(single_label, tmp_path):  # noqa: F811
    """The format of earlier releases: labels, task, audio_settings, model_type and the flags."""
    legacy = str(tmp_path / "legacy.pth")
    save_checkpoint(legacy, single_label["labels"], "single_label", single_label["waveforms"],
                    args={"features": single_label["features"], "holdout_fold": 1,
                          "threshold": 0.5, "no_spec_augment": True, "loss_type": None,
                          "dataset_dir": None}, legacy=True)
    model, _, run = load_trained_model(legacy, torch.device("cpu"))
    assert run.spec_augment is False and run.loss_type == "clip_nll"
    assert run.audio == AudioConfig(**AUDIO_SETTINGS)
    old = evaluate_checkpoint(legacy, write=False)
    new = evaluate_checkpoint(single_label["checkpoint"], write=False)
    assert old["selection"] == new["selection"] == "holdout_fold=1"
    np.testing.assert_allclose(old["probabilities"], new["probabilities"], rtol=1e-5)


def test_statistics_are_read_without_running_code(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "statistics.pickle"
    path.write_bytes(pickle.dumps({"validate": [], "x": _WritesMarker(str(marker))}))
    with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="not plain data"):
        safe_pickle_load(f)
    assert not marker.exists()
    plain = {"validate": [{"accuracy": np.float64(0.5), "cm": np.eye(2)}], "meta": {"a": (1, None)}}
    path.write_bytes(pickle.dumps(plain))
    with open(path, "rb") as f:
        loaded = safe_pickle_load(f)
    assert loaded["validate"][0]["accuracy"] == 0.5 and os.path.getsize(path) > 0
