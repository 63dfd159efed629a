"""An exported .onnx file's metadata, read and checked before the file is run.

Nothing in the metadata is taken on trust: every field is checked for its type and range,
against the other fields and against the graph itself (its output width, and, on a short probe
input, whether its probabilities are a softmax, as a single-label model's are, or per-class
sigmoids). A file that fails is refused in one line naming the field.
"""
import json
import math

import numpy as np

from pytorch.checkpoints import stored_thresholds
from pytorch.models import MODELS
from utils.config import ARRAY_SAMPLE_RATES, MULTI_LABEL, SINGLE_LABEL, TASKS, RunConfig
from utils.utilities import UsageError

# What an exported file's metadata carries (JSON values), so it runs as its checkpoint does.
CONFIG_KEY = "run_config"        # RunConfig.to_dict()
THRESHOLDS_KEY = "thresholds"    # the tuned per-label thresholds, or null
MIN_SAMPLES_KEY = "min_samples"  # the shortest input the network takes
SOURCE_KEY = "source_sha256"     # the SHA-256 of the checkpoint it was exported from
SPEED_KEY = "speed_over_pytorch"  # onnxruntime's clips/s over PyTorch's, measured at export
MAX_CLIP_SECONDS = 3600          # as packing allows


def is_integer(value, low, high):
    return (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high)


def field_error(path, flag, field, value, what):
    return UsageError(f"{flag}={path}: its metadata field {field} ({str(value)[:60]}) {what}; "
                         "the file is damaged or was not written by `main.py export`: export it "
                         "again")


def json_field(props, key, path, flag, default=None):
    if key not in props:
        if default is not None:
            return json.loads(default)
        raise field_error(path, flag, key, "missing", "is missing")
    try:
        return json.loads(props[key])
    except (TypeError, ValueError):
        raise field_error(path, flag, key, props[key], "is not JSON") from None


def read_run_config(props, path, flag):
    data = json_field(props, CONFIG_KEY, path, flag)
    if not isinstance(data, dict) or not isinstance(data.get("audio", {}), dict):
        raise field_error(path, flag, CONFIG_KEY, data, "is not a JSON object of a RunConfig")
    try:
        run = RunConfig.from_dict(data, path)
    except (TypeError, ValueError) as error:
        raise field_error(path, flag, CONFIG_KEY, data, f"is not a RunConfig ({error})") from None
    audio = run.audio
    checks = [
        ("run_config.model_type", run.model_type, run.model_type in MODELS, "names no model"),
        ("run_config.task", run.task, run.task in TASKS, f"is not one of {', '.join(TASKS)}"),
        ("run_config.labels", run.labels, isinstance(run.labels, list) and run.labels
         and all(isinstance(label, str) and label for label in run.labels),
         "is not a list of label names"),
        ("run_config.audio.sample_rate", audio.sample_rate, is_integer(audio.sample_rate,
                                                                       *ARRAY_SAMPLE_RATES),
         f"is not a sample rate from {ARRAY_SAMPLE_RATES[0]} to {ARRAY_SAMPLE_RATES[1]} Hz"),
    ]
    for field, value, good, what in checks:
        if not good:
            raise field_error(path, flag, field, value, what)
    if not is_integer(audio.clip_samples, 1, MAX_CLIP_SECONDS * audio.sample_rate):
        raise field_error(path, flag, "run_config.audio.clip_samples", audio.clip_samples,
                          f"is not a clip length of up to {MAX_CLIP_SECONDS} s")
    return run


def check_against_plain_keys(props, run, path, flag):
    """The plain keys written for other tools must say what the run config says."""
    for key, expected in (("sample_rate", run.audio.sample_rate), ("task", run.task),
                          ("labels", run.labels), ("model_type", run.model_type),
                          ("clip_samples", run.audio.clip_samples)):
        if key in props and json_field(props, key, path, flag) != expected:
            raise field_error(path, flag, key, props[key], f"contradicts run_config's {expected!r}"[:120])


def read_min_samples(props, run, path, flag):
    value = json_field(props, MIN_SAMPLES_KEY, path, flag, default="1")
    if not is_integer(value, 1, run.audio.clip_samples):
        raise field_error(path, flag, MIN_SAMPLES_KEY, value,
                          f"is not a number of samples from 1 to the clip's {run.audio.clip_samples}")
    return value


def read_thresholds(props, run, path, flag):
    values = json_field(props, THRESHOLDS_KEY, path, flag, default="null")
    if values is None:
        return None
    if run.task != MULTI_LABEL:
        raise field_error(path, flag, THRESHOLDS_KEY, values, "belongs to multi-label models only")
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values):
        raise field_error(path, flag, THRESHOLDS_KEY, values, "is not a list of numbers")
    try:
        return stored_thresholds({"thresholds": values}, run, path)
    except UsageError:
        raise field_error(path, flag, THRESHOLDS_KEY, values,
                          f"is not one number in (0, 1) for each of the {len(run.labels)} labels"
                          ) from None


def check_against_graph(session, run, min_samples, path, flag):
    """The labels fit the graph's output width; the probabilities are what the task says."""
    width = session.get_outputs()[0].shape[-1]
    if isinstance(width, int) and width != len(run.labels):
        raise field_error(path, flag, "run_config.labels", f"{len(run.labels)} labels",
                          f"do not fit the graph's {width} outputs")
    probe = np.random.default_rng(0).uniform(-0.1, 0.1, (2, max(min_samples, run.audio.window_size)))
    try:
        probabilities = session.run(None, {"waveform": probe.astype(np.float32)})[0]
    except Exception as error:  # onnxruntime raises its own exception classes
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise field_error(path, flag, MIN_SAMPLES_KEY, min_samples,
                          f"is too short for the graph ({reason[:100]})") from None
    if probabilities.shape[-1] != len(run.labels):
        raise field_error(path, flag, "run_config.labels", f"{len(run.labels)} labels",
                          f"do not fit the graph's {probabilities.shape[-1]} outputs")
    softmax = np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4)
    if (run.task == SINGLE_LABEL) != softmax and len(run.labels) > 1:
        computes = "a softmax (single-label)" if softmax else "per-label sigmoids (multi-label)"
        raise field_error(path, flag, "run_config.task", run.task, f"is not what the graph "
                          f"computes: {computes}")


def read_onnx_metadata(session, path, flag):
    """(RunConfig, thresholds or None, min_samples) of an exported file, every field checked."""
    props = session.get_modelmeta().custom_metadata_map
    if CONFIG_KEY not in props:
        raise UsageError(f"{flag}={path}: an ONNX model without this pipeline's metadata "
                         "(labels, sample rate); export it with `main.py export`")
    run = read_run_config(props, path, flag)
    check_against_plain_keys(props, run, path, flag)
    min_samples = read_min_samples(props, run, path, flag)
    check_against_graph(session, run, min_samples, path, flag)
    return run, read_thresholds(props, run, path, flag), min_samples
