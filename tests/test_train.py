"""Training through pytorch/main.py on a tiny packed set: statistics, checkpoints, resume, freeze."""
import csv
import glob
import os
import re

import numpy as np
import pytest
import torch

from pytorch import main as main_script
from helpers import load_statistics, parsed_run, run_dir, run_script, train, visible_files
from pytorch.checkpoints import load_checkpoint_file
from pytorch.models import create_model

AUDIO = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000)



@pytest.mark.parametrize("augmentation", ["mixup", "none"])
def test_training_writes_statistics_and_checkpoints(tmp_path, features, augmentation):
    train(tmp_path, features, "--holdout_fold=1", f"--augmentation={augmentation}",
          "--stop_iteration=4", "--eval_every=2", "--save_every=2")
    statistics = load_statistics(tmp_path, augmentation=augmentation)
    assert [entry["iteration"] for entry in statistics["validate"]] == [0, 2, 4]
    assert [entry["iteration"] for entry in statistics["train"]] == [1, 2, 3, 4]
    assert all(np.isfinite(entry["loss"]) for entry in statistics["train"])
    validation = statistics["validate"][-1]
    assert 0 <= validation["accuracy"] <= 1 and len(validation["per_class_f1"]) == 3
    assert statistics["meta"]["labels"] == ["high", "low", "mid"]
    checkpoints = run_dir(tmp_path, "checkpoints", augmentation=augmentation)
    assert sorted(visible_files(checkpoints)) == ["2_iterations.pth", "4_iterations.pth"]
    # Training checkpoints load weights-only: no code runs to resume, evaluate or infer.
    checkpoint = load_checkpoint_file(os.path.join(checkpoints, "4_iterations.pth"))
    assert checkpoint["iteration"] == 4 and checkpoint["config"]["labels"] == ["high", "low", "mid"]
    assert checkpoint["config"]["audio"]["clip_samples"] == 32000
    first = load_checkpoint_file(os.path.join(checkpoints, "2_iterations.pth"))
    assert not torch.equal(first["model"]["fc_transfer.weight"], checkpoint["model"]["fc_transfer.weight"])
    backups = glob.glob(os.path.join(run_dir(tmp_path, "statistics", augmentation=augmentation),
                                     "statistics_*.pickle"))
    assert len(backups) == 1  # the original's timestamped backup
    assert os.path.isfile(os.path.join(run_dir(tmp_path, "logs", augmentation=augmentation), "train.log"))


@pytest.mark.slow
def test_transfer_cnn14_trains_its_base_and_head_not_the_audioset_classifier(tmp_path, features):
    train(tmp_path, features, "--stop_iteration=2", "--eval_every=2", "--save_every=1",
          model="Transfer_Cnn14")
    statistics = load_statistics(tmp_path, model="Transfer_Cnn14")
    assert len(statistics["train"]) == 2 and np.isfinite(statistics["train"][-1]["loss"])
    first, second = (load_checkpoint_file(os.path.join(
        run_dir(tmp_path, "checkpoints", model="Transfer_Cnn14"), f"{i}_iterations.pth"))["model"]
        for i in (1, 2))
    for key in ("fc_transfer.weight", "base.conv_block1.conv1.weight", "base.fc1.weight"):
        assert not torch.equal(first[key], second[key]), key  # every part the step trains
    torch.testing.assert_close(first["base.fc_audioset.weight"], second["base.fc_audioset.weight"],
                               rtol=0, atol=0)  # unused by the head: no gradient, no change


