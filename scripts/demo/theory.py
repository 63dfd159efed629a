"""The demo dataset, music theory: scales, chords, voicings."""
from collections import namedtuple


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
