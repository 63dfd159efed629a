"""ONNX inference against PyTorch on the CPU, in one run: a Transfer_Cnn14 (random weights, 10
labels, the GTZAN clip) exported by `main.py export`, both run on the same batches.

    python3 scripts/benchmark_onnx.py [--model_type=Transfer_Cnn14] [--seconds=30]
        [--batch_size=8] [--repeats=5] [--threads=N] [--output_json=onnx.json]

Prints the median clips/s of each, their ratio, and the largest probability difference.
"""
import json
import os
import statistics
import sys
import tempfile
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import onnxruntime
import torch

from pytorch.models import create_model
from pytorch.onnx_export import export_onnx
from pytorch.predictor import OnnxPredictor, load_predictor
from utils.arguments import Parser, positive_float, positive_int
from utils.config import GTZAN_LABELS, AudioConfig, RunConfig
from utils.utilities import atomic_write_text, run_cli


def median_clips_per_s(predictor, waveforms, repeats):
    predictor(waveforms)  # warm-up: first-run allocations, graph optimisation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor(waveforms)
        times.append(time.perf_counter() - started)
    return len(waveforms) / statistics.median(times)


def random_checkpoint(path, model_type, seconds):
    torch.manual_seed(0)
    audio = AudioConfig(clip_samples=int(seconds * AudioConfig().sample_rate))
    model = create_model(model_type, **audio.front_end(), classes_num=len(GTZAN_LABELS),
                         task="single_label")
    run = RunConfig(model_type=model_type, task="single_label", labels=list(GTZAN_LABELS),
                    audio=audio, features="", holdout_fold=1, loss_type="clip_nll")
    torch.save({"iteration": 0, "model": model.state_dict(), "config": run.to_dict()}, path)


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_type", default="Transfer_Cnn14")
    parser.add_argument("--seconds", type=positive_float, default=30.0)
    parser.add_argument("--batch_size", type=positive_int, default=8)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for both (default: torch's default, all cores)")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, exported = os.path.join(folder, "m.pth"), os.path.join(folder, "m.onnx")
        random_checkpoint(checkpoint, args.model_type, args.seconds)
        started = time.perf_counter()
        export_onnx(checkpoint, exported)
        export_s = time.perf_counter() - started
        reference, onnx_model = load_predictor(checkpoint), OnnxPredictor(exported)
        waveforms = (0.1 * np.random.default_rng(0).standard_normal(
            (args.batch_size, reference.run.audio.clip_samples))).astype(np.float32)
        difference = float(np.abs(reference(waveforms)["probabilities"]
                                  - onnx_model(waveforms)["probabilities"]).max())
        torch_rate = median_clips_per_s(reference, waveforms, args.repeats)
        onnx_rate = median_clips_per_s(onnx_model, waveforms, args.repeats)
    results = {"device": f"cpu ({os.cpu_count()} cores)", "torch": torch.__version__,
               "onnxruntime": onnxruntime.__version__, "model_type": args.model_type,
               "seconds": args.seconds, "batch_size": args.batch_size,
               "torch_threads": torch.get_num_threads(), "export_s": round(export_s, 1),
               "pytorch_clips_per_s": round(torch_rate, 2),
               "onnxruntime_clips_per_s": round(onnx_rate, 2),
               "onnxruntime_over_pytorch": round(onnx_rate / torch_rate, 3),
               "max_probability_difference": difference}
    text = json.dumps(results, indent=2)
    print(text)
    if args.output_json:
        atomic_write_text(text + "\n", args.output_json)


if __name__ == "__main__":
    run_cli(main)