@pytest.mark.slow
def test_resume_replays_the_uninterrupted_run(tmp_path, features):
    common = ["--stop_iteration=6", "--eval_every=2", "--save_every=3", "--augmentation=mixup"]
    train(tmp_path / "straight", features, *common)
    train(tmp_path / "resumed", features, *common[1:], "--stop_iteration=3")
    train(tmp_path / "resumed", features, *common, "--resume_iteration=3")
    straight = load_statistics(tmp_path / "straight")
    resumed = load_statistics(tmp_path / "resumed")
    assert [e["iteration"] for e in resumed["train"]] == list(range(1, 7))
    np.testing.assert_allclose([e["loss"] for e in resumed["train"]],
                               [e["loss"] for e in straight["train"]], rtol=1e-5)
    assert [e["iteration"] for e in resumed["validate"]] == [0, 2, 3, 4, 6]
    final = [load_checkpoint_file(os.path.join(run_dir(tmp_path / name, "checkpoints"),
                                               "6_iterations.pth"))["model"]
             for name in ("straight", "resumed")]
    for key in final[0]:
        torch.testing.assert_close(final[0][key], final[1][key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_frozen_pretrained_base_stays_put(tmp_path, features):
    pretrained = create_model("Cnn6", **AUDIO, classes_num=527)
    checkpoint_path = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"model": pretrained.state_dict(), "iteration": 0}, checkpoint_path)
    train(tmp_path, features, f"--pretrained_checkpoint_path={checkpoint_path}", "--freeze_base",
          "--stop_iteration=3", "--eval_every=3", "--save_every=3")
    trained = load_checkpoint_file(os.path.join(run_dir(tmp_path, "checkpoints", freeze_base=True,
                                              pretrain=True), "3_iterations.pth"))["model"]
    for key, value in pretrained.state_dict().items():  # weights and BN statistics alike
        assert torch.equal(trained[f"base.{key}"], value), key
    assert not torch.equal(trained["fc_transfer.weight"],
                           create_model("Transfer_Cnn6", **AUDIO, classes_num=3).state_dict()["fc_transfer.weight"])


@pytest.mark.slow
def test_mismatched_pretrained_checkpoint_fails_clearly(tmp_path, features):
    state = create_model("Cnn6", **AUDIO, classes_num=527).state_dict()
    state["fc1.weight"] = state["fc1.weight"][:, :10]
    state["renamed.weight"] = state.pop("fc_audioset.weight")
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", "--model_type=Transfer_Cnn6",
                        f"--pretrained_checkpoint_path={path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "bad.pth" in message and "fc1.weight" in message and "fc_audioset.weight" in message


@pytest.mark.parametrize("flag, expected", [
    ("--holdout_fold=11", "--holdout_fold"),
    ("--fmax=20000", "fmax"),
    ("--features=/nonexistent.h5", "--features"),
    ("--batch_size=0", "--batch_size"),
])
@pytest.mark.slow
def test_bad_flags_exit_2_with_one_line(tmp_path, features, flag, expected):
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", "--model_type=Transfer_Cnn6", flag)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_keep_best_and_early_stop(tmp_path, features):
    train(tmp_path, features, "--stop_iteration=50", "--eval_every=1", "--save_every=100",
          "--keep_best", "--early_stop_patience=2", "--learning_rate=1e-12")
    statistics = load_statistics(tmp_path)
    # A tiny learning rate changes nothing: the first candidate (iteration 1: the untrained
    # model at 0 never is one) stays the best, and 2 evaluations later the run stops.
    assert [e["iteration"] for e in statistics["validate"]] == [0, 1, 2, 3]
    checkpoints = run_dir(tmp_path, "checkpoints")
    assert sorted(visible_files(checkpoints)) == ["3_iterations.pth", "best.pth"]
    assert load_checkpoint_file(os.path.join(checkpoints, "best.pth"))["iteration"] == 1
    with open(os.path.join(run_dir(tmp_path, "logs"), "train.log")) as f:
        log = f.read()
    # the validation line that chose best.pth comes before the line that saved it
    assert log.index("iteration 1: validation") < log.index("best.pth") < log.index(
        "iteration 2: validation")


def test_the_logged_training_loss_is_the_mean_since_the_last_validation(tmp_path, features):
    train(tmp_path, features, "--stop_iteration=6", "--eval_every=3", "--save_every=6",
          "--augmentation=none")
    losses = {e["iteration"]: e["loss"] for e in load_statistics(tmp_path, augmentation="none")["train"]}
    with open(os.path.join(run_dir(tmp_path, "logs", augmentation="none"), "train.log")) as f:
        logged = re.findall(r"train loss ([\d.]+) \(mean of iterations (\d+)-(\d+)\)", f.read())
    assert [(int(first), int(last)) for _, first, last in logged] == [(1, 3), (4, 6)]
    for value, first, last in logged:
        window = [losses[i] for i in range(int(first), int(last) + 1)]
        assert float(value) == pytest.approx(np.mean(window), abs=1e-4)
        assert float(value) != pytest.approx(window[-1], abs=1e-4)  # not the last batch alone


