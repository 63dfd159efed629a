"""What a training run (the full loop or the linear probe) sets up before its first step: the
run folder claimed and its log, the data split and its batches, the model and its optimizer,
and the checks that a resume continues the same run."""
import logging

import torch

from pytorch import models
from pytorch.models import TransferModel, tagger_of
from pytorch.pytorch_utils import ResidentClips, make_loader
from utils import config
from utils.config import RunConfig
from utils.data_generator import (BalancedTrainSampler, TrainSampler, WaveformDataset,
                                  features_flag)
from utils.runs import RunFolder, format_changes, write_run_file
from utils.splits import split_train_eval_indices
from utils.utilities import UsageError, create_logging

# The whole dataset stays in GPU memory when it takes less than this share of the free memory.
GPU_RESIDENT_FRACTION = 0.25


def configure_backends(device):
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def open_run(run, workspace, resume_iteration, model, is_master=True):
    """(RunFolder, log path): on the master, the folders are checked writable and free, claimed
    for this run alone, the log opened and run.json written, all before any training."""
    run_folder = RunFolder(workspace, run)
    log_path = None
    if is_master:
        run_folder.claim(resume_iteration, checkpoint_bytes(model),
                         checkpoints_to_write(run, resume_iteration))
        log_path = create_logging(run_folder.dirs["logs"], "train")
        for path in run_folder.removed_temporaries:  # found before the log file was open
            logging.info("removed %s, left by an interrupted write", path)
        write_run_file(run, run_folder.dirs["statistics"])
    logging.info("run: %s (all settings: run.json)", run.summary())
    if run.pretrained_checkpoint_path:
        logging.info("loaded the pretrained base from %s", run.pretrained_checkpoint_path)
    return run_folder, log_path


def load_dataset(run):
    """The run's packed clips (int16: half the memory) and its train/holdout/test indices."""
    dataset = WaveformDataset(run.features, in_memory=run.in_memory, as_int16=True)
    if run.data_digest and dataset.info["digest"] != run.data_digest:
        raise UsageError(f"{features_flag(run.features)}: its clips, folds or targets changed while "
                         "the run started; start it again")
    split = split_train_eval_indices(dataset.info, run.holdout_fold, run.split, run.test_fold)
    check_training_classes(dataset.targets[split[0]], run.labels, run.task)
    return dataset, split


def check_training_classes(targets, labels, task):
    """A single-label run needs two classes to tell apart (one class "trains" to accuracy 1.0);
    a label without training clips cannot be learned: say so before training."""
    present = targets.sum(axis=0) > 0
    if task == config.SINGLE_LABEL and present.sum() < 2:
        raise UsageError(f"the training clips hold {int(present.sum())} class(es) "
                         f"({', '.join(l for l, p in zip(labels, present) if p) or 'none'}); "
                         "a classifier needs at least two: pack more classes")
    missing = [label for label, here in zip(labels, present) if not here]
    if missing:
        logging.warning("no training clip has the label(s) %s: they cannot be learned",
                        "; ".join(missing))


def resident_clips(dataset, device):
    """The dataset held whole on the training device, or None to stream it through loaders.

    In-memory datasets stay on the CPU as they are (mapped); on a GPU when they take less than
    GPU_RESIDENT_FRACTION of its free memory (GTZAN's 1,000 x 30 s clips are 1.9 GB in int16).
    """
    if not dataset.in_memory:
        return None
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if dataset.clips.nbytes > GPU_RESIDENT_FRACTION * free_bytes:
            return None
    return ResidentClips(dataset, device)


def batch_source(dataset, device, num_workers, seed):
    """A function batch_sampler -> iterable of batches: gathered on the device when the dataset
    fits there, else a DataLoader with `num_workers` workers."""
    resident = resident_clips(dataset, device)
    if resident is not None:
        logging.info("the dataset (%.2f GB) stays on %s for the run",
                     dataset.clips.nbytes / 1e9, device)
        return resident.batches
    return lambda batch_sampler: make_loader(dataset, batch_sampler, num_workers, seed, device)


def make_sampler(run, train_indices, targets, mixup=False):
    if run.sampler == "balanced":
        return BalancedTrainSampler(train_indices, targets, run.batch_size, mixup, run.seed)
    return TrainSampler(train_indices, run.batch_size, mixup=mixup, seed=run.seed)


def build_model(run, device, trust_checkpoint=False):
    """The model to train, on `device` (unwrapped: its state_dict is what checkpoints hold)."""
    model = models.create_model(run.model_type, **run.audio.front_end(),
                         classes_num=len(run.labels), task=run.task,
                         freeze_base=run.freeze_base,
                         pretrained_checkpoint_path=run.pretrained_checkpoint_path,
                         trust_checkpoint=trust_checkpoint)
    tagger = tagger_of(model)
    if not run.spec_augment and hasattr(tagger, "spec_augmenter"):
        tagger.spec_augmenter = torch.nn.Identity()
    if isinstance(model, TransferModel):
        # The transfer head reads the base's embedding, never its AudioSet classifier, whose
        # parameters would get no gradient: DDP fails on such unused parameters.
        model.base.audioset_classifier().requires_grad_(False)
    model.to(device)
    if run.channels_last:  # conv weights channels-last; the activations follow them
        model.to(memory_format=torch.channels_last)
    return model


def checkpoint_bytes(model):
    """About how large a training checkpoint of `model` is: the weights plus Adam's (AMSGrad)
    three moments per trainable weight, with a margin."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return int(1.1 * (weights + 3 * trainable)) + 2**20


def checkpoints_to_write(run, resume_iteration):
    """How many checkpoint files the run adds (none is removed): one every save_every
    iterations after resume_iteration, the final one, and best.pth with --keep_best."""
    periodic = run.stop_iteration // run.save_every - resume_iteration // run.save_every
    final = 0 if run.stop_iteration % run.save_every == 0 else 1
    return periodic + final + int(run.keep_best)


def check_resumable(checkpoint, run, path):
    """The checkpoint's run must be this run in everything that shapes a step."""
    if "config" not in checkpoint:
        return  # written before RunConfig: the run folder's run.json was compared instead
    stored = RunConfig.from_dict(checkpoint["config"], path)
    fixed = stored.differences(run, resumable=False)
    if fixed:
        raise UsageError(f"--resume_iteration: {path} was trained with other settings "
                         f"({format_changes(fixed)}); resume with the same ones, or start a new "
                         "run with --run_name=NAME")
