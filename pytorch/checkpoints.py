"""Training checkpoints: where they live and how a trained model comes back from one.

A checkpoint carries the label names, the task and the audio settings, so evaluation and
inference need no other file.
"""
import os

import torch

from models import create_model
from utils.utilities import UsageError


def checkpoint_path(checkpoints_dir, iteration):
    return os.path.join(checkpoints_dir, f"{iteration}_iterations.pth")


def model_kwargs(audio_settings, labels, task):
    """create_model's keyword arguments from a checkpoint's (or a run's) audio settings."""
    kwargs = {key: value for key, value in audio_settings.items() if key != "clip_samples"}
    return dict(kwargs, classes_num=len(labels), task=task)


def read_training_checkpoint(path, flag="--checkpoint_path"):
    """A checkpoint written by training (official AudioSet weights: models.read_checkpoint).

    Loaded with weights_only=False at once: it pickles the samplers' and NumPy's random states,
    which the weights-only loader refuses only after reading every tensor.
    """
    if not os.path.isfile(path):
        raise UsageError(f"{flag}={path}: file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise UsageError(f"{flag}={path}: not a readable checkpoint ({error})") from None
    missing = [key for key in ("model", "labels", "task", "audio_settings", "model_type")
               if key not in checkpoint]
    if missing:
        raise UsageError(f"{flag}={path}: not a checkpoint of this pipeline's training "
                         f"(missing {', '.join(missing)})")
    return checkpoint


def load_trained_model(path, device, flag="--checkpoint_path"):
    """Rebuild the trained model from its checkpoint, in eval mode on `device`."""
    checkpoint = read_training_checkpoint(path, flag)
    model = create_model(checkpoint["model_type"],
                         **model_kwargs(checkpoint["audio_settings"], checkpoint["labels"],
                                        checkpoint["task"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), checkpoint
