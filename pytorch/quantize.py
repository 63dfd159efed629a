"""An int8 ONNX model that keeps its answers (`main.py export --quantize=int8`).

    python3 pytorch/main.py export --checkpoint_path=CKPT --output=model_int8.onnx --quantize=int8 \\
        [--features=X.h5] [--max_agreement_drop=0.01] [--quantize_method=auto|dynamic|static]

The float graph is exported and checked as for fp32 (pytorch/onnx_export.py), then quantized
with onnxruntime's tools, the log-mel front end, the depthwise convolutions and the layers
after the last convolution's activation kept in fp32 (below), the weights in 7 bits
(`reduce_range`, below):
- dynamic: int8 weights, activations quantized per batch at run time (no data needed);
- static: int8 weights and activations, their ranges calibrated on CALIBRATION_CLIPS training
  clips of the packed data (QDQ format, per-channel weights, percentile ranges).
Each candidate is measured on the checkpoint's holdout clips against the float model: top-1
agreement, the metric (accuracy, or mAP for multi-label) of both, and its speed. `auto` keeps
the fastest candidate whose agreement is within --max_agreement_drop of 1; none within it is a
one-line refusal and nothing is written. What was measured goes into the file's metadata
(`quantization`) and the command's output.
"""
import contextlib
import io
import json
import logging
import os
import tempfile
import time

import numpy as np

from utils.config import SINGLE_LABEL
from utils.data_generator import WaveformDataset, read_hdf5_info
from utils.metrics import compute_metrics
from utils.splits import split_train_eval_indices
from utils.utilities import UsageError, atomic_path, check_free_space, full_disk_error

QUANTIZE_METHODS = ("auto", "dynamic", "static")
QUANTIZATION_KEY = "quantization"
CALIBRATION_CLIPS = 64
CALIBRATION_PASS_SAMPLES = 40 * 32000  # 40 s at 32 kHz: ~1.3 GB of Cnn14's activations
FRONT_END_SCOPES = ("spectrogram_extractor", "logmel_extractor", "bn0")  # kept in fp32


