"""Every checkpoint this project reads, official PANNs weights and its own training checkpoints
alike, is read by load_checkpoint_file, under one safety policy:

- weights-only first (torch's restricted unpickler), with the NumPy types that the official
  checkpoints' sampler state and this project's random states contain allowed by name;
- a full unpickle, which runs whatever code the file names, only when the user says the file is
  trusted (--trust_checkpoint); otherwise a one-line error says so. Never a silent fallback.

A training checkpoint carries its RunConfig ('config'), so evaluation and inference need no
other file. Checkpoints written before RunConfig existed are read through legacy_run_config.

This module works on files and state dicts only: it imports torch and utils, never the models
(pytorch/restore.py rebuilds a trained model from a checkpoint; the models import this module).
"""
import errno
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from utils.config import RunConfig, resolve_loss_type
from utils.runs import BEST_CHECKPOINT, checkpoint_path
from utils.utilities import UsageError, atomic_path, full_disk_error, require_file


def _numpy_safe_globals():
    """NumPy's array/dtype/scalar constructors under the names pickles use (NumPy 1 and 2)."""
    safe = [np.ndarray, np.dtype]
    safe += [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]  # numpy.dtypes.*DType
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        safe += [(module._reconstruct, f"{module_name}._reconstruct"),
                 (module.scalar, f"{module_name}.scalar")]
    return safe


NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


def _first_line(error):
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch's terminal colours
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint_file(path, flag="--checkpoint_path", trusted=False, own=False):
    """The object saved in `path`, on the CPU. Weights-only unless `trusted`; see the module doc.
    `own`: a checkpoint this project wrote for the run (resume), never loaded otherwise."""
    require_file(path, flag)
    return _torch_load(path, path, flag, trusted, own)


def _torch_load(source, path, flag, trusted, own=False):
    """torch.load of a file name or a file object (read from `path`) under the policy."""
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(source, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:  # the restricted unpickler refused something
        if own:  # --trust_checkpoint is for the files the user names, not the run's own
            raise UsageError(
                f"{flag}={path}: holds Python objects that this project's checkpoints never "
                f"hold ({_first_line(error)[:120]}); the file was replaced or altered: resume "
                "from another iteration or start the run again") from None
        if not trusted:
            raise UsageError(
                f"{flag}={path}: holds Python objects that a weights-only load refuses "
                f"({_first_line(error)[:200]}); loading it would run code named in the file, so "
                "add --trust_checkpoint only if you trust where it came from") from None
        raise UsageError(f"{flag}={path}: not a readable checkpoint ({_first_line(error)})") from None
    except Exception as error:
        raise UsageError(f"{flag}={path}: not a readable PyTorch checkpoint "
                         f"({_first_line(error)}); is it complete?") from None


def save_checkpoint_file(checkpoint, path):
    """torch.save, atomically: a killed save never leaves a file that looks finished. A failed
    write is an OSError naming `path` (torch reports a full disk as a RuntimeError)."""
    with atomic_path(path) as temp_path:
        try:
            # Through a file object: torch names the archive's root after a file name (here
            # the random temporary one), after a file object 'archive', so the same checkpoint
            # gives the same bytes (and SHA-256) every time.
            with open(temp_path, "wb") as f:
                torch.save(checkpoint, f)
        except RuntimeError as error:
            raise (full_disk_error(path)  # its temporary lies beside it
                   or OSError(errno.EIO, f"write failed: {_first_line(error)[:200]}", path)) \
                from None


def checkpoint_state_dict(checkpoint, path):
    """The state dict inside an official checkpoint ({'model': ...}) or a bare state dict."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not (isinstance(checkpoint, Mapping)
            and all(isinstance(value, torch.Tensor) for value in checkpoint.values())):
        raise UsageError(f"{path} holds neither {{'model': state_dict}} nor a "
                         f"state dict of tensors")
    return checkpoint


def _first(items, limit=5):
    items = list(items)
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_state_dict_checked(module, state_dict, source):
    """load_state_dict(strict=True), with a one-line UsageError naming `source` on any mismatch."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model "
                  f"{tuple(expected[key].shape)}"
                  for key in expected
                  if key in state_dict and state_dict[key].shape != expected[key].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_first(mismatched)}")
    # Floating tensors of another precision (an fp16 copy of a checkpoint) are cast on loading;
    # an integer tensor where weights belong is not a checkpoint of this model.
    retyped = [f"{key}: {state_dict[key].dtype} vs {expected[key].dtype}" for key in expected
               if key in state_dict and state_dict[key].dtype != expected[key].dtype
               and not (state_dict[key].is_floating_point() and expected[key].is_floating_point())]
    if retyped:
        problems.append(f"dtype mismatches: {_first(retyped)}")
    if problems:
        raise UsageError(f"{source} does not fit {type(module).__name__} "
                         f"(wrong model type or audio settings?): " + "; ".join(problems))
    non_finite = [key for key, value in state_dict.items()
                  if value.is_floating_point() and not torch.isfinite(value).all()]
    if non_finite:
        raise UsageError(f"{source}: {len(non_finite)} tensor(s) hold NaN or inf "
                         f"({_first(non_finite)}); the file is damaged or its training diverged: "
                         "use an earlier checkpoint")

    # The checkpoint's mel filters replace the ones built from fmin/fmax/sample_rate, as in the
    # published code; the pretrained convolutions were trained on those filters.
    melW = "logmel_extractor.melW"
    if melW in expected and not torch.allclose(state_dict[melW].to(expected[melW]), expected[melW],
                                               rtol=1e-3, atol=1e-5):
        logging.warning("%s: its mel filterbank differs from the one for the configured "
                        "sample_rate/fmin/fmax; the checkpoint's filterbank is used", source)
    module.load_state_dict(state_dict, strict=True)


