"""Packing IAB content labels from AudioSet segment CSVs and plain file,labels CSVs."""
import os
import subprocess

import h5py
import numpy as np
import pytest

from helpers import REPO_DIR, run_script, write_tone
from utils.folds import multilabel_stratified_folds
from utils.iab_labels import load_label_set
from utils.iab_sources import mini_data_subset, read_segments_csv

SR = 32000
MUSIC, SPEECH, CAR, DOG, GUNSHOT = "/m/04rlf", "/m/09x0r", "/m/0k4j", "/m/0bt9lr", "/m/032s66"
LABELS_5 = load_label_set(5)

SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:25 2017\n"
    "# num_ytids=24, num_segs=24, num_unique_labels=5, num_positive_labels=30\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n")


def segment_line(ytid, start, mids):
    return f'{ytid}, {start:.3f}, {start + 10:.3f}, "{",".join(mids)}"\n'


def target_of(*labels, label_set=LABELS_5):
    target = np.zeros(len(label_set), dtype=np.float32)
    target[[label_set.index(label) for label in labels]] = 1
    return target


@pytest.fixture
def audioset(tmp_path):
    """20 labelled clips (one YTID starts with '-'), one Speech-only clip (no IAB label), one
    listed clip without audio, and a second CSV repeating a YTID. Audio is written under both
    naming patterns: Y{ytid}.wav in audio/ and {ytid}_{start}.wav in audio_by_start/."""
    mids_cycle = [[MUSIC, SPEECH], [CAR], [DOG], [GUNSHOT], [MUSIC, CAR]]
    rows = [(f"clip{index:03d}", 30 * index, mids_cycle[index % 5]) for index in range(19)]
    rows += [("-dashStart_1", 30, [MUSIC]), ("speechOnly1", 0, [SPEECH])]
    for ytid, start, _ in rows:
        frequency = 300 + 20 * len(ytid) + start / 10
        seconds = 0.5 + (start % 60) / 120  # 0.5 or 0.75 s
        write_tone(str(tmp_path / "audio" / f"Y{ytid}.wav"), frequency, seconds, SR)
        write_tone(str(tmp_path / "audio_by_start" / f"{ytid}_{start}.wav"), frequency, 0.75, SR)
    first = tmp_path / "balanced_train_segments.csv"
    first.write_text(SEGMENTS_HEADER + "".join(segment_line(*row) for row in rows)
                     + segment_line("notDownloaded", 10, [MUSIC]))
    second = tmp_path / "eval_segments.csv"
    second.write_text(SEGMENTS_HEADER + segment_line("clip001", 500, [MUSIC]))
    return tmp_path


def pack_audioset(root, workspace, *extra):
    return run_script("utils/features.py", "pack_audioset_to_hdf5",
                      f"--segments_csv={root / 'balanced_train_segments.csv'}",
                      f"--segments_csv={root / 'eval_segments.csv'}",
                      f"--workspace={workspace}", "--clip_duration=1", "--num_workers=2", *extra)


def read_packed(path):
    with h5py.File(path, "r") as hf:
        names = [name.decode() if isinstance(name, bytes) else name for name in hf["audio_name"][:]]
        return dict(hf.attrs), names, hf["target"][:], hf["fold"][:], hf["waveform"][:]


def test_read_segments_csv_skips_comments_and_keeps_dash_ytids(audioset):
    segments = read_segments_csv(str(audioset / "balanced_train_segments.csv"))
    assert len(segments) == 22
    dashed = [segment for segment in segments if segment.ytid == "-dashStart_1"][0]
    assert dashed.start_seconds == 30.0 and dashed.end_seconds == 40.0 and dashed.mids == (MUSIC,)
    assert segments[0].mids == (MUSIC, SPEECH)


