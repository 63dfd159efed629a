"""A trained model as an .onnx file: written by `main.py export`, run by onnxruntime.

    python3 pytorch/main.py export --checkpoint_path=CKPT.pth --output=model.onnx

The graph takes a float32 waveform (batch, samples) at the model's sample rate, both axes
dynamic, and gives `probabilities` (batch, classes: softmax for single-label, sigmoid for
multi-label) and `embedding` (batch, width). The log-mel front end is inside the graph, in fp32
(the STFT as matrix products, then the checkpoint's own mel matrix:
front_end.mel_power_by_matmuls), so a deployment needs nothing but
onnxruntime and a decoder. The file's metadata carries the RunConfig (labels, task, sample rate,
clip length, front end) and the tuned thresholds, so `main.py inference` runs it as it runs the
checkpoint. Export checks itself: onnxruntime must give PyTorch's probabilities within
PARITY_TOLERANCE at three input lengths, or nothing is written.
"""
import json
import logging
import os
import tempfile
import time
import warnings

import numpy as np
import torch

from pytorch.backbone_export import run_backbone_export
from pytorch.onnx_metadata import (CONFIG_KEY, MIN_SAMPLES_KEY, SOURCE_KEY, SPEED_KEY,
                                   THRESHOLDS_KEY)
from pytorch.predictor import OnnxPredictor, TorchPredictor, load_predictor
from pytorch.pytorch_utils import probabilities_from_output
from pytorch.quantize import QUANTIZE_METHODS
from utils.arguments import add_flags, float_range
from utils.utilities import UsageError, atomic_path, check_output_file, file_sha256

OPSET = 17  # run by onnxruntime and onnxruntime-node (tests/test_onnx.py runs both)
PARITY_TOLERANCE = 1e-4
RARE_TOLERANCE = 1e-2  # relative, on probabilities below 1e-3


class ExportGraph(torch.nn.Module):
    """The model with probabilities (not log-probabilities) and the embedding as outputs."""

    def __init__(self, predictor):
        super().__init__()
        self.model, self.task = predictor.model, predictor.run.task

    def forward(self, waveform):
        output = self.model(waveform)
        return (probabilities_from_output(output["clipwise_output"], self.task),
                output["embedding"])


def metadata(predictor):
    """The file's metadata: what the pipeline reads back, and plain keys for other tools."""
    run, thresholds = predictor.run, predictor.thresholds
    values = {CONFIG_KEY: run.to_dict(), MIN_SAMPLES_KEY: predictor.min_samples,
              SOURCE_KEY: file_sha256(predictor.source),
              THRESHOLDS_KEY: None if thresholds is None else [float(t) for t in thresholds],
              "labels": list(run.labels), "sample_rate": run.audio.sample_rate,
              "clip_samples": run.audio.clip_samples, "task": run.task,
              "model_type": run.model_type}
    return {key: json.dumps(value) for key, value in values.items()}


