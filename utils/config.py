"""Defaults shared by packing, training and inference, and the typed configs that carry them.

A packed HDF5 records its own sample rate, clip length, labels and task; training reads those
from the file into a RunConfig, which every later step reads back.
"""
import argparse
import dataclasses
import logging
import os

from utils.flag_types import (auto_yes_no, float_range, int_range, non_negative_int,
                              positive_int, probability, str2bool)
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

LEARNING_RATE = 1e-4  # the published recipe's
PROBE_LEARNING_RATE = 1e-3  # a head alone, on standardised embeddings, takes a larger step
# The fine-tuning choices (pytorch/optimization.py applies them)
SCHEDULES = ("constant", "cosine", "linear")
OPTIMIZERS = ("adam", "adamw")

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


def option(default=dataclasses.MISSING, help="", group=None, resumable=False, flag=None,
           flag_default=dataclasses.MISSING, **settings):
    """A config field that is also a command-line option, declared once: its default, its help,
    argparse's `settings` (type, choices, action...), the --help group it is listed under, and
    whether a resumed run may change it (a resumable option decides how long or how a run goes,
    never what one step computes). `flag`: its name when it is not --FIELD; `flag_default`:
    the flag's default when the command decides the value later (None: from the data, the
    checkpoint or the device, as the help says). A bool option is an on-switch unless
    `settings` say otherwise."""
    metadata = {"resumable": resumable,
                "option": dict(settings, help=help, group=group, flag=flag,
                               flag_default=flag_default)}
    return dataclasses.field(default=default, metadata=metadata)


def options(cls):
    """{field name: dataclasses.Field} of a config class's command-line options."""
    return {field.name: field for field in dataclasses.fields(cls) if "option" in field.metadata}


def option_flag(field):
    """(flag name, argparse settings) of an option field."""
    settings = dict(field.metadata["option"])
    name = settings.pop("flag") or field.name
    settings.pop("group")
    default = settings.pop("flag_default")
    settings["default"] = field.default if default is dataclasses.MISSING else default
    if field.type is bool and "action" not in settings and "type" not in settings:
        settings["action"] = "store_true"
    if name != field.name:
        settings["dest"] = field.name
    return name, settings


