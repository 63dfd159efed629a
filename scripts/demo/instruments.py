"""The demo dataset, instrument voices: each renders one note as a numpy array (hold time plus
release tail).
"""
from functools import lru_cache

import numpy as np


TABLE_SIZE = 2048      # wavetable length (power of two: phase wraps with a bit mask)


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
