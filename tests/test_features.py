"""Packing audio folders into HDF5: layout, attributes, bad files, resampling, folds."""
import os

import h5py
import librosa
import numpy as np
import pytest

from helpers import make_class_folders, run_script, tone, write_tone
from utils.audio import float32_to_int16, load_audio
from utils.folds import (folds_from_mapping, multilabel_stratified_folds, read_folds_file,
                         stratified_folds)
from utils.utilities import UsageError

SR = 32000


@pytest.fixture
def messy_dataset(tmp_path):
    """Good clips plus a corrupt file, an empty one, a stereo 44.1 kHz one, a 3-s one, strays."""
    root = make_class_folders(tmp_path / "data", classes=("blues", "jazz"), clips_per_class=10,
                              seconds=2.0)
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10)
    (root / "jazz" / "jazz.00055.wav").write_bytes(b"")
    write_tone(str(root / "blues" / "blues.00100.wav"), 440, 2.0, 44100, channels=2)
    write_tone(str(root / "blues" / "blues.00101.wav"), 440, 3.0, SR)
    (root / "blues" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "jazz" / "notes.txt").write_text("not audio")
    return root


def pack(dataset_dir, workspace, *extra):
    return run_script("utils/features.py", "pack_audio_files_to_hdf5",
                      f"--dataset_dir={dataset_dir}", f"--workspace={workspace}",
                      "--clip_duration=2.5", "--num_workers=2", *extra)


@pytest.mark.slow
def test_pack_messy_folder(messy_dataset, tmp_path):
    workspace = tmp_path / "ws"
    result = pack(messy_dataset, workspace)
    assert result.returncode == 0, result.stderr
    path = workspace / "features" / "waveform.h5"
    with h5py.File(path, "r") as hf:
        assert list(hf.attrs["labels"]) == ["blues", "jazz"]
        assert hf.attrs["task"] == "single_label"
        assert hf.attrs["sample_rate"] == SR and hf.attrs["clip_samples"] == int(2.5 * SR)
        names = [name.decode() if isinstance(name, bytes) else name for name in hf["audio_name"][:]]
        assert len(names) == 22 and "jazz/jazz.00054.wav" not in names
        assert not [name for name in names if name.endswith("notes.txt")]
        assert "blues/blues.00100.wav" in names  # named by their path under the dataset folder
        assert hf["waveform"].shape == (22, int(2.5 * SR)) and hf["waveform"].dtype == np.int16
        assert hf["waveform"].chunks == (1, int(2.5 * SR))
        assert hf["target"].shape == (22, 2) and np.all(hf["target"][:].sum(axis=1) == 1)
        stereo = hf["waveform"][names.index("blues/blues.00100.wav")] / 32767.0
        short = hf["waveform"][names.index("blues/blues.00101.wav")] / 32767.0
    # Stereo 44.1 kHz: mixed to mono, resampled (amplitude kept), zero-padded after 2 s.
    assert abs(np.abs(stereo[:2 * SR - 100]).max() - 0.5) < 0.01
    assert np.all(stereo[2 * SR + 100:] == 0)
    assert np.abs(short).max() > 0.49  # 3 s truncated to 2.5 s: sound to the very end
    assert np.abs(short[-100:]).max() > 0.4
    report = (workspace / "features" / "waveform_report.tsv").read_text()
    assert "jazz.00054.wav" in report and "jazz.00055.wav" in report and "empty" in report
    assert "jazz.00054.wav" in result.stderr  # the log names skipped files too
    assert not [name for name in os.listdir(workspace / "features") if name.endswith(".tmp")]


def test_pack_mini_data_and_folds_from(tmp_path):
    root = make_class_folders(tmp_path / "data", classes=("a", "b"), clips_per_class=12,
                              seconds=0.5)
    folds_csv = tmp_path / "folds.csv"
    folds_csv.write_text("name,fold\n" + "".join(
        f"{label}.{clip:05d}.wav,{clip % 10 + 1}\n" for label in "ab" for clip in range(12)))
    result = pack(root, tmp_path / "ws", "--mini_data", f"--folds_from={folds_csv}")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "ws" / "features" / "minidata_waveform.h5", "r") as hf:
        assert len(hf["fold"]) == 20  # 10 clips per class
        assert sorted(hf["fold"][:10].tolist()) == list(range(1, 11))


@pytest.mark.parametrize("setup, expected", [
    ("missing", "folder not found"),
    ("no_classes", "no class subfolders"),
    ("all_corrupt", "no usable audio"),
])
def test_pack_fails_clearly(tmp_path, setup, expected):
    dataset_dir = tmp_path / "data"
    if setup != "missing":
        dataset_dir.mkdir()
    if setup == "all_corrupt":
        (dataset_dir / "rock").mkdir()
        (dataset_dir / "rock" / "rock.00000.wav").write_bytes(b"not a wav")
    result = pack(dataset_dir, tmp_path / "ws")
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 10
    features = tmp_path / "ws" / "features"
    assert not (features / "waveform.h5").exists()
    if setup == "all_corrupt":
        assert "rock.00000.wav" in (features / "waveform_failed_report.tsv").read_text()


def test_pack_rejects_bad_flag(tmp_path):
    result = pack(tmp_path, tmp_path / "ws", "--sample_rate=100")
    assert result.returncode == 2 and "--sample_rate" in result.stderr


