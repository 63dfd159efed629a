#!/usr/bin/env python3
"""Synthesise a small music-genre dataset in the GTZAN folder layout (the pipeline's default data).

    python3 scripts/make_demo_dataset.py --output_dir=DIR [--genres=10] [--clips_per_genre=20]
        [--clip_duration=30] [--sample_rate=32000] [--seed=1234] [--num_workers=N]

writes DIR/<genre>/<genre>.00000.wav ... as 16-bit mono WAV. Everything is synthesised in numpy:
a few instrument voices (wavetable additive, FM, Karplus-Strong plucks, waveshaped distortion) and
a drum kit, arranged by one recipe per genre that differs as real genres do: tempo, groove and
swing, drum pattern, instruments, harmony and scale, note density, dynamics, mix. Each clip draws
its own tempo, key, instruments, humanised timing and velocity, noise and gain from a random
generator seeded by (seed, genre, clip index), so the output is byte-identical for a given seed
whatever the number of worker processes.
"""
import os
import sys
from collections import namedtuple
from functools import lru_cache
from multiprocessing import Pool

import numpy as np
import soundfile
from scipy import signal
from tqdm import tqdm

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils.arguments import Parser, float_range, int_range, non_negative_int, positive_int
from utils.audio import float32_to_int16
from utils.config import GTZAN_LABELS, SAMPLE_RATE
from utils.utilities import UsageError, atomic_path, create_folder, run_cli

LEAD_IN = 0.1          # seconds of silence before beat 0, so early humanised notes stay in the buffer
TAIL = 2.0             # seconds rendered past the clip so reverb and long notes end naturally
TABLE_SIZE = 2048      # wavetable length (power of two: phase wraps with a bit mask)


# ----------------------------------------------------------------------------------------------
# Music theory: scales, chords, voicings
# ----------------------------------------------------------------------------------------------

MAJOR = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
MAJOR_PENTATONIC = (0, 2, 4, 7, 9)
MINOR_PENTATONIC = (0, 3, 5, 7, 10)
BLUES_SCALE = (0, 3, 5, 6, 7, 10)   # minor pentatonic plus the flat-five blue note

CHORD_QUALITIES = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "power": (0, 7, 12),
    "dom7": (0, 4, 7, 10), "min7": (0, 3, 7, 10), "maj7": (0, 4, 7, 11),
    "dom9": (0, 4, 7, 10, 14), "min9": (0, 3, 7, 10, 14), "maj9": (0, 4, 7, 11, 14),
    "maj6": (0, 4, 7, 9),
}

Chord = namedtuple("Chord", "root intervals")  # root: semitones above the key; intervals above root


def chord(root, quality):
    return Chord(root, CHORD_QUALITIES[quality])


def diatonic_triad(scale, degree):
    """The triad built on `degree` (0-based) of a seven-note scale, stacking scale thirds."""
    root = scale[degree % 7]
    third = (scale[(degree + 2) % 7] - root) % 12
    fifth = (scale[(degree + 4) % 7] - root) % 12
    return Chord(root, (0, third, fifth))


def midi_to_hz(pitch):
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def chord_pitch_classes(key, chord_):
    return {(key + chord_.root + interval) % 12 for interval in chord_.intervals}


def close_voicing(key, chord_, center):
    """Each chord tone at its octave nearest `center`: compact voicings that move smoothly."""
    pitches = set()
    for interval in chord_.intervals:
        pitch_class = (key + chord_.root + interval) % 12
        pitches.add(center - 6 + (pitch_class - (center - 6)) % 12)
    return sorted(pitches)


def root_in_range(key, chord_, low):
    """The chord root in the octave starting at `low` (bass register)."""
    return low + (key + chord_.root - low) % 12


def scale_pool(key, scale, low, high):
    """All pitches of the scale between low and high (inclusive), ascending."""
    return [p for p in range(low, high + 1) if (p - key) % 12 in scale]


def nearest_chord_tone(pitch, pitch_classes, pool):
    candidates = [p for p in pool if p % 12 in pitch_classes]
    if not candidates:
        return pitch
    return min(candidates, key=lambda p: (abs(p - pitch), p))


# ----------------------------------------------------------------------------------------------
# Instrument voices: each renders one note as a numpy array (hold time plus release tail)
# ----------------------------------------------------------------------------------------------

def _spectrum(name, k):
    """Amplitude of harmonic k (1-based) for the named waveform."""
    if name == "sine":
        return 1.0 if k == 1 else 0.0
    if name == "saw":
        return 1.0 / k
    if name == "soft_saw":
        return 1.0 / k ** 1.7
    if name == "square":
        return 1.0 / k if k % 2 else 0.0
    if name == "reed":  # clarinet-like: strong odd harmonics, weak even ones
        return (1.0 if k % 2 else 0.15) / k
    if name == "organ":  # drawbars 8', 4', 2 2/3', 2', 1 3/5', 1'
        return {1: 1.0, 2: 0.8, 3: 0.6, 4: 0.5, 5: 0.15, 6: 0.35, 8: 0.3}.get(k, 0.0)
    if name == "piano":  # hammer near 1/7 of the string: the 7th harmonic is missing
        return 0.0 if k % 7 == 0 else 1.0 / k ** 1.2
    if name == "mellow":
        return 1.0 / k ** 3
    if name == "flute":
        return {1: 1.0, 2: 0.4, 3: 0.15, 4: 0.06}.get(k, 0.0)
    raise ValueError(name)