@pytest.mark.slow
def test_all_folds_then_summary(tmp_path, features):
    train(tmp_path, features, "--holdout_fold=all", "--stop_iteration=1", "--eval_every=1",
          "--augmentation=none")
    finals = [load_statistics(tmp_path, augmentation="none", fold=fold)["validate"][-1]["accuracy"]
              for fold in range(1, 11)]
    summary_dir = os.path.join(tmp_path, "results", "Transfer_Cnn6", "pretrain=False",
                               "loss_type=clip_nll", "augmentation=none", "batch_size=4",
                               "freeze_base=False")
    with open(os.path.join(summary_dir, "cv_summary.csv")) as f:
        rows = {row["fold"]: row for row in csv.DictReader(f)}
    assert [float(rows[str(fold)]["final_accuracy"]) for fold in range(1, 11)] == pytest.approx(finals)
    assert float(rows["mean"]["final_accuracy"]) == pytest.approx(np.mean(finals))
    assert float(rows["std"]["final_accuracy"]) == pytest.approx(np.std(finals, ddof=1))
    assert os.path.getsize(os.path.join(summary_dir, "cv_summary.png")) > 1000


def write_fake_gtzan(path, seconds=0.7, sample_rate=32000):
    """All 1000 GTZAN names (packing order) with quiet noise: enough for the filtered split."""
    import h5py
    from utils.config import GTZAN_LABELS
    names = [f"{label}.{clip:05d}.wav" for label in GTZAN_LABELS for clip in range(100)]
    samples = int(seconds * sample_rate)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("audio_name", data=names, dtype=h5py.string_dtype())
        hf.create_dataset("waveform", data=rng.integers(-300, 300, (1000, samples), dtype=np.int16))
        hf.create_dataset("target", data=np.repeat(np.eye(10, dtype=np.float32), 100, axis=0))
        hf.create_dataset("fold", data=np.tile(np.arange(1, 11, dtype=np.int32), 100))
        hf.attrs.update({"sample_rate": sample_rate, "clip_samples": samples,
                         "labels": GTZAN_LABELS, "task": "single_label"})
    return path


@pytest.mark.slow
def test_filtered_split_trains_on_train_and_reports_test(tmp_path):
    features = write_fake_gtzan(str(tmp_path / "gtzan.h5"))
    train(tmp_path, features, "--split=filtered", "--stop_iteration=1", "--eval_every=1",
          "--keep_best", "--augmentation=none", "--batch_size=16")
    statistics = load_statistics(tmp_path, augmentation="none", batch_size=16, fold="filtered")
    assert statistics["meta"]["split"] == "filtered"
    assert [e["iteration"] for e in statistics["validate"]] == [0, 1]
    assert sum(statistics["validate"][-1]["confusion_matrix"][0]) == 23  # blues in valid
    test = statistics["test"]
    assert np.sum(test["confusion_matrix"]) == 290 and test["chosen"].startswith("best.pth")


def test_the_command_line_builds_one_run_config(tmp_path, features):
    run = parsed_run(tmp_path, features, "--holdout_fold=filtered", "--model_type=Transfer_Cnn6")
    assert (run.split, run.holdout_fold, run.learning_rate, run.threshold) == (
        "filtered", "filtered", 1e-4, 0.5)
    run = parsed_run(tmp_path, features, "--in_memory=no", "--precision=bf16")
    assert (run.in_memory, run.precision, run.compile, run.channels_last) == (False, "bf16", False, False)
    from utils.utilities import UsageError
    with pytest.raises(UsageError, match="--holdout_fold=filtered goes with --split=filtered"):
        parsed_run(tmp_path, features, "--holdout_fold=filtered", "--split=subsets")


