"""Read throughput of packed shards from storage (the lazy reader), against the GPU's appetite.

    python3 scripts/benchmark_reading.py                       # 20,000 x 10 s in 8 shards (~13 GB)
    python3 scripts/benchmark_reading.py --clips=3000 --folder=/big/disk/bench

Writes a synthetic AudioSet-sized set in the layout utils/features.py packs (int16 noise, one
clip per chunk, 8 shards read as one dataset), then reads shuffled training batches as training
does when the data does not fit in memory (--in_memory=no: the DataLoader over the shards, each
clip one pread, the read-ahead hinting the kernel; also without the hint) with 0, 2 and 4
workers. Before each
measurement the files' pages are dropped from the page cache (posix_fadvise DONTNEED), so every
clip comes from storage. The baseline, in the same run: the reader this replaced (h5py, one
dataset read per clip). The target: 1,200 clips/s, what one H100 consumes at the training-speed
goal. Prints a table and, with --output_json, the figures.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import h5py
import numpy as np
import torch

from pytorch.pytorch_utils import make_loader
from utils import config
from utils.arguments import Parser, positive_float, positive_int
from utils.data_generator import TrainSampler, WaveformDataset, collate_fn
from utils.features import write_clip_metadata
from utils.partial_pack import create_waveform_dataset, shard_path
from utils.utilities import check_free_space, run_cli

GPU_CLIPS_PER_S = 1200  # one H100 training Transfer_Cnn14 at the speed goal
READERS = ("h5py", "pread", "pread + read-ahead")  # the one replaced, then this one's two steps
WRITE_BLOCK = 256  # clips generated and written at a time (bounded memory)


def write_shards(folder, clips, seconds, shards, seed=0):
    """The synthetic set, in shards as `--shard=I/N` packs them; returns the shards' folder."""
    clip_samples = int(config.SAMPLE_RATE * seconds)
    labels = [f"label{index}" for index in range(5)]
    random_state = np.random.RandomState(seed)
    names = [f"Y{index:011d}.wav" for index in range(clips)]
    shard_of = np.arange(clips) % shards + 1
    output = os.path.join(folder, "waveform.h5")
    for shard in range(1, shards + 1):
        members = np.flatnonzero(shard_of == shard)
        path = shard_path(output, shard, shards)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w", rdcc_nbytes=0) as hf:
            waveforms = create_waveform_dataset(hf, len(members), clip_samples)
            for start in range(0, len(members), WRITE_BLOCK):
                rows = min(WRITE_BLOCK, len(members) - start)
                waveforms[start:start + rows] = random_state.randint(
                    -2000, 2000, (rows, clip_samples), dtype=np.int16)
            targets = (random_state.rand(len(members), len(labels)) < 0.3).astype(np.float32)
            write_clip_metadata(hf, [names[i] for i in members], targets,
                                members % config.FOLDS_NUM + 1, labels, config.MULTI_LABEL,
                                config.SAMPLE_RATE, seconds,
                                {"shard": f"{shard}/{shards}", "list_digest": "synthetic"})
        print(f"wrote {path} ({len(members)} clips)", flush=True)
    return os.path.dirname(shard_path(output, 1, shards))


