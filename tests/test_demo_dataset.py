"""The synthetic GTZAN-layout dataset: layout, audio format, determinism, genre differences, CLI."""
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
import soundfile

from scripts.demo.mixing import compose_clip, synthesize_clip
from scripts.make_demo_dataset import make_demo_dataset
from utils.config import GTZAN_LABELS
from utils.utilities import UsageError

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_DIR, "scripts", "make_demo_dataset.py")
SMALL = dict(genres=3, clips_per_genre=2, clip_duration=2.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    return root, make_demo_dataset(root, sample_rate=16000, num_workers=1, **SMALL)


def read_bytes(paths):
    contents = []
    for path in paths:
        with open(path, "rb") as f:
            contents.append(f.read())
    return contents


def test_layout_follows_gtzan(dataset):
    root, paths = dataset
    genres = GTZAN_LABELS[:3]
    assert sorted(os.listdir(root)) == sorted(genres)
    expected = [os.path.join(root, g, f"{g}.{i:05d}.wav") for g in genres for i in range(2)]
    assert paths == expected
    for genre in genres:  # nothing else: no temporary files left behind
        assert sorted(os.listdir(os.path.join(root, genre))) == [f"{genre}.00000.wav", f"{genre}.00001.wav"]


def test_files_are_mono_16bit_at_the_requested_rate_and_length(dataset):
    _, paths = dataset
    for path in paths:
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 32000)
        assert info.format == "WAV" and info.subtype == "PCM_16"
        audio, _ = soundfile.read(path)
        peak = np.max(np.abs(audio))
        assert 0.4 < peak < 0.91  # normalised below full scale, with a random gain
        assert np.sqrt(np.mean(audio ** 2)) > 0.02  # music throughout, not a blip


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_the_worker_count(dataset, tmp_path):
    _, first = dataset
    second = make_demo_dataset(str(tmp_path), sample_rate=16000, num_workers=2, **SMALL)
    assert read_bytes(first) == read_bytes(second)


def test_different_seed_gives_different_music():
    for genre in ("blues", "metal"):
        a = synthesize_clip(genre, 0, 2.0, 16000, seed=1)
        b = synthesize_clip(genre, 0, 2.0, 16000, seed=2)
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.5
        tempos = [compose_clip(genre, 0, 2.0, 16000, seed=seed).tempo for seed in (1, 2)]
        assert tempos[0] != tempos[1]


def power_spectrum(audio, sample_rate, frame=1024):
    frames = audio[:len(audio) // frame * frame].reshape(-1, frame) * np.hanning(frame)
    return np.fft.rfftfreq(frame, 1 / sample_rate), np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)


def test_metal_is_brighter_and_noisier_than_classical():
    """Distorted guitars and cymbals versus strings and piano: every metal clip has a higher
    spectral centroid and more energy above 4 kHz than any classical clip."""
    features = {}
    for genre in ("classical", "metal"):
        features[genre] = []
        for index in range(3):
            freqs, power = power_spectrum(synthesize_clip(genre, index, 2.0), 32000)
            centroid = np.sum(freqs * power) / np.sum(power)
            high_share = np.sum(power[freqs > 4000]) / np.sum(power)
            features[genre].append((centroid, high_share))
    classical, metal = np.array(features["classical"]), np.array(features["metal"])
    assert metal[:, 0].min() > 1.2 * classical[:, 0].max()
    assert metal[:, 1].min() > 3 * classical[:, 1].max()


def onset_envelope(audio, sample_rate, frame=1024, hop=320):
    """Spectral flux: how much the log spectrum rises from one frame to the next."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop] * np.hanning(frame)
    log_spectrum = np.log1p(100 * np.abs(np.fft.rfft(frames, axis=1)))
    return np.maximum(np.diff(log_spectrum, axis=0), 0).sum(axis=1)


@pytest.mark.slow
def test_disco_beat_is_heard_at_the_composed_tempo():
    """Four-on-the-floor: the tempo heard in the audio is each clip's drawn tempo (or double/half)."""
    tempos = []
    for index in range(3):
        audio = synthesize_clip("disco", index, 8.0)
        envelope = onset_envelope(audio, 32000, hop=320)
        heard = librosa.feature.tempo(onset_envelope=envelope, sr=32000, hop_length=320)[0]
        composed = compose_clip("disco", index, 8.0).tempo
        assert 112 <= composed <= 130
        assert min(abs(heard * k / composed - 1) for k in (0.5, 1, 2)) < 0.04
        tempos.append(composed)
    assert len(set(tempos)) == 3


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=REPO_DIR)


def test_bad_genre_count_is_a_one_line_usage_error(tmp_path):
    result = run_script(f"--output_dir={tmp_path}", "--genres=11")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--genres=11" in lines[0] and "Traceback" not in result.stderr
    assert not os.listdir(tmp_path)
    with pytest.raises(UsageError, match="--genres=1:"):
        make_demo_dataset(str(tmp_path), genres=1)


def test_cli_writes_and_reports(tmp_path):
    result = run_script(f"--output_dir={tmp_path}", "--genres=2", "--clips_per_genre=1",
                        "--clip_duration=1", "--num_workers=1")
    assert result.returncode == 0, result.stderr
    assert "2 clips" in result.stdout and str(tmp_path) in result.stdout
    assert os.path.isfile(tmp_path / "classical" / "classical.00000.wav")
