"""Live input at length: an hour of audio piped into `inference --stream`, as fast as it keeps up.

    python3 scripts/benchmark_stream.py [--seconds=3600] [--checkpoint_path=CKPT] [--hop=1]
        [--output=stream.json]

Without --checkpoint_path, a Transfer_Cnn6 on 5-s clips (random weights: speed and memory do
not depend on them) is written to a temporary folder. Raw 16-bit PCM at the model's rate is
generated block by block (tones and noise) and written to the command's standard input as fast
as it reads it; the command's rows are read as they come. Prints and writes: the real-time
factor (audio seconds per wall second: above 1 keeps up with a live source), rows, the
command's own latency figures (from a window's last sample to its row), and its resident
memory sampled through the hour (RSS at the first minute and at the end, and their ratio: a
flat line is ~1.0).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = REPO_DIR

from pytorch.models import create_model  # noqa: E402
from utils.config import AudioConfig, RunConfig  # noqa: E402
from utils.utilities import atomic_write_text, run_cli  # noqa: E402

BLOCK_SECONDS = 0.5


def transfer_cnn6_checkpoint(path):
    torch.manual_seed(0)
    audio = AudioConfig(clip_samples=5 * 32000)
    labels = [f"class_{index}" for index in range(10)]
    model = create_model("Transfer_Cnn6", **audio.front_end(), classes_num=len(labels))
    run = RunConfig(model_type="Transfer_Cnn6", task="single_label", labels=labels, audio=audio,
                    features="", holdout_fold=1, loss_type="clip_nll")
    torch.save({"iteration": 0, "model": model.state_dict(), "config": run.to_dict()}, path)
    return path


def resident_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def feed(process, seconds, rate, fed):
    """Write `seconds` of raw PCM; fed[0] counts the seconds written."""
    rng = np.random.default_rng(0)
    block = int(BLOCK_SECONDS * rate)
    t = np.arange(block) / rate
    try:
        for index in range(int(seconds / BLOCK_SECONDS)):
            pitch = 110.0 * 2 ** ((index // 8) % 24 / 12)
            samples = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(block)
            process.stdin.write((samples * 32767).astype("<i2").tobytes())
            fed[0] += BLOCK_SECONDS
    finally:
        process.stdin.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--checkpoint_path", default=None)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint_path or transfer_cnn6_checkpoint(
            os.path.join(folder, "transfer_cnn6.pth"))
        rate = 32000
        command = [sys.executable, os.path.join(REPO_DIR, "pytorch", "main.py"), "inference",
                   "--stream", "--audio_path=-", f"--checkpoint_path={checkpoint}",
                   f"--hop={args.hop}", "--stream_format=s16le", f"--stream_rate={rate}"]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        fed, rows = [0.0], [0]

        def read_rows():
            for _ in process.stdout:
                rows[0] += 1

        readers = [threading.Thread(target=feed, args=(process, args.seconds, rate, fed)),
                   threading.Thread(target=read_rows)]
        for thread in readers:
            thread.start()
        memory = []  # (audio seconds fed, RSS MB)
        while process.poll() is None:
            try:
                memory.append((fed[0], resident_mb(process.pid)))
            except (OSError, AttributeError):
                break
            time.sleep(2.0)
        for thread in readers:
            thread.join()
        errors = process.stderr.read().decode()
        wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"the stream command failed: {errors.strip()[-500:]}")
    latency = re.search(r"median ([\d.]+) ms, max ([\d.]+) ms", errors)
    after_a_minute = [mb for seconds, mb in memory if seconds >= 60] or [m for _, m in memory]
    result = {
        "command": " ".join(["scripts/benchmark_stream.py"] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "cpu_threads": torch.get_num_threads(),
        "audio_seconds": fed[0], "wall_seconds": round(wall, 1),
        "real_time_factor": round(fed[0] / wall, 2), "rows": rows[0] - 1,
        "latency_median_ms": float(latency.group(1)) if latency else None,
        "latency_max_ms": float(latency.group(2)) if latency else None,
        "rss_mb_first_minute": round(after_a_minute[0], 1),
        "rss_mb_end": round(memory[-1][1], 1), "rss_mb_max": round(max(m for _, m in memory), 1),
        "rss_end_over_first_minute": round(memory[-1][1] / after_a_minute[0], 3),
        "rss_samples": [(round(seconds), round(mb, 1)) for seconds, mb in memory[::10]],
    }
    print(json.dumps({key: value for key, value in result.items() if key != "rss_samples"},
                     indent=2))
    if args.output:
        atomic_write_text(json.dumps(result, indent=2) + "\n", args.output)


if __name__ == "__main__":
    run_cli(main)