def drop_page_cache(paths):
    """Every page of these files out of the page cache: the next read comes from storage."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class H5pyDataset(torch.utils.data.Dataset):
    """The reader this replaced: each clip one h5py dataset read (the file opened per worker)."""

    def __init__(self, dataset):
        self.files = dataset.info["files"]
        self.starts = np.cumsum([0] + [clips for _, clips in self.files])
        self.handles = None

    def __len__(self):
        return int(self.starts[-1])

    def __getitem__(self, index):
        if self.handles is None:
            self.handles = [h5py.File(path, "r")["waveform"] for path, _ in self.files]
        file_number = int(np.searchsorted(self.starts, index, side="right")) - 1
        return {"audio_name": "", "waveform": self.handles[file_number][index - self.starts[file_number]],
                "target": np.zeros(1, np.float32)}

    def __getstate__(self):
        return dict(self.__dict__, handles=None)


def time_reading(dataset, clips, batch_size, num_workers, reader):
    """Clips/s of shuffled training batches (mixup doubles each: 2 x batch_size clips)."""
    drop_page_cache(dataset.clips.paths)
    sampler = TrainSampler(np.arange(len(dataset)), batch_size, mixup=True, seed=1)
    if reader == "pread + read-ahead":  # what training uses
        loader = make_loader(dataset, sampler, num_workers, seed=1, device=torch.device("cpu"))
    else:
        source = dataset if reader == "pread" else H5pyDataset(dataset)
        loader = torch.utils.data.DataLoader(source, batch_sampler=sampler, collate_fn=collate_fn,
                                             num_workers=num_workers)
    batches = max(1, clips // (2 * batch_size))
    started, read = time.perf_counter(), 0
    for batch, _ in zip(loader, range(batches)):
        read += len(batch["waveform"])
    seconds = time.perf_counter() - started
    del loader
    return {"reader": reader, "num_workers": num_workers, "clips": read,
            "seconds": round(seconds, 2), "clips_per_s": round(read / seconds, 1),
            "mb_per_s": round(read * dataset.clips.clip_bytes / seconds / 1e6, 1)}


def main():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=positive_int, default=20000)
    parser.add_argument("--seconds", type=positive_float, default=10.0)
    parser.add_argument("--shards", type=positive_int, default=8)
    parser.add_argument("--workers", default="0,2,4", help="comma-separated worker counts")
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument("--read_clips", type=positive_int, default=2048,
                        help="clips read per measurement")
    parser.add_argument("--folder", default=None,
                        help="where the set is written (default: a temporary folder); an "
                             "existing set there is reused")
    parser.add_argument("--keep", action="store_true", help="keep the written set")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    workers = [int(count) for count in args.workers.split(",")]

    folder = args.folder or tempfile.mkdtemp(prefix="benchmark_reading_")
    shards_folder = os.path.dirname(shard_path(os.path.join(folder, "waveform.h5"), 1, args.shards))
    try:
        if not os.path.isdir(shards_folder):
            os.makedirs(folder, exist_ok=True)
            clip_bytes = int(config.SAMPLE_RATE * args.seconds) * 2
            check_free_space(folder, int(1.02 * args.clips * clip_bytes), "the synthetic set")
            started = time.perf_counter()
            write_shards(folder, args.clips, args.seconds, args.shards)
            print(f"written in {time.perf_counter() - started:.0f} s", flush=True)
        dataset = WaveformDataset(shards_folder, in_memory=False, as_int16=True)
        results = []
        for count in workers:
            for reader in READERS:
                result = time_reading(dataset, args.read_clips, args.batch_size, count, reader)
                results.append(result)
                print(json.dumps(result), flush=True)
        report(args, dataset, results)
    finally:
        if not args.keep and not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


def report(args, dataset, results):
    gigabytes = dataset.clips.nbytes / 1e9
    print(f"\n{len(dataset)} clips x {args.seconds:g} s in {len(dataset.clips.paths)} shards "
          f"({gigabytes:.1f} GB), shuffled batches of {2 * args.batch_size} clips, page cache "
          f"dropped before each row; target {GPU_CLIPS_PER_S} clips/s")
    print(f"{'reader':<22}{'workers':>8}{'clips/s':>10}{'MB/s':>8}{'vs h5py':>9}{'vs target':>11}")
    baseline = {r["num_workers"]: r["clips_per_s"] for r in results if r["reader"] == "h5py"}
    for r in results:
        name = "h5py per clip (before)" if r["reader"] == "h5py" else r["reader"]
        print(f"{name:<22}{r['num_workers']:>8}{r['clips_per_s']:>10.0f}{r['mb_per_s']:>8.0f}"
              f"{r['clips_per_s'] / baseline[r['num_workers']]:>8.2f}x"
              f"{r['clips_per_s'] / GPU_CLIPS_PER_S:>10.2f}x")
    if args.output_json:
        record = {"date": datetime.date.today().isoformat(), "host": platform.node(),
                  "cpus": os.cpu_count(), "argv": sys.argv[1:], "clips": len(dataset),
                  "seconds": args.seconds, "shards": len(dataset.clips.paths), "gigabytes": gigabytes,
                  "target_clips_per_s": GPU_CLIPS_PER_S, "results": results}
        with open(args.output_json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