def parity_lengths(predictor):
    """Three input lengths the export is checked at: the clip, a shorter and an odd longer one."""
    clip = predictor.run.audio.clip_samples
    return sorted({max(predictor.min_samples, clip // 2), clip, clip + clip // 3 + 17})


def export_onnx(checkpoint_path, output, trusted=False, model_type=None, measure_speed=True):
    """Export a checkpoint to `output` (written atomically, after the parity check passes);
    returns the largest |onnxruntime - PyTorch| probability difference, onnxruntime's speed
    over PyTorch's on this machine (also in the file's metadata; None when not measured: the
    int8 export's float intermediate) and the run."""
    import onnx

    predictor = load_predictor(checkpoint_path, trusted=trusted, model_type=model_type)
    if not isinstance(predictor, TorchPredictor):
        raise UsageError(f"--checkpoint_path={checkpoint_path}: already an ONNX file")
    graph = ExportGraph(predictor).eval()
    example = torch.zeros(2, predictor.run.audio.clip_samples)
    with atomic_path(output) as temp_path:
        with warnings.catch_warnings():  # the tracer's notes on Python shape checks
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), temp_path, dynamo=False, opset_version=OPSET,
                              input_names=["waveform"],
                              output_names=["probabilities", "embedding"],
                              dynamic_axes={"waveform": {0: "batch", 1: "samples"},
                                            "probabilities": {0: "batch"},
                                            "embedding": {0: "batch"}})
        graph.eval()  # export restores the module's mode: keep it in eval for the check
        model_proto = onnx.load(temp_path)
        for key, value in metadata(predictor).items():
            model_proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(model_proto)
        onnx.save(model_proto, temp_path)
        exported = OnnxPredictor(temp_path, "--output")
        difference = check_parity(predictor, exported, parity_lengths(predictor))
        speed = relative_speed(predictor, exported) if measure_speed else None
        if speed is not None:
            model_proto.metadata_props.add(key=SPEED_KEY, value=json.dumps(round(speed, 3)))
            onnx.save(model_proto, temp_path)
    return difference, speed, predictor.run


def relative_speed(reference, exported, audio_seconds=80, repeats=3):
    """onnxruntime's clips/s over PyTorch's, on this machine: batches of about `audio_seconds`
    of clips (16 of 5 s, 8 of 10 s: full batches, as inference packs its windows) through each
    in turn, the ratio of the medians of `repeats` passes after a warm-up (taking turns, so
    that other work on the CPU weighs on both alike). Which runtime is faster depends on the
    network, the batch and the CPU (a 2-core AVX2 EPYC: onnxruntime 1.4x PyTorch channels-last
    for Cnn14 tagging 10-s files, 1.2x before the export's front end became matrix products;
    for MobileNetV2, whose depthwise convolutions oneDNN runs well, 1.1x at 4 clips of 5 s but
    0.6x at 16), so it is measured, not assumed, and `inference --runtime=auto` reads it."""
    run = reference.run
    clips = max(1, min(16, round(audio_seconds * run.audio.sample_rate
                                 / run.audio.clip_samples)))
    waveforms = (0.1 * np.random.default_rng(0).standard_normal(
        (clips, run.audio.clip_samples))).astype(np.float32)
    times = {reference: [], exported: []}
    for _ in range(repeats + 1):
        for predictor, seconds in times.items():
            started = time.perf_counter()
            predictor(waveforms)
            seconds.append(time.perf_counter() - started)
    return float(np.median(times[reference][1:]) / np.median(times[exported][1:]))


def check_parity(reference, exported, lengths, seed=0):
    """Largest probability difference over random waveforms of the given lengths; beyond
    PARITY_TOLERANCE it is an error (the file is then not written), and so is a relative
    difference beyond RARE_TOLERANCE on the unlikely labels (probabilities 1e-30 to 1e-3),
    which the absolute bound cannot see (onnxruntime's Sigmoid op gave 0 for all of them)."""
    generator = np.random.default_rng(seed)
    worst = worst_rare = 0.0
    for length in lengths:
        waveforms = (0.1 * generator.standard_normal((2, length))).astype(np.float32)
        expected = reference(waveforms)["probabilities"]
        found = exported(waveforms)["probabilities"]
        difference = float(np.abs(expected - found).max())
        rare = (expected > 1e-30) & (expected < 1e-3)
        relative = float((np.abs(expected - found)[rare] / expected[rare]).max(initial=0.0))
        logging.info("ONNX parity at %d samples: max |difference| %.2e, relative on %d unlikely "
                     "labels %.2e", length, difference, int(rare.sum()), relative)
        worst, worst_rare = max(worst, difference), max(worst_rare, relative)
    if not worst <= PARITY_TOLERANCE:
        raise UsageError(f"the exported graph differs from PyTorch by {worst:.2e} (more than "
                         f"{PARITY_TOLERANCE:g}); nothing was written")
    if not worst_rare <= RARE_TOLERANCE:
        raise UsageError(f"the exported graph's probabilities of unlikely labels differ from "
                         f"PyTorch's by {worst_rare:.1%} (more than {RARE_TOLERANCE:.0%}); "
                         "nothing was written")
    return worst


def run_export(args):
    extension = os.path.splitext(args.output)[1].lower()
    if extension not in (".onnx", ".pth"):
        raise UsageError(f"--output={args.output}: name the file .onnx (ONNX) or .pth (a "
                         "backbone in the official PANNs layout)")
    check_output_file(args.output, "--output")
    if extension == ".pth":
        run_backbone_export(args)
        return
    if args.quantize == "int8":
        run_int8_export(args)
        return
    difference, speed, run = export_onnx(args.checkpoint_path, args.output,
                                         args.trust_checkpoint, args.model_type)
    print(f"Wrote {args.output}: {run.model_type}, {len(run.labels)} labels, "
          f"{run.audio.sample_rate} Hz; onnxruntime matches PyTorch within {difference:.1e} "
          f"and runs at {speed:.2f}x its clips/s on this CPU; "
          + ("saved beside the checkpoint, it is what inference --runtime=auto runs"
             if speed >= 1 else "inference --runtime=auto runs the checkpoint in PyTorch"))


def run_int8_export(args):
    """The float export (checked against PyTorch), then its int8 version (pytorch/quantize.py)."""
    from pytorch.quantize import quantize_export

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.output))) as folder:
        float_path = os.path.join(folder, "float.onnx")
        difference, _, run = export_onnx(args.checkpoint_path, float_path,
                                         args.trust_checkpoint, args.model_type,
                                         measure_speed=False)  # quantize times int8's own
        chosen = quantize_export(float_path, args.output, run, args.features,
                                 args.quantize_method, args.max_agreement_drop)
    print(f"Wrote {args.output}: {run.model_type}, int8 ({chosen['method']}); on "
          f"{chosen['holdout_clips']} holdout clips: top-1 agreement with the float model "
          f"{chosen['top1_agreement']:.1%}, {chosen['metric']} {chosen['float_metric']:.4f} -> "
          f"{chosen['int8_metric']:.4f} ({chosen['int8_metric'] - chosen['float_metric']:+.4f}), "
          f"{chosen['clips_per_s']:.1f} clips/s vs {chosen['float_clips_per_s']:.1f} in fp32 "
          f"(x{chosen['speedup']:.2f})")
    if chosen["speedup"] < 1:
        print("note: on this CPU the int8 model is slower than the fp32 one (int8 pays on large "
              "convolutions, such as Cnn14's, and on CPUs with VNNI); the fp32 export is the "
              "faster file here")


def add_export_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX (front end inside) or, as .pth, a "
                       "Transfer_<model> run as a backbone in the official PANNs layout")
    add_flags(parser, "checkpoint_path", "model_type", "trust_checkpoint",
              required=("checkpoint_path",))
    parser.add_argument("--output", required=True,
                        help="model.onnx, or NAME.pth for a backbone (pytorch/backbone_export.py)")
    parser.add_argument("--recipe", default=None,
                        help="with NAME.pth: the command that made the run, for the card")
    add_flags(parser, "features")
    parser.add_argument("--quantize", default="none", choices=["none", "int8"],
                        help="int8: a quantized .onnx, checked against the float model on the "
                             "holdout clips of --features (default: the checkpoint's data)")
    parser.add_argument("--quantize_method", default="auto", choices=QUANTIZE_METHODS,
                        help="dynamic (int8 weights), static (weights and activations, "
                             "calibrated on training clips), or auto: the faster of the two "
                             "that keeps its answers")
    parser.add_argument("--max_agreement_drop", type=float_range(0.0, 1.0), default=0.01,
                        help="refuse an int8 model whose top-1 agreement with the float model "
                             "on the holdout clips is below 1 minus this")
    parser.set_defaults(handler=run_export)
    return parser