FRONT_END = "front end"
SELECTION = "data and model selection"
FINE_TUNING = "fine-tuning options"
SPEED = "speed"


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """The audio a model takes: sample rate and clip length (from the HDF5) and its front end
    (flags default to what the pretrained checkpoint holds, else Cnn14's)."""
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = int(SAMPLE_RATE * GTZAN_CLIP_DURATION)
    window_size: int = option(WINDOW_SIZE, "STFT window (samples)", FRONT_END,
                              type=positive_int, flag_default=None)
    hop_size: int = option(HOP_SIZE, "STFT hop (samples)", FRONT_END, type=positive_int,
                           flag_default=None)
    mel_bins: int = option(MEL_BINS, "mel bands", FRONT_END, type=positive_int, flag_default=None)
    fmin: int = option(FMIN, "lowest mel frequency (Hz)", FRONT_END, type=non_negative_int,
                       flag_default=None)
    fmax: int = option(FMAX, "highest mel frequency (Hz)", FRONT_END, type=positive_int,
                       flag_default=None)

    def front_end(self):
        """The model constructors' audio arguments (everything but the clip length)."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if key != "clip_samples"}

    @classmethod
    def from_dict(cls, data, source="config"):
        return _from_dict(cls, dict(data), source)


@dataclasses.dataclass
class RunConfig:
    """One training run: the data it reads, the model, and every option that shapes the result.
    Each option is declared here once (option()); the train command's flags, the other commands'
    shared ones and the resume check are all built from these declarations."""
    model_type: str
    task: str
    labels: list
    audio: AudioConfig
    # where it lies now: the packed file, or the list of its shards
    features: object = dataclasses.field(metadata={"resumable": True})
    holdout_fold: object  # 1..10, or 'filtered' for the artist-filtered split
    loss_type: str = option(help="clip_nll (single-label) or clip_bce (multi-label); default by "
                                 "task", flag_default=None)
    split: str = "folds"
    clips: int = 0  # clips in the HDF5
    # What identifies the data (utils/data_generator.data_digest: names, folds, targets): a
    # repacked file at the same path is other data; the same file copied elsewhere is not.
    data_digest: str = dataclasses.field(default="", metadata={"unknown_when_empty": True})
    pretrained_checkpoint_path: str = None
    freeze_base: bool = option(False, "train only the new head (the base stays as loaded); "
                                      "also --freeze_base=True/False", nargs="?", const=True,
                               type=str2bool)
    augmentation: str = option("mixup", "mixup: mix pairs of clips and their targets",
                               choices=["none", "mixup"])
    mixup_alpha: float = option(1.0, "mixup's Beta(alpha, alpha): how far clips are mixed (1.0 "
                                     "as published; lower keeps each mix closer to one clip)",
                                FINE_TUNING, type=float_range(0.01, 100.0))
    # Above 1, Adam's step overflows float32 (and no fine-tuning wants it).
    learning_rate: float = option(LEARNING_RATE, f"default {LEARNING_RATE:g} ("
                                                 f"{PROBE_LEARNING_RATE:g} with --linear_probe)",
                                  type=float_range(1e-12, 1.0), flag_default=None)
    batch_size: int = option(32, "clips per batch (inference: windows per forward pass)",
                             type=positive_int)
    spec_augment: bool = option(True, "switch SpecAugment off", flag="no_spec_augment",
                                action="store_false")
    precision: str = option("fp32", "default bf16 with --cuda on a GPU (inference: also on CPUs "
                                    "with native bf16, AVX-512 BF16 or AMX), else fp32", SPEED,
                            choices=["fp32", "bf16", "fp16"], flag_default=None)
    channels_last: bool = option(False, "channels-last convolutions (default: on with --cuda on "
                                        "a GPU)", SPEED, action=argparse.BooleanOptionalAction,
                                 flag_default=None)
    sync_batchnorm: bool = option(False, "under torchrun on GPUs: BatchNorm statistics over the "
                                         "global batch (SyncBatchNorm) instead of each GPU's "
                                         "share", SPEED)
    threshold: float = option(0.5, "multi-label decision threshold (default 0.5, or the "
                                   "checkpoint's)", type=probability, flag_default=None)
    seed: int = option(1234, "seeds the weights, the batches, mixup and SpecAugment",
                       type=non_negative_int)
    run_name: str = option("", "a name that keeps this run apart from others with the same "
                               "folder flags (e.g. one per learning rate of a sweep)")
    linear_probe: bool = option(False, "fit only a linear head on the frozen backbone's "
                                       "embeddings, computed once and cached beside the HDF5 "
                                       "(pytorch/linear_probe.py)")
    test_fold: int = option(None, "with --split=folds: a test fold, scored once at the end "
                                  "(neither trains nor selects)", SELECTION,
                            type=int_range(1, FOLDS_NUM))
    select_by: str = option(None, "validation metric for --keep_best and early stopping "
                                  "(default: accuracy, or mAP for multi-label)", SELECTION,
                            choices=sorted({metric for metrics in SELECTION_METRICS.values()
                                            for metric in metrics}))
    sampler: str = option("shuffle", "balanced: each batch draws every label (and 'no label') "
                                     "equally often, for imbalanced multi-label data", SELECTION,
                          choices=["shuffle", "balanced"])
    # Fine-tuning options (pytorch/optimization.py); the defaults are the published recipe.
    head_init: str = option("random", "probe: start fine-tuning from a head fitted on the "
                                      "frozen backbone's embeddings of the training clips "
                                      "(LP-FT), not from random weights", FINE_TUNING,
                            choices=["random", "probe"])
    optimizer: str = option("adam", "adamw: decoupled weight decay, not on biases and norms",
                            FINE_TUNING, choices=OPTIMIZERS)
    weight_decay: float = option(0.0, "AdamW's weight decay (e.g. 0.01)", FINE_TUNING,
                                 type=float_range(0.0, 1.0))
    lr_schedule: str = option("constant", "after --warmup_iterations, decay the rate to 0 by "
                                          "cosine or linearly", FINE_TUNING, choices=SCHEDULES)
    warmup_iterations: int = option(0, "linear warm-up from 0 over this many iterations",
                                    FINE_TUNING, type=non_negative_int)
    decay_iterations: int = option(0, "the iteration where the decay reaches 0 (0: "
                                      "--stop_iteration; set it to extend a run later without "
                                      "changing its schedule; a resume may restate it, not "
                                      "move it)", FINE_TUNING, resumable=True,
                                   type=non_negative_int)
    layer_decay: float = option(1.0, "layer-wise decay: each backbone block below the head "
                                     "trains at this times the rate of the one above (e.g. "
                                     "0.75)", FINE_TUNING, type=float_range(0.01, 1.0))
    grad_clip_norm: float = option(0.0, "clip the gradients' global L2 norm (0: off)",
                                   FINE_TUNING, type=float_range(0.0, 1e6))
    stop_iteration: int = option(2000, "train this many iterations", resumable=True,
                                 type=positive_int)
    eval_every: int = option(200, "validate every this many iterations", resumable=True,
                             type=positive_int)
    save_every: int = option(2000, "save a checkpoint every this many iterations (and at the "
                                   "stop)", resumable=True, type=positive_int)
    keep_best: bool = option(False, "also keep best.pth, the checkpoint with the best "
                                    "validation score", SELECTION, resumable=True)
    early_stop_patience: int = option(0, "stop after this many evaluations without improvement "
                                         "(0: never)", SELECTION, resumable=True,
                                      type=non_negative_int)
    compile: bool = option(False, "torch.compile the model (default: on with --cuda on a GPU)",
                           SPEED, resumable=True, action=argparse.BooleanOptionalAction,
                           flag_default=None)
    num_workers: int = option(2, "worker processes that decode or read the data (0 or 1: "
                                 "none; training data held in memory needs none)",
                              resumable=True, type=non_negative_int)
    in_memory: object = option("auto", "yes: map the packed file(s) into memory (one copy per "
                                       "node, shared by its ranks); no: read each clip when its "
                                       "batch comes, with read-ahead; auto: map when under half "
                                       "the available RAM", SELECTION, resumable=True,
                               type=auto_yes_no, metavar="{auto,yes,no}")
    cuda: bool = option(False, "use the GPU when there is one", resumable=True)

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

    def summary(self):
        """One readable line: what trains on what, and the options set away from their
        declared defaults (the whole configuration is in run.json and every checkpoint)."""
        changed = [f"{name}={getattr(self, name)}" for name, field in options(RunConfig).items()
                   if field.default is not dataclasses.MISSING
                   and getattr(self, name) != field.default]
        features = self.features if isinstance(self.features, str) else f"{len(self.features)} shards"
        return (f"{self.model_type} on {features} ({self.task}, {len(self.labels)} labels, "
                f"{self.clips} clips), "
                f"{f'holdout fold {self.holdout_fold}' if self.split == 'folds' else f'{self.split} split'}"
                f"; options off their defaults: "
                f"{' '.join(changed) or 'none'}")

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
