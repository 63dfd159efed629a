"""The linear probe: embeddings cached once, a head fitted on them, checkpoints that are ordinary
transfer models (evaluation of the saved checkpoint reproduces the probe's own validation)."""
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import parsed_run, run_script
from pytorch import main
from pytorch.checkpoints import load_checkpoint_file
from pytorch.evaluate import evaluate_checkpoint
from pytorch.models import Cnn6
from pytorch.published import published_models

AUDIO = published_models()["Cnn6"]["audio"]


@pytest.fixture
def setup(tmp_path, features):
    torch.manual_seed(0)
    torch.save({"model": Cnn6(**AUDIO).state_dict()}, tmp_path / "backbone.pth")
    (tmp_path / "features").mkdir()
    shutil.copy(features, tmp_path / "features" / "waveform.h5")
    return tmp_path


def probe(workspace, *extra):
    main.main(["train", "--linear_probe", f"--workspace={workspace}",
               f"--pretrained_checkpoint_path={workspace}/backbone.pth", "--batch_size=8",
               "--num_workers=0", "--stop_iteration=60", "--eval_every=20", *extra])


def log_of(workspace, fold):
    with open(os.path.join(probe_dirs(workspace, fold, "logs"), "train.log")) as f:
        return f.read()


def probe_dirs(workspace, fold=1, kind="checkpoints"):
    return os.path.join(workspace, kind, "main", f"holdout_fold={fold}", "Transfer_Cnn6",
                        "pretrain=True", "loss_type=clip_nll", "augmentation=none", "batch_size=8",
                        "freeze_base=True", "linear_probe=True")


