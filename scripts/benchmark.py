"""Training speed of each optimisation, added one after another, against the original recipe.

    python3 scripts/benchmark.py                  # on a GPU: Transfer_Cnn14, batch 32 of 30-s clips
    python3 scripts/benchmark.py --device=cpu     # small sizes: batch 4 of 5-s clips
    python3 scripts/benchmark.py --steps=baseline,loader,bf16 --output_json=bench.json

Steps (each keeps the ones before it):
  baseline       the original recipe: the HDF5 opened for every clip, float32 clips, fp32, eager
  loader         this pipeline's data path: int16 clips held in memory on the training device
                 (GPU memory when they fit; else a DataLoader with pinned memory), scaled there
  backends       cudnn.benchmark and TF32 matmuls/convolutions (CUDA only)
  channels_last  channels-last convolutions
  bf16           bf16 autocast (the log-mel front end stays fp32)
  compile        torch.compile
  fp16           fp16 autocast with a grad scaler in place of bf16 (CUDA only)

For each step: training clips/s (Transfer model, mixup: each step trains batch_size mixed clips
made from 2 x batch_size loaded ones, SpecAugment, Adam), evaluation clips/s, peak memory (CUDA:
torch.cuda.max_memory_allocated; CPU: the process's peak RSS, loader workers not included) and
achieved TFLOP/s. The loaders are also timed alone (raw clips/s delivered on the device).
Each measurement runs in a fresh process, times `iterations` steps after `warmup` untimed ones
(compilation, cuDNN autotuning, worker start-up), and reports the median of `repeats`.
The data is synthesised: random int16 noise in the layout utils/features.py packs.
"""
import argparse
import concurrent.futures
import datetime
import itertools
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import h5py
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from pytorch.losses import LOSSES
from pytorch.pytorch_utils import (Mixup, check_precision, forward_loader, make_loader,
                                   waveform_to_tensor)
from pytorch.distributed import wrap_model
from pytorch.optimization import make_optimizer
from pytorch.run_setup import batch_source, build_model, configure_backends
from pytorch.train import train_step
from utils import config
from utils.audio import int16_to_float32
from utils.arguments import Parser, non_negative_int, positive_float, positive_int
from utils.config import REPO_DIR, AudioConfig, RunConfig
from utils.data_generator import (EvaluateSampler, TrainSampler, WaveformDataset, collate_fn,
                                  read_hdf5_info)
from utils.features import write_clip_metadata
from utils.partial_pack import create_waveform_dataset
from utils.utilities import (UsageError, atomic_path, atomic_write_text, check_output_file,
                             progress, run_cli)

BASELINE = {"loader": "original", "backends": False, "channels_last": False,
            "precision": "fp32", "compile": False}
STEPS = {  # name -> what it changes, in the order they accumulate
    "baseline": {},
    "loader": {"loader": "ours"},
    "backends": {"backends": True},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "fp16": {"precision": "fp16"},
}
CUDA_ONLY_STEPS = ("backends", "fp16")
LOADERS = {
    "original": "HDF5 opened per clip, float32 (original)",
    "streamed": "one HDF5 handle per worker, int16 (pinned on CUDA)",
    "resident": "int16 held in memory on the device",
}
CLASSES = config.GTZAN_LABELS
# Reference for the compute floor: H100 SXM dense BF16 tensor-core peak.
H100_BF16_PEAK_FLOPS = 989e12
REALISTIC_SHARE_OF_PEAK = 0.8
DEVICE_DEFAULTS = {  # flag -> (CUDA, CPU)
    "model_type": ("Transfer_Cnn14", "Transfer_Cnn6"),
    # CUDA: sized so the whole run (7 steps, the original loader's baseline the slowest) ends
    # well inside 5 minutes on one H100; compile's warm-up steps absorb its compilation.
    "batch_size": (32, 4), "clip_duration": (30.0, 5.0), "iterations": (10, 2),
    "warmup": (4, 1), "repeats": (2, 3), "loader_batches": (50, 200),
    "num_workers": (min(8, os.cpu_count() or 1), min(2, os.cpu_count() or 1)),
}