@lru_cache(maxsize=None)
def wavetable(name, max_harmonic):
    """One period of the waveform with harmonics up to max_harmonic (band-limited, peak 1)."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=complex)
    for k in range(1, max_harmonic + 1):
        spectrum[k] = -1j * _spectrum(name, k)  # sine phase
    table = np.fft.irfft(spectrum, TABLE_SIZE)
    return (table / np.max(np.abs(table))).astype(np.float32)


def harmonic_limit(freq, sample_rate):
    """Most harmonics a note can carry without aliasing, rounded down to a cached table size."""
    limit = int(0.45 * sample_rate / (freq * 1.02))
    for count in (64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2):
        if count <= limit:
            return count
    return 1


def amplitude_envelope(num_samples, hold_samples, sample_rate, attack, decay, sustain):
    """Attack ramp, exponential decay to the sustain level, squared fade over the release tail."""
    if sustain < 1.0:
        t = np.arange(num_samples, dtype=np.float32) / np.float32(sample_rate)
        envelope = sustain + (1.0 - sustain) * np.exp(-t / decay)
    else:
        envelope = np.ones(num_samples, dtype=np.float32)
    attack_samples = min(num_samples, int(attack * sample_rate))
    if attack_samples > 0:
        envelope[:attack_samples] *= np.linspace(0.0, 1.0, attack_samples, endpoint=False, dtype=np.float32)
    release_samples = num_samples - hold_samples
    if release_samples > 0:
        envelope[hold_samples:] *= np.linspace(1.0, 0.0, release_samples, dtype=np.float32) ** 2
    return envelope


def audible_hold(hold_samples, sample_rate, decay, sustain):
    """A note that decays to silence needs no samples past about -60 dB, however long it is held."""
    return hold_samples if sustain > 0 else min(hold_samples, int(7 * decay * sample_rate))


def warped_time(t, vibrato=None, glide=None):
    """Time as a 1 Hz oscillator sees it; times a frequency gives the phase in cycles.

    Vibrato (rate, depth) and pitch glide (amount, time constant) are closed forms of the
    integrated instantaneous frequency, so there is no cumulative sum, and every oscillator of
    a note (detuned copies, FM operators) shares the result.
    """
    warped = t
    if vibrato:
        rate, depth = vibrato
        warped = warped + depth / (2 * np.pi * rate) * (1.0 - np.cos(2 * np.pi * rate * t))
    if glide:
        amount, time_constant = glide
        warped = warped + amount * time_constant * (1.0 - np.exp(-t / time_constant))
    return warped


def tremolo_gain(t, tremolo):
    rate, depth = tremolo
    return (1.0 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))).astype(np.float32)


class WavetableVoice:
    """Additive synthesis from band-limited wavetables: organ, piano, strings, pads, leads, basses.

    Brightness fades from the `bright` to the `mellow` table, which sounds like a closing filter.
    """

    def __init__(self, bright, mellow, attack, decay, sustain, release, brightness=1.0,
                 brightness_decay=None, vibrato=None, tremolo=None, detune_cents=0.0, glide=None,
                 pitch_decay=False):
        self.bright, self.mellow = bright, mellow
        self.attack, self.decay, self.sustain, self.release = attack, decay, sustain, release
        self.brightness, self.brightness_decay = brightness, brightness_decay
        self.vibrato, self.tremolo, self.detune_cents, self.glide = vibrato, tremolo, detune_cents, glide
        self.pitch_decay = pitch_decay  # higher notes die away faster, like struck strings

    def render(self, freq, hold_samples, velocity, sample_rate, rng):
        decay = self.decay * (261.6 / freq) ** 0.5 if self.pitch_decay else self.decay
        hold_samples = audible_hold(hold_samples, sample_rate, decay, self.sustain)
        num_samples = hold_samples + int(self.release * sample_rate)
        t = np.arange(num_samples) / sample_rate
        time_warp = warped_time(t, self.vibrato, self.glide)
        harmonics = harmonic_limit(freq * (1 + self.detune_cents / 1200), sample_rate)
        bright_table = wavetable(self.bright, harmonics)
        mellow_table = wavetable(self.mellow, harmonics)
        brightness = self.brightness * (0.5 + 0.5 * velocity)
        if self.brightness_decay:
            brightness = (brightness * np.exp(-t / self.brightness_decay)).astype(np.float32)
        else:  # constant brightness: blend the tables once, look up once
            mellow_table = mellow_table + brightness * (bright_table - mellow_table)
        detunes = (-self.detune_cents, self.detune_cents) if self.detune_cents else (0.0,)
        wave = np.zeros(num_samples, dtype=np.float32)
        for cents in detunes:
            start_phase = rng.random()  # free-running oscillators
            cycles = time_warp * (freq * 2 ** (cents / 1200)) + start_phase
            index = (cycles * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)
            wave += mellow_table[index]
            if self.brightness_decay:
                wave += brightness * (bright_table[index] - mellow_table[index])
        envelope = amplitude_envelope(num_samples, hold_samples, sample_rate, self.attack, decay,
                                      self.sustain)
        if self.tremolo:
            envelope *= tremolo_gain(t, self.tremolo)
        return wave * envelope * np.float32(velocity ** 1.5 / len(detunes))


class FMVoice:
    """Two-operator FM: electric piano, bell, vibraphone, brassy sax/trumpet.

    index_follows_envelope makes brightness track loudness, the signature of brass and reeds.
    """

    def __init__(self, ratio, index, index_decay, attack, decay, sustain, release,
                 vibrato=None, tremolo=None, index_follows_envelope=False):
        self.ratio, self.index, self.index_decay = ratio, index, index_decay
        self.attack, self.decay, self.sustain, self.release = attack, decay, sustain, release
        self.vibrato, self.tremolo = vibrato, tremolo
        self.index_follows_envelope = index_follows_envelope

    def render(self, freq, hold_samples, velocity, sample_rate, rng):
        hold_samples = audible_hold(hold_samples, sample_rate, self.decay, self.sustain)
        num_samples = hold_samples + int(self.release * sample_rate)
        t = np.arange(num_samples) / sample_rate
        envelope = amplitude_envelope(num_samples, hold_samples, sample_rate, self.attack,
                                      self.decay, self.sustain)
        # fewer sidebands for high notes, to keep them below Nyquist
        index = self.index * velocity * min(1.0, 0.1 * sample_rate / (freq * (self.ratio + 1)))
        if self.index_follows_envelope:
            index = index * envelope
        else:
            index = index * (0.15 + 0.85 * np.exp(-t / self.index_decay))
        phase = (2 * np.pi * freq) * warped_time(t, self.vibrato)
        wave = np.sin(phase + index * np.sin(self.ratio * phase)).astype(np.float32)
        if self.tremolo:
            envelope *= tremolo_gain(t, self.tremolo)
        return wave * envelope * np.float32(velocity ** 1.5)


class PluckVoice:
    """Karplus-Strong plucked string: guitars, basses, banjo.

    A burst of noise circulates in a delay line of one period whose two-tap average is the string
    loss. Every sample of one period depends only on the period before, so the loop runs once per
    period on whole numpy slices instead of once per sample.
    """

    def __init__(self, brightness, sustain_time, release, pick_position=0.15):
        self.brightness, self.sustain_time, self.release = brightness, sustain_time, release
        self.pick_position = pick_position

    def render(self, freq, hold_samples, velocity, sample_rate, rng):
        hold_samples = audible_hold(hold_samples, sample_rate, self.sustain_time, 0.0)
        num_samples = hold_samples + int(self.release * sample_rate)
        period = max(2, int(round(sample_rate / freq - 0.5)))  # the average adds half a sample
        # Shape the burst's spectrum, bin k being harmonic k: a plucked string falls off with k,
        # darker strings and softer plucks from a lower harmonic, whatever the pitch.
        spectrum = np.fft.rfft(rng.uniform(-1.0, 1.0, period))
        harmonic = np.maximum(np.arange(len(spectrum)), 1)
        cutoff_harmonic = 1.5 + 30.0 * self.brightness * (0.5 + 0.5 * velocity)
        tilt = 1.2 - 0.8 * self.brightness
        spectrum /= harmonic ** tilt * (1.0 + (harmonic / cutoff_harmonic) ** 2)
        excitation = np.fft.irfft(spectrum, period)
        excitation -= np.roll(excitation, max(1, int(self.pick_position * period)))  # pick comb
        excitation -= excitation.mean()
        excitation /= np.max(np.abs(excitation)) + 1e-9
        loss = 0.5 * np.exp(-period / (sample_rate * self.sustain_time))
        string = np.zeros(num_samples + 1)  # string[i + 1] holds sample i; string[0] is y[-1] = 0
        string[1:min(period, num_samples) + 1] = excitation[:num_samples]
        for start in range(period + 1, num_samples + 1, period):
            stop = min(start + period, num_samples + 1)
            string[start:stop] = loss * (string[start - period:stop - period]
                                         + string[start - period - 1:stop - period - 1])
        wave = string[1:]
        release_samples = num_samples - hold_samples
        if release_samples > 0:  # the player damps the string
            wave[hold_samples:] *= np.linspace(1.0, 0.0, release_samples) ** 2
        return wave * velocity ** 1.5


def make_voice(name, rng):
    """An instrument preset, with small per-clip variations of its timbre."""
    vary = lambda value, spread=0.15: value * rng.uniform(1 - spread, 1 + spread)  # noqa: E731
    vibrato = (vary(5.5, 0.1), vary(0.005, 0.3))
    presets = {
        "piano": lambda: WavetableVoice("piano", "mellow", 0.002, vary(1.2), 0.0, 0.15,
                                        brightness=vary(0.9), brightness_decay=vary(0.3),
                                        pitch_decay=True),
        "organ": lambda: WavetableVoice("organ", "organ", 0.008, 1.0, 1.0, 0.06,
                                        tremolo=(vary(6.5), vary(0.15))),
        "strings": lambda: WavetableVoice("saw", "soft_saw", vary(0.12), 1.0, 1.0, vary(0.3),
                                          brightness=vary(0.15), vibrato=vibrato, detune_cents=vary(7)),
        "pad": lambda: WavetableVoice("saw", "mellow", vary(0.35), 1.0, 1.0, vary(0.6),
                                      brightness=vary(0.3), detune_cents=vary(10)),
        "synth_lead": lambda: WavetableVoice(str(rng.choice(["saw", "square"])), "soft_saw", 0.01,
                                             vary(0.4), 0.7, 0.1, brightness=vary(0.8),
                                             brightness_decay=vary(0.5), vibrato=vibrato),
        "flute": lambda: WavetableVoice("flute", "sine", vary(0.06), 1.0, 1.0, 0.1, vibrato=vibrato),
        "clarinet": lambda: WavetableVoice("reed", "mellow", vary(0.04), 1.0, 1.0, 0.1,
                                           brightness=vary(0.7), vibrato=(5.0, 0.002)),
        "sub_bass": lambda: WavetableVoice("sine", "sine", 0.003, vary(0.8), 0.0, 0.08,
                                           glide=(vary(0.5), 0.04)),
        "synth_bass": lambda: WavetableVoice("saw", "mellow", 0.003, vary(0.35), 0.5, 0.05,
                                             brightness=vary(0.7), brightness_decay=vary(0.08)),
        "epiano": lambda: FMVoice(1.0, vary(1.8), vary(0.5), 0.002, vary(1.4), 0.0, 0.15,
                                  tremolo=(vary(4.0), vary(0.1))),
        "bell": lambda: FMVoice(3.5, vary(2.5), vary(1.0), 0.001, vary(1.8), 0.0, 0.3),
        "vibes": lambda: FMVoice(4.0, vary(1.2), vary(0.4), 0.001, vary(1.4), 0.0, 0.3,
                                 tremolo=(vary(5.0), vary(0.3))),
        "sax": lambda: FMVoice(1.0, vary(2.2), 1.0, vary(0.04), 0.5, 0.8, 0.08, vibrato=vibrato,
                               index_follows_envelope=True),
        "trumpet": lambda: FMVoice(1.0, vary(3.2), 1.0, vary(0.03), 0.4, 0.75, 0.06, vibrato=vibrato,
                                   index_follows_envelope=True),
        "acoustic_guitar": lambda: PluckVoice(vary(0.8), vary(1.5), 0.08),
        "electric_guitar": lambda: PluckVoice(vary(0.7), vary(2.0), 0.06),
        "muted_guitar": lambda: PluckVoice(vary(0.6), vary(0.1), 0.02),
        "banjo": lambda: PluckVoice(0.95, vary(0.4), 0.05, pick_position=0.08),
        "electric_bass": lambda: PluckVoice(vary(0.45), vary(1.2), 0.05, pick_position=0.2),
        "upright_bass": lambda: PluckVoice(vary(0.2), vary(0.6), 0.08, pick_position=0.25),
    }
    return presets[name]()


# ----------------------------------------------------------------------------------------------
# Drums: each kit piece is rendered once per clip (tuned by the clip's RNG) and placed per hit
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def butter(kind, cutoff, sample_rate, order=2):
    nyquist_guard = 0.45 * sample_rate
    if isinstance(cutoff, tuple):  # at low sample rates squeeze the band under Nyquist
        cutoff = (min(cutoff[0], 0.3 * sample_rate), min(cutoff[1], nyquist_guard))
    else:
        cutoff = min(cutoff, nyquist_guard)
    return signal.butter(order, cutoff, btype=kind, fs=sample_rate, output="sos")


def filtered(kind, cutoff, sample_rate, x):
    return signal.sosfilt(butter(kind, cutoff, sample_rate), x)


def decaying(t, time_constant):
    return np.exp(-t / time_constant)


def metallic_partials(t, base, rng):
    """Inharmonic square waves, the classic analogue cymbal/hat tone."""
    ratios = np.array([1.0, 1.48, 1.8, 2.55, 2.63, 3.9]) * rng.uniform(0.95, 1.05, 6)
    return sum(np.sign(np.sin(2 * np.pi * base * r * t + rng.random() * 6.28)) for r in ratios) / 6


def make_drum_kit(style, rng, sample_rate):
    """Kit pieces as arrays, peak about 1. style: acoustic, jazz, metal, electronic."""
    sr = sample_rate
    t = np.arange(int(2.0 * sr)) / sr
    noise = rng.standard_normal(len(t))
    cut = lambda x, seconds: x[:int(seconds * sr)]  # noqa: E731

    def kick(start_hz, end_hz, pitch_time, body_time, click):
        cycles = end_hz * t + (start_hz - end_hz) * pitch_time * (1 - np.exp(-t / pitch_time))
        body = np.sin(2 * np.pi * cycles) * decaying(t, body_time)
        beater = filtered("highpass", 2500, sr, noise) * decaying(t, 0.004) * click
        return cut(body + beater, 6 * body_time)

    def snare(tone_hz, noise_time, snappy):
        tone = np.sin(2 * np.pi * tone_hz * t) * decaying(t, 0.05)
        wires = filtered("bandpass", (1500, 9000), sr, noise) * decaying(t, noise_time) * snappy * 2
        return cut(tone + wires, 5 * noise_time)

    top_hz = 7000 if style == "jazz" else 11000  # a warm, dark jazz ride; brighter rock cymbals

    def cymbal(base_hz, time_constant, low_hz):  # metallic partials and noise, top rolled off
        n = int(min(2.0, 5 * time_constant) * sr)
        body = metallic_partials(t[:n], base_hz, rng) + 0.8 * noise[:n]
        return filtered("bandpass", (min(low_hz, top_hz / 2), top_hz), sr, body) * decaying(t[:n], time_constant)

    pieces = {
        "hat": cymbal(rng.uniform(300, 420), rng.uniform(0.02, 0.04), 7000),
        "open_hat": cymbal(rng.uniform(300, 420), rng.uniform(0.2, 0.35), 7000),
        "ride": cymbal(rng.uniform(380, 520), rng.uniform(0.5, 0.9), 2500),
        "crash": cymbal(rng.uniform(300, 420), rng.uniform(0.7, 1.1), 3500),
        "tom": kick(rng.uniform(180, 220), rng.uniform(110, 140), 0.1, 0.2, 0.1),
        "low_tom": kick(rng.uniform(130, 150), rng.uniform(75, 95), 0.1, 0.25, 0.1),
        "rim": cut((np.sin(2 * np.pi * rng.uniform(1600, 2000) * t) * 0.6
                    + filtered("highpass", 3000, sr, noise) * 0.5) * decaying(t, 0.012), 0.08),
        "brush": cut(filtered("bandpass", (2000, 8000), sr, noise) * np.minimum(1, t / 0.01)
                     * decaying(t, 0.07), 0.3),
    }
    claps = sum(np.roll(decaying(t, 0.006), int(d * sr)) for d in (0.0, 0.011, 0.023))
    claps += 0.6 * np.roll(decaying(t, 0.07), int(0.03 * sr))
    pieces["clap"] = cut(filtered("bandpass", (800, 3500), sr, noise) * claps, 0.4)
    if style == "metal":  # tight clicky kick, bright crisp snare
        pieces["kick"] = kick(rng.uniform(180, 230), rng.uniform(50, 60), 0.015, 0.09, 0.9)
        pieces["snare"] = snare(rng.uniform(200, 240), rng.uniform(0.1, 0.14), 1.2)
    elif style == "jazz":  # small, high-tuned kick; soft snare
        pieces["kick"] = kick(rng.uniform(110, 140), rng.uniform(60, 75), 0.04, 0.15, 0.1)
        pieces["snare"] = snare(rng.uniform(220, 260), rng.uniform(0.08, 0.12), 0.6)
    elif style == "electronic":  # long boomy 808-style kick
        pieces["kick"] = kick(rng.uniform(110, 150), rng.uniform(42, 52), 0.04, rng.uniform(0.25, 0.45), 0.3)
        pieces["snare"] = snare(rng.uniform(180, 210), rng.uniform(0.12, 0.18), 1.0)
    else:
        pieces["kick"] = kick(rng.uniform(130, 170), rng.uniform(48, 60), 0.03, rng.uniform(0.12, 0.2), 0.4)
        pieces["snare"] = snare(rng.uniform(170, 210), rng.uniform(0.1, 0.16), 1.0)
    return {name: piece / (np.max(np.abs(piece)) + 1e-9) for name, piece in pieces.items()}


DRUM_LEVELS = {  # kit balance before the mix
    "kick": 1.0, "snare": 0.8, "clap": 0.6, "hat": 0.3, "open_hat": 0.22, "ride": 0.16,
    "crash": 0.3, "tom": 0.7, "low_tom": 0.75, "rim": 0.5, "brush": 0.35,
}


# ----------------------------------------------------------------------------------------------
# A song: timing (tempo, swing, rubato), harmony, notes per track, drum hits, mix settings
# ----------------------------------------------------------------------------------------------

class Track:
    def __init__(self, voice, level_db, effects):
        self.voice, self.level_db, self.effects = voice, level_db, effects
        self.notes = []  # (start seconds, hold seconds, midi pitch, velocity)


class Song:
    """The score of one clip. Positions are in beats; time_of() turns them into seconds."""

    def __init__(self, rng, duration, sample_rate, tempo, beats_per_bar=4, swing=0.0,
                 swing_unit=0.5, timing_jitter=0.006, velocity_jitter=0.08, tempo_wobble=0.0,
                 dynamics_depth=0.0):
        self.rng, self.duration, self.sample_rate = rng, duration, sample_rate
        self.tempo, self.seconds_per_beat = tempo, 60.0 / tempo
        self.beats_per_bar = beats_per_bar
        self.swing, self.swing_unit = swing, swing_unit
        self.timing_jitter, self.velocity_jitter = timing_jitter, velocity_jitter
        self.tempo_wobble, self.dynamics_depth = tempo_wobble, dynamics_depth
        self.wobble_phase, self.dynamics_phase = rng.uniform(0, 2 * np.pi, 2)
        bar_seconds = beats_per_bar * self.seconds_per_beat
        # Cut the clip from a random point of the first bar: real excerpts rarely start on a downbeat.
        self.clip_start = LEAD_IN + rng.uniform(0, bar_seconds)
        self.num_bars = int(np.ceil((self.clip_start + duration) / bar_seconds * (1 + tempo_wobble))) + 1
        self.key, self.scale = 0, MAJOR
        self.chords, self.beats_per_chord = [Chord(0, (0, 4, 7))], 4
        self.tracks, self.drum_hits, self.kit = {}, [], None
        self.drums_db = 0.0
        self.reverb_seconds, self.reverb_wet = 0.8, 0.1
        self.master_drive = 0.0      # tanh saturation of the whole mix (loudness, compression)
        self.master_lowpass = None   # lo-fi
        self.noise_db = -60.0        # hiss relative to the clip's peak
        self.crackle = 0.0           # vinyl clicks per second

    def use_drums(self, style, level_db=0.0):
        self.kit, self.drums_db = make_drum_kit(style, self.rng, self.sample_rate), level_db

    def set_room(self, reverb_seconds, reverb_wet):
        self.reverb_seconds, self.reverb_wet = reverb_seconds, reverb_wet

    # timing -----------------------------------------------------------------------------------
    def time_of(self, beat):
        unit_position = beat / self.swing_unit
        nearest = round(unit_position)
        if self.swing and abs(unit_position - nearest) < 1e-6 and nearest % 2 == 1:
            beat += self.swing * self.swing_unit / 3  # full swing: the off-beat lands on the triplet
        seconds = beat * self.seconds_per_beat
        if self.tempo_wobble:  # rubato: the tempo drifts around its nominal value over 8 bars
            period = 8 * self.beats_per_bar
            seconds += (self.tempo_wobble * period / (2 * np.pi) * self.seconds_per_beat
                        * np.sin(2 * np.pi * beat / period + self.wobble_phase))
        return LEAD_IN + seconds

    def loudness(self, beat):
        """Slow crescendos and diminuendos over four bars (depth 0: steady dynamics)."""
        period = 4 * self.beats_per_bar
        return 1.0 + self.dynamics_depth * np.sin(2 * np.pi * beat / period + self.dynamics_phase)

    def humanised(self, beat, velocity):
        start = self.time_of(beat) + self.rng.normal(0, self.timing_jitter)
        velocity = velocity * self.loudness(beat) * (1 + self.rng.normal(0, self.velocity_jitter))
        return max(0.0, start), float(np.clip(velocity, 0.05, 1.0))

    # harmony ----------------------------------------------------------------------------------
    def chord_at(self, beat):
        return self.chords[int(beat // self.beats_per_chord + 1e-9) % len(self.chords)]

    def bar_start(self, bar):
        return bar * self.beats_per_bar

    # writing notes ----------------------------------------------------------------------------
    def add_track(self, name, instrument, level_db, effects=()):
        self.tracks[name] = Track(make_voice(instrument, self.rng), level_db, list(effects))

    def note(self, track, beat, length, pitch, velocity):
        start, velocity = self.humanised(beat, velocity)
        hold = max(0.02, self.time_of(beat + length) - self.time_of(beat))
        self.tracks[track].notes.append((start, hold, pitch, velocity))

    def strum(self, track, beat, length, pitches, velocity, spread=0.012, upward=False):
        """A chord, its strings sounding one after another like a strum (spread 0: block chord)."""
        start, velocity = self.humanised(beat, velocity)
        hold = max(0.02, self.time_of(beat + length) - self.time_of(beat))
        ordered = sorted(pitches, reverse=upward)
        for i, pitch in enumerate(ordered):
            delay = i * spread * self.rng.uniform(0.7, 1.3)
            self.tracks[track].notes.append((start + delay, max(0.02, hold - delay), pitch,
                                             velocity * self.rng.uniform(0.85, 1.0)))

    def hit(self, drum, beat, velocity):
        start, velocity = self.humanised(beat, velocity)
        self.drum_hits.append((drum, start, velocity))

    def drum_bar(self, bar, patterns):
        """patterns: {drum: string}, one character per grid step across the bar.

        'X' accent, 'x' normal, 'o' ghost note, '.' rest.
        """
        velocities = {"X": 1.0, "x": 0.75, "o": 0.35}
        for drum, steps in patterns.items():
            if not steps:
                continue
            step_beats = self.beats_per_bar / len(steps)
            for i, symbol in enumerate(steps):
                if symbol in velocities:
                    self.hit(drum, self.bar_start(bar) + i * step_beats, velocities[symbol])


# ----------------------------------------------------------------------------------------------
# Shared arranging helpers
# ----------------------------------------------------------------------------------------------

def make_phrase(song, start_beat, length_beats, pool, durations, weights, rest_probability,
                leap_probability=0.15):
    """A melodic phrase: random walk on the scale, chord tones on the beats. Returns notes as
    (offset beats, length beats, pitch) so the phrase can be repeated elsewhere (motifs)."""
    rng = song.rng
    center = pool[len(pool) // 2]
    index = int(np.argmin([abs(p - center) for p in pool]))
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    phrase, offset = [], 0.0
    while offset < length_beats - 1e-9:
        length = min(float(rng.choice(durations, p=weights)), length_beats - offset)
        if rng.random() >= rest_probability:
            step = int(rng.choice([-2, -1, 1, 2], p=[0.2, 0.3, 0.3, 0.2]))
            if rng.random() < leap_probability:
                step = int(rng.choice([-5, -4, -3, 3, 4, 5]))
            if abs(pool[index] - center) > 7 and np.sign(step) == np.sign(pool[index] - center):
                step = -step  # drift back toward the middle of the range
            index = int(np.clip(index + step, 0, len(pool) - 1))
            pitch = pool[index]
            if abs(offset - round(offset)) < 1e-6:  # on the beat: land on a chord tone
                harmony = chord_pitch_classes(song.key, song.chord_at(start_beat + offset))
                pitch = nearest_chord_tone(pitch, harmony, pool)
                index = pool.index(pitch)
            phrase.append((offset, length, pitch))
        offset += length
    return phrase


def play_phrase(song, track, start_beat, phrase, velocity, legato=0.9):
    for offset, length, pitch in phrase:
        accent = 1.0 if abs(offset - round(offset)) < 1e-6 else 0.85
        song.note(track, start_beat + offset, length * legato, pitch, velocity * accent)


def melody_part(song, track, pool, durations, weights, rest_probability, velocity, phrase_bars=2,
                repeat_probability=0.5, play_probability=1.0, legato=0.9, leap_probability=0.15):
    """Phrases over the whole song; earlier phrases come back (motifs), some phrases are rests."""
    rng, motifs = song.rng, []
    phrase_beats = phrase_bars * song.beats_per_bar
    for bar in range(0, song.num_bars, phrase_bars):
        start = song.bar_start(bar)
        if motifs and rng.random() < repeat_probability:
            phrase = motifs[int(rng.integers(len(motifs)))]
        else:
            phrase = make_phrase(song, start, phrase_beats, pool, durations, weights,
                                 rest_probability, leap_probability)
            motifs.append(phrase)
        if rng.random() < play_probability:
            play_phrase(song, track, start, phrase, velocity, legato)


def comp_part(song, track, rhythm, center, velocity, spread=0.0):
    """Chords on a rhythm repeated every bar: rhythm = [(offset beats, length beats), ...]."""
    for bar in range(song.num_bars):
        for offset, length in rhythm:
            beat = song.bar_start(bar) + offset
            pitches = close_voicing(song.key, song.chord_at(beat), center)
            song.strum(track, beat, length, pitches, velocity, spread=spread,
                       upward=spread > 0 and song.rng.random() < 0.3)


def bass_part(song, track, rhythm, velocity, low=33, figure=(0,)):
    """Bass notes on a rhythm repeated every bar; figure: intervals above the chord root, cycled."""
    for bar in range(song.num_bars):
        for i, (offset, length) in enumerate(rhythm):
            beat = song.bar_start(bar) + offset
            root = root_in_range(song.key, song.chord_at(beat), low)
            song.note(track, beat, length, root + figure[i % len(figure)], velocity)


def walking_bass(song, track, velocity, low=31):
    """Quarter notes: the root when a chord starts, a semitone approach to the next root, chord
    tones near the previous note in between."""
    rng, previous = song.rng, None
    for beat in range(song.num_bars * song.beats_per_bar):
        current = song.chord_at(beat)
        root = root_in_range(song.key, current, low)
        if previous is None or beat % song.beats_per_chord == 0:
            pitch = root
        elif (beat + 1) % song.beats_per_chord == 0:
            pitch = root_in_range(song.key, song.chord_at(beat + 1), low) + int(rng.choice([-1, 1]))
        else:
            tones = [root + i for i in current.intervals if 0 < i < 12] + [root + 12]
            tones = [p for p in tones if p != previous]
            pitch = tones[int(np.argmin([abs(p - previous) + rng.uniform(0, 5) for p in tones]))]
        song.note(track, beat, 0.95, pitch, velocity * (1.0 if beat % 2 == 0 else 0.85))
        previous = pitch


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


def is_phrase_end(bar, phrase_bars=4):
    return bar % phrase_bars == phrase_bars - 1


def eighths(count=8, length=0.45):
    return [(i * 0.5, length) for i in range(count)]


# ----------------------------------------------------------------------------------------------
# Genre recipes: each builds the Song of one clip from the clip's RNG
# ----------------------------------------------------------------------------------------------

def arrange_blues(rng, duration, sample_rate):
    """Shuffle (triplet swing), 12-bar dominant-seventh form, boogie bass, blue-note licks."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(64, 120), swing=rng.uniform(0.75, 1.0),
                timing_jitter=0.01, dynamics_depth=rng.uniform(0.05, 0.15))
    song.key, song.scale = pick(rng, [40, 45, 43, 36, 46]), MIXOLYDIAN
    quick_change = rng.random() < 0.5
    song.chords = [chord(d, "dom7") for d in [0, 5 if quick_change else 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7]]
    song.use_drums("acoustic", level_db=-5)
    song.set_room(rng.uniform(0.8, 1.4), rng.uniform(0.15, 0.25))
    song.master_drive = rng.uniform(0.5, 1.2)
    song.add_track("bass", pick(rng, ["upright_bass", "electric_bass"]), -4)
    song.add_track("comp", pick(rng, ["piano", "organ", "epiano"]), -9)
    lead = pick(rng, ["electric_guitar", "sax", "clarinet"])
    song.add_track("lead", lead, -4, [("drive", 2.5)] if lead == "electric_guitar" else [])
    # boogie: root, 3rd, 5th, 6th, flat 7th, 6th, 5th, 3rd on swung eighths
    bass_part(song, "bass", eighths(), 0.8, low=36,
              figure=pick(rng, [(0, 4, 7, 9, 10, 9, 7, 4), (0, 0, 7, 7, 9, 9, 7, 7)]))
    comp_part(song, "comp", pick(rng, [[(1, 0.4), (3, 0.4)], [(0, 1.5), (2.5, 1.5)], [(0, 3.9)]]),
              center=60, velocity=0.6)
    pool = scale_pool(song.key, BLUES_SCALE, song.key + 24, song.key + 43)
    for bar in range(song.num_bars):
        if bar % 4 in (0, 1) and rng.random() < 0.8:  # call in two bars of each line; the band answers
            start = song.bar_start(bar)
            phrase = make_phrase(song, start, 4, pool, durations=[0.5, 1.0, 1 / 3, 1.5],
                                 weights=[0.45, 0.2, 0.2, 0.15], rest_probability=0.2,
                                 leap_probability=0.1)
            for offset, length, pitch in phrase:
                if rng.random() < 0.2:  # slide into the note from a semitone below
                    song.note("lead", start + offset, 0.08, pitch - 1, 0.6)
                song.note("lead", start + offset, length * 0.9, pitch, 0.8)
    cymbal = pick(rng, ["hat", "hat", "ride"])
    for bar in range(song.num_bars):
        song.drum_bar(bar, {"kick": "X.......x.......", cymbal: "x.o.x.o.x.o.x.o.",
                            "snare": "....X.......X.o." if is_phrase_end(bar) else "....X.......X..."})
    return song


