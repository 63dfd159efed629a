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

The synthesis lives in scripts/demo/, one file per part: theory.py (scales, chords),
instruments.py (voices), drums.py, song.py (timing, tracks), arranging.py (phrases, bass, comping),
genres.py (one recipe per genre: change a genre there), mixing.py (rendering, effects, WAV files).
This file is the command line and the parallel writer.
"""
import os
import sys
if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from scripts.demo.mixing import _write_clip, clip_path
from scripts.demo.parallel import run_jobs
from utils.arguments import Parser, float_range, int_range, non_negative_int, positive_int
from utils.config import GTZAN_LABELS, SAMPLE_RATE
from utils.utilities import UsageError, create_folder, run_cli


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
    run_jobs(_write_clip, jobs, num_workers, "synthesising clips")
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