# ----- data -----

class OriginalStyleDataset:
    """The original recipe's reader (panns_transfer_to_gtzan): the HDF5 is opened and closed
    for every clip, and the clip converted to float32 on the CPU."""

    def __init__(self, hdf5_path):
        self.hdf5_path = hdf5_path
        with h5py.File(hdf5_path, "r") as hf:
            self.length = len(hf["audio_name"])

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        with h5py.File(self.hdf5_path, "r") as hf:
            audio_name = hf["audio_name"][index].decode()
            waveform = int16_to_float32(hf["waveform"][index])
            target = hf["target"][index].astype(np.float32)
        return {"audio_name": audio_name, "waveform": waveform, "target": target}


def write_synthetic_hdf5(path, clips, clip_duration, seed=0):
    """Random int16 noise, written by the packer's own writer (utils/features.py)."""
    clip_samples = int(round(config.SAMPLE_RATE * clip_duration))
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, len(CLASSES), clips)
    with atomic_path(path) as temp_path, h5py.File(temp_path, "w") as hf:
        waveforms = create_waveform_dataset(hf, clips, clip_samples)
        block = 16
        for start in progress(range(0, clips, block), desc="synthesising clips", unit="block"):
            count = min(block, clips - start)
            waveforms[start:start + count] = rng.integers(-8000, 8000, (count, clip_samples),
                                                          dtype=np.int16)
        write_clip_metadata(hf, [f"clip{i:05d}.wav" for i in range(clips)],
                            np.eye(len(CLASSES), dtype=np.float32)[classes],
                            np.arange(clips) % config.FOLDS_NUM + 1, CLASSES,
                            config.SINGLE_LABEL, config.SAMPLE_RATE, clip_duration)


def make_batches(kind, hdf5_path, device, num_workers):
    """batch_sampler -> iterable of batches, for one of LOADERS."""
    if kind == "original":
        dataset = OriginalStyleDataset(hdf5_path)
        # numpy batches: the original's pin_memory=True pinned nothing, so none here either.
        return lambda sampler: torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
            persistent_workers=num_workers > 0)
    if kind == "streamed":
        dataset = WaveformDataset(hdf5_path, in_memory=False, as_int16=True)
        return lambda sampler: make_loader(dataset, sampler, num_workers, 1234, device)
    dataset = WaveformDataset(hdf5_path, in_memory=True, as_int16=True)
    return batch_source(dataset, device, num_workers, 1234)  # what train.py uses


def benchmark_run(hdf5_path, model_type, channels_last=False):
    """The RunConfig of a benchmark model: the HDF5's settings and the PANNs front end."""
    info = read_hdf5_info(hdf5_path)
    audio = AudioConfig(sample_rate=info["sample_rate"], clip_samples=info["clip_samples"])
    return RunConfig(model_type=model_type, task=info["task"], labels=info["labels"],
                     audio=audio, features=hdf5_path, holdout_fold=1, loss_type="clip_nll",
                     channels_last=channels_last), info


# ----- measurements (each in a fresh process) -----

def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(run, clips_per_call, calls, repeats, device):
    """Median clips/s over `repeats` timings of `calls` calls of run()."""
    rates = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(calls):
            run()
        synchronize(device)
        rates.append(clips_per_call * calls / (time.perf_counter() - started))
    return statistics.median(rates), rates


