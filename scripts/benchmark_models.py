"""Training speed and memory of every published PANNs architecture as a transfer backbone, each
in its own process, against Cnn14 measured in the same run.

    python3 scripts/benchmark_models.py [--device=cpu|cuda] [--batch_size=8] [--seconds=2]
        [--repeats=3] [--models NAME ...] [--output_json=models.json]

One training step is Transfer_<model> (unfrozen, 10 classes) forward and backward on a batch of
noise at the model's published sample rate, then an Adam step. Prints clips per second (median
of --repeats steps after a warm-up step), the memory the training took (CPU: peak resident
memory minus that before the model was built; CUDA: peak allocated) and both as ratios to Cnn14.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch

from pytorch.published import published_models
from scripts.benchmark_front_end import median_ms
from utils.arguments import Parser, positive_float, positive_int
from utils.utilities import UsageError, atomic_write_text, run_cli

BASELINE = "Cnn14"


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_one(name, device, batch_size, seconds, repeats):
    """{'clips_per_s', 'memory_bytes'} of one architecture, in this process."""
    from pytorch.models import create_model

    torch.manual_seed(0)
    audio = published_models()[name]["audio"]
    before = resident_bytes()
    model = create_model(f"Transfer_{name}", **audio, classes_num=10).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    waveform = 0.1 * torch.randn(batch_size, int(seconds * audio["sample_rate"]), device=device)
    target = torch.nn.functional.one_hot(torch.arange(batch_size) % 10, 10).float().to(device)

    def step():
        loss = -(target * model(waveform)["clipwise_output"]).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    milliseconds = median_ms(step, device, repeats)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"clips_per_s": batch_size / (milliseconds / 1000), "memory_bytes": memory}


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--batch_size", type=positive_int, default=8)
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="clip length")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--models", nargs="+", default=None, help="default: all, Cnn14 first")
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: one model
    args = parser.parse_args()
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda: no CUDA device is available")
    if args.one:  # the child process: one model, one JSON line
        print(json.dumps(measure_one(args.one, torch.device(device_name), args.batch_size,
                                     args.seconds, args.repeats)))
        return

    names = args.models or list(published_models())
    unknown = [name for name in names if name not in published_models()]
    if unknown:
        raise UsageError(f"--models: {', '.join(unknown)} unknown; choose from "
                         f"{', '.join(published_models())}")
    names = [BASELINE] + [name for name in names if name != BASELINE]
    if args.output_json:
        atomic_write_text("{}", args.output_json)  # writable, before the work
    results = {}
    for name in names:
        command = [sys.executable, os.path.abspath(__file__), f"--one={name}",
                   f"--device={device_name}", f"--batch_size={args.batch_size}",
                   f"--seconds={args.seconds}", f"--repeats={args.repeats}"]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode:
            raise UsageError(f"{name}: the measurement failed: "
                             f"{(finished.stderr.strip().splitlines() or ['?'])[-1]}")
        results[name] = json.loads(finished.stdout.strip().splitlines()[-1])
        base = results[BASELINE]
        row = results[name]
        row.update(parameters=published_models()[name]["parameters"],
                   speed_vs_cnn14=row["clips_per_s"] / base["clips_per_s"],
                   memory_vs_cnn14=row["memory_bytes"] / base["memory_bytes"])
        print(f"{name:24s} {row['parameters'] / 1e6:6.1f} M params  {row['clips_per_s']:7.1f} "
              f"clips/s ({row['speed_vs_cnn14']:5.2f}x Cnn14)  {row['memory_bytes'] / 2**20:7.0f} "
              f"MiB ({row['memory_vs_cnn14']:4.2f}x)", flush=True)
        if args.output_json:
            report = {"device": torch.cuda.get_device_name() if device_name == "cuda"
                      else f"cpu ({os.cpu_count()} cores)", "torch": torch.__version__,
                      "batch_size": args.batch_size, "seconds": args.seconds,
                      "repeats": args.repeats, "models": results}
            atomic_write_text(json.dumps(report, indent=1) + "\n", args.output_json)


if __name__ == "__main__":
    run_cli(main)
