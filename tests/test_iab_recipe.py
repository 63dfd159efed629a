"""IAB as the original projects built it: the seed CSV format with its train / validate / test
sets, a held-out test score, the per-label cap, balanced sampling, model selection by a chosen
metric and per-label thresholds tuned on validation."""
import json
import os

import h5py
import numpy as np
import pytest

from helpers import run_script, write_tone
from pytorch import main
from pytorch.checkpoints import load_checkpoint_file
from pytorch.evaluate import evaluate_checkpoint
from pytorch.selection import BestTracker
from utils.data_generator import BalancedTrainSampler
from utils.iab_labels import load_label_set
from utils.iab_sources import cap_per_label
from utils.metrics import multi_label_metrics, tune_thresholds
from utils.statistics_files import load_statistics

LABELS = load_label_set(5)  # Automotive, Food & Drink, Pets, War & Conflicts, Music
VECTORS = ["[1, 0, 0, 0, 0]", "[0, 1, 0, 0, 0]", "[0, 0, 1, 0, 0]", "[0, 0, 0, 1, 0]",
           "[0, 0, 0, 0, 1]", "[1, 0, 0, 0, 1]"]


def write_seed(root, counts=(18, 6, 6)):
    """The seed format: train / validate / test CSVs (ID, IAB Vector) and a folder of wavs."""
    for subset, count in zip(("train", "validate", "test"), counts):
        lines = ["ID,IAB Vector"]
        for index in range(count):
            kind = index % len(VECTORS)
            clip_id = f"{subset}_{index:02d}"
            write_tone(str(root / "wavs" / f"{clip_id}.wav"), 200.0 * (kind + 1), 1.0, 32000)
            lines.append(f'{clip_id}.wav,"{VECTORS[kind]}"')
        (root / f"{subset}.csv").write_text("\n".join(lines) + "\n")


def pack_seed(root, workspace, *extra):
    return run_script("utils/features.py", "pack_iab_seed_to_hdf5",
                      f"--train_csv={root}/train.csv", f"--validate_csv={root}/validate.csv",
                      f"--test_csv={root}/test.csv", f"--audio_dir={root}/wavs",
                      f"--workspace={workspace}", "--clip_duration=1", "--num_workers=1", *extra)


@pytest.mark.slow
def test_seed_trio_packs_and_trains_with_a_test_score_and_tuned_thresholds(tmp_path):
    write_seed(tmp_path)
    result = pack_seed(tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "features" / "waveform.h5") as hf:
        subsets = [value.decode() for value in hf["subset"][:]]
        assert [str(label) for label in hf.attrs["labels"]] == LABELS
        assert subsets.count("train") == 18 and subsets.count("valid") == 6
        assert subsets.count("test") == 6

    main.main(["train", f"--workspace={tmp_path}", "--split=subsets", "--model_type=Transfer_Cnn6",
               "--augmentation=none", "--batch_size=4", "--num_workers=0", "--stop_iteration=4",
               "--eval_every=2", "--keep_best", "--select_by=macro_f1"])
    run = tmp_path / "statistics" / "main" / "holdout_fold=subsets" / "Transfer_Cnn6"
    [statistics_path] = list(run.glob("**/statistics.pickle"))
    statistics = load_statistics(str(statistics_path))
    test = statistics["test"]
    assert "best.pth" in test["chosen"] and 0 <= test["mAP"] <= 1
    assert set(test["tuned"]) >= {"macro_f1", "micro_f1", "per_class_f1"}
    thresholds = statistics["thresholds"]
    assert len(thresholds["values"]) == 5
    assert thresholds["validation_macro_f1_tuned"] >= thresholds["validation_macro_f1_fixed"]

    [best] = list((tmp_path / "checkpoints").glob("**/best.pth"))
    assert load_checkpoint_file(str(best))["thresholds"] == thresholds["values"]
    # evaluate: by default the run's test set, at 0.5 and at the stored thresholds
    evaluated = evaluate_checkpoint(str(best), write=False)
    assert evaluated["selection"] == "subsets_test" and evaluated["clips_num"] == 6
    assert evaluated["macro_f1"] == pytest.approx(test["macro_f1"])
    assert evaluated["tuned"]["macro_f1"] == pytest.approx(test["tuned"]["macro_f1"])


