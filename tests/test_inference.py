"""Inference on files of any length: windows, averaged probabilities, top-k, CSV/JSON, bad files."""
import csv
import json

import numpy as np
import pytest
import soundfile
import torch

from pytorch.predictor import load_predictor
from helpers import SR, melody, run_script, save_checkpoint, write_tone
from pytorch.file_stream import predict_paths
from pytorch.windows import format_prediction, predict_file, stream_windows, window_samples_of
from pytorch.main import main
from utils.audio import fix_length, load_audio
from utils.utilities import UsageError

LABELS = ["bass", "middle", "treble"]



@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    """A single-label Transfer_Cnn6 checkpoint trained on 1-s clips (head spread over melodies)."""
    path = str(tmp_path_factory.mktemp("inference") / "model.pth")
    save_checkpoint(path, LABELS, "single_label", melody(10).reshape(10, SR))
    return path


@pytest.fixture(scope="module")
def trained(checkpoint_path):
    predictor = load_predictor(checkpoint_path)
    return predictor, predictor.run


def direct_probabilities(model, windows):
    """Softmax probabilities of each window, all windows in one forward pass (the torch model
    itself, not the predictor under test)."""
    with torch.no_grad():
        return model.model(torch.from_numpy(np.stack(windows)))["clipwise_output"].exp().numpy()


def window_starts(samples, window_samples, hop_samples):
    """First sample of each window; the last window ends at the end of the file."""
    if samples <= window_samples:
        return [0]
    starts = list(range(0, samples - window_samples + 1, hop_samples))
    if starts[-1] + window_samples < samples:
        starts.append(samples - window_samples)
    return starts


def test_window_starts_cover_the_file_and_end_aligned():
    assert window_starts(70, 10, 10) == [0, 10, 20, 30, 40, 50, 60]
    assert window_starts(70, 20, 20) == [0, 20, 40, 50]   # the last window ends at 70
    assert window_starts(70, 20, 15) == [0, 15, 30, 45, 50]
    assert window_starts(5, 20, 20) == [0]                # short: one (zero-padded) window


@pytest.mark.slow
def test_long_file_is_the_mean_of_its_windows(trained, tmp_path):
    model, run = trained
    path = str(tmp_path / "long.wav")
    soundfile.write(path, melody(70), SR)
    result = predict_file(model, path, window=6.0, top_k=3, batch_size=5)

    waveform = load_audio(path, SR)
    window = 6 * SR
    starts = [i * window for i in range(11)] + [64 * SR]  # 11 full windows, then end-aligned
    assert result["windows"] == 12 and result["duration_s"] == pytest.approx(70.0)
    per_window = direct_probabilities(model, [waveform[start:start + window] for start in starts])
    assert per_window.std(axis=0).max() > 0.01  # the windows do disagree, so the mean is tested
    np.testing.assert_allclose(result["probabilities"], per_window.mean(axis=0), atol=1e-6)
    assert result["probabilities"].sum() == pytest.approx(1.0)
    assert ((result["probabilities"] >= 0) & (result["probabilities"] <= 1)).all()
    top = result["top"]
    assert [label for label, _ in top] == [LABELS[i] for i in np.argsort(-per_window.mean(axis=0))]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)


def test_short_file_is_zero_padded_to_the_window(trained, tmp_path):
    model, run = trained
    path = write_tone(str(tmp_path / "short.wav"), 440.0, 2.0, SR)
    waveform = load_audio(path, SR)

    padded = predict_file(model, path, window=3.0)
    assert padded["windows"] == 1
    np.testing.assert_allclose(padded["probabilities"],
                               direct_probabilities(model, [fix_length(waveform, 3 * SR)])[0],
                               atol=1e-6)
    default = predict_file(model, path)  # the training clip: 1 s, so two windows
    assert default["windows"] == 2
    np.testing.assert_allclose(default["probabilities"],
                               direct_probabilities(model, [waveform[:SR], waveform[SR:]]).mean(0),
                               atol=1e-6)
    assert padded["padding"] == pytest.approx(1 / 3) and default["padding"] == 0.0
    # padded to over twice its length (a 2-s file in a 5-s window): said beside the prediction
    mostly_padding = predict_file(model, path, window=5.0)
    assert mostly_padding["padding"] == pytest.approx(0.6)
    assert "60% of the model's input was silence" in format_prediction(dict(mostly_padding,
                                                                           file=path))
    assert "silence" not in format_prediction(dict(padded, file=path))
    [streamed] = predict_paths(model, [path], window=5.0, verbose=False, num_workers=0)
    assert streamed["padding"] == pytest.approx(0.6)


