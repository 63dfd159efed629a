"""Packing throughput against the sequential librosa baseline, measured in one run.

    python3 scripts/benchmark_packing.py [--clips_per_genre=20] [--genres=10] [--num_workers=N]

Generates a demo set (default 200 clips x 30 s at 22050 Hz, GTZAN's own rate, so both sides
resample to 32 kHz as they would on GTZAN), then times on the same files:
  baseline: librosa.load(path, sr=32000, mono=True) one file after another (no HDF5 written);
  ours:     utils/features.py packing (decode, soxr resample, int16, HDF5) over N processes.
"""
import argparse
import os
import sys
import tempfile
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import librosa

from scripts.make_demo_dataset import make_demo_dataset
from utils import config
from utils.arguments import Parser, int_range, positive_float, positive_int
from utils.features import one_hot, pack_to_hdf5, scan_class_folders


def main():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genres", type=int_range(2, 10), default=10)
    parser.add_argument("--clips_per_genre", type=positive_int, default=20)
    parser.add_argument("--clip_duration", type=positive_float, default=30.0)
    parser.add_argument("--source_sample_rate", type=int_range(8000), default=22050,
                        help="rate of the generated files (GTZAN: 22050)")
    parser.add_argument("--num_workers", type=positive_int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        dataset_dir = os.path.join(folder, "demo")
        make_demo_dataset(dataset_dir, genres=args.genres, clips_per_genre=args.clips_per_genre,
                          clip_duration=args.clip_duration, sample_rate=args.source_sample_rate,
                          num_workers=args.num_workers)
        labels, found = scan_class_folders(dataset_dir)
        files = len(found)

        started = time.perf_counter()
        for _, path, _ in found:
            librosa.load(path, sr=config.SAMPLE_RATE, mono=True)
        baseline_seconds = time.perf_counter() - started

        items = [(name, path, one_hot(index, len(labels))) for name, path, index in found]
        started = time.perf_counter()
        pack_to_hdf5(items, labels, config.SINGLE_LABEL, os.path.join(folder, "waveform.h5"),
                     clip_duration=args.clip_duration, sample_rate=args.source_sample_rate,
                          num_workers=args.num_workers)
        ours_seconds = time.perf_counter() - started

    baseline_rate, ours_rate = files / baseline_seconds, files / ours_seconds
    print(f"{files} files of {args.clip_duration:g} s at {args.source_sample_rate} Hz -> "
          f"{config.SAMPLE_RATE} Hz, {os.cpu_count()} CPU cores")
    print(f"baseline  sequential librosa.load(sr=32000): {baseline_seconds:7.2f} s  "
          f"{baseline_rate:7.1f} files/s")
    print(f"ours      pack to HDF5, {args.num_workers} workers:        {ours_seconds:7.2f} s  "
          f"{ours_rate:7.1f} files/s")
    print(f"ratio     ours / baseline: {ours_rate / baseline_rate:.2f}x")


if __name__ == "__main__":
    main()
