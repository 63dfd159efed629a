"""A saved model as inference sees it: waveforms in, probabilities and embeddings out, with the
RunConfig and tuned thresholds it carries. A checkpoint runs in PyTorch, an exported .onnx file
in onnxruntime (written by pytorch/onnx_export.py); inference, timelines, embeddings and the Python API
(pytorch/classifier.py) all run through `load_predictor`, so each gives the same outputs from
either file.
"""
import logging
import os

import numpy as np
import torch

from pytorch.checkpoints import stored_thresholds
from pytorch.models import MODELS, TransferModel, tagger_of
from pytorch.onnx_metadata import SOURCE_KEY, SPEED_KEY, read_onnx_metadata
from pytorch.pytorch_utils import (autocast, native_bf16, probabilities_from_output,
                                   resolve_precision, usable_cores)
from pytorch.restore import load_trained_model
from utils.utilities import UsageError, file_sha256, require_file

ONNX_SUFFIX = ".onnx"
# --runtime=auto, by the figures of docs/benchmarks.md:
# - a GPU: PyTorch in bf16, channels-last;
# - a CPU that computes bf16 natively (AVX-512 BF16, AMX): PyTorch in bf16, channels-last
#   (evaluation 4.25x fp32 PyTorch there, where onnxruntime's fp32 gains 1.2-2.3x);
# - any other CPU: the .onnx exported from the same checkpoint when it lies beside it and the
#   export measured it faster than PyTorch (onnxruntime tagged 10-s files with Cnn14 1.36x
#   faster than PyTorch channels-last on the 2-core AVX2 CPU, Transfer_Cnn6 windows 2.3x, but
#   ran MobileNetV2 at 0.66-0.88x in batches of 16), else PyTorch in fp32, channels-last
#   (bf16 is emulated there, and slower).
RUNTIMES = ("auto", "torch", "onnx")


class Predictor:
    """What every runtime shares. `run` is the RunConfig (labels, task, audio settings),
    `thresholds` the per-label thresholds tuned on validation (multi-label) or None, `source`
    the file it came from."""
    run = None
    source = None
    thresholds = None
    audioset_tagger = False  # an official tagger may read a whole file in one pass
    min_samples = 1          # the shortest input the network's pooling takes

    def __call__(self, waveforms):
        """(batch, samples) float audio -> {'probabilities' (batch, classes), 'embedding'
        (batch, width)} as float NumPy arrays, and 'framewise' where the model has it.
        Packing stored clips as int16, saturating beyond full scale: clipped the same way."""
        return self.forward(np.clip(np.asarray(waveforms, dtype=np.float32), -1.0, 1.0))

    def forward(self, waveforms):
        raise NotImplementedError


