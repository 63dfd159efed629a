"""The metrics stream: TensorBoard events and metrics.csv beside the statistics, read back with
TensorBoard's own reader, equal to the statistics pickle, also across a resume."""
import csv
import os
import shlex
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.data_ingester import _parse_event_files_spec
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from helpers import REPO_DIR, load_statistics, run_dir, train
from pytorch.metrics_stream import METRICS_CSV, scalars


def tensorboard_scalars(folder):
    events = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0: keep every value
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def csv_scalars(folder):
    found = {}
    with open(os.path.join(folder, METRICS_CSV), newline="") as f:
        for row in csv.DictReader(f):
            found.setdefault(row["tag"], []).append((int(row["iteration"]), float(row["value"])))
    return found


def expected_scalars(statistics):
    labels = statistics["meta"]["labels"]
    found = {}
    for kind in ("train", "validate"):
        for entry in statistics[kind]:
            for tag, value in scalars(kind, entry, labels):
                found.setdefault(tag, []).append((entry["iteration"], value))
    return found


def assert_same_scalars(got, expected):
    assert sorted(got) == sorted(expected)
    for tag in expected:
        assert [step for step, _ in got[tag]] == [step for step, _ in expected[tag]], tag
        assert [value for _, value in got[tag]] == pytest.approx(
            [value for _, value in expected[tag]], rel=1e-6), tag


def test_scalars_flatten_per_label_lists_and_nested_averages():
    entry = {"iteration": 4, "accuracy": 0.5, "per_class_f1": [0.1, float("nan"), 0.3],
             "averages": {"micro": {"precision": 0.25}}, "confusion_matrix": [[1, 0], [0, 1]],
             "chosen": "best.pth"}
    assert scalars("validate", entry, ["a", "b", "c"]) == [
        ("validate/accuracy", 0.5), ("validate/per_class_f1/a", 0.1),
        ("validate/per_class_f1/c", 0.3), ("validate/averages/micro/precision", 0.25)]


@pytest.mark.slow
def test_tensorboard_and_csv_hold_the_statistics_also_after_a_resume(tmp_path, features):
    """A run to 6, then its tail re-run from the checkpoint at 3 (as after a crash at 5): the
    events and the CSV show each iteration once, with the values of the statistics."""
    common = ["--stop_iteration=6", "--eval_every=2", "--save_every=3", "--holdout_fold=1"]
    train(tmp_path, features, *common)
    folder = run_dir(tmp_path, "statistics")
    first = tensorboard_scalars(folder)
    train(tmp_path, features, *common, "--resume_iteration=3")
    statistics = load_statistics(tmp_path)
    expected = expected_scalars(statistics)
    assert {"train/loss", "train/learning_rate", "train/clips_per_s", "validate/accuracy",
            "validate/loss", "validate/per_class_f1/high"} <= set(expected)
    assert [step for step, _ in expected["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert_same_scalars(tensorboard_scalars(folder), expected)
    assert_same_scalars(csv_scalars(folder), expected)
    # the resumed tail recomputes what the first run had: the same losses
    assert [v for _, v in first["train/loss"]] == pytest.approx(
        [v for _, v in expected["train/loss"]], rel=1e-5)


@pytest.mark.slow
def test_two_folds_appear_as_two_runs_under_one_logdir(tmp_path, features):
    for fold in (1, 2):
        train(tmp_path, features, "--stop_iteration=2", "--eval_every=2", "--save_every=2",
              f"--holdout_fold={fold}")
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "statistics"))
    multiplexer.Reload()
    runs = sorted(multiplexer.Runs())
    assert len(runs) == 2 and "holdout_fold=1" in runs[0] and "holdout_fold=2" in runs[1]
    for run, fold in zip(runs, (1, 2)):
        statistics = load_statistics(tmp_path, fold=fold)
        accuracy = [(e.step, e.value) for e in multiplexer.Scalars(run, "validate/accuracy")]
        assert accuracy == [(e["iteration"], pytest.approx(e["accuracy"]))
                            for e in statistics["validate"]]
    # `runs --tensorboard` names the same two runs by what sets them apart, for TensorBoard's
    # own spec parser, and each name points at the folder holding that fold's events
    printed = subprocess.run([sys.executable, "pytorch/main.py", "runs", f"--workspace={tmp_path}",
                              "--tensorboard"], cwd=REPO_DIR, capture_output=True, text=True,
                             check=True).stdout
    words = shlex.split(printed)
    assert words[0] == "tensorboard" and words[1].startswith("--logdir_spec=")
    named = _parse_event_files_spec(words[1].partition("=")[2])
    assert sorted(named.values()) == ["holdout_fold=1", "holdout_fold=2"]
    for folder, name in named.items():
        assert folder == run_dir(tmp_path, "statistics", fold=int(name[-1]))