def fp32_nodes(model_path):
    """The nodes kept in fp32: the front end, the head (head_nodes), and depthwise convolutions
    (MobileNets'), whose per-channel ranges int8 serves badly and whose few operations int8
    does not speed up (the demo's fine-tuned MobileNetV2, folds 1-2: 39 of 40 holdout clips
    agreed with them in fp32, 38 without, and it ran 1.2x faster than with them in int8)."""
    import onnx

    nodes = onnx.load(model_path).graph.node
    depthwise = [node.name for node in nodes if node.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    return front_end_nodes(nodes) + depthwise + head_nodes(nodes)


def head_nodes(nodes):
    """The nodes after the CNN's last convolution and its activation (of a graph's `nodes`,
    in topological order): the pooling over time and frequency, fc1 and the classifier.
    Quantized, the probabilities came out in 256 steps (QLinearSigmoid), which ties labels of
    near-equal scores and coarsens the embedding; in fp32 they cost about a millisecond of
    Cnn14's 1.1 s for 8 clips of 10 s. The activation (ReLU, or MobileNets' clip) stays with
    the convolution: the tensor handed to the head is then quantized from 0 up, not across
    the pre-activation's negative half too, twice the steps for the values the head reads
    (the demo-trained Cnn14 of docs/benchmarks.md, 200 clips: the median change of the top
    two logits' margin from fp32, 0.014 -> 0.010, at the same speed)."""
    last_conv = max((index for index, node in enumerate(nodes) if node.op_type == "Conv"),
                    default=None)
    if last_conv is None:
        return []
    after = nodes[last_conv + 1:]
    activation = next((node for node in after if nodes[last_conv].output[0] in node.input), None)
    if activation is not None and activation.op_type in ("Relu", "Clip"):
        after = [node for node in after if node is not activation]
    return [node.name for node in after]


def front_end_nodes(nodes):
    """The log-mel front end's nodes (of a graph's `nodes`, in topological order): the first
    Log and every node it depends on (the framing, the spectrogram's and the mel matrix's
    products), everything before the CNN's first convolution, and anything named after the
    front end's modules (bn0). The Log's ancestry finds the front end where another branch
    convolves the waveform first (Wavegram_Logmel_Cnn14). Quantized, the mel product alone
    turns the log-mel of quiet bins into noise (a fine-tuned MobileNetV2 then agreed with its
    float self on 15% of clips)."""
    first_conv = next((index for index, node in enumerate(nodes) if node.op_type == "Conv"),
                      len(nodes))
    names = {node.name for index, node in enumerate(nodes)
             if index < first_conv or any(scope in node.name for scope in FRONT_END_SCOPES)}
    producers = {output: node for node in nodes for output in node.output}
    pending, seen = [node for node in nodes if node.op_type == "Log"][:1], set()
    while pending:
        node = pending.pop()
        if node.name not in seen:
            seen.add(node.name)
            pending += [producers[name] for name in node.input if name in producers]
    names |= seen
    return [node.name for node in nodes if node.name in names]


class ClipReader:
    """onnxruntime's calibration data reader over packed clips, one clip at a time (its
    percentile calibrator stacks every batch's activations, so they must be of one shape), in
    passes: set_range(start, end) restarts it on those clips."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(index) for index in indices]
        self.set_range(0, len(self.indices))

    def __len__(self):
        return len(self.indices)

    def set_range(self, start_index, end_index):
        self.pending = iter(self.indices[start_index:end_index])

    def get_next(self):
        index = next(self.pending, None)
        if index is None:
            return None
        return {"waveform": np.asarray(self.dataset[index]["waveform"], np.float32)[None]}


def clips_per_pass(clips, clip_samples):
    """How many calibration clips onnxruntime holds at once: it keeps every activation of a
    pass until the pass ends (Cnn14: ~30 MB a second of audio; 64 clips of 5 s peaked at 10 GB,
    of 30 s they would take 60), then merges the pass into its histograms. The largest
    divisor of `clips` (its strided passes must divide them) up to CALIBRATION_PASS_SAMPLES."""
    most = max(1, CALIBRATION_PASS_SAMPLES // max(1, clip_samples))
    return max(d for d in range(1, min(most, clips) + 1) if clips % d == 0)


def quantized(float_path, method, dataset, calibration, folder):
    """The path of `float_path` quantized by `method` (written in `folder`)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = os.path.join(folder, "prepared.onnx")
    if not os.path.exists(prepared):
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
    output = os.path.join(folder, f"{method}.onnx")
    excluded = fp32_nodes(prepared)
    # reduce_range: 7-bit weights. On x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake)
    # onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose int16 sums
    # of two products saturate at full 8-bit range: the demo's MobileNetV2 then agreed with its
    # float self on 14 of 40 holdout clips (folds 1-2), 38 with 7 bits. The file may run on
    # any CPU.
    if method == "dynamic":
        quantize_dynamic(prepared, output, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                         per_channel=True, reduce_range=True)
    else:
        reader = ClipReader(dataset, calibration)
        stride = clips_per_pass(len(reader), len(dataset[int(calibration[0])]["waveform"]))
        with contextlib.redirect_stdout(io.StringIO()):  # its calibrator print()s progress
            quantize_static(prepared, output, reader,
                            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded,
                            # the 99.999th percentile of each activation, not its extreme: on the
                            # demo's MobileNetV2, 40 of 40 holdout clips of folds 1-2 agreed, 39
                            # with min-max ranges
                            calibrate_method=CalibrationMethod.Percentile,
                            # passes of `stride` clips (any calibrator, despite its name)
                            extra_options={"CalibStridedMinMax": stride})
    return output


def outputs_over(predictor, dataset, indices, batch_size=8):
    """(probabilities of every clip, seconds taken)."""
    started, rows = time.perf_counter(), []
    for start in range(0, len(indices), batch_size):
        waveforms = np.stack([dataset[int(i)]["waveform"] for i in indices[start:start + batch_size]])
        rows.append(predictor(waveforms)["probabilities"])
    return np.concatenate(rows), time.perf_counter() - started


def measure(candidate, reference_probabilities, dataset, holdout, run):
    """What a quantized model gives on the holdout clips against the float model's answers."""
    from pytorch.predictor import OnnxPredictor

    probabilities, seconds = outputs_over(OnnxPredictor(candidate, "--output"), dataset, holdout)
    targets = dataset.targets[holdout]
    if run.task == SINGLE_LABEL:
        agreement = float(np.mean(probabilities.argmax(1) == reference_probabilities.argmax(1)))
    else:  # every label decided alike at the run's threshold
        agreement = float(np.mean((probabilities >= run.threshold)
                                  == (reference_probabilities >= run.threshold)))
    metric = run.primary_metric
    return {"top1_agreement": agreement,
            "metric": metric,
            "float_metric": float(compute_metrics(run.task, reference_probabilities, targets,
                                                  run.threshold)[metric]),
            "int8_metric": float(compute_metrics(run.task, probabilities, targets,
                                                 run.threshold)[metric]),
            "clips_per_s": len(holdout) / seconds, "holdout_clips": len(holdout)}


def holdout_data(run, features):
    """(dataset, calibration indices (training clips), holdout indices) of the run's data."""
    spec = features or run.features
    if not spec:
        raise UsageError("--quantize=int8: give --features=X.h5, the packed data to calibrate and "
                         "check the int8 model on")
    info = read_hdf5_info(spec)
    if list(info["labels"]) != list(run.labels):
        raise UsageError(f"--features={spec}: its labels are not the checkpoint's")
    holdout_fold = run.holdout_fold if isinstance(run.holdout_fold, int) else 1
    train, holdout, _ = split_train_eval_indices(info, holdout_fold, "folds")
    generator = np.random.default_rng(0)
    calibration = np.sort(generator.choice(train, min(CALIBRATION_CLIPS, len(train)), replace=False))
    return WaveformDataset(spec), calibration, holdout


def quantize_export(float_path, output, run, features=None, method="auto",
                    max_agreement_drop=0.01):
    """Quantize the exported float model at `float_path` into `output`; returns the chosen
    candidate's measurements (also in the file's metadata)."""
    import onnx
    from pytorch.predictor import OnnxPredictor

    dataset, calibration, holdout = holdout_data(run, features)
    reference, float_seconds = outputs_over(OnnxPredictor(float_path, "--output"), dataset, holdout)
    methods = ("dynamic", "static") if method == "auto" else (method,)
    results = {}
    output_folder = os.path.dirname(os.path.abspath(output))
    # a float copy prepared for the quantizer, then int8 files of about a third of it each
    check_free_space(output_folder, 2 * os.path.getsize(float_path),
                     "the int8 export's intermediate models")
    with tempfile.TemporaryDirectory(dir=output_folder) as folder:
        try:
            for name in methods:
                path = quantized(float_path, name, dataset, calibration, folder)
                result = measure(path, reference, dataset, holdout, run)
                float_clips_per_s = len(holdout) / float_seconds
                results[name] = dict(result, method=name, float_clips_per_s=float_clips_per_s,
                                     speedup=result["clips_per_s"] / float_clips_per_s)
                logging.info("int8 %s: %s", name, results[name])
        except Exception:  # onnxruntime's tools write unchecked: a full disk shows up later
            disk = full_disk_error(output, folder)
            if disk is None:
                raise
            raise disk from None
        kept = [name for name in methods
                if results[name]["top1_agreement"] >= 1.0 - max_agreement_drop]
        if not kept:
            best = max(results.values(), key=lambda result: result["top1_agreement"])
            raise UsageError(f"--quantize=int8: the int8 model agrees with the float one on "
                             f"{best['top1_agreement']:.1%} of {best['holdout_clips']} holdout "
                             f"clips, below --max_agreement_drop={max_agreement_drop:g}; nothing "
                             "was written (raise the limit, or keep the fp32 export)")
        chosen = results[max(kept, key=lambda name: results[name]["clips_per_s"])]
        model = onnx.load(os.path.join(folder, f"{chosen['method']}.onnx"))
        model.metadata_props.add(key=QUANTIZATION_KEY, value=json.dumps(
            dict(chosen, candidates=results)))
        with atomic_path(output) as temp_path:
            onnx.save(model, temp_path)
    return chosen