def test_malformed_iab_vector_is_one_line_naming_the_row(tmp_path):
    write_seed(tmp_path, counts=(3, 2, 2))
    text = (tmp_path / "validate.csv").read_text().splitlines()
    text[2] = 'validate_01.wav,"[1, 0, 2]"'
    (tmp_path / "validate.csv").write_text("\n".join(text) + "\n")
    result = pack_seed(tmp_path, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "validate.csv line 3" in message and "'[1, 0, 2]'" in message
    assert '"[1, 0, 0, 1, 0]"' in message


def test_a_clip_in_two_sets_is_refused(tmp_path):
    write_seed(tmp_path, counts=(3, 2, 2))
    with open(tmp_path / "test.csv", "a") as f:
        f.write('train_00.wav,"[1, 0, 0, 0, 0]"\n')
    result = pack_seed(tmp_path, tmp_path)
    assert result.returncode == 2 and "also in the train set" in result.stderr


def test_cap_gives_the_requested_counts_deterministically():
    rng = np.random.default_rng(0)
    targets = rng.random((2000, 5)) < [0.6, 0.05, 0.02, 0.3, 0.1]
    kept = cap_per_label(targets, 50, seed=3)
    counts = targets[kept].sum(axis=0)
    available = targets.sum(axis=0)
    # Rare labels keep every clip; the others reach the cap, above it only through rarer ones.
    assert counts[2] == available[2] and counts[1] == 50
    assert all(count >= min(50, have) for count, have in zip(counts, available))
    assert np.array_equal(kept, cap_per_label(targets, 50, seed=3))
    assert not np.array_equal(kept, cap_per_label(targets, 50, seed=4))
    unlabelled = ~targets.any(axis=1)
    assert unlabelled[kept].sum() == min(50, unlabelled.sum())


@pytest.mark.slow
def test_cap_when_packing_and_in_the_dry_run(tmp_path):
    car, dog, music = "/m/0k4j", "/m/0bt9lr", "/m/04rlf"
    lines = ["# YTID, start_seconds, end_seconds, positive_labels"]
    for index in range(24):
        mids = [car] if index < 4 else [dog] if index < 8 else [music]
        lines.append(f'clip{index:02d}, 0.000, 10.000, "{",".join(mids)}"')
        write_tone(str(tmp_path / "audio" / f"Yclip{index:02d}.wav"), 300 + index, 0.5, 32000)
    (tmp_path / "segments.csv").write_text("\n".join(lines) + "\n")
    common = ["utils/features.py", "pack_audioset_to_hdf5", f"--segments_csv={tmp_path}/segments.csv",
              f"--workspace={tmp_path}", "--max_clips_per_label=5"]
    dry = run_script(*common, "--dry_run")
    assert dry.returncode == 0, dry.stderr
    music_row = next(line for line in dry.stdout.splitlines() if line.startswith("Music"))
    assert music_row.split()[-1] == "5" and "with the cap: 13 clips" in dry.stdout
    packed = run_script(*common, f"--audio_dir={tmp_path}/audio", "--clip_duration=0.5",
                        "--num_workers=1")
    assert packed.returncode == 0, packed.stderr
    with h5py.File(tmp_path / "features" / "waveform.h5") as hf:
        counts = hf["target"][:].sum(axis=0)
    assert counts[LABELS.index("Music")] == 5 and counts[LABELS.index("Automotive")] == 4


def test_tuned_thresholds_raise_validation_macro_f1():
    """A label whose positives score 0.3-0.4 (below 0.5) and negatives 0.1-0.2."""
    rng = np.random.default_rng(0)
    targets = np.zeros((40, 2))
    targets[:20, 0] = 1
    targets[::2, 1] = 1
    probabilities = np.where(targets == 1, rng.uniform(0.3, 0.4, targets.shape),
                             rng.uniform(0.1, 0.2, targets.shape))
    probabilities[:, 1] = np.where(targets[:, 1] == 1, 0.9, 0.05)
    thresholds = tune_thresholds(probabilities, targets)
    fixed = multi_label_metrics(probabilities, targets, 0.5)["macro_f1"]
    tuned = multi_label_metrics(probabilities, targets, thresholds)["macro_f1"]
    assert fixed == pytest.approx(0.5) and tuned == pytest.approx(1.0)
    assert 0.2 < thresholds[0] <= 0.3 and thresholds[1] == 0.5  # ties: nearest 0.5


def test_select_by_picks_the_best_of_that_metric():
    history = [{"accuracy": 0.5, "macro_f1": 0.30, "mAP": 0.4},
               {"accuracy": 0.7, "macro_f1": 0.20, "mAP": 0.5},
               {"accuracy": 0.6, "macro_f1": 0.45, "mAP": 0.3}]
    for metric, expected in (("accuracy", 1), ("macro_f1", 2), ("mAP", 1)):
        tracker = BestTracker(metric)
        for iteration, result in enumerate(history):
            tracker.update(result, iteration)
        assert tracker.best_iteration == expected


@pytest.mark.slow
def test_select_by_in_training_keeps_the_checkpoint_of_the_best_macro_f1(tmp_path, features):
    main.main(["train", f"--workspace={tmp_path}", f"--features={features}",
               "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
               "--stop_iteration=6", "--eval_every=2", "--keep_best", "--select_by=macro_f1",
               "--learning_rate=1e-3"])
    [statistics_path] = list(tmp_path.glob("statistics/**/statistics.pickle"))
    validate = load_statistics(str(statistics_path))["validate"]
    assert validate[0]["iteration"] == 0  # validated for the curve ...
    trained = validate[1:]  # ... but the untrained model is never a candidate
    scores = [entry["macro_f1"] for entry in trained]
    [best] = list(tmp_path.glob("checkpoints/**/best.pth"))
    assert load_checkpoint_file(str(best))["iteration"] == trained[int(np.argmax(scores))]["iteration"]


@pytest.mark.slow
def test_select_by_map_is_refused_for_single_label(tmp_path, features):
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", "--select_by=mAP")
    assert result.returncode == 2
    assert "--select_by=mAP: a single_label run is scored by accuracy, macro_f1" in result.stderr


def test_balanced_sampler_draws_labels_equally_and_resumes():
    targets = np.zeros((100, 3))
    targets[:80, 0] = 1
    targets[80:95, 1] = 1  # 5 clips with no label
    sampler = BalancedTrainSampler(np.arange(100), targets, batch_size=8, seed=1)
    drawn = np.concatenate([sampler.next_batch() for _ in range(100)])
    groups = np.bincount(np.where(targets[drawn].any(axis=1), targets[drawn].argmax(axis=1), 2),
                         minlength=3)
    assert abs(groups - 800 / 3).max() <= 1  # 800 draws over 3 groups, one per turn
    state = sampler.state_dict()
    following = [sampler.next_batch() for _ in range(3)]
    resumed = BalancedTrainSampler(np.arange(100), targets, batch_size=8, seed=1)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(3)] == following