def test_every_declared_option_is_a_train_flag_with_its_declared_default(tmp_path, features):
    """One declaration per option: each RunConfig/AudioConfig option parses from its flag, and a
    command line that names none gives the declared defaults (or None where the command
    decides, as the declaration says)."""
    import dataclasses
    from utils.config import AudioConfig, RunConfig, option_flag, options
    args = main_script.build_parser().parse_args(["train", f"--workspace={tmp_path}"])
    for name, field in {**options(RunConfig), **options(AudioConfig)}.items():
        flag, settings = option_flag(field)
        decided_later = field.metadata["option"]["flag_default"] is not dataclasses.MISSING
        assert getattr(args, name) == (None if decided_later else field.default), flag
    run = parsed_run(tmp_path, features, "--model_type=Transfer_Cnn6")
    assert (run.seed, run.eval_every, run.spec_augment, run.optimizer) == (1234, 200, True, "adam")
    run = parsed_run(tmp_path, features, "--model_type=Transfer_Cnn6", "--no_spec_augment",
                     "--freeze_base=True", "--sampler=balanced", "--mel_bins=32")
    assert (run.spec_augment, run.freeze_base, run.sampler, run.audio.mel_bins) == (
        False, True, "balanced", 32)


def test_building_a_run_writes_nothing_until_it_is_opened(tmp_path, features):
    from pytorch.train import TrainingRun
    run = parsed_run(tmp_path / "ws", features, "--model_type=Transfer_Cnn6", "--batch_size=4",
                     "--num_workers=0", "--learning_rate=1e-3")
    training = TrainingRun(run)
    assert training.optimizer.param_groups[0]["lr"] == 1e-3 and len(training.train_indices) == 27
    assert not os.path.exists(tmp_path / "ws") and training.dirs is None
    training.open(str(tmp_path / "ws"))
    assert os.path.isfile(os.path.join(training.dirs["statistics"], "run.json"))
    assert os.path.isfile(os.path.join(training.dirs["logs"], "train.log"))
    training.run_folder.release()


def test_mixup_alpha_shapes_the_mixing_weights(tmp_path, features):
    """--mixup_alpha reaches mixup: Beta(0.1, 0.1) puts most weights near 0 or 1, the
    published Beta(1, 1) spreads them evenly."""
    from pytorch.train import TrainingRun

    def weights(*flags):
        run = parsed_run(tmp_path, features, "--model_type=Transfer_Cnn6", "--num_workers=0",
                         *flags)
        return TrainingRun(run).mixup.get_lambda(4000)

    near_the_ends = lambda lam: np.mean((lam < 0.05) | (lam > 0.95))  # noqa: E731
    assert near_the_ends(weights("--mixup_alpha=0.1")) > 0.6
    assert near_the_ends(weights()) == pytest.approx(0.1, abs=0.03)


def test_all_folds_resume_where_each_fold_stopped(tmp_path, features):
    import dataclasses
    import pickle
    from pytorch.cross_validation import fold_command, resume_point
    from utils.runs import run_dirs
    command = fold_command(["train", "--holdout_fold", "all", "--resume_iteration=3", "--cuda"], 4, 7)
    assert command[2:] == ["train", "--cuda", "--holdout_fold=4", "--resume_iteration=7"]
    run = parsed_run(tmp_path, features, "--holdout_fold=all", "--model_type=Transfer_Cnn6")
    folds = [dataclasses.replace(run, holdout_fold=fold) for fold in (1, 2, 3)]
    dirs = [run_dirs(tmp_path, fold) for fold in folds]
    os.makedirs(dirs[1]["checkpoints"])
    for iteration in (5, 10):
        open(os.path.join(dirs[1]["checkpoints"], f"{iteration}_iterations.pth"), "wb").close()
    os.makedirs(dirs[2]["statistics"])
    with open(os.path.join(dirs[2]["statistics"], "statistics.pickle"), "wb") as f:
        pickle.dump({"validate": [], "train": [], "finished": {"iteration": 2000}}, f)
    assert [resume_point(fold, tmp_path) for fold in folds] == [0, 10, None]
