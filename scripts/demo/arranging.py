"""The demo dataset, shared arranging helpers."""
import numpy as np

from scripts.demo.theory import (chord_pitch_classes, close_voicing, nearest_chord_tone,
                                 root_in_range)


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