def test_zero_shot_drops_present_ancestors_like_packing():
    """An aircraft the tagger hears with Vehicle high: Vehicle's Automotive does not count."""
    from pytorch.zero_shot import map_audioset_to_labels
    from utils.iab_labels import drop_present_ancestors, mapping_matrix, read_audioset_classes
    from utils.iab_labels import mids_to_target

    index = {mid: position for position, (mid, _) in enumerate(read_audioset_classes())}
    aircraft, vehicle, car = "/m/0k5j", "/m/07yv9", "/m/0k4j"
    heard = np.zeros((2, 527))
    heard[0, [index[aircraft], index[vehicle]]] = 0.9
    heard[1, [index[car], index[vehicle]]] = 0.9
    automotive = LABELS.index("Automotive")
    union = map_audioset_to_labels(heard, mapping_matrix(5))[:, automotive]
    specific = map_audioset_to_labels(drop_present_ancestors(heard), mapping_matrix(5))[:, automotive]
    assert union.tolist() == [0.9, 0.9] and specific.tolist() == [0.0, 0.9]
    # the same decisions as packing makes for the labels {Aircraft, Vehicle} and {Car, Vehicle}
    assert mids_to_target([aircraft, vehicle], 5)[automotive] == 0
    assert mids_to_target([car, vehicle], 5)[automotive] == 1


