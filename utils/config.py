"""Defaults shared by packing, training and inference, and the typed configs that carry them.

A packed HDF5 records its own sample rate, clip length, labels and task; training reads those
from the file into a RunConfig, which every later step reads back.
"""
import dataclasses
import logging
import os

from utils.utilities import UsageError

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METADATA_DIR = os.path.join(REPO_DIR, "metadata")

SAMPLE_RATE = 32000
GTZAN_CLIP_DURATION = 30.0   # seconds
AUDIOSET_CLIP_DURATION = 10.0
FOLDS_NUM = 10

# The PANNs Cnn14 front end: the published checkpoints were trained with exactly these.
WINDOW_SIZE = 1024
HOP_SIZE = 320
MEL_BINS = 64
FMIN = 50
FMAX = 14000

AUDIOSET_CLASSES_NUM = 527
ARRAY_SAMPLE_RATES = (1000, 768000)  # what an array or a model file may say its rate is
AUDIOSET_LABELS_CSV = os.path.join(METADATA_DIR, "audioset_class_labels_indices.csv")
AUDIOSET_ONTOLOGY_JSON = os.path.join(METADATA_DIR, "audioset_ontology.json")

SINGLE_LABEL = "single_label"
MULTI_LABEL = "multi_label"
TASKS = (SINGLE_LABEL, MULTI_LABEL)

AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus")


def read_label_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


GTZAN_LABELS = read_label_list(os.path.join(METADATA_DIR, "gtzan_labels.txt"))


# The clip losses (pytorch/losses.py) each task trains with.
DEFAULT_LOSS = {SINGLE_LABEL: "clip_nll", MULTI_LABEL: "clip_bce"}


def resolve_loss_type(loss_type, task):
    """The loss the task needs: clip_nll for single-label, clip_bce for multi-label."""
    if loss_type is None:
        return DEFAULT_LOSS[task]
    if loss_type not in DEFAULT_LOSS.values():
        raise UsageError(f"--loss_type={loss_type}: choose one of {', '.join(DEFAULT_LOSS.values())}")
    if loss_type != DEFAULT_LOSS[task]:
        raise UsageError(f"--loss_type={loss_type} does not fit a {task} dataset; "
                         f"use --loss_type={DEFAULT_LOSS[task]}")
    return loss_type


def primary_metric(task):
    """The score that ranks checkpoints and folds: accuracy (single-label) or mAP (multi-label)."""
    return "mAP" if task == MULTI_LABEL else "accuracy"


# --select_by: the validation metrics a task has (multi-label accuracy is exact match)
SELECTION_METRICS = {SINGLE_LABEL: ("accuracy", "macro_f1"),
                     MULTI_LABEL: ("mAP", "macro_f1", "accuracy")}


# ---------------------------------------------------------------------------------------------
# Typed configuration. It travels with the data: the HDF5's attributes and the flags build a
# RunConfig; training stores it in every checkpoint and in run.json beside statistics.pickle;
# evaluation, inference, zero-shot, the plots and the CV summary read it back from there.
# ---------------------------------------------------------------------------------------------

def _from_dict(cls, data, source):
    """cls(**data) for a stored config: missing fields take their defaults, unknown ones are
    dropped, and both are logged, so a config written by another version still loads."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(key for key in data if key not in fields)
    missing = [name for name, field in fields.items() if name not in data]
    required = [name for name in missing if fields[name].default is dataclasses.MISSING
                and fields[name].default_factory is dataclasses.MISSING]
    if required:
        raise ValueError(f"{source}: its {cls.__name__} lacks {', '.join(required)}")
    if missing:
        logging.info("%s: %s written without %s; using the defaults", source, cls.__name__,
                     ", ".join(f"{name}={getattr(fields[name], 'default', None)!r}" for name in missing))
    if unknown:
        logging.info("%s: %s fields no longer used are ignored: %s", source, cls.__name__,
                     ", ".join(unknown))
    return cls(**{key: value for key, value in data.items() if key in fields})


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """The audio a model takes: sample rate and clip length (from the HDF5) and its front end."""
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = int(SAMPLE_RATE * GTZAN_CLIP_DURATION)
    window_size: int = WINDOW_SIZE
    hop_size: int = HOP_SIZE
    mel_bins: int = MEL_BINS
    fmin: int = FMIN
    fmax: int = FMAX

    def front_end(self):
        """The model constructors' audio arguments (everything but the clip length)."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if key != "clip_samples"}

    @classmethod
    def from_dict(cls, data, source="config"):
        return _from_dict(cls, dict(data), source)