class TorchPredictor(Predictor):
    """A model in PyTorch; `precision` (fp32, bf16, fp16) for its CNN, channels-last with the
    half precisions (oneDNN's and cuDNN's fast bf16 convolutions want it) and on the CPU in
    fp32 too (oneDNN: Cnn14 1.2x, MobileNetV2 1.5-2x the contiguous layout's clips/s on a
    2-core AVX2 CPU; docs/benchmarks.md)."""

    def __init__(self, model, run, thresholds=None, source=None, precision="fp32"):
        self.model, self.run, self.thresholds = model.eval(), run, thresholds
        self.source, self.precision = source, precision
        if precision != "fp32" or self.device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)
        self.audioset_tagger = not isinstance(model, TransferModel)
        self.min_samples = tagger_of(model).min_samples()

    @property
    def device(self):
        """Where the model is now: inputs follow a model moved after loading (model.to)."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def forward(self, waveforms):
        with autocast(self.device, self.precision):
            output = self.model(torch.from_numpy(waveforms).to(self.device))
        result = {"probabilities": probabilities_from_output(
                      output["clipwise_output"].float(), self.run.task).cpu().numpy(),
                  "embedding": output["embedding"].float().cpu().numpy()}
        if "framewise_output" in output:
            result["framewise"] = output["framewise_output"].float().cpu().numpy()
        return result


class OnnxPredictor(Predictor):
    """An exported model run by onnxruntime on the CPU, with the RunConfig of its metadata."""

    def __init__(self, path, flag="--checkpoint_path"):
        import onnxruntime  # imported only when an .onnx file is run

        require_file(path, flag)
        self.source = path
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = usable_cores()
        try:
            self.session = onnxruntime.InferenceSession(path, options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception classes
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UsageError(f"{flag}={path}: not an ONNX model onnxruntime can run "
                             f"({reason[:200]})") from None
        self.run, self.thresholds, self.min_samples = read_onnx_metadata(self.session, path, flag)
        self.audioset_tagger = not issubclass(MODELS[self.run.model_type], TransferModel)

    def forward(self, waveforms):
        probabilities, embedding = self.session.run(None, {"waveform": waveforms})
        return {"probabilities": probabilities, "embedding": embedding}


def is_onnx_path(path):
    return str(path).lower().endswith(ONNX_SUFFIX)


def exported_beside(path):
    """(the .onnx file beside a checkpoint (same name) that was exported from these very bytes
    (its metadata's SHA-256), onnxruntime's speed over PyTorch measured when it was exported:
    None in files exported before that was measured), or (None, None)."""
    candidate = os.path.splitext(path)[0] + ONNX_SUFFIX
    if is_onnx_path(path) or not os.path.isfile(candidate):
        return None, None
    import onnxruntime

    try:
        props = onnxruntime.InferenceSession(candidate, providers=["CPUExecutionProvider"]) \
            .get_modelmeta().custom_metadata_map
    except Exception:  # onnxruntime's own classes: an unreadable file is simply not used
        return None, None
    if props.get(SOURCE_KEY, "").strip('"') != file_sha256(path):
        return None, None
    try:
        speed = float(props[SPEED_KEY])
    except (KeyError, ValueError):
        speed = None
    return candidate, speed


def runtime_precision(device, precision=None):
    """The PyTorch runtime's precision: as given, else the device's default (resolve_precision:
    bf16 on a GPU), and bf16 on a CPU that computes it (AVX-512 BF16 or AMX) too."""
    on_native_bf16_cpu = device.type == "cpu" and native_bf16()
    return resolve_precision(precision or ("bf16" if on_native_bf16_cpu else None), device)


def choose_runtime(path, device, runtime="auto", flag="--checkpoint_path", precision=None):
    """(the file to run, the PyTorch precision): `path`, or the .onnx exported from it
    (--runtime=onnx; auto on a CPU without native bf16 when there is one; RUNTIMES' comment).
    runtime None: the file as given, in fp32."""
    if precision not in (None, "fp32") and (runtime == "onnx" or is_onnx_path(path)):
        raise UsageError(f"--precision={precision}: sets PyTorch's precision, and {flag}={path} "
                         "runs in onnxruntime (fp32, or int8 when exported so); drop "
                         "--precision or use --runtime=torch with the checkpoint")
    if runtime is None:
        return path, precision or "fp32"
    if runtime == "torch" and is_onnx_path(path):
        raise UsageError(f"--runtime=torch: {flag}={path} is an ONNX file, run by onnxruntime; "
                         "give the checkpoint it was exported from")
    if is_onnx_path(path):
        return path, "fp32"
    precision = runtime_precision(device, precision)
    if runtime == "torch" or (runtime == "auto" and (device.type != "cpu" or precision != "fp32")):
        return path, precision
    exported, speed = exported_beside(path)
    if exported and runtime == "auto" and speed is not None and speed < 1:
        logging.info("running %s in PyTorch: onnxruntime ran its export %s at %.2fx its speed "
                     "when it was exported (--runtime=onnx runs the export)", path, exported,
                     speed)
        return path, precision
    if exported:
        logging.info("running %s, exported from %s (onnxruntime: faster on this CPU; "
                     "--runtime=torch runs the checkpoint)", exported, path)
        return exported, "fp32"
    if runtime == "onnx":
        raise UsageError(f"--runtime=onnx: no .onnx exported from {flag}={path} beside it; "
                         f"export it first: main.py export --checkpoint_path={path} "
                         f"--output={os.path.splitext(path)[0] + ONNX_SUFFIX}")
    return path, precision


def load_predictor(path, device=torch.device("cpu"), trusted=False, model_type=None,
                   flag="--checkpoint_path", runtime=None, precision=None):
    """The Predictor of a training checkpoint, an official PANNs checkpoint (its 527 AudioSet
    labels) or an exported .onnx file (run by onnxruntime on the CPU); `runtime` (RUNTIMES)
    may run a checkpoint's exported .onnx instead, and `precision` the PyTorch one
    (choose_runtime)."""
    path, precision = choose_runtime(path, device, runtime, flag, precision)
    if is_onnx_path(path):
        return OnnxPredictor(path, flag)
    model, checkpoint, run = load_trained_model(path, device, flag=flag, trusted=trusted,
                                                audioset_tagger=True, model_type=model_type)
    if precision != "fp32":
        logging.info("running %s in PyTorch, %s and channels-last (--precision=fp32 for "
                     "full precision)", path, precision)
    return TorchPredictor(model, run, stored_thresholds(checkpoint, run, path), path, precision)
