"""Host memory per rank when several processes on one node train on one packed set.

    python3 scripts/benchmark_memory.py [--clips=1600] [--seconds=10] [--processes=1,2,4]

Writes a synthetic set (default 1,600 x 10 s: 1.0 GB of int16), then for 1, 2 and 4 processes
(ranks of one node) reads one epoch exactly as training does: every global batch of the
shuffled sampler, each rank its share (RankShare), through the in-memory path (ResidentClips)
or the streaming one (the DataLoader, 0 workers). Three ways to hold the data:

  private copy   what --in_memory=yes did before: each rank reads the file into its own memory
  mapped         --in_memory=yes now: the files memory-mapped, one copy in the page cache
  lazy           --in_memory=no: each clip read when its batch comes

Each rank reports, after the epoch and with every rank still alive, what the data added to
its resident set (RSS), its proportional share (PSS: summed over ranks, a shared page counts
once), its anonymous memory (its own heap) and its share of mapped file pages (page cache),
from /proc/self/smaps_rollup.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import h5py
import numpy as np
import torch

from pytorch.distributed import RankShare
from pytorch.pytorch_utils import ResidentClips, make_loader
from scripts.benchmark_reading import write_shards
from utils.arguments import Parser, positive_float, positive_int
from utils.data_generator import TrainSampler, WaveformDataset
from utils.utilities import host_memory_mb, run_cli

MODES = ("private copy", "mapped", "lazy")
BATCH_SIZE = 32


def read_epoch(folder, mode, rank, world_size):
    """One epoch of this rank's shares, held the way `mode` says."""
    dataset = WaveformDataset(folder, in_memory=mode != "lazy", as_int16=True)
    batches = RankShare(EpochSampler(len(dataset)), rank, world_size)
    if mode == "private copy":
        copies = [h5py.File(path, "r")["waveform"][:] for path in dataset.clips.paths]
        waveforms = np.concatenate(copies)
        del copies
        for batch in batches:
            waveforms[batch].sum()
        return waveforms
    if mode == "mapped":
        source = ResidentClips(dataset, torch.device("cpu")).batches(batches)
    else:
        source = make_loader(dataset, batches, 0, 0, torch.device("cpu"))
    for batch in source:
        batch["waveform"].sum()
    return dataset


class EpochSampler(TrainSampler):
    """One pass of the training sampler's global batches (mixup doubles each)."""

    def __init__(self, clips):
        super().__init__(np.arange(clips), BATCH_SIZE, mixup=True, seed=1)
        self.batches = clips // self.batch_size

    def __iter__(self):
        for _ in range(self.batches):
            yield self.next_batch()


def rank_main(folder, mode, rank, world_size, barrier, results):
    torch.set_num_threads(1)
    before = host_memory_mb()
    held = read_epoch(folder, mode, rank, world_size)
    barrier.wait()  # every rank has read its epoch and still holds its data
    after = host_memory_mb()
    results.put({"mode": mode, "processes": world_size, "rank": rank,
                 **{key: round(after[key] - before[key], 1) for key in after}})
    barrier.wait()  # hold on until every rank has measured
    del held


def measure(folder, mode, world_size):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(world_size), context.Queue()
    ranks = [context.Process(target=rank_main, args=(folder, mode, rank, world_size, barrier,
                                                     results)) for rank in range(world_size)]
    for process in ranks:
        process.start()
    rows = sorted((results.get(timeout=600) for _ in ranks), key=lambda row: row["rank"])
    for process in ranks:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a rank failed ({mode}, {world_size} processes)")
    return rows


def main():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=positive_int, default=1600)
    parser.add_argument("--seconds", type=positive_float, default=10.0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    counts = [int(count) for count in args.processes.split(",")]
    folder = tempfile.mkdtemp(prefix="benchmark_memory_")
    try:
        shards = write_shards(folder, args.clips, args.seconds, 4)
        data_mb = args.clips * int(32000 * args.seconds) * 2 / 2**20
        rows = []
        for mode in MODES:
            for count in counts:
                rows += measure(shards, mode, count)
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{args.clips} clips x {args.seconds:g} s ({data_mb:.0f} MB int16) in 4 shards; "
          "memory each rank added by holding and reading its epoch (MB; mean over ranks)")
    print(f"{'mode':<14}{'processes':>10}{'RSS':>8}{'PSS':>8}{'anon':>8}{'file':>8}"
          f"{'node: anon x ranks + file x ranks':>36}")
    for mode in MODES:
        for count in counts:
            mine = [row for row in rows if row["mode"] == mode and row["processes"] == count]
            mean = {key: sum(row[key] for row in mine) / count
                    for key in ("rss", "pss", "anon", "file")}
            print(f"{mode:<14}{count:>10}{mean['rss']:>8.0f}{mean['pss']:>8.0f}{mean['anon']:>8.0f}"
                  f"{mean['file']:>8.0f}{mean['anon'] * count:>26.0f} + {mean['file'] * count:.0f}")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "host": platform.node(),
                       "clips": args.clips, "seconds": args.seconds, "data_mb": data_mb,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