def arrange_classical(rng, duration, sample_rate):
    """No drums; diatonic triads in major or harmonic minor, Alberti/arpeggio accompaniment,
    stepwise melody, rubato, wide dynamics, a big hall."""
    meter = pick(rng, [3, 4, 4])
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(60, 132), beats_per_bar=meter,
                timing_jitter=0.012, velocity_jitter=0.1, tempo_wobble=rng.uniform(0.04, 0.12),
                dynamics_depth=rng.uniform(0.25, 0.45))
    song.key = int(rng.integers(36, 48))
    song.scale = HARMONIC_MINOR if rng.random() < 0.35 else MAJOR
    degrees = pick(rng, [[0, 3, 4, 0], [0, 5, 3, 4], [0, 1, 4, 0], [0, 3, 1, 4, 0, 5, 1, 4],
                         [5, 1, 4, 0], [0, 4, 5, 2, 3, 0, 3, 4]])
    song.chords = [diatonic_triad(song.scale, d) for d in degrees]
    song.beats_per_chord = meter * pick(rng, [1, 1, 2])
    song.set_room(rng.uniform(1.6, 2.6), rng.uniform(0.25, 0.4))
    ensemble = pick(rng, ["piano", "strings", "piano_strings", "winds"])
    accompaniment = "strings" if ensemble == "strings" else "piano"
    melody = {"piano": "piano", "strings": "strings", "piano_strings": "strings",
              "winds": pick(rng, ["flute", "clarinet"])}[ensemble]
    song.add_track("accompaniment", accompaniment, -6)
    song.add_track("melody", melody, -3)
    figure = "sustained" if accompaniment == "strings" else pick(rng, ["alberti", "arpeggio", "block"])
    for bar in range(song.num_bars):  # bass note held through the bar, the figure above it
        beat = song.bar_start(bar)
        current = song.chord_at(beat)
        triad = close_voicing(song.key, current, 55)
        song.note("accompaniment", beat, meter * 0.98, root_in_range(song.key, current, 36), 0.6)
        if figure == "alberti":  # low, high, middle, high
            for i in range(2 * meter):
                song.note("accompaniment", beat + 0.5 * i, 0.5, triad[[0, 2, 1, 2][i % 4]], 0.45)
        elif figure == "arpeggio":  # sixteenths up and down two octaves
            tones = triad + [p + 12 for p in triad]
            cycle = tones + tones[-2:0:-1]
            for i in range(4 * meter):
                song.note("accompaniment", beat + 0.25 * i, 0.3, cycle[i % len(cycle)], 0.4)
        elif figure == "block":
            for offset in range(meter):
                song.strum("accompaniment", beat + offset, 0.9, triad, 0.4 if offset else 0.5)
        else:  # sustained string chord, slightly spread
            song.strum("accompaniment", beat, meter * 0.98, triad + [p + 12 for p in triad[1:]],
                       0.45, spread=0.03)
    pool = scale_pool(song.key, song.scale, song.key + 24, song.key + 45)
    melody_part(song, "melody", pool, [0.5, 1.0, 2.0, 0.25, 1.5], [0.35, 0.3, 0.12, 0.13, 0.1],
                rest_probability=0.05, velocity=0.7, repeat_probability=0.4, legato=0.97,
                leap_probability=0.2)
    return song