def test_committed_csv_errors_do_not_blame_a_flag(tmp_path):
    """A label-set CSV that is not UTF-8 is named by its path alone; only a file given by a flag
    is named with that flag."""
    from utils.iab_labels import read_label_set_csv
    from utils.utilities import UsageError

    bad = tmp_path / "labels.csv"
    bad.write_bytes("label\nCaf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError) as error:
        read_label_set_csv(str(bad))
    assert str(error.value).startswith(f"{bad}: not UTF-8") and "--mapping" not in str(error.value)
    with pytest.raises(UsageError, match=r"^--labels=.*labels.csv: not UTF-8"):
        read_label_set_csv(str(bad), "--labels")


def write_seed_like(root, num_labels, counts=(8, 4, 4), video_leak=False):
    """Seed-style data as the original projects had it: wavs named by audioset-processing
    ({ytid}_{start:.3f}.wav), train / validate / test CSVs as pandas writes them, vectors in
    both spellings (Python's "[1, 0]" and NumPy's "[1 0]"), an all-zero row in every set."""
    for subset, count in zip(("train", "validate", "test"), counts):
        lines = ["ID,IAB Vector"]
        for index in range(count):
            vector = np.zeros(num_labels, dtype=int)
            if index:  # the first clip of each set has no label: a negative
                vector[(index - 1) % 3] = 1
            video = f"{subset[:2]}{index:03d}-X_fH"[:11]
            clip_id = f"{video}_{30.0 * index + 0.8:.3f}.wav"
            write_tone(str(root / "wavs" / clip_id), 200.0 * (index % 3 + 1), 1.0, 32000)
            spelled = (str(vector.tolist()) if index % 2 else str(vector)).replace("\n", "")
            lines.append(f'{clip_id},"{spelled}"')
        if video_leak and subset == "test":  # a clip of a training video, at another start
            write_tone(str(root / "wavs" / "tr001-X_fH_90.000.wav"), 300.0, 1.0, 32000)
            lines.append('tr001-X_fH_90.000.wav,"' + str([1] + [0] * (num_labels - 1)) + '"')
        (root / f"{subset}.csv").write_text("\n".join(lines) + "\n")


def run_iab_seed(root, *extra):
    import subprocess
    import sys
    from helpers import REPO_DIR
    seed_csvs = " ".join(f"{root}/{name}.csv" for name in ("train", "validate", "test"))
    return subprocess.run(
        ["bash", os.path.join(REPO_DIR, "scripts", "iab.sh"), f"AUDIO_DIR={root}/wavs",
         f"SEED_CSVS={seed_csvs}", "RECIPE=seed", f"WORKSPACE={root}/ws", "CUDA=0",
         "NUM_WORKERS=1", "PACK_FLAGS=--clip_duration=1", *extra],  # 1-s clips: quick steps
        capture_output=True, text=True, cwd=REPO_DIR,
        env=dict(os.environ, PYTHON=sys.executable))  # this interpreter: nothing to install


@pytest.mark.slow
def test_seed_recipe_script_end_to_end(tmp_path, capsys, num_labels=5):
    """scripts/iab.sh RECIPE=seed on seed-style data: the seeds' batch (32) and epochs (100 or
    50, from the vectors' length), their negatives kept, their macro-F1, a report per
    validation, zero-shot on the same test set; the same command again continues."""
    import torch
    from pytorch.models import Cnn6
    from sklearn.metrics import classification_report
    write_seed_like(tmp_path, num_labels)
    torch.manual_seed(0)
    torch.save({"model": Cnn6(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64,
                              fmin=50, fmax=14000).state_dict()}, tmp_path / "Cnn6_mAP=0.343.pth")
    result = run_iab_seed(tmp_path, f"PRETRAINED_CHECKPOINT_PATH={tmp_path}/Cnn6_mAP=0.343.pth",
                          "STOP_ITERATION=2", "--eval_every=1")
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = 50 if num_labels == 20 else 100
    assert f"recipe seed, {num_labels} labels, batch 32" in result.stdout
    assert f"({epochs} epochs are {epochs}; validated every 5" in result.stdout  # 1 step an epoch
    [statistics_path] = list((tmp_path / "ws").glob("statistics/**/statistics.pickle"))
    statistics = load_statistics(str(statistics_path))
    run = json.loads((statistics_path.parent / "run.json").read_text())
    assert (run["augmentation"], run["select_by"], run["batch_size"]) == ("none", "macro_f1", 32)
    assert run["clips"] == 16  # the all-zero rows are kept as negatives
    log = (tmp_path / "ws").glob("logs/**/train.log")
    text = next(log).read_text()
    assert "precision    recall  f1-score   support" in text and "samples avg" in text

    # The test score's macro-F1 is sklearn's classification_report 'macro avg' on the same
    # predictions (evaluate, default: the run's test set).
    [best] = list((tmp_path / "ws").glob("checkpoints/**/best.pth"))
    assert load_checkpoint_file(str(best))["iteration"] > 0  # never the untrained model
    evaluated = evaluate_checkpoint(str(best), write=False)
    report = classification_report(evaluated["targets"] >= 0.5,
                                   evaluated["probabilities"] >= evaluated["threshold"],
                                   output_dict=True, zero_division=0)
    assert evaluated["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert evaluated["clips_num"] == 4
    zero_shot = json.loads(next((tmp_path / "ws" / "results" / "zero_shot").glob(
        "holdout_fold=subsets/*/metrics.json")).read_text())
    assert zero_shot["clips"] == 4  # the same test set

    # The same training command again (iab.sh passes --resume_iteration=last): left as it is.
    main.main(["train", f"--workspace={tmp_path / 'ws'}", f"--features={run['features']}",
               "--split=subsets", f"--pretrained_checkpoint_path={tmp_path}/Cnn6_mAP=0.343.pth",
               "--loss_type=clip_bce", "--augmentation=none", "--learning_rate=1e-4",
               "--batch_size=32", "--stop_iteration=2", "--eval_every=1", "--save_every=2",
               "--keep_best", "--select_by=macro_f1", "--resume_iteration=last"])
    assert "this run finished before" in capsys.readouterr().err


@pytest.mark.slow
def test_twenty_label_vectors_get_the_seeds_twenty_label_setting(tmp_path):
    write_seed_like(tmp_path, 20, counts=(4, 2, 2))
    result = run_iab_seed(tmp_path, "STOP_ITERATION=1", "--model_type=Transfer_Cnn6")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recipe seed, 20 labels, batch 32" in result.stdout
    assert "(50 epochs are 50;" in result.stdout


@pytest.mark.slow
def test_one_video_in_two_sets_is_refused(tmp_path):
    write_seed_like(tmp_path, 5, video_leak=True)
    result = run_iab_seed(tmp_path, "STOP_ITERATION=1")
    assert result.returncode == 2
    assert "tr001-X_fH_90.000.wav and tr001-X_fH_30.800.wav" in result.stderr
    assert "one YouTube video (tr001-X_fH) in the test and train sets" in result.stderr