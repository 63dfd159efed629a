"""The demo dataset, rendering and mixing."""
import os

import numpy as np
import soundfile
from scipy import signal

from scripts.demo.drums import DRUM_LEVELS, filtered
from scripts.demo.genres import GENRE_RECIPES
from scripts.demo.theory import midi_to_hz
from utils.audio import float32_to_int16
from utils.config import GTZAN_LABELS, SAMPLE_RATE
from utils.utilities import atomic_path


TAIL = 2.0             # seconds rendered past the clip so reverb and long notes end naturally


def apply_effect(audio, effect, sample_rate):
    kind, value = effect
    if kind == "drive":  # waveshaping: an overdriven amp; normalised first so drive is level-free
        return np.tanh(value * audio / (np.max(np.abs(audio)) + 1e-9))
    if kind in ("lowpass", "highpass"):
        return filtered(kind, value, sample_rate, audio)
    if kind == "echo":  # tape delay: a few fading repeats
        delay_seconds, feedback = value
        delay = int(delay_seconds * sample_rate)
        out = audio.copy()
        for repeat in range(1, 5):
            out[repeat * delay:] += feedback ** repeat * audio[:len(audio) - repeat * delay]
        return out
    raise ValueError(kind)


def active_rms(audio):
    """RMS over the samples where the part is actually playing, so sparse parts aren't boosted."""
    audio = audio[::4]  # plenty of samples for a level estimate, four times cheaper
    peak = np.max(np.abs(audio))
    if peak == 0:
        return 0.0
    playing = audio[np.abs(audio) > 0.01 * peak]
    return float(np.sqrt(np.mean(playing ** 2)))


def render_track(track, num_samples, sample_rate, rng):
    out = np.zeros(num_samples)
    for start_seconds, hold_seconds, pitch, velocity in track.notes:
        start = int(start_seconds * sample_rate)
        if start >= num_samples:
            continue
        wave = track.voice.render(midi_to_hz(pitch), max(1, int(hold_seconds * sample_rate)),
                                  velocity, sample_rate, rng)
        stop = min(num_samples, start + len(wave))
        out[start:stop] += wave[:stop - start]
    for effect in track.effects:
        out = apply_effect(out, effect, sample_rate)
    return out


def render_drums(song, num_samples):
    out = np.zeros(num_samples)
    for drum, start_seconds, velocity in song.drum_hits:
        start = int(start_seconds * song.sample_rate)
        if start >= num_samples:
            continue
        sample = song.kit[drum]
        stop = min(num_samples, start + len(sample))
        out[start:stop] += sample[:stop - start] * (DRUM_LEVELS[drum] * velocity ** 1.5)
    return out


def room_reverb(audio, seconds, wet, rng, sample_rate):
    """Convolution with decaying noise whose highs die faster: a plausible room or hall."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    noise = rng.standard_normal(len(t))
    darker = filtered("lowpass", 3000, sample_rate, noise)
    response = (darker * np.exp(-6.9 * t / seconds)
                + 0.3 * (noise - darker) * np.exp(-6.9 * t / (0.3 * seconds)))
    response[:int(0.01 * sample_rate)] = 0.0  # pre-delay
    response /= np.sqrt(np.sum(response ** 2))
    # single precision: several times faster, and a reverb tail needs no more
    tail = signal.fftconvolve(audio.astype(np.float32), response.astype(np.float32))[:len(audio)]
    return audio + wet * tail * (active_rms(audio) / (active_rms(tail) + 1e-9))


def vinyl_crackle(num_samples, clicks_per_second, rng, sample_rate):
    clicks = np.zeros(num_samples)
    count = rng.poisson(clicks_per_second * num_samples / sample_rate)
    clicks[rng.integers(0, num_samples, count)] = rng.uniform(-1, 1, count) * rng.uniform(0.02, 0.1, count)
    return filtered("highpass", 1000, sample_rate, clicks)


def mix_song(song):
    """Render all parts, balance them, add room, master saturation, noise; cut the clip."""
    sample_rate, rng = song.sample_rate, song.rng
    num_samples = int((song.clip_start + song.duration + TAIL) * sample_rate)
    parts = [(render_track(track, num_samples, sample_rate, rng), track.level_db)
             for track in song.tracks.values()]
    if song.kit is not None:
        parts.append((render_drums(song, num_samples), song.drums_db))
    mix = np.zeros(num_samples)
    for audio, level_db in parts:
        level = active_rms(audio)
        if level > 0:  # levels are relative to each part's own loudness, +-2 dB per clip
            mix += audio / level * 10 ** ((level_db + rng.uniform(-2, 2)) / 20)
    mix = room_reverb(mix, song.reverb_seconds, song.reverb_wet, rng, sample_rate)
    start = int(song.clip_start * sample_rate)
    clip = mix[start:start + int(round(song.duration * sample_rate))]
    if song.master_lowpass:
        clip = filtered("lowpass", song.master_lowpass, sample_rate, clip)
    clip = clip / (np.max(np.abs(clip)) + 1e-9)
    if song.master_drive:  # bus compression/saturation: louder, denser genres
        clip = np.tanh(song.master_drive * clip) / np.tanh(song.master_drive)
    clip = clip + 10 ** (song.noise_db / 20) * rng.standard_normal(len(clip))
    if song.crackle:
        clip = clip + vinyl_crackle(len(clip), song.crackle, rng, sample_rate)
    return clip


def clip_rng(seed, genre, index):
    """Each clip's own generator: the same clip whichever worker renders it, in whatever order."""
    return np.random.default_rng(np.random.SeedSequence([seed, GTZAN_LABELS.index(genre), index]))


def compose_clip(genre, index, clip_duration=30.0, sample_rate=SAMPLE_RATE, seed=1234):
    """The score of one clip (tempo, key, tracks, notes, drum hits), before any audio."""
    return GENRE_RECIPES[genre](clip_rng(seed, genre, index), clip_duration, sample_rate)


def synthesize_clip(genre, index, clip_duration=30.0, sample_rate=SAMPLE_RATE, seed=1234):
    """One clip as float32 in [-1, 1], peak 0.45..0.9."""
    return render_song(compose_clip(genre, index, clip_duration, sample_rate, seed))


def render_song(song):
    """A composed song as float32 in [-1, 1], peak 0.45..0.9."""
    clip = mix_song(song)
    peak = 0.9 * song.rng.uniform(0.5, 1.0)
    clip = clip / (np.max(np.abs(clip)) + 1e-9) * peak
    return clip.astype(np.float32)


def write_wav(path, audio, sample_rate):
    """16-bit mono WAV, written atomically."""
    with atomic_path(path) as temp_path:
        soundfile.write(temp_path, float32_to_int16(audio), sample_rate, subtype="PCM_16", format="WAV")


def clip_path(output_dir, genre, index):
    return os.path.join(output_dir, genre, f"{genre}.{index:05d}.wav")


def _write_clip(job):
    output_dir, genre, index, clip_duration, sample_rate, seed = job
    audio = synthesize_clip(genre, index, clip_duration, sample_rate, seed)
    path = clip_path(output_dir, genre, index)
    write_wav(path, audio, sample_rate)
    return path