def arrange_country(rng, duration, sample_rate):
    """Strummed acoustic guitar, boom-chick bass (root, fifth), I-IV-V, fiddle/banjo/twang lead."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(88, 150), swing=rng.uniform(0, 0.25),
                timing_jitter=0.007)
    song.key, song.scale = pick(rng, [43, 45, 48, 50, 40]), MAJOR
    degrees = pick(rng, [[0, 0, 3, 3, 4, 4, 0, 0], [0, 3, 0, 4], [0, 0, 3, 0, 4, 3, 0, 4], [0, 5, 3, 4]])
    song.chords = [diatonic_triad(MAJOR, d) for d in degrees]
    song.use_drums("acoustic", level_db=-5)
    song.set_room(rng.uniform(0.6, 1.0), rng.uniform(0.1, 0.2))
    song.master_drive = rng.uniform(0.3, 1.0)
    song.add_track("guitar", "acoustic_guitar", -6)
    song.add_track("bass", pick(rng, ["electric_bass", "upright_bass"]), -5)
    lead = pick(rng, ["fiddle", "banjo", "twang"])
    song.add_track("lead", {"fiddle": "strings", "banjo": "banjo", "twang": "electric_guitar"}[lead], -5,
                   [("drive", 1.5)] if lead == "twang" else [])
    groove = pick(rng, [  # train beat on brushes, or boom-chick with hi-hat
        {"kick": "X.......X.......", "snare": "....X.......X...", "brush": "xoxoxoxoxoxoxoxo"},
        {"kick": "X.......X.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."}])
    strum_pattern = [(0, 1, False), (1, 0.5, False), (1.5, 0.5, True), (2.5, 0.5, True),
                     (3, 0.5, False), (3.5, 0.5, True)]
    for bar in range(song.num_bars):
        start = song.bar_start(bar)
        for offset, length, upward in strum_pattern:
            current = song.chord_at(start + offset)
            voicing = close_voicing(song.key, current, 52) + close_voicing(song.key, current, 64)
            song.strum("guitar", start + offset, length, voicing, 0.55 if upward else 0.75,
                       spread=0.012, upward=upward)
        if is_phrase_end(bar) and rng.random() < 0.6:  # walk up to the next chord
            root = root_in_range(song.key, song.chord_at(start), 36)
            for i, step in enumerate((0, 2, 4, 5)):
                song.note("bass", start + i, 0.9, root + step, 0.8)
        else:  # boom-chick: root on 1, the fifth below on 3
            for offset, interval in ((0, 0), (2, -5)):
                root = root_in_range(song.key, song.chord_at(start + offset), 36)
                song.note("bass", start + offset, 0.9, root + interval, 0.8)
        song.drum_bar(bar, groove)
    if lead == "banjo":  # forward rolls on chord tones, sixteenths
        for beat16 in range(song.num_bars * song.beats_per_bar * 4):
            beat = beat16 * 0.25
            tones = close_voicing(song.key, song.chord_at(beat), 67)
            song.note("lead", beat, 0.3, tones[[0, 1, 2, 0, 1, 2, 0, 2][beat16 % 8] % len(tones)], 0.5)
    else:
        pool = scale_pool(song.key, MAJOR_PENTATONIC, song.key + 24, song.key + 43)
        melody_part(song, "lead", pool, [0.5, 0.25, 1.0, 1.5], [0.45, 0.25, 0.2, 0.1],
                    rest_probability=0.12, velocity=0.7, play_probability=0.8)
    return song


def arrange_disco(rng, duration, sample_rate):
    """Four-on-the-floor, open hi-hat off-beats, octave bass, string pads, 16th chicken-scratch."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(112, 130), swing=rng.uniform(0, 0.15),
                swing_unit=0.25, timing_jitter=0.004)
    song.key = int(rng.integers(36, 48))
    progressions = [
        (DORIAN, [chord(0, "min7"), chord(5, "dom7")], 8),
        (NATURAL_MINOR, [chord(0, "min7"), chord(10, "maj"), chord(8, "maj7"), chord(10, "maj")], 4),
        (MAJOR, [chord(2, "min7"), chord(7, "dom7")], 8),
        (MAJOR, [chord(0, "maj7"), chord(2, "min7"), chord(4, "min7"), chord(2, "min7")], 4),
    ]
    song.scale, song.chords, song.beats_per_chord = progressions[int(rng.integers(len(progressions)))]
    song.use_drums("acoustic", level_db=0)
    song.set_room(rng.uniform(0.5, 0.9), rng.uniform(0.08, 0.15))
    song.master_drive = rng.uniform(1.5, 2.5)
    song.add_track("bass", pick(rng, ["electric_bass", "synth_bass"]), -3)
    song.add_track("strings", "strings", -10)
    song.add_track("scratch", "muted_guitar", -12, [("highpass", 400)])
    song.add_track("keys", pick(rng, ["epiano", "organ"]), -11)
    bass_part(song, "bass", eighths(length=0.35), 0.85, low=33, figure=(0, 12))
    comp_part(song, "strings", [(0, 3.9)], center=72, velocity=0.5)
    comp_part(song, "keys", [(0.5, 0.25), (1.5, 0.25), (2.5, 0.25), (3.5, 0.25)], center=62, velocity=0.55)
    for bar in range(song.num_bars):
        for step in range(16):
            beat = song.bar_start(bar) + 0.25 * step
            top = close_voicing(song.key, song.chord_at(beat), 67)[-2:]
            song.strum("scratch", beat, 0.12, top, 0.8 if step % 4 == 2 else 0.45, spread=0.004)
        song.drum_bar(bar, {"kick": "X...X...X...X...", "snare": "....X.......X...",
                            "clap": "....X.......X...", "hat": "x.o.x.o.x.o.x.o.",
                            "open_hat": "..x...x...x...x.",
                            "crash": "X..............." if bar % 8 == 0 else ""})
    if rng.random() < 0.5:
        song.add_track("lead", pick(rng, ["synth_lead", "strings"]), -6)
        pool = scale_pool(song.key, song.scale, song.key + 24, song.key + 43)
        melody_part(song, "lead", pool, [0.5, 0.25, 1.0], [0.5, 0.3, 0.2], rest_probability=0.3,
                    velocity=0.7, play_probability=0.6)
    return song


