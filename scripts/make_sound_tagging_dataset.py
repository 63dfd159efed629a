#!/usr/bin/env python3
"""Synthesise the pretraining source task: clips tagged with what sounds in them (multi-label).

    python3 scripts/make_sound_tagging_dataset.py --output_dir=DIR [--clips=6000]
        [--clip_duration=3] [--sample_rate=32000] [--seed=2027] [--num_workers=N]

writes DIR/clips/sounds.00000.wav ... (16-bit mono) and DIR/labels.csv (`file,labels`, labels
separated by ';'), which `utils/features.py pack_csv_to_hdf5 --csv=DIR/labels.csv` packs. The
labels (scripts/demo/sounds.py): 20 instrument voices, 10 drum pieces, 4 effects and 2 tempo
bands; no genre. The clips are drawn by no genre recipe of the demo set, from generators seeded
by (seed, clip index), byte-identical whatever the number of workers.
"""
import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from scripts.demo.mixing import render_song, write_wav
from scripts.demo.parallel import run_jobs
from scripts.demo.sounds import SOUND_LABELS, compose_sounds
from utils.arguments import Parser, float_range, int_range, non_negative_int, positive_int
from utils.config import SAMPLE_RATE
from utils.utilities import UsageError, atomic_write_text, create_folder, run_cli

SOURCE_SALT = 7919  # keeps the clips' seed sequences apart from the genre set's (genre < 10)


def sound_clip(index, clip_duration, sample_rate, seed):
    """(audio, labels) of clip `index`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SOURCE_SALT, index]))
    song, labels = compose_sounds(rng, clip_duration, sample_rate)
    return render_song(song), labels


def _write_sound_clip(job):
    output_dir, index, clip_duration, sample_rate, seed = job
    audio, labels = sound_clip(index, clip_duration, sample_rate, seed)
    name = f"clips/sounds.{index:05d}.wav"
    write_wav(os.path.join(output_dir, name), audio, sample_rate)
    return name, labels


def make_sound_tagging_dataset(output_dir, clips=6000, clip_duration=3.0, sample_rate=SAMPLE_RATE,
                               seed=2027, num_workers=None):
    """Write the clips and labels.csv; returns the CSV's path."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"--output_dir={output_dir}: exists and is not a folder")
    create_folder(os.path.join(output_dir, "clips"))
    jobs = [(output_dir, index, clip_duration, sample_rate, seed) for index in range(clips)]
    rows = run_jobs(_write_sound_clip, jobs, num_workers or os.cpu_count() or 1,
                    "synthesising sound clips")
    csv_path = os.path.join(output_dir, "labels.csv")
    atomic_write_text("file,labels\n" + "".join(f"{name},{';'.join(labels)}\n"
                                                for name, labels in rows), csv_path)
    return csv_path


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="dataset root")
    parser.add_argument("--clips", type=positive_int, default=6000)
    parser.add_argument("--clip_duration", type=float_range(0.5, 600), default=3.0, help="seconds")
    parser.add_argument("--sample_rate", type=int_range(8000, 192000), default=SAMPLE_RATE)
    parser.add_argument("--seed", type=non_negative_int, default=2027)
    parser.add_argument("--num_workers", type=positive_int, default=None,
                        help="processes (default: all CPUs)")
    args = parser.parse_args()
    csv_path = make_sound_tagging_dataset(args.output_dir, args.clips, args.clip_duration,
                                          args.sample_rate, args.seed, args.num_workers)
    print(f"wrote {args.clips} clips of {args.clip_duration:g} s, {len(SOUND_LABELS)} labels, "
          f"and {os.path.abspath(csv_path)}")


if __name__ == "__main__":
    run_cli(main)