def peak_memory_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def measure_step(step_config, options):
    """Training and evaluation clips/s of one configuration (BASELINE plus its changes)."""
    device = torch.device(options["device"])
    if step_config["backends"]:
        configure_backends(device)
    check_precision(step_config["precision"], device)
    run, info = benchmark_run(options["hdf5_path"], options["model_type"],
                              step_config["channels_last"])
    model = build_model(run, device)
    optimizer = make_optimizer(model, run, device)
    scaler = torch.amp.GradScaler(device.type, enabled=step_config["precision"] == "fp16")
    runnable = wrap_model(model, device, 1, step_config["compile"])
    loader_kind = "original" if step_config["loader"] == "original" else "resident"
    batches = make_batches(loader_kind, options["hdf5_path"], device, options["num_workers"])
    indices = np.arange(len(info["audio_names"]))
    batch_size, precision = options["batch_size"], step_config["precision"]

    train_batches = iter(batches(TrainSampler(indices, batch_size, mixup=True, seed=0)))
    mixup = Mixup(seed=0)
    loss_func = LOSSES["clip_nll"]

    def train_once():
        batch = next(train_batches)
        lambdas = torch.from_numpy(mixup.get_lambda(len(batch["audio_name"])))
        train_step(runnable, batch, device, precision, loss_func, optimizer, scaler, lambdas)

    endless = itertools.chain.from_iterable(itertools.repeat(list(EvaluateSampler(indices, batch_size))))
    eval_batches = iter(batches(endless))

    def evaluate_once():  # the evaluation code itself, one batch at a time
        forward_loader(runnable, itertools.islice(eval_batches, 1), device, config.SINGLE_LABEL,
                       precision)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(options["warmup"]):
        train_once()
    train_rate, train_rates = timed_rate(train_once, batch_size, options["iterations"],
                                         options["repeats"], device)
    peak = peak_memory_bytes(device)
    for _ in range(options["warmup"]):
        evaluate_once()
    eval_rate, eval_rates = timed_rate(evaluate_once, batch_size, options["iterations"],
                                       options["repeats"], device)
    return {"train_clips_per_s": train_rate, "train_repeats": train_rates,
            "eval_clips_per_s": eval_rate, "eval_repeats": eval_rates,
            "peak_memory_bytes": peak}


def measure_loader(kind, options):
    """Raw clips/s a loader delivers onto the device (as float32), without a model."""
    device = torch.device(options["device"])
    batches = make_batches(kind, options["hdf5_path"], device, options["num_workers"])
    indices = np.arange(len(read_hdf5_info(options["hdf5_path"])["audio_names"]))
    iterator = iter(batches(TrainSampler(indices, options["batch_size"], mixup=True, seed=0)))

    def load_once():
        waveform_to_tensor(next(iterator)["waveform"], device)

    for _ in range(options["warmup"] + options["num_workers"]):  # workers start, queues fill
        load_once()
    rate, rates = timed_rate(load_once, 2 * options["batch_size"], options["loader_batches"],
                             options["repeats"], device)
    return {"clips_per_s": rate, "repeats": rates, "peak_memory_bytes": peak_memory_bytes(device)}


def measure_matmul_rate(options):
    """The device's measured dense matmul rate (FLOP/s): bf16 on CUDA, fp32 on the CPU. It
    sets the compute floor the training steps are compared with."""
    device = torch.device(options["device"])
    size = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    rate, _ = timed_rate(lambda: a @ b, 2 * size ** 3, 10, 3, device)
    return {"flops_per_s": rate, "dtype": str(dtype), "size": size}


def count_training_flops(options):
    """FLOPs of one training clip (a mixup pair mixed into one; forward and backward), and of one
    evaluation clip (forward), counted by torch's FlopCounterMode on the CPU."""
    run, _ = benchmark_run(options["hdf5_path"], options["model_type"])
    model = build_model(run, torch.device("cpu"))
    waveform = torch.zeros(2, run.audio.clip_samples)
    with FlopCounterMode(display=False) as counter:
        model.train()
        model(waveform, torch.tensor([0.5, 0.5]))["clipwise_output"].sum().backward()
    train_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()
        model(waveform[:1])
    return {"train_flops_per_clip": train_flops, "forward_flops_per_clip": counter.get_total_flops()}