def arrange_hiphop(rng, duration, sample_rate):
    """Slow swung boom-bap (or half-time) beat, lo-fi sampled chord loop, 808 sub bass on the
    kicks, vinyl hiss and crackle."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(76, 98), swing=rng.uniform(0.3, 0.7),
                swing_unit=0.25, timing_jitter=0.008)
    song.key, song.scale = int(rng.integers(36, 48)), pick(rng, [NATURAL_MINOR, DORIAN])
    song.chords = pick(rng, [[chord(0, "min7"), chord(8, "maj7")], [chord(0, "min7"), chord(5, "min7")],
                             [chord(0, "min9"), chord(10, "maj6")],
                             [chord(0, "min7"), chord(8, "maj7"), chord(5, "min7"), chord(7, "dom7")]])
    song.use_drums("electronic", level_db=2)
    song.set_room(rng.uniform(0.4, 0.8), rng.uniform(0.05, 0.12))
    song.master_drive = rng.uniform(1.0, 2.0)
    song.master_lowpass = pick(rng, [None, 9000, 7000])
    song.noise_db, song.crackle = rng.uniform(-55, -42), rng.uniform(0.5, 3.0)
    song.add_track("loop", pick(rng, ["epiano", "piano", "bell", "strings", "vibes"]), -9,
                   [("drive", 1.3), ("lowpass", rng.uniform(2500, 5000))])
    song.add_track("bass", "sub_bass", -3)
    loop_rhythm = pick(rng, [[(0, 1.5), (1.75, 0.5), (2.5, 1.5)], [(0, 3.5)],
                             [(0, 0.75), (0.75, 0.75), (2.5, 1.0)], [(0.5, 1.0), (2.0, 0.5), (3.0, 1.0)]])
    comp_part(song, "loop", loop_rhythm, center=pick(rng, [60, 64, 67]), velocity=0.6)
    half_time = rng.random() < 0.3
    kick = "X.....x...x....." if half_time else pick(rng, ["X.........X.....", "X......X..X.....",
                                                           "X.....x...X..x.."])
    snare = "........X......." if half_time else "....X.......X..."
    hat = pick(rng, ["X.x.X.x.X.x.X.x.", "x.x.x.x.x.x.x.x.", "X.xxX.xxX.xxX.xx"])
    for bar in range(song.num_bars):
        song.drum_bar(bar, {"kick": kick, "snare": snare, "hat": hat,
                            "open_hat": "..............x." if is_phrase_end(bar) else ""})
        kick_steps = [i for i, s in enumerate(kick) if s != "."]
        for i, step in enumerate(kick_steps):  # the 808 follows the kick and rings until the next one
            beat = song.bar_start(bar) + step * 0.25
            length = min(2.0, ((kick_steps + [16])[i + 1] - step) * 0.25)
            song.note("bass", beat, length, root_in_range(song.key, song.chord_at(beat), 28), 0.9)
    if rng.random() < 0.4:
        song.add_track("lead", pick(rng, ["bell", "flute"]), -8, [("lowpass", 6000)])
        pool = scale_pool(song.key, MINOR_PENTATONIC, song.key + 36, song.key + 50)
        melody_part(song, "lead", pool, [1.0, 0.5, 2.0], [0.4, 0.4, 0.2], rest_probability=0.4,
                    velocity=0.5, repeat_probability=0.8, play_probability=0.5)
    return song


def arrange_jazz(rng, duration, sample_rate):
    """Swung ride-cymbal time, walking bass, ii-V-I with 7th/9th rootless voicings, horn/vibes lines."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(100, 220), swing=rng.uniform(0.6, 1.0),
                timing_jitter=0.008, dynamics_depth=rng.uniform(0.1, 0.25))
    song.key, song.scale = pick(rng, [41, 46, 39, 36, 43, 44]), MAJOR
    ii, v, i = chord(2, "min9"), chord(7, "dom9"), chord(0, "maj9")
    song.chords, song.beats_per_chord = pick(rng, [
        ([ii, v, i, i], 4), ([i, chord(9, "dom7"), ii, v], 2),
        ([chord(4, "min7"), chord(9, "dom7"), ii, v], 2), ([ii, v, i, chord(9, "dom7")], 4)])
    song.use_drums("jazz", level_db=-13)
    song.set_room(rng.uniform(1.0, 1.6), rng.uniform(0.15, 0.25))
    song.add_track("bass", "upright_bass", -3)
    song.add_track("comp", pick(rng, ["piano", "epiano"]), -9)
    song.add_track("lead", pick(rng, ["sax", "trumpet", "vibes"]), -4)
    walking_bass(song, "bass", 0.8)
    for bar in range(song.num_bars):
        start = song.bar_start(bar)
        for offset, length in pick(rng, [[(0, 0.75), (1.5, 0.5)], [(1.5, 1.0), (3.5, 0.5)],
                                         [(0.5, 0.5), (2.5, 1.0)], [(0, 1.5)], [(2.5, 0.5)]]):
            current = song.chord_at(start + offset)
            rootless = Chord(current.root, tuple(x for x in current.intervals if x != 0))  # 3-7-9 (5)
            song.strum("comp", start + offset, length, close_voicing(song.key, rootless, 62), 0.5,
                       spread=0.006)
        comping_snare = "".join("o" if i % 2 == 0 and rng.random() < 0.15 else "." for i in range(16))
        song.drum_bar(bar, {"ride": "x...X.x.x...X.x.", "hat": "....x.......x...",
                            "kick": "o...o...o...o...", "snare": comping_snare})
    pool = scale_pool(song.key, song.scale, song.key + 22, song.key + 41)
    melody_part(song, "lead", pool, [0.5, 1.0, 1.5, 1 / 3], [0.6, 0.15, 0.1, 0.15], rest_probability=0.12,
                velocity=0.7, repeat_probability=0.2, play_probability=0.75, leap_probability=0.25)
    return song