def test_pack_audioset_targets_report_and_folds(audioset):
    workspace = audioset / "ws"
    result = pack_audioset(audioset, workspace, f"--audio_dir={audioset / 'audio'}")
    assert result.returncode == 0, result.stderr
    attrs, names, targets, folds, waveforms = read_packed(workspace / "features" / "waveform.h5")

    assert attrs["task"] == "multi_label" and list(attrs["labels"]) == LABELS_5
    assert attrs["label_set"] == "iab5" and attrs["mapping"] == "metadata/audioset_to_iab_5.csv"
    assert attrs["clip_samples"] == SR and waveforms.shape == (20, SR)
    # Targets through the mapping; Speech maps to nothing, so it adds nothing to the Music clip.
    by_name = dict(zip(names, targets))
    np.testing.assert_array_equal(by_name["Yclip000.wav"], target_of("Music"))
    np.testing.assert_array_equal(by_name["Yclip001.wav"], target_of("Automotive"))
    np.testing.assert_array_equal(by_name["Yclip002.wav"], target_of("Pets"))
    np.testing.assert_array_equal(by_name["Yclip003.wav"], target_of("War & Conflicts"))
    np.testing.assert_array_equal(by_name["Yclip004.wav"], target_of("Music", "Automotive"))
    np.testing.assert_array_equal(by_name["Y-dashStart_1.wav"], target_of("Music"))
    # No IAB label -> dropped; no audio -> left out; the repeated YTID kept once (the first).
    assert "YspeechOnly1.wav" not in names and "YnotDownloaded.wav" not in names
    assert names.count("Yclip001.wav") == 1 and len(names) == 20
    # Short clips are zero-padded to the clip length.
    assert np.abs(waveforms[names.index("Yclip000.wav")][:SR // 4]).max() > 10000
    assert np.all(waveforms[names.index("Yclip000.wav")][SR // 2 + 100:] == 0)

    # Folds: multi-label iterative stratification of the packed targets.
    np.testing.assert_array_equal(folds, multilabel_stratified_folds(targets, 10, 1234))
    assert sorted(set(folds.tolist())) == list(range(1, 11))

    report = (workspace / "features" / "waveform_report.tsv").read_text().splitlines()
    reasons = {os.path.basename(line.split("\t")[0]): line.split("\t")[1] for line in report[1:]}
    assert report[0] == "path\treason" and len(reasons) == 3
    assert reasons["YnotDownloaded.wav"].startswith("missing audio")
    assert reasons["YspeechOnly1.wav"].startswith("no IAB label: /m/09x0r map to none")
    assert "dropped" in reasons["YspeechOnly1.wav"]
    assert reasons["Yclip001.wav"].startswith("duplicate YTID clip001")
    log = result.stderr
    assert ("23 rows read, 1 duplicates skipped, 1 missing audio, 1 with no label (dropped), "
            "0 unreadable, 20 packed") in log
    assert ("clips per label: Automotive 7, Food & Drink 0, Pets 4, War & Conflicts 4, "
            "Music 8") in log


@pytest.mark.slow
def test_pack_audioset_start_pattern_keep_unlabelled_20_labels(audioset):
    workspace = audioset / "ws"
    result = pack_audioset(audioset, workspace, f"--audio_dir={audioset / 'audio_by_start'}",
                           "--filename_pattern={ytid}_{start}.wav", "--keep_unlabelled",
                           "--iab_labels=20", "--output", str(workspace / "iab20.h5"))
    assert result.returncode == 0, result.stderr
    attrs, names, targets, _, _ = read_packed(workspace / "iab20.h5")
    labels_20 = load_label_set(20)
    assert list(attrs["labels"]) == labels_20 and attrs["label_set"] == "iab20"
    by_name = dict(zip(names, targets))
    assert len(names) == 21 and "speechOnly1_0.wav" in names
    np.testing.assert_array_equal(by_name["speechOnly1_0.wav"], np.zeros(20))  # kept, all zero
    np.testing.assert_array_equal(by_name["-dashStart_1_30.wav"],
                                  target_of("Entertainment", label_set=labels_20))
    np.testing.assert_array_equal(by_name["clip004_120.wav"],
                                  target_of("Entertainment", "Automotive", label_set=labels_20))
    assert "1 with no label (kept with an all-zero target)" in result.stderr


def test_pack_audioset_nothing_left_and_bad_pattern(audioset, tmp_path):
    # Wrong pattern for this folder: every clip is missing -> exit 2, the report still written.
    result = pack_audioset(audioset, tmp_path / "ws", f"--audio_dir={audioset / 'audio'}",
                           "--filename_pattern={ytid}_{start}.wav")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: nothing to pack: 23 rows read")
    assert "--filename_pattern" in message
    report = (tmp_path / "ws" / "features" / "waveform_failed_report.tsv").read_text()
    assert report.count("missing audio") == 22
    assert not (tmp_path / "ws" / "features" / "waveform.h5").exists()

    result = pack_audioset(audioset, tmp_path / "ws", f"--audio_dir={audioset / 'audio'}",
                           "--filename_pattern=clip_{id}.wav")
    assert result.returncode == 2 and "--filename_pattern=clip_{id}.wav" in result.stderr


@pytest.fixture
def labelled_csv(tmp_path):
    root = tmp_path / "mine"
    write_tone(str(root / "a.wav"), 300, 0.5, SR)
    write_tone(str(root / "sub" / "a.wav"), 600, 0.5, 16000)
    write_tone(str(root / "c.wav"), 900, 0.5, SR)
    csv_path = root / "labels.csv"
    csv_path.write_text("file,labels\n# a comment\na.wav,Music;Pets\nsub/a.wav,Food & Drink\n"
                        "c.wav,\nmissing.wav,Music\n")
    return csv_path


def pack_csv(csv_path, workspace, *extra):
    return run_script("utils/features.py", "pack_csv_to_hdf5", f"--csv={csv_path}",
                      f"--workspace={workspace}", "--clip_duration=1", "--num_workers=1", *extra)


def test_pack_csv_with_iab_labels(labelled_csv, tmp_path):
    result = pack_csv(labelled_csv, tmp_path / "ws", "--labels=5")
    assert result.returncode == 0, result.stderr
    attrs, names, targets, folds, _ = read_packed(tmp_path / "ws" / "features" / "waveform.h5")
    assert attrs["task"] == "multi_label" and attrs["label_set"] == "iab5"
    assert list(attrs["labels"]) == LABELS_5
    assert names == ["a.wav", "sub/a.wav"]  # relative paths keep same-named files apart
    np.testing.assert_array_equal(targets, [target_of("Music", "Pets"), target_of("Food & Drink")])
    np.testing.assert_array_equal(folds, [1, 2])  # too few clips to stratify: dealt in order
    report = (tmp_path / "ws" / "features" / "waveform_report.tsv").read_text()
    assert "missing.wav\tmissing audio" in report and "c.wav\tno label; dropped" in report


def test_pack_csv_custom_labels_keep_unlabelled(labelled_csv, tmp_path):
    labels_file = tmp_path / "my_labels.txt"
    labels_file.write_text("Pets\nMusic\nFood & Drink\n")
    result = pack_csv(labelled_csv, tmp_path / "ws", f"--labels={labels_file}", "--keep_unlabelled")
    assert result.returncode == 0, result.stderr
    attrs, names, targets, _, _ = read_packed(tmp_path / "ws" / "features" / "waveform.h5")
    assert attrs["label_set"] == "custom"
    assert list(attrs["labels"]) == ["Pets", "Music", "Food & Drink"]
    assert names == ["a.wav", "sub/a.wav", "c.wav"]
    np.testing.assert_array_equal(targets, [[1, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_pack_csv_unknown_label_is_a_usage_error(labelled_csv, tmp_path):
    result = pack_csv(labelled_csv, tmp_path / "ws", "--labels=Music,Pets")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {labelled_csv} line 4: unknown label 'Food & Drink'; the labels are "
        "Music; Pets (see --labels)")


def test_mini_data_subset_caps_each_label():
    items = [(f"{index}", f"{index}", target) for index, target in enumerate(
        [np.array([1, 0.]), np.array([1, 0.]), np.array([1, 1.]), np.array([0, 1.]),
         np.array([0, 0.]), np.array([0, 1.]), np.array([0, 0.])])]
    assert [name for name, _, _ in mini_data_subset(items, 2)] == ["0", "1", "2", "3", "4", "6"]


def test_recipe_script_requires_its_variables(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("AUDIO_DIR", "SEGMENTS_CSV", "WORKSPACE")}
    result = subprocess.run(["bash", os.path.join(REPO_DIR, "scripts", "iab.sh"),
                             f"WORKSPACE={tmp_path}"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "AUDIO_DIR" in result.stderr and "SEGMENTS_CSV" in result.stderr
    result = subprocess.run(["bash", os.path.join(REPO_DIR, "scripts", "iab.sh"),
                             f"WORKSPACE={tmp_path}", f"AUDIO_DIR={tmp_path}",
                             f"SEGMENTS_CSV={tmp_path}/x.csv", "IAB_LABELS=7"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "IAB_LABELS=7" in result.stderr


@pytest.mark.parametrize("train_rows, test_rows, message", [
    (['clip000,"[1, 0, 0, 0, 0]"'], ['./clip000,"[1, 0, 0, 0, 0]"'], "also in the train set"),
    (['../outside,"[1, 0, 0, 0, 0]"'], [], "leads outside --audio_dir"),
    (['/etc/hostname,"[1, 0, 0, 0, 0]"'], [], "leads outside --audio_dir"),
    (['clip000,"[1, 0, 0, 0, 0]"', 'clip000.wav,"[0, 1, 0, 0, 0]"'], [], "another IAB Vector"),
])
def test_seed_ids_name_one_file_in_the_audio_folder(tmp_path, train_rows, test_rows, message):
    from utils.iab_sources import seed_items
    from utils.utilities import UsageError
    (tmp_path / "wavs").mkdir()
    write_tone(str(tmp_path / "wavs" / "clip000.wav"), 440.0, 0.5, 32000)
    write_tone(str(tmp_path / "outside.wav"), 440.0, 0.5, 32000)
    csvs = []
    for subset, rows in (("train", train_rows), ("test", test_rows)):
        (tmp_path / f"{subset}.csv").write_text("\n".join(["ID,IAB Vector"] + rows) + "\n")
        csvs.append((subset, f"--{subset}_csv", str(tmp_path / f"{subset}.csv")))
    with pytest.raises(UsageError, match=message):
        seed_items(csvs, str(tmp_path / "wavs"))


def test_folds_from_refuses_a_name_listed_in_two_folds(tmp_path):
    from utils.folds import read_folds_file
    from utils.utilities import UsageError
    path = tmp_path / "folds.csv"
    path.write_text("name,fold\nblues/0.wav,1\ndisco/0.wav,2\nblues/0.wav,1\n")
    assert read_folds_file(str(path)) == {"blues/0.wav": 1, "disco/0.wav": 2}
    path.write_text("name,fold\nblues/0.wav,1\nblues/0.wav,3\n")
    with pytest.raises(UsageError, match="line 3 puts blues/0.wav in fold 3, line 2 in fold 1"):
        read_folds_file(str(path))