def test_probe_checkpoint_evaluates_as_the_probe_scored_it(setup):
    probe(setup, "--holdout_fold=1")
    assert "embeddings of 30 clips computed" in log_of(setup, 1)
    checkpoint_file = os.path.join(probe_dirs(setup), "60_iterations.pth")
    checkpoint = load_checkpoint_file(checkpoint_file)
    assert checkpoint["config"]["linear_probe"] and checkpoint["config"]["freeze_base"]
    # The base is the pretrained backbone, untouched; only the head was fitted.
    backbone = torch.load(setup / "backbone.pth", weights_only=True)["model"]
    for key, value in backbone.items():
        assert torch.equal(checkpoint["model"][f"base.{key}"], value)

    from utils.statistics_files import load_statistics
    stats = load_statistics(os.path.join(probe_dirs(setup, kind="statistics"), "statistics.pickle"))
    assert stats["meta"]["linear_probe"] and "finished" in stats
    assert [entry["iteration"] for entry in stats["validate"]] == [0, 20, 40, 60]
    losses = [entry["loss"] for entry in stats["train"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # it learns
    last = stats["validate"][-1]
    evaluated = evaluate_checkpoint(checkpoint_file, holdout_fold=1, write=False)
    # The saved model, run on the waveforms, scores what the probe measured on cached embeddings:
    # the cache holds the model's own embeddings and the standardisation is folded in exactly.
    assert evaluated["accuracy"] == pytest.approx(last["accuracy"])
    np.testing.assert_allclose(evaluated["confusion_matrix"], last["confusion_matrix"])


@pytest.mark.slow
def test_cache_is_shared_and_invalidated(setup):
    probe(setup, "--holdout_fold=1")
    cache_dir = setup / "features" / "embeddings"
    [cache] = os.listdir(cache_dir)
    probe(setup, "--holdout_fold=2")
    assert "embeddings of 30 clips read from" in log_of(setup, 2)
    assert os.listdir(cache_dir) == [cache]

    # Another checkpoint: another cache. A changed HDF5: recomputed.
    torch.manual_seed(1)
    torch.save({"model": Cnn6(**AUDIO).state_dict()}, setup / "backbone.pth")
    probe(setup, "--holdout_fold=3")
    assert len(os.listdir(cache_dir)) == 2
    os.utime(setup / "features" / "waveform.h5", ns=(1, 1))
    probe(setup, "--holdout_fold=4")
    assert "another HDF5 or backbone; recomputing" in log_of(setup, 4)


@pytest.mark.slow
def test_probe_needs_a_backbone(tmp_path, features):
    result = run_script("pytorch/main.py", "train", "--linear_probe", f"--workspace={tmp_path}",
                        f"--features={features}")
    assert result.returncode == 2
    assert "--linear_probe: needs --pretrained_checkpoint_path" in result.stderr.strip().splitlines()[-1]


def probe_statistics(workspace, run_name):
    from utils.statistics_files import load_statistics
    folder = probe_dirs(workspace, kind="statistics") + f"/run_name={run_name}"
    return load_statistics(os.path.join(folder, "statistics.pickle"))


def test_probe_applies_the_head_options_and_refuses_layer_decay(setup):
    """The optimizer options reach the probe's head: its recorded rates follow the schedule,
    weight decay shrinks the head, clipping to almost nothing stops it learning;
    --layer_decay is refused in one line."""
    from pytorch.optimization import lr_factor
    from utils.config import RunConfig
    from utils.utilities import UsageError
    probe(setup, "--run_name=plain")
    probe(setup, "--run_name=schedule", "--lr_schedule=cosine", "--warmup_iterations=10")
    probe(setup, "--run_name=decay", "--optimizer=adamw", "--weight_decay=1.0",
          "--learning_rate=1e-2")
    probe(setup, "--run_name=plain_fast", "--learning_rate=1e-2")
    probe(setup, "--run_name=clipped", "--grad_clip_norm=1e-9")

    folder = probe_dirs(setup) + "/run_name=schedule"
    config = RunConfig.from_dict(load_checkpoint_file(
        os.path.join(folder, "60_iterations.pth"))["config"])
    rates = [entry["learning_rate"] for entry in probe_statistics(setup, "schedule")["train"]]
    np.testing.assert_allclose(rates, [1e-3 * lr_factor(config, step) for step in range(60)],
                               rtol=1e-6)
    assert rates[0] == pytest.approx(1e-4) and rates[-1] < 1e-5
    assert {entry["learning_rate"] for entry in probe_statistics(setup, "plain")["train"]} == {1e-3}

    def head_norm(run_name):
        folder = probe_dirs(setup) + f"/run_name={run_name}"
        weight = load_checkpoint_file(os.path.join(folder, "60_iterations.pth"))["model"]
        return float(weight["fc_transfer.weight"].norm())

    assert head_norm("decay") < 0.9 * head_norm("plain_fast")

    def learned(run_name):
        losses = [entry["loss"] for entry in probe_statistics(setup, run_name)["train"]]
        return np.mean(losses[:10]) - np.mean(losses[-10:])

    assert learned("plain") > 0.05 and abs(learned("clipped")) < 0.1 * learned("plain")

    with pytest.raises(UsageError, match=r"^--layer_decay=0.75: a linear probe trains one layer"):
        probe(setup, "--run_name=layers", "--layer_decay=0.75")
    assert not os.path.exists(probe_dirs(setup) + "/run_name=layers")  # refused before its folder


def test_head_init_fits_the_head_and_fine_tuning_starts_from_it(setup):
    """--head_init=probe (LP-FT): before the first step the head is the linear fit on the frozen
    backbone's embeddings of the training clips; the base stays the file's, the fit is what the
    whole model computes from the waveforms, and it fits them far better than a random head."""
    from pytorch.selection import score
    from pytorch.pytorch_utils import forward_loader
    from pytorch.train import TrainingRun
    from utils.data_generator import EvaluateSampler

    flags = ["--model_type=Transfer_Cnn6", f"--pretrained_checkpoint_path={setup}/backbone.pth",
             "--batch_size=8", "--num_workers=0", "--holdout_fold=1", "--augmentation=none"]
    features = setup / "features" / "waveform.h5"

    def opened(name, *extra):
        return TrainingRun(parsed_run(setup / name, features, *flags, *extra)).open(
            str(setup / name))

    def training_clips_score(training):
        _, probabilities, targets = forward_loader(
            training.raw_model, training.batches(EvaluateSampler(training.train_indices, 8)),
            training.device, "single_label", "fp32")
        return score(probabilities, targets, "single_label", training.loss_func, 0.5)

    fitted, plain = opened("probe", "--head_init=probe"), opened("plain")
    backbone = torch.load(setup / "backbone.pth", weights_only=True)["model"]
    state = fitted.raw_model.state_dict()
    assert all(torch.equal(state[f"base.{key}"], value) for key, value in backbone.items())
    recorded = fitted.statistics.statistics["head_init"]
    measured = training_clips_score(fitted)
    assert measured["loss"] == pytest.approx(recorded["loss"], rel=1e-3, abs=1e-4)
    assert measured["accuracy"] == recorded["accuracy"] > 0.9
    assert measured["loss"] < 0.5 * training_clips_score(plain)["loss"]
    assert "head_init" not in plain.statistics.statistics
    for training in (fitted, plain):
        training.run_folder.release()


def test_head_init_is_fitted_once_and_a_resumed_run_keeps_its_head(setup):
    common = ["train", f"--workspace={setup}", "--model_type=Transfer_Cnn6", "--head_init=probe",
              f"--pretrained_checkpoint_path={setup}/backbone.pth", "--batch_size=8",
              "--num_workers=0", "--holdout_fold=1", "--augmentation=none", "--save_every=1",
              "--eval_every=1"]
    main.main(common + ["--stop_iteration=1"])
    main.main(common + ["--stop_iteration=2", "--resume_iteration=1"])
    log_dir = os.path.join(setup, "logs", "main", "holdout_fold=1", "Transfer_Cnn6", "pretrain=True",
                           "loss_type=clip_nll", "augmentation=none", "batch_size=8",
                           "freeze_base=False")
    with open(os.path.join(log_dir, "train.log")) as f:
        log = f.read()
    assert log.count("--head_init=probe: head fitted") == 1 and "resumed from" in log


def test_head_init_needs_a_backbone(tmp_path, features):
    from utils.utilities import UsageError
    with pytest.raises(UsageError, match="--head_init=probe: needs --pretrained_checkpoint_path"):
        parsed_run(tmp_path, features, "--model_type=Transfer_Cnn6", "--head_init=probe")