def arrange_metal(rng, duration, sample_rate):
    """Fast, double kick, heavily distorted palm-muted power-chord riffs in minor/phrygian."""
    tempo = rng.uniform(90, 120) if rng.random() < 0.2 else rng.uniform(130, 200)  # some slow, heavy
    song = Song(rng, duration, sample_rate, tempo=tempo, timing_jitter=0.003, velocity_jitter=0.05)
    song.key = pick(rng, [40, 38, 37, 35, 36])
    song.scale = pick(rng, [PHRYGIAN, NATURAL_MINOR, HARMONIC_MINOR])
    song.chords = [chord(0, "power")]
    song.use_drums("metal", level_db=0)
    song.set_room(rng.uniform(0.5, 0.9), rng.uniform(0.06, 0.12))
    song.master_drive = rng.uniform(2.5, 4.0)
    amp = [("drive", rng.uniform(12, 25)), ("lowpass", rng.uniform(4500, 6500)), ("highpass", 90)]
    song.add_track("guitar", "electric_guitar", -3, amp)
    song.add_track("guitar_double", "electric_guitar", -5, amp)
    song.add_track("bass", "electric_bass", -6, [("drive", 3.0)])

    def riff():  # one bar of sixteenths: chugs on the low root, accents on other scale degrees
        steps, step = [], 0
        while step < 16:
            roll = rng.random()
            if step == 0 or roll < 0.6:
                steps.append((step, 1, 0, 0.8))  # palm-muted chug
                step += 1
            elif roll < 0.92:
                degree = song.scale[int(rng.choice([1, 2, 4, 5, 6]))]
                length = int(rng.choice([1, 2, 4]))
                steps.append((step, length, degree, 1.0))
                step += length
            else:
                step += 1
        return steps

    riffs = [riff(), riff()]
    for bar in range(song.num_bars):
        start = song.bar_start(bar)
        for step, length, degree, velocity in riffs[1 if bar % 4 == 3 else 0]:
            beat, beats = start + step * 0.25, length * 0.25 * (0.6 if degree == 0 else 0.95)
            root = song.key + degree
            for track in ("guitar", "guitar_double"):
                for pitch in (root, root + 7, root + 12):
                    song.note(track, beat, beats, pitch, velocity)
            song.note("bass", beat, beats, root - 12 if root >= 40 else root, velocity)
    pattern = pick(rng, [  # double kick, blast beat, gallop
        {"kick": "xxxxxxxxxxxxxxxx", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x."},
        {"kick": "x.x.x.x.x.x.x.x.", "snare": ".x.x.x.x.x.x.x.x", "hat": "x.x.x.x.x.x.x.x."},
        {"kick": "X.xxX.xxX.xxX.xx", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."}])
    for bar in range(song.num_bars):
        song.drum_bar(bar, dict(pattern, crash="X......." if bar % 2 == 0 else ""))
    if rng.random() < 0.45:
        song.add_track("lead", pick(rng, ["synth_lead", "electric_guitar"]), -4,
                       [("drive", 8.0), ("lowpass", 7000)])
        pool = scale_pool(song.key, song.scale, song.key + 24, song.key + 43)
        melody_part(song, "lead", pool, [0.25, 0.5, 1.0], [0.6, 0.25, 0.15], rest_probability=0.05,
                    velocity=0.8, phrase_bars=1, play_probability=0.5, leap_probability=0.1)
    return song


def arrange_pop(rng, duration, sample_rate):
    """Mid-tempo straight beat, I-V-vi-IV family, synth bass, piano/pad, repeated catchy hook."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(92, 128), swing=rng.uniform(0, 0.15),
                swing_unit=0.25, timing_jitter=0.004)
    song.key, song.scale = int(rng.integers(36, 48)), MAJOR
    degrees = pick(rng, [[0, 4, 5, 3], [5, 3, 0, 4], [0, 5, 3, 4], [3, 0, 4, 5]])
    song.chords = [diatonic_triad(MAJOR, d) for d in degrees]
    song.use_drums(pick(rng, ["acoustic", "electronic"]), level_db=0)
    song.set_room(rng.uniform(0.8, 1.4), rng.uniform(0.12, 0.2))
    song.master_drive = rng.uniform(1.5, 3.0)
    song.add_track("bass", pick(rng, ["synth_bass", "electric_bass"]), -4)
    song.add_track("keys", pick(rng, ["piano", "epiano", "acoustic_guitar"]), -8)
    song.add_track("pad", "pad", -12)
    song.add_track("lead", pick(rng, ["synth_lead", "bell", "flute", "piano"]), -3)
    bass_part(song, "bass", eighths(length=0.4), 0.8, low=33)
    keys_rhythm = pick(rng, [eighths(length=0.4), [(0, 1.9), (2, 1.9)], [(0, 0.9), (1.5, 1), (3, 0.9)]])
    comp_part(song, "keys", keys_rhythm, center=62, velocity=0.55, spread=0.01)
    comp_part(song, "pad", [(0, 4)], center=67, velocity=0.5)
    pool = scale_pool(song.key, MAJOR_PENTATONIC, song.key + 24, song.key + 40)
    melody_part(song, "lead", pool, [0.5, 1.0, 0.25, 1.5], [0.4, 0.3, 0.15, 0.15], rest_probability=0.2,
                velocity=0.75, repeat_probability=0.7)
    kick = pick(rng, ["X.....x.X.......", "X.......X.x.....", "X..x..x.X......."])
    hat = pick(rng, ["x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo"])
    for bar in range(song.num_bars):
        song.drum_bar(bar, {"kick": kick, "snare": "....X.......X...", "clap": "....x.......x...", "hat": hat,
                            "crash": "X..............." if bar % 4 == 0 else ""})
    return song


def arrange_reggae(rng, duration, sample_rate):
    """Slow one-drop (kick and rim on beat 3), off-beat guitar skank and organ bubble with echo,
    deep melodic bass, two-chord vamps."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(66, 92), swing=rng.uniform(0.1, 0.35),
                swing_unit=0.25, timing_jitter=0.007)
    song.key = int(rng.integers(36, 48))
    song.scale, song.chords = pick(rng, [
        (MAJOR, [chord(0, "maj"), chord(5, "maj")]), (NATURAL_MINOR, [chord(0, "min"), chord(5, "min")]),
        (MAJOR, [chord(0, "maj"), chord(7, "maj")]), (DORIAN, [chord(0, "min7"), chord(10, "maj")]),
        (MAJOR, [chord(0, "maj"), chord(2, "min"), chord(5, "maj"), chord(7, "maj")])])
    song.beats_per_chord = pick(rng, [4, 8])
    song.use_drums("acoustic", level_db=-2)
    song.set_room(rng.uniform(0.8, 1.5), rng.uniform(0.15, 0.25))
    song.master_drive = rng.uniform(0.5, 1.5)
    echo = ("echo", (0.75 * song.seconds_per_beat, 0.35))
    song.add_track("skank", pick(rng, ["muted_guitar", "electric_guitar"]), -7, [("highpass", 300), echo])
    song.add_track("bubble", "organ", -12)
    song.add_track("bass", pick(rng, ["sub_bass", "upright_bass", "electric_bass"]), 0, [("lowpass", 900)])
    comp_part(song, "skank", [(1, 0.2), (3, 0.2)], center=66, velocity=0.7, spread=0.005)
    comp_part(song, "bubble", [(0.5, 0.2), (1.5, 0.2), (2.5, 0.2), (3.5, 0.2)], center=60, velocity=0.5)
    # a one-bar bass riff, often resting on the downbeat, replayed over each chord
    positions = sorted(rng.choice([0.5, 1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5], size=5, replace=False))
    if rng.random() < 0.5:
        positions = [0.0] + positions
    third, sixth_or_seventh = (4, 9) if song.scale == MAJOR else (3, 10)
    figure = [int(rng.choice([0, 0, 7, 12, third, sixth_or_seventh])) for _ in positions]
    lengths = [b - a for a, b in zip(positions, list(positions[1:]) + [4.0])]
    for bar in range(song.num_bars):
        for position, interval, length in zip(positions, figure, lengths):
            beat = song.bar_start(bar) + position
            root = root_in_range(song.key, song.chord_at(beat), 33)
            song.note("bass", beat, length * 0.9, root + interval, 0.85)
    pattern = pick(rng, [{"kick": "........X.......", "rim": "........X......."},
                         {"kick": "X.......X.......", "rim": "........X......."},
                         {"kick": "X...X...X...X...", "rim": "........X......."}])
    hat = pick(rng, ["x.x.x.x.x.x.x.x.", "x.xxx.xxx.xxx.xx", "..x...x...x...x."])
    for bar in range(song.num_bars):
        song.drum_bar(bar, dict(pattern, hat=hat, snare="..........o.X.X." if is_phrase_end(bar) else ""))
    if rng.random() < 0.5:
        song.add_track("lead", pick(rng, ["clarinet", "organ", "trumpet"]), -6)
        pool = scale_pool(song.key, song.scale, song.key + 24, song.key + 40)
        melody_part(song, "lead", pool, [0.5, 1.0, 1.5, 2.0], [0.3, 0.35, 0.2, 0.15], rest_probability=0.35,
                    velocity=0.6, play_probability=0.5)
    return song


def arrange_rock(rng, duration, sample_rate):
    """Backbeat, overdriven eighth-note power chords, root eighths on bass, fills and crashes."""
    song = Song(rng, duration, sample_rate, tempo=rng.uniform(100, 160), timing_jitter=0.005)
    song.key = pick(rng, [40, 45, 38, 43, 36])
    song.scale, roots = pick(rng, [(MAJOR, [0, 10, 5, 0]), (MAJOR, [0, 5, 7, 5]), (MIXOLYDIAN, [0, 7, 9, 5]),
                                   (NATURAL_MINOR, [0, 8, 10, 0]), (NATURAL_MINOR, [0, 10, 8, 10])])
    song.chords = [chord(r, "power") for r in roots]
    song.use_drums("acoustic", level_db=0)
    song.set_room(rng.uniform(0.8, 1.2), rng.uniform(0.1, 0.18))
    song.master_drive = rng.uniform(2.0, 3.0)
    song.add_track("guitar", "electric_guitar", -4,
                   [("drive", rng.uniform(4, 8)), ("lowpass", rng.uniform(4500, 6000)), ("highpass", 80)])
    song.add_track("bass", "electric_bass", -4)
    palm_muted = rng.random() < 0.5
    for bar in range(song.num_bars):
        start = song.bar_start(bar)
        chorus = (bar // 4) % 2 == 1
        for offset, length in (eighths(length=0.3 if palm_muted and not chorus else 0.5)):
            root = song.key + song.chord_at(start + offset).root
            root -= 12 if root > 47 else 0
            song.strum("guitar", start + offset, length, [root, root + 7, root + 12], 0.8, spread=0.004)
            song.note("bass", start + offset, 0.45, root - 12 if root >= 40 else root, 0.8)
        fill = is_phrase_end(bar) and rng.random() < 0.7
        cymbal = "ride" if chorus else "hat"  # open up the chorus on the ride
        song.drum_bar(bar, {
            "kick": "X.......X.x.....", "snare": "....X...XoXXXXXX" if fill else "....X.......X...",
            cymbal: "x.x.x.x........." if fill else "x.x.x.x.x.x.x.x.",
            "low_tom": "..............x." if fill else "",
            "crash": "X..............." if bar % 4 == 0 else ""})
    if rng.random() < 0.5:
        song.add_track("lead", pick(rng, ["electric_guitar", "organ"]), -4, [("drive", 3.0)])
        pool = scale_pool(song.key, MINOR_PENTATONIC, song.key + 24, song.key + 43)
        melody_part(song, "lead", pool, [0.25, 0.5, 1.0, 1.5], [0.3, 0.4, 0.2, 0.1], rest_probability=0.1,
                    velocity=0.8, play_probability=0.5)
    return song


GENRE_RECIPES = {
    "blues": arrange_blues, "classical": arrange_classical, "country": arrange_country,
    "disco": arrange_disco, "hiphop": arrange_hiphop, "jazz": arrange_jazz, "metal": arrange_metal,
    "pop": arrange_pop, "reggae": arrange_reggae, "rock": arrange_rock,
}
assert list(GENRE_RECIPES) == list(GTZAN_LABELS), "recipes must follow utils.config.GTZAN_LABELS"


# ----------------------------------------------------------------------------------------------
# Rendering and mixing
# ----------------------------------------------------------------------------------------------

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
    song = compose_clip(genre, index, clip_duration, sample_rate, seed)
    clip = mix_song(song)
    peak = 0.9 * song.rng.uniform(0.5, 1.0)
    clip = clip / (np.max(np.abs(clip)) + 1e-9) * peak
    return clip.astype(np.float32)


def clip_path(output_dir, genre, index):
    return os.path.join(output_dir, genre, f"{genre}.{index:05d}.wav")


def _write_clip(job):
    output_dir, genre, index, clip_duration, sample_rate, seed = job
    audio = synthesize_clip(genre, index, clip_duration, sample_rate, seed)
    path = clip_path(output_dir, genre, index)
    with atomic_path(path) as temp_path:
        soundfile.write(temp_path, float32_to_int16(audio), sample_rate, subtype="PCM_16", format="WAV")
    return path


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------

def make_demo_dataset(output_dir, genres=10, clips_per_genre=20, clip_duration=30.0,
                      sample_rate=SAMPLE_RATE, seed=1234, num_workers=None):
    """Write the dataset; returns the written paths in genre, index order."""
    if not isinstance(genres, int) or not 2 <= genres <= len(GTZAN_LABELS):
        raise UsageError(f"--genres={genres}: must be an integer from 2 to {len(GTZAN_LABELS)}")
    num_workers = num_workers or os.cpu_count() or 1
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"--output_dir={output_dir}: exists and is not a folder")
    jobs = [(output_dir, genre, index, clip_duration, sample_rate, seed)
            for genre in GTZAN_LABELS[:genres] for index in range(clips_per_genre)]
    for genre in GTZAN_LABELS[:genres]:
        create_folder(os.path.join(output_dir, genre))
    progress = tqdm(total=len(jobs), desc="synthesising clips", unit="clip")
    if num_workers == 1:
        for job in jobs:
            _write_clip(job)
            progress.update()
    else:
        with Pool(min(num_workers, len(jobs))) as pool:
            for _ in pool.imap_unordered(_write_clip, jobs):
                progress.update()
    progress.close()
    return [clip_path(output_dir, genre, index) for _, genre, index, *_ in jobs]


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="dataset root; one folder per genre")
    parser.add_argument("--genres", type=int_range(2, len(GTZAN_LABELS)), default=10,
                        help="the first N GTZAN genres")
    parser.add_argument("--clips_per_genre", type=positive_int, default=20)
    parser.add_argument("--clip_duration", type=float_range(0.5, 600), default=30.0,
                        help="seconds")
    parser.add_argument("--sample_rate", type=int_range(8000, 192000), default=SAMPLE_RATE)
    parser.add_argument("--seed", type=non_negative_int, default=1234)
    parser.add_argument("--num_workers", type=positive_int, default=None,
                        help="processes (default: all CPUs)")
    args = parser.parse_args()
    paths = make_demo_dataset(args.output_dir, args.genres, args.clips_per_genre, args.clip_duration,
                              args.sample_rate, args.seed, args.num_workers)
    print(f"wrote {len(paths)} clips ({args.genres} genres x {args.clips_per_genre}, "
          f"{args.clip_duration:g} s at {args.sample_rate} Hz) to {os.path.abspath(args.output_dir)}")


if __name__ == "__main__":
    run_cli(main)
