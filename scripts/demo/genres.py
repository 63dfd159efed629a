"""The demo dataset, genre recipes: each builds the Song of one clip from the clip's RNG."""
from scripts.demo.arranging import (bass_part, comp_part, eighths, is_phrase_end, make_phrase,
                                    melody_part, pick, walking_bass)
from scripts.demo.song import Song
from scripts.demo.theory import (BLUES_SCALE, Chord, DORIAN, HARMONIC_MINOR, MAJOR,
                                 MAJOR_PENTATONIC, MINOR_PENTATONIC, MIXOLYDIAN, NATURAL_MINOR,
                                 PHRYGIAN, chord, close_voicing, diatonic_triad, root_in_range,
                                 scale_pool)
from utils.config import GTZAN_LABELS


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
