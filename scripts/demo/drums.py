"""The demo dataset, drums: each kit piece is rendered once per clip (tuned by the clip's RNG) and
placed per hit.
"""
from functools import lru_cache

import numpy as np
from scipy import signal


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