def test_window_defaults_to_the_training_clip_and_hop_to_the_window(trained):
    _, run = trained
    assert window_samples_of(run.audio) == (SR, SR)
    assert window_samples_of(run.audio, 2.0, 0.5) == (2 * SR, SR // 2)


def test_unreadable_files_are_reported_and_skipped(trained, tmp_path, capsys):
    model, run = trained
    good = write_tone(str(tmp_path / "good.wav"), 300.0, 1.0, SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    results = predict_paths(model, [str(bad), good])
    assert results[0]["file"] == str(bad) and "error" in results[0]
    assert results[1]["file"] == good and "probabilities" in results[1]
    assert f"skipped {bad}" in capsys.readouterr().err


@pytest.fixture
def audio_folder(tmp_path):
    """Three readable files in nested folders (one 44.1 kHz stereo), a corrupt one, a stray."""
    root = tmp_path / "audio"
    write_tone(str(root / "b.wav"), 200.0, 1.5, SR)
    write_tone(str(root / "sub" / "a.flac"), 3000.0, 0.5, 44100, channels=2)
    write_tone(str(root / "c.wav"), 800.0, 2.5, SR)
    (root / "sub" / "broken.wav").write_bytes(b"not audio at all")
    (root / "notes.txt").write_text("ignored")
    return root


@pytest.mark.slow
def test_cli_on_a_folder_writes_csv_and_json(checkpoint_path, audio_folder, tmp_path, capsys):
    csv_path, json_path = tmp_path / "out" / "p.csv", tmp_path / "out" / "p.json"
    result = run_script("pytorch/main.py", "inference", f"--checkpoint_path={checkpoint_path}",
                        f"--audio_path={audio_folder}", "--top_k=2", f"--output={csv_path}")
    assert result.returncode == 1, result.stderr  # 1: some files were skipped
    assert result.stderr.count("skipped") == 1 and "broken.wav" in result.stderr
    assert "b.wav (1.5 s, 2 windows): " in result.stdout
    assert "labelled 3 of 4 files (1 skipped)" in result.stdout
    with pytest.raises(SystemExit) as exit_code:
        main(["inference", f"--checkpoint_path={checkpoint_path}", f"--audio_path={audio_folder}",
              "--top_k=2", f"--output={json_path}"])
    assert exit_code.value.code == 1
    assert capsys.readouterr().err.count("skipped") == 1
    expected_files = [str(audio_folder / name) for name in ("b.wav", "c.wav", "sub/a.flac",
                                                            "sub/broken.wav")]

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == expected_files  # recursive, sorted by path
    assert list(rows[0]) == ["file", "label_1", "prob_1", "label_2", "prob_2", "duration_s",
                             "windows", "predicted", "error"]
    assert rows[3]["error"] and not rows[3]["label_1"]
    assert [row["windows"] for row in rows[:3]] == ["2", "3", "1"]

    report = json.loads(json_path.read_text())
    assert report["labels"] == LABELS and report["window_s"] == 1.0 and report["top_k"] == 2
    files = report["files"]
    assert [entry["file"] for entry in files] == expected_files and "error" in files[3]
    for entry, row in zip(files[:3], rows[:3]):
        probabilities = entry["probabilities"]
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert all(0 <= p <= 1 for p in probabilities.values())
        ranked = sorted(probabilities, key=probabilities.get, reverse=True)
        assert [top["label"] for top in entry["top"]] == ranked[:2]
        assert [row["label_1"], row["label_2"]] == ranked[:2]
        assert float(row["prob_1"]) == pytest.approx(probabilities[ranked[0]], abs=1e-6)


@pytest.mark.parametrize("flag, value, words", [
    ("checkpoint_path", "{tmp}/none.pth",
     "--checkpoint_path={tmp}/none.pth: file not found; check the path"),
    ("audio_path", "{tmp}/nothing", "--audio_path={tmp}/nothing: no such file or folder"),
])
@pytest.mark.slow
def test_cli_missing_inputs_exit_2_with_one_line(checkpoint_path, tmp_path, flag, value, words):
    args = {"checkpoint_path": checkpoint_path, "audio_path": write_tone(str(tmp_path / "ok.wav"))}
    args[flag] = value.format(tmp=tmp_path)
    result = run_script("pytorch/main.py", "inference", *(f"--{k}={v}" for k, v in args.items()))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {words.format(tmp=tmp_path)}"]


@pytest.mark.parametrize("case, words", [
    ("only_unreadable", "--audio_path={tmp}/junk: none of the 1 audio file(s) could be read"),
    ("empty_folder", "--audio_path={tmp}/junk: no audio files in this folder"),
    ("bad_output", "--output={tmp}/p.txt: use a .csv or .json file name"),
    ("bad_hop", "--hop=5.0: must be at most the window (1 s)"),
    ("tiny_window", "--window=0.05: audio of 1600 samples is too short"),
])
def test_bad_inputs_are_usage_errors(checkpoint_path, tmp_path, case, words):
    (tmp_path / "junk").mkdir()
    args = {"checkpoint_path": checkpoint_path, "audio_path": write_tone(str(tmp_path / "ok.wav"))}
    if case == "only_unreadable":
        (tmp_path / "junk" / "x.wav").write_bytes(b"junk")
        args["audio_path"] = str(tmp_path / "junk")
    elif case == "empty_folder":
        (tmp_path / "junk" / "notes.txt").write_text("not audio")
        args["audio_path"] = str(tmp_path / "junk")
    elif case == "bad_output":
        args["output"] = str(tmp_path / "p.txt")
    elif case == "bad_hop":
        args["hop"] = "5.0"
    elif case == "tiny_window":
        args["window"] = "0.05"
    with pytest.raises(UsageError) as error:
        main(["inference"] + [f"--{k}={v}" for k, v in args.items()])
    assert str(error.value).startswith(words.format(tmp=tmp_path))


@pytest.mark.parametrize("samples,window,hop", [(70, 10, 10), (70, 20, 20), (70, 20, 15), (5, 20, 20),
                                                (20, 20, 7), (1000, 64, 10)])
def test_streamed_windows_are_the_specified_windows_whatever_the_blocks(samples, window, hop):
    waveform = np.arange(1, samples + 1, dtype=np.float32)
    expected = [fix_length(waveform[start:start + window], window)
                for start in window_starts(samples, window, hop)]
    rng = np.random.default_rng(samples + window + hop)
    cuts = np.sort(rng.choice(np.arange(1, samples), size=min(samples - 1, 6), replace=False))
    for blocks in ([waveform], np.split(waveform, cuts), [waveform[i:i + 1] for i in range(samples)]):
        got = [w for _, _, w in stream_windows(blocks, window, hop)]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_streamed_decoding_equals_whole_file_decoding_and_stays_small(tmp_path):
    """A 44.1 kHz file: blocks resampled as they come equal the whole file resampled at once,
    and reading a clip or streaming windows allocates about a block, not the file."""
    import tracemalloc

    from utils.audio import read_clip, stream_audio
    path = str(tmp_path / "long.wav")
    rate = 44100
    long = np.random.default_rng(0).uniform(-0.5, 0.5, 240 * rate).astype(np.float32)  # 4 min
    import soundfile
    soundfile.write(path, long, rate, subtype="FLOAT")
    whole = load_audio(path, SR)
    streamed = np.concatenate(list(stream_audio(path, SR, block_seconds=7.3)))
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)

    tracemalloc.start()
    clip = read_clip(path, SR, 3 * SR)
    clip_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    windows = sum(1 for _ in stream_windows(stream_audio(path, SR), 3 * SR, 3 * SR))
    stream_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(clip, whole[:3 * SR], atol=1e-5)
    assert windows == 80
    file_bytes = whole.nbytes  # 4 min at 32 kHz, float32: 30.7 MB
    assert clip_peak < file_bytes / 4 and stream_peak < file_bytes / 3, (clip_peak, stream_peak)


def test_an_audioset_tagger_windows_long_files_and_reads_short_ones_whole(tmp_path):
    """Memory bounded by default: past WHOLE_FILE_SECONDS an official tagger runs 10-s windows
    (their mean is the clip probability); --whole_file keeps the one pass."""
    from pytorch import windows as inference
    from pytorch.models import Cnn6
    torch.manual_seed(0)
    torch.save({"model": Cnn6(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64,
                              fmin=50, fmax=14000).state_dict()}, tmp_path / "Cnn6_mAP=0.343.pth")
    predictor = load_predictor(str(tmp_path / "Cnn6_mAP=0.343.pth"))
    model = predictor.model
    rng = np.random.default_rng(0)
    long_path = tmp_path / "long.wav"
    soundfile.write(long_path, (0.1 * rng.standard_normal(32000 * 25)).astype(np.float32), 32000)
    windowed = inference.predict_file(predictor, str(long_path), whole_file_seconds=20)
    assert windowed["windows"] == 3  # 0-10, 10-20, and the last aligned to the end: 15-25
    waveform = load_audio(str(long_path), 32000)
    with torch.no_grad():
        windows = torch.from_numpy(np.stack([waveform[:320000], waveform[320000:640000],
                                             waveform[-320000:]]))
        expected = model(windows)["clipwise_output"].double().mean(dim=0).numpy()
    np.testing.assert_allclose(list(windowed["probabilities"]), expected, rtol=1e-5, atol=1e-7)
    whole = inference.predict_file(predictor, str(long_path), whole_file_seconds=30)
    assert whole["windows"] == 1
    with torch.no_grad():
        one_pass = model(torch.from_numpy(waveform[None]))["clipwise_output"][0].double().numpy()
    np.testing.assert_allclose(list(whole["probabilities"]), one_pass, rtol=1e-5, atol=1e-7)
