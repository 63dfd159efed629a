"""The demo dataset, a song: timing (tempo, swing, rubato), harmony, notes per track, drum hits,
mix settings.
"""
import numpy as np

from scripts.demo.drums import make_drum_kit
from scripts.demo.instruments import make_voice
from scripts.demo.theory import Chord, MAJOR


LEAD_IN = 0.1          # seconds of silence before beat 0, so early humanised notes stay in the buffer


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
