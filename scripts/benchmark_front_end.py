"""The front end alone: torchlibrosa's (Conv1d STFT, per-example SpecAugment loop) against this
project's (torch.stft + one matmul, SpecAugment vectorised on the device), in one run.

    python3 scripts/benchmark_front_end.py [--device=cpu|cuda] [--batch_size=64] [--seconds=30]
        [--repeats=5] [--output_json=front_end.json]

Prints the median milliseconds per batch of each and the ratio, and the largest log-mel
difference between them in the bins within 80 dB of each clip's peak.
"""
import json
import os
import statistics
import sys
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch
from torchlibrosa.augmentation import SpecAugmentation

from pytorch.front_end import SpecAugment, logmel, stft_window, torchlibrosa_extractors
from utils import config
from utils.arguments import Parser, positive_float, positive_int
from utils.utilities import UsageError, atomic_write_text, run_cli


def median_ms(function, device, repeats):
    function()  # warm-up: cuFFT plans, cuDNN autotuning
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="clips per batch (default 64 on CUDA, 8 on the CPU)")
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help="clip length (default 30 on CUDA, 10 on the CPU)")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda: no CUDA device is available")
    device = torch.device(device_name)
    gpu = device.type == "cuda"
    batch_size = args.batch_size or (64 if gpu else 8)
    seconds = args.seconds or (30.0 if gpu else 10.0)

    audio = config.AudioConfig()
    spectrogram, mel = torchlibrosa_extractors(**audio.front_end())
    spectrogram, mel = spectrogram.to(device), mel.to(device)
    window = stft_window(audio.window_size).to(device)
    waveform = 0.3 * torch.randn(batch_size, int(seconds * audio.sample_rate), device=device)
    theirs_augment = SpecAugmentation(64, 2, 8, 2).train()
    ours_augment = SpecAugment().train()

    with torch.no_grad():
        reference = mel(spectrogram(waveform))
        fast = logmel(waveform, window, audio.hop_size, mel.melW)
        loud = reference > reference.amax(dim=(1, 2, 3), keepdim=True) - 80
        difference = (fast - reference).abs()[loud].max().item()
        results = {
            "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__, "batch_size": batch_size, "seconds": seconds,
            "max_db_difference_within_80_db": difference,
            "torchlibrosa_logmel_ms": median_ms(lambda: mel(spectrogram(waveform)), device,
                                                args.repeats),
            "fast_logmel_ms": median_ms(lambda: logmel(waveform, window, audio.hop_size, mel.melW),
                                        device, args.repeats),
            "torchlibrosa_spec_augment_ms": median_ms(lambda: theirs_augment(reference), device,
                                                      args.repeats),
            "fast_spec_augment_ms": median_ms(lambda: ours_augment(reference), device,
                                              args.repeats),
        }
    print(f"{results['device']}, torch {results['torch']}: batch of {batch_size} x {seconds:g}-s "
          f"clips at {audio.sample_rate} Hz, median of {args.repeats}")
    for part in ("logmel", "spec_augment"):
        theirs, ours = results[f"torchlibrosa_{part}_ms"], results[f"fast_{part}_ms"]
        print(f"  {part:<13} torchlibrosa {theirs:9.2f} ms   this project {ours:9.2f} ms   "
              f"{theirs / ours:6.2f}x faster")
    print(f"  largest log-mel difference within 80 dB of each clip's peak: {difference:.2e} dB")
    if args.output_json:
        atomic_write_text(json.dumps(results, indent=2) + "\n", args.output_json)
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    run_cli(main)
