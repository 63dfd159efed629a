"""Timelines, embeddings and the Python API: each row is the model's output on its window,
files NumPy and a CSV reader take directly, memory bounded by the window, not the file."""
import csv
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile
import torch

from helpers import REPO_DIR, SR, melody, save_checkpoint
from pytorch.embeddings import NpyRows
from pytorch.main import main
from pytorch.onnx_export import export_onnx
from pytorch.predictor import load_predictor
from pytorch.timeline import TimelineImage, write_timelines
from utils.audio import load_audio
from utils.data_generator import WaveformDataset
from utils.utilities import UsageError

LABELS = ["bass", "middle", "treble"]
THRESHOLDS = [0.3, 0.6, 0.45]


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    """A multi-label Transfer_Cnn6 checkpoint on 1-s clips, with tuned thresholds stored."""
    path = str(tmp_path_factory.mktemp("timeline") / "model.pth")
    save_checkpoint(path, LABELS, "multi_label", melody(10).reshape(10, SR))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["thresholds"] = THRESHOLDS
    torch.save(checkpoint, path)
    return path


def window_outputs_direct(predictor, waveform, window, hop):
    """The model on each window, cut by hand (the last aligned to the end)."""
    starts = list(range(0, len(waveform) - window + 1, hop))
    if starts[-1] + window < len(waveform):
        starts.append(len(waveform) - window)
    with torch.no_grad():
        output = predictor.model(torch.from_numpy(np.stack([waveform[s:s + window] for s in starts])))
    return starts, output["clipwise_output"].numpy(), output["embedding"].numpy()


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_timeline_rows_are_the_windows_outputs_with_tuned_thresholds(multi_label, tmp_path):
    soundfile.write(tmp_path / "song.wav", melody(12), SR)
    output = str(tmp_path / "timeline.csv")
    main(["inference", "--timeline", f"--checkpoint_path={multi_label}",
          f"--audio_path={tmp_path / 'song.wav'}", "--hop=0.5", f"--output={output}"])
    rows = read_rows(output)
    predictor = load_predictor(multi_label)
    starts, probabilities, _ = window_outputs_direct(
        predictor, load_audio(str(tmp_path / "song.wav"), SR), SR, SR // 2)
    assert len(rows) == len(starts) == 23
    assert [float(row["start_s"]) for row in rows] == [start / SR for start in starts]
    assert [float(row["end_s"]) for row in rows] == [start / SR + 1 for start in starts]
    got = np.array([[float(row[label]) for label in LABELS] for row in rows])
    np.testing.assert_allclose(got, probabilities, atol=2e-6)
    assert probabilities.std(axis=0).max() > 0.05  # the windows differ: a timeline, not a copy
    expected = [";".join(l for l, p, t in zip(LABELS, values, THRESHOLDS) if p >= t)
                for values in probabilities]
    assert [row["predicted"] for row in rows] == expected
    assert os.path.getsize(tmp_path / "timeline_pictures" / "song.png") > 1000


def test_the_picture_marks_the_predicted_labels_and_reads_in_minutes():
    """Four minutes get a tick at least every 30 s, as m:ss; the white marks sit on the labels
    the CSV's predicted column gives (one per window, single-label: the top one)."""
    from matplotlib.figure import Figure
    from pytorch.timeline import set_time_axis
    from pytorch.windows import predicted_mask
    from types import SimpleNamespace

    axes = Figure().subplots()
    axes.set_xlim(0, 240)
    set_time_axis(axes, 0, 240)
    axes.figure.canvas.draw()
    ticks = [label.get_text() for label in axes.get_xticklabels() if label.get_text()]
    assert len(ticks) >= 8 and "2:00" in ticks and all(":" in tick for tick in ticks)

    run = SimpleNamespace(task="single_label", labels=["a", "b", "c"])
    values = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.4, 0.4, 0.2]])
    assert predicted_mask(values, run).tolist() == [[False, True, False], [True, False, False],
                                                    [True, False, False]]


def test_the_picture_keeps_a_bounded_number_of_columns_by_their_maximum():
    image = TimelineImage(max_columns=4)
    values = np.random.default_rng(0).uniform(size=(11, 3))
    for row in values:
        image.add(row)
    columns = image.array()
    assert len(columns) <= 5  # at most max_columns + the partial one
    np.testing.assert_allclose(columns.max(axis=0), values.max(axis=0))
    np.testing.assert_allclose(columns[0], values[:4].max(axis=0))  # span doubled twice


