"""Live input (pytorch/live.py): rows come while the audio is still arriving, and a finished
stream's rows are the timeline's rows of the same audio (stdin WAV, raw PCM at another rate, a
growing file, the Python API)."""
import csv
import io
import os
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile

from helpers import REPO_DIR, SR, melody
from pytorch import live
from pytorch.classifier import Classifier
from pytorch.main import main
from pytorch.predictor import load_predictor
from pytorch.windows import window_samples_of


def wav_bytes(waveform, rate=SR, subtype="PCM_16"):
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def timeline_rows(checkpoint, waveform, tmp_path, hop="0.5"):
    path = str(tmp_path / "same.wav")
    soundfile.write(path, waveform, SR, subtype="PCM_16")
    main(["inference", "--timeline", f"--checkpoint_path={checkpoint}", f"--audio_path={path}",
          f"--hop={hop}", f"--output={tmp_path / 'timeline.csv'}"])
    with open(tmp_path / "timeline.csv", newline="") as f:
        return [{key: value for key, value in row.items() if key != "file"}
                for row in csv.DictReader(f)]


def parse_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def assert_same_rows(got, expected, labels):
    assert [(row["start_s"], row["end_s"], row["predicted"]) for row in got] == [
        (row["start_s"], row["end_s"], row["predicted"]) for row in expected]
    for mine, theirs in zip(got, expected):
        for label in labels:
            # one window a pass against eight: float rounding only
            assert float(mine[label]) == pytest.approx(float(theirs[label]), abs=5e-5)


@pytest.mark.slow
def test_rows_come_while_stdin_is_still_open_and_match_the_timeline(single_label, tmp_path):
    waveform = melody(5.3)
    data = wav_bytes(waveform)
    process = subprocess.Popen(
        [sys.executable, "pytorch/main.py", "inference", "--stream", "--audio_path=-",
         f"--checkpoint_path={single_label['checkpoint']}", "--hop=0.5"],
        cwd=REPO_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_part = 44 + 2 * int(2.5 * SR)  # the header and 2.5 s: windows ending by 2.5 s
    process.stdin.write(data[:first_part])
    process.stdin.flush()
    header = process.stdout.readline().decode()
    early = [process.stdout.readline().decode() for _ in range(4)]  # ends 1.0, 1.5, 2.0, 2.5
    assert process.poll() is None  # still running: those rows did not wait for the end
    process.stdin.write(data[first_part:])
    process.stdin.close()
    rest, errors = process.stdout.read(), process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 0, errors.decode()
    rows = parse_rows(header + "".join(early) + rest.decode())
    assert [row["end_s"] for row in rows[:4]] == ["1.000", "1.500", "2.000", "2.500"]
    assert_same_rows(rows, timeline_rows(single_label["checkpoint"], waveform, tmp_path),
                     single_label["labels"])
    assert "latency from a window's last sample to its row: median" in errors.decode()


@pytest.mark.slow
def test_raw_pcm_at_another_rate_is_resampled_as_it_comes(single_label, tmp_path):
    rate, seconds = 16000, 3.2
    stereo = np.stack([melody(seconds, rate), melody(seconds, rate)], axis=1)
    raw = (stereo * 32767).astype("<i2").tobytes()
    result = subprocess.run(
        [sys.executable, "pytorch/main.py", "inference", "--stream", "--audio_path=-",
         f"--checkpoint_path={single_label['checkpoint']}", "--hop=0.5", "--stream_format=s16le",
         f"--stream_rate={rate}", "--stream_channels=2"],
        cwd=REPO_DIR, input=raw, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    rows = parse_rows(result.stdout.decode())
    # 3.2 s at 32 kHz in 1-s windows every 0.5 s, then the one aligned to the end
    assert [row["start_s"] for row in rows] == ["0.000", "0.500", "1.000", "1.500", "2.000",
                                                "2.200"]
    upsampled = timeline_rows(single_label["checkpoint"], melody(seconds), tmp_path)
    agree = np.mean([mine["predicted"] == theirs["predicted"]
                     for mine, theirs in zip(rows, upsampled)])
    assert agree >= 0.8  # the same melody, resampled: mostly the same labels


def test_a_growing_file_is_followed_until_it_stops_growing(single_label, tmp_path, monkeypatch):
    monkeypatch.setattr(live, "FOLLOW_IDLE_SECONDS", 1.0)
    waveform = melody(4.1)
    data = wav_bytes(waveform)
    path = tmp_path / "growing.wav"
    path.write_bytes(data[:1000])

    def writer():
        with open(path, "ab") as f:
            for start in range(1000, len(data), 16000):
                time.sleep(0.05)
                f.write(data[start:start + 16000])
                f.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    predictor = load_predictor(single_label["checkpoint"])
    window, hop = window_samples_of(predictor.run.audio, None, 0.5)
    args = types.SimpleNamespace(audio_path=str(path), stream_format="wav")
    output = io.StringIO()
    live.run_stream(args, predictor, window, hop, output)
    thread.join()
    assert_same_rows(parse_rows(output.getvalue()),
                     timeline_rows(single_label["checkpoint"], waveform, tmp_path),
                     single_label["labels"])


def test_the_python_api_streams_blocks_as_they_come(single_label, tmp_path):
    classifier = Classifier.from_checkpoint(single_label["checkpoint"])
    waveform = melody(3.7)
    blocks = (waveform[start:start + 1234] for start in range(0, len(waveform), 1234))
    rows = list(classifier.stream(blocks, SR, hop=0.5))
    expected = timeline_rows(single_label["checkpoint"], waveform, tmp_path)
    assert [f"{row['start_s']:.3f}" for row in rows] == [row["start_s"] for row in expected]
    for row, theirs in zip(rows, expected):
        assert row["predicted"] == theirs["predicted"].split(";")
        assert row["latency_s"] > 0
    at_48k = list(classifier.stream([melody(3.7, 48000)], 48000, hop=0.5))
    assert len(at_48k) == len(rows)


@pytest.mark.slow
@pytest.mark.parametrize("flags,stdin,words", [
    ([], b"not a wav at all", "not a WAV stream (no RIFF header)"),
    (["--output=x.csv"], b"", "--stream writes its rows to standard output"),
])
def test_bad_streams_are_one_line(single_label, flags, stdin, words):
    result = subprocess.run(
        [sys.executable, "pytorch/main.py", "inference", "--stream", "--audio_path=-",
         f"--checkpoint_path={single_label['checkpoint']}", *flags],
        cwd=REPO_DIR, input=stdin, capture_output=True, timeout=120)
    assert result.returncode == 2 and words in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert not os.path.exists(os.path.join(REPO_DIR, "x.csv"))