@dataclass(frozen=True)
class PretrainedFile:
    """A pretrained checkpoint as read: its state dict and the SHA-256 of its bytes."""
    state_dict: dict
    sha256: str


_PRETRAINED = {}  # (path, size, mtime, trusted) -> PretrainedFile: the last file read


def card_path(path):
    """The card written beside an exported backbone (pytorch/backbone_export.py): NAME.json."""
    return os.path.splitext(path)[0] + ".json"


def describe_pretrained(path):
    """What a run was fine-tuned from, for people: the file, and its card's summary if any."""
    if not path:
        return "nothing (random initialisation: trained from scratch)"
    try:
        with open(card_path(path), encoding="utf-8") as f:
            card = json.load(f)
        metrics = card["source_metrics"]
        return (f"{path} ({card['architecture']}, pretrained on {len(card['source_labels'])} "
                f"source labels, {card['source_task']}: {metrics['selection']} mAP "
                f"{metrics['mAP']:.3f}; SHA-256 {card['sha256'][:12]}...)")
    except (OSError, ValueError, KeyError, TypeError):
        return path


def check_card(path, sha256, flag):
    """A backbone with a card beside it must be the file the card describes: a truncated or
    damaged copy (or another file under its name) is refused before it is unpickled."""
    card = card_path(path)
    if not os.path.isfile(card):
        return
    try:
        with open(card, encoding="utf-8") as f:
            card_data = json.load(f)
    except (OSError, ValueError) as error:
        raise UsageError(f"{flag}={path}: its card {card} is unreadable ({_first_line(error)}); "
                         "restore the card or remove it") from None
    expected = card_data.get("sha256") if isinstance(card_data, dict) else None
    if expected is not None and expected != sha256:
        raise UsageError(f"{flag}={path}: its SHA-256 is {sha256[:16]}..., but its card {card} "
                         f"says {str(expected)[:16]}...: the file is damaged, truncated or "
                         "replaced; copy it again (or remake it with scripts/pretrain_backbone.sh)")


def read_pretrained(path, trusted=False, flag="--pretrained_checkpoint_path"):
    """The pretrained checkpoint at `path`, read from disk and hashed once per process while the
    file stays the same: identifying it, loading it and keying the probe's cache share one read
    (--holdout_fold=all asks for it once per fold)."""
    require_file(path, flag)
    stat = os.stat(path)
    stamp = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, bool(trusted))
    if stamp not in _PRETRAINED:
        with open(path, "rb") as f:
            data = f.read()
        sha256 = hashlib.sha256(data).hexdigest()
        check_card(path, sha256, flag)
        checkpoint = _torch_load(io.BytesIO(data), path, flag, trusted)
        _PRETRAINED.clear()  # one at a time: a Cnn14 state dict is 330 MB
        _PRETRAINED[stamp] = PretrainedFile(checkpoint_state_dict(checkpoint, path), sha256)
    return _PRETRAINED[stamp]


SOURCE_HEAD = ("fc_audioset.weight", "fc_audioset.bias")  # a tagger's output layer


def load_pretrained(tagger, path, trusted=False, flag="--pretrained_checkpoint_path",
                    keep_own_head=False):
    """Official PANNs weights (or a bare state dict) into an AudioSet tagger, strictly.

    `keep_own_head` (the base of a transfer model, which never reads the output layer): a file
    whose output layer has another width (a backbone pretrained on another label set) loads
    every other tensor strictly and leaves the tagger's own output layer as it is."""
    state_dict = read_pretrained(path, trusted, flag).state_dict
    if keep_own_head and is_source_head(state_dict, tagger.state_dict()):
        own = tagger.state_dict()
        state_dict = {**state_dict, **{key: own[key] for key in SOURCE_HEAD}}
    load_state_dict_checked(tagger, state_dict, path)