def test_resampling_matches_librosa(tmp_path):
    """Same as librosa.load with soxr_vhq to 1e-5; vs its default soxr_hq the two filters only
    differ near Nyquist: max difference < 2e-3 and > 50 dB signal-to-difference on full-band noise."""
    rng = np.random.default_rng(0)
    signal = 0.3 * tone(997, 2.0, 44100) + 0.05 * rng.standard_normal(88200)
    path = tmp_path / "noise.wav"
    import soundfile
    soundfile.write(path, signal, 44100, subtype="FLOAT")
    ours = load_audio(str(path), SR)
    vhq, _ = librosa.load(str(path), sr=SR, mono=True, res_type="soxr_vhq")
    default, _ = librosa.load(str(path), sr=SR, mono=True)
    assert len(ours) == len(vhq) == len(default) == 64000
    assert np.max(np.abs(ours - vhq)) < 1e-5
    middle = slice(1000, -1000)
    difference = ours[middle] - default[middle]
    assert np.max(np.abs(difference)) < 2e-3
    snr_db = 10 * np.log10(np.sum(default[middle] ** 2) / np.sum(difference ** 2))
    assert snr_db > 50


def test_int16_conversion_saturates_instead_of_wrapping():
    loud = np.array([-1.7, -1.0, -0.5, 0.0, 0.5, 1.0, 1.3], dtype=np.float32)
    assert float32_to_int16(loud).tolist() == [-32767, -32767, -16384, 0, 16384, 32767, 32767]


def test_stratified_folds_are_balanced_and_deterministic():
    classes = np.repeat(np.arange(10), 100)
    folds = stratified_folds(classes, 10, seed=3)
    assert np.array_equal(folds, stratified_folds(classes, 10, seed=3))
    assert not np.array_equal(folds, stratified_folds(classes, 10, seed=4))
    for class_index in range(10):
        counts = np.bincount(folds[classes == class_index], minlength=11)[1:]
        assert counts.tolist() == [10] * 10
    uneven = stratified_folds(np.repeat(np.arange(3), [7, 13, 25]), 10, seed=0)
    sizes = np.bincount(uneven, minlength=11)[1:]
    assert sizes.max() - sizes.min() <= 1


def test_multilabel_folds_spread_every_label():
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 5)) < [0.5, 0.3, 0.2, 0.1, 0.05]).astype(np.float32)
    folds = multilabel_stratified_folds(targets, 10, seed=0)
    assert set(folds.tolist()) == set(range(1, 11))
    for label in range(5):
        per_fold = np.array([targets[folds == fold, label].sum() for fold in range(1, 11)])
        assert per_fold.max() - per_fold.min() <= 2


def test_folds_from_matches_packed_names_then_file_names():
    mapping = {"sub/a.wav": 3, "other/a.wav": 4, "genres/blues/blues.00000.wav": 7}
    folds = folds_from_mapping(["sub/a.wav", "other/a.wav", "blues.00000.wav"], mapping, "f.csv")
    assert folds.tolist() == [3, 4, 7]
    with pytest.raises(UsageError, match="1 clips have no fold, e.g. c.wav"):
        folds_from_mapping(["sub/a.wav", "c.wav"], mapping, "f.csv")


def test_same_file_names_in_two_class_folders_keep_their_own_folds(tmp_path):
    """blues/0.wav and disco/0.wav are two clips: --folds_from matches each by its folder."""
    for label in ("blues", "disco"):
        for clip in range(3):
            write_tone(str(tmp_path / "data" / label / f"{clip}.wav"), 300 + 100 * clip, 1.0, SR)
    folds_csv = tmp_path / "folds.csv"
    folds_csv.write_text("name,fold\n" + "".join(
        f"{label}/{clip}.wav,{fold}\n" for label, fold in (("blues", 2), ("disco", 7))
        for clip in range(3)))
    result = run_script("utils/features.py", "pack_audio_files_to_hdf5",
                        f"--dataset_dir={tmp_path / 'data'}", f"--workspace={tmp_path / 'ws'}",
                        "--clip_duration=1", f"--folds_from={folds_csv}", "--num_workers=1")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "ws" / "features" / "waveform.h5", "r") as hf:
        names = [name.decode() for name in hf["audio_name"][:]]
        folds = dict(zip(names, hf["fold"][:].tolist()))
    assert folds == {f"{label}/{clip}.wav": fold for label, fold in (("blues", 2), ("disco", 7))
                     for clip in range(3)}

    # Bare file names cannot tell blues/0.wav from disco/0.wav: an error, not a silent guess.
    folds_csv.write_text("".join(f"{clip}.wav,{clip + 1}\n" for clip in range(3)))
    with pytest.raises(UsageError, match="0.wav is ambiguous"):
        folds_from_mapping(names, read_folds_file(str(folds_csv)), str(folds_csv))
    # Unique bare names (the GTZAN lists) still match.
    assert folds_from_mapping(["blues/blues.00000.wav"], {"blues.00000.wav": 4}, "x").tolist() == [4]


def test_a_csv_that_is_not_utf8_is_a_one_line_error(tmp_path):
    folds_csv = tmp_path / "folds.csv"
    folds_csv.write_bytes("caf\u00e9.wav,1\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"--folds_from=.*folds.csv: not UTF-8 text .*save it as UTF-8"):
        read_folds_file(str(folds_csv))


def test_multilabel_folds_of_a_single_label_spread_positives_and_negatives():
    targets = (np.arange(100) % 4 == 0).astype(np.float32)[:, None]  # 25 positives
    folds = multilabel_stratified_folds(targets)
    for fold in range(1, 11):
        assert (folds == fold).sum() == 10 and targets[folds == fold].sum() in (2, 3)