def in_fresh_process(function, *args):
    """Run function(*args) in a new process: its own peak memory, caches and compiled code."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        try:
            return executor.submit(function, *args).result()
        except Exception as error:  # one failing step (e.g. no C++ compiler) is reported, not fatal
            first_line = (str(error).strip().splitlines() or [""])[0]
            return {"error": f"{type(error).__name__}: {first_line}"}


# ----- the run -----

def step_configs(step_names):
    """[(name, configuration)]: each named step applied on top of the ones before it."""
    current, configs = dict(BASELINE), []
    for name in STEPS:
        if name in step_names:
            current = dict(current, **STEPS[name])
            configs.append((name, dict(current)))
    return configs


def format_bytes(count):
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def ratio(value, reference):
    return f"{value / reference:.2f}x" if reference else "-"


def report(results, options):
    lines = []
    flops = results["flops"]
    clip = options["clip_duration"]
    if "error" not in flops:
        train_gflop = flops["train_flops_per_clip"] / 1e9
        lines.append(f"{options['model_type']} on {clip:g}-s clips: "
                     f"{flops['forward_flops_per_clip'] / 2e9:.1f} G MACs forward per clip; "
                     f"training {train_gflop:.0f} GFLOP per clip (forward + backward).")
        at_peak = H100_BF16_PEAK_FLOPS / flops["train_flops_per_clip"]
        lines.append(f"Compute floor on one H100 (dense BF16 {H100_BF16_PEAK_FLOPS / 1e12:.0f} "
                     f"TFLOP/s): {at_peak:,.0f} training clips/s at peak, "
                     f"{REALISTIC_SHARE_OF_PEAK * at_peak:,.0f} at "
                     f"{REALISTIC_SHARE_OF_PEAK:.0%} of peak.")
    matmul = results.get("matmul", {})
    floor = (matmul["flops_per_s"] / flops["train_flops_per_clip"]
             if "flops_per_s" in matmul and "error" not in flops else None)
    if floor:
        lines.append(f"Compute floor on this device (measured {matmul['dtype']} matmul "
                     f"{matmul['flops_per_s'] / 1e12:.2f} TFLOP/s): {floor:,.1f} training "
                     "clips/s; 'of floor' is each step's share of it.")
    lines.append("")
    header = (f"{'step':<15}{'train clips/s':>14}{'vs base':>9}{'eval clips/s':>14}"
              f"{'vs base':>9}{'peak memory':>13}{'TFLOP/s':>9}{'of floor':>10}")
    lines += [header, "-" * len(header)]
    base = results["steps"][0] if results["steps"] else {}
    for step in results["steps"]:
        name = step["step"] if step["step"] == "baseline" else "+" + step["step"]
        if "error" in step:
            lines.append(f"{name:<15}failed: {step['error']}")
            continue
        tflops = (step["train_clips_per_s"] * flops["train_flops_per_clip"] / 1e12
                  if "error" not in flops else float("nan"))
        lines.append(
            f"{name:<15}{step['train_clips_per_s']:>14.2f}"
            f"{ratio(step['train_clips_per_s'], base.get('train_clips_per_s')):>9}"
            f"{step['eval_clips_per_s']:>14.2f}"
            f"{ratio(step['eval_clips_per_s'], base.get('eval_clips_per_s')):>9}"
            f"{format_bytes(step['peak_memory_bytes']):>13}{tflops:>9.3f}"
            f"{step['train_clips_per_s'] / floor if floor else float('nan'):>10.1%}")
    lines += ["", f"Loaders alone (raw clips/s onto {options['device']}, batches of "
                  f"{2 * options['batch_size']}, {options['num_workers']} workers):"]
    reference = results["loaders"][0].get("clips_per_s") if results["loaders"] else None
    for loader in results["loaders"]:
        if "error" in loader:
            lines.append(f"  {LOADERS[loader['loader']]:<52} failed: {loader['error']}")
        else:
            lines.append(f"  {LOADERS[loader['loader']]:<52}{loader['clips_per_s']:>10.1f}"
                         f"{ratio(loader['clips_per_s'], reference):>9}")
    return "\n".join(lines)


def machine_description(device):
    description = {"platform": platform.platform(), "python": platform.python_version(),
                   "torch": torch.__version__, "cpu_cores": os.cpu_count(),
                   "date": datetime.date.today().isoformat(),
                   "load_average_1min": os.getloadavg()[0]}
    if device == "cuda":
        description["gpu"] = torch.cuda.get_device_name()
    return description


def parse_args(argv=None):
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when available")
    parser.add_argument("--model_type", default=None,
                        help="default Transfer_Cnn14 on CUDA, Transfer_Cnn6 on the CPU")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="mixed clips per step (default 32 on CUDA, 4 on the CPU)")
    parser.add_argument("--clip_duration", type=positive_float, default=None,
                        help="seconds (default 30 on CUDA, 5 on the CPU)")
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help="timed steps per repeat")
    parser.add_argument("--warmup", type=non_negative_int, default=None, help="untimed steps first")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timings; the median is kept")
    parser.add_argument("--loader_batches", type=positive_int, default=None,
                        help="timed batches per repeat for the loaders alone")
    parser.add_argument("--num_workers", type=non_negative_int, default=None,
                        help="DataLoader workers")
    parser.add_argument("--clips", type=positive_int, default=None,
                        help="clips in the synthetic HDF5 (default: 4 global batches, >= 64)")
    parser.add_argument("--steps", default=None,
                        help=f"comma-separated, from {','.join(STEPS)} (default: all that apply)")
    parser.add_argument("--output_json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda: no CUDA device is available")
    column = 0 if args.device == "cuda" else 1
    for flag, defaults in DEVICE_DEFAULTS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, defaults[column])
    if args.clip_duration < 1:
        raise UsageError(f"--clip_duration={args.clip_duration}: use at least 1 s "
                         "(SpecAugment's time stripes need more than 64 frames)")
    args.clips = args.clips or max(64, 4 * 2 * args.batch_size)
    if args.clips < 2 * args.batch_size:
        raise UsageError(f"--clips={args.clips}: needs at least 2 x --batch_size")
    if args.steps is None:
        args.steps = [name for name in STEPS
                      if args.device == "cuda" or name not in CUDA_ONLY_STEPS]
    else:
        args.steps = [name.strip() for name in args.steps.split(",") if name.strip()]
        unknown = [name for name in args.steps if name not in STEPS]
        if unknown:
            raise UsageError(f"--steps: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(STEPS)}")
        cuda_only = [name for name in args.steps if name in CUDA_ONLY_STEPS]
        if cuda_only and args.device != "cuda":
            raise UsageError(f"--steps: {', '.join(cuda_only)} need --device=cuda")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.output_json:  # fail now, not after the measurements
        check_output_file(args.output_json, "--output_json")

    def save(results):
        """Results so far: a step that fails or is killed leaves the ones before it."""
        if args.output_json:
            atomic_write_text(json.dumps(results, indent=2) + "\n", args.output_json)

    with tempfile.TemporaryDirectory() as folder:
        hdf5_path = os.path.join(folder, "waveform.h5")
        write_synthetic_hdf5(hdf5_path, args.clips, args.clip_duration)
        options = {key: value for key, value in vars(args).items()
                   if key not in ("steps", "output_json")}
        options["hdf5_path"] = hdf5_path
        configs = step_configs(args.steps)
        loaders = ["original", "streamed", "resident"]
        results = {"machine": machine_description(args.device),
                   "command": " ".join([os.path.relpath(__file__, REPO_DIR)] + sys.argv[1:]),
                   "options": {key: value for key, value in options.items() if key != "hdf5_path"},
                   "flops": in_fresh_process(count_training_flops, options),
                   "matmul": in_fresh_process(measure_matmul_rate, options),
                   "steps": [], "loaders": []}
        save(results)
        for name, step_config in progress(configs, desc="steps", unit="step"):
            outcome = in_fresh_process(measure_step, step_config, options)
            results["steps"].append(dict(outcome, step=name, config=step_config))
            save(results)
        for kind in progress(loaders, desc="loaders", unit="loader"):
            results["loaders"].append(dict(in_fresh_process(measure_loader, kind, options),
                                           loader=kind))
            save(results)
    # Other processes on the machine slow every figure down: keep the load beside them.
    results["machine"]["load_average_1min"] = [results["machine"]["load_average_1min"],
                                               os.getloadavg()[0]]
    save(results)
    text = report(results, vars(args))
    print(f"\n{results['command']}\n{results['machine']}\n\n{text}")
    if args.output_json:
        print(f"\nwrote {args.output_json}")
    return results

if __name__ == "__main__":
    run_cli(main)