def _resumable(default):
    """A field that may change when a run resumes: it decides how long or how the run goes,
    never what one step computes."""
    return dataclasses.field(default=default, metadata={"resumable": True})


@dataclasses.dataclass
class RunConfig:
    """One training run: the data it reads, the model, and every flag that shapes the result."""
    model_type: str
    task: str
    labels: list
    audio: AudioConfig
    # where it lies now: the packed file, or the list of its shards
    features: object = dataclasses.field(metadata={"resumable": True})
    holdout_fold: object  # 1..10, or 'filtered' for the artist-filtered split
    loss_type: str
    split: str = "folds"
    clips: int = 0  # clips in the HDF5
    # What identifies the data (utils/data_generator.data_digest: names, folds, targets): a
    # repacked file at the same path is other data; the same file copied elsewhere is not.
    data_digest: str = dataclasses.field(default="", metadata={"unknown_when_empty": True})
    pretrained_checkpoint_path: str = None
    freeze_base: bool = False
    augmentation: str = "mixup"
    learning_rate: float = 1e-4
    batch_size: int = 32
    spec_augment: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    sync_batchnorm: bool = False
    threshold: float = 0.5
    seed: int = 1234
    run_name: str = ""  # names a run apart from others of the same folder (e.g. an lr sweep)
    linear_probe: bool = False  # a linear head fitted on the frozen base's cached embeddings
    test_fold: int = None  # --split=folds: this fold is the test set (scored once, at the end)
    select_by: str = None  # the validation metric of --keep_best and early stopping
    sampler: str = "shuffle"  # or "balanced": every label drawn equally often
    # Fine-tuning options (pytorch/optimization.py); the defaults are the published recipe.
    optimizer: str = "adam"          # or "adamw": decoupled weight decay
    weight_decay: float = 0.0        # AdamW's, never on biases and norms
    lr_schedule: str = "constant"    # or "cosine", "linear": after warmup_iterations
    warmup_iterations: int = 0
    # where the decay reaches 0 (0: stop_iteration); a resume may restate it, not move it
    decay_iterations: int = _resumable(0)
    layer_decay: float = 1.0         # each backbone block below the head: this times the rate
    grad_clip_norm: float = 0.0      # 0: no clipping
    stop_iteration: int = _resumable(2000)
    eval_every: int = _resumable(200)
    save_every: int = _resumable(2000)
    keep_best: bool = _resumable(False)
    early_stop_patience: int = _resumable(0)
    compile: bool = _resumable(False)
    num_workers: int = _resumable(2)
    in_memory: object = _resumable("auto")
    cuda: bool = _resumable(False)

    @property
    def primary_metric(self):
        return primary_metric(self.task)

    @property
    def selection_metric(self):
        """What --keep_best and early stopping maximise: --select_by, else the primary metric."""
        return self.select_by or self.primary_metric

    @property
    def decay_end(self):
        """Where a decaying schedule reaches 0: --decay_iterations, else --stop_iteration."""
        return self.decay_iterations or self.stop_iteration

    @property
    def pretrained(self):
        return bool(self.pretrained_checkpoint_path)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data, source="config"):
        data = dict(data)
        data["audio"] = AudioConfig.from_dict(data.get("audio", {}), source)
        return _from_dict(cls, data, source)

    def differences(self, other, resumable=None):
        """{field: (self's value, other's value)} of the fields that differ; `resumable` True or
        False keeps only the fields that may (or may not) change on resume."""
        changed = {}
        for field in dataclasses.fields(self):
            if resumable is not None and field.metadata.get("resumable", False) != resumable:
                continue
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.metadata.get("unknown_when_empty") and not (mine and theirs):
                continue  # written before the field existed: nothing to compare
            if mine != theirs:
                changed[field.name] = (mine, theirs)
        return changed