@pytest.mark.slow
def test_a_20_minute_timeline_takes_at_most_twice_the_memory_of_a_30_s_one(multi_label, tmp_path):
    predictor = load_predictor(multi_label)
    peaks = {}
    for minutes in (0.5, 20):
        path = str(tmp_path / f"{minutes}.wav")
        with soundfile.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
            for _ in range(int(minutes * 6)):  # 10 s at a time
                f.write(melody(10))
        tracemalloc.start()
        rows, failed = write_timelines(predictor, [path], str(tmp_path / f"{minutes}.csv"),
                                       5 * SR, 5 * SR)
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert rows == minutes * 12 and failed == 0
    assert peaks[20] <= 2 * peaks[0.5], peaks
    whole_file_bytes = 20 * 60 * SR * 4
    assert peaks[20] < whole_file_bytes / 5, peaks  # the file decoded whole: 154 MB


def test_embeddings_per_file_and_per_window_load_in_numpy(multi_label, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "a.wav", melody(6), SR)
    soundfile.write(audio / "b.wav", melody(3)[: int(2.5 * SR)], SR)
    predictor = load_predictor(multi_label)
    main(["embed", f"--checkpoint_path={multi_label}", f"--audio_path={audio}",
          f"--output={tmp_path / 'files.npy'}"])
    main(["embed", f"--checkpoint_path={multi_label}", f"--audio_path={audio}", "--timeline",
          f"--output={tmp_path / 'windows.npy'}"])
    files, windows = np.load(tmp_path / "files.npy"), np.load(tmp_path / "windows.npy")
    assert files.dtype == np.float32 and files.shape == (2, 512) and windows.shape == (9, 512)
    index = read_rows(tmp_path / "windows.csv")
    assert [row["file"] for row in index] == [str(audio / "a.wav")] * 6 + [str(audio / "b.wav")] * 3
    assert [float(row["start_s"]) for row in index][-3:] == [0.0, 1.0, 1.5]  # b: end-aligned
    for number, name in enumerate(("a.wav", "b.wav")):
        waveform = load_audio(str(audio / name), SR)
        _, _, embeddings = window_outputs_direct(predictor, waveform, SR, SR)
        rows = [i for i, row in enumerate(index) if row["file"].endswith(name)]
        np.testing.assert_allclose(windows[rows], embeddings, atol=1e-5)
        np.testing.assert_allclose(files[number], embeddings.mean(axis=0), atol=1e-5)
    assert [row["row"] for row in read_rows(tmp_path / "files.csv")] == ["0", "1"]


@pytest.mark.slow
def test_embeddings_of_packed_clips_follow_the_file_order(multi_label, features, tmp_path):
    main(["embed", f"--checkpoint_path={multi_label}", f"--features={features}",
          f"--output={tmp_path / 'clips.npy'}", "--batch_size=7", "--num_workers=0"])
    embeddings, index = np.load(tmp_path / "clips.npy"), read_rows(tmp_path / "clips.csv")
    dataset = WaveformDataset(features)
    assert embeddings.shape == (len(dataset), 512)
    assert [row["file"] for row in index] == list(dataset.audio_names)
    assert [int(row["fold"]) for row in index] == dataset.info["folds"].tolist()
    waveforms = np.stack([dataset[i]["waveform"] for i in range(len(dataset))])
    np.testing.assert_allclose(embeddings, load_predictor(multi_label)(waveforms)["embedding"],
                               atol=1e-5)


def test_npy_rows_write_a_file_numpy_reads(tmp_path):
    values = np.random.default_rng(0).standard_normal((1000, 37)).astype(np.float32)
    with open(tmp_path / "x.npy", "wb") as f:
        rows = NpyRows(f)
        for start in range(0, 1000, 300):
            rows.write(values[start:start + 300])
        rows.close()
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), values)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy", mmap_mode="r")[999], values[999])


def readme_example():
    with open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    examples = [block for block in blocks if "Classifier.from_checkpoint" in block]
    assert len(examples) == 1
    return examples[0]


def test_the_readme_python_example_runs_as_written(multi_label, tmp_path):
    """The README's API example, in a folder holding the files it names."""
    export_onnx(multi_label, str(tmp_path / "model.onnx"))
    soundfile.write(tmp_path / "song.wav", melody(12), SR)
    code = readme_example()
    assert len(code.strip().splitlines()) <= 14
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO_DIR))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(LABELS)
    assert re.fullmatch(r" *0\.0- *1\.0 s: .*", lines[2])  # the timeline's first window
    assert lines[-1] == "(512,)"


