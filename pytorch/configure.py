"""The RunConfig of a training command: the data's settings from the packed HDF5, the
architecture and front end from the pretrained checkpoint unless flags say otherwise, the rest
from the flags. Built once, by the command line (pytorch/main.py); everything after reads the
RunConfig, never the flags."""
import logging
import os

import torch

from pytorch.optimization import check_options
from pytorch.pytorch_utils import fast_defaults
from pytorch.published import identify_checkpoint
from utils import config
from utils.config import AudioConfig, RunConfig, resolve_loss_type
from utils.data_generator import features_flag, features_value, read_hdf5_info
from utils.utilities import UsageError

FRONT_END_FLAGS = tuple(config.options(AudioConfig))


def architecture(flags, sample_rate, trusted):
    """(model_type, front-end settings): given flags first, then what the pretrained checkpoint
    holds (pytorch/published.py), then the Cnn14 defaults."""
    found, pretrained = None, flags.get("pretrained_checkpoint_path")
    if pretrained:
        try:
            # --model_type=Transfer_X settles which of the models with the same tensors it is
            base = (flags.get("model_type") or "").removeprefix("Transfer_") or None
            found = identify_checkpoint(pretrained, trusted, model_type=base)
        except UsageError as error:
            if not flags.get("model_type"):
                raise
            # Not a published model: the flags say what it is, and loading checks it strictly.
            logging.warning("%s; using --model_type=%s and the front-end flags", error,
                            flags["model_type"])
    if found and found.audio["sample_rate"] != sample_rate:
        # Repacking resamples once, with soxr VHQ, and the HDF5 then records the rate;
        # resampling on load would cost every epoch and hide the mismatch.
        raise UsageError(
            f"--pretrained_checkpoint_path={pretrained}: {found.name} was trained on "
            f"{found.audio['sample_rate']} Hz audio, but "
            f"{features_flag(flags['features'])} holds "
            f"{sample_rate} Hz; repack the audio with utils/features.py --sample_rate="
            f"{found.audio['sample_rate']} and pass that file as --features")
    defaults = found.audio if found else AudioConfig().front_end()
    front_end = {key: defaults[key] if flags.get(key) is None else flags[key]
                 for key in FRONT_END_FLAGS}
    model_type = flags.get("model_type") or (
        f"Transfer_{found.name}" if found else "Transfer_Cnn14")
    return model_type, front_end


def device_defaults(flags):
    """--precision, --compile, --channels_last: as given, else fast on a GPU (one rule,
    pytorch_utils.fast_defaults)."""
    device = torch.device("cuda" if flags.get("cuda") and torch.cuda.is_available() else "cpu")
    defaults = fast_defaults(device)
    return {key: defaults[key] if flags.get(key) is None else flags[key] for key in defaults}


def train_run_config(flags, info=None):
    """The RunConfig of one training run. `flags`: the train command's values by name (the
    features path resolved, holdout_fold set); `info`: the HDF5's (read when not given)."""
    info = info or read_hdf5_info(flags["features"])
    trusted = bool(flags.get("trust_checkpoint"))
    model_type, front_end = architecture(flags, info["sample_rate"], trusted)
    audio = AudioConfig(sample_rate=info["sample_rate"], clip_samples=info["clip_samples"],
                        **front_end)
    values = {name: flags[name] for name in RunConfig.__dataclass_fields__
              if flags.get(name) is not None}
    pretrained = flags.get("pretrained_checkpoint_path")
    values.update(device_defaults(flags))
    values.update(model_type=model_type, task=info["task"], labels=list(info["labels"]),
                  audio=audio, features=features_value(info["files"]),
                  clips=len(info["audio_names"]), data_digest=info["digest"],
                  pretrained_checkpoint_path=os.path.abspath(pretrained) if pretrained else None,
                  loss_type=resolve_loss_type(flags.get("loss_type"), info["task"]))
    select_by = flags.get("select_by")
    if select_by and select_by not in config.SELECTION_METRICS[info["task"]]:
        raise UsageError(f"--select_by={select_by}: a {info['task']} run is scored by "
                         f"{', '.join(config.SELECTION_METRICS[info['task']])}")
    probe = bool(flags.get("linear_probe"))
    if probe:
        values.setdefault("learning_rate", config.PROBE_LEARNING_RATE)
        if not pretrained:
            raise UsageError("--linear_probe: needs --pretrained_checkpoint_path, the backbone "
                             "whose embeddings it probes")
        # The head alone learns, on embeddings of the clips as they are.
        values.update(freeze_base=True, augmentation="none", spec_augment=False)
    run = RunConfig(**values)
    check_options(run)  # before the run claims its folder: a refused command leaves nothing
    return run