def source_head_rows(state_dict):
    """The rows of a file's output layer when it is a whole one (weight and bias agreeing), else
    None: a backbone pretrained on another label set has one row per source label."""
    weight, bias = (state_dict.get(key) for key in SOURCE_HEAD)
    if weight is None or bias is None or weight.dim() != 2 or bias.shape != weight.shape[:1]:
        return None
    return int(weight.shape[0])


def is_source_head(state_dict, own):
    """The file's output layer is a whole one of another width over the tagger's embedding
    (anything else is a mismatch to report, not a head to skip)."""
    own_weight = own.get(SOURCE_HEAD[0])
    return (source_head_rows(state_dict) is not None and own_weight is not None
            and state_dict[SOURCE_HEAD[0]].shape[1] == own_weight.shape[1]
            and state_dict[SOURCE_HEAD[0]].shape != own_weight.shape)


LEGACY_KEYS = ("model", "labels", "task", "audio_settings", "model_type")


def legacy_run_config(checkpoint, path):
    """The RunConfig of a checkpoint written before 'config' existed (its flags in 'args')."""
    args = dict(checkpoint.get("args") or {})
    task = checkpoint["task"]
    args.update(model_type=checkpoint["model_type"], task=task, labels=list(checkpoint["labels"]),
                audio=dict(checkpoint["audio_settings"]),
                loss_type=resolve_loss_type(args.get("loss_type"), task),
                spec_augment=not args.pop("no_spec_augment", False))
    args.setdefault("features", "")
    args.setdefault("holdout_fold", None)
    logging.info("%s: written before run configs; its settings are read from its 'args'", path)
    return RunConfig.from_dict(args, path)


def is_training_checkpoint(checkpoint):
    """This project's training checkpoints carry a 'config' (older ones, their labels)."""
    return isinstance(checkpoint, Mapping) and ("config" in checkpoint or "labels" in checkpoint)


def training_run_config(checkpoint, path, flag="--checkpoint_path"):
    """The RunConfig of a loaded training checkpoint."""
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise UsageError(f"{flag}={path}: not a checkpoint of this pipeline's training "
                         "(no 'model')")
    try:
        if "config" in checkpoint:
            return RunConfig.from_dict(checkpoint["config"], path)
        missing = [key for key in LEGACY_KEYS if key not in checkpoint]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return legacy_run_config(checkpoint, path)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{flag}={path}: not a checkpoint of this pipeline's training "
                         f"({error})") from None


def stored_thresholds(checkpoint, config, path):
    """The per-label thresholds tuned at the end of a multi-label run, or None; checked: one
    number per label, each strictly between 0 and 1 (anything else predicts nothing or all)."""
    values = checkpoint.get("thresholds") if isinstance(checkpoint, Mapping) else None
    if values is None:
        return None
    try:
        thresholds = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        thresholds = None
    if (thresholds is None or thresholds.shape != (len(config.labels),)
            or not ((thresholds > 0) & (thresholds < 1)).all()):
        raise UsageError(f"{path}: its stored thresholds ({str(values)[:80]}) are not one number "
                         f"in (0, 1) for each of its {len(config.labels)} labels; the file is "
                         "damaged: use another checkpoint")
    return thresholds


def read_training_checkpoint(path, flag="--checkpoint_path", trusted=False):
    """(checkpoint dict, RunConfig) of a checkpoint written by this project's training."""
    checkpoint = load_checkpoint_file(path, flag, trusted)
    return checkpoint, training_run_config(checkpoint, path, flag)


class Checkpointer:
    """What a run saves, and when: N_iterations.pth every save_every iterations and at the stop
    (not at the iteration it resumed from), best.pth for --keep_best. A failed save (disk full,
    folder gone) is said in one line and training goes on: the next save retries, so the run
    is lost only if the final save fails too."""

    def __init__(self, checkpoints_dir, run, resume_iteration):
        self.checkpoints_dir, self.run, self.resume_iteration = checkpoints_dir, run, resume_iteration
        self.last = None    # the last checkpoint saved
        self.failed = None  # why the latest save failed, until one succeeds

    def due(self, iteration, at_end):
        return iteration > self.resume_iteration and (
            iteration % self.run.save_every == 0 or at_end)

    def save(self, checkpoint, best=False):
        path = (os.path.join(self.checkpoints_dir, BEST_CHECKPOINT) if best
                else checkpoint_path(self.checkpoints_dir, checkpoint["iteration"]))
        try:
            save_checkpoint_file(checkpoint, path)
        except OSError as error:
            reason = error.strerror or str(error)
            self.failed = f"{path}: {reason}"
            logging.error("could not save %s (%s); training goes on, the next save retries "
                          "(last good checkpoint: %s)", path, reason, self.last or "none yet")
            return
        if not best:
            self.last, self.failed = path, None
        logging.info("saved %s", path)

    def check_final(self):
        if self.failed:
            raise UsageError(f"the final checkpoint could not be saved ({self.failed}); the last "
                             f"good one is {self.last or 'none'}: free space and resume from it")