@pytest.mark.parametrize("command", ["embed", "timeline"])
def test_a_failed_command_replaces_no_output(multi_label, tmp_path, command):
    """A good output stays as it was when the same command later reads no file (exit 2)."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    soundfile.write(good / "a.wav", melody(2), SR)
    (bad / "b.wav").write_bytes(b"RIFF not audio at all")
    output = tmp_path / ("e.npy" if command == "embed" else "t.csv")
    flags = (["embed"] if command == "embed" else ["inference", "--timeline"]) + [
        f"--checkpoint_path={multi_label}", f"--output={output}"]
    main(flags + [f"--audio_path={good}"])
    written = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    result = subprocess.run([sys.executable, "pytorch/main.py"] + flags + [f"--audio_path={bad}"],
                            cwd=REPO_DIR, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"none of the 1 audio file(s) could be read; {output} was left as it was" in \
        result.stderr.strip().splitlines()[-1]
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == written


def test_embed_never_overwrites_a_csv_that_is_not_its_index(multi_label, tmp_path):
    soundfile.write(tmp_path / "a.wav", melody(2), SR)
    seed = tmp_path / "train.csv"
    seed.write_text("ID,IAB Vector\nclip1,[1 0 0 0 0]\n")
    result = subprocess.run([sys.executable, "pytorch/main.py", "embed",
                             f"--checkpoint_path={multi_label}", f"--audio_path={tmp_path / 'a.wav'}",
                             f"--output={tmp_path / 'train.npy'}"], cwd=REPO_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{seed} exists and is not an embedding index" in result.stderr.strip().splitlines()[-1]
    assert seed.read_text() == "ID,IAB Vector\nclip1,[1 0 0 0 0]\n"
    assert not (tmp_path / "train.npy").exists()
    main(["embed", f"--checkpoint_path={multi_label}", f"--audio_path={tmp_path / 'a.wav'}",
          f"--output={tmp_path / 'e.npy'}"])
    main(["embed", f"--checkpoint_path={multi_label}", f"--audio_path={tmp_path / 'a.wav'}",
          f"--output={tmp_path / 'e.npy'}"])  # its own index is replaced
    assert np.load(tmp_path / "e.npy").shape == (1, 512)


@pytest.mark.slow
def test_a_killed_embed_leaves_temporaries_that_the_rerun_removes(multi_label, tmp_path):
    import signal
    import time
    audio = tmp_path / "audio"
    audio.mkdir()
    for index in range(40):
        soundfile.write(audio / f"{index:02d}.wav", melody(4), SR)
    command = [sys.executable, "pytorch/main.py", "embed", f"--checkpoint_path={multi_label}",
               f"--audio_path={audio}", f"--output={tmp_path / 'e.npy'}"]
    process = subprocess.Popen(command, cwd=REPO_DIR, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # both temporaries are opened one after the other: kill once both are there (killed
    # between the two opens, under CI's load, one was left)
    while time.time() < deadline and sum(p.name.endswith(".tmp") for p in tmp_path.iterdir()) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert len(left) == 2 and all(name.startswith((".e.npy.", ".e.csv.")) for name in left)
    subprocess.run(command, cwd=REPO_DIR, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["e.csv", "e.npy"]
    assert np.load(tmp_path / "e.npy").shape == (40, 512)


def test_the_api_takes_integer_pcm_and_either_channel_axis_as_files_are(multi_label, tmp_path):
    """A real int16 array and (samples, channels) stereo give what the float file gives."""
    from pytorch.classifier import Classifier
    classifier = Classifier.from_checkpoint(multi_label)
    audio = melody(2).astype(np.float32)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, SR, subtype="PCM_16")
    from_file = classifier.predict(str(tmp_path / "a.wav"))["probabilities"]
    for array in (pcm, np.stack([pcm, pcm], axis=1), np.stack([pcm, pcm]),
                  pcm.astype(np.int32) * 65536):
        found = classifier.predict(array, sample_rate=SR)["probabilities"]
        np.testing.assert_allclose(found, from_file, atol=1e-5)
    eight_bit = (pcm // 256 + 128).astype(np.uint8)  # 8-bit WAV: unsigned around 128
    np.testing.assert_allclose(
        classifier.predict(eight_bit, sample_rate=SR)["probabilities"],
        classifier.predict((eight_bit.astype(np.float32) - 128) / 128, sample_rate=SR)["probabilities"],
        atol=1e-6)
    for bad, words in ((audio > 0, "dtype bool"), (audio.astype(np.complex64), "dtype complex64"),
                       (np.array(["a", "b"]), "dtype <U1"), (np.zeros((4, 4)), "cannot tell channels")):
        with pytest.raises(UsageError, match=words):
            classifier.predict(bad, sample_rate=SR)


@pytest.mark.parametrize("arguments, words", [
    (dict(sample_rate=float("nan")), r"sample_rate=nan: give the array's rate"),
    (dict(sample_rate="32000"), r"sample_rate='32000': give the array's rate"),
    (dict(sample_rate=SR, hop=0), r"--hop=0: give a positive number of seconds"),
    (dict(sample_rate=SR, hop=-1.0), r"--hop=-1.0: give a positive number of seconds"),
    (dict(sample_rate=SR, window=float("nan")), r"--window=nan: give a positive number"),
    (dict(sample_rate=SR, window=0.01), r"--window=0.01: audio of 320 samples is too short"),
])
def test_api_arguments_are_checked_in_one_line(multi_label, arguments, words):
    from pytorch.classifier import Classifier
    classifier = Classifier.from_checkpoint(multi_label)
    with pytest.raises(UsageError, match=words):
        classifier.predict(melody(1), **arguments)
