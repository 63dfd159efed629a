"""The pretraining source task: clips labelled with what sounds in them (multi-label).

Each clip draws, from its own RNG, one to four of the demo's instrument voices, often a drum kit
with a random subset of its pieces, some effects and a tempo, and plays them in an arrangement
that follows no genre recipe: random scale and chords, each voice in a random role (bass line,
chords on a random rhythm, melody, arpeggio) and register, drums on random step patterns. Its
labels name the sounds (voices, drum pieces), the effects and the tempo band; no genre is among
them, so a network trained on these clips learns what sounds, not which genre the demo set's
recipes make of it.

Every label is audible in every part of the clip: parts play through the whole clip, each drum
piece hits in each half bar, and clips are at most a bar longer than the shortest bar.
"""
import numpy as np

from scripts.demo.arranging import comp_part, make_phrase, melody_part, pick, play_phrase
from scripts.demo.song import Song
from scripts.demo.theory import (DORIAN, HARMONIC_MINOR, MAJOR, MAJOR_PENTATONIC,
                                 MINOR_PENTATONIC, MIXOLYDIAN, NATURAL_MINOR, diatonic_triad,
                                 root_in_range, scale_pool)

BASS_VOICES = ("sub_bass", "synth_bass", "electric_bass", "upright_bass")
VOICES = ("piano", "organ", "strings", "pad", "synth_lead", "flute", "clarinet", "epiano", "bell",
          "vibes", "sax", "trumpet", "acoustic_guitar", "electric_guitar", "muted_guitar",
          "banjo") + BASS_VOICES
DRUMS = ("kick", "snare", "hat", "open_hat", "ride", "crash", "clap", "rim", "brush", "toms")
EFFECTS = ("distortion", "echo", "vinyl", "hall")
TEMPI = ("slow_tempo", "fast_tempo")  # below 90 and above 140 beats per minute
SOUND_LABELS = VOICES + DRUMS + EFFECTS + TEMPI
SCALES = (MAJOR, NATURAL_MINOR, HARMONIC_MINOR, DORIAN, MIXOLYDIAN, MAJOR_PENTATONIC,
          MINOR_PENTATONIC)
KIT_STYLES = ("acoustic", "jazz", "metal", "electronic")


def drum_steps(rng, density):
    """A random 16-step pattern with a hit in each half bar (so in every window of a clip)."""
    steps = np.where(rng.random(16) < density, "x", ".")
    for half in (0, 8):
        if "x" not in steps[half:half + 8]:
            steps[half + int(rng.integers(8))] = "x"
    accents = rng.random(16) < 0.3
    return "".join("X" if step == "x" and accent else step for step, accent in zip(steps, accents))


def add_voice_part(song, rng, name, track):
    """One voice in a random role; basses play a bass line, the others chords, melody or
    arpeggio, each with at least two notes a bar."""
    if name in BASS_VOICES:
        low = int(rng.integers(28, 40))
        rhythm = pick(rng, [[(0, 1.9), (2, 1.9)], [(i * 0.5, 0.45) for i in range(8)],
                            [(0, 0.9), (1.5, 0.9), (2.5, 1.4)], [(i, 0.9) for i in range(4)]])
        for bar in range(song.num_bars):
            for offset, length in rhythm:
                beat = song.bar_start(bar) + offset
                interval = int(rng.choice([0, 0, 0, 7, 12]))
                song.note(track, beat, length, root_in_range(song.key, song.chord_at(beat), low)
                          + interval, 0.8)
        return
    center = int(rng.integers(52, 80))
    role = pick(rng, ["chords", "melody", "arpeggio"])
    if role == "chords":
        rhythm = pick(rng, [[(0, 1.9), (2, 1.9)], [(i * 0.5 + 0.5, 0.3) for i in range(0, 8, 2)],
                            [(0, 0.9), (1.5, 1.0), (3, 0.9)], [(i, 0.45) for i in range(4)]])
        comp_part(song, track, rhythm, center=center, velocity=0.6, spread=float(rng.choice([0, 0.01])))
    elif role == "melody":
        pool = scale_pool(song.key, song.scale, center - 9, center + 9)
        melody_part(song, track, pool, [0.25, 0.5, 1.0, 1.5], [0.2, 0.4, 0.3, 0.1],
                    rest_probability=0.1, velocity=0.7, phrase_bars=1)
    else:
        pool = scale_pool(song.key, song.scale, center - 7, center + 7)
        step = pick(rng, [0.25, 0.5])
        for bar in range(song.num_bars):
            start = song.bar_start(bar)
            phrase = make_phrase(song, start, song.beats_per_bar, pool, [step], [1.0],
                                 rest_probability=0.0, leap_probability=0.3)
            play_phrase(song, track, start, phrase, 0.6)


def compose_sounds(rng, duration, sample_rate):
    """(Song, labels) of one source clip."""
    tempo = rng.uniform(70, 180)
    song = Song(rng, duration, sample_rate, tempo=tempo, beats_per_bar=pick(rng, [3, 4, 4]),
                swing=float(rng.choice([0, 0, rng.uniform(0.2, 0.9)])), timing_jitter=0.006)
    song.key, song.scale = int(rng.integers(36, 48)), pick(rng, SCALES)
    seven = song.scale if len(song.scale) == 7 else MAJOR
    song.chords = [diatonic_triad(seven, int(d)) for d in rng.integers(0, 7, int(rng.integers(1, 5)))]
    song.beats_per_chord = song.beats_per_bar * pick(rng, [1, 2])
    labels = set()
    hall = rng.random() < 0.3
    song.set_room(rng.uniform(2.0, 3.0) if hall else rng.uniform(0.3, 1.0),
                  rng.uniform(0.3, 0.45) if hall else rng.uniform(0.05, 0.15))
    labels.update(["hall"] if hall else [])
    song.master_drive = rng.uniform(0.0, 1.5)
    voices = rng.choice(len(VOICES), size=int(rng.choice([1, 2, 2, 3, 3, 4])), replace=False)
    for number, index in enumerate(voices):
        name, effects = VOICES[int(index)], []
        if rng.random() < 0.15:
            effects.append(("drive", rng.uniform(4, 8)))
            labels.add("distortion")
        if rng.random() < 0.12:
            effects.append(("echo", (rng.uniform(0.5, 1.0) * song.seconds_per_beat, 0.4)))
            labels.add("echo")
        track = f"voice{number}"
        song.add_track(track, name, rng.uniform(-10, -3), effects)
        add_voice_part(song, rng, name, track)
        labels.add(name)
    if rng.random() < 0.7 or len(voices) == 1:
        song.use_drums(pick(rng, KIT_STYLES), level_db=rng.uniform(-6, 1))
        pieces = rng.choice(len(DRUMS), size=int(rng.integers(1, 6)), replace=False)
        pattern = {}
        for index in pieces:
            piece = DRUMS[int(index)]
            density = rng.uniform(0.1, 0.7)
            if piece == "toms":  # two tuned toms share one label
                pattern["tom"], pattern["low_tom"] = drum_steps(rng, density), drum_steps(rng, density)
            else:
                pattern[piece] = drum_steps(rng, density)
            labels.add(piece)
        for bar in range(song.num_bars):
            song.drum_bar(bar, pattern)
    if rng.random() < 0.12:
        song.noise_db, song.crackle = rng.uniform(-45, -35), rng.uniform(3.0, 8.0)
        labels.add("vinyl")
    labels.update(["slow_tempo"] if tempo < 90 else ["fast_tempo"] if tempo > 140 else [])
    return song, sorted(labels, key=SOUND_LABELS.index)
